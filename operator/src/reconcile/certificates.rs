//! The cluster CA, the clients CA and the nodes' certificates, kept in Secrets.
//!
//! Each CA lives in two Secrets, in Strimzi's shape so tooling made for it fits:
//! `<cluster>-<ca>` holds the key (`ca.key`, PKCS#8 PEM) and `<cluster>-<ca>-cert` the
//! certificate (`ca.crt`, PEM; `ca.p12` and `ca.password`, a PKCS#12 trust store for Java
//! clients), where `<ca>` is `cluster-ca` or `clients-ca`. A generated CA is made on the
//! first reconcile and its certificate renewed `renewalDays` before it expires, or at once
//! when its certificate Secret carries `gregor.dev/force-renew: "true"`. Renewal keeps the key
//! and the subject, so every certificate issued before still verifies against the new one. A
//! user-supplied CA (`generateCertificateAuthority: false`) is only read: the operator issues
//! with it and reports its expiry, and says so in `CertificateExpiring` once it is within
//! its renewal window.
//!
//! The nodes' certificates, signed by the cluster CA, live in `<cluster>-node-certs`:
//! `<pod>.crt` (the node's certificate, then the CA's), `<pod>.key`, and `<pod>.pem` (the key
//! and the chain in one file, what `ssl.keystore.type=PEM` reads). Each names every address a
//! client or peer uses for that node (see [`node_names`]). One is issued again when its
//! names change, when the cluster CA no longer verifies it, or within its renewal window.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::ByteString;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use super::access::Access;
use super::ReconcileError;
use crate::build::objects::{meta, FIELD_MANAGER};
use crate::crd::cluster::{CaPhase, CaStatus, CertificateAuthority, ExpirationPolicy};
use crate::crd::KafkaCluster;
use crate::pki::{self, CaKey, CertInfo, KeyAndCert, Usage, Validity};
use crate::validate::ValidatedCluster;

/// How many times a CA's certificate was renewed, on its certificate Secret.
pub const CERT_GENERATION_ANNOTATION: &str = "gregor.dev/ca-cert-generation";
/// Set to `"true"` on a CA's certificate Secret to renew the certificate now.
pub const FORCE_RENEW_ANNOTATION: &str = "gregor.dev/force-renew";
/// How many times a CA's key was replaced, on its key Secret.
pub const KEY_GENERATION_ANNOTATION: &str = "gregor.dev/ca-key-generation";
/// Set to `"true"` on a CA's key Secret to replace the key now.
pub const FORCE_REPLACE_ANNOTATION: &str = "gregor.dev/force-replace";
/// Set to `"true"` on a CA's certificate Secret to stop trusting the previous CA now (its
/// clients have moved to the new one), rather than when it expires.
pub const DROP_PREVIOUS_ANNOTATION: &str = "gregor.dev/drop-previous-ca";
/// The key of the CA certificate Secret holding the current CA certificate signed by the
/// previous key, while the previous CA is still trusted.
const CROSS_KEY: &str = "cross.crt";

const DAY: i64 = 86_400;

/// One of the cluster's two CAs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    /// Signs the nodes' certificates.
    Cluster,
    /// Signs TLS users' certificates.
    Clients,
}

impl Which {
    /// Both CAs.
    pub const ALL: [Which; 2] = [Which::Cluster, Which::Clients];

    /// The CA's `ca` label in the metrics (one of [`crate::metrics::CA_LABELS`]).
    pub fn label(self) -> &'static str {
        match self {
            Which::Cluster => "cluster",
            Which::Clients => "clients",
        }
    }

    fn part(self) -> &'static str {
        match self {
            Which::Cluster => "cluster-ca",
            Which::Clients => "clients-ca",
        }
    }

    fn field(self) -> &'static str {
        match self {
            Which::Cluster => "spec.clusterCa",
            Which::Clients => "spec.clientsCa",
        }
    }

    /// The Secret holding the CA's key.
    pub fn key_secret(self, cluster: &str) -> String {
        format!("{cluster}-{}", self.part())
    }

    /// The Secret holding the CA's certificate, which clients mount.
    pub fn cert_secret(self, cluster: &str) -> String {
        format!("{cluster}-{}-cert", self.part())
    }
}

/// The principal of every node of `cluster` on a mutual TLS listener (its certificate's
/// subject): a super user when the cluster has authorization.
pub fn node_principal(cluster: &str) -> String {
    format!("User:CN={},O=gregor.dev", node_common_name(cluster))
}

/// The principal the operator connects to `cluster` as: a super user.
pub fn operator_principal(cluster: &str) -> String {
    format!("User:CN={},O=gregor.dev", operator_common_name(cluster))
}

fn node_common_name(cluster: &str) -> String {
    format!("{cluster}-node")
}

fn operator_common_name(cluster: &str) -> String {
    format!("{cluster}-operator")
}

/// The Secret holding the operator's own certificate for `cluster` (`operator.crt`, the
/// certificate then the cluster CA's; `operator.key`).
pub fn operator_secret(cluster: &str) -> String {
    format!("{cluster}-operator-certs")
}

