//! A consumer-protocol (KIP-848) group's membership as records of `__consumer_offsets`, in
//! Kafka's own format, so that the coordinator that takes over the group's partition carries
//! on where the last one stopped: members keep their ids, epochs and partitions, and no one
//! rejoins.
//!
//! Kafka's record types (the key's leading int16; each value version 0 of a flexible message):
//! - 3 `ConsumerGroupMetadata` (group): the group epoch;
//! - 4 `ConsumerGroupPartitionMetadata` (group): the subscribed topics' ids, names and
//!   partition counts when the target was computed;
//! - 5 `ConsumerGroupMemberMetadata` (group, member): the member's ids, subscription, rebalance
//!   timeout and assignor, and a classic member's session timeout and protocols (tag 0);
//! - 6 `ConsumerGroupTargetAssignmentMetadata` (group): the epoch of the target assignment;
//! - 7 `ConsumerGroupTargetAssignmentMember` (group, member): the member's target partitions;
//! - 8 `ConsumerGroupCurrentMemberAssignment` (group, member): its epoch, previous epoch,
//!   state, and the partitions it owns and is giving up.
//!
//! A group's records are a map from key to value: the coordinator writes the entries that
//! changed since its last write, and a tombstone (null value) for each key that went.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use uuid::Uuid;

use super::consumer::{ClassicMember, ConsumerGroup, ConsumerMember, TopicPartition, ASSIGNORS};
use crate::protocol::fields::{
    put_compact_bytes, put_compact_len, put_compact_nullable_str, put_compact_str, put_no_tags,
    put_str, put_uvarint, Reader,
};

const GROUP_METADATA: i16 = 3;
const PARTITION_METADATA: i16 = 4;
const MEMBER_METADATA: i16 = 5;
const TARGET_METADATA: i16 = 6;
const TARGET_MEMBER: i16 = 7;
const CURRENT_ASSIGNMENT: i16 = 8;

/// `MemberState` as Kafka numbers it: at its target.
const STABLE: i8 = 0;
/// Still giving up partitions.
const UNREVOKED_PARTITIONS: i8 = 1;
/// Waiting for partitions others still hold.
const UNRELEASED_PARTITIONS: i8 = 2;

/// One group's records: key to value.
pub type Records = BTreeMap<Bytes, Bytes>;

/// The group a membership record belongs to, or `None` for another record: these types, and
/// a share group's (9 to 15, see `share_log`).
pub fn group_of(key: &Bytes) -> Option<String> {
    let mut r = Reader::new(key.clone());
    (GROUP_METADATA..=15)
        .contains(&r.i16()?)
        .then(|| r.string())?
}

/// A key: `kind`, the group, and the member for a member's record.
pub(super) fn key(kind: i16, group: &str, member: Option<&str>) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(kind);
    put_str(&mut b, group);
    if let Some(member) = member {
        put_str(&mut b, member);
    }
    b.freeze()
}

/// A key's record type and, for the `member_kinds`, its member id.
pub(super) fn split_key(key: &Bytes, member_kinds: [i16; 3]) -> Option<(i16, Option<String>)> {
    let mut r = Reader::new(key.clone());
    let kind = r.i16()?;
    r.string()?;
    let member = member_kinds.contains(&kind).then(|| r.string()).flatten();
    Some((kind, member))
}

/// A value: version 0, then `body` (which ends with the value's tagged fields).
pub(super) fn value(body: impl FnOnce(&mut BytesMut)) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    body(&mut b);
    b.freeze()
}

/// `[]TopicPartitions`: topic ids with their partitions; topics without an id (deleted) are
/// left out.
pub(super) fn put_partitions(
    b: &mut BytesMut,
    parts: &BTreeSet<TopicPartition>,
    id_of: &impl Fn(&str) -> Option<Uuid>,
) {
    let mut by_topic: BTreeMap<Uuid, Vec<i32>> = BTreeMap::new();
    for (topic, p) in parts {
        if let Some(id) = id_of(topic) {
            by_topic.entry(id).or_default().push(*p);
        }
    }
    put_compact_len(b, by_topic.len());
    for (id, ps) in by_topic {
        b.put_slice(id.as_bytes());
        put_compact_len(b, ps.len());
        for p in ps {
            b.put_i32(p);
        }
        put_no_tags(b);
    }
}

