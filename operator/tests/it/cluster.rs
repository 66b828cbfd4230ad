//! KafkaCluster reconciles against the real API server.

use std::collections::BTreeMap;
use std::sync::Arc;

use gregor_operator::crd::{KafkaCluster, KafkaClusterSpec};
use gregor_operator::reconcile::{cluster::reconcile, Context};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::ResourceExt;

use crate::{api_server_or_skip, install_crds};

pub fn context(client: &kube::Client) -> Arc<Context> {
    Arc::new(Context {
        client: client.clone(),
        default_image: "gregor:test".into(),
        bootstrap_overrides: BTreeMap::new(),
        rack_cluster_role: "gregor-broker-rack".into(),
        clock: gregor_operator::reconcile::Clock::system(),
        metrics: Arc::new(gregor_operator::metrics::Metrics::new().expect("metrics")),
    })
}

/// The context of [`context`], reaching the brokers of the KafkaCluster `ns/events` at
/// `bootstrap`.
pub fn reaching(client: &kube::Client, ns: &str, bootstrap: &str) -> Arc<Context> {
    let mut ctx = (*context(client)).clone();
    ctx.bootstrap_overrides
        .insert(format!("{ns}/events"), bootstrap.to_string());
    Arc::new(ctx)
}

pub async fn create(
    client: &kube::Client,
    ns: &str,
    name: &str,
    spec: KafkaClusterSpec,
) -> KafkaCluster {
    let api: Api<KafkaCluster> = Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &KafkaCluster::new(name, spec))
        .await
        .expect("creating the KafkaCluster")
}

pub async fn get(client: &kube::Client, ns: &str, name: &str) -> KafkaCluster {
    Api::<KafkaCluster>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .expect("reading the KafkaCluster")
}

pub fn condition<'a>(
    kc: &'a KafkaCluster,
    kind: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    kc.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == kind))
        .unwrap_or_else(|| panic!("no {kind} condition in {:?}", kc.status))
}

#[tokio::test]
async fn the_server_validates_custom_resources_against_the_generated_schema() {
    let server = api_server_or_skip!();
    let (client, ns) = server.namespace("schema").await;
    install_crds(&client).await;
    let api: Api<KafkaCluster> = Api::namespaced(client.clone(), &ns);
    let zero = KafkaCluster::new(
        "zero",
        KafkaClusterSpec {
            replicas: 0,
            ..Default::default()
        },
    );
    let err = api
        .create(&PostParams::default(), &zero)
        .await
        .expect_err("replicas 0 is below the schema's minimum");
    assert!(err.to_string().contains("spec.replicas"), "{err}");
    let mut wrong_type =
        serde_json::to_value(KafkaCluster::new("typed", KafkaClusterSpec::default())).unwrap();
    wrong_type["spec"]["replicas"] = serde_json::json!("three");
    let raw: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &kube::api::ApiResource::erase::<KafkaCluster>(&()),
    );
    let obj: kube::api::DynamicObject = serde_json::from_value(wrong_type).unwrap();
    let err = raw
        .create(&PostParams::default(), &obj)
        .await
        .expect_err("a string is not a count");
    assert!(err.to_string().contains("spec.replicas"), "{err}");
}

