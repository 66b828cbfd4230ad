//! The rolling-restart planner: given each node's state and what the cluster itself says
//! (ISRs, the quorum), which pod to restart next, or why to wait or halt. Pure, so every rule is
//! a table test.
//!
//! The order: pods that are stale *and* unready first (restarting them cannot cost
//! availability), then ready followers by ordinal, the active controller last. A ready pod is
//! restarted only if no partition would fall below its `min.insync.replicas` without it, none is
//! under-replicated now, and the controller quorum keeps a caught-up majority without it. A
//! partition without a replica to spare (no more replicas than its `min.insync.replicas`) falls
//! below it whichever of its brokers restarts: the cluster's [`PartitionsWithoutSpare`] policy
//! says whether the roll then waits, naming the topics ([`Step::Blocked`]), or goes ahead. A pod
//! that already runs the current spec but stays unready halts the roll: restarting the next one
//! would only take a second node down. A pod already terminating (its deletion under way) is
//! restarting: it is never deleted again, and nothing else restarts until its replacement is up.

use std::collections::BTreeSet;
use std::time::Duration;

pub use crate::crd::cluster::PartitionsWithoutSpare;

/// One node as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    /// Pod name.
    pub pod: String,
    /// node.id.
    pub node_id: i32,
    /// Whether the pod is ready.
    pub ready: bool,
    /// Why the pod must restart (config, image, manual request); `None` when it is current.
    pub stale: Option<String>,
    /// How long the pod has been unready (`None` when ready or unknown).
    pub unready_for: Option<Duration>,
    /// Whether the pod is being deleted (`metadata.deletionTimestamp` is set): it is restarting
    /// already, whatever its readiness and spec say, so it is waited for and never deleted.
    pub terminating: bool,
}

/// A partition as the brokers report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionHealth {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// Replicas.
    pub replicas: Vec<i32>,
    /// In-sync replicas.
    pub isr: Vec<i32>,
    /// The topic's `min.insync.replicas`.
    pub min_isr: usize,
}

impl PartitionHealth {
    /// Whether the partition has a replica to spare: more replicas than its
    /// `min.insync.replicas`, so that one of them can restart while the rest take writes.
    pub fn has_spare(&self) -> bool {
        self.replicas.len() > self.min_isr
    }

    /// Whether restarting `node` would take the partition's ISR below `min.insync.replicas`.
    fn falls_below_min_isr_without(&self, node: i32) -> bool {
        self.isr.contains(&node) && self.isr.len() - 1 < self.min_isr
    }
}

/// What the cluster says about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// Every partition.
    pub partitions: Vec<PartitionHealth>,
    /// Voters of the controller quorum.
    pub voters: BTreeSet<i32>,
    /// Voters whose log is caught up with the leader's.
    pub caught_up: BTreeSet<i32>,
    /// The quorum leader (the active controller).
    pub active_controller: Option<i32>,
}

impl Health {
    /// Partitions whose ISR is smaller than their replica set.
    pub fn under_replicated(&self) -> usize {
        self.partitions
            .iter()
            .filter(|p| p.isr.len() < p.replicas.len())
            .count()
    }

    /// Topics of the partitions without a spare replica that restarting `node` would take
    /// below their `min.insync.replicas`.
    pub fn without_spare_on(&self, node: i32) -> BTreeSet<&str> {
        self.partitions
            .iter()
            .filter(|p| !p.has_spare() && p.falls_below_min_isr_without(node))
            .map(|p| p.topic.as_str())
            .collect()
    }

    /// Why restarting `node` now would cost availability, if it would. Under
    /// [`PartitionsWithoutSpare::Proceed`] the partitions without a spare replica do not count.
    pub fn unsafe_to_restart(
        &self,
        node: i32,
        without_spare: PartitionsWithoutSpare,
    ) -> Option<String> {
        let counts =
            |p: &PartitionHealth| p.has_spare() || without_spare == PartitionsWithoutSpare::Wait;
        if let Some(p) = self
            .partitions
            .iter()
            .find(|p| counts(p) && p.falls_below_min_isr_without(node))
        {
            return Some(format!(
                "{}-{} would fall below min.insync.replicas={} without node {node} (ISR {:?})",
                p.topic, p.partition, p.min_isr, p.isr
            ));
        }
        if self.voters.contains(&node) {
            let majority = self.voters.len() / 2 + 1;
            let left = self.caught_up.iter().filter(|v| **v != node).count();
            if left < majority {
                return Some(format!(
                    "the controller quorum would keep {left} caught-up voters without node \
                     {node}, fewer than a majority of {majority}"
                ));
            }
        }
        None
    }
}

