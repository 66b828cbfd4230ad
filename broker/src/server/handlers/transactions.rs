//! The transaction APIs, translating between the wire and
//! [`crate::transaction::TransactionCoordinator`]: AddPartitionsToTxn (the clients' form and
//! the brokers' batched, verify-only form), AddOffsetsToTxn, EndTxn, TxnOffsetCommit and
//! WriteTxnMarkers; and what `kafka-transactions` asks: DescribeProducers,
//! DescribeTransactions and ListTransactions.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::add_partitions_to_txn_response::*;
use kafka_protocol::messages::txn_offset_commit_response::*;
use kafka_protocol::messages::write_txn_markers_response::*;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::groups::group_denied;
use super::offsets::{committed, store_offsets, TopicOffsets};
use crate::authz::{Operation, Resource};
use crate::cluster::{now_ms, CONSUMER_OFFSETS};
use crate::group::offsets_log;
use crate::log::control::Marker;
use crate::server::dispatch::Ctx;
use crate::transaction::coordinator::write_marker;

/// How long EndTxn waits for the markers before answering on the durable decision alone.
const END_TXN_WAIT: Duration = Duration::from_secs(10);

/// PRODUCER_FENCED as a client of `version` understands it: versions before the error
/// existed (KIP-588) are told INVALID_PRODUCER_EPOCH, as Kafka tells them.
fn fenced_for(e: ResponseError, version: i16, first_with_fenced: i16) -> ResponseError {
    if e == ResponseError::ProducerFenced && version < first_with_fenced {
        ResponseError::InvalidProducerEpoch
    } else {
        e
    }
}

/// TRANSACTIONAL_ID_AUTHORIZATION_FAILED without WRITE on the transactional id.
fn txn_denied(ctx: &Ctx<'_>, transactional_id: &str) -> Option<ResponseError> {
    (!ctx.authorized(
        Operation::Write,
        Resource::transactional_id(transactional_id),
    ))
    .then_some(ResponseError::TransactionalIdAuthorizationFailed)
}

