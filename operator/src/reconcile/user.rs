//! A KafkaUser into its principal on the cluster's brokers: credentials (a SCRAM-SHA-512
//! password, or a certificate from the clients CA) in the Secret `<user>`, exactly the spec's
//! ACLs, and the spec's quotas; all of it removed again, behind a finalizer, when the
//! KafkaUser goes.
//!
//! A SCRAM password is set with AlterUserScramCredentials only when it changed: the Secret
//! `<user>` carries `gregor.dev/password-check` (a random salt and SHA-256 of salt and
//! password), so a reconcile knows without asking the brokers (which never say) whether the
//! password in force is the one in the spec.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use gregor_client::admin::{Admin, AdminError};
use gregor_client::admin_principals::AclBinding;
use gregor_client::scram::ScramMechanism;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::ByteString;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{self, finalizer};
use kube::{Resource, ResourceExt};

use super::access::Access;
use super::certificates::{self, Which};
use super::conditions::{merge, Want};
use super::{record, Context, ReconcileError};
use crate::build::objects::FIELD_MANAGER;
use crate::crd::cluster::{AuthenticationType, KafkaCluster};
use crate::crd::user::UserAuthenticationType;
use crate::crd::user::{
    AclOperation, AclPatternType, AclPermission, AclResourceType, KafkaUser, KafkaUserStatus,
};
use crate::metrics::Metrics;
use crate::pki::{self, Subject, Usage, Validity};

/// The finalizer that removes the user's credentials, ACLs and quotas from the brokers.
pub const FINALIZER: &str = "gregor.dev/user";
/// On the Secret `<user>`: `<salt hex>:<sha256(salt ‖ password) hex>` of the password set.
pub const PASSWORD_CHECK_ANNOTATION: &str = "gregor.dev/password-check";

/// SCRAM iterations (Kafka's minimum for SHA-512, and its tools' default).
const ITERATIONS: i32 = 4096;
/// How soon a user whose cluster is not there or not reachable yet is looked at again.
const SETTLING: Duration = Duration::from_secs(10);
/// How often a ready user is looked at again (ACLs added by other tools are removed then).
const STEADY: Duration = Duration::from_secs(300);
/// How long the brokers get to answer one reconcile.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(60);
const DAY: i64 = 86_400;

/// Kafka's wire codes.
const PATTERN_LITERAL: i8 = 3;
const PATTERN_PREFIXED: i8 = 4;
const PERMISSION_DENY: i8 = 2;
const PERMISSION_ALLOW: i8 = 3;

/// Reconciles one KafkaUser.
pub async fn reconcile(ku: Arc<KafkaUser>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let namespace = ku
        .namespace()
        .ok_or_else(|| ReconcileError::Malformed("a KafkaUser without a namespace".into()))?;
    let api: Api<KafkaUser> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, ku, |event| async {
        match event {
            finalizer::Event::Apply(ku) => apply(&ku, &ctx, &api).await,
            finalizer::Event::Cleanup(ku) => {
                let action = cleanup(&ku, &ctx).await?;
                // The finalizer goes next, and the resource with it.
                ctx.metrics
                    .resource_gone(&KafkaUser::kind(&()), &namespace, &ku.name_any());
                Ok(action)
            }
        }
    })
    .await
    .map_err(super::finalizer_error)
}

/// The user's name on the brokers and its principal: `alice` / `User:alice`, or for a TLS user
/// its certificate's subject, `CN=alice` / `User:CN=alice`.
pub fn principal(ku: &KafkaUser) -> (String, String) {
    let tls = ku.spec.authentication.as_ref().map(|a| a.kind) == Some(UserAuthenticationType::Tls);
    let name = if tls {
        format!("CN={}", ku.name_any())
    } else {
        ku.name_any()
    };
    let principal = format!("User:{name}");
    (name, principal)
}

fn operation_code(op: AclOperation) -> i8 {
    match op {
        AclOperation::All => 2,
        AclOperation::Read => 3,
        AclOperation::Write => 4,
        AclOperation::Create => 5,
        AclOperation::Delete => 6,
        AclOperation::Alter => 7,
        AclOperation::Describe => 8,
        AclOperation::ClusterAction => 9,
        AclOperation::DescribeConfigs => 10,
        AclOperation::AlterConfigs => 11,
        AclOperation::IdempotentWrite => 12,
    }
}

