"""Partition reassignment and leader election on a real three-node Gregor cluster, driven by
Apache Kafka's own tools: kafka-reassign-partitions (--execute, --verify) moves a partition
from brokers [1, 2] to [2, 3], kafka-leader-election (--election-type preferred) moves its
leadership to the preferred replica, and every record acknowledged with acks=all before,
between and after reads back intact. A reassignment that cannot finish (its new replica is
frozen) shows in --list and --verify and is undone by --cancel."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from confluent_kafka import Producer

from cluster import ClusterNode, cluster_fixture
from conftest import SCRIPTS, wait_for
from helpers import read_all

pytestmark = pytest.mark.skipif(
    shutil.which("java") is None or os.environ.get("GREGOR_JAVA_TESTS") == "0",
    reason="needs java (and scripts/kafka-dist.sh); GREGOR_JAVA_TESTS=0 turns these off")

# Fencing takes broker.session.timeout.ms: long enough here for a broker frozen with SIGSTOP
# to stay unfenced (and so a valid reassignment target) while the tools run. The test elects
# preferred leaders itself.
cluster = cluster_fixture(overrides={
    "broker.heartbeat.interval.ms": 500,
    "broker.session.timeout.ms": 15000,
    "auto.leader.rebalance.enable": "false",
})


def kafka(*args: str, timeout: float = 120) -> str:
    """Run `scripts/kafka.sh ARGS...`; return stdout, fail with stderr on a non-zero exit."""
    proc = subprocess.run([str(SCRIPTS / "kafka.sh"), *args], text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"kafka.sh {' '.join(args)} exited {proc.returncode}\n"
                    f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}")
    return proc.stdout


def describe(bootstrap: str, topic: str) -> tuple[int, list[int], set[int]]:
    """(leader, replicas, ISR) of partition 0 as kafka-topics --describe shows them."""
    out = kafka("topics", "--bootstrap-server", bootstrap, "--describe", "--topic", topic)
    m = re.search(r"Partition: 0\s+Leader: (-?\d+)\s+Replicas: ([\d,]+)\s+Isr: ([\d,]*)", out)
    assert m, out
    return (int(m.group(1)), [int(r) for r in m.group(2).split(",")],
            {int(r) for r in m.group(3).split(",") if r})


def produce(bootstrap: str, topic: str, values: list[str]):
    """Produce `values` to partition 0 with acks=all; every one must be acknowledged."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    failed = []
    for v in values:
        p.produce(topic, value=v.encode(), partition=0,
                  on_delivery=lambda err, _msg: err and failed.append(err))
    assert p.flush(60) == 0, "unacknowledged records"
    assert not failed, failed


def reassign(bootstrap: str, plan: Path, topic: str, replicas: list[int]):
    plan.write_text(json.dumps({"version": 1, "partitions": [
        {"topic": topic, "partition": 0, "replicas": replicas}]}))
    out = kafka("reassign-partitions", "--bootstrap-server", bootstrap,
                "--reassignment-json-file", str(plan), "--execute")
    assert "Successfully started partition reassignment" in out, out

    def verified():
        # --verify also clears the replication throttles once nothing is moving.
        out = kafka("reassign-partitions", "--bootstrap-server", bootstrap,
                    "--reassignment-json-file", str(plan), "--verify")
        return f"Reassignment of partition {topic}-0 is completed." in out

    wait_for(verified, 120, f"{topic}-0 to move to {replicas}", interval=1)


def local_log_bytes(node: ClusterNode, topic: str) -> int:
    """Bytes of record data `node` holds for `topic`-0."""
    d = node.data_dir / f"{topic}-0"
    return sum(f.stat().st_size for f in d.glob("*.log")) if d.is_dir() else 0


