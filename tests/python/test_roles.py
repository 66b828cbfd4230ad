"""Dedicated roles: controller-only nodes (process.roles=controller) hold the metadata quorum
and broker-only nodes (process.roles=broker) serve clients, replicating the metadata log as
observers without a vote.

- three controllers and three brokers: clients see only the brokers; an RF=3 topic lives on
  them; acks=all records produced with librdkafka read back; `gregor metadata-quorum` lists
  the controllers as voters and the brokers as observers;
- one controller and three brokers: kill -9 of a broker leaves acks=all writes working, and
  the broker comes back (on a new metadata replication port) as a broker and an observer.

Fencing is quick here (as in test_replication.py) so the suite stays short.
"""

from __future__ import annotations

import json
import re

from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic

from cluster import cluster_fixture
from conftest import wait_for
from helpers import read_all

FAST_FENCING = {"broker.session.timeout.ms": 3000, "broker.heartbeat.interval.ms": 500}

CONTROLLERS, BROKERS = {1, 2, 3}, {4, 5, 6}
dedicated = cluster_fixture(scope="module", size=3, controllers=3, overrides=FAST_FENCING)
one_controller = cluster_fixture(scope="function", size=3, controllers=1,
                                 overrides=FAST_FENCING)


def create(c, topic: str, partitions: int, timeout: float = 30.0):
    """An RF=3 topic with min.insync.replicas=2, once every partition has a leader and a full
    ISR."""
    admin = c.admin()  # the futures fail with _DESTROY once the client is collected
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=3,
                  config={"min.insync.replicas": "2"})],
        operation_timeout=timeout, request_timeout=timeout)
    futures[topic].result(timeout=timeout)

    def placed():
        parts = c.describe(topic)
        return len(parts) == partitions and all(p.leader > 0 and len(p.isr) == 3
                                                for p in parts.values())

    wait_for(placed, timeout, f"{topic} to have leaders and full ISRs")


def produce(bootstrap: str, topic: str, prefix: str, count: int) -> list[bytes]:
    """Produce `count` numbered records with acks=all; the values acknowledged (all of them,
    or the test fails)."""
    acked, failed = [], []
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "message.timeout.ms": 30_000, "retry.backoff.ms": 50,
                  "topic.metadata.refresh.interval.ms": 1000})

    def delivered(err, msg):
        (failed if err else acked).append(err or msg.value())

    for i in range(count):
        p.produce(topic, value=f"{prefix}{i:05d}".encode(), on_delivery=delivered)
    assert p.flush(60) == 0, "records still in flight"
    assert not failed, f"{len(failed)} produce failures, first: {failed[0]}"
    return acked


def read_values(c, topic: str, partitions: int) -> list[bytes]:
    got = read_all(c.bootstrap, topic, partitions)
    return [m.value() for msgs in got.values() for m in msgs]


def quorum_status(c) -> dict[str, str]:
    """`gregor metadata-quorum describe --status`, as {row: value}."""
    out = c.gregor("metadata-quorum", "--bootstrap-server", c.bootstrap, "describe", "--status")
    return dict(re.match(r"(\w+):\s+(.*)", line).groups() for line in out.splitlines())


def ids(row: str) -> set[int]:
    return {m["id"] for m in json.loads(row)}


def test_clients_see_only_the_brokers(dedicated):
    for node_id in BROKERS:
        md = dedicated.metadata(node_id)
        assert set(md.brokers) == BROKERS, f"node {node_id} lists {sorted(md.brokers)}"
        assert md.cluster_id == dedicated.cluster_id
    admin = dedicated.admin()  # the futures fail with _DESTROY once the client is collected
    desc = admin.describe_cluster(request_timeout=10).result(timeout=15)
    assert {n.id for n in desc.nodes} == BROKERS
    assert desc.controller is not None and desc.controller.id in BROKERS
    for node_id in CONTROLLERS:
        log = dedicated.nodes[node_id].log_path.read_text(errors="replace")
        assert "controller-only node" in log, f"node {node_id} did not say what it is"


def test_an_rf3_topic_lives_on_the_brokers_and_reads_back(dedicated, topic_name):
    create(dedicated, topic_name, 3)
    for p, state in dedicated.describe(topic_name).items():
        assert set(state.replicas) == BROKERS, f"partition {p}: {state}"
    acked = produce(dedicated.bootstrap, topic_name, "r", 600)
    assert len(acked) == 600
    assert sorted(read_values(dedicated, topic_name, 3)) == sorted(acked)


def test_metadata_quorum_lists_voters_and_observers(dedicated):
    status = wait_for(lambda: (s := quorum_status(dedicated))
                      and ids(s["CurrentObservers"]) == BROKERS and s,
                      15, "every broker to show as an observer")
    assert ids(status["CurrentVoters"]) == CONTROLLERS
    assert int(status["LeaderId"]) in CONTROLLERS
    assert int(status["HighWatermark"]) > 0
    out = dedicated.gregor("metadata-quorum", "--bootstrap-server", dedicated.bootstrap,
                           "describe", "--replication")
    rows = {int(line.split()[0]): line.split()[-1] for line in out.splitlines()[1:]}
    assert rows == {**{b: "Observer" for b in BROKERS},
                    **{c: ("Leader" if c == int(status["LeaderId"]) else "Follower")
                       for c in CONTROLLERS}}, out


def test_kill9_of_a_broker_leaves_acks_all_writes_working(one_controller, topic_name):
    c = one_controller
    brokers = c.broker_ids
    assert brokers == {2, 3, 4} and c.controller_ids == {1}
    create(c, topic_name, 3)
    before = produce(c.bootstrap, topic_name, "before", 300)
    victim = c.describe(topic_name)[0].leader
    survivors = brokers - {victim}
    c.kill(victim)
    wait_for(lambda: all(p.leader in survivors and victim not in p.isr
                         for p in c.describe(topic_name, min(survivors)).values()),
             20, "leaders and ISRs among the surviving brokers")
    during = produce(",".join(c.nodes[b].bootstrap for b in survivors), topic_name, "during",
                     300)
    c.start(victim)
    wait_for(lambda: all(victim in p.isr for p in c.describe(topic_name).values()), 30,
             f"broker {victim} to rejoin every ISR")
    wait_for(lambda: ids(quorum_status(c)["CurrentObservers"]) == brokers, 15,
             "the restarted broker to show as an observer again")
    after = produce(c.bootstrap, topic_name, "after", 300)
    assert sorted(read_values(c, topic_name, 3)) == sorted(before + during + after)
