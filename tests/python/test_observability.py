"""Gregor's metrics and the chart's alert rules, checked by a real Prometheus (Debian's
package) scraping a three-node cluster:

- every node's /metrics passes `promtool check metrics`, and the chart's rule file passes
  `promtool check rules`;
- every alert rule's expression evaluates through Prometheus' HTTP API, and every broker
  series it reads has data;
- the replica, controller and quorum gauges agree with what the cluster's Metadata says;
- kill -9 of one node under acks=all load: the under-replicated, broker-down and
  fenced-broker alerts go pending, then firing (the rules' `for` shortened to 3 s), the ISR
  shrink counters move, one controller stays active; after the node returns the alerts
  resolve and the ISR expand counters move. The alert's timeline, as Prometheus recorded it in
  its ALERTS series, is printed.

Fencing is quick here (broker.session.timeout.ms=3000) so the test stays short.
"""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request

from confluent_kafka.admin import NewTopic

from cluster import cluster_fixture
from conftest import wait_for
from helpers import Stream
from prometheus import RULES, Prometheus, shortened_rules, tool

FAST_FENCING = {"broker.session.timeout.ms": 3000, "broker.heartbeat.interval.ms": 500}
cluster = cluster_fixture(overrides=FAST_FENCING)
HOLD = "3s"


def create(c, topic: str, partitions: int = 6):
    admin = c.admin()
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=3,
                  config={"min.insync.replicas": "2"})], operation_timeout=30)
    futures[topic].result(30)
    wait_for(lambda: len(c.describe(topic)) == partitions
             and all(len(p.isr) == 3 for p in c.describe(topic).values()), 30, "full ISRs")


def scrape(node) -> str:
    with urllib.request.urlopen(f"http://{node.host}:{node.metrics_port}/metrics",
                                timeout=5) as r:
        return r.read().decode()


def alert_rules() -> list[dict]:
    import yaml
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [r for g in groups for r in g["rules"] if "alert" in r]


def metric_names(expr: str) -> set[str]:
    """The series names an expression reads (`gregor_*` and `up`), not label names or
    functions."""
    names = set(re.findall(r"\b(gregor_[a-z_]+|up)\b(?!\s*[=!~])", expr))
    return {n for n in names if n != "gregor_cluster"}


def by_instance(prom: Prometheus, expr: str) -> dict[str, float]:
    return {s["metric"]["instance"]: float(s["value"][1]) for s in prom.query(expr)}


def test_metrics_and_rules_pass_promtool(cluster):
    promtool = tool("promtool")
    checked = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True,
                             text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for node in cluster.nodes.values():
        lint = subprocess.run([promtool, "check", "metrics"], input=scrape(node),
                              capture_output=True, text=True)
        assert lint.returncode == 0 and not lint.stdout.strip(), lint.stdout + lint.stderr


def test_every_alert_expression_evaluates_and_reads_live_series(cluster, tmp_path):
    create(cluster, "obs-exprs")
    with Prometheus(tmp_path, cluster, rules=[shortened_rules(tmp_path, HOLD)]) as prom:
        prom.wait_targets_up(3)
        rules = alert_rules()
        assert {r["alert"] for r in rules} >= {
            "GregorUnderReplicatedPartitions", "GregorOfflinePartitions",
            "GregorUnderMinIsrPartitions", "GregorNoActiveController",
            "GregorMultipleActiveControllers", "GregorBrokerDown", "GregorLogDirAlmostFull",
            "GregorOperatorReconcileFailures"}
        for rule in rules:
            prom.query(rule["expr"])  # raises with Prometheus' message if it does not parse
            for name in metric_names(rule["expr"]):
                if name.startswith("gregor_operator_"):
                    continue  # the operator's, not scraped here
                wait_for(lambda: prom.query(f"count({name})"), 10, f"{name} scraped")
        # A healthy cluster fires nothing (Prometheus' own rule evaluation, every second).
        wait_for(lambda: prom.api("rules")["groups"][0]["rules"][0].get("lastEvaluation"),
                 10, "rules evaluated")
        assert prom.alerts() == [], prom.alerts()


def test_the_gauges_agree_with_the_clusters_metadata(cluster, tmp_path):
    create(cluster, "obs-gauges", partitions=6)
    with Prometheus(tmp_path, cluster) as prom:
        prom.wait_targets_up(3)
        ports = {f"{n.host}:{n.metrics_port}": i for i, n in cluster.nodes.items()}
        md = cluster.metadata()
        parts = {(t.topic, p.id): p for t in md.topics.values() for p in t.partitions.values()}
        leaders = {i: sum(1 for p in parts.values() if p.leader == i) for i in cluster.nodes}
        replicas = {i: sum(1 for p in parts.values() if i in p.replicas) for i in cluster.nodes}

        def agree():
            led = {ports[k]: v for k, v in by_instance(prom, "gregor_leader_partitions").items()}
            held = {ports[k]: v for k, v in
                    by_instance(prom, "gregor_replica_partitions").items()}
            return led == leaders and held == replicas
        wait_for(agree, 15, f"leaders {leaders} and replicas {replicas} scraped")
        assert prom.value("sum(gregor_active_controller)") == 1
        assert prom.value("count(gregor_raft_state{state='leader'} == 1)") == 1
        assert prom.value("count(gregor_raft_state{state='follower'} == 1)") == 2
        assert prom.value("max(gregor_registered_brokers)") == 3
        assert prom.value("sum(gregor_under_replicated_partitions)") == 0
        assert prom.value("count(count by (gregor_raft_term) (gregor_raft_term))") == 1
        leader = prom.value("max(gregor_raft_leader)")
        active = [ports[k] for k, v in by_instance(prom, "gregor_active_controller").items()
                  if v == 1]
        assert active == [int(leader)]
        assert prom.value("sum(gregor_global_partitions)") == len(parts)
        assert prom.value("sum(gregor_global_topics)") == len(md.topics)
        assert prom.value("min(process_resident_memory_bytes)") > 1_000_000


