//! Broker scale steps against the real API server and real brokers: a dedicated broker pool
//! grows and partitions move onto the new broker, shrinks only once the departing broker is
//! drained and unregisters it once its process is gone, refuses to shrink below a topic's
//! replication factor; a controller count never changes. No kubelet runs here: the local brokers with ids 0..3 stand for the pods
//! `events-broker-0..2`, the third one running (and holding nothing) before the pool grows.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gregor_client::admin::Admin;
use gregor_client::Cluster;
use gregor_operator::crd::cluster::ControllerPool;
use gregor_operator::crd::{KafkaCluster, KafkaClusterSpec};
use gregor_operator::reconcile::Context;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use kube::api::Api;

use crate::cluster::{condition, create, patch_spec, reaching, reconcile_events};
use crate::topic::brokers::{self, Brokers};
use crate::{api_server_or_skip, install_crds};

/// How long a scale step gets to finish.
const STEP_TIMEOUT: Duration = Duration::from_secs(90);

/// Brokers in a pool of their own, beside three dedicated controllers.
fn dedicated(replicas: i32) -> KafkaClusterSpec {
    KafkaClusterSpec {
        replicas,
        controllers: Some(ControllerPool {
            replicas: 3,
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn size(client: &kube::Client, ns: &str, sts: &str) -> i32 {
    Api::<StatefulSet>::namespaced(client.clone(), ns)
        .get(sts)
        .await
        .expect("the StatefulSet")
        .spec
        .replicas
        .unwrap_or(1)
}

/// Reconciles until `done` holds of the cluster and its broker StatefulSet's size; `check`
/// must hold after every reconcile on the way.
async fn reconcile_until(
    client: &kube::Client,
    ns: &str,
    ctx: &Arc<Context>,
    mut check: impl AsyncFnMut(&KafkaCluster, i32),
    done: impl Fn(&KafkaCluster, i32) -> bool,
) -> KafkaCluster {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let kc = reconcile_events(client, ns, ctx).await;
        let size = size(client, ns, "events-broker").await;
        check(&kc, size).await;
        if done(&kc, size) {
            return kc;
        }
        assert!(
            Instant::now() < deadline,
            "the step did not finish within {STEP_TIMEOUT:?}: {:?}",
            kc.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// (replicas, preferred leaderships, actual leaderships) per broker id over `topic`.
async fn tally(bootstrap: &str, topic: &str) -> [BTreeMap<i32, usize>; 3] {
    let mut cluster = Cluster::connect(bootstrap).await.expect("connecting");
    let meta = cluster
        .metadata(Some(&[topic.to_string()]))
        .await
        .expect("metadata");
    let mut out: [BTreeMap<i32, usize>; 3] = Default::default();
    for p in &meta.topics[0].partitions {
        for b in &p.replica_nodes {
            *out[0].entry(b.0).or_default() += 1;
        }
        *out[1].entry(p.replica_nodes[0].0).or_default() += 1;
        *out[2].entry(p.leader_id.0).or_default() += 1;
    }
    out
}

async fn event_reasons(client: &kube::Client, ns: &str) -> Vec<String> {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .expect("listing events")
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect()
}

fn scaling_done(kc: &KafkaCluster) -> bool {
    kc.status.as_ref().is_some_and(|s| s.scaling.is_none())
}

#[tokio::test]
async fn brokers_scale_up_with_partitions_moved_onto_them_and_down_once_drained() {
    let server = api_server_or_skip!();
    // Every topic of the cluster moves in a scale step: these brokers are this test's own.
    let mut brokers = Brokers::start(3);
    let (client, ns) = server.namespace("scale-up-down").await;
    install_crds(&client).await;
    let ctx = reaching(&client, &ns, &brokers.bootstrap);
    let mut admin = Admin::connect(&brokers.bootstrap).await.expect("admin");
    let on_two: Vec<Vec<i32>> = (0..6)
        .map(|i| if i % 2 == 0 { vec![0, 1] } else { vec![1, 0] })
        .collect();
    admin
        .create_topic("orders", &on_two, &BTreeMap::new())
        .await
        .expect("creating the topic on brokers 0 and 1");
    create(&client, &ns, "events", dedicated(2)).await;
    reconcile_events(&client, &ns, &ctx).await;
    assert_eq!(size(&client, &ns, "events-broker").await, 2);
    assert_eq!(size(&client, &ns, "events-controller").await, 3);

    // Up: the StatefulSet grows at once; the partitions follow onto broker 2.
    patch_spec(&client, &ns, serde_json::json!({"replicas": 3})).await;
    let kc = reconcile_events(&client, &ns, &ctx).await;
    assert_eq!(size(&client, &ns, "events-broker").await, 3);
    let scaling = kc.status.as_ref().unwrap().scaling.clone().expect("a step");
    assert_eq!((scaling.from, scaling.to), (2, 3));
    let progressing = condition(&kc, "Progressing");
    assert_eq!(
        (progressing.status.as_str(), progressing.reason.as_str()),
        ("True", "ScalingUp"),
        "{progressing:?}"
    );
    let of_events =
        |gauge: &prometheus::IntGaugeVec| gauge.with_label_values(&[ns.as_str(), "events"]).get();
    let m = &ctx.metrics;
    assert_eq!(of_events(&m.scale_in_progress), 1);
    assert_eq!(of_events(&m.brokers_desired), 6, "3 brokers, 3 controllers");
    reconcile_until(
        &client,
        &ns,
        &ctx,
        async |_, size| assert_eq!(size, 3),
        |kc, _| scaling_done(kc),
    )
    .await;
    assert_eq!(of_events(&m.scale_in_progress), 0);
    let [replicas, preferred, leaders] = tally(&brokers.bootstrap, "orders").await;
    let even = |n| BTreeMap::from([(0, n), (1, n), (2, n)]);
    assert_eq!(replicas, even(4), "12 replicas over 3 brokers");
    assert_eq!(preferred, even(2), "6 preferred leaderships over 3 brokers");
    assert_eq!(leaders, even(2), "the preferred replicas lead");
    let reasons = event_reasons(&client, &ns).await;
    for reason in ["ScalingUp", "ScaledUp"] {
        assert!(reasons.iter().any(|r| r == reason), "{reason}: {reasons:?}");
    }

    // Down: the StatefulSet keeps broker 2 until it holds nothing; once shrunk, its process is
    // stopped (as the StatefulSet deletes the pod) and, fenced, unregistered.
    patch_spec(&client, &ns, serde_json::json!({"replicas": 2})).await;
    let kc = reconcile_events(&client, &ns, &ctx).await;
    assert_eq!(
        size(&client, &ns, "events-broker").await,
        3,
        "not drained yet"
    );
    let progressing = condition(&kc, "Progressing");
    assert_eq!(progressing.reason, "DrainingBrokers", "{progressing:?}");
    assert_eq!(of_events(&m.scale_in_progress), 1);
    assert_eq!(of_events(&m.brokers_desired), 5, "asked for, not there yet");
    assert!(
        progressing
            .message
            .starts_with("draining brokers 2 before removal: 4 replicas left"),
        "{}",
        progressing.message
    );
    let bootstrap = brokers.bootstrap.clone();
    let mut waited_for_removal = false;
    reconcile_until(
        &client,
        &ns,
        &ctx,
        async |kc, size| {
            if size == 2 && !waited_for_removal {
                let [replicas, ..] = tally(&bootstrap, "orders").await;
                assert_eq!(
                    replicas.get(&2),
                    None,
                    "shrunk while broker 2 held replicas"
                );
                let progressing = condition(kc, "Progressing");
                assert_eq!(progressing.reason, "RemovingBrokers", "{progressing:?}");
                assert!(!scaling_done(kc), "ended before broker 2 was unregistered");
                waited_for_removal = true;
                brokers.stop(2);
            }
        },
        |kc, size| size == 2 && scaling_done(kc),
    )
    .await;
    assert!(waited_for_removal);
    assert_eq!(of_events(&m.scale_in_progress), 0);
    assert_eq!(of_events(&m.brokers_desired), 5);
    let mut admin = Admin::connect(&brokers.bootstrap).await.expect("admin");
    assert_eq!(
        admin.registrations().await.expect("registrations"),
        vec![(0, false), (1, false)],
        "broker 2 left the metadata"
    );
    assert!(
        !admin
            .unregister_broker(2)
            .await
            .expect("unregistering again"),
        "BROKER_ID_NOT_REGISTERED: already done"
    );
    let [replicas, preferred, leaders] = tally(&brokers.bootstrap, "orders").await;
    let even = |n| BTreeMap::from([(0, n), (1, n)]);
    assert_eq!((replicas, preferred, leaders), (even(6), even(3), even(3)));
    let reasons = event_reasons(&client, &ns).await;
    for reason in ["ScalingDown", "ScaledDown", "BrokerUnregistered"] {
        assert!(reasons.iter().any(|r| r == reason), "{reason}: {reasons:?}");
    }
}

#[tokio::test]
async fn a_scale_down_below_a_replication_factor_is_refused_and_the_statefulset_kept() {
    let server = api_server_or_skip!();
    // Nothing moves when a step is refused, so the shared brokers do.
    let brokers = brokers::shared();
    let (client, ns) = server.namespace("scale-down-refused").await;
    install_crds(&client).await;
    let ctx = reaching(&client, &ns, &brokers.bootstrap);
    let topic = format!("{ns}-rf3");
    Admin::connect(&brokers.bootstrap)
        .await
        .expect("admin")
        .create_topic(&topic, &[vec![0, 1, 2]], &BTreeMap::new())
        .await
        .expect("creating a topic on every broker");
    create(&client, &ns, "events", dedicated(3)).await;
    reconcile_events(&client, &ns, &ctx).await;

    patch_spec(&client, &ns, serde_json::json!({"replicas": 2})).await;
    for _ in 0..2 {
        let kc = reconcile_events(&client, &ns, &ctx).await;
        assert_eq!(size(&client, &ns, "events-broker").await, 3);
        let progressing = condition(&kc, "Progressing");
        assert_eq!(
            (progressing.status.as_str(), progressing.reason.as_str()),
            ("False", "ScaleDownBlocked"),
            "{progressing:?}"
        );
        // Other tests' topics share these brokers and may be named first.
        assert!(
            progressing
                .message
                .starts_with("cannot remove brokers 2: topic ")
                && progressing
                    .message
                    .contains("replication factor 3 needs as many brokers, the cluster has 2"),
            "{}",
            progressing.message
        );
        let degraded = condition(&kc, "Degraded");
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", "ScaleDownBlocked")
        );
    }
    assert!(event_reasons(&client, &ns)
        .await
        .iter()
        .any(|r| r == "ScaleDownBlocked"));

    // The user gives up the step: it is dropped and nothing moved.
    patch_spec(&client, &ns, serde_json::json!({"replicas": 3})).await;
    let kc = reconcile_events(&client, &ns, &ctx).await;
    assert!(scaling_done(&kc), "{:?}", kc.status);
    assert_eq!(condition(&kc, "Degraded").status, "False");
    let (_, described) = Admin::connect(&brokers.bootstrap)
        .await
        .unwrap()
        .describe(&topic)
        .await
        .unwrap();
    assert_eq!(described.unwrap().partitions, vec![vec![0, 1, 2]]);
}

#[tokio::test]
async fn a_scale_step_goes_on_when_a_reconcile_is_handed_an_object_older_than_its_status() {
    let server = api_server_or_skip!();
    let (client, ns) = server.namespace("scale-stale").await;
    install_crds(&client).await;
    // No broker answers here: the step waits for them, recorded in the status.
    let ctx = crate::cluster::context(&client);
    create(&client, &ns, "events", dedicated(2)).await;
    reconcile_events(&client, &ns, &ctx).await;
    patch_spec(&client, &ns, serde_json::json!({"replicas": 3})).await;
    // What a watch cache may still hold after the next reconcile: the new spec, the old status.
    let stale = crate::cluster::get(&client, &ns, "events").await;
    let kc = reconcile_events(&client, &ns, &ctx).await;
    let step = kc.status.as_ref().and_then(|s| s.scaling.clone());
    assert_eq!(
        step.as_ref().map(|s| (s.from, s.to)),
        Some((2, 3)),
        "{:?}",
        kc.status
    );
    assert_eq!(size(&client, &ns, "events-broker").await, 3);

    gregor_operator::reconcile::cluster::reconcile(Arc::new(stale), Arc::clone(&ctx))
        .await
        .expect("reconciling the stale object");
    let kc = crate::cluster::get(&client, &ns, "events").await;
    let step = kc.status.as_ref().and_then(|s| s.scaling.clone());
    assert_eq!(
        step.map(|s| (s.from, s.to)),
        Some((2, 3)),
        "the step was dropped: {:?}",
        kc.status
    );
}

#[tokio::test]
async fn a_controller_count_change_is_refused_and_the_quorum_keeps_its_size() {
    let server = api_server_or_skip!();
    let (client, ns) = server.namespace("quorum-size").await;
    install_crds(&client).await;
    // Nothing listens: a refused change must not need the brokers.
    let ctx = reaching(&client, &ns, "127.0.0.1:1");
    let combined = KafkaClusterSpec {
        replicas: 3,
        ..Default::default()
    };
    create(&client, &ns, "events", combined).await;
    reconcile_events(&client, &ns, &ctx).await;

    // Combined nodes are the voters: no size change at all.
    patch_spec(&client, &ns, serde_json::json!({"replicas": 5})).await;
    let kc = reconcile_events(&client, &ns, &ctx).await;
    let degraded = condition(&kc, "Degraded");
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "ControllerScalingRefused")
    );
    assert!(
        degraded
            .message
            .starts_with("spec.replicas changed from 3 to 5"),
        "{}",
        degraded.message
    );
    assert_eq!(size(&client, &ns, "events").await, 3);
    let config = Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .get("events-config")
        .await
        .unwrap();
    let data = config.data.unwrap();
    assert!(!data.contains_key("events-3.properties"));
    assert!(!data["events-0.properties"].contains("3@events-3"));
    assert_eq!(kc.status.unwrap().brokers.len(), 3);
    patch_spec(&client, &ns, serde_json::json!({"replicas": 3})).await;
    let kc = reconcile_events(&client, &ns, &ctx).await;
    assert_eq!(condition(&kc, "Degraded").status, "False");

    // Dedicated controllers: their count is fixed too.
    let (client2, ns2) = server.namespace("quorum-size-dedicated").await;
    let ctx2 = reaching(&client2, &ns2, "127.0.0.1:1");
    create(&client2, &ns2, "events", dedicated(2)).await;
    reconcile_events(&client2, &ns2, &ctx2).await;
    patch_spec(
        &client2,
        &ns2,
        serde_json::json!({"controllers": {"replicas": 5}}),
    )
    .await;
    let kc = reconcile_events(&client2, &ns2, &ctx2).await;
    let degraded = condition(&kc, "Degraded");
    assert_eq!(degraded.reason, "ControllerScalingRefused");
    assert!(
        degraded
            .message
            .starts_with("spec.controllers.replicas changed from 3 to 5"),
        "{}",
        degraded.message
    );
    assert_eq!(size(&client2, &ns2, "events-controller").await, 3);
    assert_eq!(size(&client2, &ns2, "events-broker").await, 2);
}
