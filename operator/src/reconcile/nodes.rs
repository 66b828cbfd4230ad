//! What a KafkaCluster's nodes are doing, read off its StatefulSets and pods: ready or not,
//! current or stale (and why), storage formatting failures. Turned into the status the user
//! sees and the [`NodeState`]s the roll planner takes.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::conditions::{merge, Want};
use super::scale::Outcome;
use crate::build::objects::CONFIG_HASH_ANNOTATION;
use crate::crd::cluster::{KafkaClusterStatus, NodeStatus, RollStatus};
use crate::roll::{bounded_list, NodeState, Step};
use crate::validate::ValidatedCluster;

/// Pod annotation asking for a restart (`"true"`), as Strimzi's manual rolling update does.
pub const MANUAL_RESTART_ANNOTATION: &str = "gregor.dev/manual-restart";

/// The reason of the conditions of a roll that waits for the user's decision about partitions
/// without a replica to spare.
pub const ROLL_BLOCKED_BY_TOPICS: &str = "RollBlockedByTopics";

/// What a roll blocked by `topics` (partitions without a replica to spare) tells the user: the
/// topics (the first few) and the two ways on.
pub fn blocked_by_topics(topics: &[String]) -> String {
    format!(
        "the roll waits: restarting any stale broker would take partitions of topics {} below \
         min.insync.replicas, as they have no replica to spare (replicas <= \
         min.insync.replicas); add replicas to them, or set \
         spec.rollingUpdate.partitionsWithoutSpare: Proceed to restart their brokers anyway",
        bounded_list(topics.to_vec())
    )
}

/// Every node of a cluster as found.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Each expected node, in pool and ordinal order.
    pub nodes: Vec<NodeState>,
    /// Pods whose storage format failed, with why.
    pub format_failures: Vec<String>,
    /// Pods that could not read their rack from their node's label, with why.
    pub rack_failures: Vec<String>,
    /// Children that could not follow the spec (volume sizes, a missing optional CRD), with
    /// why.
    pub unapplied: Vec<String>,
    /// Spec changes refused until the user edits the spec (a controller count), with why.
    pub refused: Vec<String>,
    /// Why certificates could not be issued (a user-supplied CA missing or broken).
    pub certificates: Vec<String>,
}

/// Whether any pod is stale against its StatefulSet as it is now: a roll is under way (or due)
/// from an earlier reconcile.
pub fn any_stale(statefulsets: &[StatefulSet], pods: &[Pod]) -> bool {
    statefulsets.iter().any(|sts| {
        let prefix = format!("{}-", sts.name_any());
        pods.iter()
            .filter(|p| {
                p.name_any()
                    .strip_prefix(&prefix)
                    .is_some_and(|ordinal| ordinal.parse::<u32>().is_ok())
            })
            .any(|p| stale_reason(p, sts).is_some())
    })
}

/// Whether a pod is ready (its Ready condition holds).
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// How long an unready pod has been so, from its Ready condition (or its creation).
pub fn unready_for(pod: &Pod, now: Timestamp) -> Option<Duration> {
    if pod_ready(pod) {
        return None;
    }
    let since = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))?;
    now.duration_since(since).try_into().ok()
}

/// Why a pod's storage could not be formatted, if its `format` init container failed.
pub fn format_failure(pod: &Pod) -> Option<String> {
    init_failure(pod, "format")
}

/// Why a pod could not read its rack, if its `rack` init container failed (its node lacks the
/// label, say).
pub fn rack_failure(pod: &Pod) -> Option<String> {
    init_failure(pod, "rack")
}

/// The termination message (else exit code) of the init container `name`, if it failed in
/// its current or its last run.
fn init_failure(pod: &Pod, name: &str) -> Option<String> {
    let statuses = pod.status.as_ref()?.init_container_statuses.as_ref()?;
    let format = statuses.iter().find(|s| s.name == name)?;
    let failed = |s: Option<&k8s_openapi::api::core::v1::ContainerState>| {
        s.and_then(|s| s.terminated.clone())
            .filter(|t| t.exit_code != 0)
    };
    let terminated =
        failed(format.state.as_ref()).or_else(|| failed(format.last_state.as_ref()))?;
    Some(
        terminated
            .message
            .unwrap_or_else(|| format!("exit code {}", terminated.exit_code))
            .trim()
            .to_string(),
    )
}

