//! The cluster and clients CAs and the nodes' certificates, in Secrets on the real API server:
//! made once, kept, renewed in their window (the clock moved ahead) or on `force-renew`, and a
//! user-supplied CA used as it is.

use std::collections::BTreeMap;
use std::sync::Arc;

use gregor_operator::crd::cluster::CertificateAuthority;
use gregor_operator::crd::{KafkaCluster, KafkaClusterSpec};
use gregor_operator::pki::{self, CertInfo, Validity};
use gregor_operator::reconcile::certificates::{
    nodes_secret, operator_secret, Which, CERT_GENERATION_ANNOTATION, FORCE_RENEW_ANNOTATION,
};
use gregor_operator::reconcile::{cluster::reconcile, Clock, Context};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::ResourceExt;

use crate::cluster::{condition, context, create, get};
use crate::{api_server_or_skip, install_crds};

const DAY: i64 = 86_400;

fn text(secret: &Secret, key: &str) -> String {
    let bytes = &secret.data.as_ref().expect("data")[key].0;
    String::from_utf8(bytes.clone()).expect("UTF-8")
}

async fn secret(client: &kube::Client, ns: &str, name: &str) -> Secret {
    Api::<Secret>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("Secret {name}: {e}"))
}

/// Sets `annotation: "true"` on the Secret `name`, as `kubectl annotate` would.
async fn annotate(client: &kube::Client, ns: &str, name: &str, annotation: &str) {
    let patch = serde_json::json!({"metadata": {"annotations": {annotation: "true"}}});
    Api::<Secret>::namespaced(client.clone(), ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("annotating {name}: {e}"));
}

async fn reconcile_with(client: &kube::Client, ns: &str, ctx: &Arc<Context>) {
    reconcile(Arc::new(get(client, ns, "events").await), Arc::clone(ctx))
        .await
        .expect("reconcile");
}

fn ahead(client: &kube::Client, seconds: i64) -> Arc<Context> {
    let mut ctx = (*context(client)).clone();
    ctx.clock = Clock::ahead(seconds);
    Arc::new(ctx)
}

fn now() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_second()
}

/// The CA certificate of `which` and the node certificate of `pod` (first of its chain).
async fn read(client: &kube::Client, ns: &str, which: Which, pod: &str) -> (CertInfo, CertInfo) {
    let ca = pki::inspect(&text(
        &secret(client, ns, &which.cert_secret("events")).await,
        "ca.crt",
    ))
    .unwrap();
    let node = pki::inspect(&text(
        &secret(client, ns, &nodes_secret("events")).await,
        &format!("{pod}.crt"),
    ))
    .unwrap();
    (ca, node)
}

#[tokio::test]
async fn a_cluster_gets_both_cas_and_node_certificates_and_a_second_reconcile_rewrites_nothing() {
    let server = api_server_or_skip!();
    let (client, ns) = server.namespace("certs").await;
    install_crds(&client).await;
    let spec = KafkaClusterSpec {
        replicas: 3,
        ..Default::default()
    };
    let kc = create(&client, &ns, "events", spec).await;
    let ctx = context(&client);
    let started = now();
    reconcile(Arc::new(kc), Arc::clone(&ctx))
        .await
        .expect("reconcile");
    let kc = get(&client, &ns, "events").await;
    let uid = kc.uid().unwrap();

    let mut cas = BTreeMap::new();
    for which in [Which::Cluster, Which::Clients] {
        let key = secret(&client, &ns, &which.key_secret("events")).await;
        let cert = secret(&client, &ns, &which.cert_secret("events")).await;
        for s in [&key, &cert] {
            let owners = s.metadata.owner_references.as_ref().expect("owned");
            assert_eq!(owners[0].uid, uid, "{}", s.name_any());
        }
        assert_eq!(cert.annotations()[CERT_GENERATION_ANNOTATION], "0");
        let info = pki::inspect(&text(&cert, "ca.crt")).unwrap();
        assert!(info.is_ca && info.key_matches(&text(&key, "ca.key")));
        assert!(
            (info.not_after - started - 365 * DAY).abs() < 60,
            "365 days by default"
        );
        // The PKCS#12 trust store Java clients take holds the same certificate.
        let store = p12_keystore::KeyStore::from_pkcs12(
            &cert.data.as_ref().unwrap()["ca.p12"].0,
            &text(&cert, "ca.password"),
            p12_keystore::Pkcs12ImportPolicy::Relaxed,
        )
        .expect("ca.p12 opens with ca.password");
        assert!(store.entries().any(|(_, e)| matches!(
            e,
            p12_keystore::KeyStoreEntry::Certificate(c) if c.as_der() == info.der()
        )));
        cas.insert(format!("{which:?}"), info);
    }
    assert_ne!(cas["Cluster"].subject, cas["Clients"].subject);

    let nodes = secret(&client, &ns, &nodes_secret("events")).await;
    for pod in ["events-0", "events-1", "events-2"] {
        let chain = pki::inspect_all(&text(&nodes, &format!("{pod}.crt"))).unwrap();
        assert_eq!(chain.len(), 2, "the node's certificate, then the CA's");
        assert_eq!(chain[1].der(), cas["Cluster"].der());
        let cert = &chain[0];
        assert!(cert.signed_by(&cas["Cluster"]) && !cert.signed_by(&cas["Clients"]));
        assert!(cert.key_matches(&text(&nodes, &format!("{pod}.key"))));
        let bundle = text(&nodes, &format!("{pod}.pem"));
        assert!(
            bundle.starts_with("-----BEGIN PRIVATE KEY-----"),
            "key, then chain"
        );
        assert!(cert.names.contains(&format!("{pod}.events-nodes.{ns}.svc")));
        assert!(cert
            .names
            .contains(&format!("{pod}.events-nodes.{ns}.svc.cluster.local")));
        assert!(cert.names.contains(&format!("events-bootstrap.{ns}.svc")));
        assert!(!cert.is_ca);
    }

    let status = kc.status.clone().unwrap();
    let cluster_ca = status.cluster_ca.expect("status.clusterCa");
    assert!(cluster_ca.generated);
    assert_eq!(cluster_ca.cert_generation, 0);
    assert_eq!(
        cluster_ca.certificate_expiry,
        k8s_openapi::jiff::Timestamp::from_second(cas["Cluster"].not_after)
            .unwrap()
            .to_string()
    );
    assert!(status.clients_ca.is_some());
    assert_eq!(condition(&kc, "CertificateExpiring").status, "False");

    // Nothing due: nothing written.
    let names = [
        Which::Cluster.key_secret("events"),
        Which::Cluster.cert_secret("events"),
        Which::Clients.key_secret("events"),
        Which::Clients.cert_secret("events"),
        nodes_secret("events"),
    ];
    let mut before = Vec::new();
    for name in &names {
        before.push(secret(&client, &ns, name).await.resource_version());
    }
    reconcile_with(&client, &ns, &ctx).await;
    for (name, version) in names.iter().zip(before) {
        assert_eq!(
            secret(&client, &ns, name).await.resource_version(),
            version,
            "{name}"
        );
    }
}

