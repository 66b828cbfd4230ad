"""A network partition that cuts the leader of a partition off from the other two nodes of a
Gregor cluster and from the clients. Every node runs in a network namespace of its own, joined
by a bridge (netns.py); isolating a node disables its bridge port, so its frames are dropped
silently both ways. RF=3, min.insync.replicas=2:

- the two connected nodes fence the isolated one and elect a new leader within seconds, and an
  acks=all idempotent stream from the root namespace goes on;
- a producer inside the isolated node's namespace, which reaches that node alone, gets no
  acknowledgement for any acks=all record: no split brain;
- healed, the isolated node rejoins the ISR with its unreplicated tail gone: led by it again,
  the partition reads exactly as it did from the new leader;
- every acknowledged record is readable exactly once, and none of the isolated side's records.

Run twice: isolating the active controller (the metadata quorum elects a new leader too) and
isolating a node that is not. Needs root and `ip netns`; skips otherwise.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, ElectionType, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from cluster import running_cluster
from conftest import wait_for
from helpers import Stream, assert_all_acked_readable_once, read_all
from netns import NamespaceNetwork

NODES = [1, 2, 3]
OVERRIDES = {
    # Quick fencing, as in test_replication.py.
    "broker.session.timeout.ms": 3000, "broker.heartbeat.interval.ms": 500,
    # The test hands leadership back to the healed node itself.
    "auto.leader.rebalance.enable": "false",
}
ISOLATED_PRODUCER = Path(__file__).with_name("acked_producer.py")
ISOLATED_PREFIX = "isolated-"
# The isolated producer gives up after message.timeout.ms; its retries are no longer sent then.
ISOLATED_SETTINGS = {"acks": "all", "enable.idempotence": "false", "linger.ms": 5,
                     "message.timeout.ms": 8000, "request.timeout.ms": 3000}


@pytest.fixture
def net():
    reason = NamespaceNetwork.unavailable()
    if reason:
        pytest.skip(reason)
    n = NamespaceNetwork(NODES)
    try:
        n.create()
        yield n
    finally:
        n.destroy()


@pytest.fixture
def cluster(net, tmp_path):
    # Torn down before `net`, so no node still holds a namespace when it is deleted.
    with running_cluster(tmp_path, overrides=OVERRIDES, hosts=net.hosts,
                         netns=net.namespaces) as c:
        yield c


def create_led_by(c, topic: str, leader: int, ask: int):
    """An RF=3, min.insync.replicas=2 topic of one partition whose preferred (and so first)
    leader is `leader`; waits, asking node `ask`, until it leads with a full ISR."""
    admin = c.admin(ask)  # the futures fail once the client is collected
    replicas = [leader, *(i for i in NODES if i != leader)]
    new = NewTopic(topic, num_partitions=1, replica_assignment=[replicas],
                   config={"min.insync.replicas": "2"})
    futures = admin.create_topics([new], operation_timeout=30, request_timeout=30)
    futures[topic].result(timeout=30)
    wait_for(lambda: c.describe(topic, ask)[0].leader == leader
             and sorted(c.describe(topic, ask)[0].isr) == NODES,
             30, f"{topic}-0 led by {leader} with a full ISR")


def produce_inside(net, node_id: int, bootstrap: str, topic: str, count: int) -> dict:
    """Run acked_producer.py inside `node_id`'s namespace; its report (see there)."""
    settings = [f"{k}={v}" for k, v in ISOLATED_SETTINGS.items()]
    cmd = [*net.exec_prefix(node_id), sys.executable, str(ISOLATED_PRODUCER), bootstrap, topic,
           "0", str(count), ISOLATED_PREFIX, *settings]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         timeout=60)
    assert out.returncode == 0, f"isolated producer exited {out.returncode}:\n{out.stderr}"
    return json.loads(out.stdout)


def local_log(node, topic: str) -> bytes:
    """Everything in `node`'s segment files of `topic`-0, as bytes on disk."""
    d = node.data_dir / f"{topic}-0"
    return b"".join(f.read_bytes() for f in sorted(d.glob("*.log")))