/// The ACL bindings the spec asks for; the error names the rule and what is wrong with it.
pub fn bindings(ku: &KafkaUser, principal: &str) -> Result<BTreeSet<AclBinding>, String> {
    let mut out = BTreeSet::new();
    let rules = ku.spec.authorization.iter().flat_map(|a| a.acls.iter());
    for (i, rule) in rules.enumerate() {
        let field = format!("spec.authorization.acls[{i}]");
        let r = &rule.resource;
        let (resource_type, name) = match (r.kind, r.name.as_deref()) {
            (AclResourceType::Cluster, None | Some("kafka-cluster")) => (4, "kafka-cluster"),
            (AclResourceType::Cluster, Some(other)) => {
                return Err(format!(
                    "{field}.resource.name {other:?}: the cluster resource has no name \
                     (or kafka-cluster)"
                ))
            }
            (_, None) => {
                return Err(format!(
                    "{field}.resource.name is required for a {:?} resource",
                    r.kind
                ))
            }
            (kind, Some(name)) => {
                check_resource_name(kind, name, r.pattern_type)
                    .map_err(|why| format!("{field}.resource.name {name:?}: {why}"))?;
                let code = match kind {
                    AclResourceType::Topic => 2,
                    AclResourceType::Group => 3,
                    AclResourceType::TransactionalId => 5,
                    AclResourceType::Cluster => 4,
                };
                (code, name)
            }
        };
        if rule.host.trim().is_empty() {
            return Err(format!("{field}.host is empty (use * for any host)"));
        }
        for op in &rule.operations {
            out.insert(AclBinding {
                resource_type,
                resource_name: name.to_string(),
                pattern_type: match r.pattern_type {
                    AclPatternType::Literal => PATTERN_LITERAL,
                    AclPatternType::Prefix => PATTERN_PREFIXED,
                },
                principal: principal.to_string(),
                host: rule.host.clone(),
                operation: operation_code(*op),
                permission: match rule.permission {
                    AclPermission::Allow => PERMISSION_ALLOW,
                    AclPermission::Deny => PERMISSION_DENY,
                },
            });
        }
    }
    Ok(out)
}

/// A resource name Kafka would take: not empty; a literal topic name a topic can have (or
/// `*`); a prefix is not `*`.
fn check_resource_name(
    kind: AclResourceType,
    name: &str,
    pattern: AclPatternType,
) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty".into());
    }
    match (kind, pattern) {
        (_, AclPatternType::Prefix) if name == "*" => {
            Err("* is not a prefix (a literal * matches every name)".into())
        }
        (AclResourceType::Topic, AclPatternType::Literal) if name != "*" => {
            gregor_client::names::validate_topic_name(name).map_err(|e| e.to_string())
        }
        _ => Ok(()),
    }
}

/// The quotas the spec sets, by Kafka's keys.
pub fn quotas(ku: &KafkaUser) -> BTreeMap<String, f64> {
    let Some(q) = &ku.spec.quotas else {
        return BTreeMap::new();
    };
    #[allow(clippy::cast_precision_loss)]
    let entries = [
        ("producer_byte_rate", q.producer_byte_rate.map(|v| v as f64)),
        ("consumer_byte_rate", q.consumer_byte_rate.map(|v| v as f64)),
        ("request_percentage", q.request_percentage.map(f64::from)),
        ("controller_mutation_rate", q.controller_mutation_rate),
    ];
    entries
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_string(), v?)))
        .collect()
}

/// Why a reconcile stopped short: reported in the status, tried again later.
struct NotReady {
    reason: &'static str,
    message: String,
    again: Action,
}

impl NotReady {
    fn new(reason: &'static str, message: impl Into<String>, again: Action) -> NotReady {
        NotReady {
            reason,
            message: message.into(),
            again,
        }
    }
}

impl From<ReconcileError> for NotReady {
    fn from(e: ReconcileError) -> NotReady {
        NotReady::new(e.reason(), e.message(), Action::requeue(SETTLING))
    }
}

impl From<kube::Error> for NotReady {
    fn from(e: kube::Error) -> NotReady {
        ReconcileError::from(e).into()
    }
}

