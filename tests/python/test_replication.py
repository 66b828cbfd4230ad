"""Failover of a three-node Gregor cluster under real client load: RF=3, min.insync.replicas=2,
acks=all idempotent producers (librdkafka), consumers reading everything back afterwards.

- kill -9 a partition leader mid-stream: a new leader within seconds, writes continue, every
  acknowledged record is readable exactly once; the killed node truncates, catches up and
  rejoins every ISR after its restart;
- SIGTERM one node mid-stream (controlled shutdown) and start it again: no produce fails;
- kill the active controller, then a second node: topic creation still works with two of
  three; with one of three, writes fail with an error and nothing acknowledged is lost; both
  return and the cluster heals;
- a consumer group's committed offsets survive the loss of its coordinator's broker.

Fencing is quick here (broker.session.timeout.ms=3000, heartbeats every 500 ms) so the suite
stays short; Kafka's defaults (9000 / 2000) behave the same, only slower.
"""

from __future__ import annotations

import time
from collections import Counter

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from cluster import cluster_fixture
from conftest import wait_for
from helpers import Stream, assert_all_acked_readable_once

FAST_FENCING = {"broker.session.timeout.ms": 3000, "broker.heartbeat.interval.ms": 500}
fresh_cluster = cluster_fixture(scope="function", overrides=FAST_FENCING)

NODES = {1, 2, 3}


def create(c, topic: str, partitions: int, timeout: float = 30.0, rf: int = 3, **configs):
    admin = c.admin()
    conf = {"min.insync.replicas": "2", **configs}
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=rf, config=conf)],
        operation_timeout=timeout, request_timeout=timeout)
    futures[topic].result(timeout=timeout)
    wait_for(lambda: all(p.leader > 0 and len(p.isr) == rf
                         for p in c.describe(topic).values())
             and len(c.describe(topic)) == partitions,
             timeout, f"{topic} to have leaders and full ISRs")


def leaders_per_broker(parts) -> Counter:
    return Counter(p.leader for p in parts.values())


def test_kill9_of_a_leader_under_idempotent_acks_all_loses_nothing(fresh_cluster, topic_name):
    c = fresh_cluster
    create(c, topic_name, 6)
    assert leaders_per_broker(c.describe(topic_name)) == Counter({1: 2, 2: 2, 3: 2})
    victim = c.describe(topic_name)[0].leader
    survivors = NODES - {victim}
    with Stream(c.bootstrap, topic_name) as s:
        wait_for(lambda: len(s.acked) > 2000, 30, "traffic to flow")
        killed_at = time.monotonic()
        c.kill(victim)
        wait_for(lambda: all(p.leader in survivors
                             for p in c.describe(topic_name, min(survivors)).values()),
                 15, "every partition to have a leader among the survivors")
        failover_s = time.monotonic() - killed_at
        wait_for(lambda: s.acked_after(time.monotonic() - 0.5) > 100
                 and s.acked_after(killed_at) > 2000, 30, "writes to continue after the kill")
        c.start(victim)
        wait_for(lambda: s.acked_after(time.monotonic() - 0.5) > 100, 30,
                 "writes to continue after the restart")
        s.stop()
    assert not s.failed, f"{len(s.failed)} produce failures, first: {s.failed[0]}"
    assert failover_s < 10, f"leaders moved only after {failover_s:.1f}s"
    assert_all_acked_readable_once(c.bootstrap, topic_name, 6, [v for _, v in s.acked])
    # The restarted node caught up and is back in every ISR.
    wait_for(lambda: all(victim in p.isr for p in c.describe(topic_name).values()), 60,
             f"node {victim} to rejoin every ISR of {topic_name}")