#[tokio::test]
async fn a_cluster_gets_owned_children_and_a_status_and_a_second_reconcile_changes_nothing() {
    let server = api_server_or_skip!();
    let (client, ns) = server.namespace("children").await;
    install_crds(&client).await;
    let mut spec = KafkaClusterSpec {
        replicas: 3,
        ..Default::default()
    };
    spec.config.insert("min.insync.replicas".into(), "2".into());
    let kc = create(&client, &ns, "events", spec).await;
    let ctx = context(&client);
    reconcile(Arc::new(kc), Arc::clone(&ctx))
        .await
        .expect("first reconcile");

    let kc = get(&client, &ns, "events").await;
    let uid = kc.uid().unwrap();
    let status = kc.status.clone().expect("a status");
    let id = status.cluster_id.clone().expect("a cluster id");
    assert!(gregor_operator::validate::is_cluster_id(&id), "{id}");
    assert_eq!(
        status.bootstrap_servers.as_deref(),
        Some(format!("events-bootstrap.{ns}.svc:9092").as_str())
    );
    assert_eq!(status.observed_generation, kc.metadata.generation);
    assert_eq!(status.brokers.len(), 3);
    assert_eq!(condition(&kc, "Ready").status, "False", "no pods run here");

    let owned_by_cluster =
        |owners: &Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>>| {
            let o = owners.as_ref().expect("owner references");
            o.len() == 1
                && o[0].uid == uid
                && o[0].kind == "KafkaCluster"
                && o[0].controller == Some(true)
        };
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let svcs: Api<Service> = Api::namespaced(client.clone(), &ns);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
    let s = sts.get("events").await.expect("the StatefulSet");
    assert!(owned_by_cluster(&s.metadata.owner_references));
    assert_eq!(
        s.spec.update_strategy.as_ref().unwrap().type_.as_deref(),
        Some("OnDelete")
    );
    let config = cms.get("events-config").await.expect("the config");
    assert!(owned_by_cluster(&config.metadata.owner_references));
    assert!(config.data.as_ref().unwrap()["events-2.properties"].contains("node.id=2\n"));
    let record = cms.get("events-cluster-id").await.expect("the id record");
    assert_eq!(record.data.unwrap()["clusterId"], id);
    for name in ["events-nodes", "events-bootstrap"] {
        let svc = svcs.get(name).await.expect("the Services");
        assert!(owned_by_cluster(&svc.metadata.owner_references), "{name}");
    }
    assert!(owned_by_cluster(
        &pdbs.get("events").await.unwrap().metadata.owner_references
    ));

    // Nothing changed: nothing is rewritten, and the StatefulSet keeps generation 1.
    let versions = |s: &StatefulSet, c: &ConfigMap| (s.resource_version(), c.resource_version());
    let before = versions(&s, &config);
    reconcile(
        Arc::new(get(&client, &ns, "events").await),
        Arc::clone(&ctx),
    )
    .await
    .expect("second reconcile");
    let s = sts.get("events").await.unwrap();
    assert_eq!(s.metadata.generation, Some(1));
    assert_eq!(
        versions(&s, &cms.get("events-config").await.unwrap()),
        before
    );

    // A status wipe loses nothing: the id comes back from its record.
    let api: Api<KafkaCluster> = Api::namespaced(client.clone(), &ns);
    api.patch_status(
        "events",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"status": null})),
    )
    .await
    .expect("wiping the status");
    assert!(get(&client, &ns, "events")
        .await
        .status
        .is_none_or(|s| s.cluster_id.is_none()));
    reconcile(
        Arc::new(get(&client, &ns, "events").await),
        Arc::clone(&ctx),
    )
    .await
    .expect("reconcile after the wipe");
    assert_eq!(
        get(&client, &ns, "events").await.status.unwrap().cluster_id,
        Some(id)
    );
}

#[tokio::test]
async fn an_invalid_spec_is_reported_by_name_and_creates_nothing() {
    let server = api_server_or_skip!();
    let (client, ns) = server.namespace("invalid").await;
    install_crds(&client).await;
    let mut spec = KafkaClusterSpec {
        replicas: 3,
        ..Default::default()
    };
    spec.config.insert("log.dirs".into(), "/elsewhere".into());
    let kc = create(&client, &ns, "bad", spec).await;
    reconcile(Arc::new(kc), context(&client))
        .await
        .expect("an invalid spec is not an error");
    let kc = get(&client, &ns, "bad").await;
    let ready = condition(&kc, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "InvalidSpec")
    );
    assert!(ready.message.contains("log.dirs"), "{}", ready.message);
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    assert!(sts.get_opt("bad").await.unwrap().is_none());
}

/// Creates the pods a StatefulSet controller would (none runs here), ready or not.
pub async fn pods_like_the_statefulset(
    client: &kube::Client,
    ns: &str,
    sts: &StatefulSet,
    ready: bool,
) {
    use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, Pod, Volume};
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let name = sts.name_any();
    for i in 0..sts.spec.replicas.unwrap_or(0) {
        let template = sts.spec.template.clone();
        let mut spec = template.spec.unwrap();
        spec.volumes.get_or_insert_with(Vec::new).push(Volume {
            name: "data".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        });
        let mut pod = Pod {
            metadata: template.metadata.unwrap_or_default(),
            spec: Some(spec),
            ..Default::default()
        };
        pod.metadata.name = Some(format!("{name}-{i}"));
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("creating a pod");
        set_ready(client, ns, &format!("{name}-{i}"), ready).await;
    }
}

