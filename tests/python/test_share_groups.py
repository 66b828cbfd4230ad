"""KIP-932 share groups ("queues for Kafka") through Apache Kafka's own Java clients and tools:

- KafkaShareConsumer, driven by ShareConsumers.java (next to this file, compiled once per
  module against the jars of scripts/kafka-dist.sh), which prints what each consumer receives
  and the broker's answers to its acknowledgements as JSON lines;
- kafka-console-share-consumer (ConsoleShareConsumer) and kafka-share-groups
  (ShareGroupCommand), run as main classes through scripts/kafka.sh;
- kafka-configs and the Admin API (IncrementalAlterConfigs / DescribeConfigs on a GROUP config
  resource) for the group configs: share.auto.offset.reset (Kafka's default, latest, would
  skip what a test produced before its consumers started), share.record.lock.duration.ms
  (at least group.share.min.record.lock.duration.ms, 15 s by default) and
  share.delivery.count.limit.

A share group hands the records of a partition to whichever member fetches them: each record
is acquired by one consumer for the lock duration and then accepted, released (delivered
again, with a higher delivery count), rejected (never again), or archived once its delivery
count reaches the limit. Kafka 4.3 has the share.version feature on at level 1 on a freshly
formatted cluster, so the harness's Kafka broker needs nothing extra.

scripts/test-all.sh may run this file with GREGOR_TEST_BROKER=kafka: every assertion here is
Apache Kafka 4.3.1's behaviour. `GREGOR_JAVA_TESTS=0` skips the module."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   ConfigSource, ResourceType)

from conftest import SCRIPTS, GiveUp, tail, wait_for
from cluster import cluster_fixture
from helpers import DeliveryLog, create_topic, create_topics

pytestmark = pytest.mark.skipif(
    shutil.which("java") is None or shutil.which("javac") is None
    or os.environ.get("GREGOR_JAVA_TESTS") == "0",
    reason="needs java and javac (and scripts/kafka-dist.sh); GREGOR_JAVA_TESTS=0 turns these "
           "off")

HELPER_SOURCE = Path(__file__).resolve().parent / "ShareConsumers.java"
SHARE_GROUPS = "org.apache.kafka.tools.consumer.group.ShareGroupCommand"
CONSOLE_SHARE_CONSUMER = "org.apache.kafka.tools.consumer.ConsoleShareConsumer"
# A new member gets its assignment within a heartbeat interval or two (Kafka: 5 s).
JOIN_TIMEOUT = 45.0
TIMEOUT = 30.0
# The shortest acquisition lock Kafka takes for a group config with the default broker
# settings (group.share.min.record.lock.duration.ms).
MIN_LOCK_MS = 15000


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def helper(tmp_path_factory) -> tuple[Path, Path]:
    """(classes dir, Kafka libs dir): ShareConsumers.java compiled against the jars that
    kafka-dist.sh fetches."""
    out = subprocess.run([str(SCRIPTS / "kafka-dist.sh")], check=True, text=True,
                         stdout=subprocess.PIPE, timeout=600)
    libs = Path(out.stdout.strip().splitlines()[-1]) / "libs"
    classes = tmp_path_factory.mktemp("share-consumers")
    proc = subprocess.run(["javac", "-cp", f"{libs}/*", "-d", str(classes), str(HELPER_SOURCE)],
                          text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=300)
    assert proc.returncode == 0, f"javac {HELPER_SOURCE.name} failed:\n{proc.stdout}"
    return classes, libs


class ShareConsumers:
    """One ShareConsumers.java process: `consumers` KafkaShareConsumers in `group` subscribed to
    `topic`, options as in the helper's header (key=value). `events` holds every JSON line
    printed so far as (time.monotonic() when read, object)."""

    def __init__(self, helper: tuple[Path, Path], workdir: Path, name: str, bootstrap: str,
                 group: str, topic: str, group_config: dict[str, str] | None = None,
                 consumer_config: dict[str, str] | None = None, **options):
        classes, libs = helper
        args = [f"bootstrap={bootstrap}", f"group={group}", f"topic={topic}"]
        args += [f"{k.replace('_', '-')}={v}" for k, v in options.items()]
        args += [f"group-config={k}={v}" for k, v in (group_config or {}).items()]
        args += [f"consumer-config={k}={v}" for k, v in (consumer_config or {}).items()]
        self.name = name
        self.events: list[tuple[float, dict]] = []
        self.other: list[str] = []
        self.killed = False
        self._lock = threading.Lock()
        workdir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = workdir / f"{name}.stderr"
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                ["java", "-Xms64m", "-Xmx256m", "-XX:+UseG1GC", "-XX:TieredStopAtLevel=1",
                 "-Djava.awt.headless=true",
                 f"-Dlog4j2.configurationFile={SCRIPTS / 'kafka-log4j2.properties'}",
                 "-cp", f"{classes}{os.pathsep}{libs}/*", "ShareConsumers", *args],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            try:
                event = json.loads(line) if line.startswith("{") else None
            except ValueError:
                event = None
            with self._lock:
                if event is None:
                    self.other.append(line)
                else:
                    self.events.append((time.monotonic(), event))

    def of(self, kind: str) -> list[dict]:
        with self._lock:
            return [e for _, e in self.events if e["event"] == kind]

    def timed(self, kind: str) -> list[tuple[float, dict]]:
        with self._lock:
            return [(t, e) for t, e in self.events if e["event"] == kind]

    def records(self) -> list[dict]:
        return self.of("record")

    def acked_offsets(self) -> Counter:
        """(partition, offset) -> how often the broker confirmed an acknowledgement of it; fails
        on an acknowledgement the broker refused."""
        acked = self.of("acked")
        failed = [a for a in acked if a["error"] is not None]
        assert not failed, f"acknowledgements refused: {failed[:3]}\n{self.report()}"
        return Counter((a["partition"], o) for a in acked for o in a["offsets"])

    def wait(self, predicate, timeout: float, what: str, errors_ok: bool = False):
        """Wait until `predicate()` holds; gives up when the process exits or, unless
        `errors_ok`, a consumer reports an error."""
        def check():
            if not errors_ok and self.of("error"):
                raise GiveUp(f"{self.name} reported {self.of('error')}")
            value = predicate()
            if not value and self.proc.poll() is not None:
                raise GiveUp(f"{self.name} exited with code {self.proc.returncode}")
            return value
        try:
            return wait_for(check, timeout, what)
        except (TimeoutError, GiveUp) as e:
            self.kill()
            pytest.fail(f"{e}\n{self.report()}")

    def stop(self, timeout: float = 60.0):
        """Tell the consumers to close and wait for a clean exit (nothing to do after a
        kill)."""
        if self.killed:
            return
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("stop\n")
                self.proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.name} did not stop within {timeout}s\n{self.report()}")
        self._reader.join(timeout=10)
        assert rc == 0, f"{self.name} exited with code {rc}\n{self.report()}"

    def kill(self):
        """SIGKILL (the JVM gets no chance to close its consumers), and reap."""
        self.killed = True
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        self._reader.join(timeout=10)

    def report(self) -> str:
        with self._lock:
            lines = [json.dumps(e) for _, e in self.events[-40:]] + self.other[-10:]
        return (f"--- {self.name} exit code {self.proc.poll()}; stdout (tail) ---\n"
                + "\n".join(lines)
                + f"\n--- {self.name} stderr (tail) ---\n{tail(self.stderr_path, 60)}")


def produce(bootstrap: str, topic: str, values: list[str], partitions: int = 1,
            one_batch: bool = False) -> list[str]:
    """`values` to `topic`, round-robin over `partitions`, one record per batch (so that a
    share fetch can hand out any number of them) or, with `one_batch`, all in one batch per
    partition; all acknowledged."""
    batching = ({"linger.ms": 2000, "batch.num.messages": 10000} if one_batch
                else {"linger.ms": 0, "batch.num.messages": 1})
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, **batching})
    log = DeliveryLog()
    for i, v in enumerate(values):
        p.produce(topic, value=v.encode(), partition=i % partitions, on_delivery=log)
        p.poll(0)
    assert p.flush(TIMEOUT) == 0, "records still in flight"
    assert not log.errors and len(log.ok) == len(values), log.errors[:3]
    return values


def kafka(*args: str, expect_rc: int | None = 0, timeout: float = 120) -> str:
    """`scripts/kafka.sh ARGS...`: stdout and stderr together; fails unless the exit code is
    `expect_rc` (None: any)."""
    proc = subprocess.run([str(SCRIPTS / "kafka.sh"), *args], text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    if expect_rc is not None and proc.returncode != expect_rc:
        pytest.fail(f"kafka.sh {' '.join(args)} exited {proc.returncode}, expected {expect_rc}"
                    f"\n{proc.stdout[-5000:]}")
    return proc.stdout


def share_groups(bootstrap: str, *args: str, expect_rc: int | None = 0) -> str:
    """kafka-share-groups.sh --bootstrap-server B ARGS..."""
    return kafka(SHARE_GROUPS, "--bootstrap-server", bootstrap, *args, expect_rc=expect_rc)


def table(out: str, group: str) -> list[dict[str, str]]:
    """The rows about `group` of a kafka-share-groups table as {column: value}. Every header
    and value is one word, except the coordinator's "COORDINATOR (ID)" / "host:port  (id)",
    which split into two of each alike."""
    lines = out.splitlines()
    header = next((line.split() for line in lines if line.startswith("GROUP ")), None)
    assert header is not None, out
    rows = [line.split() for line in lines if line.split()[:1] == [group]]
    assert all(len(r) == len(header) for r in rows), out
    return [dict(zip(header, r)) for r in rows]


def offsets_table(bootstrap: str, group: str) -> list[tuple[str, int, int, int]]:
    """kafka-share-groups --describe: (topic, partition, start offset, lag) per partition."""
    out = share_groups(bootstrap, "--describe", "--group", group)
    return sorted((r["TOPIC"], int(r["PARTITION"]), int(r["START-OFFSET"]), int(r["LAG"]))
                  for r in table(out, group))


def set_group_config(bootstrap: str, group: str, configs: dict[str, str]):
    """IncrementalAlterConfigs (SET) on the GROUP config resource `group`, through
    librdkafka's admin client; raises the KafkaException of a refusal."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    res = ConfigResource(ResourceType.GROUP, group, incremental_configs=[
        ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
        for k, v in configs.items()])
    admin.incremental_alter_configs([res], request_timeout=TIMEOUT)[res].result(timeout=TIMEOUT)