def test_deleted_records_stay_deleted_when_leadership_moves(fresh_cluster, topic_name):
    """DeleteRecords moves the leader's log start; the followers take it from the leader's
    fetch responses, so the next leader starts there too."""
    from confluent_kafka.admin import AdminClient
    c = fresh_cluster
    create(c, topic_name, 1)
    p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all"})
    for i in range(20):
        p.produce(topic_name, value=f"v{i}".encode())
    assert p.flush(30) == 0
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    futures = admin.delete_records([TopicPartition(topic_name, 0, 12)])
    deleted = next(iter(futures.values())).result(timeout=30)
    assert deleted.low_watermark == 12
    # One more record acknowledged by the whole ISR: every follower fetched it, and with it
    # the leader's new log start.
    p.produce(topic_name, value=b"v20")
    assert p.flush(30) == 0
    leader = c.describe(topic_name)[0].leader
    c.kill(leader)
    survivors = NODES - {leader}
    wait_for(lambda: c.describe(topic_name, min(survivors))[0].leader in survivors, 15,
             "a new leader among the survivors")
    consumer = Consumer({"bootstrap.servers": c.bootstrap, "group.id": "watermarks"})
    try:
        def watermarks():
            try:
                return consumer.get_watermark_offsets(TopicPartition(topic_name, 0),
                                                      timeout=5)
            except Exception:  # noqa: BLE001 - the metadata may still name the dead leader
                return None
        wait_for(lambda: watermarks() == (12, 21), 30, "the new leader's log to start at 12")
    finally:
        consumer.close()


def test_controlled_shutdown_and_restart_fail_no_produce_request(fresh_cluster, topic_name):
    c = fresh_cluster
    create(c, topic_name, 6)
    with Stream(c.bootstrap, topic_name) as s:
        wait_for(lambda: len(s.acked) > 2000, 30, "traffic to flow")
        node = 2
        assert c.stop(node) == 0, "SIGTERM is a clean exit"
        led = c.describe(topic_name, 1)
        assert all(p.leader != node for p in led.values()), \
            f"node {node} handed its leaderships over before stopping: {led}"
        c.start(node)
        wait_for(lambda: all(node in p.isr for p in c.describe(topic_name).values()), 60,
                 f"node {node} to rejoin every ISR")
        mark = time.monotonic()
        wait_for(lambda: s.acked_after(mark) > 1000, 30, "writes to continue after the restart")
        s.stop()
    assert not s.failed, f"{len(s.failed)} produce failures, first: {s.failed[0]}"
    assert_all_acked_readable_once(c.bootstrap, topic_name, 6, [v for _, v in s.acked])


def test_losing_the_controller_then_a_majority_and_healing(fresh_cluster, topic_name):
    c = fresh_cluster
    create(c, topic_name, 3)
    controller = c.quorum_leader()
    c.kill(controller)
    rest = sorted(NODES - {controller})
    wait_for(lambda: c.quorum_leader(rest[0]) in rest, 30, "a new active controller")
    wait_for(lambda: controller not in c.brokers(rest[0]), 30, f"node {controller} to be fenced")
    # Topic creation still works with two of three (RF 2: as in Kafka, the dead broker is
    # fenced and a replication factor above the live brokers is refused).
    create(c, f"{topic_name}-after", 3, rf=2)

    acked, failed = [], []
    # Reconnects every second at most: librdkafka's default backoff grows to 10 s while nodes
    # are down, longer than a message's 8 s, so writes right after the healing could time out
    # before the producer even reconnects.
    p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "enable.idempotence": True,
                  "message.timeout.ms": 8000, "request.timeout.ms": 5000,
                  "reconnect.backoff.max.ms": 1000})

    def delivered(err, msg):
        (failed if err else acked).append(err or msg.value())

    for i in range(300):
        p.produce(topic_name, value=f"a{i:04d}".encode(), on_delivery=delivered)
    p.flush(30)
    assert len(acked) == 300 and not failed, failed[:3]

    # One of three: no quorum to fence or elect, no ISR to acknowledge: writes fail.
    c.kill(rest[1])
    for i in range(50):
        p.produce(topic_name, value=f"b{i:04d}".encode(), on_delivery=delivered)
    p.flush(30)
    assert failed, "writes with one node of three must not be acknowledged"
    assert all(isinstance(e, KafkaError) for e in failed)

    # Both return: the cluster heals, and nothing acknowledged was lost.
    c.nodes[controller].launch()
    c.nodes[rest[1]].launch()
    c.wait_ready(controller)
    c.wait_ready(rest[1])
    wait_for(lambda: all(len(p.isr) == 3 for p in c.describe(topic_name).values()), 60,
             "every ISR to be full again")
    acked_before = len(acked)
    for i in range(100):
        p.produce(topic_name, value=f"c{i:04d}".encode(), on_delivery=delivered)
    p.flush(60)
    assert len(acked) == acked_before + 100, "writes succeed again"
    assert_all_acked_readable_once(c.bootstrap, topic_name, 3, acked)