/// InitProducerId with a transactional id (the idempotent form is in `produce`).
pub async fn init_transactional_producer(
    ctx: &Ctx<'_>,
    req: &InitProducerIdRequest,
    transactional_id: &str,
) -> InitProducerIdResponse {
    let answer = |e: ResponseError| {
        InitProducerIdResponse::default()
            .with_error_code(fenced_for(e, ctx.version, 4).code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if let Some(e) = txn_denied(ctx, transactional_id) {
        return answer(e);
    }
    let expected = (req.producer_id.0 >= 0).then_some((req.producer_id.0, req.producer_epoch));
    let txns = Arc::clone(&ctx.broker.txns);
    match txns
        .init_producer_id(transactional_id, req.transaction_timeout_ms, expected)
        .await
    {
        Ok((id, epoch)) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch),
        Err(e) => answer(e),
    }
}

/// One transaction's partitions: checked to exist, authorized, then added (or verified).
/// Returns each topic's per-partition errors. A producer may not name an internal topic; a
/// broker (v4+) may: a group's `__consumer_offsets` partition joins a `transaction.version` 2
/// transaction through its group coordinator.
async fn add_partitions(
    ctx: &Ctx<'_>,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    topics: &[add_partitions_to_txn_request::AddPartitionsToTxnTopic],
    verify_only: bool,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let cluster = &ctx.broker.cluster;
    let mut refused: Vec<((String, i32), ResponseError)> = Vec::new();
    let mut wanted = Vec::new();
    for t in topics {
        let name = t.name.0.to_string();
        let topic = cluster.topic(&name);
        let denied = !ctx.authorized(Operation::Write, Resource::topic(&name));
        for &p in &t.partitions {
            if denied {
                refused.push(((name.clone(), p), ResponseError::TopicAuthorizationFailed));
            } else if topic.as_ref().and_then(|t| t.partition(p)).is_none()
                || (ctx.version <= 3 && topic.as_ref().is_some_and(|t| t.is_internal()))
            {
                refused.push(((name.clone(), p), ResponseError::UnknownTopicOrPartition));
            } else {
                wanted.push((name.clone(), p));
            }
        }
    }
    let refused = refused.into_iter().map(|(p, e)| (p, Some(e)));
    let outcome: Vec<((String, i32), Option<ResponseError>)> =
        if let Some(e) = txn_denied(ctx, transactional_id) {
            wanted
                .into_iter()
                .map(|p| (p, Some(e)))
                .chain(refused)
                .collect()
        } else if refused.len() > 0 {
            // As Kafka: nothing is added when any partition is refused; the rest were not tried.
            let rest = wanted
                .into_iter()
                .map(|p| (p, Some(ResponseError::OperationNotAttempted)));
            rest.chain(refused).collect()
        } else if verify_only {
            let txns = &ctx.broker.txns;
            wanted
                .into_iter()
                .map(|p| {
                    let e = txns.verify(transactional_id, producer_id, producer_epoch, &p);
                    (p, e.err())
                })
                .collect()
        } else {
            let added = ctx
                .broker
                .txns
                .add_partitions(transactional_id, producer_id, producer_epoch, &wanted)
                .await;
            let e = added.err();
            wanted.into_iter().map(|p| (p, e)).collect()
        };
    let mut by_topic: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for ((topic, index), e) in outcome {
        let code = e.map_or(0, |e| fenced_for(e, ctx.version, 2).code());
        let result = AddPartitionsToTxnPartitionResult::default()
            .with_partition_index(index)
            .with_partition_error_code(code);
        match by_topic.iter_mut().find(|t| t.name.0.as_str() == topic) {
            Some(t) => t.results_by_partition.push(result),
            None => by_topic.push(
                AddPartitionsToTxnTopicResult::default()
                    .with_name(TopicName(crate::server::dispatch::sb(topic)))
                    .with_results_by_partition(vec![result]),
            ),
        }
    }
    by_topic
}

/// AddPartitionsToTxn: v0–3 from a producer (one transaction), v4+ from brokers (several,
/// possibly verify-only: KIP-890's check that a partition is in its transaction).
pub async fn add_partitions_to_txn(
    ctx: &Ctx<'_>,
    req: AddPartitionsToTxnRequest,
) -> Option<AddPartitionsToTxnResponse> {
    if ctx.version <= 3 {
        let results = add_partitions(
            ctx,
            &req.v3_and_below_transactional_id.0,
            req.v3_and_below_producer_id.0,
            req.v3_and_below_producer_epoch,
            &req.v3_and_below_topics,
            false,
        )
        .await;
        return Some(
            AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results),
        );
    }
    if !ctx.authorized(Operation::ClusterAction, Resource::cluster()) {
        return Some(
            AddPartitionsToTxnResponse::default()
                .with_error_code(ResponseError::ClusterAuthorizationFailed.code()),
        );
    }
    let mut results = Vec::with_capacity(req.transactions.len());
    for t in &req.transactions {
        let topics = add_partitions(
            ctx,
            &t.transactional_id.0,
            t.producer_id.0,
            t.producer_epoch,
            &t.topics,
            t.verify_only,
        )
        .await;
        results.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(t.transactional_id.clone())
                .with_topic_results(topics),
        );
    }
    Some(AddPartitionsToTxnResponse::default().with_results_by_transaction(results))
}

/// AddOffsetsToTxn: the group's offsets partition joins the transaction, so that offsets
/// committed in it (TxnOffsetCommit) end with it.
pub async fn add_offsets_to_txn(
    ctx: &Ctx<'_>,
    req: AddOffsetsToTxnRequest,
) -> Option<AddOffsetsToTxnResponse> {
    let group = req.group_id.0.to_string();
    let id = req.transactional_id.0.to_string();
    let error = if let Some(e) = txn_denied(ctx, &id) {
        Some(e)
    } else if let Some(e) = group_denied(ctx, Operation::Read, &group) {
        Some(e)
    } else {
        let groups = Arc::clone(&ctx.broker.groups);
        match super::blocking(move || groups.ensure_offsets_topic()).await {
            Some(Ok(count)) => {
                let partition = (
                    CONSUMER_OFFSETS.to_string(),
                    offsets_log::partition_for(&group, count),
                );
                ctx.broker
                    .txns
                    .add_partitions(&id, req.producer_id.0, req.producer_epoch, &[partition])
                    .await
                    .err()
            }
            _ => Some(ResponseError::CoordinatorNotAvailable),
        }
    };
    let code = error.map_or(0, |e| fenced_for(e, ctx.version, 2).code());
    Some(AddOffsetsToTxnResponse::default().with_error_code(code))
}

