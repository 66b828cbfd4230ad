//! A classic group's membership as Kafka keeps it in `__consumer_offsets`: the
//! `GroupMetadata` record (key type 2, the group id; value version 3: protocol type,
//! generation, chosen protocol, leader, state timestamp, and each member's ids, timeouts,
//! subscription for the chosen protocol and assignment). Written when a generation is complete
//! (the group is Stable) or the group is Empty, so that the coordinator that takes the group's
//! partition over carries on at that generation: the members' heartbeats and commits are
//! taken, and nobody rejoins.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};

use super::state::{Group, GroupState, Member};
use crate::protocol::fields::{put_str, Reader};

/// `GroupMetadataKey`'s record type.
const GROUP_METADATA: i16 = 2;
/// The value version written (the last non-flexible one, with static members' instance ids).
const VERSION: i16 = 3;

/// The group a `GroupMetadata` record belongs to, or `None` for another record.
pub fn group_of(key: &Bytes) -> Option<String> {
    let mut r = Reader::new(key.clone());
    (r.i16()? == GROUP_METADATA).then(|| r.string())?
}

/// The key of `group`'s record.
pub fn key(group: &str) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(GROUP_METADATA);
    put_str(&mut b, group);
    b.freeze()
}

fn put_nullable_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}

fn put_bytes(b: &mut BytesMut, bytes: &[u8]) {
    b.put_i32(i32::try_from(bytes.len()).unwrap_or(i32::MAX));
    b.put_slice(bytes);
}

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

/// What the record of classic group `g` should hold now: `Some` with its value when it is at
/// a complete generation (Stable, or Empty after having had a protocol type); `None` when
/// it is not a classic group (any longer); `Err(())` while a rebalance is under way, when the
/// last record written stays as it is.
pub fn value(g: &Group) -> Result<Option<Bytes>, ()> {
    if g.consumer.is_some() || g.share.is_some() {
        return Ok(None);
    }
    let Some(protocol_type) = g.protocol_type.as_deref() else {
        return Ok(None);
    };
    match g.state {
        GroupState::Stable | GroupState::Empty => {}
        GroupState::PreparingRebalance | GroupState::CompletingRebalance => return Err(()),
    }
    let mut b = BytesMut::new();
    b.put_i16(VERSION);
    put_str(&mut b, protocol_type);
    b.put_i32(g.generation);
    put_nullable_str(&mut b, g.protocol.as_deref());
    put_nullable_str(&mut b, g.leader.as_deref());
    // CurrentStateTimestamp: -1, unknown (it would make every write differ).
    b.put_i64(-1);
    b.put_i32(i32::try_from(g.members.len()).unwrap_or(i32::MAX));
    let protocol = g.protocol.as_deref().unwrap_or_default();
    for (id, m) in &g.members {
        put_str(&mut b, id);
        put_nullable_str(&mut b, m.group_instance_id.as_deref());
        put_str(&mut b, &m.client_id);
        put_str(&mut b, &m.client_host);
        b.put_i32(millis(m.rebalance_timeout));
        b.put_i32(millis(m.session_timeout));
        let subscription = m
            .protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, s)| s.clone())
            .unwrap_or_default();
        put_bytes(&mut b, &subscription);
        put_bytes(&mut b, &m.assignment);
    }
    Ok(Some(b.freeze()))
}

