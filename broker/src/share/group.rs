//! A share group's membership (KIP-932): members join with ShareGroupHeartbeat and a member id
//! they generate, the coordinator assigns partitions itself — several members may share one
//! partition, so nothing is revoked before it moves — and members that stop heartbeating
//! leave after the session timeout.
//!
//! The assignment is Kafka's `simple` assignor's shape: every partition of a subscribed topic
//! goes to at least one member subscribed to it; with more members than partitions, the
//! partitions are shared round-robin, so every member gets one.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;

use crate::group::consumer::{Refusal, TopicPartition};

/// The one server-side assignor of share groups.
pub const ASSIGNOR: &str = "simple";

/// A member of a share group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareMember {
    /// The epoch the member was last told.
    pub epoch: i32,
    /// Rack, if the member gave one.
    pub rack_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Topics the member subscribes to.
    pub subscribed: BTreeSet<String>,
    /// Its partitions as of the group's assignment epoch.
    pub assignment: BTreeSet<TopicPartition>,
    /// Last heard from.
    pub last_heartbeat: Instant,
}

/// A share group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareGroup {
    /// Bumped by every membership or subscription change.
    pub group_epoch: i32,
    /// The group epoch the current assignment was computed at.
    pub assignment_epoch: i32,
    /// Members by id.
    pub members: BTreeMap<String, ShareMember>,
    /// Subscribed topics and their partition counts as of the last assignment.
    pub(crate) assigned_over: BTreeMap<String, i32>,
    /// Every partition the group's members were ever assigned: those it may have state of.
    pub initialized: BTreeSet<TopicPartition>,
}

/// A ShareGroupHeartbeat, protocol-neutral.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    /// The id the member generated.
    pub member_id: String,
    /// 0 to join, -1 to leave, else the member's epoch.
    pub member_epoch: i32,
    /// Rack, if given.
    pub rack_id: Option<String>,
    /// Subscribed topic names, if changed (always on a join).
    pub subscribed: Option<BTreeSet<String>>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
}

/// What a heartbeat answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatAnswer {
    /// The member's epoch now (-1 after leaving).
    pub member_epoch: i32,
    /// The member's partitions when they changed (or it joined).
    pub assignment: Option<BTreeSet<TopicPartition>>,
}

impl Default for ShareGroup {
    fn default() -> Self {
        ShareGroup::new()
    }
}

impl ShareGroup {
    /// An empty share group.
    pub fn new() -> ShareGroup {
        ShareGroup {
            group_epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            assigned_over: BTreeMap::new(),
            initialized: BTreeSet::new(),
        }
    }

