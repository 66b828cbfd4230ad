//! OffsetCommit and OffsetFetch (v8 batches several groups in one request).

use std::sync::Arc;

use kafka_protocol::messages::offset_commit_response::*;
use kafka_protocol::messages::offset_fetch_response::*;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::blocking;
use super::groups::group_denied;
use crate::authz::{Operation, Resource};
use crate::cluster::now_ms;
use crate::group::offsets_log::OffsetValue;
use crate::server::dispatch::{sb, Ctx};

/// `offsets.commit.timeout.ms`: how long a commit waits for the offsets partition's ISR.
pub(super) const OFFSET_COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// OffsetCommit.
pub async fn offset_commit(
    ctx: &Ctx<'_>,
    req: OffsetCommitRequest,
) -> Option<OffsetCommitResponse> {
    let group = req.group_id.0.to_string();
    let member = (req.member_id.as_str(), req.group_instance_id.as_deref());
    let mut error =
        ctx.broker
            .groups
            .validate_commit(&group, member, req.generation_id_or_member_epoch);
    if let Some(e) = group_denied(ctx, Operation::Read, &group) {
        error = Some(e);
    } else if group.is_empty() {
        error = Some(ResponseError::InvalidGroupId);
    } else if !ctx.broker.groups.coordinates(&group) {
        error = Some(ResponseError::NotCoordinator);
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
    let outcome = store_offsets(ctx, &group, error, topics, None).await;
    let topics = req
        .topics
        .iter()
        .zip(outcome)
        .map(|(t, parts)| {
            let parts = parts.into_iter().map(|(idx, e)| {
                OffsetCommitResponsePartition::default()
                    .with_partition_index(idx)
                    .with_error_code(e.map_or(0, |e| e.code()))
            });
            OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(parts.collect())
        })
        .collect();
    Some(OffsetCommitResponse::default().with_topics(topics))
}

/// An offset as committed at `now`.
pub(super) fn committed(
    offset: i64,
    leader_epoch: i32,
    metadata: Option<&str>,
    now: i64,
) -> OffsetValue {
    OffsetValue {
        offset,
        leader_epoch,
        metadata: metadata.unwrap_or_default().to_string(),
        commit_timestamp: now,
    }
}

/// A topic's offsets to commit: its name and (partition, offset) pairs.
pub(super) type TopicOffsets = (String, Vec<(i32, OffsetValue)>);

/// Stores a group's offsets, as OffsetCommit or (with `producer`) TxnOffsetCommit: each
/// partition answers `error` when given, TOPIC_AUTHORIZATION_FAILED without READ on its topic,
/// UNKNOWN_TOPIC_OR_PARTITION when it does not exist; the rest are written to the group's
/// offsets partition and answered once its ISR has them, as Kafka commits with acks=all.
/// Returns each topic's (partition, error), in the order given.
pub(super) async fn store_offsets(
    ctx: &Ctx<'_>,
    group: &str,
    error: Option<ResponseError>,
    topics: Vec<TopicOffsets>,
    producer: Option<(i64, i16)>,
) -> Vec<Vec<(i32, Option<ResponseError>)>> {
    let cluster = &ctx.broker.cluster;
    let mut accepted = Vec::new();
    let mut outcome: Vec<Vec<(i32, Option<ResponseError>)>> = Vec::with_capacity(topics.len());
    for (name, parts) in topics {
        let topic = cluster.topic(&name);
        let denied = !ctx.authorized(Operation::Read, Resource::topic(&name));
        let mut answers = Vec::with_capacity(parts.len());
        for (index, value) in parts {
            let e = if error.is_some() {
                error
            } else if denied {
                Some(ResponseError::TopicAuthorizationFailed)
            } else if topic.as_ref().and_then(|tp| tp.partition(index)).is_none() {
                Some(ResponseError::UnknownTopicOrPartition)
            } else {
                accepted.push(((name.clone(), index), value));
                None
            };
            answers.push((index, e));
        }
        outcome.push(answers);
    }
    if accepted.is_empty() {
        return outcome;
    }
    let coordinator = Arc::clone(&ctx.broker.groups);
    let g = group.to_string();
    let stored = blocking(move || match producer {
        None => coordinator.commit(&g, accepted),
        Some((id, epoch)) => coordinator.commit_in_transaction(&g, accepted, id, epoch),
    })
    .await;
    let failed = match stored {
        Some(Ok(None)) => None,
        Some(Ok(Some(a))) => a
            .committed(ctx.broker.node_id(), OFFSET_COMMIT_TIMEOUT)
            .await
            .err(),
        Some(Err(e)) => {
            tracing::warn!(group = %group, error = %e, "offset commit failed");
            Some(ResponseError::CoordinatorNotAvailable)
        }
        None => Some(ResponseError::CoordinatorNotAvailable),
    };
    if let Some(error) = failed {
        for (_, e) in outcome.iter_mut().flatten() {
            e.get_or_insert(error);
        }
    }
    outcome
}

type Committed = Vec<((String, i32), Option<OffsetValue>)>;

/// The group's committed offsets, leaving out topics the principal may not DESCRIBE.
fn fetch_group(ctx: &Ctx<'_>, group: &str, wanted: Option<Vec<(String, i32)>>) -> Committed {
    let mut committed = ctx.broker.groups.fetch_offsets(group, wanted);
    committed.retain(|((topic, _), _)| ctx.authorized(Operation::Describe, Resource::topic(topic)));
    committed
}

fn partition_fields(v: &Option<OffsetValue>) -> (i64, i32, String) {
    match v {
        Some(v) => (v.offset, v.leader_epoch, v.metadata.clone()),
        None => (-1, -1, String::new()),
    }
}

/// The partitions asked for, as (topic, partition); `None` asks for every committed one.
fn wanted<'a>(
    topics: Option<impl Iterator<Item = (&'a TopicName, &'a Vec<i32>)>>,
) -> Option<Vec<(String, i32)>> {
    topics.map(|ts| {
        ts.flat_map(|(name, parts)| parts.iter().map(move |p| (name.0.to_string(), *p)))
            .collect()
    })
}

