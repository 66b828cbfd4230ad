//! The rebalance planner of a broker scale step: given where every partition's replicas are
//! now and the brokers that are to hold them, the partitions to reassign so each topic's
//! replicas and preferred leaders are spread evenly over those brokers and none is left on a
//! broker that is leaving. Pure, so every rule is a table or property test.
//!
//! Per topic, in three passes that each move as little as they can:
//!
//! 1. A replica on a broker that is leaving is replaced, in its place in the list, by the
//!    broker holding the fewest replicas of the topic, from a rack the partition does not use
//!    yet while there is one (the rack rule of [`crate::placement`]).
//! 2. While one broker holds two replicas more than another, one replica goes from the most
//!    loaded to the least loaded broker, taken from a partition where that keeps the racks
//!    spread, and a follower rather than the preferred leader where there is a choice. Each
//!    step lowers the sum of squared counts, so this ends; it ends balanced, because the fuller
//!    broker is always in some partition the emptier one is not in.
//! 3. While a broker is the preferred leader (first replica) of two partitions more than
//!    another it can hand leadership to, leadership shifts along the shortest chain of
//!    partitions (each led by one broker and followed by the next), by swapping the first
//!    replica with the next broker's place. No data moves: only the order changes.
//!
//! Ties go to the broker holding fewer replicas of all topics planned so far, then the lower
//! id, so topics fill the brokers evenly as a whole too and the plan is deterministic. A
//! topic already balanced is left as it is, so planning a planned assignment changes nothing.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use gregor_client::admin::Reassignment;

use crate::placement::{Broker, PlacementError};

/// Every topic's replica lists, by partition index, preferred leader first.
pub use gregor_client::admin::Assignment;

/// A partition whose replicas change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// Its replicas now.
    pub from: Vec<i32>,
    /// Its replicas after the reassignment, preferred leader first.
    pub to: Vec<i32>,
}

impl Move {
    /// The reassignment that makes this move, as the admin API sends it.
    pub fn target(&self) -> Reassignment<'_> {
        Reassignment {
            topic: &self.topic,
            partition: self.partition,
            replicas: &self.to,
        }
    }

    /// Replicas that land on a broker that did not hold them (a reorder moves none).
    pub fn replicas_moved(&self) -> usize {
        self.to.iter().filter(|b| !self.from.contains(b)).count()
    }
}

/// Why a topic cannot be spread over the target brokers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("topic {topic}: {source}")]
pub struct RebalanceError {
    /// The topic.
    pub topic: String,
    /// What placement says about it.
    #[source]
    pub source: PlacementError,
}

/// The reassignments that spread `assignment` over `brokers` (see the module docs): one
/// [`Move`] per partition whose replica list changes, in topic and partition order.
pub fn plan(assignment: &Assignment, brokers: &[Broker]) -> Result<Vec<Move>, RebalanceError> {
    let mut brokers: Vec<&Broker> = brokers.iter().collect();
    brokers.sort_by_key(|b| b.id);
    brokers.dedup_by_key(|b| b.id);
    let ids: Vec<i32> = brokers.iter().map(|b| b.id).collect();
    let racks = Racks::new(&brokers);
    // Replicas of every topic on each target broker, for tie-breaks.
    let mut total: BTreeMap<i32, usize> = ids.iter().map(|&b| (b, 0)).collect();
    for replicas in assignment.values().flatten().flatten() {
        if let Some(c) = total.get_mut(replicas) {
            *c += 1;
        }
    }
    let mut moves = Vec::new();
    for (topic, partitions) in assignment {
        let widest = partitions.iter().map(Vec::len).max().unwrap_or(0);
        if widest > ids.len() {
            return Err(RebalanceError {
                topic: topic.clone(),
                source: PlacementError::NotEnoughBrokers {
                    replication_factor: widest,
                    brokers: ids.len(),
                },
            });
        }
        let mut next = partitions.clone();
        let mut topic_plan = TopicPlan {
            ids: &ids,
            racks: &racks,
            total: &mut total,
            parts: &mut next,
        };
        topic_plan.replace_leaving();
        topic_plan.spread_replicas();
        topic_plan.spread_leaders();
        for (index, (from, to)) in partitions.iter().zip(&next).enumerate() {
            if from != to {
                moves.push(Move {
                    topic: topic.clone(),
                    partition: index as i32,
                    from: from.clone(),
                    to: to.clone(),
                });
            }
        }
    }
    Ok(moves)
}

