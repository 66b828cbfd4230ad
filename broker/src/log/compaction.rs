//! Log compaction for `cleanup.policy=compact`: the non-active segments are rewritten keeping
//! only the latest record per key across the whole log, and tombstones (null values) once
//! their batch is older than `delete.retention.ms`. Offsets never change: survivors are
//! re-encoded with their original offsets (and codec), so a compacted batch legitimately gets
//! a new CRC. Batches left with no record are dropped, but a segment is kept even when empty
//! so the log start offset does not move.
//!
//! Batches are kept byte for byte when nothing in them goes, when they are transactional or
//! control batches (transaction markers), when they do not decode, and when they are a
//! producer's newest batch, whose sequence range recovery needs to rebuild producer state.

use std::collections::HashMap;
use std::io::Write;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, RecordSet,
};

use super::batch::{self, add_sequence, BatchHeader};
use super::index::io_err;
use super::segment::{segment_path, Recovery, Segment};
use super::{LogError, PartitionLog};

/// Suffix of a segment being rewritten; a leftover one is deleted on open.
pub(crate) const TEMP_SUFFIX: &str = ".cleaned";

/// Decodes one whole batch into its records.
pub(crate) fn decode(batch: &[u8]) -> Result<RecordSet, LogError> {
    let mut buf = Bytes::copy_from_slice(batch);
    RecordBatchDecoder::decode(&mut buf).map_err(|e| LogError::CorruptBatch(e.to_string()))
}

/// Whether a batch is left alone whatever its records.
fn untouchable(header: &BatchHeader) -> bool {
    header.is_control() || header.is_transactional()
}

/// What the whole log says about which records survive.
#[derive(Debug, Default)]
struct KeyMap {
    /// Offset of the latest record per key.
    latest: HashMap<Bytes, i64>,
    /// Base offset of each producer's newest batch.
    newest_batch: HashMap<i64, i64>,
}

impl PartitionLog {
    /// Compacts the non-active segments; returns how many were rewritten. Skipped when no
    /// segment rolled since the last run and no tombstone can have expired since.
    pub(super) fn compact(&mut self, now_ms: i64) -> Result<usize, LogError> {
        let active_base = self.active()?.base_offset;
        if let Some((base, at)) = self.last_compaction {
            if base == active_base && now_ms.saturating_sub(at) < self.config.delete_retention_ms {
                return Ok(0);
            }
        }
        self.last_compaction = Some((active_base, now_ms));
        if self.segments.len() < 2 {
            return Ok(0);
        }
        let map = self.key_map()?;
        let tombstone_horizon = now_ms.saturating_sub(self.config.delete_retention_ms);
        let bases: Vec<i64> = self.segments.keys().copied().collect();
        let mut rewritten = 0;
        for &base in &bases[..bases.len() - 1] {
            let Some(segment) = self.segments.get(&base) else {
                continue;
            };
            let mut out = Vec::new();
            let mut changed = false;
            segment.for_each_batch(|_, header, bytes| {
                match compact_batch(header, bytes, &map, tombstone_horizon) {
                    Some(replacement) => {
                        changed = true;
                        out.extend_from_slice(&replacement);
                    }
                    None => out.extend_from_slice(bytes),
                }
                Ok(())
            })?;
            if changed {
                self.replace_segment(base, &out)?;
                rewritten += 1;
            }
        }
        Ok(rewritten)
    }

    /// Scans every record of the log for the latest offset per key.
    fn key_map(&self) -> Result<KeyMap, LogError> {
        let mut map = KeyMap::default();
        for segment in self.segments.values() {
            segment.for_each_batch(|_, header, bytes| {
                if header.producer_id >= 0 {
                    map.newest_batch
                        .insert(header.producer_id, header.base_offset);
                }
                if untouchable(header) {
                    return Ok(());
                }
                if let Ok(set) = decode(bytes) {
                    for record in set.records {
                        if let Some(key) = record.key {
                            map.latest.insert(key, record.offset);
                        }
                    }
                }
                Ok(())
            })?;
        }
        Ok(map)
    }

