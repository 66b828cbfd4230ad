//! A real kube-apiserver and etcd for the operator's tests, started once per test binary from
//! the binaries `scripts/kube-dist.sh` provides (`GREGOR_KUBE_BIN`, the directory it prints).
//!
//! Each process runs under a small shell that kills it when this test binary's end of a pipe
//! closes, so nothing outlives the tests even when they panic or are interrupted. Every test
//! gets its own namespace.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// How long the API server gets to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
const TOKEN: &str = "gregor-operator-tests";

/// The running API server.
pub struct ApiServer {
    /// A kubeconfig for it (also usable with kubectl while debugging).
    pub kubeconfig: PathBuf,
    /// Its address.
    url: String,
    _dir: tempfile::TempDir,
    /// Held so the watchdog shells keep their processes alive until this binary exits.
    _guards: Vec<(Child, ChildStdin)>,
}

/// Writes a kubeconfig for the API server at `url` that authenticates with `token`.
fn write_kubeconfig(path: &Path, url: &str, token: &str) {
    let mut f = std::fs::File::create(path).expect("kubeconfig");
    write!(
        f,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {url}\n    \
         insecure-skip-tls-verify: true\nusers:\n- name: user\n  user:\n    token: {token}\n\
         contexts:\n- name: test\n  context:\n    cluster: test\n    user: user\n\
         current-context: test\n"
    )
    .expect("kubeconfig");
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// `n` distinct free loopback ports: all bound at once before any is released, so the kernel
/// cannot hand one out twice (as separate [`free_port`] calls may).
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free loopback port"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("bound").port())
        .collect()
}

/// Starts `program args` under a shell that kills it once its stdin (our pipe) closes.
pub fn supervised(program: &Path, args: &[String], log: &Path) -> (Child, ChildStdin) {
    supervised_removing(program, args, log, None)
}

/// [`supervised`], and once the program is dead the shell removes `remove` (if given): the
/// shared API server lives in a static that is never dropped, so its `TempDir` (etcd's data,
/// ~120 MB) would otherwise outlive every test run.
fn supervised_removing(
    program: &Path,
    args: &[String],
    log: &Path,
    remove: Option<&Path>,
) -> (Child, ChildStdin) {
    let log = std::fs::File::create(log).expect("log file");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(
            r#""$0" "$@" & pid=$!; read _ignored; kill -9 "$pid"; wait "$pid"
               [ -z "$GREGOR_REMOVE_AFTER" ] || rm -rf "$GREGOR_REMOVE_AFTER""#,
        )
        .arg(program)
        .args(args)
        .env("GREGOR_REMOVE_AFTER", remove.unwrap_or(Path::new("")))
        .stdin(Stdio::piped())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
    let stdin = child.stdin.take().expect("piped stdin");
    (child, stdin)
}

fn bin_dir() -> Option<PathBuf> {
    std::env::var_os("GREGOR_KUBE_BIN").map(PathBuf::from)
}

/// The shared API server, or `None` when `GREGOR_KUBE_BIN` is unset outside CI (the tests
/// then say they were skipped; in CI a missing directory fails them).
pub fn shared() -> Option<&'static ApiServer> {
    // A failed start is kept as its message, so one failure is reported by every test instead
    // of each test trying (and waiting) again.
    static SERVER: OnceLock<Result<Option<ApiServer>, String>> = OnceLock::new();
    let started = SERVER.get_or_init(|| match bin_dir() {
        Some(dir) => std::panic::catch_unwind(|| ApiServer::start(&dir))
            .map(Some)
            .map_err(|e| {
                e.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "the API server did not start".into())
            }),
        None if std::env::var_os("CI").is_some() => {
            Err("GREGOR_KUBE_BIN is not set: run scripts/kube-dist.sh and export its output".into())
        }
        None => Ok(None),
    });
    match started {
        Ok(server) => server.as_ref(),
        Err(e) => panic!("{e}"),
    }
}

