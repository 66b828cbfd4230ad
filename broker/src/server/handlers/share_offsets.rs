//! A share group's offsets as `kafka-share-groups` sees them (DescribeShareGroupOffsets,
//! AlterShareGroupOffsets, DeleteShareGroupOffsets, at the group coordinator), and the share
//! coordinator's state RPCs between brokers (ReadShareGroupState, WriteShareGroupState,
//! InitializeShareGroupState, DeleteShareGroupState). The share-partitions' state is at their
//! share coordinators ([`crate::share::coordinator`]); the leader of a partition holds the
//! live copy of what it serves.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::groups::group_denied;
use crate::authz::{Operation, Resource};
use crate::cluster::Partition;
use crate::server::dispatch::{sb, Ctx};
use crate::share::coordinator::Op;
use crate::share::state_log::{Snapshot, StateBatch, AVAILABLE};
use crate::share::Key;

/// How long a partition's leader has to tell its high watermark.
const LEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Why `group`'s share offsets cannot be read or changed here, if so.
fn share_group_refused(
    ctx: &Ctx<'_>,
    group: &str,
    op: Operation,
) -> Option<(ResponseError, String)> {
    if let Some(e) = group_denied(ctx, op, group) {
        return Some((e, format!("not authorized on group {group}")));
    }
    if !ctx.broker.groups.coordinates(group) {
        return Some((
            ResponseError::NotCoordinator,
            format!("this broker does not coordinate group {group}"),
        ));
    }
    match ctx.broker.groups.describe_share_group(group) {
        Some(_) => None,
        None if ctx.broker.groups.describe(group).is_some() => Some((
            ResponseError::GroupIdNotFound,
            format!("Group {group} is not a share group."),
        )),
        None => Some((
            ResponseError::GroupIdNotFound,
            format!("Group {group} not found."),
        )),
    }
}

/// Why `group`'s share offsets may not be changed now (it has members), if so.
fn non_empty(ctx: &Ctx<'_>, group: &str) -> Option<(ResponseError, String)> {
    ctx.broker
        .groups
        .describe_share_group(group)
        .filter(|g| !g.members.is_empty())
        .map(|_| {
            (
                ResponseError::NonEmptyGroup,
                format!("The group {group} has active members."),
            )
        })
}

/// KIP-1226's lag of a share-partition in state `s` whose high watermark is `hw`: the records
/// past its end, and those in flight not yet complete.
fn lag_of(s: &Snapshot, hw: i64) -> i64 {
    let end = s
        .batches
        .iter()
        .map(|b| b.last + 1)
        .max()
        .unwrap_or(s.start_offset)
        .max(s.start_offset);
    let available: i64 = s
        .batches
        .iter()
        .filter(|b| b.state == AVAILABLE && b.last >= s.start_offset)
        .map(|b| b.last - b.first.max(s.start_offset) + 1)
        .sum();
    (hw - end).max(0) + available
}

/// The start offset and lag of share-partition `key` (`-1`: not known): the live state when
/// this node leads the partition, else the persisted one, whose lag is measured against a
/// local replica's high watermark or, without one, the leader's (ListOffsets latest).
async fn offsets_of(ctx: &Ctx<'_>, key: &Key) -> Result<(i64, i64), ResponseError> {
    let groups = &ctx.broker.groups;
    let topic = ctx.broker.cluster.topic_by_id(key.1);
    let partition = topic.as_ref().and_then(|t| t.partition(key.2));
    let hw = partition
        .as_ref()
        .filter(|p| p.log().is_some())
        .map(|p| p.high_watermark());
    if let (Some(sp), Some(hw)) = (groups.shares.get(key), hw) {
        let sp = sp.lock();
        return Ok((sp.start_offset(), sp.lag(hw)));
    }
    let Some(s) = groups
        .share_states
        .call(key, Op::Read)
        .await?
        .filter(|s| s.start_offset >= 0)
    else {
        return Ok((-1, -1));
    };
    let hw = match (hw, &topic, &partition) {
        (Some(hw), _, _) => Some(hw),
        (None, Some(t), Some(p)) => leader_high_watermark(ctx, &t.name, p).await,
        _ => None,
    };
    Ok((s.start_offset, hw.map_or(-1, |hw| lag_of(&s, hw))))
}

