//! Bringing a node's quorum member up from its `server.properties`: bind the controller
//! listener (a broker-only node: its metadata replication listener), start the member with the
//! voters of `controller.quorum.voters` (a broker-only node: join them as a learner), wait until
//! the quorum has a leader and this member has applied everything committed, and carry over a
//! metadata file written by a build that predates the quorum. Also the [`MetadataStore`] the
//! cluster writes through.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::runtime::Handle;

use super::node::{MemberRole, QuorumConfig, QuorumError, QuorumNode};
use super::types::{node_id, ControllerNode};
use crate::cluster::image::MetadataImage;
use crate::cluster::metadata::{
    Committed, MetadataError, MetadataLog, MetadataRecord, MetadataStore,
};
use crate::config::Config;

/// How long start-up waits for the quorum to elect a leader.
const LEADER_WAIT: Duration = Duration::from_secs(60);

/// How long a learner waits to hear from the leader after joining before it asks again (the
/// membership naming it may have been lost with a leader that failed before committing it).
const LEARNER_WAIT: Duration = Duration::from_secs(10);

/// Starts this node's quorum member and returns it once it leads (or follows) a caught-up
/// quorum, with every record of a pre-quorum metadata file committed. A controller (dedicated or
/// combined) is a voter on its controller listener; a broker-only node is a learner on its
/// metadata replication listener, asking the voters to add it until one leader has.
pub async fn start_for(
    config: &Config,
    cluster_id: &str,
    liveness: Arc<super::liveness::Liveness>,
    transport: Arc<dyn super::transport::Transport>,
) -> Result<Arc<QuorumNode>, QuorumError> {
    let id = node_id(config.node_id).map_err(|e| QuorumError::Config(e.to_string()))?;
    let mut voters = configured_voters(config)?;
    let (listener, role) = if config.is_controller() {
        let (listener, configured) = bind_controller_listener(config).await?;
        let bound = local_addr(&listener, "controller listener")?;
        // Without a configured controller listener (or with port 0) this node is reachable
        // only where it actually bound: record that, not the configured address.
        if !configured || voters.get(&id).is_none_or(|n| n.port == 0) {
            voters.insert(
                id,
                ControllerNode {
                    host: bound.ip().to_string(),
                    port: bound.port(),
                },
            );
        }
        (listener, MemberRole::Voter)
    } else {
        let (listener, advertised) = bind_replication_listener(config).await?;
        tracing::info!(at = %advertised, "broker-only node: replicating the metadata log as a learner");
        (listener, MemberRole::Learner { advertised })
    };
    let learner = role != MemberRole::Voter;
    let node = QuorumNode::start(
        QuorumConfig {
            node_id: id,
            role,
            voters,
            dir: super::raft_dir(&config.metadata_log_dir),
            cluster_id: cluster_id.to_string(),
            heartbeat: Duration::from_millis(100),
            election_timeout: Duration::from_millis(500),
            liveness,
            transport,
            authorizer: config.authorizer.clone(),
        },
        listener,
    )
    .await?;
    wait_for_quorum(&node, learner).await?;
    let node = Arc::new(node);
    migrate_metadata_file(&node, &config.metadata_log_dir).await?;
    Ok(node)
}

/// `controller.quorum.voters` as the quorum's members.
fn configured_voters(
    config: &Config,
) -> Result<std::collections::BTreeMap<super::types::NodeId, ControllerNode>, QuorumError> {
    let mut voters = std::collections::BTreeMap::new();
    for v in &config.controller_quorum_voters {
        let vid = node_id(v.id).map_err(|e| QuorumError::Config(e.to_string()))?;
        voters.insert(
            vid,
            ControllerNode {
                host: v.host.clone(),
                port: v.port,
            },
        );
    }
    Ok(voters)
}