/// The next step of a roll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Every pod runs the current spec.
    Done,
    /// Delete this pod; its StatefulSet recreates it with the current spec.
    Restart {
        /// The pod.
        pod: String,
        /// Why it is stale.
        reason: String,
    },
    /// Nothing to do until something changes.
    Wait {
        /// What the roll waits for.
        reason: String,
    },
    /// The roll waits only because of partitions without a replica to spare: under
    /// [`PartitionsWithoutSpare::Proceed`] a stale broker would restart now. Waits for the
    /// user to add replicas or choose `Proceed` (reported as Degraded).
    Blocked {
        /// The topics of those partitions, sorted.
        topics: Vec<String>,
    },
    /// The roll stops until a human looks (reported as Degraded).
    Halt {
        /// What is wrong.
        reason: String,
    },
}

/// Plans the next step. `health` is `None` when the brokers cannot be asked; `without_spare`
/// is the cluster's policy for partitions without a replica to spare; `stuck_after` is how long
/// a current pod may stay unready before the roll halts.
pub fn plan(
    nodes: &[NodeState],
    health: Option<&Health>,
    without_spare: PartitionsWithoutSpare,
    stuck_after: Duration,
) -> Step {
    if nodes.iter().all(|n| n.stale.is_none()) {
        return Step::Done;
    }
    // A pod on its way out still shows its old spec and, for a moment, its readiness: deleting
    // it again would gain nothing, and any other restart would take a second node down.
    if let Some(n) = nodes.iter().find(|n| n.terminating) {
        return Step::Wait {
            reason: format!("pod {} to finish terminating", n.pod),
        };
    }
    if let Some(n) = nodes
        .iter()
        .find(|n| n.stale.is_none() && !n.ready && n.unready_for.is_some_and(|d| d >= stuck_after))
    {
        return Step::Halt {
            reason: format!(
                "pod {} runs the current spec but has not been ready for {}s",
                n.pod,
                n.unready_for.unwrap_or_default().as_secs()
            ),
        };
    }
    if let Some(n) = nodes.iter().find(|n| n.stale.is_some() && !n.ready) {
        return Step::Restart {
            pod: n.pod.clone(),
            reason: n.stale.clone().unwrap_or_default(),
        };
    }
    if let Some(n) = nodes.iter().find(|n| !n.ready) {
        return Step::Wait {
            reason: format!("pod {} to become ready", n.pod),
        };
    }
    let Some(health) = health else {
        return Step::Wait {
            reason: "the brokers to answer, to check that a restart is safe".into(),
        };
    };
    let under = health.under_replicated();
    if under > 0 {
        return Step::Wait {
            reason: format!("{under} under-replicated partitions to catch up"),
        };
    }
    let mut candidates: Vec<&NodeState> = nodes.iter().filter(|n| n.stale.is_some()).collect();
    // Followers first, the active controller last; otherwise in ordinal (listed) order.
    candidates.sort_by_key(|n| health.active_controller == Some(n.node_id));
    let mut first_refusal = None;
    for n in &candidates {
        match health.unsafe_to_restart(n.node_id, without_spare) {
            None => {
                let stale = n.stale.clone().unwrap_or_default();
                let topics = health.without_spare_on(n.node_id);
                let reason = if topics.is_empty() {
                    stale
                } else {
                    format!(
                        "{stale}; going ahead although {} drop below min.insync.replicas \
                         (partitionsWithoutSpare: Proceed)",
                        bounded_list(topics.into_iter().map(String::from).collect())
                    )
                };
                return Step::Restart {
                    pod: n.pod.clone(),
                    reason,
                };
            }
            Some(why) => {
                first_refusal.get_or_insert(why);
            }
        }
    }
    // Would the roll go on but for the partitions without a spare? Then they are what it
    // waits for, and the user is the one to decide.
    let topics: BTreeSet<&str> = candidates
        .iter()
        .filter(|n| {
            health
                .unsafe_to_restart(n.node_id, PartitionsWithoutSpare::Proceed)
                .is_none()
        })
        .flat_map(|n| health.without_spare_on(n.node_id))
        .collect();
    if !topics.is_empty() {
        return Step::Blocked {
            topics: topics.into_iter().map(String::from).collect(),
        };
    }
    Step::Wait {
        reason: first_refusal.unwrap_or_default(),
    }
}