/// A NodePort broker is reached at the address of the node its pod runs on: that IP joins
/// the certificate's names once the pod is scheduled, and follows the pod to another node.
#[tokio::test]
async fn a_node_port_brokers_certificate_names_the_ip_of_the_node_its_pod_runs_on() {
    use gregor_operator::crd::cluster::{ExternalListener, ExternalType};
    use k8s_openapi::api::core::v1::Pod;

    let server = api_server_or_skip!();
    let (client, ns) = server.namespace("nodeport").await;
    install_crds(&client).await;
    let mut spec = KafkaClusterSpec {
        replicas: 2,
        ..Default::default()
    };
    spec.listeners.external = Some({
        let mut e = ExternalListener::of(ExternalType::NodePort);
        e.tls = true;
        e
    });
    create(&client, &ns, "events", spec).await;
    let ctx = context(&client);
    reconcile_with(&client, &ns, &ctx).await;
    let names = |secret: &Secret, pod: &str| {
        pki::inspect(&text(secret, &format!("{pod}.crt")))
            .unwrap()
            .names
    };
    let before = secret(&client, &ns, &nodes_secret("events")).await;
    assert!(names(&before, "events-0").contains(&format!("events-0.events-nodes.{ns}.svc")));

    // events-0 lands on a node (as the scheduler would place it, here by hand).
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "events-0", "labels": {
            "app.kubernetes.io/name": "gregor", "app.kubernetes.io/instance": "events"}},
        "spec": {"containers": [{"name": "gregor", "image": "gregor:test"}]},
    }))
    .unwrap();
    // (A reconcile may restart the stand-in pod, which has no StatefulSet revision: then it
    // comes back, as a StatefulSet would bring it.)
    let place = |ip: &'static str| {
        let (pods, pod) = (pods.clone(), pod.clone());
        async move {
            if pods.get_opt("events-0").await.unwrap().is_none() {
                pods.create(&PostParams::default(), &pod).await.unwrap();
            }
            let status = serde_json::json!({"status": {"hostIP": ip, "hostIPs": [{"ip": ip}]}});
            pods.patch_status("events-0", &PatchParams::default(), &Patch::Merge(&status))
                .await
                .unwrap();
        }
    };
    place("172.18.0.3").await;
    reconcile_with(&client, &ns, &ctx).await;
    let placed = secret(&client, &ns, &nodes_secret("events")).await;
    assert!(names(&placed, "events-0").contains("172.18.0.3"));
    assert!(
        !names(&placed, "events-1")
            .iter()
            .any(|n| n.starts_with("172.")),
        "events-1 runs nowhere yet"
    );
    assert_eq!(
        text(&placed, "events-1.crt"),
        text(&before, "events-1.crt"),
        "events-1 keeps its certificate"
    );

    // Moved to another node: the certificate names the new IP only.
    place("172.18.0.4").await;
    reconcile_with(&client, &ns, &ctx).await;
    let moved = names(
        &secret(&client, &ns, &nodes_secret("events")).await,
        "events-0",
    );
    assert!(moved.contains("172.18.0.4") && !moved.contains("172.18.0.3"));
}

