//! A share group's membership (KIP-932) as records of `__consumer_offsets`, in Kafka's format,
//! so that the coordinator taking over the group's partition keeps its members, epochs and
//! assignment, and an empty share group outlives the move.
//!
//! Kafka's record types (each value version 0 of a flexible message):
//! - 10 `ShareGroupMemberMetadata` (group, member): rack, client id and host, subscribed topics;
//! - 11 `ShareGroupMetadata` (group): the group epoch and the hash of the subscribed topics'
//!   metadata the assignment was computed over (KIP-1101);
//! - 12 `ShareGroupTargetAssignmentMetadata` (group): the assignment epoch;
//! - 13 `ShareGroupTargetAssignmentMember` (group, member): its partitions;
//! - 14 `ShareGroupCurrentMemberAssignment` (group, member): the epoch it was last told;
//! - 15 `ShareGroupStatePartitionMetadata` (group): the partitions it has share state of.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use bytes::{BufMut, BytesMut};
use uuid::Uuid;

use super::consumer::TopicPartition;
use super::consumer_log::{
    key, put_partitions, read_partitions, split_key, value, value_reader, Records,
};
use crate::protocol::fields::{
    put_compact_len, put_compact_nullable_str, put_compact_str, put_no_tags, Reader,
};
use crate::share::group::{ShareGroup, ShareMember};

const MEMBER_METADATA: i16 = 10;
const GROUP_METADATA: i16 = 11;
const TARGET_METADATA: i16 = 12;
const TARGET_MEMBER: i16 = 13;
const CURRENT_ASSIGNMENT: i16 = 14;
const STATE_PARTITIONS: i16 = 15;

/// `MemberState` STABLE: a share member has nothing to revoke or wait for.
const STABLE: i8 = 0;

