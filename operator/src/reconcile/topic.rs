//! A KafkaTopic: its topic created, grown and configured through the Kafka admin API of its
//! cluster, and deleted with the resource (a finalizer, since the topic lives outside
//! Kubernetes).
//!
//! In order: check the spec (no client) → find the KafkaCluster → make sure no older
//! KafkaTopic claims the same topic → describe the topic and its configs → [`plan::plan`] →
//! send the steps → describe again → status. An invalid spec and refused changes (fewer
//! partitions, another replication factor, a rename) are conditions that wait for an edit;
//! brokers out of reach are errors the controller retries with backoff.
//!
//! Which configs the operator owns: every key in the spec, and every key it set for an earlier
//! spec. The latter are recorded in the [`CONFIG_KEYS_ANNOTATION`] annotation (the status
//! would lose them to a status wipe, and the CRD has no field for them), written before a key
//! is first set and trimmed once a removed key is deleted from the topic. A key that leaves the
//! spec is deleted from the topic (its broker default applies again); configs that other tools
//! set and no spec ever named are left alone, so adopting an existing topic changes only what
//! the spec says.

pub mod plan;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use gregor_client::admin::{Admin, AdminError, Topic};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{self, finalizer};
use kube::{Resource, ResourceExt};

use self::plan::{Desired, Observed, Plan, Step};
use super::access::Access;
use super::certificates;
use super::conditions::{merge, Want};
use super::{record, Context, ReconcileError};
use crate::crd::{KafkaCluster, KafkaTopic, KafkaTopicStatus};
use crate::metrics::Metrics;

/// The finalizer that deletes the topic in Kafka before the resource goes.
pub const FINALIZER: &str = "gregor.dev/topic";
/// Config keys the operator has set on the topic, comma-separated (see the module docs).
pub const CONFIG_KEYS_ANNOTATION: &str = "gregor.dev/config-keys";

/// How often a topic in line with its spec is looked at again (someone may alter it).
const STEADY: Duration = Duration::from_secs(300);
/// How soon a topic waiting for its cluster or brokers is looked at again.
const SETTLING: Duration = Duration::from_secs(10);
/// How soon a topic the brokers refused, or another resource holds, is looked at again.
const BLOCKED: Duration = Duration::from_secs(60);
/// How long the brokers get to answer one reconcile's requests.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(60);

/// Reconciles one KafkaTopic.
pub async fn reconcile(kt: Arc<KafkaTopic>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let namespace = kt
        .namespace()
        .ok_or_else(|| ReconcileError::Malformed("a KafkaTopic without a namespace".into()))?;
    let api: Api<KafkaTopic> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, kt, |event| async {
        match event {
            finalizer::Event::Apply(kt) => apply(&kt, &ctx, &api).await,
            finalizer::Event::Cleanup(kt) => {
                let action = cleanup(&kt, &ctx, &api).await?;
                // The finalizer goes next, and the resource with it.
                ctx.metrics
                    .resource_gone(&KafkaTopic::kind(&()), &namespace, &kt.name_any());
                Ok(action)
            }
        }
    })
    .await
    .map_err(super::finalizer_error)
}

/// What the status says about the topic in Kafka.
enum Seen<'a> {
    /// Not looked at: keep what the status says.
    Unchanged,
    /// The topic does not exist.
    Absent,
    /// The topic as described.
    Present(&'a str, &'a Topic),
}

async fn apply(
    kt: &KafkaTopic,
    ctx: &Context,
    api: &Api<KafkaTopic>,
) -> Result<Action, ReconcileError> {
    let desired = match plan::desired(kt) {
        Ok(d) => d,
        Err(message) => {
            tracing::warn!(topic = %kt.name_any(), %message, "invalid KafkaTopic spec");
            not_ready(api, &ctx.metrics, kt, "InvalidSpec", message).await?;
            return Ok(Action::await_change());
        }
    };
    let Some(access) = locate(kt, ctx, api).await? else {
        return Ok(Action::requeue(SETTLING));
    };
    let others = api.list(&ListParams::default()).await?.items;
    if let Some(owner) = plan::earlier_claimant(kt, &others) {
        let message = format!(
            "KafkaTopic {} already manages topic {} of cluster {}",
            owner.name_any(),
            desired.name,
            kt.spec.cluster
        );
        not_ready(api, &ctx.metrics, kt, "TopicConflict", message).await?;
        return Ok(Action::requeue(BLOCKED));
    }
    let session = tokio::time::timeout(KAFKA_TIMEOUT, converge(kt, api, ctx, &access, &desired))
        .await
        .unwrap_or_else(|_| Err(Failure::TimedOut));
    match session {
        Ok(action) => Ok(action),
        Err(Failure::Kube(e)) => Err(e.into()),
        Err(Failure::TimedOut) => {
            let error = ReconcileError::KafkaTimedOut {
                bootstrap: access.bootstrap,
                timeout: KAFKA_TIMEOUT,
            };
            not_ready(api, &ctx.metrics, kt, error.reason(), error.message()).await?;
            Err(error)
        }
        Err(Failure::Kafka(e)) if e.is_transient() => {
            let error = ReconcileError::from(e);
            not_ready(api, &ctx.metrics, kt, error.reason(), error.message()).await?;
            Err(error)
        }
        Err(Failure::Kafka(e)) => {
            tracing::warn!(topic = %desired.name, error = %e, "the brokers refused a change");
            let note = format!("topic {}: {e}", desired.name);
            record(
                &ctx.client,
                &kt.object_ref(&()),
                EventType::Warning,
                "KafkaRejected",
                note,
            )
            .await;
            let error = ReconcileError::from(e);
            not_ready(api, &ctx.metrics, kt, error.reason(), error.message()).await?;
            Ok(Action::requeue(BLOCKED))
        }
    }
}

