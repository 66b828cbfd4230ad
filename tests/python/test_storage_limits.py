"""A node's storage at its limits and across restarts: the open-file limit it raises at
start-up; a partition whose log cannot be opened, which goes offline alone while the node
applies the rest of the metadata and serves every other partition; the clean-shutdown marker,
which lets a cleanly stopped node open its logs without recovery.

Gregor's own behaviour, not Kafka's: Kafka takes a whole log dir offline when one partition's
directory fails (and stops when it was the last one), and leaves the open-file limit to the
service manager. (Kafka has the marker too, `.kafka_cleanshutdown`.)
"""

from __future__ import annotations

import re
import resource
import urllib.request

import pytest
from confluent_kafka import KafkaError, Producer

from conftest import GregorBroker, gregor_binary, wait_for
from helpers import create_topic, read_all

if not gregor_binary().exists():
    pytest.skip("no gregor binary", allow_module_level=True)

MARKER = ".gregor_cleanshutdown"


def limits(pid: int) -> tuple[int, int]:
    """The soft and hard open-file limits of process `pid`."""
    text = open(f"/proc/{pid}/limits").read()
    soft, hard = re.search(r"^Max open files\s+(\d+)\s+(\d+)", text, re.M).groups()
    return int(soft), int(hard)


def metric(b: GregorBroker, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{b.metrics_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))


def produce_one(bootstrap: str, topic: str, partition: int) -> KafkaError | None:
    """Produces one record to `partition` (no retries): its error, None when acknowledged."""
    p = Producer({"bootstrap.servers": bootstrap, "retries": 0, "message.timeout.ms": 10000,
                  "enable.idempotence": False})
    result = []
    p.produce(topic, b"v", partition=partition, on_delivery=lambda e, m: result.append(e))
    p.flush(15)
    assert result, "no delivery report"
    return result[0]


@pytest.fixture
def node(tmp_path):
    b = GregorBroker(gregor_binary(), tmp_path)
    yield b
    b.stop()


def test_the_soft_open_file_limit_is_raised_to_the_hard_limit(node):
    hard = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 8192)
    node.preexec_fn = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    node.start()
    assert limits(node.proc.pid) == (hard, hard)
    assert f"open-file limit raised from 256 to the hard limit {hard}" in node.log_tail()
    # 300 partitions hold more descriptors than the 256 the node started with.
    create_topic(node.bootstrap, "many", 300)
    for partition in (0, 150, 299):
        assert produce_one(node.bootstrap, "many", partition) is None
    assert metric(node, "gregor_offline_replicas") == 0


def test_a_partition_whose_log_cannot_be_opened_goes_offline_alone(node):
    node.start()
    # Something that is not a directory where partition 2's directory goes.
    (node.data_dir / "offl-2").write_text("not a partition directory")
    create_topic(node.bootstrap, "offl", 4)
    error = produce_one(node.bootstrap, "offl", 2)
    assert error is not None and error.code() == KafkaError.KAFKA_STORAGE_ERROR, error
    for partition in (0, 1, 3):
        assert produce_one(node.bootstrap, "offl", partition) is None
    # The OS's reason is in the log, once for the partition.
    wait_for(lambda: "offline until the node restarts" in node.log_tail(), 10, "the error logged")
    log = node.log_path.read_text()
    offline = [line for line in log.splitlines() if "cannot be opened" in line]
    assert len(offline) == 1 and "offl-2" in offline[0] and "os error" in offline[0], offline
    assert metric(node, "gregor_offline_replicas") == 1
    # The metadata after it still applies: a new topic serves.
    create_topic(node.bootstrap, "after", 1)
    assert produce_one(node.bootstrap, "after", 0) is None
    assert "applying committed metadata failed" not in node.log_path.read_text()

    # With the obstacle gone, a restart brings the replica back, empty. (A log never opened
    # in this run was never recovered either: the stop marks no clean shutdown.)
    assert node.stop() == 0
    assert not (node.data_dir / MARKER).exists()
    (node.data_dir / "offl-2").unlink()
    node.start()
    wait_for(lambda: produce_one(node.bootstrap, "offl", 2) is None, 30, "partition 2 back")
    assert metric(node, "gregor_offline_replicas") == 0


def this_start(node: GregorBroker) -> str:
    """The log of the node's latest start."""
    return node.log_path.read_text().rsplit("=== starting:", 1)[-1]


def test_a_clean_stop_marks_the_log_dir_for_a_start_without_recovery_and_a_kill_does_not(node):
    marker = node.data_dir / MARKER
    node.start()
    create_topic(node.bootstrap, "clean", 2)
    for partition in (0, 1):
        assert produce_one(node.bootstrap, "clean", partition) is None
    assert not marker.exists()
    assert node.stop() == 0
    assert marker.exists()

    node.start()
    assert not marker.exists(), "taken as the node starts"
    assert "shut down cleanly: its logs open without recovery" in this_start(node)
    assert {p: len(m) for p, m in read_all(node.bootstrap, "clean", 2).items()} == {0: 1, 1: 1}
    assert produce_one(node.bootstrap, "clean", 0) is None

    node.kill()
    assert not marker.exists()
    node.start()
    assert "shut down cleanly" not in this_start(node)
    assert {p: len(m) for p, m in read_all(node.bootstrap, "clean", 2).items()} == {0: 2, 1: 1}
