//! A KafkaCluster: its id, its children applied in order, and its status from the StatefulSets
//! and pods as they are.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{self, finalizer};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::conditions::{merge, Want};
use super::restart::{self, Restart};
use super::scale as reconcile_scale;
use super::{broker_configs, cluster_id, nodes, rack, storage, Context, ReconcileError};
use crate::build::objects::{cluster_selector, label_query, selector_of, FIELD_MANAGER};
use crate::build::{self, ClusterObjects};
use crate::crd::cluster::KafkaClusterStatus;
use crate::crd::KafkaCluster;
use crate::health;
use crate::roll::{self, Step};
use crate::scale;
use crate::validate::{validate, ValidatedCluster, CONTROLLER_ID_BASE};

/// How soon a cluster that is not ready yet is looked at again.
const SETTLING: Duration = Duration::from_secs(5);
/// How soon a roll looks again when the pod it meant to restart changed under its plan.
const RECHECK: Duration = Duration::from_secs(1);
/// How often a ready cluster is looked at again anyway (changes to children wake it sooner).
const STEADY: Duration = Duration::from_secs(300);
/// How long a pod that runs the current spec may stay unready before the roll halts.
const STUCK_AFTER: Duration = Duration::from_secs(300);
/// How long the brokers get to say how the cluster is.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(10);

