//! Volumes: a StatefulSet's claim templates cannot change after creation, so a size change is
//! applied to each existing claim instead (where its storage class allows expansion), and a
//! smaller size is refused: Kubernetes cannot shrink a volume.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::ResourceExt;

use super::ReconcileError;
use crate::build::objects::{label_query, pool_selector};
use crate::validate::{parse_quantity, PoolRole, ValidatedCluster};

/// Keeps the claim templates of an existing StatefulSet in the one about to be applied: the API
/// server refuses any change to them.
pub fn keep_claim_templates(built: &mut StatefulSet, existing: Option<&StatefulSet>) {
    if let Some(existing) = existing {
        built.spec.volume_claim_templates = existing.spec.volume_claim_templates.clone();
    }
}

/// What to do with one claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimChange {
    /// Ask for more space.
    Grow {
        /// Claim name.
        claim: String,
        /// The new size.
        to: String,
    },
    /// The spec asks for less than the claim has.
    ShrinkRefused {
        /// Claim name.
        claim: String,
        /// Its size.
        has: String,
    },
}

/// Compares each claim's requested size (name, size) with `wanted`.
pub fn plan(wanted: &str, claims: &[(String, String)]) -> Vec<ClaimChange> {
    let Some(want) = parse_quantity(wanted) else {
        return Vec::new();
    };
    claims
        .iter()
        .filter_map(|(claim, has)| {
            let current = parse_quantity(has)?;
            if want > current {
                Some(ClaimChange::Grow {
                    claim: claim.clone(),
                    to: wanted.to_string(),
                })
            } else if want < current {
                Some(ClaimChange::ShrinkRefused {
                    claim: claim.clone(),
                    has: has.clone(),
                })
            } else {
                None
            }
        })
        .collect()
}

/// Grows the claims of every pool whose size went up. Returns the problems to report: refused
/// shrinks and growths the API server rejected.
pub async fn resize_claims(
    client: &kube::Client,
    cluster: &ValidatedCluster,
) -> Result<Vec<String>, ReconcileError> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &cluster.namespace);
    let mut problems = Vec::new();
    for pool in &cluster.pools {
        let wanted = match pool.role {
            PoolRole::Controller => &cluster.controller_storage.size,
            _ => &cluster.storage.size,
        };
        let selector = label_query(&pool_selector(cluster, pool));
        let prefix = format!("data-{}-", pool.name);
        let claims: Vec<(String, String)> = api
            .list(&ListParams::default().labels(&selector))
            .await?
            .items
            .iter()
            .filter(|c| c.name_any().starts_with(&prefix))
            .filter_map(|c| {
                let size = c
                    .spec
                    .as_ref()?
                    .resources
                    .as_ref()?
                    .requests
                    .as_ref()?
                    .get("storage")?;
                Some((c.name_any(), size.0.clone()))
            })
            .collect();
        for change in plan(wanted, &claims) {
            match change {
                ClaimChange::Grow { claim, to } => {
                    let patch =
                        serde_json::json!({"spec": {"resources": {"requests": {"storage": to}}}});
                    match api
                        .patch(&claim, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                    {
                        Ok(_) => tracing::info!(%claim, size = %to, "volume claim grown"),
                        Err(kube::Error::Api(e)) if (400..500).contains(&e.code) => {
                            problems.push(format!("cannot grow {claim} to {to}: {}", e.message))
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                ClaimChange::ShrinkRefused { claim, has } => {
                    problems.push(format!("{claim} has {has} and cannot shrink to {wanted}"))
                }
            }
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bigger_sizes_grow_claims_and_smaller_ones_are_refused() {
        let claims = vec![
            ("data-k-0".to_string(), "10Gi".to_string()),
            ("data-k-1".to_string(), "20Gi".to_string()),
            ("data-k-2".to_string(), "15Gi".to_string()),
        ];
        assert_eq!(
            plan("15Gi", &claims),
            vec![
                ClaimChange::Grow {
                    claim: "data-k-0".into(),
                    to: "15Gi".into()
                },
                ClaimChange::ShrinkRefused {
                    claim: "data-k-1".into(),
                    has: "20Gi".into()
                },
            ]
        );
        assert!(
            plan("16106127360", &claims[2..]).is_empty(),
            "15Gi in bytes"
        );
    }
}