pub async fn set_ready(client: &kube::Client, ns: &str, pod: &str, ready: bool) {
    use k8s_openapi::api::core::v1::Pod;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let status = if ready { "True" } else { "False" };
    pods.patch_status(
        pod,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"status": {"conditions": [
            {"type": "Ready", "status": status, "lastTransitionTime": "2026-01-01T00:00:00Z"}
        ]}})),
    )
    .await
    .expect("setting pod readiness");
}

/// Reconciles the KafkaCluster `ns/events` as it is now, and returns it as it is then.
pub async fn reconcile_events(client: &kube::Client, ns: &str, ctx: &Arc<Context>) -> KafkaCluster {
    reconcile(Arc::new(get(client, ns, "events").await), Arc::clone(ctx))
        .await
        .expect("reconciling events");
    get(client, ns, "events").await
}

/// Merge-patches `spec` into the spec of the KafkaCluster `ns/events`.
pub async fn patch_spec(client: &kube::Client, ns: &str, spec: serde_json::Value) {
    Api::<KafkaCluster>::namespaced(client.clone(), ns)
        .patch(
            "events",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "spec": spec })),
        )
        .await
        .expect("patching the spec of events");
}

/// Creates the KafkaCluster `ns/events` of three nodes, reconciles it and makes its pods,
/// ready. The context returned reaches no broker (nothing listens at its address), so the
/// brokers never vouch for restarting a ready pod.
async fn three_ready_nodes(client: &kube::Client, ns: &str) -> Arc<Context> {
    let spec = KafkaClusterSpec {
        replicas: 3,
        ..Default::default()
    };
    create(client, ns, "events", spec).await;
    let ctx = reaching(client, ns, "127.0.0.1:1");
    reconcile_events(client, ns, &ctx).await;
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    pods_like_the_statefulset(client, ns, &sts.get("events").await.unwrap(), true).await;
    ctx
}

#[tokio::test]
async fn a_config_change_plans_a_roll_in_order_and_restarts_an_unready_pod_first() {
    use k8s_openapi::api::core::v1::Pod;
    let server = api_server_or_skip!();
    let (client, ns) = server.namespace("roll").await;
    install_crds(&client).await;
    let ctx = three_ready_nodes(&client, &ns).await;
    reconcile_events(&client, &ns, &ctx).await;
    let kc = get(&client, &ns, "events").await;
    assert_eq!(condition(&kc, "Ready").status, "True", "{:?}", kc.status);
    assert_eq!(kc.status.as_ref().unwrap().ready_replicas, 3);
    assert!(kc.status.as_ref().unwrap().roll.is_none());

    // A config change: every pod is stale; no broker answers, so the roll waits, in order.
    patch_spec(
        &client,
        &ns,
        serde_json::json!({"config": {"num.partitions": "4"}}),
    )
    .await;
    reconcile_events(&client, &ns, &ctx).await;
    let kc = get(&client, &ns, "events").await;
    let status = kc.status.clone().unwrap();
    let roll = status.roll.clone().expect("a roll");
    assert_eq!(roll.pending, vec!["events-0", "events-1", "events-2"]);
    assert!(roll.restarting.is_none());
    assert!(
        roll.waiting_for.unwrap().contains("brokers"),
        "{:?}",
        status.roll
    );
    assert_eq!(condition(&kc, "Progressing").reason, "RollingRestart");
    assert_eq!(condition(&kc, "Ready").status, "False");
    assert!(status.brokers.iter().all(|b| !b.current));
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    assert_eq!(
        pods.list(&Default::default()).await.unwrap().items.len(),
        3,
        "nothing restarted"
    );

    // An unready stale pod is restarted first, without asking the brokers. A finalizer keeps
    // it terminating after its deletion, as a kubelet would while the broker drains.
    hold(&client, &ns, "events-1", true).await;
    set_ready(&client, &ns, "events-1", false).await;
    reconcile_events(&client, &ns, &ctx).await;
    let roll = get(&client, &ns, "events")
        .await
        .status
        .unwrap()
        .roll
        .unwrap();
    assert_eq!(roll.restarting.as_deref(), Some("events-1"));
    assert_eq!(roll.pending[0], "events-1");
    let left: Vec<String> = pods
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| p.name_any())
        .collect();
    assert_eq!(
        left,
        vec!["events-0", "events-2"],
        "events-1 was deleted for its StatefulSet to recreate"
    );

    // While events-1 terminates, nothing else restarts, not even an unready stale pod, and
    // events-1 is not deleted again.
    set_ready(&client, &ns, "events-2", false).await;
    let terminating = pods.get("events-1").await.unwrap();
    assert!(terminating.metadata.deletion_timestamp.is_some());
    reconcile_events(&client, &ns, &ctx).await;
    let roll = get(&client, &ns, "events")
        .await
        .status
        .unwrap()
        .roll
        .unwrap();
    assert_eq!(roll.restarting, None, "{roll:?}");
    assert_eq!(
        roll.waiting_for.as_deref(),
        Some("pod events-1 to finish terminating")
    );
    assert!(pods
        .get("events-2")
        .await
        .unwrap()
        .metadata
        .deletion_timestamp
        .is_none());
    hold(&client, &ns, "events-1", false).await;
}