# -- 1. kafka-console-share-consumer -------------------------------------------------------------


def test_console_share_consumer_reads_what_was_produced(bootstrap, topic_name):
    """kafka-configs sets share.auto.offset.reset=earliest on the group (a GROUP config
    resource, read back by --describe); kafka-console-share-consumer then reads the 30 records
    produced beforehand over two partitions, each once with delivery count 1, and stops at
    --max-messages; having accepted them all, the group lags by nothing."""
    group, n = fresh("sg-console"), 30
    create_topic(bootstrap, topic_name, 2)
    sent = produce(bootstrap, topic_name, [f"c-{i:03d}" for i in range(n)], partitions=2)

    bs = ("--bootstrap-server", bootstrap)
    out = kafka("configs", *bs, "--entity-type", "groups", "--entity-name", group, "--alter",
                "--add-config", "share.auto.offset.reset=earliest")
    assert f"Completed updating config for group {group}." in out, out
    out = kafka("configs", *bs, "--entity-type", "groups", "--entity-name", group, "--describe")
    assert f"Dynamic configs for group {group} are:" in out, out
    assert "share.auto.offset.reset=earliest sensitive=false" in out, out

    out = kafka(CONSOLE_SHARE_CONSUMER, *bs, "--topic", topic_name, "--group", group,
                "--max-messages", str(n), "--timeout-ms", "60000",
                "--formatter-property", "print.partition=true",
                "--formatter-property", "print.offset=true",
                "--formatter-property", "print.delivery=true")
    assert f"Processed a total of {n} messages" in out, out
    # "Partition:0\tOffset:4\tDelivery:1\tc-008"
    rows = [line.split("\t") for line in out.splitlines() if line.startswith("Partition:")]
    got = [(int(p.split(":")[1]), int(o.split(":")[1]), d, v) for p, o, d, v in rows]
    assert sorted(v for *_, v in got) == sent, out
    assert {d for _, _, d, _ in got} == {"Delivery:1"}, out
    assert sorted((p, o) for p, o, _, _ in got) == \
        sorted((i % 2, i // 2) for i in range(n)), out

    # (The start offset Kafka persists may trail the acknowledgements: see the
    # kafka-share-groups test.)
    rows = offsets_table(bootstrap, group)
    assert [(t, p, lag) for t, p, _, lag in rows] == [(topic_name, 0, 0), (topic_name, 1, 0)] \
        and all(0 <= start <= n // 2 for _, _, start, _ in rows), rows


# -- 2. several consumers on one partition ---------------------------------------------------------


def test_three_share_consumers_split_one_partition(bootstrap, topic_name, helper, tmp_path):
    """Three KafkaShareConsumers (one JVM, a thread each) in one share group on a topic of ONE
    partition: the coordinator's simple assignor gives the partition to all three (described
    through DescribeShareGroups before anything is produced), and the 300 records produced then
    are each delivered once (delivery count 1), to one of them, and accepted once (the broker
    confirms every acknowledgement); more than one consumer receives records.

    Kafka does not promise how the records are spread, only that each is acquired by one
    consumer at a time. Each consumer takes at most max.poll.records=10 per fetch and spends
    20 ms on each record, so while one works through its ten the others fetch the next ones
    (Kafka 4.3.1 gives each about a third: 100/100/100, 101/101/98)."""
    group, n = fresh("sg-three"), 300
    create_topic(bootstrap, topic_name, 1)
    run = ShareConsumers(helper, tmp_path, "three", bootstrap, group, topic_name, consumers=3,
                         await_members=3, process_ms=20,
                         group_config={"share.auto.offset.reset": "earliest"},
                         consumer_config={"max.poll.records": "10"}, client_id="three")
    try:
        run.wait(lambda: run.of("assigned"), JOIN_TIMEOUT,
                 "the three consumers to be members with the partition assigned")
        sent = produce(bootstrap, topic_name, [f"t-{i:03d}" for i in range(n)])
        run.wait(lambda: len(run.acked_offsets()) >= n, 90,
                 f"acknowledgements of all {n} records")
    finally:
        run.stop()

    records = run.records()
    by_offset = Counter(r["offset"] for r in records)
    assert not [o for o, k in by_offset.items() if k > 1], \
        f"offsets delivered more than once: {[o for o, k in by_offset.items() if k > 1][:5]}"
    assert sorted(r["value"] for r in records) == sent
    assert {r["offset"]: r["value"] for r in records} == {i: v for i, v in enumerate(sent)}
    assert {r["deliveryCount"] for r in records} == {1}
    assert {r["ack"] for r in records} == {"ACCEPT"}
    acked = run.acked_offsets()
    assert acked == Counter({(0, o): 1 for o in range(n)}), \
        f"offsets acknowledged other than once: {[k for k, v in acked.items() if v != 1][:5]}"
    per_consumer = Counter(r["consumer"] for r in records)
    assert len(per_consumer) > 1, f"one consumer got every record: {per_consumer}"
    assert {e["consumer"] for e in run.of("closed")} == {0, 1, 2}


# -- 3. acknowledgement: release, reject, the delivery limit, the acquisition lock ----------------


def test_released_records_return_rejected_ones_do_not_and_the_delivery_limit_archives(
        bootstrap, topic_name, helper, tmp_path):
    """A consumer with explicit acknowledgement, in a group with share.delivery.count.limit=3,
    over 6 records: it RELEASEs each record the first time and ACCEPTs it the second, which it
    gets with delivery count 2; it REJECTs r-1 (never delivered again) and RELEASEs r-2 every
    time, which comes back with delivery counts 2 and 3 and is then archived. A record produced
    afterwards (at a higher offset, so delivered after anything released before it) is the
    sign that nothing more comes; once it is in, every record is acknowledged, rejected or
    archived and the group lags by nothing."""
    group = fresh("sg-acks")
    create_topic(bootstrap, topic_name, 1)
    sent = produce(bootstrap, topic_name, [f"r-{i}" for i in range(6)])
    run = ShareConsumers(helper, tmp_path, "acks", bootstrap, group, topic_name,
                         mode="explicit", release_below=2, reject="r-1", release="r-2",
                         group_config={"share.auto.offset.reset": "earliest",
                                       "share.delivery.count.limit": "3"})
    try:
        def deliveries(value):
            return [(r["deliveryCount"], r["ack"]) for r in run.records() if r["value"] == value]

        others = [v for v in sent if v not in ("r-1", "r-2")]
        run.wait(lambda: all((2, "ACCEPT") in deliveries(v) for v in others)
                 and (3, "RELEASE") in deliveries("r-2"), 60,
                 "the released records to come back and r-2 to be delivered 3 times")
        produce(bootstrap, topic_name, ["r-last"])
        run.wait(lambda: (2, "ACCEPT") in deliveries("r-last"), 60, "the later record")
        # The broker answered every acknowledgement sent so far.
        run.wait(lambda: sum(run.acked_offsets().values()) == len(run.records()), TIMEOUT,
                 "the broker's answers to the acknowledgements")
    finally:
        run.stop()

    assert deliveries("r-1") == [(1, "REJECT")], run.report()
    assert deliveries("r-2") == [(1, "RELEASE"), (2, "RELEASE"), (3, "RELEASE")], run.report()
    for v in others + ["r-last"]:
        assert deliveries(v) == [(1, "RELEASE"), (2, "ACCEPT")], (v, run.report())
    # Each delivery's acknowledgement was confirmed: two each, one for r-1, three for r-2.
    assert run.acked_offsets() == Counter(
        {(0, o): {1: 1, 2: 3}.get(o, 2) for o in range(len(sent) + 1)})
    # Default: the broker's group.share.record.lock.duration.ms. (Kafka hands out a record on
    # its last allowed delivery alone, in a fetch of its own.)
    assert {r["lockMs"] for r in run.records()} == {30000}
    assert offsets_table(bootstrap, group)[0][3] == 0, offsets_table(bootstrap, group)


def test_records_a_consumer_sits_on_go_to_another_after_the_acquisition_lock(
        bootstrap, topic_name, helper, tmp_path):
    """With share.record.lock.duration.ms=15000 on the group (the least Kafka allows by
    default; the consumer learns it from ShareFetch), a consumer acquires 5 records and then
    neither acknowledges them nor polls again, while staying a member with its connection
    open. Another consumer of the group, started right away, gets them only when the lock has
    run out, 15 s after the first one got them, with delivery count 2, and accepts them."""
    group = fresh("sg-lock")
    create_topic(bootstrap, topic_name, 1)
    sent = produce(bootstrap, topic_name, [f"k-{i}" for i in range(5)])
    first = ShareConsumers(helper, tmp_path, "holder", bootstrap, group, topic_name, hold="true",
                           group_config={"share.auto.offset.reset": "earliest",
                                         "share.record.lock.duration.ms": str(MIN_LOCK_MS)})
    second = None
    try:
        first.wait(lambda: first.of("holding"), JOIN_TIMEOUT, "the first consumer to hold records")
        held = first.timed("record")
        assert sorted(e["value"] for _, e in held) == sent
        assert {(e["deliveryCount"], e["lockMs"]) for _, e in held} == {(1, MIN_LOCK_MS)}
        got_at = held[0][0]

        second = ShareConsumers(helper, tmp_path, "successor", bootstrap, group, topic_name,
                                mode="explicit")
        second.wait(lambda: len(second.acked_offsets()) == len(sent), 60,
                    "the records to come back to the other consumer")
        assert first.of("error") == [] and first.proc.poll() is None, first.report()
    finally:
        if second is not None:
            second.stop()
        first.stop()
    again = second.timed("record")
    assert sorted(e["value"] for _, e in again) == sent
    assert {(e["deliveryCount"], e["ack"]) for _, e in again} == {(2, "ACCEPT")}
    # Acquired before the first consumer's lines were read; back no sooner than the lock
    # allows (slack for the time the lines took to reach this process).
    waited = min(t for t, _ in again) - got_at
    assert waited >= MIN_LOCK_MS / 1000 - 3, f"redelivered after only {waited:.1f}s"


def test_record_limit_mode_acquires_no_more_than_max_poll_records(bootstrap, topic_name, helper,
                                                                  tmp_path):
    """share.acquire.mode=record_limit (ShareFetch v2's ShareAcquireMode 1): a consumer with
    max.poll.records=3 that holds its first poll holds 3 records of a 20-record batch, not the
    whole batch as batch_optimized would; another consumer gets the other 17, each delivered for
    the first time, and none of the held 3; no poll of either returns more than 3. (That the 3
    are the whole fetch's over several partitions is broker/tests/it/share.rs's.)"""
    group = fresh("sg-limit")
    create_topic(bootstrap, topic_name, 1)
    sent = produce(bootstrap, topic_name, [f"r-{i}" for i in range(20)], one_batch=True)
    # The longest lock Kafka allows by default, so the held 3 stay held while the test runs.
    config = {"share.auto.offset.reset": "earliest",
              "share.record.lock.duration.ms": "60000"}
    limited = {"share.acquire.mode": "record_limit", "max.poll.records": "3"}
    first = ShareConsumers(helper, tmp_path, "limited-holder", bootstrap, group, topic_name,
                           hold="true", group_config=config, consumer_config=limited)
    second = None
    try:
        first.wait(lambda: first.of("holding"), JOIN_TIMEOUT, "the first consumer to hold records")
        held = sorted(e["value"] for e in first.records())
        assert len(held) == 3, first.report()
        second = ShareConsumers(helper, tmp_path, "limited-rest", bootstrap, group, topic_name,
                                mode="explicit", consumer_config=limited)
        rest = sorted(set(sent) - set(held))

        def fresh_ones() -> list[str]:
            return sorted(e["value"] for e in second.records() if e["deliveryCount"] == 1)
        second.wait(lambda: fresh_ones() == rest, JOIN_TIMEOUT,
                    "the other 17 records to go to the second consumer")
        assert first.of("error") == [] and first.proc.poll() is None, first.report()
    finally:
        if second is not None:
            second.stop()
        first.stop()
    assert not [e for e in second.records() if e["value"] in held], second.report()
    assert max(e["count"] for e in first.of("polled") + second.of("polled")) <= 3


def test_a_record_released_from_the_middle_of_a_batch_is_redelivered(bootstrap, topic_name,
                                                                      helper, tmp_path):
    """Ten records produced in one batch; the consumer accepts all but the sixth, which it
    releases every time: the sixth comes back (the broker reads the whole batch around it) and
    is archived at share.delivery.count.limit=3; the rest are delivered once."""
    group = fresh("sg-mid")
    create_topic(bootstrap, topic_name, 1)
    sent = produce(bootstrap, topic_name, [f"m-{i}" for i in range(10)], one_batch=True)
    c = ShareConsumers(helper, tmp_path, "middle", bootstrap, group, topic_name, mode="explicit",
                       release="m-5",
                       group_config={"share.auto.offset.reset": "earliest",
                                     "share.delivery.count.limit": "3"})
    try:
        c.wait(lambda: [e["deliveryCount"] for e in c.records() if e["value"] == "m-5"]
               == [1, 2, 3], JOIN_TIMEOUT, "the released record's three deliveries")
    finally:
        c.stop()
    others = sorted((e["value"], e["deliveryCount"]) for e in c.records() if e["value"] != "m-5")
    assert others == [(v, 1) for v in sorted(sent) if v != "m-5"], c.report()


def polls(c: ShareConsumers) -> list[list[dict]]:
    """The records of each poll, in order (one consumer: a "polled" line, then its records)."""
    out: list[list[dict]] = []
    with c._lock:
        events = list(c.events)
    for _, e in events:
        if e["event"] == "polled":
            out.append([])
        elif e["event"] == "record":
            out[-1].append(e)
    return out


def test_records_that_keep_coming_back_are_throttled_then_delivered_alone(
        bootstrap, topic_name, helper, tmp_path):
    """Throttled delivery (Kafka 4.3, KAFKA-17541): 20 records the consumer always releases,
    under the default share.delivery.count.limit (5). The first three deliveries come 20 at a
    time; from the 4th (max(2, ⌈5/2⌉) = 3 before it) the broker hands out at most half of the
    in-flight batch per fetch, and the 5th and last delivery of each record alone, so one bad
    record cannot take a whole batch down with it. Every record is delivered exactly 5 times,
    then archived."""
    group = fresh("sg-throttle")
    create_topic(bootstrap, topic_name, 1)
    sent = produce(bootstrap, topic_name, [f"t-{i:02}" for i in range(20)])
    c = ShareConsumers(helper, tmp_path, "releaser", bootstrap, group, topic_name,
                       mode="explicit", release=",".join(sent),
                       group_config={"share.auto.offset.reset": "earliest"})
    try:
        c.wait(lambda: len(c.records()) == 5 * len(sent), 90, "five deliveries of each record")
    finally:
        c.stop()
    counts = Counter((e["value"], e["deliveryCount"]) for e in c.records())
    assert counts == Counter({(v, d): 1 for v in sent for d in range(1, 6)}), c.report()
    seen = polls(c)
    early = [len(p) for p in seen if p[0]["deliveryCount"] <= 3]
    assert max(early) == 20, early
    fourth = [len(p) for p in seen if any(e["deliveryCount"] == 4 for e in p)]
    assert max(fourth) == 10, fourth
    last = [len(p) for p in seen if any(e["deliveryCount"] == 5 for e in p)]
    assert last == [1] * 20, last


def test_a_consumer_renews_its_locks_while_it_works_and_nobody_else_gets_the_records(
        bootstrap, topic_name, helper, tmp_path):
    """AcknowledgeType.RENEW (KIP-1222, ShareAcknowledge/ShareFetch v2 with IsRenewAck): a
    consumer works 25 s on 5 records under a 15 s acquisition lock, renewing the locks every
    3 s, then accepts them. A second consumer of the group, started once the first has the
    records, gets none of them; each record was delivered once, and every renewal and
    acknowledgement was accepted."""
    group = fresh("sg-renew")
    create_topic(bootstrap, topic_name, 1)
    sent = produce(bootstrap, topic_name, [f"w-{i}" for i in range(5)])
    config = {"share.auto.offset.reset": "earliest",
              "share.record.lock.duration.ms": str(MIN_LOCK_MS)}
    worker = ShareConsumers(helper, tmp_path, "renewer", bootstrap, group, topic_name,
                            mode="explicit", renew_for_ms="25000", renew_every_ms="3000",
                            group_config=config)
    other = None
    try:
        worker.wait(lambda: len({e["value"] for e in worker.records()}) == len(sent),
                    JOIN_TIMEOUT, "the worker to get the records")
        other = ShareConsumers(helper, tmp_path, "bystander", bootstrap, group, topic_name,
                               mode="explicit", await_members="2")
        other.wait(lambda: other.timed("assigned"), JOIN_TIMEOUT,
                   "both members to have the partition")
        worker.wait(lambda: len([e for e in worker.records() if e["ack"] == "ACCEPT"])
                    == len(sent), 90, "the worker to accept the records after its work")
    finally:
        if other is not None:
            other.stop()
        worker.stop()
    records = worker.records()
    renews = [e for e in records if e["ack"] == "RENEW"]
    assert renews, worker.report()
    accepted = sorted(e["value"] for e in records if e["ack"] == "ACCEPT")
    assert accepted == sorted(sent)
    assert {e["deliveryCount"] for e in records} == {1}, worker.report()
    assert other.records() == [], other.report()
    # The bystander had the partition while the records were still being worked on.
    assigned_at = other.timed("assigned")[0][0]
    first_accept = min(t for t, e in worker.timed("record") if e["ack"] == "ACCEPT")
    assert assigned_at < first_accept - 5, (assigned_at, first_accept)
    acked = worker.acked_offsets()   # fails on a refused renewal or acknowledgement
    assert {o for _, o in acked} == set(range(len(sent)))


@pytest.mark.parametrize("end", ["close", "kill"])
def test_a_consumer_that_closes_or_dies_releases_what_it_did_not_acknowledge(
        bootstrap, topic_name, helper, tmp_path, end):
    """A consumer (explicit acknowledgement) holding 5 records it never acknowledged closes, or
    is killed -9 (its connections drop): either way the broker releases them at once (on a
    close, as the share session ends; on a kill, when the connection that owns the share
    session drops), so with the acquisition lock at its longest (60 s) another consumer gets
    them well within it, with delivery count 2."""
    group = fresh(f"sg-{end}")
    create_topic(bootstrap, topic_name, 1)
    sent = produce(bootstrap, topic_name, [f"x-{i}" for i in range(5)])
    first = ShareConsumers(helper, tmp_path, "first", bootstrap, group, topic_name, hold="true",
                           group_config={"share.auto.offset.reset": "earliest",
                                         "share.record.lock.duration.ms": "60000"})
    try:
        first.wait(lambda: first.of("holding"), JOIN_TIMEOUT, "the first consumer to hold records")
    finally:
        if end == "close":
            first.stop()
        else:
            first.kill()
    assert sorted(e["value"] for e in first.records()) == sent
    assert {(e["deliveryCount"], e["lockMs"]) for e in first.records()} == {(1, 60000)}
    assert first.of("acked") == []
    ended_at = time.monotonic()

    second = ShareConsumers(helper, tmp_path, "second", bootstrap, group, topic_name,
                            mode="explicit")
    try:
        second.wait(lambda: len(second.acked_offsets()) == len(sent), 30,
                    "the released records to come back before the lock runs out")
    finally:
        second.stop()
    assert sorted(e["value"] for e in second.records()) == sent
    assert {(e["deliveryCount"], e["ack"]) for e in second.records()} == {(2, "ACCEPT")}
    assert time.monotonic() - ended_at < 45


# -- 4. kafka-share-groups --------------------------------------------------------------------------


def test_kafka_share_groups_lists_describes_resets_and_deletes(bootstrap, topic_name, helper,
                                                               tmp_path):
    """kafka-share-groups on a group of two consumers that accepted the 20 records of a
    one-partition topic: --list names it (--state: Stable); --describe --members shows both
    members with their client ids and the partition each is assigned; --describe --state shows
    Stable with 2 members; --describe shows the partition with no lag. With the members still
    there, --reset-offsets and --delete refuse. Once they have closed (Empty, no members) and 5
    more records have been produced, the lag is 5; --reset-offsets --to-earliest --execute
    moves the start offset to 0 (lag 25), and a new consumer then reads all 25 records from the
    start; --delete then removes the group."""
    group, n = fresh("sg-tool"), 20
    create_topic(bootstrap, topic_name, 1)
    sent = produce(bootstrap, topic_name, [f"g-{i:02d}" for i in range(n)])
    run = ShareConsumers(helper, tmp_path, "members", bootstrap, group, topic_name, consumers=2,
                         await_members=2, client_id="sg-tool",
                         group_config={"share.auto.offset.reset": "earliest"})
    try:
        run.wait(lambda: run.of("assigned") and len(run.acked_offsets()) == n, JOIN_TIMEOUT,
                 "two members to accept the 20 records")

        out = share_groups(bootstrap, "--list")
        assert group in out.split(), out
        out = share_groups(bootstrap, "--list", "--state")
        assert table(out, group) == [{"GROUP": group, "STATE": "Stable"}], out

        out = share_groups(bootstrap, "--describe", "--group", group, "--members")
        members = table(out, group)
        assert sorted((m["CLIENT-ID"], m["#PARTITIONS"], m["ASSIGNMENT"]) for m in members) == \
            [("sg-tool-0", "1", f"{topic_name}:0"), ("sg-tool-1", "1", f"{topic_name}:0")], out
        assert len({m["CONSUMER-ID"] for m in members}) == 2, out
        assert {m["HOST"] for m in members} == {"/127.0.0.1"}, out

        out = share_groups(bootstrap, "--describe", "--group", group, "--state")
        [state] = table(out, group)
        assert (state["STATE"], state["#MEMBERS"]) == ("Stable", "2"), out

        # Kafka persists the start offset along with the acknowledgements, and advances it past
        # acknowledged records lazily (the value written is the one from before the last
        # acknowledgements); the lag counts the records not yet delivered or acknowledged.
        [(t, p, start, lag)] = offsets_table(bootstrap, group)
        assert (t, p, lag) == (topic_name, 0, 0) and 0 <= start <= n, (t, p, start, lag)

        out = share_groups(bootstrap, "--reset-offsets", "--to-earliest", "--execute",
                           "--group", group, "--topic", topic_name, expect_rc=1)
        assert f"Share group '{group}' is not empty." in out, out
        # (Kafka's tool reports a failed deletion with exit code 0.)
        out = share_groups(bootstrap, "--delete", "--group", group, expect_rc=None)
        assert "Deletion of some share groups failed" in out, out
        assert f"Group '{group}' could not be deleted due to: " \
               f"org.apache.kafka.common.errors.GroupNotEmptyException" in out, out
        assert group in share_groups(bootstrap, "--list").split()
    finally:
        run.stop()

    out = share_groups(bootstrap, "--describe", "--group", group, "--state")
    [state] = table(out, group)
    assert (state["STATE"], state["#MEMBERS"]) == ("Empty", "0"), out
    out = share_groups(bootstrap, "--describe", "--group", group, "--members")
    assert f"Share group '{group}' has no active members." in out, out

    sent += produce(bootstrap, topic_name, [f"g-{i:02d}" for i in range(n, n + 5)])
    [(_, _, start, lag)] = offsets_table(bootstrap, group)
    assert lag == 5, (start, lag)

    out = share_groups(bootstrap, "--reset-offsets", "--to-earliest", "--execute", "--group",
                       group, "--topic", topic_name)
    assert table(out, group) == [{"GROUP": group, "TOPIC": topic_name, "PARTITION": "0",
                                  "NEW-OFFSET": "0"}], out
    assert offsets_table(bootstrap, group) == [(topic_name, 0, 0, n + 5)]

    again = ShareConsumers(helper, tmp_path, "reread", bootstrap, group, topic_name)
    try:
        again.wait(lambda: len(again.acked_offsets()) == n + 5, JOIN_TIMEOUT,
                   "a new consumer to read the group's records again from the start")
    finally:
        again.stop()
    assert sorted(r["value"] for r in again.records()) == sent
    assert {r["deliveryCount"] for r in again.records()} == {1}

    out = share_groups(bootstrap, "--delete", "--group", group)
    assert f"Deletion of requested share groups ('{group}') was successful." in out, out
    assert group not in share_groups(bootstrap, "--list").split()


# -- 5. misuse ------------------------------------------------------------------------------------


def classic_member(bootstrap: str, group: str, topic: str, protocol: str = "classic") -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                     "group.protocol": protocol, "auto.offset.reset": "earliest",
                     "enable.auto.commit": False})


def first_error(consumer: Consumer, timeout: float):
    """Poll until the consumer reports an error (returned) or a record (None)."""
    def step():
        msg = consumer.poll(0.2)
        if msg is None:
            return False
        return [msg.error()]
    return wait_for(step, timeout, "the consumer to report an error or a record")[0]


def test_a_share_consumer_cannot_join_a_classic_group(bootstrap, topic_name, helper, tmp_path):
    """A share consumer whose group id is that of a classic consumer group with a member gets
    GROUP_ID_NOT_FOUND in the ShareGroupHeartbeat response ("Group G is not a share group."):
    poll() throws GroupIdNotFoundException, the member is fenced for good, and the classic
    member keeps its partition; kafka-share-groups refuses to delete the classic group."""
    group = fresh("sg-classic")
    create_topic(bootstrap, topic_name, 1)
    produce(bootstrap, topic_name, ["a", "b"])
    classic = classic_member(bootstrap, group, topic_name)
    try:
        classic.subscribe([topic_name])
        assert first_error(classic, JOIN_TIMEOUT) is None  # it joined and reads
        run = ShareConsumers(helper, tmp_path, "intruder", bootstrap, group, topic_name)
        try:
            run.wait(lambda: run.of("closed"), JOIN_TIMEOUT, "the share consumer to fail",
                     errors_ok=True)
        finally:
            run.stop()
        assert [(e["error"], e["message"]) for e in run.of("error")] == \
            [("org.apache.kafka.common.errors.GroupIdNotFoundException",
              f"Group {group} is not a share group.")], run.report()
        assert run.records() == []
        assert [p.partition for p in classic.assignment()] == [0]

        out = share_groups(bootstrap, "--delete", "--group", group, expect_rc=None)
        assert f"Group '{group}' is not a share group." in out, out
        assert group not in share_groups(bootstrap, "--list").split()
    finally:
        classic.close()


def test_consumer_groups_cannot_join_a_share_group(bootstrap, topic_name, helper, tmp_path):
    """While a share group has a member, a classic consumer with its group id gets
    INCONSISTENT_GROUP_PROTOCOL from JoinGroup and a consumer-protocol (KIP-848) one gets
    GROUP_ID_NOT_FOUND from ConsumerGroupHeartbeat, which librdkafka treats as fatal."""
    group = fresh("sg-taken")
    create_topic(bootstrap, topic_name, 1)
    produce(bootstrap, topic_name, ["a"])
    run = ShareConsumers(helper, tmp_path, "owner", bootstrap, group, topic_name,
                         group_config={"share.auto.offset.reset": "earliest"})
    try:
        run.wait(lambda: run.acked_offsets(), JOIN_TIMEOUT, "the share consumer to read")
        for protocol, code in (("classic", KafkaError.INCONSISTENT_GROUP_PROTOCOL),
                               ("consumer", KafkaError._FATAL)):
            c = classic_member(bootstrap, group, topic_name, protocol)
            try:
                c.subscribe([topic_name])
                err = first_error(c, JOIN_TIMEOUT)
                assert err is not None and err.code() == code, (protocol, err)
                if protocol == "consumer":
                    assert "ConsumerGroupHeartbeat fatal error" in err.str(), err.str()
                    assert "The group id does not exist" in err.str(), err.str()
            finally:
                c.close()
        # The share group did not notice.
        assert not run.of("error"), run.report()
    finally:
        run.stop()


@pytest.mark.parametrize("config,value,message", [
    ("share.record.lock.duration.ms", "5000",
     "share.record.lock.duration.ms must be greater than or equal to "
     "group.share.min.record.lock.duration.ms"),
    ("share.record.lock.duration.ms", "60001",
     "share.record.lock.duration.ms must be less than or equal to "
     "group.share.max.record.lock.duration.ms"),
    ("share.delivery.count.limit", "1",
     "Invalid value 1 for configuration share.delivery.count.limit: Value must be at least 2"),
    ("share.auto.offset.reset", "bogus",
     "Invalid value bogus for configuration share.auto.offset.reset"),
    ("share.no.such.config", "1", "Unknown group config name: share.no.such.config"),
])
def test_invalid_share_group_configs_are_refused(bootstrap, config, value, message):
    """IncrementalAlterConfigs on a GROUP resource answers INVALID_CONFIG, with Kafka's
    message, for values outside the broker's bounds and for unknown names; a valid one is set
    and read back by DescribeConfigs with the GROUP_CONFIG source."""
    group = fresh("sg-config")
    with pytest.raises(KafkaException) as e:
        set_group_config(bootstrap, group, {config: value})
    err = e.value.args[0]
    assert (err.code(), err.str()[:len(message)]) == (KafkaError.INVALID_CONFIG, message), \
        err.str()

    set_group_config(bootstrap, group, {"share.auto.offset.reset": "earliest"})
    admin = AdminClient({"bootstrap.servers": bootstrap})
    res = ConfigResource(ResourceType.GROUP, group)
    entries = admin.describe_configs([res], request_timeout=TIMEOUT)[res].result(timeout=TIMEOUT)
    got = {k: (entries[k].value, entries[k].source) for k in
           ("share.auto.offset.reset", "share.record.lock.duration.ms",
            "share.delivery.count.limit")}
    assert got == {"share.auto.offset.reset": ("earliest", ConfigSource.GROUP_CONFIG.value),
                   "share.record.lock.duration.ms": ("30000", ConfigSource.DEFAULT_CONFIG.value),
                   "share.delivery.count.limit": ("5", ConfigSource.DEFAULT_CONFIG.value)}, got


# -- 5b. share.isolation.level -------------------------------------------------------------------


def produce_transactions(bootstrap: str, topic: str, outcomes: list[tuple[list[str], bool]]):
    """Each (values, commit) a transaction of one transactional producer, committed or
    aborted, in order."""
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": fresh("sg-txn"),
                  "linger.ms": 0})
    p.init_transactions(TIMEOUT)
    for values, commit in outcomes:
        p.begin_transaction()
        for v in values:
            p.produce(topic, value=v.encode(), partition=0)
        p.flush(TIMEOUT)
        if commit:
            p.commit_transaction(TIMEOUT)
        else:
            p.abort_transaction(TIMEOUT)


