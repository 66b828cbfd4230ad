//! Pure build functions: a [`ValidatedCluster`] in, the Kubernetes objects that run it out. No
//! client, no clock, no randomness, so a spec always renders to the same objects and a no-op
//! reconcile changes nothing. The objects are applied in the order of [`ClusterObjects`]'s
//! fields: config and Services before the StatefulSets that use them.
//!
//! - [`properties`]: each node's `server.properties`.
//! - [`objects`]: labels and owner references shared by every child.
//! - [`services`], [`statefulset`], [`pdb`], [`monitor`]: the children themselves.

pub mod monitor;
pub mod objects;
pub mod pdb;
pub mod properties;
pub mod services;
pub mod statefulset;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;

use crate::validate::ValidatedCluster;

/// Everything a KafkaCluster owns, in apply order.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterObjects {
    /// Every node's `server.properties`.
    pub config: ConfigMap,
    /// The headless Service (stable pod DNS names, reachable before pods are ready).
    pub headless: Service,
    /// The Service clients bootstrap from.
    pub bootstrap: Service,
    /// Per-broker Services of the external listener.
    pub external: Vec<Service>,
    /// One StatefulSet per pool.
    pub statefulsets: Vec<StatefulSet>,
    /// At most one node down at a time through voluntary disruptions.
    pub pdb: PodDisruptionBudget,
    /// The Prometheus Operator's ServiceMonitor, when asked for.
    pub service_monitor: Option<serde_json::Value>,
}

/// Renders every child of `cluster`.
pub fn cluster(cluster: &ValidatedCluster) -> ClusterObjects {
    let config = properties::config_map(cluster);
    ClusterObjects {
        headless: services::headless(cluster),
        bootstrap: services::bootstrap(cluster),
        external: services::external(cluster),
        service_monitor: cluster
            .metrics
            .service_monitor
            .then(|| monitor::service_monitor(cluster)),
        statefulsets: cluster
            .pools
            .iter()
            .map(|pool| statefulset::statefulset(cluster, pool, &config))
            .collect(),
        pdb: pdb::pdb(cluster),
        config,
    }
}

#[cfg(test)]
mod tests {
    use super::snapshot::assert_snapshot;
    use super::*;
    use crate::crd::cluster::{ControllerPool, KafkaClusterSpec, Rack};
    use crate::crd::KafkaCluster;
    use crate::validate::validate;

    const ID: &str = "MkU3OEVBNTcwNTJENDM2Qg";

    fn validated(spec: KafkaClusterSpec) -> ValidatedCluster {
        let mut c = KafkaCluster::new("events", spec);
        c.metadata.namespace = Some("prod".into());
        c.metadata.uid = Some("0b7c9f1e-uid".into());
        validate(&c, ID, "gregor:0.1.0").unwrap()
    }

    fn three_combined() -> ValidatedCluster {
        let mut spec = KafkaClusterSpec {
            replicas: 3,
            ..Default::default()
        };
        spec.config.insert("min.insync.replicas".into(), "2".into());
        spec.config.insert("num.partitions".into(), "6".into());
        validated(spec)
    }

    #[test]
    fn three_combined_nodes_render_as_snapshotted() {
        let objects = cluster(&three_combined());
        assert_snapshot("combined-configmap", &objects.config);
        assert_snapshot("combined-headless", &objects.headless);
        assert_snapshot("combined-bootstrap", &objects.bootstrap);
        assert_snapshot("combined-statefulset", &objects.statefulsets);
        assert_snapshot("combined-pdb", &objects.pdb);
    }

    #[test]
    fn dedicated_controllers_and_racks_render_as_snapshotted() {
        let spec = KafkaClusterSpec {
            replicas: 2,
            controllers: Some(ControllerPool {
                replicas: 3,
                ..Default::default()
            }),
            rack: Some(Rack {
                topology_key: "topology.kubernetes.io/zone".into(),
            }),
            ..Default::default()
        };
        let objects = cluster(&validated(spec));
        assert_snapshot("dedicated-configmap", &objects.config);
        assert_snapshot("dedicated-statefulsets", &objects.statefulsets);
    }

