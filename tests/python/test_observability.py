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
  its ALERTS series, is printed;
- consumer group lag on three nodes, for partitions the coordinator holds a replica of and
  for partitions led elsewhere (the documented join), equals the client's own lag within a
  scrape after each commit; consumers stopped while producing fire the lag alert;
- per-topic series past `metrics.topic.labels.max` share topic="(other)", and with 5,000
  topics every family stays within its cap.

Fencing is quick here (broker.session.timeout.ms=6000) so the test stays short.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from cluster import cluster_fixture, running_cluster
from conftest import wait_for
from helpers import Stream, consume_n
from prometheus import (DASHBOARDS, RULES, Prometheus, dashboard_exprs, shortened_rules,
                        tool)

FAST_FENCING = {"broker.session.timeout.ms": 6000, "broker.heartbeat.interval.ms": 500}
cluster = cluster_fixture(overrides=FAST_FENCING)
HOLD = "3s"


def create(c, topic: str, partitions: int = 6, rf: int = 3):
    admin = c.admin()
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=rf,
                  config={"min.insync.replicas": str(min(2, rf))})], operation_timeout=30)
    futures[topic].result(30)
    wait_for(lambda: len(c.describe(topic)) == partitions
             and all(len(p.isr) == rf for p in c.describe(topic).values()), 30, "full ISRs")


def produce(bootstrap: str, topic: str, partitions: int, per_partition: int):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for q in range(partitions):
        for i in range(per_partition):
            p.produce(topic, value=f"{q}-{i}".encode(), partition=q)
    assert p.flush(30) == 0

# The lag of every group, partition by partition, from any broker: the leader's high
# watermark minus the coordinator's committed offset (docs/metrics.md).
LAG_JOIN = """
max by (topic, partition) (gregor_partition_high_watermark)
  - on (topic, partition) group_right
max by (group, topic, partition) (gregor_consumer_group_committed_offset)
"""


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


def documented_broker_series() -> set[str]:
    """The broker series docs/metrics.md lists (the first column of its tables)."""
    doc = (RULES.parents[3] / "docs" / "metrics.md").read_text()
    names = set(re.findall(r"^\| `((?:gregor|process)_[a-z_]+)` \|", doc, re.M))
    return {n for n in names if not n.startswith("gregor_operator_")}


def test_every_documented_series_is_exported_and_nothing_else(cluster):
    create(cluster, "obs-doc", partitions=3)
    produce(cluster.bootstrap, "obs-doc", 3, 10)
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "obs-doc-group",
                         "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe(["obs-doc"])
        consume_n(consumer, 30, 30)
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    exported = set()
    for node in cluster.nodes.values():
        exported |= set(re.findall(r"^# TYPE (\S+) ", scrape(node), re.M))
    documented = documented_broker_series()
    assert len(documented) > 60, documented
    assert documented - exported == set(), "documented but not exported"
    assert exported - documented == set(), "exported but not in docs/metrics.md"