@pytest.mark.parametrize("isolation", ["read_committed", "read_uncommitted"])
def test_share_isolation_level_decides_whether_aborted_records_are_delivered(
        bootstrap, topic_name, helper, tmp_path, isolation):
    """`share.isolation.level` is a group config: under read_committed the share group is
    delivered only committed transactions' records (the aborted ones, and the markers, are
    read past and never acquired), under read_uncommitted (the default) every record."""
    group = fresh(f"sg-{isolation.replace('_', '-')}")
    create_topic(bootstrap, topic_name, 1)
    produce_transactions(bootstrap, topic_name, [(["c1", "c2"], True), (["a1", "a2"], False),
                                                 (["c3"], True)])
    expected = ["c1", "c2", "c3"] if isolation == "read_committed" else \
        ["c1", "c2", "a1", "a2", "c3"]
    run = ShareConsumers(helper, tmp_path, isolation, bootstrap, group, topic_name,
                         group_config={"share.auto.offset.reset": "earliest",
                                       "share.isolation.level": isolation})
    try:
        run.wait(lambda: len(run.acked_offsets()) >= len(expected), JOIN_TIMEOUT,
                 f"acknowledgements of the {len(expected)} records {isolation} delivers")
    finally:
        run.stop()
    got = [r["value"] for r in sorted(run.records(), key=lambda r: r["offset"])]
    assert got == expected, run.report()