/// The image of the node container among `containers`.
fn node_image(containers: &[k8s_openapi::api::core::v1::Container]) -> Option<String> {
    containers
        .iter()
        .find(|c| c.name == "gregor")
        .and_then(|c| c.image.clone())
}

/// The image the StatefulSets' nodes run (they all run one), if any StatefulSet exists: what a
/// cluster reconciled before `status.image` existed runs.
pub fn running_image(statefulsets: &[StatefulSet]) -> Option<String> {
    statefulsets
        .iter()
        .find_map(|s| node_image(&s.spec.template.spec.as_ref()?.containers))
}

/// Why `pod` must restart to match `sts`'s template; `None` when it is current.
pub fn stale_reason(pod: &Pod, sts: &StatefulSet) -> Option<String> {
    if pod
        .annotations()
        .get(MANUAL_RESTART_ANNOTATION)
        .map(String::as_str)
        == Some("true")
    {
        return Some("manual restart requested".into());
    }
    let template = &sts.spec.template;
    let wanted_hash = template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(CONFIG_HASH_ANNOTATION));
    if wanted_hash.is_some() && pod.annotations().get(CONFIG_HASH_ANNOTATION) != wanted_hash {
        return Some("configuration changed".into());
    }
    let wanted_image = template
        .spec
        .as_ref()
        .and_then(|s| node_image(&s.containers));
    let pod_image = pod.spec.as_ref().and_then(|s| node_image(&s.containers));
    if wanted_image != pod_image {
        return Some(format!(
            "image changed to {}",
            wanted_image.unwrap_or_default()
        ));
    }
    // Anything else in the template (resources, probes, overrides): the StatefulSet's revision.
    let update = sts.status.as_ref().and_then(|s| s.update_revision.as_ref());
    let revision = pod.labels().get("controller-revision-hash");
    match (update, revision) {
        (Some(u), Some(r)) if u != r => Some("pod template changed".into()),
        _ => None,
    }
}

/// Reads each expected node off the StatefulSets and pods.
pub fn observe(
    cluster: &ValidatedCluster,
    statefulsets: &[StatefulSet],
    pods: &[Pod],
    now: Timestamp,
) -> Observed {
    let mut out = Observed::default();
    for pool in &cluster.pools {
        let sts = statefulsets
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(&pool.name));
        for (ordinal, pod_name) in pool.pods() {
            let pod = pods
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(&pod_name));
            if let Some(why) = pod.and_then(format_failure) {
                out.format_failures.push(format!("{pod_name}: {why}"));
            }
            if let Some(why) = pod.and_then(rack_failure) {
                out.rack_failures.push(format!("{pod_name}: {why}"));
            }
            let stale = match (pod, sts) {
                (Some(p), Some(s)) => stale_reason(p, s),
                // A missing pod is the StatefulSet's to create, with the current template.
                _ => None,
            };
            out.nodes.push(NodeState {
                pod: pod_name,
                node_id: pool.node_id(ordinal),
                ready: pod.is_some_and(pod_ready),
                stale,
                unready_for: pod.and_then(|p| unready_for(p, now)),
                terminating: pod.is_some_and(|p| p.metadata.deletion_timestamp.is_some()),
            });
        }
    }
    out
}

