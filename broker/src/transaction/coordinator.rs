//! The transaction coordinator (KIP-98): one per `__transaction_state` partition, on the
//! broker leading it. It hands transactional producers their id and epoch (fencing older
//! incarnations), records which partitions each transaction touches, and ends transactions by
//! writing commit or abort markers into those partitions.
//!
//! Every state change is written to `__transaction_state` and replicated (acks=all) before
//! it is applied or answered, so a new coordinator reloads it after a failover and finishes
//! what was prepared. A transaction moves Empty → Ongoing → PrepareCommit/PrepareAbort (the
//! decision, durable) → CompleteCommit/CompleteAbort (every marker written). While a write or
//! the markers of a transactional id are in flight, other requests for it answer
//! CONCURRENT_TRANSACTIONS, which clients retry.
//!
//! Both transaction protocols are served, chosen per request as Kafka chooses them. Clients
//! of `transaction.version` 2 (KIP-890 part 2: EndTxn v5, Produce v12, TxnOffsetCommit v5) add
//! partitions implicitly, by producing to them, and every EndTxn bumps their epoch (a new
//! producer id once the epoch is exhausted), so a late write of an ended transaction is
//! fenced. Older clients add partitions with AddPartitionsToTxn, and their epoch moves only with
//! InitProducerId, fencing and the coordinator's timeout aborts.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use parking_lot::Mutex;

use super::log::{self as txn_log, TxnLogValue, TxnState};
use crate::cluster::{now_ms, AdminError, Cluster, Commit, Partition};
use crate::cluster::{CONSUMER_OFFSETS, TRANSACTION_STATE};
use crate::group::GroupCoordinator;
use crate::log::control::Marker;

/// How long a write to `__transaction_state` or a marker may wait for the ISR.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often, and how far apart, a `transaction.version` 2 produce tries to add its partition
/// while the transactional id is busy, before it answers CONCURRENT_TRANSACTIONS.
const ADD_RETRIES: u32 = 10;
const ADD_RETRY: Duration = Duration::from_millis(10);
/// Pause between rounds of markers that could not all be written yet.
const MARKER_RETRY: Duration = Duration::from_millis(100);

/// A transactional id's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    /// Its producer id.
    pub producer_id: i64,
    /// The producer id before the last change of id (epoch exhausted), or -1.
    pub previous_producer_id: i64,
    /// The producer id an ending transaction moves to (its epoch is exhausted), or -1.
    pub next_producer_id: i64,
    /// The transaction protocol its client uses: 0, or 2 (KIP-890 part 2).
    pub client_version: i16,
    /// The current epoch.
    pub producer_epoch: i16,
    /// `transaction.timeout.ms` the producer asked for.
    pub timeout_ms: i32,
    /// Where its transaction is.
    pub state: TxnState,
    /// The partitions of the current (or completing) transaction.
    pub partitions: BTreeSet<(String, i32)>,
    /// When the current transaction started (-1: none).
    pub start_ms: i64,
    /// When this state was written.
    pub last_update_ms: i64,
}

impl TxnMetadata {
    fn value(&self) -> TxnLogValue {
        let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (t, p) in &self.partitions {
            topics.entry(t).or_default().push(*p);
        }
        TxnLogValue {
            producer_id: self.producer_id,
            previous_producer_id: self.previous_producer_id,
            next_producer_id: self.next_producer_id,
            producer_epoch: self.producer_epoch,
            timeout_ms: self.timeout_ms,
            state: self.state,
            partitions: topics
                .into_iter()
                .map(|(t, ps)| (t.to_string(), ps))
                .collect(),
            last_update_ms: self.last_update_ms,
            start_ms: self.start_ms,
            client_transaction_version: self.client_version,
        }
    }

    fn from_value(v: TxnLogValue) -> TxnMetadata {
        TxnMetadata {
            producer_id: v.producer_id,
            previous_producer_id: v.previous_producer_id,
            next_producer_id: v.next_producer_id,
            client_version: v.client_transaction_version,
            producer_epoch: v.producer_epoch,
            timeout_ms: v.timeout_ms,
            state: v.state,
            partitions: v
                .partitions
                .into_iter()
                .flat_map(|(t, ps)| ps.into_iter().map(move |p| (t.clone(), p)))
                .collect(),
            start_ms: v.start_ms,
            last_update_ms: v.last_update_ms,
        }
    }

