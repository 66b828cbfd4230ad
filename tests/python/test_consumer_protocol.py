"""Kafka's new consumer group protocol (KIP-848, `group.protocol=consumer`): members send
ConsumerGroupHeartbeat with their subscription and the coordinator computes the assignment
itself with a named server-side assignor (`uniform`, `range`), handing partitions over
incrementally — a member gives up only what moves, the others keep fetching. Clients are
librdkafka's consumer and Apache Kafka's own tools (console consumer, kafka-consumer-groups,
kafka-groups), which read groups back through ConsumerGroupDescribe, ListGroups with a type
filter and OffsetFetch, and commit with the member epoch (OffsetCommit v9+).

The coordinator sends a member its next assignment in a heartbeat response, so a rebalance
takes one or two heartbeat intervals (Kafka's default: 5 s); the waits here allow several.
scripts/test-all.sh may also run this file with GREGOR_TEST_BROKER=kafka, so every assertion
here is Apache Kafka 4.3's behaviour too."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections import Counter

import pytest

from confluent_kafka import (Consumer, ConsumerGroupState, ConsumerGroupType, KafkaError,
                             Producer, TopicPartition)
from confluent_kafka.admin import AdminClient, NewPartitions

from cluster import cluster_fixture
from conftest import SCRIPTS, GiveUp, wait_for
from helpers import consume_n, create_topic, create_topics

# A rebalance is a few heartbeat intervals; this is several of Kafka's default 5 s.
REBALANCE_TIMEOUT = 45.0
TIMEOUT = 20.0

needs_java = pytest.mark.skipif(
    shutil.which("java") is None or os.environ.get("GREGOR_JAVA_TESTS") == "0",
    reason="needs java (and scripts/kafka-dist.sh); GREGOR_JAVA_TESTS=0 turns these off")


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Member:
    """A librdkafka consumer in `group` with the consumer protocol, subscribed to `topic`,
    recording its rebalance callbacks as (kind, partitions) and its errored polls. With this
    protocol the callbacks are incremental: `assign` carries only the partitions added,
    `revoke` only those taken away."""

    def __init__(self, bootstrap: str, group: str, topic: str, assignor: str | None = None,
                 **conf):
        self.events: list[tuple[str, list[int]]] = []
        self.errors: list[KafkaError] = []
        # (partition, value) of every record polled, in order.
        self.records: list[tuple[int, bytes]] = []
        settings = {"bootstrap.servers": bootstrap, "group.id": group,
                    "group.protocol": "consumer", "auto.offset.reset": "earliest",
                    "enable.auto.commit": False, **conf}
        if assignor is not None:
            settings["group.remote.assignor"] = assignor
        self.consumer = Consumer(settings)
        self.consumer.subscribe([topic], on_assign=self._record("assign"),
                                on_revoke=self._record("revoke"), on_lost=self._record("lost"))
        self.closed = False

    def _record(self, kind: str):
        def callback(_consumer, partitions):
            # An empty incremental assign follows every revoke; it says nothing.
            if partitions:
                self.events.append((kind, sorted(p.partition for p in partitions)))
        return callback

    def assigned(self) -> list[int]:
        return sorted(p.partition for p in self.consumer.assignment())

    def poll(self):
        msg = self.consumer.poll(0.05)
        if msg is None:
            return
        if msg.error() is not None:
            self.errors.append(msg.error())
            if msg.error().fatal() or msg.error().code() == KafkaError._FATAL:
                raise GiveUp(f"fatal consumer error: {msg.error()}")
            return
        self.records.append((msg.partition(), msg.value()))

    def close(self):
        if not self.closed:
            self.closed = True
            self.consumer.close()


def poll_until(members: list[Member], predicate, timeout: float, what: str):
    """Poll every member in turn until `predicate()` holds."""
    def step():
        for m in members:
            m.poll()
        return predicate()
    wait_for(step, timeout, what, interval=0)


def balanced(members: list[Member], partitions: int) -> bool:
    """The members' assignments are disjoint, cover every partition and differ in size by
    at most one."""
    held = [m.assigned() for m in members]
    sizes = [len(h) for h in held]
    return sorted(p for h in held for p in h) == list(range(partitions)) \
        and max(sizes) - min(sizes) <= 1


def produce_to_every_partition(bootstrap: str, topic: str, partitions: int, per_partition: int,
                               tag: str) -> dict[int, list[bytes]]:
    """`per_partition` records `tag-<partition>-<n>` on each partition, all acknowledged."""
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    errors = []
    sent: dict[int, list[bytes]] = {q: [] for q in range(partitions)}
    for n in range(per_partition):
        for q in range(partitions):
            v = f"{tag}-{q}-{n}".encode()
            p.produce(topic, value=v, partition=q,
                      on_delivery=lambda err, _m: err is not None and errors.append(err))
            sent[q].append(v)
    assert p.flush(TIMEOUT) == 0, "records still in flight"
    assert not errors, errors[:3]
    return sent


def assert_consumed_once_by_owners(members: list[Member], sent: dict[int, list[bytes]]):
    """Poll until the members together have every record in `sent`; each was read exactly
    once, in partition order, and by the member that holds its partition."""
    wanted = {v for vs in sent.values() for v in vs}
    for m in members:
        m.records.clear()
    poll_until(members, lambda: wanted <= {v for m in members for _, v in m.records},
               REBALANCE_TIMEOUT, f"the {len(wanted)} records to be consumed")
    counts = Counter(v for m in members for _, v in m.records)
    dups = [v for v, n in counts.items() if n > 1]
    assert not dups, f"{len(dups)} records read more than once, e.g. {dups[:3]}"
    assert set(counts) == wanted, set(counts) - wanted
    for m in members:
        held = set(m.assigned())
        strays = [(q, v) for q, v in m.records if q not in held]
        assert not strays, f"records from partitions the member does not hold: {strays[:3]}"
        for q in held:
            assert [v for p, v in m.records if p == q] == sent[q], f"partition {q} out of order"


def close_all(members: list[Member]):
    for m in members:
        try:
            m.close()
        except RuntimeError:
            pass  # already closed


def describe(bootstrap: str, group: str):
    """ConsumerGroupDescribe through librdkafka's admin client."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return admin.describe_consumer_groups([group], request_timeout=TIMEOUT)[group] \
        .result(timeout=TIMEOUT)