/// Reconciles one KafkaCluster: behind the rack finalizer when it has (or had) `spec.rack`
/// (see [`rack`]), directly otherwise.
pub async fn reconcile(kc: Arc<KafkaCluster>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let namespace = kc
        .namespace()
        .ok_or_else(|| ReconcileError::Malformed("a KafkaCluster without a namespace".into()))?;
    if kc.spec.rack.is_none() && !rack::has_finalizer(&kc) {
        return converge(kc, ctx, namespace).await;
    }
    let api: Api<KafkaCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, rack::FINALIZER, kc, |event| async {
        match event {
            finalizer::Event::Apply(kc) => converge(kc, Arc::clone(&ctx), namespace.clone()).await,
            finalizer::Event::Cleanup(kc) => {
                rack::delete(&ctx.client, &namespace, &kc.name_any()).await?;
                ctx.metrics.cluster_gone(&namespace, &kc.name_any());
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(super::finalizer_error)
}

/// Brings the cluster's children and status in line with its spec.
async fn converge(
    kc: Arc<KafkaCluster>,
    ctx: Arc<Context>,
    namespace: String,
) -> Result<Action, ReconcileError> {
    let name = kc.name_any();
    let client = &ctx.client;
    // The object the controller hands over comes from its watch cache, which may not yet hold
    // the status the previous reconcile wrote: a child's event (a pod turning ready) can start
    // the next reconcile first. A scale step lives in that status, so a stale copy would drop
    // it half-way, partitions never moved. Read the object as the API server has it now.
    let Some(kc) = Api::<KafkaCluster>::namespaced(client.clone(), &namespace)
        .get_opt(&name)
        .await?
        .map(Arc::new)
    else {
        return Ok(Action::await_change());
    };
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let previous = kc.status.clone().unwrap_or_default();
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
    let listed = sts_api
        .list(&ListParams::default().labels(&label_query(&selector_of(&name))))
        .await?
        .items;
    let mut cluster = match validated(&kc, &ctx, &config_maps, &previous, &listed).await? {
        Ok(cluster) => cluster,
        Err(action) => return Ok(action),
    };
    let existing: Vec<StatefulSet> = cluster
        .pools
        .iter()
        .filter_map(|pool| listed.iter().find(|s| s.name_any() == pool.name).cloned())
        .collect();
    let pods = list_pods(client, &namespace, &cluster).await?;

    let bootstrap = ctx.bootstrap(&namespace, &name, &cluster.bootstrap_servers());
    let (quorum_refused, scaling) = scale_step(
        client,
        &kc,
        &mut cluster,
        &existing,
        &pods,
        &previous,
        &bootstrap,
    )
    .await;

    cluster.external_addresses = external_addresses(client, &namespace, &cluster).await?;
    let mut objects = build::cluster(&cluster);
    for built in &mut objects.statefulsets {
        let current = existing.iter().find(|s| s.name_any() == built.name_any());
        storage::keep_claim_templates(built, current);
    }
    // The binding before the StatefulSets whose pods need it.
    rack::sync(client, &kc, &cluster, &ctx.rack_cluster_role).await?;
    let mut problems = apply_all(client, &namespace, &objects).await?;
    problems.extend(storage::resize_claims(client, &cluster).await?);

    let statefulsets = read_statefulsets(&sts_api, &cluster).await?;
    let first = nodes::observe(&cluster, &statefulsets, &pods, Timestamp::now());
    // Dynamic broker configs, once a broker can take them.
    let brokers_up = first
        .nodes
        .iter()
        .any(|n| n.ready && n.node_id < CONTROLLER_ID_BASE);
    let configs_synced = if brokers_up {
        match sync_broker_configs(client, &kc, &cluster, &bootstrap).await {
            Ok(()) => true,
            Err(problem) => {
                problems.push(problem);
                false
            }
        }
    } else {
        true
    };
    let rolling = first.nodes.iter().any(|n| n.stale.is_some());
    // The brokers are asked only when a ready pod may have to restart.
    let ask_health = rolling && !scaling.active;
    let health = if ask_health {
        read_health(&bootstrap).await
    } else {
        None
    };
    // The brokers may have taken seconds to answer: by now a pod may be terminating, replaced
    // or ready, so the roll is planned on the pods as they are now, never on the first read.
    let pods = if brokers_up || ask_health {
        list_pods(client, &namespace, &cluster).await?
    } else {
        pods
    };
    let mut observed = nodes::observe(&cluster, &statefulsets, &pods, Timestamp::now());
    observed.unapplied = problems;
    observed.refused = quorum_refused.into_iter().collect();
    // A scale step under way finishes before a ready pod restarts: the brokers are not asked,
    // so the roll can only wait, or restart a stale pod that is down anyway, or halt.
    let mut step = match roll::plan(
        &observed.nodes,
        health.as_ref(),
        cluster.partitions_without_spare,
        STUCK_AFTER,
    ) {
        Step::Wait { .. } if scaling.active => Step::Wait {
            reason: "the broker scale step to finish".into(),
        },
        step => step,
    };
    let pending = roll::pending(
        &observed.nodes,
        health.as_ref().and_then(|h| h.active_controller),
    );
    let changed_under_the_plan = take_step(client, &kc, &namespace, &pods, &mut step).await?;
    let status = nodes::status(
        &cluster,
        &observed,
        &step,
        pending,
        &scaling,
        &previous,
        kc.metadata.generation,
    );
    ctx.metrics.cluster_observed(
        &namespace,
        &name,
        status.ready_replicas,
        observed.nodes.iter().any(|n| n.stale.is_some()),
    );
    let ready = status.ready_replicas == cluster.pools.iter().map(|p| p.replicas).sum::<i32>();
    patch_status(client, &kc, status).await?;
    let settled = ready && step == Step::Done && scaling.status.is_none() && configs_synced;
    Ok(Action::requeue(requeue_after(
        changed_under_the_plan,
        settled,
    )))
}

/// How soon to look again: at once when a pod changed under the roll's plan, rarely once
/// the cluster has settled, soon while it settles.
fn requeue_after(changed_under_the_plan: bool, settled: bool) -> Duration {
    if changed_under_the_plan {
        RECHECK
    } else if settled {
        STEADY
    } else {
        SETTLING
    }
}

/// The spec checked and completed, with the cluster id chosen (and recorded, the first
/// time); for an invalid spec, reported, the action that waits for the user's edit.
async fn validated(
    kc: &KafkaCluster,
    ctx: &Context,
    config_maps: &Api<ConfigMap>,
    previous: &KafkaClusterStatus,
    listed: &[StatefulSet],
) -> Result<Result<ValidatedCluster, Action>, ReconcileError> {
    let client = &ctx.client;
    let name = kc.name_any();
    let record = cluster_id::read_record(config_maps, &name).await?;
    let choice = match cluster_id::choose(
        kc.spec.cluster_id.as_deref(),
        record.as_deref(),
        previous.cluster_id.as_deref(),
        cluster_id::generate,
    ) {
        Ok(c) => c,
        Err(message) => return invalid(kc, client, previous, message).await.map(Err),
    };
    // Without spec.image a cluster keeps the image it runs, recorded in its status (or, for a
    // cluster from before status.image, read off its StatefulSets): a new operator version
    // restarts no broker. Only a new cluster takes the operator's default.
    let image = previous
        .image
        .clone()
        .or_else(|| nodes::running_image(listed))
        .unwrap_or_else(|| ctx.default_image.clone());
    let cluster = match validate(kc, &choice.id, &image) {
        Ok(c) => c,
        Err(e) => return invalid(kc, client, previous, e.to_string()).await.map(Err),
    };
    if choice.record {
        cluster_id::write_record(config_maps, &cluster).await?;
        tracing::info!(cluster = %name, cluster_id = %cluster.cluster_id, "cluster id chosen");
    }
    Ok(Ok(cluster))
}

/// The broker scale step: the controller quorum keeps its size; a broker scale step talks to
/// the brokers before any child is applied, so a StatefulSet shrinks only once its departing
/// brokers are empty. Returns why the quorum's size was kept (if it was) and the step's
/// outcome, whose size the broker pool now has.
async fn scale_step(
    client: &kube::Client,
    kc: &KafkaCluster,
    cluster: &mut ValidatedCluster,
    existing: &[StatefulSet],
    pods: &[Pod],
    previous: &KafkaClusterStatus,
    bootstrap: &str,
) -> (Option<String>, reconcile_scale::Outcome) {
    let sizes: BTreeMap<String, i32> = existing
        .iter()
        .map(|s| (s.name_any(), s.spec.replicas.unwrap_or(1)))
        .collect();
    let quorum_refused = scale::pin_quorum(cluster, &sizes);
    let broker_pool = cluster.broker_pool().name.clone();
    let need = scale::need(
        sizes.get(&broker_pool).copied(),
        cluster.broker_pool().replicas,
        previous.scaling.as_ref(),
        nodes::any_stale(existing, pods),
    );
    let scaling = reconcile_scale::run(bootstrap, need, previous.scaling.as_ref()).await;
    if let Some(size) = scaling.size {
        cluster.broker_pool_mut().replicas = size;
    }
    for (kind, reason, note) in &scaling.events {
        event(client, kc, *kind, reason, note.clone()).await;
    }
    (quorum_refused, scaling)
}

/// The pools' StatefulSets as the API server has them after the apply.
async fn read_statefulsets(
    sts_api: &Api<StatefulSet>,
    cluster: &ValidatedCluster,
) -> Result<Vec<StatefulSet>, kube::Error> {
    let mut out = Vec::new();
    for pool in &cluster.pools {
        if let Some(s) = sts_api.get_opt(&pool.name).await? {
            out.push(s);
        }
    }
    Ok(out)
}

/// Brings the cluster-wide dynamic broker configs in line with the spec; the error is the
/// problem to report in the status.
async fn sync_broker_configs(
    client: &kube::Client,
    kc: &KafkaCluster,
    cluster: &ValidatedCluster,
    bootstrap: &str,
) -> Result<(), String> {
    let synced =
        tokio::time::timeout(HEALTH_TIMEOUT, broker_configs::sync(bootstrap, cluster)).await;
    match synced {
        Ok(Ok(changes)) => {
            if !changes.is_empty() {
                let keys: Vec<&str> = changes.iter().map(|c| c.key()).collect();
                let note = format!("cluster-wide broker configs updated: {}", keys.join(", "));
                tracing::info!(cluster = %kc.name_any(), %note);
                event(client, kc, EventType::Normal, "BrokerConfigsUpdated", note).await;
            }
            Ok(())
        }
        Ok(Err(e)) => Err(format!("dynamic broker configs not applied: {e}")),
        Err(_) => Err(format!(
            "dynamic broker configs not applied: the brokers at {bootstrap} did not answer \
             within {HEALTH_TIMEOUT:?}"
        )),
    }
}

/// What the brokers say about the cluster's ISRs and quorum, if they answer in time.
async fn read_health(bootstrap: &str) -> Option<roll::Health> {
    match tokio::time::timeout(HEALTH_TIMEOUT, health::read(bootstrap)).await {
        Ok(Ok(h)) => Some(h),
        Ok(Err(e)) => {
            tracing::info!(%bootstrap, error = %e, "cannot read the cluster's health");
            None
        }
        Err(_) => None,
    }
}

/// Carries out the roll's step: restarts the planned pod (unless it changed since it was
/// read: then the step becomes a wait, and this returns true) or reports a halt.
async fn take_step(
    client: &kube::Client,
    kc: &KafkaCluster,
    namespace: &str,
    pods: &[Pod],
    step: &mut Step,
) -> Result<bool, ReconcileError> {
    match &*step {
        Step::Restart { pod, reason } => {
            let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
            let observed_pod = pods
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(pod.as_str()))
                .ok_or_else(|| {
                    ReconcileError::Malformed(format!("the roll planned on pod {pod}, not read"))
                })?;
            match restart::delete_observed(&api, observed_pod).await? {
                Restart::Deleted => {
                    tracing::info!(%pod, %reason, "restarted pod");
                    event(
                        client,
                        kc,
                        EventType::Normal,
                        "RestartingPod",
                        format!("{pod}: {reason}"),
                    )
                    .await;
                }
                Restart::Changed => {
                    tracing::info!(%pod, "pod changed since it was read; not restarted");
                    *step = Step::Wait {
                        reason: format!(
                            "pod {pod}, changed since it was read, to be looked at again"
                        ),
                    };
                    return Ok(true);
                }
            }
        }
        Step::Halt { reason } => {
            event(client, kc, EventType::Warning, "RollHalted", reason.clone()).await;
        }
        Step::Wait { .. } | Step::Blocked { .. } | Step::Done => {}
    }
    Ok(false)
}

/// Every pod of `cluster`, as the API server has them now.
async fn list_pods(
    client: &kube::Client,
    namespace: &str,
    cluster: &ValidatedCluster,
) -> Result<Vec<Pod>, kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    Ok(api
        .list(&ListParams::default().labels(&label_query(&cluster_selector(cluster))))
        .await?
        .items)
}

/// Applies every child in the written order: the broker pods' ServiceAccount, configuration
/// and Services before the StatefulSets whose pods run as, read and need them, the
/// PodDisruptionBudget and ServiceMonitor last.
/// The external Services are not among them: `external_addresses` applied them first.
/// Returns problems to report that are not failures (a missing optional CRD).
pub async fn apply_all(
    client: &kube::Client,
    namespace: &str,
    objects: &ClusterObjects,
) -> Result<Vec<String>, ReconcileError> {
    if let Some(account) = &objects.service_account {
        apply(client, namespace, account).await?;
    }
    apply(client, namespace, &objects.config).await?;
    apply(client, namespace, &objects.headless).await?;
    apply(client, namespace, &objects.bootstrap).await?;
    for s in &objects.statefulsets {
        apply(client, namespace, s).await?;
    }
    apply(client, namespace, &objects.pdb).await?;
    let mut problems = Vec::new();
    if let Some(monitor) = &objects.service_monitor {
        let resource = ApiResource {
            group: "monitoring.coreos.com".into(),
            version: "v1".into(),
            api_version: crate::build::monitor::API_VERSION.into(),
            kind: "ServiceMonitor".into(),
            plural: "servicemonitors".into(),
        };
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
        let name = monitor["metadata"]["name"].as_str().unwrap_or_default();
        match api
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(monitor),
            )
            .await
        {
            Ok(_) => {}
            // The Prometheus Operator is not installed: say so instead of failing.
            Err(kube::Error::Api(e)) if e.code == 404 => problems.push(
                "spec.metrics.serviceMonitor is set but the ServiceMonitor CRD \
                 (monitoring.coreos.com/v1) is not installed"
                    .to_string(),
            ),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(problems)
}

/// Applies the external Services ahead of the rest, since each broker advertises the address
/// its Service gets (a node port is allocated when the Service is created; a load balancer's
/// address arrives later, and the Service watch brings the reconcile back then), and returns
/// those addresses by node id.
async fn external_addresses(
    client: &kube::Client,
    namespace: &str,
    cluster: &ValidatedCluster,
) -> Result<BTreeMap<i32, String>, kube::Error> {
    let mut out = BTreeMap::new();
    let Some(e) = &cluster.external else {
        return Ok(out);
    };
    let pool = cluster.broker_pool();
    for (service, (ordinal, _)) in build::services::external(cluster).iter().zip(pool.pods()) {
        let applied = apply(client, namespace, service).await?;
        if let Some(address) = build::services::external_address(e.kind, e.port, &applied) {
            out.insert(pool.node_id(ordinal), address);
        }
    }
    Ok(out)
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

/// Records an event on the KafkaCluster; a failure to record is logged, never fatal.
async fn event(
    client: &kube::Client,
    kc: &KafkaCluster,
    kind: EventType,
    reason: &str,
    note: String,
) {
    super::record(client, &kc.object_ref(&()), kind, reason, note).await;
}
