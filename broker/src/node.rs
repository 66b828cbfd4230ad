//! A running node: opens storage, starts its quorum member, and then what its `process.roles`
//! ask for. A broker (broker-only or combined) binds the client listeners, registers, heartbeats
//! and runs partitions, replication, groups, retention and flushing; a controller (controller-only
//! or combined) runs the active controller's duties when it leads the quorum. Every node serves
//! the metrics endpoint and drains on shutdown.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster::{error_chain, Cluster};
use crate::config::Config;
use crate::group::GroupCoordinator;
use crate::metrics::Metrics;
use crate::quorum::liveness::Liveness;
use crate::quorum::node::QuorumNode;
use crate::server::{self, Broker};

/// How long a controlled shutdown waits for its leaderships to move.
const CONTROLLED_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Storage not formatted or mismatched.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    /// Could not open topics or the metadata log.
    #[error("cannot open the cluster state: {0}")]
    Cluster(String),
    /// Could not bind a listener.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An SSL listener's key or trust material could not be loaded.
    #[error(transparent)]
    Tls(#[from] server::tls::TlsError),
    /// The security of the connections between nodes could not be set up (a store of the
    /// controller or inter-broker listener).
    #[error("inter-node security: {0}")]
    Peer(String),
    /// A SASL listener's key material could not be loaded (an OAUTHBEARER JWKS).
    #[error("SASL: {0}")]
    Sasl(String),
    /// Metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// A started node: its bound addresses and a handle to stop it.
#[derive(Debug)]
pub struct Node {
    /// Addresses the client listeners are bound to (none on a controller-only node).
    pub addrs: Vec<SocketAddr>,
    /// Address of the metrics endpoint, if any.
    pub metrics_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// The broker's topics and partitions; `None` on a controller-only node.
    cluster: Option<Arc<Cluster>>,
    /// The controller quorum member holding the metadata (a learner on a broker-only node).
    quorum: Arc<QuorumNode>,
    /// Broker heartbeats this node has received.
    liveness: Arc<Liveness>,
}

async fn bind_all(host: &str, port: u16) -> Result<Vec<TcpListener>, NodeError> {
    // "localhost" binds both loopbacks so IPv4 and IPv6 clients reach it; "" binds everything.
    let hosts: Vec<String> = match host {
        "localhost" => vec!["127.0.0.1".into(), "::1".into()],
        "" | "0.0.0.0" => vec!["0.0.0.0".into()],
        h => vec![h.to_string()],
    };
    let mut out = Vec::new();
    let mut chosen_port = port;
    for (i, h) in hosts.iter().enumerate() {
        let addr = if h.contains(':') {
            format!("[{h}]:{chosen_port}")
        } else {
            format!("{h}:{chosen_port}")
        };
        match TcpListener::bind(&addr).await {
            Ok(l) => {
                if let Ok(a) = l.local_addr() {
                    chosen_port = a.port();
                }
                out.push(l);
            }
            // A second loopback family missing (no IPv6) is not fatal.
            Err(e) if i > 0 => tracing::warn!(%addr, error = %e, "skipping listener address"),
            Err(source) => return Err(NodeError::Bind { addr, source }),
        }
    }
    Ok(out)
}

/// The broker half of a node, once started.
struct BrokerHalf {
    cluster: Arc<Cluster>,
    addrs: Vec<SocketAddr>,
    /// Fills the broker's gauges before each scrape.
    refresh: crate::metrics::Refresh,
}

/// What `process.roles` makes this node, for the start-up log.
fn roles_name(config: &Config) -> &'static str {
    match (config.is_broker(), config.is_controller()) {
        (true, true) => "combined broker and controller",
        (true, false) => "broker-only",
        _ => "controller-only",
    }
}