@pytest.mark.parametrize("assignor", ["uniform", "range"])
def test_three_members_share_six_partitions_and_read_each_record_once(bootstrap, assignor):
    """Three members naming a server-side assignor end with two partitions each, disjoint and
    covering the topic; the group describes itself as a consumer-protocol group with that
    assignor and the members' assignments; records then produced to every partition are each
    read once, by the partition's owner."""
    partitions = 6
    topic, group = fresh("cp-share"), fresh("cp-share")
    create_topic(bootstrap, topic, partitions)
    members = [Member(bootstrap, group, topic, assignor) for _ in range(3)]
    try:
        poll_until(members, lambda: balanced(members, partitions)
                   and all(len(m.assigned()) == 2 for m in members),
                   REBALANCE_TIMEOUT, "three members to hold two partitions each")

        by_member = {m.consumer.memberid(): m.assigned() for m in members}

        def described_as_held():
            d = describe(bootstrap, group)
            got = {x.member_id: sorted(tp.partition for tp in x.assignment.topic_partitions)
                   for x in d.members}
            return d if got == by_member and d.state == ConsumerGroupState.STABLE else None
        d = wait_for(described_as_held, TIMEOUT,
                     "a Stable group described with the members' assignments")
        assert d.type == ConsumerGroupType.CONSUMER, d.type
        assert d.partition_assignor == assignor, d.partition_assignor

        sent = produce_to_every_partition(bootstrap, topic, partitions, 10, "v")
        assert_consumed_once_by_owners(members, sent)
        assert all(m.errors == [] for m in members), [m.errors for m in members]
    finally:
        close_all(members)


