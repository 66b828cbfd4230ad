//! Topics and partitions this node serves, and the metadata that defines them.
//!
//! Every change goes through the metadata log first ([`metadata::MetadataLog`]) and is then
//! applied to the in-memory image (`topics`). Admin operations run on a blocking thread holding
//! the metadata lock, so check-then-act (does the topic exist?) is atomic and the async reactor
//! never waits on a disk write.

mod acls;
mod broker_configs;
pub mod hw_checkpoint;
pub mod image;
pub mod internal;
pub mod isr;
mod local_logs;
pub mod metadata;
pub mod placement;
mod reconcile;
mod replica_admin;
pub mod replica_changes;
pub mod security;
pub use security::GroupConfigs;
pub mod topic_config;
mod unregister;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use parking_lot::{MappedMutexGuard, Mutex, MutexGuard, RwLock};

use crate::config::Config;
use crate::log::control::Marker;
use crate::log::{AppendInfo, AppendOutcome, LogConfig, LogError, PartitionLog};
use image::{
    BrokerEndpoint, BrokerImage, MetadataImage, PartitionImage, ScramCredentials, PRODUCER_ID_BLOCK,
};
use metadata::{MetadataError, MetadataLog, MetadataRecord, MetadataStore};

/// Name of the internal topic holding committed offsets.
pub const CONSUMER_OFFSETS: &str = "__consumer_offsets";
/// The transaction coordinators' log.
pub const TRANSACTION_STATE: &str = "__transaction_state";
/// The share coordinator's topic (KIP-932).
pub const SHARE_GROUP_STATE: &str = "__share_group_state";

/// Why an admin operation failed; each variant maps to a Kafka error code.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// TOPIC_ALREADY_EXISTS.
    #[error("topic {0} already exists")]
    TopicExists(String),
    /// UNKNOWN_TOPIC_OR_PARTITION.
    #[error("topic {0} does not exist")]
    UnknownTopic(String),
    /// INVALID_TOPIC_EXCEPTION.
    #[error("{0}")]
    InvalidTopic(String),
    /// INVALID_PARTITIONS.
    #[error("{0}")]
    InvalidPartitions(String),
    /// INVALID_REPLICATION_FACTOR.
    #[error("{0}")]
    InvalidReplicationFactor(String),
    /// INVALID_CONFIG.
    #[error("{0}")]
    InvalidConfig(String),
    /// INVALID_REQUEST: what Kafka answers for a BROKER config it cannot apply dynamically or
    /// a value that does not validate, and for a BROKER resource naming another broker.
    #[error("{0}")]
    InvalidRequest(String),
    /// TOPIC_DELETION_DISABLED.
    #[error("topic deletion is disabled (delete.topic.enable=false)")]
    DeletionDisabled,
    /// KAFKA_STORAGE_ERROR: the metadata log or a partition log could not be written.
    #[error("storage error: {0}")]
    Storage(String),
    /// NOT_CONTROLLER: the controller quorum could not commit the change (no leader reachable,
    /// no majority); clients retry.
    #[error("{0}")]
    NotController(String),
    /// UNKNOWN_TOPIC_OR_PARTITION for a partition index the topic does not have.
    #[error("partition {topic}-{partition} does not exist")]
    UnknownPartition {
        /// Topic name.
        topic: String,
        /// The partition index asked for.
        partition: i32,
    },
    /// INVALID_REPLICA_ASSIGNMENT.
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    /// NO_REASSIGNMENT_IN_PROGRESS: a cancellation found nothing to cancel.
    #[error("no partition reassignment is in progress")]
    NoReassignmentInProgress,
    /// ELECTION_NOT_NEEDED: the partition already has the leader the election would give it.
    #[error("leader election not needed")]
    ElectionNotNeeded,
    /// PREFERRED_LEADER_NOT_AVAILABLE.
    #[error("the preferred leader is not available: {0}")]
    PreferredLeaderNotAvailable(String),
    /// ELIGIBLE_LEADERS_NOT_AVAILABLE.
    #[error("no eligible leader is available: {0}")]
    EligibleLeadersNotAvailable(String),
    /// BROKER_ID_NOT_REGISTERED, in Kafka's words.
    #[error("Broker ID {0} is not currently registered")]
    BrokerIdNotRegistered(i32),
    /// INVALID_REQUEST: UnregisterBroker for a broker that is alive. Gregor removes only a
    /// fenced broker (Kafka removes any): a live one would register again on its next start
    /// anyway, and removing a live leader strands its partitions.
    #[error(
        "broker {0} is not fenced (it is alive): stop it, and once it is fenced, unregister it"
    )]
    BrokerNotFenced(i32),
    /// TOPIC_AUTHORIZATION_FAILED, GROUP_AUTHORIZATION_FAILED or CLUSTER_AUTHORIZATION_FAILED
    /// (by the kind of resource): the request's principal may not do this.
    #[error("Authorization failed.")]
    Unauthorized(crate::authz::ResourceType),
    /// REQUEST_TIMED_OUT: a conditional change kept losing to concurrent changes of the same
    /// partition (the controller's elections and ISR changes); retrying may succeed.
    #[error("{0}")]
    ChangedConcurrently(String),
    /// THROTTLING_QUOTA_EXCEEDED: the client has spent its `controller_mutation_rate`; Kafka
    /// answers it with no error message (its clients show this, the code's own text).
    #[error("The throttling quota has been exceeded.")]
    ThrottlingQuotaExceeded,
}

impl From<MetadataError> for AdminError {
    fn from(e: MetadataError) -> Self {
        match e {
            MetadataError::Quorum(_) => AdminError::NotController(error_chain(&e)),
            _ => AdminError::Storage(error_chain(&e)),
        }
    }
}

impl From<LogError> for AdminError {
    fn from(e: LogError) -> Self {
        AdminError::Storage(error_chain(&e))
    }
}

pub use gregor_client::error_chain;

