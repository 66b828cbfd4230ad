//! The classic consumer-group coordinator: Join/Sync/Heartbeat/Leave drive each group through
//! Empty → PreparingRebalance → CompletingRebalance → Stable; assignment is computed by the
//! group leader (client side). Committed offsets are appended to `__consumer_offsets` before
//! they are acknowledged, and reloaded from it at start-up.
//!
//! All groups share one mutex: every operation is a short in-memory state change, never held
//! across an await. Joins and syncs that must wait park a oneshot sender in the member.

mod classic_log;
pub mod consumer;
mod consumer_log;
mod mixed;
pub mod offsets_log;
mod share_log;
mod state;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::cluster::{now_ms, Cluster, NewTopic, CONSUMER_OFFSETS};
use offsets_log::{OffsetKey, OffsetValue, OffsetsRecord};
use state::{candidates_contains, Group, Member};
pub use state::{GroupState, JoinRequest, JoinResult, SyncResult};

/// A member as DescribeGroups reports it.
#[derive(Debug, Clone)]
pub struct MemberDescription {
    /// Member id.
    pub member_id: String,
    /// Static id.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Subscription metadata for the chosen protocol.
    pub metadata: Bytes,
    /// Assignment.
    pub assignment: Bytes,
}

/// A group as DescribeGroups reports it.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    /// State name.
    pub state: GroupState,
    /// Protocol type.
    pub protocol_type: String,
    /// Chosen protocol.
    pub protocol: String,
    /// Members.
    pub members: Vec<MemberDescription>,
}

/// A group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    /// Group id.
    pub id: String,
    /// Protocol type ("consumer" for consumer groups of either protocol).
    pub protocol_type: String,
    /// State, as Kafka names it for the group's type.
    pub state: &'static str,
    /// "classic" or "consumer" (KIP-848).
    pub group_type: &'static str,
}

/// The groups as the metrics see them ([`GroupCoordinator::metrics_view`]).
#[derive(Debug, Default)]
pub struct GroupsView {
    /// Every group this node coordinates.
    pub listed: Vec<ListedGroup>,
    /// Member counts of the groups within the cap, by id.
    pub members: Vec<(String, usize)>,
    /// Committed offsets of those groups: (group, topic, partition, offset), within the cap.
    pub offsets: Vec<(String, String, i32, i64)>,
}

/// How ListGroups shows `g`: a share group, a consumer-protocol group (with no classic-only
/// membership), else a classic one.
fn listed(id: &str, g: &Group) -> ListedGroup {
    match &g.consumer {
        _ if g.share.is_some() => ListedGroup {
            id: id.to_string(),
            protocol_type: "share".into(),
            state: g.share.as_ref().map_or("Empty", |s| s.state()),
            group_type: "share",
        },
        Some(c) if g.members.is_empty() => ListedGroup {
            id: id.to_string(),
            protocol_type: "consumer".into(),
            state: c.state(),
            group_type: "consumer",
        },
        _ => ListedGroup {
            id: id.to_string(),
            protocol_type: g.protocol_type.clone().unwrap_or_else(|| "consumer".into()),
            state: g.state.as_str(),
            group_type: "classic",
        },
    }
}

/// A partition of a group request (topic, partition) and its error, if it has one.
pub type PartitionOutcome = ((String, i32), Option<ResponseError>);

/// Offsets records written to `__consumer_offsets` but perhaps not yet replicated.
#[derive(Debug)]
pub struct Appended {
    /// The offsets partition.
    pub partition: Arc<crate::cluster::Partition>,
    /// The high watermark must reach this for the records to be committed.
    pub next_offset: i64,
    /// The leader epoch they were appended in.
    pub epoch: i32,
}

impl Appended {
    /// Waits until the offsets partition's ISR has the records, as Kafka's coordinator writes
    /// with acks=all: NOT_COORDINATOR if the leadership moved on meanwhile,
    /// COORDINATOR_NOT_AVAILABLE after `timeout`.
    pub async fn committed(&self, node: i32, timeout: Duration) -> Result<(), ResponseError> {
        match self
            .partition
            .wait_for_high_watermark(self.next_offset, node, self.epoch, timeout)
            .await
        {
            crate::cluster::Commit::Committed => Ok(()),
            crate::cluster::Commit::NotLeader => Err(ResponseError::NotCoordinator),
            crate::cluster::Commit::TimedOut => Err(ResponseError::CoordinatorNotAvailable),
        }
    }
}

/// The coordinator of every group on this node.
#[derive(Debug)]
pub struct GroupCoordinator {
    cluster: Arc<Cluster>,
    groups: Mutex<HashMap<String, Group>>,
    /// Serializes offset commits so the order in `__consumer_offsets` is the order applied.
    commit_order: Mutex<()>,
    /// The `__consumer_offsets` partitions whose groups are loaded (those this node leads).
    led: Mutex<BTreeSet<i32>>,
    /// Offsets committed in transactions still open, by producer: (group, partition, offset).
    pending_txn: Mutex<PendingOffsets>,
    /// The share-partitions this node leads and the share sessions fetching them.
    pub shares: crate::share::SharePartitions,
    /// The share coordinator: the persisted share-partition states of the
    /// `__share_group_state` partitions this node leads.
    pub share_states: Arc<crate::share::coordinator::ShareCoordinator>,
}

/// Offsets committed in open transactions, by producer id.
type PendingOffsets = HashMap<i64, Vec<(String, (String, i32), OffsetValue)>>;

impl GroupCoordinator {
    /// A coordinator over `cluster`; call [`GroupCoordinator::load`] before serving.
    pub fn new(cluster: Arc<Cluster>) -> GroupCoordinator {
        let share_states = Arc::new(crate::share::coordinator::ShareCoordinator::new(
            Arc::clone(&cluster),
        ));
        GroupCoordinator {
            cluster,
            groups: Mutex::new(HashMap::new()),
            commit_order: Mutex::new(()),
            led: Mutex::new(BTreeSet::new()),
            pending_txn: Mutex::new(HashMap::new()),
            shares: crate::share::SharePartitions::default(),
            share_states,
        }
    }

