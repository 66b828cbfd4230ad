//! Certificates (pure, no client): certificate authorities made and renewed, certificates
//! they issue, and what a PEM certificate says about itself.
//!
//! Keys are ECDSA P-256, generated with ring through rcgen, or RSA 3072 (generated with the
//! `rsa` crate, which ring cannot do; ring signs with them: the `rsa` crate never touches a
//! private key after making it, so its side channels in decryption and signing do not
//! apply). A CA renewed under
//! `renew-certificate` keeps its key and its subject, so every certificate it issued before
//! still chains to the new CA certificate: clients and brokers that trust either copy keep
//! verifying the other's certificates. User-supplied CAs may hold ECDSA or RSA keys, in
//! PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).

use std::collections::BTreeSet;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;

/// How far back a new certificate's validity starts, so a node whose clock runs a little
/// behind the operator's accepts it at once.
const BACKDATE_SECONDS: i64 = 3600;

/// Why a certificate could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused: a bad name, a key it cannot sign with.
    #[error("{0}")]
    Generate(#[from] rcgen::Error),
    /// A certificate or key that does not parse, or does not fit.
    #[error("{0}")]
    Invalid(String),
}

/// The kind of key a CA, and every certificate it issues, gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// ECDSA on the P-256 curve, signing with SHA-256.
    #[default]
    EcdsaP256,
    /// RSA with a 3072-bit modulus, signing PKCS#1 v1.5 with SHA-256.
    Rsa3072,
}

impl KeyAlgorithm {
    /// A new key of this kind.
    fn generate(self) -> Result<KeyPair, PkiError> {
        match self {
            KeyAlgorithm::EcdsaP256 => Ok(KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?),
            KeyAlgorithm::Rsa3072 => {
                use rsa::pkcs8::EncodePrivateKey;
                let key = rsa::PrivateKey::new(&mut RingRandom, 3072)
                    .map_err(|e| PkiError::Invalid(format!("RSA key generation: {e}")))?;
                let der = key
                    .to_pkcs8_der()
                    .map_err(|e| PkiError::Invalid(format!("RSA key encoding: {e}")))?;
                let der = rustls_pki_types::PrivatePkcs8KeyDer::from(der.as_bytes().to_vec());
                Ok(KeyPair::from_pkcs8_der_and_sign_algo(
                    &der,
                    &rcgen::PKCS_RSA_SHA256,
                )?)
            }
        }
    }

    /// The kind of `spki` (a SubjectPublicKeyInfo, DER), when it is one of these.
    fn of_spki(spki: &[u8]) -> Option<KeyAlgorithm> {
        use x509_parser::prelude::FromDer;
        use x509_parser::public_key::PublicKey;
        let (_, info) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki).ok()?;
        match info.parsed().ok()? {
            PublicKey::EC(point) if point.key_size() == 256 => Some(KeyAlgorithm::EcdsaP256),
            PublicKey::RSA(rsa) if rsa.key_size() == 3072 => Some(KeyAlgorithm::Rsa3072),
            _ => None,
        }
    }
}

/// ring's system random source, as the `rsa` crate takes randomness.
struct RingRandom;

impl rsa::rand_core::TryRng for RingRandom {
    type Error = std::io::Error;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut bytes = [0u8; 4];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut bytes = [0u8; 8];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        SystemRandom::new()
            .fill(dst)
            .map_err(|_| std::io::Error::other("the system random source failed"))
    }
}

impl rsa::rand_core::TryCryptoRng for RingRandom {}

/// A private key and its certificate, both PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyAndCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its PKCS#8 private key, PEM.
    pub key_pem: String,
}

/// When a new certificate is valid: unix seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    /// Not valid before (backdated by an hour from `now`).
    pub not_before: i64,
    /// Not valid after.
    pub not_after: i64,
}

impl Validity {
    /// Valid from `now` (backdated) for `days` days.
    pub fn days_from(now: i64, days: i64) -> Validity {
        Validity {
            not_before: now - BACKDATE_SECONDS,
            not_after: now + days * 86_400,
        }
    }

    /// The same, ending no later than `limit` (a certificate outliving its CA is useless).
    pub fn capped(self, limit: i64) -> Validity {
        Validity {
            not_after: self.not_after.min(limit),
            ..self
        }
    }
}

