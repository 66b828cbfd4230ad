"""Finer broker semantics with confluent-kafka: fetching from the middle of a (compressed)
batch, offsets by timestamp, large records, idempotent producing across a restart."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from helpers import DeliveryLog, create_topic, read_all


def plain_consumer(bootstrap: str, **extra) -> Consumer:
    conf = {"bootstrap.servers": bootstrap, "group.id": "semantics-unused",
            "enable.auto.commit": False}
    conf.update(extra)
    return Consumer(conf)


def first_message(c: Consumer, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = c.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            raise KafkaException(msg.error())
        return msg
    raise TimeoutError("no message")


@pytest.mark.parametrize("codec", ["none", "lz4"])
def test_fetch_from_middle_of_batch(bootstrap, topic_name, codec):
    create_topic(bootstrap, topic_name, 1)
    log = DeliveryLog()
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 200, "compression.type": codec,
                  "batch.num.messages": 1000})
    for i in range(100):
        p.produce(topic_name, value=f"m{i}".encode(), on_delivery=log)
    assert p.flush(30) == 0 and not log.errors
    for start in (37, 99, 0):
        c = plain_consumer(bootstrap)
        try:
            c.assign([TopicPartition(topic_name, 0, start)])
            msg = first_message(c)
            assert (msg.offset(), msg.value()) == (start, f"m{start}".encode())
        finally:
            c.close()


def test_offsets_for_times(bootstrap, topic_name):
    create_topic(bootstrap, topic_name, 1)
    log = DeliveryLog()
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    base = int(time.time() * 1000) - 100_000
    for i in range(10):
        # explicit CreateTime timestamps, 1 s apart, each in its own batch
        p.produce(topic_name, value=f"t{i}".encode(), timestamp=base + i * 1000, on_delivery=log)
        p.flush(30)
    assert not log.errors and len(log.ok) == 10
    c = plain_consumer(bootstrap)
    try:
        for ts, want in ((base - 1, 0), (base, 0), (base + 4500, 5), (base + 9000, 9),
                         (base + 9001, -1)):
            got = c.offsets_for_times([TopicPartition(topic_name, 0, ts)], timeout=30)[0]
            assert got.error is None
            if want >= 0:
                assert got.offset == want, (ts - base, got)
            else:  # past the last record: no offset (-1); some brokers answer the log end
                assert got.offset in (-1, 10), (ts - base, got)
        c.assign([TopicPartition(topic_name, 0, 3)])
        msg = first_message(c)
        assert msg.timestamp()[1] == base + 3000
    finally:
        c.close()


def test_large_record(bootstrap, topic_name):
    create_topic(bootstrap, topic_name, 1)
    big = bytes(range(256)) * 3500  # ~900 KB, under the 1 MiB default limits
    log = DeliveryLog()
    p = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 1_000_000})
    p.produce(topic_name, value=big, on_delivery=log)
    p.produce(topic_name, value=b"after", on_delivery=log)
    assert p.flush(30) == 0 and not log.errors, log.errors
    msgs = read_all(bootstrap, topic_name, 1)[0]
    assert [m.value() for m in msgs] == [big, b"after"]


def test_idempotent_producer_across_restart(restartable_broker, topic_name):
    broker = restartable_broker
    create_topic(broker.bootstrap, topic_name, 2)
    log = DeliveryLog()
    p = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True,
                  "linger.ms": 2, "message.timeout.ms": 60_000,
                  "reconnect.backoff.max.ms": 500})
    for i in range(1000):
        p.produce(topic_name, key=str(i % 7).encode(), value=str(i).encode(), on_delivery=log)
    assert p.flush(30) == 0
    broker.restart()
    # the same producer (same producer id and sequences) carries on after the restart
    for i in range(1000, 2000):
        p.produce(topic_name, key=str(i % 7).encode(), value=str(i).encode(), on_delivery=log)
    assert p.flush(60) == 0
    assert not log.errors, [(str(e), m.value()) for e, m in log.errors[:5]]
    data = read_all(broker.bootstrap, topic_name, 2)
    values = [int(m.value()) for msgs in data.values() for m in msgs]
    assert len(values) == len(set(values)) == 2000, f"{len(values)} read, {len(set(values))} distinct"


def test_small_fetch_limits_still_return_a_large_record(bootstrap, topic_name):
    """KIP-74: a record batch larger than the fetch limits is returned whole anyway."""
    create_topic(bootstrap, topic_name, 1)
    big = b"z" * 300_000
    log = DeliveryLog()
    p = Producer({"bootstrap.servers": bootstrap, "compression.type": "none"})
    p.produce(topic_name, value=b"small", on_delivery=log)
    p.flush(30)
    p.produce(topic_name, value=big, on_delivery=log)
    p.flush(30)
    assert not log.errors and len(log.ok) == 2
    msgs = read_all(bootstrap, topic_name, 1, extra={"fetch.max.bytes": 1024,
                                                     "max.partition.fetch.bytes": 1024,
                                                     "message.max.bytes": 1000})
    assert [m.value() for m in msgs[0]] == [b"small", big]


def test_recreated_topic_starts_empty(bootstrap, topic_name):
    from helpers import admin

    create_topic(bootstrap, topic_name, 1)
    p = Producer({"bootstrap.servers": bootstrap})
    for i in range(5):
        p.produce(topic_name, value=f"old{i}".encode())
    assert p.flush(30) == 0
    a = admin(bootstrap)
    a.delete_topics([topic_name], operation_timeout=30)[topic_name].result(timeout=30)

    from conftest import wait_for

    wait_for(lambda: topic_name not in a.list_topics(timeout=5).topics, 30,
             f"{topic_name} to be gone")

    def recreate():
        try:
            create_topic(bootstrap, topic_name, 1)
            return True
        except KafkaException as e:  # TOPIC_ALREADY_EXISTS while deletion completes
            if "already exists" in str(e).lower() or "marked for deletion" in str(e).lower():
                return False
            raise

    wait_for(recreate, 30, f"{topic_name} to be created again", interval=0.5)
    p = Producer({"bootstrap.servers": bootstrap})
    p.produce(topic_name, value=b"new0")
    assert p.flush(30) == 0
    msgs = read_all(bootstrap, topic_name, 1)[0]
    assert [(m.offset(), m.value()) for m in msgs] == [(0, b"new0")]
