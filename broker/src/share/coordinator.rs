//! The share coordinator (KIP-932): one per `__share_group_state` partition, on the broker
//! leading it, holding the persisted state of the share-partitions whose key
//! (`group:topicId:partition`) hashes there. Partition leaders read a share-partition's state
//! when they start serving it and write it after every acknowledgement; the group coordinator
//! reads it for `kafka-share-groups --describe` and resets or deletes it.
//!
//! Every write is appended to `__share_group_state` (Kafka's `ShareSnapshot` records) and
//! replicated (acks=all) before it is applied or answered, so a new coordinator reloads it
//! after a failover. A write with an older state epoch than the stored one (the state was
//! reset since the writer read it) is FENCED_STATE_EPOCH.
//!
//! [`ShareCoordinator::call`] runs an operation wherever the key's coordinator is: here, or
//! on another broker through ReadShareGroupState / WriteShareGroupState /
//! InitializeShareGroupState / DeleteShareGroupState.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use parking_lot::Mutex;

use super::state_log::{self, Snapshot, StateBatch};
use super::Key;
use crate::cluster::internal::InternalTopic;
use crate::cluster::{now_ms, AdminError, Cluster, Partition, SHARE_GROUP_STATE};

/// How long a peer coordinator has to connect and answer.
const TIMEOUT: Duration = Duration::from_secs(30);

/// What to do with a share-partition's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Read it.
    Read,
    /// Replace it (a partition leader, after acknowledgements).
    Write {
        /// The state epoch the writer read.
        state_epoch: i32,
        /// The partition's leader epoch.
        leader_epoch: i32,
        /// The start offset.
        start_offset: i64,
        /// The in-flight records.
        batches: Vec<StateBatch>,
    },
    /// Start it over at `start_offset` with a new state epoch (AlterShareGroupOffsets).
    Initialize {
        /// The new state epoch.
        state_epoch: i32,
        /// The new start offset.
        start_offset: i64,
    },
    /// Forget it.
    Delete,
}

/// The share coordinators of the `__share_group_state` partitions this node leads.
#[derive(Debug)]
pub struct ShareCoordinator {
    cluster: Arc<Cluster>,
    states: Mutex<HashMap<Key, Snapshot>>,
    /// The partitions loaded, with the leader epoch they were loaded at.
    led: Mutex<BTreeMap<i32, i32>>,
    /// Writes are applied in the order they are appended.
    order: tokio::sync::Mutex<()>,
}

impl ShareCoordinator {
    /// A coordinator over `cluster`; state loads as partitions of `__share_group_state` come
    /// to be led here ([`Self::load`]).
    pub fn new(cluster: Arc<Cluster>) -> ShareCoordinator {
        ShareCoordinator {
            cluster,
            states: Mutex::new(HashMap::new()),
            led: Mutex::new(BTreeMap::new()),
            order: tokio::sync::Mutex::new(()),
        }
    }

    /// Ensures `__share_group_state` exists (blocking); returns its partition count.
    pub fn ensure_state_topic(&self) -> Result<i32, AdminError> {
        let d = &self.cluster.config.share;
        let (partitions, created) = self.cluster.ensure_internal_topic(&InternalTopic {
            name: SHARE_GROUP_STATE,
            partitions: d.state_topic_partitions,
            replication_factor: d.state_topic_replication_factor,
            min_isr: d.state_topic_min_isr,
            segment_bytes: d.state_topic_segment_bytes,
        })?;
        if created {
            if let Err(e) = self.load() {
                tracing::warn!(error = %e, "loading the new share group state partitions failed");
            }
        }
        Ok(partitions)
    }

    fn state_partition(&self, key: &Key) -> Option<Arc<Partition>> {
        let topic = self.cluster.topic(SHARE_GROUP_STATE)?;
        topic.partition(state_log::partition_for(key, topic.partition_count()))
    }

    /// The broker coordinating the share-partition named `coordinator_key`
    /// (`group:topicId:partition`, as FindCoordinator key type 2 carries it).
    pub fn coordinator_for(&self, coordinator_key: &str) -> Option<i32> {
        let topic = self.cluster.topic(SHARE_GROUP_STATE)?;
        let index =
            crate::group::offsets_log::partition_for(coordinator_key, topic.partition_count());
        Some(topic.partition(index)?.state().leader)
    }

    /// NOT_COORDINATOR unless this node leads `key`'s state partition, and
    /// COORDINATOR_LOAD_IN_PROGRESS until it has loaded it.
    fn check_coordinator(&self, key: &Key) -> Result<Arc<Partition>, ResponseError> {
        let p = self
            .state_partition(key)
            .ok_or(ResponseError::CoordinatorNotAvailable)?;
        if !p.is_led_by(self.cluster.config.node_id) {
            return Err(ResponseError::NotCoordinator);
        }
        if !self.led.lock().contains_key(&p.index) {
            return Err(ResponseError::CoordinatorLoadInProgress);
        }
        Ok(p)
    }

