"""Mixed consumer groups: classic-protocol consumers (JoinGroup/SyncGroup/Heartbeat,
librdkafka's default `group.protocol=classic`) and KIP-848 consumers
(`group.protocol=consumer`, ConsumerGroupHeartbeat) in one group, as Kafka 4.x allows with
group.consumer.migration.policy=bidirectional (its default).

- A classic member may join a group of KIP-848 members. The coordinator assigns it itself:
  its JoinGroup answer names no leader, it gets its partitions through SyncGroup, and a
  heartbeat answered REBALANCE_IN_PROGRESS tells it to rejoin when its assignment changes.
- Online upgrade: a KIP-848 member joining a non-empty classic group turns it into a
  consumer-protocol group (type CONSUMER); the classic members keep their partitions until the
  new target assignment moves some of them away.
- Online downgrade: when the last KIP-848 member leaves and only classic members remain, the
  group turns back into a classic group and they rebalance among themselves.

The classic members run with both of librdkafka's kinds of client assignor: eager `range`
(revokes everything before rejoining) and `cooperative-sticky` (keeps what it owns). Kafka's
own kafka-consumer-groups tells the two kinds of member apart (ConsumerGroupDescribe's member
type); librdkafka's admin client does not expose it.
scripts/test-all.sh also runs this file with GREGOR_TEST_BROKER=kafka, so every assertion
here is Apache Kafka 4.3's behaviour too."""

from __future__ import annotations

import pytest

from confluent_kafka import ConsumerGroupState, ConsumerGroupType
from confluent_kafka.admin import AdminClient

from conftest import wait_for
from helpers import create_topic
from test_consumer_protocol import (REBALANCE_TIMEOUT, TIMEOUT, Member,
                                    assert_consumed_once_by_owners, balanced, close_all,
                                    describe, fresh, kafka, needs_java, poll_until,
                                    produce_to_every_partition, table)

PARTITIONS = 6

# librdkafka's client-side assignors: eager and cooperative.
STRATEGIES = ["range", "cooperative-sticky"]


class ClassicMember(Member):
    """A Member speaking the classic group protocol with the client-side assignor `strategy`.
    Its callbacks are incremental with `cooperative-sticky`; with eager `range` each `assign`
    carries the whole new assignment and each `revoke` the whole old one."""

    def __init__(self, bootstrap: str, group: str, topic: str, strategy: str, **conf):
        super().__init__(bootstrap, group, topic, None, **{
            "group.protocol": "classic", "partition.assignment.strategy": strategy, **conf})