/// The Secret holding the nodes' certificates.
pub fn nodes_secret(cluster: &str) -> String {
    format!("{cluster}-node-certs")
}

/// What the certificates step did and found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The cluster CA as it now is.
    pub cluster_ca: Option<CaStatus>,
    /// The clients CA as it now is.
    pub clients_ca: Option<CaStatus>,
    /// What keeps certificates from being issued (a user-supplied CA missing or broken).
    pub problems: Vec<String>,
    /// User-supplied CAs within their renewal window.
    pub expiring: Vec<String>,
    /// The earliest time something is due for renewal (unix seconds).
    pub next_renewal: Option<i64>,
    /// The notAfter (unix seconds) of each CA's current certificate, for the metrics: every
    /// CA made, renewed or read this reconcile.
    pub ca_not_after: Vec<(Which, i64)>,
}

impl Outcome {
    /// The notAfter of CA `which`'s current certificate, if this reconcile has that CA.
    pub fn not_after(&self, which: Which) -> Option<i64> {
        self.ca_not_after
            .iter()
            .find(|(w, _)| *w == which)
            .map(|(_, at)| *at)
    }

    /// Notes that something is due for renewal at `at`.
    fn due(&mut self, at: i64) {
        self.next_renewal = Some(self.next_renewal.map_or(at, |n| n.min(at)));
    }
}

/// The CA's two Secrets as read.
struct Stored {
    key: Option<Secret>,
    cert: Option<Secret>,
}

impl Stored {
    fn key_pem(&self) -> Option<String> {
        text(self.key.as_ref()?, "ca.key")
    }

    fn cert_pem(&self) -> Option<String> {
        text(self.cert.as_ref()?, "ca.crt")
    }

    fn cert_generation(&self) -> i64 {
        self.cert
            .as_ref()
            .and_then(|s| s.annotations().get(CERT_GENERATION_ANNOTATION))
            .and_then(|g| g.parse().ok())
            .unwrap_or(0)
    }

    fn key_generation(&self) -> i64 {
        self.key
            .as_ref()
            .and_then(|s| s.annotations().get(KEY_GENERATION_ANNOTATION))
            .and_then(|g| g.parse().ok())
            .unwrap_or(0)
    }

    fn force_renew(&self) -> bool {
        self.cert
            .as_ref()
            .and_then(|s| s.annotations().get(FORCE_RENEW_ANNOTATION))
            .is_some_and(|v| v == "true")
    }

    fn drop_previous(&self) -> bool {
        self.cert
            .as_ref()
            .and_then(|s| s.annotations().get(DROP_PREVIOUS_ANNOTATION))
            .is_some_and(|v| v == "true")
    }

    fn force_replace(&self) -> bool {
        self.key
            .as_ref()
            .and_then(|s| s.annotations().get(FORCE_REPLACE_ANNOTATION))
            .is_some_and(|v| v == "true")
    }

    /// The certificates of `ca.crt`: the current one first, then previous ones still trusted.
    fn certs(&self) -> Vec<CertInfo> {
        self.cert_pem()
            .and_then(|p| pki::inspect_all(&p).ok())
            .unwrap_or_default()
    }

    fn cross(&self) -> Option<CertInfo> {
        pki::inspect(&text(self.cert.as_ref()?, CROSS_KEY)?).ok()
    }
}

/// A Secret's value under `key`, as UTF-8 text.
fn text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

/// What became of a CA this reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// Made anew: no usable key was stored.
    Created,
    /// A new certificate for the stored key (renewal, or a lost certificate remade).
    Renewed,
    /// A new key and certificate; the previous CA stays trusted.
    Replaced,
}

/// A usable CA and what happened to it.
struct Ca {
    /// The current key and certificate (alone, not the trust bundle).
    pair: KeyAndCert,
    info: CertInfo,
    /// Earlier CA certificates still trusted (after a key replacement, until they expire).
    previous: Vec<CertInfo>,
    /// The current certificate signed by the previous key, while `previous` is trusted.
    cross: Option<CertInfo>,
    generation: i64,
    key_generation: i64,
    change: Option<Change>,
}

impl Ca {
    /// What to trust: the current certificate, then the previous ones.
    fn trust_pem(&self) -> String {
        std::iter::once(&self.info)
            .chain(&self.previous)
            .map(CertInfo::pem)
            .collect()
    }

    /// What follows an issued certificate in its chain: the cross-signed certificate while
    /// the previous CA is trusted (clients trusting only it verify through it), else the
    /// current one.
    fn chain(&self) -> &CertInfo {
        self.cross.as_ref().unwrap_or(&self.info)
    }

    /// The earliest time a previous CA stops being trusted.
    fn previous_until(&self) -> Option<i64> {
        self.previous.iter().map(|c| c.not_after).min()
    }
}

