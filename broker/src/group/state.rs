//! A consumer group's membership state machine: members, generations, the chosen protocol and
//! the waiters parked by JoinGroup and SyncGroup. Pure in-memory state, driven by
//! [`super::GroupCoordinator`] under its lock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

use super::offsets_log::OffsetValue;

/// Group states, named as Kafka reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members.
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Waiting for the leader's assignment.
    CompletingRebalance,
    /// Assignment distributed.
    Stable,
}

impl GroupState {
    /// The name Kafka uses in DescribeGroups/ListGroups.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// What a JoinGroup answers.
#[derive(Debug, Clone)]
pub struct JoinResult {
    /// Error, if any.
    pub error: Option<ResponseError>,
    /// Generation.
    pub generation_id: i32,
    /// Protocol type (e.g. "consumer").
    pub protocol_type: Option<String>,
    /// Chosen protocol (assignor).
    pub protocol_name: Option<String>,
    /// Leader's member id.
    pub leader: String,
    /// This member's id.
    pub member_id: String,
    /// For the leader: every member and its metadata for the chosen protocol.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinResult {
    pub(super) fn error(e: ResponseError, member_id: String) -> JoinResult {
        JoinResult {
            error: Some(e),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id,
            members: Vec::new(),
        }
    }
}

/// What a SyncGroup answers: error, or this member's assignment.
pub type SyncResult = Result<Bytes, ResponseError>;

/// A JoinGroup request, protocol-neutral.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Group id.
    pub group_id: String,
    /// Member id ("" on first join).
    pub member_id: String,
    /// Static membership id (`group.instance.id`, KIP-345).
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Protocol type.
    pub protocol_type: String,
    /// (name, metadata) in preference order.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+ must first get a member id (MEMBER_ID_REQUIRED).
    pub require_known_member_id: bool,
}

#[derive(Debug)]
pub(super) struct Member {
    pub(super) client_id: String,
    pub(super) client_host: String,
    pub(super) group_instance_id: Option<String>,
    pub(super) session_timeout: Duration,
    pub(super) rebalance_timeout: Duration,
    pub(super) protocols: Vec<(String, Bytes)>,
    pub(super) assignment: Bytes,
    pub(super) last_heartbeat: Instant,
    pub(super) join_waiter: Option<oneshot::Sender<JoinResult>>,
    pub(super) sync_waiter: Option<oneshot::Sender<SyncResult>>,
}

impl Member {
    /// Answers this member's (id `id`) parked JoinGroup and SyncGroup with `error`: it is
    /// gone from the group, or an old incarnation of a static member.
    pub(super) fn release(&mut self, id: &str, error: ResponseError) {
        if let Some(w) = self.join_waiter.take() {
            let _ = w.send(JoinResult::error(error, id.to_string()));
        }
        if let Some(w) = self.sync_waiter.take() {
            let _ = w.send(Err(error));
        }
    }
}

#[derive(Debug)]
pub(super) struct Group {
    pub(super) state: GroupState,
    pub(super) generation: i32,
    pub(super) protocol_type: Option<String>,
    pub(super) protocol: Option<String>,
    pub(super) leader: Option<String>,
    pub(super) members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not yet joined, with when.
    pub(super) pending: HashMap<String, Instant>,
    /// When the current rebalance must complete regardless of stragglers.
    pub(super) rebalance_deadline: Option<Instant>,
    /// A new group waits `group.initial.rebalance.delay.ms` for more members.
    pub(super) initial_delay_until: Option<Instant>,
    pub(super) offsets: BTreeMap<(String, i32), OffsetValue>,
    /// Membership under the consumer protocol (KIP-848), once a member has heartbeated.
    pub(super) consumer: Option<super::consumer::ConsumerGroup>,
    /// A share group's membership (KIP-932): set once a share member has heartbeated, and
    /// then the group is nothing else.
    pub(super) share: Option<crate::share::group::ShareGroup>,
    /// The membership records (classic, consumer-protocol or share) last written to (or
    /// loaded from) `__consumer_offsets`, to write only what changes.
    pub(super) persisted: super::consumer_log::Records,
}