/// One partition of a topic, led by this node.
#[derive(Debug)]
pub struct Partition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub index: i32,
    /// This node's log of the partition: `None` unless this node is one of its replicas. A
    /// plain mutex: it is only locked on blocking threads, never across an await. The state
    /// below changes only while it is held, so whoever holds it sees the two agree.
    log: Mutex<Option<PartitionLog>>,
    /// Records below this offset are visible to consumers. On one node every append is
    /// committed as soon as it is written, so this follows the log end. Restored from the log
    /// dir's high-watermark checkpoint when the log is opened.
    high_watermark: AtomicI64,
    /// Mirrors the log's start offset so readers need not take the log lock.
    log_start: AtomicI64,
    /// Messages appended since the last fsync, for `flush.messages`.
    unflushed: AtomicU64,
    /// Replicas, leader, leader epoch and ISR, as last committed to the metadata.
    state: RwLock<PartitionImage>,
    /// What the leader knows of each follower, from their replica fetches.
    followers: Mutex<BTreeMap<i32, isr::FollowerProgress>>,
    /// The log end offset, mirrored for the high-watermark rule.
    log_end: AtomicI64,
    /// The first offset of the oldest open transaction (`i64::MAX`: none), mirrored so the
    /// last stable offset needs no log lock.
    first_unstable: AtomicI64,
    /// Bumped whenever the high watermark moves, for acks=all waiters.
    hw_moved: tokio::sync::watch::Sender<i64>,
    /// This node's id: the high-watermark rule applies only while it leads.
    node: i32,
    /// The cluster's wake-up for long-polling fetches.
    data_arrived: Arc<tokio::sync::watch::Sender<u64>>,
    /// The node's append and fsync timings.
    timings: Arc<crate::metrics::LogTimings>,
    /// The log end when this node last became leader: until the high watermark reaches it,
    /// what is committed is not yet known (ListOffsets answers OFFSET_NOT_AVAILABLE, KIP-207).
    epoch_start: AtomicI64,
    /// While this node follows: how many messages its log trailed the leader's high watermark
    /// by at the last replica fetch (Kafka's fetcher lag).
    follower_lag: AtomicI64,
    /// Why this node's replica is offline: its log could not be opened (a failing disk, no
    /// descriptor left). Set once; the replica stays offline until the node restarts, as a
    /// Kafka replica in a failed log dir does, and its requests answer KAFKA_STORAGE_ERROR.
    offline: OnceLock<String>,
}

impl Partition {
    /// A partition with no local log and nobody's state yet: [`Cluster::apply_partition`]
    /// gives it both.
    fn new(
        topic: &str,
        index: i32,
        node: i32,
        data_arrived: Arc<tokio::sync::watch::Sender<u64>>,
        timings: Arc<crate::metrics::LogTimings>,
    ) -> Partition {
        Partition {
            topic: topic.to_string(),
            index,
            log: Mutex::new(None),
            high_watermark: AtomicI64::new(0),
            log_start: AtomicI64::new(0),
            unflushed: AtomicU64::new(0),
            state: RwLock::new(PartitionImage {
                leader: -1,
                leader_epoch: -1,
                partition_epoch: -1,
                ..PartitionImage::default()
            }),
            followers: Mutex::new(BTreeMap::new()),
            log_end: AtomicI64::new(0),
            first_unstable: AtomicI64::new(i64::MAX),
            hw_moved: tokio::sync::watch::Sender::new(0),
            node,
            data_arrived,
            timings,
            epoch_start: AtomicI64::new(0),
            follower_lag: AtomicI64::new(0),
            offline: OnceLock::new(),
        }
    }

    /// Why this node's replica of the partition is offline, if it is.
    pub fn offline_reason(&self) -> Option<&str> {
        self.offline.get().map(String::as_str)
    }

    /// Takes this node's replica offline for `reason` (the first reason stays).
    fn take_offline(&self, reason: String) {
        let _ = self.offline.set(reason);
    }

    /// The error for a request that needs this node's log and finds none: KAFKA_STORAGE_ERROR
    /// (naming why) when the replica is offline, else NOT_LEADER_OR_FOLLOWER.
    pub fn missing_log(&self) -> LogError {
        match self.offline_reason() {
            Some(reason) => LogError::Offline(format!(
                "the replica of {}-{} on this node is offline: {reason}",
                self.topic, self.index
            )),
            None => LogError::NotLeader,
        }
    }