    /// The state as Kafka names it.
    pub fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else {
            "Stable"
        }
    }

    /// Handles a heartbeat; `topics` are the cluster's topics and partition counts.
    pub fn heartbeat(
        &mut self,
        hb: Heartbeat,
        topics: &BTreeMap<String, i32>,
        now: Instant,
    ) -> Result<HeartbeatAnswer, Refusal> {
        if hb.member_id.is_empty() {
            return Err((
                ResponseError::InvalidRequest,
                "MemberId can't be empty.".into(),
            ));
        }
        match hb.member_epoch {
            -1 => {
                if self.members.remove(&hb.member_id).is_some() {
                    self.reassign(topics);
                }
                return Ok(HeartbeatAnswer {
                    member_epoch: -1,
                    assignment: None,
                });
            }
            0 => {
                let Some(subscribed) = hb.subscribed.clone().filter(|s| !s.is_empty()) else {
                    return Err((
                        ResponseError::InvalidRequest,
                        "SubscribedTopicNames must be set in first request.".into(),
                    ));
                };
                let member =
                    self.members
                        .entry(hb.member_id.clone())
                        .or_insert_with(|| ShareMember {
                            epoch: 0,
                            rack_id: None,
                            client_id: String::new(),
                            client_host: String::new(),
                            subscribed: BTreeSet::new(),
                            assignment: BTreeSet::new(),
                            last_heartbeat: now,
                        });
                member.subscribed = subscribed;
                member.epoch = 0;
                self.reassign(topics);
            }
            epoch => {
                let Some(member) = self.members.get_mut(&hb.member_id) else {
                    return Err((
                        ResponseError::UnknownMemberId,
                        format!("member {} is not in the share group", hb.member_id),
                    ));
                };
                if epoch != member.epoch {
                    return Err((
                        ResponseError::FencedMemberEpoch,
                        format!(
                            "member epoch {epoch} is not the member's current epoch {}",
                            member.epoch
                        ),
                    ));
                }
                let changed = hb
                    .subscribed
                    .as_ref()
                    .is_some_and(|s| !s.is_empty() && *s != member.subscribed);
                if let Some(s) = hb.subscribed.clone().filter(|_| changed) {
                    member.subscribed = s;
                }
                if changed || self.subscribed_topics(topics) != self.assigned_over {
                    self.reassign(topics);
                }
            }
        }
        let assignment_epoch = self.assignment_epoch;
        let member = self
            .members
            .get_mut(&hb.member_id)
            .expect("joined or checked above");
        member.last_heartbeat = now;
        member.client_id = hb.client_id;
        member.client_host = hb.client_host;
        if hb.rack_id.is_some() {
            member.rack_id = hb.rack_id;
        }
        let assignment = (member.epoch != assignment_epoch).then(|| {
            member.epoch = assignment_epoch;
            member.assignment.clone()
        });
        Ok(HeartbeatAnswer {
            member_epoch: member.epoch,
            assignment,
        })
    }

    /// Removes members not heard from within `session_timeout`; returns their ids.
    pub fn expire(
        &mut self,
        now: Instant,
        session_timeout: Duration,
        topics: &BTreeMap<String, i32>,
    ) -> Vec<String> {
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| now.duration_since(m.last_heartbeat) > session_timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            self.members.remove(id);
        }
        if !gone.is_empty() {
            self.reassign(topics);
        }
        gone
    }

    /// The subscribed topics that exist, with their partition counts.
    pub(crate) fn subscribed_topics(
        &self,
        topics: &BTreeMap<String, i32>,
    ) -> BTreeMap<String, i32> {
        self.members
            .values()
            .flat_map(|m| &m.subscribed)
            .filter_map(|t| topics.get(t).map(|&n| (t.clone(), n)))
            .collect()
    }

    /// A new group epoch with a fresh assignment.
    fn reassign(&mut self, topics: &BTreeMap<String, i32>) {
        self.group_epoch += 1;
        self.assigned_over = self.subscribed_topics(topics);
        for m in self.members.values_mut() {
            m.assignment.clear();
        }
        for (topic, &count) in &self.assigned_over {
            let subscribers: Vec<String> = self
                .members
                .iter()
                .filter(|(_, m)| m.subscribed.contains(topic))
                .map(|(id, _)| id.clone())
                .collect();
            let n = subscribers.len() as i32;
            if n == 0 || count == 0 {
                continue;
            }
            let pairs: Vec<(usize, i32)> = if n <= count {
                (0..count).map(|p| ((p % n) as usize, p)).collect()
            } else {
                (0..n).map(|i| (i as usize, i % count)).collect()
            };
            for (i, p) in pairs {
                if let Some(m) = self.members.get_mut(&subscribers[i]) {
                    m.assignment.insert((topic.clone(), p));
                    self.initialized.insert((topic.clone(), p));
                }
            }
        }
        self.assignment_epoch = self.group_epoch;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(id: &str, topics: &[&str]) -> Heartbeat {
        Heartbeat {
            member_id: id.into(),
            member_epoch: 0,
            rack_id: None,
            subscribed: Some(topics.iter().map(|t| t.to_string()).collect()),
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
        }
    }

    fn parts(a: &HeartbeatAnswer) -> Vec<i32> {
        a.assignment
            .as_ref()
            .unwrap()
            .iter()
            .map(|(_, p)| *p)
            .collect()
    }

    #[test]
    fn members_share_a_partition_and_split_many() {
        let topics = BTreeMap::from([("one".to_string(), 1), ("six".to_string(), 6)]);
        let mut g = ShareGroup::new();
        let now = Instant::now();
        let answers: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|m| g.heartbeat(join(m, &["one"]), &topics, now).unwrap())
            .collect();
        // Every member of three gets the one partition, at the epoch of its join.
        assert!(answers.iter().all(|a| parts(a) == [0]));
        assert_eq!(g.group_epoch, 3);
        // "a" heartbeats at its old epoch and is told the new one; the assignment is the same
        // partition, re-sent because the epoch moved.
        let mut hb = join("a", &["one"]);
        hb.member_epoch = 1;
        hb.subscribed = None;
        let a = g.heartbeat(hb.clone(), &topics, now).unwrap();
        assert_eq!(a.member_epoch, 3);
        // Switching to the six-partition topic spreads it over the members who read it.
        let mut switch = join("a", &["six"]);
        switch.member_epoch = 3;
        let a = g.heartbeat(switch, &topics, now).unwrap();
        assert_eq!(parts(&a), [0, 1, 2, 3, 4, 5]);
        // A stale epoch is fenced, an unknown member is refused, an empty id is bad input.
        assert_eq!(
            g.heartbeat(hb.clone(), &topics, now).unwrap_err().0,
            ResponseError::FencedMemberEpoch
        );
        let mut unknown = hb.clone();
        unknown.member_id = "z".into();
        assert_eq!(
            g.heartbeat(unknown, &topics, now).unwrap_err().0,
            ResponseError::UnknownMemberId
        );
        assert_eq!(
            g.heartbeat(join("", &["one"]), &topics, now).unwrap_err().0,
            ResponseError::InvalidRequest
        );
    }

    #[test]
    fn silent_members_expire_and_leavers_go_at_once() {
        let topics = BTreeMap::from([("t".to_string(), 4)]);
        let mut g = ShareGroup::new();
        let now = Instant::now();
        g.heartbeat(join("a", &["t"]), &topics, now).unwrap();
        let later = now + Duration::from_secs(10);
        let b = g.heartbeat(join("b", &["t"]), &topics, later).unwrap();
        assert_eq!(parts(&b).len(), 2);
        let gone = g.expire(
            later + Duration::from_secs(1),
            Duration::from_secs(5),
            &topics,
        );
        assert_eq!(gone, ["a"]);
        let mut leave = join("b", &["t"]);
        leave.member_epoch = -1;
        assert_eq!(g.heartbeat(leave, &topics, later).unwrap().member_epoch, -1);
        assert_eq!(g.state(), "Empty");
    }
}
