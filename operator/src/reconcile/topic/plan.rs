//! The pure half of a KafkaTopic reconcile: the spec checked into a [`Desired`] topic, and the
//! [`Plan`] that brings the topic the brokers describe ([`Observed`]) in line with it, or the
//! [`Refusal`]s that say why part of it cannot be.

use std::collections::{BTreeMap, BTreeSet};

use gregor_client::admin::{ConfigChange, Topic};
use kube::ResourceExt;

use crate::crd::topic::MANAGED_ANNOTATION;
use crate::crd::KafkaTopic;
use crate::placement::{self, Broker, PlacementError};

/// Kafka keeps a replication factor in 16 bits.
const MAX_REPLICATION_FACTOR: i32 = i16::MAX as i32;

/// What a KafkaTopic asks for, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// The topic's name in Kafka: `spec.topicName`, else the resource's name.
    pub name: String,
    /// Partitions.
    pub partitions: usize,
    /// Replicas of each partition.
    pub replication_factor: usize,
    /// Configs to set on the topic.
    pub config: BTreeMap<String, String>,
}

/// The topic's name in Kafka, unchecked: `spec.topicName`, else the resource's name.
pub fn topic_name(kt: &KafkaTopic) -> String {
    kt.spec.topic_name.clone().unwrap_or_else(|| kt.name_any())
}

/// Whether the resource tells the operator to leave its topic alone
/// (`gregor.dev/managed: "false"`).
pub fn unmanaged(kt: &KafkaTopic) -> bool {
    kt.annotations()
        .get(MANAGED_ANNOTATION)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("false"))
}

/// Checks the spec as Kafka would (legal topic name, counts of at least 1); the message names
/// what to fix.
pub fn desired(kt: &KafkaTopic) -> Result<Desired, String> {
    let name = topic_name(kt);
    gregor_client::names::validate_topic_name(&name).map_err(|e| match &kt.spec.topic_name {
        Some(_) => format!("spec.topicName: {e}"),
        None => format!("{e} (set spec.topicName)"),
    })?;
    let spec = &kt.spec;
    if spec.partitions < 1 {
        return Err(format!(
            "spec.partitions must be at least 1 (got {})",
            spec.partitions
        ));
    }
    if !(1..=MAX_REPLICATION_FACTOR).contains(&spec.replication_factor) {
        return Err(format!(
            "spec.replicationFactor must be between 1 and {MAX_REPLICATION_FACTOR} (got {})",
            spec.replication_factor
        ));
    }
    if let Some(key) = spec.config.keys().find(|k| k.trim().is_empty()) {
        return Err(format!("spec.config has an empty key {key:?}"));
    }
    Ok(Desired {
        name,
        partitions: spec.partitions as usize,
        replication_factor: spec.replication_factor as usize,
        config: spec.config.clone(),
    })
}

/// The topic as the brokers describe it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// The brokers, for placement.
    pub brokers: Vec<Broker>,
    /// The topic, if it exists.
    pub topic: Option<Topic>,
    /// The configs set on the topic itself (not broker defaults).
    pub config: BTreeMap<String, String>,
}

/// One admin request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Create the topic with these partitions (replica broker ids, leader first) and configs.
    Create {
        /// Replicas of each partition.
        assignment: Vec<Vec<i32>>,
        /// Configs to create it with.
        config: BTreeMap<String, String>,
    },
    /// Set and delete configs (before any new partitions, so they start with them).
    AlterConfig(Vec<ConfigChange>),
    /// Grow the topic to `total` partitions, the new ones placed as `assignment` says.
    AddPartitions {
        /// The partition count afterwards.
        total: usize,
        /// Replicas of each new partition.
        assignment: Vec<Vec<i32>>,
    },
}