    /// Checks a request's producer id and epoch against this state.
    fn check_producer(&self, producer_id: i64, epoch: i16) -> Result<(), ResponseError> {
        if producer_id != self.producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if epoch != self.producer_epoch {
            return Err(ResponseError::ProducerFenced);
        }
        Ok(())
    }

    /// The producer id and epoch its client goes on with once the transaction ends.
    fn identity_after(&self) -> (i64, i16) {
        if self.next_producer_id >= 0 {
            (self.next_producer_id, 0)
        } else {
            (self.producer_id, self.producer_epoch)
        }
    }

    /// Whether (`producer_id`, `epoch`) is what a `transaction.version` 2 client had before
    /// the EndTxn that bumped it: a retry of that EndTxn.
    fn bumped_from(&self, producer_id: i64, epoch: i16) -> bool {
        let same_id =
            producer_id == self.producer_id && epoch.checked_add(1) == Some(self.producer_epoch);
        let rotated = producer_id == self.previous_producer_id
            && self.producer_epoch == 0
            && epoch == i16::MAX - 1;
        same_id || rotated
    }
}

/// What EndTxn does with a transaction.
#[derive(Debug)]
enum Ending {
    /// It already ended as asked (a retried EndTxn): the producer's id and epoch.
    Already((i64, i16)),
    /// It moves to this prepared state.
    Prepare(TxnMetadata),
}

/// One transactional id as the coordinator holds it.
#[derive(Debug)]
struct Entry {
    /// Its last written state.
    meta: TxnMetadata,
    /// A write of its state, or its markers, is in flight.
    busy: bool,
}

/// The coordinators of the `__transaction_state` partitions this node leads.
#[derive(Debug)]
pub struct TransactionCoordinator {
    cluster: Arc<Cluster>,
    groups: Arc<GroupCoordinator>,
    /// By transactional id.
    txns: Mutex<HashMap<String, Entry>>,
    /// The `__transaction_state` partitions loaded, with the coordinator epoch (the
    /// partition's leader epoch when loaded) that stamps their markers.
    led: Mutex<BTreeMap<i32, i32>>,
}

/// A transactional id's state as DescribeTransactions and ListTransactions report it.
pub type Described = (String, TxnMetadata);

impl TransactionCoordinator {
    /// A coordinator over `cluster`; state loads as partitions of `__transaction_state` come
    /// to be led here ([`Self::load`]).
    pub fn new(cluster: Arc<Cluster>, groups: Arc<GroupCoordinator>) -> TransactionCoordinator {
        TransactionCoordinator {
            cluster,
            groups,
            txns: Mutex::new(HashMap::new()),
            led: Mutex::new(BTreeMap::new()),
        }
    }

    /// Ensures `__transaction_state` exists (blocking); returns its partition count.
    pub fn ensure_state_topic(self: &Arc<Self>) -> Result<i32, AdminError> {
        let cfg = &self.cluster.config;
        let (partitions, created) =
            self.cluster
                .ensure_internal_topic(&crate::cluster::internal::InternalTopic {
                    name: TRANSACTION_STATE,
                    partitions: cfg.transaction_state_num_partitions,
                    replication_factor: cfg.transaction_state_replication_factor,
                    min_isr: cfg.transaction_state_min_isr,
                    segment_bytes: cfg.transaction_state_segment_bytes,
                })?;
        if created {
            if let Err(e) = self.load() {
                tracing::warn!(error = %e, "loading the new transaction state partitions failed");
            }
        }
        Ok(partitions)
    }

    /// The `__transaction_state` partition of `transactional_id`, if the topic exists.
    fn state_partition(&self, transactional_id: &str) -> Option<Arc<Partition>> {
        let topic = self.cluster.topic(TRANSACTION_STATE)?;
        topic.partition(txn_log::partition_for(
            transactional_id,
            topic.partition_count(),
        ))
    }

    /// The broker coordinating `transactional_id` (leading its state partition).
    pub fn coordinator_for(&self, transactional_id: &str) -> Option<i32> {
        Some(self.state_partition(transactional_id)?.state().leader)
    }

    /// NOT_COORDINATOR unless this node leads the transactional id's state partition, and
    /// COORDINATOR_LOAD_IN_PROGRESS until it has loaded it. Returns the coordinator epoch.
    fn check_coordinator(&self, transactional_id: &str) -> Result<i32, ResponseError> {
        let p = self
            .state_partition(transactional_id)
            .ok_or(ResponseError::CoordinatorNotAvailable)?;
        if !p.is_led_by(self.cluster.config.node_id) {
            return Err(ResponseError::NotCoordinator);
        }
        self.led
            .lock()
            .get(&p.index)
            .copied()
            .ok_or(ResponseError::CoordinatorLoadInProgress)
    }

