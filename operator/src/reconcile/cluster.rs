//! A KafkaCluster: its id, its children applied in order, and its status from the StatefulSets
//! and pods as they are.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::conditions::{merge, Want};
use super::{cluster_id, Context, ReconcileError};
use crate::build::objects::{cluster_selector, FIELD_MANAGER};
use crate::build::{self, ClusterObjects};
use crate::crd::cluster::{KafkaClusterStatus, NodeStatus};
use crate::crd::KafkaCluster;
use crate::validate::{validate, ValidatedCluster};

/// How soon a cluster that is not ready yet is looked at again.
const SETTLING: Duration = Duration::from_secs(5);
/// How often a ready cluster is looked at again anyway (changes to children wake it sooner).
const STEADY: Duration = Duration::from_secs(300);

/// Reconciles one KafkaCluster.
pub async fn reconcile(kc: Arc<KafkaCluster>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let namespace = kc
        .namespace()
        .ok_or_else(|| ReconcileError::Malformed("a KafkaCluster without a namespace".into()))?;
    let name = kc.name_any();
    let client = &ctx.client;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let previous = kc.status.clone().unwrap_or_default();
    let record = cluster_id::read_record(&config_maps, &name).await?;
    let choice = match cluster_id::choose(
        kc.spec.cluster_id.as_deref(),
        record.as_deref(),
        previous.cluster_id.as_deref(),
        cluster_id::generate,
    ) {
        Ok(c) => c,
        Err(message) => return invalid(&kc, client, &previous, message).await,
    };
    let cluster = match validate(&kc, &choice.id, &ctx.default_image) {
        Ok(c) => c,
        Err(e) => return invalid(&kc, client, &previous, e.to_string()).await,
    };
    if choice.record {
        cluster_id::write_record(&config_maps, &cluster).await?;
        tracing::info!(cluster = %name, cluster_id = %cluster.cluster_id, "cluster id chosen");
    }
    let objects = build::cluster(&cluster);
    apply_all(client, &namespace, &objects).await?;

    let statefulsets: Vec<StatefulSet> = {
        let api: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
        let mut out = Vec::new();
        for pool in &cluster.pools {
            if let Some(s) = api.get_opt(&pool.name).await? {
                out.push(s);
            }
        }
        out
    };
    let pods: Vec<Pod> = {
        let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        let selector = cluster_selector(&cluster)
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        api.list(&ListParams::default().labels(&selector))
            .await?
            .items
    };
    let status = observe(
        &cluster,
        &statefulsets,
        &pods,
        &previous,
        kc.metadata.generation,
    );
    let ready = status.ready_replicas == cluster.pools.iter().map(|p| p.replicas).sum::<i32>();
    patch_status(client, &kc, status).await?;
    Ok(Action::requeue(if ready { STEADY } else { SETTLING }))
}

/// Applies every child in the written order: configuration and Services before the
/// StatefulSets whose pods read and need them, the PodDisruptionBudget last.
pub async fn apply_all(
    client: &kube::Client,
    namespace: &str,
    objects: &ClusterObjects,
) -> Result<(), ReconcileError> {
    apply(client, namespace, &objects.config).await?;
    apply(client, namespace, &objects.headless).await?;
    apply(client, namespace, &objects.bootstrap).await?;
    for s in &objects.statefulsets {
        apply(client, namespace, s).await?;
    }
    apply(client, namespace, &objects.pdb).await?;
    Ok(())
}

/// Server-side applies `object` with the operator's field manager.
async fn apply<K>(client: &kube::Client, namespace: &str, object: &K) -> Result<K, kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    api.patch(
        &object.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
}

