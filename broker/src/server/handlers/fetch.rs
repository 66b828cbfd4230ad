//! Fetch (with long-poll), ListOffsets and OffsetForLeaderEpoch.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::*;
use kafka_protocol::messages::list_offsets_response::*;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::{blocking, led_partition, log_error_code};
use crate::authz::{Operation, Resource};
use crate::cluster::Partition;
use crate::server::dispatch::Ctx;
use crate::server::throttle::QuotaKind;

/// `isolation_level` of a read_committed consumer's Fetch and ListOffsets.
const READ_COMMITTED: i8 = 1;

struct Want {
    topic: usize,
    index: i32,
    partition: Option<Arc<Partition>>,
    offset: i64,
    max_bytes: usize,
    /// The leader epoch the fetcher believes in (-1: unknown, not checked).
    current_leader_epoch: i32,
    /// The consumer may not READ the topic: TOPIC_AUTHORIZATION_FAILED.
    denied: bool,
}

/// An empty answer with `error` for partition `index`.
fn refused(index: i32, error: ResponseError) -> PartitionData {
    PartitionData::default()
        .with_partition_index(index)
        .with_error_code(error.code())
        .with_high_watermark(-1)
        .with_records(Some(Bytes::new()))
}

/// Kafka's answer to a replica fetch from a broker that is not one of the partition's
/// replicas (`Partition.followerReplicaOrThrow`): UNKNOWN_LEADER_EPOCH when the fetch names
/// the current leader epoch — the follower may know of a reassignment this leader has not
/// applied yet, and retries — else NOT_LEADER_OR_FOLLOWER.
fn not_a_replica(current_leader_epoch: i32) -> ResponseError {
    if current_leader_epoch >= 0 {
        ResponseError::UnknownLeaderEpoch
    } else {
        ResponseError::NotLeaderOrFollower
    }
}

/// FENCED_LEADER_EPOCH or UNKNOWN_LEADER_EPOCH when a fetcher's epoch is not this leader's.
fn epoch_mismatch(asked: i32, ours: i32) -> Option<ResponseError> {
    match asked {
        a if a < 0 || a == ours => None,
        a if a < ours => Some(ResponseError::FencedLeaderEpoch),
        _ => Some(ResponseError::UnknownLeaderEpoch),
    }
}

/// Whose fetch this is, which decides how far it may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reader {
    /// A follower (its node id): up to the log end.
    Replica(i32),
    /// A read_uncommitted consumer: up to the high watermark.
    Uncommitted,
    /// A read_committed consumer: up to the last stable offset, told which transactions
    /// in what it reads were aborted.
    Committed,
}

/// Reads every wanted partition as `reader` may.
fn read_all(
    wants: &[Want],
    max_bytes: usize,
    reader: Reader,
    node: i32,
) -> (Vec<PartitionData>, usize) {
    let mut total = 0usize;
    let mut out = Vec::with_capacity(wants.len());
    for w in wants {
        if w.denied {
            out.push(refused(w.index, ResponseError::TopicAuthorizationFailed));
            continue;
        }
        let Some(p) = &w.partition else {
            out.push(
                PartitionData::default()
                    .with_partition_index(w.index)
                    .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                    .with_high_watermark(-1),
            );
            continue;
        };
        // Only the leader serves fetches, consumers' and followers' alike.
        if !p.is_led_by(node) {
            out.push(refused(w.index, ResponseError::NotLeaderOrFollower));
            continue;
        }
        if let Some(e) = epoch_mismatch(w.current_leader_epoch, p.leader_epoch()) {
            out.push(refused(w.index, e));
            continue;
        }
        if p.offline_reason().is_some() {
            // Before the follower's progress: an offline leader must not look healthy.
            out.push(refused(w.index, ResponseError::KafkaStorageError));
            continue;
        }
        if let Reader::Replica(follower) = reader {
            // A follower's fetch offset is its log end: it has everything before it.
            if !p.on_replica_fetch(follower, w.offset, crate::cluster::now_ms()) {
                out.push(refused(w.index, not_a_replica(w.current_leader_epoch)));
                continue;
            }
        }
        let hw = p.high_watermark();
        let lso = p.last_stable_offset();
        let log_start = p.log_start_offset();
        let base = PartitionData::default()
            .with_partition_index(w.index)
            .with_high_watermark(hw)
            .with_last_stable_offset(lso)
            .with_log_start_offset(log_start)
            .with_aborted_transactions((reader == Reader::Committed).then(Vec::new));
        // Kafka returns at least one batch for the first partition with data even past
        // max_bytes, so a consumer never stalls on a large batch.
        let budget = if total == 0 {
            w.max_bytes
        } else {
            w.max_bytes.min(max_bytes.saturating_sub(total))
        };
        if budget == 0 {
            out.push(base.with_records(Some(Bytes::new())));
            continue;
        }
        let result = {
            // Led here, so held here, unless the leadership moved off this node just now.
            let Some(log) = p.log() else {
                out.push(refused(w.index, log_error_code(&p.missing_log())));
                continue;
            };
            let upper = match reader {
                Reader::Replica(_) => log.log_end_offset(),
                Reader::Uncommitted => hw,
                Reader::Committed => lso,
            };
            log.read(w.offset, budget, upper).map(|records| {
                let aborted = (reader == Reader::Committed && !records.is_empty())
                    .then(|| log.aborted_transactions(w.offset, upper));
                (records, aborted)
            })
        };
        match result {
            Ok((records, aborted)) => {
                total += records.len();
                let base = match aborted {
                    Some(aborted) => base.with_aborted_transactions(Some(
                        aborted
                            .into_iter()
                            .map(|a| {
                                AbortedTransaction::default()
                                    .with_producer_id(ProducerId(a.producer_id))
                                    .with_first_offset(a.first_offset)
                            })
                            .collect(),
                    )),
                    None => base,
                };
                out.push(base.with_records(Some(records)));
            }
            Err(e) => out.push(
                base.with_error_code(log_error_code(&e).code())
                    .with_records(Some(Bytes::new())),
            ),
        }
    }
    (out, total)
}

