//! Metadata and DescribeCluster: this node, its topics and partitions (auto-creating topics
//! when `auto.create.topics.enable` and the client allow it).

use std::sync::Arc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::metadata_response::*;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::{admin_error_code, blocking};
use crate::cluster::{topic_config::validate_topic_name, NewTopic, Topic};
use crate::server::dispatch::{sb, Ctx};

fn describe_topic(ctx: &Ctx<'_>, t: &Topic) -> MetadataResponseTopic {
    let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
    let partitions = t
        .partitions
        .read()
        .iter()
        .map(|p| {
            let s = p.state();
            // A partition no replica may lead now (all of its ISR fenced).
            let error = if s.leader < 0 {
                ResponseError::LeaderNotAvailable.code()
            } else {
                0
            };
            let out = MetadataResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(p.index)
                .with_leader_id(BrokerId(s.leader))
                .with_replica_nodes(ids(&s.replicas))
                .with_isr_nodes(ids(&s.isr));
            // The leader epoch is in the response from v7.
            if ctx.version >= 7 {
                out.with_leader_epoch(s.leader_epoch)
            } else {
                out
            }
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(sb(t.name.clone()))))
        .with_topic_id(t.id)
        .with_is_internal(t.is_internal())
        .with_partitions(partitions)
}

fn topic_error(name: Option<String>, id: uuid::Uuid, e: ResponseError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(name.map(|n| TopicName(sb(n))))
        .with_topic_id(id)
        .with_error_code(e.code())
}

/// Metadata.
pub async fn metadata(ctx: &Ctx<'_>, req: MetadataRequest) -> Option<MetadataResponse> {
    let cluster = &ctx.broker.cluster;
    let all = match &req.topics {
        None => true,
        Some(t) => t.is_empty() && ctx.version == 0,
    };
    let auto_create = cluster.config.auto_create_topics_enable
        && (ctx.version < 4 || req.allow_auto_topic_creation);
    let mut topics = Vec::new();
    if all {
        for t in cluster.topics() {
            topics.push(describe_topic(ctx, &t));
        }
    } else {
        for rt in req.topics.unwrap_or_default() {
            let name = rt.name.map(|n| n.0.to_string());
            let Some(name) = name else {
                match cluster.topic_by_id(rt.topic_id) {
                    Some(t) => topics.push(describe_topic(ctx, &t)),
                    None => topics.push(topic_error(
                        None,
                        rt.topic_id,
                        ResponseError::UnknownTopicId,
                    )),
                }
                continue;
            };
            if let Some(t) = cluster.topic(&name) {
                topics.push(describe_topic(ctx, &t));
                continue;
            }
            if validate_topic_name(&name).is_err() {
                topics.push(topic_error(
                    Some(name),
                    rt.topic_id,
                    ResponseError::InvalidTopicException,
                ));
                continue;
            }
            if !auto_create {
                topics.push(topic_error(
                    Some(name),
                    rt.topic_id,
                    ResponseError::UnknownTopicOrPartition,
                ));
                continue;
            }
            let c = Arc::clone(cluster);
            let new = NewTopic {
                name: name.clone(),
                partitions: -1,
                replication_factor: -1,
                configs: Default::default(),
                assignments: None,
            };
            match blocking(move || c.create_topic(new, false)).await {
                Some(Ok(t)) => topics.push(describe_topic(ctx, &t)),
                Some(Err(crate::cluster::AdminError::TopicExists(_))) => match cluster.topic(&name)
                {
                    Some(t) => topics.push(describe_topic(ctx, &t)),
                    None => topics.push(topic_error(
                        Some(name),
                        rt.topic_id,
                        ResponseError::LeaderNotAvailable,
                    )),
                },
                Some(Err(e)) => {
                    tracing::warn!(topic = %name, error = %e, "auto-create failed");
                    topics.push(topic_error(Some(name), rt.topic_id, admin_error_code(&e)))
                }
                None => topics.push(topic_error(
                    Some(name),
                    rt.topic_id,
                    ResponseError::KafkaStorageError,
                )),
            }
        }
    }
    // Fenced brokers are left out, as Kafka does: clients stop connecting to them.
    let brokers = cluster
        .brokers()
        .into_iter()
        .filter(|(_, b)| !b.fenced)
        .map(|(id, b)| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(id))
                .with_host(sb(b.host))
                .with_port(i32::from(b.port))
                .with_rack(b.rack.map(sb))
        })
        .collect();
    Some(
        MetadataResponse::default()
            .with_brokers(brokers)
            .with_cluster_id(Some(sb(cluster.cluster_id.clone())))
            // As Kafka in KRaft mode: clients send admin requests to any broker, which forwards
            // them to the quorum, so the broker answering is a controller id that always
            // works (the active controller may be down or unknown to the client).
            .with_controller_id(BrokerId(ctx.broker.node_id()))
            .with_topics(topics),
    )
}

/// DescribeCluster.
pub async fn describe_cluster(
    ctx: &Ctx<'_>,
    _req: DescribeClusterRequest,
) -> Option<DescribeClusterResponse> {
    let cluster = &ctx.broker.cluster;
    let brokers = cluster
        .brokers()
        .into_iter()
        .filter(|(_, b)| !b.fenced)
        .map(|(id, b)| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(id))
                .with_host(sb(b.host))
                .with_port(i32::from(b.port))
                .with_rack(b.rack.map(sb))
        })
        .collect();
    Some(
        DescribeClusterResponse::default()
            .with_cluster_id(sb(cluster.cluster_id.clone()))
            // As Kafka in KRaft mode: clients send admin requests to any broker, which forwards
            // them to the quorum, so the broker answering is a controller id that always
            // works (the active controller may be down or unknown to the client).
            .with_controller_id(BrokerId(ctx.broker.node_id()))
            .with_brokers(brokers),
    )
}