def commit_some(c, topic: str, group: str, n: int):
    """A group that consumed and committed `n` records of `topic`."""
    consumer = Consumer({"bootstrap.servers": c.bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        consumer.subscribe([topic])
        consume_n(consumer, n, 30)
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()


def host_alerts(path: Path) -> set[str]:
    """The alerts the test machine itself justifies: GregorLogDirAlmostFull while the file
    system holding the cluster's data dirs (the machine's own disk) has less free space than
    the rule's threshold. A healthy cluster fires nothing else."""
    rule = next(r for r in alert_rules() if r["alert"] == "GregorLogDirAlmostFull")
    threshold = float(re.search(r"<\s*([0-9.]+)", rule["expr"]).group(1))
    fs = os.statvfs(path)
    return {"GregorLogDirAlmostFull"} if fs.f_bavail / fs.f_blocks < threshold else set()


def active_alerts(prom: Prometheus, ignore: set[str] = frozenset()) -> list[dict]:
    """Pending and firing alerts but those named in `ignore`."""
    return [a for a in prom.alerts() if a["labels"]["alertname"] not in ignore]


def firing(prom: Prometheus, ignore: set[str] = frozenset()) -> list[dict]:
    return [a for a in active_alerts(prom, ignore) if a["state"] == "firing"]


def test_every_alert_expression_evaluates_and_reads_live_series(cluster, tmp_path):
    create(cluster, "obs-exprs")
    produce(cluster.bootstrap, "obs-exprs", 6, 5)
    commit_some(cluster, "obs-exprs", "obs-exprs-group", 30)
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
        # Every rule evaluates in Prometheus itself, every second, and a healthy cluster fires
        # nothing over a few evaluations.
        def evaluated():
            rules = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
            return all(r["health"] == "ok" and not r["lastEvaluation"].startswith("0001")
                       for r in rules)
        wait_for(evaluated, 15, "every rule evaluated without error")
        deadline = time.monotonic() + 5
        ignore = host_alerts(tmp_path)
        while time.monotonic() < deadline:
            assert firing(prom, ignore) == [], firing(prom, ignore)
            time.sleep(0.5)
        if ignore:  # a nearly full disk here: the alert says so
            names = lambda: {a["labels"]["alertname"] for a in active_alerts(prom)}  # noqa: E731
            wait_for(lambda: names() >= ignore, 15,
                     f"{ignore} active on this machine's nearly full disk")


# The broker dashboards (the operator's is checked by scripts/helm-check.sh, where an operator
# runs).
BROKER_DASHBOARDS = {p.stem for p in DASHBOARDS.glob("*.json")} - {"gregor-operator"}


def test_every_dashboard_expression_returns_data(cluster, tmp_path):
    """Each panel of the cluster, topic and group dashboards shows something for a cluster
    with traffic: produced (acks=all), replicated, consumed and committed by a group."""
    create(cluster, "obs-dash", partitions=3)
    group = "obs-dash-group"
    with Prometheus(tmp_path, cluster) as prom, \
            Stream(cluster.bootstrap, "obs-dash") as stream:
        prom.wait_targets_up(3)
        consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group,
                             "auto.offset.reset": "earliest"})
        try:
            consumer.subscribe(["obs-dash"])
            consume_n(consumer, 200, 30)
            consumer.commit(asynchronous=False)
            exprs = dashboard_exprs(BROKER_DASHBOARDS)
            assert len(exprs) > 50, len(exprs)

            empty: list[tuple[str, str, str]] = []

            def all_have_data():
                consume_n(consumer, 10, 10)
                consumer.commit(asynchronous=False)
                empty[:] = [(d, t, e) for d, t, e in exprs if not prom.query(e)]
                return not empty
            # Rates need two scrapes of each series, a minute's window at most.
            try:
                wait_for(all_have_data, 30, "every dashboard expression to return data")
            except TimeoutError:
                pytest.fail(f"no data for {empty}")
        finally:
            consumer.close()
        assert stream.failed == []


def test_the_gauges_agree_with_the_clusters_metadata(cluster, tmp_path):
    create(cluster, "obs-gauges", partitions=6)
    with Prometheus(tmp_path, cluster) as prom:
        prom.wait_targets_up(3)
        ports = {f"{n.host}:{n.metrics_port}": i for i, n in cluster.nodes.items()}
        seen = {}

        def agree():
            # Metadata read again each time: a leadership may move meanwhile.
            md = cluster.metadata()
            parts = [p for t in md.topics.values() for p in t.partitions.values()]
            seen["md"], seen["parts"] = md, parts
            leaders = {i: sum(1 for p in parts if p.leader == i) for i in cluster.nodes}
            replicas = {i: sum(1 for p in parts if i in p.replicas) for i in cluster.nodes}
            led = {ports[k]: v for k, v in by_instance(prom, "gregor_leader_partitions").items()}
            held = {ports[k]: v for k, v in
                    by_instance(prom, "gregor_replica_partitions").items()}
            seen["want"], seen["got"] = (leaders, replicas), (led, held)
            return led == leaders and held == replicas
        try:
            wait_for(agree, 20, "leaders and replicas scraped as Metadata has them")
        except TimeoutError:
            pytest.fail(f"Metadata {seen.get('want')}, scraped {seen.get('got')}")
        md, parts = seen["md"], seen["parts"]
        wait_for(lambda: prom.value("sum(gregor_active_controller)") == 1, 15,
                 "one active controller")
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
        shrinks_before = by_instance(prom, "gregor_isr_shrinks_total")
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
        # Pending for 3 s, then firing: a slow poll may see firing first; Prometheus' own
        # record of both states is checked below.
        wait_for(lambda: reached("pending")() or reached("firing")(), 30,
                 "under-replicated alert pending")
        wait_for(reached("firing"), 30, "under-replicated alert firing")
        wait_for(lambda: "firing" in alert_state(prom, "GregorBrokerDown"), 30,
                 "broker-down alert firing")
        wait_for(lambda: "firing" in alert_state(prom, "GregorFencedBrokers"), 30,
                 "fenced-brokers alert firing")
        shrinks_after = by_instance(prom, "gregor_isr_shrinks_total")
        survivors = [k for k, i in ports.items() if i != victim]
        assert sum(shrinks_after[k] for k in survivors) > sum(
            shrinks_before[k] for k in survivors), (shrinks_before, shrinks_after)
        # A new controller, and only one, among the survivors, who saw the leader change.
        wait_for(lambda: prom.value("sum(gregor_active_controller)") == 1, 30,
                 "one active controller")
        changes_after = by_instance(prom, "gregor_raft_leader_changes_total")
        assert all(changes_after[k] > changes_before[k] for k in survivors), \
            (changes_before, changes_after)
        expands_before = prom.value("sum(gregor_isr_expands_total)")

        t_back = time.time()
        cluster.start(victim)
        wait_for(lambda: alert_state(prom, "GregorUnderReplicatedPartitions") == set(), 60,
                 "under-replicated alert resolved")
        t_resolved = time.time()
        ignore = host_alerts(tmp_path)
        wait_for(lambda: active_alerts(prom, ignore) == [], 30, "every alert resolved")
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


