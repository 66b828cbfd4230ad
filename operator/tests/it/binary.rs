//! The `gregor-operator` binary itself against the real API server: it watches, reconciles,
//! exports metrics, and two replicas share the work through their Lease.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gregor_operator::crd::{KafkaCluster, KafkaClusterSpec};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use kube::runtime::wait::await_condition;

use crate::{api_server_or_skip, install_crds};

/// A running operator process, stopped (SIGKILL) on drop.
struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

fn start(kubeconfig: &std::path::Path, ns: &str, identity: &str, metrics_port: u16) -> Operator {
    Operator(
        Command::new(env!("CARGO_BIN_EXE_gregor-operator"))
            .env("KUBECONFIG", kubeconfig)
            .args([
                "--namespace",
                ns,
                "--lease-namespace",
                ns,
                "--identity",
                identity,
                "--metrics-addr",
                &format!("127.0.0.1:{metrics_port}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting gregor-operator"),
    )
}

async fn cluster_reconciled(client: &kube::Client, ns: &str, name: &str) {
    let api: Api<KafkaCluster> = Api::namespaced(client.clone(), ns);
    api.create(
        &PostParams::default(),
        &KafkaCluster::new(
            name,
            KafkaClusterSpec {
                replicas: 1,
                ..Default::default()
            },
        ),
    )
    .await
    .expect("creating a KafkaCluster");
    tokio::time::timeout(
        Duration::from_secs(60),
        await_condition(api, name, |kc: Option<&KafkaCluster>| {
            kc.and_then(|k| k.status.as_ref())
                .is_some_and(|s| s.cluster_id.is_some())
        }),
    )
    .await
    .unwrap_or_else(|_| panic!("{name} got no status from the operator"))
    .unwrap();
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    assert!(
        sts.get_opt(name).await.unwrap().is_some(),
        "{name} has its StatefulSet"
    );
}

async fn holder(client: &kube::Client, ns: &str) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    leases
        .get_opt("gregor-operator")
        .await
        .unwrap()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

#[tokio::test]
async fn the_operator_reconciles_as_leader_and_a_standby_takes_over_on_sigterm() {
    let server = api_server_or_skip!();
    let (client, ns) = server.namespace("binary").await;
    install_crds(&client).await;
    let (port_a, port_b) = (free_port(), free_port());
    let a = start(&server.kubeconfig, &ns, "replica-a", port_a);
    // a leads before b starts, so the roles are known.
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(leases.clone(), "gregor-operator", |l: Option<&Lease>| {
            l.and_then(|l| l.spec.as_ref())
                .and_then(|s| s.holder_identity.as_deref())
                == Some("replica-a")
        }),
    )
    .await
    .expect("replica-a takes the lease")
    .unwrap();
    let _b = start(&server.kubeconfig, &ns, "replica-b", port_b);
    cluster_reconciled(&client, &ns, "first").await;

    let metrics = reqwest_text(port_a, "/metrics").await;
    // The series starts at 0: the reconcile above counts.
    let reconciled: f64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                r#"gregor_operator_reconciliations_total{resource="KafkaCluster",result="ok"} "#,
            )
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or_default();
    assert!(reconciled >= 1.0, "{metrics}");
    assert!(metrics.contains("gregor_operator_leader 1"), "{metrics}");
    assert!(reqwest_text(port_b, "/metrics")
        .await
        .contains("gregor_operator_leader 0"));

    // SIGTERM: a hands the lease back and b leads at once (well within the 15 s lease).
    let pid = a.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    tokio::time::timeout(
        Duration::from_secs(12),
        await_condition(leases, "gregor-operator", |l: Option<&Lease>| {
            l.and_then(|l| l.spec.as_ref())
                .and_then(|s| s.holder_identity.as_deref())
                == Some("replica-b")
        }),
    )
    .await
    .expect("replica-b takes over before the lease would run out")
    .unwrap();
    assert_eq!(holder(&client, &ns).await.as_deref(), Some("replica-b"));
    cluster_reconciled(&client, &ns, "second").await;

    // The new leader exports the cluster's ready nodes (none: no kubelet runs here) and drops
    // the series once the cluster is deleted.
    let series = format!(r#"gregor_operator_brokers_ready{{cluster="second",namespace="{ns}"}}"#);
    let metrics = reqwest_text(port_b, "/metrics").await;
    assert!(metrics.contains(&format!("{series} 0\n")), "{metrics}");
    Api::<KafkaCluster>::namespaced(client.clone(), &ns)
        .delete("second", &Default::default())
        .await
        .expect("deleting the KafkaCluster");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let after = loop {
        let metrics = reqwest_text(port_b, "/metrics").await;
        if !metrics.contains(&series) {
            break metrics;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the deleted cluster's series stayed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Every other series of it went at the same time.
    assert!(!after.contains(r#"cluster="second""#), "{after}");
    assert!(
        !after.contains(r#"kind="KafkaCluster",name="second""#),
        "{after}"
    );

    // The KafkaTopic controller runs too: a topic of a cluster that does not exist says so.
    use gregor_operator::crd::{KafkaTopic, KafkaTopicSpec};
    let topics: Api<KafkaTopic> = Api::namespaced(client.clone(), &ns);
    topics
        .create(
            &PostParams::default(),
            &KafkaTopic::new(
                "orders",
                KafkaTopicSpec {
                    cluster: "nowhere".into(),
                    partitions: 3,
                    replication_factor: 1,
                    ..Default::default()
                },
            ),
        )
        .await
        .expect("creating a KafkaTopic");
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(topics, "orders", |t: Option<&KafkaTopic>| {
            t.and_then(|t| t.status.as_ref()).is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.reason == "ClusterNotFound")
            })
        }),
    )
    .await
    .expect("the operator reports the missing cluster on the KafkaTopic")
    .unwrap();
    drop(a);
}

/// GET `path` from the metrics endpoint on `port` (plain HTTP/1.0 over a socket).
async fn reqwest_text(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("metrics endpoint");
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}
