"""Kafka transactions (KIP-98, with KIP-447's group metadata in consume-transform-produce)
through librdkafka's transactional producer and read_committed consumer: a committed
transaction becomes visible as a whole, an aborted one never does (but its records stay in the
log for read_uncommitted readers), an open transaction holds the last stable offset (LSO) and
so every read_committed consumer behind it, offsets sent to a transaction are committed with
it or not at all, and a second producer with the same transactional.id fences the first.

Every transaction marker (control record) takes one offset, so a partition's end offset is
past its last data record; readers here go to the end offsets that ListOffsets reports for
their isolation level, and the read_committed ones must get there."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid

import pytest

from confluent_kafka import (Consumer, IsolationLevel, KafkaError, KafkaException, Producer,
                             TopicPartition)
from confluent_kafka.admin import AdminClient, OffsetSpec

from conftest import SCRIPTS, wait_for
from helpers import DeliveryLog, create_topic

TIMEOUT = 20.0


def new_topic(bootstrap: str, prefix: str, partitions: int) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, name, partitions)
    return name


def txn_producer(bootstrap: str, txn_id: str | None = None, **conf) -> Producer:
    """A transactional producer, its producer id already initialised."""
    p = Producer({"bootstrap.servers": bootstrap,
                  "transactional.id": txn_id or f"txn-{uuid.uuid4().hex[:8]}",
                  "transaction.timeout.ms": 30000, "linger.ms": 5, **conf})
    p.init_transactions(TIMEOUT)
    return p


def end_offsets(bootstrap: str, topic: str, partitions: int, committed: bool) -> dict[int, int]:
    """ListOffsets(latest) for every partition: the LSO when `committed` (read_committed),
    else the high watermark."""
    level = IsolationLevel.READ_COMMITTED if committed else IsolationLevel.READ_UNCOMMITTED
    # The client must outlive the futures: a collected AdminClient never completes them.
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.list_offsets(
        {TopicPartition(topic, p): OffsetSpec.latest() for p in range(partitions)},
        isolation_level=level, request_timeout=TIMEOUT)
    return {tp.partition: f.result(timeout=TIMEOUT).offset for tp, f in futures.items()}


def reader(bootstrap: str, committed: bool, **conf) -> Consumer:
    """A group-less consumer that reports reaching the end of each partition."""
    return Consumer({"bootstrap.servers": bootstrap, "group.id": f"unused-{uuid.uuid4().hex[:8]}",
                     "enable.auto.commit": False, "enable.partition.eof": True,
                     "isolation.level": "read_committed" if committed else "read_uncommitted",
                     **conf})


def read_to_end(bootstrap: str, topic: str, partitions: int, committed: bool,
                timeout: float = TIMEOUT) -> tuple[dict[int, list[tuple[int, bytes]]],
                                                   dict[int, int]]:
    """Read every partition from offset 0 until the consumer reports the end offset for its
    isolation level (as of the call). Returns ({partition: [(offset, value), ...]},
    {partition: the consumer's position afterwards})."""
    end = end_offsets(bootstrap, topic, partitions, committed)
    c = reader(bootstrap, committed)
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        records: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(partitions)}
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(at_end) < partitions:
            if time.monotonic() > deadline:
                raise TimeoutError(f"read_to_end({topic}, committed={committed}): reached the "
                                   f"end of {sorted(at_end)} only, want offsets {end}")
            msg = c.poll(0.2)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(err)
                if msg.offset() >= end[msg.partition()]:
                    at_end.add(msg.partition())
                continue
            records[msg.partition()].append((msg.offset(), msg.value()))
        positions = {tp.partition: tp.offset
                     for tp in c.position([TopicPartition(topic, p) for p in range(partitions)])}
        return records, positions
    finally:
        c.close()


def values(records: list[tuple[int, bytes]]) -> list[bytes]:
    return [v for _, v in records]


def produce_batch(p: Producer, topic: str, tag: str, partitions: int, per_partition: int,
                  log: DeliveryLog) -> dict[int, list[bytes]]:
    """Produce `per_partition` records `tag-<partition>-<n>` to each partition, interleaved."""
    sent: dict[int, list[bytes]] = {q: [] for q in range(partitions)}
    for n in range(per_partition):
        for q in range(partitions):
            v = f"{tag}-{q}-{n}".encode()
            p.produce(topic, value=v, partition=q, on_delivery=log)
            sent[q].append(v)
    return sent


def test_committed_transaction_is_read_whole_by_read_committed(bootstrap):
    """N records over three partitions in one committed transaction are what a read_committed
    consumer reads, in order, and the commit marker moves the end offsets past them."""
    partitions, per_partition = 3, 10
    topic = new_topic(bootstrap, "txn-commit", partitions)
    p = txn_producer(bootstrap)
    log = DeliveryLog()
    p.begin_transaction()
    sent = produce_batch(p, topic, "v", partitions, per_partition, log)
    p.commit_transaction(TIMEOUT)
    assert not log.errors, log.errors[:3]
    assert len(log.ok) == partitions * per_partition

    got, positions = read_to_end(bootstrap, topic, partitions, committed=True)
    assert {q: values(r) for q, r in got.items()} == sent
    # One commit marker after the records on each partition; the LSO is the high watermark.
    hw = end_offsets(bootstrap, topic, partitions, committed=False)
    assert hw == {q: per_partition + 1 for q in range(partitions)}
    assert end_offsets(bootstrap, topic, partitions, committed=True) == hw
    assert positions == hw


def test_aborted_transaction_is_seen_only_by_read_uncommitted(bootstrap):
    """Committed batch A, aborted batch B and committed batch C, interleaved on the same
    partitions: read_committed sees A then C, read_uncommitted sees A, B, C, and the
    read_committed consumer's position ends past the last marker, at the high watermark."""
    partitions, per_partition = 3, 4
    topic = new_topic(bootstrap, "txn-abort", partitions)
    p = txn_producer(bootstrap)
    batches = {}
    for tag, commit in (("A", True), ("B", False), ("C", True)):
        log = DeliveryLog()
        p.begin_transaction()
        batches[tag] = produce_batch(p, topic, tag, partitions, per_partition, log)
        if commit:
            p.commit_transaction(TIMEOUT)
        else:
            # Flushed first, so the aborted records are really in the log (abort_transaction
            # would otherwise purge what is still queued in the client).
            assert p.flush(TIMEOUT) == 0
            p.abort_transaction(TIMEOUT)
        assert not log.errors, (tag, log.errors[:3])
        assert len(log.ok) == partitions * per_partition, tag

    committed, positions = read_to_end(bootstrap, topic, partitions, committed=True)
    uncommitted, _ = read_to_end(bootstrap, topic, partitions, committed=False)
    for q in range(partitions):
        assert values(committed[q]) == batches["A"][q] + batches["C"][q], f"partition {q}"
        assert values(uncommitted[q]) == \
            batches["A"][q] + batches["B"][q] + batches["C"][q], f"partition {q}"

    # Three markers per partition (commit, abort, commit), each taking an offset; with no
    # transaction open the LSO is the high watermark, and the consumer got all the way there.
    hw = end_offsets(bootstrap, topic, partitions, committed=False)
    assert hw == {q: 3 * (per_partition + 1) for q in range(partitions)}
    assert end_offsets(bootstrap, topic, partitions, committed=True) == hw
    assert positions == hw


def test_open_transaction_holds_back_read_committed_consumers(bootstrap):
    """While a transaction is open, the LSO stays at its first offset: a read_committed
    consumer gets neither its records nor a later non-transactional record, until the commit,
    after which it gets both; a read_uncommitted consumer gets them all along."""
    topic = new_topic(bootstrap, "txn-lso", 1)
    tp = TopicPartition(topic, 0)
    open_txn = txn_producer(bootstrap)
    log = DeliveryLog()
    open_txn.begin_transaction()
    for v in (b"t0", b"t1"):
        open_txn.produce(topic, value=v, partition=0, on_delivery=log)
    assert open_txn.flush(TIMEOUT) == 0
    plain = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    plain.produce(topic, value=b"plain", partition=0, on_delivery=log)
    assert plain.flush(TIMEOUT) == 0
    assert not log.errors, log.errors
    assert [(m.value(), m.offset()) for m in log.ok] == [(b"t0", 0), (b"t1", 1), (b"plain", 2)]

    assert end_offsets(bootstrap, topic, 1, committed=False) == {0: 3}
    assert end_offsets(bootstrap, topic, 1, committed=True) == {0: 0}
    uncommitted, _ = read_to_end(bootstrap, topic, 1, committed=False)
    assert values(uncommitted[0]) == [b"t0", b"t1", b"plain"]

    c = reader(bootstrap, committed=True)
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        got, eofs = [], []

        def poll_once():
            msg = c.poll(0.2)
            if msg is None:
                return
            if msg.error() is None:
                got.append((msg.offset(), msg.value()))
            elif msg.error().code() == KafkaError._PARTITION_EOF:
                eofs.append(msg.offset())
            else:
                raise KafkaException(msg.error())

        # The consumer's fetches reach the end it is allowed to see, the LSO at offset 0 ...
        wait_for(lambda: poll_once() or eofs, TIMEOUT, "the read_committed consumer's EOF",
                 interval=0)
        assert eofs[0] == 0 and got == [], (eofs, got)
        # ... and stay there: nothing arrives while the transaction is open.
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            poll_once()
        assert got == [], got
        assert end_offsets(bootstrap, topic, 1, committed=True) == {0: 0}

        open_txn.commit_transaction(TIMEOUT)
        wait_for(lambda: poll_once() or len(got) >= 3, TIMEOUT,
                 "the records once the transaction committed", interval=0)
        assert got == [(0, b"t0"), (1, b"t1"), (2, b"plain")]
        # The commit marker went after the plain record, and the LSO past it.
        assert end_offsets(bootstrap, topic, 1, committed=True) == {0: 4}
        wait_for(lambda: poll_once() or c.position([tp])[0].offset == 4, TIMEOUT,
                 "the consumer's position to pass the commit marker", interval=0)
    finally:
        c.close()


def test_consume_transform_produce_is_exactly_once(bootstrap):
    """A copy loop consumes with a group, produces transformed records and sends its positions
    to each transaction; one transaction is aborted after producing and sending offsets, and
    the loop rewinds to the committed offsets and redoes it. The output holds every input
    record exactly once, in order, and the group's committed offsets are the input's end."""
    partitions, per_partition, batch = 3, 20, 10
    src = new_topic(bootstrap, "ctp-in", partitions)
    dst = new_topic(bootstrap, "ctp-out", partitions)
    feed = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    inputs = produce_batch(feed, src, "in", partitions, per_partition, DeliveryLog())
    assert feed.flush(TIMEOUT) == 0
    src_end = end_offsets(bootstrap, src, partitions, committed=False)
    assert src_end == {q: per_partition for q in range(partitions)}

    group = f"ctp-{uuid.uuid4().hex[:8]}"
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False, "isolation.level": "read_committed",
                         "auto.offset.reset": "earliest"})
    p = txn_producer(bootstrap)
    log = DeliveryLog()
    transactions = aborted_records = 0
    try:
        consumer.subscribe([src])

        def copied_all() -> bool:
            assigned = consumer.assignment()
            if len(assigned) < partitions:
                return False
            return all(tp.offset == src_end[tp.partition]
                       for tp in consumer.position(assigned))

        deadline = time.monotonic() + 25
        while not copied_all():
            assert time.monotonic() < deadline, \
                f"copy loop stuck after {transactions} transactions at " \
                f"{consumer.position(consumer.assignment())}"
            msgs = consumer.consume(batch, timeout=0.5)
            if not msgs:
                continue
            for m in msgs:
                if m.error() is not None:
                    raise KafkaException(m.error())
            p.begin_transaction()
            for m in msgs:
                p.produce(dst, value=m.value().replace(b"in-", b"out-"),
                          partition=m.partition(), on_delivery=log)
            positions = [tp for tp in consumer.position(consumer.assignment()) if tp.offset >= 0]
            transactions += 1
            if transactions == 3:
                # Output written and offsets sent, then aborted: neither may count.
                assert p.flush(TIMEOUT) == 0
                p.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(),
                                              TIMEOUT)
                p.abort_transaction(TIMEOUT)
                aborted_records = len(msgs)
                # Rewind the partitions that moved since the last commit (a seek leaves
                # librdkafka's position unknown until a record arrives, so not the others).
                moved = {tp.partition: tp.offset for tp in positions}
                for tp in consumer.committed(consumer.assignment(), timeout=TIMEOUT):
                    if tp.partition not in moved or moved[tp.partition] == tp.offset:
                        continue
                    if tp.offset < 0:  # nothing committed yet: from the log start
                        tp.offset = consumer.get_watermark_offsets(tp, timeout=TIMEOUT)[0]
                    consumer.seek(tp)
                continue
            p.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), TIMEOUT)
            p.commit_transaction(TIMEOUT)

        assert transactions > 3, "the loop never got past the aborted transaction"
        committed = consumer.committed([TopicPartition(src, q) for q in range(partitions)],
                                       timeout=TIMEOUT)
        assert {tp.partition: tp.offset for tp in committed} == src_end
    finally:
        consumer.close()
    assert not log.errors, log.errors[:3]

    expected = {q: [v.replace(b"in-", b"out-") for v in vs] for q, vs in inputs.items()}
    out, _ = read_to_end(bootstrap, dst, partitions, committed=True)
    assert {q: values(r) for q, r in out.items()} == expected
    # The aborted copies are in the log all the same, seen by read_uncommitted only.
    raw, _ = read_to_end(bootstrap, dst, partitions, committed=False)
    assert sum(len(r) for r in raw.values()) == partitions * per_partition + aborted_records
    assert aborted_records > 0