impl ApiServer {
    fn start(bin: &Path) -> ApiServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let (etcd_port, peer_port, api_port) = (free_port(), free_port(), free_port());
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd = supervised_removing(
            &bin.join("etcd"),
            &[
                format!("--data-dir={}", d.join("etcd").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=default={peer_url}"),
                "--quota-backend-bytes=1073741824".into(),
            ],
            &d.join("etcd.log"),
            Some(d),
        );
        let key = d.join("sa.key");
        let status = Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(&key)
            .arg("2048")
            .stderr(Stdio::null())
            .status()
            .expect("openssl genrsa");
        assert!(status.success(), "openssl genrsa failed");
        std::fs::write(
            d.join("tokens.csv"),
            format!("{TOKEN},gregor-admin,1000,\"system:masters\"\n"),
        )
        .expect("token file");
        let apiserver = supervised(
            &bin.join("kube-apiserver"),
            &[
                format!("--etcd-servers={etcd_url}"),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                // A loopback advertise address is refused unless nothing reconciles endpoints.
                "--endpoint-reconciler-type=none".into(),
                format!("--secure-port={api_port}"),
                format!("--cert-dir={}", d.join("certs").display()),
                format!("--token-auth-file={}", d.join("tokens.csv").display()),
                "--authorization-mode=RBAC".into(),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                format!("--service-account-key-file={}", key.display()),
                format!("--service-account-signing-key-file={}", key.display()),
                "--service-cluster-ip-range=10.96.0.0/16".into(),
                // No controller-manager creates the default ServiceAccount; tests create pods.
                "--disable-admission-plugins=ServiceAccount".into(),
                "--enable-priority-and-fairness=false".into(),
            ],
            &d.join("kube-apiserver.log"),
        );
        let url = format!("https://127.0.0.1:{api_port}");
        let kubeconfig = d.join("kubeconfig");
        write_kubeconfig(&kubeconfig, &url, TOKEN);
        let server = ApiServer {
            kubeconfig,
            url,
            _guards: vec![etcd, apiserver],
            _dir: dir,
        };
        server.wait_ready();
        server
    }

    /// Waits on a thread of its own: the first test to ask is already inside a runtime.
    fn wait_ready(&self) {
        std::thread::scope(|s| {
            s.spawn(|| self.wait_ready_blocking())
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }

    fn wait_ready_blocking(&self) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let deadline = Instant::now() + READY_TIMEOUT;
            loop {
                let ready = match self.client().await {
                    Ok(c) => {
                        let req = http::Request::get("/readyz")
                            .body(Vec::new())
                            .expect("request");
                        c.request_text(req)
                            .await
                            .is_ok_and(|body| body.trim() == "ok")
                    }
                    Err(_) => false,
                };
                if ready {
                    return;
                }
                if Instant::now() >= deadline {
                    let log = self.kubeconfig.parent().unwrap().join("kube-apiserver.log");
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(15).collect();
                    panic!(
                        "kube-apiserver not ready after {READY_TIMEOUT:?}; its last lines:\n{}",
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    );
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
    }

    /// Writes a kubeconfig at `path` that acts with `token` (a ServiceAccount's, say) instead
    /// of the admin's.
    pub fn kubeconfig_with_token(&self, path: &Path, token: &str) {
        write_kubeconfig(path, &self.url, token);
    }

    /// A client for the current runtime.
    pub async fn client(&self) -> Result<kube::Client, kube::Error> {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).expect("kubeconfig parses");
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .expect("kubeconfig is usable");
        kube::Client::try_from(config)
    }

    /// A client and a fresh namespace named after the test.
    pub async fn namespace(&self, name: &str) -> (kube::Client, String) {
        let client = self.client().await.expect("client");
        let ns = format!(
            "{}-{}",
            name.replace('_', "-").chars().take(40).collect::<String>(),
            std::process::id() % 100_000
        );
        let api: Api<Namespace> = Api::all(client.clone());
        let mut n = Namespace::default();
        n.metadata.name = Some(ns.clone());
        api.create(&PostParams::default(), &n)
            .await
            .expect("creating the test namespace");
        (client, ns)
    }
}
