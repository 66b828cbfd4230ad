//! What a running cluster says about itself, for the roll planner's checks: every partition's
//! replicas and ISR with its topic's `min.insync.replicas` (Metadata, DescribeConfigs), and the
//! controller quorum's voters and how far each has caught up (DescribeQuorum).

use std::collections::{BTreeMap, BTreeSet};

use gregor_client::{ClientError, Cluster};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeQuorumRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::roll::{Health, PartitionHealth};

/// DescribeConfigs resource type of a topic.
const RESOURCE_TOPIC: i8 = 2;
/// The metadata log's name in DescribeQuorum.
const METADATA_TOPIC: &str = "__cluster_metadata";
/// Kafka's default `min.insync.replicas`, for a broker that does not say.
const DEFAULT_MIN_ISR: usize = 1;

/// Asks the brokers `access` reaches for the cluster's health.
pub async fn read(access: &crate::reconcile::access::Access) -> Result<Health, ClientError> {
    let mut cluster = access.cluster().await?;
    let metadata = cluster.metadata(None).await?;
    let mut partitions = Vec::new();
    let mut topics = Vec::new();
    for t in &metadata.topics {
        let Some(name) = t.name.as_ref().map(|n| n.0.to_string()) else {
            continue;
        };
        for p in &t.partitions {
            partitions.push(PartitionHealth {
                topic: name.clone(),
                partition: p.partition_index,
                replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                min_isr: DEFAULT_MIN_ISR,
            });
        }
        topics.push(name);
    }
    let min_isr = min_insync_replicas(&mut cluster, &topics).await?;
    for p in &mut partitions {
        if let Some(m) = min_isr.get(&p.topic) {
            p.min_isr = *m;
        }
    }
    let req = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC)))
        .with_partitions(vec![PartitionData::default()])]);
    let quorum = cluster.any().send(req).await?;
    let mut health = Health {
        partitions,
        ..Default::default()
    };
    if let Some(p) = quorum.topics.first().and_then(|t| t.partitions.first()) {
        if let Some(e) = ClientError::from_code(p.error_code, || "describing the quorum".into()) {
            return Err(e);
        }
        health.active_controller = (p.leader_id.0 >= 0).then_some(p.leader_id.0);
        health.voters = p.current_voters.iter().map(|v| v.replica_id.0).collect();
        health.caught_up = p
            .current_voters
            .iter()
            .filter(|v| v.log_end_offset >= p.high_watermark)
            .map(|v| v.replica_id.0)
            .collect::<BTreeSet<_>>();
    }
    Ok(health)
}

/// Each topic's effective `min.insync.replicas`.
async fn min_insync_replicas(
    cluster: &mut Cluster,
    topics: &[String],
) -> Result<BTreeMap<String, usize>, ClientError> {
    if topics.is_empty() {
        return Ok(BTreeMap::new());
    }
    let key = StrBytes::from_static_str("min.insync.replicas");
    let req = DescribeConfigsRequest::default().with_resources(
        topics
            .iter()
            .map(|t| {
                DescribeConfigsResource::default()
                    .with_resource_type(RESOURCE_TOPIC)
                    .with_resource_name(StrBytes::from_string(t.clone()))
                    .with_configuration_keys(Some(vec![key.clone()]))
            })
            .collect(),
    );
    let resp = cluster.any().send(req).await?;
    let mut out = BTreeMap::new();
    for r in resp.results {
        if r.error_code != 0 {
            continue;
        }
        let value = r
            .configs
            .iter()
            .find(|c| c.name == key)
            .and_then(|c| c.value.as_ref())
            .and_then(|v| v.parse().ok());
        if let Some(v) = value {
            out.insert(r.resource_name.to_string(), v);
        }
    }
    Ok(out)
}