def test_new_producer_with_same_transactional_id_fences_the_old(bootstrap):
    """Producer B initialising A's transactional.id aborts A's open transaction and fences A:
    A's next produce and commit fail with a fatal fencing error, B's transaction commits, and
    read_committed readers see B's records only."""
    topic = new_topic(bootstrap, "txn-fence", 1)
    txn_id = f"fence-{uuid.uuid4().hex[:8]}"
    a_log, b_log = DeliveryLog(), DeliveryLog()
    a = txn_producer(bootstrap, txn_id, **{"transaction.timeout.ms": 10000})
    a.begin_transaction()
    a.produce(topic, value=b"A0", partition=0, on_delivery=a_log)
    assert a.flush(TIMEOUT) == 0
    assert not a_log.errors, a_log.errors

    b = txn_producer(bootstrap, txn_id, **{"transaction.timeout.ms": 10000})
    b.begin_transaction()
    for v in (b"B0", b"B1"):
        b.produce(topic, value=v, partition=0, on_delivery=b_log)
    b.commit_transaction(TIMEOUT)
    assert not b_log.errors and len(b_log.ok) == 2, b_log.errors

    fenced = None
    try:
        # The zombie's write is refused by the partition leader (an old producer epoch); the
        # client may already refuse it locally once it knows it is fenced.
        a.produce(topic, value=b"A1", partition=0, on_delivery=a_log)
        a.commit_transaction(TIMEOUT)
    except KafkaException as e:
        fenced = e.args[0]
    assert fenced is not None, "the fenced producer committed"
    assert fenced.fatal(), fenced
    assert fenced.name() in ("_FENCED", "PRODUCER_FENCED", "INVALID_PRODUCER_EPOCH"), fenced
    assert not any(m.value() == b"A1" for m in a_log.ok), "the fenced producer's write was acked"

    committed, _ = read_to_end(bootstrap, topic, 1, committed=True)
    assert values(committed[0]) == [b"B0", b"B1"]
    # A's first record was written, and aborted when B took over the transactional.id.
    uncommitted, _ = read_to_end(bootstrap, topic, 1, committed=False)
    assert values(uncommitted[0]) == [b"A0", b"B0", b"B1"]


