"""Exactly-once through Java software the team did not write, run from the jars of
scripts/kafka-dist.sh:

- Apache Kafka's own `TransactionalMessageCopier` (kafka-tools, the copy loop of Kafka's
  transaction system tests): a read_committed consumer, a transactional producer, the consumed
  positions sent to every transaction (KIP-447 group metadata in group mode), transactions
  aborted at random; every input record is in the output exactly once, in order, and the
  aborted copies are in the log for read_uncommitted readers only;
- Kafka Streams' shipped `WordCountDemo` (kafka-streams-examples) under
  processing.guarantee=exactly_once_v2: a stateful topology (a repartition topic, a RocksDB
  store and its changelog) whose committed output counts every word once per occurrence, also
  across a kill -9 of the application and its restart on the same state dir;
- the copier on a three-node Gregor cluster (RF 3, min.insync.replicas=2, __transaction_state
  RF 3) while the broker coordinating its transactional id is killed -9 and started again: the
  copier carries on against the new coordinator and the output is still exactly once.

The first two run against the broker under test (GREGOR_TEST_BROKER=kafka checks them against
Apache Kafka); the failover test starts its own Gregor cluster. `GREGOR_JAVA_TESTS=0` skips
the module.
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import subprocess
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from kafka import KafkaAdminClient

from cluster import cluster_fixture
from conftest import SCRIPTS, GiveUp, wait_for
from helpers import (EOS_FAILOVER_OVERRIDES, ClientProcess, CopierProcess, DeliveryLog,
                     assert_copied_exactly_once, committed_offsets, create_topics, end_offsets,
                     produce_inputs, read_values, transaction_coordinator,
                     transaction_state_partition)

pytestmark = pytest.mark.skipif(
    shutil.which("java") is None or os.environ.get("GREGOR_JAVA_TESTS") == "0",
    reason="needs java (and scripts/kafka-dist.sh); GREGOR_JAVA_TESTS=0 turns these off")

TIMEOUT = 30.0
COPIER = "org.apache.kafka.tools.TransactionalMessageCopier"
WORDCOUNT = "org.apache.kafka.streams.examples.wordcount.WordCountDemo"
# WordCountDemo's topics are fixed in its code.
STREAMS_INPUT, STREAMS_OUTPUT = "streams-plaintext-input", "streams-wordcount-output"


@pytest.fixture(scope="module")
def kafka_libs() -> Path:
    """The jars of the Kafka distribution, fetched (again, when scripts/kafka-pom.xml changed)
    by kafka-dist.sh; kafka-run-class.sh alone only fetches a missing one."""
    out = subprocess.run([str(SCRIPTS / "kafka-dist.sh")], check=True, text=True,
                         stdout=subprocess.PIPE, timeout=600)
    return Path(out.stdout.strip().splitlines()[-1]) / "libs"


# -- Java processes -----------------------------------------------------------------------------


def java_command(main_class: str, args: list[str]) -> list[str]:
    """A main class of the Kafka distribution run through scripts/kafka.sh (which execs java,
    so signals reach the JVM itself)."""
    return [str(SCRIPTS / "kafka.sh"), main_class, *args]


class JavaMain(ClientProcess):
    """A main class of the Kafka distribution in a process of its own; stderr is the client's
    log (WARN and up), and SIGTERM runs the JVM's shutdown hooks."""

    def __init__(self, workdir: Path, name: str, main_class: str, args: list[str],
                 on_line=None):
        super().__init__(workdir, name, java_command(main_class, args), on_line=on_line)


class Copier(CopierProcess):
    """Kafka's TransactionalMessageCopier. It prints a JSON status line per poll
    ({"totalProcessed": committed records, "remaining": ...}) and, from its shutdown hook, a
    last one with "stage": "ShutdownComplete"."""

    def __init__(self, workdir: Path, bootstrap: str, src: str, dst: str, group: str,
                 txn_id: str, max_messages: int, partition: int | None = None,
                 transaction_size: int = 200):
        args = ["--broker-list", bootstrap, "--input-topic", src, "--output-topic", dst,
                "--consumer-group", group, "--transactional-id", txn_id,
                "--max-messages", str(max_messages),
                "--transaction-size", str(transaction_size), "--enable-random-aborts"]
        if partition is None:
            # Subscribe (a group member) and send the consumer's group metadata (KIP-447).
            args += ["--input-partition", "0", "--group-mode", "--use-group-metadata"]
        else:
            # Assign one partition; offsets go to the transaction under the group id alone.
            args += ["--input-partition", str(partition)]
        super().__init__(workdir, f"copier-{txn_id}", java_command(COPIER, args))


# -- 1. the transactional copy loop ---------------------------------------------------------------


