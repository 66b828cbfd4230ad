"""Three Gregor nodes (each broker and controller) started from Kafka-style server.properties:
they form one metadata quorum, list each other, place an RF=3 topic across all three and keep
logs only of their own replicas; after a whole-cluster restart the leaders know at once, from
their high-watermark checkpoints, what was committed. Failover under load is in
test_replication.py."""

from __future__ import annotations

import socket
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from cluster import cluster_fixture, running_cluster
from conftest import wait_for
from helpers import read_all

# One cluster for the tests that only read or add metadata; a fresh one for each test that
# stops or kills nodes, so no test depends on another's leftovers.
cluster = cluster_fixture(scope="module")
fresh_cluster = cluster_fixture(scope="function")

NODES = {1, 2, 3}


def high_watermark(c, topic: str, partition: int = 0) -> int:
    consumer = Consumer({"bootstrap.servers": c.bootstrap, "group.id": "watermarks"})
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=5)[1]
    finally:
        consumer.close()


def create(c, topic: str, partitions: int, replication_factor: int = 3, timeout: float = 30.0,
           assignment: list[list[int]] | None = None):
    """Create `topic` through the cluster (with an explicit replica `assignment` when given) and
    wait until every running node reports a leader for each partition."""
    admin = c.admin()  # the futures fail with _DESTROY once the client is collected
    new = (NewTopic(topic, num_partitions=len(assignment), replica_assignment=assignment)
           if assignment else
           NewTopic(topic, num_partitions=partitions, replication_factor=replication_factor))
    futures = admin.create_topics([new], operation_timeout=timeout, request_timeout=timeout)
    futures[topic].result(timeout=timeout)
    running = [i for i, n in c.nodes.items() if n.running()]

    def placed():
        for node_id in running:
            parts = c.describe(topic, node_id)
            if len(parts) != partitions or any(p.leader < 0 for p in parts.values()):
                return False
        return True

    wait_for(placed, timeout, f"nodes {running} to report leaders for all of {topic}")


def test_every_node_lists_all_three_brokers(cluster):
    for node_id, n in cluster.nodes.items():
        md = cluster.metadata(node_id)
        assert set(md.brokers) == NODES, f"node {node_id} lists {sorted(md.brokers)}"
        addrs = {b.id: (b.host, b.port) for b in md.brokers.values()}
        assert addrs == {i: ("127.0.0.1", m.port) for i, m in cluster.nodes.items()}
        assert md.cluster_id == cluster.cluster_id


def test_describe_cluster_names_the_formatted_cluster(cluster):
    admin = cluster.admin()
    desc = admin.describe_cluster(request_timeout=10).result(timeout=15)
    assert {n.id for n in desc.nodes} == NODES
    assert desc.cluster_id == cluster.cluster_id
    assert desc.controller is not None and desc.controller.id in NODES


def test_rf3_topic_has_three_replicas_and_spreads_leaders(cluster, topic_name):
    create(cluster, topic_name, partitions=6)
    views = {node_id: cluster.describe(topic_name, node_id) for node_id in cluster.nodes}
    parts = views[1]
    for node_id, view in views.items():
        assert view == parts, f"node {node_id} disagrees with node 1"
    for p, state in parts.items():
        assert sorted(state.replicas) == sorted(NODES), f"partition {p}: {state}"
        assert state.leader == state.replicas[0], f"partition {p}: leader is not preferred"
        assert sorted(state.isr) == sorted(NODES), f"partition {p}: {state}"
    assert Counter(s.leader for s in parts.values()) == {1: 2, 2: 2, 3: 2}


def test_default_replication_factor_comes_from_server_properties(cluster, topic_name):
    # replication_factor=-1 asks for the broker default (default.replication.factor=3).
    create(cluster, topic_name, partitions=3, replication_factor=-1)
    parts = cluster.describe(topic_name)
    assert all(sorted(s.replicas) == sorted(NODES) for s in parts.values()), parts


def test_metadata_commits_with_one_node_stopped_and_reaches_it_on_restart(fresh_cluster,
                                                                           topic_name):
    c = fresh_cluster
    # Stop the active controller: it hands the quorum over, and clients that cached it as the
    # controller must not notice (every broker takes admin requests and forwards them).
    stopped = c.quorum_leader()
    assert c.stop(stopped) == 0, c.log_tail(stopped)
    rest = sorted(NODES - {stopped})
    # Two of three voters are a majority: the change commits, and both survivors see it. The
    # stopped broker is fenced, so new replicas go to the other two.
    create(c, topic_name, partitions=2, replication_factor=2)
    c.start(stopped)
    wait_for(lambda: len(c.describe(topic_name, stopped)) == 2, 30,
             f"node {stopped} to learn {topic_name} after its restart")
    assert c.describe(topic_name, stopped) == c.describe(topic_name, rest[0])


def test_killed_node_rejoins_after_restart(fresh_cluster, topic_name):
    c = fresh_cluster
    assert c.kill(2) == -9
    create(c, topic_name, partitions=3)
    c.start(2)
    for node_id in NODES:
        c.wait_brokers(node_id)
    wait_for(lambda: c.describe(topic_name, 2) == c.describe(topic_name, 1), 30,
             f"node 2 to agree with node 1 on {topic_name}")


