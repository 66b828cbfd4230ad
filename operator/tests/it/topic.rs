//! KafkaTopic reconciles against the real API server and a real three-node Gregor cluster
//! ([`brokers`]): what the reconcile reports is checked against what the brokers say through
//! the admin API.

pub mod brokers;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use gregor_client::admin::{Admin, ConfigChange, Topic};
use gregor_client::Cluster;
use gregor_operator::crd::topic::MANAGED_ANNOTATION;
use gregor_operator::crd::{KafkaCluster, KafkaClusterSpec, KafkaTopic, KafkaTopicSpec};
use gregor_operator::reconcile::topic::{reconcile, CONFIG_KEYS_ANNOTATION, FINALIZER};
use gregor_operator::reconcile::Context;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::ResourceExt;

use crate::{api_server_or_skip, install_crds};

/// The KafkaCluster every test's topics name.
const CLUSTER: &str = "events";

/// One test's namespace, with a KafkaCluster whose brokers are the shared local cluster.
struct Setup {
    ctx: Arc<Context>,
    api: Api<KafkaTopic>,
    bootstrap: String,
    ns: String,
}

impl Setup {
    async fn new(server: &crate::apiserver::ApiServer, test: &str) -> Setup {
        let (client, ns) = server.namespace(test).await;
        install_crds(&client).await;
        let brokers = brokers::shared();
        Api::<KafkaCluster>::namespaced(client.clone(), &ns)
            .create(
                &PostParams::default(),
                &KafkaCluster::new(
                    CLUSTER,
                    KafkaClusterSpec {
                        replicas: 3,
                        ..Default::default()
                    },
                ),
            )
            .await
            .expect("creating the KafkaCluster");
        // CLUSTER is the cluster `reaching` names.
        let ctx = crate::cluster::reaching(&client, &ns, &brokers.bootstrap);
        Setup {
            ctx,
            api: Api::namespaced(client, &ns),
            bootstrap: brokers.bootstrap.clone(),
            ns,
        }
    }

    async fn create(&self, name: &str, spec: KafkaTopicSpec) -> KafkaTopic {
        self.api
            .create(&PostParams::default(), &KafkaTopic::new(name, spec))
            .await
            .expect("creating the KafkaTopic")
    }

    async fn get(&self, name: &str) -> KafkaTopic {
        self.api.get(name).await.expect("reading the KafkaTopic")
    }

    /// One reconcile of the resource as it is now.
    async fn reconcile(&self, name: &str) -> Action {
        reconcile(Arc::new(self.get(name).await), Arc::clone(&self.ctx))
            .await
            .unwrap_or_else(|e| panic!("reconciling {name}: {e}"))
    }

    /// Reconciles until the status describes the current generation (the first reconcile
    /// only adds the finalizer); the resource afterwards.
    async fn settle(&self, name: &str) -> KafkaTopic {
        for _ in 0..3 {
            self.reconcile(name).await;
            let kt = self.get(name).await;
            let observed = kt.status.as_ref().and_then(|s| s.observed_generation);
            if observed.is_some() && observed == kt.metadata.generation {
                return kt;
            }
        }
        panic!("{name} did not settle: {:?}", self.get(name).await.status);
    }

    async fn patch_spec(&self, name: &str, spec: serde_json::Value) {
        self.api
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "spec": spec })),
            )
            .await
            .expect("patching the spec");
    }

    /// Reasons of the events recorded on the resource `name`, oldest first.
    async fn events(&self, name: &str) -> Vec<String> {
        use k8s_openapi::api::events::v1::Event;
        let events: Api<Event> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let mut list: Vec<Event> = events
            .list(&kube::api::ListParams::default())
            .await
            .expect("listing events")
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .collect();
        list.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
        list.into_iter().filter_map(|e| e.reason).collect()
    }

    async fn admin(&self) -> Admin {
        Admin::connect(&self.bootstrap).await.expect("admin client")
    }

    async fn topic(&self, name: &str) -> Option<Topic> {
        self.admin().await.describe(name).await.expect("describe").1
    }

    async fn configs(&self, name: &str) -> BTreeMap<String, String> {
        self.admin()
            .await
            .topic_configs(name)
            .await
            .expect("describe configs")
    }

    /// The broker leading each partition, by index, as Metadata says.
    async fn leaders(&self, name: &str) -> Vec<i32> {
        let mut cluster = Cluster::connect(&self.bootstrap).await.expect("client");
        let meta = cluster
            .metadata(Some(&[name.to_string()]))
            .await
            .expect("metadata");
        let mut leaders: Vec<(i32, i32)> = meta.topics[0]
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.leader_id.0))
            .collect();
        leaders.sort();
        leaders.into_iter().map(|(_, l)| l).collect()
    }
}