/// What a certificate says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// Subject DN, RFC 4514 text.
    pub subject: String,
    /// Issuer DN, RFC 4514 text.
    pub issuer: String,
    /// Not valid before, unix seconds.
    pub not_before: i64,
    /// Not valid after, unix seconds.
    pub not_after: i64,
    /// Whether it is a CA certificate (basic constraints).
    pub is_ca: bool,
    /// Its DNS and IP subject alternative names.
    pub names: BTreeSet<String>,
    /// Its SubjectPublicKeyInfo, DER.
    spki: Vec<u8>,
    /// The whole certificate, DER.
    der: Vec<u8>,
}

impl CertInfo {
    /// Whether `key_pem` is this certificate's private key.
    pub fn key_matches(&self, key_pem: &str) -> bool {
        use rcgen::PublicKeyData;
        KeyPair::from_pem(key_pem).is_ok_and(|k| k.subject_public_key_info() == self.spki)
    }

    /// The kind of its key, when Gregor makes keys of that kind.
    pub fn key_algorithm(&self) -> Option<KeyAlgorithm> {
        KeyAlgorithm::of_spki(&self.spki)
    }

    /// Whether `ca` signed this certificate (its subject is this one's issuer and its key
    /// verifies the signature).
    pub fn signed_by(&self, ca: &CertInfo) -> bool {
        if self.issuer != ca.subject {
            return false;
        }
        let (Ok((_, this)), Ok((_, ca))) = (
            x509_parser::parse_x509_certificate(&self.der),
            x509_parser::parse_x509_certificate(&ca.der),
        ) else {
            return false;
        };
        this.verify_signature(Some(ca.public_key())).is_ok()
    }

    /// The certificate, DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The certificate, PEM.
    pub fn pem(&self) -> String {
        use base64::Engine;
        let text = base64::engine::general_purpose::STANDARD.encode(&self.der);
        let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
        for line in text.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
        out
    }
}

/// Every certificate in `pem` (a bundle may hold several), in order.
pub fn inspect_all(pem: &str) -> Result<Vec<CertInfo>, PkiError> {
    let mut out = Vec::new();
    for block in Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| PkiError::Invalid(format!("not PEM: {e}")))?;
        if block.label != "CERTIFICATE" {
            continue;
        }
        let cert = block
            .parse_x509()
            .map_err(|e| PkiError::Invalid(format!("not an X.509 certificate: {e}")))?;
        out.push(info(&cert, &block.contents));
    }
    if out.is_empty() {
        return Err(PkiError::Invalid("no PEM certificate found".into()));
    }
    Ok(out)
}

/// The first certificate in `pem`.
pub fn inspect(pem: &str) -> Result<CertInfo, PkiError> {
    Ok(inspect_all(pem)?.remove(0))
}

fn info(cert: &X509Certificate<'_>, der: &[u8]) -> CertInfo {
    let mut names = BTreeSet::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => {
                    names.insert((*dns).to_string());
                }
                GeneralName::IPAddress(bytes) => {
                    if let Some(ip) = ip_of(bytes) {
                        names.insert(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        is_ca: cert.is_ca(),
        names,
        spki: cert.public_key().raw.to_vec(),
        der: der.to_vec(),
    }
}

fn ip_of(bytes: &[u8]) -> Option<std::net::IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        _ => None,
    }
}

/// The key a CA is made with: the one it has, or a new one of a kind.
#[derive(Clone, Copy, Debug)]
pub enum CaKey<'a> {
    /// This PKCS#8 PEM key.
    Existing(&'a str),
    /// A new key of this kind.
    New(KeyAlgorithm),
}

