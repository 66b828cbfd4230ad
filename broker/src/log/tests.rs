//! Tests of the partition log as a whole: append, read, recovery, retention, producer state.

use std::path::Path;

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;

use super::batch::tests::{batch_of, encode, idempotent_batch, record};
use super::batch::BatchHeader;
use super::*;

/// Small segments and dense indexes, so a few batches exercise rolls and index lookups.
fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 128,
        retention_ms: None,
        ..LogConfig::default()
    }
}

fn appended(outcome: AppendOutcome) -> AppendInfo {
    match outcome {
        AppendOutcome::Appended(info) => info,
        other => panic!("expected an append, got {other:?}"),
    }
}

/// Base and last offsets of every batch in `bytes`.
fn batch_offsets(bytes: &[u8]) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let h = BatchHeader::parse(&bytes[pos..]).expect("whole header");
        out.push((h.base_offset, h.last_offset()));
        pos += h.total_len();
    }
    assert_eq!(pos, bytes.len(), "reads return whole batches");
    out
}

fn segment_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".log"))
        .collect();
    names.sort();
    names
}

/// Appends `count` batches of `per` records (timestamp = batch index) and returns the log.
fn log_with(dir: &Path, count: usize, per: usize) -> PartitionLog {
    let mut log = PartitionLog::open(dir, small_config()).expect("open");
    for i in 0..count {
        appended(log.append(batch_of(per, i as i64), 3, 0).expect("append"));
    }
    log
}

#[test]
fn an_empty_directory_opens_as_an_empty_log_at_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = PartitionLog::open(&dir.path().join("t-0"), small_config()).expect("open");
    assert_eq!(log.log_start_offset(), 0);
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.read(0, 1000, 0).expect("read").len(), 0);
    assert!(matches!(
        log.read(1, 1000, 10),
        Err(LogError::OffsetOutOfRange { offset: 1, .. })
    ));
}

#[test]
fn appends_get_consecutive_offsets_and_read_back_across_segment_rolls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), small_config()).expect("open");
    let mut expected = Vec::new();
    for i in 0..30 {
        let info = appended(log.append(batch_of(3, i), 5, 0).expect("append"));
        assert_eq!(info.base_offset, i * 3);
        assert_eq!(info.last_offset, i * 3 + 2);
        assert_eq!(info.log_append_time, -1);
        expected.push((i * 3, i * 3 + 2));
    }
    assert!(segment_files(dir.path()).len() > 3, "segments rolled");
    assert_eq!(segment_files(dir.path())[0], "00000000000000000000.log");
    assert_eq!(log.log_end_offset(), 90);
    let all = log.read(0, usize::MAX, 90).expect("read all");
    assert_eq!(batch_offsets(&all), expected);
    let headers = batch::validate_record_set(&all, u32::MAX).expect("valid");
    assert!(headers.iter().all(|h| h.partition_leader_epoch == 5));
    let decoded = RecordBatchDecoder::decode_all(&mut all.clone()).expect("decodes");
    let offsets: Vec<i64> = decoded
        .iter()
        .flat_map(|s| s.records.iter().map(|r| r.offset))
        .collect();
    assert_eq!(offsets, (0..90).collect::<Vec<_>>());
}

#[test]
fn a_read_from_the_middle_of_a_batch_returns_the_whole_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = log_with(dir.path(), 20, 4);
    for offset in [1, 6, 41, 79] {
        let bytes = log.read(offset, 1, 80).expect("read");
        let first = offset / 4 * 4;
        assert_eq!(
            batch_offsets(&bytes),
            vec![(first, first + 3)],
            "at {offset}"
        );
    }
}

#[test]
fn reads_respect_max_bytes_and_the_upper_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = log_with(dir.path(), 20, 4);
    let one = log.read(0, 1, 80).expect("read").len();
    let two = log.read(0, 2 * one, 80).expect("read");
    assert_eq!(batch_offsets(&two), vec![(0, 3), (4, 7)]);
    let bounded = log.read(0, usize::MAX, 10).expect("read");
    assert_eq!(batch_offsets(&bounded), vec![(0, 3), (4, 7)]);
    assert!(log.read(8, usize::MAX, 10).expect("read").is_empty());
    assert!(log.read(12, usize::MAX, 12).expect("read").is_empty());
    assert!(log.read(80, usize::MAX, 80).expect("read").is_empty());
    let tail = log.read(70, usize::MAX, 80).expect("read");
    assert_eq!(batch_offsets(&tail), vec![(68, 71), (72, 75), (76, 79)]);
}