impl Step {
    /// The event reason and note recording that the step was taken on topic `name`.
    pub fn describe(&self, name: &str) -> (&'static str, String) {
        match self {
            Step::Create { assignment, config } => (
                "TopicCreated",
                format!(
                    "topic {name} created: {} partitions of {} replicas, {} configs",
                    assignment.len(),
                    assignment.first().map_or(0, Vec::len),
                    config.len()
                ),
            ),
            Step::AlterConfig(changes) => {
                let keys: Vec<&str> = changes.iter().map(ConfigChange::key).collect();
                (
                    "TopicConfigAltered",
                    format!("topic {name}: configs altered: {}", keys.join(", ")),
                )
            }
            Step::AddPartitions { total, assignment } => (
                "PartitionsAdded",
                format!(
                    "topic {name}: {} partitions added, {total} in all",
                    assignment.len()
                ),
            ),
        }
    }
}

/// A change the spec asks for that the operator will not make.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Kafka cannot remove partitions.
    #[error(
        "topic has {current} partitions and Kafka cannot remove partitions: spec.partitions \
         {wanted} is refused; set it to {current} or more"
    )]
    PartitionDecrease {
        /// Partitions the topic has.
        current: usize,
        /// Partitions the spec asks for.
        wanted: usize,
    },
    /// Changing the replication factor means reassigning every partition; not done here.
    #[error(
        "topic has replication factor {current}; changing it to {wanted} is not supported by \
         the operator (reassign the partitions with kafka-reassign-partitions, then set \
         spec.replicationFactor to match)"
    )]
    ReplicationFactorChange {
        /// Replicas each partition has.
        current: usize,
        /// Replicas the spec asks for.
        wanted: usize,
    },
    /// The cluster has too few brokers for the partitions the topic needs.
    #[error("cannot place partitions: {0}")]
    Placement(PlacementError),
}

impl Refusal {
    /// The Ready condition's reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::PartitionDecrease { .. } => "PartitionDecreaseRefused",
            Refusal::ReplicationFactorChange { .. } => "ReplicationFactorChangeUnsupported",
            Refusal::Placement(_) => "NotEnoughBrokers",
        }
    }

    /// Whether the cluster can lift it without a spec edit (brokers joining).
    pub fn may_pass(&self) -> bool {
        matches!(self, Refusal::Placement(_))
    }
}

/// What to do, in order, and what not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Admin requests, in the order they are sent.
    pub steps: Vec<Step>,
    /// Changes refused; the steps still bring the rest in line.
    pub refusals: Vec<Refusal>,
}

impl Plan {
    /// Whether the topic is as the spec says.
    pub fn settled(&self) -> bool {
        self.steps.is_empty() && self.refusals.is_empty()
    }
}

/// The steps from `observed` to `desired`. `recorded` are the config keys the operator set
/// before (from earlier specs): a key that left the spec is deleted from the topic only if it
/// is one of them, so configs other tools set stay.
pub fn plan(desired: &Desired, observed: &Observed, recorded: &BTreeSet<String>) -> Plan {
    let mut plan = Plan::default();
    let Some(topic) = &observed.topic else {
        match placement::assign(
            &observed.brokers,
            &[],
            desired.partitions,
            desired.replication_factor,
        ) {
            Ok(assignment) => plan.steps.push(Step::Create {
                assignment,
                config: desired.config.clone(),
            }),
            Err(e) => plan.refusals.push(Refusal::Placement(e)),
        }
        return plan;
    };
    let mut changes: Vec<ConfigChange> = desired
        .config
        .iter()
        .filter(|(k, v)| observed.config.get(*k) != Some(*v))
        .map(|(k, v)| ConfigChange::Set(k.clone(), v.clone()))
        .collect();
    changes.extend(
        recorded
            .iter()
            .filter(|k| !desired.config.contains_key(*k) && observed.config.contains_key(*k))
            .map(|k| ConfigChange::Delete(k.clone())),
    );
    if !changes.is_empty() {
        plan.steps.push(Step::AlterConfig(changes));
    }
    let current = topic.partitions.len();
    // New partitions take the topic's replication factor: Kafka refuses any other.
    let replication_factor = topic.partitions.first().map_or(0, Vec::len);
    if desired.partitions > current {
        match placement::assign(
            &observed.brokers,
            &topic.partitions,
            desired.partitions - current,
            replication_factor,
        ) {
            Ok(assignment) => plan.steps.push(Step::AddPartitions {
                total: desired.partitions,
                assignment,
            }),
            Err(e) => plan.refusals.push(Refusal::Placement(e)),
        }
    } else if desired.partitions < current {
        plan.refusals.push(Refusal::PartitionDecrease {
            current,
            wanted: desired.partitions,
        });
    }
    if replication_factor != desired.replication_factor {
        plan.refusals.push(Refusal::ReplicationFactorChange {
            current: replication_factor,
            wanted: desired.replication_factor,
        });
    }
    plan
}