/// `assignment` with `moves` applied.
pub fn apply(assignment: &Assignment, moves: &[Move]) -> Assignment {
    let mut out = assignment.clone();
    for m in moves {
        if let Some(p) = out
            .get_mut(&m.topic)
            .and_then(|ps| ps.get_mut(m.partition as usize))
        {
            *p = m.to.clone();
        }
    }
    out
}

/// Replicas in `assignment` on brokers not in `keep`, by broker.
pub fn replicas_outside(assignment: &Assignment, keep: &BTreeSet<i32>) -> BTreeMap<i32, usize> {
    let mut out = BTreeMap::new();
    for b in assignment.values().flatten().flatten() {
        if !keep.contains(b) {
            *out.entry(*b).or_default() += 1;
        }
    }
    out
}

/// Each broker's rack as a number; a broker without one is a rack of its own.
struct Racks(BTreeMap<i32, usize>);

impl Racks {
    fn new(brokers: &[&Broker]) -> Racks {
        let names: BTreeSet<&str> = brokers.iter().filter_map(|b| b.rack.as_deref()).collect();
        let index: BTreeMap<&str, usize> = names.iter().enumerate().map(|(i, r)| (*r, i)).collect();
        Racks(
            brokers
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    let rack = b.rack.as_deref().map_or(index.len() + i, |r| index[r]);
                    (b.id, rack)
                })
                .collect(),
        )
    }

    /// Distinct racks among the target brokers of `replicas`.
    fn spread(&self, replicas: &[i32]) -> usize {
        replicas
            .iter()
            .filter_map(|b| self.0.get(b))
            .collect::<BTreeSet<_>>()
            .len()
    }
}

/// One topic being planned.
struct TopicPlan<'a> {
    /// Target broker ids, sorted.
    ids: &'a [i32],
    racks: &'a Racks,
    /// Replicas of every topic per target broker, kept up to date.
    total: &'a mut BTreeMap<i32, usize>,
    /// The topic's replica lists, changed in place.
    parts: &'a mut Vec<Vec<i32>>,
}