/// Fetch.
pub async fn fetch(ctx: &Ctx<'_>, req: FetchRequest) -> Option<FetchResponse> {
    let cluster = Arc::clone(&ctx.broker.cluster);
    let mut topics = Vec::with_capacity(req.topics.len());
    let mut wants = Vec::new();
    // A follower's fetch is inter-broker traffic: CLUSTER_ACTION on the cluster, else every
    // partition is refused, as in Kafka. A consumer's needs READ on each topic.
    let consumer = req.replica_id.0 < 0;
    let follower_denied =
        !consumer && !ctx.authorized(Operation::ClusterAction, Resource::cluster());
    for (ti, ft) in req.topics.iter().enumerate() {
        let topic = cluster.topic(&ft.topic.0);
        let denied = follower_denied
            || (consumer && !ctx.authorized(Operation::Read, Resource::topic(&ft.topic.0)));
        topics.push(ft.topic.clone());
        for fp in &ft.partitions {
            wants.push(Want {
                topic: ti,
                index: fp.partition,
                partition: topic.as_ref().and_then(|t| t.partition(fp.partition)),
                offset: fp.fetch_offset,
                max_bytes: fp.partition_max_bytes.max(0) as usize,
                current_leader_epoch: fp.current_leader_epoch,
                denied,
            });
        }
    }
    let max_bytes = if req.max_bytes <= 0 {
        usize::MAX
    } else {
        req.max_bytes as usize
    };
    let min_bytes = req.min_bytes.max(0) as usize;
    let replica = (req.replica_id.0 >= 0).then_some(req.replica_id.0);
    let reader = match replica {
        Some(node) => Reader::Replica(node),
        None if req.isolation_level == READ_COMMITTED => Reader::Committed,
        None => Reader::Uncommitted,
    };
    let node = ctx.broker.node_id();
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let mut appends = cluster.subscribe_appends();
    let wants = Arc::new(wants);
    let mut first_hw: Option<Vec<i64>> = None;
    // The reads at wake-ups that answer nothing are refunded from the request quota's busy
    // time: the first read and the one answered are this client's, the rest others' appends'.
    let (mut idle_reads, mut last_read, mut reads) = (Duration::ZERO, Duration::ZERO, 0u32);
    let waited = std::time::Instant::now();
    let (data, _) = loop {
        appends.borrow_and_update();
        let w = Arc::clone(&wants);
        if reads >= 2 {
            // The read before this one was neither the first nor the answer.
            idle_reads += last_read;
        }
        let read_at = std::time::Instant::now();
        let (data, total) = blocking(move || read_all(&w, max_bytes, reader, node)).await?;
        last_read = read_at.elapsed();
        reads += 1;
        let has_error = data.iter().any(|d| d.error_code != 0);
        // A follower learns a moved high watermark at once (as Kafka completes a delayed
        // fetch when it moves), so a new leader elected from it starts from where it was.
        let hws: Vec<i64> = data.iter().map(|d| d.high_watermark).collect();
        let hw_moved = replica.is_some() && first_hw.as_ref().is_some_and(|f| *f != hws);
        first_hw.get_or_insert(hws);
        if total >= min_bytes.max(1)
            || has_error
            || hw_moved
            || tokio::time::Instant::now() >= deadline
        {
            break (data, total);
        }
        tokio::select! {
            changed = appends.changed() => if changed.is_err() { break (data, total) },
            _ = tokio::time::sleep_until(deadline) => {},
        }
    };
    crate::server::request_time::refund_blocking(idle_reads);
    let kind = if replica.is_some() {
        "follower"
    } else {
        "consumer"
    };
    ctx.broker
        .metrics
        .fetch_wait
        .with_label_values(&[kind])
        .observe(waited.elapsed().as_secs_f64());
    let mut responses: Vec<FetchableTopicResponse> = topics
        .into_iter()
        .zip(req.topics.iter())
        .map(|(name, ft)| {
            FetchableTopicResponse::default()
                .with_topic(name)
                .with_topic_id(ft.topic_id)
        })
        .collect();
    let sent: u64 = data
        .iter()
        .filter_map(|d| d.records.as_ref())
        .map(|r| r.len() as u64)
        .sum();
    // A consumer over its quota gets an empty answer with the time to back off, as Kafka
    // answers: the records stay to be fetched again, and are not counted.
    if replica.is_none() {
        let throttle_ms = ctx.throttle(QuotaKind::Fetch, sent);
        if throttle_ms > 0 {
            ctx.unrecord(QuotaKind::Fetch, sent);
            return Some(FetchResponse::default().with_throttle_time_ms(throttle_ms));
        }
    }
    count_fetched(&ctx.broker.metrics, &wants, &data, replica.is_some(), sent);
    for (w, d) in wants.iter().zip(data) {
        responses[w.topic].partitions.push(d);
    }
    Some(FetchResponse::default().with_responses(responses))
}

