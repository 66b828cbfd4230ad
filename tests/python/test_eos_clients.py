"""Exactly-once consume-transform-produce through librdkafka and franz-go, as
test_eos_java.py checks it through Kafka's own Java copier.

Two copy loops, each a process of its own that prints the status lines of Kafka's
TransactionalMessageCopier (records copied in committed transactions so far, see
helpers.CopierProcess) so that the tests can wait on its progress:

- confluent-kafka (librdkafka): this file run as a script (`confluent_copy`): a read_committed
  group member and a transactional producer; each transaction copies a batch to the same
  partitions of the output topic, sends the batch's offsets with the consumer's group metadata
  (KIP-447) and commits, or, for a fraction picked at random, aborts after the copies were
  written and the offsets sent, and rewinds to the batch's first offsets; a transaction that
  fails in a way that needs an abort (say, a generation that moved on) is aborted and redone
  the same way;
- franz-go: `clientcheck copy` (tests/go/main.go), a kgo.GroupTransactSession, whose End commits
  the consumed offsets with the transaction or aborts it and rewinds to the committed offsets.

Both must leave every input value in the output exactly once and in per-partition order for
read_committed readers, the aborted copies in the log for read_uncommitted readers only, and
the group's committed offsets at the input's end offsets:

- on the broker under test (GREGOR_TEST_BROKER=kafka checks the assertions against Apache
  Kafka), as well as a zombie: a copier stalled in the middle of a transaction while a new one
  with its transactional.id takes over is fenced, and nothing it writes afterwards is seen;
- on a three-node Gregor cluster (RF 3, min.insync.replicas=2) while the broker coordinating
  the copier's transactional id, and later the leader of one of the output partitions, is
  killed -9: the copier commits again while each is down, and finishes once it is back.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from cluster import GregorCluster, cluster_fixture
from helpers import (EOS_FAILOVER_OVERRIDES, CopierProcess, DeliveryLog, assert_copied_exactly_once,
                     committed_offsets, consume_n, create_topics, end_offsets, produce_inputs,
                     read_values, transaction_coordinator, transaction_state_partition)

TIMEOUT = 30.0
PARTITIONS = 3
# Records in one transaction at most, and the share of transactions the copiers abort on
# purpose: 5000 records make some 65 transactions, and the odds of none aborted 0.75^65.
TXN_RECORDS = 100
ABORTS = 0.25
FENCED = ("_FENCED", "PRODUCER_FENCED", "INVALID_PRODUCER_EPOCH")


# -- the confluent-kafka copier (this file run as a script) --------------------------------------


def log(text: str):
    print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def retrying(op, what: str):
    """`op()`, again for as long as it fails with a retriable error (librdkafka's advice for
    send_offsets_to_transaction, commit_transaction and abort_transaction: a timed-out commit,
    say, may be resumed by calling it again)."""
    while True:
        try:
            return op()
        except KafkaException as e:
            if not e.args[0].retriable():
                raise
            log(f"{what}: {e.args[0]}; retrying")


def produce_copies(producer: Producer, dst: str, msgs: list):
    """Each message's key and value to the same partition of `dst`."""
    for m in msgs:
        while True:
            try:
                producer.produce(dst, key=m.key(), value=m.value(), partition=m.partition())
                break
            except BufferError:
                producer.poll(0.05)


def next_offsets(msgs: list) -> list[TopicPartition]:
    """The positions after `msgs` (the offsets a transaction commits for them)."""
    last = {}
    for m in msgs:
        last[(m.topic(), m.partition())] = m.offset()
    return [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]


def rewind(consumer: Consumer, msgs: list):
    """Seek back to the first of `msgs` in each partition: every record before them is in a
    committed transaction, those of `msgs` are not."""
    first = {}
    for m in msgs:
        first.setdefault((m.topic(), m.partition()), m.offset())
    for (t, p), o in first.items():
        try:
            consumer.seek(TopicPartition(t, p, o))
        except KafkaException as e:
            # No longer assigned (a rebalance): the next owner starts at the committed offset.
            log(f"rewind of {t}[{p}] to {o}: {e.args[0]}")


def copy_in_transaction(producer: Producer, consumer: Consumer, dst: str, msgs: list,
                        commit: bool) -> bool:
    """Copy `msgs` in one transaction, with their offsets; commit it, or abort it (after the
    copies are in the log) when not `commit`. Whether it committed; raises on a fatal error."""
    try:
        producer.begin_transaction()
        produce_copies(producer, dst, msgs)
        retrying(lambda: producer.send_offsets_to_transaction(
            next_offsets(msgs), consumer.consumer_group_metadata(), TIMEOUT),
            "send_offsets_to_transaction")
        if commit:
            retrying(lambda: producer.commit_transaction(TIMEOUT), "commit_transaction")
            return True
        if producer.flush(TIMEOUT) != 0:
            log("flush before the abort timed out")
    except KafkaException as e:
        if e.args[0].fatal():
            raise
        log(f"transaction of {len(msgs)} records failed, aborting: {e.args[0]}")
    retrying(lambda: producer.abort_transaction(TIMEOUT), "abort_transaction")
    rewind(consumer, msgs)
    return False


