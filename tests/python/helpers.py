"""Shared helpers for the confluent-kafka (librdkafka) tests, and for the exactly-once copy
loops of test_eos_java.py and test_eos_clients.py: their topics, readers and checks, the
transaction coordinator of a transactional id, and the copier processes with their status
lines."""

from __future__ import annotations

import json
import struct
import subprocess
import threading
import time
import uuid
from collections import Counter, deque
from pathlib import Path

import pytest
from confluent_kafka import (Consumer, IsolationLevel, KafkaError, KafkaException, Producer,
                             TopicPartition)
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec
from kafka import KafkaAdminClient

from conftest import GiveUp, tail, wait_for


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def create_topic(bootstrap: str, name: str, partitions: int, timeout: float = 30.0):
    """Create `name` with `partitions` partitions and wait until every partition has a leader."""
    a = admin(bootstrap)
    futures = a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)],
                              operation_timeout=timeout, request_timeout=timeout)
    futures[name].result(timeout=timeout)

    def ready():
        md = a.list_topics(topic=name, timeout=5)
        t = md.topics.get(name)
        if t is None or t.error is not None or len(t.partitions) != partitions:
            return False
        return all(p.error is None and p.leader >= 0 for p in t.partitions.values())

    wait_for(ready, timeout, f"topic {name} with {partitions} partitions to have leaders")


def read_all(bootstrap: str, topic: str, partitions: int, timeout: float = 60.0,
             extra: dict | None = None) -> dict[int, list]:
    """Read every partition of `topic` from the beginning up to its high watermark (as of the
    call) with a group-less consumer. Returns {partition: [Message, ...]} in offset order."""
    conf = {"bootstrap.servers": bootstrap, "group.id": "read-all-unused",
            "enable.auto.commit": False, "enable.partition.eof": False}
    conf.update(extra or {})
    c = Consumer(conf)
    try:
        high = {}
        for p in range(partitions):
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            high[p] = hi
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        out: dict[int, list] = {p: [] for p in range(partitions)}
        next_off = {p: 0 for p in range(partitions)}
        deadline = time.monotonic() + timeout
        while any(next_off[p] < high[p] for p in range(partitions)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"read_all({topic}): got up to {next_off}, want {high}")
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            p = msg.partition()
            if msg.offset() < high[p]:
                out[p].append(msg)
            next_off[p] = msg.offset() + 1
        return out
    finally:
        c.close()


