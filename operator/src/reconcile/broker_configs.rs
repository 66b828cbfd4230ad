//! Dynamic broker configs: the keys of `spec.config` that brokers apply at runtime
//! ([`gregor_client::broker_configs::DYNAMIC_BROKER_KEYS`], e.g. `log.retention.ms`, `min.insync.replicas`)
//! are not written into `server.properties`. The operator sets them as cluster-wide dynamic
//! broker configs (IncrementalAlterConfigs on the broker resource `""`, as `kafka-configs
//! --entity-type brokers --entity-default` does), so editing one changes the running brokers
//! without a restart, and removing one brings back Kafka's default at once. The brokers keep
//! them in the metadata log across restarts.
//!
//! The operator owns the cluster-wide defaults: one set by another tool is deleted unless the
//! spec names it. Per-broker dynamic configs are left alone.

use std::collections::BTreeMap;

use gregor_client::admin::{AdminError, ConfigChange};

use crate::validate::ValidatedCluster;

/// Whether the operator applies `key` dynamically rather than through `server.properties`.
pub fn is_dynamic(key: &str) -> bool {
    gregor_client::broker_configs::is_dynamic_broker_key(key)
}

/// The cluster-wide dynamic configs the spec asks for.
pub fn desired(cluster: &ValidatedCluster) -> BTreeMap<String, String> {
    cluster
        .config
        .iter()
        .filter(|(k, _)| is_dynamic(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// What turns `current` into `desired`: sets for new or different values, deletes for keys
/// the spec no longer names.
pub fn changes(
    desired: &BTreeMap<String, String>,
    current: &BTreeMap<String, String>,
) -> Vec<ConfigChange> {
    let mut out: Vec<ConfigChange> = desired
        .iter()
        .filter(|(k, v)| current.get(*k) != Some(*v))
        .map(|(k, v)| ConfigChange::Set(k.clone(), v.clone()))
        .collect();
    out.extend(
        current
            .keys()
            .filter(|k| !desired.contains_key(*k))
            .map(|k| ConfigChange::Delete(k.clone())),
    );
    out
}

/// Brings the brokers' cluster-wide dynamic configs in line with the spec; returns the
/// changes made (none when they already were).
pub async fn sync(
    access: &super::access::Access,
    cluster: &ValidatedCluster,
) -> Result<Vec<ConfigChange>, AdminError> {
    let mut admin = access.admin().await?;
    let current = admin.broker_defaults().await?;
    let changes = changes(&desired(cluster), &current);
    if !changes.is_empty() {
        admin.alter_broker_defaults(&changes).await?;
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn only_runtime_keys_are_dynamic() {
        for key in [
            "log.retention.ms",
            "min.insync.replicas",
            "log.segment.bytes",
        ] {
            assert!(is_dynamic(key), "{key}");
        }
        for key in ["num.partitions", "listeners", "default.replication.factor"] {
            assert!(!is_dynamic(key), "{key}");
        }
    }

    #[test]
    fn changes_set_what_differs_and_delete_what_the_spec_dropped() {
        let desired = map(&[("log.retention.ms", "2000"), ("min.insync.replicas", "2")]);
        let current = map(&[
            ("log.retention.ms", "1000"),
            ("log.segment.bytes", "1048576"),
        ]);
        assert_eq!(
            changes(&desired, &current),
            vec![
                ConfigChange::Set("log.retention.ms".into(), "2000".into()),
                ConfigChange::Set("min.insync.replicas".into(), "2".into()),
                ConfigChange::Delete("log.segment.bytes".into()),
            ]
        );
        assert!(changes(&desired, &desired).is_empty(), "in line: nothing");
    }
}