impl TopicPlan<'_> {
    /// Replicas of this topic per target broker.
    fn counts(&self) -> BTreeMap<i32, usize> {
        let mut counts: BTreeMap<i32, usize> = self.ids.iter().map(|&b| (b, 0)).collect();
        for b in self.parts.iter().flatten() {
            if let Some(c) = counts.get_mut(b) {
                *c += 1;
            }
        }
        counts
    }

    fn put(&mut self, partition: usize, slot: usize, to: i32) {
        let from = std::mem::replace(&mut self.parts[partition][slot], to);
        if let Some(c) = self.total.get_mut(&from) {
            *c -= 1;
        }
        *self.total.entry(to).or_default() += 1;
    }

    /// Pass 1: every replica on a leaving broker gets a target broker in its place.
    fn replace_leaving(&mut self) {
        let mut counts = self.counts();
        for p in 0..self.parts.len() {
            for slot in 0..self.parts[p].len() {
                if counts.contains_key(&self.parts[p][slot]) {
                    continue;
                }
                let others: Vec<i32> = self.parts[p]
                    .iter()
                    .enumerate()
                    .filter(|&(s, b)| s != slot && counts.contains_key(b))
                    .map(|(_, &b)| b)
                    .collect();
                let used: BTreeSet<usize> = others
                    .iter()
                    .filter_map(|b| self.racks.0.get(b).copied())
                    .collect();
                let to = self
                    .ids
                    .iter()
                    .copied()
                    .filter(|b| !self.parts[p].contains(b))
                    .min_by_key(|b| {
                        (
                            used.contains(&self.racks.0[b]),
                            counts[b],
                            self.total[b],
                            *b,
                        )
                    })
                    .expect("the replication factor was checked against the broker count");
                self.put(p, slot, to);
                *counts.get_mut(&to).expect("a target broker") += 1;
            }
        }
    }

    /// Pass 2: no broker holds two replicas of the topic more than another.
    fn spread_replicas(&mut self) {
        let mut counts = self.counts();
        loop {
            let Some(hi) = self
                .ids
                .iter()
                .copied()
                .max_by_key(|b| (counts[b], self.total[b], std::cmp::Reverse(*b)))
            else {
                return;
            };
            let lo = self
                .ids
                .iter()
                .copied()
                .min_by_key(|b| (counts[b], self.total[b], *b))
                .expect("at least one broker");
            if counts[&hi] <= counts[&lo] + 1 {
                return;
            }
            let (p, slot) = (0..self.parts.len())
                .filter(|&p| !self.parts[p].contains(&lo))
                .filter_map(|p| {
                    let slot = self.parts[p].iter().position(|&b| b == hi)?;
                    let mut moved = self.parts[p].clone();
                    moved[slot] = lo;
                    let loses_rack = self.racks.spread(&moved) < self.racks.spread(&self.parts[p]);
                    Some(((loses_rack, slot == 0, p), (p, slot)))
                })
                .min()
                .map(|(_, at)| at)
                .expect("a fuller broker is in a partition the emptier one is not in");
            self.put(p, slot, lo);
            *counts.get_mut(&hi).expect("a target broker") -= 1;
            *counts.get_mut(&lo).expect("a target broker") += 1;
        }
    }

    /// Pass 3: preferred leaderships shift along chains until none can even out further.
    fn spread_leaders(&mut self) {
        let mut leads: BTreeMap<i32, usize> = self.ids.iter().map(|&b| (b, 0)).collect();
        for p in self.parts.iter() {
            if let Some(c) = p.first().and_then(|b| leads.get_mut(b)) {
                *c += 1;
            }
        }
        while let Some(path) = self.leader_chain(&leads) {
            let (first, last) = (path[0].0, path.last().expect("a chain").1);
            for &(_, to, p) in &path {
                let slot = self.parts[p]
                    .iter()
                    .position(|&b| b == to)
                    .expect("the chain follows replicas");
                self.parts[p].swap(0, slot);
            }
            *leads.get_mut(&first).expect("a target broker") -= 1;
            *leads.get_mut(&last).expect("a target broker") += 1;
        }
    }

    /// The shortest chain of (leader, follower, partition) steps from a broker leading the
    /// most to one leading at least two fewer, if there is one.
    fn leader_chain(&self, leads: &BTreeMap<i32, usize>) -> Option<Vec<(i32, i32, usize)>> {
        let mut sources: Vec<i32> = self.ids.to_vec();
        sources.sort_by_key(|b| (std::cmp::Reverse(leads[b]), *b));
        for &source in &sources {
            // Breadth first, so the chain is as short as it can be.
            let mut came_from: BTreeMap<i32, (i32, usize)> = BTreeMap::new();
            let mut queue = VecDeque::from([source]);
            let mut best: Option<i32> = None;
            while let Some(a) = queue.pop_front() {
                if a != source
                    && leads[&a] + 2 <= leads[&source]
                    && best.is_none_or(|b| leads[&a] < leads[&b])
                {
                    best = Some(a);
                }
                for (p, replicas) in self.parts.iter().enumerate() {
                    if replicas.first() != Some(&a) {
                        continue;
                    }
                    for &b in &replicas[1..] {
                        if b != source && leads.contains_key(&b) && !came_from.contains_key(&b) {
                            came_from.insert(b, (a, p));
                            queue.push_back(b);
                        }
                    }
                }
            }
            if let Some(mut at) = best {
                let mut path = Vec::new();
                while at != source {
                    let (from, p) = came_from[&at];
                    path.push((from, at, p));
                    at = from;
                }
                path.reverse();
                return Some(path);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement;
    use proptest::prelude::*;

    fn plain(ids: impl IntoIterator<Item = i32>) -> Vec<Broker> {
        ids.into_iter()
            .map(|id| Broker { id, rack: None })
            .collect()
    }

    fn one(topic: &str, partitions: Vec<Vec<i32>>) -> Assignment {
        Assignment::from([(topic.to_string(), partitions)])
    }

    /// The largest difference between two brokers' counts of (replicas, preferred leaders)
    /// of `partitions`.
    fn spreads(partitions: &[Vec<i32>], brokers: &[Broker]) -> (usize, usize) {
        let (mut replicas, mut leaders) = (BTreeMap::new(), BTreeMap::new());
        for b in brokers {
            replicas.insert(b.id, 0usize);
            leaders.insert(b.id, 0usize);
        }
        for p in partitions {
            for b in p {
                *replicas.entry(*b).or_default() += 1;
            }
            *leaders.entry(p[0]).or_default() += 1;
        }
        let spread = |m: &BTreeMap<i32, usize>| {
            m.values().max().unwrap_or(&0) - m.values().min().unwrap_or(&0)
        };
        (spread(&replicas), spread(&leaders))
    }

    #[test]
    fn a_new_broker_takes_a_third_of_the_replicas_and_of_the_leaderships() {
        // Six partitions, RF 2, on brokers 0 and 1: each holds six replicas and leads three.
        let before = one(
            "t",
            (0..6)
                .map(|i| if i % 2 == 0 { vec![0, 1] } else { vec![1, 0] })
                .collect(),
        );
        let brokers = plain(0..3);
        let moves = plan(&before, &brokers).unwrap();
        let moved: usize = moves.iter().map(Move::replicas_moved).sum();
        assert_eq!(
            moved, 4,
            "broker 2 gets 12/3 replicas and nothing else: {moves:?}"
        );
        let after = apply(&before, &moves);
        assert_eq!(spreads(&after["t"], &brokers), (0, 0), "{after:?}");
        assert!(plan(&after, &brokers).unwrap().is_empty());
    }

    #[test]
    fn a_leaving_broker_is_drained_onto_the_others() {
        let before = one("t", vec![vec![0, 1], vec![1, 2], vec![2, 0]]);
        let brokers = plain(0..2);
        let moves = plan(&before, &brokers).unwrap();
        let after = apply(&before, &moves);
        assert!(after["t"].iter().all(|p| !p.contains(&2)), "{after:?}");
        assert_eq!(after["t"][0], vec![0, 1], "a partition off broker 2 stays");
        assert_eq!(moves.len(), 2);
        assert_eq!(
            replicas_outside(&before, &BTreeSet::from([0, 1])),
            BTreeMap::from([(2, 2)])
        );
        assert!(replicas_outside(&after, &BTreeSet::from([0, 1])).is_empty());
    }

    #[test]
    fn a_replication_factor_above_the_remaining_brokers_is_refused_by_topic() {
        let before = one("orders", vec![vec![0, 1, 2]]);
        let err = plan(&before, &plain(0..2)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "topic orders: replication factor 3 needs as many brokers, the cluster has 2"
        );
    }

    #[test]
    fn a_replacement_comes_from_the_rack_the_partition_lacks() {
        let brokers: Vec<Broker> = [(0, "a"), (1, "b"), (2, "a"), (3, "b")]
            .into_iter()
            .map(|(id, r)| Broker {
                id,
                rack: Some(r.into()),
            })
            .collect();
        // Broker 4 (rack b, leaving) is replaced by a rack-b broker even though rack a's
        // broker 2 holds nothing.
        let before = one("t", vec![vec![0, 4], vec![1, 2]]);
        let after = apply(&before, &plan(&before, &brokers).unwrap());
        assert_eq!(after["t"][0], vec![0, 3], "{after:?}");
    }

    #[test]
    fn topics_fill_the_brokers_evenly_as_a_whole() {
        // Three single-partition topics on broker 0 over three brokers: one each.
        let before: Assignment = ["a", "b", "c"]
            .into_iter()
            .map(|t| (t.to_string(), vec![vec![9]]))
            .collect();
        let after = apply(&before, &plan(&before, &plain(0..3)).unwrap());
        let used: BTreeSet<i32> = after.values().map(|ps| ps[0][0]).collect();
        assert_eq!(used, BTreeSet::from([0, 1, 2]), "{after:?}");
    }

    fn assignment_strategy() -> impl Strategy<Value = (usize, Assignment, usize)> {
        // (brokers before, assignment over them, brokers after)
        (1usize..7, 1usize..7).prop_flat_map(|(before, after)| {
            let topics = prop::collection::btree_map(
                "[a-d]",
                (1usize..=before).prop_flat_map(move |rf| {
                    prop::collection::vec(
                        Just((0..before as i32).collect::<Vec<_>>())
                            .prop_shuffle()
                            .prop_map(move |mut v| {
                                v.truncate(rf);
                                v
                            }),
                        1..12,
                    )
                }),
                1..4,
            );
            (Just(before), topics, Just(after))
        })
    }

    proptest! {
        #[test]
        fn a_plan_keeps_replication_factors_leaves_nothing_behind_and_balances_each_topic(
            (_, before, n) in assignment_strategy(),
        ) {
            let brokers = plain(0..n as i32);
            let widest = before.values().flatten().map(Vec::len).max().unwrap();
            let moves = match plan(&before, &brokers) {
                Ok(m) => m,
                Err(e) => {
                    prop_assert!(widest > n, "{}", e);
                    return Ok(());
                }
            };
            let after = apply(&before, &moves);
            for (topic, parts) in &after {
                for (p, q) in parts.iter().zip(&before[topic]) {
                    prop_assert_eq!(p.len(), q.len());
                    prop_assert_eq!(p.iter().collect::<BTreeSet<_>>().len(), p.len());
                    prop_assert!(p.iter().all(|b| (0..n as i32).contains(b)), "{:?}", p);
                }
                let (replicas, leaders) = spreads(parts, &brokers);
                prop_assert!(replicas <= 1, "{}: {:?}", topic, parts);
                prop_assert!(leaders <= 1, "{}: {:?}", topic, parts);
            }
            prop_assert!(plan(&after, &brokers).unwrap().is_empty(), "not idempotent: {:?}", after);
        }

        #[test]
        fn a_plan_moves_no_more_replicas_than_the_imbalance_and_the_leavers_need(
            (_, before, n) in assignment_strategy(),
        ) {
            let brokers = plain(0..n as i32);
            let Ok(moves) = plan(&before, &brokers) else { return Ok(()) };
            for (topic, parts) in &before {
                let total: usize = parts.iter().map(Vec::len).sum();
                let (floor, ceil) = (total / n, total.div_ceil(n));
                let mut counts = vec![0usize; n];
                let mut leaving = 0;
                for b in parts.iter().flatten() {
                    match counts.get_mut(*b as usize) {
                        Some(c) => *c += 1,
                        None => leaving += 1,
                    }
                }
                let excess: usize = counts.iter().map(|c| c.saturating_sub(ceil)).sum();
                let deficit: usize = counts.iter().map(|c| floor.saturating_sub(*c)).sum();
                let moved: usize = moves
                    .iter()
                    .filter(|m| &m.topic == topic)
                    .map(Move::replicas_moved)
                    .sum();
                prop_assert!(
                    moved <= leaving + excess + deficit,
                    "{}: moved {} > {} + {} + {}", topic, moved, leaving, excess, deficit
                );
            }
        }

        #[test]
        fn what_placement_balances_the_planner_leaves_alone(
            n in 1usize..8,
            rf_seed in 0usize..8,
            partitions in 1usize..40,
        ) {
            let rf = rf_seed % n + 1;
            let brokers = plain(0..n as i32);
            let placed = placement::assign(&brokers, &[], partitions, rf).unwrap();
            prop_assert!(plan(&one("t", placed), &brokers).unwrap().is_empty());
        }
    }
}