    /// This node's log of the partition, locked; `None` when this node holds no replica of it
    /// (its fetches and appends answer NOT_LEADER_OR_FOLLOWER).
    pub fn log(&self) -> Option<MappedMutexGuard<'_, PartitionLog>> {
        MutexGuard::try_map(self.log.lock(), Option::as_mut).ok()
    }

    /// Like [`Partition::log`], but `None` as well when the log is locked (for metrics, which
    /// must not wait behind an fsync).
    pub fn try_log(&self) -> Option<MappedMutexGuard<'_, PartitionLog>> {
        self.log
            .try_lock()
            .and_then(|g| MutexGuard::try_map(g, Option::as_mut).ok())
    }

    /// How many messages this follower trailed the leader's high watermark by at its last
    /// replica fetch; 0 while it leads.
    pub fn follower_lag(&self) -> i64 {
        self.follower_lag.load(Ordering::Relaxed)
    }

    /// Offset below which records are committed and readable by consumers.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    /// Whether this leader's high watermark has reached the log end it had when elected, so
    /// offsets below it are known committed (KIP-207).
    pub fn high_watermark_settled(&self) -> bool {
        self.high_watermark() >= self.epoch_start.load(Ordering::Acquire)
    }

    /// The log end offset (next offset to be written).
    pub fn log_end_offset(&self) -> i64 {
        self.log_end.load(Ordering::Acquire)
    }

    /// First offset still in the log.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start.load(Ordering::Acquire)
    }

    /// The current leader epoch, stamped on appended batches.
    pub fn leader_epoch(&self) -> i32 {
        self.state.read().leader_epoch
    }

    /// Whether `node` leads this partition (serves produce and consumer fetches for it).
    pub fn is_led_by(&self, node: i32) -> bool {
        self.state.read().leader == node
    }

    /// Replicas, leader, leader epoch and ISR.
    pub fn state(&self) -> PartitionImage {
        self.state.read().clone()
    }

    fn refresh(&self, log: &PartitionLog) {
        self.log_start
            .store(log.log_start_offset(), Ordering::Release);
        self.log_end.store(log.log_end_offset(), Ordering::Release);
        self.mirror_transactions(log);
        self.advance_high_watermark();
    }

    fn mirror_transactions(&self, log: &PartitionLog) {
        let unstable = log.first_unstable_offset().unwrap_or(i64::MAX);
        self.first_unstable.store(unstable, Ordering::Release);
    }

    /// The last stable offset (LSO): read_committed consumers read below it. The high
    /// watermark, held back to the first offset of the oldest transaction still open.
    pub fn last_stable_offset(&self) -> i64 {
        self.high_watermark()
            .min(self.first_unstable.load(Ordering::Acquire))
    }

    /// Recomputes the high watermark: the smallest log end offset in the ISR (just this log's
    /// end when the ISR is this node alone). Never moves back.
    fn advance_high_watermark(&self) {
        let state = self.state.read();
        if state.leader != self.node {
            return;
        }
        let leo = self.log_end.load(Ordering::Acquire);
        let current = self.high_watermark.load(Ordering::Acquire);
        let hw = isr::high_watermark(
            current,
            state.leader,
            leo,
            &state.isr,
            &self.followers.lock(),
        )
        .min(leo);
        if hw > current {
            self.high_watermark.store(hw, Ordering::Release);
            self.hw_moved.send_replace(hw);
            self.data_arrived.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Records a replica fetch by `follower` at `fetch_offset` (its log end) and advances the
    /// high watermark accordingly. Returns false, recording nothing, when `follower` is not
    /// one of the partition's replicas: its fetches must not count towards the high watermark
    /// or the ISR (Kafka refuses them: "Replica X is not recognized as a valid replica").
    #[must_use]
    pub fn on_replica_fetch(&self, follower: i32, fetch_offset: i64, now_ms: i64) -> bool {
        if !self.state.read().replicas.contains(&follower) {
            return false;
        }
        let leo = self.log_end.load(Ordering::Acquire);
        self.followers
            .lock()
            .entry(follower)
            .or_insert(isr::FollowerProgress {
                log_end_offset: 0,
                last_caught_up_ms: 0,
            })
            .on_fetch(fetch_offset, leo, now_ms);
        self.advance_high_watermark();
        true
    }

    /// Waits until the high watermark reaches `offset` (acks=all), up to `timeout`, while
    /// `node` still leads at `epoch` (the epoch the records were appended in).
    pub async fn wait_for_high_watermark(
        &self,
        offset: i64,
        node: i32,
        epoch: i32,
        timeout: std::time::Duration,
    ) -> Commit {
        let mut rx = self.hw_moved.subscribe();
        let still_leader = || {
            let s = self.state.read();
            s.leader == node && s.leader_epoch == epoch
        };
        let waited = tokio::time::timeout(timeout, async {
            rx.wait_for(|_| self.high_watermark() >= offset || !still_leader())
                .await
                .is_ok()
        })
        .await;
        if self.high_watermark() >= offset {
            Commit::Committed
        } else if !still_leader() || matches!(waited, Ok(false)) {
            Commit::NotLeader
        } else {
            Commit::TimedOut
        }
    }

    /// Applies a committed partition state; the caller holds the log lock (`slot`), so no
    /// client append interleaves with a leadership change. Returns whether anything changed.
    fn apply_state(
        &self,
        slot: &mut Option<PartitionLog>,
        state: &PartitionImage,
    ) -> Result<bool, LogError> {
        let me = self.node;
        let old = self.state.read().clone();
        if old == *state {
            return Ok(false);
        }
        let leads = state.leader == me;
        let new_epoch = old.leader_epoch != state.leader_epoch || old.leader != state.leader;
        if leads || new_epoch {
            // Measured again from the next fetch of the new leader, if this node follows.
            self.follower_lag.store(0, Ordering::Relaxed);
        }
        if leads && new_epoch {
            if let Some(log) = slot.as_mut() {
                log.assign_epoch(state.leader_epoch)?;
                self.epoch_start
                    .store(log.log_end_offset(), Ordering::Release);
            }
            // Every follower gets a full lag window from now to show up.
            let now = now_ms();
            let mut followers = self.followers.lock();
            followers.clear();
            for r in state.replicas.iter().filter(|r| **r != me) {
                followers.insert(
                    *r,
                    isr::FollowerProgress {
                        log_end_offset: i64::MIN,
                        last_caught_up_ms: now,
                    },
                );
            }
        }
        *self.state.write() = state.clone();
        if let Some(log) = slot.as_ref() {
            self.refresh(log);
        }
        // Wake acks=all waiters: they answer NOT_LEADER_OR_FOLLOWER if the leadership moved.
        self.hw_moved.send_modify(|_| {});
        Ok(true)
    }

    /// Makes `log` this node's log of the partition, with its high watermark restored from
    /// the `checkpointed` one.
    fn install_log(
        &self,
        slot: &mut Option<PartitionLog>,
        log: PartitionLog,
        checkpointed: Option<i64>,
    ) {
        let (start, end) = (log.log_start_offset(), log.log_end_offset());
        self.log_start.store(start, Ordering::Release);
        self.log_end.store(end, Ordering::Release);
        self.high_watermark.store(
            hw_checkpoint::restored(checkpointed, start, end),
            Ordering::Release,
        );
        *slot = Some(log);
    }

    /// Closes this node's log of the partition, forgetting its offsets and followers; returns
    /// the directory it was in, for the caller to delete.
    fn remove_log(&self, slot: &mut Option<PartitionLog>) -> Option<PathBuf> {
        let dir = slot.take()?.dir().to_path_buf();
        for offset in [&self.log_start, &self.log_end, &self.high_watermark] {
            offset.store(0, Ordering::Release);
        }
        self.followers.lock().clear();
        Some(dir)
    }

    /// DeleteRecords on the leader: moves the log start offset to `offset` (`-1`: the high
    /// watermark), which must not pass the high watermark; one at or below the log start
    /// changes nothing. The log start offset after.
    pub fn delete_records(&self, offset: i64) -> Result<i64, LogError> {
        let mut log = self.log().ok_or_else(|| self.missing_log())?;
        let hw = self.high_watermark();
        let target = if offset == -1 { hw } else { offset };
        if target < 0 || target > hw {
            return Err(LogError::OffsetOutOfRange {
                offset,
                start: log.log_start_offset(),
                end: hw,
            });
        }
        log.advance_log_start(target)?;
        self.refresh(&log);
        Ok(log.log_start_offset())
    }

    /// A follower's high watermark: the leader's, as far as this log reaches.
    pub fn set_follower_high_watermark(&self, leader_hw: i64) {
        let leo = self.log_end.load(Ordering::Acquire);
        self.follower_lag
            .store((leader_hw - leo).max(0), Ordering::Relaxed);
        let hw = leader_hw.min(leo);
        if self.high_watermark.swap(hw, Ordering::AcqRel) != hw {
            self.hw_moved.send_replace(hw);
        }
    }

    /// After the follower's log changed (appended or truncated): mirror its ends.
    pub fn refresh_follower(&self, log: &PartitionLog) {
        self.log_start
            .store(log.log_start_offset(), Ordering::Release);
        let leo = log.log_end_offset();
        self.log_end.store(leo, Ordering::Release);
        self.mirror_transactions(log);
        if self.high_watermark() > leo {
            self.high_watermark.store(leo, Ordering::Release);
        }
    }

    /// ISR members to drop and replicas to add, by the lag rules (leader only): the proposed
    /// new ISR, or `None` when it stays.
    /// Only `eligible` replicas (unfenced ones) may rejoin.
    pub fn isr_change(
        &self,
        me: i32,
        lag_max_ms: i64,
        now_ms: i64,
        eligible: &dyn Fn(i32) -> bool,
    ) -> Option<PartitionImage> {
        let state = self.state.read().clone();
        if state.leader != me {
            return None;
        }
        // Where this leader's epoch began, recorded when it took over: no log lock on this
        // periodic path.
        let epoch_start = self.epoch_start.load(Ordering::Acquire);
        let followers = self.followers.lock();
        let lagging = isr::lagging_members(me, &state.isr, &followers, now_ms, lag_max_ms);
        let mut rejoining = isr::rejoining_members(
            &state.replicas,
            &state.isr,
            &followers,
            self.high_watermark(),
            epoch_start,
        );
        rejoining.retain(|r| eligible(*r));
        if lagging.is_empty() && rejoining.is_empty() {
            return None;
        }
        let mut next = state.clone();
        next.isr.retain(|r| !lagging.contains(r));
        next.isr.extend(rejoining);
        Some(next)
    }

    /// This node's log, locked, and the leader epoch, while this node leads; else
    /// NOT_LEADER. Appends hold the lock from this check to their refreshed offsets.
    fn led_log(&self) -> Result<(MappedMutexGuard<'_, PartitionLog>, i32), LogError> {
        let log = self.log().ok_or_else(|| self.missing_log())?;
        let state = self.state.read();
        if state.leader != self.node {
            return Err(LogError::NotLeader);
        }
        Ok((log, state.leader_epoch))
    }

    /// Appends `records` at `now` while this node leads (blocking), fsyncs once `flush_every`
    /// messages are unflushed (`log.flush.interval.messages`), and wakes long-polling fetches.
    /// Returns the outcome and the leader epoch the records were appended in. The log lock is
    /// held from the leadership check to the refreshed offsets, so no leadership change
    /// (applied under the same lock) falls between them.
    pub fn append(
        &self,
        records: Bytes,
        now: i64,
        flush_every: Option<u64>,
    ) -> Result<(AppendOutcome, i32), LogError> {
        let (mut log, epoch) = self.led_log()?;
        let started = std::time::Instant::now();
        let outcome = log.append(records, epoch, now)?;
        self.timings.append.observe(started.elapsed().as_secs_f64());
        if let AppendOutcome::Appended(info) = &outcome {
            let n = (info.last_offset - info.base_offset + 1).max(0) as u64;
            let pending = self.unflushed.fetch_add(n, Ordering::Relaxed) + n;
            if flush_every.is_some_and(|every| pending >= every) {
                self.flush_log(&mut log)?;
                self.unflushed.store(0, Ordering::Relaxed);
            }
        }
        self.refresh(&log);
        drop(log);
        self.data_arrived.send_modify(|n| *n = n.wrapping_add(1));
        Ok((outcome, epoch))
    }

    /// fsyncs `log` (this partition's, locked), timed.
    pub fn flush_log(&self, log: &mut PartitionLog) -> Result<(), LogError> {
        let started = std::time::Instant::now();
        let flushed = log.flush();
        self.timings.flush.observe(started.elapsed().as_secs_f64());
        flushed
    }

    /// Writes a transaction marker for `producer_id` while this node leads (blocking), as
    /// [`Partition::append`] does records. Returns where it landed and the leader epoch.
    pub fn append_marker(
        &self,
        marker: Marker,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        now: i64,
    ) -> Result<(AppendInfo, i32), LogError> {
        let (mut log, epoch) = self.led_log()?;
        let info = log.append_marker(
            marker,
            producer_id,
            producer_epoch,
            coordinator_epoch,
            epoch,
            now,
        )?;
        self.unflushed.fetch_add(1, Ordering::Relaxed);
        self.refresh(&log);
        drop(log);
        self.data_arrived.send_modify(|n| *n = n.wrapping_add(1));
        Ok((info, epoch))
    }

    /// fsyncs this node's log if messages were appended since the last fsync (blocking).
    pub fn flush_unflushed(&self) -> Result<(), LogError> {
        if self.unflushed.swap(0, Ordering::Relaxed) == 0 {
            return Ok(());
        }
        self.log()
            .map_or(Ok(()), |mut log| self.flush_log(&mut log))
    }

    /// Whether the ISR has at least `min_insync` members.
    pub fn enough_replicas(&self, min_insync: i32) -> bool {
        isr::enough_replicas(&self.state.read().isr, min_insync)
    }
}

/// How an acks=all wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Every ISR member has the records.
    Committed,
    /// The request timed out first (REQUEST_TIMED_OUT).
    TimedOut,
    /// The leadership moved first (NOT_LEADER_OR_FOLLOWER); the records may still commit.
    NotLeader,
}