impl Node {
    /// Starts a node from a validated config, after checking `meta.properties`.
    pub async fn start(config: Config) -> Result<Node, NodeError> {
        let config = Arc::new(config);
        let cluster_id = check_storage(&config)?;
        let bootstrap = crate::storage::read_bootstrap(&config.metadata_log_dir)
            .map_err(|e| NodeError::Cluster(error_chain(&e)))?;
        let metrics = Arc::new(Metrics::with_limits(config.metrics_limits)?);
        let liveness = Arc::new(Liveness::default());
        let (transport, quorum_tls) =
            crate::peer::quorum_transport(&config, Arc::clone(&metrics)).await?;
        let quorum = crate::quorum::startup::start_for(
            &config,
            &cluster_id,
            Arc::clone(&liveness),
            transport,
        )
        .await
        .map_err(|e| NodeError::Cluster(error_chain(&e)))?;
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        if let Some(acceptor) = quorum_tls.filter(|_| config.ssl_reload_interval_ms > 0) {
            tracker.spawn(server::tls_reload::watch(
                vec![acceptor],
                Duration::from_millis(config.ssl_reload_interval_ms),
                Arc::clone(&metrics),
                shutdown.clone(),
            ));
        }
        let broker = if config.is_broker() {
            apply_bootstrap(&quorum, &bootstrap).await?;
            let half = start_broker(
                &config,
                &cluster_id,
                &quorum,
                &liveness,
                &metrics,
                &shutdown,
                &tracker,
            )
            .await?;
            Some(half)
        } else {
            log_controller_only(&config);
            None
        };
        let metrics_addr = match &config.metrics_listener {
            Some(addr) => {
                tracker.spawn(crate::metrics::quorum::watch_raft(
                    quorum.raft().metrics(),
                    Arc::clone(&metrics),
                    shutdown.clone(),
                ));
                let refresh = node_refresh(&config, &quorum, broker.as_ref());
                serve_metrics(addr, &metrics, refresh, &shutdown, &tracker).await?
            }
            None => None,
        };
        // The controller's duties, on whichever voter leads the quorum.
        if config.is_controller() {
            tracker.spawn(crate::controller::run(
                Arc::clone(&quorum),
                Arc::clone(&liveness),
                config.replication.clone(),
                bootstrap,
                shutdown.clone(),
            ));
        }
        let (addrs, cluster) = match broker {
            Some(b) => (b.addrs, Some(b.cluster)),
            None => (Vec::new(), None),
        };
        metrics.ready.store(true, Ordering::Release);
        tracing::info!(?addrs, ?metrics_addr, "gregor is serving");
        Ok(Node {
            addrs,
            metrics_addr,
            shutdown,
            tracker,
            cluster,
            quorum,
            liveness,
        })
    }

    /// Hands this broker's leaderships to other replicas (controlled shutdown, when enabled
    /// and there are other brokers), stops accepting, lets in-flight requests finish, fsyncs
    /// every log and checkpoints the high watermarks.
    pub async fn stop(self) {
        if let Some(cluster) = &self.cluster {
            self.hand_over_leaderships(cluster).await;
        }
        self.shutdown.cancel();
        self.tracker.close();
        let finished = tokio::time::timeout(Duration::from_secs(10), self.tracker.wait())
            .await
            .is_ok();
        if !finished {
            tracing::warn!("some connections did not finish within 10s");
        }
        if let Some(c) = self.cluster {
            let c_keep = Arc::clone(&c);
            // Only with every task done can nothing write a log after the flush.
            let _ = tokio::task::spawn_blocking(move || {
                if finished {
                    c.close_cleanly();
                } else {
                    c.flush_and_checkpoint();
                }
            })
            .await;
            // The cluster held the last other handle to the quorum member (its metadata store).
            drop(c_keep);
        }
        stop_quorum(self.quorum).await;
        tracing::info!("gregor stopped");
    }

    /// Controlled shutdown, when enabled and another broker can take this one's leaderships.
    async fn hand_over_leaderships(&self, cluster: &Cluster) {
        // Only an unfenced broker can take leaderships over; with none left (the last node
        // of a cluster stopping, usually without a quorum either) there is nothing to wait
        // for.
        let me = cluster.config.node_id;
        let others = cluster
            .brokers()
            .iter()
            .any(|(id, b)| *id != me && !b.fenced);
        if cluster.config.replication.controlled_shutdown_enable && others {
            let done = crate::controller::controlled_shutdown(
                &self.quorum,
                &self.liveness,
                me,
                CONTROLLED_SHUTDOWN_TIMEOUT,
            )
            .await;
            if done {
                tracing::info!("controlled shutdown: leaderships handed over");
            } else {
                tracing::warn!("controlled shutdown did not finish in time; stopping anyway");
            }
        }
    }
}