#[tokio::test]
async fn certificates_are_renewed_in_their_window_and_on_force_renew_keeping_the_ca_key() {
    let server = api_server_or_skip!();
    let (client, ns) = server.namespace("renew").await;
    install_crds(&client).await;
    let spec = KafkaClusterSpec {
        replicas: 1,
        cluster_ca: CertificateAuthority {
            validity_days: 10,
            renewal_days: 2,
            ..Default::default()
        },
        ..Default::default()
    };
    create(&client, &ns, "events", spec).await;
    reconcile_with(&client, &ns, &context(&client)).await;
    let key = text(
        &secret(&client, &ns, &Which::Cluster.key_secret("events")).await,
        "ca.key",
    );
    let (ca, node) = read(&client, &ns, Which::Cluster, "events-0").await;
    let (clients_ca, _) = read(&client, &ns, Which::Clients, "events-0").await;

    // Seven days on: outside the two-day window, nothing moves.
    reconcile_with(&client, &ns, &ahead(&client, 7 * DAY)).await;
    let (same_ca, same_node) = read(&client, &ns, Which::Cluster, "events-0").await;
    assert_eq!((same_ca.der(), same_node.der()), (ca.der(), node.der()));

    // Nine days on: inside it. The CA certificate is renewed for its key, and the node's
    // certificate issued again; the old node certificate still verifies against the new CA.
    let later = ahead(&client, 9 * DAY);
    reconcile_with(&client, &ns, &later).await;
    let (renewed, reissued) = read(&client, &ns, Which::Cluster, "events-0").await;
    assert_ne!(renewed.der(), ca.der());
    assert_eq!(renewed.subject, ca.subject);
    assert!(renewed.key_matches(&key), "the CA keeps its key");
    assert!(renewed.not_after >= ca.not_after + 8 * DAY);
    assert!(
        node.signed_by(&renewed),
        "what the CA issued before still chains"
    );
    assert_ne!(reissued.der(), node.der());
    assert!(reissued.signed_by(&renewed) && reissued.not_after > node.not_after);
    let cert_secret = secret(&client, &ns, &Which::Cluster.cert_secret("events")).await;
    assert_eq!(cert_secret.annotations()[CERT_GENERATION_ANNOTATION], "1");
    let kc = get(&client, &ns, "events").await;
    assert_eq!(kc.status.unwrap().cluster_ca.unwrap().cert_generation, 1);
    // The clients CA has its own dates (365 days): untouched.
    let (clients_now, _) = read(&client, &ns, Which::Clients, "events-0").await;
    assert_eq!(clients_now.der(), clients_ca.der());

    // force-renew: renewed at once, whatever the dates, and the annotation goes.
    annotate(
        &client,
        &ns,
        &Which::Cluster.cert_secret("events"),
        FORCE_RENEW_ANNOTATION,
    )
    .await;
    reconcile_with(&client, &ns, &later).await;
    let cert_secret = secret(&client, &ns, &Which::Cluster.cert_secret("events")).await;
    assert_eq!(cert_secret.annotations()[CERT_GENERATION_ANNOTATION], "2");
    assert!(!cert_secret
        .annotations()
        .contains_key(FORCE_RENEW_ANNOTATION));
    let (forced, node_now) = read(&client, &ns, Which::Cluster, "events-0").await;
    assert_ne!(forced.der(), renewed.der());
    assert!(forced.key_matches(&key));
    // The node's chain carries the CA certificate as it now is.
    let chain = pki::inspect_all(&text(
        &secret(&client, &ns, &nodes_secret("events")).await,
        "events-0.crt",
    ))
    .unwrap();
    assert_eq!(chain[1].der(), forced.der());
    assert!(node_now.signed_by(&forced));
}

/// Writes a user-supplied CA into the cluster CA's two Secrets.
async fn supply(client: &kube::Client, ns: &str, ca: &pki::KeyAndCert, key_pem: &str) {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    for (name, key, value) in [
        (Which::Cluster.key_secret("events"), "ca.key", key_pem),
        (
            Which::Cluster.cert_secret("events"),
            "ca.crt",
            ca.cert_pem.as_str(),
        ),
    ] {
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                key.to_string(),
                ByteString(value.as_bytes().to_vec()),
            )])),
            ..Default::default()
        };
        match api.get_opt(&name).await.unwrap() {
            Some(_) => {
                api.replace(
                    &name,
                    &PostParams::default(),
                    &Secret {
                        metadata: api.get(&name).await.unwrap().metadata,
                        ..secret
                    },
                )
                .await
                .unwrap();
            }
            None => {
                api.create(&PostParams::default(), &secret).await.unwrap();
            }
        }
    }
}

