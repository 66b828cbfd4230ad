//! Replica placement for a KafkaTopic's new partitions, computed by the operator so a topic's
//! leaders and replicas are balanced over the brokers and spread over racks, whatever the
//! broker's own default would be.
//!
//! Greedy and deterministic. Each new partition's leader (its first, preferred replica) is the
//! broker leading the fewest partitions of the topic, then the one holding the fewest replicas
//! (of it, then of its rack). Each follower comes from a rack the partition does not use yet
//! while there is one, and is the broker holding the fewest replicas (of it, then of its rack),
//! then one that already leads more (it will not be picked as a leader soon, so the brokers
//! still due a leadership keep room for the replica it brings), then one that follows this
//! leader least often (so one leader's partitions fail over to different brokers), then the
//! next after the leader in id order. The topic's existing partitions count in every tally, so
//! growing a topic fills the brokers that hold least of it.
//!
//! Kafka's `assignReplicasToBrokers` is a round-robin from a random start that ignores the
//! topic's existing partitions; this keeps its rack rule (no two replicas of a partition in one
//! rack while racks remain) and, on racks of equal size, keeps every broker's leader count and
//! replica count within one of every other's (property-tested below).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

/// A broker as placement sees it: what Metadata reports. A broker without a rack shares no rack
/// with any other.
pub use gregor_client::admin::Broker;

/// Why partitions cannot be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// A partition needs at least one replica.
    #[error("the replication factor must be at least 1")]
    NoReplicas,
    /// Every replica of a partition needs its own broker.
    #[error(
        "replication factor {replication_factor} needs as many brokers, the cluster has \
         {brokers}"
    )]
    NotEnoughBrokers {
        /// Replicas asked for per partition.
        replication_factor: usize,
        /// Brokers available.
        brokers: usize,
    },
}

/// Replica lists for `count` new partitions of `replication_factor` replicas each, over
/// `brokers`, given the topic's `existing` partitions (replica lists by partition index,
/// leader first). Replicas on brokers missing from `brokers` are not counted.
pub fn assign(
    brokers: &[Broker],
    existing: &[Vec<i32>],
    count: usize,
    replication_factor: usize,
) -> Result<Vec<Vec<i32>>, PlacementError> {
    let mut brokers: Vec<&Broker> = brokers.iter().collect();
    brokers.sort_by_key(|b| b.id);
    brokers.dedup_by_key(|b| b.id);
    if replication_factor == 0 {
        return Err(PlacementError::NoReplicas);
    }
    if replication_factor > brokers.len() {
        return Err(PlacementError::NotEnoughBrokers {
            replication_factor,
            brokers: brokers.len(),
        });
    }
    let n = brokers.len();
    let mut tally = Tally::new(&brokers);
    let position: BTreeMap<i32, usize> = (0..n).map(|i| (brokers[i].id, i)).collect();
    for replicas in existing {
        tally.add(
            &replicas
                .iter()
                .map(|id| position.get(id).copied())
                .collect::<Vec<_>>(),
        );
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let leader = (0..n)
            .min_by_key(|&b| (tally.leaders[b], tally.replicas[b], tally.rack_load(b), b))
            .expect("at least one broker");
        let mut chosen = vec![leader];
        while chosen.len() < replication_factor {
            let used: BTreeSet<usize> = chosen.iter().filter_map(|&b| tally.rack[b]).collect();
            let free: Vec<usize> = (0..n).filter(|b| !chosen.contains(b)).collect();
            let new_rack: Vec<usize> = free
                .iter()
                .copied()
                .filter(|&b| tally.rack[b].is_none_or(|r| !used.contains(&r)))
                .collect();
            let pool = if new_rack.is_empty() { free } else { new_rack };
            // Fewest replicas first; among equals, a broker that leads more, so the brokers
            // still due a leadership keep room for the replica it brings.
            let follower = pool
                .into_iter()
                .min_by_key(|&b| {
                    (
                        tally.replicas[b],
                        tally.rack_load(b),
                        Reverse(tally.leaders[b]),
                        tally.following[leader][b],
                        (b + n - leader) % n,
                    )
                })
                .expect("replication factor checked against the broker count");
            chosen.push(follower);
        }
        tally.add(&chosen.iter().map(|&b| Some(b)).collect::<Vec<_>>());
        out.push(chosen.iter().map(|&b| brokers[b].id).collect());
    }
    Ok(out)
}

/// Per-broker counts over the topic's partitions, by broker position (brokers sorted by id).
struct Tally {
    /// Each broker's rack, as an index into `rack_replicas`.
    rack: Vec<Option<usize>>,
    /// Partitions each broker leads (is the first replica of).
    leaders: Vec<usize>,
    /// Replicas each broker holds.
    replicas: Vec<usize>,
    /// Replicas each rack holds, so racks fill evenly too.
    rack_replicas: Vec<usize>,
    /// `following[l][f]`: partitions led by `l` that `f` follows, so the partitions of one
    /// leader fail over to different brokers.
    following: Vec<Vec<usize>>,
}

