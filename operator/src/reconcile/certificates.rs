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

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use super::ReconcileError;
use crate::build::objects::{meta, FIELD_MANAGER};
use crate::crd::cluster::{CaStatus, CertificateAuthority};
use crate::crd::KafkaCluster;
use crate::pki::{self, CertInfo, KeyAndCert, Usage, Validity};
use crate::validate::ValidatedCluster;

/// How many times a CA's certificate was renewed, on its certificate Secret.
pub const CERT_GENERATION_ANNOTATION: &str = "gregor.dev/ca-cert-generation";
/// Set to `"true"` on a CA's certificate Secret to renew the certificate now.
pub const FORCE_RENEW_ANNOTATION: &str = "gregor.dev/force-renew";

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

    fn force_renew(&self) -> bool {
        self.cert
            .as_ref()
            .and_then(|s| s.annotations().get(FORCE_RENEW_ANNOTATION))
            .is_some_and(|v| v == "true")
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
}

/// A usable CA and what happened to it.
struct Ca {
    pair: KeyAndCert,
    info: CertInfo,
    generation: i64,
    change: Option<Change>,
}

/// The CA a generated `which` should be now, from what is stored: kept, renewed, remade for
/// its stored key, or created.
fn plan_generated(
    which: Which,
    cluster: &str,
    settings: &CertificateAuthority,
    stored: &Stored,
    now: i64,
) -> Result<Ca, pki::PkiError> {
    let validity = Validity::days_from(now, i64::from(settings.validity_days));
    let renewal = i64::from(settings.renewal_days) * DAY;
    let generation = stored.cert_generation();
    let key = stored.key_pem();
    let current = match (&key, stored.cert_pem()) {
        (Some(key), Some(cert)) => pki::inspect(&cert)
            .ok()
            .filter(|info| info.is_ca && info.key_matches(key))
            .map(|info| {
                (
                    KeyAndCert {
                        cert_pem: cert,
                        key_pem: key.clone(),
                    },
                    info,
                )
            }),
        _ => None,
    };
    let (pair, change, generation) = match current {
        Some((pair, info)) if !stored.force_renew() && now < info.not_after - renewal => {
            return Ok(Ca {
                pair,
                info,
                generation,
                change: None,
            });
        }
        Some((pair, _)) => (
            pki::renew_ca(&pair, validity)?,
            Change::Renewed,
            generation + 1,
        ),
        // The key without a certificate that fits it: a certificate for it again, under the
        // subject it was made with, so what it issued still verifies.
        None if key
            .as_deref()
            .is_some_and(|k| rcgen::KeyPair::from_pem(k).is_ok()) =>
        {
            let name = format!("{cluster}-{} v0", which.part());
            (
                pki::new_ca(&name, key.as_deref(), validity)?,
                Change::Renewed,
                generation + 1,
            )
        }
        None => {
            let name = format!("{cluster}-{} v0", which.part());
            (pki::new_ca(&name, None, validity)?, Change::Created, 0)
        }
    };
    let info = pki::inspect(&pair.cert_pem)?;
    Ok(Ca {
        pair,
        info,
        generation,
        change: Some(change),
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
        generation: stored.cert_generation(),
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

fn ca_status(ca: &Ca, settings: &CertificateAuthority) -> CaStatus {
    CaStatus {
        certificate_expiry: rfc3339(ca.info.not_after),
        renewal_from: rfc3339(renewal_from(&ca.info, settings)),
        cert_generation: ca.generation,
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
    key.data = Some(data([("ca.key", ca.pair.key_pem.clone().into_bytes())]));
    // The trust store is made again only with a new certificate (it holds a new salt each
    // time, so making it every reconcile would write the Secret every time).
    let kept_store = stored
        .cert
        .as_ref()
        .filter(|_| ca.change.is_none())
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
            let p12 = pki::truststore_p12(std::slice::from_ref(&ca.info), &password)?;
            (p12, password.into_bytes())
        }
    };
    let mut cert = Secret {
        metadata: meta(cluster, which.cert_secret(&cluster.name)),
        type_: Some("Opaque".into()),
        ..Default::default()
    };
    cert.metadata.annotations = Some(BTreeMap::from([(
        CERT_GENERATION_ANNOTATION.to_string(),
        ca.generation.to_string(),
    )]));
    cert.data = Some(data([
        ("ca.crt", ca.pair.cert_pem.clone().into_bytes()),
        ("ca.p12", p12),
        ("ca.password", password),
    ]));
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
pub fn node_names(
    cluster: &ValidatedCluster,
    pod: &str,
    node_id: i32,
    broker: bool,
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
        if let Some(address) = external {
            names.insert(host_of(&address).to_string());
        }
    }
    names
}

/// The host of `host:port` (`[v6]:port` too).
fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Whether the stored certificate of a node can stay: it parses, fits its key, the cluster CA
/// verifies it, it names exactly `names`, and it is not within its renewal window.
fn node_cert_current(
    stored: &BTreeMap<String, ByteString>,
    pod: &str,
    names: &BTreeSet<String>,
    ca: &CertInfo,
    renewal: i64,
    now: i64,
) -> Option<CertInfo> {
    let get = |key: String| String::from_utf8(stored.get(&key)?.0.clone()).ok();
    let mut chain = pki::inspect_all(&get(format!("{pod}.crt"))?).ok()?;
    // The chain ends with the CA certificate as it is now (a renewed one replaces it).
    if chain.len() != 2 || chain[1].der() != ca.der() {
        return None;
    }
    let cert = chain.remove(0);
    let key = get(format!("{pod}.key"))?;
    let fits = cert.key_matches(&key)
        && cert.signed_by(ca)
        && &cert.names == names
        && now < cert.not_after - renewal;
    fits.then_some(cert)
}

/// The nodes' certificates Secret: each node's kept, or issued anew; and how many were issued
/// and the earliest renewal among them.
fn plan_node_certs(
    cluster: &ValidatedCluster,
    ca: &Ca,
    stored: Option<&Secret>,
    now: i64,
) -> Result<(BTreeMap<String, ByteString>, usize, i64), pki::PkiError> {
    let settings = &cluster.cluster_ca;
    let renewal = i64::from(settings.renewal_days) * DAY;
    let empty = BTreeMap::new();
    let stored = stored.and_then(|s| s.data.as_ref()).unwrap_or(&empty);
    let mut out = BTreeMap::new();
    let mut issued = 0;
    let mut next = ca.info.not_after - renewal;
    for pool in &cluster.pools {
        for (ordinal, pod) in pool.pods() {
            let names = node_names(cluster, &pod, pool.node_id(ordinal), pool.role.is_broker());
            let keys = [".crt", ".key", ".pem"].map(|suffix| format!("{pod}{suffix}"));
            let kept = node_cert_current(stored, &pod, &names, &ca.info, renewal, now)
                .filter(|_| keys.iter().all(|k| stored.contains_key(k)));
            if let Some(cert) = kept {
                next = next.min(cert.not_after - renewal);
                for k in keys {
                    out.insert(k.clone(), stored[&k].clone());
                }
                continue;
            }
            let validity = Validity::days_from(now, i64::from(settings.validity_days))
                .capped(ca.info.not_after);
            let leaf = pki::issue(&ca.pair, &cluster.name, &names, Usage::Node, validity)?;
            next = next.min(validity.not_after - renewal);
            let chain = format!("{}{}", leaf.cert_pem, ca.pair.cert_pem);
            let [crt, key, pem] = keys;
            out.insert(
                pem,
                ByteString(format!("{}{chain}", leaf.key_pem).into_bytes()),
            );
            out.insert(crt, ByteString(chain.into_bytes()));
            out.insert(key, ByteString(leaf.key_pem.into_bytes()));
            issued += 1;
        }
    }
    Ok((out, issued, next))
}

/// Makes, renews and reads the CAs and issues the nodes' certificates, writing the Secrets
/// that changed; events say what was made or renewed.
pub async fn sync(
    client: &kube::Client,
    kc: &KafkaCluster,
    cluster: &ValidatedCluster,
    now: i64,
) -> Result<Outcome, ReconcileError> {
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
        let status = ca_status(&ca, settings);
        let due = renewal_from(&ca.info, settings);
        outcome.next_renewal = Some(outcome.next_renewal.map_or(due, |n| n.min(due)));
        match which {
            Which::Cluster => {
                outcome.cluster_ca = Some(status);
                cluster_ca = Some(ca);
            }
            Which::Clients => outcome.clients_ca = Some(status),
        }
    }
    if let Some(ca) = cluster_ca {
        let name = nodes_secret(&cluster.name);
        let stored = secrets.get_opt(&name).await?;
        let (data, issued, next) = plan_node_certs(cluster, &ca, stored.as_ref(), now)
            .map_err(|e| ReconcileError::Malformed(format!("issuing node certificates: {e}")))?;
        outcome.next_renewal = Some(outcome.next_renewal.map_or(next, |n| n.min(next)));
        if stored.as_ref().and_then(|s| s.data.as_ref()) != Some(&data) {
            let mut secret = Secret {
                metadata: meta(cluster, name.clone()),
                type_: Some("Opaque".into()),
                data: Some(data),
                ..Default::default()
            };
            secret.metadata.annotations = Some(BTreeMap::from([(
                CERT_GENERATION_ANNOTATION.to_string(),
                ca.generation.to_string(),
            )]));
            apply(&secrets, &secret).await?;
            if issued > 0 {
                let note =
                    format!("{issued} node certificate(s) issued by the cluster CA into {name}");
                tracing::info!(cluster = %cluster.name, %note);
                super::record(
                    client,
                    &kc.object_ref(&()),
                    EventType::Normal,
                    "NodeCertificatesIssued",
                    note,
                )
                .await;
            }
        }
    }
    Ok(outcome)
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
    if stored.key.as_ref().and_then(|s| s.data.as_ref()) != key.data.as_ref() {
        apply(secrets, &key).await?;
    }
    let annotations_differ =
        stored.cert.as_ref().map(|s| s.annotations().clone()) != cert.metadata.annotations;
    if stored.cert.as_ref().and_then(|s| s.data.as_ref()) != cert.data.as_ref()
        || annotations_differ
    {
        apply(secrets, &cert).await?;
    }
    if let Some(change) = ca.change {
        let (reason, verb) = match change {
            Change::Created => ("CaCreated", "created"),
            Change::Renewed => ("CaCertificateRenewed", "renewed"),
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
    if stored.force_renew() {
        let patch = serde_json::json!({
            "metadata": {"annotations": {FORCE_RENEW_ANNOTATION: null}}
        });
        secrets
            .patch(
                &which.cert_secret(&cluster.name),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
    }
    Ok(Some(ca))
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