# -- 6. the share-partition state is persisted ------------------------------------------------------


def test_acknowledged_records_stay_acknowledged_across_a_broker_kill9(
        restartable_broker, topic_name, helper, tmp_path):
    """The share-partition state is written before an acknowledgement is answered (Kafka:
    to __share_group_state, through the share coordinator), so it outlives the broker: a
    consumer RELEASEs each of 20 records once and accepts it on its second delivery, the
    broker is killed -9 and restarted, and a new consumer of the group gets only the 5 records
    produced after the restart (first deliveries) — none of the 20 accepted — and then the
    group lags by nothing. (Kafka may report a start offset behind the last acceptance even
    with no lag, so only the lag is checked exactly.)"""
    broker = restartable_broker
    group = fresh("sg-restart")
    create_topic(broker.bootstrap, topic_name, 1)
    sent = produce(broker.bootstrap, topic_name, [f"p-{i:02d}" for i in range(20)])
    first = ShareConsumers(helper, tmp_path, "before", broker.bootstrap, group, topic_name,
                           mode="explicit", release_below=2,
                           group_config={"share.auto.offset.reset": "earliest"},
                           consumer_config={"max.poll.records": "20"})
    try:
        # Each record is acknowledged twice: released on its first delivery, accepted on its
        # second; waiting for the releases only would stop the consumer before it accepts.
        first.wait(lambda: first.acked_offsets() == Counter({(0, o): 2 for o in range(len(sent))}),
                   JOIN_TIMEOUT, "the first consumer's release and acceptance of all 20 records")
    finally:
        first.kill()
    # Every record was released once, came back and was accepted.
    accepted = {r["offset"] for r in first.records() if r["ack"] == "ACCEPT"}
    assert accepted == set(range(len(sent))), first.report()

    broker.restart(hard=True)
    later = produce(broker.bootstrap, topic_name, [f"q-{i}" for i in range(5)])
    second = ShareConsumers(helper, tmp_path, "after", broker.bootstrap, group, topic_name,
                            mode="explicit")
    try:
        second.wait(lambda: len(second.acked_offsets()) >= len(later), JOIN_TIMEOUT,
                    "the second consumer to read what came after the restart")
    finally:
        second.stop()
    got = [(r["value"], r["deliveryCount"]) for r in second.records()]
    assert got == [(v, 1) for v in later], second.report()
    [(topic, partition, start, lag)] = offsets_table(broker.bootstrap, group)
    assert (topic, partition, lag) == (topic_name, 0, 0) and start <= 25


