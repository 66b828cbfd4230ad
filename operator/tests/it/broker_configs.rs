//! Dynamic broker configs against the real API server and a real broker: keys the brokers take
//! at runtime are set as cluster-wide dynamic configs, changed and removed without a restart,
//! while any other key still restarts the pods.

use std::collections::BTreeMap;
use std::sync::Arc;

use gregor_client::admin::Admin;
use gregor_operator::crd::{KafkaCluster, KafkaClusterSpec};
use gregor_operator::reconcile::cluster::reconcile;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};

use crate::cluster::{create, get, pods_like_the_statefulset, reaching};
use crate::topic::brokers::Brokers;
use crate::{api_server_or_skip, install_crds};

struct Setup {
    client: kube::Client,
    ns: String,
    ctx: Arc<gregor_operator::reconcile::Context>,
    bootstrap: String,
}

impl Setup {
    async fn reconcile(&self) -> KafkaCluster {
        let kc = get(&self.client, &self.ns, "events").await;
        reconcile(Arc::new(kc), Arc::clone(&self.ctx))
            .await
            .expect("reconcile");
        get(&self.client, &self.ns, "events").await
    }

    async fn patch_config(&self, config: serde_json::Value) {
        Api::<KafkaCluster>::namespaced(self.client.clone(), &self.ns)
            .patch(
                "events",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "spec": { "config": config } })),
            )
            .await
            .expect("patching spec.config");
    }

    /// The cluster-wide dynamic broker configs, as the broker reports them.
    async fn broker_defaults(&self) -> BTreeMap<String, String> {
        Admin::connect(&self.bootstrap)
            .await
            .expect("admin client")
            .broker_defaults()
            .await
            .expect("describing the broker defaults")
    }

    async fn statefulset(&self) -> StatefulSet {
        Api::<StatefulSet>::namespaced(self.client.clone(), &self.ns)
            .get("events")
            .await
            .expect("the StatefulSet")
    }

    async fn properties(&self) -> String {
        Api::<ConfigMap>::namespaced(self.client.clone(), &self.ns)
            .get("events-config")
            .await
            .expect("the ConfigMap")
            .data
            .expect("data")["events-0.properties"]
            .clone()
    }
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn runtime_keys_are_applied_live_and_only_static_ones_restart_the_pods() {
    let server = api_server_or_skip!();
    let brokers = Brokers::start(1);
    let (client, ns) = server.namespace("broker-configs").await;
    install_crds(&client).await;
    let mut spec = KafkaClusterSpec {
        replicas: 1,
        ..Default::default()
    };
    spec.config = map(&[("log.retention.ms", "3600000"), ("num.partitions", "3")]);
    create(&client, &ns, "events", spec).await;
    let t = Setup {
        client: client.clone(),
        ns: ns.clone(),
        ctx: reaching(&client, &ns, &brokers.bootstrap),
        bootstrap: brokers.bootstrap.clone(),
    };
    // Before any broker is ready nothing is sent.
    t.reconcile().await;
    assert!(t.broker_defaults().await.is_empty());
    let properties = t.properties().await;
    assert!(
        properties.contains("num.partitions=3\n") && !properties.contains("log.retention.ms="),
        "{properties}"
    );
    // The local broker (node 0) stands for the pod events-0.
    pods_like_the_statefulset(&client, &ns, &t.statefulset().await, true).await;
    t.reconcile().await;
    assert_eq!(
        t.broker_defaults().await,
        map(&[("log.retention.ms", "3600000")])
    );
    let generation = t.statefulset().await.metadata.generation;

    // A new value, and a second runtime key: applied to the running broker, no restart.
    t.patch_config(serde_json::json!({
        "log.retention.ms": "7200000",
        "min.insync.replicas": "1",
    }))
    .await;
    let kc = t.reconcile().await;
    assert_eq!(
        t.broker_defaults().await,
        map(&[
            ("log.retention.ms", "7200000"),
            ("min.insync.replicas", "1")
        ])
    );
    assert_eq!(t.statefulset().await.metadata.generation, generation);
    let roll = kc.status.as_ref().and_then(|s| s.roll.as_ref());
    assert!(
        roll.is_none_or(|r| r.pending.is_empty() && r.restarting.is_none()),
        "nothing to restart: {roll:?}"
    );

    // Removed from the spec: deleted from the brokers, whose default applies again.
    t.patch_config(serde_json::json!({"log.retention.ms": null}))
        .await;
    t.reconcile().await;
    assert_eq!(
        t.broker_defaults().await,
        map(&[("min.insync.replicas", "1")])
    );
    assert_eq!(t.statefulset().await.metadata.generation, generation);

    // A key set by another tool is the operator's to remove.
    Admin::connect(&t.bootstrap)
        .await
        .unwrap()
        .alter_broker_defaults(&[gregor_client::admin::ConfigChange::Set(
            "log.segment.bytes".into(),
            "2097152".into(),
        )])
        .await
        .expect("setting a default directly");
    t.reconcile().await;
    assert_eq!(
        t.broker_defaults().await,
        map(&[("min.insync.replicas", "1")])
    );

    // A static key still rolls the pods.
    t.patch_config(serde_json::json!({"num.partitions": "6"}))
        .await;
    let kc = t.reconcile().await;
    assert_ne!(t.statefulset().await.metadata.generation, generation);
    let roll = kc.status.as_ref().and_then(|s| s.roll.as_ref());
    assert!(
        roll.is_some_and(|r| r
            .pending
            .iter()
            .chain(&r.restarting)
            .any(|p| p == "events-0")),
        "events-0 is to restart: {roll:?}"
    );
}
