//! The `KafkaUser` custom resource: a principal of one KafkaCluster, with its credentials
//! (a SCRAM-SHA-512 password or a certificate from the clients CA, in a Secret named after
//! the user), its ACLs and its quotas, in Strimzi's shape.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::cluster::AuthorizationType;
use super::Condition;

/// A user of a KafkaCluster in the same namespace.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "gregor.dev",
    version = "v1alpha1",
    kind = "KafkaUser",
    namespaced,
    status = "KafkaUserStatus",
    shortname = "ku",
    printcolumn = r#"{"name":"Cluster","type":"string","jsonPath":".spec.cluster"}"#,
    printcolumn = r#"{"name":"Authentication","type":"string","jsonPath":".spec.authentication.type"}"#,
    printcolumn = r#"{"name":"Authorization","type":"string","jsonPath":".spec.authorization.type"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct KafkaUserSpec {
    /// The KafkaCluster (in this namespace) the user belongs to.
    pub cluster: String,
    /// How the user authenticates; none when absent (ACLs and quotas then apply to
    /// `User:<name>` as another listener's authentication names it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<UserAuthentication>,
    /// What the user may do. The user's ACLs are exactly these: ACLs for this principal
    /// added by other tools are removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<UserAuthorization>,
    /// The user's client quotas; quotas not named here are removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quotas: Option<UserQuotas>,
}

/// A KafkaUser's kind of credentials. (An `oauth` listener's users come from the identity
/// provider: their KafkaUsers have no `authentication`, only ACLs and quotas.)
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum UserAuthenticationType {
    /// A SCRAM-SHA-512 password.
    #[serde(rename = "scram-sha-512")]
    ScramSha512,
    /// A client certificate from the clients CA.
    #[serde(rename = "tls")]
    Tls,
}

/// The user's credentials.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserAuthentication {
    /// `scram-sha-512`: a password, generated into the Secret `<user>` (`password`,
    /// `sasl.jaas.config`) unless `password` names one; the principal is `User:<user>`.
    /// `tls`: a certificate from the clients CA in the Secret `<user>` (`ca.crt`, `user.crt`,
    /// `user.key`, `user.p12`, `user.password`), renewed before it expires; the principal is
    /// `User:CN=<user>`.
    #[serde(rename = "type")]
    pub kind: UserAuthenticationType,
    /// For `scram-sha-512`: the password, from a Secret of the user's. A change to it is
    /// applied without recreating the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Password>,
}

/// Where a password comes from.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Password {
    /// The Secret key holding it.
    pub value_from: PasswordSource,
}

/// A Secret key.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordSource {
    /// The Secret (in this namespace) and key.
    pub secret_key_ref: SecretKey,
}

/// A key of a Secret in the user's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct SecretKey {
    /// The Secret's name.
    pub name: String,
    /// The key.
    pub key: String,
}

/// The user's ACLs.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct UserAuthorization {
    /// `simple`: Kafka ACLs, checked by the cluster's StandardAuthorizer.
    #[serde(rename = "type")]
    pub kind: AuthorizationType,
    /// The rules.
    #[serde(default)]
    pub acls: Vec<AclRule>,
}

/// One ACL rule: operations on a resource, allowed or denied, from a host.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AclRule {
    /// The resource.
    pub resource: AclResource,
    /// The operations.
    #[schemars(length(min = 1))]
    pub operations: Vec<AclOperation>,
    /// `allow` (default) or `deny`.
    #[serde(default, rename = "type")]
    pub permission: AclPermission,
    /// The host the rule applies to (default `*`, any).
    #[serde(default = "AclRule::any_host")]
    pub host: String,
}

impl AclRule {
    fn any_host() -> String {
        "*".into()
    }
}

/// A resource an ACL names.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AclResource {
    /// `topic`, `group`, `cluster` or `transactionalId`.
    #[serde(rename = "type")]
    pub kind: AclResourceType,
    /// Its name, or with `patternType: prefix` a name prefix; `*` is every one. Not given for
    /// `cluster`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `literal` (default) or `prefix`.
    #[serde(default)]
    pub pattern_type: AclPatternType,
}

/// The kinds of resources ACLs protect.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AclResourceType {
    /// A topic.
    #[serde(rename = "topic")]
    Topic,
    /// A consumer group.
    #[serde(rename = "group")]
    Group,
    /// The cluster.
    #[serde(rename = "cluster")]
    Cluster,
    /// A transactional id.
    #[serde(rename = "transactionalId")]
    TransactionalId,
}

/// How a resource name is matched.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum AclPatternType {
    /// The name exactly (`*`: every resource of the type).
    #[default]
    #[serde(rename = "literal")]
    Literal,
    /// Every name starting with it.
    #[serde(rename = "prefix")]
    Prefix,
}

/// Allow or deny.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum AclPermission {
    /// Allow the operations.
    #[default]
    #[serde(rename = "allow")]
    Allow,
    /// Deny them, whatever allows them.
    #[serde(rename = "deny")]
    Deny,
}

/// Kafka's ACL operations, named as `kafka-acls.sh` and Strimzi name them.
#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
pub enum AclOperation {
    /// Every operation.
    All,
    /// Fetch, join groups, commit offsets.
    Read,
    /// Produce.
    Write,
    /// Create topics.
    Create,
    /// Delete topics and records.
    Delete,
    /// Create partitions, alter ACLs.
    Alter,
    /// Metadata, offsets, group descriptions.
    Describe,
    /// Broker-to-broker requests.
    ClusterAction,
    /// Read configs.
    DescribeConfigs,
    /// Change configs.
    AlterConfigs,
    /// Idempotent produce (implied by Write on a topic).
    IdempotentWrite,
}

/// A user's client quotas, Kafka's keys.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserQuotas {
    /// `producer_byte_rate`: bytes a second the user may produce, per broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub producer_byte_rate: Option<i64>,
    /// `consumer_byte_rate`: bytes a second the user may fetch, per broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub consumer_byte_rate: Option<i64>,
    /// `request_percentage`: the share of one request thread's time per quota window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub request_percentage: Option<i32>,
    /// `controller_mutation_rate`: topic and partition creations and deletions a second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub controller_mutation_rate: Option<f64>,
}

/// What the operator last saw and did.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaUserStatus {
    /// Ready, with a reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The principal's name as the brokers know it (`alice`, or `CN=alice` for a TLS user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The Secret holding the user's credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}
