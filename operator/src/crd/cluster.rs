//! The `KafkaCluster` custom resource: what a user asks for (spec) and what the operator reports
//! (status).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Condition;

/// A Gregor cluster: broker and controller nodes run as StatefulSets, configured with Kafka's
/// own `server.properties` keys.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "gregor.dev",
    version = "v1alpha1",
    kind = "KafkaCluster",
    namespaced,
    status = "KafkaClusterStatus",
    shortname = "kc",
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".spec.replicas"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.readyReplicas"}"#,
    printcolumn = r#"{"name":"Cluster ID","type":"string","jsonPath":".status.clusterId"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct KafkaClusterSpec {
    /// Container image of the nodes. When absent, the cluster keeps the image it was first
    /// reconciled with (`status.image`: the operator's default image at the time), so
    /// upgrading the operator restarts no broker; set this to move the nodes to another
    /// Gregor version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Number of nodes. Without `controllers` every node is a combined broker and controller
    /// (an odd number keeps a majority through one loss), a voter of the static controller
    /// quorum, so the count cannot change once the cluster exists. With `controllers` these
    /// are broker-only nodes and the count may change: partitions are reassigned onto added
    /// brokers, and departing brokers are drained by reassignment before they are removed.
    #[schemars(range(min = 1))]
    pub replicas: i32,
    /// An optional pool of dedicated controller nodes; brokers then run without the
    /// controller role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controllers: Option<ControllerPool>,
    /// Kafka configuration keys (`server.properties`), e.g. `num.partitions` or
    /// `log.retention.hours`. Keys the operator owns (node.id, listeners, log.dirs, ...) are
    /// refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// Persistent storage of each node's log dir.
    #[serde(default)]
    pub storage: Storage,
    /// CPU and memory of the broker container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Rack awareness: each broker's `broker.rack` is its Kubernetes node's value of a label,
    /// read by an init container as the broker pods' own ServiceAccount (bound to a
    /// ClusterRole that may get nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<Rack>,
    /// Client listeners. With any of them secured (TLS or authentication), the nodes talk to
    /// each other over mutual TLS with certificates from the cluster CA: the controller
    /// listener, and a replication listener (port 9091) for replication and the operator.
    #[serde(default)]
    pub listeners: Listeners,
    /// Authorization of client requests; every request is allowed when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
    /// The Prometheus endpoint of every node.
    #[serde(default)]
    pub metrics: Metrics,
    /// Overrides merged into the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<PodTemplate>,
    /// How rolling restarts treat partitions that cannot lose a replica.
    #[serde(default)]
    pub rolling_update: RollingUpdate,
    /// The cluster id to format storage with (22 characters of base64url, as `gregor storage
    /// random-uuid` prints); generated once when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// The cluster CA: it signs each node's certificate (its listeners, and the TLS between
    /// nodes). Secrets `<cluster>-cluster-ca` (`ca.key`) and `<cluster>-cluster-ca-cert`
    /// (`ca.crt`, `ca.p12`, `ca.password`), in Strimzi's shape.
    #[serde(default)]
    pub cluster_ca: CertificateAuthority,
    /// The clients CA: it signs the certificates of TLS users, which the brokers trust.
    /// Secrets `<cluster>-clients-ca` and `<cluster>-clients-ca-cert`.
    #[serde(default)]
    pub clients_ca: CertificateAuthority,
}

/// A certificate authority the operator keeps (or, with `generateCertificateAuthority:
/// false`, one the user supplies in the same Secrets).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateAuthority {
    /// Whether the operator makes and renews this CA (default). When false the user puts the
    /// CA in its two Secrets (a PKCS#8 `ca.key`, a PEM `ca.crt`) and renews it; the operator
    /// only issues certificates with it and warns before it expires.
    #[serde(default = "CertificateAuthority::yes")]
    pub generate_certificate_authority: bool,
    /// Days a generated CA certificate is valid, and at most any certificate it issues
    /// (default 365).
    #[serde(default = "CertificateAuthority::default_validity")]
    #[schemars(range(min = 1))]
    pub validity_days: i32,
    /// Days before expiry a certificate is renewed: its key stays, its dates move (default
    /// 30). Must be less than `validityDays`.
    #[serde(default = "CertificateAuthority::default_renewal")]
    #[schemars(range(min = 1))]
    pub renewal_days: i32,
    /// What happens in the renewal window: `renew-certificate` (default) keeps the key and
    /// renews the certificate; `replace-key` makes a new key and certificate. A replaced CA
    /// trusts the previous one alongside it until that one expires, and the certificates the
    /// new key issues carry the new CA certificate signed by the previous key, so clients
    /// that still trust only the previous CA keep verifying the brokers. Set
    /// `gregor.dev/force-replace: "true"` on the CA's key Secret to replace the key now.
    #[serde(default)]
    pub certificate_expiration_policy: ExpirationPolicy,
    /// The kind of key a generated CA, and every certificate it issues, gets: `ecdsa-p256`
    /// (default) or `rsa-3072`. A change replaces the CA's key at once, as `replace-key`
    /// does (the previous CA stays trusted), and the certificates it issued are issued again
    /// with keys of the new kind.
    #[serde(default)]
    pub key_algorithm: KeyAlgorithm,
}

