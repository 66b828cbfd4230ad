//! Replica placement for new topics and partitions, following Apache Kafka's assignment
//! (`AdminUtils.assignReplicasToBrokers`): partition leaders go round-robin over the brokers
//! from a start index, followers are shifted so replica sets spread, and when brokers carry a
//! rack the broker list is interleaved by rack and no two replicas of a partition share a rack
//! while racks remain. The first replica is the preferred leader, so with as many partitions as
//! brokers every broker leads one. Pure: the caller supplies the brokers and the start index.

use std::collections::{BTreeMap, BTreeSet};

/// A broker as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementBroker {
    /// Broker (node) id.
    pub id: i32,
    /// `broker.rack`, if set.
    pub rack: Option<String>,
}

/// Why replicas could not be placed (INVALID_REPLICATION_FACTOR / INVALID_PARTITIONS).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// Replication factor below 1.
    #[error("replication factor must be at least 1, got {0}")]
    ReplicationFactorTooSmall(i16),
    /// More replicas than brokers.
    #[error("replication factor {factor} is larger than the {brokers} available brokers")]
    NotEnoughBrokers {
        /// The replication factor asked for.
        factor: i16,
        /// Live brokers.
        brokers: usize,
    },
    /// Partition count below 1.
    #[error("number of partitions must be at least 1, got {0}")]
    TooFewPartitions(i32),
    /// Some brokers have a rack and some do not.
    #[error("brokers {0:?} have no broker.rack while others do; set it on all brokers or none")]
    MixedRacks(Vec<i32>),
}

/// Replica lists for `partitions` new partitions numbered from `first_partition`, over
/// `brokers`, starting leaders at `start_index` (Kafka picks it at random; tests fix it).
pub fn assign_replicas(
    brokers: &[PlacementBroker],
    partitions: i32,
    replication_factor: i16,
    first_partition: i32,
    start_index: usize,
) -> Result<Vec<Vec<i32>>, PlacementError> {
    if replication_factor < 1 {
        return Err(PlacementError::ReplicationFactorTooSmall(
            replication_factor,
        ));
    }
    if partitions < 1 {
        return Err(PlacementError::TooFewPartitions(partitions));
    }
    let rf = replication_factor as usize;
    if rf > brokers.len() {
        return Err(PlacementError::NotEnoughBrokers {
            factor: replication_factor,
            brokers: brokers.len(),
        });
    }
    let with_rack = brokers.iter().filter(|b| b.rack.is_some()).count();
    if with_rack > 0 && with_rack < brokers.len() {
        let mut missing: Vec<i32> = brokers
            .iter()
            .filter(|b| b.rack.is_none())
            .map(|b| b.id)
            .collect();
        missing.sort_unstable();
        return Err(PlacementError::MixedRacks(missing));
    }
    let arranged = if with_rack > 0 {
        rack_alternated(brokers)
    } else {
        let mut ids: Vec<&PlacementBroker> = brokers.iter().collect();
        ids.sort_by_key(|b| b.id);
        ids
    };
    let n = arranged.len();
    let racks: BTreeSet<&str> = arranged.iter().filter_map(|b| b.rack.as_deref()).collect();
    let start = start_index % n;
    let mut shift = start;
    let mut out = Vec::with_capacity(partitions as usize);
    for i in 0..partitions {
        let p = (first_partition.max(0) + i) as usize;
        if p > 0 && p % n == 0 {
            shift += 1;
        }
        let first = (p + start) % n;
        let mut replicas = vec![arranged[first]];
        if racks.is_empty() {
            for j in 0..rf - 1 {
                replicas.push(arranged[follower_index(first, shift, j, n)]);
            }
        } else {
            let mut k = 0;
            while replicas.len() < rf {
                let candidate = arranged[follower_index(first, shift * racks.len(), k, n)];
                k += 1;
                let used_racks: BTreeSet<&str> =
                    replicas.iter().filter_map(|b| b.rack.as_deref()).collect();
                let rack_ok = candidate
                    .rack
                    .as_deref()
                    .is_some_and(|r| !used_racks.contains(r))
                    || used_racks.len() == racks.len();
                let broker_ok = !replicas.iter().any(|b| b.id == candidate.id);
                if rack_ok && broker_ok {
                    replicas.push(candidate);
                }
            }
        }
        out.push(replicas.iter().map(|b| b.id).collect());
    }
    Ok(out)
}

fn follower_index(first: usize, shift: usize, j: usize, n: usize) -> usize {
    if n == 1 {
        return first;
    }
    (first + 1 + (shift + j) % (n - 1)) % n
}

