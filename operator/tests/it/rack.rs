//! Rack awareness against the real API server: a KafkaCluster with `spec.rack` gets a
//! ServiceAccount for its broker pods, a ClusterRoleBinding of it to the configured ClusterRole
//! and the `rack` init container; the real `gregor-operator rack` subcommand, run with that
//! ServiceAccount's token, reads a Node's label into a file, which a real `gregor` broker takes
//! as its `broker.rack` through the `dir` config provider. Removing `spec.rack` and deleting the
//! cluster delete the binding (the finalizer).

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gregor_client::admin::Admin;
use gregor_operator::crd::cluster::Rack;
use gregor_operator::crd::{KafkaCluster, KafkaClusterSpec};
use gregor_operator::placement::Broker;
use gregor_operator::reconcile::cluster::reconcile;
use gregor_operator::reconcile::Context;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;

use crate::apiserver::{free_port, supervised, ApiServer};
use crate::cluster::{context, create, get};
use crate::{api_server_or_skip, install_crds};

const LABEL: &str = "example.com/rack";
const FINALIZER: &str = "gregor.dev/rack-binding";

/// A namespace with the CRDs, a ClusterRole that may get nodes (what the chart installs) and a
/// context naming it.
struct Setup {
    client: kube::Client,
    ns: String,
    ctx: Arc<Context>,
}

impl Setup {
    async fn new(server: &ApiServer, name: &str) -> Setup {
        let (client, ns) = server.namespace(name).await;
        install_crds(&client).await;
        let role = format!("broker-rack-{ns}");
        let mut cluster_role = ClusterRole {
            rules: Some(vec![PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["nodes".into()]),
                verbs: vec!["get".into()],
                ..Default::default()
            }]),
            ..Default::default()
        };
        cluster_role.metadata.name = Some(role.clone());
        Api::<ClusterRole>::all(client.clone())
            .create(&PostParams::default(), &cluster_role)
            .await
            .expect("creating the broker-rack ClusterRole");
        let mut ctx = (*context(&client)).clone();
        ctx.rack_cluster_role = role;
        Setup {
            client,
            ns,
            ctx: Arc::new(ctx),
        }
    }

    async fn create(&self, name: &str) -> KafkaCluster {
        let spec = KafkaClusterSpec {
            replicas: 1,
            rack: Some(Rack {
                topology_key: LABEL.into(),
            }),
            ..Default::default()
        };
        create(&self.client, &self.ns, name, spec).await
    }

    /// Reconciles `name` as it is now, and returns it after.
    async fn reconcile(&self, name: &str) -> Option<KafkaCluster> {
        let kc = get(&self.client, &self.ns, name).await;
        reconcile(Arc::new(kc), Arc::clone(&self.ctx))
            .await
            .expect("reconcile");
        Api::<KafkaCluster>::namespaced(self.client.clone(), &self.ns)
            .get_opt(name)
            .await
            .expect("reading the KafkaCluster")
    }

    fn binding_name(&self, cluster: &str) -> String {
        format!("gregor-rack.{}.{cluster}", self.ns)
    }

    async fn binding(&self, cluster: &str) -> Option<ClusterRoleBinding> {
        Api::<ClusterRoleBinding>::all(self.client.clone())
            .get_opt(&self.binding_name(cluster))
            .await
            .expect("reading the ClusterRoleBinding")
    }

    async fn patch_rack(&self, name: &str, rack: serde_json::Value) {
        Api::<KafkaCluster>::namespaced(self.client.clone(), &self.ns)
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"rack": rack}})),
            )
            .await
            .expect("patching spec.rack");
    }
}

fn has_finalizer(kc: &KafkaCluster) -> bool {
    kc.finalizers().iter().any(|f| f == FINALIZER)
}

async fn node(client: &kube::Client, name: &str, rack: Option<&str>) {
    let mut node = Node::default();
    node.metadata.name = Some(name.into());
    if let Some(rack) = rack {
        node.metadata.labels = Some([(LABEL.to_string(), rack.to_string())].into());
    }
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await
        .expect("creating a Node");
}

