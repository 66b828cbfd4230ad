//! Pure build functions: a [`ValidatedCluster`] in, the Kubernetes objects that run it out. No
//! client, no clock, no randomness, so a spec always renders to the same objects and a no-op
//! reconcile changes nothing. The objects are applied in the order of [`ClusterObjects`]'s
//! fields: config and Services before the StatefulSets that use them.
//!
//! - [`properties`]: each node's `server.properties`.
//! - [`objects`]: labels and owner references shared by every child.
//! - [`services`], [`statefulset`], [`pdb`], [`monitor`]: the children themselves.
//! - [`spread`]: where pods land by default (other nodes, every zone).
//! - [`rack`]: rack awareness: the broker pods' ServiceAccount, their ClusterRoleBinding (not
//!   a child: cluster-scoped, so the reconcile applies and deletes it), the `rack` init
//!   container and its volume.

pub mod monitor;
pub mod objects;
pub mod pdb;
pub mod properties;
pub mod rack;
pub mod services;
pub mod spread;
pub mod statefulset;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
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
    /// The ServiceAccount broker pods read their node's rack as, with `spec.rack`.
    pub service_account: Option<ServiceAccount>,
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
        service_account: rack::service_account(cluster),
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

    /// A NodePort external listener on 9094 with these `advertised` addresses and node ports.
    fn node_port_listener(
        advertised: &[(&str, &str)],
        node_ports: &[(&str, i32)],
    ) -> Option<crate::crd::cluster::ExternalListener> {
        Some(crate::crd::cluster::ExternalListener {
            kind: crate::crd::cluster::ExternalType::NodePort,
            port: 9094,
            tls: false,
            authentication: None,
            advertised: advertised
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            node_ports: node_ports
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
        })
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
    fn the_service_monitor_labels_every_series_with_the_clusters_name() {
        let sm = monitor::service_monitor(&three_combined());
        let relabel = &sm["spec"]["endpoints"][0]["relabelings"][0];
        assert_eq!(relabel["targetLabel"], monitor::CLUSTER_LABEL);
        assert_eq!(relabel["replacement"], "events");
        assert_eq!(relabel["action"], "replace");
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
    fn a_secured_cluster_renders_as_snapshotted() {
        use crate::crd::cluster::{
            AuthenticationType, Authorization, AuthorizationType, ListenerAuthentication,
        };
        let mut spec = KafkaClusterSpec {
            replicas: 2,
            controllers: Some(ControllerPool {
                replicas: 1,
                ..Default::default()
            }),
            authorization: Some(Authorization {
                kind: AuthorizationType::Simple,
                super_users: vec!["admin".into(), "User:CN=ops,O=example".into()],
            }),
            ..Default::default()
        };
        spec.listeners.tls = true;
        spec.listeners.authentication =
            Some(ListenerAuthentication::of(AuthenticationType::ScramSha512));
        let mut external = node_port_listener(&[("0", "kafka-0.example.com:31000")], &[]);
        if let Some(e) = external.as_mut() {
            e.tls = true;
            e.authentication = Some(ListenerAuthentication::of(AuthenticationType::Tls));
        }
        spec.listeners.external = external;
        let objects = cluster(&validated(spec));
        assert_snapshot("secured-configmap", &objects.config);
        assert_snapshot("secured-bootstrap", &objects.bootstrap);
        assert_snapshot("secured-statefulsets", &objects.statefulsets);
    }

    #[test]
    fn an_oauth_listener_validates_tokens_as_the_broker_reads_it() {
        use crate::crd::cluster::{AuthenticationType, ListenerAuthentication};
        let mut spec = KafkaClusterSpec {
            replicas: 1,
            ..Default::default()
        };
        spec.listeners.tls = true;
        let mut oauth = ListenerAuthentication::of(AuthenticationType::OAuth);
        oauth.jwks_uri = Some("https://idp.example/jwks".into());
        oauth.issuer = Some("https://idp.example".into());
        oauth.audience = Some("kafka".into());
        oauth.user_name_claim = Some("preferred_username".into());
        spec.listeners.authentication = Some(oauth);
        let objects = cluster(&validated(spec));
        let text = &objects.config.data.as_ref().unwrap()["events-0.properties"];
        let env = |name: &str| Some(format!("{name}-value"));
        let props = gregor::config::resolve_providers(gregor::config::parse_properties(text), &env)
            .unwrap();
        assert!(props["listener.security.protocol.map"].contains("CLIENT:SASL_SSL"));
        let prefix = "listener.name.client.oauthbearer.sasl.oauthbearer.";
        assert_eq!(
            props[&format!("{prefix}jwks.endpoint.url")],
            "https://idp.example/jwks"
        );
        assert_eq!(props[&format!("{prefix}expected.audience")], "kafka");
        assert_eq!(
            props[&format!("{prefix}sub.claim.name")],
            "preferred_username"
        );
        // The broker takes the file as it stands: its OAUTHBEARER validator is the JWKS one.
        let config = gregor::config::Config::from_properties(props)
            .unwrap_or_else(|e| panic!("the broker refuses it: {e}"));
        let client = &config.sasl_listeners["CLIENT"];
        assert!(matches!(
            &client.oauthbearer,
            Some(gregor::sasl::oauthbearer::Validation::Jwks { settings, .. })
                if settings.issuer.as_deref() == Some("https://idp.example")
        ));
    }

    #[test]
    fn a_node_port_broker_advertises_its_node_address_which_the_broker_resolves() {
        use std::collections::BTreeMap;

        let mut spec = KafkaClusterSpec {
            replicas: 2,
            ..Default::default()
        };
        spec.listeners.external = node_port_listener(&[("0", "kafka-0.example.com:31000")], &[]);
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
    fn a_broker_with_a_node_port_in_the_spec_gets_its_service_on_it_and_the_others_any() {
        let mut spec = KafkaClusterSpec {
            replicas: 3,
            ..Default::default()
        };
        spec.listeners.external = node_port_listener(&[], &[("0", 31090), ("2", 31092)]);
        let objects = super::cluster(&validated(spec));
        let node_ports: Vec<Option<i32>> = objects
            .external
            .iter()
            .map(|s| s.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].node_port)
            .collect();
        assert_eq!(node_ports, vec![Some(31090), None, Some(31092)]);
    }

    #[test]
    fn claims_are_deleted_with_the_cluster_and_on_scale_down_only_when_delete_claim_says_so() {
        for (delete_claim, policy) in [(false, "Retain"), (true, "Delete")] {
            let mut spec = KafkaClusterSpec {
                replicas: 3,
                ..Default::default()
            };
            spec.storage.delete_claim = delete_claim;
            spec.controllers = Some(ControllerPool {
                replicas: 1,
                ..Default::default()
            });
            for sts in super::cluster(&validated(spec)).statefulsets {
                let retention = sts.spec.persistent_volume_claim_retention_policy;
                let retention = retention.unwrap();
                assert_eq!(retention.when_deleted.as_deref(), Some(policy));
                assert_eq!(retention.when_scaled.as_deref(), Some(policy));
            }
        }
    }

    fn pod_spec(objects: &ClusterObjects, i: usize) -> &k8s_openapi::api::core::v1::PodSpec {
        objects.statefulsets[i].spec.template.spec.as_ref().unwrap()
    }

    fn rack_cluster(topology_key: &str) -> ValidatedCluster {
        validated(KafkaClusterSpec {
            replicas: 2,
            controllers: Some(ControllerPool {
                replicas: 3,
                ..Default::default()
            }),
            rack: Some(Rack {
                topology_key: topology_key.into(),
            }),
            ..Default::default()
        })
    }

    #[test]
    fn with_rack_brokers_read_their_node_label_in_an_init_container_and_take_it_from_the_file() {
        let cluster = rack_cluster("example.com/rack");
        let objects = super::cluster(&cluster);
        let brokers = pod_spec(&objects, 0);
        let names = |cs: &[k8s_openapi::api::core::v1::Container]| {
            cs.iter().map(|c| c.name.clone()).collect::<Vec<_>>()
        };
        let init = brokers.init_containers.as_ref().unwrap();
        assert_eq!(names(init), ["rack", "format"], "the rack is read first");
        let rack = &init[0];
        assert_eq!(rack.image.as_deref(), Some("gregor:0.1.0"));
        assert_eq!(
            rack.command.as_deref(),
            Some(&["/usr/local/bin/gregor-operator".to_string()][..])
        );
        assert_eq!(
            rack.args.as_ref().unwrap().join(" "),
            "rack --node $(NODE_NAME) --label example.com/rack --out /var/lib/gregor-rack/rack"
        );
        let env = &rack.env.as_ref().unwrap()[0];
        assert_eq!(env.name, "NODE_NAME");
        let field = env.value_from.as_ref().and_then(|v| v.field_ref.as_ref());
        assert_eq!(field.unwrap().field_path, "spec.nodeName");
        // One emptyDir: written by the init container, read by format and the broker.
        let volume = brokers
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == "rack")
            .expect("the rack volume");
        assert!(volume.empty_dir.is_some());
        let mount = |c: &k8s_openapi::api::core::v1::Container| {
            c.volume_mounts
                .as_ref()
                .unwrap()
                .iter()
                .find(|m| m.name == "rack")
                .map(|m| (m.mount_path.clone(), m.read_only.unwrap_or(false)))
        };
        let dir = "/var/lib/gregor-rack".to_string();
        assert_eq!(mount(rack), Some((dir.clone(), false)));
        assert_eq!(mount(&init[1]), Some((dir.clone(), true)));
        assert_eq!(mount(&brokers.containers[0]), Some((dir, true)));
        // No GREGOR_RACK from the pod's labels any more.
        let broker = &brokers.containers[0];
        assert!(!broker
            .args
            .as_ref()
            .unwrap()
            .iter()
            .any(|a| a.contains("rack")));
        assert!(!broker
            .env
            .as_ref()
            .unwrap()
            .iter()
            .any(|e| e.name.contains("RACK")));
        let account = objects.service_account.as_ref().expect("a ServiceAccount");
        assert_eq!(account.metadata.name.as_deref(), Some("events-broker"));
        assert_eq!(account.metadata.namespace.as_deref(), Some("prod"));
        assert_eq!(
            account.metadata.owner_references.as_ref().unwrap()[0].uid,
            "0b7c9f1e-uid"
        );
        let binding = rack::cluster_role_binding(&cluster, "gregor-broker-rack").unwrap();
        assert_eq!(
            binding.metadata.name.as_deref(),
            Some("gregor-rack.prod.events")
        );
        assert_eq!(binding.metadata.namespace, None);
        assert_eq!(binding.metadata.owner_references, None, "cluster-scoped");
        let labels = binding.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["gregor.dev/cluster-namespace"], "prod");
        assert_eq!(labels["gregor.dev/cluster-name"], "events");
        assert_eq!(binding.role_ref.kind, "ClusterRole");
        assert_eq!(binding.role_ref.name, "gregor-broker-rack");
        let subject = &binding.subjects.as_ref().unwrap()[0];
        assert_eq!(
            (
                subject.kind.as_str(),
                subject.name.as_str(),
                subject.namespace.as_deref()
            ),
            ("ServiceAccount", "events-broker", Some("prod"))
        );
    }

    #[test]
    fn with_rack_brokers_take_broker_rack_from_the_file_through_a_config_provider() {
        let cluster = rack_cluster("example.com/rack");
        let objects = super::cluster(&cluster);
        let data = objects.config.data.as_ref().unwrap();
        let broker = &data["events-broker-0.properties"];
        assert!(
            broker.contains("\nbroker.rack=${dir:/var/lib/gregor-rack:rack}\n"),
            "{broker}"
        );
        assert!(broker.contains("\nconfig.providers=dir\n"), "{broker}");
        assert!(broker.contains(
            "\nconfig.providers.dir.class=\
             org.apache.kafka.common.config.provider.DirectoryConfigProvider\n"
        ));
        let controller = &data["events-controller-0.properties"];
        assert!(!controller.contains("broker.rack") && !controller.contains("config.providers"));
    }

    #[test]
    fn with_rack_only_broker_pods_run_as_the_service_account_that_may_read_nodes() {
        let cluster = rack_cluster("example.com/rack");
        let objects = super::cluster(&cluster);
        let brokers = pod_spec(&objects, 0);
        let names = |cs: &[k8s_openapi::api::core::v1::Container]| {
            cs.iter().map(|c| c.name.clone()).collect::<Vec<_>>()
        };
        assert_eq!(
            brokers.service_account_name.as_deref(),
            Some("events-broker")
        );
        assert_eq!(brokers.service_account, brokers.service_account_name);
        assert_eq!(brokers.automount_service_account_token, Some(true));
        let controllers = pod_spec(&objects, 1);
        assert_eq!(
            names(controllers.init_containers.as_ref().unwrap()),
            ["format"]
        );
        assert_eq!(controllers.service_account_name, None);
        assert_eq!(controllers.service_account, None);
        assert_eq!(controllers.automount_service_account_token, None);
        assert_eq!(controllers.volumes.as_ref().unwrap().len(), 1);
    }

    #[test]
    fn without_rack_pods_keep_the_default_service_account_and_read_no_rack() {
        let cluster = three_combined();
        let objects = super::cluster(&cluster);
        assert!(objects.service_account.is_none());
        assert!(rack::cluster_role_binding(&cluster, "gregor-broker-rack").is_none());
        let pods = pod_spec(&objects, 0);
        let init = pods.init_containers.as_ref().unwrap();
        assert_eq!(init.len(), 1);
        assert_eq!(init[0].name, "format");
        assert_eq!(pods.service_account_name, None);
        assert_eq!(pods.service_account, None);
        assert_eq!(pods.automount_service_account_token, None);
        assert!(!pods
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .any(|v| v.name == "rack"));
        let data = objects.config.data.as_ref().unwrap();
        assert!(!data["events-0.properties"].contains("broker.rack"));
        assert!(!data["events-0.properties"].contains("config.providers"));
    }

    #[test]
    fn a_node_port_broker_with_rack_lists_each_provider_once_and_resolves_both() {
        use std::collections::BTreeMap;

        let mut spec = KafkaClusterSpec {
            replicas: 1,
            rack: Some(Rack {
                topology_key: "kubernetes.io/hostname".into(),
            }),
            ..Default::default()
        };
        spec.listeners.external = node_port_listener(&[], &[]);
        // The user's own providers, one of which the operator also needs.
        spec.config
            .insert("config.providers".into(), "file, env".into());
        spec.config.insert(
            "config.providers.file.class".into(),
            "org.apache.kafka.common.config.provider.FileConfigProvider".into(),
        );
        let mut cluster = validated(spec);
        cluster.external_addresses = BTreeMap::from([(0, "${env:HOST_IP}:30000".to_string())]);
        let objects = super::cluster(&cluster);
        let text = &objects.config.data.as_ref().unwrap()["events-0.properties"];
        assert_eq!(text.matches("config.providers=").count(), 1, "{text}");
        assert_eq!(text.matches("config.providers.env.class=").count(), 1);
        assert_eq!(text.matches("config.providers.dir.class=").count(), 1);
        let mut props = gregor::config::parse_properties(text);
        assert_eq!(props["config.providers"], "file,env,dir");
        // The broker resolves both: its node's address, and its rack from the file.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rack"), "node-a").unwrap();
        let rack =
            props["broker.rack"].replace("/var/lib/gregor-rack", &dir.path().display().to_string());
        props.insert("broker.rack".into(), rack);
        let env = |name: &str| (name == "HOST_IP").then(|| "172.18.0.3".to_string());
        let resolved = gregor::config::resolve_providers(props, &env).unwrap();
        assert_eq!(resolved["broker.rack"], "node-a");
        assert!(resolved["advertised.listeners"].ends_with(",EXTERNAL://172.18.0.3:30000"));
        // format loads the same file, so it gets the same environment and the rack file.
        let pods = pod_spec(&objects, 0);
        let init = pods.init_containers.as_ref().unwrap();
        let format = init.iter().find(|c| c.name == "format").unwrap();
        let broker = &pods.containers[0];
        // (plus where it writes its error for the pod's status).
        let format_env = format.env.as_ref().unwrap();
        assert_eq!(
            &format_env[..format_env.len() - 1],
            broker.env.as_ref().unwrap()
        );
        assert_eq!(
            format_env.last().unwrap().name,
            gregor_client::termination::TERMINATION_LOG_ENV
        );
        assert!(format
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .any(|m| m.name == "rack"));
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