#[test]
fn reopening_keeps_offsets_and_appends_continue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let before = log_with(dir.path(), 25, 2)
        .read(0, usize::MAX, 50)
        .expect("read");
    let mut log = PartitionLog::open(dir.path(), small_config()).expect("reopen");
    assert_eq!(log.log_end_offset(), 50);
    assert_eq!(log.read(0, usize::MAX, 50).expect("read"), before);
    let info = appended(log.append(batch_of(2, 0), 3, 0).expect("append"));
    assert_eq!(info.base_offset, 50);
}

#[test]
fn a_torn_tail_is_cut_on_reopen_and_appends_continue_at_the_right_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = log_with(dir.path(), 3, 2);
    drop(log);
    let path = dir.path().join("00000000000000000000.log");
    let len = std::fs::metadata(&path).expect("meta").len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open");
    file.set_len(len - 10).expect("tear");
    drop(file);
    let mut log = PartitionLog::open(dir.path(), small_config()).expect("reopen");
    assert_eq!(log.log_end_offset(), 4);
    let info = appended(log.append(batch_of(2, 0), 3, 0).expect("append"));
    assert_eq!(info.base_offset, 4);
    let all = log.read(0, usize::MAX, 6).expect("read");
    assert_eq!(batch_offsets(&all), vec![(0, 1), (2, 3), (4, 5)]);
}

#[test]
fn a_flipped_byte_in_the_last_batch_is_cut_on_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(log_with(dir.path(), 3, 2));
    let path = dir.path().join("00000000000000000000.log");
    let mut bytes = std::fs::read(&path).expect("read");
    let last = bytes.len() - 3;
    bytes[last] ^= 0x55;
    std::fs::write(&path, &bytes).expect("write");
    let log = PartitionLog::open(dir.path(), small_config()).expect("reopen");
    assert_eq!(log.log_end_offset(), 4);
    assert!(std::fs::metadata(&path).expect("meta").len() < bytes.len() as u64);
}

#[test]
fn garbage_after_the_last_batch_is_cut_and_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(log_with(dir.path(), 6, 3));
    let path = dir.path().join("00000000000000000000.log");
    let good = std::fs::metadata(&path).expect("meta").len();
    let mut bytes = std::fs::read(&path).expect("read");
    bytes.extend_from_slice(&[0xab; 100]);
    std::fs::write(&path, &bytes).expect("write");
    std::fs::remove_file(dir.path().join("00000000000000000000.index")).expect("rm");
    let log = PartitionLog::open(dir.path(), small_config()).expect("reopen");
    assert_eq!(std::fs::metadata(&path).expect("meta").len(), good);
    assert_eq!(log.log_end_offset(), 18);
    let index = std::fs::read(dir.path().join("00000000000000000000.index")).expect("index");
    assert!(!index.is_empty() && index.len() % 8 == 0);
    assert_eq!(
        batch_offsets(&log.read(13, 1, 18).expect("read")),
        vec![(12, 14)]
    );
}

#[test]
fn a_resent_idempotent_batch_gets_its_original_offsets_and_is_not_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = log_with(dir.path(), 1, 2);
    let first = appended(log.append(idempotent_batch(9, 0, 0, 3), 1, 0).expect("a"));
    let second = appended(log.append(idempotent_batch(9, 0, 3, 2), 1, 0).expect("b"));
    assert_eq!((first.base_offset, second.base_offset), (2, 5));
    let end = log.log_end_offset();
    let dup = log.append(idempotent_batch(9, 0, 0, 3), 1, 0).expect("dup");
    assert_eq!(
        dup,
        AppendOutcome::Duplicate(AppendInfo {
            base_offset: 2,
            last_offset: 4,
            log_append_time: -1,
            log_start_offset: 0
        })
    );
    assert_eq!(log.log_end_offset(), end);
    drop(log);
    let mut log = PartitionLog::open(dir.path(), small_config()).expect("reopen");
    let dup = log.append(idempotent_batch(9, 0, 3, 2), 1, 0).expect("dup");
    assert!(matches!(dup, AppendOutcome::Duplicate(i) if i.base_offset == 5));
}

