//! One segment of a partition log: `<base offset, 20 digits>.log` with its `.index` and
//! `.timeindex`. A segment appends whole batches, keeps its sparse indexes in memory, finds the
//! batch holding an offset, and reads byte ranges with `pread` so readers need only `&self`.
//! Opening a segment scans its batch headers (and, for the newest segment, CRCs) to rebuild
//! the indexes and cut a torn tail.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::batch::{self, BatchHeader, HEADER_LEN};
use super::index::{self, io_err, IndexFiles, OffsetEntry, TimeEntry};
use super::LogError;

/// Largest file position an index entry can hold; segments never grow past it.
pub(crate) const MAX_SEGMENT_BYTES: u64 = i32::MAX as u64;

/// `<dir>/<base offset, 20 digits>.<ext>`, Kafka's file naming.
pub(crate) fn segment_path(dir: &Path, base_offset: i64, ext: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{ext}"))
}

/// How much checking [`Segment::open`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recovery {
    /// Headers only: the segment was complete when the next one was rolled.
    Trust,
    /// Every CRC, cutting the file at the first invalid batch: the newest segment.
    Verify,
}

/// One segment file and its in-memory indexes.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Offset of the segment's first batch, and its file name.
    pub base_offset: i64,
    /// `.log` path, for errors and deletion.
    log_path: PathBuf,
    /// The `.log` file, read with pread and appended to (O_APPEND) when active.
    file: File,
    /// Bytes in the `.log` file.
    size: u64,
    /// Last offset of the last batch + 1, or the base offset when empty.
    next_offset: i64,
    /// Sparse offset index.
    offsets: Vec<OffsetEntry>,
    /// Sparse time index.
    times: Vec<TimeEntry>,
    /// Log bytes appended since the last index entry.
    bytes_since_index: u64,
    /// Largest batch max timestamp and the last offset of the batch carrying it.
    max_timestamp: Option<(i64, i64)>,
    /// When the segment's time-based roll clock started.
    roll_base_ms: Option<i64>,
    /// Open index files; only the active segment writes them.
    index_files: Option<IndexFiles>,
    /// Whether everything written to the segment has been fsynced (so a flush of an idle
    /// log costs no fsync).
    synced: AtomicBool,
}

impl Segment {
    /// Creates an empty segment (replacing any leftover files of that name).
    pub fn create(dir: &Path, base_offset: i64) -> Result<Segment, LogError> {
        let log_path = segment_path(dir, base_offset, "log");
        let file = open_log(&log_path)?;
        file.set_len(0).map_err(io_err(&log_path))?;
        let mut segment = Segment::empty(log_path, file, base_offset);
        for ext in ["index", "timeindex"] {
            let path = segment_path(dir, base_offset, ext);
            std::fs::write(&path, []).map_err(io_err(&path))?;
        }
        segment.activate(dir)?;
        Ok(segment)
    }

    /// An in-memory segment with nothing scanned yet.
    fn empty(log_path: PathBuf, file: File, base_offset: i64) -> Segment {
        Segment {
            base_offset,
            log_path,
            file,
            size: 0,
            next_offset: base_offset,
            offsets: Vec::new(),
            times: Vec::new(),
            bytes_since_index: 0,
            max_timestamp: None,
            roll_base_ms: None,
            index_files: None,
            synced: AtomicBool::new(false),
        }
    }

    /// Counts what the segment holds as flushed (its log dir was shut down cleanly).
    pub fn mark_synced(&self) {
        self.synced.store(true, Ordering::Relaxed);
    }

    /// Opens an existing segment, scanning its batches (see [`Recovery`]) and rewriting its
    /// index files if they differ from what the scan rebuilt. `on_batch` sees every valid
    /// batch header in order (producer-state recovery).
    pub fn open(
        dir: &Path,
        base_offset: i64,
        recovery: Recovery,
        index_interval: u32,
        on_batch: &mut dyn FnMut(&BatchHeader),
    ) -> Result<Segment, LogError> {
        let log_path = segment_path(dir, base_offset, "log");
        let file = open_log(&log_path)?;
        let mut segment = Segment::empty(log_path, file, base_offset);
        segment.scan(recovery, index_interval, on_batch)?;
        index::write_if_changed(
            &segment_path(dir, base_offset, "index"),
            &index::offset_bytes(&segment.offsets),
        )?;
        index::write_if_changed(
            &segment_path(dir, base_offset, "timeindex"),
            &index::time_bytes(&segment.times),
        )?;
        Ok(segment)
    }