/// The CA a generated `which` should be now, from what is stored: kept, renewed, its key
/// replaced, remade for its stored key, or created.
fn plan_generated(
    which: Which,
    cluster: &str,
    settings: &CertificateAuthority,
    stored: &Stored,
    now: i64,
) -> Result<Ca, pki::PkiError> {
    let validity_days = i64::from(settings.validity_days);
    let validity = Validity::days_from(now, validity_days);
    let renewal = i64::from(settings.renewal_days) * DAY;
    let algorithm = pki::KeyAlgorithm::from(settings.key_algorithm);
    let new_key = CaKey::New(algorithm);
    let (generation, key_generation) = (stored.cert_generation(), stored.key_generation());
    let key = stored.key_pem();
    let mut certs = stored.certs().into_iter();
    let current = match (&key, certs.next()) {
        (Some(key), Some(info)) if info.is_ca && info.key_matches(key) => Some((
            KeyAndCert {
                cert_pem: info.pem(),
                key_pem: key.clone(),
            },
            info,
        )),
        _ => None,
    };
    // Previous CAs stay trusted until they expire (or the user says clients have moved),
    // with the cross-signed certificate that chains the current key to them.
    let previous: Vec<CertInfo> = certs
        .filter(|c| now < c.not_after && !stored.drop_previous())
        .collect();
    let cross = stored.cross().filter(|c| {
        !previous.is_empty()
            && now < c.not_after
            && current
                .as_ref()
                .is_some_and(|(_, info)| c.subject == info.subject)
    });
    let name = |generation: i64| format!("{cluster}-{} v{generation}", which.part());
    let Some((pair, info)) = current else {
        // The key without a certificate that fits it: a certificate for it again, under the
        // subject it was made with, so what it issued still verifies.
        let (pair, change, generation) = match key {
            Some(k) if rcgen::KeyPair::from_pem(&k).is_ok() => (
                pki::new_ca(&name(key_generation), CaKey::Existing(&k), validity)?,
                Change::Renewed,
                generation + 1,
            ),
            _ => (
                pki::new_ca(&name(0), new_key, validity)?,
                Change::Created,
                0,
            ),
        };
        let info = pki::inspect(&pair.cert_pem)?;
        let key_generation = if change == Change::Created {
            0
        } else {
            key_generation
        };
        return Ok(Ca {
            pair,
            info,
            previous: Vec::new(),
            cross: None,
            generation,
            key_generation,
            change: Some(change),
        });
    };
    let due = now >= info.not_after - renewal;
    let replace = stored.force_replace()
        || info.key_algorithm() != Some(algorithm)
        || (due && settings.certificate_expiration_policy == ExpirationPolicy::ReplaceKey);
    if replace {
        let new = pki::new_ca(&name(key_generation + 1), new_key, validity)?;
        let cross_validity = Validity::days_from(now, validity_days).capped(info.not_after);
        let cross = pki::inspect(&pki::cross_sign(&new, &pair, cross_validity)?)?;
        let mut trusted = vec![info];
        trusted.extend(previous);
        let info = pki::inspect(&new.cert_pem)?;
        return Ok(Ca {
            pair: new,
            info,
            previous: trusted,
            cross: Some(cross),
            generation: generation + 1,
            key_generation: key_generation + 1,
            change: Some(Change::Replaced),
        });
    }
    let (pair, change, generation) = if stored.force_renew() || due {
        (
            pki::renew_ca(&pair, validity)?,
            Some(Change::Renewed),
            generation + 1,
        )
    } else {
        (pair, None, generation)
    };
    let info = pki::inspect(&pair.cert_pem)?;
    // Without its cross-signed certificate a previous CA cannot help anyone: dropped.
    let previous = if cross.is_some() {
        previous
    } else {
        Vec::new()
    };
    Ok(Ca {
        pair,
        info,
        previous,
        cross,
        generation,
        key_generation,
        change,
    })
}

/// A user-supplied `which`, checked; the error names the Secret and what is wrong.
fn read_supplied(which: Which, cluster: &str, stored: &Stored) -> Result<Ca, String> {
    let (key_name, cert_name) = (which.key_secret(cluster), which.cert_secret(cluster));
    let supplied = format!(
        "{}.generateCertificateAuthority is false, so the CA must be supplied",
        which.field()
    );
    let cert = stored
        .cert_pem()
        .ok_or_else(|| format!("{supplied}: Secret {cert_name} with a PEM ca.crt is missing"))?;
    let key = stored
        .key_pem()
        .ok_or_else(|| format!("{supplied}: Secret {key_name} with a ca.key is missing"))?;
    let info = pki::inspect(&cert).map_err(|e| format!("{cert_name} ca.crt: {e}"))?;
    let cert = info.pem();
    if !info.is_ca {
        return Err(format!(
            "{cert_name} ca.crt ({}) is not a CA certificate",
            info.subject
        ));
    }
    if rcgen::KeyPair::from_pem(&key).is_err() {
        return Err(format!(
            "{key_name} ca.key is not a PKCS#8 PEM private key (-----BEGIN PRIVATE KEY-----)"
        ));
    }
    if !info.key_matches(&key) {
        return Err(format!(
            "{key_name} ca.key is not the key of the certificate in {cert_name} ({})",
            info.subject
        ));
    }
    Ok(Ca {
        pair: KeyAndCert {
            cert_pem: cert,
            key_pem: key,
        },
        info,
        previous: Vec::new(),
        cross: None,
        generation: stored.cert_generation(),
        key_generation: stored.key_generation(),
        change: None,
    })
}

