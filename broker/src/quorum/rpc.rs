//! The quorum's wire format on the controller listener: one request and one response per
//! frame (a big-endian u32 length, then JSON). Every request names the sender's cluster id and
//! node id; a node of another cluster is refused before anything reaches Raft, so nodes of two
//! clusters never talk.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::types::{NodeId, TypeConfig};

/// The largest frame accepted (a snapshot chunk or a batch of entries).
pub const MAX_FRAME: usize = 64 << 20;

/// A quorum RPC.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub enum Rpc {
    /// Raft AppendEntries (replication and heartbeats).
    AppendEntries(openraft::raft::AppendEntriesRequest<TypeConfig>),
    /// Raft RequestVote.
    Vote(openraft::raft::VoteRequest<NodeId>),
    /// One chunk of a snapshot.
    InstallSnapshot(openraft::raft::InstallSnapshotRequest<TypeConfig>),
    /// A follower forwarding a metadata change to the leader; answered with
    /// `Result<(LogId, MetadataResponse), String>` once committed and applied there.
    Propose(super::types::MetadataRequest),
    /// A broker telling a voter it is alive (or, with `shutting_down`, that it is about to
    /// stop); answered with JSON `null`.
    BrokerHeartbeat {
        /// The broker's `node.id`.
        broker: i32,
        /// The broker is stopping: count it as gone now.
        shutting_down: bool,
    },
    /// The quorum's status as this member sees it (asked of the leader); answered with a
    /// [`super::status::QuorumStatus`].
    Status,
    /// A broker-only node asking to replicate the metadata log as a learner (Kafka's observer),
    /// or, already one, announcing where it now listens. Answered by the leader with
    /// `Result<(), LearnerRefusal>` once the membership naming it is committed.
    AddLearner {
        /// The broker's `node.id`.
        id: NodeId,
        /// Where the leader reaches it.
        node: super::types::ControllerNode,
    },
    /// A broker removed for good (UnregisterBroker) leaves the learners, so the leader stops
    /// replicating to it. Answered by the leader with `Result<bool, LearnerRefusal>` (whether
    /// it was a learner) once the membership without it is committed.
    RemoveLearner {
        /// The broker's `node.id`.
        id: NodeId,
    },
    /// The leader is stopping: start an election now instead of after the election timeout
    /// (openraft 0.9 has no leadership transfer). Answered with JSON `null`.
    Elect,
}

/// A request frame.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct RequestFrame {
    /// The sender's cluster id (from its meta.properties).
    pub cluster_id: String,
    /// The sender's node id.
    pub from: NodeId,
    /// The call.
    pub rpc: Rpc,
}

/// Why the receiving node refused a request without passing it to Raft.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    /// The sender belongs to another cluster.
    #[error("node {from} belongs to cluster {theirs}, not {ours}")]
    ClusterIdMismatch {
        /// The sender.
        from: NodeId,
        /// The sender's cluster id.
        theirs: String,
        /// The receiver's cluster id.
        ours: String,
    },
    /// The frame did not decode.
    #[error("malformed quorum request: {0}")]
    Malformed(String),
    /// The peer's principal may not act for the cluster.
    #[error("{0} is not allowed CLUSTER_ACTION on the cluster")]
    NotAuthorized(String),
}

/// A response frame: Raft's answer (its own result type per RPC, JSON-encoded) or a refusal.
#[derive(Debug, Serialize, Deserialize)]
pub enum ResponseFrame {
    /// The serialized `Result<Response, RaftError>` of the RPC.
    Raft(serde_json::Value),
    /// Refused before reaching Raft.
    Refused(Refusal),
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("quorum frame of {len} bytes exceeds {MAX_FRAME}"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(Some(body))
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, body: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(body.len()).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "quorum frame too large")
    })?;
    w.write_all(&len.to_be_bytes()).await?;
    w.write_all(body).await?;
    w.flush().await
}
