//! Mixed groups, as Kafka 4.x runs them (`group.consumer.migration.policy=bidirectional`):
//! classic-protocol members (JoinGroup, SyncGroup, Heartbeat) inside a consumer-protocol group,
//! assigned by the coordinator like the others, and the conversions between the two kinds of
//! group. A consumer-protocol member joining a classic group upgrades it, its members keeping
//! their partitions; the last consumer-protocol member leaving a group of classic members
//! downgrades it back, and the classic members rebalance among themselves.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;

use super::consumer::{
    ClassicJoin, ClassicMember, ConsumerGroup, Heartbeat, Refusal, TopicPartition,
};
use super::state::{Group, GroupState, JoinRequest, JoinResult, Member};
use crate::tools::consumer_protocol::{
    decode_assignment, decode_subscription_details, encode_assignment, Assignment,
};

/// The protocol type of consumers, the only one a consumer-protocol group takes.
const CONSUMER: &str = "consumer";

impl Group {
    /// Whether classic requests for this group go to its consumer-protocol membership.
    pub(super) fn is_mixed(&self) -> bool {
        self.members.is_empty() && self.has_consumer_members()
    }

    /// A classic member's JoinGroup in a consumer-protocol group: answered at once, with its
    /// member epoch as generation and no leader (the coordinator assigns).
    pub(super) fn classic_join_to_consumer_group(
        &mut self,
        req: JoinRequest,
        topics: &BTreeMap<String, i32>,
        now: Instant,
    ) -> JoinResult {
        let Some(c) = self.consumer.as_mut() else {
            return JoinResult::error(ResponseError::UnknownMemberId, req.member_id);
        };
        if req.protocol_type != CONSUMER {
            return JoinResult::error(ResponseError::InconsistentGroupProtocol, req.member_id);
        }
        let mut member_id = req.member_id.clone();
        if member_id.is_empty() {
            member_id = uuid::Uuid::new_v4().to_string();
            if req.require_known_member_id && req.group_instance_id.is_none() {
                return JoinResult::error(ResponseError::MemberIdRequired, member_id);
            }
        } else if c.fenced(&member_id, req.group_instance_id.as_deref()) {
            return JoinResult::error(ResponseError::FencedInstanceId, member_id);
        }
        let Some(join) = classic_join(&req, member_id.clone()) else {
            return JoinResult::error(ResponseError::InconsistentGroupProtocol, member_id);
        };
        let protocol = join.classic.protocols.first().map(|(n, _)| n.clone());
        match c.classic_join(join, topics, now) {
            Ok(epoch) => JoinResult {
                error: None,
                generation_id: epoch,
                protocol_type: Some(CONSUMER.into()),
                protocol_name: protocol,
                leader: String::new(),
                member_id,
                members: Vec::new(),
            },
            Err((e, message)) => {
                tracing::debug!(%member_id, %message, "classic join to a consumer group refused");
                JoinResult::error(e, member_id)
            }
        }
    }

    /// A classic member's SyncGroup in a consumer-protocol group: its assignment, encoded.
    pub(super) fn classic_sync_to_consumer_group(
        &mut self,
        (member_id, instance): (&str, Option<&str>),
        generation: i32,
        now: Instant,
    ) -> Result<Bytes, ResponseError> {
        let c = self
            .consumer
            .as_mut()
            .ok_or(ResponseError::UnknownMemberId)?;
        if c.fenced(member_id, instance) {
            return Err(ResponseError::FencedInstanceId);
        }
        let assigned = c.classic_sync(member_id, generation, now)?;
        encode_assignment(&to_assignment(&assigned)).map_err(|e| {
            tracing::warn!(%member_id, error = %e, "assignment not encodable");
            ResponseError::UnknownServerError
        })
    }

    /// A classic member's Heartbeat in a consumer-protocol group.
    pub(super) fn classic_heartbeat_to_consumer_group(
        &mut self,
        (member_id, instance): (&str, Option<&str>),
        generation: i32,
        now: Instant,
    ) -> Option<ResponseError> {
        let c = self.consumer.as_mut()?;
        if c.fenced(member_id, instance) {
            return Some(ResponseError::FencedInstanceId);
        }
        c.classic_heartbeat(member_id, generation, now)
    }

    /// A classic LeaveGroup in a consumer-protocol group: per member, as Kafka answers.
    pub(super) fn classic_leave_from_consumer_group(
        &mut self,
        members: &[(String, Option<String>)],
    ) -> Vec<Option<ResponseError>> {
        let Some(c) = self.consumer.as_mut() else {
            return vec![Some(ResponseError::UnknownMemberId); members.len()];
        };
        let answers = members
            .iter()
            .map(|(id, instance)| {
                let current = instance.as_deref().and_then(|i| c.static_member(i));
                let id = match super::leaving_member(id, current.as_deref()) {
                    Ok(id) => id,
                    Err(e) => return Some(e),
                };
                if c.members.contains_key(&id) {
                    c.leave(&id);
                    None
                } else {
                    Some(ResponseError::UnknownMemberId)
                }
            })
            .collect();
        self.maybe_downgrade(Instant::now());
        answers
    }

