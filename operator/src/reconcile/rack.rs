//! The rack ClusterRoleBinding of a KafkaCluster's broker pods ([`crate::build::rack`]): applied
//! while `spec.rack` is set, deleted when it is removed and when the cluster is deleted.
//!
//! The binding is cluster-scoped, so no owner reference lets the garbage collector delete it
//! with the namespaced KafkaCluster: a finalizer does, and only clusters that have (or had)
//! a binding carry it, so deleting any other cluster needs no operator. The finalizer is added
//! before the binding is first applied (kube's finalizer helper adds it and returns), so a
//! binding never exists without it; it is removed once the binding is gone.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::ResourceExt;

use super::ReconcileError;
use crate::build::objects::FIELD_MANAGER;
use crate::build::rack::{
    binding_labels, cluster_role_binding, cluster_role_binding_name, service_account_name,
};
use crate::crd::KafkaCluster;
use crate::validate::ValidatedCluster;

/// The finalizer that deletes a cluster's rack ClusterRoleBinding before the cluster goes.
pub const FINALIZER: &str = "gregor.dev/rack-binding";

/// Whether `kc` carries the finalizer.
pub fn has_finalizer(kc: &KafkaCluster) -> bool {
    kc.finalizers().iter().any(|f| f == FINALIZER)
}

/// Applies the binding of `cluster`'s broker pods to `cluster_role` while it has `spec.rack`;
/// without it, deletes a binding left from an earlier spec, the broker pods' ServiceAccount
/// (the pods lose it with the roll the template change starts) and then the finalizer.
pub async fn sync(
    client: &kube::Client,
    kc: &KafkaCluster,
    cluster: &ValidatedCluster,
    cluster_role: &str,
) -> Result<(), ReconcileError> {
    match cluster_role_binding(cluster, cluster_role) {
        Some(binding) => apply(client, &binding).await,
        None if has_finalizer(kc) => {
            delete(client, &cluster.namespace, &cluster.name).await?;
            delete_service_account(client, cluster).await?;
            remove_finalizer(client, kc).await
        }
        None => Ok(()),
    }
}

/// Server-side applies `binding`. Its roleRef cannot change: when `--rack-cluster-role` did,
/// the old binding is deleted and the new one created.
async fn apply(client: &kube::Client, binding: &ClusterRoleBinding) -> Result<(), ReconcileError> {
    let api: Api<ClusterRoleBinding> = Api::all(client.clone());
    let name = binding.name_any();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    match api.patch(&name, &params, &Patch::Apply(binding)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 422 => {
            tracing::info!(binding = %name, reason = %e.message, "recreating the rack binding");
            api.delete(&name, &DeleteParams::default()).await?;
            api.patch(&name, &params, &Patch::Apply(binding)).await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Deletes the rack binding of `namespace/name`, if there is one carrying its labels.
pub async fn delete(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<(), ReconcileError> {
    let api: Api<ClusterRoleBinding> = Api::all(client.clone());
    let binding = cluster_role_binding_name(namespace, name);
    let Some(found) = api.get_opt(&binding).await? else {
        return Ok(());
    };
    let ours = binding_labels(namespace, name)
        .iter()
        .all(|(k, v)| found.labels().get(k) == Some(v));
    if !ours {
        tracing::warn!(%binding, "not deleting a ClusterRoleBinding without this cluster's labels");
        return Ok(());
    }
    match api.delete(&binding, &DeleteParams::default()).await {
        Ok(_) => {
            tracing::info!(%binding, "rack binding deleted");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes the broker pods' ServiceAccount of a cluster without rack, if it is still there.
/// (With the cluster itself, the garbage collector deletes it: it is owned.)
async fn delete_service_account(
    client: &kube::Client,
    cluster: &ValidatedCluster,
) -> Result<(), ReconcileError> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &cluster.namespace);
    let name = service_account_name(cluster);
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => {
            tracing::info!(service_account = %name, "rack ServiceAccount deleted");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes the finalizer from a cluster that no longer has a binding. The patch names the
/// resourceVersion read, so a concurrent change of the finalizers fails it (and the reconcile
/// is retried) instead of being overwritten.
async fn remove_finalizer(client: &kube::Client, kc: &KafkaCluster) -> Result<(), ReconcileError> {
    let api: Api<KafkaCluster> =
        Api::namespaced(client.clone(), &kc.namespace().unwrap_or_default());
    let rest: Vec<&String> = kc.finalizers().iter().filter(|f| *f != FINALIZER).collect();
    let patch = serde_json::json!({
        "metadata": {"finalizers": rest, "resourceVersion": kc.resource_version()},
    });
    api.patch(
        &kc.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}
