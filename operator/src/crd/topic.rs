//! The `KafkaTopic` custom resource: a topic of a `KafkaCluster` in the same namespace.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Condition;

/// Annotation that stops the operator managing a topic: with it set to `"false"` the resource
/// can be deleted and the topic stays in Kafka.
pub const MANAGED_ANNOTATION: &str = "gregor.dev/managed";

/// A Kafka topic, created and kept in line with this spec through the Kafka admin API.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "gregor.dev",
    version = "v1alpha1",
    kind = "KafkaTopic",
    namespaced,
    status = "KafkaTopicStatus",
    shortname = "kt",
    printcolumn = r#"{"name":"Cluster","type":"string","jsonPath":".spec.cluster"}"#,
    printcolumn = r#"{"name":"Partitions","type":"integer","jsonPath":".spec.partitions"}"#,
    printcolumn = r#"{"name":"Replication","type":"integer","jsonPath":".spec.replicationFactor"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct KafkaTopicSpec {
    /// Name of the KafkaCluster (same namespace) the topic lives in. It cannot change: the
    /// topic would stay behind in the first cluster.
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self == oldSelf",
        "message": "spec.cluster cannot change (the topic would stay behind in the old cluster): delete this KafkaTopic, annotated gregor.dev/managed: \"false\" to keep the topic, and create one for the other cluster"
    }]))]
    pub cluster: String,
    /// The topic's name in Kafka, when it differs from the resource's name (Kafka allows
    /// `_` and upper case, Kubernetes names do not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_name: Option<String>,
    /// Number of partitions; it can grow, never shrink.
    #[schemars(range(min = 1))]
    pub partitions: i32,
    /// Replicas of each partition.
    #[schemars(range(min = 1))]
    pub replication_factor: i32,
    /// Topic configuration (`retention.ms`, `cleanup.policy`, `min.insync.replicas`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
}

/// What the operator last saw and did.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaTopicStatus {
    /// Ready, with a reason when it is not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The topic's name in Kafka.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_name: Option<String>,
    /// The topic id Kafka gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<String>,
    /// Current number of partitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,
    /// Replica broker ids of each partition, by partition index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<Vec<i32>>,
}
