//! What a partition reassignment, its cancellation, its completion and an admin leader
//! election do to one partition's state, as pure functions of the committed state (Kafka's
//! `ReplicationControlManager` and `PartitionChangeBuilder` rules). The cluster commits what
//! they return as conditional records ([`change_record`]); the active controller completes
//! reassignments with [`complete`].
//!
//! A reassignment to `target` makes the replicas `target` followed by the current replicas not
//! in it, with `adding` and `removing` recording the difference. The added replicas fetch and
//! join the ISR; once every target replica is in it, the replicas become the target, the ISR
//! loses the removed ones, and the leader moves to a target replica if it was being removed.
//! Cancelling takes out what the reassignment was adding and keeps what it was removing.

use std::collections::{BTreeMap, BTreeSet};

use super::image::{BrokerImage, PartitionImage};
use super::metadata::MetadataRecord;
use super::AdminError;

/// Kafka's ElectLeaders `election_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionType {
    /// 0: move leadership to the preferred (first) replica where it is in the ISR and
    /// unfenced.
    Preferred,
    /// 1: give a partition without a leader one, from outside the ISR if no ISR member can
    /// lead (data written only to the old ISR may be lost).
    Unclean,
}

impl ElectionType {
    /// The type for a wire code, or `None` for a code Kafka does not define.
    pub fn from_code(code: i8) -> Option<ElectionType> {
        match code {
            0 => Some(ElectionType::Preferred),
            1 => Some(ElectionType::Unclean),
            _ => None,
        }
    }
}

/// Checks a reassignment target (Kafka's `validateManualPartitionAssignment`): not empty, no
/// broker twice, every broker registered.
pub fn validate_target(
    target: &[i32],
    brokers: &BTreeMap<i32, BrokerImage>,
) -> Result<(), AdminError> {
    if target.is_empty() {
        return Err(AdminError::InvalidReplicaAssignment(
            "the replica assignment is an empty replica list".into(),
        ));
    }
    let mut seen = BTreeSet::new();
    for b in target {
        if !brokers.contains_key(b) {
            return Err(AdminError::InvalidReplicaAssignment(format!(
                "the replica assignment includes broker {b}, but no such broker is registered"
            )));
        }
        if !seen.insert(*b) {
            return Err(AdminError::InvalidReplicaAssignment(format!(
                "the replica assignment includes broker {b} more than once"
            )));
        }
    }
    Ok(())
}

/// Checks KIP-860's `allow_replication_factor_change = false`: the target must be as long as
/// the replica set the partition is headed for.
pub fn check_replication_factor(p: &PartitionImage, target: &[i32]) -> Result<(), AdminError> {
    let current = p.target_replicas().len();
    if current == target.len() {
        return Ok(());
    }
    Err(AdminError::InvalidReplicationFactor(format!(
        "the replication factor would change from {current} to {}, and the request does not \
         allow that",
        target.len()
    )))
}

/// The state after asking `p` to move to `target` (already validated), or `None` when that
/// changes nothing. Completes at once when the ISR already holds every target replica (a
/// reordering, or a shrink to in-sync replicas). `usable(b)`: broker `b` may lead.
pub fn start(
    p: &PartitionImage,
    target: &[i32],
    usable: &dyn Fn(i32) -> bool,
) -> Option<PartitionImage> {
    let removing: Vec<i32> = sorted_difference(&p.replicas, target);
    let adding: Vec<i32> = sorted_difference(target, &p.replicas);
    let mut replicas = target.to_vec();
    replicas.extend(&removing);
    let started = PartitionImage {
        replicas,
        adding,
        removing,
        ..p.clone()
    };
    let next = complete(&started, usable).unwrap_or(started);
    (next != *p).then_some(next)
}

/// The state after cancelling the reassignment of `p` (Kafka's `PartitionReassignmentRevert`):
/// the replicas it was adding leave the replicas and the ISR. If that empties the ISR, the
/// first remaining replica is put in it alone, which is an unclean election and needs
/// `unclean_allowed`.
pub fn cancel(
    p: &PartitionImage,
    unclean_allowed: bool,
    usable: &dyn Fn(i32) -> bool,
) -> Result<PartitionImage, AdminError> {
    if !p.reassigning() {
        return Err(AdminError::NoReassignmentInProgress);
    }
    let replicas: Vec<i32> = without(&p.replicas, &p.adding);
    let mut isr: Vec<i32> = without(&p.isr, &p.adding);
    if isr.is_empty() {
        let Some(first) = replicas.first().copied() else {
            return Err(AdminError::InvalidReplicaAssignment(
                "the reassignment was adding every replica; there is nothing to revert to".into(),
            ));
        };
        if !unclean_allowed {
            return Err(AdminError::InvalidReplicaAssignment(
                "reverting the reassignment would need an unclean leader election \
                 (unclean.leader.election.enable is false)"
                    .into(),
            ));
        }
        isr = vec![first];
    }
    Ok(settled(p, replicas, isr, usable))
}

