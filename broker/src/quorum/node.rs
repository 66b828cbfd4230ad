//! A running quorum member: the Raft node over the file log store and the metadata state
//! machine, the RPC server on the controller listener, and the static voter set from
//! `controller.quorum.voters`. Every voter initializes the same membership on first start
//! (openraft accepts that), so a fresh cluster elects a leader without an operator step. A
//! learner (a broker-only node) initializes nothing: it [`QuorumNode::join`]s through the voters.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::Raft;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::log_store::{LogStore, LogStoreError};
use super::network::Network;
use super::rpc_server;
use super::state_machine::{AppliedState, StateMachine, StateMachineError};
use super::types::{ControllerNode, MetadataRequest, MetadataResponse, NodeId, TypeConfig};
use crate::cluster::metadata::MetadataRecord;

/// Whether a member votes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberRole {
    /// A controller: one of `controller.quorum.voters`.
    Voter,
    /// A broker-only node: replicates the log without a vote, reachable by the leader at
    /// `advertised`.
    Learner {
        /// Where the leader sends it the log (its metadata replication listener).
        advertised: ControllerNode,
    },
}

/// How a quorum member is set up.
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    /// This node's id (`node.id`).
    pub node_id: NodeId,
    /// Whether it votes.
    pub role: MemberRole,
    /// Every voter and its controller listener (`controller.quorum.voters`).
    pub voters: BTreeMap<NodeId, ControllerNode>,
    /// The Raft directory (`<metadata.log.dir>/__cluster_metadata-0/raft`).
    pub dir: PathBuf,
    /// The cluster id from meta.properties; checked on every quorum RPC.
    pub cluster_id: String,
    /// Heartbeat interval (Kafka's quorum fetch cadence is similar).
    pub heartbeat: Duration,
    /// Lower bound of the randomized election timeout (`controller.quorum.election.timeout.ms`).
    pub election_timeout: Duration,
    /// Where broker heartbeats received on the controller listener are recorded.
    pub liveness: Arc<super::liveness::Liveness>,
    /// How quorum connections are opened and accepted (TLS, SASL).
    pub transport: Arc<dyn super::transport::Transport>,
    /// When set, a peer must be allowed CLUSTER_ACTION on the cluster (as Kafka's controller
    /// checks for its quorum and broker RPCs).
    pub authorizer: Option<crate::config::AuthorizerConfig>,
}

/// Why the quorum could not start or a write failed.
#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    /// The log store could not be opened.
    #[error(transparent)]
    LogStore(#[from] LogStoreError),
    /// The state machine could not be opened.
    #[error(transparent)]
    StateMachine(#[from] StateMachineError),
    /// openraft's configuration was refused.
    #[error("invalid quorum configuration: {0}")]
    Config(String),
    /// The Raft node stopped.
    #[error("the quorum node stopped: {0}")]
    Fatal(String),
    /// This node is not the leader; write to `leader` instead (NOT_CONTROLLER).
    #[error("node {node} is not the active controller (leader: {leader:?})")]
    NotLeader {
        /// This node.
        node: NodeId,
        /// The current leader, if known.
        leader: Option<NodeId>,
    },
    /// The write could not be committed (no quorum).
    #[error("the metadata write was not committed: {0}")]
    NotCommitted(String),
}

/// A running quorum member.
pub struct QuorumNode {
    node_id: NodeId,
    /// Whether it votes (a learner joins through `configured_voters`).
    role: MemberRole,
    /// `controller.quorum.voters`: whom a learner asks to join.
    configured_voters: BTreeMap<NodeId, ControllerNode>,
    /// When members last answered this node's AppendEntries (DescribeQuorum's contact times).
    contacts: Arc<super::status::Contacts>,
    /// The cluster id sent with forwarded proposals, and the transport.
    peer: super::network::Peer,
    raft: Raft<TypeConfig>,
    applied: watch::Receiver<AppliedState>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// Resolves once the log store's writer has drained and exited, so a restart in the same
    /// process never opens the directory while the old writer still holds it.
    log_closed:
        parking_lot::Mutex<Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>>,
}

impl std::fmt::Debug for QuorumNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuorumNode")
            .field("node_id", &self.node_id)
            .field("leader", &self.leader())
            .finish_non_exhaustive()
    }
}