def test_a_leaving_member_hands_its_partitions_over_incrementally(bootstrap):
    """When one of three members closes, the two left take its two partitions (three each)
    without giving up any of their own: their callbacks after the close are assigns of the
    leaver's partitions only, with no revoke or loss; they then read what is produced to all
    six partitions."""
    partitions = 6
    topic, group = fresh("cp-leave"), fresh("cp-leave")
    create_topic(bootstrap, topic, partitions)
    members = [Member(bootstrap, group, topic, "uniform") for _ in range(3)]
    try:
        poll_until(members, lambda: balanced(members, partitions)
                   and all(len(m.assigned()) == 2 for m in members),
                   REBALANCE_TIMEOUT, "three members to hold two partitions each")
        leaver, stayers = members[0], members[1:]
        left_behind = leaver.assigned()
        before = [m.assigned() for m in stayers]
        for m in stayers:
            m.events.clear()

        leaver.close()
        poll_until(stayers, lambda: balanced(stayers, partitions)
                   and all(len(m.assigned()) == 3 for m in stayers),
                   REBALANCE_TIMEOUT, "the two members left to hold three partitions each")

        gained = []
        for m, had in zip(stayers, before):
            assert set(had) <= set(m.assigned()), (had, m.assigned())
            kinds = {kind for kind, _ in m.events}
            assert kinds == {"assign"}, m.events
            added = sorted(p for _, ps in m.events for p in ps)
            assert added == sorted(set(m.assigned()) - set(had)), (m.events, had, m.assigned())
            gained += added
        assert sorted(gained) == left_behind

        sent = produce_to_every_partition(bootstrap, topic, partitions, 10, "after")
        assert_consumed_once_by_owners(stayers, sent)
        assert len(describe(bootstrap, group).members) == 2
    finally:
        close_all(members)


def test_committed_offsets_are_where_a_new_member_resumes(bootstrap):
    """A member commits its positions synchronously and closes; a new member of the same group
    starts at those offsets (not at the log start its auto.offset.reset would give it) and
    reads only what was produced since."""
    partitions = 3
    topic, group = fresh("cp-commit"), fresh("cp-commit")
    create_topic(bootstrap, topic, partitions)
    first = produce_to_every_partition(bootstrap, topic, partitions, 10, "old")
    a = Member(bootstrap, group, topic)
    try:
        consume_n(a.consumer, 30, REBALANCE_TIMEOUT)
        committed = a.consumer.commit(asynchronous=False)
        assert [(tp.partition, tp.offset, tp.error) for tp in sorted(
            committed, key=lambda tp: tp.partition)] == [(q, 10, None) for q in range(partitions)]
    finally:
        a.close()

    second = produce_to_every_partition(bootstrap, topic, partitions, 5, "new")
    b = Member(bootstrap, group, topic)
    try:
        got = consume_n(b.consumer, 15, REBALANCE_TIMEOUT)
        assert sorted(m.value() for m in got) == sorted(v for vs in second.values() for v in vs)
        old = {v for vs in first.values() for v in vs}
        assert not any(m.value() in old for m in got)
        assert {tp.partition: tp.offset for tp in b.consumer.position(b.consumer.assignment())} \
            == {q: 15 for q in range(partitions)}
    finally:
        b.close()


def test_an_unknown_server_assignor_is_refused(bootstrap):
    """A member naming an assignor the coordinator does not have gets UNSUPPORTED_ASSIGNOR,
    which librdkafka treats as fatal; it is never assigned anything."""
    topic, group = fresh("cp-assignor"), fresh("cp-assignor")
    create_topic(bootstrap, topic, 2)
    m = Member(bootstrap, group, topic, "no-such-assignor")
    try:
        with pytest.raises(GiveUp, match="(?i)assignor"):
            poll_until([m], lambda: False, REBALANCE_TIMEOUT, "a fatal error")
        assert m.assigned() == [] and m.events == [], m.events
    finally:
        m.close()


def test_new_partitions_of_a_subscribed_topic_are_assigned(bootstrap):
    """Partitions added to a topic a member subscribes to are assigned to it by the
    coordinator, without the member resubscribing."""
    topic, group = fresh("cp-grow"), fresh("cp-grow")
    create_topic(bootstrap, topic, 2)
    m = Member(bootstrap, group, topic)
    try:
        poll_until([m], lambda: m.assigned() == [0, 1], REBALANCE_TIMEOUT,
                   "the member to hold both partitions")
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_partitions([NewPartitions(topic, 4)], request_timeout=TIMEOUT)[topic] \
            .result(timeout=TIMEOUT)
        poll_until([m], lambda: m.assigned() == [0, 1, 2, 3], REBALANCE_TIMEOUT,
                   "the member to be assigned the new partitions")
        assert m.events == [("assign", [0, 1]), ("assign", [2, 3])], m.events
    finally:
        m.close()


# ---- Apache Kafka's own tools ----