@pytest.mark.parametrize("mode", ["group-mode", "per-partition"])
def test_java_transactional_copier_output_is_exactly_once(bootstrap, kafka_libs, tmp_path, mode):
    """5000 distinct values over three partitions, copied by Kafka's TransactionalMessageCopier
    in transactions of up to 200 records, a third of them aborted at random after the records
    were sent and the offsets added. group-mode: one copier subscribed as a group member,
    committing with the consumer's group metadata; per-partition: three copiers at once, each
    with a transactional id of its own, assigned one partition and committing under the group
    id alone. read_committed readers see the input exactly once, in order; the aborted copies
    are in the log (read_uncommitted sees more), and the group's committed offsets are the
    input's end."""
    partitions, n = 3, 5000
    tag = uuid.uuid4().hex[:8]
    src, dst, group = f"eos-in-{tag}", f"eos-out-{tag}", f"eos-copier-{tag}"
    create_topics(bootstrap, [src, dst], partitions)
    inputs = produce_inputs(bootstrap, src, partitions, n)

    if mode == "group-mode":
        copiers = [Copier(tmp_path, bootstrap, src, dst, group, f"copier-{tag}", n)]
    else:
        copiers = [Copier(tmp_path, bootstrap, src, dst, group, f"copier-{tag}-{p}",
                          len(inputs[p]), partition=p) for p in range(partitions)]
    try:
        done = [c.finish(timeout=75) for c in copiers]
    finally:
        for c in copiers:
            c.kill()
    assert sum(d["totalProcessed"] for d in done) == n, done

    assert_copied_exactly_once(read_values(bootstrap, dst, partitions, committed=True), inputs)
    raw = read_values(bootstrap, dst, partitions, committed=False)
    # About one transaction in three was aborted after its records had been sent: those stay in
    # the log. (No abort at all in the ~25+ transactions has odds of (2/3)^25, about 4e-5.)
    assert sum(map(len, raw.values())) > n, "no aborted record in the log"
    assert committed_offsets(bootstrap, group, src, partitions) == \
        end_offsets(bootstrap, src, partitions, committed=False)


# -- 2. Kafka Streams, exactly_once_v2 ------------------------------------------------------------


class WordCount(JavaMain):
    """Kafka Streams' WordCountDemo (streams-plaintext-input -> streams-wordcount-output), its
    only argument a properties file that takes precedence over the demo's defaults (among them
    statestore.cache.max.bytes=0: every count update is sent downstream)."""

    def __init__(self, workdir: Path, bootstrap: str, app_id: str, name: str = "wordcount"):
        props = {
            "application.id": app_id,
            "bootstrap.servers": bootstrap,
            "processing.guarantee": "exactly_once_v2",
            "state.dir": str(workdir / "state"),
            "num.stream.threads": "2",
            "commit.interval.ms": "100",
            # A killed instance's consumer leaves the group within 6 s (the broker's minimum),
            # not the default 45 s.
            "session.timeout.ms": "6000",
            "heartbeat.interval.ms": "1000",
        }
        config = workdir / f"{name}.properties"
        workdir.mkdir(parents=True, exist_ok=True)
        config.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        super().__init__(workdir, name, WORDCOUNT, [str(config)])


class CountReader:
    """A read_committed consumer of the word counts (String word -> 8-byte big-endian count),
    keeping, for the words of one test, every count in the order read."""

    def __init__(self, bootstrap: str, words: set[str]):
        self.words = words
        self.seen: dict[str, list[int]] = {w: [] for w in words}
        self.consumer = Consumer({"bootstrap.servers": bootstrap,
                                  "group.id": f"unused-{uuid.uuid4().hex[:8]}",
                                  "enable.auto.commit": False,
                                  "isolation.level": "read_committed"})
        md = self.consumer.list_topics(STREAMS_OUTPUT, timeout=TIMEOUT)
        self.consumer.assign([TopicPartition(STREAMS_OUTPUT, p, 0)
                              for p in md.topics[STREAMS_OUTPUT].partitions])

    def poll(self, seconds: float = 0.5):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            msg = self.consumer.poll(0.1)
            if msg is None:
                continue
            if msg.error() is not None:
                raise KafkaException(msg.error())
            word = msg.key().decode()
            if word in self.words:
                self.seen[word].append(struct.unpack(">q", msg.value())[0])

    def latest(self) -> dict[str, int]:
        return {w: counts[-1] if counts else 0 for w, counts in self.seen.items()}

    def _wait(self, done, timeout: float, what: str, app: WordCount, expected: dict[str, int]):
        def reached():
            if not app.running():
                raise GiveUp(f"WordCountDemo exited\n{app.report()}")
            self.poll()
            return done(self.latest())

        try:
            wait_for(reached, timeout, what, interval=0)
        except (TimeoutError, GiveUp) as e:
            latest = self.latest()
            behind = {w: (latest[w], n) for w, n in expected.items() if latest[w] != n}
            pytest.fail(f"{e}\n(latest, expected) of the words behind: {behind}\n{app.report()}")

    def wait_counts(self, expected: dict[str, int], timeout: float, app: WordCount):
        """Poll until every word's latest committed count is its expected final count."""
        self._wait(lambda latest: latest == expected, timeout,
                   "the committed word counts to reach their final values", app, expected)

    def wait_total(self, total: int, timeout: float, app: WordCount):
        """Poll until the latest committed counts add up to at least `total` occurrences."""
        self._wait(lambda latest: sum(latest.values()) >= total, timeout,
                   f"{total} word occurrences counted", app, {})

    def assert_each_occurrence_counted_once(self, expected: dict[str, int]):
        """With the store cache off, each occurrence of a word emits its new count: committed,
        the counts of a word are 1, 2, ..., n, with no count twice (a redone update) and none
        skipped (a lost one)."""
        wrong = {w: self.seen[w] for w, n in expected.items()
                 if self.seen[w] != list(range(1, n + 1))}
        assert not wrong, f"count sequences not 1..n: {wrong}"

    def close(self):
        self.consumer.close()


