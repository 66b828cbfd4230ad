//! What the active controller changes, as a pure function of the metadata image and which
//! brokers are alive: fence silent brokers and unfence heartbeating ones; take fenced brokers
//! out of every ISR; elect a new leader from the ISR (preferred replica order) where the
//! leader is fenced or missing; optionally move leadership back to preferred replicas; complete
//! partition reassignments whose target replicas have all joined the ISR. Every partition
//! change is a conditional record ([`MetadataRecord::AlterPartition`] or
//! [`MetadataRecord::ReassignPartition`]) made at the epochs read here, so one computed from a
//! stale image is ignored when applied.

use std::collections::BTreeSet;

use crate::cluster::image::{MetadataImage, PartitionImage};
use crate::cluster::metadata::MetadataRecord;
use crate::cluster::{replica_changes, topic_config};

/// Election policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// Elect a live replica outside the ISR when no ISR member is left: the broker's
    /// `unclean.leader.election.enable`, which a topic's own setting of the key overrides.
    pub unclean: bool,
    /// Move leadership to the preferred replica where it is in the ISR and live.
    pub rebalance: bool,
}

/// The records that bring `image` in line with who is alive.
pub fn decide(
    image: &MetadataImage,
    alive: &dyn Fn(i32) -> bool,
    policy: Policy,
) -> Vec<MetadataRecord> {
    let mut out = Vec::new();
    let mut usable = BTreeSet::new();
    for (id, b) in &image.brokers {
        let live = alive(*id);
        if live == b.fenced {
            out.push(MetadataRecord::FenceBroker {
                id: *id,
                fenced: !live,
            });
        }
        if live {
            usable.insert(*id);
        }
    }
    for (topic, t) in &image.topics {
        let policy = Policy {
            unclean: topic_config::unclean_leader_election_enable(&t.configs, policy.unclean),
            ..policy
        };
        for (index, p) in &t.assignment {
            if let Some((leader, isr)) = elect(p, &usable, policy) {
                out.push(alter(topic, *index, p, leader, isr));
            } else if let Some(done) = replica_changes::complete(p, &|b| usable.contains(&b)) {
                // Only once the partition needs no election: both would be made at the same
                // epochs, and the second would be ignored.
                out.push(replica_changes::change_record(topic, *index, p, &done));
            }
        }
    }
    out
}

/// Only the partitions led by `broker`, handed to other ISR members (controlled shutdown):
/// `broker` counts as fenced for them.
pub fn move_leaderships_off(image: &MetadataImage, broker: i32) -> Vec<MetadataRecord> {
    let usable: BTreeSet<i32> = image
        .brokers
        .iter()
        .filter(|(id, b)| **id != broker && !b.fenced)
        .map(|(id, _)| *id)
        .collect();
    let mut out = Vec::new();
    for (topic, t) in &image.topics {
        for (index, p) in &t.assignment {
            if !p.replicas.contains(&broker) {
                continue;
            }
            let Some((leader, isr)) = elect(p, &usable, Policy::default()) else {
                continue;
            };
            // Leave a partition only this broker can lead as it is: taking it offline now
            // would refuse writes a moment early and gain nothing.
            if leader < 0 {
                continue;
            }
            out.push(alter(topic, *index, p, leader, isr));
        }
    }
    out
}

/// The conditional record giving partition `index` of `topic` a new leader and ISR, made at
/// the epochs of `p`.
fn alter(
    topic: &str,
    index: i32,
    p: &PartitionImage,
    leader: i32,
    isr: Vec<i32>,
) -> MetadataRecord {
    MetadataRecord::AlterPartition {
        topic: topic.to_string(),
        partition: index,
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
        leader,
        isr,
    }
}

