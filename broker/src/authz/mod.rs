//! ACL authorization with Apache Kafka's StandardAuthorizer semantics, as pure functions of
//! the committed ACLs (`cluster::image` holds them, the metadata log carries them).
//!
//! A request is allowed when its principal is a super user; otherwise the ACLs on the
//! resource decide: those of its exact name (LITERAL), of the wildcard name `*` (LITERAL), and
//! of every PREFIXED name its name starts with. Of these, an ACL applies when its principal is
//! the request's or `User:*`, its host is the client's address or `*`, and its operation is the
//! one asked, `ALL`, or (for ALLOW ACLs only) one that implies it: READ, WRITE, DELETE and
//! ALTER imply DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS. Any applicable DENY wins over
//! every ALLOW. When no ACL applies, the request is allowed only if the resource has no ACLs
//! at all (for anyone, any operation) and `allow.everyone.if.no.acl.found` is set.
//!
//! Filters (DescribeAcls, DeleteAcls) match ACLs as Kafka's `AclBindingFilter` does: `ANY`
//! fields match everything, names and principals match exactly, and the MATCH pattern type
//! matches every ACL that would apply to the named resource.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::AuthorizerConfig;

/// The only name a CLUSTER resource has.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// The wildcard of resource names, principals (`User:*`) and hosts.
pub const WILDCARD: &str = "*";
/// The principal every connection has until TLS or SASL establishes another.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// Declares a Kafka enum with its wire codes; `from_code` answers `None` for the codes that
/// are not a concrete value (UNKNOWN, ANY, MATCH), which filters treat separately.
macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $code:literal,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum $name { $($(#[$vm])* $variant,)* }

        impl $name {
            /// The Kafka wire code.
            pub fn code(self) -> i8 {
                match self { $($name::$variant => $code,)* }
            }

            /// The value of a wire code, if it is a concrete one.
            pub fn from_code(code: i8) -> Option<$name> {
                match code { $($code => Some($name::$variant),)* _ => None }
            }
        }
    };
}

wire_enum! {
    /// What an ACL protects (Kafka's `ResourceType`).
    ResourceType {
        /// A topic.
        Topic = 2,
        /// A consumer group.
        Group = 3,
        /// The cluster (named `kafka-cluster`).
        Cluster = 4,
        /// A transactional id.
        TransactionalId = 5,
        /// A delegation token (stored and listed; Gregor issues no tokens yet).
        DelegationToken = 6,
        /// A user (for CREATE_TOKENS / DESCRIBE_TOKENS; stored and listed).
        User = 7,
    }
}

wire_enum! {
    /// How an ACL's resource name matches (Kafka's `PatternType`).
    PatternType {
        /// The exact name, or every name when the name is `*`.
        Literal = 3,
        /// Every name starting with the ACL's name.
        Prefixed = 4,
    }
}

wire_enum! {
    /// What a request does to a resource (Kafka's `AclOperation`).
    Operation {
        /// Every operation.
        All = 2,
        /// Read (fetch, consume in a group).
        Read = 3,
        /// Write (produce).
        Write = 4,
        /// Create.
        Create = 5,
        /// Delete.
        Delete = 6,
        /// Alter.
        Alter = 7,
        /// Describe.
        Describe = 8,
        /// Inter-broker actions.
        ClusterAction = 9,
        /// Describe configs.
        DescribeConfigs = 10,
        /// Alter configs.
        AlterConfigs = 11,
        /// Idempotent produce.
        IdempotentWrite = 12,
        /// Create delegation tokens.
        CreateTokens = 13,
        /// Describe delegation tokens.
        DescribeTokens = 14,
        /// Two-phase commit (KIP-939).
        TwoPhaseCommit = 15,
    }
}

wire_enum! {
    /// Whether an ACL allows or denies (Kafka's `AclPermissionType`).
    Permission {
        /// Denies; wins over any ALLOW.
        Deny = 2,
        /// Allows.
        Allow = 3,
    }
}

/// The wire code every filter field uses for "any value".
pub const ANY: i8 = 1;
/// The pattern-type wire code of MATCH (filters only).
pub const MATCH: i8 = 2;

/// One access-control entry on a resource pattern (Kafka's `AclBinding` / `StandardAcl`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Acl {
    /// The kind of resource.
    pub resource_type: ResourceType,
    /// The resource name, prefix, or `*`.
    pub resource_name: String,
    /// How the name matches.
    pub pattern_type: PatternType,
    /// `Type:name`, e.g. `User:alice`, or `User:*`.
    pub principal: String,
    /// The client address, or `*`.
    pub host: String,
    /// The operation.
    pub operation: Operation,
    /// ALLOW or DENY.
    pub permission: Permission,
}