/// Adds (or removes) a finalizer that keeps `pod` terminating once deleted.
async fn hold(client: &kube::Client, ns: &str, pod: &str, on: bool) {
    use k8s_openapi::api::core::v1::Pod;
    let finalizers: Vec<&str> = if on {
        vec!["gregor.dev/test-hold"]
    } else {
        vec![]
    };
    Api::<Pod>::namespaced(client.clone(), ns)
        .patch(
            pod,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"finalizers": finalizers}})),
        )
        .await
        .expect("setting the pod's finalizers");
}

#[tokio::test]
async fn a_restart_deletes_only_the_pod_object_it_planned_on_never_a_replacement() {
    use gregor_operator::reconcile::restart::{delete_observed, Restart};
    use k8s_openapi::api::core::v1::Pod;
    use kube::runtime::wait::{await_condition, conditions};
    let server = api_server_or_skip!();
    let (client, ns) = server.namespace("restart-precondition").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "events-0"},
        "spec": {"containers": [{"name": "gregor", "image": "gregor:old"}]}
    }))
    .unwrap();
    let planned = pods.create(&PostParams::default(), &pod).await.unwrap();
    // The StatefulSet controller replaces the pod under the same name.
    pods.delete("events-0", &Default::default()).await.unwrap();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        await_condition(
            pods.clone(),
            "events-0",
            conditions::is_deleted(&planned.uid().unwrap()),
        ),
    )
    .await
    .expect("the first pod goes")
    .unwrap();
    let replacement = pods.create(&PostParams::default(), &pod).await.unwrap();
    assert_ne!(replacement.uid(), planned.uid());

    assert_eq!(
        delete_observed(&pods, &planned).await.unwrap(),
        Restart::Changed
    );
    let still = pods.get("events-0").await.expect("the replacement stays");
    assert_eq!(still.uid(), replacement.uid());

    // The same object, changed since it was read (it turned ready, say): left alone too.
    set_ready(&client, &ns, "events-0", true).await;
    assert_eq!(
        delete_observed(&pods, &replacement).await.unwrap(),
        Restart::Changed
    );
    assert!(pods.get_opt("events-0").await.unwrap().is_some());

    // As it is now: deleted.
    let current = pods.get("events-0").await.unwrap();
    assert_eq!(
        delete_observed(&pods, &current).await.unwrap(),
        Restart::Deleted
    );
    assert!(pods.get_opt("events-0").await.unwrap().is_none());
}