    /// Reads the file front to back, tracking each batch; cuts the file at the first invalid one.
    fn scan(
        &mut self,
        recovery: Recovery,
        index_interval: u32,
        on_batch: &mut dyn FnMut(&BatchHeader),
    ) -> Result<(), LogError> {
        let len = self.file.metadata().map_err(io_err(&self.log_path))?.len();
        // The fd's offset is shared with clones and left at the end by appends; O_APPEND
        // writes ignore it, so rewinding for the scan is safe.
        (&self.file)
            .seek(SeekFrom::Start(0))
            .map_err(io_err(&self.log_path))?;
        let mut reader = BufReader::with_capacity(1 << 16, &self.file);
        let mut pos = 0u64;
        let mut body = Vec::new();
        let mut problem = None;
        let mut headers = Vec::new();
        while pos < len {
            let mut head = [0u8; HEADER_LEN];
            let available = len - pos;
            if available < HEADER_LEN as u64 {
                problem = Some(format!("{available} trailing bytes"));
                break;
            }
            reader
                .read_exact(&mut head)
                .map_err(io_err(&self.log_path))?;
            let available = usize::try_from(available).unwrap_or(usize::MAX);
            let header = match batch::check_header(&head, available) {
                Ok(h) => h,
                Err(e) => {
                    problem = Some(e.to_string());
                    break;
                }
            };
            let expected = headers
                .last()
                .map_or(self.base_offset, |h: &BatchHeader| h.last_offset() + 1);
            if header.base_offset < expected
                || header.last_offset() - self.base_offset > i64::from(u32::MAX)
            {
                problem = Some(format!(
                    "batch offsets {}..={} do not follow {expected}",
                    header.base_offset,
                    header.last_offset()
                ));
                break;
            }
            let rest = header.total_len() - HEADER_LEN;
            if recovery == Recovery::Verify {
                body.resize(rest, 0);
                reader
                    .read_exact(&mut body)
                    .map_err(io_err(&self.log_path))?;
                let crc = crc32c::crc32c_append(crc32c::crc32c(&head[21..]), &body);
                if crc != header.crc {
                    problem = Some(format!("crc mismatch in batch at offset {expected}"));
                    break;
                }
            } else {
                let skip = i64::try_from(rest).unwrap_or(i64::MAX);
                reader.seek_relative(skip).map_err(io_err(&self.log_path))?;
            }
            headers.push(header);
            pos += header.total_len() as u64;
        }
        drop(reader);
        if let Some(problem) = problem {
            tracing::warn!(
                file = %self.log_path.display(),
                position = pos,
                problem,
                "truncating invalid or torn tail of log segment"
            );
            self.file.set_len(pos).map_err(io_err(&self.log_path))?;
            // Durable at once: a segment may count as flushed right after its open.
            self.file.sync_data().map_err(io_err(&self.log_path))?;
        }
        let mut position = 0u64;
        for header in &headers {
            self.track(header, position, index_interval);
            position += header.total_len() as u64;
            on_batch(header);
        }
        self.size = position;
        self.roll_base_ms = headers.first().map(|h| h.max_timestamp).filter(|&t| t > 0);
        Ok(())
    }