    /// Follows the leadership of `__share_group_state` (blocking): loads the states of the
    /// partitions this node has come to lead, drops those of partitions it no longer leads.
    pub fn load(&self) -> Result<usize, crate::log::LogError> {
        let mut led = self.led.lock();
        let Some(change) = self.cluster.leadership_change(SHARE_GROUP_STATE, &led) else {
            return Ok(0);
        };
        self.states
            .lock()
            .retain(|key, _| change.keeps(state_log::partition_for(key, change.partitions)));
        let mut loaded = 0;
        for p in &change.gained {
            let mut found: HashMap<Key, Snapshot> = HashMap::new();
            p.each_record(
                |r| match state_log::decode(r.key.as_ref(), r.value.as_ref()) {
                    _ if r.control => {}
                    Some((key, Some(s))) => {
                        found.insert(key, s);
                    }
                    Some((key, None)) => {
                        found.remove(&key);
                    }
                    None => {}
                },
            )?;
            loaded += found.len();
            self.states.lock().extend(found);
        }
        *led = change.led_now;
        tracing::debug!(loaded, "share group state partitions followed");
        Ok(loaded)
    }

    /// Runs `op` on `key`'s state here (this node must be its coordinator): the state for a
    /// read (`None`: there is none), else `None` once the change is replicated.
    pub async fn local(&self, key: &Key, op: Op) -> Result<Option<Snapshot>, ResponseError> {
        let p = self.check_coordinator(key)?;
        if op == Op::Read {
            return Ok(self.states.lock().get(key).cloned());
        }
        let _order = self.order.lock().await;
        let current = self.states.lock().get(key).cloned();
        let now = now_ms();
        let next = match op {
            Op::Read => unreachable!("answered above"),
            Op::Delete => None,
            Op::Write {
                state_epoch,
                leader_epoch,
                start_offset,
                batches,
            } => {
                if let Some(c) = &current {
                    if state_epoch < c.state_epoch {
                        return Err(ResponseError::FencedStateEpoch);
                    }
                    if leader_epoch < c.leader_epoch {
                        return Err(ResponseError::FencedLeaderEpoch);
                    }
                }
                Some(Snapshot {
                    snapshot_epoch: current.as_ref().map_or(0, |c| c.snapshot_epoch + 1),
                    state_epoch,
                    leader_epoch,
                    start_offset,
                    delivery_complete_count: complete_count(start_offset, &batches),
                    create_timestamp: current.as_ref().map_or(now, |c| c.create_timestamp),
                    write_timestamp: now,
                    batches,
                })
            }
            Op::Initialize {
                state_epoch,
                start_offset,
            } => {
                if current
                    .as_ref()
                    .is_some_and(|c| state_epoch <= c.state_epoch)
                {
                    return Err(ResponseError::FencedStateEpoch);
                }
                Some(Snapshot {
                    snapshot_epoch: 0,
                    state_epoch,
                    leader_epoch: -1,
                    start_offset,
                    delivery_complete_count: 0,
                    create_timestamp: now,
                    write_timestamp: now,
                    batches: Vec::new(),
                })
            }
        };
        if current.is_none() && next.is_none() {
            return Ok(None);
        }
        let record = (
            state_log::encode_key(key),
            next.as_ref().map(state_log::encode_value),
        );
        let min_isr = self.cluster.config.share.state_topic_min_isr;
        crate::cluster::internal::persist(&self.cluster, &p, vec![record], min_isr).await?;
        let mut states = self.states.lock();
        match next {
            Some(s) => states.insert(key.clone(), s),
            None => states.remove(key),
        };
        Ok(None)
    }

