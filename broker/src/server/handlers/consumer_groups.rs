//! The consumer group protocol (KIP-848) on the wire: ConsumerGroupHeartbeat and
//! ConsumerGroupDescribe, translating between topic ids and the names
//! [`crate::group::consumer`] assigns by.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment as DescribedAssignment, DescribedGroup, Member as DescribedMember,
    TopicPartitions as DescribedPartitions,
};
use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use std::sync::Arc;

use super::blocking;
use super::groups::group_denied;
use super::offsets::OFFSET_COMMIT_TIMEOUT;
use crate::authz::{Operation, Resource};
use crate::group::consumer::{Heartbeat, Refusal, TopicPartition};
use crate::group::Appended;
use crate::server::dispatch::{sb, Ctx};

/// ConsumerGroupHeartbeat: joins, heartbeats, reconciles and leaves a consumer-protocol group.
pub async fn consumer_group_heartbeat(
    ctx: &Ctx<'_>,
    req: ConsumerGroupHeartbeatRequest,
) -> Option<ConsumerGroupHeartbeatResponse> {
    let group = req.group_id.0.to_string();
    let refuse = |e: ResponseError, message: Option<String>| {
        if let Some(m) = &message {
            tracing::debug!(client_id = %ctx.client_id, group = %group, error = ?e, "ConsumerGroupHeartbeat refused: {m}");
        }
        Some(
            ConsumerGroupHeartbeatResponse::default()
                .with_error_code(e.code())
                .with_error_message(message.map(sb))
                .with_member_epoch(-1),
        )
    };
    if let Some(e) = group_denied(ctx, Operation::Read, &group) {
        return refuse(e, None);
    }
    if !ctx.broker.groups.coordinates(&group) {
        return refuse(ResponseError::NotCoordinator, None);
    }
    let cluster = &ctx.broker.cluster;
    let owned = req.topic_partitions.as_ref().map(|tps| {
        tps.iter()
            .filter_map(|tp| {
                cluster
                    .topic_by_id(tp.topic_id)
                    .map(|t| (t, &tp.partitions))
            })
            .flat_map(|(t, ps)| ps.iter().map(move |&p| (t.name.clone(), p)))
            .collect::<BTreeSet<TopicPartition>>()
    });
    let subscribed = req.subscribed_topic_names.as_ref().map(|names| {
        names
            .iter()
            .map(|n| n.0.to_string())
            // As Kafka: topics the member may not DESCRIBE are left out of its subscription.
            .filter(|n| ctx.authorized(Operation::Describe, Resource::topic(n)))
            .collect()
    });
    let hb = Heartbeat {
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.as_ref().map(|s| s.to_string()),
        rack_id: req.rack_id.as_ref().map(|s| s.to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed,
        regex: req.subscribed_topic_regex.as_ref().map(|s| s.to_string()),
        assignor: req.server_assignor.as_ref().map(|s| s.to_string()),
        owned,
        client_id: ctx.client_id.to_string(),
        client_host: format!("/{}", ctx.peer.ip()),
    };
    // What changed of the membership is written to `__consumer_offsets` (blocking) and
    // answered once the ISR has it, as Kafka's coordinator answers.
    let coordinator = Arc::clone(&ctx.broker.groups);
    let id = group.clone();
    let answer =
        match membership_written(ctx, move || coordinator.consumer_heartbeat(&id, hb)).await {
            Ok(a) => a,
            Err((e, message)) => return refuse(e, message),
        };
    let assignment = answer.assignment.map(|parts| {
        let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for (t, p) in parts {
            by_topic.entry(t).or_default().push(p);
        }
        Assignment::default().with_topic_partitions(
            by_topic
                .into_iter()
                .filter_map(|(t, ps)| {
                    let id = cluster.topic(&t)?.id;
                    Some(
                        TopicPartitions::default()
                            .with_topic_id(id)
                            .with_partitions(ps),
                    )
                })
                .collect(),
        )
    });
    Some(
        ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(sb(answer.member_id)))
            .with_member_epoch(answer.member_epoch)
            .with_heartbeat_interval_ms(cluster.config.group_consumer_heartbeat_interval_ms)
            .with_assignment(assignment),
    )
}

