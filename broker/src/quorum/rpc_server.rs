//! The server half of the quorum network: accepts connections on the controller listener (or,
//! on a broker-only learner, its metadata replication listener) through the node's transport
//! (TLS, SASL), refuses a peer the authorizer does not allow CLUSTER_ACTION, checks each
//! request's cluster id, and hands AppendEntries / Vote / InstallSnapshot to the local Raft node, broker
//! heartbeats to the liveness table, a learner's AddLearner to [`super::learner::admit`] and
//! RemoveLearner to [`super::learner::remove`]. A
//! request from another cluster gets a refusal and the connection closes.

use std::sync::Arc;

use openraft::Raft;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::liveness::Liveness;
use super::network::ProposeRefusal;
use super::rpc::{read_frame, write_frame, Refusal, RequestFrame, ResponseFrame, Rpc};
use super::state_machine::AppliedState;
use super::status::Contacts;
use super::transport::{BoxStream, Transport};
use super::types::TypeConfig;
use crate::config::AuthorizerConfig;

/// What the RPC handlers share besides Raft itself.
#[derive(Debug, Clone)]
pub struct Shared {
    /// Checked against every request's.
    pub cluster_id: Arc<str>,
    /// Where broker heartbeats are recorded.
    pub liveness: Arc<Liveness>,
    /// When members last answered this node's AppendEntries (for Status).
    pub contacts: Arc<Contacts>,
    /// How connections are accepted (TLS, SASL).
    pub transport: Arc<dyn Transport>,
    /// When set, a peer needs CLUSTER_ACTION on the cluster.
    pub authorizer: Option<Arc<AuthorizerConfig>>,
    /// The applied metadata, whose ACLs the authorizer reads.
    pub applied: watch::Receiver<AppliedState>,
    /// Rate-limits the lines about refused peers.
    pub close_log: Arc<crate::close_log::CloseLog>,
}

/// Serves quorum RPCs on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    raft: Raft<TypeConfig>,
    shared: Shared,
    shutdown: CancellationToken,
) {
    let connections = TaskTracker::new();
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "controller listener accept failed");
                    continue;
                }
            },
        };
        let (stream, peer) = stream;
        let _ = stream.set_nodelay(true);
        let (raft, shared, shutdown) = (raft.clone(), shared.clone(), shutdown.clone());
        connections.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                r = admit_and_serve(stream, peer, raft, shared) => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "quorum connection ended");
                    }
                }
            }
        });
    }
    connections.close();
    connections.wait().await;
}

fn encode<T: Serialize>(v: &T) -> std::io::Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(std::io::Error::other)
}

fn raft_reply<T: Serialize>(r: &T) -> std::io::Result<ResponseFrame> {
    Ok(ResponseFrame::Raft(
        serde_json::to_value(r).map_err(std::io::Error::other)?,
    ))
}

/// Secures an accepted connection, checks the peer may act for the cluster, then serves it.
async fn admit_and_serve(
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    raft: Raft<TypeConfig>,
    shared: Shared,
) -> std::io::Result<()> {
    let accepted = match shared.transport.accept(stream, peer).await {
        Ok(a) => a,
        Err(why) => {
            shared.close_log.closed(peer, "controller", &why);
            return Ok(());
        }
    };
    let mut stream = accepted.stream;
    if let Some(config) = &shared.authorizer {
        let host = peer.ip().to_string();
        let allowed = crate::authz::authorize(
            config,
            shared.applied.borrow().image.acls.values(),
            crate::authz::Requester {
                principal: &accepted.principal,
                host: &host,
            },
            crate::authz::Operation::ClusterAction,
            crate::authz::Resource::cluster(),
        );
        if !allowed {
            let why = format!(
                "{} is not allowed CLUSTER_ACTION on the cluster",
                accepted.principal
            );
            shared.close_log.closed(peer, "controller", &why);
            let reply = ResponseFrame::Refused(Refusal::NotAuthorized(accepted.principal));
            write_frame(&mut stream, &encode(&reply)?).await?;
            return Ok(());
        }
    }
    serve_connection(stream, raft, shared).await
}

async fn serve_connection(
    mut stream: BoxStream,
    raft: Raft<TypeConfig>,
    shared: Shared,
) -> std::io::Result<()> {
    let Shared {
        cluster_id,
        liveness,
        contacts,
        ..
    } = shared;
    while let Some(body) = read_frame(&mut stream).await? {
        let frame: RequestFrame = match serde_json::from_slice(&body) {
            Ok(f) => f,
            Err(e) => {
                let reply = ResponseFrame::Refused(Refusal::Malformed(e.to_string()));
                write_frame(&mut stream, &encode(&reply)?).await?;
                return Ok(());
            }
        };
        if frame.cluster_id != *cluster_id {
            tracing::warn!(from = frame.from, theirs = %frame.cluster_id, "refusing a quorum request from another cluster");
            let reply = ResponseFrame::Refused(Refusal::ClusterIdMismatch {
                from: frame.from,
                theirs: frame.cluster_id,
                ours: cluster_id.to_string(),
            });
            write_frame(&mut stream, &encode(&reply)?).await?;
            return Ok(());
        }
        let reply = answer(frame.rpc, &raft, &liveness, &contacts).await?;
        write_frame(&mut stream, &encode(&reply)?).await?;
    }
    Ok(())
}

/// Carries out one quorum RPC and says what to reply.
async fn answer(
    rpc: Rpc,
    raft: &Raft<TypeConfig>,
    liveness: &Liveness,
    contacts: &Contacts,
) -> std::io::Result<ResponseFrame> {
    let reply = match rpc {
        Rpc::AppendEntries(req) => raft_reply(&raft.append_entries(req).await)?,
        Rpc::Vote(req) => raft_reply(&raft.vote(req).await)?,
        Rpc::InstallSnapshot(req) => raft_reply(&raft.install_snapshot(req).await)?,
        Rpc::Propose(req) => {
            use openraft::error::{ClientWriteError, RaftError};
            let r = raft
                .client_write(req)
                .await
                .map(|w| (w.log_id, w.data))
                .map_err(|e| match e {
                    RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                        ProposeRefusal::NotLeader(f.to_string())
                    }
                    other => ProposeRefusal::Failed(other.to_string()),
                });
            raft_reply(&r)?
        }
        Rpc::BrokerHeartbeat {
            broker,
            shutting_down,
        } => {
            if shutting_down {
                liveness.depart(broker);
            } else {
                liveness.heard_from(broker, std::time::Instant::now());
            }
            ResponseFrame::Raft(serde_json::Value::Null)
        }
        Rpc::Status => raft_reply(&super::status::local(raft, contacts))?,
        Rpc::AddLearner { id, node } => raft_reply(&super::learner::admit(raft, id, node).await)?,
        Rpc::RemoveLearner { id } => raft_reply(&super::learner::remove(raft, id).await)?,
        Rpc::Elect => {
            if let Err(e) = raft.trigger().elect().await {
                tracing::warn!(error = %e, "could not start an election");
            }
            ResponseFrame::Raft(serde_json::Value::Null)
        }
    };
    Ok(reply)
}