    /// Swaps the segment at `base` for `contents` (temp file, fsync, rename) and reopens it.
    fn replace_segment(&mut self, base: i64, contents: &[u8]) -> Result<(), LogError> {
        let path = segment_path(&self.dir, base, "log");
        let tmp = path.with_extension(format!("log{TEMP_SUFFIX}"));
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(contents)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(io_err(&path))?;
        let segment = Segment::open(
            &self.dir,
            base,
            Recovery::Trust,
            self.config.index_interval_bytes,
            &mut |_| {},
        )?;
        self.segments.insert(base, segment);
        Ok(())
    }
}

/// The compacted form of one batch: `None` to keep it as it is, `Some(empty)` to drop it,
/// else its surviving records re-encoded.
fn compact_batch(
    header: &BatchHeader,
    bytes: &[u8],
    map: &KeyMap,
    tombstone_horizon: i64,
) -> Option<Vec<u8>> {
    if untouchable(header) {
        return None;
    }
    if header.producer_id >= 0
        && map.newest_batch.get(&header.producer_id) == Some(&header.base_offset)
    {
        return None;
    }
    let set = decode(bytes).ok()?;
    let total = set.records.len();
    let expired_tombstones = header.max_timestamp < tombstone_horizon;
    let survivors: Vec<Record> = set
        .records
        .into_iter()
        .filter(|r| match &r.key {
            None => true,
            Some(key) => {
                map.latest.get(key) == Some(&r.offset) && !(r.value.is_none() && expired_tombstones)
            }
        })
        .collect();
    if survivors.len() == total {
        return None;
    }
    if survivors.is_empty() {
        return Some(Vec::new());
    }
    reencode(header, set.compression, survivors)
}