/// The config keys a resource records as set by the operator (a comma-separated annotation
/// value; Kafka config keys hold no commas).
pub fn parse_keys(value: Option<&str>) -> BTreeSet<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .collect()
}

/// The annotation value recording `keys`.
pub fn format_keys(keys: &BTreeSet<String>) -> String {
    keys.iter().cloned().collect::<Vec<_>>().join(",")
}

/// Whether two resources name the same topic of the same cluster.
fn same_topic(a: &KafkaTopic, b: &KafkaTopic) -> bool {
    a.spec.cluster == b.spec.cluster && topic_name(a) == topic_name(b)
}

/// Another KafkaTopic, not being deleted, that names the same topic of the same cluster as
/// `kt` and was there first (created earlier; by name when created in the same second): while
/// it exists, the topic is its, and `kt` is in conflict.
pub fn earlier_claimant<'a>(kt: &KafkaTopic, others: &'a [KafkaTopic]) -> Option<&'a KafkaTopic> {
    let rank = |t: &KafkaTopic| (t.creation_timestamp().map(|c| c.0), t.name_any());
    others
        .iter()
        .filter(|o| o.uid() != kt.uid() && o.metadata.deletion_timestamp.is_none())
        .filter(|o| same_topic(kt, o) && rank(o) < rank(kt))
        .min_by_key(|o| rank(o))
}

