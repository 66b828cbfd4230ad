//! A classic consumer-group member: FindCoordinator, JoinGroup (retrying once with the
//! member id a v4+ coordinator hands out), assignment by the leader with the `range` or
//! `roundrobin` assignor, SyncGroup, Heartbeat, OffsetFetch/OffsetCommit and LeaveGroup.
//!
//! Heartbeats are sent from the consumer's poll loop (fetches wait at most a fraction of the
//! heartbeat interval), so no background task shares the connections.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use gregor_client::requests::topic_name;
use gregor_client::{Cluster, CoordinatorType};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, OffsetCommitRequest,
    OffsetFetchRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::consumer_protocol::{self, Assignment, ASSIGNORS};
use super::fetcher::{Layout, Tp};
use super::ToolError;

/// Java's consumer defaults.
const SESSION_TIMEOUT_MS: i32 = 45_000;
const REBALANCE_TIMEOUT_MS: i32 = 300_000;
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);
/// OffsetFetch v8 batches groups; OffsetCommit v10 addresses topics by id.
const OFFSET_FETCH_MAX: i16 = 7;
const OFFSET_COMMIT_MAX: i16 = 9;
/// Rejoin attempts before giving up on a group that keeps rebalancing.
const JOIN_ATTEMPTS: u32 = 10;

/// This process's membership in one consumer group.
#[derive(Debug)]
pub struct GroupMember {
    /// The group id.
    group: String,
    /// The topics subscribed to.
    topics: Vec<String>,
    /// The coordinator's node id.
    coordinator: i32,
    /// Our member id, from the coordinator ("" before the first join).
    member_id: String,
    /// The generation our assignment belongs to; commits carry it.
    generation: i32,
    /// The partitions the leader gave us.
    assignment: Assignment,
    /// When the last heartbeat went out.
    last_heartbeat: Instant,
}

impl GroupMember {
    /// Joins `group` subscribed to `topics` and waits for an assignment.
    pub async fn join(
        cluster: &mut Cluster,
        group: &str,
        topics: &[String],
    ) -> Result<Self, ToolError> {
        let coordinator = cluster.coordinator(group, CoordinatorType::Group).await?;
        let mut member = GroupMember {
            group: group.to_owned(),
            topics: topics.to_vec(),
            coordinator,
            member_id: String::new(),
            generation: -1,
            assignment: Assignment::new(),
            last_heartbeat: Instant::now(),
        };
        member.rejoin(cluster).await?;
        Ok(member)
    }

    /// The partitions assigned to us, as a flat list.
    pub fn partitions(&self) -> Vec<Tp> {
        self.assignment
            .iter()
            .flat_map(|(t, ps)| ps.iter().map(move |&p| (t.clone(), p)))
            .collect()
    }

