"""UnregisterBroker with Apache Kafka's own CLI (`kafka-cluster unregister` and
`list-endpoints --include-fenced-brokers`) against one controller and three broker-only
nodes:

- an unknown id gets BROKER_ID_NOT_REGISTERED in Kafka's words; a live broker is refused
  (Gregor removes only fenced brokers, see the README's protocol notes);
- a broker-only node stopped for good and fenced is unregistered: DescribeCluster no longer
  lists it, fenced or not, it leaves the quorum's observers, and the active controller stops
  logging connection-refused lines for it;
- started again, it registers and rejoins as an observer.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time

import pytest

from cluster import cluster_fixture
from conftest import SCRIPTS, wait_for

pytestmark = pytest.mark.skipif(
    shutil.which("java") is None or os.environ.get("GREGOR_JAVA_TESTS") == "0",
    reason="needs java (and scripts/kafka-dist.sh); GREGOR_JAVA_TESTS=0 turns these off")

FAST_FENCING = {"broker.session.timeout.ms": 3000, "broker.heartbeat.interval.ms": 500}
CONTROLLER, BROKERS = 1, {2, 3, 4}
cluster = cluster_fixture(scope="module", size=3, controllers=1, overrides=FAST_FENCING)


def cluster_tool(*args: str) -> subprocess.CompletedProcess:
    """`kafka-cluster ARGS...` through scripts/kafka.sh; stdout and stderr together."""
    return subprocess.run([str(SCRIPTS / "kafka.sh"), "cluster", *args], text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)


def unregister(c, node_id: int) -> subprocess.CompletedProcess:
    return cluster_tool("unregister", "--bootstrap-server", c.bootstrap, "--id", str(node_id))


def endpoints(c) -> dict[int, str]:
    """`kafka-cluster list-endpoints --include-fenced-brokers`: {broker id: its row}."""
    out = cluster_tool("list-endpoints", "--bootstrap-server", c.bootstrap,
                       "--include-fenced-brokers")
    assert out.returncode == 0, out.stdout
    rows = [line.split() for line in out.stdout.splitlines()[1:] if line.strip()]
    return {int(r[0]): " ".join(r) for r in rows if r[0].isdigit()}


def fenced(row: str) -> bool:
    """Whether a list-endpoints row says fenced (its STATE column: fenced or unfenced)."""
    return re.search(r"\bfenced\b", row.lower()) is not None


def observers(c) -> set[int]:
    out = c.gregor("metadata-quorum", "--bootstrap-server", c.bootstrap, "describe", "--status")
    row = re.search(r"CurrentObservers:\s+(.*)", out).group(1)
    return {m["id"] for m in json.loads(row)}


def refused_lines(c, node_id: int) -> int:
    """Lines of the active controller's log saying it could not reach `node_id`."""
    log = c.nodes[CONTROLLER].log_path.read_text(errors="replace")
    return sum(1 for line in log.splitlines()
               if f"to node {node_id} at" in line and "refused" in line.lower())


def test_an_unknown_id_is_not_registered_and_a_live_broker_is_refused(cluster):
    out = unregister(cluster, 99)
    assert out.returncode != 0, out.stdout
    assert "Broker ID 99 is not currently registered" in out.stdout, out.stdout
    out = unregister(cluster, 3)
    assert out.returncode != 0, out.stdout
    assert "broker 3 is not fenced" in out.stdout, out.stdout
    rows = endpoints(cluster)
    assert set(rows) == BROKERS and not any(fenced(r) for r in rows.values()), rows


def test_a_stopped_broker_is_unregistered_and_no_longer_replicated_to(cluster):
    c, victim = cluster, 4
    wait_for(lambda: observers(c) == BROKERS, 15, "every broker to be an observer")
    c.kill(victim)
    wait_for(lambda: fenced(endpoints(c).get(victim, "")), 20,
             f"broker {victim} to show fenced")
    # Before: the controller keeps trying to replicate to it.
    start, before = time.monotonic(), refused_lines(c, victim)
    wait_for(lambda: refused_lines(c, victim) >= before + 3, 20,
             "connection-refused lines for the stopped broker")
    window = time.monotonic() - start

    out = unregister(c, victim)
    assert out.returncode == 0, out.stdout
    assert f"Broker {victim} is no longer registered" in out.stdout, out.stdout
    assert victim not in endpoints(c), "DescribeCluster still lists it"
    assert victim not in c.brokers()
    wait_for(lambda: observers(c) == BROKERS - {victim}, 15, "it to leave the observers")
    # After: over a window at least as long as the one that gathered three lines (the absence
    # of a line cannot be awaited), none more.
    after = refused_lines(c, victim)
    time.sleep(max(2 * window, 2.0))
    assert refused_lines(c, victim) == after, "the controller still replicates to it"
    out = unregister(c, victim)
    assert out.returncode != 0 and "is not currently registered" in out.stdout, out.stdout

    # Started again, it simply registers again and rejoins the quorum.
    c.start(victim)
    wait_for(lambda: (rows := endpoints(c)) and victim in rows and not fenced(rows[victim]),
             30, f"broker {victim} to register again")
    wait_for(lambda: observers(c) == BROKERS, 15, "it to be an observer again")
