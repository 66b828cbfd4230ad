//! Recovery and durability of the log store across reopen: torn tails, votes, purges,
//! truncations, segment rolling, and damage a crash cannot explain.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::testing::log_id;
use openraft::{EntryPayload, RaftLogReader};

use super::*;
use crate::cluster::metadata::MetadataRecord;
use crate::quorum::types::MetadataRequest;

fn entry(term: u64, index: u64) -> Entry {
    Entry {
        log_id: log_id(term, 1, index),
        payload: EntryPayload::Normal(MetadataRequest {
            records: vec![MetadataRecord::ProducerIds {
                next: index as i64 * 1000,
            }],
        }),
    }
}

fn entries(term: u64, indexes: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
    indexes.map(|i| entry(term, i)).collect()
}

async fn all(store: &mut LogStore) -> Vec<Entry> {
    store.try_get_log_entries(..).await.expect("read entries")
}

fn indexes(entries: &[Entry]) -> Vec<u64> {
    entries.iter().map(|e| e.log_id.index).collect()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    files
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    let mut file = OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open segment");
    file.write_all(bytes).expect("write garbage");
}

#[tokio::test]
async fn a_torn_tail_is_cut_on_open_and_appending_continues_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = LogStore::open(dir.path()).await.expect("open");
    store
        .blocking_append(entries(1, 1..=5))
        .await
        .expect("append");
    drop(store);

    let segment = segment_files(dir.path()).pop().expect("a segment");
    let whole = std::fs::metadata(&segment).expect("stat").len();
    let frame =
        segment::encode_frame(&serde_json::to_vec(&entry(1, 6)).expect("encode")).expect("frame");
    append_bytes(&segment, &frame[..frame.len() / 2]);

    let mut store = LogStore::open(dir.path()).await.expect("reopen");
    assert_eq!(indexes(&all(&mut store).await), vec![1, 2, 3, 4, 5]);
    assert_eq!(std::fs::metadata(&segment).expect("stat").len(), whole);
    store
        .blocking_append([entry(2, 6)])
        .await
        .expect("append after the cut");
    drop(store);

    let mut store = LogStore::open(dir.path()).await.expect("reopen again");
    let got = all(&mut store).await;
    assert_eq!(indexes(&got), vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(got.last().map(|e| e.log_id), Some(log_id(2, 1, 6)));
}

#[tokio::test]
async fn a_last_frame_failing_its_checksum_is_cut_like_a_torn_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = LogStore::open(dir.path()).await.expect("open");
    store
        .blocking_append(entries(1, 1..=3))
        .await
        .expect("append");
    drop(store);

    let segment = segment_files(dir.path()).pop().expect("a segment");
    let mut frame =
        segment::encode_frame(&serde_json::to_vec(&entry(1, 4)).expect("encode")).expect("frame");
    let last = frame.len() - 1;
    frame[last] ^= 0xff;
    append_bytes(&segment, &frame);

    let mut store = LogStore::open(dir.path()).await.expect("reopen");
    assert_eq!(indexes(&all(&mut store).await), vec![1, 2, 3]);
}

#[tokio::test]
async fn the_vote_and_committed_log_id_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = LogStore::open(dir.path()).await.expect("open");
    assert_eq!(store.read_vote().await.expect("read vote"), None);
    assert_eq!(store.read_committed().await.expect("read committed"), None);
    let vote = Vote::new_committed(7, 2);
    store.save_vote(&Vote::new(6, 1)).await.expect("first vote");
    store.save_vote(&vote).await.expect("second vote");
    store
        .save_committed(Some(log_id(7, 2, 40)))
        .await
        .expect("save committed");
    drop(store);

    let mut store = LogStore::open(dir.path()).await.expect("reopen");
    assert_eq!(store.read_vote().await.expect("read vote"), Some(vote));
    assert_eq!(
        store.read_committed().await.expect("read committed"),
        Some(log_id(7, 2, 40))
    );
}