/// Encodes the survivors of a batch as one batch with their original offsets, keeping the
/// producer's sequence numbering, the codec and the timestamp type.
fn reencode(
    header: &BatchHeader,
    compression: kafka_protocol::records::Compression,
    mut records: Vec<Record>,
) -> Option<Vec<u8>> {
    let first = records.first()?.offset;
    for record in &mut records {
        // The encoder starts a new batch wherever offset - sequence changes, so sequences
        // must follow offsets; without a producer the base sequence stays -1.
        record.sequence = if header.base_sequence >= 0 {
            add_sequence(
                header.base_sequence,
                (record.offset - header.base_offset) as i32,
            )
        } else {
            ((record.offset - first) as i32).wrapping_sub(1)
        };
    }
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).ok()?;
    let mut out = buf.to_vec();
    let encoded = batch::check_framing(&out).ok()?;
    if encoded.total_len() != out.len() {
        // Split into several batches (sequence wrap); keep the original instead.
        return None;
    }
    if header.is_log_append_time() {
        let attributes = encoded.attributes | (header.attributes & (1 << 3));
        out[21..23].copy_from_slice(&attributes.to_be_bytes());
        out[35..43].copy_from_slice(&header.max_timestamp.to_be_bytes());
        batch::recompute_crc(&mut out);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::super::batch::tests::{encode, record};
    use super::super::{AppendOutcome, CleanupPolicy, LogConfig, PartitionLog};
    use super::*;
    use kafka_protocol::records::Compression;

    fn config() -> LogConfig {
        LogConfig {
            segment_bytes: 300,
            index_interval_bytes: 64,
            retention_ms: None,
            cleanup_policy: CleanupPolicy::Compact,
            delete_retention_ms: 1000,
            ..LogConfig::default()
        }
    }

    /// Every (offset, key, value) in the log.
    fn contents(log: &PartitionLog) -> Vec<(i64, String, Option<String>)> {
        let end = log.log_end_offset();
        let bytes = log
            .read(log.log_start_offset(), usize::MAX, end)
            .expect("read");
        let sets = RecordBatchDecoder::decode_all(&mut bytes.clone()).expect("decodes");
        sets.into_iter()
            .flat_map(|s| s.records)
            .map(|r| {
                let text = |b: Option<Bytes>| b.map(|b| String::from_utf8_lossy(&b).into_owned());
                (r.offset, text(r.key).unwrap_or_default(), text(r.value))
            })
            .collect()
    }

    fn put(log: &mut PartitionLog, entries: &[(&str, Option<&str>)], ts: i64, codec: Compression) {
        let records = entries
            .iter()
            .map(|(k, v)| record(Some(k), *v, ts))
            .collect();
        let outcome = log.append(encode(records, codec), 0, ts).expect("append");
        assert!(matches!(outcome, AppendOutcome::Appended(_)));
    }

    #[test]
    fn compaction_keeps_the_latest_record_per_key_at_its_original_offset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = PartitionLog::open(dir.path(), config()).expect("open");
        for round in 0..6 {
            let v = format!("v{round}");
            let codec = if round % 2 == 0 {
                Compression::None
            } else {
                Compression::Gzip
            };
            put(
                &mut log,
                &[
                    ("a", Some(&v)),
                    ("b", Some(&v)),
                    (&format!("u{round}"), Some("x")),
                ],
                10,
                codec,
            );
        }
        put(&mut log, &[("a", Some("last"))], 10, Compression::None);
        let end = log.log_end_offset();
        let before = contents(&log);
        let rewritten = log.maintain(20).expect("maintain");
        assert!(rewritten > 0);
        assert_eq!(log.log_end_offset(), end);
        let after = contents(&log);
        assert!(after.len() < before.len());
        // Survivors are a subset of the original records at the same offsets.
        for entry in &after {
            assert!(before.contains(entry), "{entry:?} was in the log");
        }
        let a: Vec<_> = after.iter().filter(|(_, k, _)| k == "a").collect();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].2.as_deref(), Some("last"));
        let b: Vec<_> = after.iter().filter(|(_, k, _)| k == "b").collect();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].2.as_deref(), Some("v5"));
        for round in 0..6 {
            assert!(after.iter().any(|(_, k, _)| *k == format!("u{round}")));
        }
        // A reopen sees the same compacted log.
        drop(log);
        let log = PartitionLog::open(dir.path(), config()).expect("reopen");
        assert_eq!(contents(&log), after);
        assert_eq!(log.log_end_offset(), end);
    }

    #[test]
    fn tombstones_stay_until_delete_retention_then_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = PartitionLog::open(dir.path(), config()).expect("open");
        put(
            &mut log,
            &[("k", Some("v")), ("keep", Some("1"))],
            100,
            Compression::None,
        );
        put(&mut log, &[("k", None)], 100, Compression::None);
        for i in 0..8 {
            put(
                &mut log,
                &[(&format!("f{i}"), Some("filler"))],
                100,
                Compression::None,
            );
        }
        log.maintain(500).expect("maintain");
        let after = contents(&log);
        assert!(!after.iter().any(|(_, k, v)| k == "k" && v.is_some()));
        assert!(
            after.iter().any(|(_, k, v)| k == "k" && v.is_none()),
            "tombstone kept"
        );
        log.maintain(5000).expect("maintain later");
        let after = contents(&log);
        assert!(!after.iter().any(|(_, k, _)| k == "k"), "tombstone dropped");
        assert!(after.iter().any(|(_, k, _)| k == "keep"));
    }

    #[test]
    fn reads_skip_over_batches_compaction_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = PartitionLog::open(dir.path(), config()).expect("open");
        for _ in 0..8 {
            put(
                &mut log,
                &[("same", Some("value-value"))],
                10,
                Compression::None,
            );
        }
        let end = log.log_end_offset();
        log.maintain(20).expect("maintain");
        let bytes = log
            .read(0, usize::MAX, end)
            .expect("read from a removed offset");
        let first = BatchHeader::parse(&bytes).expect("a batch");
        assert!(first.base_offset > 0);
        assert_eq!(log.log_start_offset(), 0);
    }
}
