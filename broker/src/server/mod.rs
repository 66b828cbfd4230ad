//! The client-facing server: listeners, one task per connection, and the per-API handlers.
//! `run` takes bound listeners and a cancellation token so tests can bind `127.0.0.1:0`.

mod connection;
mod dispatch;
mod handlers;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster::Cluster;
use crate::group::GroupCoordinator;
use crate::metrics::Metrics;

/// Everything a request handler needs, shared by all connections.
#[derive(Debug)]
pub struct Broker {
    /// Topics, partitions and metadata.
    pub cluster: Arc<Cluster>,
    /// Consumer groups.
    pub groups: Arc<GroupCoordinator>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// This node's controller quorum member, for DescribeQuorum.
    pub quorum: Option<Arc<crate::quorum::node::QuorumNode>>,
    /// Open client connections, for `max.connections`.
    connections: AtomicUsize,
}

impl Broker {
    /// Assembles the shared broker state.
    pub fn new(
        cluster: Arc<Cluster>,
        groups: Arc<GroupCoordinator>,
        metrics: Arc<Metrics>,
        quorum: Option<Arc<crate::quorum::node::QuorumNode>>,
    ) -> Broker {
        Broker {
            cluster,
            groups,
            metrics,
            quorum,
            connections: AtomicUsize::new(0),
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> i32 {
        self.cluster.config.node_id
    }
}

/// Accepts connections on `listeners` (each with the name of the listener it serves) until
/// `shutdown` is cancelled, then waits for open connections to finish their in-flight request.
pub async fn run(
    broker: Arc<Broker>,
    listeners: Vec<(Arc<str>, TcpListener)>,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    for (name, listener) in listeners {
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
                let open = broker.connections.fetch_add(1, Ordering::AcqRel) + 1;
                if open > broker.cluster.config.max_connections {
                    broker.connections.fetch_sub(1, Ordering::AcqRel);
                    tracing::warn!(%peer, "closing connection: max.connections reached");
                    continue;
                }
                let broker = broker.clone();
                let shutdown = shutdown.clone();
                let name = Arc::clone(&name);
                conns.spawn(async move {
                    broker.metrics.connections.inc();
                    connection::serve(broker.clone(), stream, peer, name, shutdown).await;
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
mod tests;
#[cfg(test)]
mod unregister_tests;