    /// Follows the leadership of `__transaction_state` (blocking): loads the transactional
    /// ids of partitions this node has come to lead and finishes their prepared transactions;
    /// drops those of partitions it no longer leads. Returns the ids loaded.
    pub fn load(self: &Arc<Self>) -> Result<usize, crate::log::LogError> {
        let mut led = self.led.lock();
        let Some(change) = self.cluster.leadership_change(TRANSACTION_STATE, &led) else {
            return Ok(0);
        };
        self.txns
            .lock()
            .retain(|id, _| change.keeps(txn_log::partition_for(id, change.partitions)));
        let mut loaded = 0;
        let mut to_finish = Vec::new();
        for p in &change.gained {
            let states = read_states(p)?;
            loaded += states.len();
            let mut txns = self.txns.lock();
            for (id, meta) in states {
                if matches!(meta.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
                    to_finish.push((id.clone(), meta.clone()));
                }
                txns.insert(id, Entry { meta, busy: false });
            }
        }
        *led = change.led_now;
        drop(led);
        // Decisions written before a failover: their markers are (re)sent.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            for (id, meta) in to_finish {
                if let Some(e) = self.txns.lock().get_mut(&id) {
                    e.busy = true;
                }
                let me = Arc::clone(self);
                runtime.spawn(async move { me.complete(id, meta).await });
            }
        }
        tracing::debug!(loaded, "transaction state partitions followed");
        Ok(loaded)
    }

    /// Marks the id busy when it is free and returns its state (`None`: unknown id).
    fn claim(&self, transactional_id: &str) -> Result<Option<TxnMetadata>, ResponseError> {
        let mut txns = self.txns.lock();
        match txns.get_mut(transactional_id) {
            None => Ok(None),
            Some(e) if e.busy => Err(ResponseError::ConcurrentTransactions),
            Some(e) => {
                e.busy = true;
                Ok(Some(e.meta.clone()))
            }
        }
    }

    /// Frees a claimed id, adopting `meta` as its state when given.
    fn release(&self, transactional_id: &str, meta: Option<TxnMetadata>) {
        let mut txns = self.txns.lock();
        match (txns.get_mut(transactional_id), meta) {
            (Some(e), Some(meta)) => {
                e.meta = meta;
                e.busy = false;
            }
            (Some(e), None) => e.busy = false,
            (None, Some(meta)) => {
                txns.insert(transactional_id.to_string(), Entry { meta, busy: false });
            }
            (None, None) => {}
        }
    }

    /// Writes a transactional id's new state to its partition and waits until the ISR has
    /// it; NOT_COORDINATOR when the leadership moved meanwhile.
    async fn persist(
        &self,
        transactional_id: &str,
        meta: &TxnMetadata,
    ) -> Result<(), ResponseError> {
        let p = self
            .state_partition(transactional_id)
            .ok_or(ResponseError::CoordinatorNotAvailable)?;
        let record = vec![(
            txn_log::encode_key(transactional_id),
            Some(txn_log::encode_value(&meta.value())),
        )];
        let min_isr = self.cluster.config.transaction_state_min_isr;
        crate::cluster::internal::persist(&self.cluster, &p, record, min_isr).await
    }

    /// InitProducerId with a transactional id: a new producer id (first use) or the next epoch
    /// of the current one, fencing every older incarnation; a transaction left open by one is
    /// aborted first. `expected` is the (id, epoch) a producer re-initialising after an error
    /// passes (KIP-360); any other than the current one is fenced.
    pub async fn init_producer_id(
        self: &Arc<Self>,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), ResponseError> {
        if timeout_ms <= 0 || timeout_ms > self.cluster.config.transaction_max_timeout_ms {
            return Err(ResponseError::InvalidTransactionTimeout);
        }
        self.check_coordinator(transactional_id)?;
        let Some(current) = self.claim(transactional_id)? else {
            return self.first_init(transactional_id, timeout_ms).await;
        };
        if let Some((id, epoch)) = expected {
            let retried = id == current.producer_id && epoch == current.producer_epoch;
            let previous = id == current.previous_producer_id;
            if !retried && !previous {
                self.release(transactional_id, None);
                return Err(ResponseError::ProducerFenced);
            }
        }
        let current = match current.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                self.release(transactional_id, None);
                return Err(ResponseError::ConcurrentTransactions);
            }
            TxnState::Ongoing => match self.fence_and_abort(transactional_id, current).await {
                Ok(aborted) => aborted,
                Err(e) => {
                    self.release_or_complete(transactional_id);
                    return Err(e);
                }
            },
            _ => current,
        };
        let mut next = current.clone();
        if current.producer_epoch >= i16::MAX - 1 {
            next.previous_producer_id = current.producer_id;
            next.producer_id = match self.new_producer_id().await {
                Ok(id) => id,
                Err(e) => {
                    self.release(transactional_id, Some(current));
                    return Err(e);
                }
            };
            next.producer_epoch = 0;
        } else {
            next.producer_epoch += 1;
        }
        next.timeout_ms = timeout_ms;
        next.state = TxnState::Empty;
        next.partitions.clear();
        next.start_ms = -1;
        next.last_update_ms = now_ms();
        match self.persist(transactional_id, &next).await {
            Ok(()) => {
                let answer = (next.producer_id, next.producer_epoch);
                self.release(transactional_id, Some(next));
                Ok(answer)
            }
            Err(e) => {
                self.release(transactional_id, Some(current));
                Err(e)
            }
        }
    }

    async fn new_producer_id(&self) -> Result<i64, ResponseError> {
        let cluster = Arc::clone(&self.cluster);
        match tokio::task::spawn_blocking(move || cluster.allocate_producer_id()).await {
            Ok(Ok(id)) => Ok(id),
            _ => Err(ResponseError::CoordinatorNotAvailable),
        }
    }

    /// The first InitProducerId of a transactional id.
    async fn first_init(
        &self,
        transactional_id: &str,
        timeout_ms: i32,
    ) -> Result<(i64, i16), ResponseError> {
        {
            // Claimed as busy while its first state is written.
            let mut txns = self.txns.lock();
            if txns.contains_key(transactional_id) {
                return Err(ResponseError::ConcurrentTransactions);
            }
            let placeholder = TxnMetadata {
                producer_id: -1,
                previous_producer_id: -1,
                next_producer_id: -1,
                client_version: 0,
                producer_epoch: -1,
                timeout_ms,
                state: TxnState::Empty,
                partitions: BTreeSet::new(),
                start_ms: -1,
                last_update_ms: -1,
            };
            txns.insert(
                transactional_id.to_string(),
                Entry {
                    meta: placeholder,
                    busy: true,
                },
            );
        }
        let forget = || {
            self.txns.lock().remove(transactional_id);
        };
        let producer_id = match self.new_producer_id().await {
            Ok(id) => id,
            Err(e) => {
                forget();
                return Err(e);
            }
        };
        let meta = TxnMetadata {
            producer_id,
            previous_producer_id: -1,
            next_producer_id: -1,
            client_version: 0,
            producer_epoch: 0,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now_ms(),
        };
        match self.persist(transactional_id, &meta).await {
            Ok(()) => {
                self.release(transactional_id, Some(meta));
                Ok((producer_id, 0))
            }
            Err(e) => {
                forget();
                Err(e)
            }
        }
    }

    /// Aborts the open transaction of a claimed id under a bumped epoch, fencing the producer
    /// that opened it (a new incarnation, or the coordinator's timeout). Returns the state
    /// once the abort is complete; the id stays claimed.
    async fn fence_and_abort(
        &self,
        transactional_id: &str,
        current: TxnMetadata,
    ) -> Result<TxnMetadata, ResponseError> {
        let mut prepared = current;
        prepared.producer_epoch = prepared.producer_epoch.saturating_add(1);
        prepared.state = TxnState::PrepareAbort;
        prepared.last_update_ms = now_ms();
        self.persist(transactional_id, &prepared).await?;
        self.release_keep_busy(transactional_id, prepared.clone());
        self.finish(transactional_id, prepared).await
    }

    /// Frees a claimed id after a failure; one left with a durable decision (prepared) keeps
    /// its claim while the decision's markers are written in the background.
    fn release_or_complete(self: &Arc<Self>, transactional_id: &str) {
        let prepared = self.txns.lock().get(transactional_id).and_then(|e| {
            matches!(
                e.meta.state,
                TxnState::PrepareCommit | TxnState::PrepareAbort
            )
            .then(|| e.meta.clone())
        });
        match prepared {
            Some(prepared) => {
                let me = Arc::clone(self);
                let id = transactional_id.to_string();
                tokio::spawn(async move { me.complete(id, prepared).await });
            }
            None => self.release(transactional_id, None),
        }
    }

    /// Adopts `meta` for a claimed id without freeing it.
    fn release_keep_busy(&self, transactional_id: &str, meta: TxnMetadata) {
        if let Some(e) = self.txns.lock().get_mut(transactional_id) {
            e.meta = meta;
        }
    }

    /// Writes the markers of a prepared transaction and then its completed state. The id
    /// stays claimed; returns the completed state.
    async fn finish(
        &self,
        transactional_id: &str,
        prepared: TxnMetadata,
    ) -> Result<TxnMetadata, ResponseError> {
        let (marker, done) = match prepared.state {
            TxnState::PrepareCommit => (Marker::Commit, TxnState::CompleteCommit),
            _ => (Marker::Abort, TxnState::CompleteAbort),
        };
        let coordinator_epoch = self.check_coordinator(transactional_id)?;
        self.write_markers(
            prepared.producer_id,
            prepared.producer_epoch,
            marker,
            coordinator_epoch,
            prepared.partitions.clone(),
        )
        .await?;
        let mut complete = prepared;
        complete.state = done;
        complete.partitions.clear();
        if complete.next_producer_id >= 0 {
            // The epoch was exhausted: the producer goes on under its next id.
            complete.previous_producer_id = complete.producer_id;
            complete.producer_id = complete.next_producer_id;
            complete.producer_epoch = 0;
            complete.next_producer_id = -1;
        }
        complete.last_update_ms = now_ms();
        self.persist(transactional_id, &complete).await?;
        self.release_keep_busy(transactional_id, complete.clone());
        Ok(complete)
    }

    /// Finishes a prepared transaction in the background (EndTxn's second half, or one found
    /// prepared on load), freeing the id when done; retried while this node coordinates.
    async fn complete(self: Arc<Self>, transactional_id: String, prepared: TxnMetadata) {
        loop {
            match self.finish(&transactional_id, prepared.clone()).await {
                Ok(complete) => {
                    self.release(&transactional_id, Some(complete));
                    return;
                }
                Err(ResponseError::NotCoordinator | ResponseError::CoordinatorLoadInProgress) => {
                    // The new coordinator finishes it from the log.
                    self.release(&transactional_id, None);
                    return;
                }
                Err(e) => {
                    tracing::debug!(transactional_id, error = ?e, "completing a transaction failed; retrying");
                    tokio::time::sleep(MARKER_RETRY).await;
                }
            }
        }
    }

    /// Writes `marker` for `producer_id` into every partition, locally or through the
    /// partition's leader, until each has it (a deleted partition needs none).
    async fn write_markers(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        marker: Marker,
        coordinator_epoch: i32,
        mut partitions: BTreeSet<(String, i32)>,
    ) -> Result<(), ResponseError> {
        let me = self.cluster.config.node_id;
        while !partitions.is_empty() {
            let mut by_leader: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
            for (topic, index) in std::mem::take(&mut partitions) {
                let Some(p) = self.cluster.partition(&topic, index) else {
                    continue;
                };
                by_leader
                    .entry(p.state().leader)
                    .or_default()
                    .push((topic, index));
            }
            for (leader, parts) in by_leader {
                let failed = if leader == me {
                    self.write_local_markers(
                        producer_id,
                        producer_epoch,
                        marker,
                        coordinator_epoch,
                        parts,
                    )
                    .await
                } else {
                    super::markers::send(
                        &self.cluster,
                        leader,
                        producer_id,
                        producer_epoch,
                        marker,
                        coordinator_epoch,
                        parts,
                    )
                    .await
                };
                partitions.extend(failed);
            }
            if !partitions.is_empty() {
                self.check_coordinator_still()?;
                tokio::time::sleep(MARKER_RETRY).await;
            }
        }
        Ok(())
    }

    /// NOT_COORDINATOR once this node no longer leads any state partition it loaded.
    fn check_coordinator_still(&self) -> Result<(), ResponseError> {
        let me = self.cluster.config.node_id;
        let Some(topic) = self.cluster.topic(TRANSACTION_STATE) else {
            return Err(ResponseError::NotCoordinator);
        };
        let led = self.led.lock();
        if led
            .keys()
            .any(|&i| topic.partition(i).is_some_and(|p| p.is_led_by(me)))
        {
            Ok(())
        } else {
            Err(ResponseError::NotCoordinator)
        }
    }

    /// Writes markers into partitions this node leads; returns those that failed.
    async fn write_local_markers(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        marker: Marker,
        coordinator_epoch: i32,
        parts: Vec<(String, i32)>,
    ) -> Vec<(String, i32)> {
        let mut failed = Vec::new();
        for (topic, index) in parts {
            let written = write_marker(
                &self.cluster,
                &self.groups,
                &topic,
                index,
                producer_id,
                producer_epoch,
                marker,
                coordinator_epoch,
            )
            .await;
            if let Err(e) = written {
                tracing::debug!(topic, partition = index, error = ?e, "transaction marker not written yet");
                failed.push((topic, index));
            }
        }
        failed
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn's offsets partition): the partitions join the
    /// producer's transaction, which starts with the first of them.
    pub async fn add_partitions(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<(), ResponseError> {
        self.check_coordinator(transactional_id)?;
        let current = self
            .claim(transactional_id)?
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        let outcome = self
            .add_claimed(
                transactional_id,
                &current,
                producer_id,
                producer_epoch,
                partitions,
            )
            .await;
        match outcome {
            Ok(next) => {
                self.release(transactional_id, next);
                Ok(())
            }
            Err(e) => {
                self.release(transactional_id, None);
                Err(e)
            }
        }
    }

    async fn add_claimed(
        &self,
        transactional_id: &str,
        current: &TxnMetadata,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<Option<TxnMetadata>, ResponseError> {
        current.check_producer(producer_id, producer_epoch)?;
        if matches!(
            current.state,
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence
        ) {
            return Err(ResponseError::ConcurrentTransactions);
        }
        if current.state == TxnState::Dead {
            return Err(ResponseError::InvalidTxnState);
        }
        let ongoing = current.state == TxnState::Ongoing;
        if ongoing && partitions.iter().all(|p| current.partitions.contains(p)) {
            return Ok(None);
        }
        let mut next = current.clone();
        if !ongoing {
            next.partitions.clear();
            next.start_ms = now_ms();
        }
        next.state = TxnState::Ongoing;
        next.partitions.extend(partitions.iter().cloned());
        next.last_update_ms = now_ms();
        self.persist(transactional_id, &next).await?;
        Ok(Some(next))
    }

    /// KIP-890 verification: whether `partition` is in the producer's open transaction.
    pub fn verify(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partition: &(String, i32),
    ) -> Result<(), ResponseError> {
        self.check_coordinator(transactional_id)?;
        let txns = self.txns.lock();
        let e = txns
            .get(transactional_id)
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        e.meta.check_producer(producer_id, producer_epoch)?;
        if e.meta.state == TxnState::Ongoing && e.meta.partitions.contains(partition) {
            Ok(())
        } else {
            Err(ResponseError::InvalidTxnState)
        }
    }

    /// KIP-890 verification for a transactional produce (or offset commit): for each of
    /// `parts`, `None` when it is in the producer's open transaction, else why not, asking the
    /// coordinator on another broker when the transactional id is not coordinated here. With
    /// `add` (`transaction.version` 2) the partitions join the transaction instead, starting
    /// it if none is open.
    pub async fn verify_or_add(
        &self,
        transactional_id: &str,
        (producer_id, producer_epoch): (i64, i16),
        parts: &[(String, i32)],
        add: bool,
    ) -> Vec<Option<ResponseError>> {
        match self.coordinator_for(transactional_id) {
            Some(node) if node == self.cluster.config.node_id && add => {
                // A producer's concurrent requests (or the previous transaction's markers)
                // hold the id for moments: wait briefly rather than send the producer away.
                let mut tries = 0;
                let e = loop {
                    let added = self
                        .add_partitions(transactional_id, producer_id, producer_epoch, parts)
                        .await;
                    match added {
                        Err(ResponseError::ConcurrentTransactions) if tries < ADD_RETRIES => {
                            tries += 1;
                            tokio::time::sleep(ADD_RETRY).await;
                        }
                        other => break other.err(),
                    }
                };
                vec![e; parts.len()]
            }
            Some(node) if node == self.cluster.config.node_id => parts
                .iter()
                .map(|p| {
                    self.verify(transactional_id, producer_id, producer_epoch, p)
                        .err()
                })
                .collect(),
            Some(node) if node >= 0 => {
                super::markers::verify_remote(
                    &self.cluster,
                    node,
                    transactional_id,
                    (producer_id, producer_epoch),
                    parts,
                    !add,
                )
                .await
            }
            _ => vec![Some(ResponseError::CoordinatorNotAvailable); parts.len()],
        }
    }

    /// EndTxn: commits or aborts the producer's transaction. Answers once the markers are
    /// written, or, should that take longer than `wait`, once the decision is durable (the
    /// markers then follow in the background). `tv2` (EndTxn v5, `transaction.version` 2)
    /// bumps the epoch, the markers carrying the new one; answers the producer id and epoch
    /// the client goes on with.
    pub async fn end_txn(
        self: &Arc<Self>,
        transactional_id: &str,
        (producer_id, producer_epoch): (i64, i16),
        commit: bool,
        tv2: bool,
        wait: Duration,
    ) -> Result<(i64, i16), ResponseError> {
        self.check_coordinator(transactional_id)?;
        let current = self
            .claim(transactional_id)?
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        let mut prepared =
            match end_transition(&current, (producer_id, producer_epoch), commit, tv2) {
                Ok(Ending::Prepare(prepared)) => prepared,
                Ok(Ending::Already(identity)) => {
                    self.release(transactional_id, None);
                    return Ok(identity);
                }
                Err(e) => {
                    self.release(transactional_id, None);
                    return Err(e);
                }
            };
        if tv2 && prepared.producer_epoch == i16::MAX {
            match self.new_producer_id().await {
                Ok(id) => prepared.next_producer_id = id,
                Err(e) => {
                    self.release(transactional_id, None);
                    return Err(e);
                }
            }
        }
        if let Err(e) = self.persist(transactional_id, &prepared).await {
            self.release(transactional_id, None);
            return Err(e);
        }
        let identity = prepared.identity_after();
        self.release_keep_busy(transactional_id, prepared.clone());
        let me = Arc::clone(self);
        let id = transactional_id.to_string();
        let completing = tokio::spawn(async move { me.complete(id, prepared).await });
        let _ = tokio::time::timeout(wait, completing).await;
        Ok(identity)
    }

    /// Aborts transactions open longer than their timeout, fencing their producers, as
    /// Kafka's coordinator does every
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
    pub async fn abort_timed_out(self: &Arc<Self>) {
        let now = now_ms();
        let expired: Vec<String> = self
            .txns
            .lock()
            .iter()
            .filter(|(_, e)| {
                !e.busy
                    && e.meta.state == TxnState::Ongoing
                    && e.meta.start_ms + i64::from(e.meta.timeout_ms) < now
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            let Ok(Some(current)) = self.claim(&id) else {
                continue;
            };
            if current.state != TxnState::Ongoing {
                self.release(&id, None);
                continue;
            }
            tracing::info!(transactional_id = %id, producer_id = current.producer_id, "aborting a transaction open past its timeout");
            match self.fence_and_abort(&id, current).await {
                Ok(done) => self.release(&id, Some(done)),
                Err(e) => {
                    tracing::debug!(transactional_id = %id, error = ?e, "timed-out transaction not aborted yet");
                    self.release_or_complete(&id);
                }
            }
        }
    }

    /// The state of transactional ids this node coordinates: the given ones, or all.
    pub fn describe(&self, ids: Option<&[String]>) -> Vec<Described> {
        let txns = self.txns.lock();
        match ids {
            Some(ids) => ids
                .iter()
                .filter_map(|id| txns.get(id).map(|e| (id.clone(), e.meta.clone())))
                .collect(),
            None => txns
                .iter()
                .filter(|(_, e)| e.meta.producer_id >= 0)
                .map(|(id, e)| (id.clone(), e.meta.clone()))
                .collect(),
        }
    }

    /// One transactional id's state: NOT_COORDINATOR (or COORDINATOR_LOAD_IN_PROGRESS) when
    /// it is not coordinated here, TRANSACTIONAL_ID_NOT_FOUND when it is unknown.
    pub fn lookup(&self, transactional_id: &str) -> Result<TxnMetadata, ResponseError> {
        self.check_coordinator(transactional_id)?;
        self.txns
            .lock()
            .get(transactional_id)
            .filter(|e| e.meta.producer_id >= 0)
            .map(|e| e.meta.clone())
            .ok_or(ResponseError::TransactionalIdNotFound)
    }

    /// Whether this node coordinates `transactional_id` and has loaded it.
    pub fn coordinates(&self, transactional_id: &str) -> Result<(), ResponseError> {
        self.check_coordinator(transactional_id).map(|_| ())
    }
}

/// What EndTxn does with `current`. Under `tv2` the prepared state has the next epoch, an
/// abort with no transaction open still bumps it (how such a client recovers from an
/// abortable error), and a retry from before the bump is recognised.
fn end_transition(
    current: &TxnMetadata,
    (producer_id, producer_epoch): (i64, i16),
    commit: bool,
    tv2: bool,
) -> Result<Ending, ResponseError> {
    let ended_as_asked = matches!(
        (current.state, commit),
        (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false)
    );
    let ending_as_asked = matches!(
        (current.state, commit),
        (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false)
    );
    if tv2 && current.bumped_from(producer_id, producer_epoch) {
        return if ended_as_asked {
            Ok(Ending::Already(current.identity_after()))
        } else if ending_as_asked {
            Err(ResponseError::ConcurrentTransactions)
        } else {
            Err(ResponseError::ProducerFenced)
        };
    }
    current.check_producer(producer_id, producer_epoch)?;
    let prepare = |state: TxnState| {
        let mut prepared = current.clone();
        prepared.state = state;
        prepared.last_update_ms = now_ms();
        if tv2 {
            prepared.client_version = 2;
            prepared.producer_epoch = prepared.producer_epoch.saturating_add(1);
        }
        prepared
    };
    match (current.state, commit) {
        (TxnState::Ongoing, true) => Ok(Ending::Prepare(prepare(TxnState::PrepareCommit))),
        (TxnState::Ongoing, false) => Ok(Ending::Prepare(prepare(TxnState::PrepareAbort))),
        (TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort, false) if tv2 => {
            let mut prepared = prepare(TxnState::PrepareAbort);
            prepared.partitions.clear();
            Ok(Ending::Prepare(prepared))
        }
        _ if ended_as_asked => Ok(Ending::Already(current.identity_after())),
        _ if ending_as_asked => Err(ResponseError::ConcurrentTransactions),
        _ => Err(ResponseError::InvalidTxnState),
    }
}

/// Writes one marker into a partition this node leads and waits until its ISR has it; the
/// offsets a producer committed in the transaction join (or leave) their groups when the
/// partition is one of `__consumer_offsets`. Serves the coordinator and WriteTxnMarkers.
#[allow(clippy::too_many_arguments)]
pub async fn write_marker(
    cluster: &Arc<Cluster>,
    groups: &Arc<GroupCoordinator>,
    topic: &str,
    index: i32,
    producer_id: i64,
    producer_epoch: i16,
    marker: Marker,
    coordinator_epoch: i32,
) -> Result<(), ResponseError> {
    let p = cluster
        .partition(topic, index)
        .ok_or(ResponseError::UnknownTopicOrPartition)?;
    let part = Arc::clone(&p);
    let appended = tokio::task::spawn_blocking(move || {
        part.append_marker(
            marker,
            producer_id,
            producer_epoch,
            coordinator_epoch,
            now_ms(),
        )
    })
    .await
    .map_err(|_| ResponseError::KafkaStorageError)?;
    let (info, epoch) = appended.map_err(|e| crate::server::handlers::log_error_code(&e))?;
    if topic == CONSUMER_OFFSETS {
        groups.complete_transaction(producer_id, index, marker == Marker::Commit);
    }
    match p
        .wait_for_high_watermark(
            info.last_offset + 1,
            cluster.config.node_id,
            epoch,
            WRITE_TIMEOUT,
        )
        .await
    {
        Commit::Committed => Ok(()),
        Commit::NotLeader => Err(ResponseError::NotLeaderOrFollower),
        Commit::TimedOut => Err(ResponseError::RequestTimedOut),
    }
}

/// Every transactional id's latest state in a `__transaction_state` partition (blocking).
fn read_states(p: &Partition) -> Result<HashMap<String, TxnMetadata>, crate::log::LogError> {
    let mut states = HashMap::new();
    p.each_record(
        |r| match txn_log::decode(r.key.as_ref(), r.value.as_ref()) {
            _ if r.control => {}
            Some((id, Some(value))) => {
                states.insert(id, TxnMetadata::from_value(value));
            }
            Some((id, None)) => {
                states.remove(&id);
            }
            None => {}
        },
    )?;
    Ok(states)
}
