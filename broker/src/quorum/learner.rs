//! Broker-only members: nodes that replicate the metadata log as openraft *learners* (Kafka's
//! observers) without a vote. A learner starts without a membership of its own and asks the
//! leader, over any voter's controller listener, to add it ([`join`]); the leader records it in
//! the membership ([`admit`]), which then persists across restarts on every member. Joining is
//! idempotent, and a learner that comes back on another address replaces its entry, so the
//! leader replicates to where it now listens. A broker removed for good (UnregisterBroker)
//! leaves the membership ([`remove`], asked of the leader with [`remove_at`]), so the leader
//! stops replicating to it; should it start again, it joins again.

use std::collections::BTreeMap;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, Raft};
use serde::{Deserialize, Serialize};

use super::network::CallError;
use super::types::{ControllerNode, NodeId, TypeConfig};

/// How long one AddLearner call may take: the leader answers once the membership is committed.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How many leader hints one [`join`] follows from a voter before it gives up for this round.
const MAX_HOPS: usize = 4;

/// Why a voter did not add or remove a learner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum LearnerRefusal {
    /// The voter asked does not lead; the leader, when it knows one.
    #[error("not the quorum leader (leader: {leader:?})")]
    NotLeader {
        /// The leader it knows of, with its controller listener.
        leader: Option<(NodeId, ControllerNode)>,
    },
    /// The node is a voter: it cannot also be a learner (its config says broker-only, the
    /// quorum's membership says controller).
    #[error(
        "node {0} is a voter of the controller quorum, so it cannot join as a broker-only observer"
    )]
    IsVoter(NodeId),
    /// The node to remove is a voter: voters are the static `controller.quorum.voters`, and
    /// only learners leave the membership.
    #[error(
        "node {0} is a voter of the controller quorum (controller.quorum.voters), which does not \
         change: only broker-only observers are removed"
    )]
    VoterStays(NodeId),
    /// Anything else (another membership change in progress, the leader stepping down):
    /// worth asking again.
    #[error("{0}")]
    Failed(String),
}

/// Why a [`join`] round did not add this node.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The quorum refuses this node for good (see [`LearnerRefusal::IsVoter`]).
    #[error(transparent)]
    Refused(LearnerRefusal),
    /// No voter answered with success this round; the last reason.
    #[error("no voter added this node as a learner: {0}")]
    Unavailable(String),
}

/// [`LearnerRefusal::NotLeader`] with the leader `m` knows of.
fn not_leader(m: &openraft::RaftMetrics<NodeId, ControllerNode>) -> LearnerRefusal {
    let leader = m.current_leader.and_then(|l| {
        m.membership_config
            .membership()
            .get_node(&l)
            .map(|n| (l, n.clone()))
    });
    LearnerRefusal::NotLeader { leader }
}

/// This member's metrics when it leads the quorum; else where the leader is.
fn leading(
    raft: &Raft<TypeConfig>,
) -> Result<openraft::RaftMetrics<NodeId, ControllerNode>, LearnerRefusal> {
    let m = raft.metrics().borrow().clone();
    if m.current_leader != Some(m.id) {
        return Err(not_leader(&m));
    }
    Ok(m)
}

/// Commits a change of the learners on the leader; returns once it is committed.
async fn commit(
    raft: &Raft<TypeConfig>,
    change: ChangeMembers<NodeId, ControllerNode>,
) -> Result<(), LearnerRefusal> {
    match raft.change_membership(change, true).await {
        Ok(_) => Ok(()),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
            Err(not_leader(&raft.metrics().borrow()))
        }
        Err(e) => Err(LearnerRefusal::Failed(e.to_string())),
    }
}

