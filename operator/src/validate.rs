//! Checks a `KafkaCluster` spec without talking to the API server and turns it into the
//! [`ValidatedCluster`] the build functions take. Every refusal names what is wrong, so the
//! status condition tells the user what to edit.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::crd::cluster::{
    AuthenticationType, Authorization, CertificateAuthority, ExternalListener, ExternalType,
    ListenerAuthentication, Metrics, PartitionsWithoutSpare, PodTemplate, Rack, Storage,
};
use crate::crd::KafkaCluster;

/// Config keys the operator sets itself; a spec that sets them is refused.
pub const OWNED_KEYS: &[&str] = &[
    "node.id",
    "broker.id",
    "process.roles",
    "controller.quorum.voters",
    "controller.quorum.bootstrap.servers",
    "controller.listener.names",
    "listeners",
    "advertised.listeners",
    "listener.security.protocol.map",
    "inter.broker.listener.name",
    "log.dirs",
    "log.dir",
    "metadata.log.dir",
    "broker.rack",
    "metrics.listener",
    "authorizer.class.name",
    "super.users",
];

/// Port of the controller listener (Raft and broker heartbeats) on every node.
pub const CONTROLLER_PORT: i32 = 9093;

/// Port of the replication listener of a secured cluster's brokers: replication between
/// brokers and the operator's admin requests, over mutual TLS with the cluster CA.
pub const REPLICATION_PORT: i32 = 9091;

/// Node ids of dedicated controllers start here, so they never collide with broker ids
/// (brokers take their pod ordinal).
pub const CONTROLLER_ID_BASE: i32 = 1000;

/// What is wrong with a spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The resource has no name or namespace.
    #[error("the KafkaCluster has no {0}")]
    Metadata(&'static str),
    /// A count is out of range.
    #[error("{field} must be at least 1 (got {value})")]
    Count {
        /// The field.
        field: &'static str,
        /// Its value.
        value: i32,
    },
    /// Config keys the operator owns.
    #[error("spec.config sets keys the operator manages: {}", .0.join(", "))]
    OwnedKeys(Vec<String>),
    /// A config key or value the broker would reject.
    #[error("spec.config: {0}")]
    Config(String),
    /// The storage size is not a quantity.
    #[error("{field} {value:?} is not a Kubernetes quantity such as 10Gi")]
    Quantity {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// The cluster id is malformed.
    #[error("spec.clusterId {0:?} is not a cluster id: expected 22 characters of base64url (16 bytes), as `gregor storage random-uuid` prints")]
    ClusterId(String),
    /// Two listeners on one port, or a port out of range.
    #[error("{0}")]
    Ports(String),
    /// A listener's security settings that do not fit together.
    #[error("{0}")]
    Security(String),
    /// A CA whose renewal window does not fit in its validity.
    #[error("{field}.renewalDays ({renewal}) must be at least 1 and less than {field}.validityDays ({validity})")]
    CaDays {
        /// `spec.clusterCa` or `spec.clientsCa`.
        field: &'static str,
        /// Its validityDays.
        validity: i32,
        /// Its renewalDays.
        renewal: i32,
    },
    /// Rack awareness without a valid node label key.
    #[error("spec.rack.topologyKey {value:?} is not a node label key: {reason}")]
    Rack {
        /// The key.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// One StatefulSet's worth of nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// `broker` (combined or broker-only nodes) or `controller`.
    pub role: PoolRole,
    /// Number of pods.
    pub replicas: i32,
    /// The StatefulSet's (and its pods' name prefix).
    pub name: String,
}

/// What a pool's nodes do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PoolRole {
    /// `process.roles=broker,controller`.
    Combined,
    /// `process.roles=broker`.
    Broker,
    /// `process.roles=controller`.
    Controller,
}

impl PoolRole {
    /// The `process.roles` value.
    pub fn process_roles(self) -> &'static str {
        match self {
            PoolRole::Combined => "broker,controller",
            PoolRole::Broker => "broker",
            PoolRole::Controller => "controller",
        }
    }

    /// The `gregor.dev/pool` label value.
    pub fn label(self) -> &'static str {
        match self {
            PoolRole::Combined | PoolRole::Broker => "broker",
            PoolRole::Controller => "controller",
        }
    }

    /// Whether these nodes serve clients.
    pub fn is_broker(self) -> bool {
        self != PoolRole::Controller
    }

    /// Whether these nodes vote in the controller quorum.
    pub fn is_controller(self) -> bool {
        self != PoolRole::Broker
    }
}

