//! Metadata and DescribeCluster: this node, its topics and partitions (auto-creating topics
//! when `auto.create.topics.enable` and the client allow it).

use std::collections::BTreeMap;
use std::sync::Arc;

use gregor_client::names::validate_topic_name;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::metadata_response::*;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::{admin_error_code, blocking};
use crate::authz::{Operation, Resource};
use crate::cluster::image::BrokerImage;
use crate::cluster::{NewTopic, Topic};
use crate::server::dispatch::{sb, Ctx};

/// The error a partition led by `leader` shows to clients of `listener`, as Kafka answers: none
/// when the leader has that listener; LISTENER_NOT_FOUND (Metadata v6+, LEADER_NOT_AVAILABLE
/// before) when the leader is registered without it, a misconfiguration worth naming;
/// LEADER_NOT_AVAILABLE when there is no leader or it is not registered.
pub(crate) fn leader_error(
    brokers: &BTreeMap<i32, BrokerImage>,
    leader: i32,
    listener: &str,
    version: i16,
) -> Option<ResponseError> {
    match brokers.get(&leader) {
        _ if leader < 0 => Some(ResponseError::LeaderNotAvailable),
        None => Some(ResponseError::LeaderNotAvailable),
        Some(b) if b.endpoint(listener).is_some() => None,
        Some(_) if version >= 6 => Some(ResponseError::ListenerNotFound),
        Some(_) => Some(ResponseError::LeaderNotAvailable),
    }
}

fn describe_topic(
    ctx: &Ctx<'_>,
    brokers: &BTreeMap<i32, BrokerImage>,
    t: &Topic,
) -> MetadataResponseTopic {
    let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
    let partitions = t
        .partitions
        .read()
        .iter()
        .map(|p| {
            let s = p.state();
            // No leader (all of the ISR fenced), or one this listener's clients cannot reach.
            let error = leader_error(brokers, s.leader, ctx.listener, ctx.version);
            let leader = if error.is_some() { -1 } else { s.leader };
            let out = MetadataResponsePartition::default()
                .with_error_code(error.map_or(0, |e| e.code()))
                .with_partition_index(p.index)
                .with_leader_id(BrokerId(leader))
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

/// The brokers clients of `listener` can use, as (id, host, port, rack): unfenced ones with
/// that listener. As in Kafka, fenced brokers are left out (clients stop connecting to them),
/// and so are brokers without the listener.
fn reachable<'a>(
    brokers: &'a BTreeMap<i32, BrokerImage>,
    listener: &'a str,
) -> impl Iterator<Item = (i32, &'a str, i32, Option<&'a str>)> + 'a {
    brokers
        .iter()
        .filter(|(_, b)| !b.fenced)
        .filter_map(move |(id, b)| {
            let (host, port) = b.endpoint(listener)?;
            Some((*id, host, i32::from(port), b.rack.as_deref()))
        })
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
    let registered = cluster.brokers();
    let mut topics = Vec::new();
    let may_describe = |name: &str| ctx.authorized(Operation::Describe, Resource::topic(name));
    if all {
        // As Kafka: topics the principal may not DESCRIBE are left out of a full listing.
        for t in cluster
            .topics()
            .into_iter()
            .filter(|t| may_describe(&t.name))
        {
            topics.push(describe_topic(ctx, &registered, &t));
        }
    } else {
        for rt in req.topics.unwrap_or_default() {
            let name = rt.name.map(|n| n.0.to_string());
            let Some(name) = name else {
                match cluster.topic_by_id(rt.topic_id) {
                    Some(t) if !may_describe(&t.name) => topics.push(topic_error(
                        None,
                        rt.topic_id,
                        ResponseError::TopicAuthorizationFailed,
                    )),
                    Some(t) => topics.push(describe_topic(ctx, &registered, &t)),
                    None => topics.push(topic_error(
                        None,
                        rt.topic_id,
                        ResponseError::UnknownTopicId,
                    )),
                }
                continue;
            };
            // Named topics the principal may not DESCRIBE, or may not CREATE when they would
            // be auto-created, are answered TOPIC_AUTHORIZATION_FAILED whether they exist or not.
            let exists = cluster.topic(&name);
            let may_create = || exists.is_some() || !auto_create || ctx.may_create_topic(&name);
            if !may_describe(&name) || !may_create() {
                let e = ResponseError::TopicAuthorizationFailed;
                topics.push(topic_error(Some(name), rt.topic_id, e));
                continue;
            }
            if let Some(t) = exists {
                topics.push(describe_topic(ctx, &registered, &t));
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
                Some(Ok(t)) => topics.push(describe_topic(ctx, &registered, &t)),
                Some(Err(crate::cluster::AdminError::TopicExists(_))) => match cluster.topic(&name)
                {
                    Some(t) => topics.push(describe_topic(ctx, &registered, &t)),
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
    // KIP-430: what the principal may do with each topic (v8+) and the cluster (v8–10).
    if ctx.version >= 8 && req.include_topic_authorized_operations {
        for t in topics.iter_mut().filter(|t| t.error_code == 0) {
            if let Some(name) = &t.name {
                t.topic_authorized_operations = ctx.authorized_operations(Resource::topic(&name.0));
            }
        }
    }
    let cluster_operations =
        if (8..=10).contains(&ctx.version) && req.include_cluster_authorized_operations {
            ctx.authorized_operations(Resource::cluster())
        } else {
            i32::MIN
        };
    let brokers = reachable(&cluster.brokers(), ctx.listener)
        .map(|(id, host, port, rack)| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(id))
                .with_host(sb(host))
                .with_port(port)
                .with_rack(rack.map(sb))
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
            .with_cluster_authorized_operations(cluster_operations)
            .with_topics(topics),
    )
}

/// DescribeCluster. From v2 a client may ask for fenced brokers too (KIP-1073,
/// `include_fenced_brokers`), each marked `is_fenced`: how the operator finds brokers removed
/// for good that are still registered.
pub async fn describe_cluster(
    ctx: &Ctx<'_>,
    req: DescribeClusterRequest,
) -> Option<DescribeClusterResponse> {
    let cluster = &ctx.broker.cluster;
    let include_fenced = ctx.version >= 2 && req.include_fenced_brokers;
    let brokers = cluster
        .brokers()
        .into_iter()
        .filter(|(_, b)| include_fenced || !b.fenced)
        .filter_map(|(id, b)| {
            let (host, port) = b.endpoint(ctx.listener)?;
            Some(
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(id))
                    .with_host(sb(host))
                    .with_port(i32::from(port))
                    .with_rack(b.rack.clone().map(sb))
                    .with_is_fenced(b.fenced),
            )
        })
        .collect();
    Some(
        DescribeClusterResponse::default()
            .with_cluster_id(sb(cluster.cluster_id.clone()))
            // As Kafka in KRaft mode: clients send admin requests to any broker, which forwards
            // them to the quorum, so the broker answering is a controller id that always
            // works (the active controller may be down or unknown to the client).
            .with_controller_id(BrokerId(ctx.broker.node_id()))
            .with_cluster_authorized_operations(if req.include_cluster_authorized_operations {
                ctx.authorized_operations(Resource::cluster())
            } else {
                i32::MIN
            })
            .with_brokers(brokers),
    )
}