    /// Ensures `__consumer_offsets` exists (blocking); returns its partition count.
    pub fn ensure_offsets_topic(&self) -> Result<i32, crate::cluster::AdminError> {
        if let Some(t) = self.cluster.topic(CONSUMER_OFFSETS) {
            return Ok(t.partition_count());
        }
        let mut configs = BTreeMap::new();
        configs.insert("cleanup.policy".to_string(), "compact".to_string());
        configs.insert(
            "segment.bytes".to_string(),
            self.cluster.config.offsets_topic_segment_bytes.to_string(),
        );
        let r = self.cluster.create_topic(
            NewTopic {
                name: CONSUMER_OFFSETS.to_string(),
                partitions: self.cluster.config.offsets_topic_num_partitions,
                // Capped by the brokers there are, so a small cluster still gets its offsets
                // topic (offsets.topic.replication.factor is the goal, not a requirement here).
                replication_factor: (self
                    .cluster
                    .brokers()
                    .values()
                    .filter(|b| !b.fenced)
                    .count() as i16)
                    .min(self.cluster.config.offsets_topic_replication_factor)
                    .max(1),
                configs,
                assignments: None,
            },
            false,
        );
        match r {
            Ok(t) => {
                // Take the new partitions' leadership now: a later load() would otherwise see
                // them as newly led and drop groups formed in between.
                if let Err(e) = self.load() {
                    tracing::warn!(error = %e, "loading the new offsets partitions failed");
                }
                Ok(t.partition_count())
            }
            Err(crate::cluster::AdminError::TopicExists(_)) => Ok(self
                .cluster
                .topic(CONSUMER_OFFSETS)
                .map(|t| t.partition_count())
                .unwrap_or(1)),
            Err(e) => Err(e),
        }
    }

    /// The broker leading the `__consumer_offsets` partition of `group`, which coordinates it;
    /// `None` before the offsets topic exists (this node creates it on first use).
    pub fn coordinator_for(&self, group: &str) -> Option<i32> {
        let topic = self.cluster.topic(CONSUMER_OFFSETS)?;
        let p = topic.partition(offsets_log::partition_for(group, topic.partition_count()))?;
        Some(p.state().leader)
    }

    /// Whether this node coordinates `group`: it leads the group's `__consumer_offsets`
    /// partition *and* has loaded it. Answering for a partition whose leadership was applied
    /// but not yet loaded would let a group form that the load then replaces (the client sees
    /// ILLEGAL_GENERATION); answering NOT_COORDINATOR meanwhile makes it ask again.
    pub fn coordinates(&self, group: &str) -> bool {
        let Some(topic) = self.cluster.topic(CONSUMER_OFFSETS) else {
            // No offsets topic known here yet: only a lone broker can be sure it coordinates.
            return self.cluster.brokers().len() <= 1;
        };
        let index = offsets_log::partition_for(group, topic.partition_count());
        topic.partition(index).is_some_and(|p| {
            p.state().leader == self.cluster.config.node_id && self.led.lock().contains(&index)
        })
    }

    /// Follows the leadership of `__consumer_offsets` (blocking): loads the groups of
    /// partitions this node has come to lead from their log, and drops those of partitions it
    /// no longer leads (their new coordinator loads them). Returns the offsets loaded.
    pub fn load(&self) -> Result<usize, crate::log::LogError> {
        // The share coordinator follows `__share_group_state` the same way.
        if let Err(e) = self.share_states.load() {
            tracing::warn!(error = %e, "loading share group state failed");
        }
        let Some(topic) = self.cluster.topic(CONSUMER_OFFSETS) else {
            return Ok(0);
        };
        let me = self.cluster.config.node_id;
        let partitions = topic.partitions.read().clone();
        let count = partitions.len() as i32;
        let led_now: BTreeSet<i32> = partitions
            .iter()
            .filter(|p| p.is_led_by(me))
            .map(|p| p.index)
            .collect();
        let mut led = self.led.lock();
        let changed: BTreeSet<i32> = led.symmetric_difference(&led_now).copied().collect();
        if changed.is_empty() {
            return Ok(0);
        }
        // Groups of partitions gained are rebuilt from the log; of partitions lost, dropped.
        self.groups
            .lock()
            .retain(|name, _| !changed.contains(&offsets_log::partition_for(name, count)));
        for entries in self.pending_txn.lock().values_mut() {
            entries
                .retain(|(name, _, _)| !changed.contains(&offsets_log::partition_for(name, count)));
        }
        let mut loaded = 0;
        for p in partitions
            .iter()
            .filter(|p| led_now.contains(&p.index) && !led.contains(&p.index))
        {
            loaded += self.load_partition(p, count)?;
        }
        tracing::debug!(led = led_now.len(), loaded, "offsets partitions followed");
        *led = led_now;
        Ok(loaded)
    }

    fn load_partition(
        &self,
        p: &crate::cluster::Partition,
        count: i32,
    ) -> Result<usize, crate::log::LogError> {
        let mut loaded = 0;
        let mut membership: HashMap<String, consumer_log::Records> = HashMap::new();
        // Led here, so held here; a leadership that moved on since leaves nothing to load.
        p.each_record(|r| {
            if let Some(key) = r.key.as_ref() {
                let group = consumer_log::group_of(key).or_else(|| classic_log::group_of(key));
                if let Some(group) = group {
                    let records = membership.entry(group).or_default();
                    match r.value {
                        Some(v) => records.insert(key.clone(), v),
                        None => records.remove(key),
                    };
                    return;
                }
            }
            let mut groups = self.groups.lock();
            if r.control {
                let commit = control_record_commits(r.key.as_ref());
                let done = self.pending_txn.lock().remove(&r.producer_id);
                for (group, tp, v) in done.into_iter().flatten().filter(|_| commit) {
                    groups
                        .entry(group)
                        .or_insert_with(Group::new)
                        .offsets
                        .insert(tp, v);
                }
                return;
            }
            match offsets_log::decode(r.key.as_ref(), r.value.as_ref()) {
                Some(OffsetsRecord::Offset(k, Some(v))) if r.transactional => {
                    let tp = (k.topic, k.partition);
                    let mut pending = self.pending_txn.lock();
                    let entries = pending.entry(r.producer_id).or_default();
                    entries.retain(|(g, p, _)| *g != k.group || *p != tp);
                    entries.push((k.group, tp, v));
                }
                Some(OffsetsRecord::Offset(k, Some(v))) => {
                    groups
                        .entry(k.group)
                        .or_insert_with(Group::new)
                        .offsets
                        .insert((k.topic, k.partition), v);
                    loaded += 1;
                }
                Some(OffsetsRecord::Offset(k, None)) => {
                    if let Some(g) = groups.get_mut(&k.group) {
                        g.offsets.remove(&(k.topic, k.partition));
                    }
                }
                _ => {}
            }
        })?;
        self.restore_membership(membership);
        // What the log left of this partition's groups is kept if it holds anything; other
        // partitions' groups (a share group has no offsets) are not this load's business.
        self.groups.lock().retain(|name, g| {
            offsets_log::partition_for(name, count) != p.index || g.holds_state()
        });
        Ok(loaded)
    }