def transitions(prom: Prometheus, alert: str, start: float, end: float) -> list[tuple]:
    """When the alert was pending and firing, from Prometheus' ALERTS series: [(state,
    first second, last second)] relative to `start`, per labelled instance of the alert."""
    out = []
    for series in prom.query_range(f'ALERTS{{alertname="{alert}"}}', start, end):
        times = [float(t) for t, _ in series["values"]]
        out.append((series["metric"]["alertstate"], series["metric"].get("instance", ""),
                    round(min(times) - start, 1), round(max(times) - start, 1)))
    return sorted(out, key=lambda t: t[2])


def alert_state(prom: Prometheus, name: str) -> set[str]:
    return {a["state"] for a in prom.alerts(name)}


def test_kill_9_fires_the_under_replicated_alert_until_the_node_returns(cluster, tmp_path):
    create(cluster, "obs-kill", partitions=6)
    with Prometheus(tmp_path, cluster, rules=[shortened_rules(tmp_path, HOLD)]) as prom, \
            Stream(cluster.bootstrap, "obs-kill") as stream:
        prom.wait_targets_up(3)
        wait_for(lambda: len(stream.acked) > 100, 30, "records acknowledged")
        ports = {f"{n.host}:{n.metrics_port}": i for i, n in cluster.nodes.items()}
        shrinks_before = prom.value("sum(gregor_isr_shrinks_total)")
        changes_before = by_instance(prom, "gregor_raft_leader_changes_total")
        active = [ports[k] for k, v in by_instance(prom, "gregor_active_controller").items()
                  if v == 1]
        assert len(active) == 1, active
        victim = active[0]  # the active controller, a replica of every partition too
        assert alert_state(prom, "GregorUnderReplicatedPartitions") == set()
        t_kill = time.time()
        cluster.kill(victim)
        seen: dict[str, float] = {}

        def reached(state: str):
            def check():
                states = alert_state(prom, "GregorUnderReplicatedPartitions")
                for s in states:
                    seen.setdefault(s, round(time.time() - t_kill, 1))
                return state in states
            return check
        wait_for(reached("pending"), 30, "under-replicated alert pending")
        wait_for(reached("firing"), 30, "under-replicated alert firing")
        wait_for(lambda: "firing" in alert_state(prom, "GregorBrokerDown"), 30,
                 "broker-down alert firing")
        wait_for(lambda: "firing" in alert_state(prom, "GregorFencedBrokers"), 30,
                 "fenced-brokers alert firing")
        assert prom.value("sum(gregor_isr_shrinks_total)") > shrinks_before
        # A new controller, and only one, among the survivors, who saw the leader change.
        wait_for(lambda: prom.value("sum(gregor_active_controller)") == 1, 30,
                 "one active controller")
        changes_after = by_instance(prom, "gregor_raft_leader_changes_total")
        survivors = [k for k, i in ports.items() if i != victim]
        assert all(changes_after[k] > changes_before[k] for k in survivors), \
            (changes_before, changes_after)
        expands_before = prom.value("sum(gregor_isr_expands_total)")

        t_back = time.time()
        cluster.start(victim)
        wait_for(lambda: alert_state(prom, "GregorUnderReplicatedPartitions") == set(), 60,
                 "under-replicated alert resolved")
        t_resolved = time.time()
        wait_for(lambda: prom.alerts() == [], 30, "every alert resolved")
        # The expansions were counted by leaders that may since have been restarted (the
        # victim's counters start at 0), so compare the survivors' sums.
        assert prom.value("sum(gregor_isr_expands_total)") > expands_before
        assert stream.failed == [], stream.failed[:5]
        timeline = transitions(prom, "GregorUnderReplicatedPartitions", t_kill, t_resolved + 2)
    print(f"\nkill -9 of node {victim} at 0 s; restarted at {t_back - t_kill:.1f} s; "
          f"resolved (alerts API) at {t_resolved - t_kill:.1f} s; first seen: {seen}")
    for state, instance, first, last in timeline:
        print(f"  ALERTS{{alertname=GregorUnderReplicatedPartitions, alertstate={state}, "
              f"instance={instance}}}: {first} s .. {last} s")
    assert {s for s, *_ in timeline} == {"pending", "firing"}, timeline
