//! The client-facing server: listeners, one task per connection, and the per-API handlers.
//! `run` takes bound listeners and a cancellation token so tests can bind `127.0.0.1:0`. An SSL
//! listener comes with its TLS acceptor (`tls`): its connections are TLS sessions, served by the
//! same connection code once the handshake is done.

mod connection;
mod dispatch;
pub(crate) mod handlers;
mod request_time;
pub mod session;
pub mod throttle;
pub mod tls;
pub mod tls_reload;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster::Cluster;
use crate::config::principal_rules::PrincipalRule;
use crate::config::sasl::SaslConfig;
use crate::group::GroupCoordinator;
use crate::metrics::Metrics;

/// Everything a request handler needs, shared by all connections.
#[derive(Debug)]
pub struct Broker {
    /// Topics, partitions and metadata.
    pub cluster: Arc<Cluster>,
    /// Consumer groups.
    pub groups: Arc<GroupCoordinator>,
    /// Transactional ids.
    pub txns: Arc<crate::transaction::TransactionCoordinator>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// This node's controller quorum member, for DescribeQuorum.
    pub quorum: Option<Arc<crate::quorum::node::QuorumNode>>,
    /// Open client connections, for `max.connections`.
    connections: AtomicUsize,
    /// The rate limit of the log lines about peers closed for speaking the wrong protocol.
    close_log: connection::CloseLog,
    /// The measured client rates against their quotas.
    throttler: throttle::Throttler,
    /// Each client's `controller_mutation_rate` bucket.
    mutations: throttle::MutationBuckets,
    /// The TLS acceptor of each SSL client listener, by name, which AlterConfigs of its
    /// `listener.name.<l>.ssl.*` keys reconfigures.
    pub tls: BTreeMap<String, Arc<tls_reload::ReloadingAcceptor>>,
}

impl Broker {
    /// Assembles the shared broker state.
    pub fn new(
        cluster: Arc<Cluster>,
        groups: Arc<GroupCoordinator>,
        metrics: Arc<Metrics>,
        quorum: Option<Arc<crate::quorum::node::QuorumNode>>,
    ) -> Broker {
        let throttler = throttle::Throttler::new(
            std::time::Duration::from_secs(cluster.config.quota_window_size_seconds),
            cluster.config.quota_window_num,
        );
        let mutations = throttle::MutationBuckets::new(
            std::time::Duration::from_secs(cluster.config.controller_quota_window_size_seconds),
            cluster.config.controller_quota_window_num,
        );
        let txns = Arc::new(crate::transaction::TransactionCoordinator::new(
            Arc::clone(&cluster),
            Arc::clone(&groups),
        ));
        Broker {
            mutations,
            throttler,
            cluster,
            groups,
            txns,
            metrics,
            quorum,
            connections: AtomicUsize::new(0),
            close_log: connection::CloseLog::default(),
            tls: BTreeMap::new(),
        }
    }

    /// The broker with the TLS acceptors of its SSL client listeners.
    pub fn with_tls(mut self, tls: BTreeMap<String, Arc<tls_reload::ReloadingAcceptor>>) -> Broker {
        self.tls = tls;
        self
    }

    /// This node's id.
    pub fn node_id(&self) -> i32 {
        self.cluster.config.node_id
    }
}

/// How long a TLS client may take over its handshake before the connection is closed, so a
/// peer that connects and goes quiet does not hold a connection slot for long.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// One bound client socket: the name of the listener it serves and, on an SSL listener, its TLS
/// acceptor.
pub struct BoundListener {
    /// The listener's name.
    pub name: Arc<str>,
    /// The socket.
    pub socket: TcpListener,
    /// The TLS acceptor of an SSL or SASL_SSL listener; `None` on a PLAINTEXT one.
    pub tls: Option<Arc<tls_reload::ReloadingAcceptor>>,
    /// The SASL settings of a SASL_PLAINTEXT or SASL_SSL listener.
    pub sasl: Option<Arc<SaslConfig>>,
    /// The `ssl.principal.mapping.rules` of an SSL listener: its clients' certificates name
    /// their principal (on SASL_SSL, SASL does).
    pub principal_rules: Option<Arc<[PrincipalRule]>>,
}

/// What a connection is served with: its listener's name and SASL settings, and the
/// principal its client certificate names.
#[derive(Debug, Clone)]
pub struct ListenerInfo {
    /// The listener's name.
    pub name: Arc<str>,
    /// Its SASL settings, on a SASL listener.
    pub sasl: Option<Arc<SaslConfig>>,
    /// The principal of the client's certificate (SSL listeners with a client certificate).
    pub principal: Option<Arc<str>>,
}

/// An SSL listener's acceptor and, when its certificates name principals, its mapping rules.
type TlsListener = (
    Arc<tls_reload::ReloadingAcceptor>,
    Option<Arc<[PrincipalRule]>>,
);

