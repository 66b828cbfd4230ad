//! Children the spec no longer builds: a removed external listener's Services, a ServiceMonitor
//! turned off, the StatefulSet, Services, ConfigMap or PodDisruptionBudget of a pool that is
//! gone. Server-side apply only ever creates and updates, so a reconcile deletes them itself,
//! after everything it built is applied.
//!
//! A child is the operator's to delete only when it carries both an owner reference to this
//! KafkaCluster (by uid) and the operator's managed-by label, and its name is not among what
//! this reconcile built. PersistentVolumeClaims are never swept: the StatefulSet's retention
//! policy owns them (`spec.storage.deleteClaim`). The broker pods' ServiceAccount is not swept
//! either: [`super::rack`] deletes it in order with the rack binding and its finalizer.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Preconditions};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::{cluster_id, ReconcileError};
use crate::build::objects::{MANAGED_BY, MANAGED_BY_LABEL};
use crate::build::ClusterObjects;

/// The names of the children one reconcile built (and the cluster id record it keeps), by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Built {
    /// StatefulSets.
    pub statefulsets: BTreeSet<String>,
    /// Services: headless, bootstrap and external.
    pub services: BTreeSet<String>,
    /// ConfigMaps: the nodes' configuration and the cluster id record.
    pub config_maps: BTreeSet<String>,
    /// PodDisruptionBudgets.
    pub pdbs: BTreeSet<String>,
    /// ServiceMonitors.
    pub service_monitors: BTreeSet<String>,
}

impl Built {
    /// What `objects` (built for the KafkaCluster named `cluster`) name. The cluster id record
    /// is not built but written once and kept for the cluster's life, so it is kept too.
    pub fn of(cluster: &str, objects: &ClusterObjects) -> Built {
        let names = |metas: Vec<&ObjectMeta>| -> BTreeSet<String> {
            metas.into_iter().filter_map(|m| m.name.clone()).collect()
        };
        let mut services = vec![&objects.headless.metadata, &objects.bootstrap.metadata];
        services.extend(objects.external.iter().map(|s| &s.metadata));
        Built {
            statefulsets: names(objects.statefulsets.iter().map(|s| &s.metadata).collect()),
            services: names(services),
            config_maps: BTreeSet::from([
                objects.config.name_any(),
                cluster_id::record_name(cluster),
            ]),
            pdbs: BTreeSet::from([objects.pdb.name_any()]),
            service_monitors: objects
                .service_monitor
                .iter()
                .filter_map(|m| m["metadata"]["name"].as_str().map(str::to_string))
                .collect(),
        }
    }
}

/// Whether `meta` is a child of the KafkaCluster with uid `owner` that the operator manages:
/// owned by it and labelled managed-by the operator.
pub fn is_managed_child(meta: &ObjectMeta, owner: &str) -> bool {
    let owned = meta
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.kind == "KafkaCluster" && r.uid == owner);
    let managed = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .is_some_and(|v| v == MANAGED_BY);
    owned && managed
}

/// The objects among `found` to delete: managed children of `owner` that `keep` does not name.
pub fn orphans<'a>(
    found: &'a [ObjectMeta],
    owner: &str,
    keep: &BTreeSet<String>,
) -> Vec<&'a ObjectMeta> {
    found
        .iter()
        .filter(|m| is_managed_child(m, owner))
        .filter(|m| m.name.as_ref().is_some_and(|n| !keep.contains(n)))
        .collect()
}

/// Deletes every managed child of the KafkaCluster with uid `owner` in `namespace` that `built`
/// does not name. Returns what was deleted, as `Kind/name`.
pub async fn delete(
    client: &kube::Client,
    namespace: &str,
    owner: &str,
    built: &Built,
) -> Result<Vec<String>, ReconcileError> {
    let mut deleted = Vec::new();
    // Without the cluster's uid no owner reference can be checked: delete nothing.
    if owner.is_empty() {
        return Ok(deleted);
    }
    let c = || client.clone();
    let services = Api::<Service>::namespaced(c(), namespace);
    sweep(&services, "Service", owner, &built.services, &mut deleted).await?;
    let monitors =
        Api::<DynamicObject>::namespaced_with(c(), namespace, &service_monitor_resource());
    let kind = "ServiceMonitor";
    match sweep(
        &monitors,
        kind,
        owner,
        &built.service_monitors,
        &mut deleted,
    )
    .await
    {
        // Without the Prometheus Operator's CRD there is no ServiceMonitor to delete.
        Err(ReconcileError::Kube(kube::Error::Api(e))) if e.code == 404 => {}
        other => other?,
    }
    let pdbs = Api::<PodDisruptionBudget>::namespaced(c(), namespace);
    sweep(
        &pdbs,
        "PodDisruptionBudget",
        owner,
        &built.pdbs,
        &mut deleted,
    )
    .await?;
    let statefulsets = Api::<StatefulSet>::namespaced(c(), namespace);
    sweep(
        &statefulsets,
        "StatefulSet",
        owner,
        &built.statefulsets,
        &mut deleted,
    )
    .await?;
    // The ConfigMap last: the pods of a StatefulSet being deleted may still read it.
    let config_maps = Api::<ConfigMap>::namespaced(c(), namespace);
    sweep(
        &config_maps,
        "ConfigMap",
        owner,
        &built.config_maps,
        &mut deleted,
    )
    .await?;
    Ok(deleted)
}

