//! The classic consumer's embedded protocol (protocol type `consumer`): the subscription a
//! member puts in JoinGroup's metadata, the assignment the leader hands out through SyncGroup,
//! each as an int16 version followed by the versioned body, and the two standard assignors,
//! `range` and `roundrobin`, computed as Java's `RangeAssignor` and `RoundRobinAssignor` do.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedPartitions;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};

/// The assignor names this client offers, most preferred first.
pub const ASSIGNORS: [&str; 2] = ["range", "roundrobin"];
/// Version written for subscriptions and assignments; v0 is read by every consumer.
const WRITE_VERSION: i16 = 0;

/// An encoding or decoding failure, with what was being handled.
#[derive(Debug, thiserror::Error)]
#[error("malformed consumer protocol {what}: {reason}")]
pub struct ConsumerProtocolError {
    /// "subscription" or "assignment".
    what: &'static str,
    /// Why it failed.
    reason: String,
}

/// Topic name to sorted partition list.
pub type Assignment = BTreeMap<String, Vec<i32>>;

/// Encodes a subscription to `topics`.
pub fn encode_subscription(topics: &[String]) -> Result<Bytes, ConsumerProtocolError> {
    let sub = ConsumerProtocolSubscription::default().with_topics(
        topics
            .iter()
            .map(|t| StrBytes::from_string(t.clone()))
            .collect(),
    );
    encode_versioned(&sub, "subscription")
}

/// Decodes a subscription and returns its topics.
pub fn decode_subscription(bytes: &Bytes) -> Result<Vec<String>, ConsumerProtocolError> {
    let sub: ConsumerProtocolSubscription = decode_versioned(bytes, "subscription")?;
    Ok(sub.topics.iter().map(|t| t.as_str().to_owned()).collect())
}

/// What a member's subscription says: its topics, the partitions it owns (v1+, what a
/// cooperative assignor keeps across a rebalance) and its rack (v3+).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscription {
    /// Topics subscribed.
    pub topics: Vec<String>,
    /// Partitions owned.
    pub owned: Assignment,
    /// Rack.
    pub rack: Option<String>,
}

/// Decodes a subscription in full.
pub fn decode_subscription_details(bytes: &Bytes) -> Result<Subscription, ConsumerProtocolError> {
    let sub: ConsumerProtocolSubscription = decode_versioned(bytes, "subscription")?;
    let mut owned = Assignment::new();
    for tp in sub.owned_partitions {
        owned
            .entry(tp.topic.as_str().to_owned())
            .or_default()
            .extend(tp.partitions);
    }
    Ok(Subscription {
        topics: sub.topics.iter().map(|t| t.as_str().to_owned()).collect(),
        owned,
        rack: sub.rack_id.map(|r| r.as_str().to_owned()),
    })
}

/// Encodes an assignment.
pub fn encode_assignment(assignment: &Assignment) -> Result<Bytes, ConsumerProtocolError> {
    let msg = ConsumerProtocolAssignment::default().with_assigned_partitions(
        assignment
            .iter()
            .map(|(topic, partitions)| {
                AssignedPartitions::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.clone())))
                    .with_partitions(partitions.clone())
            })
            .collect(),
    );
    encode_versioned(&msg, "assignment")
}

/// Decodes an assignment; empty bytes (a member given nothing) decode to an empty one.
pub fn decode_assignment(bytes: &Bytes) -> Result<Assignment, ConsumerProtocolError> {
    if bytes.is_empty() {
        return Ok(Assignment::new());
    }
    let msg: ConsumerProtocolAssignment = decode_versioned(bytes, "assignment")?;
    let mut out = Assignment::new();
    for tp in msg.assigned_partitions {
        let parts = out.entry(tp.topic.as_str().to_owned()).or_default();
        parts.extend(tp.partitions);
        parts.sort_unstable();
    }
    Ok(out)
}

/// Assigns partitions to members with the named assignor. `subscriptions` maps member id to
/// its topics; `partition_counts` maps topic to its number of partitions (topics missing from
/// it are skipped). Every member gets an entry, possibly empty.
pub fn assign(
    assignor: &str,
    subscriptions: &BTreeMap<String, Vec<String>>,
    partition_counts: &BTreeMap<String, i32>,
) -> Option<BTreeMap<String, Assignment>> {
    let mut result: BTreeMap<String, Assignment> = subscriptions
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    match assignor {
        "range" => {
            for (topic, &count) in partition_counts {
                // Members are taken in member-id order, as Java sorts them.
                let members: Vec<&String> = subscriptions
                    .iter()
                    .filter(|(_, topics)| topics.contains(topic))
                    .map(|(m, _)| m)
                    .collect();
                if members.is_empty() || count <= 0 {
                    continue;
                }
                let n = members.len() as i32;
                let (per, extra) = (count / n, count % n);
                for (i, member) in (0i32..).zip(&members) {
                    let start = per * i + i.min(extra);
                    let len = per + i32::from(i < extra);
                    if len > 0 {
                        result
                            .entry((*member).clone())
                            .or_default()
                            .insert(topic.clone(), (start..start + len).collect());
                    }
                }
            }
        }
        "roundrobin" => {
            let members: Vec<&String> = subscriptions.keys().collect();
            if members.is_empty() {
                return Some(result);
            }
            let mut next = 0usize;
            for (topic, &count) in partition_counts {
                if !subscriptions.values().any(|t| t.contains(topic)) {
                    continue;
                }
                for partition in 0..count.max(0) {
                    // Skip members not subscribed to this topic; one of them is.
                    loop {
                        let member = members[next % members.len()];
                        next += 1;
                        if subscriptions[member].contains(topic) {
                            result
                                .entry(member.clone())
                                .or_default()
                                .entry(topic.clone())
                                .or_default()
                                .push(partition);
                            break;
                        }
                    }
                }
            }
        }
        _ => return None,
    }
    Some(result)
}

