//! Where a cluster's pods land by default: on different Kubernetes nodes, and evenly over
//! zones. Both are preferences (`preferred...`, `ScheduleAnyway`), so a single-node cluster or
//! one whose nodes carry no zone label still schedules every pod. `spec.template.affinity` and
//! `spec.template.topologySpreadConstraints`, when given, replace them.

use k8s_openapi::api::core::v1::{
    Affinity, PodAffinityTerm, PodAntiAffinity, TopologySpreadConstraint, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::objects::{cluster_selector, pool_selector};
use crate::validate::{Pool, ValidatedCluster};

/// The node label the default anti-affinity spreads over.
pub const HOSTNAME_KEY: &str = "kubernetes.io/hostname";
/// The node label the default spread constraint spreads over.
pub const ZONE_KEY: &str = "topology.kubernetes.io/zone";

/// The pods' affinity: the spec's, else a preference for a node no other pod of the cluster
/// (controller or broker) runs on, so losing one node costs one node of the cluster. `None`
/// when the spec gives an empty one.
pub fn affinity(cluster: &ValidatedCluster) -> Option<Affinity> {
    if let Some(a) = &cluster.template.affinity {
        return (*a != Affinity::default()).then(|| a.clone());
    }
    Some(Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(LabelSelector {
                            match_labels: Some(cluster_selector(cluster)),
                            ..Default::default()
                        }),
                        topology_key: HOSTNAME_KEY.into(),
                        ..Default::default()
                    },
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The pods' topology spread constraints: the spec's, else `pool`'s pods spread evenly over
/// zones (a skew of at most 1, scheduled anyway when it cannot be met). `None` when the spec
/// gives an empty list.
pub fn constraints(
    cluster: &ValidatedCluster,
    pool: &Pool,
) -> Option<Vec<TopologySpreadConstraint>> {
    let list = match &cluster.template.topology_spread_constraints {
        Some(given) => given.clone(),
        None => vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: ZONE_KEY.into(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            label_selector: Some(LabelSelector {
                match_labels: Some(pool_selector(cluster, pool)),
                ..Default::default()
            }),
            ..Default::default()
        }],
    };
    (!list.is_empty()).then_some(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::cluster::{ControllerPool, KafkaClusterSpec, PodTemplate};
    use crate::crd::KafkaCluster;
    use crate::validate::validate;
    use k8s_openapi::api::core::v1::{NodeAffinity, NodeSelector};

    fn cluster(template: Option<PodTemplate>) -> ValidatedCluster {
        let spec = KafkaClusterSpec {
            replicas: 3,
            controllers: Some(ControllerPool {
                replicas: 3,
                ..Default::default()
            }),
            template,
            ..Default::default()
        };
        let mut kc = KafkaCluster::new("events", spec);
        kc.metadata.namespace = Some("prod".into());
        validate(&kc, "MkU3OEVBNTcwNTJENDM2Qg", "gregor:1").unwrap()
    }

    #[test]
    fn by_default_pods_prefer_other_nodes_than_any_pod_of_the_cluster_and_spread_over_zones() {
        let c = cluster(None);
        let anti = affinity(&c).unwrap().pod_anti_affinity.unwrap();
        assert!(anti
            .required_during_scheduling_ignored_during_execution
            .is_none());
        let term = &anti
            .preferred_during_scheduling_ignored_during_execution
            .unwrap()[0]
            .pod_affinity_term;
        assert_eq!(term.topology_key, "kubernetes.io/hostname");
        let selector = term.label_selector.as_ref().unwrap().match_labels.as_ref();
        assert_eq!(
            selector,
            Some(&cluster_selector(&c)),
            "brokers and controllers alike"
        );
        for pool in &c.pools {
            let spread = constraints(&c, pool).unwrap();
            assert_eq!(spread.len(), 1);
            let s = &spread[0];
            assert_eq!(
                (
                    s.max_skew,
                    s.topology_key.as_str(),
                    s.when_unsatisfiable.as_str()
                ),
                (1, "topology.kubernetes.io/zone", "ScheduleAnyway")
            );
            let labels = s.label_selector.as_ref().unwrap().match_labels.as_ref();
            assert_eq!(
                labels,
                Some(&pool_selector(&c, pool)),
                "each pool on its own"
            );
        }
    }

    #[test]
    fn a_given_affinity_or_spread_replaces_the_default_and_an_empty_one_removes_it() {
        let node_affinity = Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![],
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let spread = TopologySpreadConstraint {
            max_skew: 2,
            topology_key: "example.com/rack".into(),
            when_unsatisfiable: "DoNotSchedule".into(),
            ..Default::default()
        };
        let c = cluster(Some(PodTemplate {
            affinity: Some(node_affinity.clone()),
            topology_spread_constraints: Some(vec![spread.clone()]),
            ..Default::default()
        }));
        assert_eq!(
            affinity(&c),
            Some(node_affinity),
            "no anti-affinity added to it"
        );
        assert_eq!(constraints(&c, &c.pools[0]), Some(vec![spread]));
        let c = cluster(Some(PodTemplate {
            affinity: Some(Affinity::default()),
            topology_spread_constraints: Some(vec![]),
            ..Default::default()
        }));
        assert_eq!(affinity(&c), None);
        assert_eq!(constraints(&c, &c.pools[1]), None);
    }
}
