//! The cluster id: chosen once (the spec's, or a new random one in Kafka's form), recorded in a
//! ConfigMap owned by the KafkaCluster and copied into its status. The record wins over the
//! status, so wiping the status loses nothing; a spec that later names another id is refused,
//! since the brokers' storage is formatted with the first one.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};

use super::ReconcileError;
use crate::build::objects::{meta, FIELD_MANAGER};
use crate::validate::ValidatedCluster;

/// The key of the id in the record.
pub const KEY: &str = "clusterId";

/// The record's name for cluster `name`.
pub fn record_name(name: &str) -> String {
    format!("{name}-cluster-id")
}

/// A new id: 16 random bytes in unpadded base64url, as `kafka-storage random-uuid` prints,
/// and re-rolled as Kafka's `Uuid.randomUuid` is when it starts with '-' (a command line
/// would take it for a flag).
pub fn generate() -> String {
    loop {
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(uuid::Uuid::new_v4().as_bytes());
        if !id.starts_with('-') {
            return id;
        }
    }
}

/// Which id a cluster has, and whether the record must be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The id.
    pub id: String,
    /// Whether no record holds it yet.
    pub record: bool,
}

/// Chooses the id from the spec, the record and the status (in that order of authority once a
/// record exists: the record, since storage was formatted with it). `fresh` is used when none
/// has one. Fails with a message when the spec contradicts the record.
pub fn choose(
    spec: Option<&str>,
    record: Option<&str>,
    status: Option<&str>,
    fresh: impl FnOnce() -> String,
) -> Result<Choice, String> {
    match (record, spec) {
        (Some(r), Some(s)) if r != s => Err(format!(
            "spec.clusterId {s} differs from the cluster's id {r}; a cluster's id cannot change \
             (its brokers' storage is formatted with it)"
        )),
        (Some(r), _) => Ok(Choice {
            id: r.to_string(),
            record: false,
        }),
        (None, Some(s)) => Ok(Choice {
            id: s.to_string(),
            record: true,
        }),
        (None, None) => Ok(Choice {
            id: status.map(str::to_string).unwrap_or_else(fresh),
            record: true,
        }),
    }
}

/// Reads the record of cluster `name`.
pub async fn read_record(
    api: &Api<ConfigMap>,
    name: &str,
) -> Result<Option<String>, ReconcileError> {
    Ok(api
        .get_opt(&record_name(name))
        .await?
        .and_then(|cm| cm.data)
        .and_then(|d| d.get(KEY).cloned()))
}

/// Writes the record of `cluster`, owned by it.
pub async fn write_record(
    api: &Api<ConfigMap>,
    cluster: &ValidatedCluster,
) -> Result<(), ReconcileError> {
    let record = ConfigMap {
        metadata: meta(cluster, record_name(&cluster.name)),
        data: Some(BTreeMap::from([(
            KEY.to_string(),
            cluster.cluster_id.clone(),
        )])),
        ..Default::default()
    };
    api.patch(
        &record_name(&cluster.name),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&record),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_have_kafkas_form() {
        let id = generate();
        assert!(crate::validate::is_cluster_id(&id), "{id}");
        assert_ne!(id, generate());
        // One in 64 would start with '-' without the re-roll.
        assert!((0..2000).all(|_| !generate().starts_with('-')));
    }

    #[test]
    fn the_record_wins_and_a_contradicting_spec_is_refused() {
        let fresh = || "new".to_string();
        let pick = |spec, record, status| choose(spec, record, status, fresh);
        assert_eq!(
            pick(None, None, None),
            Ok(Choice {
                id: "new".into(),
                record: true
            })
        );
        assert_eq!(pick(Some("s"), None, Some("t")).unwrap().id, "s");
        assert_eq!(
            pick(None, None, Some("t")).unwrap().id,
            "t",
            "a status without its record (an older operator) is kept"
        );
        assert_eq!(
            pick(None, Some("r"), Some("t")),
            Ok(Choice {
                id: "r".into(),
                record: false
            }),
            "the record wins over the status"
        );
        assert_eq!(pick(Some("r"), Some("r"), None).unwrap().id, "r");
        assert!(pick(Some("s"), Some("r"), None)
            .unwrap_err()
            .contains("cannot change"));
    }
}
