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
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from conftest import SCRIPTS, free_ports, gregor_binary, port_accepts, tail, wait_for
from helpers import read_all

pytestmark = [
    pytest.mark.skipif(
        shutil.which("java") is None or os.environ.get("GREGOR_JAVA_TESTS") == "0",
        reason="needs java (and scripts/kafka-dist.sh); GREGOR_JAVA_TESTS=0 turns these off"),
    pytest.mark.skipif(
        bool(os.environ.get("KAFKA_BOOTSTRAP"))
        or os.environ.get("GREGOR_TEST_BROKER", "gregor") != "gregor",
        reason="starts its own three Gregor nodes; not run against another broker"),
]


# --- Three-node cluster start-up -------------------------------------------------------------
# A stand-in until the shared three-node harness (tests/python/cluster.py, being written on
# another branch) lands: replace `Node`/`three_nodes` with it then.

class Node:
    """One combined broker+controller `gregor server-start` process."""

    def __init__(self, binary: Path, workdir: Path, node_id: int, ports: list[int],
                 voters: str, cluster_id: str):
        self.id = node_id
        self.binary = binary
        self.dir = workdir / f"n{node_id}"
        self.data = self.dir / "data"
        self.log_path = self.dir / "gregor.log"
        self.port, self.controller_port, self.metrics_port = ports
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.props = self.dir / "server.properties"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.props.write_text("\n".join([
            f"node.id={node_id}",
            "process.roles=broker,controller",
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
            f"controller.quorum.voters={voters}",
            f"log.dirs={self.data}",
            "min.insync.replicas=2",
            "offsets.topic.replication.factor=3",
            "broker.heartbeat.interval.ms=500",
            # Long enough for a broker frozen with SIGSTOP to stay unfenced (and so a valid
            # reassignment target) while the tools run.
            "broker.session.timeout.ms=15000",
            # The test elects preferred leaders itself.
            "auto.leader.rebalance.enable=false",
            f"metrics.listener=127.0.0.1:{self.metrics_port}",
        ]) + "\n")
        subprocess.run([str(binary), "storage", "format", "-t", cluster_id, "-c", str(self.props)],
                       check=True, stdout=subprocess.DEVNULL, timeout=60)
        self.proc: subprocess.Popen | None = None

    def start(self):
        log = open(self.log_path, "ab")
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info"), NO_COLOR="1")
        self.proc = subprocess.Popen([str(self.binary), "server-start", str(self.props)],
                                     stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env)
        log.close()

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"node {self.id} exited with {self.proc.returncode}\n"
                               f"{tail(self.log_path)}")
        if not port_accepts(self.port):
            return False
        try:
            url = f"http://127.0.0.1:{self.metrics_port}/readyz"
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def three_nodes(tmp_path_factory):
    binary = gregor_binary()
    if not binary.exists():
        pytest.fail(f"gregor binary not found at {binary}: build it or set GREGOR_BIN")
    workdir = tmp_path_factory.mktemp("cluster3")
    ports = free_ports(9)
    voters = ",".join(f"{i}@127.0.0.1:{ports[(i - 1) * 3 + 1]}" for i in (1, 2, 3))
    cluster_id = subprocess.run([str(binary), "storage", "random-uuid"], check=True, text=True,
                                stdout=subprocess.PIPE, timeout=30).stdout.strip()
    nodes = [Node(binary, workdir, i, ports[(i - 1) * 3:i * 3], voters, cluster_id)
             for i in (1, 2, 3)]
    try:
        for n in nodes:
            n.start()
        for n in nodes:
            wait_for(n.ready, 90, f"node {n.id} to be ready")
        admin = AdminClient({"bootstrap.servers": nodes[0].bootstrap})
        wait_for(lambda: len(admin.list_topics(timeout=5).brokers) == 3, 60,
                 "all three brokers to register")
        yield nodes
    except BaseException:
        for n in nodes:
            print(f"--- node {n.id} ---\n{tail(n.log_path)}")
        raise
    finally:
        for n in nodes:
            n.stop()

# --- end of the three-node start-up stand-in -------------------------------------------------


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


def local_log_bytes(node: Node, topic: str) -> int:
    """Bytes of record data `node` holds for `topic`-0."""
    d = node.data / f"{topic}-0"
    return sum(f.stat().st_size for f in d.glob("*.log")) if d.is_dir() else 0


def test_reassign_partitions_and_preferred_leader_election(three_nodes, tmp_path):
    n1, n2, n3 = three_nodes
    bootstrap = ",".join(n.bootstrap for n in three_nodes)
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
    wait_for(lambda: local_log_bytes(n1, topic) == 0, 30, "node 1 to delete its copy")
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


def test_a_reassignment_waiting_for_a_frozen_broker_is_listed_and_cancelled(three_nodes, tmp_path):
    admin = AdminClient({"bootstrap.servers": three_nodes[0].bootstrap})
    controller = admin.describe_cluster().result(timeout=30).controller.id
    # Freeze a broker other than the active controller, so admin requests keep an answer.
    frozen = next(n for n in three_nodes if n.id != controller)
    a, b = [n for n in three_nodes if n is not frozen]
    bootstrap = f"{a.bootstrap},{b.bootstrap}"
    topic = "cancelled"
    kafka("topics", "--bootstrap-server", bootstrap, "--create", "--topic", topic,
          "--replica-assignment", f"{a.id}:{b.id}")
    wait_for(lambda: describe(bootstrap, topic)[2] == {a.id, b.id}, 60, "both replicas in sync")
    values = [f"v-{i}" for i in range(100)]
    produce(bootstrap, topic, values)
    plan = tmp_path / "cancel.json"
    plan.write_text(json.dumps({"version": 1, "partitions": [
        {"topic": topic, "partition": 0, "replicas": [a.id, frozen.id]}]}))
    frozen.proc.send_signal(signal.SIGSTOP)
    try:
        out = kafka("reassign-partitions", "--bootstrap-server", bootstrap,
                    "--reassignment-json-file", str(plan), "--execute")
        assert "Successfully started partition reassignment" in out, out
        out = kafka("reassign-partitions", "--bootstrap-server", bootstrap, "--list")
        assert (f"{topic}-0: replicas: {a.id},{frozen.id},{b.id}. adding: {frozen.id}. "
                f"removing: {b.id}.") in out, out
        out = kafka("reassign-partitions", "--bootstrap-server", bootstrap,
                    "--reassignment-json-file", str(plan), "--verify", "--preserve-throttles")
        assert f"Reassignment of partition {topic}-0 is still in progress." in out, out
        out = kafka("reassign-partitions", "--bootstrap-server", bootstrap,
                    "--reassignment-json-file", str(plan), "--cancel", "--preserve-throttles")
        assert f"Successfully cancelled partition reassignment for: {topic}-0" in out, out
        assert describe(bootstrap, topic)[:2] == (a.id, [a.id, b.id])
        assert "No partition reassignments found." in kafka(
            "reassign-partitions", "--bootstrap-server", bootstrap, "--list")
    finally:
        frozen.proc.send_signal(signal.SIGCONT)
    got = read_all(bootstrap, topic, 1)[0]
    assert [m.value().decode() for m in got] == values
    wait_for(lambda: len(admin.list_topics(timeout=5).brokers) == 3, 60,
             f"broker {frozen.id} to be back")