/// Why an ACL or filter from a request is refused (INVALID_REQUEST, with Kafka's words).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    /// A field that is not a concrete value where one is needed, or an unknown code.
    #[error("Invalid {field} {code}")]
    InvalidField {
        /// The field, as Kafka names it.
        field: &'static str,
        /// The wire code given.
        code: i8,
    },
    /// An empty resource name.
    #[error("Resource name should not be empty")]
    EmptyName,
    /// A CLUSTER ACL on another name.
    #[error("The only valid name for the CLUSTER resource is {CLUSTER_NAME}")]
    ClusterName,
    /// A principal that is not `Type:name`.
    #[error("Could not parse principal from `{0}` (no colon is present separating the principal type from the principal name)")]
    Principal(String),
    /// A filter with an unknown code.
    #[error("Unknown {0}.")]
    UnknownFilter(&'static str),
}

/// The wire fields of an ACL (CreateAcls' creation, DescribeAcls' and DeleteAcls' filters),
/// as codes and strings; `None` names are null (filters only).
#[derive(Debug, Clone, Copy)]
pub struct WireAcl<'a> {
    /// ResourceType code.
    pub resource_type: i8,
    /// Resource name (null in a filter: any).
    pub resource_name: Option<&'a str>,
    /// PatternType code.
    pub pattern_type: i8,
    /// Principal (null in a filter: any).
    pub principal: Option<&'a str>,
    /// Host (null in a filter: any).
    pub host: Option<&'a str>,
    /// AclOperation code.
    pub operation: i8,
    /// AclPermissionType code.
    pub permission: i8,
}

impl Acl {
    /// A new ACL from a CreateAcls creation, checked as Kafka's controller checks it.
    pub fn from_wire(w: WireAcl<'_>) -> Result<Acl, AclError> {
        let field = |field, code| AclError::InvalidField { field, code };
        let resource_type = ResourceType::from_code(w.resource_type)
            .ok_or(field("resourceType", w.resource_type))?;
        let pattern_type =
            PatternType::from_code(w.pattern_type).ok_or(field("patternType", w.pattern_type))?;
        let operation = Operation::from_code(w.operation).ok_or(field("operation", w.operation))?;
        let permission =
            Permission::from_code(w.permission).ok_or(field("permissionType", w.permission))?;
        let resource_name = w.resource_name.unwrap_or_default();
        if resource_name.is_empty() {
            return Err(AclError::EmptyName);
        }
        if resource_type == ResourceType::Cluster && resource_name != CLUSTER_NAME {
            return Err(AclError::ClusterName);
        }
        let principal = w.principal.unwrap_or_default();
        if !principal.contains(':') {
            return Err(AclError::Principal(principal.to_string()));
        }
        Ok(Acl {
            resource_type,
            resource_name: resource_name.to_string(),
            pattern_type,
            principal: principal.to_string(),
            host: w.host.unwrap_or(WILDCARD).to_string(),
            operation,
            permission,
        })
    }

    /// Whether this ACL's pattern covers the resource `name` of its type.
    fn covers(&self, name: &str) -> bool {
        match self.pattern_type {
            PatternType::Literal => self.resource_name == name || self.resource_name == WILDCARD,
            PatternType::Prefixed => name.starts_with(&self.resource_name),
        }
    }

    /// What this ACL says about `op` by `principal` from `host`, if it applies (the resource
    /// is already known to match): Kafka's `StandardAuthorizerData.findResult`.
    fn verdict(&self, principal: &str, host: &str, op: Operation) -> Option<Permission> {
        let wildcard_user = self.principal == "User:*";
        if self.principal != principal && !wildcard_user {
            return None;
        }
        if self.host != WILDCARD && self.host != host {
            return None;
        }
        let applies = match (self.operation, self.permission) {
            (Operation::All, _) => true,
            (acl_op, Permission::Deny) => acl_op == op,
            (acl_op, Permission::Allow) => acl_op == op || implies(acl_op, op),
        };
        applies.then_some(self.permission)
    }
}

