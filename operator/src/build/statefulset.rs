//! One StatefulSet per pool. Pods start in parallel (a quorum needs its voters up before any of
//! them is ready) and are never replaced by the StatefulSet controller (`OnDelete`): the
//! operator restarts them itself, one at a time, when they are stale.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    HTTPGetAction, ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SecretVolumeSource, SecurityContext,
    Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::objects::{meta, pool_selector, stable_hash, CONFIG_HASH_ANNOTATION};
use super::properties::{key, CONFIG_DIR};
use super::{rack, spread};
use crate::crd::cluster::Storage;
use crate::validate::{Pool, PoolRole, ValidatedCluster, CONTROLLER_PORT, REPLICATION_PORT};

/// The broker binary inside the image.
pub const GREGOR_BINARY: &str = "/usr/local/bin/gregor";
/// Uid and gid the nodes run as (not root).
pub const RUN_AS: i64 = 65532;
/// Time a pod gets between SIGTERM and SIGKILL: the broker's controlled shutdown is bounded at
/// 30 s, then it flushes and closes its logs.
pub const GRACE_SECONDS: i64 = 120;

/// The hash of a pool's configuration, as the pod template carries it. It must not depend on
/// the number of pods, or a scale step would make every running pod stale and roll them all:
/// so it covers the first pod's file (everything the pods share, which no pool is without)
/// and the only per-pod input besides the ordinal, the external addresses by node id (from
/// the spec, and those Kubernetes gave the Services). A new broker's external address does
/// change it, so with an external listener a scale-up rolls the running brokers once, after
/// the step.
pub fn config_hash(cluster: &ValidatedCluster, pool: &Pool, config: &ConfigMap) -> String {
    let data = config.data.clone().unwrap_or_default();
    // Comments are left out: they only say where things come from (the dynamic keys, say, whose
    // changes restart nothing).
    let first = pool
        .pods()
        .next()
        .and_then(|(_, pod)| data.get(&key(&pod)).cloned())
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let mut parts = vec![first];
    if let (Some(e), true) = (&cluster.external, pool.role.is_broker()) {
        parts.extend(e.advertised.iter().map(|(id, addr)| format!("{id}={addr}")));
        parts.extend(
            cluster
                .external_addresses
                .iter()
                .map(|(id, addr)| format!("service {id}={addr}")),
        );
    }
    stable_hash(&parts.iter().map(String::as_str).collect::<Vec<_>>())
}

/// The StatefulSet of `pool`; `config` is the cluster's rendered ConfigMap.
pub fn statefulset(cluster: &ValidatedCluster, pool: &Pool, config: &ConfigMap) -> StatefulSet {
    let selector = pool_selector(cluster, pool);
    let mut pod_labels = cluster.template.labels.clone();
    pod_labels.extend(selector.clone());
    let mut annotations = cluster.template.annotations.clone();
    annotations.insert(
        CONFIG_HASH_ANNOTATION.to_string(),
        config_hash(cluster, pool, config),
    );
    let (storage, resources) = match pool.role {
        PoolRole::Controller => (
            &cluster.controller_storage,
            cluster.controller_resources.clone(),
        ),
        _ => (&cluster.storage, cluster.resources.clone()),
    };
    let properties = format!("{CONFIG_DIR}/$(POD_NAME).properties");
    let mut env = vec![field_env("POD_NAME", "metadata.name")];
    let node_port = matches!(
        &cluster.external,
        Some(e) if e.kind == crate::crd::cluster::ExternalType::NodePort
    );
    if node_port && pool.role.is_broker() {
        // A NodePort listener is advertised at the node's address (`${env:HOST_IP}`).
        env.push(field_env(super::properties::HOST_IP_ENV, "status.hostIP"));
    }
    let args = vec!["server-start".to_string(), properties.clone()];
    let rack = rack::applies(cluster, pool);
    let mut ports = vec![
        container_port("controller", CONTROLLER_PORT),
        container_port("metrics", cluster.metrics.port),
    ];
    if pool.role.is_broker() {
        ports.insert(0, container_port("kafka", cluster.port));
        if cluster.secured {
            ports.push(container_port("replication", REPLICATION_PORT));
        }
        if let Some(e) = &cluster.external {
            ports.push(container_port("external", e.port));
        }
    }
    let mut mounts = vec![
        VolumeMount {
            name: "data".into(),
            mount_path: "/var/lib/gregor".into(),
            ..Default::default()
        },
        VolumeMount {
            name: "config".into(),
            mount_path: CONFIG_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        },
    ];
    let mut volumes = vec![Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: cluster.config_map(),
            ..Default::default()
        }),
        ..Default::default()
    }];
    if rack {
        // The rack file the `rack` init container writes; the broker reads it, and so does
        // `format`, which resolves the same properties.
        mounts.push(rack::mount(true));
        volumes.push(rack::volume());
    }
    if cluster.secured {
        let (more_mounts, more_volumes) = certificate_volumes(cluster);
        mounts.extend(more_mounts);
        volumes.extend(more_volumes);
    }
    let security = SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let format = Container {
        name: "format".into(),
        image: Some(cluster.image.clone()),
        command: Some(vec![GREGOR_BINARY.into()]),
        // A dir formatted for another cluster fails here, loudly, and the pod never starts.
        args: Some(vec![
            "storage".into(),
            "format".into(),
            "--cluster-id".into(),
            cluster.cluster_id.clone(),
            "--config".into(),
            properties,
            "--ignore-formatted".into(),
        ]),
        // Loading the properties resolves their config providers (`${env:HOST_IP}`,
        // `${dir:...}`), so format sees what the broker sees.
        env: Some(env.iter().cloned().chain([termination_log_env()]).collect()),
        // The operator reports why a format failed from the message format writes, else
        // from the container's last log lines.
        termination_message_path: Some(TERMINATION_LOG.into()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        volume_mounts: Some(mounts.clone()),
        security_context: Some(security.clone()),
        resources: resources.clone(),
        ..Default::default()
    };
    // The rack is read first: a pod must not start without it.
    let mut init_containers = Vec::new();
    if rack {
        init_containers.extend(rack::init_container(cluster, &security, resources.clone()));
    }
    init_containers.push(format);
    let node = Container {
        name: "gregor".into(),
        image: Some(cluster.image.clone()),
        command: Some(vec![GREGOR_BINARY.into()]),
        args: Some(args),
        env: Some(env),
        ports: Some(ports),
        readiness_probe: Some(http_probe("/readyz", 5, 3)),
        liveness_probe: Some(Probe {
            initial_delay_seconds: Some(60),
            ..http_probe("/healthz", 10, 6)
        }),
        volume_mounts: Some(mounts),
        security_context: Some(security),
        resources,
        ..Default::default()
    };
    let template = &cluster.template;
    StatefulSet {
        metadata: meta(cluster, pool.name.clone()),
        spec: StatefulSetSpec {
            replicas: Some(pool.replicas),
            service_name: Some(cluster.headless_service()),
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                ..Default::default()
            }),
            selector: LabelSelector {
                match_labels: Some(selector),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(annotations),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    init_containers: Some(init_containers),
                    containers: vec![node],
                    termination_grace_period_seconds: Some(GRACE_SECONDS),
                    security_context: Some(PodSecurityContext {
                        run_as_user: Some(RUN_AS),
                        run_as_group: Some(RUN_AS),
                        fs_group: Some(RUN_AS),
                        run_as_non_root: Some(true),
                        ..Default::default()
                    }),
                    volumes: Some(volumes),
                    // Only the `rack` init container talks to the API server. The deprecated
                    // alias is applied too: the API server copies it into serviceAccountName
                    // when that is absent, so a name it kept would outlive a removed spec.rack.
                    service_account_name: rack.then(|| rack::service_account_name(cluster)),
                    service_account: rack.then(|| rack::service_account_name(cluster)),
                    automount_service_account_token: rack.then_some(true),
                    node_selector: non_empty(template.node_selector.clone()),
                    affinity: spread::affinity(cluster),
                    topology_spread_constraints: spread::constraints(cluster, pool),
                    tolerations: (!template.tolerations.is_empty())
                        .then(|| template.tolerations.clone()),
                    ..Default::default()
                }),
            },
            persistent_volume_claim_retention_policy: Some(claim_retention(storage)),
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some("data".into()),
                    labels: Some(pool_selector(cluster, pool)),
                    ..Default::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    storage_class_name: storage.storage_class_name.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "storage".to_string(),
                            Quantity(storage.size.clone()),
                        )])),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// What becomes of the claims, by `storage.deleteClaim`: deleted with the StatefulSet (so with