/// One committed partition: (partition, offset, leader epoch, metadata).
type CommittedPartition = (i32, i64, i32, String);

/// Committed offsets grouped by topic, in the order fetched: (topic, [(partition, offset,
/// leader epoch, metadata)]). Shared by the per-group (v8+) and single-group layouts.
fn by_topic(committed: Committed) -> Vec<(String, Vec<CommittedPartition>)> {
    let mut out: Vec<(String, Vec<CommittedPartition>)> = Vec::new();
    for ((topic, p), v) in committed {
        if out.last().is_none_or(|(t, _)| *t != topic) {
            out.push((topic, Vec::new()));
        }
        let (o, e, m) = partition_fields(&v);
        if let Some((_, parts)) = out.last_mut() {
            parts.push((p, o, e, m));
        }
    }
    out
}

/// OffsetFetch.
pub async fn offset_fetch(ctx: &Ctx<'_>, req: OffsetFetchRequest) -> Option<OffsetFetchResponse> {
    if ctx.version >= 8 {
        let groups = req
            .groups
            .into_iter()
            .map(|g| {
                if let Some(e) = group_denied(ctx, Operation::Describe, &g.group_id.0) {
                    return OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(e.code());
                }
                if !ctx.broker.groups.coordinates(&g.group_id.0) {
                    return OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(ResponseError::NotCoordinator.code());
                }
                // v9+: a consumer-protocol member fetches with its member epoch.
                let stale = g
                    .member_id
                    .as_ref()
                    .filter(|_| g.member_epoch >= 0)
                    .and_then(|m| {
                        ctx.broker
                            .groups
                            .validate_member_epoch(&g.group_id.0, m, g.member_epoch)
                    });
                if let Some(e) = stale {
                    return OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(e.code());
                }
                let asked = wanted(
                    g.topics
                        .as_ref()
                        .map(|ts| ts.iter().map(|t| (&t.name, &t.partition_indexes))),
                );
                let unstable = unstable_offsets(ctx, &g.group_id.0, req.require_stable);
                let topics = by_topic(fetch_group(ctx, &g.group_id.0, asked))
                    .into_iter()
                    .map(|(topic, parts)| {
                        let parts = parts.into_iter().map(|(p, o, e, m)| {
                            let answer = OffsetFetchResponsePartitions::default()
                                .with_partition_index(p)
                                .with_committed_offset(o)
                                .with_committed_leader_epoch(e)
                                .with_metadata(Some(sb(m)));
                            match unstable(&topic, p) {
                                Some(e) => answer.with_committed_offset(-1).with_error_code(e),
                                None => answer,
                            }
                        });
                        OffsetFetchResponseTopics::default()
                            .with_name(TopicName(sb(topic.clone())))
                            .with_partitions(parts.collect())
                    })
                    .collect();
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_topics(topics)
            })
            .collect();
        return Some(OffsetFetchResponse::default().with_groups(groups));
    }
    if let Some(e) = group_denied(ctx, Operation::Describe, &req.group_id.0) {
        return Some(OffsetFetchResponse::default().with_error_code(e.code()));
    }
    if ctx.version >= 2 && !ctx.broker.groups.coordinates(&req.group_id.0) {
        return Some(
            OffsetFetchResponse::default().with_error_code(ResponseError::NotCoordinator.code()),
        );
    }
    let asked = wanted(
        req.topics
            .as_ref()
            .map(|ts| ts.iter().map(|t| (&t.name, &t.partition_indexes))),
    );
    let unstable = unstable_offsets(ctx, &req.group_id.0, req.require_stable);
    let topics = by_topic(fetch_group(ctx, &req.group_id.0, asked))
        .into_iter()
        .map(|(topic, parts)| {
            let parts = parts.into_iter().map(|(p, o, e, m)| {
                let answer = OffsetFetchResponsePartition::default()
                    .with_partition_index(p)
                    .with_committed_offset(o)
                    .with_committed_leader_epoch(e)
                    .with_metadata(Some(sb(m)));
                match unstable(&topic, p) {
                    Some(e) => answer.with_committed_offset(-1).with_error_code(e),
                    None => answer,
                }
            });
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(sb(topic.clone())))
                .with_partitions(parts.collect())
        })
        .collect();
    Some(OffsetFetchResponse::default().with_topics(topics))
}