/// Checks `meta.properties` in every log directory and the metadata directory; returns the
/// cluster id.
fn check_storage(config: &Config) -> Result<String, NodeError> {
    let mut dirs = config.log_dirs.clone();
    if !dirs.contains(&config.metadata_log_dir) {
        dirs.push(config.metadata_log_dir.clone());
    }
    let cluster_id = crate::storage::check(&dirs, config.node_id)?;
    tracing::info!(%cluster_id, node_id = config.node_id, roles = roles_name(config), "starting");
    Ok(cluster_id)
}

/// Says what a controller-only node does not run.
fn log_controller_only(config: &Config) {
    tracing::info!(
        node_id = config.node_id,
        "controller-only node: a quorum voter and, while it leads, the active controller; \
         no client listener, partitions or groups"
    );
}

/// Shuts the quorum member down; if a handle to it outlived the node, stops its Raft instead.
async fn stop_quorum(quorum: Arc<QuorumNode>) {
    match Arc::try_unwrap(quorum) {
        Ok(q) => q.shutdown().await,
        Err(q) => {
            tracing::warn!("the quorum member is still in use at shutdown");
            q.raft().shutdown().await.ok();
        }
    }
}

/// Binds `metrics.listener` and serves the Prometheus endpoint on it; returns the bound
/// address.
async fn serve_metrics(
    addr: &str,
    metrics: &Arc<Metrics>,
    refresh: crate::metrics::Refresh,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<Option<SocketAddr>, NodeError> {
    let l = TcpListener::bind(addr)
        .await
        .map_err(|source| NodeError::Bind {
            addr: addr.to_string(),
            source,
        })?;
    let a = l.local_addr().ok();
    tracker.spawn(crate::metrics::serve(
        l,
        Arc::clone(metrics),
        refresh,
        shutdown.clone(),
    ));
    Ok(a)
}

/// Commits this node's bootstrap credentials (`storage format --add-scram`) unless the
/// cluster was bootstrapped already, before the broker serves: its SCRAM clients can log in
/// from its first request. The record applies once in a cluster's life; the active controller
/// writes the same one (`controller::run`), and whichever commits first wins.
async fn apply_bootstrap(
    quorum: &QuorumNode,
    scram: &[crate::sasl::bootstrap::BootstrapCredential],
) -> Result<(), NodeError> {
    if scram.is_empty() || quorum.applied().image.bootstrapped {
        return Ok(());
    }
    let record = crate::cluster::metadata::MetadataRecord::Bootstrap {
        scram: scram.to_vec(),
    };
    quorum.write(vec![record]).await.map_err(|e| {
        NodeError::Cluster(format!(
            "committing the bootstrap credentials: {}",
            error_chain(&e)
        ))
    })?;
    tracing::info!(credentials = scram.len(), "bootstrap credentials committed");
    Ok(())
}

/// Starts the broker half: opens the partitions over the quorum's image, binds the client
/// listeners, registers this broker, and spawns the server, the metadata follower, the
/// heartbeats to the voters, the ISR checks, group ticks, retention, timed flushes and
/// high-watermark checkpoints.
async fn start_broker(
    config: &Arc<Config>,
    cluster_id: &str,
    quorum: &Arc<QuorumNode>,
    liveness: &Arc<Liveness>,
    metrics: &Arc<Metrics>,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<BrokerHalf, NodeError> {
    // The TLS material first: a bad key store fails the start before anything is opened.
    let c = Arc::clone(config);
    let tls = tokio::task::spawn_blocking(move || server::tls::acceptors(&c))
        .await
        .map_err(|e| NodeError::Cluster(e.to_string()))??;
    crate::peer::inter_broker_security(config)
        .await
        .map_err(NodeError::Peer)?;
    let c = Arc::clone(config);
    let sasl = tokio::task::spawn_blocking(move || load_sasl(&c))
        .await
        .map_err(|e| NodeError::Cluster(e.to_string()))??;
    for (name, listener) in &sasl {
        use crate::sasl::jwks_endpoint::{is_remote, refresh};
        if let Some(crate::sasl::oauthbearer::Validation::Jwks {
            settings,
            loaded: Some(keys),
        }) = &listener.oauthbearer
        {
            if is_remote(&settings.url) {
                tracker.spawn(refresh(
                    Arc::clone(keys),
                    settings.clone(),
                    name.clone(),
                    shutdown.clone(),
                ));
            }
        }
    }
    let cluster = open_cluster(config, cluster_id, quorum).await?;
    cluster.log_timings.register(metrics)?;
    // The listener TLS settings this broker was given through AlterConfigs (kept in the
    // metadata log) replace the static ones; material that no longer loads is logged and the
    // static material serves.
    let (effective, acceptors) = (cluster.effective_config(), tls.clone());
    let _ = tokio::task::spawn_blocking(move || {
        for (name, acceptor) in &acceptors {
            let Some(ssl) = effective.ssl_listeners.get(name) else {
                continue;
            };
            if let Err(reason) = acceptor.reconfigure(ssl) {
                tracing::warn!(listener = %name, "dynamic TLS settings not applied: {reason}");
            }
        }
    })
    .await;
    let replicas = crate::replication::manager::ReplicaManager::new(
        Arc::clone(&cluster),
        config.replication.clone(),
        shutdown.clone(),
        tracker.clone(),
    );
    replicas.sync();
    let groups = Arc::new(GroupCoordinator::new(Arc::clone(&cluster)));
    let g = Arc::clone(&groups);
    let loaded = tokio::task::spawn_blocking(move || g.load())
        .await
        .map_err(|e| NodeError::Cluster(e.to_string()))?
        .map_err(|e| NodeError::Cluster(error_chain(&e)))?;
    tracing::info!(%cluster_id, node_id = config.node_id, topics = cluster.topics().len(), offsets = loaded, "storage opened");

    let (listeners, bound) = bind_client_listeners(config, &tls, &sasl).await?;
    if config.ssl_reload_interval_ms > 0 && !tls.is_empty() {
        tracker.spawn(server::tls_reload::watch(
            tls.values().cloned().collect(),
            Duration::from_millis(config.ssl_reload_interval_ms),
            Arc::clone(metrics),
            shutdown.clone(),
        ));
    }
    let addrs: Vec<SocketAddr> = listeners
        .iter()
        .filter_map(|l| l.socket.local_addr().ok())
        .collect();
    let endpoints = crate::cluster::advertised_endpoints(config, &bound);
    let c = Arc::clone(&cluster);
    tokio::task::spawn_blocking(move || c.register_broker(endpoints))
        .await
        .map_err(|e| NodeError::Cluster(e.to_string()))?
        .map_err(|e| NodeError::Cluster(error_chain(&e)))?;
    let broker = Arc::new(
        Broker::new(
            Arc::clone(&cluster),
            Arc::clone(&groups),
            Arc::clone(metrics),
            Some(Arc::clone(quorum)),
        )
        .with_tls(tls.clone()),
    );
    load_transactions(&broker.txns).await;
    let refresh = gauge_refresh(&cluster, &groups, metrics);

    tracker.spawn(server::run(
        Arc::clone(&broker),
        listeners,
        shutdown.clone(),
    ));
    let coordinators = Coordinators {
        groups: Arc::clone(&groups),
        txns: Arc::clone(&broker.txns),
    };
    spawn_metadata_follower(
        &cluster,
        quorum,
        &replicas,
        &coordinators,
        shutdown,
        tracker,
    );
    // This broker's heartbeats to every voter.
    tracker.spawn(crate::controller::heartbeat(
        Arc::clone(quorum),
        Arc::clone(liveness),
        config.node_id,
        Duration::from_millis(config.replication.broker_heartbeat_interval_ms),
        shutdown.clone(),
    ));
    spawn_isr_checks(config, &replicas, &cluster, shutdown, tracker);
    spawn_group_ticks(&groups, shutdown, tracker);
    spawn_transaction_timeouts(config, &broker.txns, shutdown, tracker);
    spawn_log_maintenance(config, &cluster, shutdown, tracker);
    Ok(BrokerHalf {
        cluster,
        addrs,
        refresh,
    })
}

/// Opens the partitions this broker holds over the quorum's applied image (blocking).
async fn open_cluster(
    config: &Arc<Config>,
    cluster_id: &str,
    quorum: &Arc<QuorumNode>,
) -> Result<Arc<Cluster>, NodeError> {
    let image = quorum.applied().image;
    let store = crate::quorum::startup::QuorumStore::new(
        Arc::clone(quorum),
        tokio::runtime::Handle::current(),
    );
    let c = Arc::clone(config);
    let cid = cluster_id.to_string();
    let cluster =
        tokio::task::spawn_blocking(move || Cluster::open_with(c, cid, Box::new(store), image))
            .await
            .map_err(|e| NodeError::Cluster(e.to_string()))?
            .map_err(|e| NodeError::Cluster(error_chain(&e)))?;
    Ok(Arc::new(cluster))
}

/// The SASL settings of every SASL listener, with the key material they name loaded (an
/// OAUTHBEARER JWKS, from its file or endpoint): a bad one fails the start naming the
/// listener (blocking; called on the runtime's blocking pool).
fn load_sasl(
    config: &Config,
) -> Result<std::collections::BTreeMap<String, Arc<crate::config::sasl::SaslConfig>>, NodeError> {
    let mut out = std::collections::BTreeMap::new();
    for (name, sasl) in &config.sasl_listeners {
        let mut sasl = sasl.clone();
        if let Some(validation) = &mut sasl.oauthbearer {
            validation
                .load()
                .map_err(|e| NodeError::Sasl(format!("listener {name}: OAUTHBEARER JWKS: {e}")))?;
        }
        out.insert(name.clone(), Arc::new(sasl));
    }
    Ok(out)
}

/// A client listener's sockets, each with its listener's name (and TLS acceptor), and the
/// (name, port) pairs bound.
type BoundListeners = (Vec<server::BoundListener>, Vec<(String, u16)>);

/// Binds every client listener on all its addresses; an SSL listener's sockets get its TLS
/// acceptor from `tls`.
async fn bind_client_listeners(
    config: &Config,
    tls: &std::collections::BTreeMap<String, Arc<server::tls_reload::ReloadingAcceptor>>,
    sasl: &std::collections::BTreeMap<String, Arc<crate::config::sasl::SaslConfig>>,
) -> Result<BoundListeners, NodeError> {
    // Each socket keeps its listener's name: a request is answered with the addresses of the
    // listener it arrived on.
    let mut listeners: Vec<server::BoundListener> = Vec::new();
    let mut bound: Vec<(String, u16)> = Vec::new();
    for l in config.client_listeners() {
        let name: Arc<str> = Arc::from(l.name.as_str());
        for socket in bind_all(&l.host, l.port).await? {
            if let Ok(a) = socket.local_addr() {
                bound.push((l.name.clone(), a.port()));
            }
            listeners.push(server::BoundListener {
                name: Arc::clone(&name),
                socket,
                tls: tls.get(&l.name).cloned(),
                sasl: sasl.get(&l.name).cloned(),
                principal_rules: config
                    .ssl_listeners
                    .get(&l.name)
                    .filter(|_| !config.sasl_listeners.contains_key(&l.name))
                    .map(|s| Arc::from(s.principal_rules.clone())),
            });
        }
    }
    Ok((listeners, bound))
}

/// The node's scrape: the broker's replicas and groups (broker role) and its quorum member,
/// with the controller gauges on controllers.
fn node_refresh(
    config: &Config,
    quorum: &Arc<QuorumNode>,
    broker: Option<&BrokerHalf>,
) -> crate::metrics::Refresh {
    let quorum = Arc::clone(quorum);
    let controller = config.is_controller();
    let broker = broker.map(|b| Arc::clone(&b.refresh));
    Arc::new(move |out| {
        if let Some(b) = &broker {
            b(out);
        }
        crate::metrics::quorum::refresh(&quorum, controller, out);
    })
}

/// The broker's scrape: its replicas' health and logs, its topics (within the cap) and the
/// groups it coordinates.
fn gauge_refresh(
    cluster: &Arc<Cluster>,
    groups: &Arc<GroupCoordinator>,
    metrics: &Arc<Metrics>,
) -> crate::metrics::Refresh {
    let (cl, gr, m) = (Arc::clone(cluster), Arc::clone(groups), Arc::clone(metrics));
    Arc::new(move |out| {
        crate::metrics::replicas::refresh(&cl, out);
        label_local_topics(&cl, &m);
        m.topics.scrape(out);
        crate::metrics::topics::scrape_partitions(&cl, &m.topics, m.limits.partitions, out);
        let view = gr.metrics_view(m.limits.groups, m.limits.partitions);
        crate::metrics::groups::scrape(&view, &cl, &m.limits, out);
    })
}

/// Frees the topic series of deleted topics and gives topics with a replica here a series of
/// their own while the cap allows, in name order.
fn label_local_topics(cluster: &Cluster, metrics: &Metrics) {
    metrics.topics.retain(|t| cluster.topic(t).is_some());
    let me = cluster.config.node_id;
    for t in cluster.topics() {
        if metrics.topics.is_full() {
            break;
        }
        let local = t
            .partitions
            .read()
            .iter()
            .any(|p| p.state().replicas.contains(&me));
        if local {
            metrics.topics.of(&t.name);
        }
    }
}

/// The coordinators that follow the leadership of their internal topics.
struct Coordinators {
    /// Of consumer groups (`__consumer_offsets`).
    groups: Arc<GroupCoordinator>,
    /// Of transactional ids (`__transaction_state`).
    txns: Arc<crate::transaction::TransactionCoordinator>,
}

/// Follows the quorum's applied metadata into the local partitions, the fetchers and the
/// loaded groups and transactional ids.
fn spawn_metadata_follower(
    cluster: &Arc<Cluster>,
    quorum: &Arc<QuorumNode>,
    replicas: &Arc<crate::replication::manager::ReplicaManager>,
    coordinators: &Coordinators,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) {
    // Metadata committed elsewhere (or forwarded) reaches the local state here; then the
    // fetchers follow the new leaders and the coordinators their internal partitions.
    let (c, mut applied, s) = (Arc::clone(cluster), quorum.subscribe(), shutdown.clone());
    let (r, g) = (Arc::clone(replicas), Arc::clone(&coordinators.groups));
    let t = Arc::clone(&coordinators.txns);
    tracker.spawn(async move {
        loop {
            tokio::select! {
                _ = s.cancelled() => break,
                changed = applied.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    applied.borrow_and_update();
                    let (c, latest, g) = (Arc::clone(&c), applied.clone(), Arc::clone(&g));
                    let t = Arc::clone(&t);
                    let work = move || {
                        let changed = c.reconcile_latest(|| latest.borrow().image.clone())?;
                        if let Err(e) = g.load() {
                            tracing::warn!(error = %error_chain(&e), "loading consumer groups failed");
                        }
                        if let Err(e) = t.load() {
                            tracing::warn!(error = %error_chain(&e), "loading transaction state failed");
                        }
                        Ok::<_, crate::cluster::AdminError>(changed)
                    };
                    match tokio::task::spawn_blocking(work).await {
                        Ok(Ok(_)) => r.sync(),
                        Ok(Err(e)) => tracing::warn!(error = %error_chain(&e), "applying committed metadata failed"),
                        Err(e) => tracing::warn!(error = %e, "metadata reconcile task failed"),
                    }
                }
            }
        }
    });
}

/// The leader side of the ISR: shrinks it for lagging followers and expands it for caught-up
/// ones, several times per `replica.lag.time.max.ms`.
fn spawn_isr_checks(
    config: &Config,
    replicas: &Arc<crate::replication::manager::ReplicaManager>,
    cluster: &Arc<Cluster>,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) {
    let (r, c, s) = (Arc::clone(replicas), Arc::clone(cluster), shutdown.clone());
    let every = Duration::from_millis(
        (config.replication.replica_lag_time_max_ms as u64 / 2).clamp(100, 500),
    );
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = s.cancelled() => break,
                _ = tick.tick() => {}
            }
            let (r, c) = (Arc::clone(&r), Arc::clone(&c));
            let work = move || {
                let records = r.isr_changes();
                if !records.is_empty() {
                    if let Err(e) = c.propose(&records) {
                        tracing::warn!(error = %error_chain(&e), "ISR change not committed");
                    }
                }
            };
            let _ = tokio::task::spawn_blocking(work).await;
        }
    });
}

