//! The internal topics coordinators keep their state in (`__transaction_state`,
//! `__share_group_state`): created on first use with a replication factor capped by the live
//! brokers, compacted, and read back record by record when a coordinator loads a partition.

use std::time::Duration;

use kafka_protocol::records::{Record, RecordBatchDecoder};
use kafka_protocol::ResponseError;

use super::*;

/// How a coordinator's internal topic is made.
#[derive(Debug, Clone)]
pub struct InternalTopic {
    /// Its name.
    pub name: &'static str,
    /// Partitions.
    pub partitions: i32,
    /// The replication factor wanted; capped by the live brokers, so a small cluster can run.
    pub replication_factor: i16,
    /// `min.insync.replicas`, never above the replication factor.
    pub min_isr: i32,
    /// `segment.bytes`.
    pub segment_bytes: u64,
}

impl Cluster {
    /// Creates `spec`'s topic unless it exists (blocking); its partition count, and whether
    /// this call created it.
    pub fn ensure_internal_topic(&self, spec: &InternalTopic) -> Result<(i32, bool), AdminError> {
        if let Some(t) = self.topic(spec.name) {
            return Ok((t.partition_count(), false));
        }
        let live = self.brokers().values().filter(|b| !b.fenced).count();
        let replication_factor = (live as i16).min(spec.replication_factor).max(1);
        let configs = BTreeMap::from([
            ("cleanup.policy".to_string(), "compact".to_string()),
            ("segment.bytes".to_string(), spec.segment_bytes.to_string()),
            (
                "min.insync.replicas".to_string(),
                spec.min_isr.min(i32::from(replication_factor)).to_string(),
            ),
        ]);
        let created = self.create_topic(
            NewTopic {
                name: spec.name.to_string(),
                partitions: spec.partitions,
                replication_factor,
                configs,
                assignments: None,
            },
            false,
        );
        match created {
            Ok(t) => Ok((t.partition_count(), true)),
            Err(AdminError::TopicExists(_)) => Ok((
                self.topic(spec.name).map_or(1, |t| t.partition_count()),
                false,
            )),
            Err(e) => Err(e),
        }
    }
}

/// What changed in the leadership of a coordinator's internal topic since it last loaded.
#[derive(Debug)]
pub struct LeadershipChange {
    /// The topic's partition count.
    pub partitions: i32,
    /// The partitions this node leads now, with their leader epochs.
    pub led_now: BTreeMap<i32, i32>,
    /// Those it has come to lead (or leads in a new epoch) since: to load.
    pub gained: Vec<Arc<Partition>>,
}

impl LeadershipChange {
    /// Whether a key on partition `index` stays loaded: still led, and not reloaded.
    pub fn keeps(&self, index: i32) -> bool {
        self.led_now.contains_key(&index) && !self.gained.iter().any(|p| p.index == index)
    }
}

impl Cluster {
    /// How the leadership of internal topic `name` moved for this node since `loaded` (the
    /// partitions it loaded, with their leader epochs); `None` when it has not (or the topic
    /// does not exist).
    pub fn leadership_change(
        &self,
        name: &str,
        loaded: &BTreeMap<i32, i32>,
    ) -> Option<LeadershipChange> {
        let topic = self.topic(name)?;
        let me = self.config.node_id;
        let partitions = topic.partitions.read().clone();
        let led_now: BTreeMap<i32, i32> = partitions
            .iter()
            .filter(|p| p.is_led_by(me))
            .map(|p| (p.index, p.leader_epoch()))
            .collect();
        if *loaded == led_now {
            return None;
        }
        let gained = partitions
            .iter()
            .filter(|p| {
                led_now.contains_key(&p.index) && loaded.get(&p.index) != led_now.get(&p.index)
            })
            .cloned()
            .collect();
        Some(LeadershipChange {
            partitions: partitions.len() as i32,
            led_now,
            gained,
        })
    }
}

impl Partition {
    /// Hands every record of this node's log of the partition to `f`, in offset order
    /// (blocking), control records (transaction markers) included; nothing when this node
    /// holds no replica, and KAFKA_STORAGE_ERROR when its replica is offline (a coordinator
    /// must not load an offline partition as empty). Undecodable data ends the walk with a
    /// warning.
    pub fn each_record(&self, mut f: impl FnMut(Record)) -> Result<(), LogError> {
        let Some(log) = self.log() else {
            return match self.offline_reason() {
                Some(_) => Err(self.missing_log()),
                None => Ok(()),
            };
        };
        let mut offset = log.log_start_offset();
        let end = log.log_end_offset();
        while offset < end {
            let mut bytes = log.read(offset, 1 << 20, end)?;
            if bytes.is_empty() {
                break;
            }
            let records = match RecordBatchDecoder::decode_all(&mut bytes) {
                Ok(sets) => sets.into_iter().flat_map(|s| s.records),
                Err(e) => {
                    tracing::warn!(topic = %self.topic, partition = self.index, offset, error = %e, "skipping undecodable data");
                    break;
                }
            };
            let mut next = offset + 1;
            for r in records {
                next = next.max(r.offset + 1);
                if r.offset >= offset {
                    f(r);
                }
            }
            offset = next;
        }
        Ok(())
    }
}

/// How long a coordinator's write may wait for the ISR.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Appends a coordinator's keyed `records` (a `None` value is a tombstone) to its internal
/// partition `p` and waits until the ISR has them, as Kafka's coordinators write with
/// acks=all: NOT_COORDINATOR when the leadership moved meanwhile, COORDINATOR_NOT_AVAILABLE
/// when too few replicas are in sync or the write fails or times out.
pub async fn persist(
    cluster: &Arc<Cluster>,
    p: &Arc<Partition>,
    records: Vec<(Bytes, Option<Bytes>)>,
    min_isr: i32,
) -> Result<(), ResponseError> {
    if !p.enough_replicas(min_isr.min(p.state().replicas.len() as i32)) {
        return Err(ResponseError::CoordinatorNotAvailable);
    }
    let (c, part) = (Arc::clone(cluster), Arc::clone(p));
    let appended = tokio::task::spawn_blocking(move || {
        let batch = crate::log::batch::encode_keyed(records, now_ms(), None)?;
        c.append(&part, batch)
    })
    .await
    .map_err(|_| ResponseError::CoordinatorNotAvailable)?;
    let (info, epoch) = match appended {
        Ok((
            crate::log::AppendOutcome::Appended(i) | crate::log::AppendOutcome::Duplicate(i),
            e,
        )) => (i, e),
        Err(LogError::NotLeader) => return Err(ResponseError::NotCoordinator),
        Err(e) => {
            tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "writing coordinator state failed");
            return Err(ResponseError::CoordinatorNotAvailable);
        }
    };
    let node = cluster.config.node_id;
    match p
        .wait_for_high_watermark(info.last_offset + 1, node, epoch, WRITE_TIMEOUT)
        .await
    {
        Commit::Committed => Ok(()),
        Commit::NotLeader => Err(ResponseError::NotCoordinator),
        Commit::TimedOut => Err(ResponseError::CoordinatorNotAvailable),
    }
}