impl Group {
    pub(super) fn new() -> Group {
        Group {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            rebalance_deadline: None,
            initial_delay_until: None,
            offsets: BTreeMap::new(),
            consumer: None,
            share: None,
            persisted: Default::default(),
        }
    }

    /// Whether the group is a classic or consumer-protocol group: it has members of either
    /// kind, committed offsets or a protocol.
    pub(super) fn is_consumer_group(&self) -> bool {
        self.share.is_none()
            && (!self.members.is_empty()
                || self.consumer.is_some()
                || !self.offsets.is_empty()
                || self.protocol_type.is_some())
    }

    /// Whether the group has anything to keep: offsets, members of either protocol, or a
    /// share group's existence (its state lives with the share coordinator).
    pub(super) fn holds_state(&self) -> bool {
        !self.offsets.is_empty()
            || !self.members.is_empty()
            || self.has_consumer_members()
            || self.share.is_some()
    }

    /// Whether members of the consumer protocol (KIP-848) are in the group.
    pub(super) fn has_consumer_members(&self) -> bool {
        self.consumer
            .as_ref()
            .is_some_and(|c| !c.members.is_empty())
    }

    /// The member id a static member (`group.instance.id`, KIP-345) has now.
    pub(super) fn static_member(&self, instance: &str) -> Option<&String> {
        self.members
            .iter()
            .find(|(_, m)| m.group_instance_id.as_deref() == Some(instance))
            .map(|(id, _)| id)
    }

    /// Whether `member_id`, claiming static id `instance`, is an old incarnation of a static
    /// member that has since joined again under another id (FENCED_INSTANCE_ID).
    pub(super) fn fenced(&self, member_id: &str, instance: Option<&str>) -> bool {
        instance
            .and_then(|i| self.static_member(i))
            .is_some_and(|current| current != member_id)
    }

    /// A static member restarted (JoinGroup with its `group.instance.id` and no member id):
    /// the member `old` becomes `new` with the request's protocols and timeouts, keeping its
    /// assignment; the old incarnation's waiting calls are fenced. In a stable group whose
    /// protocol stays the same this is all, no rebalance (KIP-345): the answer names the
    /// leader as it was, so the member, even if it led, only syncs to get its assignment back.
    /// Otherwise the group rebalances and the answer comes with the next generation.
    pub(super) fn replace_static_member(
        &mut self,
        old: &str,
        new: String,
        req: JoinRequest,
        now: Instant,
    ) -> Result<JoinResult, oneshot::Receiver<JoinResult>> {
        let leader_before = self.leader.clone().unwrap_or_default();
        let Some(mut m) = self.members.remove(old) else {
            return Ok(JoinResult::error(ResponseError::UnknownMemberId, new));
        };
        m.release(old, ResponseError::FencedInstanceId);
        m.client_id = req.client_id;
        m.client_host = req.client_host;
        m.protocols = req.protocols;
        m.session_timeout = Duration::from_millis(req.session_timeout_ms.max(0) as u64);
        m.rebalance_timeout = Duration::from_millis(req.rebalance_timeout_ms.max(0) as u64);
        m.last_heartbeat = now;
        if self.leader.as_deref() == Some(old) {
            self.leader = Some(new.clone());
        }
        self.members.insert(new.clone(), m);
        if self.state == GroupState::Stable && self.select_protocol() == self.protocol {
            return Ok(JoinResult {
                error: None,
                generation_id: self.generation,
                protocol_type: self.protocol_type.clone(),
                protocol_name: self.protocol.clone(),
                leader: leader_before,
                member_id: new,
                members: Vec::new(),
            });
        }
        let (tx, rx) = oneshot::channel();
        if let Some(m) = self.members.get_mut(&new) {
            m.join_waiter = Some(tx);
        }
        self.prepare_rebalance();
        self.maybe_complete_join(now);
        Err(rx)
    }

