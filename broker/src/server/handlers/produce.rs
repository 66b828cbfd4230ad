//! Produce and InitProducerId. A produce request's appends run in one blocking task; acks=1
//! answers once the leader has written them, acks=all once every ISR member has them (the high
//! watermark passed them), or NOT_LEADER_OR_FOLLOWER if the leadership moves first. acks=0
//! gets no response at all, as in Kafka.

use std::sync::Arc;

use kafka_protocol::messages::produce_response::*;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::{blocking, log_error_code};
use crate::cluster::{Cluster, Commit};
use crate::log::AppendOutcome;
use crate::server::dispatch::{sb, Ctx};

fn partition_error(
    index: i32,
    e: ResponseError,
    message: Option<String>,
) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(e.code())
        .with_base_offset(-1)
        .with_error_message(message.map(sb))
}

/// An acks=all append that must reach the high watermark before the answer.
struct Wait {
    /// Topic slot in the response.
    topic: usize,
    /// Partition slot in the topic's response.
    slot: usize,
    partition: Arc<crate::cluster::Partition>,
    /// The offset the high watermark must reach.
    offset: i64,
    /// The leader epoch the records were appended in.
    epoch: i32,
}

/// Produce.
pub async fn produce(ctx: &Ctx<'_>, req: ProduceRequest) -> Option<ProduceResponse> {
    let acks = req.acks;
    let cluster = Arc::clone(&ctx.broker.cluster);
    let metrics = Arc::clone(&ctx.broker.metrics);
    let bad_acks = !matches!(acks, -1..=1);
    let transactional = req.transactional_id.is_some();
    let node = ctx.broker.node_id();
    let timeout = std::time::Duration::from_millis(req.timeout_ms.max(0) as u64);
    let work = move || {
        let mut responses = Vec::with_capacity(req.topic_data.len());
        let default_min_isr = cluster.effective_config().min_insync_replicas;
        let mut waits: Vec<Wait> = Vec::new();
        for td in req.topic_data {
            let name = td.name.0.to_string();
            let topic = cluster.topic(&name);
            let min_isr = topic.as_ref().map(|t| {
                t.configs
                    .read()
                    .get("min.insync.replicas")
                    .and_then(|v| v.parse::<i32>().ok())
                    .unwrap_or(default_min_isr)
            });
            let mut parts = Vec::with_capacity(td.partition_data.len());
            for pd in td.partition_data {
                let idx = pd.index;
                let resp = if bad_acks {
                    partition_error(idx, ResponseError::InvalidRequiredAcks, None)
                } else if transactional {
                    partition_error(
                        idx,
                        ResponseError::TransactionalIdAuthorizationFailed,
                        Some("transactions are not supported yet".into()),
                    )
                } else if topic.as_ref().is_some_and(|t| t.is_internal()) {
                    partition_error(idx, ResponseError::InvalidTopicException, None)
                } else if let Some(p) = topic.as_ref().and_then(|t| t.partition(idx)) {
                    if !p.is_led_by(node) {
                        partition_error(idx, ResponseError::NotLeaderOrFollower, None)
                    } else if acks == -1 && !p.enough_replicas(min_isr.unwrap_or(1)) {
                        partition_error(
                            idx,
                            ResponseError::NotEnoughReplicas,
                            Some("the in-sync replicas are fewer than min.insync.replicas".into()),
                        )
                    } else {
                        match pd.records {
                            None => partition_error(idx, ResponseError::CorruptMessage, None),
                            Some(records) => {
                                let bytes = records.len() as u64;
                                let outcome = cluster.append(&p, records);
                                if let (
                                    -1,
                                    Ok((
                                        AppendOutcome::Appended(info)
                                        | AppendOutcome::Duplicate(info),
                                        epoch,
                                    )),
                                ) = (acks, &outcome)
                                {
                                    waits.push(Wait {
                                        topic: responses.len(),
                                        slot: parts.len(),
                                        partition: Arc::clone(&p),
                                        offset: info.last_offset + 1,
                                        epoch: *epoch,
                                    });
                                }
                                match outcome {
                                    Ok((AppendOutcome::Appended(info), _)) => {
                                        metrics.messages_in.inc_by(
                                            (info.last_offset - info.base_offset + 1).max(0) as u64,
                                        );
                                        metrics.produce_bytes.inc_by(bytes);
                                        PartitionProduceResponse::default()
                                            .with_index(idx)
                                            .with_base_offset(info.base_offset)
                                            .with_log_append_time_ms(info.log_append_time)
                                            .with_log_start_offset(info.log_start_offset)
                                    }
                                    Ok((AppendOutcome::Duplicate(info), _)) => {
                                        PartitionProduceResponse::default()
                                            .with_index(idx)
                                            .with_base_offset(info.base_offset)
                                            .with_log_append_time_ms(info.log_append_time)
                                            .with_log_start_offset(info.log_start_offset)
                                    }
                                    Err(e) => {
                                        tracing::debug!(topic = %name, partition = idx, error = %e, "append refused");
                                        partition_error(
                                            idx,
                                            log_error_code(&e),
                                            Some(e.to_string()),
                                        )
                                    }
                                }
                            }
                        }
                    }
                } else {
                    partition_error(idx, ResponseError::UnknownTopicOrPartition, None)
                };
                parts.push(resp);
            }
            responses.push(
                TopicProduceResponse::default()
                    .with_name(td.name)
                    .with_partition_responses(parts),
            );
        }
        (responses, waits)
    };
    let (mut responses, waits) = blocking(work).await.unwrap_or_default();
    // acks=all: answer once every in-sync replica has the records (the high watermark passed
    // them); on one node that is at once.
    // One deadline for the whole request, as Kafka's request timeout.
    let deadline = std::time::Instant::now() + timeout;
    for w in waits {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let (code, message) = match w
            .partition
            .wait_for_high_watermark(w.offset, node, w.epoch, left)
            .await
        {
            Commit::Committed => continue,
            Commit::TimedOut => (
                ResponseError::RequestTimedOut,
                "the in-sync replicas did not acknowledge the records in time",
            ),
            Commit::NotLeader => (
                ResponseError::NotLeaderOrFollower,
                "the partition leadership moved before the records were committed",
            ),
        };
        if let Some(r) = responses
            .get_mut(w.topic)
            .and_then(|t| t.partition_responses.get_mut(w.slot))
        {
            r.error_code = code.code();
            r.error_message = Some(sb(message));
        }
    }
    if acks == 0 {
        return None;
    }
    Some(ProduceResponse::default().with_responses(responses))
}

/// InitProducerId: a fresh producer id for idempotent producers (transactions are refused).
pub async fn init_producer_id(
    ctx: &Ctx<'_>,
    req: InitProducerIdRequest,
) -> Option<InitProducerIdResponse> {
    if req.transactional_id.is_some() {
        return Some(
            InitProducerIdResponse::default()
                .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        );
    }
    let cluster: Arc<Cluster> = Arc::clone(&ctx.broker.cluster);
    match blocking(move || cluster.allocate_producer_id()).await {
        Some(Ok(id)) => Some(
            InitProducerIdResponse::default()
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(0),
        ),
        _ => Some(
            InitProducerIdResponse::default()
                .with_error_code(ResponseError::CoordinatorNotAvailable.code())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        ),
    }
}