#[tokio::test]
async fn entries_roll_into_segments_and_a_purge_deletes_only_whole_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = LogStore::open_with_segment_bytes(dir.path(), 300)
        .await
        .expect("open");
    for i in 1..=20 {
        store.blocking_append([entry(1, i)]).await.expect("append");
    }
    let before = segment_files(dir.path());
    assert!(before.len() > 3, "small segments roll: {before:?}");

    store.purge(log_id(1, 1, 12)).await.expect("purge");
    let after = segment_files(dir.path());
    assert!(after.len() < before.len(), "whole segments deleted");
    let first_kept = after
        .first()
        .and_then(|p| p.file_name()?.to_str().and_then(segment::parse_file_name))
        .expect("a segment left");
    assert!(first_kept <= 13, "entry 13 stays on disk");
    assert_eq!(
        indexes(&all(&mut store).await),
        (13..=20).collect::<Vec<_>>()
    );
    drop(store);

    let mut store = LogStore::open_with_segment_bytes(dir.path(), 300)
        .await
        .expect("reopen");
    assert_eq!(
        indexes(&all(&mut store).await),
        (13..=20).collect::<Vec<_>>()
    );
    let state = store.get_log_state().await.expect("log state");
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 12)));
    assert_eq!(state.last_log_id, Some(log_id(1, 1, 20)));
}

#[tokio::test]
async fn a_truncation_survives_reopen_and_new_entries_replace_the_cut_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = LogStore::open_with_segment_bytes(dir.path(), 300)
        .await
        .expect("open");
    store
        .blocking_append(entries(1, 1..=12))
        .await
        .expect("append");
    store.truncate(log_id(1, 1, 5)).await.expect("truncate");
    assert_eq!(indexes(&all(&mut store).await), vec![1, 2, 3, 4]);
    store
        .blocking_append(entries(2, 5..=6))
        .await
        .expect("append the new leader's entries");
    drop(store);

    let mut store = LogStore::open_with_segment_bytes(dir.path(), 300)
        .await
        .expect("reopen");
    let got = all(&mut store).await;
    assert_eq!(indexes(&got), vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(got[4].log_id, log_id(2, 1, 5));
}

#[tokio::test]
async fn purging_past_the_last_entry_leaves_an_empty_log_that_continues_after_the_purge_point() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = LogStore::open(dir.path()).await.expect("open");
    store
        .blocking_append(entries(1, 1..=3))
        .await
        .expect("append");
    store.purge(log_id(2, 1, 10)).await.expect("purge");
    assert!(segment_files(dir.path()).is_empty());
    drop(store);

    let mut store = LogStore::open(dir.path()).await.expect("reopen");
    let state = store.get_log_state().await.expect("log state");
    assert_eq!(state.last_log_id, Some(log_id(2, 1, 10)));
    store
        .blocking_append([entry(2, 11)])
        .await
        .expect("append after the purge point");
    drop(store);
    let mut store = LogStore::open(dir.path()).await.expect("reopen again");
    assert_eq!(indexes(&all(&mut store).await), vec![11]);
}

#[tokio::test]
async fn a_missing_middle_segment_is_reported_not_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = LogStore::open_with_segment_bytes(dir.path(), 300)
        .await
        .expect("open");
    for i in 1..=20 {
        store.blocking_append([entry(1, i)]).await.expect("append");
    }
    drop(store);
    let files = segment_files(dir.path());
    assert!(files.len() >= 3);
    std::fs::remove_file(&files[1]).expect("remove a middle segment");
    match LogStore::open(dir.path()).await {
        Err(LogStoreError::Corrupt { path, .. }) => assert_eq!(path, files[2]),
        other => panic!("expected a corruption error, got {other:?}"),
    }
}

#[tokio::test]
async fn damage_before_the_last_frame_of_an_older_segment_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = LogStore::open_with_segment_bytes(dir.path(), 300)
        .await
        .expect("open");
    for i in 1..=20 {
        store.blocking_append([entry(1, i)]).await.expect("append");
    }
    drop(store);
    let first = segment_files(dir.path()).remove(0);
    let mut bytes = std::fs::read(&first).expect("read segment");
    bytes[12] ^= 0xff;
    std::fs::write(&first, bytes).expect("damage segment");
    assert!(matches!(
        LogStore::open(dir.path()).await,
        Err(LogStoreError::Corrupt { .. })
    ));
}

#[tokio::test]
async fn an_append_that_would_leave_a_hole_fails_its_flush() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = LogStore::open(dir.path()).await.expect("open");
    store
        .blocking_append(entries(1, 1..=2))
        .await
        .expect("append");
    let err = store
        .blocking_append([entry(1, 5)])
        .await
        .expect_err("a hole is refused");
    assert!(err.to_string().contains("hole"), "{err}");
}