/// EndTxn: commit or abort. v5 is `transaction.version` 2: the epoch moves on, and the
/// answer carries the producer id and epoch to go on with.
pub async fn end_txn(ctx: &Ctx<'_>, req: EndTxnRequest) -> Option<EndTxnResponse> {
    let id = req.transactional_id.0.to_string();
    let outcome = match txn_denied(ctx, &id) {
        Some(e) => Err(e),
        None => {
            ctx.broker
                .txns
                .end_txn(
                    &id,
                    (req.producer_id.0, req.producer_epoch),
                    req.committed,
                    ctx.version >= 5,
                    END_TXN_WAIT,
                )
                .await
        }
    };
    let (code, (producer_id, epoch)) = match outcome {
        Ok(identity) => (0, identity),
        Err(e) => (fenced_for(e, ctx.version, 2).code(), (-1, -1)),
    };
    Some(
        EndTxnResponse::default()
            .with_error_code(code)
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(epoch),
    )
}

/// TxnOffsetCommit: a transactional producer commits a group's offsets; they become the
/// group's only when its transaction commits.
pub async fn txn_offset_commit(
    ctx: &Ctx<'_>,
    req: TxnOffsetCommitRequest,
) -> Option<TxnOffsetCommitResponse> {
    let group = req.group_id.0.to_string();
    let id = req.transactional_id.0.to_string();
    let groups = &ctx.broker.groups;
    let mut error = txn_denied(ctx, &id).or_else(|| group_denied(ctx, Operation::Read, &group));
    if error.is_none() && !groups.coordinates(&group) {
        error = Some(ResponseError::NotCoordinator);
    }
    // A producer that passed its consumer's group metadata (v3+) is checked as a member is.
    if error.is_none() && (req.generation_id >= 0 || !req.member_id.is_empty()) {
        let member = (req.member_id.as_str(), req.group_instance_id.as_deref());
        error = groups.validate_commit(&group, member, req.generation_id);
    }
    // v5 is `transaction.version` 2: the group's offsets partition joins the transaction
    // here, the producer sends no AddOffsetsToTxn.
    if error.is_none() && ctx.version >= 5 {
        error =
            add_offsets_partition(ctx, &id, &group, (req.producer_id.0, req.producer_epoch)).await;
    }
    let now = now_ms();
    let topics: Vec<TopicOffsets> = req
        .topics
        .iter()
        .map(|t| {
            let parts = t.partitions.iter().map(|p| {
                let value = committed(
                    p.committed_offset,
                    p.committed_leader_epoch,
                    p.committed_metadata.as_deref(),
                    now,
                );
                (p.partition_index, value)
            });
            (t.name.0.to_string(), parts.collect())
        })
        .collect();
    let producer = Some((req.producer_id.0, req.producer_epoch));
    let outcome = store_offsets(ctx, &group, error, topics, producer).await;
    let topics = req
        .topics
        .iter()
        .zip(outcome)
        .map(|(t, parts)| {
            let parts = parts.into_iter().map(|(index, e)| {
                TxnOffsetCommitResponsePartition::default()
                    .with_partition_index(index)
                    .with_error_code(e.map_or(0, |e| fenced_for(e, ctx.version, 3).code()))
            });
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(parts.collect())
        })
        .collect();
    Some(TxnOffsetCommitResponse::default().with_topics(topics))
}

