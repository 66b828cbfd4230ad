//! KafkaUsers against the real API server and a real secured node (the operator's own
//! properties and certificates, see [`crate::certificates::start_secured_node`]): SCRAM and
//! TLS users get their credentials into Secrets, exactly their ACLs and their quotas; a user
//! logs in and is allowed exactly what its ACLs say; ACLs added elsewhere are removed; a
//! password changed in the user's Secret is applied; a deleted user is gone from the brokers.

use std::collections::BTreeMap;
use std::sync::Arc;

use gregor_client::admin::{Admin, AdminError};
use gregor_client::admin_principals::AclBinding;
use gregor_client::ClientSecurity;
use gregor_operator::crd::cluster::{
    AuthenticationType, Authorization, AuthorizationType, ExternalListener, ExternalType,
    KafkaClusterSpec, ListenerAuthentication,
};
use gregor_operator::crd::user::{
    AclOperation, AclPatternType, AclPermission, AclResource, AclResourceType, AclRule, KafkaUser,
    KafkaUserSpec, UserAuthentication, UserAuthenticationType, UserAuthorization, UserQuotas,
};
use gregor_operator::reconcile::access::Access;
use gregor_operator::reconcile::certificates::access_of;
use gregor_operator::reconcile::user::{reconcile, FINALIZER};
use gregor_operator::reconcile::Context;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kafka_protocol::error::ResponseError;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::ResourceExt;

use crate::certificates::{start_secured_node, trusting, SecuredNode};
use crate::cluster::{context, create, get};
use crate::{api_server_or_skip, install_crds};

fn rule(kind: AclResourceType, name: &str, operations: &[AclOperation]) -> AclRule {
    AclRule {
        resource: AclResource {
            kind,
            name: Some(name.into()),
            pattern_type: AclPatternType::Literal,
        },
        operations: operations.to_vec(),
        permission: AclPermission::Allow,
        host: "*".into(),
    }
}

fn user_spec(kind: UserAuthenticationType, acls: Vec<AclRule>) -> KafkaUserSpec {
    KafkaUserSpec {
        cluster: "events".into(),
        authentication: Some(UserAuthentication {
            kind,
            password: None,
        }),
        authorization: Some(UserAuthorization {
            kind: AuthorizationType::Simple,
            acls,
        }),
        quotas: None,
    }
}

/// Reconciles the user until its status describes its generation (the first reconcile only
/// adds the finalizer); returns the Ready condition's (status, reason, message).
async fn settle(api: &Api<KafkaUser>, ctx: &Arc<Context>, name: &str) -> (String, String, String) {
    for _ in 0..5 {
        let ku = api.get(name).await.unwrap();
        reconcile(Arc::new(ku), Arc::clone(ctx))
            .await
            .unwrap_or_else(|e| panic!("reconciling {name}: {e}"));
        let ku = api.get(name).await.unwrap();
        let status = ku.status.clone().unwrap_or_default();
        if status.observed_generation == ku.metadata.generation {
            let ready = status
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready")
                .expect("Ready");
            return (
                ready.status.clone(),
                ready.reason.clone(),
                ready.message.clone(),
            );
        }
    }
    panic!("KafkaUser {name} never reported its generation");
}

fn scram(node: &SecuredNode, user: &str, password: &str) -> ClientSecurity {
    let jaas = format!(
        "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"{user}\" \
         password=\"{password}\";"
    );
    trusting(
        node,
        &[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.jaas.config", &jaas),
        ],
    )
}