/// Topic partitions as ConsumerGroupDescribe lists them (ids and names).
fn described(ctx: &Ctx<'_>, parts: &BTreeSet<TopicPartition>) -> DescribedAssignment {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in parts {
        by_topic.entry(t).or_default().push(*p);
    }
    DescribedAssignment::default().with_topic_partitions(
        by_topic
            .into_iter()
            .filter_map(|(t, ps)| {
                let id = ctx.broker.cluster.topic(t)?.id;
                Some(
                    DescribedPartitions::default()
                        .with_topic_id(id)
                        .with_topic_name(TopicName(sb(t.to_string())))
                        .with_partitions(ps),
                )
            })
            .collect(),
    )
}

/// ConsumerGroupDescribe: what `kafka-consumer-groups --describe` shows of a consumer-protocol
/// group. A classic group, or none, is GROUP_ID_NOT_FOUND, as Kafka answers.
pub async fn consumer_group_describe(
    ctx: &Ctx<'_>,
    req: ConsumerGroupDescribeRequest,
) -> Option<ConsumerGroupDescribeResponse> {
    let groups = req
        .group_ids
        .iter()
        .map(|id| {
            let base = DescribedGroup::default()
                .with_group_id(id.clone())
                .with_authorized_operations(i32::MIN);
            if let Some(e) = group_denied(ctx, Operation::Describe, id) {
                return base.with_error_code(e.code());
            }
            if !ctx.broker.groups.coordinates(id) {
                return base.with_error_code(ResponseError::NotCoordinator.code());
            }
            let Some(g) = ctx.broker.groups.describe_consumer_group(id) else {
                return base
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(sb(format!(
                        "group {} is not a consumer group",
                        id.0
                    ))));
            };
            let members = g
                .members
                .iter()
                .map(|(member_id, m)| {
                    let target = g.target.get(member_id).cloned().unwrap_or_default();
                    DescribedMember::default()
                        .with_member_id(sb(member_id.clone()))
                        .with_instance_id(m.instance_id.clone().map(sb))
                        .with_rack_id(m.rack_id.clone().map(sb))
                        .with_member_epoch(m.epoch)
                        .with_client_id(sb(m.client_id.clone()))
                        .with_client_host(sb(m.client_host.clone()))
                        .with_subscribed_topic_names(
                            m.subscribed
                                .iter()
                                .map(|t| TopicName(sb(t.clone())))
                                .collect(),
                        )
                        .with_subscribed_topic_regex(m.regex.clone().map(sb))
                        .with_assignment(described(ctx, &m.assigned))
                        .with_target_assignment(described(ctx, &target))
                        // Kafka's member types: 0 classic, 1 consumer.
                        .with_member_type(i8::from(m.classic.is_none()))
                })
                .collect();
            base.with_group_state(sb(g.state()))
                .with_group_epoch(g.epoch)
                .with_assignment_epoch(g.assignment_epoch)
                .with_assignor_name(sb(g.assignor.clone()))
                .with_members(members)
        })
        .collect();
    Some(ConsumerGroupDescribeResponse::default().with_groups(groups))
}

/// Runs a group coordinator's membership change `f` on the blocking pool and answers once the
/// ISR has what it wrote, as Kafka's coordinator answers a heartbeat that changed the group.
pub(super) async fn membership_written<T: Send + 'static>(
    ctx: &Ctx<'_>,
    f: impl FnOnce() -> Result<(T, Option<Appended>), Refusal> + Send + 'static,
) -> Result<T, (ResponseError, Option<String>)> {
    match blocking(f).await {
        Some(Ok((a, None))) => Ok(a),
        Some(Ok((a, Some(appended)))) => appended
            .committed(ctx.broker.node_id(), OFFSET_COMMIT_TIMEOUT)
            .await
            .map(|()| a)
            .map_err(|e| (e, Some("the group's new state was not replicated".into()))),
        Some(Err((e, message))) => Err((e, Some(message))),
        None => Err((ResponseError::CoordinatorNotAvailable, None)),
    }
}