/// Adds `group`'s offsets partition to the producer's transaction, through its coordinator
/// wherever that is; a coordinator that cannot answer yet, or is busy ending the previous
/// transaction, is CONCURRENT_TRANSACTIONS, which the producer retries.
async fn add_offsets_partition(
    ctx: &Ctx<'_>,
    transactional_id: &str,
    group: &str,
    producer: (i64, i16),
) -> Option<ResponseError> {
    let count = ctx
        .broker
        .cluster
        .topic(CONSUMER_OFFSETS)
        .map(|t| t.partition_count())?;
    let partition = (
        CONSUMER_OFFSETS.to_string(),
        offsets_log::partition_for(group, count),
    );
    let answers = ctx
        .broker
        .txns
        .verify_or_add(transactional_id, producer, &[partition], true)
        .await;
    match answers.into_iter().next().flatten() {
        Some(
            ResponseError::NotCoordinator
            | ResponseError::CoordinatorNotAvailable
            | ResponseError::CoordinatorLoadInProgress,
        ) => Some(ResponseError::ConcurrentTransactions),
        e => e,
    }
}

/// WriteTxnMarkers, from a transaction coordinator on another broker: writes each marker into
/// the partitions this broker leads.
pub async fn write_txn_markers(
    ctx: &Ctx<'_>,
    req: WriteTxnMarkersRequest,
) -> Option<WriteTxnMarkersResponse> {
    let allowed = ctx.authorized(Operation::ClusterAction, Resource::cluster());
    let mut results = Vec::with_capacity(req.markers.len());
    for m in &req.markers {
        let marker = if m.transaction_result {
            Marker::Commit
        } else {
            Marker::Abort
        };
        let mut topics = Vec::with_capacity(m.topics.len());
        for t in &m.topics {
            let mut partitions = Vec::with_capacity(t.partition_indexes.len());
            for &index in &t.partition_indexes {
                let e = if allowed {
                    write_marker(
                        &ctx.broker.cluster,
                        &ctx.broker.groups,
                        &t.name.0,
                        index,
                        m.producer_id.0,
                        m.producer_epoch,
                        marker,
                        m.coordinator_epoch,
                    )
                    .await
                    .err()
                } else {
                    Some(ResponseError::ClusterAuthorizationFailed)
                };
                partitions.push(
                    WritableTxnMarkerPartitionResult::default()
                        .with_partition_index(index)
                        .with_error_code(e.map_or(0, |e| e.code())),
                );
            }
            topics.push(
                WritableTxnMarkerTopicResult::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions),
            );
        }
        results.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(m.producer_id)
                .with_topics(topics),
        );
    }
    Some(WriteTxnMarkersResponse::default().with_markers(results))
}

/// DescribeTransactions: the state of each transactional id this node coordinates.
pub async fn describe_transactions(
    ctx: &Ctx<'_>,
    req: DescribeTransactionsRequest,
) -> Option<DescribeTransactionsResponse> {
    use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
    let states = req
        .transactional_ids
        .iter()
        .map(|id| {
            let base = TransactionState::default()
                .with_transactional_id(id.clone())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
                .with_transaction_start_time_ms(-1);
            let found = if ctx.authorized(Operation::Describe, Resource::transactional_id(id)) {
                ctx.broker.txns.lookup(id)
            } else {
                Err(ResponseError::TransactionalIdAuthorizationFailed)
            };
            let meta = match found {
                Ok(meta) => meta,
                Err(e) => return base.with_error_code(e.code()),
            };
            let mut topics: Vec<TopicData> = Vec::new();
            for (topic, index) in &meta.partitions {
                if !ctx.authorized(Operation::Describe, Resource::topic(topic)) {
                    continue;
                }
                match topics.iter_mut().find(|t| t.topic.0.as_str() == topic) {
                    Some(t) => t.partitions.push(*index),
                    None => topics.push(
                        TopicData::default()
                            .with_topic(TopicName(crate::server::dispatch::sb(topic.clone())))
                            .with_partitions(vec![*index]),
                    ),
                }
            }
            base.with_transaction_state(crate::server::dispatch::sb(meta.state.name().to_string()))
                .with_transaction_timeout_ms(meta.timeout_ms)
                .with_transaction_start_time_ms(meta.start_ms)
                .with_producer_id(ProducerId(meta.producer_id))
                .with_producer_epoch(meta.producer_epoch)
                .with_topics(topics)
        })
        .collect();
    Some(DescribeTransactionsResponse::default().with_transaction_states(states))
}