/// The `CertificateExpiring` condition: true while a user-supplied CA is within its renewal
/// window (the operator renews its own before that shows).
pub fn expiring_condition(expiring: &[String]) -> super::conditions::Want {
    use super::conditions::Want;
    if expiring.is_empty() {
        Want::no(
            "CertificateExpiring",
            "AsExpected",
            "no CA is within its renewal window",
        )
    } else {
        Want::yes("CertificateExpiring", "UserCaExpiring", expiring.join("; "))
    }
}

/// RFC 3339 text of unix seconds.
fn rfc3339(secs: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn ca_status(ca: &Ca, settings: &CertificateAuthority, now: i64) -> CaStatus {
    let phase = if !ca.previous.is_empty() {
        CaPhase::TrustingPrevious
    } else if !settings.generate_certificate_authority && now >= renewal_from(&ca.info, settings) {
        CaPhase::Expiring
    } else {
        CaPhase::Ready
    };
    CaStatus {
        phase,
        certificate_expiry: rfc3339(ca.info.not_after),
        renewal_from: rfc3339(renewal_from(&ca.info, settings)),
        cert_generation: ca.generation,
        key_generation: ca.key_generation,
        previous_trusted_until: ca.previous_until().map(rfc3339),
        generated: settings.generate_certificate_authority,
    }
}

fn renewal_from(info: &CertInfo, settings: &CertificateAuthority) -> i64 {
    info.not_after - i64::from(settings.renewal_days) * DAY
}

/// The Secrets of a generated CA.
fn ca_secrets(
    which: Which,
    cluster: &ValidatedCluster,
    ca: &Ca,
    stored: &Stored,
) -> Result<(Secret, Secret), pki::PkiError> {
    let mut key = Secret {
        metadata: meta(cluster, which.key_secret(&cluster.name)),
        type_: Some("Opaque".into()),
        ..Default::default()
    };
    key.metadata.annotations = Some(BTreeMap::from([(
        KEY_GENERATION_ANNOTATION.to_string(),
        ca.key_generation.to_string(),
    )]));
    key.data = Some(data([("ca.key", ca.pair.key_pem.clone().into_bytes())]));
    let trust = ca.trust_pem();
    // The trust store is made again only when what it holds changes (it holds a new salt
    // each time, so making it every reconcile would write the Secret every time).
    let kept_store = stored
        .cert
        .as_ref()
        .filter(|_| stored.cert_pem().as_deref() == Some(trust.as_str()))
        .and_then(|s| {
            let data = s.data.as_ref()?;
            Some((
                data.get("ca.p12")?.0.clone(),
                data.get("ca.password")?.0.clone(),
            ))
        });
    let (p12, password) = match kept_store {
        Some(kept) => kept,
        None => {
            let password = pki::password()?;
            let trusted: Vec<CertInfo> = std::iter::once(&ca.info)
                .chain(&ca.previous)
                .cloned()
                .collect();
            let p12 = pki::truststore_p12(&trusted, &password)?;
            (p12, password.into_bytes())
        }
    };
    let mut cert = Secret {
        metadata: meta(cluster, which.cert_secret(&cluster.name)),
        type_: Some("Opaque".into()),
        ..Default::default()
    };
    cert.metadata.annotations = Some(BTreeMap::from([
        (
            CERT_GENERATION_ANNOTATION.to_string(),
            ca.generation.to_string(),
        ),
        (
            KEY_GENERATION_ANNOTATION.to_string(),
            ca.key_generation.to_string(),
        ),
    ]));
    let mut entries = data([
        ("ca.crt", trust.into_bytes()),
        ("ca.p12", p12),
        ("ca.password", password),
    ]);
    if let Some(cross) = &ca.cross {
        entries.insert(CROSS_KEY.to_string(), ByteString(cross.pem().into_bytes()));
    }
    cert.data = Some(entries);
    Ok((key, cert))
}

fn data<const N: usize>(entries: [(&str, Vec<u8>); N]) -> BTreeMap<String, ByteString> {
    entries
        .into_iter()
        .map(|(k, v)| (k.to_string(), ByteString(v)))
        .collect()
}

/// Every name a client or peer reaches `pod` by: its names under the headless Service, the
/// bootstrap Service's for brokers, and its external address (the host part) when it has one.
/// A NodePort address is the IP of the node the pod runs on (`host_ip`), known once the pod
/// is scheduled; the certificate is issued again, and reloaded, when it becomes known or
/// changes.
pub fn node_names(
    cluster: &ValidatedCluster,
    pod: &str,
    node_id: i32,
    broker: bool,
    host_ip: Option<&str>,
) -> BTreeSet<String> {
    let ns = &cluster.namespace;
    let mut names = BTreeSet::new();
    let mut add = |host: String| {
        names.insert(format!("{host}.{ns}.svc.cluster.local"));
        names.insert(format!("{host}.{ns}.svc"));
        names.insert(format!("{host}.{ns}"));
        names.insert(host);
    };
    add(format!("{pod}.{}", cluster.headless_service()));
    if broker {
        add(cluster.bootstrap_service());
        let external = cluster
            .external_addresses
            .get(&node_id)
            .cloned()
            .or_else(|| {
                cluster
                    .external
                    .as_ref()
                    .and_then(|e| e.advertised.get(&node_id.to_string()).cloned())
            });
        match external {
            // The node's address, which the pod reads from `${env:HOST_IP}`.
            Some(address) if address.contains("${env:HOST_IP}") => {
                names.extend(host_ip.map(str::to_string));
            }
            Some(address) if !address.contains("${") => {
                names.insert(host_of(&address).to_string());
            }
            _ => {}
        }
    }
    names
}

/// The host of `host:port` (`[v6]:port` too).
fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Whether a stored certificate of `ca`'s can stay: its key fits, `ca` signed it, the rest
/// of its chain is `chain_tail` (the CA certificate as it is now: a renewed one replaces it;
/// while a previous CA is trusted, the cross-signed one), it names exactly `names`, and it
/// is not within its renewal window. The certificate when it can.
pub fn current_leaf(
    (crt_pem, key_pem): (&str, &str),
    (ca, chain_tail): (&CertInfo, &CertInfo),
    names: &BTreeSet<String>,
    renewal: i64,
    now: i64,
) -> Option<CertInfo> {
    let mut chain = pki::inspect_all(crt_pem).ok()?;
    if chain.len() != 2 || chain[1].der() != chain_tail.der() {
        return None;
    }
    let cert = chain.remove(0);
    let fits = cert.key_matches(key_pem)
        && cert.signed_by(ca)
        && &cert.names == names
        && now < cert.not_after - renewal;
    fits.then_some(cert)
}

/// [`current_leaf`] for the certificate `<pod>.crt` (key `<pod>.key`) of a Secret's `stored`
/// data.
fn cert_current(
    stored: &BTreeMap<String, ByteString>,
    pod: &str,
    names: &BTreeSet<String>,
    ca: &Ca,
    renewal: i64,
    now: i64,
) -> Option<CertInfo> {
    let get = |key: String| String::from_utf8(stored.get(&key)?.0.clone()).ok();
    let (crt, key) = (get(format!("{pod}.crt"))?, get(format!("{pod}.key"))?);
    current_leaf((&crt, &key), (&ca.info, ca.chain()), names, renewal, now)
}

/// The data of a certificates Secret holding `wanted`: each kept when it is current, else
/// issued anew (`<prefix>.crt`: the certificate then the CA's; `<prefix>.key`; for nodes
/// also `<prefix>.pem`, key and chain in one file); with how many were issued and the
/// earliest renewal among them. `days` is the validity in days and the renewal window in
/// seconds.
fn plan_certs(
    ca: &Ca,
    stored: Option<&Secret>,
    wanted: &[Wanted],
    (validity_days, renewal): (i64, i64),
    now: i64,
) -> Result<(BTreeMap<String, ByteString>, usize, i64), pki::PkiError> {
    let empty = BTreeMap::new();
    let stored = stored.and_then(|s| s.data.as_ref()).unwrap_or(&empty);
    let mut out = BTreeMap::new();
    let mut issued = 0;
    let mut next = ca.info.not_after - renewal;
    for (prefix, common_name, names, usage) in wanted {
        let mut keys = vec![format!("{prefix}.crt"), format!("{prefix}.key")];
        if *usage == Usage::Node {
            keys.push(format!("{prefix}.pem"));
        }
        let kept = cert_current(stored, prefix, names, ca, renewal, now)
            .filter(|_| keys.iter().all(|k| stored.contains_key(k)));
        if let Some(cert) = kept {
            next = next.min(cert.not_after - renewal);
            for k in keys {
                let value = stored[&k].clone();
                out.insert(k, value);
            }
            continue;
        }
        let validity = Validity::days_from(now, validity_days).capped(ca.info.not_after);
        let leaf = pki::issue(
            &ca.pair,
            pki::Subject::Gregor(common_name),
            names,
            *usage,
            validity,
        )?;
        next = next.min(validity.not_after - renewal);
        let chain = format!("{}{}", leaf.cert_pem, ca.chain().pem());
        if *usage == Usage::Node {
            let bundle = format!("{}{chain}", leaf.key_pem);
            out.insert(format!("{prefix}.pem"), ByteString(bundle.into_bytes()));
        }
        out.insert(format!("{prefix}.crt"), ByteString(chain.into_bytes()));
        out.insert(
            format!("{prefix}.key"),
            ByteString(leaf.key_pem.into_bytes()),
        );
        issued += 1;
    }
    Ok((out, issued, next))
}

/// The CAs as this reconcile left them, and what it found.
pub struct Authorities {
    /// What was found so far (the nodes' step adds to it).
    pub outcome: Outcome,
    cluster_ca: Option<Ca>,
    operator: Option<KeyAndCert>,
}

impl Authorities {
    /// How the operator reaches `cluster`'s brokers: on the replication listener over mutual
    /// TLS as itself when the cluster is secured (host names verified unless a bootstrap
    /// override sends it elsewhere), else on the client listener.
    pub fn access(&self, ctx: &super::Context, cluster: &ValidatedCluster) -> Access {
        let default = cluster.operator_bootstrap();
        let bootstrap = ctx.bootstrap(&cluster.namespace, &cluster.name, &default);
        if !cluster.secured {
            return Access::plaintext(bootstrap);
        }
        let secured = self
            .operator
            .as_ref()
            .zip(self.cluster_ca.as_ref())
            .ok_or_else(|| "no cluster CA, so no certificate of its own".to_string())
            .and_then(|(identity, ca)| {
                secured_access(&bootstrap, &default, identity, &ca.trust_pem())
            });
        secured.unwrap_or_else(|problem| {
            tracing::warn!(cluster = %cluster.name, %problem, "the operator cannot reach the brokers over TLS");
            Access::plaintext(bootstrap)
        })
    }
}

/// A CA as those it issues to need it.
pub struct CaMaterial {
    /// The current key and certificate.
    pub pair: KeyAndCert,
    /// What to trust (`ca.crt`): the current certificate, then previous ones still trusted.
    pub trust_pem: String,
    /// What follows an issued certificate in its chain: the current certificate signed by
    /// the previous key while that one is trusted, else the current certificate.
    pub chain_pem: String,
}

/// The CA `which` of `cluster` as its Secrets hold it, if both are there and its key fits
/// its current certificate.
pub async fn read_ca(
    secrets: &Api<Secret>,
    cluster: &str,
    which: Which,
) -> Result<Option<CaMaterial>, kube::Error> {
    let stored = Stored {
        key: secrets.get_opt(&which.key_secret(cluster)).await?,
        cert: secrets.get_opt(&which.cert_secret(cluster)).await?,
    };
    let (Some(key_pem), Some(trust_pem)) = (stored.key_pem(), stored.cert_pem()) else {
        return Ok(None);
    };
    let Some(current) = stored.certs().into_iter().next() else {
        return Ok(None);
    };
    if !current.is_ca || !current.key_matches(&key_pem) {
        return Ok(None);
    }
    let chain = stored
        .cross()
        .filter(|c| c.subject == current.subject)
        .unwrap_or_else(|| current.clone());
    Ok(Some(CaMaterial {
        pair: KeyAndCert {
            cert_pem: current.pem(),
            key_pem,
        },
        trust_pem,
        chain_pem: chain.pem(),
    }))
}

/// How the operator reaches the brokers of `kc` from outside its reconcile (for a
/// KafkaTopic): as [`Authorities::access`] does, from the Secrets the cluster's reconcile
/// wrote; `None` until that reconcile has run (no bootstrap address, or no certificate yet).
pub async fn access_of(
    ctx: &super::Context,
    kc: &KafkaCluster,
) -> Result<Option<Access>, ReconcileError> {
    let (namespace, name) = (kc.namespace().unwrap_or_default(), kc.name_any());
    let Some(reconciled) = kc
        .status
        .as_ref()
        .and_then(|s| s.bootstrap_servers.clone())
        .filter(|b| !b.is_empty())
    else {
        return Ok(ctx
            .bootstrap_overrides
            .get(&format!("{namespace}/{name}"))
            .filter(|_| !crate::validate::secured(&kc.spec))
            .map(Access::plaintext));
    };
    if !crate::validate::secured(&kc.spec) {
        return Ok(Some(Access::plaintext(ctx.bootstrap(
            &namespace,
            &name,
            &reconciled,
        ))));
    }
    let default = crate::validate::replication_bootstrap(&name, &namespace);
    let bootstrap = ctx.bootstrap(&namespace, &name, &default);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let identity = secrets.get_opt(&operator_secret(&name)).await?;
    let ca = secrets.get_opt(&Which::Cluster.cert_secret(&name)).await?;
    let read = |s: &Option<Secret>, key: &str| s.as_ref().and_then(|s| text(s, key));
    let (Some(cert_pem), Some(key_pem), Some(ca_pem)) = (
        read(&identity, "operator.crt"),
        read(&identity, "operator.key"),
        read(&ca, "ca.crt"),
    ) else {
        return Ok(None);
    };
    let identity = KeyAndCert { cert_pem, key_pem };
    secured_access(&bootstrap, &default, &identity, &ca_pem)
        .map(Some)
        .map_err(ReconcileError::Malformed)
}

/// Mutual TLS to `bootstrap` as `identity`, trusting `trust_pem`; host names are verified
/// unless a bootstrap override replaced the `default` address (the certificates name the
/// cluster's Services, not the override).
fn secured_access(
    bootstrap: &str,
    default: &str,
    identity: &KeyAndCert,
    trust_pem: &str,
) -> Result<Access, String> {
    Access::mutual_tls(bootstrap, identity, trust_pem, bootstrap == default)
}

/// Makes, renews or reads the two CAs and the operator's own certificate, writing the
/// Secrets that changed; events say what was made or renewed.
pub async fn authorities(
    client: &kube::Client,
    kc: &KafkaCluster,
    cluster: &ValidatedCluster,
    now: i64,
) -> Result<Authorities, ReconcileError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &cluster.namespace);
    let mut outcome = Outcome::default();
    let mut cluster_ca = None;
    for (which, settings) in [
        (Which::Cluster, &cluster.cluster_ca),
        (Which::Clients, &cluster.clients_ca),
    ] {
        let Some(ca) = sync_ca(
            client,
            &secrets,
            kc,
            cluster,
            (which, settings),
            now,
            &mut outcome,
        )
        .await?
        else {
            continue;
        };
        let status = ca_status(&ca, settings, now);
        outcome.ca_not_after.push((which, ca.info.not_after));
        outcome.due(renewal_from(&ca.info, settings));
        if let Some(until) = ca.previous_until() {
            // The previous CA goes from the trust, and the cross-signed certificate from the
            // chains, once it expires.
            outcome.due(until);
        }
        match which {
            Which::Cluster => {
                outcome.cluster_ca = Some(status);
                cluster_ca = Some(ca);
            }
            Which::Clients => outcome.clients_ca = Some(status),
        }
    }
    let mut operator = None;
    if let Some(ca) = &cluster_ca {
        let identity = [(
            "operator".to_string(),
            operator_common_name(&cluster.name),
            BTreeSet::new(),
            Usage::Client,
        )];
        let name = operator_secret(&cluster.name);
        let data = issue_into(client, kc, cluster, ca, &name, &identity, now, &mut outcome).await?;
        operator = Some(KeyAndCert {
            cert_pem: String::from_utf8_lossy(&data["operator.crt"].0).into_owned(),
            key_pem: String::from_utf8_lossy(&data["operator.key"].0).into_owned(),
        });
    }
    Ok(Authorities {
        outcome,
        cluster_ca,
        operator,
    })
}