    /// Records a batch written at `position` in the in-memory state; returns the index entries
    /// it added, for the active segment to append to its files.
    fn track(
        &mut self,
        header: &BatchHeader,
        position: u64,
        index_interval: u32,
    ) -> (Option<OffsetEntry>, Option<TimeEntry>) {
        let last = header.last_offset();
        if self
            .max_timestamp
            .is_none_or(|(ts, _)| header.max_timestamp > ts)
        {
            self.max_timestamp = Some((header.max_timestamp, last));
        }
        self.next_offset = last + 1;
        let mut added = (None, None);
        if position > 0 && self.bytes_since_index >= u64::from(index_interval) {
            // Offsets and positions fit: scan and append both keep them within u32.
            let entry = OffsetEntry {
                relative_offset: (header.base_offset - self.base_offset) as u32,
                position: position as u32,
            };
            self.offsets.push(entry);
            added.0 = Some(entry);
            if let Some((ts, offset)) = self.max_timestamp {
                if self.times.last().is_none_or(|t| ts > t.timestamp) {
                    let entry = TimeEntry {
                        timestamp: ts,
                        relative_offset: (offset - self.base_offset) as u32,
                    };
                    self.times.push(entry);
                    added.1 = Some(entry);
                }
            }
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += header.total_len() as u64;
        added
    }

    /// Opens the index files for appending: this segment becomes the active one.
    pub fn activate(&mut self, dir: &Path) -> Result<(), LogError> {
        if self.index_files.is_none() {
            self.index_files = Some(IndexFiles::open(
                segment_path(dir, self.base_offset, "index"),
                segment_path(dir, self.base_offset, "timeindex"),
            )?);
        }
        Ok(())
    }

    /// Closes the index files after fsyncing everything: the segment was rolled.
    pub fn deactivate(&mut self) -> Result<(), LogError> {
        self.sync()?;
        self.index_files = None;
        Ok(())
    }

    /// Appends stamped batches (`data` is their concatenation, `headers` theirs in order) with
    /// one write, then extends the indexes.
    pub fn append(
        &mut self,
        data: &[u8],
        headers: &[BatchHeader],
        index_interval: u32,
        now_ms: i64,
    ) -> Result<(), LogError> {
        self.synced.store(false, Ordering::Relaxed);
        (&self.file)
            .write_all(data)
            .map_err(io_err(&self.log_path))?;
        let mut offsets = Vec::new();
        let mut times = Vec::new();
        let mut position = self.size;
        for header in headers {
            let (o, t) = self.track(header, position, index_interval);
            offsets.extend(o.iter().flat_map(|e| e.to_bytes()));
            times.extend(t.iter().flat_map(|e| e.to_bytes()));
            position += header.total_len() as u64;
        }
        self.size = position;
        self.roll_base_ms.get_or_insert(now_ms);
        if let Some(files) = &mut self.index_files {
            files.append(&offsets, &times);
        }
        Ok(())
    }

    /// Bytes in the `.log` file.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Last offset + 1, or the base offset when empty.
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// Largest timestamp and the last offset of the batch carrying it.
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        self.max_timestamp
    }

    /// Whether `segment.ms` has passed since the segment's first batch.
    pub fn is_due_for_roll(&self, now_ms: i64, segment_ms: i64) -> bool {
        self.roll_base_ms
            .is_some_and(|base| now_ms.saturating_sub(base) >= segment_ms)
    }

    /// Header of the batch at `position`, or `None` at the end of the segment.
    pub fn header_at(&self, position: u64) -> Result<Option<BatchHeader>, LogError> {
        if position >= self.size {
            return Ok(None);
        }
        let mut head = [0u8; HEADER_LEN];
        self.file
            .read_exact_at(&mut head, position)
            .map_err(io_err(&self.log_path))?;
        let available = usize::try_from(self.size - position).unwrap_or(usize::MAX);
        batch::check_header(&head, available)
            .map(Some)
            .map_err(|e| self.corrupt(position, e))
    }

    /// Names the segment and position in a corruption found while reading.
    fn corrupt(&self, position: u64, error: LogError) -> LogError {
        LogError::CorruptBatch(format!(
            "{} at position {position}: {error}",
            self.log_path.display()
        ))
    }

