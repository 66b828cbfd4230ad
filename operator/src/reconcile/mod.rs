//! Reconciliation: what the operator does with each resource, in the order docs/architecture.md sets out:
//! observe → validate (no client) → build (pure) → apply in a written order → delete orphans →
//! status.
//!
//! - [`context`](Context): what every reconcile shares (the client, the default image, where
//!   brokers are reached, the ClusterRole rack-aware broker pods are bound to, the metrics).
//! - [`cluster`]: a KafkaCluster into its children and status.
//! - [`access`]: where and how the operator reaches a cluster's brokers (mutual TLS when the
//!   cluster is secured).
//! - [`broker_configs`]: spec.config keys the brokers take at runtime, set as dynamic configs.
//! - [`certificates`]: the cluster and clients CAs and the nodes' certificates, in Secrets.
//! - [`cluster_id`]: the cluster id, chosen once and kept where a status wipe cannot lose it.
//! - [`nodes`]: each node's state read off the pods, and the status it makes.
//! - [`orphans`]: children the spec no longer builds, deleted.
//! - [`restart`]: deleting the pod a roll restarts, only if it is still the pod it planned on.
//! - [`rack`]: the rack ClusterRoleBinding of broker pods, applied and deleted, behind a
//!   finalizer since nothing else would delete it.
//! - [`scale`]: a broker scale step carried out against the brokers, and what it reports.
//! - [`storage`]: volume growth on the claims, and refused shrinks.
//! - [`topic`]: a KafkaTopic into its topic in Kafka, through the admin API.
//! - [`user`]: a KafkaUser into its credentials, ACLs and quotas on the brokers.
//! - [`conditions`]: status conditions that keep their transition time while unchanged.

pub mod access;
pub mod broker_configs;
pub mod certificates;
pub mod cluster;
pub mod cluster_id;
pub mod conditions;
pub mod nodes;
pub mod orphans;
pub mod rack;
pub mod restart;
pub mod scale;
pub mod storage;
pub mod topic;
pub mod user;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

/// What every reconcile shares.
#[derive(Clone)]
pub struct Context {
    /// The API server.
    pub client: kube::Client,
    /// The image a new KafkaCluster's nodes run when it names none (the operator's own
    /// version); a cluster keeps the image recorded in its `status.image` after that.
    pub default_image: String,
    /// Where the brokers of a cluster are reached, by `namespace/name`, instead of its bootstrap
    /// Service: for out-of-cluster runs and tests (`--bootstrap-override`).
    pub bootstrap_overrides: BTreeMap<String, String>,
    /// The ClusterRole (nodes get) the broker pods of a cluster with `spec.rack` are bound to
    /// (`--rack-cluster-role`, installed by the chart).
    pub rack_cluster_role: String,
    /// The operator's metrics, which each reconcile updates with what it found and wrote.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The time certificates are made and renewed by.
    pub clock: Clock,
}

/// The time the operator goes by: the system clock, or (in tests of what happens months
/// later, such as certificate renewal) the system clock moved ahead.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Clock {
    ahead_seconds: i64,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// The system clock, `seconds` ahead.
    pub fn ahead(seconds: i64) -> Clock {
        Clock {
            ahead_seconds: seconds,
        }
    }

    /// Now, in unix seconds.
    pub fn now(&self) -> i64 {
        k8s_openapi::jiff::Timestamp::now().as_second() + self.ahead_seconds
    }
}