/// A topic and its partitions.
#[derive(Debug)]
pub struct Topic {
    /// Topic name.
    pub name: String,
    /// Topic id.
    pub id: uuid::Uuid,
    /// Replication factor asked for at creation.
    pub replication_factor: i16,
    /// Config overrides. Replaced only through `Topic::reconfigure`, which refreshes their
    /// parsed form with them.
    pub configs: RwLock<BTreeMap<String, String>>,
    /// The overrides the request path reads, parsed from `configs`. Written while the write
    /// lock of `configs` is held, so once it is released the two agree.
    parsed: RwLock<topic_config::ParsedTopicConfig>,
    /// Partitions by index. Only grows (CreatePartitions).
    pub partitions: RwLock<Vec<Arc<Partition>>>,
}

impl Topic {
    /// A topic with these config overrides and no partitions yet.
    fn new(
        name: &str,
        id: uuid::Uuid,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
    ) -> Topic {
        Topic {
            name: name.to_string(),
            id,
            replication_factor,
            parsed: RwLock::new(topic_config::ParsedTopicConfig::parse(&configs)),
            configs: RwLock::new(configs),
            partitions: RwLock::new(Vec::new()),
        }
    }

    /// The ISR size an acks=all produce needs: the topic's `min.insync.replicas`, else
    /// `broker_default` (the broker's effective one).
    pub fn min_insync_replicas(&self, broker_default: i32) -> i32 {
        self.parsed
            .read()
            .min_insync_replicas
            .unwrap_or(broker_default)
    }

