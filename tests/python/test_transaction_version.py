"""`transaction.version` 2 (KIP-890 part 2) as Kafka 4.x's Java clients see it, through Apache
Kafka's own tools run from the jars of scripts/kafka-dist.sh:

- `kafka-features describe` shows the feature finalized at level 2, so the Java producer
  uses it: no AddPartitionsToTxn (Produce v12 adds the partition at the broker), no
  AddOffsetsToTxn (TxnOffsetCommit v5 adds the offsets partition) and an EndTxn v5 that bumps
  the producer epoch on every commit or abort;
- Kafka's `ProducerPerformance` with short transactions commits one transaction after the
  other in a single producer session; afterwards `kafka-transactions describe` shows the
  transactional id CompleteCommit at an epoch equal to the number of transactions (under
  transaction.version 0 or 1 it would still be 0: only InitProducerId bumps it there), and
  `describe-producers` shows that each partition's last marker was written with the bumped
  epoch of its transaction. A read_committed reader gets exactly the records produced.

The transactional copy loop (TxnOffsetCommit under TV2) is test_eos_java.py's. scripts/test-all.sh
also runs this file with GREGOR_TEST_BROKER=kafka, so every assertion here is Apache Kafka's
behaviour too. `GREGOR_JAVA_TESTS=0` skips the module.
"""

from __future__ import annotations

import os
import shutil
import uuid

import pytest

from helpers import create_topic
from test_admin_apis import features, kafka
from test_eos_java import end_offsets, kafka_libs, read_values  # noqa: F401 - a fixture

pytestmark = pytest.mark.skipif(
    shutil.which("java") is None or os.environ.get("GREGOR_JAVA_TESTS") == "0",
    reason="needs java (and scripts/kafka-dist.sh); GREGOR_JAVA_TESTS=0 turns these off")

RECORDS = 3000


def table(out: str, first_column: str) -> list[dict[str, str]]:
    """The rows of a `kafka-transactions` table (a header line starting with `first_column`,
    then one row per entry, the columns tab-separated and padded, an empty list column empty)
    as dicts; other lines (the tool's log) are left out."""
    lines = [[field.strip() for field in line.split("\t")] for line in out.splitlines()]
    starts = [i for i, fields in enumerate(lines) if fields[0] == first_column]
    assert len(starts) == 1, out
    header = lines[starts[0]]
    return [dict(zip(header, fields)) for fields in lines[starts[0] + 1:]
            if len(fields) == len(header) and fields[0].lstrip("-").isdigit()]


def describe_transaction(bootstrap: str, txn_id: str) -> dict[str, str]:
    out = kafka("transactions", "--bootstrap-server", bootstrap, "describe",
                "--transactional-id", txn_id)
    rows = table(out, "CoordinatorId")
    assert len(rows) == 1 and rows[0]["TransactionalId"] == txn_id, out
    return rows[0]


def describe_producers(bootstrap: str, topic: str, partition: int) -> list[dict[str, str]]:
    out = kafka("transactions", "--bootstrap-server", bootstrap, "describe-producers",
                "--topic", topic, "--partition", str(partition))
    return table(out, "ProducerId")


def test_transaction_version_2_is_finalized(bootstrap):
    described = features(bootstrap)
    tv = described["transaction.version"]
    assert tv["FinalizedVersionLevel"] == "2", described
    assert int(tv["SupportedMaxVersion"]) >= 2 and tv["SupportedMinVersion"] == "0", described


@pytest.mark.parametrize("partitions", [1, 3])
def test_every_transaction_of_a_java_producer_bumps_its_epoch(bootstrap, kafka_libs,
                                                              partitions):
    """ProducerPerformance: one producer session, ~1 s of records at 3000/s in transactions
    of 100 ms. Every transaction ends with one commit marker in each partition it wrote to, so
    on one partition the markers count the transactions (the end offset less the records),
    and over three partitions they bound it: the partition with the most markers saw no more
    transactions than there were, all partitions together saw each at least once. The epoch
    is that count: 0 from InitProducerId, one up per EndTxn."""
    topic = f"tv2-epochs-{partitions}-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, partitions)
    txn_id = f"tv2-perf-{uuid.uuid4().hex[:8]}"
    out = kafka("producer-perf-test", "--bootstrap-server", bootstrap, "--topic", topic,
                "--num-records", str(RECORDS), "--record-size", "100",
                "--throughput", str(RECORDS), "--transactional-id", txn_id,
                "--transaction-duration-ms", "100")
    assert f"{RECORDS} records sent" in out, out

    txn = describe_transaction(bootstrap, txn_id)
    assert txn["TransactionState"] == "CompleteCommit", txn
    epoch = int(txn["ProducerEpoch"])

    # Everything is committed: the same records for both isolation levels, none missing.
    committed = read_values(bootstrap, topic, partitions, committed=True)
    assert sum(len(v) for v in committed.values()) == RECORDS, \
        {p: len(v) for p, v in committed.items()}
    uncommitted = read_values(bootstrap, topic, partitions, committed=False)
    assert committed == uncommitted
    ends = end_offsets(bootstrap, topic, partitions, committed=False)
    assert end_offsets(bootstrap, topic, partitions, committed=True) == ends
    markers = {p: ends[p] - len(committed[p]) for p in range(partitions)}

    if partitions == 1:
        assert markers[0] >= 4, f"only {markers[0]} transactions; the test needs several"
        assert epoch == markers[0], f"epoch {epoch} after {markers[0]} transactions: {txn}"
    else:
        assert sum(markers.values()) >= 4, markers
        assert max(markers.values()) <= epoch <= sum(markers.values()), (epoch, markers, txn)
    assert epoch >= 3, txn

    # Each partition's producer state is that of its last marker (a producer with an open
    # transaction would show its start offset): the same producer id throughout, at the epoch
    # the marker carried, and the last transaction's markers carry the final epoch.
    marker_epochs = []
    for p in range(partitions):
        rows = describe_producers(bootstrap, topic, p)
        if markers[p] == 0:
            assert rows == [], rows
            continue
        assert len(rows) == 1, rows
        row = rows[0]
        assert row["ProducerId"] == txn["ProducerId"], (row, txn)
        assert row["CurrentTransactionStartOffset"] in ("None", "-1"), row
        assert markers[p] <= int(row["ProducerEpoch"]) <= epoch, (row, markers, txn)
        marker_epochs.append(int(row["ProducerEpoch"]))
    assert max(marker_epochs) == epoch, (marker_epochs, txn)
