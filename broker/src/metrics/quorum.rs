//! The metadata quorum and the controller, as Kafka's raft-metrics and KafkaController metrics
//! report them: this node's Raft state, term and leader, how far it has applied the metadata
//! log, and on the active controller what the metadata says of the cluster (offline partitions,
//! fenced and registered brokers). Other controllers report the controller gauges as 0, as
//! Kafka's inactive controllers do, so a sum over the cluster counts each thing once.

use std::sync::Arc;

use openraft::{RaftMetrics, ServerState};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::cluster::image::MetadataImage;
use crate::quorum::node::QuorumNode;
use crate::quorum::types::{ControllerNode, NodeId};

use super::{Metrics, Scrape};

/// What the active controller reports of the cluster's metadata.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ControllerView {
    /// Topics.
    pub topics: i64,
    /// Partitions.
    pub partitions: i64,
    /// Partitions without a leader (OfflinePartitionsCount).
    pub offline_partitions: i64,
    /// Registered brokers that are fenced (FencedBrokerCount).
    pub fenced_brokers: i64,
    /// Registered brokers, fenced or not (ActiveBrokerCount + FencedBrokerCount).
    pub registered_brokers: i64,
}

impl ControllerView {
    /// Counts `image`.
    pub fn of(image: &MetadataImage) -> ControllerView {
        let mut v = ControllerView {
            topics: image.topics.len() as i64,
            registered_brokers: image.brokers.len() as i64,
            fenced_brokers: image.brokers.values().filter(|b| b.fenced).count() as i64,
            ..ControllerView::default()
        };
        for t in image.topics.values() {
            v.partitions += i64::from(t.partitions);
            v.offline_partitions += t.assignment.values().filter(|p| p.leader < 0).count() as i64;
        }
        v
    }
}

/// The label value of a Raft state.
fn state_name(s: ServerState) -> &'static str {
    match s {
        ServerState::Learner => "learner",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Leader => "leader",
        ServerState::Shutdown => "shutdown",
    }
}

/// Every node's scrape of its quorum member; `controller` adds the controller gauges (nodes
/// with the controller role).
pub fn refresh(quorum: &QuorumNode, controller: bool, out: &mut Scrape) {
    let m = quorum.raft().metrics().borrow().clone();
    out.gauge(
        "gregor_raft_term",
        "The metadata quorum's term (epoch) as this node knows it",
        m.current_term as i64,
    );
    out.gauge(
        "gregor_raft_leader",
        "The node id of the metadata quorum's leader, -1 when none is known",
        m.current_leader.map_or(-1, |l| l as i64),
    );
    let states = [
        ServerState::Leader,
        ServerState::Follower,
        ServerState::Candidate,
        ServerState::Learner,
    ];
    out.gauges(
        "gregor_raft_state",
        "1 for this node's Raft state in the metadata quorum",
        &["state"],
        states
            .into_iter()
            .map(|s| (vec![state_name(s)], i64::from(s == m.state))),
    );
    let (applied, controller_view) = {
        let state = quorum.applied_ref();
        let leads = m.current_leader == Some(m.id);
        let view = (controller && leads).then(|| ControllerView::of(&state.image));
        (state.last_applied.map_or(0, |l| l.index as i64), view)
    };
    out.gauge(
        "gregor_metadata_applied_offset",
        "The last metadata log entry applied to this node's image",
        applied,
    );
    let last_log = m.last_log_index.map_or(0, |i| i as i64);
    out.gauge(
        "gregor_metadata_lag_records",
        "Metadata log entries this node holds but has not applied yet (uncommitted ones too)",
        (last_log - applied).max(0),
    );
    if controller {
        controller_gauges(controller_view, out);
    }
}

