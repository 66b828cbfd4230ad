//! The broker scale-step planner: how big the broker StatefulSet may be now, and what to ask
//! the brokers first, given the size the spec wants, the size running, the step recorded in
//! the status and what the brokers say. Pure, so every rule is a table test; the reconcile
//! ([`crate::reconcile::scale`]) reads the brokers and carries the step out.
//!
//! - The controller quorum's size is fixed: its voters are written into every node's
//!   `controller.quorum.voters`, a static quorum cannot change them live (Kafka's static
//!   quorums cannot, and Strimzi refuses to scale pools with the controller role for the same
//!   reason). A changed count is refused ([`pin_quorum`]) and the StatefulSet keeps the size
//!   it has, which is the size the cluster was created with. A combined cluster's nodes are
//!   its voters, so it cannot scale at all; a dedicated broker pool can.
//! - Scale up: the StatefulSet grows at once. Once every new broker is registered and
//!   unfenced, the partitions [`crate::rebalance::plan`] moves are reassigned; while any
//!   reassignment is under way the step waits; then a preferred leader election lets leaders
//!   follow the new first replicas, and the step ends.
//! - Scale down: the StatefulSet keeps its size while a departing broker (ordinal ≥ the new
//!   size) holds a replica: those are reassigned first. Only when none holds any and no
//!   reassignment is under way does it shrink. A topic whose replication factor exceeds the
//!   brokers that would remain blocks the step until the spec (or the topic) changes.
//! - Removal: once a scale-down has shrunk the StatefulSet, the step stays recorded until every
//!   removed broker is unregistered ([`removal`]): a removed broker stays registered (fenced)
//!   in the metadata, and a broker-only node stays a learner of the controller quorum, until
//!   UnregisterBroker removes it. Gregor removes only fenced brokers, so the step waits while
//!   a removed pod still runs. Pods may roll meanwhile.
//! - A roll and a scale step never run at once: whichever started first finishes first. A
//!   new step waits while pods are stale from an earlier reconcile; while a step is under way
//!   the roll restarts no ready pod (a stale pod that is down anyway may still go, so a stuck
//!   new broker can be fixed by a spec edit).

use std::collections::{BTreeMap, BTreeSet};

use crate::crd::cluster::ScalingStatus;
use crate::placement::Broker;
use crate::rebalance::{self, Assignment, Move};
use crate::validate::ValidatedCluster;

/// Pins the controller pool to the size its StatefulSet has (`sizes`: replicas by
/// StatefulSet name) when the spec asks for another; returns why, for a condition.
pub fn pin_quorum(cluster: &mut ValidatedCluster, sizes: &BTreeMap<String, i32>) -> Option<String> {
    let combined = cluster.controller_pool().role.is_broker();
    let pool = cluster
        .pools
        .iter_mut()
        .find(|p| p.role.is_controller())
        .expect("validation always leaves a controller pool");
    let running = *sizes.get(&pool.name)?;
    if running == pool.replicas {
        return None;
    }
    let wanted = std::mem::replace(&mut pool.replicas, running);
    Some(if combined {
        format!(
            "spec.replicas changed from {running} to {wanted}, but every node of a combined \
             cluster is a voter of its controller quorum, fixed in controller.quorum.voters: \
             the cluster keeps {running} nodes. Set spec.replicas back to {running}; to scale \
             brokers, use a cluster with spec.controllers"
        )
    } else {
        format!(
            "spec.controllers.replicas changed from {running} to {wanted}, but the controller \
             quorum's voters are fixed in controller.quorum.voters: the controllers stay at \
             {running}. Set spec.controllers.replicas back to {running}"
        )
    })
}

/// Whether the brokers must be asked about a scale step this reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// No step: the pool is applied as the spec says.
    Nothing,
    /// A new step waits for the rolling restart under way; the pool keeps its size.
    AfterRoll {
        /// The size running.
        current: i32,
        /// The size wanted.
        target: i32,
    },
    /// A step is under way or starts now.
    Step(Sizes),
}

/// The sizes of a scale step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    /// Brokers when the step started.
    pub from: i32,
    /// Brokers the StatefulSet has now.
    pub current: i32,
    /// Brokers the step ends with.
    pub to: i32,
}

impl Sizes {
    /// Whether brokers are removed.
    pub fn shrinking(&self) -> bool {
        self.to < self.current
    }