def test_group_offsets_survive_the_loss_of_the_coordinator(fresh_cluster, topic_name):
    c = fresh_cluster
    create(c, topic_name, 3)
    p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all"})
    for i in range(300):
        p.produce(topic_name, value=f"m{i:04d}".encode(), partition=i % 3)
    p.flush(30)
    group = f"g-{topic_name}"
    conf = {"bootstrap.servers": c.bootstrap, "group.id": group, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "session.timeout.ms": 6000}
    consumer = Consumer(conf)
    consumer.subscribe([topic_name])
    seen = 0
    deadline = time.monotonic() + 60
    while seen < 150 and time.monotonic() < deadline:
        for m in consumer.consume(50, 1.0):
            if not m.error():
                seen += 1
    assert seen >= 150
    committed = consumer.commit(asynchronous=False)
    positions = {(tp.partition): tp.offset for tp in committed}
    consumer.close()

    coordinator = c.group_coordinator(group)
    c.kill(coordinator)
    survivors = NODES - {coordinator}
    wait_for(lambda: c.group_coordinator(group, min(survivors)) in survivors, 30,
             "a new coordinator for the group")
    again = Consumer(conf)
    tps = again.committed([TopicPartition(topic_name, i) for i in range(3)], timeout=30)
    assert {tp.partition: tp.offset for tp in tps} == positions
    again.close()


# A session far longer than the test waits: anything fenced here was fenced by the controller's
# probe of a broker that missed a heartbeat, not by the session timeout.
LONG_SESSION = {"broker.session.timeout.ms": 120000, "broker.heartbeat.interval.ms": 500}
long_session_cluster = cluster_fixture(scope="function", overrides=LONG_SESSION)


def test_a_dead_leader_is_fenced_early_but_a_frozen_one_waits_for_its_session(
        long_session_cluster, topic_name):
    c = long_session_cluster
    create(c, topic_name, 3)
    # A frozen process still has its listener: the kernel accepts the probe's connection, so
    # the broker keeps its leaderships (Kafka's rule: only the session timeout fences it).
    frozen = c.describe(topic_name)[0].leader
    c.freeze(frozen)
    try:
        others = sorted(NODES - {frozen})
        misses = 10  # heartbeats it misses, each one a probe the kernel answers
        deadline = time.monotonic() + misses * 0.5
        while time.monotonic() < deadline:
            assert c.describe(topic_name, others[0])[0].leader == frozen, \
                "a broker whose listener answers was fenced before its session ended"
            time.sleep(0.25)
    finally:
        c.thaw(frozen)
    # A killed process refuses connections: fenced within a few heartbeats, not 120 s.
    victim = c.describe(topic_name)[1].leader
    survivors = NODES - {victim}
    c.kill(victim)
    wait_for(lambda: all(p.leader in survivors
                         for p in c.describe(topic_name, min(survivors)).values()),
             30, "every partition to have a leader among the survivors, long before the session")
    p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "enable.idempotence": True})
    acked = []
    for i in range(100):
        p.produce(topic_name, value=f"v{i:03d}".encode(),
                  on_delivery=lambda err, msg: err or acked.append(msg.value()))
    p.flush(30)
    assert len(acked) == 100, "writes go to the new leaders"
