//! Applying entries to the image, and snapshots built, persisted, reopened and installed.

use std::collections::{BTreeMap, BTreeSet};

use openraft::storage::RaftStateMachine;
use openraft::testing::{blank_ent, log_id, membership_ent};
use openraft::{EntryPayload, Membership, RaftSnapshotBuilder};

use super::*;
use crate::cluster::metadata::MetadataRecord;
use crate::quorum::types::MetadataRequest;

fn normal(index: u64, records: Vec<MetadataRecord>) -> Entry {
    Entry {
        log_id: log_id(1, 1, index),
        payload: EntryPayload::Normal(MetadataRequest { records }),
    }
}

fn create(name: &str, partitions: i32) -> MetadataRecord {
    MetadataRecord::Topic {
        name: name.into(),
        id: uuid::Uuid::new_v4(),
        partitions,
        replication_factor: 3,
        configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
    }
}

fn voters(ids: impl IntoIterator<Item = u64>) -> Vec<BTreeSet<u64>> {
    vec![ids.into_iter().collect()]
}

/// A machine with a membership, two topics (one grown) and a producer-id block applied.
async fn populated(dir: &Path) -> StateMachine {
    let mut sm = StateMachine::open(dir).await.expect("open");
    sm.apply([
        membership_ent::<TypeConfig>(1, 1, 1, voters([1, 2, 3])),
        normal(2, vec![create("a", 1), create("b", 2)]),
        normal(
            3,
            vec![
                MetadataRecord::Partitions {
                    name: "a".into(),
                    count: 4,
                },
                MetadataRecord::ProducerIds { next: 5000 },
            ],
        ),
        blank_ent::<TypeConfig>(2, 1, 4),
    ])
    .await
    .expect("apply");
    sm
}

#[tokio::test]
async fn applied_entries_change_the_image_and_answer_what_they_did() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sm = StateMachine::open(dir.path()).await.expect("open");
    let mut changes = sm.subscribe();
    let responses = sm
        .apply([
            normal(1, vec![create("t", 3)]),
            normal(
                2,
                vec![
                    MetadataRecord::Partitions {
                        name: "gone".into(),
                        count: 2,
                    },
                    MetadataRecord::RemoveTopic { name: "t".into() },
                ],
            ),
            blank_ent::<TypeConfig>(1, 1, 3),
        ])
        .await
        .expect("apply");
    assert_eq!(
        responses,
        vec![
            MetadataResponse {
                applied: 1,
                ignored: 0
            },
            MetadataResponse {
                applied: 1,
                ignored: 1
            },
            MetadataResponse::default(),
        ]
    );
    assert!(changes.has_changed().expect("machine alive"));
    let state = changes.borrow_and_update().clone();
    assert_eq!(state.last_applied, Some(log_id(1, 1, 3)));
    assert!(state.image.topics.is_empty());
    let (applied, _) = sm.applied_state().await.expect("applied state");
    assert_eq!(applied, Some(log_id(1, 1, 3)));
}

#[tokio::test]
async fn a_built_snapshot_round_trips_through_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sm = populated(dir.path()).await;
    let before = sm.applied();
    let built = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");
    assert_eq!(built.meta.last_log_id, Some(log_id(2, 1, 4)));
    assert_eq!(built.meta.last_membership, before.last_membership);
    drop(sm);

    let mut reopened = StateMachine::open(dir.path()).await.expect("reopen");
    assert_eq!(reopened.applied(), before);
    let image = &reopened.applied().image;
    assert_eq!(image.topic("a").map(|t| t.partitions), Some(4));
    assert_eq!(image.next_producer_id, 5000);
    let current = reopened
        .get_current_snapshot()
        .await
        .expect("read snapshot")
        .expect("a snapshot");
    assert_eq!(current.meta, built.meta);
    assert_eq!(current.snapshot.into_inner(), built.snapshot.into_inner());
}

#[tokio::test]
async fn an_installed_snapshot_replaces_the_state_and_survives_reopen() {
    let leader_dir = tempfile::tempdir().expect("tempdir");
    let mut leader = populated(leader_dir.path()).await;
    let snapshot = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");

    let follower_dir = tempfile::tempdir().expect("tempdir");
    let mut follower = StateMachine::open(follower_dir.path()).await.expect("open");
    follower
        .apply([normal(1, vec![create("stale", 1)])])
        .await
        .expect("apply");
    let mut receiving = follower
        .begin_receiving_snapshot()
        .await
        .expect("begin receiving");
    *receiving = *snapshot.snapshot;
    follower
        .install_snapshot(&snapshot.meta, receiving)
        .await
        .expect("install");
    assert_eq!(follower.applied(), leader.applied());
    assert!(follower.applied().image.topic("stale").is_none());
    drop(follower);

    let mut reopened = StateMachine::open(follower_dir.path())
        .await
        .expect("reopen");
    assert_eq!(reopened.applied(), leader.applied());
    let current = reopened
        .get_current_snapshot()
        .await
        .expect("read snapshot")
        .expect("a snapshot");
    assert_eq!(current.meta, snapshot.meta);
}

#[tokio::test]
async fn a_snapshot_whose_content_disagrees_with_its_meta_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sm = populated(dir.path()).await;
    let snapshot = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");
    let mut meta = snapshot.meta.clone();
    meta.last_log_id = Some(log_id(9, 1, 99));

    let other = tempfile::tempdir().expect("tempdir");
    let mut follower = StateMachine::open(other.path()).await.expect("open");
    assert!(follower
        .install_snapshot(&meta, snapshot.snapshot)
        .await
        .is_err());
    let mut garbage = follower.begin_receiving_snapshot().await.expect("begin");
    garbage.get_mut().extend_from_slice(b"{not json");
    assert!(follower.install_snapshot(&meta, garbage).await.is_err());
    assert_eq!(follower.applied(), AppliedState::default());
    assert!(follower
        .get_current_snapshot()
        .await
        .expect("read snapshot")
        .is_none());
}

#[tokio::test]
async fn an_older_snapshot_built_late_does_not_replace_a_newer_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sm = populated(dir.path()).await;
    let mut early = sm.get_snapshot_builder().await;
    sm.apply([blank_ent::<TypeConfig>(2, 1, 5)])
        .await
        .expect("apply");
    let newer = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build newer");
    early.build_snapshot().await.expect("build older");
    let current = sm
        .get_current_snapshot()
        .await
        .expect("read snapshot")
        .expect("a snapshot");
    assert_eq!(current.meta, newer.meta);
    drop(sm);
    let reopened = StateMachine::open(dir.path()).await.expect("reopen");
    assert_eq!(reopened.applied().last_applied, Some(log_id(2, 1, 5)));
}

#[tokio::test]
async fn a_corrupt_snapshot_file_fails_open_instead_of_starting_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(SNAPSHOT_FILE), b"{\"meta\":").expect("write");
    assert!(matches!(
        StateMachine::open(dir.path()).await,
        Err(StateMachineError::Decode { .. })
    ));
}

#[tokio::test]
async fn the_membership_applied_is_the_one_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sm = populated(dir.path()).await;
    let (_, membership) = sm.applied_state().await.expect("applied state");
    assert_eq!(membership.log_id(), &Some(log_id(1, 1, 1)));
    assert_eq!(
        membership.membership(),
        &Membership::new(voters([1, 2, 3]), None)
    );
}