/// ListTransactions: the transactional ids this node coordinates, filtered by state,
/// producer id, time running (v1+) and id pattern (v2+).
pub async fn list_transactions(
    ctx: &Ctx<'_>,
    req: ListTransactionsRequest,
) -> Option<ListTransactionsResponse> {
    use crate::transaction::log::TxnState;
    use kafka_protocol::messages::list_transactions_response::TransactionState;
    let mut states = Vec::new();
    let mut unknown = Vec::new();
    for f in &req.state_filters {
        match TxnState::ALL.iter().find(|s| s.name() == f.as_str()) {
            Some(s) => states.push(*s),
            None => unknown.push(f.clone()),
        }
    }
    let pattern = match req
        .transactional_id_pattern
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        None => None,
        Some(p) => match regex::Regex::new(&format!("^(?:{p})$")) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::debug!(client_id = %ctx.client_id, pattern = p, error = %e, "ListTransactions refused: bad pattern");
                return Some(
                    ListTransactionsResponse::default()
                        .with_error_code(ResponseError::InvalidRegularExpression.code()),
                );
            }
        },
    };
    let now = now_ms();
    let listed = ctx
        .broker
        .txns
        .describe(None)
        .into_iter()
        .filter(|(id, meta)| {
            (states.is_empty() || states.contains(&meta.state))
                && (req.producer_id_filters.is_empty()
                    || req
                        .producer_id_filters
                        .contains(&ProducerId(meta.producer_id)))
                && (req.duration_filter < 0
                    || (meta.start_ms >= 0 && now - meta.start_ms >= req.duration_filter))
                && pattern.as_ref().is_none_or(|r| r.is_match(id))
                && ctx.authorized(Operation::Describe, Resource::transactional_id(id))
        })
        .map(|(id, meta)| {
            TransactionState::default()
                .with_transactional_id(TransactionalId(crate::server::dispatch::sb(id)))
                .with_producer_id(ProducerId(meta.producer_id))
                .with_transaction_state(crate::server::dispatch::sb(meta.state.name().to_string()))
        })
        .collect();
    Some(
        ListTransactionsResponse::default()
            .with_unknown_state_filters(unknown)
            .with_transaction_states(listed),
    )
}

/// DescribeProducers: the producers each partition this node leads knows, with their open
/// transactions (what `kafka-transactions describe-producers` and `find-hanging` read).
pub async fn describe_producers(
    ctx: &Ctx<'_>,
    req: DescribeProducersRequest,
) -> Option<DescribeProducersResponse> {
    use kafka_protocol::messages::describe_producers_response::{
        PartitionResponse, ProducerState, TopicResponse,
    };
    let node = ctx.broker.node_id();
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let topic = ctx.broker.cluster.topic(&t.name.0);
            let denied = !ctx.authorized(Operation::Read, Resource::topic(&t.name.0));
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&index| {
                    let answer = PartitionResponse::default().with_partition_index(index);
                    let p = match super::led_partition(topic.as_ref(), denied, index, node) {
                        Ok(p) => p,
                        Err(e) => return answer.with_error_code(e.code()),
                    };
                    let Some(producers) = p.log().map(|log| log.active_producers()) else {
                        return answer.with_error_code(ResponseError::NotLeaderOrFollower.code());
                    };
                    answer.with_active_producers(
                        producers
                            .into_iter()
                            .map(|s| {
                                ProducerState::default()
                                    .with_producer_id(ProducerId(s.producer_id))
                                    .with_producer_epoch(i32::from(s.epoch))
                                    .with_last_sequence(s.last_sequence)
                                    .with_last_timestamp(s.last_timestamp)
                                    .with_coordinator_epoch(-1)
                                    .with_current_txn_start_offset(s.txn_start_offset)
                            })
                            .collect(),
                    )
                })
                .collect();
            TopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    Some(DescribeProducersResponse::default().with_topics(topics))
}