fn spec(partitions: i32, replication_factor: i32, config: &[(&str, &str)]) -> KafkaTopicSpec {
    KafkaTopicSpec {
        cluster: CLUSTER.into(),
        topic_name: None,
        partitions,
        replication_factor,
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn ready(kt: &KafkaTopic) -> &Condition {
    kt.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .unwrap_or_else(|| panic!("no Ready condition in {:?}", kt.status))
}

fn assert_ready(kt: &KafkaTopic) {
    let c = ready(kt);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "Ready"),
        "{}",
        c.message
    );
}

fn assert_not_ready(kt: &KafkaTopic, reason: &str) -> String {
    let c = ready(kt);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", reason),
        "{}",
        c.message
    );
    c.message.clone()
}

#[tokio::test]
async fn a_topic_is_created_with_one_leader_per_broker_and_its_configs() {
    let server = api_server_or_skip!();
    let t = Setup::new(server, "topic-create").await;
    t.create(
        "created",
        spec(
            3,
            3,
            &[("retention.ms", "3600000"), ("cleanup.policy", "compact")],
        ),
    )
    .await;
    let kt = t.settle("created").await;
    assert_ready(&kt);
    assert!(kt.finalizers().iter().any(|f| f == FINALIZER));

    let topic = t.topic("created").await.expect("the topic exists");
    let status = kt.status.clone().unwrap();
    assert_eq!(status.topic_name.as_deref(), Some("created"));
    assert_eq!(status.topic_id.as_deref(), Some(topic.id.as_str()));
    assert_eq!(status.partitions, Some(3));
    assert_eq!(
        status.replicas, topic.partitions,
        "the status shows the brokers' view"
    );
    for replicas in &topic.partitions {
        let distinct: BTreeSet<_> = replicas.iter().collect();
        assert_eq!(distinct.len(), 3, "{replicas:?}");
    }
    let preferred: BTreeSet<i32> = topic.partitions.iter().map(|r| r[0]).collect();
    assert_eq!(
        preferred,
        BTreeSet::from([0, 1, 2]),
        "{:?}",
        topic.partitions
    );
    let leaders: BTreeSet<i32> = t.leaders("created").await.into_iter().collect();
    assert_eq!(leaders, BTreeSet::from([0, 1, 2]), "each broker leads one");
    let configs = t.configs("created").await;
    assert_eq!(
        configs.get("retention.ms").map(String::as_str),
        Some("3600000")
    );
    assert_eq!(
        configs.get("cleanup.policy").map(String::as_str),
        Some("compact")
    );
    assert_eq!(
        kt.annotations()
            .get(CONFIG_KEYS_ANNOTATION)
            .map(String::as_str),
        Some("cleanup.policy,retention.ms")
    );

    // Nothing changed: the next reconcile writes nothing and recreates nothing.
    let before = kt.resource_version();
    t.reconcile("created").await;
    assert_eq!(t.get("created").await.resource_version(), before);
    assert_eq!(t.topic("created").await.unwrap().id, topic.id);
}