def consume_n(consumer: Consumer, n: int, timeout: float) -> list:
    """Poll `consumer` until it has returned `n` messages; fail after `timeout` s."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"consumed {len(got)} of {n} messages in {timeout}s")
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            raise KafkaException(msg.error())
        got.append(msg)
    return got


class DeliveryLog:
    """Collects producer delivery reports."""

    def __init__(self):
        self.ok = []       # Message objects acknowledged without error
        self.errors = []   # (KafkaError, Message)

    def __call__(self, err, msg):
        if err is None:
            self.ok.append(msg)
        else:
            self.errors.append((err, msg))


RETRIABLE_COORDINATOR_ERRORS = {"NOT_COORDINATOR", "COORDINATOR_LOAD_IN_PROGRESS",
                                "COORDINATOR_NOT_AVAILABLE", "_TIMED_OUT", "_TRANSPORT"}


def retry_retriable(fn, timeout: float, what: str):
    """Call `fn` until it does not raise a retriable coordinator error (as real clients retry
    after a broker restart, while the group coordinator loads), for at most `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except KafkaException as e:
            err = e.args[0]
            retriable = err.name() in RETRIABLE_COORDINATOR_ERRORS or err.retriable()
            if not retriable or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class Stream:
    """An idempotent acks=all producer writing numbered records to `topic` from a thread until
    stopped; remembers what was acknowledged and what failed, with timestamps. `config` adds
    or replaces producer settings."""

    def __init__(self, bootstrap: str, topic: str, partition: int | None = None,
                 config: dict | None = None):
        self.topic, self.partition = topic, partition
        self.producer = Producer({
            "bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
            "linger.ms": 2, "message.timeout.ms": 60_000, "retry.backoff.ms": 50,
            "topic.metadata.refresh.interval.ms": 1000, **(config or {}),
        })
        self.acked: list[tuple[float, bytes]] = []
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.sent = 0

    def _delivered(self, err, msg):
        if err is not None:
            self.failed.append(str(err))
        else:
            self.acked.append((time.monotonic(), msg.value()))

    def _run(self):
        extra = {} if self.partition is None else {"partition": self.partition}
        while not self._stop.is_set():
            try:
                self.producer.produce(self.topic, value=f"r{self.sent:07d}".encode(),
                                      on_delivery=self._delivered, **extra)
                self.sent += 1
            except BufferError:
                self.producer.poll(0.05)
            self.producer.poll(0)
            time.sleep(0.0005)

    def __enter__(self):
        self._thread.start()
        return self

    def acked_after(self, t: float) -> int:
        return sum(1 for at, _ in self.acked if at > t)

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=30)
        left = self.producer.flush(90)
        assert left == 0, f"{left} records still in flight"

    def __exit__(self, *exc):
        if not self._stop.is_set():
            self.stop()


def assert_all_acked_readable_once(bootstrap: str, topic: str, partitions: int,
                                   acked: list[bytes], extra: dict | None = None):
    """Every value in `acked` is in `topic` and no value is there twice (`extra`: consumer
    settings, e.g. a secured cluster's)."""
    got = read_all(bootstrap, topic, partitions, timeout=90, extra=extra)
    values = Counter(m.value() for msgs in got.values() for m in msgs)
    missing = [v for v in acked if v not in values]
    dups = [v for v, n in values.items() if n > 1]
    assert not missing, f"{len(missing)} acknowledged records missing, e.g. {missing[:3]}"
    assert not dups, f"{len(dups)} records duplicated, e.g. {dups[:3]}"


# -- exactly-once copy loops (test_eos_java.py, test_eos_clients.py) ----------------------------

EOS_TIMEOUT = 30.0

# A three-node cluster for a copier across broker kills: RF 3 everywhere and
# min.insync.replicas=2, so one broker may go; fencing is quick (as in test_replication.py) so
# leadership moves within seconds of a kill. For `cluster_fixture(overrides=...)`.
EOS_FAILOVER_OVERRIDES = {
    "transaction.state.log.replication.factor": 3,
    "transaction.state.log.min.isr": 2,
    "min.insync.replicas": 2,
    "broker.session.timeout.ms": 3000,
    "broker.heartbeat.interval.ms": 500,
}


def create_topics(bootstrap: str, names: list[str], partitions: int, rf: int = 1,
                  exist_ok: bool = False, timeout: float = EOS_TIMEOUT):
    """Create `names` and wait until every partition has a leader (and, with `rf` > 1, a full
    ISR)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    conf = {"min.insync.replicas": "2"} if rf > 1 else {}
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=partitions, replication_factor=rf, config=conf)
         for n in names], operation_timeout=timeout, request_timeout=timeout)
    for name, f in futures.items():
        try:
            f.result(timeout=timeout)
        except KafkaException as e:
            if not (exist_ok and e.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS):
                raise

    def ready():
        md = admin.list_topics(timeout=5)
        for name in names:
            t = md.topics.get(name)
            if t is None or t.error is not None or len(t.partitions) != partitions:
                return False
            if not all(p.error is None and p.leader >= 0 and len(p.isrs) == rf
                       for p in t.partitions.values()):
                return False
        return True

    wait_for(ready, timeout, f"topics {names} to have leaders and full ISRs")


def end_offsets(bootstrap: str, topic: str, partitions: int, committed: bool) -> dict[int, int]:
    """ListOffsets(latest): the LSO when `committed`, else the high watermark."""
    level = IsolationLevel.READ_COMMITTED if committed else IsolationLevel.READ_UNCOMMITTED
    admin = AdminClient({"bootstrap.servers": bootstrap})  # must outlive its futures
    futures = admin.list_offsets(
        {TopicPartition(topic, p): OffsetSpec.latest() for p in range(partitions)},
        isolation_level=level, request_timeout=EOS_TIMEOUT)
    return {tp.partition: f.result(timeout=EOS_TIMEOUT).offset for tp, f in futures.items()}


def read_values(bootstrap: str, topic: str, partitions: int, committed: bool,
                timeout: float = 60.0) -> dict[int, list[bytes]]:
    """Every value of `topic` per partition, in offset order, read from offset 0 until the
    consumer reports the end offset for its isolation level (as of the call): the LSO for
    read_committed, past the last transaction marker."""
    end = end_offsets(bootstrap, topic, partitions, committed)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"unused-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "enable.partition.eof": True,
                  "isolation.level": "read_committed" if committed else "read_uncommitted"})
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        out: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
        at_end = {p for p in range(partitions) if end[p] == 0}
        deadline = time.monotonic() + timeout
        while len(at_end) < partitions:
            if time.monotonic() > deadline:
                raise TimeoutError(f"read_values({topic}, committed={committed}): reached the "
                                   f"end of {sorted(at_end)} only, want offsets {end}")
            msg = c.poll(0.2)
            if msg is None:
                continue
            err = msg.error()
            if err is None:
                out[msg.partition()].append(msg.value())
            elif err.code() != KafkaError._PARTITION_EOF:
                raise KafkaException(err)
            elif msg.offset() >= end[msg.partition()]:
                at_end.add(msg.partition())
        return out
    finally:
        c.close()


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets for `topic` (OffsetFetch, stable offsets only)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "enable.auto.commit": False})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)],
                          timeout=EOS_TIMEOUT)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


def produce_inputs(bootstrap: str, topic: str, partitions: int, n: int) -> dict[int, list[bytes]]:
    """`n` distinct values, round-robin over the partitions; {partition: values in order}."""
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    log = DeliveryLog()
    sent: dict[int, list[bytes]] = {q: [] for q in range(partitions)}
    for i in range(n):
        q, v = i % partitions, f"value-{i:07d}".encode()
        while True:
            try:
                p.produce(topic, value=v, partition=q, on_delivery=log)
                break
            except BufferError:
                p.poll(0.05)
        sent[q].append(v)
    assert p.flush(EOS_TIMEOUT) == 0
    assert not log.errors and len(log.ok) == n, log.errors[:3]
    return sent


def assert_copied_exactly_once(output: dict[int, list[bytes]], inputs: dict[int, list[bytes]],
                               context: str = ""):
    """Each output partition holds its input partition's values, in order, each once (the
    copier writes a record to the partition it was read from)."""
    for p, want in inputs.items():
        got = output[p]
        if got != want:
            counts = Counter(got)
            dups = [v for v, k in counts.items() if k > 1]
            missing = [v for v in want if v not in counts]
            pytest.fail(f"partition {p}: {len(got)} committed records for {len(want)} inputs, "
                        f"{len(dups)} duplicated (e.g. {dups[:3]}), {len(missing)} missing "
                        f"(e.g. {missing[:3]}), in order: {got == sorted(got)}. {context}")


def java_string_hash(s: str) -> int:
    """Java's String.hashCode, a signed 32-bit int."""
    h = 0
    for unit in struct.unpack(f">{len(s.encode('utf-16-be')) // 2}H", s.encode("utf-16-be")):
        h = (31 * h + unit) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def transaction_state_partition(txn_id: str, partitions: int) -> int:
    """The __transaction_state partition of `txn_id`: Utils.abs(hashCode) % partitions, as
    Kafka's TransactionStateManager maps it (Utils.abs maps Integer.MIN_VALUE to 0)."""
    h = java_string_hash(txn_id)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


def transaction_coordinator(bootstrap: str, txn_id: str) -> int:
    """FindCoordinator(key_type=1) and DescribeTransactions through kafka-python: the broker
    coordinating `txn_id`."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return admin.describe_transactions([txn_id])[txn_id].coordinator_id
    finally:
        admin.close()


class ClientProcess:
    """A client program run as a process of its own (so that it can be killed, and its logs
    kept apart). A thread keeps the last stdout lines, and `on_line` sees each one; stderr
    (the client's log) goes to a file in `workdir`."""

    def __init__(self, workdir: Path, name: str, command: list[str], on_line=None,
                 env: dict | None = None):
        workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.stderr_path = workdir / f"{name}.stderr"
        self.lines: deque[str] = deque(maxlen=40)
        self._on_line = on_line
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err,
                                         stdin=subprocess.DEVNULL, text=True, env=env)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            if self._on_line is not None:
                self._on_line(line)

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit; its exit code. Fails with `report()` on a timeout."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.name} still running after {timeout}s\n{self.report()}")
        self._reader.join(timeout=10)
        return rc

    def kill(self):
        """SIGKILL, and reap."""
        if self.running():
            self.proc.kill()
        self.proc.wait(timeout=30)

    def stop(self):
        """SIGTERM, SIGKILL after 30 s."""
        if self.running():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def report(self) -> str:
        out = "\n".join(self.lines)
        return (f"--- {self.name} exit code {self.proc.poll()}; stdout (tail) ---\n{out}\n"
                f"--- {self.name} stderr (tail) ---\n{tail(self.stderr_path, 80)}")


class CopierProcess(ClientProcess):
    """A consume-transform-produce copier printing the status lines of Kafka's
    TransactionalMessageCopier: a JSON object per transaction or poll ({"totalProcessed":
    records copied in committed transactions, "remaining": ...}) and, as it shuts down, a last
    one with "stage": "ShutdownComplete"."""

    def __init__(self, workdir: Path, name: str, command: list[str], env: dict | None = None):
        self.status: dict = {}
        self.shutdown: dict | None = None
        super().__init__(workdir, name, command, on_line=self._status, env=env)

    def _status(self, line: str):
        if not line.startswith("{"):
            return
        try:
            data = json.loads(line)
        except ValueError:
            return
        # Kafka 4.x marks the last line with "stage": "ShutdownComplete", earlier versions
        # with a "shutdown_complete" key.
        if data.get("stage") == "ShutdownComplete" or "shutdown_complete" in data:
            self.shutdown = data
        else:
            self.status = data

    @property
    def processed(self) -> int:
        """Records copied in committed transactions so far."""
        return int(self.status.get("totalProcessed", 0))

    def wait_processed(self, count: int, timeout: float, what: str = ""):
        """Wait until the copier has committed `count` records; fail at once if it exits, with
        its report on either failure."""
        def reached():
            if not self.running():
                raise GiveUp(f"{self.name} exited")
            return self.processed >= count

        try:
            wait_for(reached, timeout, f"{self.name} to commit {count} records {what}".rstrip())
        except (TimeoutError, GiveUp) as e:
            pytest.fail(f"{e}: at {self.processed}\n{self.report()}")

    def finish(self, timeout: float) -> dict:
        """Wait for a clean exit; the shutdown status line."""
        rc = self.wait(timeout)
        assert rc == 0 and self.shutdown is not None, \
            f"the copier failed (exit code {rc})\n{self.report()}"
        return self.shutdown
