//! A client's security settings from Kafka's client properties (the file of a tool's
//! `--command-config`): `security.protocol`, the SASL mechanism and its JAAS login, and the
//! TLS trust and key stores, checked and loaded once into a [`ClientSecurity`] that every
//! connection of a [`Cluster`](crate::Cluster) shares. Unknown keys are ignored, as Kafka's
//! clients do; a bad value is refused naming its key, and passwords are never printed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::jaas::{parse_jaas, OAUTHBEARER_MODULE, PLAIN_MODULE, SCRAM_MODULE};
use crate::sasl::Mechanism;
use crate::stores::{self, Identity, StoreType};

/// Kafka's `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecurityProtocol {
    /// Plain TCP, no authentication (Kafka's default).
    #[default]
    Plaintext,
    /// TLS.
    Ssl,
    /// SASL over plain TCP.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// What is wrong with a client properties file.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// The properties file could not be read.
    #[error("cannot read client properties {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A key has a value that cannot be used (or one it needs is missing).
    #[error("{key}: {reason}")]
    Invalid {
        /// The key, e.g. `sasl.mechanism`.
        key: String,
        /// What is wrong; never quotes a password.
        reason: String,
    },
}

fn invalid(key: &str, reason: impl Into<String>) -> SecurityError {
    SecurityError::Invalid {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

/// The SASL login: mechanism, user and password (from `sasl.jaas.config`).
#[derive(Clone, PartialEq, Eq)]
pub struct SaslCredentials {
    /// `sasl.mechanism`.
    pub mechanism: Mechanism,
    /// The login module's `username`.
    pub username: String,
    /// The login module's `password`; never printed.
    password: String,
    /// OAUTHBEARER: the scope an unsecured token claims (`unsecuredLoginListClaim_scope`).
    scope: Vec<String>,
}

impl SaslCredentials {
    /// The password, for the exchange that sends or proves it.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The scope an OAUTHBEARER token claims.
    pub fn scope(&self) -> &[String] {
        &self.scope
    }
}

impl std::fmt::Debug for SaslCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslCredentials")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// How a client connects: the protocol, the TLS settings when it uses TLS, the SASL login
/// when it uses SASL. Cheap to clone (the TLS config is shared).
#[derive(Clone, Default)]
pub struct ClientSecurity {
    /// `security.protocol`.
    protocol: SecurityProtocol,
    /// The rustls config, for SSL and SASL_SSL.
    tls: Option<Arc<ClientConfig>>,
    /// The login, for SASL_PLAINTEXT and SASL_SSL.
    sasl: Option<SaslCredentials>,
}

impl std::fmt::Debug for ClientSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSecurity")
            .field("protocol", &self.protocol)
            .field("tls", &self.tls.is_some())
            .field("sasl", &self.sasl)
            .finish()
    }
}

impl ClientSecurity {
    /// PLAINTEXT: no TLS, no authentication.
    pub fn plaintext() -> ClientSecurity {
        ClientSecurity::default()
    }

    /// Reads a Kafka client properties file (`--command-config`) and loads the stores it
    /// names. Reads files: call it off the reactor or before it starts.
    pub fn from_file(path: &Path) -> Result<ClientSecurity, SecurityError> {
        let text = std::fs::read_to_string(path).map_err(|source| SecurityError::Read {
            path: path.to_owned(),
            source,
        })?;
        ClientSecurity::from_properties(&crate::properties::parse_properties(&text))
    }