/// The ACLs of `principal` once `done` holds of them (the brokers apply ACL changes from the
/// metadata log a moment after the controller commits them, as Kafka's do).
async fn acls_when(
    admin: &mut Admin,
    principal: &str,
    done: impl Fn(&std::collections::BTreeSet<AclBinding>) -> bool,
) -> std::collections::BTreeSet<AclBinding> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let acls = admin.acls_of(principal).await.unwrap();
        if done(&acls) {
            return acls;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{principal}: {acls:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn text(secret: &Secret, key: &str) -> String {
    String::from_utf8(secret.data.as_ref().unwrap()[key].0.clone()).unwrap()
}

fn refused(result: Result<impl std::fmt::Debug, AdminError>) -> Option<ResponseError> {
    match result {
        Err(e) => e.code(),
        Ok(v) => panic!("allowed: {v:?}"),
    }
}

/// A TLS user: a certificate from the clients CA in its Secret (PEM and PKCS#12), logging in
/// on the external listener (mutual TLS) with exactly its ACLs.
async fn a_tls_user_logs_in_with_its_certificate(
    users: &Api<KafkaUser>,
    ctx: &Arc<Context>,
    node: &SecuredNode,
    operator: &mut Admin,
    secrets: &Api<Secret>,
) {
    users
        .create(
            &PostParams::default(),
            &KafkaUser::new(
                "bob",
                user_spec(
                    UserAuthenticationType::Tls,
                    vec![rule(
                        AclResourceType::Topic,
                        "payroll",
                        &[AclOperation::Describe],
                    )],
                ),
            ),
        )
        .await
        .unwrap();
    assert_eq!(settle(users, ctx, "bob").await.0, "True");
    let bob = secrets.get("bob").await.unwrap();
    let p12 = &bob.data.as_ref().unwrap()["user.p12"].0;
    assert!(p12_keystore::KeyStore::from_pkcs12(
        p12,
        &text(&bob, "user.password"),
        p12_keystore::Pkcs12ImportPolicy::Relaxed
    )
    .is_ok());
    let clients_ca = text(&bob, "ca.crt");
    assert_eq!(
        gregor_operator::pki::inspect(&text(&bob, "user.crt"))
            .unwrap()
            .subject,
        "CN=bob"
    );
    let cert = trusting(
        node,
        &[
            ("security.protocol", "SSL"),
            ("ssl.keystore.type", "PEM"),
            ("ssl.keystore.certificate.chain", &text(&bob, "user.crt")),
            ("ssl.keystore.key", &text(&bob, "user.key")),
        ],
    );
    let external = &node.listeners["EXTERNAL"];
    let mut as_bob = Admin::connect_with(external, &cert)
        .await
        .expect("bob logs in");
    assert!(as_bob.describe("payroll").await.unwrap().1.is_some());
    assert_eq!(
        refused(as_bob.describe("orders").await),
        Some(ResponseError::TopicAuthorizationFailed)
    );
    assert!(operator
        .acls_of("User:CN=bob")
        .await
        .unwrap()
        .iter()
        .all(|a| a.resource_name == "payroll"));
    assert!(gregor_operator::pki::inspect(&clients_ca).unwrap().is_ca);
}

/// A KafkaCluster `events` in `ns` with SCRAM over TLS on its client listener, client
/// certificates on its external one and the StandardAuthorizer, reconciled once; a node run
/// on what that wrote, and how the operator reaches it.
async fn secured_node(client: &kube::Client, ns: &str) -> (SecuredNode, Arc<Context>, Access) {
    let external = ListenerAuthentication::of(AuthenticationType::Tls);
    secured_node_with(client, ns, external).await
}

/// [`secured_node`] with `external` as the external (TLS) listener's authentication.
async fn secured_node_with(
    client: &kube::Client,
    ns: &str,
    external: ListenerAuthentication,
) -> (SecuredNode, Arc<Context>, Access) {
    install_crds(client).await;
    let mut spec = KafkaClusterSpec {
        replicas: 1,
        authorization: Some(Authorization {
            kind: AuthorizationType::Simple,
            super_users: vec![],
        }),
        ..Default::default()
    };
    spec.listeners.tls = true;
    spec.listeners.authentication =
        Some(ListenerAuthentication::of(AuthenticationType::ScramSha512));
    spec.listeners.external = Some({
        let mut e = ExternalListener::of(ExternalType::NodePort);
        e.tls = true;
        e.authentication = Some(external);
        e.advertised = BTreeMap::from([("0".into(), "kafka-0.example.com:31000".into())]);
        e
    });
    create(client, ns, "events", spec).await;
    gregor_operator::reconcile::cluster::reconcile(
        Arc::new(get(client, ns, "events").await),
        context(client),
    )
    .await
    .expect("the cluster's reconcile");
    let node = start_secured_node(client, ns).await;
    let mut ctx = (*context(client)).clone();
    ctx.bootstrap_overrides
        .insert(format!("{ns}/events"), node.replication.clone());
    let ctx = Arc::new(ctx);
    let access = access_of(&ctx, &get(client, ns, "events").await)
        .await
        .unwrap()
        .unwrap();
    (node, ctx, access)
}

/// Creates `topics`, one partition on node 0 each, as the operator.
async fn create_topics(operator: &mut Admin, topics: &[&str]) {
    for topic in topics {
        operator
            .create_topic(topic, &[vec![0]], &BTreeMap::new())
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn users_get_credentials_exactly_their_acls_and_quotas_and_lose_them_when_deleted() {
    let server = api_server_or_skip!();
    let (client, ns) = server.namespace("users").await;
    let (node, ctx, access) = secured_node(&client, &ns).await;
    let mut operator = node.admin(&access).await;
    create_topics(&mut operator, &["orders", "payroll"]).await;

    // A SCRAM user with a generated password, Describe and Write on orders, and a quota.
    let users: Api<KafkaUser> = Api::namespaced(client.clone(), &ns);
    let mut alice = user_spec(
        UserAuthenticationType::ScramSha512,
        vec![rule(
            AclResourceType::Topic,
            "orders",
            &[AclOperation::Describe, AclOperation::Write],
        )],
    );
    alice.quotas = Some(UserQuotas {
        producer_byte_rate: Some(1_048_576),
        ..Default::default()
    });
    users
        .create(&PostParams::default(), &KafkaUser::new("alice", alice))
        .await
        .unwrap();
    assert_eq!(settle(&users, &ctx, "alice").await.0, "True");
    let ku = users.get("alice").await.unwrap();
    assert!(ku.finalizers().iter().any(|f| f == FINALIZER));
    assert_eq!(
        ku.status.as_ref().unwrap().username.as_deref(),
        Some("alice")
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let secret = secrets.get("alice").await.unwrap();
    let password = text(&secret, "password");
    assert_eq!(password.len(), 32);
    assert!(text(&secret, "sasl.jaas.config").contains(&format!("password=\"{password}\"")));

    // alice logs in and may do exactly what her ACLs say.
    let mut as_alice = Admin::connect_with(&node.client, &scram(&node, "alice", &password))
        .await
        .expect("alice logs in");
    assert!(as_alice.describe("orders").await.unwrap().1.is_some());
    let create = as_alice
        .create_topic("alice-new", &[vec![0]], &BTreeMap::new())
        .await;
    assert_eq!(
        refused(create),
        Some(ResponseError::TopicAuthorizationFailed)
    );
    let payroll = as_alice.describe("payroll").await;
    assert_eq!(
        refused(payroll),
        Some(ResponseError::TopicAuthorizationFailed)
    );
    assert_eq!(
        operator.user_quotas("alice").await.unwrap(),
        BTreeMap::from([("producer_byte_rate".to_string(), 1_048_576.0)])
    );

    // An ACL for alice made elsewhere is removed; a second reconcile changes nothing else.
    let stray = AclBinding {
        resource_type: 2,
        resource_name: "payroll".into(),
        pattern_type: 3,
        principal: "User:alice".into(),
        host: "*".into(),
        operation: 3,
        permission: 3,
    };
    operator
        .create_acls(std::slice::from_ref(&stray))
        .await
        .unwrap();
    acls_when(&mut operator, "User:alice", |a| a.contains(&stray)).await;
    reconcile(
        Arc::new(users.get("alice").await.unwrap()),
        Arc::clone(&ctx),
    )
    .await
    .unwrap();
    let acls = acls_when(&mut operator, "User:alice", |a| !a.contains(&stray)).await;
    assert_eq!(acls.len(), 2, "{acls:?}");

    // Her password moves to a Secret of her own: applied, the old one refused, nothing else
    // recreated.
    secrets
        .create(
            &PostParams::default(),
            &Secret {
                metadata: ObjectMeta {
                    name: Some("alice-password".into()),
                    ..Default::default()
                },
                data: Some(BTreeMap::from([(
                    "pw".to_string(),
                    ByteString(b"correct-horse".to_vec()),
                )])),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let patch = serde_json::json!({"spec": {"authentication": {"type": "scram-sha-512",
        "password": {"valueFrom": {"secretKeyRef": {"name": "alice-password", "key": "pw"}}}}}});
    users
        .patch("alice", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(settle(&users, &ctx, "alice").await.0, "True");
    assert!(
        Admin::connect_with(&node.client, &scram(&node, "alice", "correct-horse"))
            .await
            .is_ok()
    );
    assert!(
        Admin::connect_with(&node.client, &scram(&node, "alice", &password))
            .await
            .is_err()
    );
    assert_eq!(operator.acls_of("User:alice").await.unwrap().len(), 2);

    a_tls_user_logs_in_with_its_certificate(&users, &ctx, &node, &mut operator, &secrets).await;

    // alice deleted: her credential, ACLs and quotas go with her.
    users
        .delete("alice", &DeleteParams::default())
        .await
        .unwrap();
    reconcile(
        Arc::new(users.get("alice").await.unwrap()),
        Arc::clone(&ctx),
    )
    .await
    .unwrap();
    assert!(
        users.get_opt("alice").await.unwrap().is_none(),
        "the finalizer is removed"
    );
    acls_when(
        &mut operator,
        "User:alice",
        std::collections::BTreeSet::is_empty,
    )
    .await;
    assert!(operator.user_quotas("alice").await.unwrap().is_empty());
    assert!(
        Admin::connect_with(&node.client, &scram(&node, "alice", "correct-horse"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_user_the_cluster_cannot_have_is_refused_naming_the_field() {
    let server = api_server_or_skip!();
    let (client, ns) = server.namespace("baduser").await;
    install_crds(&client).await;
    let mut spec = KafkaClusterSpec {
        replicas: 1,
        ..Default::default()
    };
    spec.listeners.authentication =
        Some(ListenerAuthentication::of(AuthenticationType::ScramSha512));
    create(&client, &ns, "events", spec).await;
    let ctx = context(&client);
    let users: Api<KafkaUser> = Api::namespaced(client.clone(), &ns);

    // A TLS user on a cluster without a listener taking certificates.
    let tls = user_spec(UserAuthenticationType::Tls, vec![]);
    users
        .create(&PostParams::default(), &KafkaUser::new("carol", tls))
        .await
        .unwrap();
    let (status, reason, message) = settle(&users, &ctx, "carol").await;
    assert_eq!((status.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert!(
        message.contains("spec.authentication.type tls"),
        "{message}"
    );

    // ACLs on a cluster without an authorizer would protect nothing.
    let unenforced = user_spec(
        UserAuthenticationType::ScramSha512,
        vec![rule(
            AclResourceType::Topic,
            "orders",
            &[AclOperation::Read],
        )],
    );
    users
        .create(&PostParams::default(), &KafkaUser::new("gina", unenforced))
        .await
        .unwrap();
    let (status, reason, message) = settle(&users, &ctx, "gina").await;
    assert_eq!((status.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert!(message.contains("has no spec.authorization"), "{message}");

    // A topic name no topic can have.
    let bad = user_spec(
        UserAuthenticationType::ScramSha512,
        vec![rule(
            AclResourceType::Topic,
            "no/slashes",
            &[AclOperation::Read],
        )],
    );
    users
        .create(&PostParams::default(), &KafkaUser::new("dave", bad))
        .await
        .unwrap();
    let (status, reason, message) = settle(&users, &ctx, "dave").await;
    assert_eq!((status.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert!(
        message.contains("spec.authorization.acls[0].resource.name"),
        "{message}"
    );

    // An unknown operation never gets in: the schema refuses it, naming the field.
    let raw: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &kube::api::ApiResource::erase::<KafkaUser>(&()),
    );
    let object: kube::api::DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "gregor.dev/v1alpha1", "kind": "KafkaUser",
        "metadata": {"name": "frank"},
        "spec": {"cluster": "events", "authorization": {"type": "simple", "acls": [
            {"resource": {"type": "topic", "name": "orders"}, "operations": ["Fly"]}]}}
    }))
    .unwrap();
    let err = raw
        .create(&PostParams::default(), &object)
        .await
        .expect_err("the schema refuses Fly");
    assert!(err.to_string().contains("operations"), "{err}");
}

/// Runs `program` with `args` and `stdin`, within two minutes; its output, or the failure.
fn run(program: &std::path::Path, args: &[&str], stdin: &str) -> Result<String, String> {
    use std::io::Write;
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// A TLS user's Secret as a Java client uses it: Kafka's own console tools with the user's
/// PKCS#12 key store and the cluster CA's PKCS#12 trust store produce and read back in the
/// user's group. (librdkafka with a SCRAM user's password and the PEM CA certificate is the
/// end-to-end suite's client, scenario 9.)
#[tokio::test]
async fn a_java_client_logs_in_with_a_tls_users_pkcs12_stores() {
    let server = api_server_or_skip!();
    let (client, ns) = server.namespace("clients").await;
    let (node, ctx, access) = secured_node(&client, &ns).await;
    let mut operator = node.admin(&access).await;
    create_topics(&mut operator, &["ledger"]).await;
    let users: Api<KafkaUser> = Api::namespaced(client.clone(), &ns);
    let writer = user_spec(
        UserAuthenticationType::Tls,
        vec![
            rule(
                AclResourceType::Topic,
                "ledger",
                &[AclOperation::Write, AclOperation::Read],
            ),
            rule(
                AclResourceType::Group,
                "ledger-readers",
                &[AclOperation::Read],
            ),
        ],
    );
    users
        .create(&PostParams::default(), &KafkaUser::new("carl", writer))
        .await
        .unwrap();
    assert_eq!(settle(&users, &ctx, "carl").await.0, "True");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let carl = secrets.get("carl").await.unwrap();
    let ca = secrets.get("events-cluster-ca-cert").await.unwrap();
    let dir = node.dir.path();
    let file = |name: &str, secret: &Secret, key: &str| {
        let path = dir.join(name);
        std::fs::write(&path, &secret.data.as_ref().unwrap()[key].0).unwrap();
        path.display().to_string()
    };

    // Java, with the PKCS#12 stores: carl produces and reads back in his group.
    let java = dir.join("carl.properties");
    std::fs::write(
        &java,
        format!(
            "security.protocol=SSL\nssl.keystore.type=PKCS12\nssl.keystore.location={}\n\
             ssl.keystore.password={}\nssl.truststore.type=PKCS12\n\
             ssl.truststore.location={}\nssl.truststore.password={}\n\
             ssl.endpoint.identification.algorithm=\n",
            file("carl.p12", &carl, "user.p12"),
            text(&carl, "user.password"),
            file("ca.p12", &ca, "ca.p12"),
            text(&ca, "ca.password"),
        ),
    )
    .unwrap();
    let kafka = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka.sh");
    let external = node.listeners["EXTERNAL"].as_str();
    let config = java.display().to_string();
    run(
        &kafka,
        &[
            "console-producer",
            "--bootstrap-server",
            external,
            "--topic",
            "ledger",
            "--command-config",
            &config,
        ],
        "one\ntwo\nthree\n",
    )
    .expect("carl produces with Kafka's console producer");
    let read = run(
        &kafka,
        &[
            "console-consumer",
            "--bootstrap-server",
            external,
            "--topic",
            "ledger",
            "--group",
            "ledger-readers",
            "--from-beginning",
            "--max-messages",
            "3",
            "--timeout-ms",
            "30000",
            "--command-config",
            &config,
        ],
        "",
    )
    .expect("carl consumes in his group");
    assert_eq!(read.lines().collect::<Vec<_>>(), ["one", "two", "three"]);
}

/// Runs `kafka_client.py` (confluent-kafka, in the test venv: `GREGOR_PYTHON`, as .ci/run
/// sets it) in `mode` with librdkafka `config` on `topic`; its JSON report.
fn librdkafka(
    mode: &str,
    config: &serde_json::Value,
    topic: &str,
    count: usize,
) -> serde_json::Value {
    let python = std::env::var("GREGOR_PYTHON").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_default();
        format!("{home}/.cache/gregor/venv/bin/python")
    });
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/kafka_client.py");
    let script = script.display().to_string();
    let count = count.to_string();
    let out = run(
        std::path::Path::new(&python),
        &[&script, mode, &config.to_string(), topic, &count],
        "",
    )
    .unwrap_or_else(|e| panic!("{python} {script} {mode} (confluent-kafka): {e}"));
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{out}: {e}"))
}

/// A TLS user's Secret as a librdkafka application uses it: the PEM certificate, key and CA
/// straight from the Secret. The user's ACLs let it produce to and read its topic, in its
/// group, and nothing else; its quota throttles the producer (the broker's throttle time
/// reaches librdkafka), and not one record is lost for it.
#[tokio::test]
async fn a_librdkafka_client_uses_a_tls_users_pem_secret_and_its_quota_throttles_it() {
    let server = api_server_or_skip!();
    let (client, ns) = server.namespace("pem").await;
    let (node, ctx, access) = secured_node(&client, &ns).await;
    let mut operator = node.admin(&access).await;
    create_topics(&mut operator, &["metrics", "payroll"]).await;
    let users: Api<KafkaUser> = Api::namespaced(client.clone(), &ns);
    let mut spec = user_spec(
        UserAuthenticationType::Tls,
        vec![
            rule(
                AclResourceType::Topic,
                "metrics",
                &[AclOperation::Write, AclOperation::Read],
            ),
            rule(AclResourceType::Group, "dashboards", &[AclOperation::Read]),
        ],
    );
    spec.quotas = Some(UserQuotas {
        producer_byte_rate: Some(1024),
        ..Default::default()
    });
    users
        .create(&PostParams::default(), &KafkaUser::new("dora", spec))
        .await
        .unwrap();
    assert_eq!(settle(&users, &ctx, "dora").await.0, "True");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let dora = secrets.get("dora").await.unwrap();
    // The brokers' certificates chain to the cluster CA (the user's `ca.crt` is the clients
    // CA, which signed the user's own), as with Strimzi.
    let ca = secrets.get("events-cluster-ca-cert").await.unwrap();
    let config = serde_json::json!({
        "bootstrap.servers": node.listeners["EXTERNAL"],
        "security.protocol": "SSL",
        "ssl.certificate.pem": text(&dora, "user.crt"),
        "ssl.key.pem": text(&dora, "user.key"),
        "ssl.ca.pem": text(&ca, "ca.crt"),
    });

    // About 24 KiB, well over 1 KiB/s (Kafka measures the rate over its 11 one-second
    // samples from the start): throttled, and every record delivered.
    let produced = librdkafka("produce", &config, "metrics", 24);
    assert_eq!(produced["delivered"], 24, "{produced}");
    assert_eq!(produced["errors"], serde_json::json!([]), "{produced}");
    let throttled = produced["throttled_ms"].as_array().unwrap();
    assert!(
        throttled.iter().any(|t| t.as_i64() > Some(0)),
        "the quota throttles dora's producer: {produced}"
    );
    let mut reader = config.clone();
    reader["group.id"] = "dashboards".into();
    let read = librdkafka("consume", &reader, "metrics", 24);
    assert_eq!(read["error"], serde_json::Value::Null, "{read}");
    let values = read["values"].as_array().unwrap();
    assert_eq!(values.len(), 24, "{read}");
    assert!(values[0].as_str().unwrap().starts_with("0-"));

    // No ACL names payroll: refused, not lost in a retry loop.
    let denied = librdkafka("produce", &config, "payroll", 1);
    assert_eq!(
        denied["errors"],
        serde_json::json!(["TOPIC_AUTHORIZATION_FAILED"]),
        "{denied}"
    );
}

/// Signs ES256 JWTs with a fresh P-256 key; its JWKS document.
struct TokenIssuer {
    key: ring::signature::EcdsaKeyPair,
    jwks: serde_json::Value,
}

impl TokenIssuer {
    fn new() -> Self {
        use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING as ES256};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ES256, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ES256, pkcs8.as_ref(), &rng).unwrap();
        let point = key.public_key().as_ref().to_vec();
        let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "idp-1",
            "use": "sig", "alg": "ES256", "x": b64(&point[1..33]), "y": b64(&point[33..65])}]});
        TokenIssuer { key, jwks }
    }

    /// A token for `sub` with audience `aud`, from issuer `https://idp.example`.
    fn token(&self, sub: &str, aud: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": "idp-1"});
        let claims = serde_json::json!({"sub": sub, "aud": aud, "iss": "https://idp.example",
            "iat": now, "exp": now + 600});
        let signed = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = self
            .key
            .sign(&ring::rand::SystemRandom::new(), signed.as_bytes())
            .unwrap();
        format!("{signed}.{}", b64(signature.as_ref()))
    }
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An `oauth` listener: the brokers check the identity provider's tokens against its JWKS,
/// issuer and audience, and a KafkaUser without credentials gives the token's subject its
/// ACLs.
#[tokio::test]
async fn an_oauth_listener_takes_the_identity_providers_tokens_and_a_kafka_users_acls() {
    let server = api_server_or_skip!();
    let (client, ns) = server.namespace("oauth").await;
    let idp = TokenIssuer::new();
    let jwks_dir = tempfile::tempdir().unwrap();
    let jwks = jwks_dir.path().join("jwks.json");
    std::fs::write(&jwks, idp.jwks.to_string()).unwrap();
    let mut oauth = ListenerAuthentication::of(AuthenticationType::OAuth);
    oauth.jwks_uri = Some(format!("file://{}", jwks.display()));
    oauth.issuer = Some("https://idp.example".into());
    oauth.audience = Some("kafka".into());
    let (node, ctx, access) = secured_node_with(&client, &ns, oauth).await;
    let mut operator = node.admin(&access).await;
    create_topics(&mut operator, &["clicks", "payroll"]).await;
    // The identity provider knows erin; the KafkaUser only gives her rights.
    let users: Api<KafkaUser> = Api::namespaced(client.clone(), &ns);
    let mut spec = user_spec(
        UserAuthenticationType::Tls,
        vec![rule(
            AclResourceType::Topic,
            "clicks",
            &[AclOperation::Write],
        )],
    );
    spec.authentication = None;
    users
        .create(&PostParams::default(), &KafkaUser::new("erin", spec))
        .await
        .unwrap();
    assert_eq!(settle(&users, &ctx, "erin").await.0, "True");
    assert!(
        secrets_named(&client, &ns, "erin").await.is_none(),
        "no credentials to keep"
    );

    let ca = Api::<Secret>::namespaced(client.clone(), &ns)
        .get("events-cluster-ca-cert")
        .await
        .unwrap();
    let config = |token: String| {
        serde_json::json!({
            "bootstrap.servers": node.listeners["EXTERNAL"],
            "security.protocol": "SASL_SSL",
            "sasl.mechanisms": "OAUTHBEARER",
            "oauth.token": token,
            "ssl.ca.pem": text(&ca, "ca.crt"),
            "message.timeout.ms": 8000,
        })
    };
    let produced = librdkafka("produce", &config(idp.token("erin", "kafka")), "clicks", 3);
    assert_eq!(produced["delivered"], 3, "{produced}");
    let denied = librdkafka("produce", &config(idp.token("erin", "kafka")), "payroll", 1);
    assert_eq!(
        denied["errors"],
        serde_json::json!(["TOPIC_AUTHORIZATION_FAILED"]),
        "{denied}"
    );
    // A token for another audience does not log in: nothing is delivered.
    let elsewhere = librdkafka(
        "produce",
        &config(idp.token("erin", "billing")),
        "clicks",
        1,
    );
    assert_eq!(elsewhere["delivered"], 0, "{elsewhere}");
    assert_ne!(elsewhere["errors"], serde_json::json!([]), "{elsewhere}");
}

/// The Secret `name` in `ns`, if there is one.
async fn secrets_named(client: &kube::Client, ns: &str, name: &str) -> Option<Secret> {
    Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .unwrap()
}