/// The leader's side of AddLearner: adds `id` at `node` as a learner, replaces its address if it
/// is one already under another, and does nothing if it is one at `node`.
pub async fn admit(
    raft: &Raft<TypeConfig>,
    id: NodeId,
    node: ControllerNode,
) -> Result<(), LearnerRefusal> {
    let m = leading(raft)?;
    let membership = m.membership_config.membership();
    if membership.voter_ids().any(|v| v == id) {
        return Err(LearnerRefusal::IsVoter(id));
    }
    let moved = match membership.get_node(&id) {
        Some(known) if *known == node => return Ok(()),
        Some(_) => true,
        None => false,
    };
    let nodes = BTreeMap::from([(id, node.clone())]);
    let change = if moved {
        ChangeMembers::SetNodes(nodes)
    } else {
        ChangeMembers::AddNodes(nodes)
    };
    commit(raft, change).await?;
    if moved {
        tracing::info!(learner = id, at = %node, "learner moved to a new address");
    } else {
        tracing::info!(learner = id, at = %node, "broker-only node joined the quorum as a learner");
    }
    Ok(())
}

/// One round of joining: asks each of `voters` in turn (following the leader hints they give)
/// to add `me` at `node` as a learner, until one leader does.
pub async fn join(
    peer: &super::network::Peer,
    me: NodeId,
    node: &ControllerNode,
    voters: &BTreeMap<NodeId, ControllerNode>,
) -> Result<(), JoinError> {
    let mut last = String::from("no voters configured");
    for (first_id, first) in voters {
        let mut target = (*first_id, first.clone());
        for _ in 0..MAX_HOPS {
            let answer =
                super::network::add_learner(&target.1, peer, me, node.clone(), CALL_TIMEOUT).await;
            match answer {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(LearnerRefusal::NotLeader {
                    leader: Some(leader),
                })) if leader.0 != target.0 => {
                    target = leader;
                    continue;
                }
                Ok(Err(r @ LearnerRefusal::IsVoter(_))) => return Err(JoinError::Refused(r)),
                Ok(Err(r)) => last = format!("voter {}: {r}", target.0),
                Err(CallError::NotDelivered(e) | CallError::Failed(e)) => {
                    last = format!("voter {}: {e}", target.0)
                }
            }
            break;
        }
    }
    Err(JoinError::Unavailable(last))
}

/// The leader's side of RemoveLearner: takes learner `id` out of the membership, so the leader
/// stops replicating to it. Returns whether it was a learner; a voter is refused.
pub async fn remove(raft: &Raft<TypeConfig>, id: NodeId) -> Result<bool, LearnerRefusal> {
    let m = leading(raft)?;
    let membership = m.membership_config.membership();
    if membership.voter_ids().any(|v| v == id) {
        return Err(LearnerRefusal::VoterStays(id));
    }
    if membership.get_node(&id).is_none() {
        return Ok(false);
    }
    let change = ChangeMembers::RemoveNodes(std::collections::BTreeSet::from([id]));
    commit(raft, change).await?;
    tracing::info!(learner = id, "learner removed from the quorum");
    Ok(true)
}

/// Asks `leader` (the leader a member knows of) to remove learner `id`, following the leader
/// hints a voter that no longer leads answers with; `me` and `peer` identify the sender.
pub async fn remove_at(
    peer: &super::network::Peer,
    me: NodeId,
    id: NodeId,
    leader: (NodeId, ControllerNode),
) -> Result<bool, LearnerRefusal> {
    let mut target = leader;
    for _ in 0..MAX_HOPS {
        let answer = super::network::remove_learner(&target.1, peer, me, id, CALL_TIMEOUT).await;
        match answer {
            Ok(Err(LearnerRefusal::NotLeader {
                leader: Some(leader),
            })) if leader.0 != target.0 => target = leader,
            Ok(answer) => return answer,
            Err(CallError::NotDelivered(e) | CallError::Failed(e)) => {
                return Err(LearnerRefusal::Failed(format!("voter {}: {e}", target.0)))
            }
        }
    }
    Err(LearnerRefusal::Failed(format!(
        "no leader found after {MAX_HOPS} leader hints"
    )))
}