def high_watermark(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused"})
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
    finally:
        consumer.close()


def offsets_and_values(bootstrap: str, topic: str) -> list[tuple[int, bytes]]:
    return [(m.offset(), m.value()) for m in read_all(bootstrap, topic, 1, timeout=90)[0]]


@pytest.mark.parametrize("isolated_role", ["controller", "broker"])
def test_an_isolated_leader_acknowledges_nothing_and_loses_nothing(net, cluster, topic_name,
                                                                   isolated_role):
    c = cluster
    controller = c.quorum_leader()
    x = controller if isolated_role == "controller" else min(set(NODES) - {controller})
    others = [i for i in NODES if i != x]
    ask = others[0]  # a node that stays connected, for metadata while x is cut off
    create_led_by(c, topic_name, x, ask)

    with Stream(c.bootstrap, topic_name, partition=0,
                # librdkafka gives up on requests in flight to the cut-off leader after
                # socket.timeout.ms (60 s by default) and only then, keeping the order, sends
                # to the new leader.
                config={"socket.timeout.ms": 5000}) as s:
        wait_for(lambda: len(s.acked) > 1000, 30, "traffic to flow")
        isolated_at = time.monotonic()
        net.isolate(x)
        wait_for(lambda: c.describe(topic_name, ask)[0].leader in others, 20,
                 f"a new leader for {topic_name}-0 among {others}")
        failover_s = time.monotonic() - isolated_at
        wait_for(lambda: s.acked_after(isolated_at) > 500
                 and s.acked_after(time.monotonic() - 0.5) > 50, 30,
                 "the stream to go on with the new leader")
        new_leader = c.describe(topic_name, ask)[0].leader
        isr_while_cut = c.describe(topic_name, ask)[0].isr

        # The isolated side: x may still take itself for the leader, but with acks=all it must
        # wait for followers it cannot reach, and so acknowledges nothing.
        report = produce_inside(net, x, c.nodes[x].bootstrap, topic_name, 50)
        tail_on_x = local_log(c.nodes[x], topic_name).count(ISOLATED_PREFIX.encode())

        healed_at = time.monotonic()
        net.heal(x)
        wait_for(lambda: x in c.describe(topic_name, ask)[0].isr, 60,
                 f"node {x} to rejoin the ISR of {topic_name}-0")
        rejoin_s = time.monotonic() - healed_at
        wait_for(lambda: s.acked_after(time.monotonic() - 0.5) > 50, 30,
                 "the stream to go on after healing")
        s.stop()

    print(f"isolated node {x} ({isolated_role}); new leader {new_leader} after "
          f"{failover_s:.1f}s, ISR while cut {isr_while_cut}; x back in the ISR "
          f"{rejoin_s:.1f}s after healing; x's view while cut: {report['metadata']}; "
          f"{tail_on_x} isolated records in x's log while cut; isolated producer errors: "
          f"{sorted({e for _, e in report['failed']})}")
    if report["acked"]:
        pytest.fail(f"split brain: node {x}, cut off from the other two, acknowledged "
                    f"{len(report['acked'])} acks=all records, e.g. {report['acked'][:3]} "
                    f"(its view: {report['metadata']})")
    assert len(report["failed"]) == 50 and report["unreported"] == 0, report
    assert failover_s < 10, f"a new leader only after {failover_s:.1f}s"
    assert not s.failed, f"{len(s.failed)} produce failures, first: {s.failed[0]}"

    assert_all_acked_readable_once(c.bootstrap, topic_name, 1, [v for _, v in s.acked])
    from_new_leader = offsets_and_values(c.bootstrap, topic_name)
    leaked = [v for _, v in from_new_leader if v.startswith(ISOLATED_PREFIX.encode())]
    if leaked:
        pytest.fail(f"{len(leaked)} records written only to the isolated node {x} are "
                    f"readable after healing, e.g. {leaked[:3]}")

    # Led by x again, the partition must read exactly as it did from the new leader: x threw
    # away the tail it had appended while cut off and took the new leader's records instead.
    admin = c.admin()
    # No timeout kwargs: confluent-kafka 2.16's elect_leaders raises SystemError on them.
    result = admin.elect_leaders(ElectionType.PREFERRED,
                                 [TopicPartition(topic_name, 0)]).result(timeout=30)
    assert all(err is None for err in result.values()), result
    wait_for(lambda: c.describe(topic_name, ask)[0].leader == x, 30, f"node {x} to lead again")
    # A new leader's high watermark trails its log until the followers have fetched from it.
    elected_at = time.monotonic()
    wait_for(lambda: high_watermark(c.bootstrap, topic_name) >= len(from_new_leader), 45,
             f"node {x}'s high watermark to reach {len(from_new_leader)}")
    hw_s = time.monotonic() - elected_at
    from_x = offsets_and_values(c.bootstrap, topic_name)
    if from_x != from_new_leader:
        diverged = next((i for i, (a, b) in enumerate(zip(from_x, from_new_leader)) if a != b),
                        min(len(from_x), len(from_new_leader)))
        pytest.fail(f"node {x} did not truncate its tail: led by it, {topic_name}-0 has "
                    f"{len(from_x)} records, led by {new_leader} it had "
                    f"{len(from_new_leader)}; first difference at index {diverged}: "
                    f"{from_x[diverged:diverged + 1]} vs {from_new_leader[diverged:diverged + 1]}")
    if tail_on_x and ISOLATED_PREFIX.encode() in local_log(c.nodes[x], topic_name):
        pytest.fail(f"node {x}'s segment files still hold records of the isolated producer")

    print(f"node {x}'s high watermark caught up {hw_s:.1f}s after it was elected")

    # And x serves acks=all writes again.
    p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "message.timeout.ms": 20_000})
    failed = []
    for i in range(10):
        p.produce(topic_name, value=f"after-{i}".encode(), partition=0,
                  on_delivery=lambda err, _msg: err and failed.append(str(err)))
    assert p.flush(30) == 0 and not failed, failed