fn controller_gauges(view: Option<ControllerView>, out: &mut Scrape) {
    out.gauge(
        "gregor_active_controller",
        "1 on the active controller",
        i64::from(view.is_some()),
    );
    let v = view.unwrap_or_default();
    let gauges = [
        ("gregor_global_topics", "Topics in the cluster", v.topics),
        (
            "gregor_global_partitions",
            "Partitions in the cluster",
            v.partitions,
        ),
        (
            "gregor_offline_partitions",
            "Partitions without a leader",
            v.offline_partitions,
        ),
        (
            "gregor_fenced_brokers",
            "Registered brokers that are fenced",
            v.fenced_brokers,
        ),
        (
            "gregor_registered_brokers",
            "Registered brokers, fenced or not",
            v.registered_brokers,
        ),
    ];
    for (name, help, value) in gauges {
        out.gauge(
            name,
            &format!("{help} (on the active controller; 0 elsewhere)"),
            value,
        );
    }
}

/// Counts the elections (term changes) and leader changes this node sees, until `shutdown`.
pub async fn watch_raft(
    mut raft: watch::Receiver<RaftMetrics<NodeId, ControllerNode>>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut seen = RaftChanges::new(raft.borrow().current_term);
    loop {
        let (term, leader) = {
            let m = raft.borrow_and_update();
            (m.current_term, m.current_leader)
        };
        let (elections, leader_changed) = seen.observe(term, leader);
        metrics.raft_elections.inc_by(elections);
        if leader_changed {
            metrics.raft_leader_changes.inc();
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = raft.changed() => if r.is_err() { return },
        }
    }
}

/// The terms and leaders seen so far.
#[derive(Debug)]
struct RaftChanges {
    term: u64,
    /// The last leader seen, with its term.
    leader: Option<(NodeId, u64)>,
}

impl RaftChanges {
    fn new(term: u64) -> RaftChanges {
        RaftChanges { term, leader: None }
    }

    /// How many terms began since the last observation, and whether a new leadership (a
    /// leader, or the same leader in a later term) appeared.
    fn observe(&mut self, term: u64, leader: Option<NodeId>) -> (u64, bool) {
        let elections = term.saturating_sub(self.term);
        self.term = self.term.max(term);
        let changed = match leader {
            Some(l) if self.leader != Some((l, term)) => {
                self.leader = Some((l, term));
                true
            }
            _ => false,
        };
        (elections, changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::image::{BrokerImage, PartitionImage, TopicImage};

    fn broker(fenced: bool) -> BrokerImage {
        BrokerImage {
            host: "h".into(),
            port: 1,
            endpoints: Vec::new(),
            rack: None,
            fenced,
        }
    }

    #[test]
    fn the_controller_counts_partitions_without_a_leader_and_fenced_brokers() {
        let mut image = MetadataImage::default();
        let mut assignment = std::collections::BTreeMap::new();
        assignment.insert(0, PartitionImage::new(vec![1, 2]));
        let mut offline = PartitionImage::new(vec![2]);
        offline.leader = -1;
        assignment.insert(1, offline);
        image.topics.insert(
            "t".into(),
            TopicImage {
                id: uuid::Uuid::new_v4(),
                partitions: 2,
                replication_factor: 2,
                configs: Default::default(),
                assignment,
            },
        );
        image.brokers.insert(1, broker(false));
        image.brokers.insert(2, broker(true));
        assert_eq!(
            ControllerView::of(&image),
            ControllerView {
                topics: 1,
                partitions: 2,
                offline_partitions: 1,
                fenced_brokers: 1,
                registered_brokers: 2,
            }
        );
    }

    #[test]
    fn elections_count_terms_and_leader_changes_count_new_leaderships() {
        let mut seen = RaftChanges::new(4);
        assert_eq!(seen.observe(4, Some(1)), (0, true), "the first leader seen");
        assert_eq!(seen.observe(4, Some(1)), (0, false), "unchanged");
        assert_eq!(seen.observe(5, None), (1, false), "an election under way");
        assert_eq!(
            seen.observe(7, Some(1)),
            (2, true),
            "re-elected in a later term"
        );
        assert_eq!(seen.observe(7, Some(1)), (0, false));
        assert_eq!(seen.observe(8, Some(3)), (1, true));
    }

    #[test]
    fn every_state_has_its_own_label() {
        let names: std::collections::BTreeSet<_> = [
            ServerState::Leader,
            ServerState::Follower,
            ServerState::Candidate,
            ServerState::Learner,
            ServerState::Shutdown,
        ]
        .into_iter()
        .map(state_name)
        .collect();
        assert_eq!(names.len(), 5);
    }
}