/// The completed reassignment of `p`, once every target replica is in the ISR: replicas =
/// target, ISR without the removed replicas, and a target replica from the ISR leading if the
/// leader was removed. `None` while it must wait (or when none is under way).
pub fn complete(p: &PartitionImage, usable: &dyn Fn(i32) -> bool) -> Option<PartitionImage> {
    if !p.reassigning() {
        return None;
    }
    let replicas = p.target_replicas();
    let isr: Vec<i32> = without(&p.isr, &p.removing);
    if isr.is_empty() || replicas.iter().any(|r| !isr.contains(r)) {
        return None;
    }
    Some(settled(p, replicas, isr, usable))
}

/// `p` with no reassignment under way, these replicas and ISR, and a leader among them.
fn settled(
    p: &PartitionImage,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    usable: &dyn Fn(i32) -> bool,
) -> PartitionImage {
    let leader = leader_for(&replicas, &isr, p.leader, usable);
    PartitionImage {
        replicas,
        isr,
        leader,
        adding: Vec::new(),
        removing: Vec::new(),
        ..p.clone()
    }
}

/// The state after an ElectLeaders election of `kind` for `p` (Kafka's `electLeader`), or the
/// per-partition error Kafka answers.
pub fn elect(
    p: &PartitionImage,
    kind: ElectionType,
    usable: &dyn Fn(i32) -> bool,
) -> Result<PartitionImage, AdminError> {
    let in_sync = |r: i32| p.isr.contains(&r) && usable(r);
    let (leader, isr) = match kind {
        ElectionType::Preferred => {
            let Some(preferred) = p.replicas.first().copied() else {
                return Err(AdminError::PreferredLeaderNotAvailable(
                    "the partition has no replicas".into(),
                ));
            };
            if p.leader == preferred {
                return Err(AdminError::ElectionNotNeeded);
            }
            if in_sync(preferred) {
                (preferred, p.isr.clone())
            } else if p.leader >= 0 && in_sync(p.leader) {
                return Err(AdminError::PreferredLeaderNotAvailable(format!(
                    "the preferred leader {preferred} is not an unfenced member of the ISR {:?}",
                    p.isr
                )));
            } else if let Some(r) = p.replicas.iter().copied().skip(1).find(|r| in_sync(*r)) {
                // Offline, and the preferred replica cannot lead: the next one in line does.
                (r, p.isr.clone())
            } else {
                return Err(AdminError::PreferredLeaderNotAvailable(format!(
                    "no unfenced member of the ISR {:?} can lead",
                    p.isr
                )));
            }
        }
        ElectionType::Unclean => {
            if p.leader >= 0 {
                return Err(AdminError::ElectionNotNeeded);
            }
            if let Some(r) = p.replicas.iter().copied().find(|r| in_sync(*r)) {
                (r, p.isr.clone())
            } else if let Some(r) = p.replicas.iter().copied().find(|r| usable(*r)) {
                (r, vec![r])
            } else {
                return Err(AdminError::EligibleLeadersNotAvailable(format!(
                    "none of the replicas {:?} is unfenced",
                    p.replicas
                )));
            }
        }
    };
    Ok(PartitionImage {
        leader,
        isr,
        ..p.clone()
    })
}

/// The conditional record taking partition `topic`-`partition` from `old` to `new`, made at
/// `old`'s epochs: an AlterPartition when only the leader and ISR change, else a
/// ReassignPartition.
pub fn change_record(
    topic: &str,
    partition: i32,
    old: &PartitionImage,
    new: &PartitionImage,
) -> MetadataRecord {
    let same_replicas =
        old.replicas == new.replicas && old.adding == new.adding && old.removing == new.removing;
    if same_replicas {
        return MetadataRecord::AlterPartition {
            topic: topic.to_string(),
            partition,
            leader_epoch: old.leader_epoch,
            partition_epoch: old.partition_epoch,
            leader: new.leader,
            isr: new.isr.clone(),
        };
    }
    MetadataRecord::ReassignPartition {
        topic: topic.to_string(),
        partition,
        leader_epoch: old.leader_epoch,
        partition_epoch: old.partition_epoch,
        replicas: new.replicas.clone(),
        adding: new.adding.clone(),
        removing: new.removing.clone(),
        leader: new.leader,
        isr: new.isr.clone(),
    }
}

