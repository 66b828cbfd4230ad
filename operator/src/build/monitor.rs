//! The Prometheus Operator's ServiceMonitor over the nodes' metrics port. Its CRD is not part
//! of Kubernetes, so the object is plain JSON applied as a dynamic object.

use super::objects::{cluster_selector, meta};
use super::services::SERVICE_LABEL;
use crate::validate::ValidatedCluster;

/// API group/version of ServiceMonitor.
pub const API_VERSION: &str = "monitoring.coreos.com/v1";

/// The label every scraped series of a cluster's nodes gets, naming the KafkaCluster: the
/// chart's alert rules group by it (`charts/gregor/rules/gregor.rules.yaml`).
pub const CLUSTER_LABEL: &str = "gregor_cluster";

/// The ServiceMonitor scraping every node's `/metrics` through the headless Service, each
/// series labelled with the cluster's name.
pub fn service_monitor(cluster: &ValidatedCluster) -> serde_json::Value {
    let mut selector = cluster_selector(cluster);
    selector.insert(SERVICE_LABEL.into(), "nodes".into());
    serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": "ServiceMonitor",
        "metadata": meta(cluster, cluster.name.clone()),
        "spec": {
            "selector": {"matchLabels": selector},
            "endpoints": [{
                "port": "metrics",
                "path": "/metrics",
                "interval": "30s",
                "relabelings": [{
                    "action": "replace",
                    "targetLabel": CLUSTER_LABEL,
                    "replacement": cluster.name,
                }],
            }],
        },
    })
}