impl From<AdminError> for NotReady {
    fn from(e: AdminError) -> NotReady {
        let transient = e.is_transient();
        let e = ReconcileError::from(e);
        let again = if transient { SETTLING } else { STEADY };
        NotReady::new(e.reason(), e.message(), Action::requeue(again))
    }
}

async fn apply(
    ku: &KafkaUser,
    ctx: &Context,
    api: &Api<KafkaUser>,
) -> Result<Action, ReconcileError> {
    let (name, principal) = principal(ku);
    let secret = ku.name_any();
    match converge(ku, ctx, &name, &principal).await {
        Ok(()) => {
            let ready = Want::yes(
                "Ready",
                "Ready",
                format!("{principal}: credentials, ACLs and quotas applied"),
            );
            report(api, &ctx.metrics, ku, ready, &name, &secret).await?;
            Ok(Action::requeue(STEADY))
        }
        Err(not) => {
            tracing::info!(user = %ku.name_any(), reason = not.reason, message = %not.message, "KafkaUser not ready");
            let ready = Want::no("Ready", not.reason, not.message);
            report(api, &ctx.metrics, ku, ready, &name, &secret).await?;
            Ok(not.again)
        }
    }
}

/// Everything but the status: the spec checked, the cluster found and reached, then the
/// credentials, ACLs and quotas.
async fn converge(
    ku: &KafkaUser,
    ctx: &Context,
    name: &str,
    principal: &str,
) -> Result<(), NotReady> {
    let wait = Action::requeue(SETTLING);
    let acls = bindings(ku, principal)
        .map_err(|m| NotReady::new("InvalidSpec", m, Action::await_change()))?;
    let namespace = ku.namespace().unwrap_or_default();
    let clusters: Api<KafkaCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(kc) = clusters.get_opt(&ku.spec.cluster).await? else {
        let message = format!("no KafkaCluster {} in this namespace", ku.spec.cluster);
        return Err(NotReady::new("ClusterNotFound", message, wait));
    };
    // Without an authorizer the brokers keep no ACLs (Kafka answers SECURITY_DISABLED): a
    // user's ACLs there would protect nothing, so they are refused, and none are synced.
    let authorized = kc.spec.authorization.is_some();
    if !authorized && !acls.is_empty() {
        let message = format!(
            "spec.authorization: KafkaCluster {} has no spec.authorization, so its brokers \
             would not enforce ACLs",
            ku.spec.cluster
        );
        return Err(NotReady::new(
            "InvalidSpec",
            message,
            Action::await_change(),
        ));
    }
    let kind = ku.spec.authentication.as_ref().map(|a| a.kind);
    if kind == Some(UserAuthenticationType::Tls) && !has_tls_authentication(&kc) {
        let message = format!(
            "spec.authentication.type tls: KafkaCluster {} has no listener with tls \
             authentication (spec.listeners.authentication or \
             spec.listeners.external.authentication)",
            ku.spec.cluster
        );
        return Err(NotReady::new(
            "InvalidSpec",
            message,
            Action::await_change(),
        ));
    }
    let Some(access) = certificates::access_of(ctx, &kc).await? else {
        let message = format!("KafkaCluster {} is not reconciled yet", ku.spec.cluster);
        return Err(NotReady::new("ClusterNotReady", message, wait));
    };
    let password = match kind {
        Some(UserAuthenticationType::ScramSha512) => Some(scram_secret(ku, ctx, &namespace).await?),
        Some(UserAuthenticationType::Tls) => {
            tls_secret(ku, ctx, &kc, &namespace).await?;
            None
        }
        None => None,
    };
    let quotas = quotas(ku);
    let acls = authorized.then_some(&acls);
    let work = brokers(&access, name, principal, password.as_ref(), acls, &quotas);
    match tokio::time::timeout(KAFKA_TIMEOUT, work).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e.into()),
        Err(_) => {
            let e = ReconcileError::KafkaTimedOut {
                bootstrap: access.bootstrap.clone(),
                timeout: KAFKA_TIMEOUT,
            };
            return Err(NotReady::new(e.reason(), e.message(), wait));
        }
    }
    if let Some(pending) = password.filter(|p| p.changed) {
        confirm_password(ctx, &namespace, &ku.name_any(), &pending).await?;
        let note = format!("SCRAM-SHA-512 credential of {name} set");
        record(
            &ctx.client,
            &ku.object_ref(&()),
            EventType::Normal,
            "CredentialSet",
            note,
        )
        .await;
    }
    Ok(())
}