/// The group a `GroupMetadata` value holds (versions 0 to 4), its members' sessions starting
/// over at `now`, as when Kafka loads a group; `None` if it does not decode.
pub fn restore(value: &Bytes, now: Instant) -> Option<Group> {
    let mut r = Reader::new(value.clone());
    let version = r.i16()?;
    if !(0..=4).contains(&version) {
        return None;
    }
    r.flexible = version >= 4;
    let protocol_type = r.string()?;
    let generation = r.i32()?;
    let protocol = r.nullable_string()?;
    let leader = r.nullable_string()?;
    if version >= 2 {
        r.i64()?;
    }
    let mut g = Group::new();
    for _ in 0..r.array_len()?? {
        let id = r.string()?;
        let group_instance_id = if version >= 3 {
            r.nullable_string()?
        } else {
            None
        };
        let client_id = r.string()?;
        let client_host = r.string()?;
        let rebalance_timeout = if version >= 1 { r.i32()? } else { -1 };
        let session_timeout = Duration::from_millis(r.i32()?.max(0) as u64);
        let subscription = r.bytes()?;
        let assignment = r.bytes()?;
        if r.flexible {
            r.skip_tags()?;
        }
        let rebalance_timeout = if rebalance_timeout < 0 {
            session_timeout
        } else {
            Duration::from_millis(rebalance_timeout as u64)
        };
        g.members.insert(
            id,
            Member {
                client_id,
                client_host,
                group_instance_id,
                session_timeout,
                rebalance_timeout,
                protocols: vec![(protocol.clone().unwrap_or_default(), subscription)],
                assignment,
                last_heartbeat: now,
                join_waiter: None,
                sync_waiter: None,
            },
        );
    }
    g.state = if g.members.is_empty() {
        GroupState::Empty
    } else {
        GroupState::Stable
    };
    g.generation = generation;
    g.protocol_type = Some(protocol_type);
    g.protocol = protocol;
    g.leader = leader;
    Some(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(instance: Option<&str>, assignment: &'static [u8]) -> Member {
        Member {
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            group_instance_id: instance.map(str::to_string),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            protocols: vec![
                ("range".into(), Bytes::from_static(b"range-sub")),
                ("roundrobin".into(), Bytes::from_static(b"rr-sub")),
            ],
            assignment: Bytes::from_static(assignment),
            last_heartbeat: Instant::now(),
            join_waiter: None,
            sync_waiter: None,
        }
    }

    fn stable() -> Group {
        let mut g = Group::new();
        g.state = GroupState::Stable;
        g.generation = 7;
        g.protocol_type = Some("consumer".into());
        g.protocol = Some("roundrobin".into());
        g.leader = Some("m1".into());
        g.members.insert("m1".into(), member(None, b"a1"));
        g.members.insert("m2".into(), member(Some("i2"), b"a2"));
        g
    }

    #[test]
    fn a_stable_group_reads_back_at_its_generation() {
        let g = stable();
        let v = value(&g).expect("stable").expect("classic");
        let back = restore(&v, Instant::now()).expect("decodes");
        assert_eq!(back.state, GroupState::Stable);
        assert_eq!(
            (
                back.generation,
                &back.protocol_type,
                &back.protocol,
                &back.leader
            ),
            (7, &g.protocol_type, &g.protocol, &g.leader)
        );
        assert_eq!(back.members.len(), 2);
        let m2 = &back.members["m2"];
        assert_eq!(m2.group_instance_id.as_deref(), Some("i2"));
        assert_eq!(
            m2.protocols,
            [("roundrobin".into(), Bytes::from_static(b"rr-sub"))]
        );
        assert_eq!(&m2.assignment[..], b"a2");
        assert_eq!(
            (m2.session_timeout, m2.rebalance_timeout),
            (Duration::from_secs(10), Duration::from_secs(30))
        );
        // Written again, the same bytes.
        assert_eq!(value(&back), Ok(Some(v)));
    }

    #[test]
    fn only_complete_generations_of_classic_groups_are_written() {
        let mut g = stable();
        g.state = GroupState::CompletingRebalance;
        assert_eq!(value(&g), Err(()));
        g.state = GroupState::PreparingRebalance;
        assert_eq!(value(&g), Err(()));
        g.members.clear();
        g.state = GroupState::Empty;
        let empty = restore(&value(&g).unwrap().unwrap(), Instant::now()).unwrap();
        assert_eq!((empty.state, empty.generation), (GroupState::Empty, 7));
        // A group that only ever had offsets committed is no classic group.
        assert_eq!(value(&Group::new()), Ok(None));
    }

    #[test]
    fn the_key_is_kafkas() {
        assert_eq!(&key("g")[..], b"\0\x02\0\x01g");
        assert_eq!(group_of(&key("g")).as_deref(), Some("g"));
        assert_eq!(group_of(&Bytes::from_static(b"\0\x03\0\x01g")), None);
    }
}
