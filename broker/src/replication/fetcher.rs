//! The follower side of replication: fetch a partition from its leader with the Fetch API
//! (replica id set, so the leader serves up to its log end and counts the fetch as follower
//! progress) and append the batches as they are, keeping the leader's offsets and epochs.
//! The caller owns the loop and the scheduling; one call moves one partition forward once.

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::client::{Client, ClientError};
use crate::log::{LogError, PartitionLog};

/// Fetch versions this fetcher builds (v13+ address topics by id).
const MAX_FETCH_VERSION: i16 = 12;

/// Why a replica fetch did not move the follower forward.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The leader could not be reached or answered garbage.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The leader answered with a Kafka error for the partition.
    #[error("the leader refused the fetch of {topic}-{partition}: {error}")]
    Leader {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The error code the leader sent.
        error: ResponseError,
    },
    /// The fetched batches could not be appended locally.
    #[error(transparent)]
    Log(#[from] LogError),
}

/// What one replica fetch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchProgress {
    /// Records appended locally.
    pub appended: i64,
    /// The follower's log end offset afterwards.
    pub log_end_offset: i64,
    /// The leader's high watermark, as reported.
    pub leader_high_watermark: i64,
}

/// Fetches `topic`-`partition` from the leader behind `client` once, as replica `replica_id`,
/// starting at `log`'s end, and appends what arrives.
pub async fn fetch_once(
    client: &mut Client,
    replica_id: i32,
    topic: &str,
    partition: i32,
    log: &mut PartitionLog,
    max_wait_ms: i32,
) -> Result<FetchProgress, FetchError> {
    let start = log.log_end_offset();
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(replica_id))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(8 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(start)
                .with_partition_max_bytes(4 << 20)])]);
    let version = client.version::<FetchRequest>(Some(MAX_FETCH_VERSION))?;
    let resp = client.send_at(req, version).await?;
    let data = resp
        .responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .find(|p| p.partition_index == partition)
        .ok_or_else(|| {
            ClientError::Protocol(format!("the fetch response lacks {topic}-{partition}"))
        })?;
    if let Some(error) = ResponseError::try_from_code(data.error_code) {
        return Err(FetchError::Leader {
            topic: topic.to_string(),
            partition,
            error,
        });
    }
    let records: Bytes = data.records.clone().unwrap_or_default();
    if !records.is_empty() {
        log.append_replica(records, crate::cluster::now_ms())?;
    }
    let end = log.log_end_offset();
    Ok(FetchProgress {
        appended: end - start,
        log_end_offset: end,
        leader_high_watermark: data.high_watermark,
    })
}
