//! Each node's `server.properties`, in Kafka's own vocabulary, and the ConfigMap holding them
//! (one key per pod, `<pod>.properties`; a pod reads its own through `$(POD_NAME)`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;

use super::objects::meta;
use super::rack;
use crate::validate::{Pool, ValidatedCluster, CONTROLLER_PORT};

/// Where the volume is mounted and the log dir lives.
pub const DATA_DIR: &str = "/var/lib/gregor/data";
/// Where the ConfigMap is mounted.
pub const CONFIG_DIR: &str = "/etc/gregor";

/// Kafka's list of config providers; the operator adds `env` when a broker advertises its
/// node's address (`${env:HOST_IP}`), and `dir` when it reads its rack from a file
/// (`${dir:/var/lib/gregor-rack:rack}`).
const PROVIDERS: &str = "config.providers";
/// A config provider the operator configures: its name, the key naming its class, the class.
type Provider = (&'static str, &'static str, &'static str);
const ENV_PROVIDER: Provider = (
    "env",
    "config.providers.env.class",
    "org.apache.kafka.common.config.provider.EnvVarConfigProvider",
);
const DIR_PROVIDER: Provider = (
    "dir",
    "config.providers.dir.class",
    "org.apache.kafka.common.config.provider.DirectoryConfigProvider",
);
/// The environment variable holding the pod's node address (downward API `status.hostIP`).
pub const HOST_IP_ENV: &str = "HOST_IP";

/// The ConfigMap key of `pod`'s properties.
pub fn key(pod: &str) -> String {
    format!("{pod}.properties")
}

/// The `server.properties` of the pod with `ordinal` in `pool`.
pub fn properties(cluster: &ValidatedCluster, pool: &Pool, ordinal: i32) -> String {
    let pod = format!("{}-{ordinal}", pool.name);
    let host = cluster.pod_host(&pod);
    let mut listeners = Vec::new();
    let mut advertised = Vec::new();
    let mut protocols = vec!["CONTROLLER:PLAINTEXT".to_string()];
    if pool.role.is_broker() {
        listeners.push(format!("CLIENT://:{}", cluster.port));
        advertised.push(format!("CLIENT://{host}:{}", cluster.port));
        protocols.push("CLIENT:PLAINTEXT".into());
        if let Some(e) = &cluster.external {
            listeners.push(format!("EXTERNAL://:{}", e.port));
            let id = pool.node_id(ordinal);
            let address = e
                .advertised
                .get(&id.to_string())
                .or_else(|| cluster.external_addresses.get(&id));
            // Until Kubernetes gives the Service an address, the listener is not advertised.
            if let Some(addr) = address {
                advertised.push(format!("EXTERNAL://{addr}"));
            }
            protocols.push("EXTERNAL:PLAINTEXT".into());
        }
    }
    if pool.role.is_controller() {
        listeners.push(format!("CONTROLLER://:{CONTROLLER_PORT}"));
    }
    let mut owned: BTreeMap<&str, String> = BTreeMap::from([
        ("node.id", pool.node_id(ordinal).to_string()),
        ("process.roles", pool.role.process_roles().to_string()),
        ("controller.quorum.voters", cluster.quorum_voters()),
        ("controller.listener.names", "CONTROLLER".to_string()),
        ("listeners", listeners.join(",")),
        ("listener.security.protocol.map", protocols.join(",")),
        ("log.dirs", DATA_DIR.to_string()),
        (
            "metrics.listener",
            format!("0.0.0.0:{}", cluster.metrics.port),
        ),
    ]);
    // Config providers the operator's own values need, resolved when the node loads them.
    let mut providers = Vec::new();
    if pool.role.is_broker() {
        let advertised = advertised.join(",");
        if advertised.contains("${env:") {
            providers.push(ENV_PROVIDER);
        }
        owned.insert("advertised.listeners", advertised);
        owned.insert("inter.broker.listener.name", "CLIENT".to_string());
    }
    if rack::applies(cluster, pool) {
        owned.insert("broker.rack", rack::broker_rack());
        providers.push(DIR_PROVIDER);
    }
    if !providers.is_empty() {
        // The user's providers stay, listed first, with the operator's added once.
        let mut names: Vec<&str> = cluster
            .config
            .get(PROVIDERS)
            .map(|p| {
                p.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        for (name, class_key, class) in providers {
            if !names.contains(&name) {
                names.push(name);
            }
            owned.insert(class_key, class.to_string());
        }
        owned.insert(PROVIDERS, names.join(","));
    }
    let mut out = format!(
        "# {pod} of KafkaCluster {}/{}, written by gregor-operator: edit the KafkaCluster's \
         spec.config instead.\n# Owned by the operator:\n",
        cluster.namespace, cluster.name
    );
    for (k, v) in &owned {
        out.push_str(&format!("{k}={v}\n"));
    }
    // A key written above (config.providers, merged) is not written twice; keys the brokers
    // take at runtime are set as dynamic configs instead, so changing them restarts nothing.
    let (dynamic, user): (Vec<_>, Vec<_>) = cluster
        .config
        .iter()
        .filter(|(k, _)| !owned.contains_key(k.as_str()))
        .partition(|(k, _)| crate::reconcile::broker_configs::is_dynamic(k));
    if !user.is_empty() {
        out.push_str("# From spec.config:\n");
        for (k, v) in user {
            out.push_str(&format!("{k}={v}\n"));
        }
    }
    if pool.role.is_broker() && !dynamic.is_empty() {
        let keys: Vec<&str> = dynamic.iter().map(|(k, _)| k.as_str()).collect();
        out.push_str(&format!(
            "# Set by the operator as cluster-wide dynamic broker configs, without a restart: {}\n",
            keys.join(", ")
        ));
    }
    out
}

/// The ConfigMap with every pod's properties.
pub fn config_map(cluster: &ValidatedCluster) -> ConfigMap {
    let data = cluster
        .pools
        .iter()
        .flat_map(|pool| pool.pods().map(move |(i, pod)| (pool, i, pod)))
        .map(|(pool, i, pod)| (key(&pod), properties(cluster, pool, i)))
        .collect();
    ConfigMap {
        metadata: meta(cluster, cluster.config_map()),
        data: Some(data),
        ..Default::default()
    }
}