/// Group sessions and rebalance deadlines.
fn spawn_group_ticks(
    groups: &Arc<GroupCoordinator>,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) {
    let (g, s) = (Arc::clone(groups), shutdown.clone());
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = s.cancelled() => break,
                _ = tick.tick() => g.tick(),
            }
        }
    });
}

/// Loads the transactional ids of the `__transaction_state` partitions this node leads.
async fn load_transactions(txns: &Arc<crate::transaction::TransactionCoordinator>) {
    let t = Arc::clone(txns);
    match tokio::task::spawn_blocking(move || t.load()).await {
        Ok(Ok(loaded)) => tracing::debug!(loaded, "transaction state loaded"),
        Ok(Err(e)) => tracing::warn!(error = %error_chain(&e), "loading transaction state failed"),
        Err(e) => tracing::warn!(error = %e, "loading transaction state failed"),
    }
}

/// The transaction coordinator's aborts of transactions open past their timeout.
fn spawn_transaction_timeouts(
    config: &Config,
    txns: &Arc<crate::transaction::TransactionCoordinator>,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) {
    let (t, s) = (Arc::clone(txns), shutdown.clone());
    let every = Duration::from_millis(config.transaction_abort_check_interval_ms);
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = s.cancelled() => break,
                _ = tick.tick() => t.abort_timed_out().await,
            }
        }
    });
}