    /// Rebuilds each group of `membership` (its records by key, as a partition's log left
    /// them); every member's session starts over now.
    fn restore_membership(&self, membership: HashMap<String, consumer_log::Records>) {
        let now = Instant::now();
        let topics = self.topic_partition_counts();
        let name_of = |id| self.cluster.topic_by_id(id).map(|t| t.name.clone());
        let mut groups = self.groups.lock();
        for (group_id, records) in membership {
            let g = groups.entry(group_id.clone()).or_insert_with(Group::new);
            if let Some((kind, epoch, members)) =
                restore_group(g, &group_id, &records, name_of, &topics, now)
            {
                tracing::info!(group = %group_id, kind, epoch, members, "group membership loaded");
            }
            g.persisted = records;
        }
    }

    /// JoinGroup: returns at once or a receiver that resolves when the rebalance completes.
    pub fn join(&self, req: JoinRequest) -> Result<JoinResult, oneshot::Receiver<JoinResult>> {
        let cfg = &self.cluster.config;
        if req.group_id.is_empty() {
            return Ok(JoinResult::error(
                ResponseError::InvalidGroupId,
                req.member_id,
            ));
        }
        if req.session_timeout_ms < cfg.group_min_session_timeout_ms
            || req.session_timeout_ms > cfg.group_max_session_timeout_ms
        {
            return Ok(JoinResult::error(
                ResponseError::InvalidSessionTimeout,
                req.member_id,
            ));
        }
        if req.protocols.is_empty() || req.protocol_type.is_empty() {
            return Ok(JoinResult::error(
                ResponseError::InconsistentGroupProtocol,
                req.member_id,
            ));
        }
        let group_id = req.group_id.clone();
        self.change_group(&group_id, |groups| self.join_group(groups, req))
            .0
    }

    /// JoinGroup, its request checked, on the locked groups.
    fn join_group(
        &self,
        groups: &mut HashMap<String, Group>,
        req: JoinRequest,
    ) -> Result<JoinResult, oneshot::Receiver<JoinResult>> {
        let cfg = &self.cluster.config;
        let now = Instant::now();
        let topics = self.topic_partition_counts();
        let group = groups
            .entry(req.group_id.clone())
            .or_insert_with(Group::new);
        if group.share.is_some() {
            return Ok(JoinResult::error(
                ResponseError::InconsistentGroupProtocol,
                req.member_id,
            ));
        }
        if group.is_mixed() {
            return Ok(group.classic_join_to_consumer_group(req, &topics, now));
        }
        // An empty consumer-protocol group becomes a classic one.
        group.consumer = None;
        if group.state != GroupState::Empty
            && (group.protocol_type.as_deref() != Some(req.protocol_type.as_str())
                || !req.protocols.iter().any(|(n, _)| {
                    candidates_contains(&group.members, n) || group.members.is_empty()
                }))
        {
            return Ok(JoinResult::error(
                ResponseError::InconsistentGroupProtocol,
                req.member_id,
            ));
        }
        let mut member_id = req.member_id.clone();
        let instance = req.group_instance_id.clone();
        let registered = instance
            .as_deref()
            .and_then(|i| group.static_member(i))
            .cloned();
        let fresh_static = instance.is_some() && member_id.is_empty() && registered.is_none();
        if let (Some(instance), Some(old)) = (&instance, &registered) {
            if member_id.is_empty() {
                // A static member back (a restart): it takes its old place.
                let new = format!("{instance}-{}", uuid::Uuid::new_v4());
                tracing::info!(group = %req.group_id, %instance, old = %old, new = %new, "static member rejoined");
                return group.replace_static_member(old, new, req, now);
            }
            if *old != member_id {
                return Ok(JoinResult::error(
                    ResponseError::FencedInstanceId,
                    member_id,
                ));
            }
        }
        if fresh_static {
            // A static member needs no MEMBER_ID_REQUIRED round: its instance id names it.
            member_id = format!(
                "{}-{}",
                instance.as_deref().unwrap_or_default(),
                uuid::Uuid::new_v4()
            );
        } else if member_id.is_empty() {
            member_id = format!("{}-{}", req.client_id, uuid::Uuid::new_v4());
            if req.require_known_member_id {
                group.pending.insert(member_id.clone(), now);
                return Ok(JoinResult::error(
                    ResponseError::MemberIdRequired,
                    member_id,
                ));
            }
        } else if !group.members.contains_key(&member_id)
            && group.pending.remove(&member_id).is_none()
        {
            return Ok(JoinResult::error(ResponseError::UnknownMemberId, member_id));
        }
        let (tx, rx) = oneshot::channel();
        let existing = group.members.get(&member_id).map(|m| m.protocols.clone());
        let changed = existing.as_ref() != Some(&req.protocols);
        // A known member re-sending the same metadata while nothing changed gets the
        // current generation back without a rebalance (Kafka's behaviour for followers).
        if !changed
            && group.leader.as_deref() != Some(member_id.as_str())
            && matches!(
                group.state,
                GroupState::Stable | GroupState::CompletingRebalance
            )
        {
            if let Some(m) = group.members.get_mut(&member_id) {
                m.last_heartbeat = now;
            }
            return Ok(group.join_result_for(&member_id));
        }
        let member = group
            .members
            .entry(member_id.clone())
            .or_insert_with(|| Member {
                client_id: req.client_id.clone(),
                client_host: req.client_host.clone(),
                group_instance_id: req.group_instance_id.clone(),
                session_timeout: Duration::from_millis(req.session_timeout_ms as u64),
                rebalance_timeout: Duration::from_millis(req.rebalance_timeout_ms.max(0) as u64),
                protocols: Vec::new(),
                assignment: Bytes::new(),
                last_heartbeat: now,
                join_waiter: None,
                sync_waiter: None,
            });
        member.protocols = req.protocols;
        member.session_timeout = Duration::from_millis(req.session_timeout_ms as u64);
        member.rebalance_timeout = Duration::from_millis(req.rebalance_timeout_ms.max(0) as u64);
        member.last_heartbeat = now;
        if let Some(old) = member.join_waiter.replace(tx) {
            let _ = old.send(JoinResult::error(
                ResponseError::UnknownMemberId,
                member_id.clone(),
            ));
        }
        if group.state == GroupState::Empty {
            group.protocol_type = Some(req.protocol_type);
            let delay = cfg.group_initial_rebalance_delay_ms;
            if delay > 0 {
                group.initial_delay_until = Some(now + Duration::from_millis(delay));
            }
        }
        group.prepare_rebalance();
        group.maybe_complete_join(now);
        Err(rx)
    }