#[test]
fn an_out_of_order_sequence_or_old_epoch_is_rejected_and_nothing_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), small_config()).expect("open");
    appended(log.append(idempotent_batch(9, 2, 0, 2), 1, 0).expect("a"));
    assert!(matches!(
        log.append(idempotent_batch(9, 2, 5, 1), 1, 0),
        Err(LogError::OutOfOrderSequence {
            producer_id: 9,
            expected: 2,
            got: 5
        })
    ));
    assert!(matches!(
        log.append(idempotent_batch(9, 1, 2, 1), 1, 0),
        Err(LogError::InvalidProducerEpoch { .. })
    ));
    assert_eq!(log.log_end_offset(), 2);
    appended(
        log.append(idempotent_batch(9, 2, 2, 1), 1, 0)
            .expect("next"),
    );
    appended(
        log.append(idempotent_batch(9, 3, 0, 1), 1, 0)
            .expect("new epoch"),
    );
}

#[test]
fn an_invalid_batch_in_a_request_means_nothing_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), small_config()).expect("open");
    let mut request = batch_of(2, 0).to_vec();
    let mut bad = batch_of(2, 0).to_vec();
    bad[30] ^= 1;
    request.extend_from_slice(&bad);
    assert!(matches!(
        log.append(Bytes::from(request), 0, 0),
        Err(LogError::CorruptBatch(_))
    ));
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.size_bytes(), 0);
}

#[test]
fn several_batches_in_one_request_get_consecutive_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = log_with(dir.path(), 1, 1);
    let mut request = batch_of(2, 0).to_vec();
    request.extend_from_slice(&batch_of(3, 0));
    let info = appended(log.append(Bytes::from(request), 0, 0).expect("append"));
    assert_eq!((info.base_offset, info.last_offset), (1, 5));
    assert_eq!(
        batch_offsets(&log.read(1, usize::MAX, 6).expect("read")),
        vec![(1, 2), (3, 5)]
    );
}

#[test]
fn a_log_append_time_batch_reports_the_broker_clock_and_keeps_its_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), small_config()).expect("open");
    let mut bytes = batch_of(2, 5).to_vec();
    bytes[22] |= 0x08;
    batch::recompute_crc(&mut bytes);
    let info = appended(
        log.append(Bytes::from(bytes.clone()), 0, 777)
            .expect("append"),
    );
    assert_eq!(info.log_append_time, 777);
    let stored = log.read(0, usize::MAX, 2).expect("read");
    assert_eq!(
        &stored[16..],
        &bytes[16..],
        "only offset and epoch are stamped"
    );
    let info = appended(log.append(batch_of(1, 5), 0, 778).expect("append"));
    assert_eq!(info.log_append_time, -1);
}

#[test]
fn batches_of_one_producer_in_one_request_are_checked_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), small_config()).expect("open");
    appended(
        log.append(idempotent_batch(4, 0, 0, 1), 0, 0)
            .expect("first"),
    );
    let mut request = idempotent_batch(4, 0, 1, 2).to_vec();
    request.extend_from_slice(&idempotent_batch(4, 0, 3, 2));
    let info = appended(log.append(Bytes::from(request), 0, 0).expect("in order"));
    assert_eq!((info.base_offset, info.last_offset), (1, 4));
    let mut request = idempotent_batch(4, 0, 5, 1).to_vec();
    request.extend_from_slice(&idempotent_batch(4, 0, 9, 1));
    assert!(matches!(
        log.append(Bytes::from(request), 0, 0),
        Err(LogError::OutOfOrderSequence {
            expected: 6,
            got: 9,
            ..
        })
    ));
    assert_eq!(log.log_end_offset(), 5);
    appended(
        log.append(idempotent_batch(4, 0, 5, 1), 0, 0)
            .expect("state untouched"),
    );
}