impl QuorumNode {
    /// Opens storage, starts Raft and serves quorum RPCs on `listener` (the controller
    /// listener, already bound).
    pub async fn start(
        cfg: QuorumConfig,
        listener: TcpListener,
    ) -> Result<QuorumNode, QuorumError> {
        let log = LogStore::open(&cfg.dir).await?;
        let log_closed = Box::pin(log.writer_exited());
        let sm = StateMachine::open(&cfg.dir).await?;
        let applied = sm.subscribe();
        let election_ms = cfg.election_timeout.as_millis() as u64;
        let raft_config = openraft::Config {
            cluster_name: cfg.cluster_id.clone(),
            heartbeat_interval: cfg.heartbeat.as_millis() as u64,
            election_timeout_min: election_ms,
            election_timeout_max: election_ms * 2,
            ..Default::default()
        }
        .validate()
        .map_err(|e| QuorumError::Config(e.to_string()))?;
        let contacts = Arc::new(super::status::Contacts::default());
        let peer = super::network::Peer {
            cluster_id: cfg.cluster_id.clone(),
            transport: Arc::clone(&cfg.transport),
        };
        let network = Network {
            peer: peer.clone(),
            node_id: cfg.node_id,
            contacts: Arc::clone(&contacts),
        };
        let raft = Raft::new(cfg.node_id, Arc::new(raft_config), network, log, sm)
            .await
            .map_err(|e| QuorumError::Fatal(e.to_string()))?;
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn(rpc_server::serve(
            listener,
            raft.clone(),
            rpc_server::Shared {
                cluster_id: Arc::from(cfg.cluster_id.as_str()),
                liveness: Arc::clone(&cfg.liveness),
                contacts: Arc::clone(&contacts),
                transport: Arc::clone(&cfg.transport),
                authorizer: cfg.authorizer.clone().map(Arc::new),
                applied: applied.clone(),
                close_log: Arc::default(),
            },
            shutdown.clone(),
        ));
        let fresh = cfg.role == MemberRole::Voter
            && raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .voter_ids()
                .next()
                .is_none();
        if fresh {
            // Every voter proposes the same static membership; whichever wins the first
            // election commits it, the others' identical proposals are no-ops.
            if let Err(e) = raft.initialize(cfg.voters.clone()).await {
                tracing::debug!(error = %e, "quorum membership already initialized");
            }
        }
        Ok(QuorumNode {
            node_id: cfg.node_id,
            role: cfg.role,
            configured_voters: cfg.voters,
            contacts,
            peer,
            raft,
            applied,
            shutdown,
            tracker,
            log_closed: parking_lot::Mutex::new(Some(log_closed)),
        })
    }

    /// Whether this member is the quorum leader (the active controller).
    pub fn is_leader(&self) -> bool {
        self.leader() == Some(self.node_id)
    }

    /// The voters and their controller listeners (learners are not among them).
    pub fn voters(&self) -> Vec<(NodeId, ControllerNode)> {
        let m = self.raft.metrics().borrow().membership_config.clone();
        let membership = m.membership();
        membership
            .voter_ids()
            .filter_map(|id| membership.get_node(&id).map(|n| (id, n.clone())))
            .collect()
    }

    /// The learners (broker-only nodes) this member's membership names, with their addresses.
    pub fn learners(&self) -> Vec<(NodeId, ControllerNode)> {
        let m = self.raft.metrics().borrow().membership_config.clone();
        let membership = m.membership();
        membership
            .learner_ids()
            .filter_map(|id| membership.get_node(&id).map(|n| (id, n.clone())))
            .collect()
    }

    /// Whether this member votes.
    pub fn is_voter(&self) -> bool {
        self.role == MemberRole::Voter
    }