def kafka(*args: str) -> str:
    """`scripts/kafka.sh ARGS...`: stdout and stderr together; fails on a non-zero exit."""
    proc = subprocess.run([str(SCRIPTS / "kafka.sh"), *args], text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    if proc.returncode != 0:
        pytest.fail(f"kafka.sh {' '.join(args)} exited {proc.returncode}\n{proc.stdout[-5000:]}")
    return proc.stdout


def table(out: str, group: str) -> list[dict[str, str]]:
    """The rows about `group` of a kafka-consumer-groups/kafka-groups table, as {column: value}
    (every column header and value is one word, except the coordinator's, which is two of
    each)."""
    lines = out.splitlines()
    header = next((line.split() for line in lines if line.startswith("GROUP ")), None)
    assert header is not None, out
    rows = [line.split() for line in lines if line.split()[:1] == [group]]
    assert all(len(r) == len(header) for r in rows), out
    return [dict(zip(header, r)) for r in rows]


@needs_java
def test_kafka_tools_describe_and_list_a_consumer_protocol_group(bootstrap):
    """With a member holding all three partitions and offsets committed: kafka-consumer-groups
    --describe shows each partition's committed offset and lag and the member's id and client
    id; --members shows the member with its partition count; --state shows the assignor and
    Stable; --list --type and kafka-groups --list --group-type consumer list the group as a
    Consumer group speaking the consumer protocol."""
    partitions = 3
    topic, group = fresh("cp-tools"), fresh("cp-tools")
    create_topic(bootstrap, topic, partitions)
    produce_to_every_partition(bootstrap, topic, partitions, 4, "v")
    m = Member(bootstrap, group, topic, "uniform", **{"client.id": "cp-tools-client"})
    try:
        consume_n(m.consumer, 12, REBALANCE_TIMEOUT)
        # Each partition committed up to a different point.
        positions = {q: q + 1 for q in range(partitions)}
        committed = m.consumer.commit(
            offsets=[TopicPartition(topic, q, o) for q, o in positions.items()],
            asynchronous=False)
        assert all(tp.error is None for tp in committed), committed
        member_id = m.consumer.memberid()
        bs = ("--bootstrap-server", bootstrap)

        out = kafka("consumer-groups", *bs, "--describe", "--group", group)
        rows = sorted(table(out, group), key=lambda r: int(r["PARTITION"]))
        assert [(r["TOPIC"], int(r["PARTITION"]), int(r["CURRENT-OFFSET"]),
                 int(r["LOG-END-OFFSET"]), int(r["LAG"])) for r in rows] == \
            [(topic, q, positions[q], 4, 4 - positions[q]) for q in range(partitions)], out
        assert {(r["CONSUMER-ID"], r["CLIENT-ID"]) for r in rows} == \
            {(member_id, "cp-tools-client")}, out

        out = kafka("consumer-groups", *bs, "--describe", "--group", group, "--members")
        assert [(r["CONSUMER-ID"], r["CLIENT-ID"], r["#PARTITIONS"])
                for r in table(out, group)] == [(member_id, "cp-tools-client", "3")], out

        out = kafka("consumer-groups", *bs, "--describe", "--group", group, "--state")
        assert [(r["ASSIGNMENT-STRATEGY"], r["STATE"], r["#MEMBERS"])
                for r in table(out, group)] == [("uniform", "Stable", "1")], out

        out = kafka("consumer-groups", *bs, "--list", "--type", "consumer")
        assert table(out, group) == [{"GROUP": group, "TYPE": "Consumer"}], out
        out = kafka("consumer-groups", *bs, "--list", "--type", "classic")
        assert table(out, group) == [], out

        out = kafka("groups", *bs, "--list", "--group-type", "consumer")
        assert table(out, group) == [{"GROUP": group, "TYPE": "Consumer",
                                      "PROTOCOL": "consumer"}], out
    finally:
        m.close()


@needs_java
def test_console_consumer_with_the_consumer_protocol_reads_and_commits(bootstrap):
    """Kafka's console consumer in a group with group.protocol=consumer reads the N records
    produced beforehand over three partitions, commits them on exit (every partition's
    committed offset is its end), and leaves a Consumer-type group behind."""
    partitions = 3
    topic, group = fresh("cp-console"), fresh("cp-console")
    create_topic(bootstrap, topic, partitions)
    sent = produce_to_every_partition(bootstrap, topic, partitions, 7, "c")
    n = partitions * 7
    out = kafka("console-consumer", "--bootstrap-server", bootstrap, "--topic", topic,
                "--group", group, "--from-beginning", "--max-messages", str(n),
                "--timeout-ms", "40000", "--command-property", "group.protocol=consumer")
    assert f"Processed a total of {n} messages" in out, out
    wanted = sorted(v.decode() for vs in sent.values() for v in vs)
    assert sorted(w for w in out.split() if w.startswith("c-")) == wanted, out

    bs = ("--bootstrap-server", bootstrap)
    out = kafka("consumer-groups", *bs, "--describe", "--group", group)
    assert sorted((int(r["PARTITION"]), r["CURRENT-OFFSET"], r["LAG"], r["CONSUMER-ID"])
                  for r in table(out, group)) == \
        [(q, "7", "0", "-") for q in range(partitions)], out
    out = kafka("groups", *bs, "--list", "--group-type", "consumer")
    assert table(out, group) == [{"GROUP": group, "TYPE": "Consumer",
                                  "PROTOCOL": "consumer"}], out


# ---- coordinator failover (three Gregor nodes; skipped against another broker) ----

failover_cluster = cluster_fixture(scope="function", overrides={
    "offsets.topic.replication.factor": 3,
    "min.insync.replicas": 2,
    "broker.session.timeout.ms": 3000,
    "broker.heartbeat.interval.ms": 500,
    "group.consumer.heartbeat.interval.ms": 500,
})


@pytest.mark.parametrize("protocol", ["consumer", "classic"])
def test_members_carry_on_across_a_kill9_of_their_coordinator(failover_cluster, protocol):
    """Three members hold two of six partitions each (topic and __consumer_offsets RF 3), with
    the consumer protocol or the classic one. The broker coordinating the group is killed -9.
    The broker that takes over the group's __consumer_offsets partition loads the membership
    from it, as Kafka's coordinator does (record types 3-8 for the consumer protocol, the
    GroupMetadata record of the last complete generation for a classic group), so the members
    go on at their epochs or generation: each commits to the new coordinator, none is fenced
    or has a partition revoked or lost, the assignments stay as they were, and every record
    produced after the kill is read once, by the member holding its partition."""
    c = failover_cluster
    partitions = 6
    topic, group = fresh("cp-failover"), fresh("cp-failover")
    create_topics(c.bootstrap, [topic], partitions, rf=3)
    if protocol == "consumer":
        members = [Member(c.bootstrap, group, topic, "uniform") for _ in range(3)]
    else:
        conf = {"group.protocol": "classic", "partition.assignment.strategy": "range",
                "heartbeat.interval.ms": 500}
        members = [Member(c.bootstrap, group, topic, **conf) for _ in range(3)]
    try:
        poll_until(members, lambda: balanced(members, partitions), REBALANCE_TIMEOUT,
                   "three members with two partitions each")
        before = {m.consumer.memberid(): m.assigned() for m in members}
        coordinator = c.group_coordinator(group)
        for m in members:
            m.events.clear()
            m.errors.clear()

        c.kill(coordinator)
        survivors = ",".join(n.bootstrap for i, n in c.nodes.items() if i != coordinator)
        wait_for(lambda: c.group_coordinator(group, next(i for i in c.nodes if i != coordinator))
                 != coordinator, 30, "another broker to coordinate the group")

        # A commit carries the member's id and epoch: the new coordinator takes it only if it
        # knows the member at that epoch.
        for m in members:
            def committed(m=m):
                m.poll()
                offsets = [TopicPartition(topic, q, 0) for q in before[m.consumer.memberid()]]
                result = m.consumer.commit(offsets=offsets, asynchronous=False)
                return all(tp.error is None for tp in result)
            try:
                wait_for(committed, 45, f"member {m.consumer.memberid()} to commit")
            except TimeoutError as e:
                raise AssertionError(f"{e}: the new coordinator did not take the member's "
                                     f"commit; its errors: {m.errors[-3:]}") from None

        sent = produce_to_every_partition(survivors, topic, partitions, 5, "after")
        assert_consumed_once_by_owners(members, sent)
        assert {m.consumer.memberid(): m.assigned() for m in members} == before
        assert [m.events for m in members] == [[], [], []], \
            "partitions were revoked, lost or assigned after the coordinator's kill"
        fenced = [e for m in members for e in m.errors
                  if e.code() in (KafkaError.UNKNOWN_MEMBER_ID, KafkaError.FENCED_MEMBER_EPOCH)]
        assert not fenced, fenced[:3]
    finally:
        close_all(members)