    /// The settings of parsed client properties; reads the store files they name.
    pub fn from_properties(p: &BTreeMap<String, String>) -> Result<ClientSecurity, SecurityError> {
        let get = |k: &str| p.get(k).map(String::as_str);
        let protocol = match get("security.protocol")
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            None | Some("PLAINTEXT") => SecurityProtocol::Plaintext,
            Some("SSL") => SecurityProtocol::Ssl,
            Some("SASL_PLAINTEXT") => SecurityProtocol::SaslPlaintext,
            Some("SASL_SSL") => SecurityProtocol::SaslSsl,
            Some(other) => {
                return Err(invalid(
                    "security.protocol",
                    format!(
                        "{other} is not a security protocol; expected PLAINTEXT, SSL, \
                         SASL_PLAINTEXT or SASL_SSL"
                    ),
                ))
            }
        };
        let sasl = if protocol.uses_sasl() {
            Some(sasl_credentials(&get)?)
        } else {
            None
        };
        let tls = if protocol.uses_tls() {
            Some(Arc::new(tls_config(&get)?))
        } else {
            None
        };
        Ok(ClientSecurity {
            protocol,
            tls,
            sasl,
        })
    }

    /// `security.protocol`.
    pub fn protocol(&self) -> SecurityProtocol {
        self.protocol
    }

    /// The rustls config, when the protocol uses TLS.
    pub fn tls(&self) -> Option<&Arc<ClientConfig>> {
        self.tls.as_ref()
    }

    /// The SASL login, when the protocol uses SASL.
    pub fn sasl(&self) -> Option<&SaslCredentials> {
        self.sasl.as_ref()
    }
}

/// `sasl.mechanism` and the `username` and `password` of `sasl.jaas.config`.
fn sasl_credentials<'a>(
    get: &impl Fn(&str) -> Option<&'a str>,
) -> Result<SaslCredentials, SecurityError> {
    const MECHANISM: &str = "sasl.mechanism";
    const JAAS: &str = "sasl.jaas.config";
    let name = get(MECHANISM).unwrap_or("GSSAPI");
    let mechanism = Mechanism::from_name(name).ok_or_else(|| {
        let default = if name == "GSSAPI" {
            " (GSSAPI, Kerberos, is Kafka's default: set sasl.mechanism)"
        } else {
            ""
        };
        invalid(
            MECHANISM,
            format!(
                "{name} is not supported{default}; Gregor's tools speak PLAIN, SCRAM-SHA-256, \
                 SCRAM-SHA-512 and OAUTHBEARER (unsecured tokens)"
            ),
        )
    })?;
    let text = get(JAAS)
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| invalid(JAAS, "is required with a SASL security.protocol"))?;
    let module = parse_jaas(text).map_err(|e| invalid(JAAS, e))?;
    let expected = match mechanism {
        Mechanism::Plain => PLAIN_MODULE,
        Mechanism::Scram(_) => SCRAM_MODULE,
        Mechanism::OAuthBearer => OAUTHBEARER_MODULE,
    };
    if module.class != expected {
        return Err(invalid(
            JAAS,
            format!(
                "names login module {}; sasl.mechanism={name} needs {expected}",
                module.class
            ),
        ));
    }
    let option = |key: &str| {
        module
            .option(key)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| invalid(JAAS, format!("the login module has no {key} option")))
    };
    if mechanism == Mechanism::OAuthBearer {
        // An unsecured token naming this principal (no identity provider is spoken).
        // Kafka's list-claim syntax: the first character is the delimiter ("|a|b").
        let scope = module
            .option("unsecuredLoginListClaim_scope")
            .map(|v| {
                let mut chars = v.chars();
                let delimiter = chars.next();
                let rest = chars.as_str();
                delimiter.map_or_else(Vec::new, |d| {
                    rest.split(d)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
            })
            .unwrap_or_default();
        return Ok(SaslCredentials {
            mechanism,
            username: option("unsecuredLoginStringClaim_sub")?,
            password: String::new(),
            scope,
        });
    }
    Ok(SaslCredentials {
        mechanism,
        username: option("username")?,
        password: option("password")?,
        scope: Vec::new(),
    })
}

/// A store type key's value (`Detect` when absent); `inline` stores must be PEM.
fn store_type<'a>(
    get: &impl Fn(&str) -> Option<&'a str>,
    key: &str,
) -> Result<StoreType, SecurityError> {
    get(key).map_or(Ok(StoreType::Detect), |v| {
        StoreType::parse(v).map_err(|why| invalid(key, format!("{v}: {why}")))
    })
}