/// Any other KafkaTopic, not being deleted, that names topic `name` of `kt`'s cluster.
pub fn other_claimant<'a>(
    kt: &KafkaTopic,
    name: &str,
    others: &'a [KafkaTopic],
) -> Option<&'a KafkaTopic> {
    others.iter().find(|o| {
        o.uid() != kt.uid()
            && o.metadata.deletion_timestamp.is_none()
            && o.spec.cluster == kt.spec.cluster
            && topic_name(o) == name
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::KafkaTopicSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn spec(partitions: i32, replication_factor: i32) -> KafkaTopicSpec {
        KafkaTopicSpec {
            cluster: "events".into(),
            partitions,
            replication_factor,
            ..Default::default()
        }
    }

    fn brokers(n: i32) -> Vec<Broker> {
        (0..n).map(|id| Broker { id, rack: None }).collect()
    }

    fn want(partitions: usize, rf: usize, config: &[(&str, &str)]) -> Desired {
        Desired {
            name: "orders".into(),
            partitions,
            replication_factor: rf,
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn existing(partitions: Vec<Vec<i32>>, config: &[(&str, &str)]) -> Observed {
        Observed {
            brokers: brokers(3),
            topic: Some(Topic {
                id: "AAAAAAAAAAAAAAAAAAAAAA".into(),
                partitions,
            }),
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn keys(ks: &[&str]) -> BTreeSet<String> {
        ks.iter().map(|k| k.to_string()).collect()
    }

    fn set(k: &str, v: &str) -> ConfigChange {
        ConfigChange::Set(k.into(), v.into())
    }

    #[test]
    fn the_topic_name_is_checked_as_kafka_checks_it() {
        let named = |name: &str, topic_name: Option<&str>| {
            let mut kt = KafkaTopic::new(name, spec(1, 1));
            kt.spec.topic_name = topic_name.map(str::to_string);
            desired(&kt)
        };
        assert_eq!(named("orders", None).unwrap().name, "orders");
        assert_eq!(
            named("orders", Some("Orders_V2")).unwrap().name,
            "Orders_V2"
        );
        let err = named("orders", Some("bad name")).unwrap_err();
        assert!(err.starts_with("spec.topicName: "), "{err}");
        assert!(named("orders", Some("..")).is_err());
        assert!(named("orders", Some(&"x".repeat(250))).is_err());
        assert!(named("orders", Some(&"x".repeat(249))).is_ok());
    }

    #[test]
    fn counts_below_one_are_invalid() {
        let err = desired(&KafkaTopic::new("t", spec(0, 1))).unwrap_err();
        assert!(err.contains("spec.partitions"), "{err}");
        let err = desired(&KafkaTopic::new("t", spec(1, 0))).unwrap_err();
        assert!(err.contains("spec.replicationFactor"), "{err}");
        assert!(desired(&KafkaTopic::new("t", spec(1, 40_000))).is_err());
    }

    #[test]
    fn an_absent_topic_is_created_with_a_balanced_assignment_and_its_configs() {
        let observed = Observed {
            brokers: brokers(3),
            ..Default::default()
        };
        let p = plan(
            &want(3, 3, &[("retention.ms", "1000")]),
            &observed,
            &keys(&[]),
        );
        let Step::Create { assignment, config } = &p.steps[0] else {
            panic!("{p:?}");
        };
        let leaders: BTreeSet<i32> = assignment.iter().map(|r| r[0]).collect();
        assert_eq!(leaders, BTreeSet::from([0, 1, 2]));
        assert_eq!(config["retention.ms"], "1000");
        assert!(p.refusals.is_empty());
    }

    #[test]
    fn an_absent_topic_with_more_replicas_than_brokers_is_refused_until_brokers_join() {
        let observed = Observed {
            brokers: brokers(1),
            ..Default::default()
        };
        let p = plan(&want(3, 3, &[]), &observed, &keys(&[]));
        assert!(p.steps.is_empty());
        assert_eq!(p.refusals.len(), 1);
        assert_eq!(p.refusals[0].reason(), "NotEnoughBrokers");
        assert!(p.refusals[0].may_pass());
    }

    #[test]
    fn a_topic_in_line_with_its_spec_needs_nothing() {
        let observed = existing(vec![vec![0, 1], vec![1, 2]], &[("retention.ms", "1000")]);
        let p = plan(
            &want(2, 2, &[("retention.ms", "1000")]),
            &observed,
            &keys(&["retention.ms"]),
        );
        assert!(p.settled(), "{p:?}");
    }

    #[test]
    fn more_partitions_grow_the_topic_onto_the_brokers_holding_least_of_it() {
        let observed = existing(vec![vec![0, 1], vec![1, 2]], &[]);
        let p = plan(&want(3, 2, &[]), &observed, &keys(&[]));
        assert_eq!(
            p.steps,
            vec![Step::AddPartitions {
                total: 3,
                assignment: vec![vec![2, 0]]
            }]
        );
    }

    #[test]
    fn fewer_partitions_are_refused_and_configs_are_still_altered() {
        let observed = existing(vec![vec![0], vec![1], vec![2]], &[]);
        let p = plan(
            &want(2, 1, &[("cleanup.policy", "compact")]),
            &observed,
            &keys(&[]),
        );
        assert_eq!(
            p.steps,
            vec![Step::AlterConfig(vec![set("cleanup.policy", "compact")])]
        );
        assert_eq!(
            p.refusals,
            vec![Refusal::PartitionDecrease {
                current: 3,
                wanted: 2
            }]
        );
        assert_eq!(p.refusals[0].reason(), "PartitionDecreaseRefused");
        assert!(!p.refusals[0].may_pass());
    }

    #[test]
    fn a_replication_factor_change_is_refused_and_growth_keeps_the_topics_factor() {
        let observed = existing(vec![vec![0, 1]], &[]);
        let p = plan(&want(2, 3, &[]), &observed, &keys(&[]));
        let Step::AddPartitions { assignment, .. } = &p.steps[0] else {
            panic!("{p:?}");
        };
        assert_eq!(assignment[0].len(), 2, "Kafka refuses a different factor");
        assert_eq!(
            p.refusals,
            vec![Refusal::ReplicationFactorChange {
                current: 2,
                wanted: 3
            }]
        );
        assert!(p.refusals[0].to_string().contains("not supported"));
    }

    #[test]
    fn configs_that_differ_are_set_and_configs_that_left_the_spec_are_deleted() {
        let observed = existing(
            vec![vec![0]],
            &[
                ("retention.ms", "1000"),
                ("segment.bytes", "1048576"),
                ("cleanup.policy", "compact"),
            ],
        );
        // retention.ms changes, segment.bytes left the spec, cleanup.policy was set by
        // someone else and was never in a spec, max.message.bytes is new.
        let p = plan(
            &want(
                1,
                1,
                &[("retention.ms", "2000"), ("max.message.bytes", "2048")],
            ),
            &observed,
            &keys(&["retention.ms", "segment.bytes"]),
        );
        assert_eq!(
            p.steps,
            vec![Step::AlterConfig(vec![
                set("max.message.bytes", "2048"),
                set("retention.ms", "2000"),
                ConfigChange::Delete("segment.bytes".into()),
            ])]
        );
    }

    #[test]
    fn a_recorded_key_already_gone_from_the_topic_is_not_deleted_again() {
        let observed = existing(vec![vec![0]], &[]);
        let p = plan(&want(1, 1, &[]), &observed, &keys(&["retention.ms"]));
        assert!(p.settled(), "{p:?}");
    }

    #[test]
    fn recorded_keys_round_trip_through_the_annotation() {
        let ks = keys(&["retention.ms", "cleanup.policy"]);
        assert_eq!(format_keys(&ks), "cleanup.policy,retention.ms");
        assert_eq!(parse_keys(Some(&format_keys(&ks))), ks);
        assert!(parse_keys(None).is_empty());
        assert!(parse_keys(Some("")).is_empty());
    }

    #[test]
    fn the_managed_annotation_set_to_false_leaves_the_topic_alone() {
        let mut kt = KafkaTopic::new("t", spec(1, 1));
        assert!(!unmanaged(&kt));
        kt.annotations_mut()
            .insert(MANAGED_ANNOTATION.into(), "false".into());
        assert!(unmanaged(&kt));
        kt.annotations_mut()
            .insert(MANAGED_ANNOTATION.into(), "true".into());
        assert!(!unmanaged(&kt));
    }

    #[test]
    fn the_older_of_two_resources_naming_one_topic_keeps_it() {
        let at = |name: &str, uid: &str, second: i64, topic: Option<&str>| {
            let mut kt = KafkaTopic::new(name, spec(1, 1));
            kt.metadata.uid = Some(uid.into());
            kt.metadata.creation_timestamp = Some(Time(Timestamp::from_second(second).unwrap()));
            kt.spec.topic_name = topic.map(str::to_string);
            kt
        };
        let first = at("orders", "1", 10, None);
        let second = at("orders-again", "2", 20, Some("orders"));
        let unrelated = at("payments", "3", 5, None);
        let all = vec![first.clone(), second.clone(), unrelated.clone()];
        assert!(earlier_claimant(&first, &all).is_none());
        assert_eq!(
            earlier_claimant(&second, &all).map(|o| o.name_any()),
            Some("orders".into())
        );
        assert!(earlier_claimant(&unrelated, &all).is_none());
        // Same second: by name.
        let twin = at("orders-b", "4", 10, Some("orders"));
        let all = vec![first.clone(), twin.clone()];
        assert!(earlier_claimant(&first, &all).is_none());
        assert!(earlier_claimant(&twin, &all).is_some());
        // The owner, when deleted, sees the other and leaves the topic to it.
        assert_eq!(
            other_claimant(&first, "orders", &all).map(|o| o.name_any()),
            Some("orders-b".into())
        );
        // Another cluster's topic of the same name is another topic.
        let mut elsewhere = at("orders-c", "5", 1, Some("orders"));
        elsewhere.spec.cluster = "audit".into();
        assert!(earlier_claimant(&first, &[elsewhere.clone()]).is_none());
        // A claimant being deleted no longer counts.
        let mut going = at("orders-d", "6", 1, Some("orders"));
        going.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(30).unwrap()));
        assert!(earlier_claimant(&first, &[going]).is_none());
    }
}
