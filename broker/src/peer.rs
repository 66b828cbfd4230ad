//! The security of the quorum's connections, as the controller listener's keys say: TLS (its
//! key store and trust store on both sides: a node presents its listener certificate when it
//! connects, and a client certificate names the peer's principal by
//! `ssl.principal.mapping.rules`) and SASL PLAIN (the login from
//! `sasl.mechanism.controller.protocol` and the listener's JAAS config, checked against the
//! listener's JAAS users). A broker-only node serves its metadata replication listener the same
//! way. The inter-broker listener needs nothing here: replication fetches are Kafka requests,
//! which gregor-client secures from `Config::inter_broker_client`.
//!
//! SASL runs over the quorum's own framing before the first RPC: one login frame (mechanism
//! and token) and one reply (an error or nothing). A failed login waits
//! `connection.failed.authentication.delay.ms` before its reply and the close, and never
//! names the credential.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use gregor_client::security::SaslCredentials;
use gregor_client::ClientSecurity;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;

use crate::config::peer::ControllerListener;
use crate::config::principal_rules::PrincipalRule;
use crate::config::sasl::SaslConfig;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::node::NodeError;
use crate::quorum::rpc::{read_frame, write_frame};
use crate::quorum::transport::{Accepted, BoxStream, Plaintext, Transport, ANONYMOUS};
use crate::sasl::Mechanism;
use crate::server::tls_reload::{checksums, ReloadingAcceptor};

/// How long an accepted peer has for its TLS handshake and login.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The first frame on a SASL quorum connection.
#[derive(Serialize, Deserialize)]
struct Login {
    mechanism: String,
    token: Vec<u8>,
}

/// The answer to a [`Login`]: `None` when it succeeded.
#[derive(Serialize, Deserialize)]
struct LoginReply {
    error: Option<String>,
}

/// The quorum transport the controller listener's security asks for, and its TLS acceptor (to
/// be watched for changed files) when it uses TLS. Reads the stores: a bad one fails the start.
pub async fn quorum_transport(
    config: &Config,
    metrics: Arc<Metrics>,
) -> Result<(Arc<dyn Transport>, Option<Arc<ReloadingAcceptor>>), NodeError> {
    let Some(listener) = config
        .controller_listener
        .clone()
        .filter(|l| l.ssl.is_some() || l.sasl.is_some())
    else {
        return Ok((Arc::new(Plaintext), None));
    };
    let secured = tokio::task::spawn_blocking(move || Secured::load(&listener, metrics))
        .await
        .map_err(|e| NodeError::Peer(e.to_string()))?
        .map_err(NodeError::Peer)?;
    let acceptor = secured.tls.clone();
    Ok((Arc::new(secured), acceptor))
}