/// Issues (or keeps) the nodes' certificates of `cluster` with the cluster CA, once there is
/// one, into `<cluster>-node-certs`; `pods` are the cluster's pods as observed (the nodes
/// they run on name NodePort addresses).
pub async fn nodes(
    client: &kube::Client,
    kc: &KafkaCluster,
    cluster: &ValidatedCluster,
    pods: &[Pod],
    authorities: &mut Authorities,
    now: i64,
) -> Result<(), ReconcileError> {
    let Some(ca) = &authorities.cluster_ca else {
        return Ok(());
    };
    let wanted: Vec<_> = cluster
        .pools
        .iter()
        .flat_map(|pool| {
            pool.pods().map(move |(ordinal, pod)| {
                let host_ip = pods
                    .iter()
                    .find(|p| p.metadata.name.as_deref() == Some(pod.as_str()))
                    .and_then(|p| p.status.as_ref()?.host_ip.as_deref());
                let (id, broker) = (pool.node_id(ordinal), pool.role.is_broker());
                let names = node_names(cluster, &pod, id, broker, host_ip);
                (pod, node_common_name(&cluster.name), names, Usage::Node)
            })
        })
        .collect();
    let name = nodes_secret(&cluster.name);
    let outcome = &mut authorities.outcome;
    issue_into(client, kc, cluster, ca, &name, &wanted, now, outcome).await?;
    Ok(())
}