#[tokio::test]
async fn ready_nodes_and_a_roll_under_way_show_in_the_metrics_and_go_back_down() {
    let server = api_server_or_skip!();
    let (client, ns) = server.namespace("roll-metrics").await;
    install_crds(&client).await;
    // No ready pod is restarted here, so a roll stays under way.
    let ctx = three_ready_nodes(&client, &ns).await;
    let again = || reconcile_events(&client, &ns, &ctx);
    let ready = || {
        ctx.metrics
            .brokers_ready
            .with_label_values(&[ns.as_str(), "events"])
            .get()
    };
    let before = k8s_openapi::jiff::Timestamp::now().as_second();
    again().await;
    assert_eq!((ready(), ctx.metrics.rolls_in_progress.get()), (3, 0));
    let of_events =
        |gauge: &prometheus::IntGaugeVec| gauge.with_label_values(&[ns.as_str(), "events"]).get();
    let m = &ctx.metrics;
    assert_eq!(of_events(&m.brokers_desired), 3);
    assert_eq!(of_events(&m.roll_in_progress), 0);
    assert_eq!(of_events(&m.scale_in_progress), 0);
    assert!(of_events(&m.last_success) >= before);
    let cluster_ready = || {
        m.resource_ready
            .with_label_values(&["KafkaCluster", ns.as_str(), "events"])
            .get()
    };
    assert_eq!(cluster_ready(), 1, "every node ready and current");
    let kc = get(&client, &ns, "events").await;
    let status = kc.status.as_ref().unwrap();
    for (ca, recorded) in [
        ("cluster", &status.cluster_ca),
        ("clients", &status.clients_ca),
    ] {
        let expiry = m
            .certificate_expiry
            .with_label_values(&[ns.as_str(), "events", ca])
            .get();
        let recorded = recorded.as_ref().expect("a generated CA");
        assert_eq!(
            k8s_openapi::jiff::Timestamp::from_second(expiry)
                .unwrap()
                .to_string(),
            recorded.certificate_expiry,
            "the {ca} CA's notAfter, as the status has it"
        );
    }

    let config = |value: Option<&str>| {
        patch_spec(
            &client,
            &ns,
            serde_json::json!({"config": {"num.partitions": value}}),
        )
    };
    config(Some("4")).await;
    again().await;
    assert_eq!(ctx.metrics.rolls_in_progress.get(), 1, "every pod is stale");
    assert_eq!(of_events(&m.roll_in_progress), 1);
    assert_eq!(cluster_ready(), 0, "no node runs the current spec");
    config(None).await;
    again().await;
    assert_eq!(
        ctx.metrics.rolls_in_progress.get(),
        0,
        "the config is back: every pod is current again"
    );
    assert_eq!(of_events(&m.roll_in_progress), 0);
    set_ready(&client, &ns, "events-2", false).await;
    again().await;
    assert_eq!(ready(), 2);
    assert_eq!(of_events(&m.brokers_desired), 3);
    assert_eq!(cluster_ready(), 0);
}

#[tokio::test]
async fn a_cluster_keeps_its_image_when_the_operator_default_changes_until_spec_image_moves_it() {
    let server = api_server_or_skip!();
    let (client, ns) = server.namespace("image").await;
    install_crds(&client).await;
    create(
        &client,
        &ns,
        "events",
        KafkaClusterSpec {
            replicas: 1,
            ..Default::default()
        },
    )
    .await;
    let operator = |default_image: &str| {
        let mut ctx = (*context(&client)).clone();
        ctx.default_image = default_image.into();
        Arc::new(ctx)
    };
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let images = || async {
        let s = sts.get("events").await.expect("the StatefulSet");
        let pod = s.spec.template.spec.unwrap();
        let status = get(&client, &ns, "events").await.status.unwrap();
        (
            pod.containers[0].image.clone().unwrap(),
            pod.init_containers.unwrap()[0].image.clone().unwrap(),
            status.image.unwrap_or_default(),
        )
    };
    let same = |image: &str| (image.to_string(), image.to_string(), image.to_string());
    let reconcile_with = |default_image: &str| {
        let (client, ns, ctx) = (&client, &ns, operator(default_image));
        async move { reconcile_events(client, ns, &ctx).await }
    };
    let set_image =
        |image: Option<&str>| patch_spec(&client, &ns, serde_json::json!({"image": image}));

    reconcile_with("gregor:a").await;
    assert_eq!(
        images().await,
        same("gregor:a"),
        "a new cluster takes the default"
    );
    let generation = sts.get("events").await.unwrap().metadata.generation;
    reconcile_with("gregor:b").await;
    assert_eq!(
        images().await,
        same("gregor:a"),
        "an operator upgrade moves nothing"
    );
    assert_eq!(
        sts.get("events").await.unwrap().metadata.generation,
        generation
    );

    set_image(Some("gregor:c")).await;
    reconcile_with("gregor:b").await;
    assert_eq!(images().await, same("gregor:c"), "spec.image moves it");
    set_image(None).await;
    reconcile_with("gregor:b").await;
    assert_eq!(
        images().await,
        same("gregor:c"),
        "and it stays where spec.image left it"
    );

    // A cluster from before status.image (or whose status was wiped) keeps what it runs.
    let api: Api<KafkaCluster> = Api::namespaced(client.clone(), &ns);
    api.patch_status(
        "events",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"status": null})),
    )
    .await
    .expect("wiping the status");
    reconcile_with("gregor:b").await;
    assert_eq!(images().await, same("gregor:c"));
}