/// The kind of a CA's keys.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum KeyAlgorithm {
    /// ECDSA on the P-256 curve.
    #[default]
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    /// RSA, 3072-bit modulus.
    #[serde(rename = "rsa-3072")]
    Rsa3072,
}

impl From<KeyAlgorithm> for crate::pki::KeyAlgorithm {
    fn from(algorithm: KeyAlgorithm) -> Self {
        match algorithm {
            KeyAlgorithm::EcdsaP256 => crate::pki::KeyAlgorithm::EcdsaP256,
            KeyAlgorithm::Rsa3072 => crate::pki::KeyAlgorithm::Rsa3072,
        }
    }
}

/// What a CA's renewal does.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ExpirationPolicy {
    /// A new certificate for the same key.
    #[default]
    #[serde(rename = "renew-certificate")]
    RenewCertificate,
    /// A new key and certificate, the previous CA trusted alongside until it expires.
    #[serde(rename = "replace-key")]
    ReplaceKey,
}

impl CertificateAuthority {
    fn yes() -> bool {
        true
    }

    fn default_validity() -> i32 {
        365
    }

    fn default_renewal() -> i32 {
        30
    }
}

impl Default for CertificateAuthority {
    fn default() -> Self {
        CertificateAuthority {
            generate_certificate_authority: true,
            validity_days: CertificateAuthority::default_validity(),
            renewal_days: CertificateAuthority::default_renewal(),
            certificate_expiration_policy: ExpirationPolicy::default(),
            key_algorithm: KeyAlgorithm::default(),
        }
    }
}

/// Dedicated controller nodes.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ControllerPool {
    /// Number of controller nodes (voters of the metadata quorum); 3 or 5 in production.
    /// Fixed once the cluster exists: the voters are static (`controller.quorum.voters`).
    #[schemars(range(min = 1))]
    pub replicas: i32,
    /// Storage of each controller's metadata log; defaults to the brokers' storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Storage>,
    /// CPU and memory of the controller container; defaults to the brokers' resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// Persistent volume of each node.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Storage {
    /// Size of each node's volume, a Kubernetes quantity (`10Gi`). Growing it resizes the
    /// claims where the storage class allows; shrinking is refused.
    #[serde(default = "Storage::default_size")]
    pub size: String,
    /// Storage class of the claims; the cluster's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Delete the claims when the KafkaCluster is deleted (kept by default).
    #[serde(default)]
    pub delete_claim: bool,
}

impl Storage {
    fn default_size() -> String {
        "10Gi".into()
    }
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            size: Storage::default_size(),
            storage_class_name: None,
            delete_claim: false,
        }
    }
}

/// Rack awareness.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rack {
    /// Node label whose value becomes `broker.rack`, e.g. `topology.kubernetes.io/zone` or
    /// `kubernetes.io/hostname`; any node label works. A broker pod whose node lacks it does
    /// not start.
    pub topology_key: String,
}

/// The listeners clients connect to.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Listeners {
    /// Port of the in-cluster listener (default 9092).
    #[serde(default = "Listeners::default_port")]
    pub port: i32,
    /// TLS on the in-cluster listener, with each broker's certificate from the cluster CA.
    #[serde(default)]
    pub tls: bool,
    /// How clients of the in-cluster listener authenticate; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<ListenerAuthentication>,
    /// A listener reachable from outside the Kubernetes cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalListener>,
}

impl Listeners {
    fn default_port() -> i32 {
        9092
    }
}

impl Default for Listeners {
    fn default() -> Self {
        Listeners {
            port: Listeners::default_port(),
            tls: false,
            authentication: None,
            external: None,
        }
    }
}

