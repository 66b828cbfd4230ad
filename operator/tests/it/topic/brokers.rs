//! A real three-node Gregor cluster for the topic tests: local `gregor server-start` processes
//! (combined broker and controller, node ids 0..3 as the operator numbers pods, loopback ports
//! picked free), started once per test binary and killed when it exits (each runs under the
//! API server's pipe watchdog). Tests share it and keep apart by topic name; a test that
//! moves every topic around (a broker scale step) starts a cluster of its own ([`Brokers::start`]),
//! killed when it is dropped.
//!
//! The binary is `$GREGOR_BIN`, else `gregor` beside the test executable's directory
//! (`target/debug/gregor`, which `cargo test --workspace` or `cargo build -p gregor` builds).

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use gregor_client::Cluster;

use crate::apiserver::{free_ports, supervised};

/// Nodes in the shared cluster.
const NODES: i32 = 3;
/// How long the cluster gets to elect a controller and register every broker.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The running cluster.
pub struct Brokers {
    /// Every node's client listener, comma-separated.
    pub bootstrap: String,
    /// Nodes in it.
    nodes: i32,
    dir: tempfile::TempDir,
    /// Held so the watchdog shells keep the nodes alive until this binary exits (or the
    /// node is [`Brokers::stop`]ped), by node id.
    guards: Vec<Option<(Child, ChildStdin)>>,
}

/// The shared cluster, started on first use. Only tests that have an API server call it, so a
/// missing binary fails them rather than skipping.
pub fn shared() -> &'static Brokers {
    static BROKERS: OnceLock<Result<Brokers, String>> = OnceLock::new();
    let started = BROKERS.get_or_init(|| {
        std::panic::catch_unwind(|| Brokers::start(NODES)).map_err(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the Gregor cluster did not start".into())
        })
    });
    match started {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    }
}

/// The `gregor` binary the tests run.
pub fn binary() -> PathBuf {
    let path = std::env::var_os("GREGOR_BIN")
        .map(PathBuf::from)
        .or_else(|| {
            // target/debug/deps/it-<hash> → target/debug/gregor
            let exe = std::env::current_exe().ok()?;
            Some(exe.parent()?.parent()?.join("gregor"))
        })
        .expect("a path for the gregor binary");
    assert!(
        path.is_file(),
        "no gregor binary at {}: build it (cargo build -p gregor, or cargo test --workspace) \
         or set GREGOR_BIN",
        path.display()
    );
    path
}

fn run(binary: &Path, args: &[&str]) -> String {
    let out = Command::new(binary)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running gregor {args:?}: {e}"));
    assert!(
        out.status.success(),
        "gregor {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Brokers {
    /// Starts a cluster of `nodes` combined nodes with ids `0..nodes` and waits until every
    /// node lists every broker.
    pub fn start(nodes: i32) -> Brokers {
        let gregor = binary();
        let dir = tempfile::tempdir().expect("temp dir");
        // Client, controller and metrics ports for every node, distinct.
        let free = free_ports(3 * nodes as usize);
        let ports: Vec<(u16, u16, u16)> = free.chunks(3).map(|c| (c[0], c[1], c[2])).collect();
        let voters = ports
            .iter()
            .enumerate()
            .map(|(id, (_, controller, _))| format!("{id}@127.0.0.1:{controller}"))
            .collect::<Vec<_>>()
            .join(",");
        let cluster_id = run(&gregor, &["storage", "random-uuid"]);
        let mut guards = Vec::new();
        for (id, (port, controller, metrics)) in ports.iter().enumerate() {
            let node = dir.path().join(format!("node-{id}"));
            std::fs::create_dir_all(&node).expect("node dir");
            let config = node.join("server.properties");
            std::fs::write(
                &config,
                format!(
                    "node.id={id}\n\
                     process.roles=broker,controller\n\
                     listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}\n\
                     advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
                     controller.listener.names=CONTROLLER\n\
                     listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
                     inter.broker.listener.name=PLAINTEXT\n\
                     controller.quorum.voters={voters}\n\
                     log.dirs={}\n\
                     metrics.listener=127.0.0.1:{metrics}\n",
                    node.join("data").display(),
                ),
            )
            .expect("server.properties");
            let config = config.to_string_lossy().into_owned();
            run(
                &gregor,
                &["storage", "format", "-t", &cluster_id, "-c", &config],
            );
            guards.push(Some(supervised(
                &gregor,
                &["server-start".into(), config],
                &node.join("gregor.log"),
            )));
        }
        let brokers = Brokers {
            bootstrap: ports
                .iter()
                .map(|(port, _, _)| format!("127.0.0.1:{port}"))
                .collect::<Vec<_>>()
                .join(","),
            nodes,
            dir,
            guards,
        };
        brokers.wait_ready();
        brokers
    }

    /// Stops node `id` for good, as a pod a shrunk StatefulSet deletes (kill -9: its
    /// watchdog's pipe closes).
    pub fn stop(&mut self, id: i32) {
        if let Some((mut shell, pipe)) = self.guards[id as usize].take() {
            drop(pipe);
            let _ = shell.wait();
        }
    }

    /// Waits, on a thread and runtime of its own (the first test to ask is inside one), until
    /// every node lists every broker in its Metadata.
    fn wait_ready(&self) {
        std::thread::scope(|s| {
            s.spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime")
                    .block_on(self.poll_ready())
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }

    async fn poll_ready(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        for node in self.bootstrap.split(',') {
            loop {
                let listed = match Cluster::connect(node).await {
                    Ok(c) => c.brokers().len() == self.nodes as usize,
                    Err(_) => false,
                };
                if listed {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{node} did not list {} brokers within {READY_TIMEOUT:?}; logs:\n{}",
                    self.nodes,
                    self.log_tails()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    fn log_tails(&self) -> String {
        (0..self.nodes)
            .map(|id| {
                let log = self.dir.path().join(format!("node-{id}/gregor.log"));
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                format!(
                    "--- node {id} ---\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}