/// Reads what `put_partitions` wrote; topics `name_of` does not know are left out.
pub(super) fn read_partitions(
    r: &mut Reader,
    name_of: &impl Fn(Uuid) -> Option<String>,
) -> Option<BTreeSet<TopicPartition>> {
    let mut out = BTreeSet::new();
    for _ in 0..r.array_len()?? {
        let id = r.uuid()?;
        let ps = r.i32s()?;
        r.skip_tags()?;
        if let Some(name) = name_of(id) {
            out.extend(ps.into_iter().map(|p| (name.clone(), p)));
        }
    }
    Some(out)
}

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

/// The records that hold `g`, group `group`, as it is now. `id_of` gives a topic's id.
pub fn records(group: &str, g: &ConsumerGroup, id_of: impl Fn(&str) -> Option<Uuid>) -> Records {
    let mut out = Records::new();
    out.insert(
        key(GROUP_METADATA, group, None),
        value(|b| {
            b.put_i32(g.epoch);
            put_no_tags(b);
        }),
    );
    out.insert(
        key(PARTITION_METADATA, group, None),
        value(|b| {
            let topics: Vec<_> = g
                .topics_seen
                .iter()
                .filter_map(|(t, n)| Some((id_of(t)?, t, *n)))
                .collect();
            put_compact_len(b, topics.len());
            for (id, name, partitions) in topics {
                b.put_slice(id.as_bytes());
                put_compact_str(b, name);
                b.put_i32(partitions);
                // The racks of each partition: not kept (unused since Kafka 4.0).
                put_compact_len(b, 0);
                put_no_tags(b);
            }
            put_no_tags(b);
        }),
    );
    out.insert(
        key(TARGET_METADATA, group, None),
        value(|b| {
            b.put_i32(g.assignment_epoch);
            put_no_tags(b);
        }),
    );
    for (id, m) in &g.members {
        out.insert(
            key(MEMBER_METADATA, group, Some(id)),
            value(|b| put_member(b, m)),
        );
        let target = g.target.get(id).cloned().unwrap_or_default();
        let state = if !m.revoking.is_empty() {
            UNREVOKED_PARTITIONS
        } else if m.epoch != g.assignment_epoch || !target.is_subset(&m.assigned) {
            UNRELEASED_PARTITIONS
        } else {
            STABLE
        };
        out.insert(
            key(TARGET_MEMBER, group, Some(id)),
            value(|b| {
                put_partitions(b, &target, &id_of);
                put_no_tags(b);
            }),
        );
        out.insert(
            key(CURRENT_ASSIGNMENT, group, Some(id)),
            value(|b| {
                b.put_i32(m.epoch);
                b.put_i32(m.previous_epoch);
                b.put_i8(state);
                put_partitions(b, &m.assigned, &id_of);
                put_partitions(b, &m.revoking, &id_of);
                put_no_tags(b);
            }),
        );
    }
    out
}

fn put_member(b: &mut BytesMut, m: &ConsumerMember) {
    put_compact_nullable_str(b, m.instance_id.as_deref());
    put_compact_nullable_str(b, m.rack_id.as_deref());
    put_compact_str(b, &m.client_id);
    put_compact_str(b, &m.client_host);
    put_compact_len(b, m.subscribed.len());
    for t in &m.subscribed {
        put_compact_str(b, t);
    }
    put_compact_nullable_str(b, m.regex.as_deref());
    b.put_i32(millis(m.rebalance_timeout));
    put_compact_nullable_str(b, m.assignor.as_deref());
    let Some(classic) = &m.classic else {
        put_no_tags(b);
        return;
    };
    // Tag 0: ClassicMemberMetadata (session timeout, protocols).
    let mut c = BytesMut::new();
    c.put_i32(millis(classic.session_timeout));
    put_compact_len(&mut c, classic.protocols.len());
    for (name, metadata) in &classic.protocols {
        put_compact_str(&mut c, name);
        put_compact_bytes(&mut c, metadata);
        put_no_tags(&mut c);
    }
    put_no_tags(&mut c);
    put_uvarint(b, 1);
    put_uvarint(b, 0);
    put_compact_len(b, c.len().saturating_sub(1));
    b.put_slice(&c);
}

