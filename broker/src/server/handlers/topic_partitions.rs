//! DescribeTopicPartitions (KIP-966): the partitions of the asked topics (all the principal
//! may describe when none are named), in topic-name order, at most
//! `response_partition_limit` per response with a cursor to the next one, as Kafka 4.x's admin
//! client asks for them to describe topics.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::metadata::leader_error;
use crate::authz::{Operation, Resource};
use crate::cluster::image::BrokerImage;
use crate::cluster::Topic;
use crate::server::dispatch::{sb, Ctx};

/// Kafka's `max.request.partition.size.limit` default: the most partitions one response
/// carries, whatever the request asks.
const MAX_PARTITIONS: i32 = 2000;

fn topic_entry(name: &str, error: ResponseError) -> DescribeTopicPartitionsResponseTopic {
    DescribeTopicPartitionsResponseTopic::default()
        .with_name(Some(TopicName(sb(name.to_string()))))
        .with_error_code(error.code())
}

/// INVALID_REQUEST on every asked topic, as Kafka answers a request it refuses whole.
fn invalid(
    req: &DescribeTopicPartitionsRequest,
    message: String,
) -> Option<DescribeTopicPartitionsResponse> {
    tracing::debug!("DescribeTopicPartitions refused: {message}");
    let topics = req
        .topics
        .iter()
        .map(|t| topic_entry(&t.name.0, ResponseError::InvalidRequest))
        .collect();
    Some(DescribeTopicPartitionsResponse::default().with_topics(topics))
}

/// The partitions of `t` from `first`, at most `room` of them, as the response lists them;
/// and whether some were left for the next response.
fn partitions(
    ctx: &Ctx<'_>,
    brokers: &BTreeMap<i32, BrokerImage>,
    t: &Topic,
    first: i32,
    room: usize,
) -> (Vec<DescribeTopicPartitionsResponsePartition>, Option<i32>) {
    let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
    let all = t.partitions.read();
    let mut left = all.iter().filter(|p| p.index >= first);
    let taken: Vec<_> = left
        .by_ref()
        .take(room)
        .map(|p| {
            let s = p.state();
            let error = leader_error(brokers, s.leader, ctx.listener, 12);
            DescribeTopicPartitionsResponsePartition::default()
                .with_error_code(error.map_or(0, |e| e.code()))
                .with_partition_index(p.index)
                .with_leader_id(BrokerId(if error.is_some() { -1 } else { s.leader }))
                .with_leader_epoch(s.leader_epoch)
                .with_replica_nodes(ids(&s.replicas))
                .with_isr_nodes(ids(&s.isr))
                // No eligible leader replicas (KIP-966's ELR is not implemented).
                .with_eligible_leader_replicas(Some(Vec::new()))
                .with_last_known_elr(Some(Vec::new()))
        })
        .collect();
    (taken, left.next().map(|p| p.index))
}

/// DescribeTopicPartitions: named topics the principal may not DESCRIBE are
/// TOPIC_AUTHORIZATION_FAILED and unknown ones UNKNOWN_TOPIC_OR_PARTITION; a full listing
/// leaves both out. A cursor names the topic and partition to start from, and must name one
/// of the asked topics.
pub async fn describe_topic_partitions(
    ctx: &Ctx<'_>,
    req: DescribeTopicPartitionsRequest,
) -> Option<DescribeTopicPartitionsResponse> {
    let cluster = &ctx.broker.cluster;
    let all = req.topics.is_empty();
    let (cursor_topic, cursor_partition) = req.cursor.as_ref().map_or((String::new(), 0), |c| {
        (c.topic_name.0.to_string(), c.partition_index)
    });
    if cursor_partition < 0 {
        let message = format!("the cursor's partition index {cursor_partition} is negative");
        return invalid(&req, message);
    }
    let mut names: Vec<String> = if all {
        cluster.topics().iter().map(|t| t.name.clone()).collect()
    } else {
        req.topics.iter().map(|t| t.name.0.to_string()).collect()
    };
    names.retain(|n| *n >= cursor_topic);
    names.sort();
    names.dedup();
    if req.cursor.is_some() && !all && !names.contains(&cursor_topic) {
        let message = format!("the cursor's topic {cursor_topic} is not one asked for");
        return invalid(&req, message);
    }
    let brokers = cluster.brokers();
    let mut room =
        usize::try_from(req.response_partition_limit.clamp(1, MAX_PARTITIONS)).unwrap_or(1);
    let mut topics = Vec::new();
    let mut refused = Vec::new();
    let mut next_cursor = None;
    for name in names {
        if !ctx.authorized(Operation::Describe, Resource::topic(&name)) {
            if !all {
                refused.push(topic_entry(&name, ResponseError::TopicAuthorizationFailed));
            }
            continue;
        }
        if room == 0 {
            next_cursor = Some(Cursor::default().with_topic_name(TopicName(sb(name))));
            break;
        }
        let Some(t) = cluster.topic(&name) else {
            if !all {
                topics.push(topic_entry(&name, ResponseError::UnknownTopicOrPartition));
            }
            continue;
        };
        let first = if name == cursor_topic {
            cursor_partition
        } else {
            0
        };
        let (listed, rest) = partitions(ctx, &brokers, &t, first, room);
        room -= listed.len();
        topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(TopicName(sb(name.clone()))))
                .with_topic_id(t.id)
                .with_is_internal(t.is_internal())
                .with_partitions(listed)
                .with_topic_authorized_operations(
                    ctx.authorized_operations(Resource::topic(&name)),
                ),
        );
        if let Some(index) = rest {
            next_cursor = Some(
                Cursor::default()
                    .with_topic_name(TopicName(sb(name)))
                    .with_partition_index(index),
            );
            break;
        }
    }
    topics.extend(refused);
    Some(
        DescribeTopicPartitionsResponse::default()
            .with_topics(topics)
            .with_next_cursor(next_cursor),
    )
}
