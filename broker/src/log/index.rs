//! The two sparse indexes of a segment, in Kafka's file formats: the offset index (`.index`,
//! 8-byte entries: relative offset u32, file position u32) and the time index (`.timeindex`,
//! 12-byte entries: timestamp i64, relative offset u32, timestamps increasing). Both are kept
//! in memory and appended to their files as the segment grows; recovery rebuilds them from
//! the log, so the files are a convenience for tools, never trusted.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

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

/// The open index files of the active segment, appended to as entries are added.
#[derive(Debug)]
pub(crate) struct IndexFiles {
    /// `.index` path, for errors.
    offset_path: PathBuf,
    /// `.index`, opened for append.
    offset_file: File,
    /// `.timeindex` path, for errors.
    time_path: PathBuf,
    /// `.timeindex`, opened for append.
    time_file: File,
}

impl IndexFiles {
    /// Opens both files for append, creating them if missing.
    pub fn open(offset_path: PathBuf, time_path: PathBuf) -> Result<IndexFiles, LogError> {
        let open = |path: &Path| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(io_err(path))
        };
        Ok(IndexFiles {
            offset_file: open(&offset_path)?,
            time_file: open(&time_path)?,
            offset_path,
            time_path,
        })
    }

    /// Appends serialised entries to both files (either may be empty).
    pub fn append(&mut self, offsets: &[u8], times: &[u8]) -> Result<(), LogError> {
        if !offsets.is_empty() {
            self.offset_file
                .write_all(offsets)
                .map_err(io_err(&self.offset_path))?;
        }
        if !times.is_empty() {
            self.time_file
                .write_all(times)
                .map_err(io_err(&self.time_path))?;
        }
        Ok(())
    }

    /// Cuts both files to the given entry counts.
    pub fn truncate(&mut self, offset_entries: usize, time_entries: usize) -> Result<(), LogError> {
        self.offset_file
            .set_len(offset_entries as u64 * 8)
            .map_err(io_err(&self.offset_path))?;
        self.time_file
            .set_len(time_entries as u64 * 12)
            .map_err(io_err(&self.time_path))
    }

    /// fsyncs both files.
    pub fn sync(&self) -> Result<(), LogError> {
        self.offset_file
            .sync_data()
            .map_err(io_err(&self.offset_path))?;
        self.time_file.sync_data().map_err(io_err(&self.time_path))
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