/// Whether an ALLOW of `granted` also allows `asked` (DENY ACLs imply nothing).
pub fn implies(granted: Operation, asked: Operation) -> bool {
    use Operation::*;
    match asked {
        Describe => matches!(granted, Read | Write | Delete | Alter),
        DescribeConfigs => granted == AlterConfigs,
        _ => false,
    }
}

/// A resource a request acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource<'a> {
    /// Its kind.
    pub kind: ResourceType,
    /// Its name ([`CLUSTER_NAME`] for the cluster).
    pub name: &'a str,
}

impl<'a> Resource<'a> {
    /// The topic `name`.
    pub fn topic(name: &'a str) -> Resource<'a> {
        Resource {
            kind: ResourceType::Topic,
            name,
        }
    }

    /// The consumer group `name`.
    pub fn group(name: &'a str) -> Resource<'a> {
        Resource {
            kind: ResourceType::Group,
            name,
        }
    }

    /// The transactional id `name`.
    pub fn transactional_id(name: &'a str) -> Resource<'a> {
        Resource {
            kind: ResourceType::TransactionalId,
            name,
        }
    }

    /// The cluster.
    pub fn cluster() -> Resource<'static> {
        Resource {
            kind: ResourceType::Cluster,
            name: CLUSTER_NAME,
        }
    }
}

/// Who asks: the principal (`User:alice`) and the client's address as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requester<'a> {
    /// `Type:name`.
    pub principal: &'a str,
    /// The client's IP address, as Kafka prints it (`127.0.0.1`).
    pub host: &'a str,
}

/// The committed ACLs, by the id their creation record gave them.
pub type Acls = BTreeMap<uuid::Uuid, Acl>;

/// Whether `who` may perform `op` on `resource` under `config` and the committed `acls`.
pub fn authorize<'a>(
    config: &AuthorizerConfig,
    acls: impl IntoIterator<Item = &'a Acl>,
    who: Requester<'_>,
    op: Operation,
    resource: Resource<'_>,
) -> bool {
    if config.super_users.iter().any(|s| s == who.principal) {
        return true;
    }
    let mut resource_has_acls = false;
    let mut allowed = false;
    for acl in acls {
        if acl.resource_type != resource.kind || !acl.covers(resource.name) {
            continue;
        }
        resource_has_acls = true;
        match acl.verdict(who.principal, who.host, op) {
            Some(Permission::Deny) => return false,
            Some(Permission::Allow) => allowed = true,
            None => {}
        }
    }
    allowed || (!resource_has_acls && config.allow_everyone_if_no_acl_found)
}

/// The operations a resource type supports, whose bits KIP-430's authorized operations set
/// (Kafka's `AclEntry.supportedOperations`).
pub fn supported_operations(kind: ResourceType) -> &'static [Operation] {
    use Operation::*;
    match kind {
        ResourceType::Topic => &[
            Read,
            Write,
            Create,
            Describe,
            Delete,
            Alter,
            DescribeConfigs,
            AlterConfigs,
        ],
        ResourceType::Group => &[Read, Describe, Delete, DescribeConfigs, AlterConfigs],
        ResourceType::Cluster => &[
            Create,
            ClusterAction,
            DescribeConfigs,
            AlterConfigs,
            IdempotentWrite,
            Alter,
            Describe,
        ],
        ResourceType::TransactionalId => &[Describe, Write, TwoPhaseCommit],
        ResourceType::DelegationToken => &[Describe],
        ResourceType::User => &[CreateTokens, DescribeTokens],
    }
}