    /// Runs `op` on `key`'s state at its coordinator, here or on another broker (creating
    /// `__share_group_state` on first use).
    pub async fn call(
        self: &Arc<Self>,
        key: &Key,
        op: Op,
    ) -> Result<Option<Snapshot>, ResponseError> {
        if self.cluster.topic(SHARE_GROUP_STATE).is_none() {
            let me = Arc::clone(self);
            tokio::task::spawn_blocking(move || me.ensure_state_topic())
                .await
                .map_err(|_| ResponseError::CoordinatorNotAvailable)?
                .map_err(|_| ResponseError::CoordinatorNotAvailable)?;
        }
        let coordinator = self
            .state_partition(key)
            .map(|p| p.state().leader)
            .ok_or(ResponseError::CoordinatorNotAvailable)?;
        if coordinator == self.cluster.config.node_id {
            return self.local(key, op).await;
        }
        if coordinator < 0 {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        remote(&self.cluster, coordinator, key, op).await
    }

    /// Every state this node coordinates for `group`.
    pub fn of_group(&self, group: &str) -> Vec<(Key, Snapshot)> {
        self.states
            .lock()
            .iter()
            .filter(|(k, _)| k.0 == group)
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect()
    }
}

/// Offsets from `start` on that the batches show complete.
fn complete_count(start: i64, batches: &[StateBatch]) -> i32 {
    batches
        .iter()
        .filter(|b| b.state != state_log::AVAILABLE)
        .map(|b| b.last - b.first.max(start) + 1)
        .filter(|n| *n > 0)
        .sum::<i64>()
        .min(i64::from(i32::MAX)) as i32
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// The error a share state RPC answered for the one partition it carried.
fn partition_error(code: i16, message: Option<&StrBytes>) -> Result<(), ResponseError> {
    if code == 0 {
        return Ok(());
    }
    let e = ResponseError::try_from_code(code).unwrap_or(ResponseError::UnknownServerError);
    tracing::debug!(error = ?e, message = ?message, "share state RPC refused");
    Err(e)
}

/// The one partition result of a share state RPC's answer (UNKNOWN_SERVER_ERROR if none).
macro_rules! only_partition {
    ($response:expr) => {
        $response
            .results
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or(ResponseError::UnknownServerError)?
    };
}

/// Runs `op` at broker `coordinator` over its share state RPCs.
async fn remote(
    cluster: &Cluster,
    coordinator: i32,
    (group, topic, partition): &Key,
    op: Op,
) -> Result<Option<Snapshot>, ResponseError> {
    use kafka_protocol::messages::{
        delete_share_group_state_request as del, initialize_share_group_state_request as init,
        read_share_group_state_request as read, write_share_group_state_request as write,
    };
    let Some(mut client) = crate::peer::connect_broker(cluster, coordinator, TIMEOUT).await else {
        return Err(ResponseError::CoordinatorNotAvailable);
    };
    let failed = |e: gregor_client::ClientError| {
        tracing::debug!(coordinator, error = %crate::cluster::error_chain(&e), "share state RPC failed");
        ResponseError::CoordinatorNotAvailable
    };
    match op {
        Op::Read => {
            let request = ReadShareGroupStateRequest::default()
                .with_group_id(s(group))
                .with_topics(vec![read::ReadStateData::default()
                    .with_topic_id(*topic)
                    .with_partitions(vec![read::PartitionData::default()
                        .with_partition(*partition)
                        .with_leader_epoch(-1)])]);
            let r = client.send(request).await.map_err(failed)?;
            let p = only_partition!(r);
            partition_error(p.error_code, p.error_message.as_ref())?;
            if p.start_offset < 0 && p.state_batches.is_empty() {
                return Ok(None);
            }
            Ok(Some(Snapshot {
                snapshot_epoch: 0,
                state_epoch: p.state_epoch,
                leader_epoch: -1,
                start_offset: p.start_offset,
                delivery_complete_count: -1,
                create_timestamp: -1,
                write_timestamp: -1,
                batches: p
                    .state_batches
                    .iter()
                    .map(|b| StateBatch {
                        first: b.first_offset,
                        last: b.last_offset,
                        state: b.delivery_state,
                        deliveries: b.delivery_count,
                    })
                    .collect(),
            }))
        }
        Op::Write {
            state_epoch,
            leader_epoch,
            start_offset,
            batches,
        } => {
            let request = WriteShareGroupStateRequest::default()
                .with_group_id(s(group))
                .with_topics(vec![write::WriteStateData::default()
                    .with_topic_id(*topic)
                    .with_partitions(vec![write::PartitionData::default()
                        .with_partition(*partition)
                        .with_state_epoch(state_epoch)
                        .with_leader_epoch(leader_epoch)
                        .with_start_offset(start_offset)
                        .with_state_batches(
                            batches
                                .iter()
                                .map(|b| {
                                    write::StateBatch::default()
                                        .with_first_offset(b.first)
                                        .with_last_offset(b.last)
                                        .with_delivery_state(b.state)
                                        .with_delivery_count(b.deliveries)
                                })
                                .collect(),
                        )])]);
            let r = client.send(request).await.map_err(failed)?;
            let p = only_partition!(r);
            partition_error(p.error_code, p.error_message.as_ref()).map(|()| None)
        }
        Op::Initialize {
            state_epoch,
            start_offset,
        } => {
            let request = InitializeShareGroupStateRequest::default()
                .with_group_id(s(group))
                .with_topics(vec![init::InitializeStateData::default()
                    .with_topic_id(*topic)
                    .with_partitions(vec![init::PartitionData::default()
                        .with_partition(*partition)
                        .with_state_epoch(state_epoch)
                        .with_start_offset(start_offset)])]);
            let r = client.send(request).await.map_err(failed)?;
            let p = only_partition!(r);
            partition_error(p.error_code, p.error_message.as_ref()).map(|()| None)
        }
        Op::Delete => {
            let request = DeleteShareGroupStateRequest::default()
                .with_group_id(s(group))
                .with_topics(vec![del::DeleteStateData::default()
                    .with_topic_id(*topic)
                    .with_partitions(vec![
                        del::PartitionData::default().with_partition(*partition)
                    ])]);
            let r = client.send(request).await.map_err(failed)?;
            let p = only_partition!(r);
            partition_error(p.error_code, p.error_message.as_ref()).map(|()| None)
        }
    }
}
