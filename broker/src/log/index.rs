//! The two sparse indexes of a segment, in Kafka's file formats: the offset index (`.index`,
//! 8-byte entries: relative offset u32, file position u32) and the time index (`.timeindex`,
//! 12-byte entries: timestamp i64, relative offset u32, timestamps increasing). Both are kept
//! in memory and written to their files in batches as the segment grows ([`IndexFiles`]);
//! recovery rebuilds them from the log, so the files are a convenience for tools, never
//! trusted.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use super::LogError;

/// One offset-index entry: the batch whose base offset is `relative_offset` starts at `position`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    /// Batch base offset minus the segment base offset.
    pub relative_offset: u32,
    /// Byte position of the batch in the `.log` file.
    pub position: u32,
}

/// One time-index entry: no record up to `relative_offset` has a timestamp above `timestamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    /// Largest timestamp in the segment up to the entry.
    pub timestamp: i64,
    /// Segment-relative last offset of the batch that carried `timestamp`.
    pub relative_offset: u32,
}

impl OffsetEntry {
    /// The on-disk form.
    pub fn to_bytes(self) -> [u8; 8] {
        let mut out = [0u8; 8];
        out[..4].copy_from_slice(&self.relative_offset.to_be_bytes());
        out[4..].copy_from_slice(&self.position.to_be_bytes());
        out
    }
}

impl TimeEntry {
    /// The on-disk form.
    pub fn to_bytes(self) -> [u8; 12] {
        let mut out = [0u8; 12];
        out[..8].copy_from_slice(&self.timestamp.to_be_bytes());
        out[8..].copy_from_slice(&self.relative_offset.to_be_bytes());
        out
    }
}

/// File position to start scanning from for `relative_offset`: that of the last entry at or
/// below it, or the start of the segment.
pub(crate) fn position_for(entries: &[OffsetEntry], relative_offset: u32) -> u32 {
    let n = entries.partition_point(|e| e.relative_offset <= relative_offset);
    n.checked_sub(1).map_or(0, |i| entries[i].position)
}

/// Relative offset to start scanning from for the first record with a timestamp >=
/// `timestamp`: everything up to the last entry strictly below it is older.
pub(crate) fn offset_for_time(entries: &[TimeEntry], timestamp: i64) -> u32 {
    let n = entries.partition_point(|e| e.timestamp < timestamp);
    n.checked_sub(1).map_or(0, |i| entries[i].relative_offset)
}

/// Serialises offset entries.
pub(crate) fn offset_bytes(entries: &[OffsetEntry]) -> Vec<u8> {
    entries.iter().flat_map(|e| e.to_bytes()).collect()
}

/// Serialises time entries.
pub(crate) fn time_bytes(entries: &[TimeEntry]) -> Vec<u8> {
    entries.iter().flat_map(|e| e.to_bytes()).collect()
}

/// Maps an I/O error to [`LogError::Io`] on `path`.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Makes `path` hold exactly `bytes`, writing only when it does not already.
pub(crate) fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<(), LogError> {
    if std::fs::read(path).is_ok_and(|current| current == bytes) {
        return Ok(());
    }
    std::fs::write(path, bytes).map_err(io_err(path))
}

/// Index bytes of one file kept before they are written.
const WRITE_BATCH: usize = 1024;

/// Index bytes of one file kept at most while writing them fails; past it they are dropped.
const MAX_PENDING: usize = 1 << 20;

/// The index files of the active segment. New entries are kept in memory and written (the file
/// opened for just that) once [`WRITE_BATCH`] bytes of them build up, at an fsync, and when the
/// segment closes. A segment's indexes are rebuilt from its log whenever it is opened, so what
/// a crash loses of them costs nothing, and a partition holds one descriptor per segment
/// rather than three. For the same reason a failure to write them (no descriptor left, a full
/// disk) fails nothing: it is logged, and the entries wait for the next write.
#[derive(Debug)]
pub(crate) struct IndexFiles {
    /// `.index` path.
    offset_path: PathBuf,
    /// `.timeindex` path.
    time_path: PathBuf,
    /// Serialised entries not yet written: offsets, times. A mutex only so an fsync can write
    /// them through `&self`; the segment is only used under its partition's log lock.
    pending: Mutex<(Vec<u8>, Vec<u8>)>,
}

