//! What DescribeQuorum reports, as the active controller sees it: leader, term, high watermark
//! (the applied index), and each voter's and observer's (broker-only learner's) log end and when
//! it last answered the leader. Only the leader knows the others' progress, so other members ask
//! it over the controller listener.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use openraft::Raft;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::types::{ControllerNode, NodeId, TypeConfig};

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
    pub voters: Vec<MemberStatus>,
    /// Learners (broker-only nodes replicating the log without a vote): Kafka's observers.
    /// Defaulted so a member that predates observers still answers a status request.
    #[serde(default)]
    pub observers: Vec<MemberStatus>,
}

/// One member's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// Node id.
    pub id: NodeId,
    /// Where it receives quorum traffic (a voter's controller listener).
    pub node: ControllerNode,
    /// One past the last log index it holds, -1 when unknown.
    pub log_end_offset: i64,
    /// When the leader last heard it acknowledge (ms since the epoch), -1 when unknown.
    pub last_seen_ms: i64,
}

/// When each member last answered this node's AppendEntries (replication or heartbeat).
/// openraft 0.9's metrics keep no contact times, so the network layer records them; only a
/// leader sends AppendEntries, so only the leader's table is current.
#[derive(Debug, Default)]
pub struct Contacts {
    /// Behind a plain mutex: updated once per answered RPC, held for an insert or a lookup.
    last: Mutex<BTreeMap<NodeId, Instant>>,
}

impl Contacts {
    /// Records that `member` answered at `at`.
    pub fn answered(&self, member: NodeId, at: Instant) {
        let mut last = self.last.lock();
        let t = last.entry(member).or_insert(at);
        *t = (*t).max(at);
    }

    /// When `member` last answered, in ms since the Unix epoch.
    pub fn last_ms(&self, member: NodeId) -> Option<i64> {
        let at = *self.last.lock().get(&member)?;
        Some(crate::cluster::now_ms() - at.elapsed().as_millis() as i64)
    }
}

/// The status as `raft`'s own metrics show it. Followers' and learners' progress is known only
/// on the leader; elsewhere they read -1.
pub fn local(raft: &Raft<TypeConfig>, contacts: &Contacts) -> QuorumStatus {
    let m = raft.metrics().borrow().clone();
    let now = crate::cluster::now_ms();
    let leading = m.current_leader == Some(m.id);
    let member = |id: NodeId, node: &ControllerNode| {
        let log_end_offset = if id == m.id {
            m.last_log_index.map(|i| i as i64 + 1).unwrap_or(0)
        } else {
            m.replication
                .as_ref()
                .and_then(|r| r.get(&id).cloned().flatten())
                .map(|l| l.index as i64 + 1)
                .unwrap_or(-1)
        };
        let last_seen_ms = if id == m.id {
            now
        } else if leading {
            contacts.last_ms(id).unwrap_or(-1)
        } else {
            -1
        };
        MemberStatus {
            id,
            node: node.clone(),
            log_end_offset,
            last_seen_ms,
        }
    };
    let membership = m.membership_config.membership();
    let (mut voters, mut observers) = (Vec::new(), Vec::new());
    for (id, node) in membership.nodes() {
        if membership.voter_ids().any(|v| v == *id) {
            voters.push(member(*id, node));
        } else {
            observers.push(member(*id, node));
        }
    }
    QuorumStatus {
        leader: m.current_leader,
        term: m.current_term,
        high_watermark: m.last_applied.map(|l| l.index as i64 + 1).unwrap_or(0),
        voters,
        observers,
    }
}

/// How long a follower waits for the leader's status.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contacts_keep_the_latest_answer() {
        let c = Contacts::default();
        assert_eq!(c.last_ms(1), None);
        let t0 = Instant::now()
            .checked_sub(Duration::from_secs(10))
            .expect("a monotonic clock ten seconds old");
        c.answered(1, t0 + Duration::from_secs(9));
        c.answered(1, t0);
        let ago = crate::cluster::now_ms() - c.last_ms(1).expect("answered");
        assert!(
            (900..5_000).contains(&ago),
            "the latest answer was {ago} ms ago"
        );
    }
}