/// The high watermark of `partition` of `topic` as its leader answers ListOffsets (latest),
/// or `None` when the leader cannot be asked.
async fn leader_high_watermark(ctx: &Ctx<'_>, topic: &str, partition: &Partition) -> Option<i64> {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let leader = partition.state().leader;
    let cluster = &ctx.broker.cluster;
    let mut client = crate::peer::connect_broker(cluster, leader, LEADER_TIMEOUT).await?;
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(sb(topic.to_string())))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition.index)
                .with_timestamp(-1)])]);
    let response = tokio::time::timeout(LEADER_TIMEOUT, client.send(request))
        .await
        .ok()?
        .map_err(|e| tracing::debug!(leader, error = %e, "ListOffsets for a share lag failed"))
        .ok()?;
    let p = response.topics.first()?.partitions.first()?;
    (p.error_code == 0).then_some(p.offset)
}

/// Every share-partition of `group` (topic name → partitions) this node can name: those it
/// serves or coordinates the state of, and those the group's members were ever assigned.
fn known_partitions(ctx: &Ctx<'_>, group: &str) -> BTreeMap<String, Vec<i32>> {
    let groups = &ctx.broker.groups;
    let cluster = &ctx.broker.cluster;
    let mut ids: BTreeSet<(Uuid, i32)> = groups
        .shares
        .of_group(group)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    ids.extend(
        groups
            .share_states
            .of_group(group)
            .into_iter()
            .map(|(k, _)| (k.1, k.2)),
    );
    let mut all: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    for (id, p) in ids {
        if let Some(t) = cluster.topic_by_id(id) {
            all.entry(t.name.clone()).or_default().insert(p);
        }
    }
    for (t, p) in groups.share_group_partitions(group) {
        all.entry(t).or_default().insert(p);
    }
    all.into_iter()
        .map(|(t, ps)| (t, ps.into_iter().collect()))
        .collect()
}

/// DescribeShareGroupOffsets: each share-partition's start offset and (v1) lag, `-1` where
/// the share-partition has no state yet.
pub async fn describe_share_group_offsets(
    ctx: &Ctx<'_>,
    req: DescribeShareGroupOffsetsRequest,
) -> Option<DescribeShareGroupOffsetsResponse> {
    use kafka_protocol::messages::describe_share_group_offsets_response::{
        DescribeShareGroupOffsetsResponseGroup as Group,
        DescribeShareGroupOffsetsResponsePartition as Part,
        DescribeShareGroupOffsetsResponseTopic as Topic,
    };
    let cluster = &ctx.broker.cluster;
    let mut groups = Vec::new();
    for g in &req.groups {
        let id = g.group_id.0.to_string();
        let base = Group::default().with_group_id(g.group_id.clone());
        if let Some((e, m)) = share_group_refused(ctx, &id, Operation::Describe) {
            groups.push(
                base.with_error_code(e.code())
                    .with_error_message(Some(sb(m))),
            );
            continue;
        }
        let wanted: BTreeMap<String, Vec<i32>> = match &g.topics {
            Some(topics) => topics
                .iter()
                .map(|t| (t.topic_name.0.to_string(), t.partitions.clone()))
                .collect(),
            None => known_partitions(ctx, &id),
        };
        let mut topics = Vec::new();
        for (name, ps) in wanted {
            let topic = cluster.topic(&name);
            let denied = !ctx.authorized(Operation::Describe, Resource::topic(&name));
            let mut parts = Vec::new();
            for p in ps {
                let base = Part::default()
                    .with_partition_index(p)
                    .with_start_offset(-1)
                    .with_leader_epoch(-1)
                    .with_lag(-1);
                let part = topic.as_ref().and_then(|t| t.partition(p));
                let fail = |e: ResponseError, m: String| {
                    base.clone()
                        .with_error_code(e.code())
                        .with_error_message(Some(sb(m)))
                };
                parts.push(match (&topic, part) {
                    _ if denied => fail(
                        ResponseError::TopicAuthorizationFailed,
                        format!("not authorized to describe topic {name}"),
                    ),
                    (Some(t), Some(part)) => match offsets_of(ctx, &(id.clone(), t.id, p)).await {
                        Ok((start, lag)) => base
                            .with_start_offset(start)
                            .with_lag(lag)
                            .with_leader_epoch(part.leader_epoch()),
                        Err(e) => fail(e, format!("the state of {name}-{p} is not available")),
                    },
                    _ => fail(
                        ResponseError::UnknownTopicOrPartition,
                        format!("partition {name}-{p} does not exist"),
                    ),
                });
            }
            topics.push(
                Topic::default()
                    .with_topic_name(TopicName(sb(name)))
                    .with_topic_id(topic.map_or(Uuid::nil(), |t| t.id))
                    .with_partitions(parts),
            );
        }
        groups.push(base.with_topics(topics));
    }
    Some(DescribeShareGroupOffsetsResponse::default().with_groups(groups))
}