def lag_by_partition(prom: Prometheus, expr: str, group: str) -> dict[tuple[str, int], float]:
    return {(r["metric"]["topic"], int(r["metric"]["partition"])): float(r["value"][1])
            for r in prom.query(expr) if r["metric"].get("group") == group}


def client_lag(c, group: str, topics: dict[str, int]) -> dict[tuple[str, int], int]:
    """What the client sees: each partition's high watermark minus the group's committed
    offset (kafka-consumer-groups' LAG), for the partitions the group committed."""
    consumer = Consumer({"bootstrap.servers": c.bootstrap, "group.id": group})
    try:
        tps = [TopicPartition(t, q) for t, n in topics.items() for q in range(n)]
        out = {}
        for tp in consumer.committed(tps, timeout=10):
            if tp.offset >= 0:
                _, high = consumer.get_watermark_offsets(tp, timeout=10)
                out[(tp.topic, tp.partition)] = high - tp.offset
        return out
    finally:
        consumer.close()


def test_consumer_lag_on_three_nodes_matches_the_clients_view(cluster, tmp_path):
    # RF 1: each partition on one node only, so the coordinator holds a replica of one of
    # three at most; RF 3: every node holds every partition.
    topics = {"obs-lag-rf1": 3, "obs-lag-rf3": 3}
    create(cluster, "obs-lag-rf1", partitions=3, rf=1)
    create(cluster, "obs-lag-rf3", partitions=3, rf=3)
    for t, n in topics.items():
        produce(cluster.bootstrap, t, n, 40)
    group = "obs-lag-group"
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    with Prometheus(tmp_path, cluster) as prom:
        prom.wait_targets_up(3)
        try:
            consumer.subscribe(list(topics))
            for step in (50, 100):
                consume_n(consumer, step, 30)
                consumer.commit(asynchronous=False)
                expected = client_lag(cluster, group, topics)
                assert expected, "nothing committed"

                def agrees():
                    return lag_by_partition(prom, LAG_JOIN, group) == expected
                wait_for(agrees, 20, f"the joined lag {expected} after a commit")
                # Where the coordinator holds a replica it reports the lag itself; RF 3
                # partitions are on every node.
                local = lag_by_partition(prom, "gregor_consumer_group_lag", group)
                assert {k: v for k, v in local.items() if k[0] == "obs-lag-rf3"} == {
                    k: v for k, v in expected.items() if k[0] == "obs-lag-rf3"}, local
                assert all(expected[k] == v for k, v in local.items()), (local, expected)
            members = prom.query(f'gregor_consumer_group_members{{group="{group}"}}')
            assert [float(m["value"][1]) for m in members] == [1.0], members
            assert prom.value('sum(gregor_consumer_groups_by_state{state="Stable",'
                              'type="classic"})') >= 1
        finally:
            consumer.close()