    /// A learner's one round of asking the voters to add it (at its advertised address) to the
    /// membership; see [`super::learner`]. A voter has nothing to do.
    pub async fn join(&self) -> Result<(), super::learner::JoinError> {
        let MemberRole::Learner { advertised } = &self.role else {
            return Ok(());
        };
        super::learner::join(
            &self.peer,
            self.node_id,
            advertised,
            &self.configured_voters,
        )
        .await
    }

    /// Removes learner `id` (a broker-only node gone for good) from the membership, here when
    /// this member leads, else through the leader. Returns whether it was a learner; a voter
    /// is refused ([`super::learner::LearnerRefusal::VoterStays`]).
    pub async fn remove_learner(&self, id: NodeId) -> Result<bool, super::learner::LearnerRefusal> {
        use super::learner::{remove, remove_at, LearnerRefusal};
        let mut asked = remove(&self.raft, id).await;
        if matches!(asked, Err(LearnerRefusal::NotLeader { leader: None })) {
            // Mid-election: nothing was changed; ask again once there is a leader.
            self.wait_for_leader(Duration::from_secs(10))
                .await
                .map_err(|e| LearnerRefusal::Failed(e.to_string()))?;
            asked = remove(&self.raft, id).await;
        }
        match asked {
            Err(LearnerRefusal::NotLeader {
                leader: Some(leader),
            }) if leader.0 != self.node_id => remove_at(&self.peer, self.node_id, id, leader).await,
            other => other,
        }
    }

    /// One attempt at becoming ready to serve: a learner asks to join, then the member waits up
    /// to `wait` for a leader and catches up with everything committed. A learner refused for
    /// good (its id is a voter's) gets [`QuorumError::Config`]; anything else is worth another
    /// attempt.
    pub async fn settle(&self, wait: Duration) -> Result<(), QuorumError> {
        self.join().await.map_err(|e| match e {
            super::learner::JoinError::Refused(r) => QuorumError::Config(r.to_string()),
            other => QuorumError::NotCommitted(other.to_string()),
        })?;
        self.wait_for_leader(wait).await?;
        self.catch_up().await
    }