/// How many names a message lists before it says how many more there are.
const LISTED: usize = 10;

/// `names` joined with commas, the first ten of them, then how many more.
pub fn bounded_list(names: Vec<String>) -> String {
    let more = names.len().saturating_sub(LISTED);
    let shown = names
        .into_iter()
        .take(LISTED)
        .collect::<Vec<_>>()
        .join(", ");
    if more == 0 {
        shown
    } else {
        format!("{shown} and {more} more")
    }
}

/// Pods still to restart, in the order [`plan`] would take them if every check passed.
pub fn pending(nodes: &[NodeState], active_controller: Option<i32>) -> Vec<String> {
    let mut stale: Vec<&NodeState> = nodes.iter().filter(|n| n.stale.is_some()).collect();
    stale.sort_by_key(|n| (n.ready, active_controller == Some(n.node_id)));
    stale.into_iter().map(|n| n.pod.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STUCK: Duration = Duration::from_secs(300);
    const WAIT: PartitionsWithoutSpare = PartitionsWithoutSpare::Wait;
    const PROCEED: PartitionsWithoutSpare = PartitionsWithoutSpare::Proceed;

    fn node(i: i32, ready: bool, stale: bool) -> NodeState {
        NodeState {
            pod: format!("k-{i}"),
            node_id: i,
            ready,
            stale: stale.then(|| "config changed".to_string()),
            unready_for: (!ready).then_some(Duration::from_secs(10)),
            terminating: false,
        }
    }

    fn terminating(mut n: NodeState) -> NodeState {
        n.terminating = true;
        n
    }

    fn healthy(active: i32) -> Health {
        Health {
            partitions: vec![PartitionHealth {
                topic: "t".into(),
                partition: 0,
                replicas: vec![0, 1, 2],
                isr: vec![0, 1, 2],
                min_isr: 2,
            }],
            voters: BTreeSet::from([0, 1, 2]),
            caught_up: BTreeSet::from([0, 1, 2]),
            active_controller: Some(active),
        }
    }

    fn restart(pod: &str) -> Step {
        Step::Restart {
            pod: pod.into(),
            reason: "config changed".into(),
        }
    }

    #[test]
    fn nothing_stale_is_done() {
        let nodes = [node(0, true, false), node(1, false, false)];
        assert_eq!(plan(&nodes, None, WAIT, STUCK), Step::Done);
    }

    #[test]
    fn followers_go_first_in_order_and_the_active_controller_last() {
        let nodes = [
            node(0, true, true),
            node(1, true, true),
            node(2, true, true),
        ];
        let h = healthy(0);
        assert_eq!(plan(&nodes, Some(&h), WAIT, STUCK), restart("k-1"));
        assert_eq!(pending(&nodes, Some(0)), vec!["k-1", "k-2", "k-0"]);
        let nodes = [
            node(0, true, true),
            node(1, true, false),
            node(2, true, false),
        ];
        assert_eq!(
            plan(&nodes, Some(&h), WAIT, STUCK),
            restart("k-0"),
            "the controller once alone"
        );
    }

    #[test]
    fn an_unready_stale_pod_goes_first_without_asking_the_brokers() {
        let nodes = [
            node(0, true, true),
            node(1, false, true),
            node(2, true, true),
        ];
        assert_eq!(plan(&nodes, None, WAIT, STUCK), restart("k-1"));
        assert_eq!(pending(&nodes, Some(2)), vec!["k-1", "k-0", "k-2"]);
    }

    #[test]
    fn a_starting_pod_is_waited_for_and_a_stuck_one_halts_the_roll() {
        let nodes = [
            node(0, true, true),
            node(1, false, false),
            node(2, true, true),
        ];
        assert!(matches!(
            plan(&nodes, Some(&healthy(0)), WAIT, STUCK),
            Step::Wait { .. }
        ));
        let mut stuck = nodes.clone();
        stuck[1].unready_for = Some(STUCK);
        match plan(&stuck, Some(&healthy(0)), WAIT, STUCK) {
            Step::Halt { reason } => assert!(reason.contains("k-1"), "{reason}"),
            other => panic!("expected a halt, got {other:?}"),
        }
    }

    #[test]
    fn no_restart_without_the_brokers_word_or_while_partitions_are_under_replicated() {
        let nodes = [node(0, true, true), node(1, true, true)];
        assert!(matches!(plan(&nodes, None, WAIT, STUCK), Step::Wait { .. }));
        let mut h = healthy(0);
        h.partitions[0].isr = vec![0, 1];
        match plan(&nodes, Some(&h), WAIT, STUCK) {
            Step::Wait { reason } => assert!(reason.contains("under-replicated"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_node_whose_loss_breaks_min_isr_or_the_quorum_majority_is_skipped() {
        let nodes = [
            node(0, true, true),
            node(1, true, true),
            node(2, true, false),
        ];
        // Partition with RF 2 and min.insync 2: neither of its replicas may go.
        let mut h = healthy(2);
        h.partitions.push(partition("tight", &[0, 1], 2));
        let why = h.unsafe_to_restart(0, WAIT).unwrap();
        assert!(
            why.contains("tight-0") && why.contains("min.insync"),
            "{why}"
        );
        assert_eq!(
            plan(&nodes, Some(&h), WAIT, STUCK),
            Step::Blocked {
                topics: vec!["tight".into()]
            }
        );
        // Voter 1 lags: without 0 only voter 2 would be caught up, not a majority; 1 is
        // behind already, so restarting it costs nothing. With two voters behind, none may go.
        let mut h = healthy(2);
        h.caught_up = BTreeSet::from([0, 2]);
        assert_eq!(
            plan(&nodes, Some(&h), WAIT, STUCK),
            restart("k-1"),
            "1 lags, so it may go"
        );
        let mut h = healthy(2);
        h.caught_up = BTreeSet::from([0, 1]);
        match plan(&nodes, Some(&h), WAIT, STUCK) {
            Step::Wait { reason } => assert!(reason.contains("majority"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_terminating_pod_is_never_picked_and_the_roll_waits_for_it() {
        let wait_for = |pod: &str| Step::Wait {
            reason: format!("pod {pod} to finish terminating"),
        };
        let h = healthy(2);
        // (nodes, step): ready and stale as listed; a terminating pod counts as neither.
        let table = [
            // Stale and unready, the first pick were it not terminating: waited for.
            (
                vec![
                    node(0, true, true),
                    terminating(node(1, false, true)),
                    node(2, false, true),
                ],
                wait_for("k-1"),
            ),
            // Still ready and stale while it drains: not deleted a second time.
            (
                vec![
                    terminating(node(0, true, true)),
                    node(1, true, true),
                    node(2, true, true),
                ],
                wait_for("k-0"),
            ),
            // A current pod being deleted (a replacement already terminating, a drain): the
            // next stale pod waits for it too.
            (
                vec![
                    node(0, true, true),
                    terminating(node(1, true, false)),
                    node(2, true, false),
                ],
                wait_for("k-1"),
            ),
            // Nothing stale: the roll is done, whatever else is happening.
            (
                vec![node(0, true, false), terminating(node(1, true, false))],
                Step::Done,
            ),
        ];
        for (nodes, step) in table {
            assert_eq!(plan(&nodes, Some(&h), WAIT, STUCK), step, "{nodes:?}");
            assert_eq!(
                plan(&nodes, None, WAIT, STUCK),
                step,
                "{nodes:?} without health"
            );
        }
    }

    /// Partition 0 of `topic`, fully in sync on `replicas`.
    fn partition(topic: &str, replicas: &[i32], min_isr: usize) -> PartitionHealth {
        PartitionHealth {
            topic: topic.into(),
            partition: 0,
            replicas: replicas.to_vec(),
            isr: replicas.to_vec(),
            min_isr,
        }
    }

    #[test]
    fn partitions_without_a_spare_replica_block_the_roll_under_wait_and_not_under_proceed() {
        let blocked = |topics: &[&str]| Step::Blocked {
            topics: topics.iter().map(|t| t.to_string()).collect(),
        };
        let only_0_stale = || {
            vec![
                node(0, true, true),
                node(1, true, false),
                node(2, true, false),
            ]
        };
        let all_stale = || {
            vec![
                node(0, true, true),
                node(1, true, true),
                node(2, true, true),
            ]
        };
        let with = |extra: Vec<PartitionHealth>| {
            let mut h = healthy(2);
            h.partitions.extend(extra);
            h
        };
        let solo = || partition("solo", &[0], 1);
        // (nodes, health, policy, step)
        let table = [
            // One replica on broker 0: the other stale brokers go first, then the roll waits
            // for a decision, naming the topic.
            (all_stale(), with(vec![solo()]), WAIT, restart("k-1")),
            (only_0_stale(), with(vec![solo()]), WAIT, blocked(&["solo"])),
            // Replication factor 2 with min.insync.replicas 2 (and 3 with 3 too): no spare.
            (
                only_0_stale(),
                with(vec![
                    partition("tight", &[0, 1], 2),
                    partition("full", &[0, 1, 2], 3),
                    partition("fine", &[0, 1, 2], 2),
                ]),
                WAIT,
                blocked(&["full", "tight"]),
            ),
            // min.insync.replicas above the replica count: no spare either.
            (
                only_0_stale(),
                with(vec![partition("over", &[0, 1], 3)]),
                WAIT,
                blocked(&["over"]),
            ),
            // Blocked also for the quorum: the topics are not all the roll waits for.
            (
                only_0_stale(),
                Health {
                    caught_up: BTreeSet::from([0, 1]),
                    ..with(vec![solo()])
                },
                WAIT,
                Step::Wait {
                    reason: "solo-0 would fall below min.insync.replicas=1 without node 0 \
                             (ISR [0])"
                        .into(),
                },
            ),
        ];
        for (nodes, health, policy, step) in table {
            assert_eq!(
                plan(&nodes, Some(&health), policy, STUCK),
                step,
                "{nodes:?} {health:?}"
            );
        }

        // Proceed: the broker restarts, and the reason says what that costs.
        match plan(&only_0_stale(), Some(&with(vec![solo()])), PROCEED, STUCK) {
            Step::Restart { pod, reason } => {
                assert_eq!(pod, "k-0");
                assert!(
                    reason.starts_with("config changed; going ahead although solo drop"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
        // ... but never past the quorum's majority,
        let lagging = Health {
            caught_up: BTreeSet::from([0, 1]),
            ..with(vec![solo()])
        };
        match plan(&only_0_stale(), Some(&lagging), PROCEED, STUCK) {
            Step::Wait { reason } => assert!(reason.contains("majority"), "{reason}"),
            other => panic!("{other:?}"),
        }
        // ... nor while a partition that has a spare is under-replicated.
        let mut under = with(vec![solo()]);
        under.partitions[0].isr = vec![0, 2];
        match plan(&only_0_stale(), Some(&under), PROCEED, STUCK) {
            Step::Wait { reason } => assert!(reason.contains("under-replicated"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_long_list_of_names_shows_the_first_ten_and_how_many_more() {
        let names = |n: usize| (0..n).map(|i| format!("t{i}")).collect::<Vec<_>>();
        assert_eq!(bounded_list(names(2)), "t0, t1");
        assert_eq!(
            bounded_list(names(10)),
            "t0, t1, t2, t3, t4, t5, t6, t7, t8, t9"
        );
        assert_eq!(
            bounded_list(names(13)),
            "t0, t1, t2, t3, t4, t5, t6, t7, t8, t9 and 3 more"
        );
    }
}