    /// Replaces the config overrides, their parsed form, and the config of every local log
    /// (`log_config`, which the caller resolved from `configs`).
    fn reconfigure(&self, configs: BTreeMap<String, String>, log_config: &LogConfig) {
        let mut current = self.configs.write();
        *self.parsed.write() = topic_config::ParsedTopicConfig::parse(&configs);
        *current = configs;
        drop(current);
        self.set_log_config(log_config);
    }

    /// Whether this is an internal topic.
    pub fn is_internal(&self) -> bool {
        self.name == CONSUMER_OFFSETS
            || self.name == TRANSACTION_STATE
            || self.name == SHARE_GROUP_STATE
    }

    /// The partition with this index.
    pub fn partition(&self, index: i32) -> Option<Arc<Partition>> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.read().get(i).cloned())
    }

    /// Partition count.
    pub fn partition_count(&self) -> i32 {
        self.partitions.read().len() as i32
    }

    /// Gives every local log of the topic `config` (its overrides changed).
    fn set_log_config(&self, config: &LogConfig) {
        for p in self.partitions.read().iter() {
            if let Some(mut log) = p.log() {
                log.set_config(config.clone());
            }
        }
    }
}

/// The advertised listeners of `config` as this broker registers them: an empty host is
/// `localhost`, and port 0 (a test's "any free port") is the port `bound` says the listener of
/// that name got, else the first one bound.
pub fn advertised_endpoints(config: &Config, bound: &[(String, u16)]) -> Vec<BrokerEndpoint> {
    config
        .advertised_listeners
        .iter()
        .map(|l| BrokerEndpoint {
            listener: l.name.clone(),
            host: if l.host.is_empty() {
                "localhost".to_string()
            } else {
                l.host.clone()
            },
            port: match l.port {
                0 => bound
                    .iter()
                    .find(|(name, _)| *name == l.name)
                    .or_else(|| bound.first())
                    .map_or(0, |(_, port)| *port),
                p => p,
            },
        })
        .collect()
}

/// The address other brokers reach this one at: the inter-broker listener's endpoint, else the
/// first one, else `localhost:9092`.
fn inter_broker_address(config: &Config, endpoints: &[BrokerEndpoint]) -> (String, u16) {
    endpoints
        .iter()
        .find(|e| e.listener == config.inter_broker_listener_name)
        .or_else(|| endpoints.first())
        .map(|e| (e.host.clone(), e.port))
        .unwrap_or_else(|| ("localhost".to_string(), 9092))
}

/// A topic to create.
#[derive(Debug, Clone)]
pub struct NewTopic {
    /// Name.
    pub name: String,
    /// Partitions, or -1 for `num.partitions`.
    pub partitions: i32,
    /// Replication factor, or -1 for `default.replication.factor`.
    pub replication_factor: i16,
    /// Config overrides.
    pub configs: BTreeMap<String, String>,
    /// Explicit replica assignment per partition (CreateTopics `assignments`), if given.
    pub assignments: Option<Vec<Vec<i32>>>,
}

/// State guarded by the metadata lock.
#[derive(Debug)]
struct MetaState {
    log: Box<dyn MetadataStore>,
    /// Next producer id to hand out, and the end of the reserved block.
    next_producer_id: i64,
    producer_id_block_end: i64,
}

/// All topics on this node and the metadata log behind them.
#[derive(Debug)]
pub struct Cluster {
    /// Broker configuration.
    pub config: Arc<Config>,
    /// The cluster id from meta.properties.
    pub cluster_id: String,
    meta: Mutex<MetaState>,
    /// The metadata image: topics by name. Read on every request; written by admin ops.
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Bumped after every append and high-watermark advance, so long-polling fetches wake
    /// up (consumers see records only once the high watermark passes them).
    data_arrived: Arc<tokio::sync::watch::Sender<u64>>,
    /// Registered brokers by id.
    brokers: RwLock<BTreeMap<i32, BrokerImage>>,
    /// High watermarks read from the log dirs' checkpoints at start-up, each taken by the
    /// first log opened for its partition.
    hw_checkpoints: Mutex<hw_checkpoint::HighWatermarks>,
    /// The log dirs this node's last run shut down cleanly (their markers taken at start).
    clean_dirs: Vec<PathBuf>,
    /// Held while the checkpoints are written: the periodic task and the shutdown share the
    /// temp files.
    checkpoint_writer: Mutex<()>,
    /// Dynamic broker configs and the effective config. Read on requests and appends; written
    /// only under the metadata lock when a BROKER resource changes.
    dynamic: RwLock<broker_configs::DynamicConfigs>,
    /// The committed ACLs. Read (the `Arc` cloned) on every authorized request; replaced only
    /// under the metadata lock, after a change committed.
    acls: RwLock<Arc<crate::authz::Acls>>,
    /// The committed SCRAM credentials, read on every SCRAM login; replaced like `acls`.
    scram: RwLock<Arc<ScramCredentials>>,
    /// The committed client quota configs; replaced like `acls`.
    quotas: RwLock<Arc<crate::quotas::ClientQuotas>>,
    /// The committed group configs (GROUP config resources), by group id.
    group_configs: RwLock<Arc<GroupConfigs>>,
    /// ISR shrinks and expansions of the partitions this node leads, for metrics.
    pub isr_changes: crate::metrics::replicas::IsrChanges,
    /// The partitions' append and fsync timings, which the node registers with its metrics.
    pub log_timings: Arc<crate::metrics::LogTimings>,
    /// Record bytes this node's followers fetched from their leaders, for metrics.
    pub replication_bytes_in: AtomicU64,
}