/// A hash of topics and their partition counts (FNV-1a), stable across processes: it tells a
/// coordinator that loads the group whether the topics changed since the assignment.
fn metadata_hash(topics: &BTreeMap<String, i32>) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, count) in topics {
        for byte in name.bytes().chain([0]).chain(count.to_be_bytes()) {
            h ^= u64::from(byte);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h as i64
}

/// The records that hold share group `group` as it is now; `id_of` gives a topic's id.
pub fn records(group: &str, g: &ShareGroup, id_of: impl Fn(&str) -> Option<Uuid>) -> Records {
    let mut out = Records::new();
    out.insert(
        key(GROUP_METADATA, group, None),
        value(|b| {
            b.put_i32(g.group_epoch);
            b.put_i64(metadata_hash(&g.assigned_over));
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
    out.insert(
        key(STATE_PARTITIONS, group, None),
        value(|b| put_state_partitions(b, &g.initialized, &id_of)),
    );
    for (id, m) in &g.members {
        out.insert(
            key(MEMBER_METADATA, group, Some(id)),
            value(|b| {
                put_compact_nullable_str(b, m.rack_id.as_deref());
                put_compact_str(b, &m.client_id);
                put_compact_str(b, &m.client_host);
                put_compact_len(b, m.subscribed.len());
                for t in &m.subscribed {
                    put_compact_str(b, t);
                }
                put_no_tags(b);
            }),
        );
        out.insert(
            key(TARGET_MEMBER, group, Some(id)),
            value(|b| {
                put_partitions(b, &m.assignment, &id_of);
                put_no_tags(b);
            }),
        );
        out.insert(
            key(CURRENT_ASSIGNMENT, group, Some(id)),
            value(|b| {
                b.put_i32(m.epoch);
                b.put_i32(m.epoch);
                b.put_i8(STABLE);
                let told = if m.epoch == g.assignment_epoch {
                    m.assignment.clone()
                } else {
                    BTreeSet::new()
                };
                put_partitions(b, &told, &id_of);
                put_no_tags(b);
            }),
        );
    }
    out
}

/// `InitializingTopics` (none: Gregor initializes a partition's state as it assigns it),
/// `InitializedTopics` by topic, `DeletingTopics` (none).
fn put_state_partitions(
    b: &mut BytesMut,
    parts: &BTreeSet<TopicPartition>,
    id_of: &impl Fn(&str) -> Option<Uuid>,
) {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in parts {
        by_topic.entry(t).or_default().push(*p);
    }
    let topics: Vec<_> = by_topic
        .into_iter()
        .filter_map(|(t, ps)| Some((id_of(t)?, t, ps)))
        .collect();
    put_compact_len(b, 0);
    put_compact_len(b, topics.len());
    for (id, name, ps) in topics {
        b.put_slice(id.as_bytes());
        put_compact_str(b, name);
        put_compact_len(b, ps.len());
        for p in ps {
            b.put_i32(p);
        }
        // CreateTimestamp: not kept.
        b.put_i64(-1);
        put_no_tags(b);
    }
    put_compact_len(b, 0);
    put_no_tags(b);
}

fn read_state_partitions(
    r: &mut Reader,
    name_of: &impl Fn(Uuid) -> Option<String>,
) -> Option<BTreeSet<TopicPartition>> {
    let mut out = BTreeSet::new();
    for initialized in [false, true] {
        for _ in 0..r.array_len()?? {
            let id = r.uuid()?;
            let name = r.string()?;
            let ps = r.i32s()?;
            r.i64()?;
            r.skip_tags()?;
            if initialized && name_of(id).as_deref() == Some(name.as_str()) {
                out.extend(ps.into_iter().map(|p| (name.clone(), p)));
            }
        }
    }
    Some(out)
}

fn read_member(r: &mut Reader, now: Instant) -> Option<ShareMember> {
    let rack_id = r.nullable_string()?;
    let client_id = r.string()?;
    let client_host = r.string()?;
    let mut subscribed = BTreeSet::new();
    for _ in 0..r.array_len()?? {
        subscribed.insert(r.string()?);
    }
    Some(ShareMember {
        epoch: 0,
        rack_id,
        client_id,
        client_host,
        subscribed,
        assignment: BTreeSet::new(),
        last_heartbeat: now,
    })
}

/// The share group `records` hold, if they hold one (a `ShareGroupMetadata`). `name_of` names
/// a topic id (topics deleted since are left out) and `topics` are the cluster's topics with
/// their partition counts: when the subscribed ones changed since the assignment, the next
/// heartbeat computes a new one. Every member's session starts over at `now`, as when Kafka
/// loads a group.
pub fn rebuild(
    records: &Records,
    name_of: impl Fn(Uuid) -> Option<String>,
    topics: &BTreeMap<String, i32>,
    now: Instant,
) -> Option<ShareGroup> {
    let mut g = ShareGroup::new();
    let mut hash = None;
    let mut targets = BTreeMap::new();
    let mut told = BTreeMap::new();
    for (k, v) in records {
        let (kind, member) = split_key(k, [MEMBER_METADATA, TARGET_MEMBER, CURRENT_ASSIGNMENT])?;
        let mut r = value_reader(v)?;
        match (kind, member) {
            (GROUP_METADATA, _) => {
                g.group_epoch = r.i32()?;
                hash = Some(r.i64()?);
            }
            (TARGET_METADATA, _) => g.assignment_epoch = r.i32()?,
            (STATE_PARTITIONS, _) => g.initialized = read_state_partitions(&mut r, &name_of)?,
            (MEMBER_METADATA, Some(id)) => {
                g.members.insert(id, read_member(&mut r, now)?);
            }
            (TARGET_MEMBER, Some(id)) => {
                targets.insert(id, read_partitions(&mut r, &name_of)?);
            }
            (CURRENT_ASSIGNMENT, Some(id)) => {
                told.insert(id, r.i32()?);
            }
            _ => {}
        }
    }
    let hash = hash?;
    g.members.retain(|id, m| {
        let (Some(epoch), Some(assignment)) = (told.remove(id), targets.remove(id)) else {
            return false;
        };
        m.epoch = epoch;
        m.assignment = assignment;
        true
    });
    let subscribed = g.subscribed_topics(topics);
    if metadata_hash(&subscribed) == hash {
        g.assigned_over = subscribed;
    }
    Some(g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::share::group::Heartbeat;

    fn join(id: &str, topics: &[&str]) -> Heartbeat {
        Heartbeat {
            member_id: id.into(),
            member_epoch: 0,
            rack_id: Some("rack-1".into()),
            subscribed: Some(topics.iter().map(|t| t.to_string()).collect()),
            client_id: format!("client-{id}"),
            client_host: "/127.0.0.1".into(),
        }
    }

    fn ids(topics: &BTreeMap<String, i32>) -> BTreeMap<String, Uuid> {
        topics.keys().map(|t| (t.clone(), Uuid::new_v4())).collect()
    }

    #[test]
    fn a_share_group_comes_back_from_its_records_as_it_was() {
        let topics = BTreeMap::from([("a".to_string(), 3), ("b".to_string(), 1)]);
        let ids = ids(&topics);
        let now = Instant::now();
        let mut g = ShareGroup::new();
        g.heartbeat(join("m1", &["a", "b"]), &topics, now).unwrap();
        g.heartbeat(join("m2", &["a"]), &topics, now).unwrap();
        // m1 has not heard of the second assignment yet: its epoch is behind.
        assert_ne!(g.members["m1"].epoch, g.assignment_epoch);
        let recs = records("g", &g, |t| ids.get(t).copied());
        let name_of = |id: Uuid| ids.iter().find(|(_, v)| **v == id).map(|(k, _)| k.clone());
        let back = rebuild(&recs, name_of, &topics, now).expect("a group");
        assert_eq!(back, g);
        // Written again, it is the same records: a reloaded group writes nothing new.
        assert_eq!(records("g", &back, |t| ids.get(t).copied()), recs);
        // m1 heartbeats at its old epoch and is told the assignment it missed.
        let mut hb = join("m1", &["a", "b"]);
        hb.member_epoch = g.members["m1"].epoch;
        hb.subscribed = None;
        let mut back = back;
        let answer = back.heartbeat(hb, &topics, now).unwrap();
        assert_eq!(answer.member_epoch, g.assignment_epoch);
        assert_eq!(
            answer.assignment.as_ref(),
            Some(&g.members["m1"].assignment)
        );
    }

    #[test]
    fn a_topic_grown_while_the_group_moved_is_assigned_on_the_next_heartbeat() {
        let topics = BTreeMap::from([("a".to_string(), 2)]);
        let ids = ids(&topics);
        let now = Instant::now();
        let mut g = ShareGroup::new();
        let joined = g.heartbeat(join("m1", &["a"]), &topics, now).unwrap();
        let recs = records("g", &g, |t| ids.get(t).copied());
        let grown = BTreeMap::from([("a".to_string(), 4)]);
        let name_of = |id: Uuid| ids.iter().find(|(_, v)| **v == id).map(|(k, _)| k.clone());
        let mut back = rebuild(&recs, name_of, &grown, now).unwrap();
        let mut hb = join("m1", &["a"]);
        hb.member_epoch = joined.member_epoch;
        hb.subscribed = None;
        let answer = back.heartbeat(hb, &grown, now).unwrap();
        assert_eq!(answer.assignment.map(|a| a.len()), Some(4));
        assert!(answer.member_epoch > joined.member_epoch);
    }

    #[test]
    fn records_without_group_metadata_are_no_share_group() {
        let mut recs = Records::new();
        recs.insert(
            key(TARGET_METADATA, "g", None),
            value(|b| {
                b.put_i32(3);
                put_no_tags(b);
            }),
        );
        assert!(rebuild(&recs, |_| None, &BTreeMap::new(), Instant::now()).is_none());
        assert_eq!(
            super::super::consumer_log::group_of(&key(GROUP_METADATA, "g", None)).as_deref(),
            Some("g")
        );
    }
}