def word_lines(tag: str, lines: int, seed: int) -> tuple[list[str], Counter]:
    """`lines` lines of one to six words from a vocabulary of 15 words unique to `tag` (letters
    only, lower case: the demo splits on \\W+ and lower-cases); the lines and the word counts."""
    rng = random.Random(seed)
    vocab = [f"{tag}{chr(ord('a') + i)}" for i in range(15)]
    out = [" ".join(rng.choice(vocab) for _ in range(rng.randint(1, 6))) for _ in range(lines)]
    return out, Counter(w for line in out for w in line.split())


def streams_setup(bootstrap: str) -> str:
    """WordCountDemo's topics (three partitions each; they may exist from an earlier test) and
    a tag of letters for this test's words."""
    create_topics(bootstrap, [STREAMS_INPUT, STREAMS_OUTPUT], 3, exist_ok=True)
    return "".join(random.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(8))


def list_transactions(bootstrap: str) -> list:
    """ListTransactions on every broker (kafka-python's admin client), the listings of all."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return [t for listings in admin.list_transactions().values() for t in listings]
    finally:
        admin.close()


def produce_lines(bootstrap: str, lines: list[str]):
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    log = DeliveryLog()
    for line in lines:
        p.produce(STREAMS_INPUT, value=line.encode(), on_delivery=log)
    assert p.flush(TIMEOUT) == 0
    assert not log.errors and len(log.ok) == len(lines), log.errors[:3]


def test_streams_wordcount_exactly_once_v2(bootstrap, kafka_libs, tmp_path):
    """WordCountDemo under exactly_once_v2 (a transactional producer per stream thread, the
    repartition topic and the store's changelog written in the same transactions as the output
    and the input offsets): the committed counts of 600 lines' words reach their expected
    final values, each word's counts going 1, 2, ..., n."""
    tag = streams_setup(bootstrap)
    lines, expected = word_lines(tag, 600, seed=1)
    produce_lines(bootstrap, lines)
    reader = CountReader(bootstrap, set(expected))
    app = WordCount(tmp_path, bootstrap, f"wordcount-{tag}")
    try:
        reader.wait_counts(dict(expected), 75, app)
        reader.assert_each_occurrence_counted_once(dict(expected))
        # The counts went through transactions: exactly_once_v2 gives each stream thread a
        # transactional producer, "<application.id>-<process id>-<thread index>".
        txn_ids = {t.transactional_id for t in list_transactions(bootstrap)}
        assert any(t.startswith(f"wordcount-{tag}-") for t in txn_ids), sorted(txn_ids)
    finally:
        app.stop()
        reader.close()


class LineFeeder(threading.Thread):
    """Produces `lines` to WordCountDemo's input from a thread, 20 at a time every 50 ms, so
    that the application is busy (transactions open) for the few seconds it takes."""

    def __init__(self, bootstrap: str, lines: list[str]):
        super().__init__(daemon=True)
        self.lines = lines
        self.fed = 0
        self.log = DeliveryLog()
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                                  "linger.ms": 5})

    def run(self):
        for start in range(0, len(self.lines), 20):
            for line in self.lines[start:start + 20]:
                self.producer.produce(STREAMS_INPUT, value=line.encode(), on_delivery=self.log)
            self.fed = min(start + 20, len(self.lines))
            self.producer.poll(0)
            time.sleep(0.05)
        self.producer.flush(TIMEOUT)

    def finish(self):
        self.join(timeout=60)
        assert not self.is_alive(), f"the feeder is stuck after {self.fed} lines"
        assert not self.log.errors and len(self.log.ok) == len(self.lines), self.log.errors[:3]