impl Cluster {
    /// Opens the local metadata log and every partition log it names (blocking).
    pub fn open(config: Arc<Config>, cluster_id: String) -> Result<Cluster, AdminError> {
        let (log, records) = MetadataLog::open(&config.metadata_log_dir)?;
        let mut image = MetadataImage::default();
        for r in &records {
            image.apply(r);
        }
        Cluster::open_with(config, cluster_id, Box::new(log), image)
    }

    /// Opens the log of every partition replica that `image` (the committed metadata) puts on
    /// this node, with later changes made durable through `store` (blocking).
    pub fn open_with(
        config: Arc<Config>,
        cluster_id: String,
        log: Box<dyn MetadataStore>,
        image: MetadataImage,
    ) -> Result<Cluster, AdminError> {
        let next_pid = image.next_producer_id;
        let hw_checkpoints = local_logs::read_checkpoints(&config.log_dirs);
        let clean_dirs = crate::log::clean_shutdown::take(&config.log_dirs)
            .map_err(|e| AdminError::Storage(format!("removing a clean-shutdown marker: {e}")))?;
        for dir in &clean_dirs {
            tracing::info!(dir = %dir.display(), "shut down cleanly: its logs open without recovery");
        }
        let (tx, _) = tokio::sync::watch::channel(0);
        let dynamic = broker_configs::DynamicConfigs::new(&config, image.broker_configs);
        let cluster = Cluster {
            acls: RwLock::new(Arc::new(image.acls)),
            scram: RwLock::new(Arc::new(image.scram)),
            quotas: RwLock::new(Arc::new(image.quotas)),
            group_configs: RwLock::new(Arc::new(image.group_configs)),
            dynamic: RwLock::new(dynamic),
            config,
            cluster_id,
            meta: Mutex::new(MetaState {
                log,
                next_producer_id: next_pid,
                // Ids of the last block are never reused after a restart: start a new block.
                producer_id_block_end: next_pid,
            }),
            topics: RwLock::new(BTreeMap::new()),
            data_arrived: Arc::new(tx),
            brokers: RwLock::new(image.brokers),
            hw_checkpoints: Mutex::new(hw_checkpoints),
            clean_dirs,
            checkpoint_writer: Mutex::new(()),
            isr_changes: Default::default(),
            log_timings: Arc::default(),
            replication_bytes_in: AtomicU64::new(0),
        };
        for (name, t) in image.topics {
            let topic = cluster.open_topic(
                &name,
                t.id,
                t.partitions,
                t.replication_factor,
                t.configs,
                &t.assignment,
            )?;
            cluster.topics.write().insert(name, topic);
        }
        Ok(cluster)
    }

    fn open_topic(
        &self,
        name: &str,
        id: uuid::Uuid,
        count: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        assignment: &BTreeMap<i32, PartitionImage>,
    ) -> Result<Arc<Topic>, AdminError> {
        // Checked before anything is opened; each replica's log resolves it again.
        topic_config::resolve_log_config(&self.effective_config(), &configs)
            .map_err(AdminError::InvalidConfig)?;
        let topic = Arc::new(Topic::new(name, id, replication_factor, configs));
        self.add_partitions(&topic, count, assignment)?;
        Ok(topic)
    }

    /// Registered brokers (this node alone until it has registered).
    pub fn brokers(&self) -> BTreeMap<i32, BrokerImage> {
        let b = self.brokers.read();
        if b.is_empty() {
            let endpoints = advertised_endpoints(&self.config, &[]);
            let (host, port) = inter_broker_address(&self.config, &endpoints);
            return BTreeMap::from([(
                self.config.node_id,
                BrokerImage {
                    host,
                    port,
                    endpoints,
                    rack: self.config.broker_rack.clone(),
                    fenced: false,
                },
            )]);
        }
        b.clone()
    }

    /// Records this broker's advertised listeners and rack in the metadata if they changed
    /// (blocking).
    pub fn register_broker(&self, endpoints: Vec<BrokerEndpoint>) -> Result<(), AdminError> {
        let id = self.config.node_id;
        let (host, port) = inter_broker_address(&self.config, &endpoints);
        let me = BrokerImage {
            host,
            port,
            endpoints,
            rack: self.config.broker_rack.clone(),
            fenced: false,
        };
        let mut meta = self.meta.lock();
        if self.brokers.read().get(&id) == Some(&me) {
            return Ok(());
        }
        meta.log.append(&[MetadataRecord::RegisterBroker {
            id,
            host: me.host.clone(),
            port,
            endpoints: me.endpoints.clone(),
            rack: me.rack.clone(),
        }])?;
        self.brokers.write().insert(id, me);
        Ok(())
    }

    /// Replica lists for `count` partitions from index `first`, over the registered brokers.
    fn place(
        &self,
        first: i32,
        count: i32,
        replication_factor: i16,
    ) -> Result<Vec<Vec<i32>>, AdminError> {
        // Fenced brokers get no new replicas, as in Kafka.
        let brokers: Vec<placement::PlacementBroker> = self
            .brokers()
            .into_iter()
            .filter(|(_, b)| !b.fenced)
            .map(|(id, b)| placement::PlacementBroker { id, rack: b.rack })
            .collect();
        let start = rand::random::<u32>() as usize;
        placement::assign_replicas(&brokers, count, replication_factor, first, start).map_err(|e| {
            match e {
                placement::PlacementError::TooFewPartitions(_) => {
                    AdminError::InvalidPartitions(e.to_string())
                }
                _ => AdminError::InvalidReplicationFactor(e.to_string()),
            }
        })
    }

