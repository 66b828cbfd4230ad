//! The leader-epoch cache of one partition: for each leader epoch, the first offset written in
//! it. It answers OffsetForLeaderEpoch ("where did epoch E end?"), which a follower uses after a
//! leader change to find where its log diverges and truncate there instead of serving records
//! that were never committed. Persisted as Kafka's `leader-epoch-checkpoint` file: a version
//! line (0), a count line, then `epoch start_offset` lines, written to a temp file, fsynced and
//! renamed.

use std::path::Path;

use super::checkpoint::{self, CheckpointError};

/// The checkpoint file name inside a partition directory, as in Kafka.
pub const CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";

/// One entry: leader epoch and the first offset appended under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    /// Leader epoch.
    pub epoch: i32,
    /// First offset of that epoch.
    pub start_offset: i64,
}

/// The epochs of one partition, in increasing epoch and start-offset order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochCache {
    entries: Vec<EpochEntry>,
}

impl EpochCache {
    /// An empty cache.
    pub fn new() -> EpochCache {
        EpochCache::default()
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The latest epoch, if any.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Records that `epoch` starts at `start_offset` (a new leader's first append). Entries
    /// with a larger or equal epoch, or a start offset at or after this one, are replaced:
    /// they belong to a history this log no longer has.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) {
        if self
            .entries
            .last()
            .is_some_and(|l| l.epoch == epoch && l.start_offset <= start_offset)
        {
            return;
        }
        self.entries
            .retain(|e| e.epoch < epoch && e.start_offset < start_offset);
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
    }

    /// OffsetForLeaderEpoch: the largest epoch <= `epoch` and the offset where it ended (the
    /// next epoch's start, or `log_end` for the latest). `None` when no such epoch is known
    /// (Kafka answers UNDEFINED_EPOCH / UNDEFINED_OFFSET).
    pub fn end_offset_for(&self, epoch: i32, log_end: i64) -> Option<(i32, i64)> {
        let i = self.entries.iter().rposition(|e| e.epoch <= epoch)?;
        let end = self
            .entries
            .get(i + 1)
            .map(|n| n.start_offset)
            .unwrap_or(log_end);
        Some((self.entries[i].epoch, end))
    }

    /// The start offset of the latest epoch, if any.
    pub fn latest_start(&self) -> Option<i64> {
        self.entries.last().map(|e| e.start_offset)
    }

    /// Drops entries at or after `offset` (the log was truncated to end there).
    pub fn truncate_from_end(&mut self, offset: i64) {
        self.entries.retain(|e| e.start_offset < offset);
    }

    /// Drops entries wholly before `offset` (the log start moved), keeping the epoch that
    /// covers `offset` with its start clamped to it.
    pub fn truncate_from_start(&mut self, offset: i64) {
        let keep_from = self
            .entries
            .iter()
            .rposition(|e| e.start_offset <= offset)
            .unwrap_or(0);
        self.entries.drain(..keep_from);
        if let Some(first) = self.entries.first_mut() {
            first.start_offset = first.start_offset.max(offset);
        }
    }

    /// Reads `<dir>/leader-epoch-checkpoint`; an absent file is an empty cache.
    pub fn read(dir: &Path) -> Result<EpochCache, CheckpointError> {
        let path = dir.join(CHECKPOINT_FILE);
        let mut cache = EpochCache::new();
        for entry in checkpoint::read(&path, 2)?.unwrap_or_default() {
            match (entry[0].parse(), entry[1].parse()) {
                (Ok(epoch), Ok(start_offset)) => cache.entries.push(EpochEntry {
                    epoch,
                    start_offset,
                }),
                _ => {
                    return Err(CheckpointError::malformed(
                        &path,
                        "an entry is not `epoch offset`",
                    ))
                }
            }
        }
        Ok(cache)
    }

    /// Writes the checkpoint durably (temp file, fsync, rename).
    pub fn write(&self, dir: &Path) -> Result<(), CheckpointError> {
        let entries: Vec<String> = self
            .entries
            .iter()
            .map(|e| format!("{} {}", e.epoch, e.start_offset))
            .collect();
        checkpoint::write(&dir.join(CHECKPOINT_FILE), &entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> EpochCache {
        let mut c = EpochCache::new();
        for (e, o) in entries {
            c.assign(*e, *o);
        }
        c
    }

    #[test]
    fn end_offset_of_an_epoch_is_the_next_epochs_start_or_the_log_end() {
        let c = cache(&[(0, 0), (2, 100), (5, 250)]);
        assert_eq!(c.end_offset_for(0, 300), Some((0, 100)));
        assert_eq!(
            c.end_offset_for(1, 300),
            Some((0, 100)),
            "epoch 1 never led: answer 0"
        );
        assert_eq!(c.end_offset_for(4, 300), Some((2, 250)));
        assert_eq!(c.end_offset_for(5, 300), Some((5, 300)));
        assert_eq!(c.end_offset_for(9, 300), Some((5, 300)));
        assert_eq!(c.end_offset_for(-1, 300), None);
    }

    #[test]
    fn a_new_epoch_replaces_a_divergent_history() {
        let mut c = cache(&[(0, 0), (2, 100), (3, 150)]);
        // A new leader at epoch 4 whose log diverged at 120: epoch 3 from 150 is gone.
        c.assign(4, 120);
        assert_eq!(c.entries(), cache(&[(0, 0), (2, 100), (4, 120)]).entries());
        // Re-assigning the current epoch at a later offset changes nothing.
        c.assign(4, 130);
        assert_eq!(c.latest_epoch(), Some(4));
        assert_eq!(c.entries().last().map(|e| e.start_offset), Some(120));
    }

    #[test]
    fn truncation_at_either_end_keeps_the_covering_epoch() {
        let mut c = cache(&[(0, 0), (2, 100), (5, 250)]);
        c.truncate_from_end(250);
        assert_eq!(c.latest_epoch(), Some(2));
        c.truncate_from_start(120);
        assert_eq!(
            c.entries(),
            &[EpochEntry {
                epoch: 2,
                start_offset: 120
            }]
        );
    }

    #[test]
    fn checkpoint_file_round_trips_in_kafkas_format() {
        let d = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            EpochCache::read(d.path()).expect("absent"),
            EpochCache::new()
        );
        let c = cache(&[(0, 0), (3, 42)]);
        c.write(d.path()).expect("write");
        let text = std::fs::read_to_string(d.path().join(CHECKPOINT_FILE)).expect("read");
        assert_eq!(text, "0\n2\n0 0\n3 42\n");
        assert_eq!(EpochCache::read(d.path()).expect("read"), c);
        std::fs::write(d.path().join(CHECKPOINT_FILE), "0\n3\n0 0\n").expect("corrupt");
        assert!(matches!(
            EpochCache::read(d.path()),
            Err(CheckpointError::Malformed { .. })
        ));
    }
}
