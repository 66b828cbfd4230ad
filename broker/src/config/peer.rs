//! How a node reaches the others, in Kafka's keys: the client side of the inter-broker
//! listener (replication fetches are Kafka requests, so gregor-client secures them from Kafka
//! client properties) and both sides of the controller listener (the quorum's RPCs, which a
//! broker-only node also serves on its metadata replication listener with the same security).
//!
//! The client properties are the listener's own `ssl.*` keys (`listener.name.<l>.ssl.X` over
//! `ssl.X`: a node presents its listener certificate and trusts its listener trust store, as a
//! Kafka broker does), the mechanism `sasl.mechanism.inter.broker.protocol` or
//! `sasl.mechanism.controller.protocol` names, and the `username` and `password` of
//! `listener.name.<l>.<mechanism>.sasl.jaas.config`. Parsing reads no file; the stores are
//! loaded when the node starts.

use std::collections::BTreeMap;

use super::sasl::SaslConfig;
use super::ssl::{is_sensitive_key, SslConfig};
use super::{ConfigError, Props};
use crate::sasl::Mechanism;

/// The node-wide keys this module reads.
pub(super) const KEYS: &[&str] = &[
    "sasl.mechanism.inter.broker.protocol",
    "sasl.mechanism.controller.protocol",
];

/// The `ssl.*` keys a node's client side takes from its listener's.
const CLIENT_SSL_KEYS: &[&str] = &[
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.keystore.password",
    "ssl.key.password",
    "ssl.keystore.certificate.chain",
    "ssl.keystore.key",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.truststore.password",
    "ssl.truststore.certificates",
    "ssl.endpoint.identification.algorithm",
];

/// Kafka client properties (`security.protocol`, `ssl.*`, `sasl.mechanism`,
/// `sasl.jaas.config`) for a node's connections to one of the others' listeners. Printed with
/// passwords and keys hidden.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ClientProps(BTreeMap<String, String>);

impl ClientProps {
    /// The properties, for `gregor_client::security::ClientSecurity::from_properties`.
    pub fn properties(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// `security.protocol` (PLAINTEXT when unset).
    pub fn protocol(&self) -> &str {
        self.0
            .get("security.protocol")
            .map_or("PLAINTEXT", String::as_str)
    }
}

impl std::fmt::Debug for ClientProps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let shown = if is_sensitive_key(k) { "[hidden]" } else { v };
                (k, shown)
            }))
            .finish()
    }
}

/// The controller listener's security: what a controller serves on it (a broker-only node on
/// its metadata replication listener), and how every node connects to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerListener {
    /// Its name (the first of `controller.listener.names`).
    pub name: String,
    /// Its TLS settings, when it is SSL or SASL_SSL.
    pub ssl: Option<SslConfig>,
    /// Its SASL settings, when it is SASL_PLAINTEXT or SASL_SSL (PLAIN only).
    pub sasl: Option<SaslConfig>,
    /// How a node connects to it.
    pub client: ClientProps,
}

/// The client properties for connecting to listener `name`, whose protocol is `protocol`, with
/// the SASL mechanism `mechanism_key` names.
pub(super) fn client_props(
    p: &Props,
    name: &str,
    protocol: &str,
    mechanism_key: &str,
) -> Result<ClientProps, ConfigError> {
    let prefix = format!("listener.name.{}.", name.to_ascii_lowercase());
    let mut out = BTreeMap::new();
    out.insert("security.protocol".to_string(), protocol.to_string());
    if protocol.ends_with("SSL") {
        for key in CLIENT_SSL_KEYS {
            let value = p
                .get(&format!("{prefix}{key}"))
                .or_else(|| p.get(key))
                .filter(|v| !v.is_empty() || *key == "ssl.endpoint.identification.algorithm");
            if let Some(v) = value {
                out.insert((*key).to_string(), v.to_string());
            }
        }
    }
    if protocol.starts_with("SASL") {
        // Kafka's default is GSSAPI, which Gregor does not speak: refused, naming the key.
        let mechanism = p.get(mechanism_key).unwrap_or("GSSAPI");
        let Some(m) = Mechanism::from_name(mechanism) else {
            return Err(Props::invalid(
                mechanism_key,
                mechanism,
                format!(
                    "listener {name} uses {protocol}, and Gregor's nodes authenticate with PLAIN, \
                     SCRAM-SHA-256 or SCRAM-SHA-512{}",
                    if mechanism == "GSSAPI" {
                        format!(" (GSSAPI is Kafka's default: set {mechanism_key})")
                    } else {
                        String::new()
                    }
                ),
            ));
        };
        let jaas_key = format!("{prefix}{}.sasl.jaas.config", m.name().to_ascii_lowercase());
        let Some(jaas) = p
            .get(&jaas_key)
            .or_else(|| p.get("sasl.jaas.config"))
            .filter(|v| !v.is_empty())
        else {
            return Err(ConfigError::Missing(format!(
                "{jaas_key} (with the username and password this node logs in to listener \
                 {name} as)"
            )));
        };
        out.insert("sasl.mechanism".to_string(), m.name().to_string());
        out.insert("sasl.jaas.config".to_string(), jaas.to_string());
    }
    Ok(ClientProps(out))
}

/// Refuses SASL mechanisms other than PLAIN on the controller listener: SCRAM credentials live
/// in the metadata log the controllers replicate, so controllers could not check them before
/// the quorum runs (Kafka's guidance is PLAIN there too).
pub(super) fn check_controller_sasl(
    p: &Props,
    name: &str,
    sasl: &SaslConfig,
) -> Result<(), ConfigError> {
    if sasl.mechanisms.iter().all(|m| *m == Mechanism::Plain) {
        return Ok(());
    }
    let own = format!(
        "listener.name.{}.sasl.enabled.mechanisms",
        name.to_ascii_lowercase()
    );
    let key = if p.get(&own).is_some() {
        own.clone()
    } else {
        "sasl.enabled.mechanisms".to_string()
    };
    let value: Vec<&str> = sasl.mechanisms.iter().map(|m| m.name()).collect();
    Err(Props::invalid(
        &key,
        &value.join(","),
        format!(
            "controller listener {name} can authenticate only with PLAIN: SCRAM credentials live \
             in the metadata log the controllers replicate (set {own}=PLAIN)"
        ),
    ))
}
