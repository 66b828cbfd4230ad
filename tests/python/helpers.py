"""Shared helpers for the confluent-kafka (librdkafka) tests."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaException, TopicPartition
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