impl Context {
    /// Where the brokers of cluster `namespace/name` are reached: its override, or `default`
    /// (its bootstrap Service).
    pub fn bootstrap(&self, namespace: &str, name: &str, default: &str) -> String {
        self.bootstrap_overrides
            .get(&format!("{namespace}/{name}"))
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("default_image", &self.default_image)
            .field("bootstrap_overrides", &self.bootstrap_overrides)
            .field("rack_cluster_role", &self.rack_cluster_role)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

/// Server-side applies `status` as the status of `object`, under the operator's field
/// manager (every reconciler writes its resource's status this way).
pub(crate) async fn apply_status<K>(
    api: &kube::Api<K>,
    object: &K,
    status: &impl serde::Serialize,
) -> Result<(), kube::Error>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    use kube::ResourceExt;
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &object.name_any(),
        &kube::api::PatchParams::apply(crate::build::objects::FIELD_MANAGER).force(),
        &kube::api::Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// Why a reconcile failed (an invalid spec is not a failure: it is reported in the status and
/// waits for an edit).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The API server refused or could not be reached.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The brokers did not answer in the time a reconcile gives them.
    #[error("the brokers at {bootstrap} did not answer within {timeout:?}")]
    KafkaTimedOut {
        /// Where the brokers were asked.
        bootstrap: String,
        /// How long they were given.
        timeout: Duration,
    },
    /// An admin request to the brokers failed: they could not be reached, or refused it.
    #[error("Kafka admin API: {0}")]
    KafkaAdmin(#[from] gregor_client::admin::AdminError),
    /// A resource without the metadata a reconcile needs.
    #[error("{0}")]
    Malformed(String),
}

impl ReconcileError {
    /// Every value [`ReconcileError::category`] takes.
    pub const CATEGORIES: [&'static str; 3] = ["kubernetes", "kafka", "malformed"];

    /// A bounded label for metrics, one of [`ReconcileError::CATEGORIES`].
    pub fn category(&self) -> &'static str {
        match self {
            ReconcileError::Kube(_) => "kubernetes",
            ReconcileError::KafkaTimedOut { .. } | ReconcileError::KafkaAdmin(_) => "kafka",
            ReconcileError::Malformed(_) => "malformed",
        }
    }

    /// The reason of the condition (`Ready=False`) a resource reports this error with: one per
    /// cause, and for the brokers' admin API, whether retrying can help.
    pub fn reason(&self) -> &'static str {
        match self {
            ReconcileError::Kube(_) => "KubernetesUnavailable",
            ReconcileError::KafkaTimedOut { .. } => "KafkaTimedOut",
            ReconcileError::KafkaAdmin(e) if e.is_transient() => "KafkaUnavailable",
            ReconcileError::KafkaAdmin(_) => "KafkaRejected",
            ReconcileError::Malformed(_) => "Malformed",
        }
    }

    /// What a condition reporting this error says: the cause alone, without the prefix naming
    /// the API, since the reason says that.
    pub fn message(&self) -> String {
        match self {
            ReconcileError::Kube(e) => e.to_string(),
            ReconcileError::KafkaAdmin(e) => e.to_string(),
            ReconcileError::KafkaTimedOut { .. } | ReconcileError::Malformed(_) => self.to_string(),
        }
    }
}

/// The error of a reconcile run through kube's finalizer helper.
pub(crate) fn finalizer_error(
    e: kube::runtime::finalizer::Error<ReconcileError>,
) -> ReconcileError {
    use kube::runtime::finalizer::Error;
    match e {
        Error::ApplyFailed(e) | Error::CleanupFailed(e) => e,
        Error::AddFinalizer(e) | Error::RemoveFinalizer(e) => ReconcileError::Kube(e),
        e @ (Error::UnnamedObject | Error::InvalidFinalizer) => {
            ReconcileError::Malformed(e.to_string())
        }
    }
}

/// Records an event on `object` (`kubectl describe` shows it); a failure to record is logged,
/// never fatal.
pub(crate) async fn record(
    client: &kube::Client,
    object: &ObjectReference,
    kind: EventType,
    reason: &str,
    note: String,
) {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "gregor-operator".into(),
            instance: None,
        },
    );
    let e = Event {
        type_: kind,
        reason: reason.into(),
        note: Some(note),
        action: reason.into(),
        secondary: None,
    };
    if let Err(err) = recorder.publish(&e, object).await {
        tracing::debug!(error = %err, "recording an event failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gregor_client::admin::AdminError;
    use kafka_protocol::error::ResponseError;

    fn refused(error: ResponseError) -> ReconcileError {
        ReconcileError::KafkaAdmin(AdminError::Refused {
            what: "creating topic t".into(),
            error,
            message: "no".into(),
        })
    }

    #[test]
    fn each_cause_has_its_own_condition_reason_and_a_message_without_the_apis_prefix() {
        let timed_out = ReconcileError::KafkaTimedOut {
            bootstrap: "b:9092".into(),
            timeout: Duration::from_secs(60),
        };
        let unavailable = refused(ResponseError::NotController);
        let rejected = refused(ResponseError::InvalidConfig);
        let malformed = ReconcileError::Malformed("no namespace".into());
        let reasons: Vec<_> = [&timed_out, &unavailable, &rejected, &malformed]
            .iter()
            .map(|e| e.reason())
            .collect();
        assert_eq!(
            reasons,
            [
                "KafkaTimedOut",
                "KafkaUnavailable",
                "KafkaRejected",
                "Malformed"
            ]
        );
        assert_eq!(
            timed_out.message(),
            "the brokers at b:9092 did not answer within 60s"
        );
        assert!(unavailable.to_string().starts_with("Kafka admin API: "));
        assert!(rejected
            .message()
            .starts_with("creating topic t: InvalidConfig"));
        assert_eq!(timed_out.category(), rejected.category());
        let kube = ReconcileError::Kube(kube::Error::LinesCodecMaxLineLengthExceeded);
        let categories: Vec<_> = [&kube, &timed_out, &malformed]
            .iter()
            .map(|e| e.category())
            .collect();
        assert_eq!(categories, ReconcileError::CATEGORIES);
    }
}