#[test]
fn segments_roll_when_segment_ms_has_passed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_ms: 1000,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(dir.path(), config).expect("open");
    appended(log.append(batch_of(1, 0), 0, 10_000).expect("append"));
    appended(log.append(batch_of(1, 0), 0, 10_999).expect("append"));
    assert_eq!(segment_files(dir.path()).len(), 1);
    appended(log.append(batch_of(1, 0), 0, 11_000).expect("append"));
    assert_eq!(segment_files(dir.path()).len(), 2);
    assert_eq!(segment_files(dir.path())[1], "00000000000000000002.log");
}

#[test]
fn retention_by_size_deletes_whole_old_segments_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = log_with(dir.path(), 40, 3);
    let segments = segment_files(dir.path()).len();
    let total = log.size_bytes();
    let mut config = small_config();
    config.retention_bytes = Some(total / 2);
    log.set_config(config);
    let removed = log.maintain(0).expect("maintain");
    assert!(removed > 0);
    assert_eq!(segment_files(dir.path()).len(), segments - removed);
    assert!(log.size_bytes() >= total / 2);
    let start = log.log_start_offset();
    let first = segment_files(dir.path())[0].clone();
    assert_eq!(first, format!("{start:020}.log"));
    assert_eq!(
        batch_offsets(&log.read(start, 1, 120).expect("read"))[0].0,
        start
    );
    assert!(matches!(
        log.read(start - 1, 1, 120),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert_eq!(log.log_end_offset(), 120);
}

#[test]
fn retention_by_time_deletes_segments_whose_newest_record_is_too_old() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = log_with(dir.path(), 40, 3);
    let mut config = small_config();
    config.retention_ms = Some(100);
    log.set_config(config);
    // Timestamps are 0..40; a cutoff of 20 removes segments whose newest is below 20.
    log.maintain(120).expect("maintain");
    let start = log.log_start_offset();
    assert!(start > 0 && start <= 20 * 3, "start {start}");
    let first = log.read(start, 1, 120).expect("read");
    let h = BatchHeader::parse(&first).expect("header");
    assert!(h.max_timestamp <= 20);
    log.maintain(1_000_000).expect("maintain");
    assert_eq!(
        segment_files(dir.path()).len(),
        1,
        "the active segment stays"
    );
    assert_eq!(log.log_end_offset(), 120);
}

#[test]
fn offset_for_timestamp_finds_the_first_record_at_or_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), small_config()).expect("open");
    for i in 0..30 {
        log.append(batch_of(2, i * 10), 0, 0).expect("append");
    }
    assert_eq!(log.offset_for_timestamp(0).expect("ts"), Some((0, 0)));
    assert_eq!(log.offset_for_timestamp(95).expect("ts"), Some((20, 100)));
    assert_eq!(log.offset_for_timestamp(100).expect("ts"), Some((20, 100)));
    assert_eq!(log.offset_for_timestamp(290).expect("ts"), Some((58, 290)));
    assert_eq!(log.offset_for_timestamp(291).expect("ts"), None);
    assert_eq!(log.max_timestamp(), Some((290, 59)));
}

#[test]
fn the_max_timestamp_record_is_the_record_not_its_batchs_last_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), small_config()).expect("open");
    assert_eq!(log.max_timestamp_record().expect("empty"), None);
    log.append(batch_of(2, 5), 0, 0).expect("append");
    // One batch, timestamps out of order: the largest is on its middle record, offset 3.
    let mixed = ["a", "b", "c"]
        .iter()
        .zip([10, 30, 20])
        .map(|(k, ts)| record(Some(k), Some("v"), ts))
        .collect();
    let compression = kafka_protocol::records::Compression::Gzip;
    log.append(encode(mixed, compression), 0, 0)
        .expect("append");
    log.append(batch_of(2, 25), 0, 0).expect("append");
    assert_eq!(
        log.max_timestamp(),
        Some((30, 4)),
        "the segment knows the batch"
    );
    assert_eq!(log.max_timestamp_record().expect("read"), Some((30, 3)));
}

#[test]
fn advancing_the_log_start_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = log_with(dir.path(), 40, 3);
    log.advance_log_start(61).expect("advance");
    assert_eq!(log.log_start_offset(), 61);
    assert!(segment_files(dir.path())[0].as_str() <= "00000000000000000061.log");
    drop(log);
    let log = PartitionLog::open(dir.path(), small_config()).expect("reopen");
    assert_eq!(log.log_start_offset(), 61);
    assert_eq!(
        batch_offsets(&log.read(61, 1, 120).expect("read")),
        vec![(60, 62)]
    );
}