/// the KafkaCluster that owns it) and with the pods a scale-down removes, or kept in both cases.
/// The StatefulSet controller does it (it makes each claim owned by the StatefulSet or its pod),
/// so nothing is left to a finalizer of ours.
fn claim_retention(storage: &Storage) -> StatefulSetPersistentVolumeClaimRetentionPolicy {
    let policy = if storage.delete_claim {
        "Delete"
    } else {
        "Retain"
    };
    StatefulSetPersistentVolumeClaimRetentionPolicy {
        when_deleted: Some(policy.into()),
        when_scaled: Some(policy.into()),
    }
}

fn non_empty(map: BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    (!map.is_empty()).then_some(map)
}

/// Where an init container whose failure the operator reports writes its error: Kubernetes'
/// default `terminationMessagePath`, named in the container's spec and its environment (see
/// `gregor_client::termination`), so the pod's status has the message even when the kubelet
/// reads the log before the error line reaches it.
pub const TERMINATION_LOG: &str = "/dev/termination-log";

/// The environment variable telling a command where to write its error (`TERMINATION_LOG`).
pub(super) fn termination_log_env() -> EnvVar {
    EnvVar {
        name: gregor_client::termination::TERMINATION_LOG_ENV.into(),
        value: Some(TERMINATION_LOG.into()),
        ..Default::default()
    }
}

/// The node's certificate and the CAs' certificates of a secured cluster, mounted read-only.
/// Kubernetes updates a mounted Secret in place (one atomic swap of its files), and the broker
/// reloads its key and trust stores when their files change: a renewal restarts nothing.
fn certificate_volumes(cluster: &ValidatedCluster) -> (Vec<VolumeMount>, Vec<Volume>) {
    use super::properties::{CLIENTS_CA_DIR, CLUSTER_CA_DIR, NODE_CERTS_DIR};
    use crate::reconcile::certificates::{nodes_secret, Which};
    [
        ("node-certs", nodes_secret(&cluster.name), NODE_CERTS_DIR),
        (
            "cluster-ca",
            Which::Cluster.cert_secret(&cluster.name),
            CLUSTER_CA_DIR,
        ),
        (
            "clients-ca",
            Which::Clients.cert_secret(&cluster.name),
            CLIENTS_CA_DIR,
        ),
    ]
    .into_iter()
    .map(|(volume, secret, dir)| {
        let mount = VolumeMount {
            name: volume.into(),
            mount_path: dir.into(),
            read_only: Some(true),
            ..Default::default()
        };
        let volume = Volume {
            name: volume.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret),
                ..Default::default()
            }),
            ..Default::default()
        };
        (mount, volume)
    })
    .unzip()
}

/// An environment variable holding a field of the pod (downward API).
pub(super) fn field_env(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: field_path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("metrics".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}