/// Brokers interleaved by rack: racks in name order, brokers by id within a rack, then one
/// from each rack in turn, so consecutive brokers sit in different racks.
fn rack_alternated(brokers: &[PlacementBroker]) -> Vec<&PlacementBroker> {
    let mut by_rack: BTreeMap<&str, Vec<&PlacementBroker>> = BTreeMap::new();
    for b in brokers {
        by_rack
            .entry(b.rack.as_deref().unwrap_or_default())
            .or_default()
            .push(b);
    }
    for v in by_rack.values_mut() {
        v.sort_by_key(|b| b.id);
    }
    let mut out = Vec::with_capacity(brokers.len());
    let mut round = 0;
    while out.len() < brokers.len() {
        for v in by_rack.values() {
            if let Some(b) = v.get(round) {
                out.push(*b);
            }
        }
        round += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn brokers(n: i32) -> Vec<PlacementBroker> {
        (1..=n)
            .map(|id| PlacementBroker { id, rack: None })
            .collect()
    }

    fn racked(spec: &[(i32, &str)]) -> Vec<PlacementBroker> {
        spec.iter()
            .map(|(id, r)| PlacementBroker {
                id: *id,
                rack: Some(r.to_string()),
            })
            .collect()
    }

    #[test]
    fn three_partitions_on_three_brokers_give_each_broker_one_leadership() {
        let a = assign_replicas(&brokers(3), 3, 3, 0, 0).expect("placed");
        let leaders: BTreeSet<i32> = a.iter().map(|r| r[0]).collect();
        assert_eq!(leaders.len(), 3);
        assert!(a
            .iter()
            .all(|r| r.iter().collect::<BTreeSet<_>>().len() == 3));
    }

    #[test]
    fn six_partitions_on_three_brokers_give_two_leaderships_each() {
        let a = assign_replicas(&brokers(3), 6, 2, 0, 1).expect("placed");
        let mut count = BTreeMap::new();
        for r in &a {
            *count.entry(r[0]).or_insert(0) += 1;
        }
        assert_eq!(count.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
    }

    #[test]
    fn kafka_reference_assignment_without_racks() {
        // AdminUtils' documented example: 5 brokers, 10 partitions, RF 3, start index 0.
        let a = assign_replicas(&brokers(5), 10, 3, 0, 0).expect("placed");
        let ids = |v: &[i32]| v.iter().map(|b| b - 1).collect::<Vec<_>>();
        assert_eq!(ids(&a[0]), vec![0, 1, 2]);
        assert_eq!(ids(&a[1]), vec![1, 2, 3]);
        assert_eq!(ids(&a[4]), vec![4, 0, 1]);
        assert_eq!(ids(&a[5]), vec![0, 2, 3]);
        assert_eq!(ids(&a[9]), vec![4, 1, 2]);
    }

    #[test]
    fn racks_are_spread_before_any_repeats() {
        let b = racked(&[(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c")]);
        for r in assign_replicas(&b, 12, 3, 0, 2).expect("placed") {
            let racks: BTreeSet<&str> = r
                .iter()
                .map(|id| {
                    b.iter()
                        .find(|x| x.id == *id)
                        .and_then(|x| x.rack.as_deref())
                        .unwrap_or("")
                })
                .collect();
            assert_eq!(racks.len(), 3, "{r:?}");
        }
    }

    #[test]
    fn bad_requests_are_refused_with_kafka_style_reasons() {
        assert_eq!(
            assign_replicas(&brokers(2), 1, 3, 0, 0),
            Err(PlacementError::NotEnoughBrokers {
                factor: 3,
                brokers: 2
            })
        );
        assert!(assign_replicas(&brokers(2), 0, 1, 0, 0).is_err());
        assert!(assign_replicas(&brokers(2), 1, 0, 0, 0).is_err());
        let mut mixed = racked(&[(1, "a")]);
        mixed.push(PlacementBroker { id: 2, rack: None });
        assert_eq!(
            assign_replicas(&mixed, 1, 1, 0, 0),
            Err(PlacementError::MixedRacks(vec![2]))
        );
    }

    proptest! {
        #[test]
        fn replicas_are_distinct_and_leaders_balanced(
            n in 1i32..8, partitions in 1i32..40, rf_pick in 0i16..8, start in 0usize..16, racks in 0usize..4,
        ) {
            let rf = 1 + rf_pick % (n as i16);
            let bs: Vec<PlacementBroker> = (1..=n)
                .map(|id| PlacementBroker {
                    id,
                    rack: (racks > 0).then(|| format!("r{}", id as usize % racks)),
                })
                .collect();
            let a = assign_replicas(&bs, partitions, rf, 0, start).expect("placed");
            prop_assert_eq!(a.len(), partitions as usize);
            let mut lead = BTreeMap::new();
            for r in &a {
                prop_assert_eq!(r.len(), rf as usize);
                prop_assert_eq!(r.iter().collect::<BTreeSet<_>>().len(), rf as usize);
                *lead.entry(r[0]).or_insert(0i32) += 1;
            }
            let (min, max) = (lead.values().min().copied().unwrap_or(0), lead.values().max().copied().unwrap_or(0));
            prop_assert!(max - min <= 1, "leaders {:?}", lead);
        }
    }
}