#[test]
fn truncation_drops_records_and_appends_reuse_the_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = log_with(dir.path(), 40, 3);
    log.truncate_to(33).expect("truncate");
    assert_eq!(log.log_end_offset(), 33);
    let info = appended(log.append(batch_of(3, 0), 7, 0).expect("append"));
    assert_eq!(info.base_offset, 33);
    log.truncate_to(31).expect("truncate mid-batch");
    assert_eq!(log.log_end_offset(), 30, "a straddling batch goes whole");
    drop(log);
    let log = PartitionLog::open(dir.path(), small_config()).expect("reopen");
    assert_eq!(log.log_end_offset(), 30);
    assert_eq!(
        batch_offsets(&log.read(27, 1, 30).expect("read")),
        vec![(27, 29)]
    );
}

#[test]
fn flush_and_delete_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t-1");
    let mut log = PartitionLog::open(&path, small_config()).expect("open");
    log.append(batch_of(2, 0), 0, 0).expect("append");
    log.flush().expect("flush");
    log.delete().expect("delete");
    assert!(!path.exists());
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn any_offset_reads_the_batch_holding_it(
            sizes in proptest::collection::vec(1usize..12, 1..40),
            segment_bytes in 200u64..3000,
            reads in proptest::collection::vec((0usize..1000, 1usize..2000), 1..20),
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let config = LogConfig { segment_bytes, index_interval_bytes: 100, ..small_config() };
            let mut log = PartitionLog::open(dir.path(), config.clone()).expect("open");
            let mut batches = Vec::new();
            for (i, &n) in sizes.iter().enumerate() {
                let info = appended(log.append(batch_of(n, i as i64), 0, 0).expect("append"));
                batches.push((info.base_offset, info.last_offset));
            }
            let end = log.log_end_offset();
            let log = PartitionLog::open(dir.path(), config).expect("reopen");
            prop_assert_eq!(log.log_end_offset(), end);
            for (at, max_bytes) in reads {
                let offset = (at as i64) % end;
                let got = batch_offsets(&log.read(offset, max_bytes, end).expect("read"));
                prop_assert!(!got.is_empty());
                prop_assert!(got[0].0 <= offset && offset <= got[0].1);
                let start = batches.iter().position(|b| *b == got[0]).expect("a real batch");
                prop_assert_eq!(&batches[start..start + got.len()], &got[..]);
            }
        }
    }
}

#[test]
fn leader_epochs_are_tracked_across_appends_truncation_and_reopen() {
    let d = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(d.path(), small_config()).expect("open");
    appended(log.append(batch_of(2, 0), 0, 0).expect("append")); // offsets 0-1, epoch 0
    appended(log.append(batch_of(2, 1), 0, 0).expect("append")); // 2-3, epoch 0
    appended(log.append(batch_of(3, 2), 4, 0).expect("append")); // 4-6, epoch 4
    assert_eq!(log.latest_epoch(), Some(4));
    assert_eq!(log.end_offset_for_epoch(0), Some((0, 4)));
    assert_eq!(log.end_offset_for_epoch(3), Some((0, 4)));
    assert_eq!(log.end_offset_for_epoch(4), Some((4, 7)));
    drop(log);
    let mut log = PartitionLog::open(d.path(), small_config()).expect("reopen");
    assert_eq!(log.end_offset_for_epoch(4), Some((4, 7)));
    // A follower told that epoch 0 ended at 4 truncates there and loses epoch 4.
    log.truncate_to(4).expect("truncate");
    assert_eq!(log.latest_epoch(), Some(0));
    assert_eq!(log.end_offset_for_epoch(9), Some((0, 4)));
    let text =
        std::fs::read_to_string(d.path().join(epoch_cache::CHECKPOINT_FILE)).expect("checkpoint");
    assert_eq!(text, "0\n1\n0 0\n");
}