/// Creates the bound claims a StatefulSet and a provisioner would (neither runs here).
async fn bound_claims(client: &kube::Client, ns: &str, pool: &str, size: &str, class: &str) {
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    for i in 0..3 {
        let name = format!("data-{pool}-{i}");
        let claim: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {
                "app.kubernetes.io/name": "gregor", "app.kubernetes.io/instance": pool,
                "gregor.dev/pool": "broker"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": class,
                     "volumeName": format!("pv-{ns}-{i}"),
                     "resources": {"requests": {"storage": size}}}
        }))
        .unwrap();
        api.create(&PostParams::default(), &claim)
            .await
            .expect("creating a claim");
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!(
            {"status": {"phase": "Bound", "capacity": {"storage": size}}})),
        )
        .await
        .expect("binding the claim");
    }
}

#[tokio::test]
async fn a_bigger_volume_grows_the_claims_and_a_smaller_one_is_refused() {
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;
    use k8s_openapi::api::storage::v1::StorageClass;
    let server = api_server_or_skip!();
    let (client, ns) = server.namespace("storage").await;
    install_crds(&client).await;
    let class = format!("expandable-{ns}");
    let classes: Api<StorageClass> = Api::all(client.clone());
    classes
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
            "metadata": {"name": class}, "provisioner": "example.com/test",
            "allowVolumeExpansion": true}))
            .unwrap(),
        )
        .await
        .expect("a storage class");
    let kc = create(
        &client,
        &ns,
        "events",
        KafkaClusterSpec {
            replicas: 3,
            ..Default::default()
        },
    )
    .await;
    let ctx = context(&client);
    reconcile(Arc::new(kc), Arc::clone(&ctx)).await.unwrap();
    bound_claims(&client, &ns, "events", "10Gi", &class).await;
    let api: Api<KafkaCluster> = Api::namespaced(client.clone(), &ns);
    let resize = |size: &str| {
        let api = api.clone();
        let size = size.to_string();
        async move {
            api.patch(
                "events",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!(
                {"spec": {"storage": {"size": size}}})),
            )
            .await
            .unwrap();
        }
    };

    resize("5Gi").await;
    reconcile(
        Arc::new(get(&client, &ns, "events").await),
        Arc::clone(&ctx),
    )
    .await
    .unwrap();
    let kc = get(&client, &ns, "events").await;
    let degraded = condition(&kc, "Degraded");
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "SpecNotApplied")
    );
    assert!(
        degraded.message.contains("cannot shrink"),
        "{}",
        degraded.message
    );
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let template = sts
        .get("events")
        .await
        .unwrap()
        .spec
        .volume_claim_templates
        .unwrap();
    assert_eq!(
        template[0]
            .spec
            .as_ref()
            .unwrap()
            .resources
            .as_ref()
            .unwrap()
            .requests
            .as_ref()
            .unwrap()["storage"]
            .0,
        "10Gi",
        "the claim template never changes"
    );

    resize("20Gi").await;
    reconcile(
        Arc::new(get(&client, &ns, "events").await),
        Arc::clone(&ctx),
    )
    .await
    .unwrap();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    for i in 0..3 {
        let c = claims.get(&format!("data-events-{i}")).await.unwrap();
        assert_eq!(
            c.spec.unwrap().resources.unwrap().requests.unwrap()["storage"].0,
            "20Gi"
        );
    }
    let kc = get(&client, &ns, "events").await;
    assert_eq!(
        condition(&kc, "Degraded").status,
        "False",
        "{:?}",
        condition(&kc, "Degraded")
    );
}