/// As a Kafka broker does, waits for the quorum however long the other voters take to come
/// up, saying so now and then; only a config error ends the wait early.
async fn wait_for_quorum(node: &QuorumNode, learner: bool) -> Result<(), QuorumError> {
    let started = std::time::Instant::now();
    let mut last_said = started;
    let leader_wait = if learner { LEARNER_WAIT } else { LEADER_WAIT };
    loop {
        match node.settle(leader_wait).await {
            Ok(()) => return Ok(()),
            Err(e @ QuorumError::Config(_)) => return Err(e),
            Err(e) => {
                if last_said.elapsed() >= LEADER_WAIT / 6 {
                    last_said = std::time::Instant::now();
                    tracing::warn!(waited_s = started.elapsed().as_secs(), error = %crate::cluster::error_chain(&e), "waiting for the controller quorum");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

fn local_addr(listener: &TcpListener, what: &str) -> Result<SocketAddr, QuorumError> {
    listener
        .local_addr()
        .map_err(|e| QuorumError::Config(format!("{what}: {e}")))
}

/// The address `host:port` binds: all interfaces for an empty host, IPv4 loopback for
/// `localhost`, brackets around an IPv6 address.
fn bind_address(host: &str, port: u16) -> String {
    match host {
        "" => format!("0.0.0.0:{port}"),
        "localhost" => format!("127.0.0.1:{port}"),
        h if h.contains(':') => format!("[{h}]:{port}"),
        h => format!("{h}:{port}"),
    }
}

async fn bind(addr: &str, what: &str) -> Result<TcpListener, QuorumError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| QuorumError::Config(format!("cannot listen on {what} address {addr}: {e}")))
}

/// Binds a broker-only node's metadata replication listener, where the active controller sends
/// it the log: `metadata.replication.listener`, else the inter-broker listener's host on a free
/// port. Returns it with the address the controllers are told, which names the advertised host
/// when the bound one says nothing routable (all interfaces, loopback names).
async fn bind_replication_listener(
    config: &Config,
) -> Result<(TcpListener, ControllerNode), QuorumError> {
    let (host, port) = match &config.metadata_replication_listener {
        Some((host, port)) => (host.clone(), *port),
        None => {
            let inter_broker = config
                .client_listeners()
                .find(|l| l.name == config.inter_broker_listener_name)
                .or_else(|| config.client_listeners().next());
            (inter_broker.map(|l| l.host.clone()).unwrap_or_default(), 0)
        }
    };
    let listener = bind(&bind_address(&host, port), "metadata replication").await?;
    let bound = local_addr(&listener, "metadata replication listener")?;
    let advertised_host = if host.is_empty() || host == "0.0.0.0" || host == "::" {
        config.advertised_address().0
    } else {
        host
    };
    Ok((
        listener,
        ControllerNode {
            host: advertised_host,
            port: bound.port(),
        },
    ))
}

/// Binds the controller listener; the flag says whether one was configured.
async fn bind_controller_listener(config: &Config) -> Result<(TcpListener, bool), QuorumError> {
    let listener = config
        .listeners
        .iter()
        .find(|l| config.controller_listener_names.contains(&l.name));
    let addr = match listener {
        Some(l) => bind_address(&l.host, l.port),
        // A single voter needs no peers; an ephemeral loopback port keeps the member uniform.
        None => "127.0.0.1:0".to_string(),
    };
    let bound = bind(&addr, "controller").await?;
    Ok((bound, listener.is_some()))
}

/// Commits the records of a `gregor-metadata.jsonl` (the pre-quorum single-node metadata log)
/// into an empty quorum once, then renames the file so it is never replayed again.
async fn migrate_metadata_file(
    node: &QuorumNode,
    metadata_log_dir: &Path,
) -> Result<(), QuorumError> {
    let path = MetadataLog::file_path(metadata_log_dir);
    if !path.exists() {
        return Ok(());
    }
    let dir = metadata_log_dir.to_path_buf();
    let records = tokio::task::spawn_blocking(move || MetadataLog::open(&dir).map(|(_, r)| r))
        .await
        .map_err(|e| QuorumError::Fatal(e.to_string()))?
        .map_err(|e| QuorumError::Fatal(e.to_string()))?;
    let image_empty = node.applied().image.topics.is_empty();
    if image_empty && !records.is_empty() {
        node.write(records).await?;
        tracing::info!(path = %path.display(), "moved the metadata file into the controller quorum");
    }
    let done = path.with_extension("jsonl.migrated");
    std::fs::rename(&path, &done)
        .map_err(|e| QuorumError::Fatal(format!("renaming {}: {e}", path.display())))
}

/// The cluster's [`MetadataStore`] when metadata lives in the quorum: appends are commits.
#[derive(Debug)]
pub struct QuorumStore {
    node: Arc<QuorumNode>,
    runtime: Handle,
}

impl QuorumStore {
    /// A store writing through `node`; `runtime` drives the writes from blocking threads.
    pub fn new(node: Arc<QuorumNode>, runtime: Handle) -> QuorumStore {
        QuorumStore { node, runtime }
    }
}

impl MetadataStore for QuorumStore {
    fn append(&mut self, records: &[MetadataRecord]) -> Result<Committed, MetadataError> {
        // Called on a blocking thread (admin operations run there), where blocking on the
        // runtime is allowed.
        self.runtime
            .block_on(self.node.write(records.to_vec()))
            .map(|r| Committed {
                applied: r.applied,
                ignored: r.ignored,
            })
            .map_err(|e| MetadataError::Quorum(e.to_string()))
    }

    fn image(&self) -> Option<MetadataImage> {
        Some(self.node.applied().image)
    }
}