/// A certificate authority: a self-signed CA certificate with subject `O=gregor.dev,
/// CN=<common_name>` for `key`.
pub fn new_ca(
    common_name: &str,
    key: CaKey<'_>,
    validity: Validity,
) -> Result<KeyAndCert, PkiError> {
    let key = match key {
        CaKey::Existing(pem) => KeyPair::from_pem(pem)?,
        CaKey::New(algorithm) => algorithm.generate()?,
    };
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "gregor.dev");
    dn.push(DnType::CommonName, common_name);
    let cert = ca_params(dn, validity)?.self_signed(&key)?;
    Ok(KeyAndCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The CA `ca` with a new certificate: the same key and subject, new dates. Certificates it
/// issued before chain to the new certificate too. For CAs [`new_ca`] made (their subject is
/// UTF8String text, which is how this writes it back; a different encoding is refused, since
/// the old certificates would no longer chain).
pub fn renew_ca(ca: &KeyAndCert, validity: Validity) -> Result<KeyAndCert, PkiError> {
    let key = KeyPair::from_pem(&ca.key_pem)?;
    let current = inspect(&ca.cert_pem)?;
    if !current.key_matches(&ca.key_pem) {
        return Err(PkiError::Invalid(
            "the CA key does not match its certificate".into(),
        ));
    }
    let cert = ca_params(subject_of(&current)?, validity)?.self_signed(&key)?;
    same_subject(&current, cert.der())?;
    Ok(KeyAndCert {
        cert_pem: cert.pem(),
        key_pem: ca.key_pem.clone(),
    })
}

/// The certificate of CA `new` (its subject and key) signed by CA `old`, valid as `validity`
/// says (at most while `old` is). Served after a certificate `new` issued, it lets a client
/// that still trusts only `old` verify it (the chain goes on through this certificate to
/// `old`), while a client that trusts `new` finds its anchor at once: a CA's key is replaced
/// without a client losing the brokers.
pub fn cross_sign(
    new: &KeyAndCert,
    old: &KeyAndCert,
    validity: Validity,
) -> Result<String, PkiError> {
    let new_key = KeyPair::from_pem(&new.key_pem)?;
    let new_info = inspect(&new.cert_pem)?;
    let old_key = KeyPair::from_pem(&old.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&old.cert_pem, &old_key)?;
    let mut params = ca_params(subject_of(&new_info)?, validity)?;
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&new_key, &issuer)?;
    same_subject(&new_info, cert.der())?;
    Ok(cert.pem())
}

/// The subject of `cert` as rcgen builds names (UTF8String values).
fn subject_of(cert: &CertInfo) -> Result<DistinguishedName, PkiError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.der())
        .map_err(|e| PkiError::Invalid(format!("not an X.509 certificate: {e}")))?;
    let mut dn = DistinguishedName::new();
    for attribute in parsed.subject().iter_attributes() {
        let oid: Vec<u64> = attribute
            .attr_type()
            .iter()
            .map(Iterator::collect)
            .unwrap_or_default();
        let value = attribute
            .as_str()
            .map_err(|e| PkiError::Invalid(format!("a CA subject that is not text: {e}")))?;
        dn.push(DnType::from_oid(&oid), value);
    }
    Ok(dn)
}

/// Refuses a certificate (`der`) whose subject is not byte for byte `model`'s: what chained to
/// the one would not chain to the other.
fn same_subject(model: &CertInfo, der: &[u8]) -> Result<(), PkiError> {
    let parse = |der: &[u8]| {
        x509_parser::parse_x509_certificate(der)
            .map(|(_, c)| c.subject().as_raw().to_vec())
            .map_err(|e| PkiError::Invalid(format!("not an X.509 certificate: {e}")))
    };
    if parse(der)? != parse(model.der())? {
        return Err(PkiError::Invalid(format!(
            "the CA subject {} cannot be written back unchanged",
            model.subject
        )));
    }
    Ok(())
}

fn ca_params(dn: DistinguishedName, validity: Validity) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_dates(&mut params, validity)?;
    Ok(params)
}

fn set_dates(params: &mut CertificateParams, validity: Validity) -> Result<(), PkiError> {
    let at = |secs: i64| {
        OffsetDateTime::from_unix_timestamp(secs)
            .map_err(|e| PkiError::Invalid(format!("a date out of range: {e}")))
    };
    params.not_before = at(validity.not_before)?;
    params.not_after = at(validity.not_after)?;
    params.serial_number = Some(serial()?);
    Ok(())
}

/// A random positive 16-byte serial number.
fn serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| PkiError::Invalid("the system random source failed".into()))?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

/// What an issued certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// A node: the server side of its listeners and the client side towards its peers.
    Node,
    /// A client (a KafkaUser, the operator itself).
    Client,
}