/// All topics any member subscribes to.
pub fn subscribed_topics(subscriptions: &BTreeMap<String, Vec<String>>) -> BTreeSet<String> {
    subscriptions.values().flatten().cloned().collect()
}

fn encode_versioned<M: Encodable>(
    msg: &M,
    what: &'static str,
) -> Result<Bytes, ConsumerProtocolError> {
    let mut buf = BytesMut::new();
    buf.put_i16(WRITE_VERSION);
    msg.encode(&mut buf, WRITE_VERSION)
        .map_err(|e| ConsumerProtocolError {
            what,
            reason: e.to_string(),
        })?;
    Ok(buf.freeze())
}

fn decode_versioned<M: Decodable + Message>(
    bytes: &Bytes,
    what: &'static str,
) -> Result<M, ConsumerProtocolError> {
    let mut buf = bytes.clone();
    let version = buf.try_get_i16().map_err(|_| ConsumerProtocolError {
        what,
        reason: "shorter than its version field".into(),
    })?;
    if version < 0 {
        return Err(ConsumerProtocolError {
            what,
            reason: format!("negative version {version}"),
        });
    }
    // Newer versions only append fields, so read them as the newest one we know.
    M::decode(&mut buf, version.min(M::VERSIONS.max)).map_err(|e| ConsumerProtocolError {
        what,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subs(entries: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        entries
            .iter()
            .map(|(m, ts)| (m.to_string(), ts.iter().map(|t| t.to_string()).collect()))
            .collect()
    }

    fn counts(entries: &[(&str, i32)]) -> BTreeMap<String, i32> {
        entries.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    #[test]
    fn subscription_v0_bytes_match_the_java_layout() {
        let bytes = encode_subscription(&["ab".into()]).unwrap();
        // version 0 | array len 1 | string len 2 "ab" | user data null (-1)
        assert_eq!(
            &bytes[..],
            &[0, 0, 0, 0, 0, 1, 0, 2, b'a', b'b', 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(decode_subscription(&bytes).unwrap(), vec!["ab".to_string()]);
    }

    #[test]
    fn assignment_round_trips_and_empty_bytes_mean_nothing_assigned() {
        let mut a = Assignment::new();
        a.insert("t".into(), vec![0, 2]);
        let bytes = encode_assignment(&a).unwrap();
        assert_eq!(&bytes[..2], &[0, 0]);
        assert_eq!(decode_assignment(&bytes).unwrap(), a);
        assert!(decode_assignment(&Bytes::new()).unwrap().is_empty());
    }

    #[test]
    fn newer_subscription_versions_are_read_and_garbage_is_an_error() {
        let sub = ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_static_str("t")])
            .with_generation_id(4);
        let mut buf = BytesMut::new();
        buf.put_i16(3);
        sub.encode(&mut buf, 3).unwrap();
        assert_eq!(decode_subscription(&buf.freeze()).unwrap(), vec!["t"]);
        assert!(decode_subscription(&Bytes::from_static(&[0])).is_err());
        assert!(decode_subscription(&Bytes::from_static(&[0, 0, 0, 0, 0, 9])).is_err());
    }

    #[test]
    fn range_gives_leading_members_the_extra_partitions() {
        let out = assign(
            "range",
            &subs(&[("m1", &["t"]), ("m2", &["t"])]),
            &counts(&[("t", 3)]),
        )
        .unwrap();
        assert_eq!(out["m1"]["t"], vec![0, 1]);
        assert_eq!(out["m2"]["t"], vec![2]);
    }

    #[test]
    fn roundrobin_deals_partitions_across_members_skipping_unsubscribed_ones() {
        let out = assign(
            "roundrobin",
            &subs(&[("a", &["t", "u"]), ("b", &["t"])]),
            &counts(&[("t", 3), ("u", 2)]),
        )
        .unwrap();
        assert_eq!(out["a"]["t"], vec![0, 2]);
        assert_eq!(out["b"]["t"], vec![1]);
        assert_eq!(out["a"]["u"], vec![0, 1]);
        assert!(!out["b"].contains_key("u"));
    }

    #[test]
    fn unknown_assignor_is_refused() {
        assert!(assign("sticky", &subs(&[("a", &["t"])]), &counts(&[("t", 1)])).is_none());
    }
}
