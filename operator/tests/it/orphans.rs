//! Children the spec no longer builds are deleted by the next reconcile; everything else (what
//! it still builds, the cluster id record, claims, objects without the managed-by label or the
//! owner reference) stays.

use std::collections::BTreeMap;

use gregor_operator::crd::cluster::{ControllerPool, ExternalListener, ExternalType};
use gregor_operator::crd::{KafkaCluster, KafkaClusterSpec};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, PostParams};
use kube::ResourceExt;

use crate::cluster::{condition, context, create, get, patch_spec, reconcile_events};
use crate::{api_server_or_skip, install_crds};

/// The names of the objects `api` lists.
async fn names<K>(api: &Api<K>) -> Vec<String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut names: Vec<String> = api
        .list(&Default::default())
        .await
        .expect("listing")
        .items
        .iter()
        .map(|o| o.meta().name.clone().unwrap_or_default())
        .collect();
    names.sort();
    names
}

/// The owner reference every child of `kc` carries.
fn owned_by(kc: &KafkaCluster) -> OwnerReference {
    OwnerReference {
        api_version: "gregor.dev/v1alpha1".into(),
        kind: "KafkaCluster".into(),
        name: kc.name_any(),
        uid: kc.uid().expect("a uid"),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// An object's metadata named `name`, with the managed-by label when `managed` and owned by
/// `owner` when given.
fn meta(
    name: &str,
    managed: bool,
    owner: Option<OwnerReference>,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        name: Some(name.into()),
        labels: managed.then(|| {
            BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_string(),
                "gregor-operator".to_string(),
            )])
        }),
        owner_references: owner.map(|o| vec![o]),
        ..Default::default()
    }
}

/// A ClusterIP Service with `meta`.
fn service(meta: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Service {
    serde_json::from_value(serde_json::json!({
        "metadata": meta,
        "spec": {"ports": [{"port": 9092}]},
    }))
    .expect("a Service")
}

#[tokio::test]
async fn a_removed_external_listener_takes_its_services_and_leaves_the_rest() {
    let server = api_server_or_skip!();
    let (client, ns) = server.namespace("orphan-external").await;
    install_crds(&client).await;
    let mut spec = KafkaClusterSpec {
        replicas: 2,
        ..Default::default()
    };
    spec.listeners.external = Some(ExternalListener::of(ExternalType::NodePort));
    create(&client, &ns, "events", spec).await;
    let ctx = context(&client);
    let kc = reconcile_events(&client, &ns, &ctx).await;
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    assert_eq!(
        names(&services).await,
        [
            "events-0-external",
            "events-1-external",
            "events-bootstrap",
            "events-nodes"
        ]
    );
    // Objects that are not the operator's to delete: a user's Service owned by the cluster but
    // without the managed-by label, one with the label but owned by nothing, and a claim that
    // carries both (claims are the StatefulSet's retention policy's, never the sweep's).
    let post = PostParams::default();
    for (name, managed, owner) in [
        ("events-users", false, Some(owned_by(&kc))),
        ("events-unowned", true, None),
    ] {
        services
            .create(&post, &service(meta(name, managed, owner)))
            .await
            .expect("creating a Service");
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let claim: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
        "metadata": meta("data-events-0", true, Some(owned_by(&kc))),
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }))
    .expect("a claim");
    claims
        .create(&post, &claim)
        .await
        .expect("creating a claim");

    patch_spec(
        &client,
        &ns,
        serde_json::json!({"listeners": {"external": null}}),
    )
    .await;
    let kc = reconcile_events(&client, &ns, &ctx).await;
    assert_eq!(
        names(&services).await,
        [
            "events-bootstrap",
            "events-nodes",
            "events-unowned",
            "events-users"
        ],
        "the external Services are gone, and only they"
    );
    assert_eq!(names(&claims).await, ["data-events-0"]);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    assert_eq!(
        names(&config_maps).await,
        ["events-cluster-id", "events-config"]
    );
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    assert_eq!(names(&statefulsets).await, ["events"]);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
    assert_eq!(names(&pdbs).await, ["events"]);
    let id = kc.status.and_then(|s| s.cluster_id).expect("a cluster id");
    let record = config_maps.get("events-cluster-id").await.unwrap();
    assert_eq!(record.data.unwrap()["clusterId"], id, "the record is kept");
}

#[tokio::test]
async fn turning_a_running_clusters_controller_pool_off_is_refused_and_deletes_nothing() {
    let server = api_server_or_skip!();
    let (client, ns) = server.namespace("orphan-pools").await;
    install_crds(&client).await;
    let spec = KafkaClusterSpec {
        replicas: 2,
        controllers: Some(ControllerPool {
            replicas: 3,
            ..Default::default()
        }),
        ..Default::default()
    };
    create(&client, &ns, "events", spec).await;
    let ctx = context(&client);
    reconcile_events(&client, &ns, &ctx).await;
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let pools = ["events-broker", "events-controller"];
    assert_eq!(names(&statefulsets).await, pools);

    // The combined pool would replace both: the sweep would delete the pods holding the data.
    patch_spec(&client, &ns, serde_json::json!({"controllers": null})).await;
    reconcile_events(&client, &ns, &ctx).await;
    let kc = get(&client, &ns, "events").await;
    let ready = condition(&kc, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "InvalidSpec")
    );
    assert!(
        ready.message.contains("events-broker, events-controller"),
        "{}",
        ready.message
    );
    assert_eq!(names(&statefulsets).await, pools, "nothing deleted");
}
