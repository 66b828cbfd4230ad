//! Listener security: each listener's protocol from `listener.security.protocol.map`, and for
//! the SSL ones their `ssl.*` keys in Kafka's names, global or per listener
//! (`listener.name.<lowercase name>.ssl.X` wins over `ssl.X`). Parsing here reads no file: the
//! key and trust material is loaded when the listener starts (`server::tls`), so a config that
//! names a missing file still validates and the start-up fails naming the file.
//!
//! Every listener may use any of the four protocols: the client listeners, the inter-broker
//! listener (replication fetches, secured by the client properties `super::peer` derives) and
//! the controller listener (the quorum's RPCs; `super::peer::ControllerListener`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{ConfigError, Listener, Props};

pub use gregor_client::stores::{StoreType, JKS_HINT};

/// A secret from the config (a password or an inline private key): never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret read from the config.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the code that decrypts with it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[hidden]")
    }
}

/// Whether DescribeConfigs must hide a key's value, as Kafka does for its PASSWORD-typed keys:
/// store and key passwords and inline keys and certificates, global or per listener. An
/// invalid value of one is not quoted in errors either.
pub fn is_sensitive_key(key: &str) -> bool {
    let key = key
        .strip_prefix("listener.name.")
        .and_then(|rest| rest.split_once('.'))
        .map_or(key, |(_, k)| k);
    matches!(
        key,
        "ssl.keystore.password"
            | "ssl.key.password"
            | "ssl.truststore.password"
            | "ssl.keystore.key"
            | "ssl.keystore.certificate.chain"
            | "ssl.truststore.certificates"
    ) || key.ends_with(".sasl.jaas.config")
        || key == "sasl.jaas.config"
}

/// Where PEM text comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PemSource {
    /// A file (`*.location`).
    File(PathBuf),
    /// Inline in the config (`ssl.keystore.certificate.chain`, `ssl.truststore.certificates`).
    Inline(String),
}

/// The listener's own certificate chain and private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyStore {
    /// A file: PEM (chain and key in one file), PKCS#12, or either (detected).
    File {
        /// `ssl.keystore.location`.
        path: PathBuf,
        /// `ssl.keystore.type`.
        store_type: StoreType,
        /// `ssl.keystore.password`.
        password: Option<Secret>,
        /// `ssl.key.password`.
        key_password: Option<Secret>,
    },
    /// `ssl.keystore.certificate.chain` and `ssl.keystore.key`, PEM in the config.
    Inline {
        /// The certificate chain, leaf first.
        chain: String,
        /// The private key (PKCS#8, or encrypted PKCS#8 with `ssl.key.password`).
        key: Secret,
        /// `ssl.key.password`.
        key_password: Option<Secret>,
    },
}

/// The certificates client certificates are checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustStore {
    /// The certificates' source.
    pub source: PemSource,
    /// `ssl.truststore.type` (inline certificates are PEM).
    pub store_type: StoreType,
    /// `ssl.truststore.password` (PKCS#12).
    pub password: Option<Secret>,
}

/// `ssl.client.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// A client must present a certificate the trust store trusts.
    Required,
    /// A client may present one; if it does, it must be trusted.
    Requested,
    /// No client certificate is asked for.
    None,
}

/// `ssl.enabled.protocols` entries rustls speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLSv1.2.
    Tls12,
    /// TLSv1.3.
    Tls13,
}

/// One SSL listener's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SslConfig {
    /// The key store.
    pub keystore: KeyStore,
    /// The trust store, if any.
    pub truststore: Option<TrustStore>,
    /// `ssl.client.auth`.
    pub client_auth: ClientAuth,
    /// `ssl.enabled.protocols`.
    pub protocols: Vec<TlsVersion>,
    /// `ssl.cipher.suites` as given (IANA names); empty means rustls's defaults. Checked
    /// against what rustls implements when the listener starts.
    pub cipher_suites: Vec<String>,
    /// `ssl.principal.mapping.rules`: how a client certificate's DN becomes the principal.
    pub principal_rules: Vec<super::principal_rules::PrincipalRule>,
    /// `ssl.allow.dn.changes`: a dynamic key store update may change the certificate's DN.
    pub allow_dn_changes: bool,
    /// `ssl.allow.san.changes`: it may drop SubjectAltNames.
    pub allow_san_changes: bool,
}