def kafka_tool(*args: str) -> str:
    """`scripts/kafka.sh ARGS...` (Kafka's own tools): stdout and stderr; fails on an error."""
    proc = subprocess.run([str(SCRIPTS / "kafka.sh"), *args], text=True, timeout=120,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.returncode == 0, f"kafka.sh {' '.join(args)} exited {proc.returncode}\n" \
                                 f"{proc.stdout[-4000:]}"
    return proc.stdout


@pytest.mark.skipif(shutil.which("java") is None or os.environ.get("GREGOR_JAVA_TESTS") == "0",
                    reason="needs java (and scripts/kafka-dist.sh)")
def test_kafka_transactions_tool_lists_describes_and_aborts_an_open_transaction(bootstrap):
    """`kafka-transactions` against an open transaction: `list` and `describe` show it
    Ongoing with its partition, `describe-producers` shows its producer and where its
    transaction starts, `find-hanging` finds nothing hanging (it is within its timeout), and
    `abort` (WriteTxnMarkers from an admin) ends it in the partition: the last stable offset
    moves past it and read_committed readers never see its records."""
    topic = new_topic(bootstrap, "txn-tool", 1)
    txn_id = f"tool-{uuid.uuid4().hex[:8]}"
    p = txn_producer(bootstrap, txn_id)
    log = DeliveryLog()
    p.begin_transaction()
    for i in range(3):
        p.produce(topic, value=f"open-{i}".encode(), partition=0, on_delivery=log)
    assert p.flush(TIMEOUT) == 0 and len(log.ok) == 3, log.errors

    tool = ("transactions", "--bootstrap-server", bootstrap)
    listed = kafka_tool(*tool, "list")
    assert re.search(rf"^{txn_id}\s+\S+\s+\d+\s+Ongoing\s*$", listed, re.M), listed
    described = kafka_tool(*tool, "describe", "--transactional-id", txn_id)
    assert re.search(r"\bOngoing\b", described), described
    assert f"{topic}-0" in described, described
    producers = kafka_tool(*tool, "describe-producers", "--topic", topic, "--partition", "0")
    row = [line.split() for line in producers.splitlines() if line.split()[:1] != ["ProducerId"]]
    row = [r for r in row if r and r[0].isdigit()]
    assert len(row) == 1, producers
    # ProducerId ProducerEpoch LatestCoordinatorEpoch LastSequence LastTimestamp
    # CurrentTransactionStartOffset
    assert row[0][-1] == "0", producers
    hanging = kafka_tool(*tool, "find-hanging", "--topic", topic, "--partition", "0")
    # A header and no row: the transaction is within its timeout.
    rows = [line for line in hanging.splitlines() if line.strip()]
    assert rows[0].split()[:3] == ["Topic", "Partition", "ProducerId"] and len(rows) == 1, hanging

    assert end_offsets(bootstrap, topic, 1, committed=True) == {0: 0}
    kafka_tool(*tool, "abort", "--topic", topic, "--partition", "0", "--start-offset", "0")
    # The abort marker takes offset 3: stable up to the end, nothing of the transaction shown.
    assert end_offsets(bootstrap, topic, 1, committed=True) == {0: 4}
    committed, _ = read_to_end(bootstrap, topic, 1, committed=True)
    assert values(committed[0]) == []


def test_an_abandoned_transaction_is_aborted_at_its_timeout(bootstrap):
    """A producer that opens a transaction and goes quiet holds the last stable offset only
    until `transaction.timeout.ms`: the coordinator then aborts it (within its periodic check),
    read_committed readers move past it without seeing its records, and the producer's late
    commit fails."""
    topic = new_topic(bootstrap, "txn-timeout", 1)
    # 5 s: the check just below must run before the timeout on a loaded machine (with 2 s, a
    # CI run against Kafka had already aborted it there).
    p = txn_producer(bootstrap, **{"transaction.timeout.ms": 5000})
    log = DeliveryLog()
    p.begin_transaction()
    p.produce(topic, value=b"abandoned", partition=0, on_delivery=log)
    assert p.flush(TIMEOUT) == 0 and len(log.ok) == 1, log.errors
    assert end_offsets(bootstrap, topic, 1, committed=True) == {0: 0}
    # The abort marker follows the record: stable up to 2 once the coordinator has acted
    # (Kafka checks every transaction.abort.timed.out.transaction.cleanup.interval.ms, 10 s).
    wait_for(lambda: end_offsets(bootstrap, topic, 1, committed=True) == {0: 2}, 40,
             "the timed-out transaction to be aborted")
    committed, _ = read_to_end(bootstrap, topic, 1, committed=True)
    assert values(committed[0]) == []
    with pytest.raises(KafkaException):
        p.commit_transaction(TIMEOUT)