# -- 7. a partition leader's loss (Gregor only: a three-node cluster) ------------------------------

# RF 3 everywhere and min.insync.replicas=2: one broker may go; fencing is quick so leadership
# moves within seconds of the kill.
failover_cluster = cluster_fixture(scope="function", overrides={
    "share.coordinator.state.topic.replication.factor": 3,
    "share.coordinator.state.topic.min.isr": 2,
    "offsets.topic.replication.factor": 3,
    "min.insync.replicas": 2,
    "broker.session.timeout.ms": 3000,
    "broker.heartbeat.interval.ms": 500,
})


def test_share_consumers_survive_kill9_of_the_partition_leader(failover_cluster, helper,
                                                               tmp_path):
    """Two share consumers read 3000 records of an RF-3 partition on three brokers; once a
    quarter are acknowledged, the partition's leader is killed -9. The new leader reads the
    share-partition's state from its share coordinator (replicated in __share_group_state), so
    every record ends up acknowledged, and no record whose acknowledgement a broker confirmed
    is ever delivered again (records acquired but not yet acknowledged may be)."""
    from confluent_kafka.admin import NewTopic
    c = failover_cluster
    topic, group, n = fresh("sg-fo"), fresh("sg-fo"), 3000
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3,
                                  config={"min.insync.replicas": "2"})])[topic].result(TIMEOUT)
    wait_for(lambda: len(getattr(c.describe(topic).get(0), "isr", [])) == 3, TIMEOUT,
             "the topic's full ISR")
    sent = produce(c.bootstrap, topic, [f"f-{i:04d}" for i in range(n)])
    run = ShareConsumers(helper, tmp_path, "fo", c.bootstrap, group, topic, consumers=2,
                         process_ms=2, group_config={"share.auto.offset.reset": "earliest"},
                         consumer_config={"max.poll.records": "50"})

    def confirmed():
        return {o for a in run.of("acked") if a["error"] is None for o in a["offsets"]}

    try:
        run.wait(lambda: len(confirmed()) >= n // 4, 90, "a quarter of the records acknowledged")
        leader = c.describe(topic)[0].leader
        at_kill = len(confirmed())
        c.kill(leader)
        run.wait(lambda: len(confirmed()) == n, 120,
                 f"every record acknowledged after the kill of broker {leader}")
    finally:
        run.stop()
    assert at_kill < n * 3 // 4, f"nearly done ({at_kill}) before the kill"
    # Every delivery of an offset after a broker confirmed its acknowledgement is a record
    # delivered twice.
    first_confirmed: dict[int, float] = {}
    for t, e in run.timed("acked"):
        if e["error"] is None:
            for o in e["offsets"]:
                first_confirmed.setdefault(o, t)
    again = [e for t, e in run.timed("record")
             if e["offset"] in first_confirmed and t > first_confirmed[e["offset"]]]
    assert not again, f"delivered after their acknowledgement was confirmed: {again[:5]}"
    assert {r["value"] for r in run.records()} == set(sent)


def test_share_members_carry_on_across_a_kill9_of_their_coordinator(failover_cluster, helper,
                                                                   tmp_path):
    """Three share consumers join a group on an RF-3 topic of three partitions; one leaves,
    so the group epoch is past what a group rebuilt from rejoins would reach. The broker
    coordinating the group is then killed -9. The broker that takes over the group's
    __consumer_offsets partition loads the membership from it (Kafka's share-group records,
    types 10-15), so the two remaining members go on at their epochs: kafka-share-groups
    shows the same group epoch, the same members with the same epochs and assignments, and
    every record produced after the kill is delivered and accepted."""
    c = failover_cluster
    topic, group, partitions = fresh("sg-coord"), fresh("sg-coord"), 3
    create_topics(c.bootstrap, [topic], partitions, rf=3)
    config = {"share.auto.offset.reset": "earliest"}
    stay = ShareConsumers(helper, tmp_path, "stay", c.bootstrap, group, topic, consumers=2,
                          client_id="stay", group_config=config)
    leave = ShareConsumers(helper, tmp_path, "leave", c.bootstrap, group, topic,
                           client_id="leave", await_members=3)

    def described(bootstrap: str) -> tuple[str, list[tuple[str, ...]]]:
        state = table(share_groups(bootstrap, "--describe", "--group", group, "--state",
                                   "--verbose"), group)
        members = table(share_groups(bootstrap, "--describe", "--group", group, "--members",
                                     "--verbose"), group)
        return (state[0]["GROUP-EPOCH"] if state else "",
                sorted((m["CONSUMER-ID"], m["CLIENT-ID"], m["MEMBER-EPOCH"], m["ASSIGNMENT"])
                       for m in members))

    try:
        leave.wait(lambda: leave.of("assigned"), JOIN_TIMEOUT, "three members with assignments")
        leave.stop()
        # The two that stay are told the assignment of the group without the third.
        wait_for(lambda: (lambda d: len(d[1]) == 2 and
                          {m[2] for m in d[1]} == {d[0]})(described(c.bootstrap)),
                 JOIN_TIMEOUT, "the two remaining members at the group's epoch")
        before = described(c.bootstrap)
        assert int(before[0]) >= 4, before

        coordinator = c.group_coordinator(group)
        c.kill(coordinator)
        survivors = ",".join(n.bootstrap for i, n in c.nodes.items() if i != coordinator)
        wait_for(lambda: c.group_coordinator(group, next(i for i in c.nodes if i != coordinator))
                 != coordinator, 30, "another broker to coordinate the group")
        sent = produce(survivors, topic, [f"k-{i:02d}" for i in range(30)], partitions)
        stay.wait(lambda: {r["value"] for r in stay.records() if r["ack"] == "ACCEPT"}
                  >= set(sent), 90, "the remaining members to accept what came after the kill")
        assert described(survivors) == before
    finally:
        leave.stop()
        stay.stop()


def test_share_lag_of_a_partition_the_coordinator_holds_no_replica_of(failover_cluster, helper,
                                                                      tmp_path):
    """kafka-share-groups --describe on three brokers, for a one-replica partition led by a
    broker other than the group's coordinator: the coordinator has the share-partition's
    persisted state but no replica, so it asks the leader for the high watermark (as Kafka
    does) and reports the real lag, not "-": 0 once the 20 records are accepted, then 5."""
    from confluent_kafka.admin import NewTopic
    c = failover_cluster
    topic, group = fresh("sg-lag"), fresh("sg-lag")

    def found():
        try:
            return c.group_coordinator(group)
        except KafkaException:  # NOT_COORDINATOR while __consumer_offsets is being created
            return None
    coordinator = wait_for(found, TIMEOUT, "the group's coordinator")
    leader = next(i for i in c.nodes if i != coordinator)
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replica_assignment=[[leader]],
                                  config={"min.insync.replicas": "1"})])[topic].result(TIMEOUT)
    wait_for(lambda: getattr(c.describe(topic).get(0), "leader", None) == leader, TIMEOUT,
             f"broker {leader} to lead the topic")
    n = 20
    produce(c.bootstrap, topic, [f"l-{i:02d}" for i in range(n)])
    run = ShareConsumers(helper, tmp_path, "lag", c.bootstrap, group, topic,
                         group_config={"share.auto.offset.reset": "earliest"})
    try:
        run.wait(lambda: len(run.acked_offsets()) == n, JOIN_TIMEOUT, "the 20 records accepted")
    finally:
        run.stop()
    wait_for(lambda: [row[3] for row in offsets_table(c.bootstrap, group)] == [0], TIMEOUT,
             "no lag once every record is accepted")
    produce(c.bootstrap, topic, [f"m-{i}" for i in range(5)])
    [(t, p, start, lag)] = offsets_table(c.bootstrap, group)
    assert (t, p, lag) == (topic, 0, 5) and start <= n, (t, p, start, lag)