#[tokio::test]
async fn more_partitions_grow_the_topic_and_config_edits_alter_it() {
    let server = api_server_or_skip!();
    let t = Setup::new(server, "topic-grow").await;
    t.create(
        "grown",
        spec(
            2,
            2,
            &[("retention.ms", "1000"), ("segment.bytes", "1048576")],
        ),
    )
    .await;
    let kt = t.settle("grown").await;
    assert_ready(&kt);
    let id = kt.status.unwrap().topic_id;
    // Another tool sets a config the spec never named: it must survive the edits below.
    t.admin()
        .await
        .alter_configs(
            "grown",
            &[ConfigChange::Set("max.message.bytes".into(), "2048".into())],
        )
        .await
        .expect("altering directly");

    t.patch_spec(
        "grown",
        serde_json::json!({
            "partitions": 5,
            "config": {"retention.ms": "2000", "segment.bytes": null},
        }),
    )
    .await;
    let kt = t.settle("grown").await;
    assert_ready(&kt);
    let topic = t.topic("grown").await.unwrap();
    assert_eq!(kt.status.as_ref().unwrap().topic_id, id, "the same topic");
    assert_eq!(topic.partitions.len(), 5);
    assert!(topic.partitions.iter().all(|r| r.len() == 2), "{topic:?}");
    assert_eq!(kt.status.as_ref().unwrap().replicas, topic.partitions);
    let configs = t.configs("grown").await;
    assert_eq!(
        configs.get("retention.ms").map(String::as_str),
        Some("2000")
    );
    assert!(
        !configs.contains_key("segment.bytes"),
        "removed from the spec: {configs:?}"
    );
    assert_eq!(
        configs.get("max.message.bytes").map(String::as_str),
        Some("2048"),
        "set by another tool"
    );
    assert_eq!(
        kt.annotations()
            .get(CONFIG_KEYS_ANNOTATION)
            .map(String::as_str),
        Some("retention.ms")
    );
    assert_eq!(
        t.events("grown").await,
        ["TopicCreated", "TopicConfigAltered", "PartitionsAdded"],
        "an event for each step, in order"
    );
}

#[tokio::test]
async fn fewer_partitions_or_another_replication_factor_are_refused_and_configs_still_apply() {
    let server = api_server_or_skip!();
    let t = Setup::new(server, "topic-shrink").await;
    t.create("shrunk", spec(3, 2, &[])).await;
    assert_ready(&t.settle("shrunk").await);
    let before = t.topic("shrunk").await.unwrap();

    t.patch_spec(
        "shrunk",
        serde_json::json!({"partitions": 2, "config": {"retention.ms": "5000"}}),
    )
    .await;
    let kt = t.settle("shrunk").await;
    let message = assert_not_ready(&kt, "PartitionDecreaseRefused");
    assert!(message.contains("cannot remove partitions"), "{message}");
    assert_eq!(t.topic("shrunk").await.unwrap(), before, "nothing changed");
    assert_eq!(kt.status.unwrap().partitions, Some(3));
    assert_eq!(
        t.configs("shrunk")
            .await
            .get("retention.ms")
            .map(String::as_str),
        Some("5000")
    );

    t.patch_spec(
        "shrunk",
        serde_json::json!({"partitions": 3, "replicationFactor": 3}),
    )
    .await;
    let kt = t.settle("shrunk").await;
    let message = assert_not_ready(&kt, "ReplicationFactorChangeUnsupported");
    assert!(message.contains("replication factor 2"), "{message}");
    assert_eq!(t.topic("shrunk").await.unwrap(), before);

    t.patch_spec("shrunk", serde_json::json!({"replicationFactor": 2}))
        .await;
    assert_ready(&t.settle("shrunk").await);
}

#[tokio::test]
async fn an_existing_topic_is_adopted_keeping_its_id_and_other_configs() {
    let server = api_server_or_skip!();
    let t = Setup::new(server, "topic-adopt").await;
    t.admin()
        .await
        .create_topic(
            "adopted",
            &[vec![0, 1], vec![1, 2]],
            &BTreeMap::from([("max.message.bytes".to_string(), "4096".to_string())]),
        )
        .await
        .expect("creating the topic directly");
    let id = t.topic("adopted").await.unwrap().id;

    t.create("adopted", spec(2, 2, &[("retention.ms", "7000")]))
        .await;
    let kt = t.settle("adopted").await;
    assert_ready(&kt);
    let status = kt.status.unwrap();
    assert_eq!(status.topic_id, Some(id), "adopted, not recreated");
    assert_eq!(status.replicas, vec![vec![0, 1], vec![1, 2]]);
    let configs = t.configs("adopted").await;
    assert_eq!(
        configs.get("retention.ms").map(String::as_str),
        Some("7000")
    );
    assert_eq!(
        configs.get("max.message.bytes").map(String::as_str),
        Some("4096")
    );
}