#[test]
fn replica_appends_keep_the_leaders_offsets_and_epochs() {
    let leader_dir = tempfile::tempdir().expect("tempdir");
    let follower_dir = tempfile::tempdir().expect("tempdir");
    let mut leader = PartitionLog::open(leader_dir.path(), small_config()).expect("open");
    appended(leader.append(batch_of(2, 0), 1, 0).expect("append"));
    appended(leader.append(batch_of(3, 1), 2, 0).expect("append"));
    let fetched = leader
        .read(0, 1 << 20, leader.log_end_offset())
        .expect("read");
    let mut follower = PartitionLog::open(follower_dir.path(), small_config()).expect("open");
    let info = follower
        .append_replica(fetched.clone(), 0)
        .expect("replicate");
    assert_eq!((info.base_offset, info.last_offset), (0, 4));
    assert_eq!(follower.log_end_offset(), 5);
    assert_eq!(follower.end_offset_for_epoch(1), Some((1, 2)));
    assert_eq!(follower.latest_epoch(), Some(2));
    assert_eq!(
        follower.read(0, 1 << 20, 5).expect("read"),
        fetched,
        "the follower's log is byte-identical"
    );
    // A batch that does not start at the follower's log end is refused.
    let again = leader.read(2, 1 << 20, 5).expect("read");
    assert!(matches!(
        follower.append_replica(again, 0),
        Err(LogError::CorruptBatch(_))
    ));
}

/// A transactional batch of `n` records from `producer_id`/`epoch` starting at `base_seq`.
fn txn_batch(producer_id: i64, epoch: i16, base_seq: i32, n: usize) -> Bytes {
    let mut batch = idempotent_batch(producer_id, epoch, base_seq, n).to_vec();
    // Attribute bit 4 (transactional), at byte 22, inside the CRC.
    batch[22] |= 0x10;
    batch::recompute_crc(&mut batch);
    Bytes::from(batch)
}

#[test]
fn an_open_transaction_holds_stability_until_its_marker_and_an_abort_is_listed() {
    let d = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(d.path(), small_config()).expect("open");
    appended(log.append(batch_of(2, 0), 0, 0).expect("plain"));
    appended(log.append(txn_batch(7, 0, 0, 3), 0, 0).expect("txn 7"));
    appended(log.append(txn_batch(8, 0, 0, 1), 0, 0).expect("txn 8"));
    assert_eq!(log.first_unstable_offset(), Some(2));
    assert!(log.has_open_transaction(7, 0) && log.has_open_transaction(8, 0));
    assert!(
        !log.has_open_transaction(7, 1),
        "a transaction of the next epoch (transaction.version 2) is another one"
    );
    let abort = log
        .append_marker(Marker::Abort, 7, 0, 0, 0, 0)
        .expect("abort marker");
    assert_eq!(abort.base_offset, 6);
    assert_eq!(
        log.first_unstable_offset(),
        Some(5),
        "8's transaction is still open"
    );
    log.append_marker(Marker::Commit, 8, 0, 0, 0, 0)
        .expect("commit marker");
    assert_eq!(log.first_unstable_offset(), None);
    assert_eq!(
        log.aborted_transactions(0, 8),
        [AbortedTxn {
            producer_id: 7,
            first_offset: 2,
            last_offset: 6,
            last_stable_offset: 5,
        }]
    );
    assert!(
        log.aborted_transactions(7, 8).is_empty(),
        "read past the abort marker"
    );
    let producers = log.active_producers();
    assert!(
        producers.iter().all(|p| p.txn_start_offset == -1),
        "{producers:?}"
    );
}

#[test]
fn a_client_may_not_write_a_control_batch_nor_a_marker_an_older_epoch() {
    let d = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(d.path(), small_config()).expect("open");
    let marker = control::encode_marker(Marker::Commit, 7, 0, 0, 0);
    assert!(matches!(
        log.append(marker, 0, 0),
        Err(LogError::InvalidRecord(_))
    ));
    appended(log.append(txn_batch(7, 3, 0, 1), 0, 0).expect("epoch 3"));
    assert!(matches!(
        log.append_marker(Marker::Abort, 7, 2, 0, 0, 0),
        Err(LogError::InvalidProducerEpoch {
            current: 3,
            got: 2,
            ..
        })
    ));
    assert_eq!(log.log_end_offset(), 1, "nothing written");
    assert_eq!(log.first_unstable_offset(), Some(0));
}