impl Pool {
    /// The node id of the pod with this ordinal.
    pub fn node_id(&self, ordinal: i32) -> i32 {
        match self.role {
            PoolRole::Controller => CONTROLLER_ID_BASE + ordinal,
            _ => ordinal,
        }
    }

    /// Pod names, in ordinal order.
    pub fn pods(&self) -> impl Iterator<Item = (i32, String)> + '_ {
        (0..self.replicas).map(|i| (i, format!("{}-{i}", self.name)))
    }
}

/// A spec that passed validation, with defaults filled in: what the build functions take.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedCluster {
    /// Resource name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// UID, for owner references (empty in tests that do not need one).
    pub uid: String,
    /// Container image of the nodes.
    pub image: String,
    /// The broker pool first, then the controller pool if any.
    pub pools: Vec<Pool>,
    /// The user's config keys.
    pub config: BTreeMap<String, String>,
    /// Volume of the broker pool.
    pub storage: Storage,
    /// Volume of the controller pool.
    pub controller_storage: Storage,
    /// Broker container resources.
    pub resources: Option<ResourceRequirements>,
    /// Controller container resources.
    pub controller_resources: Option<ResourceRequirements>,
    /// Rack awareness.
    pub rack: Option<Rack>,
    /// Internal listener port.
    pub port: i32,
    /// External listener.
    pub external: Option<ExternalListener>,
    /// Where each broker is reached through its external Service, by node id, as far as
    /// Kubernetes has said (a NodePort Service's port, a LoadBalancer's ingress): filled by the
    /// reconcile from the applied Services, empty before. Addresses in the spec take precedence.
    pub external_addresses: BTreeMap<i32, String>,
    /// Metrics endpoint.
    pub metrics: Metrics,
    /// Pod overrides.
    pub template: PodTemplate,
    /// How rolling restarts treat partitions without a replica to spare.
    pub partitions_without_spare: PartitionsWithoutSpare,
    /// The id every node's storage is formatted with.
    pub cluster_id: String,
    /// The cluster CA's settings.
    pub cluster_ca: CertificateAuthority,
    /// The clients CA's settings.
    pub clients_ca: CertificateAuthority,
    /// TLS on the in-cluster client listener.
    pub tls: bool,
    /// How the in-cluster client listener's clients authenticate.
    pub authentication: Option<ListenerAuthentication>,
    /// Authorization of client requests.
    pub authorization: Option<Authorization>,
    /// Whether anything is secured: the nodes then talk to each other, and the operator to
    /// them, over mutual TLS on the replication and controller listeners.
    pub secured: bool,
}

impl ValidatedCluster {
    /// The headless Service giving every pod a stable DNS name.
    pub fn headless_service(&self) -> String {
        format!("{}-nodes", self.name)
    }

    /// The Service clients bootstrap from.
    pub fn bootstrap_service(&self) -> String {
        bootstrap_service(&self.name)
    }

    /// The ConfigMap holding each pod's `server.properties`.
    pub fn config_map(&self) -> String {
        format!("{}-config", self.name)
    }

    /// `host:port` clients inside the Kubernetes cluster bootstrap from.
    pub fn bootstrap_servers(&self) -> String {
        format!(
            "{}.{}.svc:{}",
            self.bootstrap_service(),
            self.namespace,
            self.port
        )
    }

    /// Where the operator reaches the brokers: the replication listener through the bootstrap
    /// Service for a secured cluster, else the client listener.
    pub fn operator_bootstrap(&self) -> String {
        if self.secured {
            replication_bootstrap(&self.name, &self.namespace)
        } else {
            self.bootstrap_servers()
        }
    }

