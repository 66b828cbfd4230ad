//! The follower's requests to a partition leader, and the truncation rule. A follower fetches
//! with the Fetch API (replica id set, so the leader serves up to its log end and counts the
//! fetch as follower progress) and appends the batches as they are, keeping the leader's
//! offsets and epochs. Before fetching under a new leader it asks OffsetForLeaderEpoch where
//! its own latest epoch ends in the leader's log, and cuts what the leader never had.
//! Scheduling (which partitions, when) belongs to [`super::manager`].

use bytes::Bytes;
use gregor_client::{Client, ClientError};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, OffsetForLeaderEpochRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

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

/// One partition to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchTarget {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The follower's log end.
    pub fetch_offset: i64,
    /// The leader epoch the follower follows at (the leader refuses another).
    pub leader_epoch: i32,
}

/// What the leader answered for one partition.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The leader's error, if any.
    pub error: Option<ResponseError>,
    /// The leader's high watermark.
    pub high_watermark: i64,
    /// The leader's log start.
    pub log_start_offset: i64,
    /// Batches from the fetch offset on.
    pub records: Bytes,
}

/// Fetch limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Long-poll time (`replica.fetch.wait.max.ms`).
    pub max_wait_ms: i32,
    /// Per partition (`replica.fetch.max.bytes`).
    pub partition_max_bytes: i32,
    /// Per response (`replica.fetch.response.max.bytes`).
    pub max_bytes: i32,
}

/// Fetches `targets` from the leader behind `client` as replica `replica_id`.
pub async fn fetch(
    client: &mut Client,
    replica_id: i32,
    targets: &[FetchTarget],
    limits: Limits,
) -> Result<Vec<Fetched>, ClientError> {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for t in targets {
        let partition = FetchPartition::default()
            .with_partition(t.partition)
            .with_current_leader_epoch(t.leader_epoch)
            .with_fetch_offset(t.fetch_offset)
            .with_partition_max_bytes(limits.partition_max_bytes);
        match topics.last_mut() {
            Some(last) if *last.topic == *t.topic => last.partitions.push(partition),
            _ => topics.push(
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(t.topic.clone())))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(replica_id))
        .with_max_wait_ms(limits.max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(limits.max_bytes)
        .with_topics(topics);
    let version = client.version::<FetchRequest>(Some(MAX_FETCH_VERSION))?;
    let resp = client.send_at(req, version).await?;
    if let Some(e) = ResponseError::try_from_code(resp.error_code) {
        return Err(ClientError::Protocol(format!("fetch refused: {e}")));
    }
    Ok(resp
        .responses
        .into_iter()
        .flat_map(|t| {
            let topic = t.topic.0.to_string();
            t.partitions.into_iter().map(move |p| Fetched {
                topic: topic.clone(),
                partition: p.partition_index,
                error: ResponseError::try_from_code(p.error_code),
                high_watermark: p.high_watermark,
                log_start_offset: p.log_start_offset,
                records: p.records.unwrap_or_default(),
            })
        })
        .collect())
}

/// One partition's question to the leader: where does `epoch` (the follower's latest) end?
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochQuery {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The leader epoch the follower follows at.
    pub current_leader_epoch: i32,
    /// The follower's latest epoch.
    pub epoch: i32,
}

/// OffsetForLeaderEpoch for `queries`, as replica `replica_id`: per query, the leader's
/// (epoch, end offset) or its error.
pub async fn end_offsets(
    client: &mut Client,
    replica_id: i32,
    queries: &[EpochQuery],
) -> Result<Vec<Result<(i32, i64), ResponseError>>, ClientError> {
    let topics = queries
        .iter()
        .map(|q| {
            OffsetForLeaderTopic::default()
                .with_topic(TopicName(StrBytes::from_string(q.topic.clone())))
                .with_partitions(vec![OffsetForLeaderPartition::default()
                    .with_partition(q.partition)
                    .with_current_leader_epoch(q.current_leader_epoch)
                    .with_leader_epoch(q.epoch)])
        })
        .collect();
    let req = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(replica_id))
        .with_topics(topics);
    let resp = client.send(req).await?;
    Ok(queries
        .iter()
        .map(|q| {
            let answer = resp
                .topics
                .iter()
                .filter(|t| *t.topic == *q.topic)
                .flat_map(|t| t.partitions.iter())
                .find(|p| p.partition == q.partition);
            match answer {
                None => Err(ResponseError::UnknownTopicOrPartition),
                Some(p) => match ResponseError::try_from_code(p.error_code) {
                    Some(e) => Err(e),
                    None => Ok((p.leader_epoch, p.end_offset)),
                },
            }
        })
        .collect())
}