/// Why a session with the brokers ended early.
enum Failure {
    Kafka(AdminError),
    Kube(kube::Error),
    TimedOut,
}

impl From<AdminError> for Failure {
    fn from(e: AdminError) -> Self {
        Failure::Kafka(e)
    }
}

impl From<kube::Error> for Failure {
    fn from(e: kube::Error) -> Self {
        Failure::Kube(e)
    }
}

/// How the topic's cluster is reached, or `None` after reporting why it cannot be yet.
async fn locate(
    kt: &KafkaTopic,
    ctx: &Context,
    api: &Api<KafkaTopic>,
) -> Result<Option<Access>, ReconcileError> {
    let clusters: Api<KafkaCluster> =
        Api::namespaced(ctx.client.clone(), &kt.namespace().unwrap_or_default());
    let Some(kc) = clusters.get_opt(&kt.spec.cluster).await? else {
        let message = format!("no KafkaCluster {} in this namespace", kt.spec.cluster);
        not_ready(api, &ctx.metrics, kt, "ClusterNotFound", message).await?;
        return Ok(None);
    };
    let access = certificates::access_of(ctx, &kc).await?;
    if access.is_none() {
        let message = format!(
            "KafkaCluster {} has no bootstrap address (or no operator certificate) yet",
            kt.spec.cluster
        );
        not_ready(api, &ctx.metrics, kt, "ClusterNotReady", message).await?;
    }
    Ok(access)
}

/// Describes the topic and its configs.
async fn observe(admin: &mut Admin, name: &str) -> Result<Observed, AdminError> {
    let (brokers, topic) = admin.describe(name).await?;
    let config = match &topic {
        Some(_) => admin.topic_configs(name).await?,
        None => Default::default(),
    };
    Ok(Observed {
        brokers,
        topic,
        config,
    })
}

/// Brings the topic in line with `desired` and reports the outcome.
async fn converge(
    kt: &KafkaTopic,
    api: &Api<KafkaTopic>,
    ctx: &Context,
    access: &Access,
    desired: &Desired,
) -> Result<Action, Failure> {
    let mut admin = access.admin().await?;
    let previous = kt.status.as_ref().and_then(|s| s.topic_name.clone());
    if let Some(previous) = previous.filter(|p| *p != desired.name) {
        // Kafka cannot rename: following the new name would leave the old topic behind.
        if admin.describe(&previous).await?.1.is_some() {
            let message = format!(
                "the topic is {previous} in Kafka, which cannot rename topics: set \
                 spec.topicName back to {previous}, or delete this KafkaTopic and create one \
                 for {}",
                desired.name
            );
            not_ready(api, &ctx.metrics, kt, "TopicRenameUnsupported", message).await?;
            return Ok(Action::await_change());
        }
    }
    let mut observed = observe(&mut admin, &desired.name).await?;
    if plan::unmanaged(kt) {
        return report_unmanaged(api, &ctx.metrics, kt, desired, &observed).await;
    }
    let mut recorded = plan::parse_keys(
        kt.annotations()
            .get(CONFIG_KEYS_ANNOTATION)
            .map(String::as_str),
    );
    let steps = plan::plan(desired, &observed, &recorded).steps;
    let spec_keys: BTreeSet<String> = desired.config.keys().cloned().collect();
    if !steps.is_empty() && !spec_keys.is_subset(&recorded) {
        // Recorded before they are set, so a key set but then dropped from the spec before the
        // next reconcile is still known to be the operator's.
        recorded.extend(spec_keys.iter().cloned());
        record_keys(api, kt, &recorded).await?;
    }
    for step in &steps {
        execute(&mut admin, &desired.name, step).await?;
        let (reason, note) = step.describe(&desired.name);
        record(
            &ctx.client,
            &kt.object_ref(&()),
            EventType::Normal,
            reason,
            note,
        )
        .await;
    }
    if !steps.is_empty() {
        observed = observe(&mut admin, &desired.name).await?;
    }
    if recorded != spec_keys {
        record_keys(api, kt, &spec_keys).await?;
    }
    // What is left after the steps: refusals, or steps the brokers have not shown yet.
    let after = plan::plan(desired, &observed, &spec_keys);
    let seen = match &observed.topic {
        Some(t) => Seen::Present(&desired.name, t),
        None => Seen::Absent,
    };
    report(api, &ctx.metrics, kt, readiness(desired, &after), seen).await?;
    let wait = if after.settled() {
        STEADY
    } else if after.refusals.iter().all(|r| r.may_pass()) {
        SETTLING
    } else {
        STEADY
    };
    Ok(Action::requeue(wait))
}