#[tokio::test]
async fn deleting_a_kafka_topic_deletes_its_topic_unless_it_is_unmanaged() {
    let server = api_server_or_skip!();
    let t = Setup::new(server, "topic-delete").await;
    t.create("doomed", spec(1, 3, &[])).await;
    t.create("kept", spec(1, 3, &[])).await;
    assert_ready(&t.settle("doomed").await);
    assert_ready(&t.settle("kept").await);
    t.api
        .patch(
            "kept",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "metadata": {"annotations": {MANAGED_ANNOTATION: "false"}}
            })),
        )
        .await
        .expect("annotating");
    let kt = t.settle("kept").await;
    assert_eq!(ready(&kt).reason, "Unmanaged");

    for name in ["doomed", "kept"] {
        t.api
            .delete(name, &DeleteParams::default())
            .await
            .expect("deleting");
        let kt = t.get(name).await;
        assert!(
            kt.metadata.deletion_timestamp.is_some(),
            "held by the finalizer"
        );
        t.reconcile(name).await;
        assert!(
            t.api.get_opt(name).await.unwrap().is_none(),
            "{name}: the finalizer let go"
        );
    }
    assert!(t.topic("doomed").await.is_none(), "deleted in Kafka");
    assert!(t.topic("kept").await.is_some(), "unmanaged: kept in Kafka");
    assert_eq!(t.events("doomed").await, ["TopicCreated", "TopicDeleted"]);
    assert_eq!(t.events("kept").await, ["TopicCreated"]);
}

#[tokio::test]
async fn a_second_resource_for_the_same_topic_is_a_conflict_and_its_deletion_keeps_the_topic() {
    let server = api_server_or_skip!();
    let t = Setup::new(server, "topic-conflict").await;
    t.create("shared", spec(1, 1, &[])).await;
    assert_ready(&t.settle("shared").await);
    let mut second = spec(4, 1, &[]);
    second.topic_name = Some("shared".into());
    t.create("shared-again", second).await;
    let kt = t.settle("shared-again").await;
    let message = assert_not_ready(&kt, "TopicConflict");
    assert!(message.contains("KafkaTopic shared "), "{message}");
    assert_eq!(
        t.topic("shared").await.unwrap().partitions.len(),
        1,
        "untouched"
    );

    t.api
        .delete("shared-again", &DeleteParams::default())
        .await
        .expect("deleting");
    t.reconcile("shared-again").await;
    assert!(t.api.get_opt("shared-again").await.unwrap().is_none());
    assert!(
        t.topic("shared").await.is_some(),
        "the other resource's topic stays"
    );
    assert_ready(&t.settle("shared").await);
}

#[tokio::test]
async fn an_invalid_name_and_a_missing_cluster_are_reported_and_deletion_still_completes() {
    let server = api_server_or_skip!();
    let t = Setup::new(server, "topic-invalid").await;
    let mut bad = spec(1, 1, &[]);
    bad.topic_name = Some("no spaces allowed".into());
    t.create("badly-named", bad).await;
    let message = assert_not_ready(&t.settle("badly-named").await, "InvalidSpec");
    assert!(message.starts_with("spec.topicName"), "{message}");

    let mut orphan = spec(1, 1, &[]);
    orphan.cluster = "nowhere".into();
    t.create("orphan", orphan).await;
    let message = assert_not_ready(&t.settle("orphan").await, "ClusterNotFound");
    assert!(message.contains("nowhere"), "{message}");

    let ready = |name: &str| {
        format!(
            r#"gregor_operator_resource_ready{{kind="KafkaTopic",name="{name}",namespace="{}"}}"#,
            t.ns
        )
    };
    for name in ["badly-named", "orphan"] {
        let metrics = t.ctx.metrics.render();
        assert!(
            metrics.contains(&format!("{} 0\n", ready(name))),
            "{metrics}"
        );
        t.api
            .delete(name, &DeleteParams::default())
            .await
            .expect("deleting");
        t.reconcile(name).await;
        assert!(t.api.get_opt(name).await.unwrap().is_none(), "{name}");
        let metrics = t.ctx.metrics.render();
        assert!(!metrics.contains(&ready(name)), "{metrics}");
    }
}

#[tokio::test]
async fn more_replicas_than_brokers_waits_with_a_condition_and_creates_nothing() {
    let server = api_server_or_skip!();
    let t = Setup::new(server, "topic-too-many").await;
    t.create("too-many", spec(1, 4, &[])).await;
    let message = assert_not_ready(&t.settle("too-many").await, "NotEnoughBrokers");
    assert!(message.contains("the cluster has 3"), "{message}");
    assert!(t.topic("too-many").await.is_none());
}