impl Tally {
    fn new(brokers: &[&Broker]) -> Tally {
        let n = brokers.len();
        let racks: BTreeSet<&str> = brokers.iter().filter_map(|b| b.rack.as_deref()).collect();
        let index: BTreeMap<&str, usize> =
            racks.into_iter().enumerate().map(|(i, r)| (r, i)).collect();
        Tally {
            rack: brokers
                .iter()
                .map(|b| b.rack.as_deref().map(|r| index[r]))
                .collect(),
            leaders: vec![0; n],
            replicas: vec![0; n],
            rack_replicas: vec![0; index.len()],
            following: vec![vec![0; n]; n],
        }
    }

    /// Replicas in broker `b`'s rack (its own, when it has none).
    fn rack_load(&self, b: usize) -> usize {
        self.rack[b].map_or(self.replicas[b], |r| self.rack_replicas[r])
    }

    /// Counts one partition; `None` stands for a replica on a broker placement does not know.
    fn add(&mut self, replicas: &[Option<usize>]) {
        for &b in replicas.iter().flatten() {
            self.replicas[b] += 1;
            if let Some(r) = self.rack[b] {
                self.rack_replicas[r] += 1;
            }
        }
        if let Some(Some(leader)) = replicas.first() {
            self.leaders[*leader] += 1;
            for &f in replicas[1..].iter().flatten() {
                self.following[*leader][f] += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn plain(ids: &[i32]) -> Vec<Broker> {
        ids.iter().map(|&id| Broker { id, rack: None }).collect()
    }

    fn racked(spec: &[(i32, &str)]) -> Vec<Broker> {
        spec.iter()
            .map(|&(id, rack)| Broker {
                id,
                rack: Some(rack.into()),
            })
            .collect()
    }

    /// (leaders, replicas) per broker id over `assignment`.
    fn counts(assignment: &[Vec<i32>]) -> (BTreeMap<i32, usize>, BTreeMap<i32, usize>) {
        let (mut leaders, mut replicas) = (BTreeMap::new(), BTreeMap::new());
        for p in assignment {
            *leaders.entry(p[0]).or_default() += 1;
            for b in p {
                *replicas.entry(*b).or_default() += 1;
            }
        }
        (leaders, replicas)
    }

    fn spread(counts: &BTreeMap<i32, usize>, brokers: &[Broker]) -> usize {
        let all: Vec<usize> = brokers
            .iter()
            .map(|b| counts.get(&b.id).copied().unwrap_or(0))
            .collect();
        all.iter().max().unwrap() - all.iter().min().unwrap()
    }

    /// Whether every broker's leader and replica counts are within one of every other's.
    fn balanced(assignment: &[Vec<i32>], brokers: &[Broker]) -> bool {
        let (leaders, replicas) = counts(assignment);
        spread(&leaders, brokers) <= 1 && spread(&replicas, brokers) <= 1
    }

    #[test]
    fn three_partitions_on_three_brokers_give_each_broker_one_leadership() {
        let a = assign(&plain(&[0, 1, 2]), &[], 3, 3).unwrap();
        assert_eq!(a, vec![vec![0, 1, 2], vec![1, 0, 2], vec![2, 0, 1]]);
        let a = assign(&plain(&[0, 1, 2]), &[], 3, 1).unwrap();
        assert_eq!(a, vec![vec![0], vec![1], vec![2]]);
    }

    #[test]
    fn the_partitions_of_one_leader_fail_over_to_different_brokers() {
        let a = assign(&plain(&[0, 1, 2]), &[], 6, 2).unwrap();
        let pairs: BTreeSet<(i32, i32)> = a.iter().map(|p| (p[0], p[1])).collect();
        assert_eq!(pairs.len(), 6, "every ordered pair once: {a:?}");
        let (leaders, replicas) = counts(&a);
        assert!(leaders.values().all(|&c| c == 2), "{a:?}");
        assert!(replicas.values().all(|&c| c == 4), "{a:?}");
    }

    #[test]
    fn growth_fills_the_brokers_that_hold_least_of_the_topic() {
        // Two partitions led by 0 and 1: the third is led by 2 and follows onto 0 or 1,
        // whichever holds fewer replicas (0 holds one, 1 holds two).
        let existing = vec![vec![0, 1], vec![1, 2]];
        let a = assign(&plain(&[0, 1, 2]), &existing, 1, 2).unwrap();
        assert_eq!(a, vec![vec![2, 0]]);
    }

    #[test]
    fn a_new_broker_takes_the_new_partitions_of_a_topic_first() {
        let brokers = plain(&[0, 1, 2]);
        let mut all = vec![vec![0, 1], vec![1, 0]];
        let a = assign(&brokers, &all, 2, 2).unwrap();
        assert!(
            a.iter().all(|p| p[0] == 2),
            "broker 2 leads nothing yet: {a:?}"
        );
        all.extend(a);
        assert!(balanced(&all, &brokers), "{all:?}");
    }

    #[test]
    fn replicas_on_brokers_that_are_gone_do_not_count() {
        let a = assign(&plain(&[0, 1]), &[vec![7, 0]], 1, 1).unwrap();
        assert_eq!(a, vec![vec![1]]);
    }

    #[test]
    fn replicas_of_a_partition_use_every_rack_before_sharing_one() {
        let brokers = racked(&[(0, "a"), (1, "a"), (2, "b"), (3, "b"), (4, "c"), (5, "c")]);
        let rack = |id: i32| brokers.iter().find(|b| b.id == id).unwrap().rack.clone();
        for p in assign(&brokers, &[], 12, 3).unwrap() {
            let racks: BTreeSet<_> = p.iter().map(|&b| rack(b)).collect();
            assert_eq!(racks.len(), 3, "{p:?}");
        }
        // Four replicas over three racks: every rack, and one of them twice.
        for p in assign(&brokers, &[], 6, 4).unwrap() {
            let racks: BTreeSet<_> = p.iter().map(|&b| rack(b)).collect();
            assert_eq!(racks.len(), 3, "{p:?}");
        }
    }

    #[test]
    fn a_rack_with_one_broker_still_gets_a_replica_of_every_partition() {
        let brokers = racked(&[(0, "a"), (1, "a"), (2, "a"), (3, "b")]);
        let a = assign(&brokers, &[], 4, 2).unwrap();
        assert!(a.iter().all(|p| p.contains(&3)), "{a:?}");
        let (leaders, _) = counts(&a);
        assert_eq!(spread(&leaders, &brokers), 0, "leaders stay spread: {a:?}");
    }

    #[test]
    fn more_replicas_than_brokers_is_refused_by_name() {
        let err = assign(&plain(&[0, 1]), &[], 1, 3).unwrap_err();
        assert_eq!(
            err,
            PlacementError::NotEnoughBrokers {
                replication_factor: 3,
                brokers: 2
            }
        );
        assert_eq!(
            err.to_string(),
            "replication factor 3 needs as many brokers, the cluster has 2"
        );
        assert_eq!(
            assign(&[], &[], 1, 1).unwrap_err(),
            PlacementError::NotEnoughBrokers {
                replication_factor: 1,
                brokers: 0
            }
        );
        assert_eq!(
            assign(&plain(&[0]), &[], 1, 0).unwrap_err(),
            PlacementError::NoReplicas
        );
    }

    #[test]
    fn the_same_inputs_give_the_same_assignment() {
        let brokers = plain(&[5, 3, 9, 1]);
        let existing = vec![vec![3, 9], vec![9, 1]];
        assert_eq!(
            assign(&brokers, &existing, 5, 2).unwrap(),
            assign(&brokers, &existing, 5, 2).unwrap()
        );
    }

    proptest! {
        #[test]
        fn a_new_topic_is_balanced_in_leaders_and_replicas(
            n in 1usize..9,
            rf_seed in 0usize..9,
            partitions in 1usize..60,
        ) {
            let rf = rf_seed % n + 1;
            let brokers: Vec<Broker> = (0..n as i32).map(|id| Broker { id: id * 10, rack: None }).collect();
            let a = assign(&brokers, &[], partitions, rf).unwrap();
            prop_assert_eq!(a.len(), partitions);
            for p in &a {
                let distinct: BTreeSet<_> = p.iter().collect();
                prop_assert_eq!(distinct.len(), rf);
            }
            prop_assert!(balanced(&a, &brokers), "{:?}", a);
        }

        #[test]
        fn growing_a_balanced_topic_keeps_it_balanced(
            n in 1usize..7,
            rf_seed in 0usize..7,
            first in 1usize..20,
            more in 1usize..20,
        ) {
            let rf = rf_seed % n + 1;
            let brokers: Vec<Broker> = (0..n as i32).map(|id| Broker { id, rack: None }).collect();
            let mut all = assign(&brokers, &[], first, rf).unwrap();
            all.extend(assign(&brokers, &all, more, rf).unwrap());
            prop_assert!(balanced(&all, &brokers), "{:?}", all);
        }

        #[test]
        fn even_racks_hold_at_most_one_replica_of_a_partition_each(
            racks in 1usize..5,
            per_rack in 1usize..4,
            rf_seed in 0usize..5,
            partitions in 1usize..40,
        ) {
            let rf = rf_seed % racks + 1;
            let brokers: Vec<Broker> = (0..racks * per_rack)
                .map(|i| Broker { id: i as i32, rack: Some(format!("r{}", i % racks)) })
                .collect();
            let a = assign(&brokers, &[], partitions, rf).unwrap();
            for p in &a {
                let used: BTreeSet<_> = p.iter().map(|&b| b as usize % racks).collect();
                prop_assert_eq!(used.len(), rf, "{:?}", p);
            }
            prop_assert!(balanced(&a, &brokers), "{:?}", a);
        }
    }
}
