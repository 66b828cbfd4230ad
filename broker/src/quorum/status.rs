//! What DescribeQuorum reports, as the active controller sees it: leader, term, high watermark
//! (the applied index), and each voter's log end and when it last heartbeat. Only the
//! leader knows the followers' progress, so other members ask it over the controller listener.

use std::time::Duration;

use openraft::Raft;
use serde::{Deserialize, Serialize};

use super::types::{ControllerNode, NodeId, TypeConfig};
use crate::controller::liveness::Liveness;

/// The quorum's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumStatus {
    /// The leader (active controller), if known.
    pub leader: Option<NodeId>,
    /// The Raft term (Kafka's leader epoch of `__cluster_metadata`).
    pub term: u64,
    /// One past the last applied index (the metadata log's high watermark).
    pub high_watermark: i64,
    /// Voters with their controller listeners and progress.
    pub voters: Vec<VoterStatus>,
}

/// One voter's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoterStatus {
    /// Node id.
    pub id: NodeId,
    /// Its controller listener.
    pub node: ControllerNode,
    /// One past the last log index it holds, -1 when unknown.
    pub log_end_offset: i64,
    /// When the leader last heard it acknowledge (ms since the epoch), -1 when unknown.
    pub last_seen_ms: i64,
}

/// The status as `raft`'s own metrics show it. Followers' progress is known only on the
/// leader; elsewhere they read -1.
pub fn local(raft: &Raft<TypeConfig>, liveness: &Liveness) -> QuorumStatus {
    let m = raft.metrics().borrow().clone();
    let now = crate::cluster::now_ms();
    let leo = |voter: NodeId| -> i64 {
        if voter == m.id {
            return m.last_log_index.map(|i| i as i64 + 1).unwrap_or(0);
        }
        m.replication
            .as_ref()
            .and_then(|r| r.get(&voter).cloned().flatten())
            .map(|l| l.index as i64 + 1)
            .unwrap_or(-1)
    };
    let leading = m.current_leader == Some(m.id);
    let voters = m
        .membership_config
        .membership()
        .nodes()
        .filter(|(id, _)| {
            m.membership_config
                .membership()
                .voter_ids()
                .any(|v| v == **id)
        })
        .map(|(id, node)| {
            let log_end_offset = leo(*id);
            // openraft keeps no contact times; every voter is also a broker heartbeating
            // every voter, so its last heartbeat here stands in.
            let last_seen_ms = if *id == m.id {
                now
            } else if leading {
                super::types::kafka_node_id(*id)
                    .and_then(|b| liveness.last_heard_ms(b))
                    .unwrap_or(-1)
            } else {
                -1
            };
            VoterStatus {
                id: *id,
                node: node.clone(),
                log_end_offset,
                last_seen_ms,
            }
        })
        .collect();
    QuorumStatus {
        leader: m.current_leader,
        term: m.current_term,
        high_watermark: m.last_applied.map(|l| l.index as i64 + 1).unwrap_or(0),
        voters,
    }
}

/// How long a follower waits for the leader's status.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);
