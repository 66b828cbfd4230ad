//! Client quota configs, pure (Kafka's ClientQuotaControlManager and ClientQuotaImage): the
//! entities a quota applies to (a user, a client id, both, or an IP; each named or the
//! default), the keys each entity type takes and the values they accept, and the filters of
//! DescribeClientQuotas. Stored in the metadata log as `ClientQuota` records.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An entity type of a quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EntityType {
    /// `user`: the principal's name.
    #[serde(rename = "user")]
    User,
    /// `client-id`.
    #[serde(rename = "client-id")]
    ClientId,
    /// `ip`: the client's address.
    #[serde(rename = "ip")]
    Ip,
}

impl EntityType {
    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            EntityType::User => "user",
            EntityType::ClientId => "client-id",
            EntityType::Ip => "ip",
        }
    }

    /// The type called `name`.
    pub fn from_name(name: &str) -> Option<EntityType> {
        [EntityType::User, EntityType::ClientId, EntityType::Ip]
            .into_iter()
            .find(|t| t.name() == name)
    }
}

/// What a quota applies to: each entity type present with a name, or `None` for the type's
/// default.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QuotaEntity(pub BTreeMap<EntityType, Option<String>>);

/// The quota configs by entity.
pub type ClientQuotas = BTreeMap<QuotaEntity, BTreeMap<String, f64>>;

/// How a quota key's value must look: Kafka's ConfigDef types of the quota configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueType {
    Long,
    Int,
    Double,
}

/// The keys a user / client-id entity takes (`QuotaConfig.userAndClientQuotaConfigs`).
const USER_CLIENT_KEYS: [(&str, ValueType); 4] = [
    ("producer_byte_rate", ValueType::Long),
    ("consumer_byte_rate", ValueType::Long),
    ("request_percentage", ValueType::Double),
    ("controller_mutation_rate", ValueType::Double),
];

/// The keys an IP entity takes (`QuotaConfig.ipConfigs`).
const IP_KEYS: [(&str, ValueType); 1] = [("connection_creation_rate", ValueType::Int)];

/// Builds an entity from the request's `(type, name)` components, as Kafka validates them.
pub fn entity(components: &[(&str, Option<&str>)]) -> Result<QuotaEntity, String> {
    if components.is_empty() {
        return Err("Invalid empty client quota entity".into());
    }
    let mut map = BTreeMap::new();
    for (kind, name) in components {
        let t = EntityType::from_name(kind)
            .ok_or_else(|| format!("Unhandled client quota entity type: {kind}"))?;
        if *name == Some("") {
            return Err(format!("Empty {kind} not supported"));
        }
        if map.insert(t, name.map(str::to_string)).is_some() {
            return Err(format!("Duplicate {kind} entity in client quota entity"));
        }
    }
    if map.contains_key(&EntityType::Ip) && map.len() > 1 {
        return Err(
            // Kafka's words, its missing space included.
            "Invalid quota entity combination, IP entity shouldnot be combined with User or \
             ClientId"
                .into(),
        );
    }
    if let Some(Some(ip)) = map.get(&EntityType::Ip) {
        // An address, or a host name that resolves (Kafka's InetAddress.getByName).
        let resolves = || std::net::ToSocketAddrs::to_socket_addrs(&(ip.as_str(), 0)).is_ok();
        if ip.parse::<std::net::IpAddr>().is_err() && !resolves() {
            return Err(format!("{ip} is not a valid IP or resolvable host."));
        }
    }
    Ok(QuotaEntity(map))
}

/// Checks that `key` applies to `entity` and `value` fits its type.
pub fn check_value(entity: &QuotaEntity, key: &str, value: f64) -> Result<(), String> {
    let keys: &[(&str, ValueType)] = if entity.0.contains_key(&EntityType::Ip) {
        &IP_KEYS
    } else {
        &USER_CLIENT_KEYS
    };
    let Some((_, kind)) = keys.iter().find(|(k, _)| *k == key) else {
        return Err(format!("Invalid configuration key {key}"));
    };
    if value.is_nan() || value <= 0.0 {
        return Err(format!("Quota {key} must be greater than 0"));
    }
    let (max, name) = match kind {
        // An infinite rate would mean no quota; refused rather than kept.
        ValueType::Double if value.is_infinite() => {
            return Err(format!("Quota {key} must be a finite number"))
        }
        ValueType::Double => return Ok(()),
        ValueType::Long => (i64::MAX as f64, "LONG"),
        ValueType::Int => (f64::from(i32::MAX), "INT"),
    };
    if value > max {
        return Err(format!(
            "Proposed value for {key} is too large for a {name}."
        ));
    }
    // NaN too (Kafka lets it through).
    if value.fract() != 0.0 {
        return Err(format!("{key} cannot be a fractional value."));
    }
    Ok(())
}