/// The rustls config of the `ssl.*` keys.
fn tls_config<'a>(get: &impl Fn(&str) -> Option<&'a str>) -> Result<ClientConfig, SecurityError> {
    let verify_hostname = match get("ssl.endpoint.identification.algorithm").map(str::trim) {
        None => true,
        Some(v) if v.eq_ignore_ascii_case("https") => true,
        Some("") => false,
        Some(other) => {
            return Err(invalid(
                "ssl.endpoint.identification.algorithm",
                format!("{other}: expected https or empty (no host name check)"),
            ))
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = Arc::new(trust_roots(get)?);
    let webpki = WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
        .build()
        .map_err(|e| invalid("ssl.truststore.location", e.to_string()))?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("ssl.enabled.protocols", e.to_string()))?;
    let builder = if verify_hostname {
        builder.with_webpki_verifier(webpki)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyHostName(webpki)))
    };
    match identity(get)? {
        None => Ok(builder.with_no_client_auth()),
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| invalid("ssl.keystore.location", format!("unusable key store: {e}"))),
    }
}

/// The trusted certificates: `ssl.truststore.location` or `ssl.truststore.certificates`.
fn trust_roots<'a>(
    get: &impl Fn(&str) -> Option<&'a str>,
) -> Result<rustls::RootCertStore, SecurityError> {
    const LOCATION: &str = "ssl.truststore.location";
    const INLINE: &str = "ssl.truststore.certificates";
    let store_type = store_type(get, "ssl.truststore.type")?;
    let certs: Vec<CertificateDer<'static>> = match (get(LOCATION), get(INLINE)) {
        (Some(path), None) => {
            stores::certificates_file(Path::new(path), store_type, get("ssl.truststore.password"))
                .map_err(|e| invalid(LOCATION, e))?
        }
        (None, Some(pem)) => {
            if store_type == StoreType::Pkcs12 {
                return Err(invalid(INLINE, "inline certificates must be of type PEM"));
            }
            stores::pem_certs(pem.as_bytes(), INLINE).map_err(|e| invalid(INLINE, e))?
        }
        (Some(_), Some(_)) => {
            return Err(invalid(
                LOCATION,
                format!("give either {LOCATION} or {INLINE}, not both"),
            ))
        }
        (None, None) => {
            return Err(invalid(
                LOCATION,
                format!(
                    "TLS needs {LOCATION} or {INLINE}: Gregor's tools have no default trust \
                     store"
                ),
            ))
        }
    };
    stores::root_store(certs).map_err(|e| invalid(LOCATION, e))
}

/// The client certificate and key for mutual TLS, when a key store is given.
fn identity<'a>(get: &impl Fn(&str) -> Option<&'a str>) -> Result<Option<Identity>, SecurityError> {
    const LOCATION: &str = "ssl.keystore.location";
    let store_type = store_type(get, "ssl.keystore.type")?;
    let password = get("ssl.keystore.password");
    let key_password = get("ssl.key.password");
    match (
        get(LOCATION),
        get("ssl.keystore.certificate.chain"),
        get("ssl.keystore.key"),
    ) {
        (None, None, None) => Ok(None),
        (Some(path), None, None) => {
            if store_type == StoreType::Pem && password.is_some() {
                return Err(invalid(
                    "ssl.keystore.password",
                    "cannot be given with a PEM key store, only ssl.key.password (as in Kafka)",
                ));
            }
            stores::identity_file(Path::new(path), store_type, password, key_password)
                .map(Some)
                .map_err(|e| invalid(LOCATION, e))
        }
        (None, Some(chain), Some(key)) => {
            const KEY: &str = "ssl.keystore.key";
            if store_type == StoreType::Pkcs12 {
                return Err(invalid(KEY, "an inline key store must be of type PEM"));
            }
            let chain = stores::pem_certs(chain.as_bytes(), "ssl.keystore.certificate.chain")
                .map_err(|e| invalid("ssl.keystore.certificate.chain", e))?;
            let key =
                stores::pem_key(key.as_bytes(), key_password, KEY).map_err(|e| invalid(KEY, e))?;
            Ok(Some((chain, key)))
        }
        _ => Err(invalid(
            LOCATION,
            "give either ssl.keystore.location or both ssl.keystore.certificate.chain and \
             ssl.keystore.key",
        )),
    }
}

/// `ssl.endpoint.identification.algorithm=` (empty): the chain is verified against the trust
/// store as ever, only a certificate not naming the host is let through, as in Kafka.
#[derive(Debug)]
struct AnyHostName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // WebPkiServerVerifier checks the chain first and the name last, so a name error
        // means the chain was trusted.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
#[path = "security_tests.rs"]
mod tests;
