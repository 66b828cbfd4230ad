//! Deleting the pod a roll planned to restart, and only that pod: the plan was made on pods
//! read a moment (perhaps seconds) earlier, and by then the pod may be terminating, changed,
//! or replaced under the same name by a pod that already runs the current spec.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::ResourceExt;

use super::ReconcileError;

/// What came of a planned restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// The pod was deleted; its StatefulSet recreates it with the current spec.
    Deleted,
    /// The pod is gone, or no longer the object the plan was made on (another UID, or another
    /// resourceVersion): nothing was deleted, and the roll should look again soon.
    Changed,
}

/// Deletes `observed` only if the pod of that name is still that exact object: same UID (not
/// a replacement) and same resourceVersion (nothing changed since it was read).
pub async fn delete_observed(api: &Api<Pod>, observed: &Pod) -> Result<Restart, ReconcileError> {
    let name = observed.name_any();
    let (Some(uid), Some(resource_version)) = (observed.uid(), observed.resource_version()) else {
        return Err(ReconcileError::Malformed(format!(
            "pod {name} was read without a uid or resourceVersion"
        )));
    };
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid),
            resource_version: Some(resource_version),
        }),
        ..Default::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => Ok(Restart::Deleted),
        // 409: a precondition failed, the pod is another object now; 404: it is gone.
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(Restart::Changed),
        Err(e) => Err(e.into()),
    }
}