#[tokio::test]
async fn a_config_the_brokers_refuse_is_reported_until_the_spec_is_fixed() {
    let server = api_server_or_skip!();
    let t = Setup::new(server, "topic-rejected").await;
    t.create("rejected", spec(1, 1, &[("retention.ms", "soon")]))
        .await;
    let message = assert_not_ready(&t.settle("rejected").await, "KafkaRejected");
    assert!(message.contains("InvalidConfig"), "{message}");
    assert!(t.topic("rejected").await.is_none());
    t.patch_spec(
        "rejected",
        serde_json::json!({"config": {"retention.ms": "60000"}}),
    )
    .await;
    assert_ready(&t.settle("rejected").await);
}

#[tokio::test]
async fn brokers_out_of_reach_are_an_error_to_retry_and_a_condition() {
    let server = api_server_or_skip!();
    let mut t = Setup::new(server, "topic-unreachable").await;
    let mut ctx = (*t.ctx).clone();
    for b in ctx.bootstrap_overrides.values_mut() {
        *b = format!("127.0.0.1:{}", crate::apiserver::free_port());
    }
    t.ctx = Arc::new(ctx);
    t.create("unreachable", spec(1, 1, &[])).await;
    t.reconcile("unreachable").await; // the finalizer
    let err = reconcile(Arc::new(t.get("unreachable").await), Arc::clone(&t.ctx))
        .await
        .expect_err("nothing listens there");
    assert_eq!(err.category(), "kafka");
    assert_not_ready(&t.get("unreachable").await, "KafkaUnavailable");
}

#[tokio::test]
async fn renaming_a_topic_is_refused_while_the_old_one_exists() {
    let server = api_server_or_skip!();
    let t = Setup::new(server, "topic-rename").await;
    t.create("renamed", spec(1, 1, &[])).await;
    assert_ready(&t.settle("renamed").await);
    t.patch_spec("renamed", serde_json::json!({"topicName": "renamed-v2"}))
        .await;
    let message = assert_not_ready(&t.settle("renamed").await, "TopicRenameUnsupported");
    assert!(message.contains("cannot rename"), "{message}");
    assert!(t.topic("renamed-v2").await.is_none());
    // Deleting the resource deletes the topic it managed.
    t.api
        .delete("renamed", &DeleteParams::default())
        .await
        .expect("deleting");
    t.reconcile("renamed").await;
    assert!(t.topic("renamed").await.is_none());
}

#[tokio::test]
async fn new_partitions_follow_the_operators_assignment() {
    let server = api_server_or_skip!();
    let t = Setup::new(server, "topic-grow-placed").await;
    t.create("placed", spec(2, 2, &[])).await;
    assert_ready(&t.settle("placed").await);
    let before = t.topic("placed").await.unwrap().partitions;
    let (brokers, _) = t.admin().await.describe("placed").await.unwrap();
    let planned = gregor_operator::placement::assign(&brokers, &before, 4, 2).unwrap();
    t.patch_spec("placed", serde_json::json!({"partitions": 6}))
        .await;
    assert_ready(&t.settle("placed").await);
    let after = t.topic("placed").await.unwrap().partitions;
    assert_eq!(after[..2], before[..]);
    assert_eq!(after[2..], planned[..]);
}

#[tokio::test]
async fn the_api_server_refuses_moving_a_topic_to_another_cluster() {
    let server = api_server_or_skip!();
    let t = Setup::new(server, "topic-move").await;
    t.create("moved", spec(1, 1, &[])).await;
    let refused = t
        .api
        .patch(
            "moved",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"cluster": "elsewhere"}})),
        )
        .await
        .expect_err("spec.cluster is immutable");
    let kube::Error::Api(status) = refused else {
        panic!("expected the API server's refusal, got {refused}");
    };
    assert_eq!(status.code, 422, "{status:?}");
    assert!(
        status.message.contains("spec.cluster cannot change"),
        "{}",
        status.message
    );
    assert_eq!(t.get("moved").await.spec.cluster, CLUSTER);
    // Other fields stay editable.
    t.patch_spec("moved", serde_json::json!({"partitions": 2}))
        .await;
    assert_eq!(t.get("moved").await.spec.partitions, 2);
}