fn has_tls_authentication(kc: &KafkaCluster) -> bool {
    let l = &kc.spec.listeners;
    let tls = |a: Option<&crate::crd::cluster::ListenerAuthentication>| {
        a.map(|a| a.kind) == Some(AuthenticationType::Tls)
    };
    tls(l.authentication.as_ref())
        || l.external
            .as_ref()
            .is_some_and(|e| tls(e.authentication.as_ref()))
}

/// The password of a SCRAM user, and whether the brokers still have to be given it.
struct PasswordToSet {
    password: String,
    changed: bool,
    check: String,
}

/// The user's password: from the user's own Secret when the spec names one, else the one in
/// the Secret `<user>`, else a new one; the Secret `<user>` written with it.
async fn scram_secret(
    ku: &KafkaUser,
    ctx: &Context,
    namespace: &str,
) -> Result<PasswordToSet, NotReady> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let name = ku.name_any();
    let ours = secrets.get_opt(&name).await?;
    let given = ku
        .spec
        .authentication
        .as_ref()
        .and_then(|a| a.password.as_ref());
    let password = match given {
        Some(p) => {
            let r = &p.value_from.secret_key_ref;
            let theirs = secrets.get_opt(&r.name).await?;
            theirs
                .as_ref()
                .and_then(|s| value(s, &r.key))
                .filter(|p| !p.is_empty())
                .ok_or_else(|| {
                    NotReady::new(
                        "PasswordNotFound",
                        format!(
                            "spec.authentication.password: Secret {} has no key {}",
                            r.name, r.key
                        ),
                        Action::requeue(SETTLING),
                    )
                })?
        }
        None => match ours.as_ref().and_then(|s| value(s, "password")) {
            Some(p) => p,
            None => pki::password()
                .map_err(|e| NotReady::new("Failed", e.to_string(), Action::requeue(SETTLING)))?,
        },
    };
    let recorded = ours
        .as_ref()
        .and_then(|s| s.annotations().get(PASSWORD_CHECK_ANNOTATION).cloned());
    let changed = !recorded
        .as_deref()
        .is_some_and(|c| check_matches(c, &password));
    let check = match recorded.filter(|_| !changed) {
        Some(c) => c,
        None => new_check(&password)
            .map_err(|e| NotReady::new("Failed", e, Action::requeue(SETTLING)))?,
    };
    let jaas = format!(
        "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"{name}\" \
         password=\"{password}\";"
    );
    let data = BTreeMap::from([
        (
            "password".to_string(),
            ByteString(password.clone().into_bytes()),
        ),
        (
            "sasl.jaas.config".to_string(),
            ByteString(jaas.into_bytes()),
        ),
    ]);
    // The check is recorded once the brokers have the password (`confirm_password`).
    let mut annotations = BTreeMap::new();
    if let Some(c) = ours
        .as_ref()
        .and_then(|s| s.annotations().get(PASSWORD_CHECK_ANNOTATION))
    {
        annotations.insert(PASSWORD_CHECK_ANNOTATION.to_string(), c.clone());
    }
    write_secret(&secrets, ku, data, annotations).await?;
    Ok(PasswordToSet {
        password,
        changed,
        check,
    })
}

/// Records on the Secret `<user>` that the brokers have `pending`'s password.
async fn confirm_password(
    ctx: &Context,
    namespace: &str,
    name: &str,
    pending: &PasswordToSet,
) -> Result<(), NotReady> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let patch = serde_json::json!({
        "metadata": {"annotations": {PASSWORD_CHECK_ANNOTATION: pending.check}}
    });
    secrets
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn new_check(password: &str) -> Result<String, String> {
    use ring::rand::SecureRandom;
    let mut salt = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| "the system random source failed".to_string())?;
    let salt: String = salt.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!(
        "{salt}:{}",
        sha256_hex(&[salt.as_bytes(), password.as_bytes()])
    ))
}

fn check_matches(check: &str, password: &str) -> bool {
    check
        .split_once(':')
        .is_some_and(|(salt, hash)| sha256_hex(&[salt.as_bytes(), password.as_bytes()]) == hash)
}