/// Who leads `replicas` with `isr`: the current leader if it stays in both, else the first
/// replica in the ISR that may lead, else nobody (-1) until the controller finds one.
fn leader_for(replicas: &[i32], isr: &[i32], current: i32, usable: &dyn Fn(i32) -> bool) -> i32 {
    if current >= 0 && replicas.contains(&current) && isr.contains(&current) {
        return current;
    }
    replicas
        .iter()
        .copied()
        .find(|r| isr.contains(r) && usable(*r))
        .unwrap_or(-1)
}

/// `a` without the members of `b`, in `a`'s order.
fn without(a: &[i32], b: &[i32]) -> Vec<i32> {
    a.iter().copied().filter(|r| !b.contains(r)).collect()
}

/// The members of `a` not in `b`, ascending (Kafka keeps adding/removing sorted).
fn sorted_difference(a: &[i32], b: &[i32]) -> Vec<i32> {
    let set: BTreeSet<i32> = a.iter().copied().filter(|r| !b.contains(r)).collect();
    set.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(replicas: &[i32], leader: i32, isr: &[i32]) -> PartitionImage {
        PartitionImage {
            replicas: replicas.to_vec(),
            leader,
            leader_epoch: 4,
            isr: isr.to_vec(),
            partition_epoch: 9,
            ..PartitionImage::default()
        }
    }

    fn reassigning(
        replicas: &[i32],
        adding: &[i32],
        removing: &[i32],
        leader: i32,
        isr: &[i32],
    ) -> PartitionImage {
        PartitionImage {
            adding: adding.to_vec(),
            removing: removing.to_vec(),
            ..part(replicas, leader, isr)
        }
    }

    fn all(_: i32) -> bool {
        true
    }

    fn brokers(ids: &[i32]) -> BTreeMap<i32, BrokerImage> {
        ids.iter()
            .map(|id| {
                (
                    *id,
                    BrokerImage {
                        host: "h".into(),
                        port: 1,
                        endpoints: Vec::new(),
                        rack: None,
                        fenced: false,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn targets_must_be_non_empty_distinct_and_registered() {
        let b = brokers(&[1, 2, 3]);
        assert!(validate_target(&[2, 3], &b).is_ok());
        for bad in [&[][..], &[1, 1][..], &[1, 4][..]] {
            assert!(
                matches!(
                    validate_target(bad, &b),
                    Err(AdminError::InvalidReplicaAssignment(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_move_adds_the_new_replicas_first_and_keeps_the_old_until_they_catch_up() {
        let p = part(&[1, 2], 1, &[1, 2]);
        let s = start(&p, &[2, 3], &all).expect("a change");
        assert_eq!(
            (s.replicas.clone(), s.adding.clone(), s.removing.clone()),
            (vec![2, 3, 1], vec![3], vec![1])
        );
        assert_eq!(
            (s.leader, s.isr.clone()),
            (1, vec![1, 2]),
            "unchanged so far"
        );
        assert!(complete(&s, &all).is_none(), "3 is not in the ISR yet");

        let caught_up = PartitionImage {
            isr: vec![1, 2, 3],
            ..s
        };
        let done = complete(&caught_up, &all).expect("completes");
        assert_eq!(done.replicas, vec![2, 3]);
        assert_eq!(done.isr, vec![2, 3]);
        assert_eq!(
            done.leader, 2,
            "the removed leader hands over to the first target"
        );
        assert!(!done.reassigning());
    }

    #[test]
    fn the_leader_moves_to_the_first_target_replica_that_is_in_sync_and_usable() {
        let p = reassigning(&[3, 2, 1], &[3], &[1], 1, &[1, 2, 3]);
        let done = complete(&p, &|b| b != 3).expect("completes");
        assert_eq!((done.leader, done.isr), (2, vec![2, 3]));
        let keeps = reassigning(&[2, 3, 1], &[3], &[1], 3, &[1, 2, 3]);
        assert_eq!(complete(&keeps, &all).map(|d| d.leader), Some(3));
    }

    #[test]
    fn a_reordering_or_a_shrink_to_in_sync_replicas_completes_at_once() {
        let p = part(&[1, 2, 3], 1, &[1, 2, 3]);
        let reordered = start(&p, &[3, 1, 2], &all).expect("a change");
        assert_eq!(
            (
                reordered.reassigning(),
                reordered.replicas,
                reordered.leader,
            ),
            (false, vec![3, 1, 2], 1)
        );
        let shrunk = start(&p, &[2, 3], &all).expect("a change");
        assert_eq!(
            (shrunk.replicas, shrunk.isr, shrunk.leader),
            (vec![2, 3], vec![2, 3], 2)
        );
        assert!(start(&p, &[1, 2, 3], &all).is_none(), "nothing to do");
    }

    #[test]
    fn a_new_target_replaces_the_one_under_way() {
        let p = reassigning(&[2, 3, 1], &[3], &[1], 1, &[1, 2]);
        let s = start(&p, &[2, 4], &all).expect("a change");
        assert_eq!(
            (s.replicas, s.adding, s.removing),
            (vec![2, 4, 1, 3], vec![4], vec![1, 3])
        );
    }

    #[test]
    fn cancelling_takes_out_what_was_being_added() {
        let p = reassigning(&[2, 3, 1], &[3], &[1], 3, &[1, 2, 3]);
        let back = cancel(&p, false, &all).expect("cancels");
        assert_eq!(
            (back.reassigning(), back.replicas, back.isr, back.leader),
            (false, vec![2, 1], vec![1, 2], 2)
        );
        assert!(matches!(
            cancel(&part(&[1, 2], 1, &[1, 2]), false, &all),
            Err(AdminError::NoReassignmentInProgress)
        ));
    }

    #[test]
    fn cancelling_when_only_added_replicas_are_in_sync_needs_unclean_election() {
        let p = reassigning(&[3, 1], &[3], &[1], 3, &[3]);
        assert!(matches!(
            cancel(&p, false, &all),
            Err(AdminError::InvalidReplicaAssignment(_))
        ));
        let back = cancel(&p, true, &all).expect("unclean revert");
        assert_eq!(
            (back.replicas, back.isr, back.leader),
            (vec![1], vec![1], 1)
        );
    }

    #[test]
    fn the_replication_factor_check_counts_the_replicas_the_partition_is_headed_for() {
        let p = reassigning(&[2, 3, 1], &[3], &[1], 1, &[1, 2]);
        assert!(check_replication_factor(&p, &[4, 5]).is_ok());
        assert!(matches!(
            check_replication_factor(&p, &[4, 5, 6]),
            Err(AdminError::InvalidReplicationFactor(_))
        ));
    }

    #[test]
    fn preferred_elections_follow_kafka() {
        let usable = |b: i32| b != 3;
        let p = part(&[1, 2, 3], 2, &[1, 2, 3]);
        assert_eq!(
            elect(&p, ElectionType::Preferred, &usable)
                .map(|s| s.leader)
                .ok(),
            Some(1)
        );
        assert!(matches!(
            elect(&part(&[1, 2], 1, &[1, 2]), ElectionType::Preferred, &usable),
            Err(AdminError::ElectionNotNeeded)
        ));
        assert!(
            matches!(
                elect(&part(&[1, 2], 2, &[2]), ElectionType::Preferred, &usable),
                Err(AdminError::PreferredLeaderNotAvailable(_))
            ),
            "1 is out of sync"
        );
        assert!(
            matches!(
                elect(&part(&[3, 2], 2, &[3, 2]), ElectionType::Preferred, &usable),
                Err(AdminError::PreferredLeaderNotAvailable(_))
            ),
            "3 is fenced"
        );
        let offline = part(&[3, 2], -1, &[3, 2]);
        assert_eq!(
            elect(&offline, ElectionType::Preferred, &usable)
                .map(|s| s.leader)
                .ok(),
            Some(2),
            "an offline partition gets the next replica in line"
        );
    }

    #[test]
    fn unclean_elections_only_fill_a_missing_leader() {
        let usable = |b: i32| b != 1;
        assert!(matches!(
            elect(&part(&[1, 2], 1, &[1]), ElectionType::Unclean, &usable),
            Err(AdminError::ElectionNotNeeded)
        ));
        let s = elect(&part(&[1, 2, 3], -1, &[1]), ElectionType::Unclean, &usable).expect("elects");
        assert_eq!((s.leader, s.isr), (2, vec![2]), "outside the ISR");
        let s = elect(
            &part(&[1, 2, 3], -1, &[1, 3]),
            ElectionType::Unclean,
            &usable,
        )
        .expect("elects");
        assert_eq!((s.leader, s.isr), (3, vec![1, 3]), "an ISR member first");
        assert!(matches!(
            elect(&part(&[1], -1, &[1]), ElectionType::Unclean, &usable),
            Err(AdminError::EligibleLeadersNotAvailable(_))
        ));
    }

    #[test]
    fn records_are_made_at_the_old_epochs_and_reassignments_get_their_own_kind() {
        let old = part(&[1, 2], 1, &[1, 2]);
        let elected = PartitionImage {
            leader: 2,
            ..old.clone()
        };
        assert!(matches!(
            change_record("t", 0, &old, &elected),
            MetadataRecord::AlterPartition {
                leader: 2,
                leader_epoch: 4,
                partition_epoch: 9,
                ..
            }
        ));
        let moved = start(&old, &[2, 3], &all).expect("a change");
        assert!(matches!(
            change_record("t", 0, &old, &moved),
            MetadataRecord::ReassignPartition {
                leader_epoch: 4,
                partition_epoch: 9,
                ..
            }
        ));
    }
}
