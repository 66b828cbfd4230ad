//! A KafkaCluster: its id, its children applied in order, and its status from the StatefulSets
//! and pods as they are.
//!
//! One reconcile (`converge`) runs these steps, each a function of its own:
//!
//! 1. `observe`: every read, once, into one `Observed`: the KafkaCluster as the API server
//!    has it, its cluster id record, StatefulSets and pods.
//! 2. `validate_spec` (no client): the cluster id chosen, the image kept, the spec checked.
//! 3. `size`: the quorum keeps its size; a broker scale step talks to the brokers.
//! 4. `apply_external_services`: the one exception to build-then-apply, since the brokers
//!    advertise the addresses Kubernetes gives these Services.
//! 5. `build_children` (pure): every child, from the sized spec and the observations.
//! 6. `apply_all`: server-side apply in the written order.
//! 7. `delete_orphans`: children the spec no longer builds (see [`orphans`]).
//! 8. `report`: the nodes, the dynamic broker configs, the roll's step (on the pods read again
//!    once the brokers have answered: they may take seconds), the status and the metrics.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{self, finalizer};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::access::Access;
use super::certificates::Which;
use super::conditions::{self, merge, Want};
use super::restart::{self, Restart};
use super::scale as reconcile_scale;
use super::{
    broker_configs, certificates, cluster_id, nodes, orphans, rack, storage, Context,
    ReconcileError,
};
use crate::build::objects::{label_query, selector_of, FIELD_MANAGER};
use crate::build::{self, ClusterObjects};
use crate::crd::cluster::KafkaClusterStatus;
use crate::crd::KafkaCluster;
use crate::health;
use crate::metrics::ClusterObservation;
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

/// Everything a reconcile reads from the API server before it writes anything, each read once.
struct Observed {
    /// The KafkaCluster as the API server has it now.
    kc: Arc<KafkaCluster>,
    /// Its status as the previous reconcile left it.
    previous: KafkaClusterStatus,
    /// The cluster id record's id, if it has one.
    cluster_id_record: Option<String>,
    /// Every StatefulSet carrying the cluster's labels.
    statefulsets: Vec<StatefulSet>,
    /// Every pod carrying the cluster's labels.
    pods: Vec<Pod>,
}

impl Observed {
    /// The StatefulSets of `cluster`'s pools (not those of a pool the spec no longer has).
    fn pool_statefulsets(&self, cluster: &ValidatedCluster) -> Vec<StatefulSet> {
        cluster
            .pools
            .iter()
            .filter_map(|pool| {
                self.statefulsets
                    .iter()
                    .find(|s| s.name_any() == pool.name)
                    .cloned()
            })
            .collect()
    }
}

/// The spec checked and completed, and whether its cluster id is new (to be recorded).
struct Validated {
    cluster: ValidatedCluster,
    record_cluster_id: bool,
}

/// The sizes the pools take this reconcile: the controller quorum keeps its size, and the
/// broker pool takes the scale step's.
struct Sizing {
    /// The validated cluster at those sizes.
    cluster: ValidatedCluster,
    /// Why the quorum's size was kept, if it was.
    quorum_refused: Option<String>,
    /// The broker scale step's outcome.
    scaling: reconcile_scale::Outcome,
    /// The nodes the spec asks for, every pool, whatever sizes this reconcile takes.
    desired: i32,
}