/// Counts what a fetch returned: record bytes by topic for consumers (Kafka's BytesOutPerSec)
/// or in all for followers (ReplicationBytesOutPerSec), and the partitions that failed.
fn count_fetched(
    metrics: &crate::metrics::Metrics,
    wants: &[Want],
    data: &[PartitionData],
    follower: bool,
    sent: u64,
) {
    use std::sync::atomic::Ordering::Relaxed;
    metrics.fetch_bytes.inc_by(sent);
    if follower {
        metrics.replication_bytes_out.inc_by(sent);
    }
    for (w, d) in wants.iter().zip(data) {
        let Some(p) = &w.partition else { continue };
        let bytes = d.records.as_ref().map_or(0, |r| r.len() as u64);
        let failed = crate::metrics::topics::counts_as_failed(d.error_code);
        if (bytes == 0 || follower) && !failed {
            continue;
        }
        let counters = metrics.topics.of(&p.topic);
        if !follower {
            counters.bytes_out.fetch_add(bytes, Relaxed);
        }
        if failed {
            counters.failed_fetch.fetch_add(1, Relaxed);
        }
    }
}

/// A ListOffsets answer for partition `index` carrying `error`.
fn refused_offsets(index: i32, error: ResponseError) -> ListOffsetsPartitionResponse {
    ListOffsetsPartitionResponse::default()
        .with_partition_index(index)
        .with_error_code(error.code())
        .with_offset(-1)
        .with_timestamp(-1)
}