def test_reassign_partitions_and_preferred_leader_election(cluster, tmp_path):
    n1, n3 = cluster.nodes[1], cluster.nodes[3]
    bootstrap = cluster.bootstrap
    topic = "moving"
    kafka("topics", "--bootstrap-server", bootstrap, "--create", "--topic", topic,
          "--replica-assignment", "1:2")
    wait_for(lambda: describe(bootstrap, topic) == (1, [1, 2], {1, 2}), 60,
             "the topic on [1, 2] led by 1")
    before = [f"before-{i}" for i in range(300)]
    produce(bootstrap, topic, before)
    wait_for(lambda: local_log_bytes(n1, topic) > 0, 10, "node 1 to hold the records")

    # [1, 2] -> [2, 3]: 3 catches up from 2's leader, joins the ISR, and the controller
    # completes the move; 1 leaves, handing leadership to 2, and drops its copy.
    reassign(bootstrap, tmp_path / "move.json", topic, [2, 3])
    leader, replicas, isr = describe(bootstrap, topic)
    assert (leader, replicas, isr) == (2, [2, 3], {2, 3})
    assert "No partition reassignments found." in kafka(
        "reassign-partitions", "--bootstrap-server", bootstrap, "--list")
    wait_for(lambda: not (n1.data_dir / f"{topic}-0").exists(), 30, "node 1 to delete its copy")
    assert local_log_bytes(n3, topic) > 0

    between = [f"between-{i}" for i in range(100)]
    produce(bootstrap, topic, between)

    # Reordering to [3, 2] completes at once and leaves 2 leading; the preferred election
    # then hands leadership to 3.
    reassign(bootstrap, tmp_path / "reorder.json", topic, [3, 2])
    assert describe(bootstrap, topic)[:2] == (2, [3, 2])
    out = kafka("leader-election", "--bootstrap-server", bootstrap,
                "--election-type", "preferred", "--topic", topic, "--partition", "0")
    assert f"Successfully completed leader election (PREFERRED) for partitions {topic}-0" in out, out
    wait_for(lambda: describe(bootstrap, topic)[0] == 3, 30, "3 to lead")
    # Nothing else needs an election: the tool succeeds and reports no change.
    out = kafka("leader-election", "--bootstrap-server", bootstrap,
                "--election-type", "preferred", "--all-topic-partitions")
    assert "Successfully completed" not in out, out

    after = [f"after-{i}" for i in range(100)]
    produce(bootstrap, topic, after)
    got = read_all(bootstrap, topic, 1)[0]
    assert [m.value().decode() for m in got] == before + between + after
    assert [m.offset() for m in got] == list(range(500))


def test_a_reassignment_waiting_for_a_frozen_broker_is_listed_and_cancelled(cluster, tmp_path):
    # Freeze a node other than the metadata quorum's leader, so admin requests keep an
    # answer. (DescribeCluster's controller id is only the answering broker, as in KRaft.)
    leader = wait_for(lambda: max(cluster.quorum_leader(), 0), 30, "a quorum leader")
    frozen = next(n for n in cluster.nodes.values() if n.node_id != leader)
    a, b = [n for n in cluster.nodes.values() if n is not frozen]
    bootstrap = f"{a.bootstrap},{b.bootstrap}"
    topic = "cancelled"
    kafka("topics", "--bootstrap-server", bootstrap, "--create", "--topic", topic,
          "--replica-assignment", f"{a.node_id}:{b.node_id}")
    wait_for(lambda: describe(bootstrap, topic)[2] == {a.node_id, b.node_id}, 60, "both replicas in sync")
    values = [f"v-{i}" for i in range(100)]
    produce(bootstrap, topic, values)
    plan = tmp_path / "cancel.json"
    plan.write_text(json.dumps({"version": 1, "partitions": [
        {"topic": topic, "partition": 0, "replicas": [a.node_id, frozen.node_id]}]}))
    cluster.freeze(frozen.node_id)
    try:
        out = kafka("reassign-partitions", "--bootstrap-server", bootstrap,
                    "--reassignment-json-file", str(plan), "--execute")
        assert "Successfully started partition reassignment" in out, out
        out = kafka("reassign-partitions", "--bootstrap-server", bootstrap, "--list")
        assert (f"{topic}-0: replicas: {a.node_id},{frozen.node_id},{b.node_id}. adding: {frozen.node_id}. "
                f"removing: {b.node_id}.") in out, out
        out = kafka("reassign-partitions", "--bootstrap-server", bootstrap,
                    "--reassignment-json-file", str(plan), "--verify", "--preserve-throttles")
        assert f"Reassignment of partition {topic}-0 is still in progress." in out, out
        out = kafka("reassign-partitions", "--bootstrap-server", bootstrap,
                    "--reassignment-json-file", str(plan), "--cancel", "--preserve-throttles")
        assert f"Successfully cancelled partition reassignment for: {topic}-0" in out, out
        assert describe(bootstrap, topic)[:2] == (a.node_id, [a.node_id, b.node_id])
        assert "No partition reassignments found." in kafka(
            "reassign-partitions", "--bootstrap-server", bootstrap, "--list")
    finally:
        cluster.thaw(frozen.node_id)
    got = read_all(bootstrap, topic, 1)[0]
    assert [m.value().decode() for m in got] == values
    cluster.wait_brokers(a.node_id, timeout=60)