/// The status the user sees, from what was observed and the roll's next step.
pub fn status(
    cluster: &ValidatedCluster,
    observed: &Observed,
    step: &Step,
    pending: Vec<String>,
    scaling: &Outcome,
    previous: &KafkaClusterStatus,
    generation: Option<i64>,
) -> KafkaClusterStatus {
    let generation = generation.unwrap_or_default();
    let nodes = &observed.nodes;
    let total = nodes.len();
    let ready = nodes.iter().filter(|n| n.ready).count();
    let stale = nodes.iter().filter(|n| n.stale.is_some()).count();
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
    let roll = match step {
        Step::Done => None,
        Step::Restart { pod, .. } => Some(RollStatus {
            pending: pending.clone(),
            restarting: Some(pod.clone()),
            waiting_for: None,
        }),
        Step::Wait { reason } | Step::Halt { reason } => Some(RollStatus {
            pending: pending.clone(),
            restarting: None,
            waiting_for: Some(reason.clone()),
        }),
        Step::Blocked { topics } => Some(RollStatus {
            pending: pending.clone(),
            restarting: None,
            waiting_for: Some(blocked_by_topics(topics)),
        }),
    };
    match step {
        // A scale step says more than a roll that waits for it.
        _ if scaling.progressing.is_some() => {
            wanted.extend(scaling.progressing.clone());
        }
        Step::Done if ready == total => {
            wanted.push(Want::no("Progressing", "Settled", "nothing to do"))
        }
        Step::Done => wanted.push(Want::yes(
            "Progressing",
            "Starting",
            format!("{} of {total} nodes starting", total - ready),
        )),
        Step::Restart { pod, reason } => wanted.push(Want::yes(
            "Progressing",
            "RollingRestart",
            format!("restarting {pod} ({reason}); {} to go", pending.len()),
        )),
        Step::Wait { reason } => wanted.push(Want::yes(
            "Progressing",
            "RollingRestart",
            format!("waiting for {reason}; {} to restart", pending.len()),
        )),
        Step::Halt { .. } => wanted.push(Want::no(
            "Progressing",
            "RollHalted",
            "the rolling restart stopped",
        )),
        // Like a refused scale-down: nothing moves until the user decides, so the roll is not
        // progressing, and Degraded (what alerts watch) names the topics and the choice.
        Step::Blocked { topics } => wanted.push(Want::no(
            "Progressing",
            ROLL_BLOCKED_BY_TOPICS,
            blocked_by_topics(topics),
        )),
    }
    let mut degraded = observed.format_failures.clone();
    degraded.extend(observed.rack_failures.iter().cloned());
    degraded.extend(observed.unapplied.iter().cloned());
    degraded.extend(observed.refused.iter().cloned());
    degraded.extend(observed.certificates.iter().cloned());
    degraded.extend(scaling.blocked.iter().cloned());
    match step {
        Step::Halt { reason } => degraded.push(reason.clone()),
        Step::Blocked { topics } => degraded.push(blocked_by_topics(topics)),
        _ => {}
    }
    // The first kind of problem names the reason; the message lists them all.
    let reason = if !observed.format_failures.is_empty() {
        "StorageFormatFailed"
    } else if !observed.rack_failures.is_empty() {
        "RackLookupFailed"
    } else if !observed.unapplied.is_empty() {
        "SpecNotApplied"
    } else if !observed.refused.is_empty() {
        "ControllerScalingRefused"
    } else if !observed.certificates.is_empty() {
        "CertificateAuthorityInvalid"
    } else if scaling.blocked.is_some() {
        "ScaleDownBlocked"
    } else if matches!(step, Step::Blocked { .. }) {
        ROLL_BLOCKED_BY_TOPICS
    } else {
        "RollHalted"
    };
    if degraded.is_empty() {
        wanted.push(Want::no("Degraded", "AsExpected", "no failures seen"));
    } else {
        wanted.push(Want::yes("Degraded", reason, degraded.join("; ")));
    }
    KafkaClusterStatus {
        conditions: merge(
            &previous.conditions,
            &wanted,
            generation,
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()),
        ),
        observed_generation: Some(generation),
        cluster_id: Some(cluster.cluster_id.clone()),
        bootstrap_servers: Some(cluster.bootstrap_servers()),
        image: Some(cluster.image.clone()),
        ready_replicas: ready as i32,
        brokers: nodes
            .iter()
            .map(|n| NodeStatus {
                id: n.node_id,
                pod: n.pod.clone(),
                ready: n.ready,
                current: n.stale.is_none(),
            })
            .collect(),
        roll,
        scaling: scaling.status.clone(),
        cluster_ca: previous.cluster_ca.clone(),
        clients_ca: previous.clients_ca.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pod whose init container `name` ended with `exit_code` and `message`.
    fn ended(name: &str, exit_code: i32, message: Option<&str>) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "events-0"},
            "status": {"initContainerStatuses": [{
                "name": name, "image": "gregor", "imageID": "", "ready": false,
                "restartCount": 1,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": exit_code, "message": message}}
            }]}
        }))
        .unwrap()
    }

    fn three_nodes() -> ValidatedCluster {
        let mut kc = crate::crd::KafkaCluster::new(
            "events",
            crate::crd::KafkaClusterSpec {
                replicas: 3,
                ..Default::default()
            },
        );
        kc.metadata.namespace = Some("prod".into());
        crate::validate::validate(&kc, "MkU3OEVBNTcwNTJENDM2Qg", "gregor:1").unwrap()
    }

    fn condition<'a>(
        status: &'a KafkaClusterStatus,
        kind: &str,
    ) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        status.conditions.iter().find(|c| c.type_ == kind).unwrap()
    }

    #[test]
    fn a_roll_blocked_by_topics_is_degraded_naming_at_most_ten_of_them_and_the_field() {
        let cluster = three_nodes();
        let nodes: Vec<NodeState> = (0..3)
            .map(|i| NodeState {
                pod: format!("events-{i}"),
                node_id: i,
                ready: true,
                stale: Some("configuration changed".into()),
                unready_for: None,
                terminating: false,
            })
            .collect();
        let observed = Observed {
            nodes,
            ..Default::default()
        };
        let topics: Vec<String> = (0..12).map(|i| format!("t{i:02}")).collect();
        let step = Step::Blocked { topics };
        let status = status(
            &cluster,
            &observed,
            &step,
            vec!["events-0".into()],
            &Outcome::default(),
            &KafkaClusterStatus::default(),
            Some(2),
        );
        let degraded = condition(&status, "Degraded");
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", "RollBlockedByTopics")
        );
        let message = &degraded.message;
        assert!(
            message.contains("topics t00, t01, t02, t03, t04, t05, t06, t07, t08, t09 and 2 more"),
            "{message}"
        );
        assert!(!message.contains("t10"), "{message}");
        assert!(
            message.contains("spec.rollingUpdate.partitionsWithoutSpare: Proceed"),
            "{message}"
        );
        let progressing = condition(&status, "Progressing");
        assert_eq!(
            (progressing.status.as_str(), progressing.reason.as_str()),
            ("False", "RollBlockedByTopics")
        );
        let roll = status.roll.as_ref().unwrap();
        assert_eq!(roll.waiting_for.as_ref(), Some(message));
        assert_eq!(roll.pending, ["events-0"]);

        // A roll that merely waits is neither.
        let waiting = super::status(
            &cluster,
            &observed,
            &Step::Wait {
                reason: "3 under-replicated partitions to catch up".into(),
            },
            vec![],
            &Outcome::default(),
            &KafkaClusterStatus::default(),
            Some(2),
        );
        assert_eq!(condition(&waiting, "Degraded").status, "False");
        assert_eq!(condition(&waiting, "Progressing").reason, "RollingRestart");
    }

    #[test]
    fn a_pod_being_deleted_is_observed_as_terminating_and_a_missing_one_is_not() {
        let cluster = three_nodes();
        let pod = |name: &str, deleted: bool| -> Pod {
            serde_json::from_value(serde_json::json!({"metadata": {
                "name": name,
                "deletionTimestamp": deleted.then_some("2026-01-01T00:00:00Z"),
            }}))
            .unwrap()
        };
        let observed = observe(
            &cluster,
            &[],
            &[pod("events-0", false), pod("events-1", true)],
            Timestamp::now(),
        );
        let terminating: Vec<bool> = observed.nodes.iter().map(|n| n.terminating).collect();
        assert_eq!(terminating, [false, true, false]);
    }

    #[test]
    fn a_failed_init_container_is_reported_with_its_message_and_a_success_is_not() {
        let rack = ended("rack", 1, Some("node n1 has no label example.com/rack\n"));
        assert_eq!(
            rack_failure(&rack).as_deref(),
            Some("node n1 has no label example.com/rack")
        );
        assert_eq!(format_failure(&rack), None, "only the container named");
        let format = ended("format", 2, None);
        assert_eq!(format_failure(&format).as_deref(), Some("exit code 2"));
        assert_eq!(format_failure(&ended("format", 0, None)), None);
    }
}