def test_streams_wordcount_exactly_once_across_kill9(bootstrap, kafka_libs, tmp_path):
    """WordCountDemo (exactly_once_v2) is killed -9 while lines keep arriving and it is in the
    middle of its transactions, and started again on the same state dir (so with the same
    transactional ids): the new instance fences the old producers, whose open transactions are
    aborted and never read, wipes its local state (EOS after a crash) and restores it from the
    changelog; the committed counts still go 1, 2, ..., n for every word, ending at the
    expected totals."""
    tag = streams_setup(bootstrap)
    lines, expected = word_lines(tag, 1600, seed=2)
    warmup, rest = lines[:100], lines[100:]
    warmup_words = sum(len(line.split()) for line in warmup)
    produce_lines(bootstrap, warmup)
    reader = CountReader(bootstrap, set(expected))
    app = WordCount(tmp_path, bootstrap, f"wordcount-{tag}", name="wordcount-1")
    feeder = LineFeeder(bootstrap, rest)
    second = None
    try:
        reader.wait_total(warmup_words, 60, app)
        feeder.start()
        reader.wait_total(warmup_words + 600, 30, app)
        assert feeder.fed < len(rest), "the input was all in before the kill: slow the feeder"
        app.kill()
        second = WordCount(tmp_path, bootstrap, f"wordcount-{tag}", name="wordcount-2")
        feeder.finish()
        reader.wait_counts(dict(expected), 75, second)
        reader.assert_each_occurrence_counted_once(dict(expected))
    finally:
        app.kill()
        if second is not None:
            second.stop()
        reader.close()


# -- 3. the copier across the loss of its transaction coordinator --------------------------------

failover_cluster = cluster_fixture(scope="function", overrides=EOS_FAILOVER_OVERRIDES)


def test_java_copier_survives_kill9_of_its_transaction_coordinator(failover_cluster, kafka_libs,
                                                                    tmp_path):
    """30000 values over three RF-3 partitions, copied by TransactionalMessageCopier (group
    mode, random aborts). Once a fifth is copied, the broker leading the __transaction_state
    partition of its transactional id is killed -9: the copier's transactions carry on against
    the new coordinator while it is down, and after it has been started again the copier
    finishes cleanly; read_committed readers see every input value exactly once, in order."""
    c = failover_cluster
    partitions, n = 3, 30000
    tag = uuid.uuid4().hex[:8]
    src, dst, group, txn_id = f"eos-in-{tag}", f"eos-out-{tag}", f"eos-fo-{tag}", f"fo-{tag}"
    create_topics(c.bootstrap, [src, dst], partitions, rf=3)
    inputs = produce_inputs(c.bootstrap, src, partitions, n)

    copier = Copier(tmp_path, c.bootstrap, src, dst, group, txn_id, n)
    try:
        def copied(count: int):
            def check():
                if not copier.running():
                    raise GiveUp(f"the copier exited\n{copier.report()}")
                return copier.processed >= count
            return check

        wait_for(copied(n // 5), 60, f"the copier to commit {n // 5} records")
        coordinator = transaction_coordinator(c.bootstrap, txn_id)
        txn_state = c.describe("__transaction_state")
        leader = txn_state[transaction_state_partition(txn_id, len(txn_state))].leader
        assert coordinator == leader, \
            f"FindCoordinator names {coordinator}, the __transaction_state leader is {leader}"

        at_kill = copier.processed
        c.kill(coordinator)
        killed_at = time.monotonic()
        # Two more committed transactions' worth with the coordinator gone.
        try:
            wait_for(copied(at_kill + 400), 45,
                     f"the copier to commit again with broker {coordinator} down")
        except TimeoutError as e:
            pytest.fail(f"{e}: stuck at {copier.processed} of {n} (at the kill: {at_kill})\n"
                        f"{copier.report()}")
        resumed_after = time.monotonic() - killed_at
        survivors = ",".join(node.bootstrap for i, node in c.nodes.items() if i != coordinator)
        successor = transaction_coordinator(survivors, txn_id)
        assert successor != coordinator, f"broker {coordinator} still named the coordinator"
        c.start(coordinator)
        done = copier.finish(timeout=90)
    finally:
        copier.kill()
    assert done["totalProcessed"] == n, done
    assert at_kill < n // 2, f"the copier was nearly done ({at_kill}) before the kill"

    assert_copied_exactly_once(read_values(c.bootstrap, dst, partitions, committed=True,
                                           timeout=90), inputs,
                               f"the copier resumed {resumed_after:.1f}s after the kill of "
                               f"broker {coordinator}")
    assert committed_offsets(c.bootstrap, group, src, partitions) == \
        end_offsets(c.bootstrap, src, partitions, committed=False)
