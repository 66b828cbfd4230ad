"""Shared helpers for the confluent-kafka (librdkafka) tests."""

from __future__ import annotations

import threading
import time
from collections import Counter

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import wait_for


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
