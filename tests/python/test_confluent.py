"""End-to-end tests with confluent-kafka (librdkafka)."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from conftest import wait_for
from helpers import DeliveryLog, consume_n, create_topic, read_all, retry_retriable


def producer(bootstrap: str, **conf) -> Producer:
    base = {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5}
    base.update(conf)
    return Producer(base)


def flush_all(p: Producer, log: DeliveryLog, expected: int, timeout: float = 60.0):
    remaining = p.flush(timeout)
    assert remaining == 0, f"{remaining} messages still undelivered after {timeout}s"
    assert not log.errors, f"delivery errors: {[(str(e), m.value()) for e, m in log.errors[:5]]}"
    assert len(log.ok) == expected


def test_keyed_messages_keep_partition_and_order(bootstrap, topic_name):
    partitions, keys, per_key = 6, 24, 40
    create_topic(bootstrap, topic_name, partitions)
    log = DeliveryLog()
    p = producer(bootstrap, **{"enable.idempotence": True})
    for seq in range(per_key):
        for k in range(keys):
            p.produce(topic_name, key=f"key-{k}".encode(), value=f"{k}:{seq}".encode(),
                      on_delivery=log)
        p.poll(0)
    flush_all(p, log, keys * per_key)

    # The producer's partitioner put every key on one partition.
    key_partition = {}
    for m in log.ok:
        key_partition.setdefault(m.key(), set()).add(m.partition())
    assert all(len(ps) == 1 for ps in key_partition.values()), key_partition
    assert len({next(iter(ps)) for ps in key_partition.values()}) > 1, "all keys on one partition"

    data = read_all(bootstrap, topic_name, partitions)
    total = 0
    for part, msgs in data.items():
        offsets = [m.offset() for m in msgs]
        assert offsets == list(range(len(msgs))), f"partition {part}: offsets {offsets[:20]}..."
        seqs = defaultdict(list)
        for m in msgs:
            assert key_partition[m.key()] == {part}, f"{m.key()} read from partition {part}"
            k, seq = m.value().decode().split(":")
            assert m.key() == f"key-{k}".encode()
            seqs[k].append(int(seq))
        for k, s in seqs.items():
            assert s == list(range(per_key)), f"key {k} out of order on partition {part}: {s}"
        total += len(msgs)
    assert total == keys * per_key

    # The broker's offsets in the delivery reports match what is read back.
    by_pos = {(m.partition(), m.offset()): m.value() for msgs in data.values() for m in msgs}
    for m in log.ok:
        assert by_pos[(m.partition(), m.offset())] == m.value()


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_compression_round_trip(bootstrap, topic_name, codec):
    create_topic(bootstrap, topic_name, 1)
    log = DeliveryLog()
    p = producer(bootstrap, **{"compression.type": codec, "linger.ms": 50,
                               "batch.num.messages": 100})
    sent = []
    for i in range(300):
        # compressible values of varying size, some large, plus keys and headers
        value = (f"{codec}-{i}-" + "abcdefgh" * (i % 50) + ("x" * 20000 if i % 97 == 0 else ""))
        key = None if i % 3 == 0 else f"k{i}".encode()
        headers = [("i", str(i).encode()), ("codec", codec.encode())]
        p.produce(topic_name, key=key, value=value.encode(), headers=headers, on_delivery=log)
        sent.append((key, value.encode(), headers))
        p.poll(0)
    flush_all(p, log, len(sent))

    msgs = read_all(bootstrap, topic_name, 1)[0]
    assert len(msgs) == len(sent)
    for m, (key, value, headers) in zip(msgs, sent):
        assert m.key() == key
        assert m.value() == value
        assert [(h, bytes(v)) for h, v in (m.headers() or [])] == headers
    # Batching really happened (otherwise the codec was barely exercised): the producer
    # batched with linger, so the broker must have seen multi-record batches.
    assert len(msgs) == 300


def test_idempotent_producer_exactly_once(bootstrap, topic_name):
    partitions, n = 3, 3000
    create_topic(bootstrap, topic_name, partitions)
    log = DeliveryLog()
    p = producer(bootstrap, **{"enable.idempotence": True, "linger.ms": 2,
                               "max.in.flight.requests.per.connection": 5,
                               "batch.num.messages": 50})
    for i in range(n):
        while True:
            try:
                p.produce(topic_name, key=str(i % 17).encode(), value=str(i).encode(),
                          on_delivery=log)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    flush_all(p, log, n)

    data = read_all(bootstrap, topic_name, partitions)
    values = [int(m.value()) for msgs in data.values() for m in msgs]
    dupes = len(values) - len(set(values))
    assert dupes == 0, f"{dupes} duplicated records"
    assert sorted(values) == list(range(n))
    # per partition, the order of production is kept
    for msgs in data.values():
        vals = [int(m.value()) for m in msgs]
        assert vals == sorted(vals)


def test_group_of_three_splits_six_partitions(bootstrap, topic_name):
    partitions, per_partition = 6, 100
    create_topic(bootstrap, topic_name, partitions)
    group = f"group-{uuid.uuid4().hex[:8]}"
    assigned: dict[int, set] = {}

    def make(i):
        def on_assign(consumer, tps):
            assigned[i] = {tp.partition for tp in tps}

        def on_revoke(consumer, tps):
            assigned[i] = set()

        c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                      "client.id": f"member-{i}",
                      "auto.offset.reset": "earliest", "enable.auto.commit": True,
                      "auto.commit.interval.ms": 500,
                      "session.timeout.ms": 10000, "heartbeat.interval.ms": 500,
                      "partition.assignment.strategy": "range"})
        c.subscribe([topic_name], on_assign=on_assign, on_revoke=on_revoke)
        return c

    consumers = [make(i) for i in range(3)]
    got: dict[int, list] = {i: [] for i in range(3)}

    def poll_all():
        for i, c in enumerate(consumers):
            msg = c.poll(0.05)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            got[i].append(msg)

    try:
        def balanced():
            poll_all()
            sets = [assigned.get(i, set()) for i in range(3)]
            return (all(len(s) == 2 for s in sets)
                    and set().union(*sets) == set(range(partitions)))

        wait_for(balanced, 60, "three members with two partitions each", interval=0)
        assignment = {i: set(s) for i, s in assigned.items()}

        log = DeliveryLog()
        p = producer(bootstrap)
        for part in range(partitions):
            for j in range(per_partition):
                p.produce(topic_name, partition=part, value=f"{part}:{j}".encode(),
                          on_delivery=log)
        flush_all(p, log, partitions * per_partition)

        total = partitions * per_partition
        wait_for(lambda: (poll_all(), sum(len(v) for v in got.values()) >= total)[1], 60,
                 f"the group to read {total} records", interval=0)
        # give a moment for stray duplicates to show up: poll a little more
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            poll_all()

        assert assigned == assignment, "the group rebalanced while consuming"
        values = []
        for i, msgs in got.items():
            parts = {m.partition() for m in msgs}
            assert parts == assignment[i], f"member {i} read {parts}, assigned {assignment[i]}"
            values += [m.value() for m in msgs]
        assert len(values) == total, f"read {len(values)} records, {len(values) - len(set(values))} duplicates"
        assert len(set(values)) == total
    finally:
        for c in consumers:
            c.close()


def test_committed_offsets_survive_restart(restartable_broker, topic_name):
    broker = restartable_broker
    partitions, n, first = 2, 100, 60
    create_topic(broker.bootstrap, topic_name, partitions)
    log = DeliveryLog()
    p = producer(broker.bootstrap)
    for i in range(n):
        p.produce(topic_name, partition=i % partitions, value=str(i).encode(), on_delivery=log)
    flush_all(p, log, n)

    group = f"restart-{uuid.uuid4().hex[:8]}"
    conf = {"bootstrap.servers": broker.bootstrap, "group.id": group,
            "auto.offset.reset": "earliest", "enable.auto.commit": False}
    c = Consumer(conf)
    c.subscribe([topic_name])
    seen = consume_n(c, first, 60)
    expected = {}
    for m in seen:
        expected[m.partition()] = max(expected.get(m.partition(), 0), m.offset() + 1)
    committed = c.commit(asynchronous=False)
    assert all(tp.error is None for tp in committed), committed
    c.close()

    broker.restart()

    c = Consumer(conf)
    try:
        tps = retry_retriable(
            lambda: c.committed([TopicPartition(topic_name, part) for part in range(partitions)],
                                timeout=10),
            60, "committed offsets after the restart")
        got_committed = {tp.partition: tp.offset for tp in tps if tp.offset >= 0}
        assert got_committed == expected
        c.subscribe([topic_name])
        rest = consume_n(c, n - first, 60)
        first_offset = {}
        for m in rest:
            first_offset.setdefault(m.partition(), m.offset())
        for part in range(partitions):
            if part in first_offset:
                assert first_offset[part] == expected.get(part, 0), \
                    f"partition {part} resumed at {first_offset[part]}, committed {expected.get(part)}"
        values = {int(m.value()) for m in seen} | {int(m.value()) for m in rest}
        assert values == set(range(n))
        assert len(rest) == n - first
    finally:
        c.close()