    #[test]
    fn a_node_port_broker_advertises_its_node_address_which_the_broker_resolves() {
        use std::collections::BTreeMap;

        use crate::crd::cluster::{ExternalListener, ExternalType};
        let mut spec = KafkaClusterSpec {
            replicas: 2,
            ..Default::default()
        };
        spec.listeners.external = Some(ExternalListener {
            kind: ExternalType::NodePort,
            port: 9094,
            advertised: BTreeMap::from([("0".into(), "kafka-0.example.com:31000".into())]),
        });
        // The user's own provider stays, with the operator's env provider added.
        spec.config.insert("config.providers".into(), "file".into());
        spec.config.insert(
            "config.providers.file.class".into(),
            "org.apache.kafka.common.config.provider.FileConfigProvider".into(),
        );
        let mut cluster = validated(spec);
        cluster.external_addresses = BTreeMap::from([
            (0, "${env:HOST_IP}:30000".to_string()),
            (1, "${env:HOST_IP}:30001".to_string()),
        ]);
        let objects = super::cluster(&cluster);
        let data = objects.config.data.as_ref().unwrap();
        let parsed = |pod: &str| {
            let props = gregor::config::parse_properties(&data[&format!("{pod}.properties")]);
            let env = |name: &str| (name == "HOST_IP").then(|| "172.18.0.3".to_string());
            gregor::config::resolve_providers(props, &env).unwrap()
        };
        let (b0, b1) = (parsed("events-0"), parsed("events-1"));
        // The spec's address wins over the Service's.
        assert!(b0["advertised.listeners"].ends_with(",EXTERNAL://kafka-0.example.com:31000"));
        assert!(!data["events-0.properties"].contains("config.providers=file,env"));
        assert!(
            b1["advertised.listeners"].ends_with(",EXTERNAL://172.18.0.3:30001"),
            "{b1:?}"
        );
        assert_eq!(b1["config.providers"], "file,env");
        assert_eq!(
            data["events-1.properties"]
                .matches("config.providers=")
                .count(),
            1
        );
        // The pods learn their node's address from the downward API.
        let container = &objects.statefulsets[0]
            .spec
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0];
        let host_ip = container
            .env
            .as_ref()
            .unwrap()
            .iter()
            .find(|e| e.name == "HOST_IP");
        let field = host_ip.and_then(|e| e.value_from.as_ref()?.field_ref.as_ref());
        assert_eq!(field.map(|f| f.field_path.as_str()), Some("status.hostIP"));
    }

    #[test]
    fn every_child_is_owned_by_the_cluster() {
        let objects = cluster(&three_combined());
        let metas = [
            &objects.config.metadata,
            &objects.headless.metadata,
            &objects.bootstrap.metadata,
            &objects.statefulsets[0].metadata,
            &objects.pdb.metadata,
        ];
        for m in metas {
            let owners = m.owner_references.as_ref().unwrap();
            assert_eq!(owners.len(), 1);
            assert_eq!(owners[0].kind, "KafkaCluster");
            assert_eq!(owners[0].uid, "0b7c9f1e-uid");
            assert_eq!(owners[0].controller, Some(true));
            assert_eq!(m.namespace.as_deref(), Some("prod"));
        }
    }

    #[test]
    fn the_config_hash_follows_the_config_and_nothing_else() {
        let hash = |v: &ValidatedCluster| {
            let o = cluster(v);
            o.statefulsets[0]
                .spec
                .template
                .metadata
                .as_ref()
                .unwrap()
                .annotations
                .as_ref()
                .unwrap()[objects::CONFIG_HASH_ANNOTATION]
                .clone()
        };
        let base = three_combined();
        assert_eq!(
            hash(&base),
            hash(&three_combined()),
            "rendering is deterministic"
        );
        let mut changed = three_combined();
        changed.config.insert("num.partitions".into(), "12".into());
        assert_ne!(hash(&base), hash(&changed));
        // Keys the brokers take at runtime are dynamic configs: no restart.
        let mut dynamic = three_combined();
        dynamic
            .config
            .insert("log.retention.hours".into(), "24".into());
        dynamic.config.remove("min.insync.replicas");
        assert_eq!(hash(&base), hash(&dynamic), "dynamic keys restart nothing");
        let mut image = three_combined();
        image.image = "gregor:0.2.0".into();
        assert_eq!(
            hash(&base),
            hash(&image),
            "the image is in the template itself"
        );
        let brokers = |replicas| {
            validated(KafkaClusterSpec {
                replicas,
                controllers: Some(ControllerPool {
                    replicas: 3,
                    ..Default::default()
                }),
                ..Default::default()
            })
        };
        assert_eq!(
            hash(&brokers(2)),
            hash(&brokers(5)),
            "adding brokers leaves the running ones current"
        );
    }
}

#[cfg(test)]
pub(crate) mod snapshot {
    //! YAML snapshots of rendered objects under `operator/src/build/snapshots/`. A difference
    //! fails the test and leaves `<name>.yaml.new` beside the snapshot; review it and move it
    //! over the old file to accept it.

    use std::path::PathBuf;

    /// Compares `value`, as YAML, with the snapshot `name`.
    pub fn assert_snapshot<T: serde::Serialize>(name: &str, value: &T) {
        let yaml = serde_saphyr::to_string(value).expect("renders as YAML");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/build/snapshots");
        let path = dir.join(format!("{name}.yaml"));
        let new = dir.join(format!("{name}.yaml.new"));
        match std::fs::read_to_string(&path) {
            Ok(old) if old == yaml => {
                let _ = std::fs::remove_file(&new);
            }
            found => {
                std::fs::create_dir_all(&dir).expect("snapshot dir");
                std::fs::write(&new, &yaml).expect("writing the new snapshot");
                panic!(
                    "snapshot {name} {}: review {} and move it over {}",
                    if found.is_ok() {
                        "changed"
                    } else {
                        "is missing"
                    },
                    new.display(),
                    path.display()
                );
            }
        }
    }
}