    /// The topics the members subscribe to, from their `consumer` protocol subscriptions
    /// in the chosen protocol (none while no protocol is chosen, or for another protocol
    /// type), as Kafka's GroupMetadata computes them.
    pub(super) fn subscribed_topics(&self) -> BTreeSet<String> {
        let Some(protocol) = self
            .protocol
            .as_deref()
            .filter(|_| self.protocol_type.as_deref() == Some("consumer"))
        else {
            return BTreeSet::new();
        };
        self.member_metadata(protocol)
            .iter()
            .filter_map(|(_, _, metadata)| {
                crate::tools::consumer_protocol::decode_subscription(metadata).ok()
            })
            .flatten()
            .collect()
    }

    fn member_metadata(&self, protocol: &str) -> Vec<(String, Option<String>, Bytes)> {
        self.members
            .iter()
            .map(|(id, m)| {
                let meta = m
                    .protocols
                    .iter()
                    .find(|(n, _)| n == protocol)
                    .map(|(_, b)| b.clone())
                    .unwrap_or_default();
                (id.clone(), m.group_instance_id.clone(), meta)
            })
            .collect()
    }

    pub(super) fn join_result_for(&self, member_id: &str) -> JoinResult {
        let protocol = self.protocol.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        JoinResult {
            error: None,
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            members: if leader == member_id {
                self.member_metadata(&protocol)
            } else {
                Vec::new()
            },
            leader,
            member_id: member_id.to_string(),
        }
    }

    /// Starts (or continues) a rebalance.
    pub(super) fn prepare_rebalance(&mut self) {
        if self.state != GroupState::PreparingRebalance {
            // Members waiting on a sync of the old generation must rejoin.
            for m in self.members.values_mut() {
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.send(Err(ResponseError::RebalanceInProgress));
                }
            }
            self.state = GroupState::PreparingRebalance;
            let timeout = self
                .members
                .values()
                .map(|m| m.rebalance_timeout)
                .max()
                .unwrap_or(Duration::from_secs(60));
            self.rebalance_deadline = Some(Instant::now() + timeout);
        }
    }

    /// Completes the join phase if every member has rejoined (or the deadline passed).
    pub(super) fn maybe_complete_join(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        if self.initial_delay_until.is_some_and(|t| now < t) {
            return;
        }
        let all_joined = self.members.values().all(|m| m.join_waiter.is_some());
        let deadline_passed = self.rebalance_deadline.is_some_and(|d| now >= d);
        if !all_joined && !deadline_passed {
            return;
        }
        // Members that did not rejoin in time are dropped.
        self.members.retain(|_, m| m.join_waiter.is_some());
        self.initial_delay_until = None;
        self.rebalance_deadline = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            return;
        }
        self.protocol = self.select_protocol();
        if self
            .leader
            .as_ref()
            .is_none_or(|l| !self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = GroupState::CompletingRebalance;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let result = self.join_result_for(&id);
            if let Some(m) = self.members.get_mut(&id) {
                m.last_heartbeat = now;
                if let Some(w) = m.join_waiter.take() {
                    let _ = w.send(result);
                }
            }
        }
    }

    /// The protocol every member supports with the most first-choice votes.
    pub(super) fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == *n))
            })
            .collect();
        let mut best: Option<(&String, usize)> = None;
        for c in candidates {
            let votes = self
                .members
                .values()
                .filter(|m| {
                    m.protocols
                        .iter()
                        .find(|(p, _)| candidates_contains(&self.members, p))
                        .is_some_and(|(p, _)| p == c)
                })
                .count();
            if best.is_none_or(|(_, v)| votes > v) {
                best = Some((c, votes));
            }
        }
        best.map(|(c, _)| c.clone())
    }

    pub(super) fn remove_member(&mut self, id: &str) {
        if let Some(mut m) = self.members.remove(id) {
            m.release(id, ResponseError::UnknownMemberId);
        }
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => self.prepare_rebalance(),
            GroupState::PreparingRebalance | GroupState::Empty => {}
        }
        if self.members.is_empty() && self.state == GroupState::PreparingRebalance {
            self.maybe_complete_join(Instant::now());
        }
    }
}

pub(super) fn candidates_contains(members: &BTreeMap<String, Member>, p: &str) -> bool {
    members
        .values()
        .all(|m| m.protocols.iter().any(|(q, _)| q == p))
}