#[test]
fn aborted_transactions_survive_a_restart_through_txnindex_files_and_a_lost_one_is_rebuilt() {
    let d = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(d.path(), small_config()).expect("open");
    // One transaction left open, then twenty aborted over several 1 KiB segments: the last
    // abort marker is in the active segment.
    appended(log.append(txn_batch(99, 0, 0, 2), 0, 0).expect("open txn"));
    for i in 0..20i64 {
        appended(log.append(txn_batch(i, 0, 0, 8), 0, 0).expect("txn"));
        log.append_marker(Marker::Abort, i, 0, 0, 0, 0)
            .expect("abort");
    }
    let end = log.log_end_offset();
    let aborted = log.aborted_transactions(0, end);
    assert_eq!(aborted.len(), 20);
    assert!(
        segment_files(d.path()).len() > 2,
        "the markers span segments"
    );
    let index_files: Vec<_> = std::fs::read_dir(d.path())
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "txnindex"))
        .collect();
    assert!(index_files.len() > 1, "{index_files:?}");
    let entries: u64 = index_files
        .iter()
        .map(|p| std::fs::metadata(p).expect("meta").len())
        .sum();
    assert_eq!(entries, 20 * 34, "one 34-byte entry per abort");
    drop(log);

    let log = PartitionLog::open(d.path(), small_config()).expect("reopen");
    assert_eq!(log.aborted_transactions(0, end), aborted);
    assert_eq!(log.first_unstable_offset(), Some(0));
    let active = segment_files(d.path()).pop().expect("a segment");
    drop(log);
    // A crash lost the newest segment's index: rebuilt from the markers in its log.
    let newest_index = d.path().join(active.replace(".log", ".txnindex"));
    std::fs::remove_file(&newest_index).expect("the newest segment has an index");
    let log = PartitionLog::open(d.path(), small_config()).expect("recover");
    assert_eq!(log.aborted_transactions(0, end), aborted);
}

#[test]
fn truncating_away_a_marker_reopens_its_transaction() {
    let d = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(d.path(), small_config()).expect("open");
    appended(log.append(txn_batch(7, 0, 0, 2), 0, 0).expect("txn"));
    log.append_marker(Marker::Abort, 7, 0, 0, 0, 0)
        .expect("abort");
    assert_eq!(log.aborted_transactions(0, 3).len(), 1);
    log.truncate_to(2).expect("truncate");
    assert_eq!(log.first_unstable_offset(), Some(0), "open again");
    assert!(log.aborted_transactions(0, 3).is_empty());
    log.append_marker(Marker::Commit, 7, 0, 0, 0, 0)
        .expect("commit");
    assert_eq!(log.first_unstable_offset(), None);
    assert!(log.aborted_transactions(0, 3).is_empty());
}

#[test]
fn a_checkpoint_write_failure_names_the_os_reason() {
    let failed = checkpoint::CheckpointError::Io {
        path: "/data/t-0/leader-epoch-checkpoint".into(),
        source: std::io::Error::from_raw_os_error(24),
    };
    let e = LogError::from(failed);
    assert!(matches!(e, LogError::Io { .. }));
    assert_eq!(
        gregor_client::error_chain(&e),
        "i/o error on /data/t-0/leader-epoch-checkpoint: Too many open files (os error 24)"
    );
}

/// Descriptors this process holds on files in `dir`.
fn open_files_in(dir: &Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}

#[test]
fn a_log_holds_one_descriptor_per_segment_and_writes_its_indexes_by_the_time_it_closes() {
    let d = tempfile::tempdir().expect("tempdir");
    let dir = d.path().join("t-0");
    let mut log = log_with(&dir, 40, 3);
    let segments = segment_files(&dir);
    assert!(segments.len() >= 3, "{segments:?}");
    assert_eq!(open_files_in(&dir), segments.len());

    // Entries of the active segment are on disk once it is flushed...
    let active = dir.join(segments.last().expect("active").replace(".log", ".index"));
    appended(log.append(batch_of(3, 40), 3, 0).expect("append"));
    log.flush().expect("flush");
    let flushed = std::fs::read(&active).expect("index");
    assert!(!flushed.is_empty());
    // ...and at close, exactly what a reopen rebuilds from the log.
    for i in 41..44 {
        appended(log.append(batch_of(3, i), 3, 0).expect("append"));
    }
    drop(log);
    let closed = std::fs::read(&active).expect("index");
    assert!(closed.len() > flushed.len());
    let reopened = PartitionLog::open(&dir, small_config()).expect("reopen");
    assert_eq!(std::fs::read(&active).expect("index"), closed);
    assert_eq!(reopened.log_end_offset(), 44 * 3);
}