/// Sends one step.
async fn execute(admin: &mut Admin, name: &str, step: &Step) -> Result<(), AdminError> {
    announce(name, step);
    match step {
        Step::Create { assignment, config } => admin.create_topic(name, assignment, config).await,
        Step::AlterConfig(changes) => admin.alter_configs(name, changes).await,
        Step::AddPartitions { total, assignment } => {
            admin
                .create_partitions(name, *total as i32, assignment)
                .await
        }
    }
}

/// Logs the step about to be sent.
fn announce(name: &str, step: &Step) {
    match step {
        Step::Create { assignment, .. } => {
            tracing::info!(topic = %name, partitions = assignment.len(), "creating topic");
        }
        Step::AlterConfig(changes) => {
            tracing::info!(topic = %name, changes = changes.len(), "altering topic configs");
        }
        Step::AddPartitions { total, .. } => {
            tracing::info!(topic = %name, total, "adding partitions");
        }
    }
}

/// The Ready condition for what is left to do after a reconcile.
fn readiness(desired: &Desired, after: &Plan) -> Want {
    if let Some(first) = after.refusals.first() {
        let message = after
            .refusals
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        return Want::no("Ready", first.reason(), message);
    }
    if !after.steps.is_empty() {
        return Want::no(
            "Ready",
            "Reconciling",
            "the brokers do not show the changes yet".to_string(),
        );
    }
    Want::yes(
        "Ready",
        "Ready",
        format!(
            "topic {}: {} partitions of {} replicas, {} configs set",
            desired.name,
            desired.partitions,
            desired.replication_factor,
            desired.config.len()
        ),
    )
}

/// Reports a topic the resource says not to manage, changing nothing in Kafka.
async fn report_unmanaged(
    api: &Api<KafkaTopic>,
    metrics: &Metrics,
    kt: &KafkaTopic,
    desired: &Desired,
    observed: &Observed,
) -> Result<Action, Failure> {
    let note = format!("{}: \"false\"", crate::crd::topic::MANAGED_ANNOTATION);
    let (want, seen) = match &observed.topic {
        Some(t) => (
            Want::yes(
                "Ready",
                "Unmanaged",
                format!("{note}: topic {} is left as it is", desired.name),
            ),
            Seen::Present(&desired.name, t),
        ),
        None => (
            Want::no(
                "Ready",
                "Unmanaged",
                format!(
                    "{note}: topic {} does not exist and is not created",
                    desired.name
                ),
            ),
            Seen::Absent,
        ),
    };
    report(api, metrics, kt, want, seen).await?;
    Ok(Action::requeue(STEADY))
}

/// Deletes the topic in Kafka, unless it is not the operator's to delete.
async fn cleanup(
    kt: &KafkaTopic,
    ctx: &Context,
    api: &Api<KafkaTopic>,
) -> Result<Action, ReconcileError> {
    let Some((name, access)) = deletion_target(kt, ctx, api).await? else {
        return Ok(Action::await_change());
    };
    let bootstrap = &access.bootstrap;
    let resource = kt.name_any();
    let deleted = tokio::time::timeout(KAFKA_TIMEOUT, async {
        access.admin().await?.delete_topic(&name).await
    })
    .await
    .map_err(|_| ReconcileError::KafkaTimedOut {
        bootstrap: bootstrap.clone(),
        timeout: KAFKA_TIMEOUT,
    })?;
    match deleted {
        Ok(existed) => {
            tracing::info!(%resource, topic = %name, existed, "topic deleted");
            if existed {
                let note = format!("topic {name} deleted from the brokers at {bootstrap}");
                record(
                    &ctx.client,
                    &kt.object_ref(&()),
                    EventType::Normal,
                    "TopicDeleted",
                    note,
                )
                .await;
            }
            Ok(Action::await_change())
        }
        Err(e) => {
            if !e.is_transient() {
                let message = format!(
                    "{e}; to delete the resource and keep the topic, annotate it {}: \"false\"",
                    crate::crd::topic::MANAGED_ANNOTATION
                );
                not_ready(api, &ctx.metrics, kt, "DeleteRefused", message).await?;
            }
            Err(e.into())
        }
    }
}