def test_stopped_consumers_fire_the_lag_alert_while_producing(cluster, tmp_path):
    create(cluster, "obs-lag-alert", partitions=2)
    group = "obs-lag-alert-group"
    produce(cluster.bootstrap, "obs-lag-alert", 2, 10)
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe(["obs-lag-alert"])
    consume_n(consumer, 20, 30)
    consumer.commit(asynchronous=False)
    consumer.close()
    with Prometheus(tmp_path, cluster, rules=[shortened_rules(tmp_path, HOLD)]) as prom, \
            Stream(cluster.bootstrap, "obs-lag-alert") as stream:
        prom.wait_targets_up(3)
        def group_firing():
            return any(a["labels"].get("group") == group and a["state"] == "firing"
                       for a in prom.alerts("GregorConsumerLagGrowing"))
        wait_for(group_firing, 60, "lag alert firing")
        groups = {a["labels"]["group"] for a in prom.alerts("GregorConsumerLagGrowing")
                   if a["state"] == "firing"}
        assert group in groups, groups
        assert stream.failed == []


def topic_values(text: str, family: str) -> set[str]:
    return set(re.findall(rf'^{family}{{[^}}]*topic="([^"]*)"', text, re.M))


def test_topics_past_the_cap_share_the_other_series(tmp_path):
    with running_cluster(tmp_path, size=1, overrides={"metrics.topic.labels.max": 3}) as c:
        names = [f"cap-{i}" for i in range(6)]
        for t in names:
            create(c, t, partitions=1, rf=1)
            produce(c.bootstrap, t, 1, 5)
        (node,) = c.nodes.values()
        text = scrape(node)
        values = topic_values(text, "gregor_topic_messages_in_total")
        assert "(other)" in values and len(values - {"(other)"}) == 3, values
        total = sum(float(v) for v in re.findall(
            r"^gregor_topic_messages_in_total\{[^}]*\} (\S+)", text, re.M))
        assert total == 30, text
        labelled = values - {"(other)"}
        assert topic_values(text, "gregor_partition_log_end_offset") <= labelled


def test_five_thousand_topics_keep_every_family_within_its_cap(tmp_path):
    caps = {"metrics.topic.labels.max": 100, "metrics.partition.labels.max": 150,
            "metrics.group.labels.max": 10}
    with running_cluster(tmp_path, size=3, overrides=caps) as c:
        admin = c.admin()
        # The first 200 with 5 partitions each: the labelled topics have more partitions
        # than the partition cap.
        names = [f"card-{i:04d}" for i in range(5000)]
        for i in range(0, len(names), 250):
            batch = [NewTopic(t, num_partitions=5 if n < 200 else 1, replication_factor=1)
                     for n, t in enumerate(names[i:i + 250], start=i)]
            futures = admin.create_topics(batch, operation_timeout=120, request_timeout=180)
            for f in futures.values():
                f.result(240)
        # 60 groups with offsets in 5 partitions each: more groups than the group cap.
        for g in range(60):
            consumer = Consumer({"bootstrap.servers": c.bootstrap, "group.id": f"card-g{g}"})
            try:
                consumer.commit(offsets=[TopicPartition(names[g], q, 0) for q in range(5)],
                                asynchronous=False)
            finally:
                consumer.close()
        with Prometheus(tmp_path, c) as prom:
            prom.wait_targets_up(3)
            # With __consumer_offsets, which the groups' commits created.
            wait_for(lambda: prom.value("max(gregor_global_topics)") == 5001, 30,
                     "5,000 topics in the metadata")
            wait_for(lambda: prom.value("sum(gregor_consumer_groups)") == 60, 30,
                     "60 groups coordinated")

            def per_node(expr: str) -> list[float]:
                return [float(r["value"][1]) for r in prom.query(f"count by (instance) ({expr})")]
            # Per node: at most the cap's topics plus "(other)", the cap's partitions, the
            # cap's groups.
            for family in ("gregor_topic_bytes_in_total", "gregor_topic_messages_in_total",
                           "gregor_topic_failed_produce_requests_total"):
                counts = per_node(family)
                assert len(counts) == 3 and max(counts) == 101, (family, counts)
            for family in ("gregor_partition_log_end_offset", "gregor_partition_size_bytes",
                           "gregor_consumer_group_committed_offset"):
                counts = per_node(family)
                assert counts and max(counts) <= 150, (family, counts)
            assert max(per_node("gregor_partition_log_end_offset")) == 150
            counts = per_node("gregor_consumer_group_members")
            assert max(counts) == 10, counts
            samples = prom.query("scrape_samples_scraped")
            assert all(float(r["value"][1]) < 3000 for r in samples), samples
            durations = prom.query("scrape_duration_seconds")
            print("\nwith 5,000 topics, samples per scrape:",
                  {r["metric"]["instance"]: r["value"][1] for r in samples},
                  "scrape seconds:",
                  {r["metric"]["instance"]: r["value"][1] for r in durations})