fn read_member(v: &Bytes, now: Instant) -> Option<ConsumerMember> {
    let mut r = value_reader(v)?;
    let instance_id = r.nullable_string()?;
    let rack_id = r.nullable_string()?;
    let client_id = r.string()?;
    let client_host = r.string()?;
    let mut subscribed = BTreeSet::new();
    for _ in 0..r.array_len()?? {
        subscribed.insert(r.string()?);
    }
    let regex = r.nullable_string()?;
    let rebalance_timeout = Duration::from_millis(r.i32()?.max(0) as u64);
    let assignor = r.nullable_string()?;
    let mut classic = None;
    r.tagged_fields(|tag, data| {
        if tag == 0 {
            classic = Some(read_classic(data)?);
        }
        Some(())
    })?;
    Some(ConsumerMember {
        instance_id,
        rack_id,
        client_id,
        client_host,
        subscribed,
        regex,
        assignor,
        rebalance_timeout,
        classic,
        ..ConsumerMember::new(now)
    })
}

fn read_classic(data: Bytes) -> Option<ClassicMember> {
    let mut r = Reader::new(data);
    r.flexible = true;
    let session_timeout = Duration::from_millis(r.i32()?.max(0) as u64);
    let mut protocols = Vec::new();
    for _ in 0..r.array_len()?? {
        let name = r.string()?;
        let metadata = r.bytes()?;
        r.skip_tags()?;
        protocols.push((name, metadata));
    }
    Some(ClassicMember {
        session_timeout,
        protocols,
    })
}

/// A reader of a value's body, if it is of version 0.
pub(super) fn value_reader(v: &Bytes) -> Option<Reader> {
    let mut r = Reader::new(v.clone());
    r.flexible = true;
    (r.i16()? == 0).then_some(r)
}

/// The group `records` hold, if they hold one (a `ConsumerGroupMetadata`). Topics `name_of`
/// does not know (deleted since) are left out; so is a member whose records are incomplete.
/// Every member's session starts over at `now`, as when Kafka loads a group.
pub fn rebuild(
    records: &Records,
    name_of: impl Fn(Uuid) -> Option<String>,
    now: Instant,
) -> Option<ConsumerGroup> {
    let mut g = ConsumerGroup::new(ASSIGNORS[0]);
    let mut have_group = false;
    let mut targets: BTreeMap<String, BTreeSet<TopicPartition>> = BTreeMap::new();
    let mut current = BTreeMap::new();
    for (k, v) in records {
        let (kind, member) = split_key(k, [MEMBER_METADATA, TARGET_MEMBER, CURRENT_ASSIGNMENT])?;
        let mut r = value_reader(v)?;
        match (kind, member) {
            (GROUP_METADATA, _) => {
                g.epoch = r.i32()?;
                have_group = true;
            }
            (PARTITION_METADATA, _) => {
                for _ in 0..r.array_len()?? {
                    let id = r.uuid()?;
                    let name = r.string()?;
                    let partitions = r.i32()?;
                    for _ in 0..r.array_len()?? {
                        r.i32()?;
                        for _ in 0..r.array_len()?? {
                            r.string()?;
                        }
                        r.skip_tags()?;
                    }
                    r.skip_tags()?;
                    if name_of(id).as_deref() == Some(name.as_str()) {
                        g.topics_seen.insert(name, partitions);
                    }
                }
            }
            (TARGET_METADATA, _) => g.assignment_epoch = r.i32()?,
            (MEMBER_METADATA, Some(id)) => {
                if let Some(m) = read_member(v, now) {
                    g.members.insert(id, m);
                }
            }
            (TARGET_MEMBER, Some(id)) => {
                targets.insert(id, read_partitions(&mut r, &name_of)?);
            }
            (CURRENT_ASSIGNMENT, Some(id)) => {
                let epoch = r.i32()?;
                let previous_epoch = r.i32()?;
                r.i8()?;
                let assigned = read_partitions(&mut r, &name_of)?;
                let revoking = read_partitions(&mut r, &name_of)?;
                current.insert(id, (epoch, previous_epoch, assigned, revoking));
            }
            _ => {}
        }
    }
    if !have_group {
        return None;
    }
    g.members.retain(|id, m| {
        let Some((epoch, previous_epoch, assigned, revoking)) = current.remove(id) else {
            return false;
        };
        m.epoch = epoch;
        m.previous_epoch = previous_epoch;
        m.assigned = assigned;
        m.revoke_deadline = (!revoking.is_empty()).then(|| now + m.rebalance_timeout);
        m.revoking = revoking;
        true
    });
    g.target = targets
        .into_iter()
        .filter(|(id, _)| g.members.contains_key(id))
        .collect();
    if let Some(a) = g.members.values().find_map(|m| m.assignor.clone()) {
        g.assignor = a;
    }
    Some(g)
}