/// Retention and compaction, timed flushes and high-watermark checkpoints.
fn spawn_log_maintenance(
    config: &Config,
    cluster: &Arc<Cluster>,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) {
    // Retention and compaction.
    let c = Arc::clone(cluster);
    periodically(
        tracker,
        shutdown,
        Duration::from_millis(config.log_retention_check_interval_ms),
        move || c.maintain_logs(),
    );
    // Time-based fsync policy (log.flush.interval.ms).
    if let Some(ms) = config.log_flush_interval_ms {
        let c = Arc::clone(cluster);
        periodically(tracker, shutdown, Duration::from_millis(ms), move || {
            c.flush_all()
        });
    }
    // High-watermark checkpoints (replica.high.watermark.checkpoint.interval.ms).
    let c = Arc::clone(cluster);
    periodically(
        tracker,
        shutdown,
        Duration::from_millis(
            config
                .replication
                .replica_high_watermark_checkpoint_interval_ms,
        ),
        move || {
            if let Err(e) = c.checkpoint_high_watermarks() {
                tracing::warn!(error = %error_chain(&e), "high-watermark checkpoint failed");
            }
        },
    );
}

/// Runs blocking `work` every `period`, first one period from now, until `shutdown`; a run
/// still going when the period ends delays the next instead of overlapping it.
fn periodically(
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
    period: Duration,
    work: impl Fn() + Send + Sync + 'static,
) {
    let (work, shutdown) = (Arc::new(work), shutdown.clone());
    tracker.spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    let work = Arc::clone(&work);
                    let _ = tokio::task::spawn_blocking(move || work()).await;
                }
            }
        }
    });
}