/// One listener's `ssl.*` keys: the per-listener key if present, else the global one.
struct ListenerKeys<'a> {
    p: &'a Props<'a>,
    prefix: String,
}

impl ListenerKeys<'_> {
    /// The key that holds `name` for this listener, and its value.
    fn get(&self, name: &str) -> Option<(String, &str)> {
        let own = format!("{}{name}", self.prefix);
        match self.p.get(&own) {
            Some(v) => Some((own, v)),
            None => self.p.get(name).map(|v| (name.to_string(), v)),
        }
        .filter(|(_, v)| !v.is_empty())
    }

    /// A boolean key, false when absent.
    fn flag(&self, name: &str) -> Result<bool, ConfigError> {
        match self.get(name) {
            None => Ok(false),
            Some((key, v)) => match v.to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(Props::invalid(&key, v, "expected true or false")),
            },
        }
    }

    fn secret(&self, name: &str) -> Option<Secret> {
        self.get(name).map(|(_, v)| Secret(v.to_string()))
    }

    fn store_type(&self, name: &str) -> Result<StoreType, ConfigError> {
        match self.get(name) {
            None => Ok(StoreType::Detect),
            Some((key, v)) => StoreType::parse(v).map_err(|why| Props::invalid(&key, v, why)),
        }
    }
}

/// The security protocol of `name` by `listener.security.protocol.map` (else the name itself;
/// a controller listener missing from the map is PLAINTEXT).
fn protocol_of(map: &[String], name: &str, controller_listener_names: &[String]) -> String {
    map.iter()
        .find_map(|e| {
            e.split_once(':')
                .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_ascii_uppercase())
        })
        .unwrap_or_else(|| {
            if controller_listener_names.iter().any(|c| c == name) {
                "PLAINTEXT".into()
            } else {
                name.to_string()
            }
        })
}

/// What [`listener_security`] needs to know about the node's listeners.
pub(super) struct ListenerLayout<'a> {
    /// `listeners`.
    pub listeners: &'a [Listener],
    /// `advertised.listeners`.
    pub advertised: &'a [Listener],
    /// `controller.listener.names`.
    pub controller_listener_names: &'a [String],
    /// `inter.broker.listener.name`.
    pub inter_broker_listener_name: &'a str,
    /// Whether the node has the broker role (the inter-broker listener matters only then).
    pub is_broker: bool,
}

/// The secured listeners by name: the `ssl.*` settings of the SSL and SASL_SSL ones, the
/// SASL settings of the SASL_PLAINTEXT and SASL_SSL ones (the controller listener apart), and
/// how this node connects to the others.
#[derive(Debug, Default)]
pub(super) struct SecuredListeners {
    /// Client listeners that speak TLS.
    pub ssl: BTreeMap<String, SslConfig>,
    /// Client listeners that authenticate with SASL.
    pub sasl: BTreeMap<String, super::sasl::SaslConfig>,
    /// The controller listener, when the node is part of a quorum with one.
    pub controller: Option<super::peer::ControllerListener>,
    /// How this broker connects to the other brokers' inter-broker listener.
    pub inter_broker_client: super::peer::ClientProps,
}

/// The protocol's (TLS, SASL) flags, or a refusal naming the listener.
fn protocol_flags(name: &str, proto: &str) -> Result<(bool, bool), String> {
    match proto {
        "PLAINTEXT" => Ok((false, false)),
        "SSL" => Ok((true, false)),
        "SASL_PLAINTEXT" => Ok((false, true)),
        "SASL_SSL" => Ok((true, true)),
        _ => Err(format!(
            "listener {name} uses unknown security protocol {proto}; expected PLAINTEXT, SSL, \
             SASL_PLAINTEXT or SASL_SSL"
        )),
    }
}