/// What to write to go from `before` to `after`: changed and new entries, and tombstones for
/// the keys that went.
pub fn changes(before: &Records, after: &Records) -> Vec<(Bytes, Option<Bytes>)> {
    let gone = before
        .keys()
        .filter(|k| !after.contains_key(*k))
        .map(|k| (k.clone(), None));
    let changed = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), Some(v.clone())));
    // Tombstones first: a member that left and one that joined never share a key anyway.
    gone.chain(changed).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::consumer::{ClassicJoin, Heartbeat};

    fn topics() -> BTreeMap<String, i32> {
        [("a".to_string(), 4), ("b".to_string(), 2)].into()
    }

    fn ids() -> BTreeMap<String, Uuid> {
        topics()
            .keys()
            .map(|t| (t.clone(), Uuid::new_v4()))
            .collect()
    }

    fn join(id: &str, instance: Option<&str>) -> Heartbeat {
        Heartbeat {
            member_id: id.into(),
            member_epoch: 0,
            instance_id: instance.map(str::to_string),
            rack_id: Some("rack-1".into()),
            rebalance_timeout_ms: 45_000,
            subscribed: Some(["a".to_string(), "b".to_string()].into()),
            regex: None,
            assignor: Some("range".into()),
            owned: Some(BTreeSet::new()),
            client_id: format!("client-{id}"),
            client_host: "/127.0.0.1".into(),
        }
    }

    /// A group in the middle of a rebalance: "m1" owns partitions, "m2" joined after it and
    /// waits for some of them, and a classic member "c1" holds its own.
    fn group() -> ConsumerGroup {
        let now = Instant::now();
        let t = topics();
        let mut g = ConsumerGroup::new(ASSIGNORS[0]);
        let a = g
            .heartbeat(join("m1", Some("i1")), &t, now, || unreachable!())
            .expect("m1 joins");
        g.heartbeat(
            Heartbeat {
                member_epoch: a.member_epoch,
                owned: a.assignment.clone(),
                ..join("m1", Some("i1"))
            },
            &t,
            now,
            || unreachable!(),
        )
        .expect("m1 heartbeats");
        g.heartbeat(join("m2", None), &t, now, || unreachable!())
            .expect("m2 joins");
        g.classic_join(
            ClassicJoin {
                heartbeat: join("c1", None),
                classic: ClassicMember {
                    session_timeout: Duration::from_secs(10),
                    protocols: vec![("range".into(), Bytes::from_static(b"\0\x01sub"))],
                },
            },
            &t,
            now,
        )
        .expect("c1 joins");
        g
    }

    #[test]
    fn a_group_reads_back_from_its_records() {
        let ids = ids();
        let g = group();
        let recs = records("g", &g, |t| ids.get(t).copied());
        assert_eq!(recs.len(), 3 + 3 * 3);
        assert!(recs.keys().all(|k| group_of(k).as_deref() == Some("g")));
        let name_of = |id: Uuid| ids.iter().find(|(_, v)| **v == id).map(|(k, _)| k.clone());
        let back = rebuild(&recs, name_of, Instant::now()).expect("a group");
        assert_eq!(back.epoch, g.epoch);
        assert_eq!(back.assignment_epoch, g.assignment_epoch);
        assert_eq!(back.topics_seen, g.topics_seen);
        assert_eq!(back.target, g.target);
        assert_eq!(back.assignor, "range");
        assert_eq!(
            back.members.keys().collect::<Vec<_>>(),
            g.members.keys().collect::<Vec<_>>()
        );
        for (id, m) in &g.members {
            let b = &back.members[id];
            let who = |m: &ConsumerMember| {
                (
                    m.instance_id.clone(),
                    m.rack_id.clone(),
                    m.client_id.clone(),
                    m.client_host.clone(),
                    m.subscribed.clone(),
                    m.regex.clone(),
                    m.assignor.clone(),
                    m.rebalance_timeout,
                    m.classic.clone(),
                )
            };
            let at = |m: &ConsumerMember| {
                (
                    m.epoch,
                    m.previous_epoch,
                    m.assigned.clone(),
                    m.revoking.clone(),
                )
            };
            assert_eq!(who(b), who(m), "member {id}");
            assert_eq!(at(b), at(m), "member {id}");
        }
        // Written again from what was read, the records are the same bytes.
        assert_eq!(records("g", &back, |t| ids.get(t).copied()), recs);
    }

    #[test]
    fn a_deleted_topic_drops_out_and_records_without_a_group_are_no_group() {
        let ids = ids();
        let g = group();
        let recs = records("g", &g, |t| ids.get(t).copied());
        let only_a = |id: Uuid| (ids["a"] == id).then(|| "a".to_string());
        let back = rebuild(&recs, only_a, Instant::now()).expect("a group");
        assert!(back
            .members
            .values()
            .all(|m| m.assigned.iter().all(|(t, _)| t == "a")));
        assert_eq!(back.topics_seen.keys().collect::<Vec<_>>(), ["a"]);

        let mut no_group = recs.clone();
        no_group.remove(&key(GROUP_METADATA, "g", None));
        assert!(rebuild(&no_group, |_| None, Instant::now()).is_none());
    }

    #[test]
    fn only_what_changed_is_written_and_a_member_gone_is_tombstoned() {
        let ids = ids();
        let id_of = |t: &str| ids.get(t).copied();
        let mut g = group();
        let before = records("g", &g, id_of);
        assert!(changes(&before, &records("g", &g, id_of)).is_empty());
        g.leave("m2");
        let after = records("g", &g, id_of);
        let written = changes(&before, &after);
        let tombstones: Vec<_> = written.iter().filter(|(_, v)| v.is_none()).collect();
        assert_eq!(tombstones.len(), 3, "m2's three records");
        assert!(written
            .iter()
            .any(|(k, v)| *k == key(GROUP_METADATA, "g", None) && v.is_some()));
        assert!(changes(&after, &Records::new())
            .iter()
            .all(|(_, v)| v.is_none()));
    }

    #[test]
    fn keys_and_values_are_kafkas_bytes() {
        // ConsumerGroupMetadataKey v3: type 3, then the group id as an int16-length string.
        assert_eq!(&key(GROUP_METADATA, "g", None)[..], b"\0\x03\0\x01g");
        assert_eq!(
            &key(CURRENT_ASSIGNMENT, "g", Some("m"))[..],
            b"\0\x08\0\x01g\0\x01m"
        );
        let g = ConsumerGroup {
            epoch: 5,
            ..ConsumerGroup::new("uniform")
        };
        let recs = records("g", &g, |_| None);
        // ConsumerGroupMetadataValue v0: version, epoch, no tagged fields.
        assert_eq!(
            &recs[&key(GROUP_METADATA, "g", None)][..],
            b"\0\0\0\0\0\x05\0"
        );
    }
}