    /// Node ids of the brokers that stay (broker ids are pod ordinals).
    pub fn staying(&self) -> BTreeSet<i32> {
        (0..self.to).collect()
    }

    /// Node ids of the brokers that go.
    pub fn leaving(&self) -> Vec<i32> {
        (self.to..self.current).collect()
    }

    /// Whether a scale-down has shrunk the StatefulSet, leaving the removed brokers'
    /// registrations to clear.
    pub fn removing(&self) -> bool {
        self.to < self.from && self.current == self.to
    }

    /// Node ids of the brokers the scale-down removes.
    pub fn removed(&self) -> Vec<i32> {
        (self.to..self.from).collect()
    }
}

/// What the brokers a scale-down removed still need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removal {
    /// Registered and fenced: unregister them now.
    pub unregister: Vec<i32>,
    /// Registered and unfenced: their pods still run (or another broker took their id); the
    /// step waits for them to stop.
    pub running: Vec<i32>,
}

/// What the removal of `sizes`' brokers needs, from the registered brokers as (id, fenced).
/// Any fenced broker with an id the pool no longer has (≥ the new size; controllers have ids
/// of their own, from 1000) is unregistered, also one left by an earlier step.
pub fn removal(sizes: Sizes, registered: &[(i32, bool)]) -> Removal {
    let removed = sizes.removed();
    let mut out = Removal::default();
    for (id, fenced) in registered {
        if *fenced && *id >= sizes.to && *id < crate::validate::CONTROLLER_ID_BASE {
            out.unregister.push(*id);
        } else if !*fenced && removed.contains(id) {
            out.running.push(*id);
        }
    }
    out
}

/// Whether a scale step is due. `current` is the broker StatefulSet's size (`None` before it
/// exists), `target` the spec's, `recorded` the step in the status, `rolling` whether pods
/// are stale from an earlier reconcile.
pub fn need(
    current: Option<i32>,
    target: i32,
    recorded: Option<&ScalingStatus>,
    rolling: bool,
) -> Need {
    let Some(current) = current else {
        return Need::Nothing;
    };
    // A recorded step whose size is no longer wanted is dropped, not undone: nothing moves
    // back until the next step.
    if current == target && recorded.is_none_or(|r| r.to != target) {
        return Need::Nothing;
    }
    if rolling && recorded.is_none() {
        return Need::AfterRoll { current, target };
    }
    let from = recorded
        .filter(|r| r.to == target)
        .map_or(current, |r| r.from);
    Need::Step(Sizes {
        from,
        current,
        to: target,
    })
}

/// What the brokers say, for a step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// Registered, unfenced brokers.
    pub brokers: Vec<Broker>,
    /// Every topic's assignment.
    pub assignment: Assignment,
    /// Partition reassignments under way.
    pub under_way: usize,
}

/// The next thing a step does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing to ask the brokers; look again soon.
    Wait {
        /// What for.
        reason: String,
    },
    /// Start these reassignments.
    Reassign(Vec<Move>),
    /// Elect preferred leaders, then end the step at its final size.
    Finish,
    /// The step cannot go on until the spec or the topics change.
    Blocked {
        /// Why.
        reason: String,
    },
}

/// The next action of the step `sizes`, from what the brokers said (`Err`: why they could not
/// be asked).
pub fn decide(sizes: Sizes, view: Result<&View, String>) -> Action {
    let view = match view {
        Ok(v) => v,
        Err(why) => {
            return Action::Wait {
                reason: format!("the brokers to answer ({why})"),
            }
        }
    };
    let staying = sizes.staying();
    let registered: BTreeSet<i32> = view.brokers.iter().map(|b| b.id).collect();
    let missing: Vec<String> = staying
        .difference(&registered)
        .map(i32::to_string)
        .collect();
    if !missing.is_empty() {
        return Action::Wait {
            reason: format!("brokers {} to register", missing.join(", ")),
        };
    }
    if view.under_way > 0 {
        return Action::Wait {
            reason: format!("{} partition reassignments under way", view.under_way),
        };
    }
    let targets: Vec<Broker> = view
        .brokers
        .iter()
        .filter(|b| staying.contains(&b.id))
        .cloned()
        .collect();
    match rebalance::plan(&view.assignment, &targets) {
        Err(e) if sizes.shrinking() => Action::Blocked {
            reason: format!(
                "cannot remove brokers {}: {e}; the StatefulSet keeps {} brokers until \
                 spec.replicas or the topic changes",
                list(&sizes.leaving()),
                sizes.current
            ),
        },
        Err(e) => Action::Blocked {
            reason: format!("cannot spread the partitions over the new brokers: {e}"),
        },
        Ok(moves) if moves.is_empty() => Action::Finish,
        Ok(moves) => Action::Reassign(moves),
    }
}