    /// A pod's stable DNS name.
    pub fn pod_host(&self, pod: &str) -> String {
        format!("{pod}.{}.{}.svc", self.headless_service(), self.namespace)
    }

    /// The pool whose nodes vote in the quorum.
    pub fn controller_pool(&self) -> &Pool {
        self.pools
            .iter()
            .find(|p| p.role.is_controller())
            .expect("validation always leaves a controller pool")
    }

    /// The pool whose nodes serve clients.
    pub fn broker_pool(&self) -> &Pool {
        self.pools
            .iter()
            .find(|p| p.role.is_broker())
            .expect("validation always leaves a broker pool")
    }

    /// The pool whose nodes serve clients, to change its size.
    pub fn broker_pool_mut(&mut self) -> &mut Pool {
        self.pools
            .iter_mut()
            .find(|p| p.role.is_broker())
            .expect("validation always leaves a broker pool")
    }

    /// `controller.quorum.voters`: every controller pod at its stable DNS name.
    pub fn quorum_voters(&self) -> String {
        let pool = self.controller_pool();
        pool.pods()
            .map(|(i, pod)| {
                format!(
                    "{}@{}:{CONTROLLER_PORT}",
                    pool.node_id(i),
                    self.pod_host(&pod)
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Checks `cluster` and fills in defaults. `cluster_id` is the id already chosen for this
/// cluster (from its status or its owned record), used when the spec gives none; `default_image`
/// is the image the nodes run when the spec names none: the one the cluster already runs
/// (`status.image`) when there is one, the operator's own for a new cluster.
pub fn validate(
    cluster: &KafkaCluster,
    cluster_id: &str,
    default_image: &str,
) -> Result<ValidatedCluster, SpecError> {
    let meta = &cluster.metadata;
    let name = meta.name.clone().ok_or(SpecError::Metadata("name"))?;
    let namespace = meta
        .namespace
        .clone()
        .ok_or(SpecError::Metadata("namespace"))?;
    let spec = &cluster.spec;
    if spec.replicas < 1 {
        return Err(SpecError::Count {
            field: "spec.replicas",
            value: spec.replicas,
        });
    }
    let mut owned: Vec<String> = spec
        .config
        .keys()
        .filter(|k| OWNED_KEYS.contains(&k.as_str()))
        .cloned()
        .collect();
    owned.sort();
    if !owned.is_empty() {
        return Err(SpecError::OwnedKeys(owned));
    }
    for (k, v) in &spec.config {
        if k.trim().is_empty() || k.contains(['=', ':', '\n']) || k.contains(char::is_whitespace) {
            return Err(SpecError::Config(format!("{k:?} is not a config key")));
        }
        if v.contains('\n') {
            return Err(SpecError::Config(format!(
                "the value of {k} spans lines; a properties value must be one line"
            )));
        }
    }
    check_quantity("spec.storage.size", &spec.storage.size)?;
    let mut pools = Vec::new();
    let controller_storage = match &spec.controllers {
        Some(c) => {
            if c.replicas < 1 {
                return Err(SpecError::Count {
                    field: "spec.controllers.replicas",
                    value: c.replicas,
                });
            }
            pools.push(Pool {
                role: PoolRole::Broker,
                replicas: spec.replicas,
                name: format!("{name}-broker"),
            });
            pools.push(Pool {
                role: PoolRole::Controller,
                replicas: c.replicas,
                name: format!("{name}-controller"),
            });
            let s = c.storage.clone().unwrap_or_else(|| spec.storage.clone());
            check_quantity("spec.controllers.storage.size", &s.size)?;
            s
        }
        None => {
            pools.push(Pool {
                role: PoolRole::Combined,
                replicas: spec.replicas,
                name: name.clone(),
            });
            spec.storage.clone()
        }
    };
    let cluster_id = spec.cluster_id.clone().unwrap_or(cluster_id.to_string());
    if !is_cluster_id(&cluster_id) {
        return Err(SpecError::ClusterId(cluster_id));
    }
    if let Some(rack) = &spec.rack {
        check_label_key(&rack.topology_key).map_err(|reason| SpecError::Rack {
            value: rack.topology_key.clone(),
            reason,
        })?;
    }
    let mut ports = vec![
        ("spec.listeners.port", spec.listeners.port),
        ("the controller listener", CONTROLLER_PORT),
        ("spec.metrics.port", spec.metrics.port),
    ];
    if let Some(e) = &spec.listeners.external {
        ports.push(("spec.listeners.external.port", e.port));
        check_node_ports(e)?;
    }
    check_security(spec)?;
    if secured(spec) {
        ports.push(("the replication listener", REPLICATION_PORT));
    }
    check_ports(&ports)?;
    check_ca("spec.clusterCa", &spec.cluster_ca)?;
    check_ca("spec.clientsCa", &spec.clients_ca)?;
    Ok(ValidatedCluster {
        name,
        namespace,
        uid: meta.uid.clone().unwrap_or_default(),
        image: spec
            .image
            .clone()
            .unwrap_or_else(|| default_image.to_string()),
        pools,
        config: spec.config.clone(),
        storage: spec.storage.clone(),
        controller_storage,
        resources: spec.resources.clone(),
        controller_resources: spec
            .controllers
            .as_ref()
            .and_then(|c| c.resources.clone())
            .or_else(|| spec.resources.clone()),
        rack: spec.rack.clone(),
        port: spec.listeners.port,
        external: spec.listeners.external.clone(),
        external_addresses: BTreeMap::new(),
        metrics: spec.metrics.clone(),
        template: spec.template.clone().unwrap_or_default(),
        partitions_without_spare: spec.rolling_update.partitions_without_spare,
        cluster_id,
        cluster_ca: spec.cluster_ca.clone(),
        clients_ca: spec.clients_ca.clone(),
        tls: spec.listeners.tls,
        authentication: spec.listeners.authentication.clone(),
        authorization: spec.authorization.clone(),
        secured: secured(spec),
    })
}

/// The bootstrap Service of KafkaCluster `cluster`.
pub fn bootstrap_service(cluster: &str) -> String {
    format!("{cluster}-bootstrap")
}

/// Where the operator reaches the brokers of secured KafkaCluster `namespace/cluster`: their
/// replication listener, through the bootstrap Service.
pub fn replication_bootstrap(cluster: &str, namespace: &str) -> String {
    format!(
        "{}.{namespace}.svc:{REPLICATION_PORT}",
        bootstrap_service(cluster)
    )
}

/// Whether a spec secures anything: TLS or authentication on a listener, or authorization
/// (which needs the nodes to prove who they are to each other).
pub fn secured(spec: &crate::crd::KafkaClusterSpec) -> bool {
    let l = &spec.listeners;
    l.tls
        || l.authentication.is_some()
        || l.external
            .as_ref()
            .is_some_and(|e| e.tls || e.authentication.is_some())
        || spec.authorization.is_some()
}

/// TLS client authentication needs TLS; super users are principals.
fn check_security(spec: &crate::crd::KafkaClusterSpec) -> Result<(), SpecError> {
    let l = &spec.listeners;
    let mut listeners = vec![("spec.listeners", l.tls, &l.authentication)];
    if let Some(e) = &l.external {
        listeners.push(("spec.listeners.external", e.tls, &e.authentication));
    }
    for (field, tls, authentication) in listeners {
        let Some(authentication) = authentication else {
            continue;
        };
        if authentication.kind == AuthenticationType::Tls && !tls {
            return Err(SpecError::Security(format!(
                "{field}.authentication type tls (client certificates) needs {field}.tls: true"
            )));
        }
        check_oauth(field, authentication)?;
    }
    if let Some(authorization) = &spec.authorization {
        for user in &authorization.super_users {
            if user.trim().is_empty() || user.contains(';') {
                return Err(SpecError::Security(format!(
                    "spec.authorization.superUsers: {user:?} is not a principal (User:name; \
                     no ';')"
                )));
            }
        }
    }
    Ok(())
}

/// OAuth settings only on `oauth` authentication, which needs a JWKS URL the brokers can
/// read.
fn check_oauth(field: &str, authentication: &ListenerAuthentication) -> Result<(), SpecError> {
    let settings = [
        ("jwksUri", &authentication.jwks_uri),
        ("issuer", &authentication.issuer),
        ("audience", &authentication.audience),
        ("userNameClaim", &authentication.user_name_claim),
    ];
    if authentication.kind != AuthenticationType::OAuth {
        if let Some((name, _)) = settings.iter().find(|(_, v)| v.is_some()) {
            return Err(SpecError::Security(format!(
                "{field}.authentication.{name} applies to type oauth only"
            )));
        }
        return Ok(());
    }
    let Some(uri) = &authentication.jwks_uri else {
        return Err(SpecError::Security(format!(
            "{field}.authentication type oauth needs jwksUri (the identity provider's JWKS URL)"
        )));
    };
    if !["https://", "http://", "file:"]
        .iter()
        .any(|scheme| uri.starts_with(scheme) && uri.len() > scheme.len())
    {
        return Err(SpecError::Security(format!(
            "{field}.authentication.jwksUri: {uri:?} is not an https://, http:// or file: URL"
        )));
    }
    for (name, value) in &settings {
        if let Some(value) = value {
            if value.trim().is_empty() || value.contains(['\n', '\r']) {
                return Err(SpecError::Security(format!(
                    "{field}.authentication.{name}: {value:?} is empty or spans lines"
                )));
            }
        }
    }
    Ok(())
}

/// A CA's renewal window must start after its certificates are issued.
fn check_ca(field: &'static str, ca: &CertificateAuthority) -> Result<(), SpecError> {
    if ca.validity_days < 1 || ca.renewal_days < 1 || ca.renewal_days >= ca.validity_days {
        return Err(SpecError::CaDays {
            field,
            validity: ca.validity_days,
            renewal: ca.renewal_days,
        });
    }
    Ok(())
}

/// Whether `id` is a Kafka cluster id: 22 base64url characters encoding 16 bytes.
pub fn is_cluster_id(id: &str) -> bool {
    id.len() == 22
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        // The 22nd character carries only 2 bits: its low 4 bits must be zero.
        && "AQgw".contains(&id[21..])
}

fn check_quantity(field: &'static str, value: &str) -> Result<(), SpecError> {
    parse_quantity(value)
        .map(|_| ())
        .ok_or(SpecError::Quantity {
            field,
            value: value.to_string(),
        })
}

/// Bytes of a Kubernetes storage quantity (`10Gi`, `500M`, `1e9`); `None` when malformed.
pub fn parse_quantity(value: &str) -> Option<u128> {
    let q = Quantity(value.to_string());
    let s = q.0.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    if number.is_empty() {
        return None;
    }
    let multiplier: u128 = match suffix {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        _ => return None,
    };
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if frac.contains('.') {
        return None;
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut bytes = whole.checked_mul(multiplier)?;
    if !frac.is_empty() {
        let digits = frac.len() as u32;
        let f: u128 = frac.parse().ok()?;
        bytes += f.checked_mul(multiplier)? / 10u128.pow(digits);
    }
    Some(bytes)
}

/// Whether `key` is a Kubernetes label key (`[prefix/]name`, as the API server checks it); why
/// not otherwise.
fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if name.is_empty() {
        return Err("the name part is empty".into());
    }
    if name.len() > 63 {
        return Err("the name part is longer than 63 characters".into());
    }
    let edge = |c: char| c.is_ascii_alphanumeric();
    if !name.starts_with(edge)
        || !name.ends_with(edge)
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(
            "the name part must be alphanumeric characters, '-', '_' or '.', \
                    starting and ending with an alphanumeric character"
                .into(),
        );
    }
    let Some(prefix) = prefix else {
        return Ok(());
    };
    if prefix.is_empty() || prefix.len() > 253 {
        return Err("the prefix must be a DNS subdomain of 1 to 253 characters".into());
    }
    let lower = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    for label in prefix.split('.') {
        if label.is_empty()
            || !label.starts_with(lower)
            || !label.ends_with(lower)
            || !label.chars().all(|c| lower(c) || c == '-')
        {
            return Err(format!(
                "the prefix {prefix:?} is not a DNS subdomain (lowercase alphanumeric \
                 characters, '-' and '.', e.g. example.com)"
            ));
        }
    }
    Ok(())
}

/// `nodePorts` only with a NodePort listener, keyed by node ids, each port a TCP port used
/// once. (Whether it lies in the cluster's node-port range is the API server's to say.)
fn check_node_ports(e: &ExternalListener) -> Result<(), SpecError> {
    if e.node_ports.is_empty() {
        return Ok(());
    }
    if e.kind != ExternalType::NodePort {
        return Err(SpecError::Ports(
            "spec.listeners.external.nodePorts applies only to type NodePort".into(),
        ));
    }
    let mut seen: BTreeMap<i32, &str> = BTreeMap::new();
    for (id, port) in &e.node_ports {
        if id.parse::<u32>().is_err() {
            return Err(SpecError::Ports(format!(
                "spec.listeners.external.nodePorts key {id:?} is not a node id"
            )));
        }
        if !(1..=65535).contains(port) {
            return Err(SpecError::Ports(format!(
                "spec.listeners.external.nodePorts[{id}] {port} is not a TCP port"
            )));
        }
        if let Some(other) = seen.insert(*port, id) {
            return Err(SpecError::Ports(format!(
                "spec.listeners.external.nodePorts[{id}] and [{other}] both use port {port}"
            )));
        }
    }
    Ok(())
}

fn check_ports(ports: &[(&str, i32)]) -> Result<(), SpecError> {
    for (i, (field, port)) in ports.iter().enumerate() {
        if !(1..=65535).contains(port) {
            return Err(SpecError::Ports(format!(
                "{field} {port} is not a TCP port"
            )));
        }
        if let Some((other, _)) = ports[..i].iter().find(|(_, p)| p == port) {
            return Err(SpecError::Ports(format!(
                "{field} and {other} both use port {port}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::cluster::{ControllerPool, KafkaClusterSpec};

    pub const ID: &str = "MkU3OEVBNTcwNTJENDM2Qg";

    fn cluster(spec: KafkaClusterSpec) -> KafkaCluster {
        let mut c = KafkaCluster::new("events", spec);
        c.metadata.namespace = Some("prod".into());
        c
    }

    fn spec(replicas: i32) -> KafkaClusterSpec {
        KafkaClusterSpec {
            replicas,
            ..Default::default()
        }
    }

    #[test]
    fn a_minimal_spec_gets_combined_nodes_and_defaults() {
        let v = validate(&cluster(spec(3)), ID, "gregor:1").unwrap();
        assert_eq!(v.image, "gregor:1");
        assert_eq!(
            v.pools,
            vec![Pool {
                role: PoolRole::Combined,
                replicas: 3,
                name: "events".into()
            }]
        );
        assert_eq!(v.storage.size, "10Gi");
        assert_eq!(v.port, 9092);
        assert_eq!(v.bootstrap_servers(), "events-bootstrap.prod.svc:9092");
        assert_eq!(
            v.quorum_voters(),
            "0@events-0.events-nodes.prod.svc:9093,1@events-1.events-nodes.prod.svc:9093,\
             2@events-2.events-nodes.prod.svc:9093"
        );
    }

    #[test]
    fn a_controller_pool_splits_the_roles_and_numbers_controllers_apart() {
        let mut s = spec(3);
        s.controllers = Some(ControllerPool {
            replicas: 3,
            ..Default::default()
        });
        let v = validate(&cluster(s), ID, "img").unwrap();
        assert_eq!(v.broker_pool().name, "events-broker");
        assert_eq!(v.broker_pool().role.process_roles(), "broker");
        assert_eq!(v.controller_pool().role.process_roles(), "controller");
        assert!(v.quorum_voters().starts_with(
            "1000@events-controller-0.events-nodes.prod.svc:9093,1001@events-controller-1."
        ));
    }

    #[test]
    fn a_ca_renewal_window_must_fit_in_its_validity() {
        let mut s = spec(1);
        s.clients_ca.validity_days = 30;
        let err = validate(&cluster(s.clone()), ID, "img").unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec.clientsCa.renewalDays (30) must be at least 1 and less than \
             spec.clientsCa.validityDays (30)"
        );
        s.clients_ca.renewal_days = 29;
        assert!(validate(&cluster(s.clone()), ID, "img").is_ok());
        s.cluster_ca.renewal_days = 0;
        assert!(matches!(
            validate(&cluster(s), ID, "img"),
            Err(SpecError::CaDays {
                field: "spec.clusterCa",
                ..
            })
        ));
    }

    #[test]
    fn listener_authentication_is_refused_naming_the_field_it_lacks_or_misplaces() {
        use crate::crd::cluster::{AuthenticationType as Kind, ListenerAuthentication as Auth};
        let refusal = |tls: bool, auth: Auth| {
            let mut s = spec(1);
            s.listeners.tls = tls;
            s.listeners.authentication = Some(auth);
            validate(&cluster(s), ID, "img")
                .err()
                .map(|e| e.to_string())
        };
        assert_eq!(
            refusal(false, Auth::of(Kind::Tls)).unwrap(),
            "spec.listeners.authentication type tls (client certificates) needs \
             spec.listeners.tls: true"
        );
        assert_eq!(
            refusal(true, Auth::of(Kind::OAuth)).unwrap(),
            "spec.listeners.authentication type oauth needs jwksUri (the identity \
             provider's JWKS URL)"
        );
        let mut oauth = Auth::of(Kind::OAuth);
        oauth.jwks_uri = Some("ldap://idp".into());
        assert_eq!(
            refusal(true, oauth.clone()).unwrap(),
            "spec.listeners.authentication.jwksUri: \"ldap://idp\" is not an https://, \
             http:// or file: URL"
        );
        oauth.jwks_uri = Some("https://idp.example/jwks".into());
        assert_eq!(refusal(true, oauth.clone()), None);
        oauth.audience = Some(" ".into());
        assert_eq!(
            refusal(true, oauth.clone()).unwrap(),
            "spec.listeners.authentication.audience: \" \" is empty or spans lines"
        );
        let mut scram = Auth::of(Kind::ScramSha512);
        scram.issuer = Some("https://idp.example".into());
        assert_eq!(
            refusal(true, scram).unwrap(),
            "spec.listeners.authentication.issuer applies to type oauth only"
        );
    }

    #[test]
    fn owned_keys_are_refused_by_name() {
        let mut s = spec(1);
        s.config.insert("log.dirs".into(), "/x".into());
        s.config.insert("node.id".into(), "4".into());
        s.config.insert("num.partitions".into(), "6".into());
        let e = validate(&cluster(s), ID, "img").unwrap_err();
        assert_eq!(
            e,
            SpecError::OwnedKeys(vec!["log.dirs".into(), "node.id".into()])
        );
        assert_eq!(
            e.to_string(),
            "spec.config sets keys the operator manages: log.dirs, node.id"
        );
    }

    #[test]
    fn bad_counts_sizes_ids_ports_and_keys_are_refused() {
        let bad = |f: &dyn Fn(&mut KafkaClusterSpec)| {
            let mut s = spec(3);
            f(&mut s);
            validate(&cluster(s), ID, "img").unwrap_err()
        };
        assert!(matches!(bad(&|s| s.replicas = 0), SpecError::Count { .. }));
        assert!(matches!(
            bad(&|s| s.storage.size = "ten gigs".into()),
            SpecError::Quantity { .. }
        ));
        assert!(matches!(
            bad(&|s| s.cluster_id = Some("short".into())),
            SpecError::ClusterId(_)
        ));
        assert_eq!(
            bad(&|s| s.metrics.port = 9092).to_string(),
            "spec.metrics.port and spec.listeners.port both use port 9092"
        );
        assert!(matches!(
            bad(&|s| {
                s.config.insert("a b".into(), "1".into());
            }),
            SpecError::Config(_)
        ));
        assert!(matches!(
            bad(&|s| {
                s.config.insert("k".into(), "1\nnode.id=3".into());
            }),
            SpecError::Config(_)
        ));
    }

    #[test]
    fn a_rack_topology_key_must_be_a_label_key() {
        let rack = |key: &str| {
            let mut s = spec(3);
            s.rack = Some(Rack {
                topology_key: key.into(),
            });
            validate(&cluster(s), ID, "img").map(|v| v.rack.unwrap().topology_key)
        };
        for good in [
            "topology.kubernetes.io/zone",
            "kubernetes.io/hostname",
            "example.com/rack",
            "rack",
            "Rack_1.a-b",
        ] {
            assert_eq!(rack(good).as_deref(), Ok(good));
        }
        assert_eq!(
            rack("").unwrap_err().to_string(),
            "spec.rack.topologyKey \"\" is not a node label key: the name part is empty"
        );
        assert_eq!(
            rack("Example.com/rack").unwrap_err().to_string(),
            "spec.rack.topologyKey \"Example.com/rack\" is not a node label key: the prefix \
             \"Example.com\" is not a DNS subdomain (lowercase alphanumeric characters, '-' and \
             '.', e.g. example.com)"
        );
        for bad in [
            "example.com/",
            "/rack",
            "a/b/c",
            "rack ",
            "-rack",
            "rack']",
            "example..com/rack",
            &"r".repeat(64),
        ] {
            assert!(
                matches!(rack(bad), Err(SpecError::Rack { .. })),
                "{bad:?} is refused"
            );
        }
    }

    #[test]
    fn cluster_ids_are_checked_like_kafka_storage_does() {
        assert!(is_cluster_id(ID));
        assert!(is_cluster_id("q1Sh-9_ISia_zwGINzRvyQ"));
        assert!(!is_cluster_id("q1Sh-9_ISia_zwGINzRvy"), "21 characters");
        assert!(
            !is_cluster_id("q1Sh-9_ISia_zwGINzRvyB"),
            "17th byte bits set"
        );
        assert!(!is_cluster_id("q1Sh-9_ISia_zwGINzRv+Q"), "not base64url");
    }

    #[test]
    fn node_ports_need_a_node_port_listener_node_ids_and_distinct_tcp_ports() {
        use crate::crd::cluster::ExternalListener;
        let with = |kind, node_ports: &[(&str, i32)]| {
            let mut s = spec(3);
            s.listeners.external = Some(ExternalListener {
                kind,
                port: 9094,
                tls: false,
                authentication: None,
                advertised: BTreeMap::new(),
                node_ports: node_ports
                    .iter()
                    .map(|(k, v)| (k.to_string(), *v))
                    .collect(),
            });
            validate(&cluster(s), ID, "gregor:test")
        };
        assert!(with(ExternalType::NodePort, &[("0", 31090), ("1", 31091)]).is_ok());
        for (kind, ports, says) in [
            (
                ExternalType::LoadBalancer,
                &[("0", 31090)][..],
                "only to type NodePort",
            ),
            (ExternalType::NodePort, &[("zero", 31090)], "not a node id"),
            (ExternalType::NodePort, &[("0", 70000)], "not a TCP port"),
            (
                ExternalType::NodePort,
                &[("0", 31090), ("1", 31090)],
                "both use port 31090",
            ),
        ] {
            match with(kind, ports) {
                Err(e @ SpecError::Ports(_)) => assert!(e.to_string().contains(says), "{e}"),
                other => panic!("{ports:?}: expected a port error, got {other:?}"),
            }
        }
    }

    #[test]
    fn quantities_parse_to_bytes() {
        assert_eq!(parse_quantity("10Gi"), Some(10 << 30));
        assert_eq!(parse_quantity("1.5Gi"), Some(3 << 29));
        assert_eq!(parse_quantity("500M"), Some(500_000_000));
        assert_eq!(parse_quantity("1024"), Some(1024));
        assert_eq!(parse_quantity("Gi"), None);
        assert_eq!(parse_quantity("10GB"), None);
    }
}