/// One certificate to hold: its key prefix in the Secret, common name, names and usage.
type Wanted = (String, String, BTreeSet<String>, Usage);

/// Keeps or issues every certificate of `wanted` into Secret `name`, writing it when it
/// changed; returns its data.
#[allow(clippy::too_many_arguments)]
async fn issue_into(
    client: &kube::Client,
    kc: &KafkaCluster,
    cluster: &ValidatedCluster,
    ca: &Ca,
    name: &str,
    wanted: &[Wanted],
    now: i64,
    outcome: &mut Outcome,
) -> Result<BTreeMap<String, ByteString>, ReconcileError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &cluster.namespace);
    let stored = secrets.get_opt(name).await?;
    let renewal = i64::from(cluster.cluster_ca.renewal_days) * DAY;
    let validity_days = i64::from(cluster.cluster_ca.validity_days);
    let (data, issued, next) =
        plan_certs(ca, stored.as_ref(), wanted, (validity_days, renewal), now).map_err(|e| {
            ReconcileError::Malformed(format!("issuing certificates into {name}: {e}"))
        })?;
    outcome.due(next);
    if stored.as_ref().and_then(|s| s.data.as_ref()) != Some(&data) {
        let secret = Secret {
            metadata: meta(cluster, name.to_string()),
            type_: Some("Opaque".into()),
            data: Some(data.clone()),
            ..Default::default()
        };
        apply(&secrets, &secret).await?;
        if issued > 0 {
            let note = format!("{issued} certificate(s) issued by the cluster CA into {name}");
            tracing::info!(cluster = %cluster.name, %note);
            super::record(
                client,
                &kc.object_ref(&()),
                EventType::Normal,
                "CertificatesIssued",
                note,
            )
            .await;
        }
    }
    Ok(data)
}