#[tokio::test]
async fn external_services_and_a_service_monitor_follow_the_spec() {
    use gregor_operator::crd::cluster::{ExternalListener, ExternalType};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let server = api_server_or_skip!();
    let (client, ns) = server.namespace("extras").await;
    install_crds(&client).await;
    let mut spec = KafkaClusterSpec {
        replicas: 2,
        ..Default::default()
    };
    spec.listeners.external = Some({
        let mut e = ExternalListener::of(ExternalType::NodePort);
        e.advertised = BTreeMap::from([("0".to_string(), "kafka-0.example.com:31000".to_string())]);
        e
    });
    spec.metrics.service_monitor = true;
    let kc = create(&client, &ns, "events", spec).await;
    let ctx = context(&client);
    reconcile(Arc::new(kc), Arc::clone(&ctx)).await.unwrap();
    let svcs: Api<Service> = Api::namespaced(client.clone(), &ns);
    let mut node_ports = Vec::new();
    for i in 0..2 {
        let s = svcs
            .get(&format!("events-{i}-external"))
            .await
            .expect("a per-broker Service");
        let spec = s.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("NodePort"));
        let node_port = spec.ports.unwrap()[0].node_port;
        node_ports.push(node_port.expect("the API server allocated a node port"));
    }
    let config = Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .get("events-config")
        .await
        .unwrap();
    let data = config.data.as_ref().unwrap();
    // Broker 0 advertises the address in the spec; broker 1, given none, its node's address
    // (resolved by the broker from the downward API) and the port its Service got, from the
    // first reconcile on, so the pods never restart to learn it.
    assert!(data["events-0.properties"].contains("EXTERNAL://kafka-0.example.com:31000"));
    let broker1 = &data["events-1.properties"];
    assert!(
        broker1.contains(&format!("EXTERNAL://${{env:HOST_IP}}:{}", node_ports[1]))
            && broker1.contains("config.providers=env\n"),
        "{broker1}"
    );
    // Without the Prometheus Operator's CRD, the status says so.
    let kc = get(&client, &ns, "events").await;
    let degraded = condition(&kc, "Degraded");
    assert!(
        degraded.status == "True" && degraded.message.contains("ServiceMonitor"),
        "{degraded:?}"
    );

    // With a ServiceMonitor CRD installed (a minimal one, cluster-wide), the monitor is applied.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
        "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
            "names": {"kind": "ServiceMonitor", "plural": "servicemonitors", "singular": "servicemonitor"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema":
                {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    })).unwrap();
    match crds.create(&PostParams::default(), &crd).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("creating the ServiceMonitor CRD: {e}"),
    }
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        kube::runtime::wait::await_condition(
            crds,
            "servicemonitors.monitoring.coreos.com",
            kube::runtime::wait::conditions::is_crd_established(),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    // The API server needs a moment to serve a new CRD's endpoints: retry until applied.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        reconcile(
            Arc::new(get(&client, &ns, "events").await),
            Arc::clone(&ctx),
        )
        .await
        .unwrap();
        if condition(&get(&client, &ns, "events").await, "Degraded").status == "False" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the ServiceMonitor was never applied"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let resource = kube::api::ApiResource {
        group: "monitoring.coreos.com".into(),
        version: "v1".into(),
        api_version: "monitoring.coreos.com/v1".into(),
        kind: "ServiceMonitor".into(),
        plural: "servicemonitors".into(),
    };
    let monitors: Api<kube::api::DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &resource);
    let m = monitors.get("events").await.expect("the ServiceMonitor");
    assert_eq!(m.data["spec"]["endpoints"][0]["port"], "metrics");

    // Turned off, the monitor is deleted by the next reconcile, as are the external Services
    // once the listener is removed.
    patch_spec(
        &client,
        &ns,
        serde_json::json!({"metrics": {"serviceMonitor": false}, "listeners": {"external": null}}),
    )
    .await;
    reconcile(
        Arc::new(get(&client, &ns, "events").await),
        Arc::clone(&ctx),
    )
    .await
    .unwrap();
    assert!(
        monitors.get_opt("events").await.unwrap().is_none(),
        "the ServiceMonitor stayed"
    );
    for i in 0..2 {
        let name = format!("events-{i}-external");
        assert!(
            svcs.get_opt(&name).await.unwrap().is_none(),
            "{name} stayed"
        );
    }
    assert!(svcs.get_opt("events-bootstrap").await.unwrap().is_some());
}

