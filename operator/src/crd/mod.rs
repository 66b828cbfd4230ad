//! The custom resources of `gregor.dev/v1alpha1`, as Rust types from which `crdgen` writes the
//! CustomResourceDefinitions (`crds/`, `charts/gregor/crds/`).

pub mod cluster;
pub mod topic;
pub mod user;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use cluster::{KafkaCluster, KafkaClusterSpec, KafkaClusterStatus};
pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
pub use topic::{KafkaTopic, KafkaTopicSpec, KafkaTopicStatus};
pub use user::{KafkaUser, KafkaUserSpec, KafkaUserStatus};

/// Every CRD this operator serves, with the file name each is written to.
pub fn all() -> Vec<(&'static str, CustomResourceDefinition)> {
    vec![
        ("kafkaclusters.gregor.dev.yaml", KafkaCluster::crd()),
        ("kafkatopics.gregor.dev.yaml", KafkaTopic::crd()),
        ("kafkausers.gregor.dev.yaml", KafkaUser::crd()),
    ]
}

/// One CRD as the YAML document `crdgen` writes.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_saphyr::ser::Error> {
    serde_saphyr::to_string(crd)
}
