//! The on-disk form of the Raft log: segment files `<20-digit first index>.log` holding frames
//! `[payload length: u32 BE][crc32c of payload: u32 BE][payload: JSON of one entry]`, with
//! consecutive indexes inside a segment and across segments. [`scan`] reads a segment back and
//! says where a torn tail starts; [`SegmentSet`] is the writer's view (append, roll, truncate,
//! purge). Everything here blocks and runs on the log writer thread or at open.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::LogStoreError;
use crate::quorum::durable;
use crate::quorum::types::Entry;

/// Bytes of a frame header: payload length and checksum.
const HEADER_LEN: usize = 8;

/// Largest payload a frame may claim. Metadata entries are kilobytes; a larger length is a torn
/// or corrupt header, and trusting it would allocate whatever the disk says.
const MAX_PAYLOAD: usize = 64 << 20;

/// Frames `payload` for a segment file.
pub(super) fn encode_frame(payload: &[u8]) -> Result<Vec<u8>, usize> {
    if payload.len() > MAX_PAYLOAD {
        return Err(payload.len());
    }
    let len = u32::try_from(payload.len()).map_err(|_| payload.len())?;
    let mut frame = Vec::with_capacity(HEADER_LEN + payload.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
    frame.extend_from_slice(payload);
    Ok(frame)
}

/// The file name of the segment whose first entry has index `first`.
pub(super) fn file_name(first: u64) -> String {
    format!("{first:020}.log")
}

/// The first index named by a segment file name, if `name` is one.
pub(super) fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// One segment file as the writer knows it.
#[derive(Debug)]
pub(super) struct Segment {
    /// Index of its first entry (also its name).
    pub first: u64,
    /// The file.
    pub path: PathBuf,
    /// Byte offset of each entry's frame, entry `first + i` at `offsets[i]`; truncation cuts here.
    pub offsets: Vec<u64>,
    /// Bytes of whole frames in the file.
    pub len: u64,
}

impl Segment {
    /// The index the next entry appended to this segment must have.
    pub fn next_index(&self) -> u64 {
        self.first.saturating_add(self.offsets.len() as u64)
    }
}

/// What [`scan`] found in one segment.
#[derive(Debug)]
pub(super) struct Scanned {
    /// The segment, covering the whole frames before any torn tail.
    pub segment: Segment,
    /// Its entries, in index order.
    pub entries: Vec<Entry>,
    /// Where an unreadable tail starts and why, if the file does not end on a whole frame.
    pub torn: Option<(u64, &'static str)>,
}

/// Reads segment `path` whose first entry should have index `first`. A frame that is cut short
/// or fails its checksum ends the readable part (`torn`); a frame whose checksum holds but which
/// does not decode, or whose index is out of sequence, is corruption and an error.
pub(super) fn scan(path: &Path, first: u64) -> Result<Scanned, LogStoreError> {
    let data = fs::read(path).map_err(|source| LogStoreError::Io {
        op: "read log segment",
        path: path.to_path_buf(),
        source,
    })?;
    let mut entries = Vec::new();
    let mut offsets = Vec::new();
    let mut pos = 0usize;
    let torn = loop {
        let rest = &data[pos..];
        if rest.is_empty() {
            break None;
        }
        let Some((header, body)) = rest.split_first_chunk::<HEADER_LEN>() else {
            break Some((pos as u64, "incomplete frame header"));
        };
        let [l0, l1, l2, l3, c0, c1, c2, c3] = *header;
        let len = u32::from_be_bytes([l0, l1, l2, l3]) as usize;
        let crc = u32::from_be_bytes([c0, c1, c2, c3]);
        if len > MAX_PAYLOAD {
            break Some((pos as u64, "implausible frame length"));
        }
        let Some(payload) = body.get(..len) else {
            break Some((pos as u64, "incomplete frame"));
        };
        if crc32c::crc32c(payload) != crc {
            break Some((pos as u64, "checksum mismatch"));
        }
        let entry: Entry =
            serde_json::from_slice(payload).map_err(|source| LogStoreError::DecodeEntry {
                path: path.to_path_buf(),
                offset: pos as u64,
                source,
            })?;
        let expected = first.saturating_add(entries.len() as u64);
        if entry.log_id.index != expected {
            return Err(LogStoreError::Corrupt {
                path: path.to_path_buf(),
                offset: pos as u64,
                reason: format!(
                    "entry has index {} where {expected} belongs",
                    entry.log_id.index
                ),
            });
        }
        offsets.push(pos as u64);
        entries.push(entry);
        pos += HEADER_LEN + len;
    };
    Ok(Scanned {
        segment: Segment {
            first,
            path: path.to_path_buf(),
            offsets,
            len: pos as u64,
        },
        entries,
        torn,
    })
}

/// The writer's view of the segment files: contiguous, ascending, the last one open for
/// appending. Only the log writer thread touches it, which is what serializes log I/O.
#[derive(Debug)]
pub(super) struct SegmentSet {
    /// Directory holding the segments.
    dir: PathBuf,
    /// A segment at least this long gets no more entries; the next one starts a new file, so
    /// purging can delete whole files.
    segment_bytes: u64,
    /// The segments, ascending by first index, with no gap between them.
    segments: Vec<Segment>,
    /// Append handle on the last segment, opened when first needed.
    active: Option<File>,
}

impl SegmentSet {
    /// The set over `segments` (ascending, contiguous, as recovered) in `dir`.
    pub fn new(dir: PathBuf, segment_bytes: u64, segments: Vec<Segment>) -> SegmentSet {
        SegmentSet {
            dir,
            segment_bytes,
            segments,
            active: None,
        }
    }

    /// Appends `frames` (index and framed entry, ascending) and fsyncs them. The first index must
    /// follow the last entry on disk; an empty set starts at whatever index comes.
    pub fn append<'a>(
        &mut self,
        frames: impl IntoIterator<Item = &'a (u64, Vec<u8>)>,
    ) -> Result<(), LogStoreError> {
        let mut created = false;
        for (index, frame) in frames {
            let roll = match self.segments.last() {
                None => true,
                Some(last) if last.next_index() != *index => {
                    return Err(LogStoreError::Hole {
                        expected: last.next_index(),
                        got: *index,
                    })
                }
                Some(last) => last.len >= self.segment_bytes,
            };
            if roll {
                self.roll(*index)?;
                created = true;
            }
            let file = self.active_file()?;
            let written = file.write_all(frame);
            let path = self.last_path();
            written.map_err(|source| LogStoreError::Io {
                op: "append to log segment",
                path,
                source,
            })?;
            if let Some(last) = self.segments.last_mut() {
                last.offsets.push(last.len);
                last.len += frame.len() as u64;
            }
        }
        if let Some(file) = &self.active {
            file.sync_data().map_err(|source| LogStoreError::Io {
                op: "fsync log segment",
                path: self.last_path(),
                source,
            })?;
        }
        if created {
            self.sync_dir()?;
        }
        Ok(())
    }

    /// Removes entries from `index` on: later segments first, so a crash midway never leaves a
    /// hole, then the segment holding `index` is cut at its frame.
    pub fn truncate(&mut self, index: u64) -> Result<(), LogStoreError> {
        let mut removed = false;
        while let Some(last) = self.segments.last_mut() {
            if last.first >= index {
                self.active = None;
                remove(&last.path)?;
                self.segments.pop();
                removed = true;
                continue;
            }
            let keep = (index - last.first) as usize;
            if let Some(&offset) = last.offsets.get(keep) {
                // The append handle (if open) writes at end of file: still valid after the cut.
                let file = OpenOptions::new()
                    .write(true)
                    .open(&last.path)
                    .and_then(|f| {
                        f.set_len(offset)?;
                        f.sync_all()
                    });
                file.map_err(|source| LogStoreError::Io {
                    op: "truncate log segment",
                    path: last.path.clone(),
                    source,
                })?;
                last.offsets.truncate(keep);
                last.len = offset;
            }
            break;
        }
        if removed {
            self.sync_dir()?;
        }
        Ok(())
    }

    /// Deletes the segments whose entries all have index `upto` or below. The caller has made
    /// the purge point durable first, so entries left in a partly purged segment are skipped at
    /// open.
    pub fn purge(&mut self, upto: u64) -> Result<(), LogStoreError> {
        let mut removed = 0;
        for (i, segment) in self.segments.iter().enumerate() {
            let next_first = match self.segments.get(i + 1) {
                Some(next) => next.first,
                None => segment.next_index(),
            };
            if next_first > upto.saturating_add(1) {
                break;
            }
            if i + 1 == self.segments.len() {
                self.active = None;
            }
            remove(&segment.path)?;
            removed += 1;
        }
        if removed > 0 {
            self.segments.drain(..removed);
            self.sync_dir()?;
        }
        Ok(())
    }

    /// Starts a new segment whose first entry is `first`, after making the current one durable.
    fn roll(&mut self, first: u64) -> Result<(), LogStoreError> {
        if let Some(file) = self.active.take() {
            file.sync_data().map_err(|source| LogStoreError::Io {
                op: "fsync log segment",
                path: self.last_path(),
                source,
            })?;
        }
        let path = self.dir.join(file_name(first));
        // A leftover of that name can only hold entries already truncated or purged.
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(LogStoreError::Io {
                    op: "remove stale log segment",
                    path,
                    source: e,
                })
            }
            _ => {}
        }
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|source| LogStoreError::Io {
                op: "create log segment",
                path: path.clone(),
                source,
            })?;
        self.active = Some(file);
        self.segments.push(Segment {
            first,
            path,
            offsets: Vec::new(),
            len: 0,
        });
        Ok(())
    }

    /// The append handle on the last segment.
    fn active_file(&mut self) -> Result<&mut File, LogStoreError> {
        let file = match self.active.take() {
            Some(file) => file,
            None => {
                let path = self.last_path();
                OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .map_err(|source| LogStoreError::Io {
                        op: "open log segment",
                        path,
                        source,
                    })?
            }
        };
        Ok(self.active.insert(file))
    }

    fn last_path(&self) -> PathBuf {
        self.segments
            .last()
            .map(|s| s.path.clone())
            .unwrap_or_else(|| self.dir.clone())
    }

    fn sync_dir(&self) -> Result<(), LogStoreError> {
        durable::sync_dir(&self.dir).map_err(|source| LogStoreError::Io {
            op: "fsync raft log directory",
            path: self.dir.clone(),
            source,
        })
    }
}

fn remove(path: &Path) -> Result<(), LogStoreError> {
    fs::remove_file(path).map_err(|source| LogStoreError::Io {
        op: "remove log segment",
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_sort_by_index_and_parse_back() {
        assert_eq!(file_name(42), "00000000000000000042.log");
        assert_eq!(parse_file_name(&file_name(42)), Some(42));
        assert_eq!(parse_file_name(&file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_file_name("42.log"), None);
        assert_eq!(parse_file_name("0000000000000000004x.log"), None);
        assert_eq!(parse_file_name("vote.json"), None);
    }

    #[test]
    fn a_frame_carries_length_and_checksum_of_its_payload() {
        let frame = encode_frame(b"abc").expect("small payload frames");
        assert_eq!(&frame[..4], &3u32.to_be_bytes());
        assert_eq!(&frame[4..8], &crc32c::crc32c(b"abc").to_be_bytes());
        assert_eq!(&frame[8..], b"abc");
    }
}