/// `gregor-operator rack` for `node`, into `out`, with `kubeconfig`.
fn run_rack(kubeconfig: &Path, node: &str, out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gregor-operator"))
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "info")
        .args(["rack", "--node", node, "--label", LABEL, "--out"])
        .arg(out)
        .output()
        .expect("running gregor-operator rack")
}

#[tokio::test]
async fn a_rack_cluster_runs_its_brokers_as_an_account_that_may_read_their_node_label() {
    let server = api_server_or_skip!();
    let t = Setup::new(server, "rack").await;
    let (labelled, bare) = (format!("{}-r1", t.ns), format!("{}-bare", t.ns));
    node(&t.client, &labelled, Some("r1")).await;
    node(&t.client, &bare, None).await;
    t.create("events").await;
    // The first reconcile adds the finalizer, before any binding exists.
    let kc = t.reconcile("events").await.unwrap();
    assert!(has_finalizer(&kc));
    assert!(t.binding("events").await.is_none());
    let kc = t.reconcile("events").await.unwrap();
    let uid = kc.uid().unwrap();

    let account = Api::<ServiceAccount>::namespaced(t.client.clone(), &t.ns)
        .get("events-broker")
        .await
        .expect("the broker pods' ServiceAccount");
    assert_eq!(account.owner_references()[0].uid, uid);
    let binding = t.binding("events").await.expect("the ClusterRoleBinding");
    assert_eq!(binding.role_ref.kind, "ClusterRole");
    assert_eq!(binding.role_ref.name, t.ctx.rack_cluster_role);
    let subjects = binding.subjects.clone().unwrap_or_default();
    assert_eq!(subjects.len(), 1);
    assert_eq!(
        (
            subjects[0].kind.as_str(),
            subjects[0].name.as_str(),
            subjects[0].namespace.as_deref()
        ),
        ("ServiceAccount", "events-broker", Some(t.ns.as_str()))
    );
    assert_eq!(
        binding.labels().get("gregor.dev/cluster-namespace"),
        Some(&t.ns)
    );
    let sts = Api::<StatefulSet>::namespaced(t.client.clone(), &t.ns)
        .get("events")
        .await
        .expect("the StatefulSet");
    let pod = sts.spec.template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("events-broker"));
    let init = pod.init_containers.unwrap();
    assert_eq!(init[0].name, "rack");
    assert_eq!(
        init[0].args.as_ref().unwrap()[..5].join(" "),
        format!("rack --node $(NODE_NAME) --label {LABEL}")
    );

    // The subcommand, as the broker pods' ServiceAccount: the binding is all it needs.
    let token = Api::<ServiceAccount>::namespaced(t.client.clone(), &t.ns)
        .create_token_request(
            "events-broker",
            &PostParams::default(),
            &TokenRequest {
                spec: Some(TokenRequestSpec {
                    expiration_seconds: Some(600),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .expect("a token of the ServiceAccount")
        .status
        .and_then(|s| s.token)
        .expect("the token");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("broker.kubeconfig");
    server.kubeconfig_with_token(&kubeconfig, &token);
    let rack_dir = dir.path().join("rack-dir");
    std::fs::create_dir(&rack_dir).unwrap();
    let out = rack_dir.join("rack");
    // The authorizer sees a new binding within moments: wait for it, not for a fixed time.
    let deadline = Instant::now() + Duration::from_secs(15);
    let ran = loop {
        let ran = run_rack(&kubeconfig, &labelled, &out);
        let forbidden = String::from_utf8_lossy(&ran.stderr).contains("forbidden");
        if ran.status.success() || !forbidden || Instant::now() > deadline {
            break ran;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        ran.status.success(),
        "gregor-operator rack failed: {}",
        String::from_utf8_lossy(&ran.stderr)
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "r1");
    // A node without the label: the init container fails, naming both.
    let failed = run_rack(&kubeconfig, &bare, &dir.path().join("never"));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success());
    assert!(stderr.contains(&bare) && stderr.contains(LABEL), "{stderr}");
    assert!(!dir.path().join("never").exists());

    // A real broker whose properties name the file, as the operator writes them.
    let (port, metrics) = (free_port(), free_port());
    let listener = format!("PLAINTEXT://127.0.0.1:{port}");
    let data = dir.path().join("data");
    let args: Vec<String> = [
        "dev".to_string(),
        "--data-dir".into(),
        data.display().to_string(),
        "--override".into(),
        format!("listeners={listener}"),
        "--override".into(),
        format!("advertised.listeners={listener}"),
        "--override".into(),
        format!("metrics.listener=127.0.0.1:{metrics}"),
        "--override".into(),
        "config.providers=dir".into(),
        "--override".into(),
        "config.providers.dir.class=org.apache.kafka.common.config.provider.DirectoryConfigProvider"
            .into(),
        "--override".into(),
        format!("broker.rack=${{dir:{}:rack}}", rack_dir.display()),
    ]
    .into();
    let log = dir.path().join("gregor.log");
    let _broker = supervised(&crate::topic::brokers::binary(), &args, &log);
    let bootstrap = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let brokers = loop {
        let listed = match Admin::connect(&bootstrap).await {
            Ok(mut admin) => admin.assignment().await.ok().map(|(b, _)| b),
            Err(_) => None,
        };
        match listed {
            Some(b) if !b.is_empty() => break b,
            _ if Instant::now() > deadline => panic!(
                "gregor dev did not list its broker: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    assert_eq!(
        brokers,
        vec![Broker {
            id: 1,
            rack: Some("r1".into())
        }]
    );
}

#[tokio::test]
async fn removing_rack_or_the_cluster_deletes_the_binding_and_the_finalizer_goes_with_it() {
    let server = api_server_or_skip!();
    let t = Setup::new(server, "rack-cleanup").await;
    t.create("events").await;
    t.reconcile("events").await;
    t.reconcile("events").await;
    assert!(t.binding("events").await.is_some());

    // spec.rack removed: the binding goes, and so does the finalizer.
    t.patch_rack("events", serde_json::Value::Null).await;
    let kc = t.reconcile("events").await.unwrap();
    assert!(t.binding("events").await.is_none());
    assert!(!has_finalizer(&kc), "{:?}", kc.finalizers());
    let pod = Api::<StatefulSet>::namespaced(t.client.clone(), &t.ns)
        .get("events")
        .await
        .unwrap()
        .spec
        .template
        .spec
        .unwrap();
    assert_eq!(pod.service_account_name, None);
    assert_eq!(pod.init_containers.unwrap().len(), 1);
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(t.client.clone(), &t.ns);
    assert!(
        accounts.get_opt("events-broker").await.unwrap().is_none(),
        "the broker pods' ServiceAccount goes with rack"
    );
    // Without rack nothing adds it back.
    let kc = t.reconcile("events").await.unwrap();
    assert!(!has_finalizer(&kc));

    // Back on, then the cluster deleted: the finalizer deletes the binding and lets it go.
    t.patch_rack("events", serde_json::json!({"topologyKey": LABEL}))
        .await;
    t.reconcile("events").await;
    t.reconcile("events").await;
    assert!(t.binding("events").await.is_some());
    Api::<KafkaCluster>::namespaced(t.client.clone(), &t.ns)
        .delete("events", &DeleteParams::default())
        .await
        .expect("deleting the KafkaCluster");
    let kc = get(&t.client, &t.ns, "events").await;
    assert!(
        kc.metadata.deletion_timestamp.is_some(),
        "the finalizer holds it"
    );
    assert!(t.reconcile("events").await.is_none(), "the cluster is gone");
    assert!(t.binding("events").await.is_none());

    // A cluster that never had rack gets no finalizer: deleting it needs no operator.
    create(
        &t.client,
        &t.ns,
        "plain",
        KafkaClusterSpec {
            replicas: 1,
            ..Default::default()
        },
    )
    .await;
    assert!(!has_finalizer(&t.reconcile("plain").await.unwrap()));
}
