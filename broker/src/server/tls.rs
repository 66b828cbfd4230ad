//! TLS for the SSL listeners: the key and trust material named by each listener's
//! [`SslConfig`] loaded into a rustls server config (ring provider), once at start-up. PEM
//! (with encrypted PKCS#8 keys) and PKCS#12 stores are read; JKS is refused with how to
//! convert it. Everything that can be wrong with the material fails the start-up naming the
//! listener and the file or key.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use gregor_client::stores::{self, pem_certs, pem_key, Identity};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedCipherSuite};

use crate::config::principal_rules::PrincipalRule;
use crate::config::ssl::{
    ClientAuth, KeyStore, PemSource, Secret, SslConfig, TlsVersion, TrustStore,
};
use crate::config::Config;

/// Why an SSL listener's TLS material could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("listener {listener}: {reason}")]
pub struct TlsError {
    /// The listener.
    pub listener: String,
    /// What is wrong, naming the file or key.
    pub reason: String,
}

/// The principal name of a client certificate (DER): its subject DN (RFC 4514 text, as
/// Java's RFC 2253 form reads) mapped by the listener's `ssl.principal.mapping.rules`.
pub fn certificate_principal(der: &[u8], rules: &[PrincipalRule]) -> Result<String, String> {
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(der)
        .map_err(|e| format!("unreadable client certificate: {e}"))?;
    let dn = cert.tbs_certificate().subject().to_string();
    crate::config::principal_rules::map(rules, &dn)
}

/// The TLS acceptor of every SSL listener, by listener name, each following its files
/// (`server::tls_reload`). Reads files: call it off the reactor.
pub fn acceptors(
    config: &Config,
) -> Result<BTreeMap<String, Arc<super::tls_reload::ReloadingAcceptor>>, TlsError> {
    config
        .ssl_listeners
        .iter()
        .map(|(name, ssl)| {
            let acceptor =
                super::tls_reload::ReloadingAcceptor::load(name, ssl).map_err(|reason| {
                    TlsError {
                        listener: name.clone(),
                        reason,
                    }
                })?;
            Ok((name.clone(), Arc::new(acceptor)))
        })
        .collect()
}

/// The rustls server config for one listener; the error says what is wrong.
pub fn server_config(ssl: &SslConfig) -> Result<ServerConfig, String> {
    server_material(ssl).map(|(config, _)| config)
}

