//! The cluster's Services: a headless one giving every pod a stable DNS name (published before
//! the pods are ready, since a quorum must form before any node is ready), and the bootstrap
//! Service clients connect to first.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::objects::{cluster_selector, meta, pool_selector};
use crate::crd::cluster::ExternalType;
use crate::validate::{ValidatedCluster, CONTROLLER_PORT};

/// Label naming which of the cluster's Services an object is (`nodes`, `bootstrap`,
/// `external`), so a ServiceMonitor can pick the headless one.
pub const SERVICE_LABEL: &str = "gregor.dev/service";

fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

/// The headless Service over every node.
pub fn headless(cluster: &ValidatedCluster) -> Service {
    let mut metadata = meta(cluster, cluster.headless_service());
    if let Some(labels) = metadata.labels.as_mut() {
        labels.insert(SERVICE_LABEL.into(), "nodes".into());
    }
    Service {
        metadata,
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(cluster_selector(cluster)),
            ports: Some(vec![
                port("kafka", cluster.port),
                port("controller", CONTROLLER_PORT),
                port("metrics", cluster.metrics.port),
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The bootstrap Service over the ready brokers.
pub fn bootstrap(cluster: &ValidatedCluster) -> Service {
    Service {
        metadata: meta(cluster, cluster.bootstrap_service()),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(pool_selector(cluster, cluster.broker_pool())),
            ports: Some(if cluster.secured {
                // The operator reaches a secured cluster here, over mutual TLS.
                vec![
                    port("kafka", cluster.port),
                    port("replication", crate::validate::REPLICATION_PORT),
                ]
            } else {
                vec![port("kafka", cluster.port)]
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Where a broker is reached through its applied external Service, once Kubernetes has said:
/// a NodePort Service at its node's address (`${env:HOST_IP}`, resolved by the broker) and
/// node port; a LoadBalancer at its first ingress address and the listener's port.
pub fn external_address(kind: ExternalType, port: i32, service: &Service) -> Option<String> {
    match kind {
        ExternalType::NodePort => {
            let node_port = service
                .spec
                .as_ref()?
                .ports
                .as_ref()?
                .iter()
                .find_map(|p| p.node_port)?;
            Some(format!(
                "${{env:{}}}:{node_port}",
                super::properties::HOST_IP_ENV
            ))
        }
        ExternalType::LoadBalancer => {
            let ingress = service
                .status
                .as_ref()?
                .load_balancer
                .as_ref()?
                .ingress
                .as_ref()?
                .first()?;
            let host = ingress.hostname.clone().or_else(|| ingress.ip.clone())?;
            Some(format!("{host}:{port}"))
        }
    }
}

/// One Service per broker for the external listener (NodePort or LoadBalancer), selecting its
/// pod by name; none without an external listener.
pub fn external(cluster: &ValidatedCluster) -> Vec<Service> {
    let Some(e) = &cluster.external else {
        return Vec::new();
    };
    let pool = cluster.broker_pool();
    pool.pods()
        .map(|(ordinal, pod)| {
            let mut ports = port("external", e.port);
            ports.node_port = e
                .node_ports
                .get(&pool.node_id(ordinal).to_string())
                .copied();
            let mut metadata = meta(cluster, format!("{pod}-external"));
            if let Some(labels) = metadata.labels.as_mut() {
                labels.insert(SERVICE_LABEL.into(), "external".into());
            }
            Service {
                metadata,
                spec: Some(ServiceSpec {
                    type_: Some(
                        match e.kind {
                            ExternalType::NodePort => "NodePort",
                            ExternalType::LoadBalancer => "LoadBalancer",
                        }
                        .into(),
                    ),
                    selector: Some(
                        [(
                            "statefulset.kubernetes.io/pod-name".to_string(),
                            pod.clone(),
                        )]
                        .into(),
                    ),
                    ports: Some(vec![ports]),
                    ..Default::default()
                }),
                ..Default::default()
            }
        })
        .collect()
}