/// The Prometheus Operator's ServiceMonitor, a kind Kubernetes does not know.
pub fn service_monitor_resource() -> ApiResource {
    ApiResource {
        group: "monitoring.coreos.com".into(),
        version: "v1".into(),
        api_version: crate::build::monitor::API_VERSION.into(),
        kind: "ServiceMonitor".into(),
        plural: "servicemonitors".into(),
    }
}

/// Deletes the orphans among the objects (of `kind`) `api` lists with the managed-by label,
/// appending `kind/name` of each to `deleted`. Each delete is conditional on the uid listed, so an object
/// recreated under the same name meanwhile is left alone.
async fn sweep<K>(
    api: &Api<K>,
    kind: &str,
    owner: &str,
    keep: &BTreeSet<String>,
    deleted: &mut Vec<String>,
) -> Result<(), ReconcileError>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let selector = format!("{MANAGED_BY_LABEL}={MANAGED_BY}");
    let listed = api.list(&ListParams::default().labels(&selector)).await?;
    let metas: Vec<ObjectMeta> = listed.items.iter().map(|o| o.meta().clone()).collect();
    for meta in orphans(&metas, owner, keep) {
        let name = meta.name.clone().unwrap_or_default();
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: meta.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        match api.delete(&name, &params).await {
            Ok(_) => {
                tracing::info!(%kind, %name, "deleted a child the spec no longer builds");
                deleted.push(format!("{kind}/{name}"));
            }
            // Gone already, or replaced by a new object of that name since the list.
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use std::collections::BTreeMap;

    fn child(name: &str, owner: Option<&str>, managed: bool) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            owner_references: owner.map(|uid| {
                vec![OwnerReference {
                    api_version: "gregor.dev/v1alpha1".into(),
                    kind: "KafkaCluster".into(),
                    name: "events".into(),
                    uid: uid.into(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]
            }),
            labels: managed.then(|| BTreeMap::from([(MANAGED_BY_LABEL.into(), MANAGED_BY.into())])),
            ..Default::default()
        }
    }

    #[test]
    fn only_children_owned_by_this_cluster_labelled_as_managed_and_not_built_are_orphans() {
        let found = [
            child("events-bootstrap", Some("uid-1"), true),
            child("events-0-external", Some("uid-1"), true),
            child("users-service", Some("uid-1"), false),
            child("other-0-external", Some("uid-2"), true),
            child("unowned", None, true),
        ];
        let keep = BTreeSet::from(["events-bootstrap".to_string()]);
        let names: Vec<_> = orphans(&found, "uid-1", &keep)
            .into_iter()
            .map(|m| m.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["events-0-external"]);
    }

    #[test]
    fn what_a_cluster_builds_keeps_its_cluster_id_record() {
        use crate::crd::{KafkaCluster, KafkaClusterSpec};
        let mut kc = KafkaCluster::new(
            "events",
            KafkaClusterSpec {
                replicas: 1,
                ..Default::default()
            },
        );
        kc.metadata.namespace = Some("prod".into());
        let cluster =
            crate::validate::validate(&kc, "MkU3OEVBNTcwNTJENDM2Qg", "gregor:0.1.0").unwrap();
        let built = Built::of("events", &crate::build::cluster(&cluster));
        assert_eq!(
            built.config_maps,
            BTreeSet::from(["events-cluster-id".into(), "events-config".into()])
        );
        assert_eq!(
            built.services,
            BTreeSet::from(["events-bootstrap".into(), "events-nodes".into()])
        );
        assert_eq!(built.statefulsets, BTreeSet::from(["events".into()]));
        assert!(built.service_monitors.is_empty());
    }
}