/// How this broker connects to the inter-broker listener of the others (replication fetches):
/// the listener's protocol, TLS stores and login. Reads the stores each time, so a fetcher that
/// reconnects uses rotated certificates.
pub async fn inter_broker_security(config: &Config) -> Result<ClientSecurity, String> {
    let props = config.inter_broker_client.clone();
    if props.protocol() == "PLAINTEXT" {
        return Ok(ClientSecurity::plaintext());
    }
    let name = config.inter_broker_listener_name.clone();
    tokio::task::spawn_blocking(move || {
        ClientSecurity::from_properties(props.properties())
            .map_err(|e| format!("connecting to inter-broker listener {name}: {e}"))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// TLS and/or SASL PLAIN on the quorum's connections.
#[derive(Debug)]
struct Secured {
    /// How this node connects (its TLS client config and login), re-read when its stores
    /// change.
    client: Arc<ClientStores>,
    /// Counts the logins this node's listener checks.
    metrics: Arc<Metrics>,
    /// The listener's TLS acceptor.
    tls: Option<Arc<ReloadingAcceptor>>,
    /// On SSL (not SASL_SSL): how a client certificate names the principal.
    principal_rules: Option<Arc<[PrincipalRule]>>,
    /// The listener's SASL settings (PLAIN users, failure delay, token limit).
    sasl: Option<Arc<SaslConfig>>,
}

impl Secured {
    /// Loads the stores `listener` names (blocking).
    fn load(listener: &ControllerListener, metrics: Arc<Metrics>) -> Result<Secured, String> {
        let name = &listener.name;
        let client = Arc::new(ClientStores::load(listener)?);
        let tls = listener
            .ssl
            .as_ref()
            .map(|ssl| ReloadingAcceptor::load(name, ssl).map(Arc::new))
            .transpose()
            .map_err(|e| format!("controller listener {name}: {e}"))?;
        let principal_rules = match (&listener.ssl, &listener.sasl) {
            (Some(ssl), None) => Some(Arc::from(ssl.principal_rules.clone())),
            _ => None,
        };
        Ok(Secured {
            client,
            metrics,
            tls,
            principal_rules,
            sasl: listener.sasl.clone().map(Arc::new),
        })
    }

    async fn open(&self, addr: &str) -> std::io::Result<BoxStream> {
        let stores = Arc::clone(&self.client);
        let client = tokio::task::spawn_blocking(move || stores.current())
            .await
            .map_err(std::io::Error::other)?;
        let tcp = TcpStream::connect(addr).await?;
        let _ = tcp.set_nodelay(true);
        let mut stream: BoxStream = match client.tls() {
            None => Box::new(tcp),
            Some(config) => {
                let name =
                    gregor_client::connection::server_name(addr).map_err(std::io::Error::other)?;
                let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
                Box::new(connector.connect(name, tcp).await?)
            }
        };
        if let Some(credentials) = client.sasl() {
            login(&mut stream, credentials).await?;
        }
        Ok(stream)
    }

    async fn admit(&self, tcp: TcpStream) -> Result<Accepted, String> {
        let (mut stream, mut principal): (BoxStream, String) = match &self.tls {
            None => (Box::new(tcp), ANONYMOUS.to_string()),
            Some(acceptor) => {
                let tls = acceptor
                    .acceptor()
                    .accept(tcp)
                    .await
                    .map_err(|e| format!("TLS handshake failed: {e}"))?;
                let certificate = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
                let principal = match (&self.principal_rules, certificate) {
                    (Some(rules), Some(der)) => {
                        let name = crate::server::tls::certificate_principal(der, rules)
                            .map_err(|e| format!("client certificate refused: {e}"))?;
                        format!("User:{name}")
                    }
                    _ => ANONYMOUS.to_string(),
                };
                (Box::new(tls), principal)
            }
        };
        if let Some(sasl) = &self.sasl {
            let login = check_login(&mut stream, sasl).await;
            let result = if login.is_ok() { "success" } else { "failure" };
            self.metrics
                .authentications
                .with_label_values(&[result])
                .inc();
            principal = format!("User:{}", login?);
        }
        Ok(Accepted { stream, principal })
    }
}

/// This node's client settings for the controller listener, re-read when the key or trust
/// store files they name change, so rotated certificates are used by the next connection.
#[derive(Debug)]
struct ClientStores {
    /// The listener's name, for messages.
    listener: String,
    /// The Kafka client properties the settings come from.
    props: BTreeMap<String, String>,
    /// The store files they name.
    files: Vec<PathBuf>,
    /// The files' checksums at the last load, and what was loaded.
    loaded: parking_lot::Mutex<(Vec<Option<u32>>, ClientSecurity)>,
}

impl ClientStores {
    /// Loads the client settings of `listener` (blocking: reads the stores).
    fn load(listener: &ControllerListener) -> Result<ClientStores, String> {
        let props = listener.client.properties().clone();
        let files: Vec<PathBuf> = ["ssl.keystore.location", "ssl.truststore.location"]
            .iter()
            .filter_map(|k| props.get(*k).map(PathBuf::from))
            .collect();
        let sums = checksums(&files);
        let client = ClientSecurity::from_properties(&props)
            .map_err(|e| format!("connecting to controller listener {}: {e}", listener.name))?;
        Ok(ClientStores {
            listener: listener.name.clone(),
            props,
            files,
            loaded: parking_lot::Mutex::new((sums, client)),
        })
    }

    /// The settings for a new connection (blocking): reloaded first if a store file changed;
    /// a change that does not load is logged and the previous settings stay in use.
    fn current(&self) -> ClientSecurity {
        let sums = checksums(&self.files);
        let mut loaded = self.loaded.lock();
        if loaded.0 != sums {
            loaded.0 = sums;
            match ClientSecurity::from_properties(&self.props) {
                Ok(client) => {
                    tracing::info!(listener = %self.listener, "controller client stores reloaded");
                    loaded.1 = client;
                }
                Err(e) => tracing::warn!(
                    listener = %self.listener,
                    "changed controller client stores not loaded, still using the previous: {e}"
                ),
            }
        }
        loaded.1.clone()
    }
}

impl Transport for Secured {
    fn connect<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, std::io::Result<BoxStream>> {
        Box::pin(self.open(addr))
    }

    fn accept(&self, tcp: TcpStream, _: SocketAddr) -> BoxFuture<'_, Result<Accepted, String>> {
        Box::pin(async move {
            tokio::time::timeout(ACCEPT_TIMEOUT, self.admit(tcp))
                .await
                .map_err(|_| "the TLS handshake or SASL login timed out".to_string())?
        })
    }
}

/// The client's login: PLAIN with `credentials` (the controller listener speaks only PLAIN).
async fn login(stream: &mut BoxStream, credentials: &SaslCredentials) -> std::io::Result<()> {
    let token = format!("\0{}\0{}", credentials.username, credentials.password());
    let frame = Login {
        mechanism: credentials.mechanism.name().to_string(),
        token: token.into_bytes(),
    };
    write_frame(stream, &serde_json::to_vec(&frame)?).await?;
    let reply = read_frame(stream)
        .await?
        .ok_or_else(|| std::io::Error::other("the controller closed the connection at login"))?;
    let reply: LoginReply = serde_json::from_slice(&reply)?;
    match reply.error {
        None => Ok(()),
        Some(e) => Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("SASL login refused: {e}"),
        )),
    }
}