/// The new (leader, ISR) of one partition, or `None` when it needs no change.
fn elect(p: &PartitionImage, usable: &BTreeSet<i32>, policy: Policy) -> Option<(i32, Vec<i32>)> {
    let live_isr: Vec<i32> = p
        .isr
        .iter()
        .copied()
        .filter(|r| usable.contains(r))
        .collect();
    let leader_ok = p.leader >= 0 && live_isr.contains(&p.leader);
    if leader_ok {
        let preferred = p.replicas.first().copied();
        if let Some(pref) = preferred.filter(|r| policy.rebalance && *r != p.leader) {
            if live_isr.contains(&pref) {
                return Some((pref, live_isr));
            }
        }
        return (live_isr != p.isr).then_some((p.leader, live_isr));
    }
    if let Some(next) = p.replicas.iter().copied().find(|r| live_isr.contains(r)) {
        return Some((next, live_isr));
    }
    if policy.unclean {
        if let Some(next) = p.replicas.iter().copied().find(|r| usable.contains(r)) {
            return Some((next, vec![next]));
        }
    }
    // Nobody may lead: the partition goes offline, its ISR kept so that the first of them to
    // come back leads again.
    (p.leader != -1).then(|| (-1, p.isr.clone()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::cluster::image::{BrokerImage, TopicImage};

    /// A topic "t" whose partitions have these (replicas, leader, ISR), on these (broker,
    /// fenced) brokers.
    fn image(brokers: &[(i32, bool)], parts: &[(Vec<i32>, i32, Vec<i32>)]) -> MetadataImage {
        let mut img = MetadataImage::default();
        for (id, fenced) in brokers {
            img.brokers.insert(
                *id,
                BrokerImage {
                    host: "h".into(),
                    port: 1,
                    endpoints: Vec::new(),
                    rack: None,
                    fenced: *fenced,
                },
            );
        }
        let assignment: BTreeMap<i32, PartitionImage> = parts
            .iter()
            .enumerate()
            .map(|(i, (replicas, leader, isr))| {
                (
                    i as i32,
                    PartitionImage {
                        replicas: replicas.clone(),
                        leader: *leader,
                        leader_epoch: 3,
                        isr: isr.clone(),
                        partition_epoch: 7,
                        ..PartitionImage::default()
                    },
                )
            })
            .collect();
        img.topics.insert(
            "t".into(),
            TopicImage {
                id: uuid::Uuid::nil(),
                partitions: parts.len() as i32,
                replication_factor: 3,
                configs: BTreeMap::new(),
                assignment,
            },
        );
        img
    }

    fn alters(records: &[MetadataRecord]) -> Vec<(i32, i32, Vec<i32>)> {
        records
            .iter()
            .filter_map(|r| match r {
                MetadataRecord::AlterPartition {
                    partition,
                    leader,
                    isr,
                    leader_epoch: 3,
                    partition_epoch: 7,
                    ..
                } => Some((*partition, *leader, isr.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_silent_leader_is_fenced_and_replaced_from_the_isr_in_preference_order() {
        let img = image(
            &[(1, false), (2, false), (3, false)],
            &[
                (vec![1, 2, 3], 1, vec![1, 2, 3]),
                (vec![2, 3, 1], 2, vec![2, 3, 1]),
                (vec![3, 1, 2], 3, vec![3, 2]),
            ],
        );
        let out = decide(&img, &|b| b != 1, Policy::default());
        assert_eq!(
            out[0],
            MetadataRecord::FenceBroker {
                id: 1,
                fenced: true
            }
        );
        assert_eq!(
            alters(&out),
            vec![(0, 2, vec![2, 3]), (1, 2, vec![2, 3])],
            "partition 2 has neither 1 as leader nor in its ISR: unchanged"
        );
    }

    #[test]
    fn with_no_isr_member_left_the_partition_goes_offline_and_returns_with_it() {
        let img = image(&[(1, false), (2, false)], &[(vec![1, 2], 1, vec![1])]);
        let out = decide(&img, &|b| b == 2, Policy::default());
        assert_eq!(alters(&out), vec![(0, -1, vec![1])], "2 is out of sync");
        let unclean = decide(
            &img,
            &|b| b == 2,
            Policy {
                unclean: true,
                rebalance: false,
            },
        );
        assert_eq!(alters(&unclean), vec![(0, 2, vec![2])]);

        let offline = image(&[(1, true), (2, false)], &[(vec![1, 2], -1, vec![1])]);
        let back = decide(&offline, &|_| true, Policy::default());
        assert_eq!(
            back[0],
            MetadataRecord::FenceBroker {
                id: 1,
                fenced: false
            }
        );
        assert_eq!(alters(&back), vec![(0, 1, vec![1])]);
    }

    #[test]
    fn a_topics_unclean_election_setting_overrides_the_brokers() {
        let unclean = |topic: &str, broker: bool| {
            let mut img = image(&[(1, false), (2, false)], &[(vec![1, 2], 1, vec![1])]);
            let t = img.topics.get_mut("t").expect("t");
            t.configs
                .insert("unclean.leader.election.enable".into(), topic.into());
            let policy = Policy {
                unclean: broker,
                rebalance: false,
            };
            alters(&decide(&img, &|b| b == 2, policy))
        };
        assert_eq!(
            unclean("true", false),
            vec![(0, 2, vec![2])],
            "the topic allows it: 2, out of sync but alive, leads"
        );
        assert_eq!(
            unclean("false", true),
            vec![(0, -1, vec![1])],
            "the topic forbids it: offline until 1 returns"
        );
    }

    #[test]
    fn nothing_changes_when_everyone_is_alive_and_rebalancing_is_off() {
        let img = image(
            &[(1, false), (2, false)],
            &[(vec![1, 2], 2, vec![2, 1]), (vec![2, 1], 2, vec![2])],
        );
        assert!(decide(&img, &|_| true, Policy::default()).is_empty());
        let out = decide(
            &img,
            &|_| true,
            Policy {
                unclean: false,
                rebalance: true,
            },
        );
        assert_eq!(alters(&out), vec![(0, 1, vec![2, 1])], "preferred back");
    }

    #[test]
    fn a_reassignment_completes_once_every_target_replica_is_in_the_isr() {
        let mut img = image(
            &[(1, false), (2, false), (3, false)],
            &[
                (vec![2, 3, 1], 1, vec![1, 2]),
                (vec![2, 3, 1], 1, vec![1, 2, 3]),
            ],
        );
        for p in img.topics.get_mut("t").expect("t").assignment.values_mut() {
            p.adding = vec![3];
            p.removing = vec![1];
        }
        let out = decide(&img, &|_| true, Policy::default());
        assert_eq!(
            out,
            vec![MetadataRecord::ReassignPartition {
                topic: "t".into(),
                partition: 1,
                leader_epoch: 3,
                partition_epoch: 7,
                replicas: vec![2, 3],
                adding: vec![],
                removing: vec![],
                leader: 2,
                isr: vec![2, 3],
            }],
            "partition 0 waits for 3 to catch up"
        );
        let out = decide(&img, &|b| b != 2, Policy::default());
        assert_eq!(
            alters(&out),
            vec![(0, 1, vec![1]), (1, 1, vec![1, 3])],
            "an ISR change first; the completion waits for the next tick"
        );
    }

    #[test]
    fn controlled_shutdown_moves_leaderships_but_never_takes_a_partition_offline() {
        let img = image(
            &[(1, false), (2, false), (3, false)],
            &[
                (vec![1, 2, 3], 1, vec![1, 2, 3]),
                (vec![1, 2], 1, vec![1]),
                (vec![2, 1], 2, vec![2, 1]),
                (vec![2, 3], 2, vec![2, 3]),
            ],
        );
        let out = move_leaderships_off(&img, 1);
        assert_eq!(
            alters(&out),
            vec![(0, 2, vec![2, 3]), (2, 2, vec![2])],
            "partition 1 has no other ISR member; 3 does not involve broker 1"
        );
    }
}