/// How a listener's clients authenticate.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListenerAuthentication {
    /// `scram-sha-512`: SASL SCRAM-SHA-512 (SASL_SSL with `tls: true`, else SASL_PLAINTEXT),
    /// for KafkaUsers with `scram-sha-512` authentication or users made with Kafka's tools.
    /// `tls`: a client certificate signed by the clients CA (needs `tls: true`); the
    /// principal is the certificate's subject DN, e.g. `User:CN=alice,O=gregor.dev`.
    /// `oauth`: SASL OAUTHBEARER with JWTs signed by an identity provider whose keys
    /// `jwksUri` serves (Kafka's OAuthBearerValidatorCallbackHandler); the principal is
    /// `User:<the userNameClaim claim>`.
    #[serde(rename = "type")]
    pub kind: AuthenticationType,
    /// `oauth`: where the identity provider's signing keys are, a JWKS document at an
    /// `https://` or `http://` URL (or a `file:` URL inside the broker pods), re-read every
    /// hour and when a token names an unknown key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// `oauth`: the `iss` claim every token must carry; not checked when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// `oauth`: a value the tokens' `aud` claim must contain; not checked when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// `oauth`: the claim naming the user (default `sub`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name_claim: Option<String>,
}

impl ListenerAuthentication {
    /// Authentication of `kind`, with no OAuth settings.
    pub fn of(kind: AuthenticationType) -> Self {
        ListenerAuthentication {
            kind,
            jwks_uri: None,
            issuer: None,
            audience: None,
            user_name_claim: None,
        }
    }
}

/// A listener's kind of client authentication.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AuthenticationType {
    /// SASL SCRAM-SHA-512.
    #[serde(rename = "scram-sha-512")]
    ScramSha512,
    /// Mutual TLS with the clients CA.
    #[serde(rename = "tls")]
    Tls,
    /// SASL OAUTHBEARER with JWTs checked against a JWKS.
    #[serde(rename = "oauth")]
    OAuth,
}

/// Who may do what, checked by Kafka's StandardAuthorizer.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct Authorization {
    /// `simple`: ACLs (`kafka-acls.sh`, KafkaUsers) decide; a request no ACL allows is
    /// refused.
    #[serde(rename = "type")]
    pub kind: AuthorizationType,
    /// Principals allowed everything besides the nodes and the operator (`User:admin`, or a
    /// bare name, taken as `User:<name>`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub super_users: Vec<String>,
}

/// The authorizer.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AuthorizationType {
    /// Kafka's StandardAuthorizer, with ACLs.
    #[serde(rename = "simple")]
    Simple,
}

/// How the external listener is exposed.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ExternalType {
    /// One NodePort Service per broker.
    NodePort,
    /// One LoadBalancer Service per broker.
    LoadBalancer,
}

/// A listener reachable from outside the Kubernetes cluster, one Service per broker.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalListener {
    /// NodePort or LoadBalancer.
    #[serde(rename = "type")]
    pub kind: ExternalType,
    /// Port of the listener inside the pod (default 9094).
    #[serde(default = "ExternalListener::default_port")]
    pub port: i32,
    /// Address each broker advertises, by node id (`"0": kafka-0.example.com:31000`); brokers
    /// without an entry advertise their Service's address once known.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub advertised: BTreeMap<String, String>,
    /// TLS on the external listener, with each broker's certificate from the cluster CA
    /// naming its external address.
    #[serde(default)]
    pub tls: bool,
    /// How clients of the external listener authenticate; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<ListenerAuthentication>,
    /// For `NodePort`: the node port of each broker's Service, by node id (`"0": 31090`);
    /// brokers without an entry get one Kubernetes allocates. Fixed ports let a firewall rule,
    /// a port mapping (kind's `extraPortMappings`) or an `advertised` address name them before
    /// the cluster exists.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_ports: BTreeMap<String, i32>,
}

impl ExternalListener {
    /// A listener exposed as `kind` on the default port, without TLS, authentication or
    /// spec'd addresses.
    pub fn of(kind: ExternalType) -> Self {
        ExternalListener {
            kind,
            port: ExternalListener::default_port(),
            advertised: BTreeMap::new(),
            tls: false,
            authentication: None,
            node_ports: BTreeMap::new(),
        }
    }

    fn default_port() -> i32 {
        9094
    }
}

/// The Prometheus endpoint.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    /// Port of `/metrics` on every node (default 9404).
    #[serde(default = "Metrics::default_port")]
    pub port: i32,
    /// Create a ServiceMonitor for the Prometheus Operator.
    #[serde(default)]
    pub service_monitor: bool,
}

impl Metrics {
    fn default_port() -> i32 {
        9404
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            port: Metrics::default_port(),
            service_monitor: false,
        }
    }
}

