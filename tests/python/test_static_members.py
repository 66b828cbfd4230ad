"""Static membership (KIP-345, `group.instance.id`) with librdkafka's consumer: a member that
restarts within its session takes its place back, with its partitions, and the others see no
rebalance; a second consumer with the same instance id fences the first. This is what keeps
consumers on Kubernetes from rebalancing at every rolling restart. scripts/test-all.sh also
runs this file with GREGOR_TEST_BROKER=kafka."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import wait_for


class Member:
    """A consumer with static id `instance`, recording its rebalance callbacks and errors."""

    def __init__(self, bootstrap: str, group: str, topic: str, instance: str):
        self.events: list[tuple[str, list[int]]] = []
        self.errors: list[str] = []
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": group, "group.instance.id": instance,
            "session.timeout.ms": 30000, "heartbeat.interval.ms": 1000,
            "partition.assignment.strategy": "range", "auto.offset.reset": "earliest",
            "error_cb": lambda err: self.errors.append(str(err)),
        })
        self.consumer.subscribe(
            [topic],
            on_assign=lambda _c, ps: self.events.append(("assign", sorted(p.partition for p in ps))),
            on_revoke=lambda _c, ps: self.events.append(("revoke", sorted(p.partition for p in ps))))

    def assigned(self) -> list[int]:
        return sorted(p.partition for p in self.consumer.assignment())

    def poll(self):
        msg = self.consumer.poll(0.05)
        # A fatal error (a fenced static member) comes as an errored message.
        if msg is not None and msg.error():
            self.errors.append(str(msg.error()))

    def close(self):
        self.consumer.close()


def poll_until(members: list[Member], predicate, timeout: float, what: str):
    def step():
        for m in members:
            m.poll()
        return predicate()
    wait_for(step, timeout, what, interval=0)


def test_a_restarted_static_member_gets_its_partitions_back_without_a_rebalance(bootstrap):
    topic = f"static-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=1)])[topic] \
        .result(timeout=30)
    group = f"static-{uuid.uuid4().hex[:8]}"
    members = [Member(bootstrap, group, topic, f"i{n}") for n in range(3)]
    try:
        poll_until(members, lambda: sorted(p for m in members for p in m.assigned())
                   == list(range(6)) and all(len(m.assigned()) == 2 for m in members),
                   90, "three static members to hold two partitions each")
        before = [m.assigned() for m in members]
        for m in members:
            m.events.clear()

        # i1 restarts: closed (a static member sends no LeaveGroup) and started again.
        members[1].close()
        members[1] = Member(bootstrap, group, topic, "i1")
        poll_until(members, lambda: members[1].assigned() == before[1], 60,
                   "the restarted member to get its partitions back")
        # A few more heartbeats' worth of polling: still nothing moves for the others.
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            for m in members:
                m.poll()
        assert members[0].events == [] and members[2].events == [], \
            (members[0].events, members[2].events)
        assert [m.assigned() for m in members] == before

        # A second consumer with i1's instance id fences the first.
        twin = Member(bootstrap, group, topic, "i1")
        members.append(twin)
        poll_until(members, lambda: any("fenced" in e.lower() for e in members[1].errors),
                   60, "the first i1 to be fenced by its twin")
        assert twin.errors == [], twin.errors
    finally:
        for m in members:
            try:
                m.close()
            except RuntimeError:
                pass  # already closed, or fenced