/// Whether `who` may perform `op` on at least one resource of type `kind` (Kafka's
/// `Authorizer.authorizeByResourceType`, e.g. an idempotent producer needs WRITE on some
/// topic): a super user or an open resource yes; a DENY on the literal `*` no; else yes when
/// an ALLOW (exactly `op`, or ALL) names a pattern no DENY dominates.
pub fn authorize_by_resource_type<'a>(
    config: &AuthorizerConfig,
    acls: impl IntoIterator<Item = &'a Acl> + Clone,
    who: Requester<'_>,
    op: Operation,
    kind: ResourceType,
) -> bool {
    // A hard-coded name, as Kafka asks: super users, or nothing to deny with.
    let probe = Resource {
        kind,
        name: "hardcode",
    };
    if authorize(config, acls.clone(), who, op, probe) {
        return true;
    }
    let mut deny_literal = std::collections::BTreeSet::new();
    let mut deny_prefixed = std::collections::BTreeSet::new();
    let mut allowed: Vec<(&Acl, bool)> = Vec::new();
    for acl in acls {
        let applies = acl.resource_type == kind
            && (acl.host == WILDCARD || acl.host == who.host)
            && (acl.principal == who.principal || acl.principal == "User:*")
            && (acl.operation == op || acl.operation == Operation::All);
        if !applies {
            continue;
        }
        let literal = acl.pattern_type == PatternType::Literal;
        match acl.permission {
            Permission::Deny if literal && acl.resource_name == WILDCARD => return false,
            Permission::Deny if literal => {
                deny_literal.insert(acl.resource_name.as_str());
            }
            Permission::Deny => {
                deny_prefixed.insert(acl.resource_name.as_str());
            }
            Permission::Allow if literal && acl.resource_name == WILDCARD => return true,
            Permission::Allow => allowed.push((acl, literal)),
        }
    }
    allowed.into_iter().any(|(acl, literal)| {
        let name = acl.resource_name.as_str();
        let denied_literally = literal && deny_literal.contains(name);
        let dominated = name
            .char_indices()
            .map(|(i, c)| &name[..i + c.len_utf8()])
            .any(|prefix| deny_prefixed.contains(prefix));
        !denied_literally && !dominated
    })
}

/// How a filter matches pattern types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternFilter {
    /// Any pattern type; a name must be equal.
    Any,
    /// Every ACL that applies to the named resource (exact, `*` and prefixes).
    Match,
    /// Only this pattern type; a name must be equal.
    Exactly(PatternType),
}

/// A DescribeAcls / DeleteAcls filter (Kafka's `AclBindingFilter`): `None` matches anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclFilter {
    /// The resource type, or any.
    pub resource_type: Option<ResourceType>,
    /// The resource name, or any.
    pub resource_name: Option<String>,
    /// How names match.
    pub pattern: PatternFilter,
    /// The principal, or any.
    pub principal: Option<String>,
    /// The host, or any.
    pub host: Option<String>,
    /// The operation, or any.
    pub operation: Option<Operation>,
    /// The permission, or any.
    pub permission: Option<Permission>,
}

/// A filter field's value: `Ok(None)` for ANY, an error for UNKNOWN or a code Gregor does
/// not know.
fn any_or<T>(
    code: i8,
    value: fn(i8) -> Option<T>,
    what: &'static str,
) -> Result<Option<T>, AclError> {
    if code == ANY {
        return Ok(None);
    }
    value(code).map(Some).ok_or(AclError::UnknownFilter(what))
}

impl AclFilter {
    /// A filter from a DescribeAcls request or a DeleteAcls filter.
    pub fn from_wire(w: WireAcl<'_>) -> Result<AclFilter, AclError> {
        let pattern = match w.pattern_type {
            ANY => PatternFilter::Any,
            MATCH => PatternFilter::Match,
            code => PatternFilter::Exactly(
                PatternType::from_code(code).ok_or(AclError::UnknownFilter("patternFilter"))?,
            ),
        };
        Ok(AclFilter {
            resource_type: any_or(w.resource_type, ResourceType::from_code, "patternFilter")?,
            resource_name: w.resource_name.map(str::to_string),
            pattern,
            principal: w.principal.map(str::to_string),
            host: w.host.map(str::to_string),
            operation: any_or(w.operation, Operation::from_code, "entryFilter")?,
            permission: any_or(w.permission, Permission::from_code, "entryFilter")?,
        })
    }

    /// Whether `acl` matches this filter.
    pub fn matches(&self, acl: &Acl) -> bool {
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        self.resource_type.is_none_or(|t| t == acl.resource_type)
            && self.matches_pattern(acl)
            && eq(&self.principal, &acl.principal)
            && eq(&self.host, &acl.host)
            && self.operation.is_none_or(|o| o == acl.operation)
            && self.permission.is_none_or(|p| p == acl.permission)
    }

    fn matches_pattern(&self, acl: &Acl) -> bool {
        match (self.pattern, &self.resource_name) {
            (PatternFilter::Exactly(p), _) if p != acl.pattern_type => false,
            (_, None) => true,
            (PatternFilter::Match, Some(name)) => acl.covers(name),
            (_, Some(name)) => *name == acl.resource_name,
        }
    }
}

#[cfg(test)]
mod tests;