    /// Runs JoinGroup and SyncGroup until the group is stable, replacing our assignment.
    pub async fn rejoin(&mut self, cluster: &mut Cluster) -> Result<(), ToolError> {
        let metadata = consumer_protocol::encode_subscription(&self.topics)
            .map_err(|e| ToolError::Failed(e.to_string()))?;
        for _ in 0..JOIN_ATTEMPTS {
            let client = cluster.broker(self.coordinator).await?;
            let version = client.version::<JoinGroupRequest>(None)?;
            let mut req = JoinGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(self.group.clone())))
                .with_session_timeout_ms(SESSION_TIMEOUT_MS)
                .with_member_id(StrBytes::from_string(self.member_id.clone()))
                .with_protocol_type(StrBytes::from_static_str("consumer"))
                .with_protocols(
                    ASSIGNORS
                        .iter()
                        .map(|name| {
                            JoinGroupRequestProtocol::default()
                                .with_name(StrBytes::from_static_str(name))
                                .with_metadata(metadata.clone())
                        })
                        .collect(),
                );
            if version >= 1 {
                req.rebalance_timeout_ms = REBALANCE_TIMEOUT_MS;
            }
            let resp = client.send_at(req, version).await?;
            match ResponseError::try_from_code(resp.error_code) {
                None => {}
                Some(ResponseError::MemberIdRequired) => {
                    self.member_id = resp.member_id.as_str().to_owned();
                    continue;
                }
                Some(ResponseError::UnknownMemberId) => {
                    self.member_id.clear();
                    continue;
                }
                Some(ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable) => {
                    self.coordinator = cluster
                        .coordinator(&self.group, CoordinatorType::Group)
                        .await?;
                    continue;
                }
                Some(e) if e.is_retriable() || e == ResponseError::RebalanceInProgress => continue,
                Some(error) => {
                    return Err(ToolError::Kafka {
                        what: format!("joining group '{}'", self.group),
                        error,
                        message: None,
                    })
                }
            }
            self.member_id = resp.member_id.as_str().to_owned();
            self.generation = resp.generation_id;
            let protocol = resp
                .protocol_name
                .as_ref()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default();
            let assignments = if resp.leader == resp.member_id {
                self.lead(cluster, &protocol, &resp.members).await?
            } else {
                Vec::new()
            };
            let client = cluster.broker(self.coordinator).await?;
            let sync_version = client.version::<SyncGroupRequest>(None)?;
            let mut sync = SyncGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(self.group.clone())))
                .with_generation_id(self.generation)
                .with_member_id(StrBytes::from_string(self.member_id.clone()))
                .with_assignments(assignments);
            if sync_version >= 5 {
                sync.protocol_type = Some(StrBytes::from_static_str("consumer"));
                sync.protocol_name = Some(StrBytes::from_string(protocol));
            }
            let resp = client.send_at(sync, sync_version).await?;
            match ResponseError::try_from_code(resp.error_code) {
                None => {}
                Some(ResponseError::RebalanceInProgress | ResponseError::IllegalGeneration) => {
                    continue
                }
                Some(ResponseError::UnknownMemberId) => {
                    self.member_id.clear();
                    continue;
                }
                Some(error) => {
                    return Err(ToolError::Kafka {
                        what: format!("syncing group '{}'", self.group),
                        error,
                        message: None,
                    })
                }
            }
            self.assignment = consumer_protocol::decode_assignment(&resp.assignment)
                .map_err(|e| ToolError::Failed(e.to_string()))?;
            self.last_heartbeat = Instant::now();
            return Ok(());
        }
        Err(ToolError::Failed(format!(
            "group '{}' kept rebalancing; gave up after {JOIN_ATTEMPTS} attempts to join",
            self.group
        )))
    }

    /// As the group leader, assigns partitions of every member's topics.
    async fn lead(
        &self,
        cluster: &mut Cluster,
        protocol: &str,
        members: &[kafka_protocol::messages::join_group_response::JoinGroupResponseMember],
    ) -> Result<Vec<SyncGroupRequestAssignment>, ToolError> {
        let mut subscriptions = BTreeMap::new();
        for m in members {
            let topics = consumer_protocol::decode_subscription(&m.metadata)
                .map_err(|e| ToolError::Failed(e.to_string()))?;
            subscriptions.insert(m.member_id.as_str().to_owned(), topics);
        }
        let topics: Vec<String> = consumer_protocol::subscribed_topics(&subscriptions)
            .into_iter()
            .collect();
        let layout = Layout::load(cluster, &topics).await?;
        let counts = topics
            .iter()
            .map(|t| (t.clone(), layout.partition_count(t)))
            .collect();
        let plan =
            consumer_protocol::assign(protocol, &subscriptions, &counts).ok_or_else(|| {
                ToolError::Failed(format!(
                    "group '{}' chose assignor '{protocol}', which this consumer does not have",
                    self.group
                ))
            })?;
        plan.iter()
            .map(|(member, assignment)| {
                Ok(SyncGroupRequestAssignment::default()
                    .with_member_id(StrBytes::from_string(member.clone()))
                    .with_assignment(
                        consumer_protocol::encode_assignment(assignment)
                            .map_err(|e| ToolError::Failed(e.to_string()))?,
                    ))
            })
            .collect()
    }

    /// Sends a heartbeat if one is due; returns true when the group is rebalancing and we
    /// must [`GroupMember::rejoin`] (after committing what we consumed, as Java does).
    pub async fn heartbeat_if_due(&mut self, cluster: &mut Cluster) -> Result<bool, ToolError> {
        if self.last_heartbeat.elapsed() < HEARTBEAT_INTERVAL {
            return Ok(false);
        }
        self.last_heartbeat = Instant::now();
        let req = HeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(self.group.clone())))
            .with_generation_id(self.generation)
            .with_member_id(StrBytes::from_string(self.member_id.clone()));
        let resp = cluster.broker(self.coordinator).await?.send(req).await?;
        match ResponseError::try_from_code(resp.error_code) {
            None => Ok(false),
            Some(
                ResponseError::RebalanceInProgress
                | ResponseError::IllegalGeneration
                | ResponseError::UnknownMemberId
                | ResponseError::NotCoordinator
                | ResponseError::CoordinatorNotAvailable,
            ) => {
                if resp.error_code == ResponseError::UnknownMemberId.code() {
                    self.member_id.clear();
                }
                if resp.error_code != ResponseError::RebalanceInProgress.code() {
                    self.coordinator = cluster
                        .coordinator(&self.group, CoordinatorType::Group)
                        .await?;
                }
                Ok(true)
            }
            Some(error) => Err(ToolError::Kafka {
                what: format!("heartbeating in group '{}'", self.group),
                error,
                message: None,
            }),
        }
    }

    /// The group's committed offsets for `tps`; partitions without one are left out.
    pub async fn committed(
        &self,
        cluster: &mut Cluster,
        tps: &[Tp],
    ) -> Result<BTreeMap<Tp, i64>, ToolError> {
        committed_offsets(cluster, self.coordinator, &self.group, Some(tps)).await
    }

    /// Commits `positions` (the next offset to read, per partition) for our generation.
    pub async fn commit(
        &self,
        cluster: &mut Cluster,
        positions: &BTreeMap<Tp, i64>,
    ) -> Result<(), ToolError> {
        let member = Some((self.generation, self.member_id.as_str()));
        commit_offsets(cluster, self.coordinator, &self.group, member, positions).await
    }

    /// Leaves the group so the others rebalance at once rather than after our session times
    /// out.
    pub async fn leave(&self, cluster: &mut Cluster) -> Result<(), ToolError> {
        let client = cluster.broker(self.coordinator).await?;
        let version = client.version::<LeaveGroupRequest>(None)?;
        let mut req = LeaveGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(self.group.clone())));
        if version >= 3 {
            req.members = vec![MemberIdentity::default()
                .with_member_id(StrBytes::from_string(self.member_id.clone()))];
        } else {
            req.member_id = StrBytes::from_string(self.member_id.clone());
        }
        let resp = client.send_at(req, version).await?;
        ToolError::check(resp.error_code, None, || {
            format!("leaving group '{}'", self.group)
        })
    }
}