/// The server's side of a login: reads one [`Login`] (at most the listener's
/// `sasl.server.max.receive.size`), checks it against the PLAIN users and answers. Returns the
/// user name, or why the connection closes.
async fn check_login(stream: &mut BoxStream, sasl: &SaslConfig) -> Result<String, String> {
    let body = read_capped(stream, sasl.max_receive_size)
        .await
        .map_err(|e| format!("SASL login not read: {e}"))?;
    let outcome = match serde_json::from_slice::<Login>(&body) {
        Err(e) => Err(format!("malformed SASL login: {e}")),
        Ok(login) => match Mechanism::from_name(&login.mechanism) {
            Some(m) if sasl.mechanisms.contains(&m) && m == Mechanism::Plain => {
                crate::sasl::plain::authenticate(&login.token, &sasl.plain_users)
                    .map_err(|f| f.client_message(m))
            }
            _ => Err(format!(
                "Unsupported SASL mechanism {}: the controller listener enables PLAIN",
                login.mechanism
            )),
        },
    };
    let reply = LoginReply {
        error: outcome.as_ref().err().cloned(),
    };
    if outcome.is_err() {
        tokio::time::sleep(Duration::from_millis(sasl.failed_auth_delay_ms)).await;
    }
    let body = serde_json::to_vec(&reply).map_err(|e| e.to_string())?;
    write_frame(stream, &body)
        .await
        .map_err(|e| format!("SASL reply not sent: {e}"))?;
    outcome.map_err(|e| format!("SASL login failed: {e}"))
}

/// Reads one frame of at most `max` bytes (before authentication a peer's length is not
/// trusted with more).
async fn read_capped<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a login frame of {len} bytes exceeds sasl.server.max.receive.size ({max})"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(body)
}