/// Serves one accepted socket: the TLS handshake first on an SSL listener (a failed one closes
/// it with a rate-limited log line), then the connection.
async fn serve_socket(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: std::net::SocketAddr,
    mut listener: ListenerInfo,
    tls: Option<TlsListener>,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let Some((acceptor, rules)) = tls else {
        connection::serve(broker, stream, peer, listener, shutdown).await;
        return;
    };
    let name = Arc::clone(&listener.name);
    let handshake = tokio::select! {
        _ = shutdown.cancelled() => return,
        h = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.acceptor().accept(stream)) => h,
    };
    match handshake {
        Ok(Ok(tls_stream)) => {
            let certificate = tls_stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first());
            if let (Some(rules), Some(der)) = (rules, certificate) {
                match tls::certificate_principal(der, &rules) {
                    Ok(name) => listener.principal = Some(Arc::from(format!("User:{name}"))),
                    Err(e) => {
                        let reason = format_args!("client certificate refused: {e}");
                        broker.close_log.closed(peer, &name, &reason);
                        return;
                    }
                }
            }
            connection::serve(broker, tls_stream, peer, listener, shutdown).await
        }
        Ok(Err(e)) => {
            broker
                .close_log
                .closed(peer, &name, &format_args!("TLS handshake failed: {e}"));
            broker
                .metrics
                .request_errors
                .with_label_values(&["tls"])
                .inc();
        }
        Err(_) => broker
            .close_log
            .closed(peer, &name, &"TLS handshake timed out"),
    }
}

/// How long to hold a connection from `peer` before closing it unread, when its IP is over its
/// `connection_creation_rate` (counted and logged, rate-limited); `None` within it.
fn over_connection_rate(
    broker: &Broker,
    peer: std::net::SocketAddr,
    listener: &str,
) -> Option<std::time::Duration> {
    let quotas = broker.cluster.client_quotas();
    let held = broker
        .throttler
        .record_connection(&quotas, peer.ip(), std::time::Instant::now());
    if held.is_zero() {
        return None;
    }
    broker
        .metrics
        .request_errors
        .with_label_values(&["connection_throttled"])
        .inc();
    let reason = format!(
        "over its IP's connection_creation_rate, closed after {} ms",
        held.as_millis()
    );
    broker.close_log.closed(peer, listener, &reason);
    Some(held)
}

/// Accepts connections on `listeners` (each with the name of the listener it serves) until
/// `shutdown` is cancelled, then waits for open connections to finish their in-flight request.
/// A connection from an IP over its `connection_creation_rate` is held unread for its
/// throttle time, then closed.
pub async fn run(broker: Arc<Broker>, listeners: Vec<BoundListener>, shutdown: CancellationToken) {
    let tracker = TaskTracker::new();
    for BoundListener {
        name,
        socket: listener,
        tls,
        sasl,
        principal_rules,
    } in listeners
    {
        let broker = broker.clone();
        let shutdown = shutdown.clone();
        let conns = tracker.clone();
        tracker.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    a = listener.accept() => a,
                };
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        // EMFILE and friends: back off briefly instead of spinning.
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if let Some(held) = over_connection_rate(&broker, peer, &name) {
                    // Held unread, then closed: the client backs off instead of reconnecting
                    // at once (KIP-612).
                    let shutdown = shutdown.clone();
                    conns.spawn(async move {
                        tokio::select! {
                            _ = tokio::time::sleep(held) => {}
                            _ = shutdown.cancelled() => {}
                        }
                        drop(stream);
                    });
                    continue;
                }
                let open = broker.connections.fetch_add(1, Ordering::AcqRel) + 1;
                if open > broker.cluster.config.max_connections {
                    broker.connections.fetch_sub(1, Ordering::AcqRel);
                    tracing::warn!(%peer, "closing connection: max.connections reached");
                    continue;
                }
                let broker = broker.clone();
                let shutdown = shutdown.clone();
                let info = ListenerInfo {
                    name: Arc::clone(&name),
                    sasl: sasl.clone(),
                    principal: None,
                };
                let tls = tls.clone().map(|t| (t, principal_rules.clone()));
                conns.spawn(async move {
                    broker.metrics.connections.inc();
                    serve_socket(broker.clone(), stream, peer, info, tls, shutdown).await;
                    broker.metrics.connections.dec();
                    broker.connections.fetch_sub(1, Ordering::AcqRel);
                });
            }
        });
    }
    tracker.close();
    tracker.wait().await;
}

#[cfg(test)]
mod acl_tests;
#[cfg(test)]
mod config_tests;
#[cfg(test)]
mod pipeline_tests;
#[cfg(test)]
mod quota_tests;
#[cfg(test)]
mod sasl_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod unregister_tests;
