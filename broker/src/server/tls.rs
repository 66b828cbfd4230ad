//! TLS for the SSL listeners: the key and trust material named by each listener's
//! [`SslConfig`] loaded into a rustls server config (ring provider), once at start-up. PEM
//! (with encrypted PKCS#8 keys) and PKCS#12 stores are read; JKS is refused with how to
//! convert it. Everything that can be wrong with the material fails the start-up naming the
//! listener and the file or key.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedCipherSuite};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::config::principal_rules::PrincipalRule;
use crate::config::ssl::{
    ClientAuth, KeyStore, PemSource, Secret, SslConfig, StoreType, TlsVersion, TrustStore, JKS_HINT,
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
    let provider = Arc::new(provider(ssl)?);
    let (chain, key) = load_keystore(&ssl.keystore)?;
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
    builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("the key store's certificate and key do not fit: {e}"))
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

/// Reads a file named by `key`.
fn read(path: &Path, key: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {key} {}: {e}", path.display()))
}

/// What a store file holds, by its first bytes.
fn detect(bytes: &[u8], declared: StoreType, key: &str, path: &Path) -> Result<StoreType, String> {
    // JKS and JCEKS magic numbers.
    if bytes.starts_with(&[0xfe, 0xed, 0xfe, 0xed]) || bytes.starts_with(&[0xce, 0xce, 0xce, 0xce])
    {
        return Err(format!(
            "{key} {} is a JKS store. {JKS_HINT}",
            path.display()
        ));
    }
    // Anywhere, not only first: `openssl pkcs12` output starts with "Bag Attributes" lines.
    let is_pem = bytes.windows(11).any(|w| w == b"-----BEGIN ");
    match declared {
        StoreType::Pkcs12 if is_pem => Err(format!(
            "{key} {} is PEM text but its store type is PKCS12",
            path.display()
        )),
        StoreType::Detect if is_pem => Ok(StoreType::Pem),
        StoreType::Detect => Ok(StoreType::Pkcs12),
        t => Ok(t),
    }
}

fn pem_certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what}: bad PEM certificate: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{what}: no certificate found"));
    }
    Ok(certs)
}

/// The one private key of PEM text: plain (PKCS#8, PKCS#1, SEC1) or encrypted PKCS#8
/// (`ENCRYPTED PRIVATE KEY`, decrypted with `ssl.key.password`).
fn pem_key(
    pem: &[u8],
    password: Option<&Secret>,
    what: &str,
) -> Result<PrivateKeyDer<'static>, String> {
    let text = String::from_utf8_lossy(pem);
    if text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(format!(
            "{what}: the private key is encrypted the legacy OpenSSL way, which is not \
             supported; convert it to encrypted PKCS#8 with `openssl pkcs8 -topk8 -v2 \
             aes-256-cbc -in key.pem -out key-pkcs8.pem` (as Kafka also requires)"
        ));
    }
    if let Some(der) = encrypted_pkcs8(&text, what)? {
        let password = password.ok_or_else(|| {
            format!("{what}: the private key is encrypted but ssl.key.password is not set")
        })?;
        let info = pkcs8::EncryptedPrivateKeyInfoRef::try_from(der.as_slice())
            .map_err(|e| format!("{what}: bad encrypted private key: {e}"))?;
        let doc = info.decrypt(password.expose()).map_err(|_| {
            format!("{what}: cannot decrypt the private key: wrong ssl.key.password?")
        })?;
        return Ok(PrivatePkcs8KeyDer::from(doc.as_bytes().to_vec()).into());
    }
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("{what}: no usable private key: {e}"))
}

/// The DER of an `ENCRYPTED PRIVATE KEY` PEM section, if there is one.
fn encrypted_pkcs8(text: &str, what: &str) -> Result<Option<Vec<u8>>, String> {
    use base64::Engine as _;
    const BEGIN: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----";
    const END: &str = "-----END ENCRYPTED PRIVATE KEY-----";
    let Some(start) = text.find(BEGIN) else {
        return Ok(None);
    };
    let body = &text[start + BEGIN.len()..];
    let end = body
        .find(END)
        .ok_or_else(|| format!("{what}: unterminated encrypted private key"))?;
    let b64: String = body[..end].chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map(Some)
        .map_err(|e| format!("{what}: bad encrypted private key: {e}"))
}