/// Pod overrides.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplate {
    /// Extra pod labels (the operator's own labels win).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Extra pod annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Node selector of the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Affinity of the pods. When given (`{}` included) it replaces the default: a preferred
    /// podAntiAffinity on `kubernetes.io/hostname` against every pod of the cluster, so
    /// brokers and controllers land on different nodes where there are enough.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Topology spread constraints of the pods. When given (`[]` included) they replace the
    /// default: each pool's pods spread over `topology.kubernetes.io/zone` with maxSkew 1 and
    /// `whenUnsatisfiable: ScheduleAnyway`, so nodes without zone labels schedule them too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,
    /// Tolerations of the pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
}

/// How rolling restarts go about their checks.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollingUpdate {
    /// What a roll does about partitions without a replica to spare: those whose replica
    /// count is no more than their `min.insync.replicas` (any topic with one replica, or
    /// replication factor 2 with `min.insync.replicas=2`). Restarting any broker holding one
    /// takes it below `min.insync.replicas` (offline, with one replica), so under `Wait` (the
    /// default) a roll never restarts such a broker and waits, reported in `Degraded` with
    /// reason `RollBlockedByTopics` naming the topics, until they get more replicas or this is
    /// set to `Proceed`. Under `Proceed` their brokers restart anyway, one at a time; every
    /// other partition still keeps its `min.insync.replicas`.
    #[serde(default)]
    pub partitions_without_spare: PartitionsWithoutSpare,
}

/// What a roll does about partitions without a replica to spare.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PartitionsWithoutSpare {
    /// Restart none of their brokers: the roll waits for a decision.
    #[default]
    Wait,
    /// Restart their brokers anyway, accepting a short outage of those partitions.
    Proceed,
}

/// What the operator last saw and did.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaClusterStatus {
    /// Ready, Progressing and Degraded, with reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The cluster id every node's storage is formatted with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// The in-cluster bootstrap address (`host:port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_servers: Option<String>,
    /// The image the nodes run: `spec.image` when set, else the one recorded when the cluster
    /// was first reconciled (the operator's default image then). It changes only with
    /// `spec.image`, never with the operator's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Nodes that are ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Each node's state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub brokers: Vec<NodeStatus>,
    /// The rolling restart under way, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roll: Option<RollStatus>,
    /// The broker scale step under way, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<ScalingStatus>,
    /// The cluster CA's certificate, once there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_ca: Option<CaStatus>,
    /// The clients CA's certificate, once there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clients_ca: Option<CaStatus>,
}

/// A CA certificate as the operator last read it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaStatus {
    /// When the CA certificate expires (RFC 3339).
    pub certificate_expiry: String,
    /// When the operator renews it, or for a user-supplied CA when it warns (RFC 3339).
    pub renewal_from: String,
    /// How many times its certificate was renewed or replaced
    /// (`gregor.dev/ca-cert-generation`).
    pub cert_generation: i64,
    /// How many times its key was replaced (`gregor.dev/ca-key-generation`).
    #[serde(default)]
    pub key_generation: i64,
    /// After a key replacement: until when the previous CA is trusted alongside (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_trusted_until: Option<String>,
    /// Whether the operator generated it (false: supplied by the user).
    pub generated: bool,
    /// Where the CA is in its life: `Ready` (one CA, trusted alone), `TrustingPrevious`
    /// (its key was replaced: certificates are issued with the new key and the previous CA
    /// is trusted alongside until `previousTrustedUntil`, or until
    /// `gregor.dev/drop-previous-ca: "true"` on the CA certificate Secret says clients have
    /// moved), or `Expiring` (a user-supplied CA within its renewal window).
    #[serde(default)]
    pub phase: CaPhase,
}

/// The phase of a CA (see [`CaStatus::phase`]).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum CaPhase {
    /// One CA, trusted alone.
    #[default]
    Ready,
    /// A replaced key: the previous CA is trusted alongside the new one.
    TrustingPrevious,
    /// A user-supplied CA within its renewal window.
    Expiring,
}

/// Progress of a broker scale step: brokers added and partitions reassigned onto them, or
/// partitions reassigned off brokers before they are removed.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScalingStatus {
    /// Brokers when the step started.
    pub from: i32,
    /// Brokers the step ends with.
    pub to: i32,
    /// Partition reassignments under way.
    #[serde(default)]
    pub reassignments: i32,
    /// What the step waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
}

/// One node as the operator sees it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// node.id.
    pub id: i32,
    /// Its pod.
    pub pod: String,
    /// Whether the pod is ready.
    pub ready: bool,
    /// Whether the pod runs the current spec and config.
    pub current: bool,
}

/// Progress of a rolling restart.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollStatus {
    /// Pods still to restart, in order.
    #[serde(default)]
    pub pending: Vec<String>,
    /// The pod being restarted now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarting: Option<String>,
    /// Why the roll waits or halted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
}