/// A connection to broker `node` at the address the metadata gives it now (a restarted
/// broker may have moved), whose requests give up after `timeout`, secured as the
/// inter-broker listener is: its stores are read afresh, so rotated certificates are used.
/// `None` (logged at debug) when the broker is unknown or cannot be reached.
pub async fn connect_broker(
    cluster: &crate::cluster::Cluster,
    node: i32,
    timeout: Duration,
) -> Option<gregor_client::Client> {
    let broker = cluster.brokers().get(&node).cloned()?;
    let addr = if broker.host.contains(':') {
        format!("[{}]:{}", broker.host, broker.port)
    } else {
        format!("{}:{}", broker.host, broker.port)
    };
    // The effective config: the inter-broker listener's TLS keys may have been replaced
    // through AlterConfigs since the start.
    let config = cluster.effective_config();
    let security = match inter_broker_security(&config).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(node, error = %e, "cannot load the inter-broker listener's security");
            return None;
        }
    };
    match gregor_client::Client::connect_one_within_with(&addr, timeout, &security).await {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::debug!(node, %addr, error = %crate::cluster::error_chain(&e), "cannot reach the broker");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_properties;

    /// A controller listener on SASL_PLAINTEXT with PLAIN, logging in as `user`/`password`.
    fn listener(user: &str, password: &str) -> ControllerListener {
        let text = format!(
            "node.id=1\nprocess.roles=broker,controller\n\
             controller.quorum.voters=1@localhost:9093\ncontroller.listener.names=CONTROLLER\n\
             listeners=PLAINTEXT://:9092,CONTROLLER://:9093\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:SASL_PLAINTEXT\n\
             sasl.enabled.mechanisms=PLAIN\nsasl.mechanism.controller.protocol=PLAIN\n\
             connection.failed.authentication.delay.ms=0\n\
             listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.\
             plain.PlainLoginModule required username=\"{user}\" password=\"{password}\" \
             user_controller=\"controller-secret\";\n"
        );
        Config::from_properties(parse_properties(&text))
            .expect("config")
            .controller_listener
            .expect("controller listener")
    }

    fn metrics() -> Arc<Metrics> {
        Arc::new(Metrics::new().expect("metrics"))
    }

    /// The logins `metrics` counted with `result`.
    fn logins(metrics: &Metrics, result: &str) -> u64 {
        metrics.authentications.with_label_values(&[result]).get()
    }

    /// Connects `client` to a listener served by `server` (counting into `counted`); both
    /// sides' outcomes.
    async fn exchange(
        server: ControllerListener,
        client: ControllerListener,
        counted: &Arc<Metrics>,
    ) -> (std::io::Result<()>, Result<String, String>) {
        let server = Secured::load(&server, Arc::clone(counted)).expect("server side");
        let client = Secured::load(&client, metrics()).expect("client side");
        let socket = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = socket.local_addr().expect("addr").to_string();
        let accepted = tokio::spawn(async move {
            let (tcp, peer) = socket.accept().await.expect("accept");
            server.accept(tcp, peer).await.map(|a| a.principal)
        });
        let connected = client.connect(&addr).await.map(|_| ());
        (connected, accepted.await.expect("accept task"))
    }

    #[tokio::test]
    async fn a_plain_login_names_the_principal_and_a_wrong_one_is_refused_on_both_sides() {
        let counted = metrics();
        let (connected, accepted) = exchange(
            listener("controller", "controller-secret"),
            listener("controller", "controller-secret"),
            &counted,
        )
        .await;
        connected.expect("logged in");
        assert_eq!(accepted.expect("accepted"), "User:controller");
        assert_eq!(
            (logins(&counted, "success"), logins(&counted, "failure")),
            (1, 0)
        );

        let (connected, accepted) = exchange(
            listener("controller", "controller-secret"),
            listener("controller", "guess"),
            &counted,
        )
        .await;
        assert_eq!(
            (logins(&counted, "success"), logins(&counted, "failure")),
            (1, 1)
        );
        let e = connected.expect_err("refused");
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
        assert!(
            e.to_string()
                .contains("Authentication failed: Invalid username or password"),
            "{e}"
        );
        let why = accepted.expect_err("refused");
        assert!(
            !why.contains("guess"),
            "the password must not be logged: {why}"
        );
    }

    #[tokio::test]
    async fn a_login_frame_over_the_token_limit_is_not_read() {
        let server =
            Secured::load(&listener("controller", "controller-secret"), metrics()).expect("server");
        let socket = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = socket.local_addr().expect("addr");
        let accepted = tokio::spawn(async move {
            let (tcp, peer) = socket.accept().await.expect("accept");
            server.accept(tcp, peer).await.map(|a| a.principal)
        });
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        tokio::io::AsyncWriteExt::write_all(&mut tcp, &u32::MAX.to_be_bytes())
            .await
            .expect("write");
        let why = accepted.await.expect("task").expect_err("refused");
        assert!(
            why.contains("exceeds sasl.server.max.receive.size"),
            "{why}"
        );
    }

    /// A self-signed certificate for localhost and its key, as one PEM bundle at `path`.
    fn self_signed(dir: &std::path::Path, path: &std::path::Path) {
        let out = std::process::Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args([
                "-subj",
                "/CN=localhost",
                "-keyout",
                "k.pem",
                "-out",
                "c.pem",
            ])
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(out.status.success(), "{out:?}");
        let bundle = [
            std::fs::read_to_string(dir.join("c.pem")).expect("cert"),
            std::fs::read_to_string(dir.join("k.pem")).expect("key"),
        ]
        .concat();
        std::fs::write(path, bundle).expect("write");
    }

    #[test]
    fn the_controller_client_rereads_changed_stores_and_keeps_them_when_a_change_is_broken() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let (keystore, truststore) = (d.join("keystore.pem"), d.join("truststore.pem"));
        self_signed(d, &keystore);
        std::fs::copy(&keystore, &truststore).expect("copy");
        let text = format!(
            "node.id=1\nprocess.roles=broker,controller\n\
             controller.quorum.voters=1@localhost:9093\ncontroller.listener.names=CONTROLLER\n\
             listeners=PLAINTEXT://:9092,CONTROLLER://:9093\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:SSL\n\
             ssl.keystore.type=PEM\nssl.keystore.location={}\n\
             ssl.truststore.type=PEM\nssl.truststore.location={}\n",
            keystore.display(),
            truststore.display()
        );
        let listener = Config::from_properties(parse_properties(&text))
            .expect("config")
            .controller_listener
            .expect("controller listener");
        let stores = ClientStores::load(&listener).expect("loads");
        let tls = |c: &ClientSecurity| Arc::clone(c.tls().expect("TLS"));
        let first = tls(&stores.current());
        assert!(Arc::ptr_eq(&first, &tls(&stores.current())), "unchanged");
        // A broken trust store: the previous settings stay in use.
        std::fs::write(&truststore, "not a certificate").expect("write");
        assert!(Arc::ptr_eq(&first, &tls(&stores.current())));
        // A new CA (and certificate): read for the next connection.
        self_signed(d, &keystore);
        std::fs::copy(&keystore, &truststore).expect("copy");
        assert!(!Arc::ptr_eq(&first, &tls(&stores.current())));
    }
}
