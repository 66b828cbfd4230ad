//! The client half of the quorum network: openraft's `RaftNetworkFactory` / `RaftNetwork` over
//! the node's [`Transport`] (TCP, or TLS and SASL as the controller listener says) to each
//! voter's controller listener, one connection per target kept open and replaced after any
//! error. Every request carries this node's cluster id ([`super::rpc`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;

use super::rpc::{read_frame, write_frame, RequestFrame, ResponseFrame, Rpc};
use super::status::Contacts;
use super::transport::{BoxStream, Transport};
use super::types::{ControllerNode, NodeId, TypeConfig};

/// How a member reaches the others: the cluster id every request carries, and the transport.
#[derive(Debug, Clone)]
pub struct Peer {
    /// This node's cluster id.
    pub cluster_id: String,
    /// How connections are opened.
    pub transport: Arc<dyn Transport>,
}

/// Creates connections to the other members (voters, and learners when leading).
#[derive(Debug, Clone)]
pub struct Network {
    /// This node's cluster id and transport.
    pub peer: Peer,
    /// This node's id.
    pub node_id: NodeId,
    /// Where answered AppendEntries are recorded, for DescribeQuorum's contact times.
    pub contacts: Arc<Contacts>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &ControllerNode) -> Connection {
        Connection {
            peer: self.peer.clone(),
            from: self.node_id,
            target,
            node: node.clone(),
            contacts: Arc::clone(&self.contacts),
            stream: None,
        }
    }
}

/// A connection to one member.
pub struct Connection {
    peer: Peer,
    from: NodeId,
    target: NodeId,
    node: ControllerNode,
    contacts: Arc<Contacts>,
    /// Open while healthy; dropped after any error so the next call reconnects.
    stream: Option<BoxStream>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("from", &self.from)
            .field("target", &self.target)
            .field("node", &self.node)
            .field("connected", &self.stream.is_some())
            .finish_non_exhaustive()
    }
}

/// A failure below Raft: connecting, writing or reading.
#[derive(Debug, thiserror::Error)]
#[error("quorum rpc to node {target} at {addr}: {reason}")]
struct TransportError {
    target: NodeId,
    addr: String,
    reason: String,
}

type Rpc2Error<E> = RPCError<NodeId, ControllerNode, RaftError<NodeId, E>>;

impl Connection {
    fn transport(&self, reason: impl std::fmt::Display) -> TransportError {
        TransportError {
            target: self.target,
            addr: self.node.to_string(),
            reason: reason.to_string(),
        }
    }

    async fn call<T, E>(
        &mut self,
        rpc: Rpc,
        kind: RPCTypes,
        ttl: Duration,
    ) -> Result<T, Rpc2Error<E>>
    where
        T: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let frame = RequestFrame {
            cluster_id: self.peer.cluster_id.clone(),
            from: self.from,
            rpc,
        };
        let body = serde_json::to_vec(&frame)
            .map_err(|e| RPCError::Network(NetworkError::new(&self.transport(e))))?;
        let result = tokio::time::timeout(ttl, self.round_trip(&body)).await;
        let reply = match result {
            Err(_) => {
                self.stream = None;
                return Err(RPCError::Timeout(Timeout {
                    action: kind,
                    id: self.from,
                    target: self.target,
                    timeout: ttl,
                }));
            }
            Ok(Err(e)) => {
                self.stream = None;
                return Err(e);
            }
            Ok(Ok(reply)) => reply,
        };
        match reply {
            ResponseFrame::Refused(refusal) => {
                self.stream = None;
                Err(RPCError::Unreachable(Unreachable::new(&refusal)))
            }
            ResponseFrame::Raft(value) => {
                let r: Result<T, RaftError<NodeId, E>> = serde_json::from_value(value)
                    .map_err(|e| RPCError::Network(NetworkError::new(&self.transport(e))))?;
                r.map_err(|e| {
                    RPCError::RemoteError(RemoteError::new_with_node(
                        self.target,
                        self.node.clone(),
                        e,
                    ))
                })
            }
        }
    }

    async fn round_trip<E: std::error::Error>(
        &mut self,
        body: &[u8],
    ) -> Result<ResponseFrame, Rpc2Error<E>> {
        if self.stream.is_none() {
            let addr = self.node.to_string();
            let s = self
                .peer
                .transport
                .connect(&addr)
                .await
                .map_err(|e| RPCError::Unreachable(Unreachable::new(&self.transport(e))))?;
            self.stream = Some(s);
        }
        let net = |c: &Connection, e: std::io::Error| {
            RPCError::Network(NetworkError::new(&c.transport(e)))
        };
        let Some(stream) = self.stream.as_mut() else {
            return Err(RPCError::Network(NetworkError::new(
                &self.transport("not connected"),
            )));
        };
        if let Err(e) = write_frame(stream, body).await {
            return Err(net(self, e));
        }
        let reply = match read_frame(stream).await {
            Ok(Some(b)) => b,
            Ok(None) => return Err(net(self, std::io::ErrorKind::UnexpectedEof.into())),
            Err(e) => return Err(net(self, e)),
        };
        serde_json::from_slice(&reply)
            .map_err(|e| RPCError::Network(NetworkError::new(&self.transport(e))))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, Rpc2Error<openraft::error::Infallible>> {
        let answer = self
            .call(
                Rpc::AppendEntries(rpc),
                RPCTypes::AppendEntries,
                option.hard_ttl(),
            )
            .await;
        if answer.is_ok() {
            self.contacts.answered(self.target, Instant::now());
        }
        answer
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, Rpc2Error<InstallSnapshotError>> {
        self.call(
            Rpc::InstallSnapshot(rpc),
            RPCTypes::InstallSnapshot,
            option.hard_ttl(),
        )
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, Rpc2Error<openraft::error::Infallible>> {
        self.call(Rpc::Vote(rpc), RPCTypes::Vote, option.hard_ttl())
            .await
    }
}

/// Why a call to another voter failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// Nothing reached the other side's Raft: the connection could not be made, or (for a
    /// proposal) the receiver no longer leads. Safe to send again elsewhere.
    #[error("{0}")]
    NotDelivered(String),
    /// Failed after the request was sent: it may or may not have taken effect.
    #[error("{0}")]
    Failed(String),
}

impl From<String> for CallError {
    fn from(s: String) -> Self {
        CallError::Failed(s)
    }
}

/// How a leader answers a forwarded proposal it could not commit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ProposeRefusal {
    /// It no longer leads; nothing was appended.
    NotLeader(String),
    /// Anything else.
    Failed(String),
}

