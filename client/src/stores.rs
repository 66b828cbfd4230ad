//! Key and trust stores, as Kafka's `ssl.keystore.*` and `ssl.truststore.*` keys name them,
//! read into rustls types: PEM (certificates, a plain or encrypted PKCS#8 key) and PKCS#12;
//! JKS is refused with how to convert it. The broker's listeners and the client's
//! `--command-config` both load their material here. Errors are text naming the key or file.

use std::path::Path;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// How to convert a JKS store, quoted in every JKS refusal.
pub const JKS_HINT: &str = "JKS key stores are not supported: convert it to PKCS12 with \
     `keytool -importkeystore -srcstoretype JKS -srckeystore store.jks -deststoretype PKCS12 \
     -destkeystore store.p12` (or to PEM) and set the store type to PKCS12 (or PEM)";

/// `ssl.keystore.type` / `ssl.truststore.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreType {
    /// PEM text: certificates and (for a key store) one private key.
    Pem,
    /// A PKCS#12 file.
    Pkcs12,
    /// Not given: told from the file's content when it is loaded (PEM text or PKCS#12).
    Detect,
}

impl StoreType {
    /// The store type a `*.type` value names (case-insensitive); the error says why not.
    pub fn parse(value: &str) -> Result<StoreType, &'static str> {
        match value.to_ascii_uppercase().as_str() {
            "PEM" => Ok(StoreType::Pem),
            "PKCS12" => Ok(StoreType::Pkcs12),
            "JKS" | "JCEKS" => Err(JKS_HINT),
            _ => Err("expected PEM or PKCS12"),
        }
    }
}

/// The chain and key of the key store file at `path` (`ssl.keystore.location`): PEM with both
/// in one file, or PKCS#12 opened with `password` (else `key_password`).
pub fn identity_file(
    path: &Path,
    store_type: StoreType,
    password: Option<&str>,
    key_password: Option<&str>,
) -> Result<Identity, String> {
    const KEY: &str = "ssl.keystore.location";
    let bytes = read(path, KEY)?;
    let what = format!("{KEY} {}", path.display());
    match detect(&bytes, store_type, KEY, path)? {
        StoreType::Pkcs12 => pkcs12_identity(&bytes, password, key_password, &what),
        _ => {
            // The key first: a legacy-encrypted key has headers the PEM reader refuses.
            let key = pem_key(&bytes, key_password, &what)?;
            Ok((pem_certs(&bytes, &what)?, key))
        }
    }
}

/// The certificates of the trust store file at `path` (`ssl.truststore.location`).
pub fn certificates_file(
    path: &Path,
    store_type: StoreType,
    password: Option<&str>,
) -> Result<Vec<CertificateDer<'static>>, String> {
    const KEY: &str = "ssl.truststore.location";
    let bytes = read(path, KEY)?;
    let what = format!("{KEY} {}", path.display());
    match detect(&bytes, store_type, KEY, path)? {
        StoreType::Pkcs12 => pkcs12_certs(&bytes, password, &what),
        _ => pem_certs(&bytes, &what),
    }
}

/// A rustls root store of trusted certificates.
pub fn root_store(certs: Vec<CertificateDer<'static>>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| format!("ssl.truststore: a trusted certificate is unusable: {e}"))?;
    }
    Ok(roots)
}

/// Reads a file named by `key` (`ssl.keystore.location`, ...).
pub fn read(path: &Path, key: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {key} {}: {e}", path.display()))
}

/// What a store file holds, by its first bytes: JKS is refused with how to convert it, and
/// [`StoreType::Detect`] becomes PEM or PKCS12.
pub fn detect(
    bytes: &[u8],
    declared: StoreType,
    key: &str,
    path: &Path,
) -> Result<StoreType, String> {
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

/// Every certificate of PEM text; `what` names its source in the error.
pub fn pem_certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
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
pub fn pem_key(
    pem: &[u8],
    password: Option<&str>,
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
        let doc = info.decrypt(password).map_err(|_| {
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

/// A certificate chain (leaf first) and its private key.
pub type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// The private key and its chain from a PKCS#12 key store, opened with
/// `ssl.keystore.password` (else `ssl.key.password`, else no password).
pub fn pkcs12_identity(
    bytes: &[u8],
    password: Option<&str>,
    key_password: Option<&str>,
    what: &str,
) -> Result<Identity, String> {
    let mut last = String::new();
    for pw in [password, key_password].into_iter().flatten().chain([""]) {
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

/// Every certificate of a PKCS#12 trust store.
pub fn pkcs12_certs(
    bytes: &[u8],
    password: Option<&str>,
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let store = p12_keystore::KeyStore::from_pkcs12(
        bytes,
        password.unwrap_or(""),
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
