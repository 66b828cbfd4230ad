//! Rack awareness, as Strimzi does it: a broker's `broker.rack` is a label of the node its pod
//! runs on, which only the Node object carries (the PodTopologyLabels admission copies the
//! zone and region labels onto pods, no other). So an init container (`rack`, the operator
//! binary of the same image) reads the label through the API into a file on an emptyDir, and
//! the broker's `server.properties` takes it from there with Kafka's `DirectoryConfigProvider`
//! (`${dir:<RACK_DIR>:rack}`).
//!
//! Reading a Node takes cluster-scoped RBAC: the broker pods run as a ServiceAccount of their
//! own ([`service_account`], owned by the cluster), bound to the ClusterRole the chart
//! installs (nodes get) by a ClusterRoleBinding ([`cluster_role_binding`]). That binding is
//! cluster-scoped, so no owner reference can tie it to the namespaced KafkaCluster: the
//! reconcile deletes it, behind a finalizer.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, ResourceRequirements, SecurityContext, ServiceAccount, Volume,
    VolumeMount,
};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::objects::{labels, meta};
use super::statefulset::{field_env, termination_log_env, TERMINATION_LOG};
use crate::validate::{Pool, ValidatedCluster};

/// The operator binary inside the image (which holds both binaries).
pub const OPERATOR_BINARY: &str = "/usr/local/bin/gregor-operator";
/// Where the rack file's emptyDir is mounted, in the init container and the broker.
pub const RACK_DIR: &str = "/var/lib/gregor-rack";
/// The file in [`RACK_DIR`] holding the node label's value.
pub const RACK_FILE: &str = "rack";
/// The volume (and init container) name.
pub const VOLUME: &str = "rack";
/// The environment variable holding the pod's node name (downward API `spec.nodeName`).
pub const NODE_NAME_ENV: &str = "NODE_NAME";
/// Labels of a rack ClusterRoleBinding naming its KafkaCluster, since no owner reference can.
pub const CLUSTER_NAMESPACE_LABEL: &str = "gregor.dev/cluster-namespace";
/// See [`CLUSTER_NAMESPACE_LABEL`].
pub const CLUSTER_NAME_LABEL: &str = "gregor.dev/cluster-name";

/// Whether `pool`'s pods read their rack: brokers of a cluster with `spec.rack`.
pub fn applies(cluster: &ValidatedCluster, pool: &Pool) -> bool {
    cluster.rack.is_some() && pool.role.is_broker()
}

/// The ServiceAccount broker pods run as.
pub fn service_account_name(cluster: &ValidatedCluster) -> String {
    format!("{}-broker", cluster.name)
}

/// The ClusterRoleBinding of `namespace/name`'s broker pods. A namespace name has no dots (it
/// is a DNS label) and a ClusterRoleBinding's name may, so the first dot after the prefix ends
/// the namespace and no two clusters share a name (`a-b/c` and `a/b-c` would, with dashes).
pub fn cluster_role_binding_name(namespace: &str, name: &str) -> String {
    format!("gregor-rack.{namespace}.{name}")
}

/// The broker pods' ServiceAccount, when rack awareness is on.
pub fn service_account(cluster: &ValidatedCluster) -> Option<ServiceAccount> {
    cluster.rack.as_ref()?;
    Some(ServiceAccount {
        metadata: meta(cluster, service_account_name(cluster)),
        ..Default::default()
    })
}

/// The binding of the broker pods' ServiceAccount to `cluster_role` (nodes get), when rack
/// awareness is on. It carries the cluster's labels and two naming its namespace and name.
pub fn cluster_role_binding(
    cluster: &ValidatedCluster,
    cluster_role: &str,
) -> Option<ClusterRoleBinding> {
    cluster.rack.as_ref()?;
    let mut labels = labels(cluster);
    labels.extend(binding_labels(&cluster.namespace, &cluster.name));
    Some(ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(cluster_role_binding_name(&cluster.namespace, &cluster.name)),
            labels: Some(labels),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: cluster_role.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: service_account_name(cluster),
            namespace: Some(cluster.namespace.clone()),
            ..Default::default()
        }]),
    })
}

/// The init container writing the node's label value to `RACK_DIR/RACK_FILE`; it fails, and
/// the pod never starts, when the node lacks the label.
pub fn init_container(
    cluster: &ValidatedCluster,
    security: &SecurityContext,
    resources: Option<ResourceRequirements>,
) -> Option<Container> {
    let rack = cluster.rack.as_ref()?;
    Some(Container {
        name: VOLUME.into(),
        image: Some(cluster.image.clone()),
        command: Some(vec![OPERATOR_BINARY.into()]),
        args: Some(vec![
            "rack".into(),
            "--node".into(),
            format!("$({NODE_NAME_ENV})"),
            "--label".into(),
            rack.topology_key.clone(),
            "--out".into(),
            format!("{RACK_DIR}/{RACK_FILE}"),
        ]),
        env: Some(vec![
            field_env(NODE_NAME_ENV, "spec.nodeName"),
            termination_log_env(),
        ]),
        // The pod's status says which node lacks which label.
        termination_message_path: Some(TERMINATION_LOG.into()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        volume_mounts: Some(vec![mount(false)]),
        security_context: Some(security.clone()),
        resources,
        ..Default::default()
    })
}

/// The rack file's volume, mounted read-only (the broker, the format container) or not (the
/// init container writing it).
pub fn mount(read_only: bool) -> VolumeMount {
    VolumeMount {
        name: VOLUME.into(),
        mount_path: RACK_DIR.into(),
        read_only: read_only.then_some(true),
        ..Default::default()
    }
}

/// The emptyDir holding the rack file, shared by the pod's containers.
pub fn volume() -> Volume {
    Volume {
        name: VOLUME.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }
}

/// The `broker.rack` line's value: the rack file, through the `dir` config provider.
pub fn broker_rack() -> String {
    format!("${{dir:{RACK_DIR}:{RACK_FILE}}}")
}

/// The labels that make a ClusterRoleBinding the rack binding of `namespace/name`: the
/// reconcile deletes only a binding that carries them.
pub fn binding_labels(namespace: &str, name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (CLUSTER_NAMESPACE_LABEL.to_string(), namespace.to_string()),
        (CLUSTER_NAME_LABEL.to_string(), name.to_string()),
    ])
}