/// Why a DescribeClientQuotas filter is refused: an unknown entity type is answered
/// UNSUPPORTED_VERSION, anything else INVALID_REQUEST, as Kafka does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    /// The entity type is unknown.
    pub unsupported_type: bool,
    /// The message.
    pub message: String,
}

impl FilterError {
    fn invalid(message: impl Into<String>) -> FilterError {
        FilterError {
            unsupported_type: false,
            message: message.into(),
        }
    }
}

/// How one filter component matches an entity's name of its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// Exactly this name.
    Exact(String),
    /// The type's default.
    Default,
    /// Any name, or the default, as long as the entity has the type.
    Any,
}

/// A DescribeClientQuotas filter: components by type, and whether an entity may have types
/// the filter does not name (`strict` says it may not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// What each named type must match.
    pub components: BTreeMap<EntityType, Match>,
    /// Only entities with exactly the filter's types.
    pub strict: bool,
}

impl Filter {
    /// Builds a filter from the request's `(type, match type, match)` components.
    pub fn new(
        components: &[(&str, i8, Option<&str>)],
        strict: bool,
    ) -> Result<Filter, FilterError> {
        let mut map = BTreeMap::new();
        for (kind, match_type, name) in components {
            let t = EntityType::from_name(kind).ok_or_else(|| FilterError {
                unsupported_type: true,
                message: format!("Unsupported entity type {kind}"),
            })?;
            let request = "Request specified";
            let m = match (match_type, name) {
                (0, Some(n)) => Match::Exact(n.to_string()),
                (0, None) => {
                    return Err(FilterError::invalid(format!(
                        "{request} MATCH_TYPE_EXACT, but set match string to null."
                    )))
                }
                (1, None) => Match::Default,
                (2, None) => Match::Any,
                (1, Some(_)) => {
                    return Err(FilterError::invalid(format!(
                        "{request} MATCH_TYPE_DEFAULT, but also specified a match string."
                    )))
                }
                (2, Some(_)) => {
                    return Err(FilterError::invalid(format!(
                        "{request} MATCH_TYPE_SPECIFIED, but also specified a match string."
                    )))
                }
                (other, _) => {
                    return Err(FilterError::invalid(format!("Unknown match type {other}")))
                }
            };
            if map.insert(t, m).is_some() {
                return Err(FilterError::invalid(format!(
                    "Entity type {kind} cannot appear more than once in the filter."
                )));
            }
        }
        if map.contains_key(&EntityType::Ip) && map.len() > 1 {
            return Err(FilterError::invalid(
                "Invalid entity filter component combination. IP filter component should not \
                 be used with user or clientId filter component.",
            ));
        }
        Ok(Filter {
            components: map,
            strict,
        })
    }

    /// Whether `entity` passes the filter.
    pub fn matches(&self, entity: &QuotaEntity) -> bool {
        if self.strict && entity.0.len() != self.components.len() {
            return false;
        }
        self.components
            .iter()
            .all(|(t, m)| match (entity.0.get(t), m) {
                (None, _) => false,
                (Some(name), Match::Exact(want)) => name.as_deref() == Some(want.as_str()),
                (Some(name), Match::Default) => name.is_none(),
                (Some(_), Match::Any) => true,
            })
    }
}

/// Applies one quota change to `quotas`: sets `key` (or removes it, with `None`). Returns
/// whether anything changed.
pub fn apply(
    quotas: &mut ClientQuotas,
    entity: &QuotaEntity,
    key: &str,
    value: Option<f64>,
) -> bool {
    match value {
        Some(v) => {
            let values = quotas.entry(entity.clone()).or_default();
            values.insert(key.to_string(), v) != Some(v)
        }
        None => {
            let Some(values) = quotas.get_mut(entity) else {
                return false;
            };
            let removed = values.remove(key).is_some();
            if values.is_empty() {
                quotas.remove(entity);
            }
            removed
        }
    }
}

/// Serializes [`ClientQuotas`] as a list of `[entity, values]` pairs (JSON map keys must be
/// strings).
pub mod as_pairs {
    use super::*;

    /// Serializes.
    pub fn serialize<S: serde::Serializer>(q: &ClientQuotas, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(q.iter())
    }