impl IndexFiles {
    /// The index files at these paths, created if missing.
    pub fn open(offset_path: PathBuf, time_path: PathBuf) -> Result<IndexFiles, LogError> {
        for path in [&offset_path, &time_path] {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(io_err(path))?;
        }
        Ok(IndexFiles {
            offset_path,
            time_path,
            pending: Mutex::new((Vec::new(), Vec::new())),
        })
    }

    /// Adds serialised entries to both files (either may be empty).
    pub fn append(&mut self, offsets: &[u8], times: &[u8]) {
        let pending = self.pending.get_mut();
        pending.0.extend_from_slice(offsets);
        pending.1.extend_from_slice(times);
        if pending.0.len() >= WRITE_BATCH || pending.1.len() >= WRITE_BATCH {
            self.write_pending();
        }
    }

    /// Appends the entries not yet written to their files (which must exist: a file deleted
    /// with its segment is not made again). A failure is logged; the entries stay pending,
    /// up to [`MAX_PENDING`] bytes.
    fn write_pending(&self) {
        let mut pending = self.pending.lock();
        let (offsets, times) = &mut *pending;
        for (path, bytes) in [(&self.offset_path, offsets), (&self.time_path, times)] {
            if bytes.is_empty() {
                continue;
            }
            let written = OpenOptions::new()
                .append(true)
                .open(path)
                .and_then(|mut f| f.write_all(bytes));
            match written {
                Ok(()) => bytes.clear(),
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "writing index entries failed (the index is rebuilt from the log at the next open)");
                    if bytes.len() > MAX_PENDING {
                        bytes.clear();
                    }
                }
            }
        }
    }

    /// Cuts both files to the given entry counts (a failure is logged, as for writes).
    pub fn truncate(&mut self, offset_entries: usize, time_entries: usize) {
        self.write_pending();
        for (path, len) in [
            (&self.offset_path, offset_entries as u64 * 8),
            (&self.time_path, time_entries as u64 * 12),
        ] {
            let cut = OpenOptions::new()
                .write(true)
                .open(path)
                .and_then(|f| f.set_len(len));
            if let Err(e) = cut {
                tracing::warn!(file = %path.display(), error = %e, "truncating an index failed (the index is rebuilt from the log at the next open)");
            }
        }
    }

    /// Writes what is pending and fsyncs both files (a failure is logged, as for writes).
    pub fn sync(&self) {
        self.write_pending();
        for path in [&self.offset_path, &self.time_path] {
            if let Err(e) = File::open(path).and_then(|f| f.sync_data()) {
                tracing::warn!(file = %path.display(), error = %e, "fsync of an index failed (the index is rebuilt from the log at the next open)");
            }
        }
    }
}

impl Drop for IndexFiles {
    /// A closing segment writes what is pending, as far as it can.
    fn drop(&mut self) {
        self.write_pending();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(relative_offset: u32, position: u32) -> OffsetEntry {
        OffsetEntry {
            relative_offset,
            position,
        }
    }

    #[test]
    fn offset_lookup_takes_the_last_entry_at_or_below() {
        let entries = [entry(10, 100), entry(20, 200), entry(30, 300)];
        assert_eq!(position_for(&entries, 5), 0);
        assert_eq!(position_for(&entries, 10), 100);
        assert_eq!(position_for(&entries, 29), 200);
        assert_eq!(position_for(&entries, 1000), 300);
        assert_eq!(position_for(&[], 7), 0);
    }

    #[test]
    fn time_lookup_takes_the_last_entry_strictly_below() {
        let entries = [
            TimeEntry {
                timestamp: 100,
                relative_offset: 4,
            },
            TimeEntry {
                timestamp: 200,
                relative_offset: 9,
            },
        ];
        assert_eq!(offset_for_time(&entries, 100), 0);
        assert_eq!(offset_for_time(&entries, 101), 4);
        assert_eq!(offset_for_time(&entries, 201), 9);
    }

    #[test]
    fn entries_serialise_big_endian() {
        assert_eq!(entry(1, 2).to_bytes(), [0, 0, 0, 1, 0, 0, 0, 2]);
        let t = TimeEntry {
            timestamp: 3,
            relative_offset: 4,
        };
        assert_eq!(t.to_bytes(), [0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 4]);
    }
}