/// AlterShareGroupOffsets (`kafka-share-groups --reset-offsets`): starts share-partitions of
/// an empty share group over at the given offsets, with a new state epoch at their share
/// coordinators (so a leader's older state is fenced and read again).
pub async fn alter_share_group_offsets(
    ctx: &Ctx<'_>,
    req: AlterShareGroupOffsetsRequest,
) -> Option<AlterShareGroupOffsetsResponse> {
    use kafka_protocol::messages::alter_share_group_offsets_response::{
        AlterShareGroupOffsetsResponsePartition as Part,
        AlterShareGroupOffsetsResponseTopic as Topic,
    };
    let group = req.group_id.0.to_string();
    let refused =
        share_group_refused(ctx, &group, Operation::Read).or_else(|| non_empty(ctx, &group));
    if let Some((e, m)) = refused {
        return Some(
            AlterShareGroupOffsetsResponse::default()
                .with_error_code(e.code())
                .with_error_message(Some(sb(m))),
        );
    }
    let cluster = &ctx.broker.cluster;
    let groups = &ctx.broker.groups;
    let mut topics = Vec::new();
    for t in &req.topics {
        let name = t.topic_name.0.to_string();
        let topic = cluster.topic(&name);
        let denied = !ctx.authorized(Operation::Read, Resource::topic(&name));
        let mut parts = Vec::new();
        for rp in &t.partitions {
            let base = Part::default().with_partition_index(rp.partition_index);
            let fail = |e: ResponseError, m: String| {
                base.clone()
                    .with_error_code(e.code())
                    .with_error_message(Some(sb(m)))
            };
            let index = rp.partition_index;
            let (Some(topic), false) = (
                topic.as_ref().filter(|t| t.partition(index).is_some()),
                denied,
            ) else {
                let e = if denied {
                    ResponseError::TopicAuthorizationFailed
                } else {
                    ResponseError::UnknownTopicOrPartition
                };
                parts.push(fail(e, format!("cannot reset {name}-{index}")));
                continue;
            };
            let key: Key = (group.clone(), topic.id, index);
            let outcome = async {
                let current = groups.share_states.call(&key, Op::Read).await?;
                let state_epoch = current.map_or(0, |s| s.state_epoch) + 1;
                let op = Op::Initialize {
                    state_epoch,
                    start_offset: rp.start_offset.max(0),
                };
                groups.share_states.call(&key, op).await
            }
            .await;
            groups.shares.forget(&key);
            parts.push(match outcome {
                Ok(_) => base,
                Err(e) => fail(e, format!("the state of {name}-{index} could not be reset")),
            });
        }
        topics.push(
            Topic::default()
                .with_topic_name(t.topic_name.clone())
                .with_topic_id(topic.map_or(Uuid::nil(), |t| t.id))
                .with_partitions(parts),
        );
    }
    Some(AlterShareGroupOffsetsResponse::default().with_responses(topics))
}

/// Deletes the persisted state of share-partitions `keys` and forgets them here; the first
/// error, if any.
pub async fn delete_states(ctx: &Ctx<'_>, keys: &[Key]) -> Option<ResponseError> {
    let groups = &ctx.broker.groups;
    let mut error = None;
    for key in keys {
        if let Err(e) = groups.share_states.call(key, Op::Delete).await {
            error.get_or_insert(e);
        }
        groups.shares.forget(key);
    }
    error
}