fn value(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

/// Writes the Secret `<user>`, owned by the KafkaUser, when its data or annotations differ.
async fn write_secret(
    secrets: &Api<Secret>,
    ku: &KafkaUser,
    data: BTreeMap<String, ByteString>,
    annotations: BTreeMap<String, String>,
) -> Result<(), kube::Error> {
    let name = ku.name_any();
    let existing = secrets.get_opt(&name).await?;
    let same = existing.as_ref().is_some_and(|s| {
        s.data.as_ref() == Some(&data)
            && annotations
                .iter()
                .all(|(k, v)| s.annotations().get(k) == Some(v))
    });
    if same {
        return Ok(());
    }
    let owner = ku.controller_owner_ref(&()).into_iter().collect();
    let labels = BTreeMap::from([
        (
            "app.kubernetes.io/managed-by".to_string(),
            "gregor-operator".to_string(),
        ),
        ("gregor.dev/kafka-user".to_string(), name.clone()),
        ("gregor.dev/cluster".to_string(), ku.spec.cluster.clone()),
    ]);
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: ku.namespace(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: Some(owner),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Default::default()
    };
    secrets
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&secret),
        )
        .await?;
    Ok(())
}

/// A TLS user's certificate from the clients CA, kept in the Secret `<user>` and issued again
/// when the CA no longer verifies it or it is within the CA's renewal window.
async fn tls_secret(
    ku: &KafkaUser,
    ctx: &Context,
    kc: &KafkaCluster,
    namespace: &str,
) -> Result<(), NotReady> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(material) = certificates::read_ca(&secrets, &kc.name_any(), Which::Clients).await?
    else {
        let message = format!(
            "the clients CA of KafkaCluster {} is not there yet",
            kc.name_any()
        );
        return Err(NotReady::new(
            "ClusterNotReady",
            message,
            Action::requeue(SETTLING),
        ));
    };
    let settings = &kc.spec.clients_ca;
    let renewal = i64::from(settings.renewal_days) * DAY;
    let now = ctx.clock.now();
    let name = ku.name_any();
    let ca = &material.pair;
    let failed =
        |e: pki::PkiError| NotReady::new("Failed", e.to_string(), Action::requeue(SETTLING));
    let ca_info = pki::inspect(&ca.cert_pem).map_err(failed)?;
    let chain_info = pki::inspect(&material.chain_pem).map_err(failed)?;
    let ours = secrets.get_opt(&name).await?;
    let current = ours.as_ref().and_then(|s| {
        let (crt, key) = (value(s, "user.crt")?, value(s, "user.key")?);
        let cas = (&ca_info, &chain_info);
        let leaf = certificates::current_leaf((&crt, &key), cas, &BTreeSet::new(), renewal, now);
        let trusts = value(s, "ca.crt").as_deref() == Some(material.trust_pem.as_str());
        leaf.filter(|_| trusts)
    });
    if current.is_some() {
        return Ok(());
    }
    let validity =
        Validity::days_from(now, i64::from(settings.validity_days)).capped(ca_info.not_after);
    let leaf = pki::issue(
        ca,
        Subject::CommonName(&name),
        &BTreeSet::new(),
        Usage::Client,
        validity,
    )
    .map_err(failed)?;
    let password = pki::password().map_err(failed)?;
    let p12 = pki::keystore_p12(&leaf, std::slice::from_ref(&chain_info), &name, &password)
        .map_err(failed)?;
    // The certificate, then the CA's (cross-signed while a replaced clients CA is trusted,
    // so a broker that still trusts only that one accepts it).
    let user_crt = format!("{}{}", leaf.cert_pem, material.chain_pem);
    let entries = [
        ("ca.crt", material.trust_pem.clone().into_bytes()),
        ("user.crt", user_crt.into_bytes()),
        ("user.key", leaf.key_pem.into_bytes()),
        ("user.p12", p12),
        ("user.password", password.into_bytes()),
    ];
    let data = entries
        .into_iter()
        .map(|(k, v)| (k.to_string(), ByteString(v)))
        .collect();
    write_secret(&secrets, ku, data, BTreeMap::new()).await?;
    let note = format!("certificate CN={name} issued by the clients CA");
    record(
        &ctx.client,
        &ku.object_ref(&()),
        EventType::Normal,
        "CertificateIssued",
        note,
    )
    .await;
    Ok(())
}