def test_quorum_elects_a_new_leader_when_its_leader_is_killed(fresh_cluster, topic_name):
    c = fresh_cluster
    old = c.quorum_leader()
    assert old in NODES
    c.kill(old)
    survivors = NODES - {old}
    wait_for(lambda: c.quorum_leader(min(survivors)) in survivors, 30,
             f"a quorum leader among {sorted(survivors)}")
    # Replicas on the survivors only: whether the killed broker is fenced yet (and so whether
    # RF 3 can be placed) is a race this test is not about.
    create(c, topic_name, partitions=3, assignment=[sorted(survivors)] * 3)
    c.start(old)
    wait_for(lambda: c.describe(topic_name, old) == c.describe(topic_name, min(survivors)), 30,
             f"node {old} to learn {topic_name} after its restart")


def test_acked_records_survive_killing_the_partition_leader(fresh_cluster, topic_name):
    c = fresh_cluster
    create(c, topic_name, partitions=1)
    acked, failed = [], []
    p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "linger.ms": 5,
                  "message.timeout.ms": 20_000})
    for i in range(1000):
        p.produce(topic_name, value=f"record-{i:05d}".encode(),
                  on_delivery=lambda err, msg: (failed if err else acked).append(msg))
    p.flush(30)
    assert not failed, f"{len(failed)} not acknowledged, first: {failed[0].error()}"
    assert len(acked) == 1000

    leader = c.describe(topic_name)[0].leader
    c.kill(leader)
    survivors = NODES - {leader}
    wait_for(lambda: c.describe(topic_name, min(survivors))[0].leader in survivors, 30,
             f"a new leader for {topic_name}-0 among {sorted(survivors)}")
    # The new leader knows its high watermark once a follower has fetched from it.
    wait_for(lambda: high_watermark(c, topic_name) >= len(acked), 30,
             f"the new leader's high watermark to cover the {len(acked)} acknowledged records")
    got = read_all(c.bootstrap, topic_name, 1, timeout=30)
    assert [m.value() for m in got[0]] == [m.value() for m in acked]


def partition_dirs(data_dir: Path, topic: str) -> set[str]:
    """The `topic` partition directories in a node's log dir."""
    return {d.name for d in data_dir.glob(f"{topic}-*") if d.is_dir()}


def test_each_node_holds_logs_only_of_its_own_replicas(cluster, topic_name):
    create(cluster, topic_name, partitions=3, replication_factor=1)
    parts = cluster.describe(topic_name)
    assert sorted(s.replicas[0] for s in parts.values()) == sorted(NODES), parts
    own = {node_id: {f"{topic_name}-{p}" for p, s in parts.items() if s.replicas == [node_id]}
           for node_id in NODES}
    for node_id, n in cluster.nodes.items():
        wait_for(lambda: partition_dirs(n.data_dir, topic_name) == own[node_id], 10,
                 f"node {node_id} to hold {sorted(own[node_id])} of {topic_name}")
        assert len(own[node_id]) == 1


def watermarks(bootstrap: str, topic: str, partitions: int) -> list[int]:
    """ListOffsets latest of each partition (raises while a leader answers
    OFFSET_NOT_AVAILABLE)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks"})
    try:
        return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1]
                for p in range(partitions)]
    finally:
        consumer.close()


def test_after_a_whole_cluster_restart_leaders_know_at_once_what_was_committed(tmp_path,
                                                                               topic_name):
    # Leaderships and ISRs survive the stops (no controlled shutdown, nobody fenced for a
    # minute), so after the restart partitions 0 and 1 are led by nodes 1 and 2 with node 3
    # still in their ISR. Node 3 comes back last: until then only a checkpointed high
    # watermark tells its leaders what is committed. Without it they would answer
    # OFFSET_NOT_AVAILABLE, and consumers see nothing, until node 3 left the ISR 30 s later.
    # Meanwhile a stand-in listener on node 3's port answers the controller's liveness probe,
    # as the host of a broker still starting up would, so node 3 is not fenced (and taken out
    # of the ISRs) at once.
    overrides = {"controlled.shutdown.enable": "false", "broker.session.timeout.ms": 60_000}
    with running_cluster(tmp_path, overrides=overrides) as c:
        create(c, topic_name, 2, assignment=[[1, 2, 3], [2, 3, 1]])
        p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "linger.ms": 5})
        failed = []
        for i in range(200):
            p.produce(topic_name, value=f"r{i:03d}".encode(), partition=i % 2,
                      on_delivery=lambda err, _msg: err and failed.append(err))
        assert p.flush(30) == 0 and not failed, failed[:3]

        for node_id in (1, 2, 3):
            assert c.stop(node_id) == 0, c.log_tail(node_id)
        with socket.create_server((c.nodes[3].host, c.nodes[3].port)):
            restarted = time.monotonic()
            for node_id in (1, 2):
                c.nodes[node_id].launch()
            for node_id in (1, 2):
                c.wait_ready(node_id)
            bootstrap = ",".join(c.nodes[i].bootstrap for i in (1, 2))
            wait_for(lambda: watermarks(bootstrap, topic_name, 2) == [100, 100], 15,
                     "ListOffsets latest to give every acknowledged record with node 3 down")
            took = time.monotonic() - restarted
            got = read_all(bootstrap, topic_name, 2, extra={"auto.offset.reset": "earliest"})
            assert [len(got[0]), len(got[1])] == [100, 100]
            assert sorted(m.value() for ms in got.values() for m in ms) == \
                [f"r{i:03d}".encode() for i in range(200)]
            assert all(3 in s.isr for s in c.describe(topic_name, 1).values()), \
                "node 3 was still in the ISRs: the high watermarks came from the checkpoints"

        c.start(3)
        wait_for(lambda: all(len(s.isr) == 3 for s in c.describe(topic_name).values()), 60,
                 "node 3 back in every ISR")
        assert watermarks(c.bootstrap, topic_name, 2) == [100, 100]
        print(f"watermarks answered {took:.1f}s after the restart began")
