//! Each node's `server.properties`, in Kafka's own vocabulary, and the ConfigMap holding them
//! (one key per pod, `<pod>.properties`; a pod reads its own through `$(POD_NAME)`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;

use super::objects::meta;
use super::rack;
use crate::crd::cluster::{AuthenticationType, AuthorizationType, ListenerAuthentication};
use crate::reconcile::certificates;
use crate::validate::{Pool, ValidatedCluster, CONTROLLER_PORT, REPLICATION_PORT};

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

/// Where a secured node's certificates (Secret `<cluster>-node-certs`) are mounted.
pub const NODE_CERTS_DIR: &str = "/etc/gregor-tls/node";
/// Where the cluster CA's certificate (`<cluster>-cluster-ca-cert`) is mounted: the trust of
/// the controller and replication listeners, and of each node towards its peers.
pub const CLUSTER_CA_DIR: &str = "/etc/gregor-tls/cluster-ca";
/// Where the clients CA's certificate (`<cluster>-clients-ca-cert`) is mounted: the trust of
/// listeners whose clients authenticate with certificates.
pub const CLIENTS_CA_DIR: &str = "/etc/gregor-tls/clients-ca";
/// The class of Kafka's StandardAuthorizer, which Gregor's authorizer answers to.
const STANDARD_AUTHORIZER: &str = "org.apache.kafka.metadata.authorizer.StandardAuthorizer";

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
    let secured = cluster.secured;
    let mut protocols = vec![format!(
        "CONTROLLER:{}",
        if secured { "SSL" } else { "PLAINTEXT" }
    )];
    if pool.role.is_broker() {
        listeners.push(format!("CLIENT://:{}", cluster.port));
        advertised.push(format!("CLIENT://{host}:{}", cluster.port));
        protocols.push(format!(
            "CLIENT:{}",
            protocol(cluster.tls, cluster.authentication.as_ref())
        ));
        if secured {
            listeners.push(format!("REPLICATION://:{REPLICATION_PORT}"));
            advertised.push(format!("REPLICATION://{host}:{REPLICATION_PORT}"));
            protocols.push("REPLICATION:SSL".into());
        }
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
            protocols.push(format!(
                "EXTERNAL:{}",
                protocol(e.tls, e.authentication.as_ref())
            ));
        }
    }
    if pool.role.is_controller() {
        listeners.push(format!("CONTROLLER://:{CONTROLLER_PORT}"));
    }
    let security_keys = if secured {
        security(cluster, pool, &pod)
    } else {
        BTreeMap::new()
    };
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
        let inter_broker = if secured { "REPLICATION" } else { "CLIENT" };
        owned.insert("inter.broker.listener.name", inter_broker.to_string());
    }
    owned.extend(security_keys.iter().map(|(k, v)| (k.as_str(), v.clone())));
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

/// Kafka's security protocol of a listener with `tls` and `authentication`.
fn protocol(tls: bool, authentication: Option<&ListenerAuthentication>) -> &'static str {
    match (tls, authentication.map(|a| a.kind)) {
        (true, Some(AuthenticationType::ScramSha512 | AuthenticationType::OAuth)) => "SASL_SSL",
        (false, Some(AuthenticationType::ScramSha512 | AuthenticationType::OAuth)) => {
            "SASL_PLAINTEXT"
        }
        (true, _) => "SSL",
        (false, _) => "PLAINTEXT",
    }
}

/// The security keys of a secured cluster's node `pod`: its certificate on every TLS
/// listener and towards its peers, the cluster CA trusted (and required of clients) on the
/// controller and replication listeners, each client listener's authentication, and the
/// authorizer with the nodes and the operator as super users.
fn security(cluster: &ValidatedCluster, pool: &Pool, pod: &str) -> BTreeMap<String, String> {
    let mut keys: BTreeMap<String, String> = [
        ("ssl.keystore.type", "PEM".to_string()),
        (
            "ssl.keystore.location",
            format!("{NODE_CERTS_DIR}/{pod}.pem"),
        ),
        ("ssl.truststore.type", "PEM".to_string()),
        (
            "ssl.truststore.location",
            format!("{CLUSTER_CA_DIR}/ca.crt"),
        ),
        (
            "listener.name.controller.ssl.client.auth",
            "required".to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if pool.role.is_broker() {
        keys.insert(
            "listener.name.replication.ssl.client.auth".into(),
            "required".into(),
        );
        let mut listeners = vec![("client", cluster.authentication.as_ref())];
        if let Some(e) = &cluster.external {
            listeners.push(("external", e.authentication.as_ref()));
        }
        for (name, authentication) in listeners {
            listener_authentication(&mut keys, name, authentication);
        }
    }
    if let Some(authorization) = &cluster.authorization {
        let AuthorizationType::Simple = authorization.kind;
        let super_users = &authorization.super_users;
        keys.insert(
            "authorizer.class.name".into(),
            STANDARD_AUTHORIZER.to_string(),
        );
        let mut supers = vec![
            certificates::node_principal(&cluster.name),
            certificates::operator_principal(&cluster.name),
        ];
        supers.extend(super_users.iter().map(|u| {
            let u = u.trim();
            if u.contains(':') {
                u.to_string()
            } else {
                format!("User:{u}")
            }
        }));
        keys.insert("super.users".into(), supers.join(";"));
    }
    keys
}

/// The keys of client listener `name` (lower case) for `authentication`.
fn listener_authentication(
    keys: &mut BTreeMap<String, String>,
    name: &str,
    authentication: Option<&ListenerAuthentication>,
) {
    let mut set = |suffix: &str, value: String| {
        keys.insert(format!("listener.name.{name}.{suffix}"), value);
    };
    let Some(authentication) = authentication else {
        return;
    };
    match authentication.kind {
        AuthenticationType::Tls => {
            set("ssl.client.auth", "required".into());
            set("ssl.truststore.type", "PEM".into());
            set(
                "ssl.truststore.location",
                format!("{CLIENTS_CA_DIR}/ca.crt"),
            );
        }
        AuthenticationType::ScramSha512 => {
            set("sasl.enabled.mechanisms", "SCRAM-SHA-512".into());
            set(
                "scram-sha-512.sasl.jaas.config",
                "org.apache.kafka.common.security.scram.ScramLoginModule required;".into(),
            );
        }
        AuthenticationType::OAuth => {
            set("sasl.enabled.mechanisms", "OAUTHBEARER".into());
            set(
                "oauthbearer.sasl.jaas.config",
                "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;"
                    .into(),
            );
            set(
                "oauthbearer.sasl.server.callback.handler.class",
                "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler"
                    .into(),
            );
            let settings = [
                ("jwks.endpoint.url", &authentication.jwks_uri),
                ("expected.issuer", &authentication.issuer),
                ("expected.audience", &authentication.audience),
                ("sub.claim.name", &authentication.user_name_claim),
            ];
            for (key, value) in settings {
                if let Some(value) = value {
                    set(
                        &format!("oauthbearer.sasl.oauthbearer.{key}"),
                        value.clone(),
                    );
                }
            }
        }
    }
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