/// The brokers' side: the password when it changed, then the ACLs (when the cluster has an
/// authorizer) and quotas made exactly what the spec says.
async fn brokers(
    access: &Access,
    name: &str,
    principal: &str,
    password: Option<&PasswordToSet>,
    acls: Option<&BTreeSet<AclBinding>>,
    quotas: &BTreeMap<String, f64>,
) -> Result<(), AdminError> {
    let mut admin = access.admin().await?;
    if let Some(p) = password.filter(|p| p.changed) {
        admin
            .upsert_scram(name, ScramMechanism::Sha512, &p.password, ITERATIONS)
            .await?;
    }
    if let Some(acls) = acls {
        sync_acls(&mut admin, principal, acls).await?;
    }
    let current = admin.user_quotas(name).await?;
    let set: BTreeMap<String, f64> = quotas
        .iter()
        .filter(|(k, v)| current.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let remove: Vec<String> = current
        .keys()
        .filter(|k| !quotas.contains_key(*k))
        .cloned()
        .collect();
    admin.alter_user_quotas(name, &set, &remove).await
}

/// Makes the principal's ACLs exactly `wanted`.
async fn sync_acls(
    admin: &mut Admin,
    principal: &str,
    wanted: &BTreeSet<AclBinding>,
) -> Result<(), AdminError> {
    let current = admin.acls_of(principal).await?;
    let extra: Vec<AclBinding> = current.difference(wanted).cloned().collect();
    let missing: Vec<AclBinding> = wanted.difference(&current).cloned().collect();
    admin.delete_acls(&extra).await?;
    admin.create_acls(&missing).await
}

/// Removes the user from the brokers: its SCRAM credential, ACLs and quotas. A cluster that is
/// gone, or was never reconciled, has nothing to remove.
async fn cleanup(ku: &KafkaUser, ctx: &Context) -> Result<Action, ReconcileError> {
    let namespace = ku.namespace().unwrap_or_default();
    let clusters: Api<KafkaCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(kc) = clusters.get_opt(&ku.spec.cluster).await? else {
        return Ok(Action::await_change());
    };
    let Some(access) = certificates::access_of(ctx, &kc).await? else {
        return Ok(Action::await_change());
    };
    let (name, principal) = principal(ku);
    let work = async {
        let mut admin = access.admin().await?;
        if ku.spec.authentication.as_ref().map(|a| a.kind) != Some(UserAuthenticationType::Tls) {
            admin.delete_scram(&name, ScramMechanism::Sha512).await?;
        }
        if kc.spec.authorization.is_some() {
            sync_acls(&mut admin, &principal, &BTreeSet::new()).await?;
        }
        let current = admin.user_quotas(&name).await?;
        let remove: Vec<String> = current.into_keys().collect();
        admin
            .alter_user_quotas(&name, &BTreeMap::new(), &remove)
            .await
    };
    tokio::time::timeout(KAFKA_TIMEOUT, work)
        .await
        .map_err(|_| ReconcileError::KafkaTimedOut {
            bootstrap: access.bootstrap.clone(),
            timeout: KAFKA_TIMEOUT,
        })??;
    let note = format!("{principal} removed from the brokers: credentials, ACLs, quotas");
    tracing::info!(user = %ku.name_any(), %note);
    Ok(Action::await_change())
}

/// Writes the status: the Ready condition, the username and the Secret; then the Ready
/// condition to the metrics.
async fn report(
    api: &Api<KafkaUser>,
    metrics: &Metrics,
    ku: &KafkaUser,
    ready: Want,
    username: &str,
    secret: &str,
) -> Result<(), kube::Error> {
    let holds = ready.status;
    let previous = ku.status.clone().unwrap_or_default();
    let generation = ku.metadata.generation.unwrap_or_default();
    let status = KafkaUserStatus {
        conditions: merge(
            &previous.conditions,
            &[ready],
            generation,
            Time(k8s_openapi::jiff::Timestamp::now()),
        ),
        observed_generation: Some(generation),
        username: Some(username.to_string()),
        secret: ku.spec.authentication.as_ref().map(|_| secret.to_string()),
    };
    super::apply_status(api, ku, &status).await?;
    let namespace = ku.namespace().unwrap_or_default();
    metrics.resource_ready(&KafkaUser::kind(&()), &namespace, &ku.name_any(), holds);
    Ok(())
}