/// Sends one request to the controller listener at `to` on a fresh connection and returns
/// the JSON answer.
async fn call_once(
    to: &ControllerNode,
    peer: &Peer,
    from: NodeId,
    rpc: Rpc,
    timeout: Duration,
) -> Result<serde_json::Value, CallError> {
    let call = async {
        let mut s = peer.transport.connect(&to.to_string()).await.map_err(|e| {
            CallError::NotDelivered(format!("connecting to the controller at {to}: {e}"))
        })?;
        let frame = RequestFrame {
            cluster_id: peer.cluster_id.clone(),
            from,
            rpc,
        };
        let body = serde_json::to_vec(&frame).map_err(|e| e.to_string())?;
        write_frame(&mut s, &body)
            .await
            .map_err(|e| e.to_string())?;
        let reply = read_frame(&mut s)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "the controller closed the connection".to_string())?;
        match serde_json::from_slice::<ResponseFrame>(&reply).map_err(|e| e.to_string())? {
            ResponseFrame::Refused(r) => Err(CallError::NotDelivered(r.to_string())),
            ResponseFrame::Raft(v) => Ok(v),
        }
    };
    tokio::time::timeout(timeout, call).await.map_err(|_| {
        CallError::Failed(format!(
            "the controller at {to} did not answer within {timeout:?}"
        ))
    })?
}

/// Forwards a metadata change to the leader at `leader` and returns the log id it was committed
/// at and what applying it answered.
pub async fn propose(
    leader: &ControllerNode,
    peer: &Peer,
    from: NodeId,
    request: super::types::MetadataRequest,
    timeout: Duration,
) -> Result<(super::types::LogId, super::types::MetadataResponse), CallError> {
    let v = call_once(leader, peer, from, Rpc::Propose(request), timeout).await?;
    let answer = serde_json::from_value::<
        Result<(super::types::LogId, super::types::MetadataResponse), ProposeRefusal>,
    >(v)
    .map_err(|e| CallError::Failed(e.to_string()))?;
    answer.map_err(|r| match r {
        ProposeRefusal::NotLeader(m) => CallError::NotDelivered(m),
        ProposeRefusal::Failed(m) => CallError::Failed(m),
    })
}

/// Asks the voter at `to` to add this node (`from`, reachable at `node`) to the quorum as a
/// learner; a voter that does not lead answers where the leader is.
pub async fn add_learner(
    to: &ControllerNode,
    peer: &Peer,
    from: NodeId,
    node: ControllerNode,
    timeout: Duration,
) -> Result<Result<(), super::learner::LearnerRefusal>, CallError> {
    let v = call_once(to, peer, from, Rpc::AddLearner { id: from, node }, timeout).await?;
    serde_json::from_value(v).map_err(|e| CallError::Failed(e.to_string()))
}

/// Asks the voter at `to` to remove learner `id` from the quorum; a voter that does not lead
/// answers where the leader is. `Ok(Ok(removed))`: whether `id` was a learner.
pub async fn remove_learner(
    to: &ControllerNode,
    peer: &Peer,
    from: NodeId,
    id: NodeId,
    timeout: Duration,
) -> Result<Result<bool, super::learner::LearnerRefusal>, CallError> {
    let v = call_once(to, peer, from, Rpc::RemoveLearner { id }, timeout).await?;
    serde_json::from_value(v).map_err(|e| CallError::Failed(e.to_string()))
}

/// Tells the voter at `to` that broker `broker` is alive (or shutting down).
pub async fn heartbeat(
    to: &ControllerNode,
    peer: &Peer,
    broker: i32,
    shutting_down: bool,
    timeout: Duration,
) -> Result<(), CallError> {
    let from = super::types::node_id(broker).map_err(|e| CallError::Failed(e.to_string()))?;
    call_once(
        to,
        peer,
        from,
        Rpc::BrokerHeartbeat {
            broker,
            shutting_down,
        },
        timeout,
    )
    .await
    .map(|_| ())
}

/// Asks the voter at `to` for the quorum's status as it sees it.
pub async fn status(
    to: &ControllerNode,
    peer: &Peer,
    from: NodeId,
    timeout: Duration,
) -> Result<super::status::QuorumStatus, CallError> {
    let v = call_once(to, peer, from, Rpc::Status, timeout).await?;
    serde_json::from_value(v).map_err(|e| CallError::Failed(e.to_string()))
}

/// Asks the voter at `to` to start an election (the leader is stopping).
pub async fn elect(to: &ControllerNode, peer: &Peer, from: NodeId) -> Result<(), CallError> {
    call_once(to, peer, from, Rpc::Elect, Duration::from_secs(2))
        .await
        .map(|_| ())
}
