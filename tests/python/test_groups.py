"""Consumer-group behaviour beyond a single stable generation."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, KafkaException, Producer
from kafka import KafkaConsumer, KafkaProducer, TopicPartition as KPTopicPartition

from conftest import wait_for
from helpers import DeliveryLog, create_topic


def test_rebalance_after_a_member_leaves(bootstrap, topic_name):
    """Three members share six partitions; one leaves after committing; the two left take
    over its partitions (three each) and resume from its committed offsets: every record is
    read, and none twice."""
    partitions, per_partition = 6, 50
    create_topic(bootstrap, topic_name, partitions)
    group = f"leave-{uuid.uuid4().hex[:8]}"
    assigned: dict[int, set] = {}

    def make(i):
        def on_assign(c, tps):
            assigned[i] = {tp.partition for tp in tps}

        def on_revoke(c, tps):
            # commit what was processed before giving the partitions away
            try:
                c.commit(asynchronous=False)
            except KafkaException:
                pass  # nothing to commit
            assigned[i] = set()

        c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                      "auto.offset.reset": "earliest", "enable.auto.commit": False,
                      "session.timeout.ms": 10000, "heartbeat.interval.ms": 500,
                      "partition.assignment.strategy": "range"})
        c.subscribe([topic_name], on_assign=on_assign, on_revoke=on_revoke)
        return c

    consumers = {i: make(i) for i in range(3)}
    got: list = []

    def poll_all():
        for c in consumers.values():
            msg = c.poll(0.05)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            got.append((msg.partition(), msg.offset()))
            c.commit(message=msg, asynchronous=False)

    def produce(round_no):
        log = DeliveryLog()
        p = Producer({"bootstrap.servers": bootstrap})
        for part in range(partitions):
            for j in range(per_partition):
                p.produce(topic_name, partition=part, value=f"{round_no}:{part}:{j}".encode(),
                          on_delivery=log)
        assert p.flush(30) == 0 and not log.errors

    try:
        wait_for(lambda: (poll_all(), [len(assigned.get(i, ())) for i in range(3)] == [2, 2, 2])[1],
                 60, "three members with two partitions each", interval=0)
        produce(0)
        wait_for(lambda: (poll_all(), len(got) >= partitions * per_partition)[1], 60,
                 "the first round to be read", interval=0)

        consumers.pop(2).close()  # leaves the group (LeaveGroup), after committing
        assigned.pop(2, None)
        wait_for(lambda: (poll_all(), sorted(len(assigned.get(i, ())) for i in (0, 1)) == [3, 3])[1],
                 60, "two members with three partitions each", interval=0)
        produce(1)
        total = 2 * partitions * per_partition
        wait_for(lambda: (poll_all(), len(got) >= total)[1], 60,
                 f"both rounds ({total} records) to be read", interval=0)
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            poll_all()
        assert len(got) == len(set(got)) == total, \
            f"{len(got)} read, {len(got) - len(set(got))} twice"
    finally:
        for c in consumers.values():
            c.close()


def test_kafka_python_group_commit_and_resume(bootstrap, topic_name):
    """kafka-python: auto-created 3-partition topic via the admin client, a group consumer
    that commits part way, and a second consumer of the group that resumes there."""
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=[bootstrap])
    admin.create_topics([NewTopic(topic_name, num_partitions=3, replication_factor=1)])
    admin.close()

    producer = KafkaProducer(bootstrap_servers=[bootstrap], acks="all",
                             compression_type="gzip", linger_ms=10)
    futures = [producer.send(topic_name, key=str(i % 3).encode(), value=str(i).encode())
               for i in range(90)]
    producer.flush()
    for f in futures:
        f.get(timeout=30)
    producer.close()

    group = f"kp-{uuid.uuid4().hex[:8]}"
    c1 = KafkaConsumer(topic_name, group_id=group, bootstrap_servers=[bootstrap],
                       auto_offset_reset="earliest", enable_auto_commit=False,
                       consumer_timeout_ms=15000)
    first = []
    for msg in c1:
        first.append(msg)
        if len(first) == 40:
            break
    c1.commit()
    positions = {}
    for m in first:
        positions[m.partition] = max(positions.get(m.partition, 0), m.offset + 1)
    committed = {p: c1.committed(KPTopicPartition(topic_name, p)) for p in positions}
    assert committed == positions
    c1.close()

    c2 = KafkaConsumer(topic_name, group_id=group, bootstrap_servers=[bootstrap],
                       auto_offset_reset="earliest", enable_auto_commit=False,
                       consumer_timeout_ms=10000)
    rest = []
    for msg in c2:
        rest.append(msg)
        if len(rest) == 50:
            break
    c2.close()
    values = sorted(int(m.value) for m in first + rest)
    assert values == list(range(90)), f"{len(values)} read"