def confluent_copy(argv: list[str]):
    """The copy loop (see the module docstring); exits once `count` records are committed."""
    ap = argparse.ArgumentParser(description="confluent-kafka transactional copier")
    ap.add_argument("--aborts", type=float, default=0.0)
    ap.add_argument("--txn-records", type=int, default=TXN_RECORDS)
    ap.add_argument("--seed", type=int, default=1)
    for name in ("bootstrap", "src", "dst", "group", "txn_id"):
        ap.add_argument(name)
    ap.add_argument("count", type=int)
    a = ap.parse_args(argv)
    rng = random.Random(a.seed)
    log(f"copier {a.txn_id}: {a.count} records of {a.src} to {a.dst} in group {a.group}, "
        f"aborts {a.aborts}, seed {a.seed}")

    # EOS_COPIER_DEBUG: librdkafka's debug contexts for both clients (e.g. "eos,cgrp"), to
    # stderr, which the test keeps in its workdir.
    debug = {"debug": os.environ["EOS_COPIER_DEBUG"]} if os.environ.get("EOS_COPIER_DEBUG") else {}
    # connections.max.idle.ms guards against a librdkafka defect (issues #5456 and #5511, open
    # in 2.16): send_offsets_to_transaction waits for a broker state change before it asks again
    # for a cached group coordinator that is down, and once the cluster's metadata no longer
    # lists that broker (it was fenced) its connection thread is gone, so no change comes and
    # the call hangs past its timeout. An idle connection closing is such a change.
    producer = Producer({"bootstrap.servers": a.bootstrap, "transactional.id": a.txn_id,
                         "linger.ms": 5, "connections.max.idle.ms": 2000, **debug})
    retrying(lambda: producer.init_transactions(TIMEOUT), "init_transactions")
    consumer = Consumer({"bootstrap.servers": a.bootstrap, "group.id": a.group,
                         "isolation.level": "read_committed", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", **debug})
    consumer.subscribe([a.src])
    status = {"totalProcessed": 0, "remaining": a.count, "transactions": 0, "aborted": 0,
              "failed": 0}
    while status["totalProcessed"] < a.count:
        msgs = []
        for m in consumer.consume(a.txn_records, 0.5):
            if m.error() is None:
                msgs.append(m)
            elif m.error().fatal():
                raise KafkaException(m.error())
            else:
                log(f"consumer: {m.error()}")
        if not msgs:
            continue
        commit = rng.random() >= a.aborts
        committed = copy_in_transaction(producer, consumer, a.dst, msgs, commit)
        status["transactions"] += 1
        if committed:
            status["totalProcessed"] += len(msgs)
            status["remaining"] = a.count - status["totalProcessed"]
        else:
            status["aborted" if not commit else "failed"] += 1
        print(json.dumps(status), flush=True)
    # Leaves the group, so that a later member need not wait out this one's session.
    consumer.close()
    print(json.dumps({**status, "stage": "ShutdownComplete"}), flush=True)


# -- the copy jobs of the tests -----------------------------------------------------------------


@dataclass
class CopyJob:
    """An input topic of `n` distinct values over three partitions, an empty output topic, and
    the group and transactional id a copier copies them under."""

    bootstrap: str
    src: str
    dst: str
    group: str
    txn_id: str
    n: int
    inputs: dict[int, list[bytes]]

    @classmethod
    def create(cls, bootstrap: str, prefix: str, n: int, rf: int = 1) -> CopyJob:
        tag = f"{prefix}-{uuid.uuid4().hex[:8]}"
        src, dst = f"eos-in-{tag}", f"eos-out-{tag}"
        create_topics(bootstrap, [src, dst], PARTITIONS, rf=rf)
        inputs = produce_inputs(bootstrap, src, PARTITIONS, n)
        return cls(bootstrap, src, dst, f"eos-{tag}", f"txn-{tag}", n, inputs)

    def copier_args(self, count: int) -> list[str]:
        return [self.bootstrap, self.src, self.dst, self.group, self.txn_id, str(count)]

    def check(self, context: str = "") -> dict[int, list[bytes]]:
        """Read_committed: the input exactly once, in order; the group's committed offsets at
        the input's end. The read_uncommitted log, returned, holds the aborted copies too."""
        assert_copied_exactly_once(read_values(self.bootstrap, self.dst, PARTITIONS,
                                               committed=True, timeout=90), self.inputs, context)
        assert committed_offsets(self.bootstrap, self.group, self.src, PARTITIONS) == \
            end_offsets(self.bootstrap, self.src, PARTITIONS, committed=False)
        return read_values(self.bootstrap, self.dst, PARTITIONS, committed=False, timeout=90)


def confluent_copier(job: CopyJob, workdir: Path, count: int | None = None,
                     aborts: float = ABORTS) -> CopierProcess:
    seed = random.randrange(1 << 31)
    command = [sys.executable, __file__, "--aborts", str(aborts), "--seed", str(seed),
               *job.copier_args(job.n if count is None else count)]
    return CopierProcess(workdir, f"confluent-copier-{job.txn_id}-seed-{seed}", command)


def franz_go_copier(clientcheck: str, job: CopyJob, workdir: Path) -> CopierProcess:
    seed = random.randrange(1 << 31)
    command = [clientcheck, "copy", "-aborts", str(ABORTS), "-txn-records", str(TXN_RECORDS),
               "-seed", str(seed), *job.copier_args(job.n)]
    return CopierProcess(workdir, f"franz-go-copier-{job.txn_id}-seed-{seed}", command)


def copy_exactly_once(job: CopyJob, copier: CopierProcess):
    """Wait for `copier` to copy all of `job` and check the output."""
    try:
        done = copier.finish(timeout=120)
    finally:
        copier.kill()
    assert done["totalProcessed"] == job.n, done
    assert done["aborted"] > 0, f"no transaction aborted on purpose: {done}"
    print(f"copier status {done}")
    raw = job.check(f"copier status {done}")
    # The transactions aborted on purpose had written their copies: those stay in the log.
    assert sum(map(len, raw.values())) > job.n, "no aborted record in the log"


# -- 1. the copy loop ------------------------------------------------------------------------------


def test_confluent_copier_is_exactly_once(bootstrap, tmp_path):
    """5000 values over three partitions copied by the confluent-kafka copier in transactions
    of up to 100 records, a quarter of them aborted at random after the copies were written
    and the offsets sent."""
    job = CopyJob.create(bootstrap, "confluent", 5000)
    copy_exactly_once(job, confluent_copier(job, tmp_path))


def test_franz_go_copier_is_exactly_once(bootstrap, clientcheck, tmp_path):
    """The same with franz-go's GroupTransactSession."""
    job = CopyJob.create(bootstrap, "franz-go", 5000)
    copy_exactly_once(job, franz_go_copier(clientcheck, job, tmp_path))


# -- 2. a zombie -----------------------------------------------------------------------------------


def test_a_zombie_copier_is_fenced(bootstrap, tmp_path):
    """A copier commits one transaction, then stalls with a second one open (its copies
    written and its offsets sent) and its consumer gone from the group. A new copier with the
    same transactional.id and group takes over: its InitProducerId aborts the open transaction
    and fences the old producer. When the zombie wakes, its writes and its commit fail with a
    fatal fencing error; the new copier carries on from the first transaction's offsets, and
    read_committed readers see every input once and nothing the zombie wrote after the
    fence."""
    job = CopyJob.create(bootstrap, "zombie", 600)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": job.group,
                         "isolation.level": "read_committed", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"})
    zombie = Producer({"bootstrap.servers": bootstrap, "transactional.id": job.txn_id,
                       "linger.ms": 5})
    zombie.init_transactions(TIMEOUT)
    consumer.subscribe([job.src])
    first = consume_n(consumer, 50, TIMEOUT)
    assert copy_in_transaction(zombie, consumer, job.dst, first, commit=True)

    second = consume_n(consumer, 50, TIMEOUT)
    second_log = DeliveryLog()
    zombie.begin_transaction()
    for m in second:
        zombie.produce(job.dst, value=m.value(), partition=m.partition(),
                       on_delivery=second_log)
    assert zombie.flush(TIMEOUT) == 0 and len(second_log.ok) == len(second), second_log.errors
    zombie.send_offsets_to_transaction(next_offsets(second), consumer.consumer_group_metadata(),
                                       TIMEOUT)
    consumer.close()

    copier = confluent_copier(job, tmp_path, count=job.n - len(first))
    try:
        # Its init_transactions (which fenced the zombie) is done once it has committed.
        copier.wait_processed(1, 60)
        after = DeliveryLog()
        for q in range(PARTITIONS):
            zombie.produce(job.dst, value=f"zombie-{q}".encode(), partition=q,
                           on_delivery=after)
        with pytest.raises(KafkaException) as fenced:
            zombie.commit_transaction(TIMEOUT)
        err: KafkaError = fenced.value.args[0]
        assert err.fatal() and err.name() in FENCED, err
        # The binding may raise the fatal error again (as a SystemError) while it serves a
        # delivery report: serve the rest until none is left.
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                if zombie.flush(1) == 0:
                    break
            except (KafkaException, SystemError):
                continue
        assert not after.ok, f"a fenced producer's writes were acknowledged: {after.ok}"
        done = copier.finish(timeout=90)
    finally:
        copier.kill()

    assert done["totalProcessed"] == job.n - len(first), done
    raw = job.check(f"copier status {done}")
    written = [v for values in raw.values() for v in values]
    assert not any(v.startswith(b"zombie-") for v in written), \
        "a fenced producer's records are in the log"
    # The open transaction's copies are in the log, aborted: each value twice, with the new
    # copier's committed copy.
    assert all(written.count(m.value()) >= 2 for m in second), \
        "the zombie's open transaction left no copies in the log"


# -- 3. across broker kills (three Gregor nodes) ---------------------------------------------------

failover_cluster = cluster_fixture(scope="function", overrides=EOS_FAILOVER_OVERRIDES)


def copy_across_broker_kills(c: GregorCluster, start, tmp_path: Path, n: int):
    """Copy `n` values over RF-3 topics with the copier `start(job, workdir)` starts. Once a
    fifth is copied, kill -9 the broker coordinating its transactional id, wait until it commits
    again with that broker down, start the broker again; then the same with the leader of an
    output partition (another broker when one leads any). The copier then finishes, and the
    output is exactly once."""
    job = CopyJob.create(c.bootstrap, "kill", n, rf=3)
    copier = start(job, tmp_path)
    steps = []
    try:
        copier.wait_processed(n // 5, 60)
        coordinator = transaction_coordinator(c.bootstrap, job.txn_id)
        txn_state = c.describe("__transaction_state")
        leader = txn_state[transaction_state_partition(job.txn_id, len(txn_state))].leader
        assert coordinator == leader, \
            f"FindCoordinator names {coordinator}, the __transaction_state leader is {leader}"
        what = f"the transaction coordinator (group coordinator: " \
               f"{c.group_coordinator(job.group)})"
        steps.append(kill_until_progress(c, coordinator, copier, what))
        survivors = ",".join(node.bootstrap for i, node in c.nodes.items() if i != coordinator)
        assert transaction_coordinator(survivors, job.txn_id) != coordinator
        c.start(coordinator)

        leaders = {p: s.leader for p, s in c.describe(job.dst).items()}
        p = next((p for p, b in leaders.items() if b != coordinator), 0)
        assert copier.processed < n - 4 * TXN_RECORDS, \
            f"the copier was nearly done ({copier.processed}) before the second kill"
        steps.append(kill_until_progress(c, leaders[p], copier,
                                         f"the leader of {job.dst}[{p}]"))
        c.start(leaders[p])
        done = copier.finish(timeout=90)
    finally:
        copier.kill()
    assert done["totalProcessed"] == n, done
    context = f"copier status {done}; {'; '.join(steps)}"
    print(context)
    job.check(context)


def kill_until_progress(c: GregorCluster, node: int, copier: CopierProcess, what: str) -> str:
    """Kill -9 `node` and wait until the copier has committed two more transactions' worth
    (so at least one begun after the kill); how long that took."""
    at_kill = copier.processed
    c.kill(node)
    killed_at = time.monotonic()
    copier.wait_processed(at_kill + 2 * TXN_RECORDS, 45,
                          f"with broker {node}, {what}, down (killed at {at_kill})")
    return f"{what} (broker {node}) killed at {at_kill}, the copier committed again " \
           f"{time.monotonic() - killed_at:.1f}s later"


def test_confluent_copier_survives_kill9_of_a_broker(failover_cluster, tmp_path):
    """The confluent-kafka copier across kills of its transaction coordinator and of an
    output partition's leader."""
    copy_across_broker_kills(failover_cluster, confluent_copier, tmp_path, 20000)


def test_franz_go_copier_survives_kill9_of_a_broker(failover_cluster, clientcheck, tmp_path):
    """The franz-go copier across kills of its transaction coordinator and of an output
    partition's leader."""
    copy_across_broker_kills(failover_cluster,
                             lambda job, workdir: franz_go_copier(clientcheck, job, workdir),
                             tmp_path, 20000)


if __name__ == "__main__":
    confluent_copy(sys.argv[1:])