    /// SyncGroup: returns at once or a receiver resolved by the leader's sync.
    pub fn sync(
        &self,
        group_id: &str,
        (member_id, instance): (&str, Option<&str>),
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> Result<SyncResult, oneshot::Receiver<SyncResult>> {
        self.change_group(group_id, |groups| {
            Self::sync_group(
                groups,
                group_id,
                (member_id, instance),
                generation,
                assignments,
            )
        })
        .0
    }

    /// SyncGroup on the locked groups.
    fn sync_group(
        groups: &mut HashMap<String, Group>,
        group_id: &str,
        (member_id, instance): (&str, Option<&str>),
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> Result<SyncResult, oneshot::Receiver<SyncResult>> {
        let Some(group) = groups.get_mut(group_id) else {
            return Ok(Err(ResponseError::UnknownMemberId));
        };
        if group.is_mixed() {
            return Ok(group.classic_sync_to_consumer_group(
                (member_id, instance),
                generation,
                Instant::now(),
            ));
        }
        if group.fenced(member_id, instance) {
            return Ok(Err(ResponseError::FencedInstanceId));
        }
        if !group.members.contains_key(member_id) {
            return Ok(Err(ResponseError::UnknownMemberId));
        }
        if generation != group.generation {
            return Ok(Err(ResponseError::IllegalGeneration));
        }
        match group.state {
            GroupState::Empty => Ok(Err(ResponseError::UnknownMemberId)),
            GroupState::PreparingRebalance => Ok(Err(ResponseError::RebalanceInProgress)),
            GroupState::Stable => Ok(Ok(group
                .members
                .get(member_id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default())),
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = group.members.get_mut(member_id) {
                    m.sync_waiter = Some(tx);
                    m.last_heartbeat = Instant::now();
                }
                if group.leader.as_deref() == Some(member_id) {
                    let mut by_member: HashMap<String, Bytes> = assignments.into_iter().collect();
                    group.state = GroupState::Stable;
                    for (id, m) in group.members.iter_mut() {
                        m.assignment = by_member.remove(id).unwrap_or_default();
                        if let Some(w) = m.sync_waiter.take() {
                            let _ = w.send(Ok(m.assignment.clone()));
                        }
                    }
                }
                Err(rx)
            }
        }
    }

    /// Heartbeat.
    pub fn heartbeat(
        &self,
        group_id: &str,
        (member_id, instance): (&str, Option<&str>),
        generation: i32,
    ) -> Option<ResponseError> {
        self.change_group(group_id, |groups| {
            Self::heartbeat_group(groups, group_id, (member_id, instance), generation)
        })
        .0
    }

    /// Heartbeat on the locked groups.
    fn heartbeat_group(
        groups: &mut HashMap<String, Group>,
        group_id: &str,
        (member_id, instance): (&str, Option<&str>),
        generation: i32,
    ) -> Option<ResponseError> {
        let Some(group) = groups.get_mut(group_id) else {
            return Some(ResponseError::UnknownMemberId);
        };
        if group.is_mixed() {
            return group.classic_heartbeat_to_consumer_group(
                (member_id, instance),
                generation,
                Instant::now(),
            );
        }
        if group.fenced(member_id, instance) {
            return Some(ResponseError::FencedInstanceId);
        }
        let state = group.state;
        let current = group.generation;
        let Some(m) = group.members.get_mut(member_id) else {
            return Some(ResponseError::UnknownMemberId);
        };
        m.last_heartbeat = Instant::now();
        if state == GroupState::PreparingRebalance {
            return Some(ResponseError::RebalanceInProgress);
        }
        if generation != current {
            return Some(ResponseError::IllegalGeneration);
        }
        None
    }

    /// LeaveGroup for each (member id, static instance id); returns a per-member error. A
    /// static member may leave by its instance id alone (an empty member id, as
    /// `kafka-consumer-groups --remove-members` does), and an old incarnation of one is
    /// FENCED_INSTANCE_ID.
    pub fn leave(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Vec<Option<ResponseError>> {
        self.change_group(group_id, |groups| {
            Self::leave_group(groups, group_id, members)
        })
        .0
    }

    /// LeaveGroup on the locked groups.
    fn leave_group(
        groups: &mut HashMap<String, Group>,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Vec<Option<ResponseError>> {
        let Some(group) = groups.get_mut(group_id) else {
            return members
                .iter()
                .map(|_| Some(ResponseError::UnknownMemberId))
                .collect();
        };
        if group.is_mixed() {
            return group.classic_leave_from_consumer_group(members);
        }
        members
            .iter()
            .map(|(id, instance)| {
                let current = instance.as_deref().and_then(|i| group.static_member(i));
                let id = match leaving_member(id, current.map(String::as_str)) {
                    Ok(id) => id,
                    Err(e) => return Some(e),
                };
                if group.members.contains_key(&id) {
                    group.remove_member(&id);
                    None
                } else {
                    Some(ResponseError::UnknownMemberId)
                }
            })
            .collect()
    }

    /// Expires silent members and completes rebalances whose deadline passed; call periodically.
    pub fn tick(&self) {
        let now = Instant::now();
        let consumer_session =
            Duration::from_millis(self.cluster.config.group_consumer_session_timeout_ms);
        let ids = self.topic_ids();
        let id_of = |t: &str| ids.get(t).copied();
        let _order = self.commit_order.lock();
        let mut writes = Vec::new();
        let mut groups = self.groups.lock();
        for (group_id, group) in groups.iter_mut() {
            let before = (group.state, group.generation);
            let expired: Vec<String> = group
                .members
                .iter()
                .filter(|(_, m)| {
                    m.join_waiter.is_none()
                        && m.sync_waiter.is_none()
                        && now.duration_since(m.last_heartbeat) > m.session_timeout
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in expired {
                tracing::info!(member = %id, "group member session expired");
                group.remove_member(&id);
            }
            group
                .pending
                .retain(|_, since| now.duration_since(*since) < Duration::from_secs(300));
            group.maybe_complete_join(now);
            if let Some(c) = group.consumer.as_mut() {
                let expired = c.expire(now, consumer_session);
                for id in &expired {
                    tracing::info!(member = %id, "consumer group member session expired");
                }
                group.maybe_downgrade(now);
                if !expired.is_empty() {
                    writes.push((
                        group_id.clone(),
                        membership_changes(group_id, group, &id_of),
                    ));
                    continue;
                }
            }
            if (group.state, group.generation) != before {
                writes.push((
                    group_id.clone(),
                    membership_changes(group_id, group, &id_of),
                ));
            }
        }
        for group_id in self.expire_share_members(&mut groups, now) {
            if let Some(group) = groups.get_mut(&group_id) {
                writes.push((
                    group_id.clone(),
                    membership_changes(&group_id, group, &id_of),
                ));
            }
        }
        drop(groups);
        for (group_id, records) in writes {
            self.append_membership(&group_id, records);
        }
    }

    /// Removes share group members not heard from within their group's session timeout;
    /// what they held is released. Returns the groups that lost members.
    fn expire_share_members(
        &self,
        groups: &mut HashMap<String, Group>,
        now: Instant,
    ) -> Vec<String> {
        let shared: Vec<String> = groups
            .iter()
            .filter(|(_, g)| g.share.as_ref().is_some_and(|s| !s.members.is_empty()))
            .map(|(id, _)| id.clone())
            .collect();
        if shared.is_empty() {
            return shared;
        }
        let topics = self.topic_partition_counts();
        let mut changed = Vec::new();
        for id in shared {
            let settings = self.share_settings(&id);
            let Some(share) = groups.get_mut(&id).and_then(|g| g.share.as_mut()) else {
                continue;
            };
            let expired = share.expire(now, settings.session_timeout, &topics);
            for member in &expired {
                tracing::info!(group = %id, member = %member, "share group member session expired");
                self.shares
                    .release_member(&id, member, settings.limits.delivery_count_limit);
            }
            if !expired.is_empty() {
                changed.push(id);
            }
        }
        changed
    }

    /// Every topic clients may subscribe to, with its partition count.
    fn topic_partition_counts(&self) -> BTreeMap<String, i32> {
        self.cluster
            .topics()
            .iter()
            .filter(|t| !t.is_internal())
            .map(|t| (t.name.clone(), t.partition_count()))
            .collect()
    }

    /// What governs share group `group`: the broker's defaults under its group configs.
    pub fn share_settings(&self, group: &str) -> crate::share::Settings {
        crate::share::Settings::of(&self.cluster.config, &self.cluster.group_configs(group))
    }

    /// ShareGroupHeartbeat (KIP-932) for `group_id` (blocking): joins, heartbeats and leaves a
    /// share group, answering the member's partitions when they change, and writes what
    /// changed to `__consumer_offsets` (the caller may await the returned append). A group of
    /// another type is GROUP_ID_NOT_FOUND, as Kafka answers. A member that leaves gives back
    /// what it holds.
    pub fn share_heartbeat(
        &self,
        group_id: &str,
        hb: crate::share::group::Heartbeat,
    ) -> Result<(crate::share::group::HeartbeatAnswer, Option<Appended>), consumer::Refusal> {
        if group_id.is_empty() {
            return Err((
                ResponseError::InvalidGroupId,
                "the group id is empty".into(),
            ));
        }
        let topics = self.topic_partition_counts();
        let member = hb.member_id.clone();
        let (answer, appended) = self.change_group(group_id, |groups| {
            let group = groups
                .entry(group_id.to_string())
                .or_insert_with(Group::new);
            if group.is_consumer_group() {
                return Err((
                    ResponseError::GroupIdNotFound,
                    format!("Group {group_id} is not a share group."),
                ));
            }
            group
                .share
                .get_or_insert_with(crate::share::group::ShareGroup::new)
                .heartbeat(hb, &topics, Instant::now())
        });
        let answer = answer?;
        if answer.member_epoch == -1 {
            self.release_share_member(group_id, &member);
        }
        Ok((answer, appended))
    }

    /// Releases what `member` of share group `group` holds on this node and ends its share
    /// session here.
    pub fn release_share_member(&self, group: &str, member: &str) {
        let limit = self.share_settings(group).limits.delivery_count_limit;
        self.shares.release_member(group, member, limit);
    }

    /// Ends the share sessions opened on the connection from `peer`, which closed: as in
    /// Kafka, what their members hold is released at once, not when the locks run out.
    pub fn share_connection_closed(&self, peer: std::net::SocketAddr) {
        for (group, member) in self.shares.sessions_on(peer) {
            tracing::debug!(%group, %member, %peer, "share session ended with its connection");
            self.release_share_member(&group, &member);
        }
    }

    /// The partitions share group `group`'s members were ever assigned (empty for another
    /// kind of group).
    pub fn share_group_partitions(&self, group: &str) -> Vec<(String, i32)> {
        let groups = self.groups.lock();
        groups
            .get(group)
            .and_then(|g| g.share.as_ref())
            .map(|s| s.initialized.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// A share group as ShareGroupDescribe reports it; `None` if there is no such group.
    pub fn describe_share_group(&self, group_id: &str) -> Option<crate::share::group::ShareGroup> {
        self.groups.lock().get(group_id)?.share.clone()
    }

    /// Checks an offset commit against group membership; `None` means it may proceed.
    pub fn validate_commit(
        &self,
        group_id: &str,
        (member_id, instance): (&str, Option<&str>),
        generation: i32,
    ) -> Option<ResponseError> {
        let groups = self.groups.lock();
        let Some(group) = groups.get(group_id) else {
            return (generation >= 0).then_some(ResponseError::IllegalGeneration);
        };
        if group.fenced(member_id, instance) {
            return Some(ResponseError::FencedInstanceId);
        }
        if generation < 0 && member_id.is_empty() {
            // A "simple" consumer committing outside a group generation.
            let members = !group.members.is_empty() || group.has_consumer_members();
            return members.then_some(ResponseError::UnknownMemberId);
        }
        if let Some(c) = group.consumer.as_ref().filter(|_| group.members.is_empty()) {
            // A consumer-protocol member commits with its member epoch (OffsetCommit v9+).
            return c.validate(member_id, generation);
        }
        if !group.members.contains_key(member_id) {
            return Some(ResponseError::UnknownMemberId);
        }
        if generation != group.generation {
            return Some(ResponseError::IllegalGeneration);
        }
        // Like Kafka: a member of the current generation may still commit while the group
        // prepares a rebalance (it commits before rejoining), but not between join and sync.
        if group.state == GroupState::CompletingRebalance {
            return Some(ResponseError::RebalanceInProgress);
        }
        None
    }

    /// Persists and applies committed offsets (blocking). The caller waits on the returned
    /// append until the offsets partition's ISR has it, as Kafka commits with acks=all.
    pub fn commit(
        &self,
        group_id: &str,
        offsets: Vec<((String, i32), OffsetValue)>,
    ) -> Result<Option<Appended>, crate::cluster::AdminError> {
        self.write_offsets(group_id, offsets, None)
    }

    /// TxnOffsetCommit: appends offsets to the group's offsets partition as part of the
    /// producer's transaction (blocking). They reach the group only once the transaction's
    /// commit marker reaches that partition ([`Self::complete_transaction`]).
    pub fn commit_in_transaction(
        &self,
        group_id: &str,
        offsets: Vec<((String, i32), OffsetValue)>,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Result<Option<Appended>, crate::cluster::AdminError> {
        self.write_offsets(group_id, offsets, Some((producer_id, producer_epoch)))
    }

    /// A transaction marker reached offsets partition `partition`: the offsets the producer
    /// committed there in its transaction join their groups (commit) or are dropped (abort).
    pub fn complete_transaction(&self, producer_id: i64, partition: i32, commit: bool) {
        let count = self
            .cluster
            .topic(CONSUMER_OFFSETS)
            .map_or(1, |t| t.partition_count());
        let done = {
            let mut pending = self.pending_txn.lock();
            let Some(entries) = pending.get_mut(&producer_id) else {
                return;
            };
            let (done, rest): (Vec<_>, Vec<_>) = std::mem::take(entries)
                .into_iter()
                .partition(|(group, _, _)| offsets_log::partition_for(group, count) == partition);
            *entries = rest;
            if entries.is_empty() {
                pending.remove(&producer_id);
            }
            done
        };
        if commit {
            let mut groups = self.groups.lock();
            for (group, tp, value) in done {
                groups
                    .entry(group)
                    .or_insert_with(Group::new)
                    .offsets
                    .insert(tp, value);
            }
        }
    }

    /// Whether `group_id` has offsets for `tp` (any partition when `None`) in a transaction
    /// still open: OffsetFetch with `require_stable` answers UNSTABLE_OFFSET_COMMIT for them.
    pub fn has_pending_transaction(&self, group_id: &str, tp: Option<&(String, i32)>) -> bool {
        self.pending_txn
            .lock()
            .values()
            .flatten()
            .any(|(group, p, _)| group == group_id && tp.is_none_or(|tp| tp == p))
    }

    /// Writes offsets to the group's offsets partition, applying them at once, or, from a
    /// transactional producer, holding them until its transaction ends.
    fn write_offsets(
        &self,
        group_id: &str,
        offsets: Vec<((String, i32), OffsetValue)>,
        producer: Option<(i64, i16)>,
    ) -> Result<Option<Appended>, crate::cluster::AdminError> {
        let partitions = self.ensure_offsets_topic()?;
        let pidx = offsets_log::partition_for(group_id, partitions);
        let partition = self
            .cluster
            .partition(CONSUMER_OFFSETS, pidx)
            .ok_or_else(|| crate::cluster::AdminError::UnknownTopic(CONSUMER_OFFSETS.into()))?;
        let records: Vec<(Bytes, Option<Bytes>)> = offsets
            .iter()
            .map(|((topic, p), v)| {
                let k = OffsetKey {
                    group: group_id.to_string(),
                    topic: topic.clone(),
                    partition: *p,
                };
                (
                    offsets_log::encode_key(&k),
                    Some(offsets_log::encode_value(v)),
                )
            })
            .collect();
        let _order = self.commit_order.lock();
        let appended = self.append_offsets_records(&partition, records, producer)?;
        if let Some((producer_id, _)) = producer {
            let mut pending = self.pending_txn.lock();
            let entries = pending.entry(producer_id).or_default();
            for (tp, v) in offsets {
                entries.retain(|(g, p, _)| g != group_id || *p != tp);
                entries.push((group_id.to_string(), tp, v));
            }
            return Ok(appended);
        }
        let mut groups = self.groups.lock();
        let g = groups
            .entry(group_id.to_string())
            .or_insert_with(Group::new);
        for (k, v) in offsets {
            g.offsets.insert(k, v);
        }
        Ok(appended)
    }

    /// Appends keyed records to an offsets partition, as part of `producer`'s transaction
    /// when given (TxnOffsetCommit).
    fn append_offsets_records(
        &self,
        partition: &Arc<crate::cluster::Partition>,
        records: Vec<(Bytes, Option<Bytes>)>,
        producer: Option<(i64, i16)>,
    ) -> Result<Option<Appended>, crate::cluster::AdminError> {
        if records.is_empty() {
            return Ok(None);
        }
        let batch = crate::log::batch::encode_keyed(records, now_ms(), producer)?;
        let (outcome, epoch) = self.cluster.append(partition, batch)?;
        let (crate::log::AppendOutcome::Appended(info)
        | crate::log::AppendOutcome::Duplicate(info)) = outcome;
        Ok(Some(Appended {
            partition: Arc::clone(partition),
            next_offset: info.last_offset + 1,
            epoch,
        }))
    }

    /// Committed offsets of a group: all, or the given partitions (-1 when none).
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Vec<((String, i32), Option<OffsetValue>)> {
        let groups = self.groups.lock();
        let g = groups.get(group_id);
        match partitions {
            Some(ps) => ps
                .into_iter()
                .map(|k| {
                    let v = g.and_then(|g| g.offsets.get(&k).cloned());
                    (k, v)
                })
                .collect(),
            None => g
                .map(|g| {
                    g.offsets
                        .iter()
                        .map(|(k, v)| (k.clone(), Some(v.clone())))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Every group: (id, protocol type, state name, group type: "classic" or "consumer").
    pub fn list(&self) -> Vec<ListedGroup> {
        let groups = self.groups.lock();
        let mut v: Vec<_> = groups.iter().map(|(id, g)| listed(id, g)).collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// What the metrics show of the groups this node coordinates: every group listed, and for
    /// the first `groups` by id their member counts and up to `offsets` committed offsets in
    /// all.
    pub fn metrics_view(&self, groups: usize, offsets: usize) -> GroupsView {
        let all = self.groups.lock();
        let mut ids: Vec<&String> = all.keys().collect();
        ids.sort();
        let mut view = GroupsView::default();
        for (i, id) in ids.into_iter().enumerate() {
            let g = &all[id];
            let listed = listed(id, g);
            if i < groups {
                let members = match (&g.share, &g.consumer) {
                    (Some(s), _) => s.members.len(),
                    (None, Some(c)) if listed.group_type == "consumer" => c.members.len(),
                    _ => g.members.len(),
                };
                view.members.push((id.clone(), members));
                let room = offsets.saturating_sub(view.offsets.len());
                view.offsets.extend(
                    g.offsets
                        .iter()
                        .take(room)
                        .map(|((t, p), o)| (id.clone(), t.clone(), *p, o.offset)),
                );
            }
            view.listed.push(listed);
        }
        view
    }

    /// ConsumerGroupHeartbeat (KIP-848) for `group_id`. A member joining a classic group
    /// with members upgrades it to a consumer-protocol group (the classic members stay, see
    /// `mixed`); the last consumer-protocol member leaving a group of classic members
    /// downgrades it again.
    pub fn consumer_heartbeat(
        &self,
        group_id: &str,
        hb: consumer::Heartbeat,
    ) -> Result<(consumer::HeartbeatAnswer, Option<Appended>), consumer::Refusal> {
        if group_id.is_empty() {
            return Err((
                ResponseError::InvalidGroupId,
                "the group id is empty".into(),
            ));
        }
        if let Some(a) = hb.assignor.as_deref().filter(|a| !a.is_empty()) {
            if !consumer::ASSIGNORS.contains(&a) {
                return Err((
                    ResponseError::UnsupportedAssignor,
                    format!(
                        "assignor {a} is not one of {}",
                        consumer::ASSIGNORS.join(", ")
                    ),
                ));
            }
        }
        let topics = self.topic_partition_counts();
        let (answer, appended) = self.change_group(group_id, |groups| {
            let group = groups
                .entry(group_id.to_string())
                .or_insert_with(Group::new);
            if group.share.is_some() {
                return Err((
                    ResponseError::GroupIdNotFound,
                    format!("Group {group_id} is not a consumer group."),
                ));
            }
            let now = Instant::now();
            if !group.members.is_empty() {
                if hb.member_epoch != 0 {
                    return Err((
                        ResponseError::UnknownMemberId,
                        format!("member {} is not in the group", hb.member_id),
                    ));
                }
                group.upgrade(group_id, &topics, now)?;
            }
            let c = group
                .consumer
                .get_or_insert_with(|| consumer::ConsumerGroup::new(consumer::ASSIGNORS[0]));
            let answer = c.heartbeat(hb, &topics, now, || uuid::Uuid::new_v4().to_string());
            group.maybe_downgrade(now);
            answer
        });
        Ok((answer?, appended))
    }

    /// Runs `f` on the locked groups, then writes to `__consumer_offsets` what it changed of
    /// `group_id`'s consumer-protocol membership (blocking). Under `commit_order`, so the
    /// log has the changes in the order they were made. The caller may wait for the ISR to
    /// have the returned append; if it cannot be written, the next change rewrites the
    /// group whole.
    fn change_group<T>(
        &self,
        group_id: &str,
        f: impl FnOnce(&mut HashMap<String, Group>) -> T,
    ) -> (T, Option<Appended>) {
        // Ids looked up per topic the group names: a map of every topic's, built on each
        // heartbeat, would cost O(topics) per heartbeat.
        let id_of = |t: &str| self.cluster.topic(t).map(|t| t.id);
        let _order = self.commit_order.lock();
        let (out, records) = {
            let mut groups = self.groups.lock();
            let out = f(&mut groups);
            let records = groups
                .get_mut(group_id)
                .map(|g| membership_changes(group_id, g, &id_of))
                .unwrap_or_default();
            (out, records)
        };
        (out, self.append_membership(group_id, records))
    }

    /// All that has been written to group `group_id`'s `__consumer_offsets` partition so far
    /// (if this node has it), to wait on before answering a request whose change was
    /// written there, or is pending in the same log.
    pub fn written(&self, group_id: &str) -> Option<Appended> {
        let topic = self.cluster.topic(CONSUMER_OFFSETS)?;
        let partition = topic.partition(offsets_log::partition_for(
            group_id,
            topic.partition_count(),
        ))?;
        Some(Appended {
            next_offset: partition.log_end_offset(),
            epoch: partition.leader_epoch(),
            partition,
        })
    }

    /// Every topic's id by name.
    fn topic_ids(&self) -> HashMap<String, uuid::Uuid> {
        self.cluster
            .topics()
            .iter()
            .map(|t| (t.name.clone(), t.id))
            .collect()
    }

    /// Appends membership records of `group_id`; on failure its next change writes the whole
    /// group again.
    fn append_membership(
        &self,
        group_id: &str,
        records: Vec<(Bytes, Option<Bytes>)>,
    ) -> Option<Appended> {
        if records.is_empty() {
            return None;
        }
        // Not `ensure_offsets_topic`: creating the topic here would load its partitions and
        // drop the very group being written. Without it (a lone broker before any
        // FindCoordinator) there is nowhere to write yet.
        let Some(partition) = self
            .cluster
            .topic(CONSUMER_OFFSETS)
            .and_then(|t| t.partition(offsets_log::partition_for(group_id, t.partition_count())))
        else {
            if let Some(g) = self.groups.lock().get_mut(group_id) {
                g.persisted.clear();
            }
            return None;
        };
        let written = self.append_offsets_records(&partition, records, None);
        match written {
            Ok(appended) => appended,
            Err(e) => {
                tracing::warn!(group = %group_id, error = %e, "writing group membership failed");
                if let Some(g) = self.groups.lock().get_mut(group_id) {
                    g.persisted.clear();
                }
                None
            }
        }
    }

    /// Checks an OffsetFetch v9+ by a consumer-protocol member at `epoch`; `None` when it
    /// may proceed (or the group is not a consumer-protocol group).
    pub fn validate_member_epoch(
        &self,
        group_id: &str,
        member_id: &str,
        epoch: i32,
    ) -> Option<ResponseError> {
        let groups = self.groups.lock();
        let g = groups.get(group_id)?;
        g.consumer
            .as_ref()
            .filter(|_| g.members.is_empty())?
            .validate(member_id, epoch)
    }

    /// A consumer-protocol group as ConsumerGroupDescribe reports it; `None` if there is no
    /// such group (a classic group is reported by DescribeGroups).
    pub fn describe_consumer_group(&self, group_id: &str) -> Option<consumer::ConsumerGroup> {
        let groups = self.groups.lock();
        let g = groups.get(group_id)?;
        g.consumer.clone().filter(|_| g.members.is_empty())
    }

    /// Describes a group; `None` if unknown.
    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        let groups = self.groups.lock();
        let g = groups.get(group_id)?;
        let protocol = g.protocol.clone().unwrap_or_default();
        Some(GroupDescription {
            state: g.state,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            members: g
                .members
                .iter()
                .map(|(id, m)| MemberDescription {
                    member_id: id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: m
                        .protocols
                        .iter()
                        .find(|(n, _)| *n == protocol)
                        .map(|(_, b)| b.clone())
                        .unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
            protocol,
        })
    }

    /// Deletes an empty group and its offsets (blocking).
    pub fn delete_group(&self, group_id: &str) -> Option<ResponseError> {
        let (offsets, membership): (Vec<(String, i32)>, Vec<Bytes>) = {
            let groups = self.groups.lock();
            match groups.get(group_id) {
                None => return Some(ResponseError::GroupIdNotFound),
                Some(g) if !g.members.is_empty() || g.has_consumer_members() => {
                    return Some(ResponseError::NonEmptyGroup)
                }
                Some(g) if g.share.as_ref().is_some_and(|s| !s.members.is_empty()) => {
                    return Some(ResponseError::NonEmptyGroup)
                }
                Some(g) => (
                    g.offsets.keys().cloned().collect(),
                    g.persisted.keys().cloned().collect(),
                ),
            }
        };
        let partitions = match self.ensure_offsets_topic() {
            Ok(n) => n,
            Err(_) => return Some(ResponseError::CoordinatorNotAvailable),
        };
        let pidx = offsets_log::partition_for(group_id, partitions);
        if let Some(p) = self.cluster.partition(CONSUMER_OFFSETS, pidx) {
            let tombstones = offsets
                .into_iter()
                .map(|(topic, partition)| {
                    let k = OffsetKey {
                        group: group_id.to_string(),
                        topic,
                        partition,
                    };
                    (offsets_log::encode_key(&k), None)
                })
                .chain(membership.into_iter().map(|k| (k, None)))
                .collect();
            let _order = self.commit_order.lock();
            if self.append_offsets_records(&p, tombstones, None).is_err() {
                return Some(ResponseError::KafkaStorageError);
            }
        }
        self.groups.lock().remove(group_id);
        self.shares.remove(group_id, None);
        None
    }

    /// OffsetDelete (blocking): removes the committed offsets of `partitions` from group
    /// `group_id`, as Kafka does: GROUP_ID_NOT_FOUND for an unknown group, NON_EMPTY_GROUP
    /// for a group with members that is not a consumer group, and for a consumer group with
    /// members GROUP_SUBSCRIBED_TO_TOPIC on each partition of a topic a member subscribes
    /// to (those keep their offsets). The error of each partition otherwise; tombstones go
    /// to `__consumer_offsets` first.
    pub fn delete_offsets(
        &self,
        group_id: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<Vec<PartitionOutcome>, ResponseError> {
        let subscribed = {
            let groups = self.groups.lock();
            let g = groups.get(group_id).ok_or(ResponseError::GroupIdNotFound)?;
            if !g.members.is_empty() && g.protocol_type.as_deref() != Some("consumer") {
                return Err(ResponseError::NonEmptyGroup);
            }
            g.subscribed_topics()
        };
        let (kept, deleted): (Vec<_>, Vec<_>) = partitions
            .into_iter()
            .partition(|(topic, _)| subscribed.contains(topic));
        let partition_count = self
            .ensure_offsets_topic()
            .map_err(|_| ResponseError::CoordinatorNotAvailable)?;
        let pidx = offsets_log::partition_for(group_id, partition_count);
        let offsets = self
            .cluster
            .partition(CONSUMER_OFFSETS, pidx)
            .ok_or(ResponseError::CoordinatorNotAvailable)?;
        {
            let _order = self.commit_order.lock();
            let committed: Vec<(String, i32)> = {
                let groups = self.groups.lock();
                let g = groups.get(group_id).ok_or(ResponseError::GroupIdNotFound)?;
                deleted
                    .iter()
                    .filter(|k| g.offsets.contains_key(*k))
                    .cloned()
                    .collect()
            };
            let tombstones = committed
                .iter()
                .map(|(topic, partition)| {
                    let k = OffsetKey {
                        group: group_id.to_string(),
                        topic: topic.clone(),
                        partition: *partition,
                    };
                    (offsets_log::encode_key(&k), None)
                })
                .collect();
            self.append_offsets_records(&offsets, tombstones, None)
                .map_err(|_| ResponseError::KafkaStorageError)?;
            if let Some(g) = self.groups.lock().get_mut(group_id) {
                for k in &committed {
                    g.offsets.remove(k);
                }
            }
        }
        let refused = kept
            .into_iter()
            .map(|k| (k, Some(ResponseError::GroupSubscribedToTopic)));
        Ok(deleted
            .into_iter()
            .map(|k| (k, None))
            .chain(refused)
            .collect())
    }

    /// Number of groups known.
    pub fn group_count(&self) -> usize {
        self.groups.lock().len()
    }
}

/// Restores into `g` the group `records` hold: a share, consumer-protocol or classic group,
/// whichever they hold (`name_of` names a topic id, `topics` are the cluster's partition
/// counts). Returns its kind, epoch (or generation) and member count, if it held one.
fn restore_group(
    g: &mut Group,
    group_id: &str,
    records: &consumer_log::Records,
    name_of: impl Fn(uuid::Uuid) -> Option<String> + Copy,
    topics: &BTreeMap<String, i32>,
    now: Instant,
) -> Option<(&'static str, i32, usize)> {
    if let Some(share) = share_log::rebuild(records, name_of, topics, now) {
        let loaded = ("share", share.group_epoch, share.members.len());
        g.share = Some(share);
        return Some(loaded);
    }
    if let Some(consumer) = consumer_log::rebuild(records, name_of, now) {
        let loaded = ("consumer", consumer.epoch, consumer.members.len());
        g.consumer = Some(consumer);
        return Some(loaded);
    }
    let classic = classic_log::restore(records.get(&classic_log::key(group_id))?, now)?;
    let loaded = ("classic", classic.generation, classic.members.len());
    *g = Group {
        offsets: std::mem::take(&mut g.offsets),
        ..classic
    };
    Some(loaded)
}

/// What to write of group `group_id`'s membership since its last write: its classic
/// `GroupMetadata` at each complete generation, or its consumer-protocol or share group
/// records (each tombstoned once it has none); `ids` are the topics' ids.
fn membership_changes(
    group_id: &str,
    g: &mut Group,
    id_of: &impl Fn(&str) -> Option<uuid::Uuid>,
) -> Vec<(Bytes, Option<Bytes>)> {
    let classic = classic_log::value(g);
    if g.consumer.is_none() && g.share.is_none() && g.persisted.is_empty() && classic == Ok(None) {
        return Vec::new();
    }
    let mut now = match (&g.consumer, &g.share) {
        (Some(c), _) => consumer_log::records(group_id, c, id_of),
        (None, Some(s)) => share_log::records(group_id, s, id_of),
        (None, None) => consumer_log::Records::new(),
    };
    let key = classic_log::key(group_id);
    match classic {
        Ok(Some(value)) => {
            now.insert(key, value);
        }
        Ok(None) => {}
        // Mid-rebalance: the last complete generation stays.
        Err(()) => {
            if let Some(value) = g.persisted.get(&key) {
                now.insert(key, value.clone());
            }
        }
    }
    let changes = consumer_log::changes(&g.persisted, &now);
    g.persisted = now;
    changes
}

/// The member a LeaveGroup entry names: `id`, or the static member its instance id has now
/// (`current`; a leave by instance id alone, as `kafka-consumer-groups --remove-members`
/// sends); an old incarnation of a static member is FENCED_INSTANCE_ID.
fn leaving_member(id: &str, current: Option<&str>) -> Result<String, ResponseError> {
    match current {
        Some(current) if id.is_empty() || current == id => Ok(current.to_string()),
        Some(_) => Err(ResponseError::FencedInstanceId),
        None => Ok(id.to_string()),
    }
}

#[cfg(test)]
mod tests;

/// Whether a control record's key (version, type) is a COMMIT marker (type 1).
fn control_record_commits(key: Option<&Bytes>) -> bool {
    key.and_then(|k| k.get(2..4))
        .is_some_and(|t| i16::from_be_bytes([t[0], t[1]]) == 1)
}