/// For OffsetFetch with `require_stable` (KIP-447, what read_committed consumers send): the
/// UNSTABLE_OFFSET_COMMIT code of a partition whose offset is part of a transaction still
/// open, so the consumer waits for the transaction instead of starting from a stale offset.
fn unstable_offsets(
    ctx: &Ctx<'_>,
    group: &str,
    require_stable: bool,
) -> impl Fn(&str, i32) -> Option<i16> {
    let (groups, group) = (Arc::clone(&ctx.broker.groups), group.to_string());
    move |topic, partition| {
        let key = (topic.to_string(), partition);
        (require_stable && groups.has_pending_transaction(&group, Some(&key)))
            .then_some(ResponseError::UnstableOffsetCommit.code())
    }
}

/// OffsetDelete (`kafka-consumer-groups --delete-offsets`): removes a group's committed
/// offsets of the asked partitions. Needs DELETE on the group and READ on each topic; a topic
/// that does not exist is UNKNOWN_TOPIC_OR_PARTITION; a consumer group still subscribed to a
/// topic keeps that topic's offsets (GROUP_SUBSCRIBED_TO_TOPIC).
pub async fn offset_delete(
    ctx: &Ctx<'_>,
    req: OffsetDeleteRequest,
) -> Option<OffsetDeleteResponse> {
    use kafka_protocol::messages::offset_delete_response::*;
    let group = req.group_id.0.to_string();
    let refused =
        |e: ResponseError| Some(OffsetDeleteResponse::default().with_error_code(e.code()));
    if let Some(e) = group_denied(ctx, Operation::Delete, &group) {
        return refused(e);
    }
    if !ctx.broker.groups.coordinates(&group) {
        return refused(ResponseError::NotCoordinator);
    }
    // Each asked partition with the error it already has (authorization, unknown topic).
    let mut asked: Vec<crate::group::PartitionOutcome> = Vec::new();
    for t in &req.topics {
        let name = t.name.0.to_string();
        let error = if !ctx.authorized(Operation::Read, Resource::topic(&name)) {
            Some(ResponseError::TopicAuthorizationFailed)
        } else if ctx.broker.cluster.topic(&name).is_none() {
            Some(ResponseError::UnknownTopicOrPartition)
        } else {
            None
        };
        asked.extend(
            t.partitions
                .iter()
                .map(|p| ((name.clone(), p.partition_index), error)),
        );
    }
    let deletable: Vec<(String, i32)> = asked
        .iter()
        .filter(|(_, e)| e.is_none())
        .map(|(k, _)| k.clone())
        .collect();
    let coordinator = Arc::clone(&ctx.broker.groups);
    let deleted = match blocking(move || coordinator.delete_offsets(&group, deletable)).await? {
        Ok(deleted) => deleted,
        Err(e) => return refused(e),
    };
    let outcome: std::collections::BTreeMap<(String, i32), Option<ResponseError>> = asked
        .into_iter()
        .filter(|(_, e)| e.is_some())
        .chain(deleted)
        .collect();
    let mut topics: Vec<OffsetDeleteResponseTopic> = Vec::new();
    for ((topic, partition), error) in outcome {
        let result = OffsetDeleteResponsePartition::default()
            .with_partition_index(partition)
            .with_error_code(error.map_or(0, |e| e.code()));
        match topics.last_mut() {
            Some(last) if *last.name.0 == *topic => last.partitions.push(result),
            _ => topics.push(
                OffsetDeleteResponseTopic::default()
                    .with_name(TopicName(sb(topic)))
                    .with_partitions(vec![result]),
            ),
        }
    }
    Some(OffsetDeleteResponse::default().with_topics(topics))
}