/// Checks every listener's security protocol and parses the `ssl.*` and SASL keys of the
/// secured ones, the controller listener's (which a broker-only node connects to without
/// listening on it), and the client side of the inter-broker listener.
pub(super) fn listener_security(
    p: &Props,
    layout: &ListenerLayout,
) -> Result<SecuredListeners, ConfigError> {
    const MAP: &str = "listener.security.protocol.map";
    let map = p.list(MAP);
    let protocol = |name: &str| protocol_of(&map, name, layout.controller_listener_names);
    let mut secured = SecuredListeners::default();
    for l in layout.listeners {
        let proto = protocol(&l.name);
        let (tls, sasl) =
            protocol_flags(&l.name, &proto).map_err(|why| Props::invalid(MAP, &proto, why))?;
        if layout.controller_listener_names.contains(&l.name) {
            continue;
        }
        if tls {
            secured.ssl.insert(l.name.clone(), parse_ssl(p, &l.name)?);
        }
        if sasl {
            secured
                .sasl
                .insert(l.name.clone(), super::sasl::parse(p, &l.name)?);
        }
    }
    if let Some(name) = layout.controller_listener_names.first() {
        let proto = protocol(name);
        secured.controller = Some(controller_listener(p, name, &proto)?);
    }
    if let Some(ib) = inter_broker_listener(layout) {
        let proto = protocol(ib);
        protocol_flags(ib, &proto).map_err(|why| Props::invalid(MAP, &proto, why))?;
        secured.inter_broker_client =
            super::peer::client_props(p, ib, &proto, "sasl.mechanism.inter.broker.protocol")?;
    }
    Ok(secured)
}

/// The controller listener `name`'s settings, both sides.
fn controller_listener(
    p: &Props,
    name: &str,
    proto: &str,
) -> Result<super::peer::ControllerListener, ConfigError> {
    const MECHANISM: &str = "sasl.mechanism.controller.protocol";
    let (tls, sasl) = protocol_flags(name, proto)
        .map_err(|why| Props::invalid("listener.security.protocol.map", proto, why))?;
    let sasl = if sasl {
        let config = super::sasl::parse(p, name)?;
        super::peer::check_controller_sasl(p, name, &config)?;
        if let Some(m) = p.get(MECHANISM).filter(|m| *m != "PLAIN" && *m != "GSSAPI") {
            return Err(Props::invalid(
                MECHANISM,
                m,
                format!("controller listener {name} authenticates only with PLAIN"),
            ));
        }
        Some(config)
    } else {
        None
    };
    Ok(super::peer::ControllerListener {
        name: name.to_string(),
        ssl: if tls { Some(parse_ssl(p, name)?) } else { None },
        sasl,
        client: super::peer::client_props(p, name, proto, MECHANISM)?,
    })
}

/// The listener other brokers fetch from: the one `inter.broker.listener.name` names, or, when
/// that is not advertised, the first advertised one (the address the broker registers).
fn inter_broker_listener<'a>(layout: &'a ListenerLayout) -> Option<&'a str> {
    if !layout.is_broker {
        return None;
    }
    let name = layout.inter_broker_listener_name;
    if layout.advertised.iter().any(|l| l.name == name) {
        Some(name)
    } else {
        layout.advertised.first().map(|l| l.name.as_str())
    }
}