/// One CA: made, renewed and written when generated, read and checked when supplied.
async fn sync_ca(
    client: &kube::Client,
    secrets: &Api<Secret>,
    kc: &KafkaCluster,
    cluster: &ValidatedCluster,
    (which, settings): (Which, &CertificateAuthority),
    now: i64,
    outcome: &mut Outcome,
) -> Result<Option<Ca>, ReconcileError> {
    let stored = Stored {
        key: secrets.get_opt(&which.key_secret(&cluster.name)).await?,
        cert: secrets.get_opt(&which.cert_secret(&cluster.name)).await?,
    };
    if !settings.generate_certificate_authority {
        return match read_supplied(which, &cluster.name, &stored) {
            Ok(ca) => {
                if now >= renewal_from(&ca.info, settings) {
                    outcome.expiring.push(format!(
                        "the user-supplied {} ({}) expires at {}: replace it in {}",
                        which.part(),
                        ca.info.subject,
                        rfc3339(ca.info.not_after),
                        which.cert_secret(&cluster.name)
                    ));
                }
                Ok(Some(ca))
            }
            Err(problem) => {
                outcome.problems.push(problem);
                Ok(None)
            }
        };
    }
    let ca = plan_generated(which, &cluster.name, settings, &stored, now)
        .map_err(|e| ReconcileError::Malformed(format!("{}: {e}", which.part())))?;
    let (key, cert) = ca_secrets(which, cluster, &ca, &stored)
        .map_err(|e| ReconcileError::Malformed(format!("{}: {e}", which.part())))?;
    // Written when their data or the operator's annotations differ from what is stored.
    for (stored, built) in [(&stored.key, &key), (&stored.cert, &cert)] {
        let ours = built.metadata.annotations.iter().flatten();
        let current = stored.as_ref().is_some_and(|s| {
            s.data == built.data && ours.clone().all(|(k, v)| s.annotations().get(k) == Some(v))
        });
        if !current {
            apply(secrets, built).await?;
        }
    }
    announce(client, kc, cluster, which, &ca, &stored).await;
    clear_requests(secrets, cluster, which, &stored).await?;
    Ok(Some(ca))
}