/// DeleteShareGroupOffsets: forgets an empty share group's state for whole topics, so they
/// start again from `share.auto.offset.reset`.
pub async fn delete_share_group_offsets(
    ctx: &Ctx<'_>,
    req: DeleteShareGroupOffsetsRequest,
) -> Option<DeleteShareGroupOffsetsResponse> {
    use kafka_protocol::messages::delete_share_group_offsets_response::DeleteShareGroupOffsetsResponseTopic as Topic;
    let group = req.group_id.0.to_string();
    let refused =
        share_group_refused(ctx, &group, Operation::Delete).or_else(|| non_empty(ctx, &group));
    if let Some((e, m)) = refused {
        return Some(
            DeleteShareGroupOffsetsResponse::default()
                .with_error_code(e.code())
                .with_error_message(Some(sb(m))),
        );
    }
    let cluster = &ctx.broker.cluster;
    let mut topics = Vec::new();
    for t in &req.topics {
        let name = t.topic_name.0.to_string();
        let base = Topic::default().with_topic_name(t.topic_name.clone());
        if !ctx.authorized(Operation::Read, Resource::topic(&name)) {
            topics.push(base.with_error_code(ResponseError::TopicAuthorizationFailed.code()));
            continue;
        }
        let Some(topic) = cluster.topic(&name) else {
            topics.push(
                base.with_error_code(ResponseError::UnknownTopicOrPartition.code())
                    .with_error_message(Some(sb(format!("topic {name} does not exist")))),
            );
            continue;
        };
        let keys: Vec<Key> = (0..topic.partition_count())
            .map(|p| (group.clone(), topic.id, p))
            .collect();
        let base = base.with_topic_id(topic.id);
        topics.push(match delete_states(ctx, &keys).await {
            None => base,
            Some(e) => base.with_error_code(e.code()),
        });
    }
    Some(DeleteShareGroupOffsetsResponse::default().with_responses(topics))
}

/// Share state RPCs come from other brokers: CLUSTER_ACTION on the cluster, as in Kafka.
fn peer_denied(ctx: &Ctx<'_>) -> Option<ResponseError> {
    (!ctx.authorized(Operation::ClusterAction, Resource::cluster()))
        .then_some(ResponseError::ClusterAuthorizationFailed)
}

/// Runs `op` on every partition of a share state RPC at this node's share coordinator: one
/// result per partition, `(topic, partition, state or error)`.
async fn each_partition(
    ctx: &Ctx<'_>,
    group: &str,
    parts: Vec<(Uuid, i32, Op)>,
) -> Vec<(Uuid, i32, Result<Option<Snapshot>, ResponseError>)> {
    let mut out = Vec::new();
    for (topic, partition, op) in parts {
        let result = match peer_denied(ctx) {
            Some(e) => Err(e),
            None => {
                let key: Key = (group.to_string(), topic, partition);
                ctx.broker.groups.share_states.local(&key, op).await
            }
        };
        out.push((topic, partition, result));
    }
    out
}

/// Results grouped by topic, in the order they came.
fn by_topic<T>(results: Vec<(Uuid, i32, T)>) -> Vec<(Uuid, Vec<(i32, T)>)> {
    let mut out: Vec<(Uuid, Vec<(i32, T)>)> = Vec::new();
    for (t, p, r) in results {
        match out.last_mut() {
            Some((last, v)) if *last == t => v.push((p, r)),
            _ => out.push((t, vec![(p, r)])),
        }
    }
    out
}

/// The reads a ReadShareGroupState or ReadShareGroupStateSummary request asks for.
macro_rules! reads {
    ($req:expr) => {
        $req.topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(move |p| (t.topic_id, p.partition, Op::Read))
            })
            .collect()
    };
}

/// ReadShareGroupState: a share-partition's persisted state (start offset -1: none).
pub async fn read_share_group_state(
    ctx: &Ctx<'_>,
    req: ReadShareGroupStateRequest,
) -> Option<ReadShareGroupStateResponse> {
    use kafka_protocol::messages::read_share_group_state_response as r;
    let results = each_partition(ctx, &req.group_id, reads!(req)).await;
    let results = by_topic(results)
        .into_iter()
        .map(|(topic, parts)| {
            r::ReadStateResult::default()
                .with_topic_id(topic)
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|(p, result)| {
                            let base = r::PartitionResult::default().with_partition(p);
                            match result {
                                Err(e) => base.with_error_code(e.code()).with_start_offset(-1),
                                Ok(None) => base.with_start_offset(-1).with_state_epoch(0),
                                Ok(Some(s)) => base
                                    .with_state_epoch(s.state_epoch)
                                    .with_start_offset(s.start_offset)
                                    .with_state_batches(
                                        s.batches
                                            .iter()
                                            .map(|b| {
                                                r::StateBatch::default()
                                                    .with_first_offset(b.first)
                                                    .with_last_offset(b.last)
                                                    .with_delivery_state(b.state)
                                                    .with_delivery_count(b.deliveries)
                                            })
                                            .collect(),
                                    ),
                            }
                        })
                        .collect(),
                )
        })
        .collect();
    Some(ReadShareGroupStateResponse::default().with_results(results))
}