/// Brings the cluster's children and status in line with its spec, in the order
/// docs/architecture.md sets out: observe, validate, size, build, apply, delete orphans, status.
async fn converge(
    kc: Arc<KafkaCluster>,
    ctx: Arc<Context>,
    namespace: String,
) -> Result<Action, ReconcileError> {
    let client = &ctx.client;
    let Some(observed) = observe(client, &namespace, &kc.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let kc = &observed.kc;
    let validated = match validate_spec(&observed, &ctx.default_image) {
        Ok(v) => v,
        Err(message) => return invalid(kc, &ctx, &observed.previous, message).await,
    };
    // The CAs and the operator's own certificate first: the brokers of a secured cluster
    // are reached with it.
    let now = ctx.clock.now();
    let mut authorities = certificates::authorities(client, kc, &validated.cluster, now).await?;
    record_ca_expiry(&ctx, &validated.cluster, &authorities.outcome);
    let access = authorities.access(&ctx, &validated.cluster);
    let sizing = size(client, &observed, &validated.cluster, &access).await;
    // The one step out of order: the external Services are applied before the rest is built,
    // since each broker advertises the address its Service gets (see `apply_external_services`).
    let external_addresses = apply_external_services(client, &namespace, &sizing.cluster).await?;
    let target = ValidatedCluster {
        external_addresses,
        ..sizing.cluster.clone()
    };
    // The nodes' certificates (naming the external addresses), before the pods that mount
    // them.
    certificates::nodes(client, kc, &target, &observed.pods, &mut authorities, now).await?;
    let objects = build_children(&target, &observed);
    let mut applied = apply_all(&ctx, &observed, &validated, &target, &objects).await?;
    applied.certificates = authorities.outcome;
    delete_orphans(client, kc, &target, &objects).await?;
    report(&ctx, &observed, &target, &sizing, applied, &access).await
}

/// Observe: the KafkaCluster, its cluster id record, StatefulSets and pods; `None` when the
/// KafkaCluster is gone.
async fn observe(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Option<Observed>, ReconcileError> {
    // The object the controller hands over comes from its watch cache, which may not yet hold
    // the status the previous reconcile wrote: a child's event (a pod turning ready) can start
    // the next reconcile first. A scale step lives in that status, so a stale copy would drop
    // it half-way, partitions never moved. Read the object as the API server has it now.
    let Some(kc) = Api::<KafkaCluster>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await?
    else {
        return Ok(None);
    };
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let cluster_id_record = cluster_id::read_record(&config_maps, name).await?;
    let selected = ListParams::default().labels(&label_query(&selector_of(name)));
    let statefulsets = Api::<StatefulSet>::namespaced(client.clone(), namespace)
        .list(&selected)
        .await?
        .items;
    let pods = list_pods(client, namespace, name).await?;
    Ok(Some(Observed {
        previous: kc.status.clone().unwrap_or_default(),
        kc: Arc::new(kc),
        cluster_id_record,
        statefulsets,
        pods,
    }))
}

/// Validate (no client): the cluster id chosen from the spec, the record and the status, the
/// image kept, the spec checked and completed; an error is the message for an invalid spec.
fn validate_spec(observed: &Observed, default_image: &str) -> Result<Validated, String> {
    let (kc, previous) = (&observed.kc, &observed.previous);
    let choice = cluster_id::choose(
        kc.spec.cluster_id.as_deref(),
        observed.cluster_id_record.as_deref(),
        previous.cluster_id.as_deref(),
        cluster_id::generate,
    )?;
    // Without spec.image a cluster keeps the image it runs, recorded in its status (or, for a
    // cluster from before status.image, read off its StatefulSets): a new operator version
    // restarts no broker. Only a new cluster takes the operator's default.
    let image = previous
        .image
        .clone()
        .or_else(|| nodes::running_image(&observed.statefulsets))
        .unwrap_or_else(|| default_image.to_string());
    let cluster = validate(kc, &choice.id, &image).map_err(|e| e.to_string())?;
    refuse_dropped_pools(&observed.statefulsets, &cluster)?;
    Ok(Validated {
        cluster,
        record_cluster_id: choice.record,
    })
}

/// Refuses a spec that no longer builds a pool the cluster runs: turning `spec.controllers` on
/// or off renames the pools, and sweeping the old ones would delete the pods that hold the
/// brokers' data and the metadata quorum (Kafka cannot move a running cluster between
/// dedicated and combined controllers either).
fn refuse_dropped_pools(running: &[StatefulSet], cluster: &ValidatedCluster) -> Result<(), String> {
    let dropped: Vec<String> = running
        .iter()
        .map(ResourceExt::name_any)
        .filter(|name| !cluster.pools.iter().any(|p| &p.name == name))
        .collect();
    if dropped.is_empty() {
        return Ok(());
    }
    Err(format!(
        "spec.controllers: a running cluster cannot switch between dedicated controllers and \
         combined nodes: its StatefulSets {} hold the brokers' data and the metadata quorum \
         and would be deleted with their pods; restore spec.controllers, or create a new \
         KafkaCluster and move the topics to it",
        dropped.join(", ")
    ))
}

/// The pools' sizes: the controller quorum keeps its size; a broker scale step talks to the
/// brokers before any child is applied, so a StatefulSet shrinks only once its departing
/// brokers are empty. The validated cluster itself is left as it is.
async fn size(
    client: &kube::Client,
    observed: &Observed,
    validated: &ValidatedCluster,
    access: &Access,
) -> Sizing {
    let existing = observed.pool_statefulsets(validated);
    let sizes: BTreeMap<String, i32> = existing
        .iter()
        .map(|s| (s.name_any(), s.spec.replicas.unwrap_or(1)))
        .collect();
    let mut cluster = validated.clone();
    let quorum_refused = scale::pin_quorum(&mut cluster, &sizes);
    let broker_pool = cluster.broker_pool().name.clone();
    let previous = observed.previous.scaling.as_ref();
    let need = scale::need(
        sizes.get(&broker_pool).copied(),
        cluster.broker_pool().replicas,
        previous,
        nodes::any_stale(&existing, &observed.pods),
    );
    let scaling = reconcile_scale::run(access, need, previous).await;
    if let Some(size) = scaling.size {
        cluster.broker_pool_mut().replicas = size;
    }
    for (kind, reason, note) in &scaling.events {
        event(client, &observed.kc, *kind, reason, note.clone()).await;
    }
    Sizing {
        cluster,
        quorum_refused,
        scaling,
        desired: validated.pools.iter().map(|p| p.replicas).sum(),
    }
}

/// Each CA's expiry in the metrics, as the certificates step made, renewed or read it; none
/// for a CA it has not (a user-supplied one missing or broken).
fn record_ca_expiry(ctx: &Context, cluster: &ValidatedCluster, outcome: &certificates::Outcome) {
    for which in Which::ALL {
        ctx.metrics.certificate_expiry(
            &cluster.namespace,
            &cluster.name,
            which.label(),
            outcome.not_after(which),
        );
    }
}

/// Build (pure): every child of `target`. A StatefulSet that exists keeps its claim templates,
/// which the API server refuses to change.
fn build_children(target: &ValidatedCluster, observed: &Observed) -> ClusterObjects {
    let mut objects = build::cluster(target);
    let existing = observed.pool_statefulsets(target);
    for built in &mut objects.statefulsets {
        let current = existing.iter().find(|s| s.name_any() == built.name_any());
        storage::keep_claim_templates(built, current);
    }
    objects
}

/// What the apply left: the StatefulSets as the API server has them after it, and problems to
/// report that are not failures.
struct Applied {
    statefulsets: Vec<StatefulSet>,
    problems: Vec<String>,
    /// What the certificates step did and found.
    certificates: certificates::Outcome,
}

/// Apply, in the written order: the cluster id record (before any node is formatted with the
/// id), the rack binding and the broker pods' ServiceAccount, configuration and Services before
/// the StatefulSets whose pods run as, read and need them, then the PodDisruptionBudget and
/// ServiceMonitor, and the claims grown last. The external Services are not among them:
/// `apply_external_services` applied them before the build.
async fn apply_all(
    ctx: &Context,
    observed: &Observed,
    validated: &Validated,
    target: &ValidatedCluster,
    objects: &ClusterObjects,
) -> Result<Applied, ReconcileError> {
    let client = &ctx.client;
    let namespace = &target.namespace;
    if validated.record_cluster_id {
        let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        cluster_id::write_record(&config_maps, target).await?;
        tracing::info!(cluster = %target.name, cluster_id = %target.cluster_id, "cluster id chosen");
    }
    rack::sync(client, &observed.kc, target, &ctx.rack_cluster_role).await?;
    if let Some(account) = &objects.service_account {
        apply(client, namespace, account).await?;
    }
    apply(client, namespace, &objects.config).await?;
    apply(client, namespace, &objects.headless).await?;
    apply(client, namespace, &objects.bootstrap).await?;
    let mut statefulsets = Vec::new();
    for s in &objects.statefulsets {
        statefulsets.push(apply(client, namespace, s).await?);
    }
    apply(client, namespace, &objects.pdb).await?;
    let mut problems = Vec::new();
    if let Some(monitor) = &objects.service_monitor {
        problems.extend(apply_service_monitor(client, namespace, monitor).await?);
    }
    problems.extend(storage::resize_claims(client, target).await?);
    Ok(Applied {
        statefulsets,
        problems,
        certificates: certificates::Outcome::default(),
    })
}

/// Applies the ServiceMonitor; without the Prometheus Operator's CRD, returns the problem to
/// report instead of failing.
async fn apply_service_monitor(
    client: &kube::Client,
    namespace: &str,
    monitor: &serde_json::Value,
) -> Result<Option<String>, ReconcileError> {
    let resource = orphans::service_monitor_resource();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let name = monitor["metadata"]["name"].as_str().unwrap_or_default();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    match api.patch(name, &params, &Patch::Apply(monitor)).await {
        Ok(_) => Ok(None),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Some(
            "spec.metrics.serviceMonitor is set but the ServiceMonitor CRD \
             (monitoring.coreos.com/v1) is not installed"
                .to_string(),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Delete orphans: the children of this cluster that `objects` no longer holds (see
/// [`orphans`]), once everything built is applied.
async fn delete_orphans(
    client: &kube::Client,
    kc: &KafkaCluster,
    target: &ValidatedCluster,
    objects: &ClusterObjects,
) -> Result<(), ReconcileError> {
    let built = orphans::Built::of(&target.name, objects);
    let deleted = orphans::delete(client, &target.namespace, &target.uid, &built).await?;
    if !deleted.is_empty() {
        let note = format!("deleted, no longer in the spec: {}", deleted.join(", "));
        event(client, kc, EventType::Normal, "ChildrenDeleted", note).await;
    }
    Ok(())
}

/// Status: the nodes as the applied StatefulSets and the pods have them, the dynamic broker
/// configs synced once a broker can take them, the roll's next step taken, the status written,
/// and when to look again.
async fn report(
    ctx: &Context,
    observed: &Observed,
    target: &ValidatedCluster,
    sizing: &Sizing,
    applied: Applied,
    access: &Access,
) -> Result<Action, ReconcileError> {
    let (client, kc) = (&ctx.client, observed.kc.as_ref());
    let (namespace, name) = (&target.namespace, &target.name);
    let mut problems = applied.problems;
    let statefulsets = applied.statefulsets;
    let first = nodes::observe(target, &statefulsets, &observed.pods, Timestamp::now());
    let brokers_up = first
        .nodes
        .iter()
        .any(|n| n.ready && n.node_id < CONTROLLER_ID_BASE);
    let configs_synced = !brokers_up
        || match sync_broker_configs(client, kc, target, access).await {
            Ok(()) => true,
            Err(problem) => {
                problems.push(problem);
                false
            }
        };
    let scaling = &sizing.scaling;
    let rolling = first.nodes.iter().any(|n| n.stale.is_some());
    // The brokers are asked only when a ready pod may have to restart.
    let ask_health = rolling && !scaling.active;
    let health = if ask_health {
        read_health(access).await
    } else {
        None
    };
    // The brokers may have taken seconds to answer: by now a pod may be terminating, replaced
    // or ready, so the roll is planned on the pods as they are now, never on the first read.
    let pods = if brokers_up || ask_health {
        list_pods(client, namespace, name).await?
    } else {
        observed.pods.clone()
    };
    let mut nodes = nodes::observe(target, &statefulsets, &pods, Timestamp::now());
    nodes.unapplied = problems;
    nodes.refused = sizing.quorum_refused.iter().cloned().collect();
    let certs = applied.certificates;
    nodes.certificates = certs.problems;
    let (mut step, pending) = plan_roll(target, &nodes, health.as_ref(), scaling.active);
    let changed_under_the_plan = take_step(client, kc, namespace, &pods, &mut step).await?;
    let mut status = nodes::status(
        target,
        &nodes,
        &step,
        pending,
        scaling,
        &observed.previous,
        kc.metadata.generation,
    );
    status.cluster_ca = certs.cluster_ca;
    status.clients_ca = certs.clients_ca;
    status.conditions.extend(merge(
        &observed.previous.conditions,
        &[certificates::expiring_condition(&certs.expiring)],
        kc.metadata.generation.unwrap_or_default(),
        now(),
    ));
    let observation = ClusterObservation {
        ready: status.ready_replicas,
        desired: sizing.desired,
        rolling: nodes.nodes.iter().any(|n| n.stale.is_some()),
        scaling: scaling.status.is_some(),
        under_replicated: health.as_ref().map(roll::Health::under_replicated),
    };
    let ready = status.ready_replicas == target.pools.iter().map(|p| p.replicas).sum::<i32>();
    patch_status(ctx, kc, status).await?;
    // After the write: a reconcile that raced the cluster's deletion fails it, and brings
    // back no series of a cluster that is gone.
    ctx.metrics.cluster_observed(namespace, name, &observation);
    ctx.metrics
        .cluster_reconciled(namespace, name, Timestamp::now().as_second());
    let settled = ready && step == Step::Done && scaling.status.is_none() && configs_synced;
    let again = requeue_after(changed_under_the_plan, settled);
    // A certificate due for renewal before then brings the reconcile back in time.
    let renewal = certs
        .next_renewal
        .map(|at| Duration::from_secs(u64::try_from(at - ctx.clock.now()).unwrap_or(0).max(1)));
    Ok(Action::requeue(renewal.map_or(again, |r| r.min(again))))
}

/// The roll's next step and the pods still to restart. A scale step under way finishes before
/// a ready pod restarts: the brokers are not asked, so the roll can only wait, or restart a
/// stale pod that is down anyway, or halt.
fn plan_roll(
    target: &ValidatedCluster,
    nodes: &nodes::Observed,
    health: Option<&roll::Health>,
    scaling: bool,
) -> (Step, Vec<String>) {
    let step = match roll::plan(
        &nodes.nodes,
        health,
        target.partitions_without_spare,
        STUCK_AFTER,
    ) {
        Step::Wait { .. } if scaling => Step::Wait {
            reason: "the broker scale step to finish".into(),
        },
        step => step,
    };
    let pending = roll::pending(&nodes.nodes, health.and_then(|h| h.active_controller));
    (step, pending)
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

/// Brings the cluster-wide dynamic broker configs in line with the spec; the error is the
/// problem to report in the status.
async fn sync_broker_configs(
    client: &kube::Client,
    kc: &KafkaCluster,
    cluster: &ValidatedCluster,
    access: &Access,
) -> Result<(), String> {
    let bootstrap = &access.bootstrap;
    let synced = tokio::time::timeout(HEALTH_TIMEOUT, broker_configs::sync(access, cluster)).await;
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
async fn read_health(access: &Access) -> Option<roll::Health> {
    match tokio::time::timeout(HEALTH_TIMEOUT, health::read(access)).await {
        Ok(Ok(h)) => Some(h),
        Ok(Err(e)) => {
            let bootstrap = &access.bootstrap;
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

/// Every pod of the KafkaCluster named `name`, as the API server has them now.
async fn list_pods(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Vec<Pod>, kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    Ok(api
        .list(&ListParams::default().labels(&label_query(&selector_of(name))))
        .await?
        .items)
}

/// Applies the external Services ahead of the rest (built, purely, from the sized cluster),
/// since each broker advertises the address its Service gets (a node port is allocated when
/// the Service is created; a load balancer's address arrives later, and the Service watch
/// brings the reconcile back then), and returns those addresses by node id.
async fn apply_external_services(
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
    ctx: &Context,
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
    patch_status(ctx, kc, status).await?;
    Ok(Action::await_change())
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Writes the status, and its Ready condition to the metrics once it is written.
async fn patch_status(
    ctx: &Context,
    kc: &KafkaCluster,
    status: KafkaClusterStatus,
) -> Result<(), ReconcileError> {
    let namespace = kc.namespace().unwrap_or_default();
    let api: Api<KafkaCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    super::apply_status(&api, kc, &status).await?;
    let ready = conditions::holds(&status.conditions, "Ready");
    ctx.metrics
        .resource_ready(&KafkaCluster::kind(&()), &namespace, &kc.name_any(), ready);
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