#[tokio::test]
async fn a_load_balancer_address_is_advertised_once_the_service_has_one() {
    use gregor_operator::crd::cluster::{ExternalListener, ExternalType};
    let server = api_server_or_skip!();
    let (client, ns) = server.namespace("load-balancer").await;
    install_crds(&client).await;
    let mut spec = KafkaClusterSpec {
        replicas: 1,
        ..Default::default()
    };
    spec.listeners.external = Some(ExternalListener::of(ExternalType::LoadBalancer));
    create(&client, &ns, "lb", spec).await;
    let ctx = context(&client);
    let properties = || async {
        Api::<ConfigMap>::namespaced(client.clone(), &ns)
            .get("lb-config")
            .await
            .unwrap()
            .data
            .unwrap()["lb-0.properties"]
            .clone()
    };
    reconcile(Arc::new(get(&client, &ns, "lb").await), Arc::clone(&ctx))
        .await
        .unwrap();
    // No address yet (no cloud controller has provisioned one): the listener is bound but not
    // advertised, and no config provider is needed.
    let before = properties().await;
    assert!(
        before.contains("listeners=CLIENT://:9092,EXTERNAL://:9094")
            && !before.contains("EXTERNAL://lb")
            && !before.contains("config.providers"),
        "{before}"
    );
    // What a cloud controller writes once the load balancer is up.
    Api::<Service>::namespaced(client.clone(), &ns)
        .patch_status(
            "lb-0-external",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "status": {"loadBalancer": {"ingress": [{"hostname": "lb-0.example.com"}]}}
            })),
        )
        .await
        .expect("writing the load balancer's address");
    reconcile(Arc::new(get(&client, &ns, "lb").await), Arc::clone(&ctx))
        .await
        .unwrap();
    let after = properties().await;
    assert!(
        after.contains("EXTERNAL://lb-0.example.com:9094"),
        "{after}"
    );
}

#[tokio::test]
async fn with_healthy_brokers_a_follower_restarts_first_and_the_active_controller_last() {
    let server = api_server_or_skip!();
    let brokers = crate::topic::brokers::shared();
    let (client, ns) = server.namespace("roll-healthy").await;
    install_crds(&client).await;
    // The local brokers have node ids 0..3, as the pods events-0..2 would.
    let kc = create(
        &client,
        &ns,
        "events",
        KafkaClusterSpec {
            replicas: 3,
            ..Default::default()
        },
    )
    .await;
    let ctx = reaching(&client, &ns, &brokers.bootstrap);
    reconcile(Arc::new(kc), Arc::clone(&ctx)).await.unwrap();
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    pods_like_the_statefulset(&client, &ns, &sts.get("events").await.unwrap(), true).await;
    let api: Api<KafkaCluster> = Api::namespaced(client.clone(), &ns);
    api.patch(
        "events",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!(
        {"spec": {"config": {"num.partitions": "5"}}})),
    )
    .await
    .unwrap();

    let access = gregor_operator::reconcile::access::Access::plaintext(brokers.bootstrap.clone());
    let health = gregor_operator::health::read(&access)
        .await
        .expect("the brokers answer");
    let controller = health.active_controller.expect("an active controller");
    assert_eq!(health.voters.len(), 3);
    // Other tests share these brokers: a topic they just made may be catching up, so the roll
    // may wait a moment before its first restart.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let roll = loop {
        reconcile(
            Arc::new(get(&client, &ns, "events").await),
            Arc::clone(&ctx),
        )
        .await
        .unwrap();
        let roll = get(&client, &ns, "events")
            .await
            .status
            .unwrap()
            .roll
            .expect("a roll");
        if roll.restarting.is_some() {
            break roll;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never restarted: {roll:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let restarted = roll.restarting.unwrap();
    assert_ne!(
        restarted,
        format!("events-{controller}"),
        "the active controller goes last"
    );
    // A ready pod restarts only once the health check found nothing under-replicated.
    let under_replicated = format!(
        r#"gregor_operator_under_replicated_partitions{{cluster="events",namespace="{ns}"}} 0"#
    );
    let metrics = ctx.metrics.render();
    assert!(metrics.contains(&under_replicated), "{metrics}");
    assert_eq!(
        roll.pending.last(),
        Some(&format!("events-{controller}")),
        "{:?}",
        roll.pending
    );
    assert_eq!(roll.pending.len(), 3);
}