/// The subject of an issued certificate: `O=gregor.dev, CN=<name>` (the nodes and the
/// operator), or `CN=<name>` alone (users, whose principal is `User:CN=<name>` as in Strimzi).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject<'a> {
    /// `O=gregor.dev, CN=<name>`.
    Gregor(&'a str),
    /// `CN=<name>`.
    CommonName(&'a str),
}

/// A new key and a certificate for it with `subject` and `names` (DNS names or IP
/// addresses) as subject alternative names, signed by `ca`.
pub fn issue(
    ca: &KeyAndCert,
    subject: Subject<'_>,
    names: &BTreeSet<String>,
    usage: Usage,
    validity: Validity,
) -> Result<KeyAndCert, PkiError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, &ca_key)?;
    // The CA's kind of key (a user-supplied CA of another kind: ECDSA P-256).
    let algorithm = inspect(&ca.cert_pem)?.key_algorithm().unwrap_or_default();
    let key = algorithm.generate()?;
    let mut params = CertificateParams::new(names.iter().cloned().collect::<Vec<_>>())?;
    let mut dn = DistinguishedName::new();
    let common_name = match subject {
        Subject::Gregor(name) => {
            dn.push(DnType::OrganizationName, "gregor.dev");
            name
        }
        Subject::CommonName(name) => name,
    };
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = match usage {
        Usage::Node => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
    };
    params.use_authority_key_identifier_extension = true;
    set_dates(&mut params, validity)?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(KeyAndCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A PKCS#12 trust store (for Java clients: `ssl.truststore.type=PKCS12`) holding `certs`,
/// each a trusted certificate entry, protected by `password`.
pub fn truststore_p12(certs: &[CertInfo], password: &str) -> Result<Vec<u8>, PkiError> {
    let mut store = p12_keystore::KeyStore::new();
    for (i, cert) in certs.iter().enumerate() {
        let cert = p12_keystore::Certificate::from_der(cert.der())
            .map_err(|e| PkiError::Invalid(format!("PKCS#12: {e}")))?;
        store.add_entry(
            &format!("ca-{i}"),
            p12_keystore::KeyStoreEntry::Certificate(cert),
        );
    }
    store
        .writer(password)
        .write()
        .map_err(|e| PkiError::Invalid(format!("PKCS#12: {e}")))
}

/// A PKCS#12 key store (for Java clients: `ssl.keystore.type=PKCS12`) holding `pair`'s key
/// with its certificate chain (the certificate, then `chain`), protected by `password`.
pub fn keystore_p12(
    pair: &KeyAndCert,
    chain: &[CertInfo],
    alias: &str,
    password: &str,
) -> Result<Vec<u8>, PkiError> {
    let p12 = |e: p12_keystore::error::Error| PkiError::Invalid(format!("PKCS#12: {e}"));
    let key_der = Pem::iter_from_buffer(pair.key_pem.as_bytes())
        .filter_map(Result::ok)
        .find(|p| p.label == "PRIVATE KEY")
        .ok_or_else(|| PkiError::Invalid("no PKCS#8 PEM private key".into()))?
        .contents;
    let key = p12_keystore::PrivateKey::from_der(&key_der).map_err(p12)?;
    let mut certs = vec![inspect(&pair.cert_pem)?];
    certs.extend(chain.iter().cloned());
    let certs = certs
        .iter()
        .map(|c| p12_keystore::Certificate::from_der(c.der()).map_err(p12))
        .collect::<Result<Vec<_>, _>>()?;
    let mut store = p12_keystore::KeyStore::new();
    let chain = p12_keystore::PrivateKeyChain::new(alias.as_bytes(), key, certs);
    store.add_entry(alias, p12_keystore::KeyStoreEntry::PrivateKeyChain(chain));
    store.writer(password).write().map_err(p12)
}

/// A random password of 32 letters and digits (for PKCS#12 stores).
pub fn password() -> Result<String, PkiError> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    // Bytes below the largest multiple of the alphabet's size map onto it evenly.
    let even = u8::try_from(256 / ALPHABET.len() * ALPHABET.len()).unwrap_or(u8::MAX);
    let random = SystemRandom::new();
    let mut out = String::with_capacity(32);
    let mut bytes = [0u8; 64];
    while out.len() < 32 {
        random
            .fill(&mut bytes)
            .map_err(|_| PkiError::Invalid("the system random source failed".into()))?;
        out.extend(
            bytes
                .iter()
                .filter(|b| **b < even)
                .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
                .take(32 - out.len()),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;
    const EC: CaKey<'static> = CaKey::New(KeyAlgorithm::EcdsaP256);

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn a_new_ca_is_a_ca_with_its_key_and_dates() {
        let ca = new_ca("events-cluster-ca v0", EC, Validity::days_from(NOW, 365)).unwrap();
        let info = inspect(&ca.cert_pem).unwrap();
        assert!(info.is_ca);
        assert_eq!(info.subject, "O=gregor.dev, CN=events-cluster-ca v0");
        assert_eq!(info.issuer, info.subject);
        assert_eq!(info.not_after, NOW + 365 * 86_400);
        assert_eq!(info.not_before, NOW - BACKDATE_SECONDS);
        assert!(info.key_matches(&ca.key_pem));
        assert!(info.signed_by(&info));
        let other = new_ca("other", EC, Validity::days_from(NOW, 1)).unwrap();
        assert!(!info.key_matches(&other.key_pem));
    }

    #[test]
    fn an_rsa_ca_issues_rsa_certificates_that_chain_and_fit_java_stores() {
        let ca = new_ca(
            "events-cluster-ca v0",
            CaKey::New(KeyAlgorithm::Rsa3072),
            Validity::days_from(NOW, 30),
        )
        .unwrap();
        let info = inspect(&ca.cert_pem).unwrap();
        assert_eq!(info.key_algorithm(), Some(KeyAlgorithm::Rsa3072));
        assert!(info.is_ca && info.key_matches(&ca.key_pem) && info.signed_by(&info));
        let leaf = issue(
            &ca,
            Subject::CommonName("alice"),
            &names(&["alice"]),
            Usage::Client,
            Validity::days_from(NOW, 30),
        )
        .unwrap();
        let leaf_info = inspect(&leaf.cert_pem).unwrap();
        assert_eq!(leaf_info.key_algorithm(), Some(KeyAlgorithm::Rsa3072));
        assert!(leaf_info.signed_by(&info) && leaf_info.key_matches(&leaf.key_pem));
        // Renewal keeps the RSA key; a PKCS#12 key store holds it.
        let renewed = renew_ca(&ca, Validity::days_from(NOW, 60)).unwrap();
        assert!(leaf_info.signed_by(&inspect(&renewed.cert_pem).unwrap()));
        let p12 = keystore_p12(&leaf, &[info], "alice", "secret").unwrap();
        let store = p12_keystore::KeyStore::from_pkcs12(
            &p12,
            "secret",
            p12_keystore::Pkcs12ImportPolicy::Relaxed,
        )
        .unwrap();
        assert_eq!(store.entries().count(), 1);
        // An ECDSA CA's certificates are ECDSA.
        let ec = new_ca("ec", EC, Validity::days_from(NOW, 1)).unwrap();
        let ec_leaf = issue(
            &ec,
            Subject::CommonName("bob"),
            &names(&["bob"]),
            Usage::Client,
            Validity::days_from(NOW, 1),
        )
        .unwrap();
        let ec_leaf = inspect(&ec_leaf.cert_pem).unwrap();
        assert_eq!(ec_leaf.key_algorithm(), Some(KeyAlgorithm::EcdsaP256));
    }

    #[test]
    fn a_renewed_ca_keeps_key_and_subject_so_what_it_issued_still_chains() {
        let ca = new_ca("events-cluster-ca v0", EC, Validity::days_from(NOW, 10)).unwrap();
        let leaf = issue(
            &ca,
            Subject::Gregor("events-0"),
            &names(&["events-0.events-nodes.kafka.svc", "10.0.0.7"]),
            Usage::Node,
            Validity::days_from(NOW, 10),
        )
        .unwrap();
        let renewed = renew_ca(&ca, Validity::days_from(NOW + 86_400, 365)).unwrap();
        assert_eq!(renewed.key_pem, ca.key_pem);
        let (old, new) = (
            inspect(&ca.cert_pem).unwrap(),
            inspect(&renewed.cert_pem).unwrap(),
        );
        assert_eq!(new.subject, old.subject);
        assert_ne!(new.der(), old.der());
        assert_eq!(new.not_after, NOW + 86_400 + 365 * 86_400);
        let leaf = inspect(&leaf.cert_pem).unwrap();
        assert!(leaf.signed_by(&old) && leaf.signed_by(&new));
        assert_eq!(
            leaf.names,
            names(&["events-0.events-nodes.kafka.svc", "10.0.0.7"])
        );
        assert!(!leaf.is_ca);
    }

    #[test]
    fn an_issued_certificate_is_signed_by_its_ca_only_and_ends_with_it() {
        let ca = new_ca("clients-ca v0", EC, Validity::days_from(NOW, 30)).unwrap();
        let other = new_ca("clients-ca v0", EC, Validity::days_from(NOW, 30)).unwrap();
        let ca_info = inspect(&ca.cert_pem).unwrap();
        let validity = Validity::days_from(NOW, 365).capped(ca_info.not_after);
        let user = issue(
            &ca,
            Subject::CommonName("alice"),
            &BTreeSet::new(),
            Usage::Client,
            validity,
        )
        .unwrap();
        let info = inspect(&user.cert_pem).unwrap();
        assert_eq!(info.subject, "CN=alice");
        let password = password().unwrap();
        let p12 = keystore_p12(&user, std::slice::from_ref(&ca_info), "alice", &password).unwrap();
        let store = p12_keystore::KeyStore::from_pkcs12(
            &p12,
            &password,
            p12_keystore::Pkcs12ImportPolicy::Relaxed,
        )
        .unwrap();
        let (_, chain) = store.private_key_chain().expect("a key entry");
        assert_eq!(chain.certs().len(), 2);
        assert_eq!(chain.certs()[1].as_der(), ca_info.der());
        assert_eq!(info.not_after, ca_info.not_after);
        assert!(info.signed_by(&ca_info));
        // The same subject, another key: not its issuer.
        assert!(!info.signed_by(&inspect(&other.cert_pem).unwrap()));
        assert!(info.key_matches(&user.key_pem));
    }

    #[test]
    fn a_cross_signed_ca_certificate_chains_a_new_key_to_the_old_ca() {
        let old = new_ca("events-cluster-ca v0", EC, Validity::days_from(NOW, 100)).unwrap();
        let new = new_ca("events-cluster-ca v1", EC, Validity::days_from(NOW, 365)).unwrap();
        let old_info = inspect(&old.cert_pem).unwrap();
        let validity = Validity::days_from(NOW, 365).capped(old_info.not_after);
        let cross = inspect(&cross_sign(&new, &old, validity).unwrap()).unwrap();
        let new_info = inspect(&new.cert_pem).unwrap();
        assert_eq!(cross.subject, new_info.subject);
        assert!(cross.is_ca && cross.key_matches(&new.key_pem));
        assert!(cross.signed_by(&old_info) && !cross.signed_by(&new_info));
        assert_eq!(cross.not_after, old_info.not_after);
        let leaf = issue(
            &new,
            Subject::Gregor("events-0"),
            &names(&["events-0.events-nodes.kafka.svc"]),
            Usage::Node,
            Validity::days_from(NOW, 30),
        )
        .unwrap();
        let leaf = inspect(&leaf.cert_pem).unwrap();
        // Trusting the new CA: directly; trusting the old: through the cross certificate.
        assert!(leaf.signed_by(&new_info) && leaf.signed_by(&cross));
        assert!(!leaf.signed_by(&old_info));
    }

    #[test]
    fn a_bundle_is_read_in_order_and_junk_is_refused() {
        let a = new_ca("a", EC, Validity::days_from(NOW, 1)).unwrap();
        let b = new_ca("b", EC, Validity::days_from(NOW, 1)).unwrap();
        let bundle = format!("{}{}", a.cert_pem, b.cert_pem);
        let all = inspect_all(&bundle).unwrap();
        assert_eq!(
            all.iter().map(|c| c.subject.as_str()).collect::<Vec<_>>(),
            ["O=gregor.dev, CN=a", "O=gregor.dev, CN=b"]
        );
        assert_eq!(
            inspect(&all[1].pem()).unwrap(),
            all[1],
            "PEM written back reads the same"
        );
        assert!(inspect("not a certificate").is_err());
        assert!(
            inspect(&a.key_pem).is_err(),
            "a key alone holds no certificate"
        );
    }

    #[test]
    fn a_truststore_holds_each_ca_as_a_trusted_entry() {
        let a = new_ca("a", EC, Validity::days_from(NOW, 1)).unwrap();
        let b = new_ca("b", EC, Validity::days_from(NOW, 1)).unwrap();
        let certs = [inspect(&a.cert_pem).unwrap(), inspect(&b.cert_pem).unwrap()];
        let password = password().unwrap();
        let p12 = truststore_p12(&certs, &password).unwrap();
        let store = p12_keystore::KeyStore::from_pkcs12(
            &p12,
            &password,
            p12_keystore::Pkcs12ImportPolicy::Relaxed,
        )
        .unwrap();
        let ders: BTreeSet<Vec<u8>> = store
            .entries()
            .filter_map(|(_, e)| match e {
                p12_keystore::KeyStoreEntry::Certificate(c) => Some(c.as_der().to_vec()),
                _ => None,
            })
            .collect();
        assert_eq!(
            ders,
            certs
                .iter()
                .map(|c| c.der().to_vec())
                .collect::<BTreeSet<_>>()
        );
        assert!(p12_keystore::KeyStore::from_pkcs12(
            &p12,
            "wrong",
            p12_keystore::Pkcs12ImportPolicy::Relaxed
        )
        .is_err());
    }

    #[test]
    fn passwords_are_32_letters_and_digits_and_differ() {
        let (a, b) = (password().unwrap(), password().unwrap());
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }
}