/// ListOffsets: earliest (-2), latest (-1), max timestamp (-3), earliest local (-4), latest
/// tiered (-5) or by timestamp.
pub async fn list_offsets(ctx: &Ctx<'_>, req: ListOffsetsRequest) -> Option<ListOffsetsResponse> {
    let cluster = Arc::clone(&ctx.broker.cluster);
    let version = ctx.version;
    let node = ctx.broker.node_id();
    let denied: Vec<bool> = req
        .topics
        .iter()
        .map(|t| !ctx.authorized(Operation::Describe, Resource::topic(&t.name.0)))
        .collect();
    let isolation = req.isolation_level;
    let work = move || {
        req.topics
            .into_iter()
            .zip(denied)
            .map(|(t, denied)| {
                let topic = cluster.topic(&t.name.0);
                let partitions = t
                    .partitions
                    .into_iter()
                    .map(|lp| {
                        let p =
                            match led_partition(topic.as_ref(), denied, lp.partition_index, node) {
                                Ok(p) => p,
                                Err(e) => return refused_offsets(lp.partition_index, e),
                            };
                        // A new leader whose high watermark has not yet caught up with what it
                        // had when elected cannot tell what is committed (KIP-207): retriable.
                        if !p.high_watermark_settled() {
                            return refused_offsets(
                                lp.partition_index,
                                ResponseError::OffsetNotAvailable,
                            );
                        }
                        let (offset, ts) = match lp.timestamp {
                            // Earliest, and earliest local (v8+, KIP-405): no log is tiered.
                            -2 | -4 => (p.log_start_offset(), -1),
                            // Latest tiered (v9+, KIP-1005): nothing is, as in Kafka without
                            // remote storage.
                            -5 => (-1, -1),
                            -1 if isolation == READ_COMMITTED => (p.last_stable_offset(), -1),
                            -1 => (p.high_watermark(), -1),
                            -3 => match p.log().map(|log| log.max_timestamp_record()) {
                                None => {
                                    return refused_offsets(
                                        lp.partition_index,
                                        ResponseError::NotLeaderOrFollower,
                                    )
                                }
                                Some(Ok(found)) => found.map_or((-1, -1), |(t, o)| (o, t)),
                                Some(Err(e)) => {
                                    return refused_offsets(lp.partition_index, log_error_code(&e))
                                }
                            },
                            ts => match p.log().map(|log| log.offset_for_timestamp(ts)) {
                                None => {
                                    return refused_offsets(
                                        lp.partition_index,
                                        ResponseError::NotLeaderOrFollower,
                                    )
                                }
                                Some(Ok(Some((o, t)))) => (o, t),
                                Some(Ok(None)) => (-1, -1),
                                Some(Err(e)) => {
                                    return refused_offsets(lp.partition_index, log_error_code(&e))
                                }
                            },
                        };
                        let base = ListOffsetsPartitionResponse::default()
                            .with_partition_index(lp.partition_index)
                            .with_offset(offset)
                            .with_timestamp(ts);
                        // The leader epoch is in the response from v4 only.
                        if version >= 4 {
                            base.with_leader_epoch(p.leader_epoch())
                        } else {
                            base
                        }
                    })
                    .collect();
                ListOffsetsTopicResponse::default()
                    .with_name(t.name)
                    .with_partitions(partitions)
            })
            .collect::<Vec<_>>()
    };
    let topics = blocking(work).await?;
    Some(ListOffsetsResponse::default().with_topics(topics))
}

/// OffsetForLeaderEpoch: for each partition, the largest leader epoch not above the one asked
/// for and the offset where it ended, from the log's leader-epoch cache.
pub async fn offset_for_leader_epoch(
    ctx: &Ctx<'_>,
    req: OffsetForLeaderEpochRequest,
) -> Option<OffsetForLeaderEpochResponse> {
    let cluster = &ctx.broker.cluster;
    let node = ctx.broker.node_id();
    // A follower (v3+ names its replica id) needs CLUSTER_ACTION; a client DESCRIBE on the
    // topic.
    let follower = req.replica_id.0 >= 0;
    let follower_denied =
        follower && !ctx.authorized(Operation::ClusterAction, Resource::cluster());
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = cluster.topic(&t.topic.0);
            let refusal = if follower_denied {
                Some(ResponseError::ClusterAuthorizationFailed)
            } else if !follower && !ctx.authorized(Operation::Describe, Resource::topic(&t.topic.0))
            {
                Some(ResponseError::TopicAuthorizationFailed)
            } else {
                None
            };
            let partitions = t
                .partitions
                .into_iter()
                .map(|op| {
                    let base = EpochEndOffset::default().with_partition(op.partition);
                    let undefined = |b: EpochEndOffset| b.with_leader_epoch(-1).with_end_offset(-1);
                    if let Some(e) = refusal {
                        return undefined(base.with_error_code(e.code()));
                    }
                    match topic.as_ref().and_then(|t| t.partition(op.partition)) {
                        None => undefined(
                            base.with_error_code(ResponseError::UnknownTopicOrPartition.code()),
                        ),
                        // Followers truncate by the leader's answer only.
                        Some(p) if !p.is_led_by(node) => undefined(
                            base.with_error_code(ResponseError::NotLeaderOrFollower.code()),
                        ),
                        Some(p) if op.current_leader_epoch > p.leader_epoch() => undefined(
                            base.with_error_code(ResponseError::UnknownLeaderEpoch.code()),
                        ),
                        Some(p)
                            if op.current_leader_epoch >= 0
                                && op.current_leader_epoch < p.leader_epoch() =>
                        {
                            undefined(base.with_error_code(ResponseError::FencedLeaderEpoch.code()))
                        }
                        Some(p) => {
                            match p.log().map(|log| log.end_offset_for_epoch(op.leader_epoch)) {
                                None => undefined(
                                    base.with_error_code(log_error_code(&p.missing_log()).code()),
                                ),
                                Some(Some((epoch, end))) => {
                                    base.with_leader_epoch(epoch).with_end_offset(end)
                                }
                                Some(None) => undefined(base),
                            }
                        }
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    Some(OffsetForLeaderEpochResponse::default().with_topics(topics))
}