/// Events for what became of CA `which` this reconcile (its previous CA dropped, created,
/// renewed, replaced).
async fn announce(
    client: &kube::Client,
    kc: &KafkaCluster,
    cluster: &ValidatedCluster,
    which: Which,
    ca: &Ca,
    stored: &Stored,
) {
    let trusted_before = stored.certs().len();
    if trusted_before > 1 && ca.previous.is_empty() && ca.change != Some(Change::Created) {
        let note = format!(
            "{}: the previous CA is no longer trusted ({}); {} alone is",
            which.part(),
            if stored.drop_previous() {
                format!("{DROP_PREVIOUS_ANNOTATION} asked")
            } else {
                "it expired".to_string()
            },
            ca.info.subject
        );
        tracing::info!(cluster = %cluster.name, %note);
        let reason = "CaPreviousDropped";
        super::record(client, &kc.object_ref(&()), EventType::Normal, reason, note).await;
    }
    if let Some(change) = ca.change {
        let (reason, verb) = match change {
            Change::Created => ("CaCreated", "created"),
            Change::Renewed => ("CaCertificateRenewed", "renewed"),
            Change::Replaced => ("CaKeyReplaced", "replaced by a new key"),
        };
        let note = format!(
            "{} {verb}: {} valid until {} (certificate generation {})",
            which.part(),
            ca.info.subject,
            rfc3339(ca.info.not_after),
            ca.generation
        );
        tracing::info!(cluster = %cluster.name, %note);
        super::record(client, &kc.object_ref(&()), EventType::Normal, reason, note).await;
    }
}

/// The user's requests on `which`'s Secrets are done: their annotations go.
async fn clear_requests(
    secrets: &Api<Secret>,
    cluster: &ValidatedCluster,
    which: Which,
    stored: &Stored,
) -> Result<(), kube::Error> {
    for (asked, secret, annotation) in [
        (
            stored.force_renew(),
            which.cert_secret(&cluster.name),
            FORCE_RENEW_ANNOTATION,
        ),
        (
            stored.force_replace(),
            which.key_secret(&cluster.name),
            FORCE_REPLACE_ANNOTATION,
        ),
        (
            stored.drop_previous(),
            which.cert_secret(&cluster.name),
            DROP_PREVIOUS_ANNOTATION,
        ),
    ] {
        if asked {
            let patch = serde_json::json!({"metadata": {"annotations": {annotation: null}}});
            secrets
                .patch(&secret, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
    }
    Ok(())
}

/// Server-side applies `secret` with the operator's field manager.
async fn apply(secrets: &Api<Secret>, secret: &Secret) -> Result<(), kube::Error> {
    secrets
        .patch(
            &secret.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(secret),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_ca_is_labelled_in_the_metrics_as_the_metrics_remove_it() {
        assert_eq!(Which::ALL.map(Which::label), crate::metrics::CA_LABELS);
    }
}