/// The topic to delete and the brokers to ask, or nothing when it is not the operator's to
/// delete: unmanaged, never valid, its cluster gone, another KafkaTopic naming it, or a
/// cluster never reachable.
async fn deletion_target(
    kt: &KafkaTopic,
    ctx: &Context,
    api: &Api<KafkaTopic>,
) -> Result<Option<(String, Access)>, ReconcileError> {
    let resource = kt.name_any();
    if plan::unmanaged(kt) {
        tracing::info!(%resource, "unmanaged: the topic stays in Kafka");
        return Ok(None);
    }
    // The name the operator managed; a refused rename left the old one in the status.
    let name = kt
        .status
        .as_ref()
        .and_then(|s| s.topic_name.clone())
        .unwrap_or_else(|| plan::topic_name(kt));
    if gregor_client::names::validate_topic_name(&name).is_err() {
        return Ok(None);
    }
    let clusters: Api<KafkaCluster> =
        Api::namespaced(ctx.client.clone(), &kt.namespace().unwrap_or_default());
    let Some(kc) = clusters.get_opt(&kt.spec.cluster).await? else {
        tracing::info!(%resource, cluster = %kt.spec.cluster, "the cluster is gone: nothing to delete");
        return Ok(None);
    };
    let others = api.list(&ListParams::default()).await?.items;
    if let Some(other) = plan::other_claimant(kt, &name, &others) {
        tracing::info!(%resource, other = %other.name_any(), "another KafkaTopic names the topic: it stays");
        return Ok(None);
    }
    let Some(access) = certificates::access_of(ctx, &kc).await? else {
        // Never reachable, so never created by this operator.
        return Ok(None);
    };
    Ok(Some((name, access)))
}

/// Records `keys` as the configs the operator has set on the topic.
async fn record_keys(
    api: &Api<KafkaTopic>,
    kt: &KafkaTopic,
    keys: &BTreeSet<String>,
) -> Result<(), kube::Error> {
    // A merge patch, not an apply: an apply would create the resource if it were deleted
    // meanwhile.
    let patch = serde_json::json!({
        "metadata": {"annotations": {CONFIG_KEYS_ANNOTATION: plan::format_keys(keys)}}
    });
    api.patch(
        &kt.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// Reports Ready=False for `reason`, the rest of the status as it was.
async fn not_ready(
    api: &Api<KafkaTopic>,
    metrics: &Metrics,
    kt: &KafkaTopic,
    reason: &'static str,
    message: impl Into<String>,
) -> Result<(), kube::Error> {
    let ready = Want::no("Ready", reason, message);
    report(api, metrics, kt, ready, Seen::Unchanged).await
}

/// Writes the status: the Ready condition and, when looked at, the topic; then the Ready
/// condition to the metrics.
async fn report(
    api: &Api<KafkaTopic>,
    metrics: &Metrics,
    kt: &KafkaTopic,
    ready: Want,
    seen: Seen<'_>,
) -> Result<(), kube::Error> {
    let holds = ready.status;
    let previous = kt.status.clone().unwrap_or_default();
    let generation = kt.metadata.generation.unwrap_or_default();
    let mut status = KafkaTopicStatus {
        conditions: merge(
            &previous.conditions,
            &[ready],
            generation,
            Time(k8s_openapi::jiff::Timestamp::now()),
        ),
        observed_generation: Some(generation),
        ..previous
    };
    match seen {
        Seen::Unchanged => {}
        Seen::Absent => {
            status.topic_name = None;
            status.topic_id = None;
            status.partitions = None;
            status.replicas = Vec::new();
        }
        Seen::Present(name, topic) => {
            status.topic_name = Some(name.to_string());
            status.topic_id = Some(topic.id.clone());
            status.partitions = Some(topic.partitions.len() as i32);
            status.replicas = topic.partitions.clone();
        }
    }
    super::apply_status(api, kt, &status).await?;
    let namespace = kt.namespace().unwrap_or_default();
    metrics.resource_ready(&KafkaTopic::kind(&()), &namespace, &kt.name_any(), holds);
    Ok(())
}