    /// Reads `len` bytes at `position`.
    pub fn read_bytes(&self, position: u64, len: usize) -> Result<Vec<u8>, LogError> {
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, position)
            .map_err(io_err(&self.log_path))?;
        Ok(buf)
    }

    /// Position and header of the first batch whose last offset is >= `offset`, or `None`
    /// when every batch in the segment ends before it.
    pub fn find(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>, LogError> {
        let relative = (offset - self.base_offset).clamp(0, i64::from(u32::MAX)) as u32;
        self.scan_from(
            u64::from(index::position_for(&self.offsets, relative)),
            |h| h.last_offset() >= offset,
        )
    }

    /// Position and header of the first batch with a max timestamp >= `timestamp` and a
    /// record at or after `min_offset`.
    pub fn find_by_time(
        &self,
        timestamp: i64,
        min_offset: i64,
    ) -> Result<Option<(u64, BatchHeader)>, LogError> {
        let relative = index::offset_for_time(&self.times, timestamp);
        let start = index::position_for(&self.offsets, relative);
        self.scan_from(u64::from(start), |h| {
            h.max_timestamp >= timestamp && h.last_offset() >= min_offset
        })
    }

    /// Walks headers from `position` to the first that satisfies `want`.
    fn scan_from(
        &self,
        mut position: u64,
        want: impl Fn(&BatchHeader) -> bool,
    ) -> Result<Option<(u64, BatchHeader)>, LogError> {
        while let Some(header) = self.header_at(position)? {
            if want(&header) {
                return Ok(Some((position, header)));
            }
            position += header.total_len() as u64;
        }
        Ok(None)
    }

    /// Calls `f` with the position, header and bytes of every batch, in order.
    pub fn for_each_batch(
        &self,
        mut f: impl FnMut(u64, &BatchHeader, &[u8]) -> Result<(), LogError>,
    ) -> Result<(), LogError> {
        let mut position = 0;
        while let Some(header) = self.header_at(position)? {
            let bytes = self.read_bytes(position, header.total_len())?;
            f(position, &header, &bytes)?;
            position += header.total_len() as u64;
        }
        Ok(())
    }

    /// Whole batches from `position`: as many as fit in `budget` bytes (or the first alone,
    /// whatever its size, when `at_least_one`), stopping before any batch with a record at or
    /// past `upper_bound`. Returns the bytes and whether the read ran to the end of the segment.
    pub fn read_batches(
        &self,
        position: u64,
        budget: usize,
        upper_bound: i64,
        at_least_one: bool,
    ) -> Result<(Vec<u8>, bool), LogError> {
        let available = usize::try_from(self.size.saturating_sub(position)).unwrap_or(usize::MAX);
        let mut buf = self.read_bytes(position, budget.min(available))?;
        let mut used = 0usize;
        while used < buf.len() || (used == 0 && at_least_one && available > 0) {
            let header = if used + HEADER_LEN <= buf.len() {
                batch::check_header(&buf[used..], available - used)
                    .map_err(|e| self.corrupt(position + used as u64, e))?
            } else if used == 0 {
                match self.header_at(position)? {
                    Some(h) => h,
                    None => break,
                }
            } else {
                break;
            };
            if header.last_offset() >= upper_bound {
                buf.truncate(used);
                return Ok((buf, false));
            }
            if used + header.total_len() > buf.len() {
                if used == 0 && at_least_one {
                    let whole = self.read_bytes(position, header.total_len())?;
                    let at_end = position + whole.len() as u64 >= self.size;
                    return Ok((whole, at_end));
                }
                break;
            }
            used += header.total_len();
        }
        buf.truncate(used);
        Ok((buf, position + used as u64 >= self.size))
    }

    /// Cuts the segment before the batch at `position` (a batch boundary), rebuilding the
    /// in-memory state from what remains.
    pub fn truncate_at(&mut self, position: u64, index_interval: u32) -> Result<(), LogError> {
        self.synced.store(false, Ordering::Relaxed);
        self.file
            .set_len(position)
            .map_err(io_err(&self.log_path))?;
        let mut rebuilt = Segment::empty(
            self.log_path.clone(),
            self.file.try_clone().map_err(io_err(&self.log_path))?,
            self.base_offset,
        );
        rebuilt.scan(Recovery::Trust, index_interval, &mut |_| {})?;
        rebuilt.index_files = self.index_files.take();
        *self = rebuilt;
        if let Some(files) = &mut self.index_files {
            files.truncate(self.offsets.len(), self.times.len());
        }
        Ok(())
    }

    /// fsyncs the `.log` file and, if open, the indexes, unless nothing was written since the
    /// last time.
    pub fn sync(&self) -> Result<(), LogError> {
        if self.synced.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.file.sync_data().map_err(io_err(&self.log_path))?;
        if let Some(files) = &self.index_files {
            files.sync();
        }
        self.synced.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Removes the segment's files.
    pub fn delete_files(self, dir: &Path) -> Result<(), LogError> {
        let base = self.base_offset;
        drop(self);
        for ext in ["log", "index", "timeindex", "txnindex"] {
            let path = segment_path(dir, base, ext);
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io_err(&path)(e));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Opens a `.log` file for reading and appending, creating it if missing.
fn open_log(path: &Path) -> Result<File, LogError> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(io_err(path))
}