    /// Deserializes.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ClientQuotas, D::Error> {
        let pairs: Vec<(QuotaEntity, BTreeMap<String, f64>)> = Vec::deserialize(d)?;
        Ok(pairs.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(components: &[(&str, Option<&str>)]) -> QuotaEntity {
        entity(components).expect("valid entity")
    }

    #[test]
    fn entities_are_users_clients_both_or_an_ip_alone() {
        e(&[("user", Some("alice"))]);
        e(&[("user", None), ("client-id", Some("app"))]);
        e(&[("ip", Some("127.0.0.1"))]);
        type Components<'a> = &'a [(&'a str, Option<&'a str>)];
        let cases: [(Components, &str); 6] = [
            (&[("user", Some(""))], "Empty user not supported"),
            (&[], "Invalid empty client quota entity"),
            (
                &[("group", Some("g"))],
                "Unhandled client quota entity type: group",
            ),
            (
                &[("user", Some("a")), ("ip", Some("::1"))],
                "IP entity shouldnot be combined",
            ),
            (&[("ip", Some("not-an-ip"))], "not a valid IP"),
            (
                &[("user", Some("a")), ("user", Some("b"))],
                "Duplicate user",
            ),
        ];
        for (components, want) in cases {
            let err = entity(components).expect_err("invalid");
            assert!(err.contains(want), "{components:?}: {err}");
        }
    }

    #[test]
    fn keys_belong_to_their_entity_type_and_whole_numbers_to_rates_in_bytes() {
        let user = e(&[("user", Some("alice"))]);
        let ip = e(&[("ip", Some("10.0.0.1"))]);
        check_value(&user, "producer_byte_rate", 1024.0).expect("long");
        check_value(&user, "request_percentage", 12.5).expect("double");
        check_value(&ip, "connection_creation_rate", 10.0).expect("int");
        let cases = [
            (&user, "foo_rate", 1.0, "Invalid configuration key foo_rate"),
            (
                &user,
                "connection_creation_rate",
                1.0,
                "Invalid configuration key",
            ),
            (&ip, "producer_byte_rate", 1.0, "Invalid configuration key"),
            (
                &user,
                "producer_byte_rate",
                10.5,
                "cannot be a fractional value.",
            ),
            (&user, "consumer_byte_rate", 0.0, "must be greater than 0"),
            (
                &user,
                "request_percentage",
                f64::NAN,
                "must be greater than 0",
            ),
            (
                &user,
                "controller_mutation_rate",
                f64::INFINITY,
                "must be a finite number",
            ),
            (
                &user,
                "producer_byte_rate",
                f64::INFINITY,
                "too large for a LONG.",
            ),
            (
                &ip,
                "connection_creation_rate",
                3e10,
                "too large for a INT.",
            ),
        ];
        for (entity, key, value, want) in cases {
            let err = check_value(entity, key, value).expect_err("invalid");
            assert!(err.contains(want), "{key}={value}: {err}");
        }
    }

    #[test]
    fn filters_match_exact_names_defaults_and_any_and_strict_limits_the_types() {
        let alice = e(&[("user", Some("alice"))]);
        let default_user = e(&[("user", None)]);
        let alice_app = e(&[("user", Some("alice")), ("client-id", Some("app"))]);
        let f = |c: &[(&str, i8, Option<&str>)], strict| Filter::new(c, strict).expect("filter");
        let exact = f(&[("user", 0, Some("alice"))], false);
        assert!(
            exact.matches(&alice) && exact.matches(&alice_app) && !exact.matches(&default_user)
        );
        let strict = f(&[("user", 0, Some("alice"))], true);
        assert!(strict.matches(&alice) && !strict.matches(&alice_app));
        let default = f(&[("user", 1, None)], false);
        assert!(default.matches(&default_user) && !default.matches(&alice));
        let any = f(&[("user", 2, None)], false);
        assert!(any.matches(&alice) && any.matches(&default_user) && any.matches(&alice_app));
        let nothing = f(&[], false);
        assert!(nothing.matches(&alice));
        let err =
            Filter::new(&[("user", 2, None), ("user", 0, Some("a"))], false).expect_err("dup");
        assert!(err.message.contains("more than once"), "{err:?}");
        let err = Filter::new(&[("group", 2, None)], false).expect_err("type");
        assert!(err.unsupported_type, "{err:?}");
        let err = Filter::new(&[("user", 0, None)], false).expect_err("exact null");
        assert!(err.message.contains("MATCH_TYPE_EXACT"), "{err:?}");
    }

    #[test]
    fn changes_set_and_remove_keys_and_drop_empty_entities() {
        let alice = e(&[("user", Some("alice"))]);
        let mut q = ClientQuotas::new();
        assert!(apply(&mut q, &alice, "producer_byte_rate", Some(1024.0)));
        assert!(!apply(&mut q, &alice, "producer_byte_rate", Some(1024.0)));
        assert!(!apply(&mut q, &alice, "consumer_byte_rate", None));
        let json = serde_json::to_string(&Wrapper(q.clone())).expect("json");
        let back: Wrapper = serde_json::from_str(&json).expect("back");
        assert_eq!(back.0, q);
        assert!(apply(&mut q, &alice, "producer_byte_rate", None));
        assert!(q.is_empty());
    }

    #[derive(Serialize, Deserialize)]
    struct Wrapper(#[serde(with = "as_pairs")] ClientQuotas);
}