/// The `ssl.*` settings of SSL listener `name`.
fn parse_ssl(p: &Props, name: &str) -> Result<SslConfig, ConfigError> {
    let k = ListenerKeys {
        p,
        prefix: format!("listener.name.{}.", name.to_ascii_lowercase()),
    };
    let keystore = parse_keystore(&k, name)?;
    let truststore = parse_truststore(&k)?;
    let client_auth = match k.get("ssl.client.auth") {
        None => ClientAuth::None,
        Some((key, v)) => match v.to_ascii_lowercase().as_str() {
            "required" => ClientAuth::Required,
            "requested" => ClientAuth::Requested,
            "none" => ClientAuth::None,
            _ => {
                return Err(Props::invalid(
                    &key,
                    v,
                    "expected required, requested or none",
                ))
            }
        },
    };
    if client_auth != ClientAuth::None && truststore.is_none() {
        return Err(Props::invalid(
            &format!("{}ssl.client.auth", k.prefix),
            &format!("{client_auth:?}").to_ascii_lowercase(),
            format!(
                "listener {name} asks for client certificates but has no trust store \
                 (ssl.truststore.location or ssl.truststore.certificates)"
            ),
        ));
    }
    let principal_rules = match k.get("ssl.principal.mapping.rules") {
        None => vec![super::principal_rules::PrincipalRule::Default],
        Some((key, v)) => {
            super::principal_rules::parse(v).map_err(|e| Props::invalid(&key, v, e))?
        }
    };
    Ok(SslConfig {
        allow_dn_changes: k.flag("ssl.allow.dn.changes")?,
        allow_san_changes: k.flag("ssl.allow.san.changes")?,
        principal_rules,
        keystore,
        truststore,
        client_auth,
        protocols: parse_protocols(&k)?,
        cipher_suites: k
            .get("ssl.cipher.suites")
            .map(|(key, _)| p.list(&key))
            .unwrap_or_default(),
    })
}

fn parse_protocols(k: &ListenerKeys) -> Result<Vec<TlsVersion>, ConfigError> {
    let Some((key, v)) = k.get("ssl.enabled.protocols") else {
        return Ok(vec![TlsVersion::Tls12, TlsVersion::Tls13]);
    };
    let mut out = Vec::new();
    for proto in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        out.push(match proto {
            "TLSv1.2" => TlsVersion::Tls12,
            "TLSv1.3" => TlsVersion::Tls13,
            other => {
                return Err(Props::invalid(
                    &key,
                    v,
                    format!("{other} is not supported (rustls speaks TLSv1.2 and TLSv1.3)"),
                ))
            }
        });
    }
    out.sort_unstable();
    out.dedup();
    if out.is_empty() {
        return Err(Props::invalid(&key, v, "no protocol enabled"));
    }
    Ok(out)
}

fn parse_keystore(k: &ListenerKeys, name: &str) -> Result<KeyStore, ConfigError> {
    let store_type = k.store_type("ssl.keystore.type")?;
    let key_password = k.secret("ssl.key.password");
    let location = k.get("ssl.keystore.location");
    let chain = k.get("ssl.keystore.certificate.chain");
    let key = k.get("ssl.keystore.key");
    match (location, chain, key) {
        (Some((lkey, path)), None, None) => {
            let password = k.secret("ssl.keystore.password");
            if store_type == StoreType::Pem && password.is_some() {
                return Err(Props::invalid(
                    &lkey,
                    path,
                    "ssl.keystore.password cannot be given with a PEM key store, only \
                     ssl.key.password (as in Kafka)",
                ));
            }
            Ok(KeyStore::File {
                path: PathBuf::from(path),
                store_type,
                password,
                key_password,
            })
        }
        (None, Some((_, chain)), Some((kkey, key))) => {
            if store_type == StoreType::Pkcs12 {
                return Err(Props::invalid(
                    &kkey,
                    "[hidden]",
                    "an inline key store must be of type PEM",
                ));
            }
            Ok(KeyStore::Inline {
                chain: chain.to_string(),
                key: Secret(key.to_string()),
                key_password,
            })
        }
        (None, None, None) => Err(ConfigError::Missing(format!(
            "{}ssl.keystore.location (or ssl.keystore.certificate.chain and ssl.keystore.key) \
             for SSL listener {name}",
            k.prefix
        ))),
        _ => Err(Props::invalid(
            "ssl.keystore.location",
            "",
            format!(
                "listener {name}: give either ssl.keystore.location or both \
                 ssl.keystore.certificate.chain and ssl.keystore.key"
            ),
        )),
    }
}