/// [`server_config`], and the certificate it serves (DER).
pub fn server_material(ssl: &SslConfig) -> Result<(ServerConfig, Vec<u8>), String> {
    let provider = Arc::new(provider(ssl)?);
    let (chain, key) = load_keystore(&ssl.keystore)?;
    let leaf = chain
        .first()
        .map(|c| c.as_ref().to_vec())
        .ok_or("the key store holds no certificate")?;
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = ssl
        .protocols
        .iter()
        .map(|v| match v {
            TlsVersion::Tls12 => &rustls::version::TLS12,
            TlsVersion::Tls13 => &rustls::version::TLS13,
        })
        .collect();
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(|e| {
            format!("ssl.enabled.protocols and ssl.cipher.suites leave nothing to speak: {e}")
        })?;
    let builder = match (ssl.client_auth, &ssl.truststore) {
        (ClientAuth::None, _) | (_, None) => builder.with_no_client_auth(),
        (auth, Some(trust)) => {
            let roots = Arc::new(load_truststore(trust)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
            let verifier = if auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| format!("the trust store cannot verify clients: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("the key store's certificate and key do not fit: {e}"))?;
    Ok((config, leaf))
}

/// A certificate's subject DN (RFC 4514 text) and SubjectAltNames (`DNS:host`, `IP:addr`,
/// `email:...`, `URI:...`, `DirName:...`), what Kafka compares when a listener's key store is
/// replaced through AlterConfigs.
pub fn certificate_names(der: &[u8]) -> Result<(String, BTreeSet<String>), String> {
    use x509_cert::der::Decode;
    use x509_cert::ext::pkix::name::GeneralName;
    use x509_cert::ext::pkix::SubjectAltName;
    let cert = x509_cert::Certificate::from_der(der)
        .map_err(|e| format!("unreadable certificate: {e}"))?;
    let tbs = cert.tbs_certificate();
    let sans = match tbs.get_extension::<SubjectAltName>() {
        Err(e) => return Err(format!("unreadable SubjectAltName extension: {e}")),
        Ok(None) => BTreeSet::new(),
        Ok(Some((_, san))) => san
            .0
            .iter()
            .map(|name| match name {
                GeneralName::DnsName(s) => format!("DNS:{s}"),
                GeneralName::Rfc822Name(s) => format!("email:{s}"),
                GeneralName::UniformResourceIdentifier(s) => format!("URI:{s}"),
                GeneralName::DirectoryName(n) => format!("DirName:{n}"),
                GeneralName::IpAddress(ip) => ip_text(ip.as_bytes()),
                other => format!("{other:?}"),
            })
            .collect(),
    };
    Ok((tbs.subject().to_string(), sans))
}

fn ip_text(bytes: &[u8]) -> String {
    let ip: Option<std::net::IpAddr> = match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(Into::into),
        16 => <[u8; 16]>::try_from(bytes).ok().map(Into::into),
        _ => None,
    };
    ip.map_or_else(|| format!("IP:{bytes:02x?}"), |ip| format!("IP:{ip}"))
}

/// The IANA name of a rustls cipher suite (rustls calls the TLS 1.3 ones `TLS13_*`).
fn iana_name(suite: &SupportedCipherSuite) -> Option<String> {
    let name = suite.suite().as_str()?;
    Some(match name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => name.to_string(),
    })
}

/// The ring provider, its cipher suites narrowed to `ssl.cipher.suites` when given.
fn provider(ssl: &SslConfig) -> Result<CryptoProvider, String> {
    let mut provider = rustls::crypto::ring::default_provider();
    if ssl.cipher_suites.is_empty() {
        return Ok(provider);
    }
    let mut chosen = Vec::new();
    for wanted in &ssl.cipher_suites {
        let suite = provider
            .cipher_suites
            .iter()
            .find(|s| iana_name(s).is_some_and(|n| n.eq_ignore_ascii_case(wanted)))
            .ok_or_else(|| {
                let known: Vec<String> = provider
                    .cipher_suites
                    .iter()
                    .filter_map(iana_name)
                    .collect();
                format!(
                    "ssl.cipher.suites: {wanted} is not a cipher suite rustls implements (it \
                     has {})",
                    known.join(", ")
                )
            })?;
        chosen.push(*suite);
    }
    provider.cipher_suites = chosen;
    Ok(provider)
}

fn load_keystore(ks: &KeyStore) -> Result<Identity, String> {
    match ks {
        KeyStore::Inline {
            chain,
            key,
            key_password,
        } => Ok((
            pem_certs(chain.as_bytes(), "ssl.keystore.certificate.chain")?,
            pem_key(
                key.expose().as_bytes(),
                key_password.as_ref().map(Secret::expose),
                "ssl.keystore.key",
            )?,
        )),
        KeyStore::File {
            path,
            store_type,
            password,
            key_password,
        } => stores::identity_file(
            path,
            *store_type,
            password.as_ref().map(Secret::expose),
            key_password.as_ref().map(Secret::expose),
        ),
    }
}

fn load_truststore(ts: &TrustStore) -> Result<RootCertStore, String> {
    let certs = match &ts.source {
        PemSource::Inline(pem) => pem_certs(pem.as_bytes(), "ssl.truststore.certificates")?,
        PemSource::File(path) => stores::certificates_file(
            path,
            ts.store_type,
            ts.password.as_ref().map(Secret::expose),
        )?,
    };
    stores::root_store(certs)
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