    /// The quorum's status from the leader's view: this member's own when it leads, else
    /// asked of the leader (falling back to this member's partial view when it cannot be
    /// reached).
    pub async fn status(&self) -> super::status::QuorumStatus {
        let mine = super::status::local(&self.raft, &self.contacts);
        let Some(leader) = mine.leader.filter(|l| *l != self.node_id) else {
            return mine;
        };
        let Some(node) = mine
            .voters
            .iter()
            .find(|v| v.id == leader)
            .map(|v| v.node.clone())
        else {
            return mine;
        };
        let asked = super::network::status(
            &node,
            &self.peer,
            self.node_id,
            super::status::FORWARD_TIMEOUT,
        )
        .await;
        match asked {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(leader, error = %e, "quorum status from the leader unavailable");
                mine
            }
        }
    }

    /// The cluster id every quorum RPC carries.
    pub fn cluster_id(&self) -> &str {
        &self.peer.cluster_id
    }

    /// How this member reaches the others (cluster id and transport).
    pub fn peer(&self) -> &super::network::Peer {
        &self.peer
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The current leader (active controller), if one is known.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// A copy of the applied metadata state.
    pub fn applied(&self) -> AppliedState {
        self.applied.borrow().clone()
    }

    /// The applied metadata state, borrowed (hold it briefly: appliers wait for it).
    pub fn applied_ref(&self) -> watch::Ref<'_, AppliedState> {
        self.applied.borrow()
    }

    /// A receiver notified whenever the applied state changes.
    pub fn subscribe(&self) -> watch::Receiver<AppliedState> {
        self.applied.clone()
    }

    /// The underlying Raft handle (metrics, DescribeQuorum).
    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    /// Waits until the quorum has a leader.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<(), QuorumError> {
        self.raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "a quorum leader")
            .await
            .map(|_| ())
            .map_err(|e| QuorumError::NotCommitted(format!("no quorum leader: {e}")))
    }

    /// Waits until this member has applied everything the quorum has committed (a read
    /// barrier through the leader).
    pub async fn catch_up(&self) -> Result<(), QuorumError> {
        if !self.is_leader() {
            // A follower cannot run openraft's read barrier; an empty change forwarded to the
            // leader is one: once applied here, so is everything committed before it.
            return self.write(Vec::new()).await.map(|_| ());
        }
        match self.raft.ensure_linearizable().await {
            Ok(_) => Ok(()),
            Err(e) => Err(QuorumError::NotCommitted(format!("catching up: {e}"))),
        }
    }

    /// Commits records through the quorum. On a follower the change is forwarded to the
    /// leader, and this returns once this member has applied it too.
    pub async fn write(
        &self,
        records: Vec<MetadataRecord>,
    ) -> Result<MetadataResponse, QuorumError> {
        let request = MetadataRequest { records };
        let wait = Duration::from_secs(30);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let (leader, node) = match self.raft.client_write(request.clone()).await {
                Ok(r) => return Ok(r.data),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                    (f.leader_id, f.leader_node)
                }
                Err(RaftError::APIError(e)) => {
                    return Err(QuorumError::NotCommitted(e.to_string()))
                }
                Err(RaftError::Fatal(e)) => return Err(QuorumError::Fatal(e.to_string())),
            };
            let (Some(leader), Some(node)) = (leader, node) else {
                // Mid-election: nothing was appended, so waiting for the winner and asking
                // again cannot apply the change twice.
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() || self.wait_for_leader(left).await.is_err() {
                    return Err(QuorumError::NotLeader {
                        node: self.node_id,
                        leader,
                    });
                }
                continue;
            };
            let proposed =
                super::network::propose(&node, &self.peer, self.node_id, request.clone(), wait)
                    .await;
            let (log_id, data) = match proposed {
                Ok(done) => done,
                // Nothing reached the leader's log (it is gone or no longer leads): wait for
                // this member to see another leader and send it there.
                Err(super::network::CallError::NotDelivered(e))
                    if tokio::time::Instant::now() < deadline =>
                {
                    tracing::debug!(leader, error = %e, "proposal not delivered; retrying");
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    let _ = self
                        .raft
                        .wait(Some(left.min(Duration::from_secs(2))))
                        .metrics(|m| m.current_leader != Some(leader), "another leader")
                        .await;
                    continue;
                }
                Err(e) => {
                    return Err(QuorumError::NotCommitted(format!(
                        "forwarded to node {leader}: {e}"
                    )))
                }
            };
            self.raft
                .wait(Some(wait))
                .applied_index_at_least(Some(log_id.index), "the forwarded change")
                .await
                .map_err(|e| QuorumError::NotCommitted(e.to_string()))?;
            return Ok(data);
        }
    }

    /// Stops the RPC server and the Raft node.
    pub async fn shutdown(self) {
        // A stopping leader hands over: one follower starts an election as soon as this
        // member has stopped, rather than every follower waiting out its election timeout.
        let successor = self
            .is_leader()
            .then(|| {
                self.voters()
                    .into_iter()
                    .find(|(id, _)| *id != self.node_id)
            })
            .flatten();
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "quorum node did not shut down cleanly");
        }
        drop(self.raft);
        let closed = self.log_closed.lock().take();
        if let Some(closed) = closed {
            closed.await;
        }
        if let Some((id, node)) = successor {
            hand_over(id, &node, &self.peer, self.node_id).await;
        }
    }
}

/// Asks follower `id` to start an election now that this member (`from`) has stopped.
async fn hand_over(id: NodeId, node: &ControllerNode, peer: &super::network::Peer, from: NodeId) {
    match super::network::elect(node, peer, from).await {
        Ok(()) => tracing::info!(successor = id, "asked a follower to take over the quorum"),
        Err(e) => tracing::debug!(successor = id, error = %e, "no hand-over"),
    }
}