#[tokio::test]
async fn a_user_supplied_ca_is_used_as_it_is_and_reported_when_missing_broken_or_expiring() {
    let server = api_server_or_skip!();
    let (client, ns) = server.namespace("userca").await;
    install_crds(&client).await;
    let spec = KafkaClusterSpec {
        replicas: 1,
        cluster_ca: CertificateAuthority {
            generate_certificate_authority: false,
            ..Default::default()
        },
        ..Default::default()
    };
    create(&client, &ns, "events", spec).await;
    let ctx = context(&client);

    // Missing: said, and no node certificate issued.
    reconcile_with(&client, &ns, &ctx).await;
    let kc = get(&client, &ns, "events").await;
    let degraded = condition(&kc, "Degraded");
    assert_eq!(
        degraded.reason, "CertificateAuthorityInvalid",
        "{degraded:?}"
    );
    assert!(
        degraded.message.contains("events-cluster-ca-cert"),
        "{}",
        degraded.message
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    assert!(secrets
        .get_opt(&nodes_secret("events"))
        .await
        .unwrap()
        .is_none());

    // The wrong key: said.
    let user_ca = pki::new_ca(
        "my-org-ca",
        pki::CaKey::New(pki::KeyAlgorithm::EcdsaP256),
        Validity::days_from(now(), 40),
    )
    .unwrap();
    let other = pki::new_ca(
        "other",
        pki::CaKey::New(pki::KeyAlgorithm::EcdsaP256),
        Validity::days_from(now(), 40),
    )
    .unwrap();
    supply(&client, &ns, &user_ca, &other.key_pem).await;
    reconcile_with(&client, &ns, &ctx).await;
    let message = condition(&get(&client, &ns, "events").await, "Degraded")
        .message
        .clone();
    assert!(
        message.contains("is not the key of the certificate"),
        "{message}"
    );

    // The right one: used as it is, never written by the operator.
    supply(&client, &ns, &user_ca, &user_ca.key_pem).await;
    let version = secrets
        .get(&Which::Cluster.cert_secret("events"))
        .await
        .unwrap()
        .resource_version();
    reconcile_with(&client, &ns, &ctx).await;
    let kc = get(&client, &ns, "events").await;
    assert_ne!(
        condition(&kc, "Degraded").reason,
        "CertificateAuthorityInvalid"
    );
    let status = kc.status.clone().unwrap().cluster_ca.unwrap();
    assert!(!status.generated);
    assert_eq!(status.phase, gregor_operator::crd::cluster::CaPhase::Ready);
    assert_eq!(condition(&kc, "CertificateExpiring").status, "False");
    let (ca, node) = read(&client, &ns, Which::Cluster, "events-0").await;
    assert_eq!(ca.subject, "O=gregor.dev, CN=my-org-ca");
    assert!(node.signed_by(&ca));
    assert!(
        node.not_after <= ca.not_after,
        "no certificate outlives its CA"
    );
    assert_eq!(
        secrets
            .get(&Which::Cluster.cert_secret("events"))
            .await
            .unwrap()
            .resource_version(),
        version
    );

    // Within its renewal window (30 days before the end of its 40): a condition says so.
    reconcile_with(&client, &ns, &ahead(&client, 15 * DAY)).await;
    let kc = get(&client, &ns, "events").await;
    let expiring = condition(&kc, "CertificateExpiring");
    assert_eq!(
        (expiring.status.as_str(), expiring.reason.as_str()),
        ("True", "UserCaExpiring")
    );
    assert!(
        expiring.message.contains("my-org-ca"),
        "{}",
        expiring.message
    );
    let status = kc.status.clone().unwrap().cluster_ca.unwrap();
    assert_eq!(
        status.phase,
        gregor_operator::crd::cluster::CaPhase::Expiring
    );
}

/// One local node run with the properties the operator wrote for `events-0`: its security
/// keys as they are (with the mounted Secrets' paths pointing at files written from the
/// Secrets), only its addresses moved to loopback ports.
pub struct SecuredNode {
    /// Each listener's loopback address, by name (`CLIENT`, `REPLICATION`, `EXTERNAL`).
    pub listeners: BTreeMap<String, String>,
    /// The replication listener (mutual TLS, where the operator connects).
    pub replication: String,
    /// The client listener.
    pub client: String,
    pub dir: tempfile::TempDir,
    _guard: (std::process::Child, std::process::ChildStdin),
}

/// Writes the Secrets a node mounts into `tls` (what the kubelet does for a pod), each file
/// replaced in one rename so a reload never reads half of one.
pub async fn write_mounted_secrets(client: &kube::Client, ns: &str, tls: &std::path::Path) {
    use gregor_operator::reconcile::certificates::Which;
    for (sub, secret_name) in [
        ("node", nodes_secret("events")),
        ("cluster-ca", Which::Cluster.cert_secret("events")),
        ("clients-ca", Which::Clients.cert_secret("events")),
    ] {
        std::fs::create_dir_all(tls.join(sub)).unwrap();
        let s = secret(client, ns, &secret_name).await;
        for (key, value) in s.data.unwrap() {
            let staged = tls.join(sub).join(format!(".{key}.new"));
            std::fs::write(&staged, value.0).unwrap();
            std::fs::rename(&staged, tls.join(sub).join(key)).unwrap();
        }
    }
}

pub async fn start_secured_node(client: &kube::Client, ns: &str) -> SecuredNode {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    write_mounted_secrets(client, ns, &tls).await;
    let config = Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), ns)
        .get("events-config")
        .await
        .unwrap();
    let generated = &config.data.unwrap()["events-0.properties"];
    let listed = generated
        .lines()
        .find_map(|l| l.strip_prefix("listeners="))
        .expect("listeners");
    let names: Vec<String> = listed
        .split(',')
        .map(|l| l.split("://").next().unwrap().to_string())
        .collect();
    let ports = crate::apiserver::free_ports(names.len() + 1);
    let listeners: BTreeMap<String, String> = names
        .iter()
        .zip(&ports)
        .map(|(n, p)| (n.clone(), format!("127.0.0.1:{p}")))
        .collect();
    let metrics = ports[names.len()];
    let moved = [
        "listeners",
        "advertised.listeners",
        "controller.quorum.voters",
        "log.dirs",
        "metrics.listener",
    ];
    let mut properties: String = generated
        .lines()
        .filter(|l| !moved.iter().any(|k| l.starts_with(&format!("{k}="))))
        .map(|l| l.replace("/etc/gregor-tls", &tls.display().to_string()) + "\n")
        .collect();
    let join = |names: &mut dyn Iterator<Item = (&String, &String)>| {
        names
            .map(|(n, a)| format!("{n}://{a}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let advertised = join(&mut listeners.iter().filter(|(n, _)| *n != "CONTROLLER"));
    properties.push_str(&format!(
        "listeners={}\n\
         advertised.listeners={advertised}\n\
         controller.quorum.voters=0@{}\n\
         log.dirs={}\n\
         metrics.listener=127.0.0.1:{metrics}\n\
         # Its own connections go to 127.0.0.1, which its certificate does not name.\n\
         ssl.endpoint.identification.algorithm=\n\
         ssl.reload.interval.ms=300\n",
        join(&mut listeners.iter()),
        listeners["CONTROLLER"],
        dir.path().join("data").display()
    ));
    let path = dir.path().join("server.properties");
    std::fs::write(&path, &properties).unwrap();
    let gregor = crate::topic::brokers::binary();
    let path = path.display().to_string();
    let id = "MkU3OEVBNTcwNTJENDM2Qg";
    let format = std::process::Command::new(&gregor)
        .args(["storage", "format", "-t", id, "-c", &path])
        .args([
            "--add-scram",
            "SCRAM-SHA-512=[name=admin,password=admin-secret]",
        ])
        .output()
        .unwrap();
    assert!(
        format.status.success(),
        "{}",
        String::from_utf8_lossy(&format.stderr)
    );
    let guard = crate::apiserver::supervised(
        &gregor,
        &["server-start".into(), path],
        &dir.path().join("gregor.log"),
    );
    SecuredNode {
        replication: listeners["REPLICATION"].clone(),
        client: listeners["CLIENT"].clone(),
        listeners,
        dir,
        _guard: guard,
    }
}

impl SecuredNode {
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gregor.log")).unwrap_or_default()
    }

    /// The operator's admin connection to the node, once it answers.
    pub async fn admin(
        &self,
        access: &gregor_operator::reconcile::access::Access,
    ) -> gregor_client::admin::Admin {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            match access.admin().await {
                Ok(admin) => return admin,
                Err(e) if std::time::Instant::now() < deadline => {
                    eprintln!("waiting for the node: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                }
                Err(e) => panic!("the operator cannot reach the node: {e}\n{}", self.log()),
            }
        }
    }
}

/// A client's properties trusting the cluster CA (at the path the node test wrote it).
pub fn trusting(node: &SecuredNode, extra: &[(&str, &str)]) -> gregor_client::ClientSecurity {
    let ca = node.dir.path().join("tls/cluster-ca/ca.crt");
    let mut p = BTreeMap::from([
        ("ssl.truststore.type".to_string(), "PEM".to_string()),
        (
            "ssl.truststore.location".to_string(),
            ca.display().to_string(),
        ),
        (
            "ssl.endpoint.identification.algorithm".to_string(),
            String::new(),
        ),
    ]);
    p.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    gregor_client::ClientSecurity::from_properties(&p).unwrap()
}

#[tokio::test]
async fn a_secured_cluster_runs_on_its_certificates_and_the_operator_reaches_it_as_a_super_user() {
    use gregor_operator::crd::cluster::{
        AuthenticationType, Authorization, AuthorizationType, ListenerAuthentication,
    };
    use gregor_operator::crd::{KafkaTopic, KafkaTopicSpec};
    let server = api_server_or_skip!();
    let (client, ns) = server.namespace("secured").await;
    install_crds(&client).await;
    let mut spec = KafkaClusterSpec {
        replicas: 1,
        authorization: Some(Authorization {
            kind: AuthorizationType::Simple,
            super_users: vec!["admin".into()],
        }),
        ..Default::default()
    };
    spec.listeners.tls = true;
    spec.listeners.authentication =
        Some(ListenerAuthentication::of(AuthenticationType::ScramSha512));
    spec.config
        .insert("log.retention.ms".into(), "3600000".into());
    create(&client, &ns, "events", spec).await;
    // The first reconcile writes the Secrets and the node's properties; then the node runs.
    reconcile_with(&client, &ns, &context(&client)).await;
    let node = start_secured_node(&client, &ns).await;

    // Reached at its replication listener, as the operator, over mutual TLS.
    let mut ctx = (*context(&client)).clone();
    ctx.bootstrap_overrides
        .insert(format!("{ns}/events"), node.replication.clone());
    let ctx = Arc::new(ctx);
    let kc = get(&client, &ns, "events").await;
    let access = gregor_operator::reconcile::certificates::access_of(&ctx, &kc)
        .await
        .unwrap()
        .expect("the operator's certificate exists");
    let mut admin = node.admin(&access).await;
    assert_eq!(admin.registrations().await.unwrap().len(), 1);

    // Pods ready: the reconcile sets the dynamic config through that access.
    let sts = Api::<k8s_openapi::api::apps::v1::StatefulSet>::namespaced(client.clone(), &ns)
        .get("events")
        .await
        .unwrap();
    crate::cluster::pods_like_the_statefulset(&client, &ns, &sts, true).await;
    reconcile_with(&client, &ns, &ctx).await;
    let kc = get(&client, &ns, "events").await;
    assert_ne!(condition(&kc, "Degraded").status, "True", "{:?}", kc.status);
    assert_eq!(
        admin
            .broker_defaults()
            .await
            .unwrap()
            .get("log.retention.ms")
            .map(String::as_str),
        Some("3600000")
    );

    // A KafkaTopic of the cluster: created by the operator, a super user under the
    // StandardAuthorizer (a principal that did not match would be refused).
    let topics: Api<KafkaTopic> = Api::namespaced(client.clone(), &ns);
    topics
        .create(
            &PostParams::default(),
            &KafkaTopic::new(
                "orders",
                KafkaTopicSpec {
                    cluster: "events".into(),
                    partitions: 2,
                    replication_factor: 1,
                    ..Default::default()
                },
            ),
        )
        .await
        .unwrap();
    gregor_operator::reconcile::topic::reconcile(
        Arc::new(topics.get("orders").await.unwrap()),
        Arc::clone(&ctx),
    )
    .await
    .expect("the topic reconcile");
    gregor_operator::reconcile::topic::reconcile(
        Arc::new(topics.get("orders").await.unwrap()),
        Arc::clone(&ctx),
    )
    .await
    .expect("the topic reconcile");
    let (_, topic) = admin.describe("orders").await.unwrap();
    assert_eq!(topic.expect("created").partitions.len(), 2);

    // The replication listener takes nothing but a certificate from the cluster CA.
    let plain = gregor_client::Cluster::connect(&node.replication).await;
    assert!(plain.is_err(), "plaintext on the replication listener");
    let anonymous_tls = trusting(&node, &[("security.protocol", "SSL")]);
    let no_cert = gregor_client::Cluster::connect_with(&node.replication, &anonymous_tls).await;
    assert!(no_cert.is_err(), "TLS without a client certificate");

    // The client listener: SASL_SSL with SCRAM-SHA-512 against the node's certificate.
    let scram = |user: &str, password: &str| {
        trusting(
            &node,
            &[
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanism", "SCRAM-SHA-512"),
                (
                    "sasl.jaas.config",
                    &format!(
                        "org.apache.kafka.common.security.scram.ScramLoginModule required \
                         username=\"{user}\" password=\"{password}\";"
                    ),
                ),
            ],
        )
    };
    let mut admin_user =
        gregor_client::admin::Admin::connect_with(&node.client, &scram("admin", "admin-secret"))
            .await
            .expect("the super user admin over SASL_SSL");
    assert!(admin_user.describe("orders").await.unwrap().1.is_some());
    let wrong = gregor_client::Cluster::connect_with(&node.client, &scram("admin", "nope")).await;
    assert!(wrong.is_err(), "a wrong password is refused");
}

#[tokio::test]
async fn a_replaced_ca_key_keeps_clients_of_the_old_ca_verifying_through_a_cross_signed_certificate(
) {
    replace_the_ca_key(Replacement::Annotation).await;
}

/// A CA's key algorithm changed in the spec replaces its key as the annotation does: the
/// node serves RSA certificates from the new CA, which clients of the old ECDSA CA still
/// verify through the cross-signed certificate.
#[tokio::test]
async fn a_new_key_algorithm_replaces_the_ca_key_and_the_node_serves_rsa_certificates() {
    replace_the_ca_key(Replacement::KeyAlgorithm).await;
}

/// What replaces the CA keys in [`replace_the_ca_key`].
#[derive(PartialEq)]
enum Replacement {
    /// `gregor.dev/force-replace` on the cluster CA's key Secret.
    Annotation,
    /// Both CAs' `keyAlgorithm` set to `rsa-3072`.
    KeyAlgorithm,
}

/// Asks for the CA keys' replacement `how`.
async fn ask_for_a_new_key(client: &kube::Client, ns: &str, how: &Replacement) {
    use gregor_operator::reconcile::certificates::{Which, FORCE_REPLACE_ANNOTATION};
    match how {
        Replacement::Annotation => {
            let secret = Which::Cluster.key_secret("events");
            annotate(client, ns, &secret, FORCE_REPLACE_ANNOTATION).await;
        }
        Replacement::KeyAlgorithm => {
            let rsa = serde_json::json!({"spec": {"clusterCa": {"keyAlgorithm": "rsa-3072"},
                "clientsCa": {"keyAlgorithm": "rsa-3072"}}});
            Api::<KafkaCluster>::namespaced(client.clone(), ns)
                .patch("events", &PatchParams::default(), &Patch::Merge(&rsa))
                .await
                .unwrap();
        }
    }
}

/// A SASL_SSL client of `node` as the super user `admin`, trusting only `cert` (written to
/// `name` in the node's directory).
fn trusting_only(node: &SecuredNode, name: &str, cert: &CertInfo) -> gregor_client::ClientSecurity {
    let path = node.dir.path().join(name);
    std::fs::write(&path, cert.pem()).unwrap();
    let jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required \
                username=\"admin\" password=\"admin-secret\";";
    gregor_client::ClientSecurity::from_properties(&BTreeMap::from([
        ("security.protocol".to_string(), "SASL_SSL".to_string()),
        ("sasl.mechanism".to_string(), "SCRAM-SHA-512".to_string()),
        ("sasl.jaas.config".to_string(), jaas.to_string()),
        ("ssl.truststore.type".to_string(), "PEM".to_string()),
        (
            "ssl.truststore.location".to_string(),
            path.display().to_string(),
        ),
        (
            "ssl.endpoint.identification.algorithm".to_string(),
            String::new(),
        ),
    ]))
    .unwrap()
}

/// Waits (30 s at most) until `security` connects to `node`'s client listener, or when
/// `connects` is false until it no longer does: the node reloaded its certificate.
async fn await_reload(
    node: &SecuredNode,
    security: &gregor_client::ClientSecurity,
    connects: bool,
    what: &str,
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while gregor_client::Cluster::connect_with(&node.client, security)
        .await
        .is_ok()
        != connects
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}\n{}",
            node.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

async fn replace_the_ca_key(how: Replacement) {
    use gregor_operator::reconcile::certificates::Which;
    let server = api_server_or_skip!();
    let name = match how {
        Replacement::Annotation => "replace",
        Replacement::KeyAlgorithm => "rsa",
    };
    let (client, ns) = server.namespace(name).await;
    let (node, ctx) = secured_scram_node(&client, &ns).await;
    let (old_ca, _) = read(&client, &ns, Which::Cluster, "events-0").await;

    ask_for_a_new_key(&client, &ns, &how).await;
    reconcile_with(&client, &ns, &ctx).await;
    let new_ca = check_replaced(&client, &ns, &how, &old_ca).await;

    // The node gets the new files (as the kubelet updates a mounted Secret) and reloads: a
    // client trusting only the old CA and one trusting only the new one both connect, and so
    // does the operator with its new certificate.
    let tls = node.dir.path().join("tls");
    write_mounted_secrets(&client, &ns, &tls).await;
    let trusts_new = trusting_only(&node, "new.pem", &new_ca);
    let trusts_old = trusting_only(&node, "old.pem", &old_ca);
    let what = "the node never served the new certificate";
    await_reload(&node, &trusts_new, true, what).await;
    gregor_client::Cluster::connect_with(&node.client, &trusts_old)
        .await
        .expect("a client of the old CA verifies through the cross-signed certificate");
    let access = gregor_operator::reconcile::certificates::access_of(
        &ctx,
        &get(&client, &ns, "events").await,
    )
    .await
    .unwrap()
    .unwrap();
    access
        .admin()
        .await
        .expect("the operator, with its new certificate");

    // Once the old CA has expired, or the user says its clients have moved, it is no longer
    // trusted, and chains end with the new one.
    let clients = (&trusts_old, &trusts_new);
    drop_the_previous_ca(&client, &ns, (&node, &ctx), &how, old_ca.not_after, clients).await;
}

/// Ends the trust in the previous CA `how` asks (it expires, or the user says so); the node
/// then serves only the new chain, which a client of the old CA alone no longer verifies.
async fn drop_the_previous_ca(
    client: &kube::Client,
    ns: &str,
    (node, ctx): (&SecuredNode, &Arc<Context>),
    how: &Replacement,
    old_ca_expiry: i64,
    (trusts_old, trusts_new): (
        &gregor_client::ClientSecurity,
        &gregor_client::ClientSecurity,
    ),
) {
    use gregor_operator::crd::cluster::CaPhase;
    use gregor_operator::reconcile::certificates::{Which, DROP_PREVIOUS_ANNOTATION};
    match how {
        Replacement::Annotation => {
            let cert_secret = Which::Cluster.cert_secret("events");
            annotate(client, ns, &cert_secret, DROP_PREVIOUS_ANNOTATION).await;
            reconcile_with(client, ns, ctx).await;
            let annotations = secret(client, ns, &cert_secret).await.annotations().clone();
            assert!(!annotations.contains_key(DROP_PREVIOUS_ANNOTATION));
            // The node reloads: a client of the old CA alone no longer verifies it.
            write_mounted_secrets(client, ns, &node.dir.path().join("tls")).await;
            let what = "the node kept the cross-signed chain";
            await_reload(node, trusts_old, false, what).await;
            await_reload(node, trusts_new, true, "a client of the new CA").await;
        }
        Replacement::KeyAlgorithm => {
            let later = ahead(client, old_ca_expiry - now() + DAY);
            reconcile_with(client, ns, &later).await;
        }
    }
    let cert_secret = secret(client, ns, &Which::Cluster.cert_secret("events")).await;
    let trusted = pki::inspect_all(&text(&cert_secret, "ca.crt")).unwrap();
    assert_eq!(trusted.len(), 1);
    assert!(!cert_secret.data.as_ref().unwrap().contains_key("cross.crt"));
    let chain = pki::inspect_all(&text(
        &secret(client, ns, &nodes_secret("events")).await,
        "events-0.crt",
    ))
    .unwrap();
    assert_eq!(chain[1].der(), trusted[0].der());
    let status = get(client, ns, "events")
        .await
        .status
        .unwrap()
        .cluster_ca
        .unwrap();
    assert!(status.previous_trusted_until.is_none());
    assert_eq!(status.phase, CaPhase::Ready);
}

/// A KafkaCluster `events` in `ns` with SCRAM over TLS, reconciled, its node running, and
/// the operator's context reaching it.
async fn secured_scram_node(client: &kube::Client, ns: &str) -> (SecuredNode, Arc<Context>) {
    use gregor_operator::crd::cluster::{AuthenticationType, ListenerAuthentication};
    install_crds(client).await;
    let mut spec = KafkaClusterSpec {
        replicas: 1,
        ..Default::default()
    };
    spec.listeners.tls = true;
    spec.listeners.authentication =
        Some(ListenerAuthentication::of(AuthenticationType::ScramSha512));
    create(client, ns, "events", spec).await;
    reconcile_with(client, ns, &context(client)).await;
    let node = start_secured_node(client, ns).await;
    let mut ctx = (*context(client)).clone();
    ctx.bootstrap_overrides
        .insert(format!("{ns}/events"), node.replication.clone());
    let ctx = Arc::new(ctx);
    let access =
        gregor_operator::reconcile::certificates::access_of(&ctx, &get(client, ns, "events").await)
            .await
            .unwrap()
            .unwrap();
    node.admin(&access).await;
    (node, ctx)
}

/// After the key replacement `how`: a new key of the kind asked for, both CAs trusted, the
/// new CA certificate cross-signed by the old key and following the node's certificate,
/// and the status saying so. The new CA certificate.
async fn check_replaced(
    client: &kube::Client,
    ns: &str,
    how: &Replacement,
    old_ca: &CertInfo,
) -> CertInfo {
    use gregor_operator::crd::cluster::CaPhase;
    use gregor_operator::reconcile::certificates::{
        Which, FORCE_REPLACE_ANNOTATION, KEY_GENERATION_ANNOTATION,
    };
    let key_secret = secret(client, ns, &Which::Cluster.key_secret("events")).await;
    assert_eq!(key_secret.annotations()[KEY_GENERATION_ANNOTATION], "1");
    assert!(!key_secret
        .annotations()
        .contains_key(FORCE_REPLACE_ANNOTATION));
    assert!(!old_ca.key_matches(&text(&key_secret, "ca.key")));
    let cert_secret = secret(client, ns, &Which::Cluster.cert_secret("events")).await;
    let trusted = pki::inspect_all(&text(&cert_secret, "ca.crt")).unwrap();
    assert_eq!(trusted.len(), 2, "the new CA, then the previous one");
    let new_ca = trusted[0].clone();
    assert_eq!(trusted[1].der(), old_ca.der());
    assert!(new_ca.key_matches(&text(&key_secret, "ca.key")));
    assert_eq!(new_ca.subject, "O=gregor.dev, CN=events-cluster-ca v1");
    let cross = pki::inspect(&text(&cert_secret, "cross.crt")).unwrap();
    assert!(cross.signed_by(old_ca) && cross.subject == new_ca.subject);
    let chain = pki::inspect_all(&text(
        &secret(client, ns, &nodes_secret("events")).await,
        "events-0.crt",
    ))
    .unwrap();
    assert!(chain[0].signed_by(&new_ca) && chain[1].der() == cross.der());
    let operator_cert = secret(client, ns, &operator_secret("events")).await;
    let operator_cert = pki::inspect(&text(&operator_cert, "operator.crt")).unwrap();
    // The operator's certificate, from the clients CA, follows that CA's spec.
    let algorithm = match how {
        Replacement::Annotation => pki::KeyAlgorithm::EcdsaP256,
        Replacement::KeyAlgorithm => pki::KeyAlgorithm::Rsa3072,
    };
    let kinds = [old_ca, &new_ca, &chain[0], &operator_cert].map(CertInfo::key_algorithm);
    let ec = Some(pki::KeyAlgorithm::EcdsaP256);
    assert_eq!(
        kinds,
        [ec, Some(algorithm), Some(algorithm), Some(algorithm)]
    );
    let status = get(client, ns, "events")
        .await
        .status
        .unwrap()
        .cluster_ca
        .unwrap();
    assert_eq!((status.key_generation, status.cert_generation), (1, 1));
    assert_eq!(status.phase, CaPhase::TrustingPrevious);
    let until = k8s_openapi::jiff::Timestamp::from_second(old_ca.not_after).unwrap();
    assert_eq!(status.previous_trusted_until, Some(until.to_string()));
    new_ca
}