/// Reads `group`'s committed offsets from its coordinator: for `tps`, or every partition it
/// has an offset for when `None`. Partitions without a committed offset are left out.
pub async fn committed_offsets(
    cluster: &mut Cluster,
    coordinator: i32,
    group: &str,
    tps: Option<&[Tp]>,
) -> Result<BTreeMap<Tp, i64>, ToolError> {
    let topics = tps.map(|tps| {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (t, p) in tps {
            by_topic.entry(t).or_default().push(*p);
        }
        by_topic
            .into_iter()
            .map(|(t, ps)| {
                OffsetFetchRequestTopic::default()
                    .with_name(topic_name(t))
                    .with_partition_indexes(ps)
            })
            .collect()
    });
    let client = cluster.broker(coordinator).await?;
    let version = client.version::<OffsetFetchRequest>(Some(OFFSET_FETCH_MAX))?;
    if topics.is_none() && version < 2 {
        return Err(ToolError::Failed(format!(
            "broker {} cannot list all committed offsets (OffsetFetch v{version})",
            client.addr()
        )));
    }
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
        .with_topics(topics);
    let resp = client.send_at(req, version).await?;
    ToolError::check(resp.error_code, None, || {
        format!("fetching committed offsets of group '{group}'")
    })?;
    let mut out = BTreeMap::new();
    for t in resp.topics {
        for p in t.partitions {
            ToolError::check(p.error_code, None, || {
                format!(
                    "fetching the committed offset of {}-{} for group '{group}'",
                    t.name.as_str(),
                    p.partition_index
                )
            })?;
            if p.committed_offset >= 0 {
                out.insert(
                    (t.name.as_str().to_owned(), p.partition_index),
                    p.committed_offset,
                );
            }
        }
    }
    Ok(out)
}

/// Commits `positions` for `group` at its coordinator, as the member `(generation, member id)`
/// or, with `None`, as an admin (generation -1), which the coordinator accepts only while the
/// group has no members.
pub async fn commit_offsets(
    cluster: &mut Cluster,
    coordinator: i32,
    group: &str,
    member: Option<(i32, &str)>,
    positions: &BTreeMap<Tp, i64>,
) -> Result<(), ToolError> {
    if positions.is_empty() {
        return Ok(());
    }
    let (generation, member_id) = member.unwrap_or((-1, ""));
    let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for ((t, p), &offset) in positions {
        topics.entry(t).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(*p)
                .with_committed_offset(offset),
        );
    }
    let client = cluster.broker(coordinator).await?;
    let version = client.version::<OffsetCommitRequest>(Some(OFFSET_COMMIT_MAX))?;
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(StrBytes::from_string(member_id.to_owned()))
        .with_topics(
            topics
                .into_iter()
                .map(|(t, ps)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(topic_name(t))
                        .with_partitions(ps)
                })
                .collect(),
        );
    let resp = client.send_at(req, version).await?;
    for t in resp.topics {
        for p in t.partitions {
            ToolError::check(p.error_code, None, || {
                format!(
                    "committing offsets of {}-{} for group '{group}'",
                    t.name.as_str(),
                    p.partition_index,
                )
            })?;
        }
    }
    Ok(())
}