#[test]
fn a_reopened_log_keeps_an_epoch_that_starts_at_its_end_without_rewriting_its_checkpoint() {
    use std::os::unix::fs::MetadataExt;
    let d = tempfile::tempdir().expect("tempdir");
    let dir = d.path().join("t-0");
    let checkpoint = dir.join(epoch_cache::CHECKPOINT_FILE);
    let mut log = log_with(&dir, 2, 3);
    log.assign_epoch(4).expect("epoch 4 at the log end");
    drop(log);
    let written = std::fs::metadata(&checkpoint).expect("checkpoint").ino();

    let mut log = PartitionLog::open(&dir, small_config()).expect("reopen");
    assert_eq!(log.latest_epoch(), Some(4));
    assert_eq!(log.end_offset_for_epoch(4), Some((4, 6)));
    // Leading again at the same epoch: nothing to write (a rewrite replaces the file).
    log.assign_epoch(4).expect("same epoch");
    assert_eq!(
        std::fs::metadata(&checkpoint).expect("checkpoint").ino(),
        written
    );
}

#[test]
fn after_a_clean_shutdown_the_newest_segment_is_trusted_and_after_a_crash_verified() {
    let d = tempfile::tempdir().expect("tempdir");
    let dir = d.path().join("t-0");
    drop(log_with(&dir, 3, 2));
    // A bit flipped in the last record's value: only a CRC pass can see it.
    let newest = dir.join(segment_files(&dir).last().expect("segment"));
    let mut bytes = std::fs::read(&newest).expect("segment");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&newest, &bytes).expect("write");

    let trusted =
        PartitionLog::open_after(&dir, small_config(), Shutdown::Clean).expect("clean open");
    assert_eq!(trusted.log_end_offset(), 6);
    drop(trusted);
    let recovered = PartitionLog::open(&dir, small_config()).expect("recovering open");
    assert_eq!(recovered.log_end_offset(), 4, "the corrupt batch is cut");
}

#[test]
fn a_follower_truncating_to_its_end_drops_an_epoch_it_led_without_appending() {
    let d = tempfile::tempdir().expect("tempdir");
    let mut log = log_with(&d.path().join("t-0"), 2, 3);
    assert_eq!(log.latest_epoch(), Some(3));
    log.assign_epoch(5)
        .expect("led epoch 5 from offset 6, appended nothing");
    log.truncate_to(6)
        .expect("the new leader's end for epoch 3 is past ours");
    assert_eq!(log.latest_epoch(), Some(3));
    assert_eq!(log.log_end_offset(), 6);
    // Reopened, the cache is what was written.
    drop(log);
    let log = PartitionLog::open(&d.path().join("t-0"), small_config()).expect("reopen");
    assert_eq!(log.latest_epoch(), Some(3));
}

#[test]
fn an_index_file_that_cannot_be_written_fails_no_append_or_flush() {
    let d = tempfile::tempdir().expect("tempdir");
    let dir = d.path().join("t-0");
    let mut log = log_with(&dir, 2, 3);
    let active = segment_files(&dir).pop().expect("segment");
    std::fs::remove_file(dir.join(active.replace(".log", ".index"))).expect("remove index");
    for i in 2..6 {
        appended(log.append(batch_of(3, i), 3, 0).expect("append"));
    }
    log.flush()
        .expect("flush: the log is synced, the index failure only logged");
    drop(log);
    let log = PartitionLog::open(&dir, small_config()).expect("reopen rebuilds the index");
    assert_eq!(log.log_end_offset(), 18);
    assert!(dir.join(active.replace(".log", ".index")).exists());
}