    /// Checks an explicit assignment: every partition lists the same number of distinct,
    /// registered brokers.
    fn check_assignment(&self, assignment: &[Vec<i32>]) -> Result<i16, AdminError> {
        let brokers = self.brokers();
        let rf = assignment.first().map(Vec::len).unwrap_or(0);
        for (p, replicas) in assignment.iter().enumerate() {
            let distinct: std::collections::BTreeSet<&i32> = replicas.iter().collect();
            if replicas.is_empty() || replicas.len() != rf || distinct.len() != rf {
                return Err(AdminError::InvalidReplicationFactor(format!(
                    "replica assignment of partition {p} must list {rf} distinct brokers, got {replicas:?}"
                )));
            }
            if let Some(b) = replicas.iter().find(|b| !brokers.contains_key(b)) {
                return Err(AdminError::InvalidReplicationFactor(format!(
                    "replica assignment of partition {p} names broker {b}, which is not registered"
                )));
            }
        }
        Ok(rf as i16)
    }

    /// A topic by name.
    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().get(name).cloned()
    }

    /// A topic by id.
    pub fn topic_by_id(&self, id: uuid::Uuid) -> Option<Arc<Topic>> {
        self.topics.read().values().find(|t| t.id == id).cloned()
    }

    /// Every topic, by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics.read().values().cloned().collect()
    }

    /// A partition by topic and index.
    pub fn partition(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        self.topic(topic).and_then(|t| t.partition(index))
    }

    /// Creates a topic (blocking). `validate_only` checks without creating.
    pub fn create_topic(&self, t: NewTopic, validate_only: bool) -> Result<Arc<Topic>, AdminError> {
        gregor_client::names::validate_topic_name(&t.name)
            .map_err(|e| AdminError::InvalidTopic(e.to_string()))?;
        let (assignment, replication_factor) = match &t.assignments {
            Some(a) => {
                if a.len() > 100_000 {
                    return Err(AdminError::InvalidPartitions(format!(
                        "{} partitions is more than this broker allows (100000)",
                        a.len()
                    )));
                }
                let rf = self.check_assignment(a)?;
                (a.clone(), rf)
            }
            None => {
                let partitions = match t.partitions {
                    -1 => self.config.num_partitions,
                    n if n >= 1 => n,
                    n => {
                        return Err(AdminError::InvalidPartitions(format!(
                            "number of partitions must be at least 1, got {n}"
                        )))
                    }
                };
                if partitions > 100_000 {
                    return Err(AdminError::InvalidPartitions(format!(
                        "{partitions} partitions is more than this broker allows (100000)"
                    )));
                }
                let rf = match t.replication_factor {
                    -1 => self.config.default_replication_factor,
                    n => n,
                };
                (self.place(0, partitions, rf)?, rf)
            }
        };
        let partitions = assignment.len() as i32;
        topic_config::resolve_log_config(&self.effective_config(), &t.configs)
            .map_err(AdminError::InvalidConfig)?;
        let mut meta = self.meta.lock();
        if self.topics.read().contains_key(&t.name) {
            return Err(AdminError::TopicExists(t.name));
        }
        let colliding = self
            .topics
            .read()
            .keys()
            .find(|k| k.replace('.', "_") == t.name.replace('.', "_"))
            .cloned();
        if let Some(other) = colliding {
            return Err(AdminError::InvalidTopic(format!(
                "topic {} collides with existing topic {other} ('.' and '_' are the same in metric names)",
                t.name
            )));
        }
        let id = uuid::Uuid::new_v4();
        if validate_only {
            return Ok(Arc::new(Topic::new(
                &t.name,
                id,
                replication_factor,
                t.configs,
            )));
        }
        let mut records = vec![MetadataRecord::Topic {
            name: t.name.clone(),
            id,
            partitions,
            replication_factor,
            configs: t.configs.clone(),
        }];
        records.extend(initial_states(&t.name, id, 0, &assignment));
        if meta.log.append(&records)?.ignored > 0 {
            // Another broker created the name first; its topic arrives by reconciliation.
            return Err(AdminError::TopicExists(t.name));
        }
        let topic = self.open_topic(
            &t.name,
            id,
            partitions,
            replication_factor,
            t.configs,
            &states_of(&records),
        )?;
        self.topics.write().insert(t.name.clone(), topic.clone());
        tracing::info!(topic = %t.name, partitions, "created topic");
        Ok(topic)
    }

    /// Deletes a topic and its data (blocking).
    pub fn delete_topic(&self, name: &str) -> Result<uuid::Uuid, AdminError> {
        if !self.config.delete_topic_enable {
            return Err(AdminError::DeletionDisabled);
        }
        let mut meta = self.meta.lock();
        let topic = self
            .topic(name)
            .ok_or_else(|| AdminError::UnknownTopic(name.to_string()))?;
        if topic.is_internal() {
            return Err(AdminError::InvalidTopic(format!(
                "internal topic {name} cannot be deleted"
            )));
        }
        meta.log.append(&[MetadataRecord::RemoveTopic {
            name: name.to_string(),
        }])?;
        self.remove_locally(&topic);
        Ok(topic.id)
    }

    /// Drops a deleted topic from the image and removes its data (blocking).
    fn remove_locally(&self, topic: &Topic) {
        let mut topics = self.topics.write();
        if topics.get(&topic.name).is_some_and(|t| t.id == topic.id) {
            topics.remove(&topic.name);
        }
        drop(topics);
        for p in topic.partitions.read().iter() {
            local_logs::delete_log(p);
        }
        tracing::info!(topic = %topic.name, "deleted topic");
    }

    /// Grows a topic to `count` partitions (blocking).
    pub fn create_partitions(
        &self,
        name: &str,
        count: i32,
        assignment: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> Result<(), AdminError> {
        let mut meta = self.meta.lock();
        let topic = self
            .topic(name)
            .ok_or_else(|| AdminError::UnknownTopic(name.to_string()))?;
        let current = topic.partition_count();
        if count <= current {
            return Err(AdminError::InvalidPartitions(format!(
                "topic {name} currently has {current} partitions, {count} would not be an increase"
            )));
        }
        if count > 100_000 {
            return Err(AdminError::InvalidPartitions(format!(
                "{count} partitions is more than this broker allows (100000)"
            )));
        }
        // New partitions keep the topic's replication factor.
        let rf = topic
            .partition(0)
            .map(|p| p.state().replicas.len() as i16)
            .unwrap_or(topic.replication_factor);
        let assignment = match assignment {
            Some(given) => {
                // Kafka's rules: one entry per new partition, each naming the topic's
                // replication factor of distinct, registered brokers.
                let added = (count - current) as usize;
                if given.len() != added {
                    return Err(AdminError::InvalidReplicaAssignment(format!(
                        "increasing the number of partitions by {added} but {} assignments \
                         provided",
                        given.len()
                    )));
                }
                let given_rf = self
                    .check_assignment(&given)
                    .map_err(|e| AdminError::InvalidReplicaAssignment(e.to_string()))?;
                if given_rf != rf {
                    return Err(AdminError::InvalidReplicaAssignment(format!(
                        "inconsistent replication factor: the topic's is {rf}, the assignment \
                         gives {given_rf}"
                    )));
                }
                given
            }
            None => self.place(current, count - current, rf)?,
        };
        if validate_only {
            return Ok(());
        }
        let mut records = vec![MetadataRecord::Partitions {
            name: name.to_string(),
            count,
        }];
        records.extend(initial_states(name, topic.id, current, &assignment));
        if meta.log.append(&records)?.ignored > 0 {
            return Err(AdminError::InvalidPartitions(format!(
                "topic {name} was grown or changed by another request at the same time; \
                 describe it and retry"
            )));
        }
        self.add_partitions(&topic, count, &states_of(&records))
    }

    /// Replaces a topic's config overrides (blocking).
    pub fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), AdminError> {
        let mut meta = self.meta.lock();
        let topic = self
            .topic(name)
            .ok_or_else(|| AdminError::UnknownTopic(name.to_string()))?;
        let log_config = topic_config::resolve_log_config(&self.effective_config(), &configs)
            .map_err(AdminError::InvalidConfig)?;
        if validate_only {
            return Ok(());
        }
        meta.log.append(&[MetadataRecord::Configs {
            name: name.to_string(),
            configs: configs.clone(),
        }])?;
        topic.reconfigure(configs, &log_config);
        Ok(())
    }

    /// Commits metadata records made elsewhere (ISR changes) through the metadata store
    /// (blocking); they take effect locally when the committed image is reconciled.
    pub fn propose(&self, records: &[MetadataRecord]) -> Result<metadata::Committed, AdminError> {
        Ok(self.meta.lock().log.append(records)?)
    }

    /// Hands out a new producer id (blocking: a new block is taken through the metadata log
    /// when this node's is used up).
    pub fn allocate_producer_id(&self) -> Result<i64, AdminError> {
        let mut meta = self.meta.lock();
        if meta.next_producer_id >= meta.producer_id_block_end {
            let broker = self.config.node_id;
            let start = if meta.log.image().is_some() {
                // The quorum hands out blocks in log order, so brokers asking at once never
                // share one; ours is read back from the committed image.
                meta.log
                    .append(&[MetadataRecord::AllocateProducerIds { broker }])?;
                meta.log
                    .image()
                    .and_then(|i| i.producer_blocks.get(&broker).copied())
                    .ok_or_else(|| {
                        AdminError::Storage("the producer-id block was not recorded".into())
                    })?
            } else {
                let start = meta.next_producer_id;
                meta.log.append(&[MetadataRecord::ProducerIds {
                    next: start + PRODUCER_ID_BLOCK,
                }])?;
                start
            };
            meta.next_producer_id = start;
            meta.producer_id_block_end = start + PRODUCER_ID_BLOCK;
        }
        let id = meta.next_producer_id;
        meta.next_producer_id += 1;
        Ok(id)
    }

    /// Appends records to a partition this node leads (blocking) and wakes waiting fetches.
    /// Returns the outcome and the leader epoch the records were appended in.
    pub fn append(&self, p: &Partition, records: Bytes) -> Result<(AppendOutcome, i32), LogError> {
        let flush_every = self.effective_config().log_flush_interval_messages;
        p.append(records, now_ms(), flush_every)
    }

    /// Wakes long-polling fetches: a partition's log grew.
    pub fn notify_appended(&self) {
        self.data_arrived.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that changes whenever any partition is appended to.
    pub fn subscribe_appends(&self) -> tokio::sync::watch::Receiver<u64> {
        self.data_arrived.subscribe()
    }

    /// Applies retention and compaction to every partition (blocking).
    pub fn maintain_logs(&self) {
        let now = now_ms();
        for t in self.topics() {
            for p in t.partitions.read().iter() {
                let Some(mut log) = p.log() else { continue };
                match log.maintain(now) {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(topic = %p.topic, partition = p.index, segments = n, "log maintenance")
                    }
                    Err(e) => {
                        tracing::warn!(topic = %p.topic, partition = p.index, error = %error_chain(&e), "log maintenance failed")
                    }
                }
                p.refresh(&log);
            }
        }
    }

    /// fsyncs every partition with unflushed messages (blocking).
    pub fn flush_all(&self) {
        for t in self.topics() {
            for p in t.partitions.read().iter() {
                if let Err(e) = p.flush_unflushed() {
                    tracing::warn!(topic = %p.topic, partition = p.index, error = %error_chain(&e), "flush failed");
                }
            }
        }
    }

    /// Number of partitions on this node.
    pub fn partition_count(&self) -> usize {
        self.topics
            .read()
            .values()
            .map(|t| t.partitions.read().len())
            .sum()
    }
}

/// NewPartition records for new partitions of topic `id`, led by their first replica.
fn initial_states(
    topic: &str,
    id: uuid::Uuid,
    first: i32,
    assignment: &[Vec<i32>],
) -> Vec<MetadataRecord> {
    assignment
        .iter()
        .enumerate()
        .map(|(i, replicas)| MetadataRecord::NewPartition {
            topic: topic.to_string(),
            topic_id: id,
            partition: first + i as i32,
            replicas: replicas.clone(),
        })
        .collect()
}

/// The image entries of freshly written NewPartition records.
fn states_of(records: &[MetadataRecord]) -> BTreeMap<i32, PartitionImage> {
    records
        .iter()
        .filter_map(|r| match r {
            MetadataRecord::NewPartition {
                partition,
                replicas,
                ..
            } => Some((*partition, PartitionImage::new(replicas.clone()))),
            _ => None,
        })
        .collect()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