/// Where a follower truncates, given the leader's answer `(epoch, end)` for the follower's
/// latest epoch: the leader's end of that epoch, or, when the leader's history diverged
/// earlier (it answers an older epoch), the end of that epoch in both logs. An undefined
/// answer (the leader has no such epoch) keeps only what is known committed.
pub fn truncation_offset(log: &PartitionLog, answer: (i32, i64), high_watermark: i64) -> i64 {
    let leo = log.log_end_offset();
    let (epoch, end) = answer;
    if epoch < 0 || end < 0 {
        return high_watermark.min(leo);
    }
    let ours = match log.latest_epoch() {
        Some(latest) if latest == epoch => leo,
        _ => log
            .end_offset_for_epoch(epoch)
            .filter(|(e, _)| *e == epoch)
            .map(|(_, o)| o)
            .unwrap_or(high_watermark),
    };
    end.min(ours).min(leo)
}

/// What one replica fetch did (see [`fetch_once`]).
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
    let target = FetchTarget {
        topic: topic.to_string(),
        partition,
        fetch_offset: start,
        leader_epoch: -1,
    };
    let limits = Limits {
        max_wait_ms,
        partition_max_bytes: 4 << 20,
        max_bytes: 8 << 20,
    };
    let data = fetch(client, replica_id, &[target], limits)
        .await?
        .into_iter()
        .find(|p| p.partition == partition)
        .ok_or_else(|| {
            ClientError::Protocol(format!("the fetch response lacks {topic}-{partition}"))
        })?;
    if let Some(error) = data.error {
        return Err(FetchError::Leader {
            topic: topic.to_string(),
            partition,
            error,
        });
    }
    if !data.records.is_empty() {
        log.append_replica(data.records, crate::cluster::now_ms())?;
    }
    let end = log.log_end_offset();
    Ok(FetchProgress {
        appended: end - start,
        log_end_offset: end,
        leader_high_watermark: data.high_watermark,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::tests::batch_of;
    use crate::log::LogConfig;

    /// A log with 5 records at epoch 1, then 3 at epoch 2 (offsets 5..8).
    fn diverged(dir: &std::path::Path) -> PartitionLog {
        let mut log = PartitionLog::open(dir, LogConfig::default()).expect("open");
        log.append(batch_of(5, 0), 1, 0).expect("append");
        log.append(batch_of(3, 0), 2, 0).expect("append");
        log
    }

    #[test]
    fn a_follower_cuts_what_the_leader_never_had() {
        let d = tempfile::tempdir().expect("tempdir");
        let log = diverged(d.path());
        assert_eq!(
            truncation_offset(&log, (1, 5), 0),
            5,
            "the leader never had epoch 2: cut back to where epoch 1 ended"
        );
        assert_eq!(
            truncation_offset(&log, (2, 7), 0),
            7,
            "same epoch, the leader's ends earlier"
        );
        assert_eq!(
            truncation_offset(&log, (2, 20), 0),
            8,
            "nothing to cut when the leader has more"
        );
        assert_eq!(
            truncation_offset(&log, (1, 3), 0),
            3,
            "diverged inside epoch 1"
        );
        assert_eq!(
            truncation_offset(&log, (-1, -1), 4),
            4,
            "unknown epoch: keep only what is known committed"
        );
    }

    #[test]
    fn truncation_then_replica_appends_continue_from_the_cut() {
        let d = tempfile::tempdir().expect("tempdir");
        let mut log = diverged(d.path());
        let target = truncation_offset(&log, (1, 5), 0);
        log.truncate_to(target).expect("truncate");
        assert_eq!(log.log_end_offset(), 5);
        assert_eq!(log.latest_epoch(), Some(1));
        // The leader's epoch-3 history resumes at 5.
        let mut leader = PartitionLog::open(&d.path().join("leader"), LogConfig::default())
            .expect("open leader");
        leader.append(batch_of(5, 0), 1, 0).expect("append");
        leader.append(batch_of(2, 0), 3, 0).expect("append");
        let tail = leader.read(5, 1 << 20, 7).expect("read");
        log.append_replica(tail, 0).expect("replica append");
        assert_eq!(log.log_end_offset(), 7);
        assert_eq!(log.end_offset_for_epoch(2), Some((1, 5)));
        assert_eq!(log.latest_epoch(), Some(3));
    }
}