    /// Online upgrade: a consumer-protocol member is joining this classic group. Its members
    /// become classic members of a consumer-protocol group, keeping their assignments; their
    /// pending joins and syncs are told to rejoin. A group of another protocol type, or whose
    /// embedded protocol does not decode, is GROUP_ID_NOT_FOUND, as Kafka answers.
    pub(super) fn upgrade(
        &mut self,
        group_id: &str,
        topics: &BTreeMap<String, i32>,
        now: Instant,
    ) -> Result<(), Refusal> {
        let not_consumer = || {
            (
                ResponseError::GroupIdNotFound,
                format!("Group {group_id} is not a consumer group"),
            )
        };
        if self.protocol_type.as_deref() != Some(CONSUMER) {
            return Err(not_consumer());
        }
        let protocol = self.protocol.clone();
        let mut joins = Vec::with_capacity(self.members.len());
        for (id, m) in &self.members {
            let req = JoinRequest {
                group_id: group_id.to_string(),
                member_id: id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                session_timeout_ms: millis(m.session_timeout),
                rebalance_timeout_ms: millis(m.rebalance_timeout),
                protocol_type: CONSUMER.into(),
                protocols: chosen_first(&m.protocols, protocol.as_deref()),
                require_known_member_id: false,
            };
            let mut join = classic_join(&req, id.clone()).ok_or_else(not_consumer)?;
            let assigned = decode_assignment(&m.assignment).map_err(|_| not_consumer())?;
            join.heartbeat.owned = Some(partitions(assigned));
            joins.push(join);
        }
        tracing::info!(group = %group_id, generation = self.generation, members = joins.len(),
            "classic group upgraded to the consumer protocol");
        for (id, m) in &mut self.members {
            m.release(id, ResponseError::RebalanceInProgress);
        }
        let generation = self.generation;
        *self = Group {
            offsets: std::mem::take(&mut self.offsets),
            persisted: std::mem::take(&mut self.persisted),
            consumer: Some(ConsumerGroup::from_classic(generation, joins, topics, now)),
            ..Group::new()
        };
        Ok(())
    }

    /// Online downgrade: once every member left speaks the classic protocol, the group is a
    /// classic group again, at its epoch as generation, members keeping their assignments
    /// until the rebalance this starts gives them new ones.
    pub(super) fn maybe_downgrade(&mut self, now: Instant) {
        if !self
            .consumer
            .as_ref()
            .is_some_and(ConsumerGroup::all_classic)
        {
            return;
        }
        let Some(c) = self.consumer.take() else {
            return;
        };
        for (id, m) in c.members {
            let Some(classic) = m.classic else { continue };
            let assignment = encode_assignment(&to_assignment(&m.assigned)).unwrap_or_default();
            let member = Member {
                client_id: m.client_id,
                client_host: m.client_host,
                group_instance_id: m.instance_id,
                session_timeout: classic.session_timeout,
                rebalance_timeout: m.rebalance_timeout,
                protocols: classic.protocols,
                assignment,
                last_heartbeat: now,
                join_waiter: None,
                sync_waiter: None,
            };
            self.members.insert(id, member);
        }
        tracing::info!(
            generation = c.epoch,
            members = self.members.len(),
            "consumer group downgraded to the classic protocol"
        );
        self.generation = c.epoch;
        self.protocol_type = Some(CONSUMER.into());
        self.protocol = self.select_protocol();
        self.leader = self.members.keys().next().cloned();
        self.state = GroupState::Stable;
        self.prepare_rebalance();
    }
}

impl ConsumerGroup {
    /// Whether `member_id`, claiming static id `instance`, is an old incarnation of a static
    /// member that has since joined again under another id (FENCED_INSTANCE_ID).
    pub fn fenced(&self, member_id: &str, instance: Option<&str>) -> bool {
        instance
            .and_then(|i| self.static_member(i))
            .is_some_and(|current| current != member_id)
    }

    /// The member id static member `instance` has now.
    pub fn static_member(&self, instance: &str) -> Option<String> {
        self.members
            .iter()
            .find(|(_, m)| m.instance_id.as_deref() == Some(instance))
            .map(|(id, _)| id.clone())
    }
}

/// A JoinGroup as a classic member of a consumer-protocol group: its subscription is decoded
/// from its first protocol's metadata (every protocol of a consumer carries the same one).
/// `None` when that does not decode.
fn classic_join(req: &JoinRequest, member_id: String) -> Option<ClassicJoin> {
    let (_, metadata) = req.protocols.first()?;
    let sub = decode_subscription_details(metadata).ok()?;
    Some(ClassicJoin {
        heartbeat: Heartbeat {
            member_id,
            member_epoch: 0,
            instance_id: req.group_instance_id.clone(),
            rack_id: sub.rack,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            subscribed: Some(sub.topics.into_iter().collect()),
            regex: None,
            assignor: None,
            owned: Some(partitions(sub.owned)),
            client_id: req.client_id.clone(),
            client_host: req.client_host.clone(),
        },
        classic: ClassicMember {
            session_timeout: Duration::from_millis(req.session_timeout_ms.max(0) as u64),
            protocols: req.protocols.clone(),
        },
    })
}

/// `protocols` with the group's chosen one first: the subscription a member joined with.
fn chosen_first(protocols: &[(String, Bytes)], chosen: Option<&str>) -> Vec<(String, Bytes)> {
    let mut out = protocols.to_vec();
    if let Some(i) = out.iter().position(|(n, _)| Some(n.as_str()) == chosen) {
        let p = out.remove(i);
        out.insert(0, p);
    }
    out
}

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

/// The embedded protocol's topics and partitions as a set of partitions.
fn partitions(assignment: Assignment) -> BTreeSet<TopicPartition> {
    assignment
        .into_iter()
        .flat_map(|(t, ps)| ps.into_iter().map(move |p| (t.clone(), p)))
        .collect()
}

/// Partitions as the embedded protocol's assignment.
fn to_assignment(partitions: &BTreeSet<TopicPartition>) -> Assignment {
    let mut out = Assignment::new();
    for (t, p) in partitions {
        out.entry(t.clone()).or_default().push(*p);
    }
    out
}