/// The size to apply to the broker StatefulSet while the step does `action`.
pub fn size(sizes: Sizes, action: &Action) -> i32 {
    match action {
        // Brokers go only once drained; brokers come at once.
        Action::Finish => sizes.to,
        _ if sizes.shrinking() => sizes.current,
        _ => sizes.to,
    }
}

/// Replicas the departing brokers still hold.
pub fn left_on_leaving(sizes: Sizes, assignment: &Assignment) -> usize {
    rebalance::replicas_outside(assignment, &sizes.staying())
        .iter()
        .filter(|(b, _)| (sizes.to..sizes.current).contains(*b))
        .map(|(_, n)| n)
        .sum()
}

/// Broker ids as `2, 3`.
pub fn list(ids: &[i32]) -> String {
    ids.iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::cluster::{ControllerPool, KafkaClusterSpec};
    use crate::crd::KafkaCluster;
    use crate::validate::validate;

    const ID: &str = "MkU3OEVBNTcwNTJENDM2Qg";

    fn validated(replicas: i32, controllers: Option<i32>) -> ValidatedCluster {
        let mut c = KafkaCluster::new(
            "events",
            KafkaClusterSpec {
                replicas,
                controllers: controllers.map(|replicas| ControllerPool {
                    replicas,
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
        c.metadata.namespace = Some("prod".into());
        validate(&c, ID, "img").unwrap()
    }

    fn plain(ids: impl IntoIterator<Item = i32>) -> Vec<Broker> {
        ids.into_iter()
            .map(|id| Broker { id, rack: None })
            .collect()
    }

    fn view(brokers: i32, assignment: &[(&str, Vec<Vec<i32>>)], under_way: usize) -> View {
        View {
            brokers: plain(0..brokers),
            assignment: assignment
                .iter()
                .map(|(t, p)| (t.to_string(), p.clone()))
                .collect(),
            under_way,
        }
    }

    fn sizes(from: i32, current: i32, to: i32) -> Sizes {
        Sizes { from, current, to }
    }

    #[test]
    fn a_combined_cluster_keeps_its_voters_and_says_why() {
        let mut c = validated(5, None);
        let why = pin_quorum(&mut c, &BTreeMap::from([("events".into(), 3)])).unwrap();
        assert_eq!(c.pools[0].replicas, 3);
        assert!(
            why.starts_with("spec.replicas changed from 3 to 5"),
            "{why}"
        );
        assert!(c
            .quorum_voters()
            .ends_with("events-2.events-nodes.prod.svc:9093"));
        assert_eq!(
            pin_quorum(
                &mut validated(3, None),
                &BTreeMap::from([("events".into(), 3)])
            ),
            None
        );
        assert_eq!(
            pin_quorum(&mut validated(5, None), &BTreeMap::new()),
            None,
            "new"
        );
    }

    #[test]
    fn dedicated_controllers_keep_their_count_and_brokers_may_change() {
        let mut c = validated(4, Some(5));
        let sizes = BTreeMap::from([("events-broker".into(), 2), ("events-controller".into(), 3)]);
        let why = pin_quorum(&mut c, &sizes).unwrap();
        assert!(
            why.starts_with("spec.controllers.replicas changed from 3 to 5"),
            "{why}"
        );
        assert_eq!(c.controller_pool().replicas, 3);
        assert_eq!(
            c.broker_pool().replicas,
            4,
            "the brokers are another matter"
        );
    }

    #[test]
    fn a_step_is_due_when_the_size_changes_or_one_is_recorded_and_waits_for_a_roll() {
        assert_eq!(need(None, 3, None, false), Need::Nothing, "a new cluster");
        assert_eq!(need(Some(3), 3, None, true), Need::Nothing);
        assert_eq!(need(Some(2), 3, None, false), Need::Step(sizes(2, 2, 3)));
        assert_eq!(
            need(Some(2), 3, None, true),
            Need::AfterRoll {
                current: 2,
                target: 3
            }
        );
        let recorded = ScalingStatus {
            from: 2,
            to: 3,
            ..Default::default()
        };
        assert_eq!(
            need(Some(3), 3, Some(&recorded), true),
            Need::Step(sizes(2, 3, 3)),
            "a step under way goes on through a roll"
        );
        assert_eq!(
            need(Some(3), 2, Some(&recorded), false),
            Need::Step(sizes(3, 3, 2)),
            "a new target starts a new step"
        );
        let blocked = ScalingStatus {
            from: 3,
            to: 2,
            ..Default::default()
        };
        assert_eq!(
            need(Some(3), 3, Some(&blocked), false),
            Need::Nothing,
            "a step given up is dropped"
        );
    }

    #[test]
    fn growth_waits_for_the_new_brokers_then_reassigns_then_finishes() {
        let s = sizes(2, 3, 3);
        let before = [("t", vec![vec![0, 1], vec![1, 0], vec![0, 1]])];
        assert_eq!(
            decide(s, Ok(&view(2, &before, 0))),
            Action::Wait {
                reason: "brokers 2 to register".into()
            }
        );
        let Action::Reassign(moves) = decide(s, Ok(&view(3, &before, 0))) else {
            panic!("expected reassignments")
        };
        assert!(moves.iter().all(|m| m.to.contains(&2)), "{moves:?}");
        assert_eq!(size(s, &Action::Reassign(moves.clone())), 3);
        let after = rebalance::apply(
            &before
                .iter()
                .map(|(t, p)| (t.to_string(), p.clone()))
                .collect(),
            &moves,
        );
        let settled = View {
            brokers: plain(0..3),
            assignment: after,
            under_way: 1,
        };
        assert!(matches!(decide(s, Ok(&settled)), Action::Wait { .. }));
        let done = View {
            under_way: 0,
            ..settled
        };
        assert_eq!(decide(s, Ok(&done)), Action::Finish);
    }

    #[test]
    fn a_shrink_keeps_the_size_while_departing_brokers_hold_replicas() {
        let s = sizes(3, 3, 2);
        let held = view(3, &[("t", vec![vec![0, 2], vec![2, 1]])], 0);
        let action = decide(s, Ok(&held));
        assert!(matches!(action, Action::Reassign(_)), "{action:?}");
        assert_eq!(size(s, &action), 3);
        assert_eq!(left_on_leaving(s, &held.assignment), 2);
        let empty = view(3, &[("t", vec![vec![0, 1], vec![1, 0]])], 0);
        assert_eq!(decide(s, Ok(&empty)), Action::Finish);
        assert_eq!(size(s, &Action::Finish), 2);
        let unreachable = decide(s, Err("connection refused".into()));
        assert!(matches!(unreachable, Action::Wait { .. }));
        assert_eq!(size(s, &unreachable), 3, "nothing shrinks unseen");
    }

    #[test]
    fn removed_brokers_are_unregistered_once_fenced_and_waited_for_while_running() {
        let after = sizes(4, 2, 2);
        assert!(after.removing());
        assert!(!sizes(4, 3, 2).removing(), "still draining");
        assert!(!sizes(2, 3, 3).removing(), "a scale-up");
        assert_eq!(after.removed(), vec![2, 3]);
        let registered = [
            (0, false),
            (1, true),
            (2, true),
            (3, false),
            (5, true),
            (1000, true),
        ];
        assert_eq!(
            removal(after, &registered),
            Removal {
                unregister: vec![2, 5],
                running: vec![3],
            },
            "a staying broker fenced for a while stays; so do controllers"
        );
        assert_eq!(
            removal(after, &[(0, false), (1, false)]),
            Removal::default()
        );
    }

    #[test]
    fn a_shrink_below_a_replication_factor_is_blocked_by_name() {
        let s = sizes(3, 3, 2);
        let Action::Blocked { reason } =
            decide(s, Ok(&view(3, &[("orders", vec![vec![0, 1, 2]])], 0)))
        else {
            panic!("expected a refusal")
        };
        assert!(
            reason.starts_with("cannot remove brokers 2: topic orders: replication factor 3"),
            "{reason}"
        );
        assert_eq!(size(s, &Action::Blocked { reason }), 3);
    }
}