/// Reports an invalid spec and waits for the user to edit it.
async fn invalid(
    kc: &KafkaCluster,
    client: &kube::Client,
    previous: &KafkaClusterStatus,
    message: String,
) -> Result<Action, ReconcileError> {
    tracing::warn!(cluster = %kc.name_any(), %message, "invalid KafkaCluster spec");
    let generation = kc.metadata.generation.unwrap_or_default();
    let mut status = previous.clone();
    status.observed_generation = Some(generation);
    status.conditions = merge(
        &previous.conditions,
        &[
            Want::no("Ready", "InvalidSpec", message.clone()),
            Want::no(
                "Progressing",
                "InvalidSpec",
                "waiting for the spec to be fixed",
            ),
            Want::yes("Degraded", "InvalidSpec", message),
        ],
        generation,
        now(),
    );
    patch_status(client, kc, status).await?;
    Ok(Action::await_change())
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

async fn patch_status(
    client: &kube::Client,
    kc: &KafkaCluster,
    status: KafkaClusterStatus,
) -> Result<(), ReconcileError> {
    let api: Api<KafkaCluster> =
        Api::namespaced(client.clone(), &kc.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": "gregor.dev/v1alpha1",
        "kind": "KafkaCluster",
        "status": status,
    });
    api.patch_status(
        &kc.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// Whether a pod is ready (its Ready condition holds).
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Why a pod's storage could not be formatted, if its `format` init container failed.
pub fn format_failure(pod: &Pod) -> Option<String> {
    let statuses = pod.status.as_ref()?.init_container_statuses.as_ref()?;
    let format = statuses.iter().find(|s| s.name == "format")?;
    let terminated = format
        .state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .filter(|t| t.exit_code != 0)
        .or_else(|| {
            format
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .filter(|t| t.exit_code != 0)
        })?;
    Some(
        terminated
            .message
            .clone()
            .unwrap_or_else(|| format!("exit code {}", terminated.exit_code))
            .trim()
            .to_string(),
    )
}

/// The status the cluster has, from its StatefulSets and pods as they are.
pub fn observe(
    cluster: &ValidatedCluster,
    statefulsets: &[StatefulSet],
    pods: &[Pod],
    previous: &KafkaClusterStatus,
    generation: Option<i64>,
) -> KafkaClusterStatus {
    let generation = generation.unwrap_or_default();
    let mut nodes = Vec::new();
    let mut failures = Vec::new();
    for pool in &cluster.pools {
        let revision = statefulsets
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(&pool.name))
            .and_then(|s| s.status.as_ref())
            .and_then(|s| s.update_revision.clone());
        for (ordinal, pod_name) in pool.pods() {
            let pod = pods
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(&pod_name));
            let current = match (pod, &revision) {
                (Some(p), Some(r)) => p.labels().get("controller-revision-hash") == Some(r),
                _ => false,
            };
            if let Some(why) = pod.and_then(format_failure) {
                failures.push(format!("{pod_name}: {why}"));
            }
            nodes.push(NodeStatus {
                id: pool.node_id(ordinal),
                pod: pod_name,
                ready: pod.is_some_and(pod_ready),
                current,
            });
        }
    }
    let total = nodes.len();
    let ready = nodes.iter().filter(|n| n.ready).count();
    let stale = nodes.iter().filter(|n| !n.current).count();
    let mut wanted = Vec::new();
    if ready == total && stale == 0 {
        wanted.push(Want::yes(
            "Ready",
            "AllNodesReady",
            format!("{ready}/{total} nodes ready"),
        ));
    } else {
        wanted.push(Want::no(
            "Ready",
            "NodesNotReady",
            format!("{ready}/{total} nodes ready, {stale} not running the current spec"),
        ));
    }
    if stale > 0 || ready < total {
        wanted.push(Want::yes(
            "Progressing",
            if stale > 0 { "Updating" } else { "Starting" },
            format!(
                "{} of {total} nodes to start or restart",
                stale.max(total - ready)
            ),
        ));
    } else {
        wanted.push(Want::no("Progressing", "Settled", "nothing to do"));
    }
    if failures.is_empty() {
        wanted.push(Want::no("Degraded", "AsExpected", "no failures seen"));
    } else {
        wanted.push(Want::yes(
            "Degraded",
            "StorageFormatFailed",
            failures.join("; "),
        ));
    }
    KafkaClusterStatus {
        conditions: merge(&previous.conditions, &wanted, generation, now()),
        observed_generation: Some(generation),
        cluster_id: Some(cluster.cluster_id.clone()),
        bootstrap_servers: Some(cluster.bootstrap_servers()),
        ready_replicas: ready as i32,
        brokers: nodes,
        roll: previous.roll.clone(),
    }
}
