//! Names, labels and owner references every child of a KafkaCluster carries.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::validate::{Pool, ValidatedCluster};

/// The label naming the pool a pod belongs to (`broker` or `controller`).
pub const POOL_LABEL: &str = "gregor.dev/pool";
/// The pod-template annotation carrying the hash of the pool's configuration: a change of
/// config changes the template, so the pods become stale and the operator rolls them.
pub const CONFIG_HASH_ANNOTATION: &str = "gregor.dev/config-hash";
/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "gregor-operator";
/// The label every child carries naming the operator that manages it: with an owner reference
/// to the cluster, what makes a child the operator's to delete once the spec no longer builds it.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "gregor-operator";

/// Labels selecting every pod of the cluster.
pub fn cluster_selector(cluster: &ValidatedCluster) -> BTreeMap<String, String> {
    selector_of(&cluster.name)
}

/// Labels selecting every pod (and every child) of the KafkaCluster named `name`, before its
/// spec is validated.
pub fn selector_of(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "gregor".to_string()),
        ("app.kubernetes.io/instance".to_string(), name.to_string()),
    ])
}

/// `labels` as a label selector query (`k=v,k=v`).
pub fn label_query(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Labels selecting the pods of one pool.
pub fn pool_selector(cluster: &ValidatedCluster, pool: &Pool) -> BTreeMap<String, String> {
    let mut labels = cluster_selector(cluster);
    labels.insert(POOL_LABEL.to_string(), pool.role.label().to_string());
    labels
}

/// Labels of every child object (not used in selectors, so they may change freely).
pub fn labels(cluster: &ValidatedCluster) -> BTreeMap<String, String> {
    let mut labels = cluster_selector(cluster);
    labels.insert(MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string());
    labels.insert(
        "app.kubernetes.io/part-of".to_string(),
        cluster.name.clone(),
    );
    labels
}

/// The owner reference tying a child to its KafkaCluster, so deleting the cluster deletes it.
pub fn owner(cluster: &ValidatedCluster) -> OwnerReference {
    OwnerReference {
        api_version: "gregor.dev/v1alpha1".into(),
        kind: "KafkaCluster".into(),
        name: cluster.name.clone(),
        uid: cluster.uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Metadata of a child named `name`.
pub fn meta(cluster: &ValidatedCluster, name: impl Into<String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(cluster.namespace.clone()),
        labels: Some(labels(cluster)),
        owner_references: Some(vec![owner(cluster)]),
        ..Default::default()
    }
}

/// A stable 64-bit FNV-1a hash in hex: the same input gives the same hash on every build and
/// platform (std's hasher promises neither).
pub fn stable_hash(parts: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}
