//! The storage under a real openraft core: voters in one process, joined by an in-memory
//! network, commit metadata records, restart from their directories, and bring a cut-off voter
//! back by snapshot. The network here is a test double; the real one runs over the controller
//! listener.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{Config, Raft, ServerState, SnapshotPolicy};
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::cluster::metadata::MetadataRecord;
use crate::quorum::log_store::LogStore;
use crate::quorum::state_machine::{AppliedState, StateMachine};
use crate::quorum::types::{ControllerNode, MetadataRequest, MetadataResponse, NodeId, TypeConfig};

const WAIT: Duration = Duration::from_secs(10);

/// The voters of one test and which of them are cut off. A `parking_lot` mutex: held only to
/// look a voter up, never across a call into it.
#[derive(Default)]
struct Registry {
    voters: BTreeMap<NodeId, Raft<TypeConfig>>,
    cut: BTreeSet<NodeId>,
}

/// The network factory of voter `from`.
#[derive(Clone)]
struct Router {
    from: NodeId,
    registry: Arc<Mutex<Registry>>,
}

/// A link from one voter to another.
struct Link {
    from: NodeId,
    target: NodeId,
    registry: Arc<Mutex<Registry>>,
}

impl Link {
    /// The target's Raft handle, unless either end is cut off or the target is down.
    fn target<E: std::error::Error>(
        &self,
    ) -> Result<Raft<TypeConfig>, Box<RPCError<NodeId, ControllerNode, E>>> {
        let registry = self.registry.lock();
        let reachable = !registry.cut.contains(&self.from) && !registry.cut.contains(&self.target);
        match registry.voters.get(&self.target) {
            Some(raft) if reachable => Ok(raft.clone()),
            _ => {
                let down =
                    std::io::Error::other(format!("{} cannot reach {}", self.from, self.target));
                Err(Box::new(RPCError::Network(NetworkError::new(&down))))
            }
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for Router {
    type Network = Link;

    async fn new_client(&mut self, target: NodeId, _node: &ControllerNode) -> Link {
        Link {
            from: self.from,
            target,
            registry: self.registry.clone(),
        }
    }
}

type Rpc<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, ControllerNode, RaftError<NodeId, E>>>;

impl RaftNetwork<TypeConfig> for Link {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Rpc<AppendEntriesResponse<NodeId>> {
        let raft = self.target().map_err(|e| *e)?;
        raft.append_entries(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Rpc<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        let raft = self.target().map_err(|e| *e)?;
        raft.install_snapshot(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Rpc<VoteResponse<NodeId>> {
        let raft = self.target().map_err(|e| *e)?;
        raft.vote(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

/// One running voter.
struct Voter {
    raft: Raft<TypeConfig>,
    applied: watch::Receiver<AppliedState>,
    writer_exited: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

fn config() -> Arc<Config> {
    let config = Config {
        heartbeat_interval: 50,
        election_timeout_min: 200,
        election_timeout_max: 400,
        // Snapshots only when a test asks, then purge everything they cover.
        snapshot_policy: SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: 0,
        purge_batch_size: 1,
        ..Default::default()
    };
    Arc::new(config.validate().expect("valid raft config"))
}

async fn start(id: NodeId, root: &Path, registry: &Arc<Mutex<Registry>>) -> Voter {
    let dir = crate::quorum::raft_dir(&root.join(format!("node-{id}")));
    let log = LogStore::open_with_segment_bytes(&dir, 512)
        .await
        .expect("open log store");
    let writer_exited = Box::pin(log.writer_exited());
    let sm = StateMachine::open(&dir).await.expect("open state machine");
    let applied = sm.subscribe();
    let router = Router {
        from: id,
        registry: registry.clone(),
    };
    let raft = Raft::new(id, config(), router, log, sm)
        .await
        .expect("start raft");
    registry.lock().voters.insert(id, raft.clone());
    Voter {
        raft,
        applied,
        writer_exited,
    }
}

async fn stop(voter: Voter, id: NodeId, registry: &Arc<Mutex<Registry>>) {
    registry.lock().voters.remove(&id);
    voter.raft.shutdown().await.expect("shutdown");
    drop(voter.raft);
    tokio::time::timeout(WAIT, voter.writer_exited)
        .await
        .expect("log writer exits after shutdown");
}

fn node(id: NodeId) -> ControllerNode {
    ControllerNode {
        host: "127.0.0.1".into(),
        port: 19090 + id as u16,
    }
}

fn topic(name: &str) -> MetadataRecord {
    MetadataRecord::Topic {
        name: name.into(),
        id: uuid::Uuid::new_v4(),
        partitions: 3,
        replication_factor: 3,
        configs: BTreeMap::new(),
    }
}

async fn write(raft: &Raft<TypeConfig>, records: Vec<MetadataRecord>) -> MetadataResponse {
    raft.client_write(MetadataRequest { records })
        .await
        .expect("client write")
        .data
}

async fn leader_of(raft: &Raft<TypeConfig>) -> NodeId {
    let metrics = raft
        .wait(Some(WAIT))
        .metrics(|m| m.current_leader.is_some(), "a leader is elected")
        .await
        .expect("leader elected");
    metrics.current_leader.expect("checked above")
}

async fn applied_through(applied: &mut watch::Receiver<AppliedState>, index: u64) -> AppliedState {
    let state = tokio::time::timeout(
        WAIT,
        applied.wait_for(|s| s.last_applied.is_some_and(|l| l.index >= index)),
    )
    .await
    .expect("applied in time")
    .expect("state machine alive");
    state.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_voter_commits_records_and_has_them_again_after_a_restart() {
    let root = tempfile::tempdir().expect("tempdir");
    let registry = Arc::new(Mutex::new(Registry::default()));
    let voter = start(1, root.path(), &registry).await;
    voter
        .raft
        .initialize(BTreeMap::from([(1, node(1))]))
        .await
        .expect("initialize");
    voter
        .raft
        .wait(Some(WAIT))
        .state(ServerState::Leader, "single voter leads")
        .await
        .expect("leader");

    let response = write(&voter.raft, vec![topic("a"), topic("b")]).await;
    assert_eq!(
        response,
        MetadataResponse {
            applied: 2,
            ignored: 0
        }
    );
    voter
        .raft
        .trigger()
        .snapshot()
        .await
        .expect("trigger snapshot");
    voter
        .raft
        .wait(Some(WAIT))
        .metrics(
            |m| m.snapshot.is_some() && m.purged.is_some(),
            "snapshot taken and log purged",
        )
        .await
        .expect("snapshot");
    write(
        &voter.raft,
        vec![MetadataRecord::RemoveTopic { name: "a".into() }],
    )
    .await;
    write(
        &voter.raft,
        vec![MetadataRecord::ProducerIds { next: 2000 }],
    )
    .await;
    let before = voter.applied.borrow().clone();
    let last = before.last_applied.expect("applied something").index;
    stop(voter, 1, &registry).await;

    // The image comes back from the snapshot plus the committed entries after it.
    let mut voter = start(1, root.path(), &registry).await;
    let after = applied_through(&mut voter.applied, last).await;
    assert_eq!(after.image, before.image);
    assert!(after.image.topic("a").is_none());
    assert!(after.image.topic("b").is_some());
    assert_eq!(after.image.next_producer_id, 2000);
    stop(voter, 1, &registry).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_replicate_records_and_a_cut_off_voter_catches_up_from_a_snapshot() {
    let root = tempfile::tempdir().expect("tempdir");
    let registry = Arc::new(Mutex::new(Registry::default()));
    let mut voters = BTreeMap::new();
    for id in 1..=3 {
        voters.insert(id, start(id, root.path(), &registry).await);
    }
    voters[&1]
        .raft
        .initialize(BTreeMap::from([(1, node(1)), (2, node(2)), (3, node(3))]))
        .await
        .expect("initialize");
    let leader = leader_of(&voters[&1].raft).await;
    let leader_raft = voters[&leader].raft.clone();
    write(&leader_raft, vec![topic("first")]).await;
    let index = voters[&leader]
        .applied
        .borrow()
        .last_applied
        .expect("applied")
        .index;
    for voter in voters.values_mut() {
        let state = applied_through(&mut voter.applied, index).await;
        assert!(state.image.topic("first").is_some());
    }

    let lagging = (1..=3).find(|id| *id != leader).expect("a follower");
    registry.lock().cut.insert(lagging);
    for i in 0..5 {
        write(&leader_raft, vec![topic(&format!("while-cut-{i}"))]).await;
    }
    leader_raft
        .trigger()
        .snapshot()
        .await
        .expect("trigger snapshot");
    let last = voters[&leader]
        .applied
        .borrow()
        .last_applied
        .expect("applied");
    leader_raft
        .wait(Some(WAIT))
        .metrics(
            |m| m.snapshot == Some(last) && m.purged == Some(last),
            "leader snapshots and purges",
        )
        .await
        .expect("snapshot and purge on the leader");

    registry.lock().cut.remove(&lagging);
    let caught_up = applied_through(
        &mut voters.get_mut(&lagging).expect("voter").applied,
        last.index,
    )
    .await;
    assert_eq!(caught_up.image, voters[&leader].applied.borrow().image);
    // Its entries were purged on the leader: only the snapshot could bring it here.
    voters[&lagging]
        .raft
        .wait(Some(WAIT))
        .snapshot(last, "the lagging voter installs the leader's snapshot")
        .await
        .expect("snapshot installed");

    for (id, voter) in voters {
        stop(voter, id, &registry).await;
    }
}