/// ReadShareGroupStateSummary (at the share coordinator): each share-partition's state and
/// leader epochs and start offset, without its in-flight batches (start offset -1 and state
/// epoch 0 for one with no state, as ReadShareGroupState answers).
pub async fn read_share_group_state_summary(
    ctx: &Ctx<'_>,
    req: ReadShareGroupStateSummaryRequest,
) -> Option<ReadShareGroupStateSummaryResponse> {
    use kafka_protocol::messages::read_share_group_state_summary_response as r;
    let results = each_partition(ctx, &req.group_id, reads!(req)).await;
    let results = by_topic(results)
        .into_iter()
        .map(|(topic, parts)| {
            let partitions = parts
                .into_iter()
                .map(|(p, result)| {
                    let base = r::PartitionResult::default()
                        .with_partition(p)
                        .with_start_offset(-1)
                        .with_leader_epoch(-1);
                    match result {
                        Err(e) => base.with_error_code(e.code()),
                        Ok(None) => base,
                        Ok(Some(s)) => base
                            .with_state_epoch(s.state_epoch)
                            .with_leader_epoch(s.leader_epoch)
                            .with_start_offset(s.start_offset),
                    }
                })
                .collect();
            r::ReadStateSummaryResult::default()
                .with_topic_id(topic)
                .with_partitions(partitions)
        })
        .collect();
    Some(ReadShareGroupStateSummaryResponse::default().with_results(results))
}

/// The per-partition answers of the share state RPCs that change state.
macro_rules! change_results {
    ($results:expr, $module:ident, $result:ident) => {
        by_topic($results)
            .into_iter()
            .map(|(topic, parts)| {
                $module::$result::default()
                    .with_topic_id(topic)
                    .with_partitions(
                        parts
                            .into_iter()
                            .map(|(p, result)| {
                                let base = $module::PartitionResult::default().with_partition(p);
                                match result {
                                    Ok(_) => base,
                                    Err(e) => base.with_error_code(e.code()),
                                }
                            })
                            .collect(),
                    )
            })
            .collect()
    };
}

/// WriteShareGroupState: a partition leader's new state of a share-partition.
pub async fn write_share_group_state(
    ctx: &Ctx<'_>,
    req: WriteShareGroupStateRequest,
) -> Option<WriteShareGroupStateResponse> {
    use kafka_protocol::messages::write_share_group_state_response as r;
    let parts = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                let op = Op::Write {
                    state_epoch: p.state_epoch,
                    leader_epoch: p.leader_epoch,
                    start_offset: p.start_offset,
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
                };
                (t.topic_id, p.partition, op)
            })
        })
        .collect();
    let results = each_partition(ctx, &req.group_id, parts).await;
    Some(
        WriteShareGroupStateResponse::default().with_results(change_results!(
            results,
            r,
            WriteStateResult
        )),
    )
}

/// InitializeShareGroupState: a share-partition starts over (AlterShareGroupOffsets).
pub async fn initialize_share_group_state(
    ctx: &Ctx<'_>,
    req: InitializeShareGroupStateRequest,
) -> Option<InitializeShareGroupStateResponse> {
    use kafka_protocol::messages::initialize_share_group_state_response as r;
    let parts = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                let op = Op::Initialize {
                    state_epoch: p.state_epoch,
                    start_offset: p.start_offset,
                };
                (t.topic_id, p.partition, op)
            })
        })
        .collect();
    let results = each_partition(ctx, &req.group_id, parts).await;
    Some(
        InitializeShareGroupStateResponse::default().with_results(change_results!(
            results,
            r,
            InitializeStateResult
        )),
    )
}

/// DeleteShareGroupState: a share-partition's state is dropped (its group or offsets deleted).
pub async fn delete_share_group_state(
    ctx: &Ctx<'_>,
    req: DeleteShareGroupStateRequest,
) -> Option<DeleteShareGroupStateResponse> {
    use kafka_protocol::messages::delete_share_group_state_response as r;
    let parts = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.topic_id, p.partition, Op::Delete))
        })
        .collect();
    let results = each_partition(ctx, &req.group_id, parts).await;
    Some(
        DeleteShareGroupStateResponse::default().with_results(change_results!(
            results,
            r,
            DeleteStateResult
        )),
    )
}