fn parse_truststore(k: &ListenerKeys) -> Result<Option<TrustStore>, ConfigError> {
    let store_type = k.store_type("ssl.truststore.type")?;
    let password = k.secret("ssl.truststore.password");
    match (
        k.get("ssl.truststore.location"),
        k.get("ssl.truststore.certificates"),
    ) {
        (Some((_, path)), None) => Ok(Some(TrustStore {
            source: PemSource::File(PathBuf::from(path)),
            store_type,
            password,
        })),
        (None, Some((key, certs))) => {
            if store_type == StoreType::Pkcs12 {
                return Err(Props::invalid(
                    &key,
                    "",
                    "inline trust certificates must be of type PEM",
                ));
            }
            Ok(Some(TrustStore {
                source: PemSource::Inline(certs.to_string()),
                store_type: StoreType::Pem,
                password,
            }))
        }
        (None, None) => Ok(None),
        (Some((key, v)), Some(_)) => Err(Props::invalid(
            &key,
            v,
            "give either ssl.truststore.location or ssl.truststore.certificates, not both",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse_properties, Config};
    use super::*;

    fn config(extra: &str) -> Result<Config, ConfigError> {
        Config::from_properties(parse_properties(&format!(
            "node.id=1\nlisteners=PLAINTEXT://:9092,SSL://:9093\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SSL:SSL\n{extra}"
        )))
    }

    fn ssl(extra: &str) -> SslConfig {
        let c = config(extra).expect("valid");
        c.ssl_listeners["SSL"].clone()
    }

    #[test]
    fn a_global_pem_keystore_applies_to_the_ssl_listener() {
        let s = ssl("ssl.keystore.type=PEM\nssl.keystore.location=/k.pem\n");
        assert_eq!(
            s.keystore,
            KeyStore::File {
                path: "/k.pem".into(),
                store_type: StoreType::Pem,
                password: None,
                key_password: None
            }
        );
        assert_eq!(s.client_auth, ClientAuth::None);
        assert_eq!(s.protocols, vec![TlsVersion::Tls12, TlsVersion::Tls13]);
        assert!(s.truststore.is_none());
    }

    #[test]
    fn a_per_listener_key_wins_over_the_global_one() {
        let s = ssl("ssl.keystore.location=/global.p12\nssl.keystore.type=PEM\n\
             listener.name.ssl.ssl.keystore.location=/mine.p12\n\
             listener.name.ssl.ssl.keystore.type=PKCS12\n\
             listener.name.ssl.ssl.keystore.password=secret\n\
             ssl.truststore.location=/ca.pem\nssl.client.auth=required\n\
             listener.name.ssl.ssl.enabled.protocols=TLSv1.3\n");
        let KeyStore::File {
            path,
            store_type,
            password,
            ..
        } = s.keystore
        else {
            panic!("a file key store")
        };
        assert_eq!(path, PathBuf::from("/mine.p12"));
        assert_eq!(store_type, StoreType::Pkcs12);
        assert_eq!(
            password.map(|p| p.expose().to_string()),
            Some("secret".into())
        );
        assert_eq!(s.client_auth, ClientAuth::Required);
        assert_eq!(s.protocols, vec![TlsVersion::Tls13]);
        assert_eq!(
            s.truststore.map(|t| t.source),
            Some(PemSource::File("/ca.pem".into()))
        );
    }

    #[test]
    fn inline_pem_keys_are_read_and_never_printed() {
        let s = ssl(
            "ssl.keystore.type=PEM\nssl.keystore.certificate.chain=-----BEGIN CERTIFICATE-----\n\
             ssl.keystore.key=TOPSECRETKEY\nssl.truststore.certificates=CA\n",
        );
        assert!(matches!(s.keystore, KeyStore::Inline { .. }));
        assert!(!format!("{s:?}").contains("TOPSECRETKEY"));
        assert_eq!(
            s.truststore.map(|t| t.source),
            Some(PemSource::Inline("CA".into()))
        );
    }

    #[test]
    fn a_jks_store_is_refused_with_how_to_convert_it() {
        for extra in [
            "ssl.keystore.location=/k.jks\nssl.keystore.type=JKS\n",
            "ssl.keystore.location=/k.pem\nssl.truststore.location=/t.jks\n\
             listener.name.ssl.ssl.truststore.type=JKS\n",
        ] {
            let err = config(extra).expect_err("JKS").to_string();
            assert!(err.contains("keytool -importkeystore"), "{err}");
            assert!(err.contains("JKS"), "{err}");
        }
    }

    #[test]
    fn an_ssl_listener_without_a_keystore_is_refused_naming_the_key() {
        let err = config("").expect_err("no keystore").to_string();
        assert!(
            err.contains("listener.name.ssl.ssl.keystore.location"),
            "{err}"
        );
    }

    #[test]
    fn a_pem_keystore_password_is_refused_as_kafka_does() {
        let err = config(
            "ssl.keystore.type=PEM\nssl.keystore.location=/k.pem\nssl.keystore.password=x\n",
        )
        .expect_err("PEM with a store password")
        .to_string();
        assert!(err.contains("only ssl.key.password"), "{err}");
    }

    #[test]
    fn client_auth_without_a_truststore_is_refused() {
        let err = config("ssl.keystore.location=/k.pem\nssl.client.auth=required\n")
            .expect_err("no truststore")
            .to_string();
        assert!(err.contains("no trust store"), "{err}");
    }

    #[test]
    fn old_protocols_are_refused_naming_them() {
        let err = config("ssl.keystore.location=/k.pem\nssl.enabled.protocols=TLSv1.2,TLSv1.1\n")
            .expect_err("TLSv1.1")
            .to_string();
        assert!(err.contains("TLSv1.1 is not supported"), "{err}");
    }

    #[test]
    fn a_sasl_ssl_listener_needs_both_its_tls_and_its_sasl_keys() {
        let base = "node.id=1\nlisteners=PLAINTEXT://:9092,SECURE://:9094\n\
                    listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SECURE:SASL_SSL\n";
        let parse = |extra: &str| {
            Config::from_properties(parse_properties(&format!("{base}{extra}")))
                .map_err(|e| e.to_string())
        };
        let err = parse("sasl.enabled.mechanisms=SCRAM-SHA-512\n").expect_err("no keystore");
        assert!(err.contains("ssl.keystore.location"), "{err}");
        let c = parse("sasl.enabled.mechanisms=SCRAM-SHA-512\nssl.keystore.location=/k.pem\n")
            .expect("SASL_SSL");
        assert!(c.ssl_listeners.contains_key("SECURE"));
        assert!(c.sasl_listeners.contains_key("SECURE"));
        let err = parse("listener.security.protocol.map=SECURE:SASL_GSS\n").expect_err("unknown");
        assert!(err.contains("unknown security protocol SASL_GSS"), "{err}");
    }

    const CONTROLLER: &str = "node.id=1\nprocess.roles=broker,controller\n\
        controller.quorum.voters=1@localhost:9093\ncontroller.listener.names=CONTROLLER\n\
        listeners=PLAINTEXT://:9092,CONTROLLER://:9093\n";

    fn controller(extra: &str) -> Result<Config, String> {
        Config::from_properties(parse_properties(&format!("{CONTROLLER}{extra}")))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_controller_listener_takes_ssl_and_plain_on_both_sides() {
        let c = controller(
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:SASL_SSL\n\
             listener.name.controller.ssl.keystore.location=/c.p12\n\
             listener.name.controller.ssl.keystore.password=ks-secret\n\
             ssl.truststore.location=/ca.pem\n\
             listener.name.controller.sasl.enabled.mechanisms=PLAIN\n\
             sasl.mechanism.controller.protocol=PLAIN\n\
             listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.\
             plain.PlainLoginModule required username=\"ctl\" password=\"pw\" user_ctl=\"pw\";\n",
        )
        .expect("SASL_SSL controller");
        let l = c.controller_listener.expect("controller listener");
        assert!(l.ssl.is_some() && l.sasl.is_some());
        let props = l.client.properties();
        assert_eq!(props["security.protocol"], "SASL_SSL");
        assert_eq!(props["ssl.keystore.location"], "/c.p12");
        assert_eq!(props["ssl.truststore.location"], "/ca.pem");
        assert_eq!(props["sasl.mechanism"], "PLAIN");
        // The controller listener is not a client listener.
        assert!(!c.ssl_listeners.contains_key("CONTROLLER"));
        let shown = format!("{:?}", l.client);
        assert!(
            !shown.contains("ks-secret") && !shown.contains("pw"),
            "{shown}"
        );
    }

    #[test]
    fn the_controller_listener_refuses_scram_and_a_missing_login() {
        let map = "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:SASL_PLAINTEXT\n";
        let err = controller(&format!(
            "{map}sasl.enabled.mechanisms=SCRAM-SHA-256\nsasl.mechanism.controller.protocol=PLAIN\n"
        ))
        .expect_err("SCRAM controller");
        assert!(err.contains("can authenticate only with PLAIN"), "{err}");
        let jaas = "listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.\
                    security.plain.PlainLoginModule required user_ctl=\"pw\";\n";
        let err = controller(&format!("{map}sasl.enabled.mechanisms=PLAIN\n{jaas}"))
            .expect_err("GSSAPI default");
        assert!(
            err.contains("set sasl.mechanism.controller.protocol"),
            "{err}"
        );
        let err = controller(&format!(
            "{map}sasl.enabled.mechanisms=PLAIN\n{jaas}sasl.mechanism.controller.protocol=SCRAM-SHA-512\n"
        ))
        .expect_err("SCRAM login");
        assert!(err.contains("authenticates only with PLAIN"), "{err}");
    }

    #[test]
    fn the_inter_broker_listener_gets_client_properties_from_its_own_keys() {
        let c = config(
            "ssl.keystore.location=/k.pem\nssl.truststore.location=/ca.pem\n\
             inter.broker.listener.name=SSL\n",
        )
        .expect("SSL inter-broker");
        let props = c.inter_broker_client.properties();
        assert_eq!(props["security.protocol"], "SSL");
        assert_eq!(props["ssl.truststore.location"], "/ca.pem");
        // Only an SSL listener: other brokers fetch from it.
        let c = Config::from_properties(parse_properties(
            "node.id=1\nlisteners=SSL://:9093\nssl.keystore.location=/k.pem\n",
        ))
        .expect("SSL only");
        assert_eq!(c.inter_broker_client.protocol(), "SSL");
        let err = config(
            "ssl.keystore.location=/k.pem\ninter.broker.listener.name=SSL\n\
             security.inter.broker.protocol=SSL\n",
        )
        .expect_err("both")
        .to_string();
        assert!(err.contains("may not both be set"), "{err}");
    }

    #[test]
    fn passwords_and_inline_keys_are_sensitive() {
        assert!(is_sensitive_key("ssl.keystore.password"));
        assert!(is_sensitive_key("listener.name.ssl.ssl.key.password"));
        assert!(is_sensitive_key("listener.name.external.ssl.keystore.key"));
        assert!(!is_sensitive_key("ssl.keystore.location"));
        assert!(!is_sensitive_key("num.partitions"));
    }
}