#[tokio::test]
async fn readers_see_appended_entries_and_inverted_ranges_are_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = LogStore::open(dir.path()).await.expect("open");
    store
        .blocking_append(entries(1, 1..=4))
        .await
        .expect("append");
    let mut reader = store.get_log_reader().await;
    let got = reader.try_get_log_entries(2..4).await.expect("read");
    assert_eq!(indexes(&got), vec![2, 3]);
    #[allow(clippy::reversed_empty_ranges)]
    let none = reader.try_get_log_entries(4..2).await.expect("read");
    assert!(none.is_empty());
}

/// One step of [`any_sequence_of_appends_truncations_purges_and_reopens_matches_a_model`]:
/// positions are picked among the entries present when the step runs.
#[derive(Debug, Clone)]
enum Step {
    Append(u64),
    Truncate(proptest::sample::Index),
    Purge(proptest::sample::Index),
    Reopen,
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        4 => (1u64..5).prop_map(Step::Append),
        1 => any::<proptest::sample::Index>().prop_map(Step::Truncate),
        1 => any::<proptest::sample::Index>().prop_map(Step::Purge),
        1 => Just(Step::Reopen),
    ]
}

/// What the log should hold: entries by index (with their term) and the purge point.
#[derive(Debug, Default)]
struct Model {
    entries: BTreeMap<u64, u64>,
    purged: Option<LogId>,
    term: u64,
}

impl Model {
    fn next_index(&self) -> u64 {
        match (self.entries.last_key_value(), self.purged) {
            (Some((&i, _)), _) => i + 1,
            (None, Some(p)) => p.index + 1,
            (None, None) => 1,
        }
    }
}

async fn run_steps(dir: &Path, steps: Vec<Step>) {
    let open = || LogStore::open_with_segment_bytes(dir, 200);
    let mut store = open().await.expect("open");
    let mut model = Model {
        term: 1,
        ..Model::default()
    };
    for step in steps {
        match step {
            Step::Append(n) => {
                let first = model.next_index();
                let batch: Vec<Entry> = (first..first + n).map(|i| entry(model.term, i)).collect();
                store.blocking_append(batch).await.expect("append");
                for i in first..first + n {
                    model.entries.insert(i, model.term);
                }
            }
            // Like a follower told by a new leader: cut a suffix, later entries get a new term.
            Step::Truncate(at) if !model.entries.is_empty() => {
                let keys: Vec<u64> = model.entries.keys().copied().collect();
                let index = keys[at.index(keys.len())];
                let term = model.entries[&index];
                store
                    .truncate(log_id(term, 1, index))
                    .await
                    .expect("truncate");
                model.entries.split_off(&index);
                model.term += 1;
            }
            Step::Purge(at) if !model.entries.is_empty() => {
                let keys: Vec<u64> = model.entries.keys().copied().collect();
                let index = keys[at.index(keys.len())];
                let upto = log_id(model.entries[&index], 1, index);
                store.purge(upto).await.expect("purge");
                model.entries = model.entries.split_off(&(index + 1));
                model.purged = Some(upto);
            }
            Step::Truncate(_) | Step::Purge(_) => {}
            Step::Reopen => {
                let exited = store.writer_exited();
                drop(store);
                exited.await;
                store = open().await.expect("reopen");
            }
        }
        let got: Vec<(u64, u64)> = all(&mut store)
            .await
            .iter()
            .map(|e| (e.log_id.index, e.log_id.leader_id.term))
            .collect();
        let want: Vec<(u64, u64)> = model.entries.iter().map(|(&i, &t)| (i, t)).collect();
        assert_eq!(got, want);
        let state = store.get_log_state().await.expect("log state");
        assert_eq!(state.last_purged_log_id, model.purged);
        let want_last = model
            .entries
            .last_key_value()
            .map(|(&i, &t)| log_id(t, 1, i))
            .or(model.purged);
        assert_eq!(state.last_log_id, want_last);
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]

    #[test]
    fn any_sequence_of_appends_truncations_purges_and_reopens_matches_a_model(
        steps in proptest::collection::vec(step(), 1..40)
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(run_steps(dir.path(), steps));
    }
}