type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

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
                key_password.as_ref(),
                "ssl.keystore.key",
            )?,
        )),
        KeyStore::File {
            path,
            store_type,
            password,
            key_password,
        } => {
            const KEY: &str = "ssl.keystore.location";
            let bytes = read(path, KEY)?;
            let what = format!("{KEY} {}", path.display());
            match detect(&bytes, *store_type, KEY, path)? {
                StoreType::Pkcs12 => pkcs12_identity(&bytes, password, key_password, &what),
                _ => {
                    // The key first: a legacy-encrypted key has headers the PEM reader refuses.
                    let key = pem_key(&bytes, key_password.as_ref(), &what)?;
                    Ok((pem_certs(&bytes, &what)?, key))
                }
            }
        }
    }
}

/// The private key and its chain from a PKCS#12 key store, opened with
/// `ssl.keystore.password` (else `ssl.key.password`, else no password).
fn pkcs12_identity(
    bytes: &[u8],
    password: &Option<Secret>,
    key_password: &Option<Secret>,
    what: &str,
) -> Result<Identity, String> {
    let mut last = String::new();
    let passwords = [password.as_ref(), key_password.as_ref()];
    for pw in passwords
        .into_iter()
        .flatten()
        .map(Secret::expose)
        .chain([""])
    {
        let store = match p12_keystore::KeyStore::from_pkcs12(
            bytes,
            pw,
            p12_keystore::Pkcs12ImportPolicy::Strict,
        ) {
            Ok(s) => s,
            Err(e) => {
                last = e.to_string();
                continue;
            }
        };
        let (_, chain) = store.private_key_chain().ok_or_else(|| {
            format!("{what}: the PKCS12 store holds no private key with its certificate")
        })?;
        let certs: Vec<CertificateDer<'static>> = chain
            .certs()
            .iter()
            .map(|c| CertificateDer::from(c.as_der().to_vec()))
            .collect();
        let key = PrivatePkcs8KeyDer::from(chain.key().as_der().to_vec()).into();
        return Ok((certs, key));
    }
    Err(format!(
        "{what}: cannot open the PKCS12 store (wrong ssl.keystore.password?): {last}"
    ))
}

fn load_truststore(ts: &TrustStore) -> Result<RootCertStore, String> {
    const KEY: &str = "ssl.truststore.location";
    let certs = match &ts.source {
        PemSource::Inline(pem) => pem_certs(pem.as_bytes(), "ssl.truststore.certificates")?,
        PemSource::File(path) => {
            let bytes = read(path, KEY)?;
            let what = format!("{KEY} {}", path.display());
            match detect(&bytes, ts.store_type, KEY, path)? {
                StoreType::Pkcs12 => pkcs12_certs(&bytes, ts.password.as_ref(), &what)?,
                _ => pem_certs(&bytes, &what)?,
            }
        }
    };
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| format!("{KEY}: a trusted certificate is unusable: {e}"))?;
    }
    Ok(roots)
}

/// Every certificate of a PKCS#12 trust store.
fn pkcs12_certs(
    bytes: &[u8],
    password: Option<&Secret>,
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let store = p12_keystore::KeyStore::from_pkcs12(
        bytes,
        password.map_or("", Secret::expose),
        p12_keystore::Pkcs12ImportPolicy::Raw,
    )
    .map_err(|e| {
        format!("{what}: cannot open the PKCS12 store (wrong ssl.truststore.password?): {e}")
    })?;
    let certs: Vec<CertificateDer<'static>> = store
        .entries()
        .filter_map(|(_, e)| match e {
            p12_keystore::KeyStoreEntry::Certificate(c) => {
                Some(CertificateDer::from(c.as_der().to_vec()))
            }
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(format!("{what}: the PKCS12 store holds no certificate"));
    }
    Ok(certs)
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