def group_listing(bootstrap: str, group: str):
    """`group`'s entry in ListGroups (through librdkafka's list_consumer_groups), or None."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    result = admin.list_consumer_groups(request_timeout=TIMEOUT).result(timeout=TIMEOUT)
    return next((g for g in result.valid if g.group_id == group), None)


def held_by(members: list[Member]) -> dict[str, list[int]]:
    return {m.consumer.memberid(): m.assigned() for m in members}


def wait_described(bootstrap: str, group: str, members: list[Member], type_):
    """Wait until the group describes itself as Stable, of type `type_`, with exactly
    `members`, each holding what its consumer holds; return the description."""
    want = held_by(members)

    def described_as_held():
        d = describe(bootstrap, group)
        got = {x.member_id: sorted(tp.partition for tp in x.assignment.topic_partitions)
               for x in d.members}
        return d if (d.type, d.state, got) == (type_, ConsumerGroupState.STABLE, want) \
            else None
    return wait_for(described_as_held, TIMEOUT,
                    f"a Stable {type_} group described with the members' assignments {want}")


def wait_listed(bootstrap: str, group: str, type_):
    """Wait until ListGroups lists `group` with type `type_`."""
    return wait_for(lambda: (g := group_listing(bootstrap, group)) is not None
                    and g.type == type_ and g, TIMEOUT, f"{group} listed as a {type_} group")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_classic_member_joins_a_consumer_protocol_group(bootstrap, strategy):
    """A KIP-848 member holds all six partitions; a classic member joining the same group is
    assigned by the coordinator: the KIP-848 member revokes three (keeping the other three,
    with no loss) and the classic member gets them through SyncGroup. The group stays a
    consumer-protocol group with both members described with their partitions, and records
    produced to every partition are each read once, by the partition's owner. When the classic
    member then leaves (LeaveGroup), the KIP-848 member is handed back just its three
    partitions and the group stays a consumer-protocol group."""
    topic, group = fresh("mixed-join"), fresh("mixed-join")
    create_topic(bootstrap, topic, PARTITIONS)
    new = Member(bootstrap, group, topic)
    members = [new]
    try:
        poll_until(members, lambda: new.assigned() == list(range(PARTITIONS)),
                   REBALANCE_TIMEOUT, "the KIP-848 member to hold all six partitions")
        wait_described(bootstrap, group, [new], ConsumerGroupType.CONSUMER)

        classic = ClassicMember(bootstrap, group, topic, strategy)
        members.append(classic)
        poll_until(members, lambda: balanced(members, PARTITIONS)
                   and len(classic.assigned()) == 3,
                   REBALANCE_TIMEOUT, "the two members to hold three partitions each")

        moved = classic.assigned()
        assert new.events == [("assign", list(range(PARTITIONS))), ("revoke", moved)], \
            new.events
        assert classic.events[-1] == ("assign", moved), classic.events
        assert "lost" not in {kind for kind, _ in new.events + classic.events}

        d = wait_described(bootstrap, group, members, ConsumerGroupType.CONSUMER)
        assert len(d.members) == 2
        wait_listed(bootstrap, group, ConsumerGroupType.CONSUMER)

        sent = produce_to_every_partition(bootstrap, topic, PARTITIONS, 10, "v")
        assert_consumed_once_by_owners(members, sent)
        assert all(m.errors == [] for m in members), [m.errors for m in members]

        # The classic member leaves (LeaveGroup): its partitions go back to the KIP-848 member,
        # which is handed just those, and the group stays a consumer-protocol group.
        new.events.clear()
        classic.close()
        members.remove(classic)
        poll_until(members, lambda: new.assigned() == list(range(PARTITIONS)),
                   REBALANCE_TIMEOUT, "the KIP-848 member to hold all six partitions again")
        assert new.events == [("assign", moved)], new.events
        wait_described(bootstrap, group, [new], ConsumerGroupType.CONSUMER)
    finally:
        close_all(members)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_consumer_protocol_member_upgrades_a_classic_group_and_leaving_downgrades_it(
        bootstrap, strategy):
    """A classic member alone holds all six partitions of a CLASSIC group. A KIP-848 member
    joining converts the group to a CONSUMER group; the coordinator moves three partitions to
    the newcomer (a cooperative classic member only revokes those three, it is never handed
    back what it kept). When the KIP-848 member closes, the only member left is classic, so
    the group converts back to a CLASSIC group, and the classic member, rebalancing alone,
    holds all six again and reads what is then produced to every partition."""
    topic, group = fresh("mixed-upgrade"), fresh("mixed-upgrade")
    create_topic(bootstrap, topic, PARTITIONS)
    classic = ClassicMember(bootstrap, group, topic, strategy)
    members = [classic]
    try:
        poll_until(members, lambda: classic.assigned() == list(range(PARTITIONS)),
                   REBALANCE_TIMEOUT, "the classic member to hold all six partitions")
        wait_listed(bootstrap, group, ConsumerGroupType.CLASSIC)
        wait_described(bootstrap, group, [classic], ConsumerGroupType.CLASSIC)
        classic.events.clear()

        # Upgrade.
        new = Member(bootstrap, group, topic)
        members.append(new)
        poll_until(members, lambda: balanced(members, PARTITIONS)
                   and len(new.assigned()) == 3,
                   REBALANCE_TIMEOUT, "the two members to hold three partitions each")
        kept = classic.assigned()
        moved = sorted(set(range(PARTITIONS)) - set(kept))
        if strategy == "cooperative-sticky":
            assert classic.events == [("revoke", moved)], classic.events
        else:
            assert classic.events[0] == ("revoke", list(range(PARTITIONS))), classic.events
            assert classic.events[-1] == ("assign", kept), classic.events
        assert new.events == [("assign", moved)], new.events
        wait_listed(bootstrap, group, ConsumerGroupType.CONSUMER)
        d = wait_described(bootstrap, group, members, ConsumerGroupType.CONSUMER)
        assert len(d.members) == 2
        assert "lost" not in {kind for kind, _ in new.events + classic.events}

        # Downgrade.
        classic.events.clear()
        new.close()
        members.remove(new)
        poll_until(members, lambda: classic.assigned() == list(range(PARTITIONS)),
                   REBALANCE_TIMEOUT, "the classic member to hold all six partitions again")
        if strategy == "cooperative-sticky":
            assert classic.events == [("assign", moved)], classic.events
        else:
            assert classic.events[-1] == ("assign", list(range(PARTITIONS))), classic.events
        assert "lost" not in {kind for kind, _ in classic.events}
        wait_listed(bootstrap, group, ConsumerGroupType.CLASSIC)
        d = wait_described(bootstrap, group, [classic], ConsumerGroupType.CLASSIC)
        assert len(d.members) == 1

        sent = produce_to_every_partition(bootstrap, topic, PARTITIONS, 10, "v")
        assert_consumed_once_by_owners(members, sent)
        assert classic.errors == [], classic.errors
    finally:
        close_all(members)


@needs_java
def test_kafka_tools_tell_classic_members_of_a_consumer_protocol_group_apart(bootstrap):
    """In a consumer-protocol group with a KIP-848 member and a classic one, three partitions
    each: kafka-consumer-groups --describe --members --verbose shows each member's current and
    target assignment, with UPGRADED true for the KIP-848 member and false for the classic
    one (ConsumerGroupDescribe's member type); --state shows the server assignor and Stable;
    kafka-groups --list shows a Consumer group speaking the consumer protocol."""
    topic, group = fresh("mixed-tools"), fresh("mixed-tools")
    create_topic(bootstrap, topic, PARTITIONS)
    new = Member(bootstrap, group, topic, "uniform")
    members = [new]
    try:
        # The KIP-848 member makes the group a consumer-protocol group first. (Had the classic
        # member's JoinGroup come first, Kafka 4.3.1 would convert a classic group caught
        # mid-rebalance and fail the heartbeat with an unknown server error: its
        # ConsumerGroup.fromClassicGroup takes an Optional.get of a member without an
        # assignment yet.)
        poll_until(members, lambda: new.assigned() == list(range(PARTITIONS)),
                   REBALANCE_TIMEOUT, "the KIP-848 member to hold all six partitions")
        classic = ClassicMember(bootstrap, group, topic, "cooperative-sticky")
        members.append(classic)
        poll_until(members, lambda: balanced(members, PARTITIONS)
                   and len(classic.assigned()) == 3,
                   REBALANCE_TIMEOUT, "the two members to hold three partitions each")
        wait_described(bootstrap, group, members, ConsumerGroupType.CONSUMER)
        bs = ("--bootstrap-server", bootstrap)

        def assignment(m: Member) -> str:
            return f"{topic}:{','.join(map(str, m.assigned()))}"
        out = kafka("consumer-groups", *bs, "--describe", "--group", group, "--members",
                    "--verbose")
        assert {r["CONSUMER-ID"]: (r["#PARTITIONS"], r["CURRENT-ASSIGNMENT"],
                                   r["TARGET-ASSIGNMENT"], r["UPGRADED"])
                for r in table(out, group)} == {
            new.consumer.memberid(): ("3", assignment(new), assignment(new), "true"),
            classic.consumer.memberid(): ("3", assignment(classic), assignment(classic),
                                          "false"),
        }, out

        out = kafka("consumer-groups", *bs, "--describe", "--group", group, "--state")
        assert [(r["ASSIGNMENT-STRATEGY"], r["STATE"], r["#MEMBERS"])
                for r in table(out, group)] == [("uniform", "Stable", "2")], out
        out = kafka("groups", *bs, "--list", "--group-type", "consumer")
        assert table(out, group) == [{"GROUP": group, "TYPE": "Consumer",
                                      "PROTOCOL": "consumer"}], out
    finally:
        close_all(members)
