//! The quorum's durable Raft log, openraft's [`RaftLogStorage`]: entries in segment files
//! (see [`segment`]), the vote, the purge point and the last committed log id each in a small
//! JSON file replaced atomically, all under one directory
//! (`<metadata.log.dir>/__cluster_metadata-0/raft/`).
//!
//! Every un-purged entry is also kept in memory: the metadata log is small and purged after each
//! snapshot, and readers (replication to followers) then never touch the disk. Writes go through
//! one writer thread in the order they were issued (openraft requires log and vote I/O to be
//! serialized); appends return once the entries are readable and report durability through the
//! [`LogFlushed`] callback after the fsync, several queued appends sharing one fsync.
//! Opening recovers: a torn tail of the last segment (crash mid-write) is cut; anything else
//! unreadable is an error, never silently dropped.

mod segment;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, StorageIOError};
use parking_lot::RwLock;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::oneshot;

use crate::cluster::error_chain;
use crate::quorum::durable;
use crate::quorum::types::{Entry, LogId, NodeId, StorageError, TypeConfig, Vote};
use segment::{Segment, SegmentSet};

const VOTE_FILE: &str = "vote.json";
const PURGED_FILE: &str = "purged.json";
const COMMITTED_FILE: &str = "committed.json";

/// Why the Raft log store failed.
#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    /// A file system operation failed.
    #[error("failed to {op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A frame passed its checksum but does not hold an entry this version can read.
    #[error("unreadable raft log entry in {path} at byte {offset}")]
    DecodeEntry {
        /// The segment file.
        path: PathBuf,
        /// Where the frame starts.
        offset: u64,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// A small state file (vote, purge point, committed id) does not decode.
    #[error("unreadable raft state file {path}")]
    DecodeState {
        /// The file.
        path: PathBuf,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// An entry or state value does not encode (never expected).
    #[error("raft {what} does not encode")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The encoding error.
        #[source]
        source: serde_json::Error,
    },
    /// An entry too large for a frame.
    #[error("raft log entry {index} is {len} bytes, more than a frame holds")]
    TooLarge {
        /// Its index.
        index: u64,
        /// Its encoded size.
        len: usize,
    },
    /// The log on disk is damaged somewhere a crash cannot explain.
    #[error("corrupt raft log {path} at byte {offset}: {reason}")]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Where the damage is.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// An append that does not follow the last entry.
    #[error("appending entry {got} would leave a hole after entry {}", .expected.saturating_sub(1))]
    Hole {
        /// The index that would follow the log.
        expected: u64,
        /// The index offered.
        got: u64,
    },
    /// An earlier write failed, so the files are in an unknown state and nothing more is
    /// written (openraft shuts the node down on a storage error anyway).
    #[error("raft log writer stopped after an earlier failure: {0}")]
    Stopped(String),
    /// The writer thread is gone (it panicked).
    #[error("raft log writer thread is gone")]
    WriterGone,
    /// A blocking task panicked.
    #[error("raft log task failed")]
    Join(#[source] tokio::task::JoinError),
}

/// What a write request to the writer thread answers.
type Reply = oneshot::Sender<Result<(), LogStoreError>>;

/// A write, queued to the writer thread in issue order.
enum Command {
    /// Framed entries to append and fsync; the callback reports durability.
    Append {
        frames: Vec<(u64, Vec<u8>)>,
        done: LogFlushed<TypeConfig>,
    },
    /// Remove entries from this index on.
    Truncate { index: u64, done: Reply },
    /// Record the purge point, then delete segments wholly at or below it.
    Purge { upto: LogId, done: Reply },
    /// Persist the vote.
    SaveVote { vote: Vote, done: Reply },
    /// Persist the committed log id.
    SaveCommitted {
        committed: Option<LogId>,
        done: Reply,
    },
}

/// The in-memory view of the log shared with readers. Guarded by a `parking_lot` lock held only
/// for map operations, never across an await.
#[derive(Debug, Default)]
struct Cache {
    /// Every entry above the purge point, by index.
    entries: BTreeMap<u64, Entry>,
    /// The last purged log id.
    last_purged: Option<LogId>,
}

/// The durable Raft log of the controller quorum.
pub struct LogStore {
    /// The directory holding the log.
    dir: PathBuf,
    /// Entries and purge point, shared with [`LogReader`]s.
    cache: Arc<RwLock<Cache>>,
    /// The last saved vote (the file is only read at open).
    vote: Option<Vote>,
    /// The last saved committed log id.
    committed: Option<LogId>,
    /// Queue to the writer thread; dropping it stops the thread once the queue is drained.
    commands: mpsc::Sender<Command>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("dir", &self.dir)
            .field("vote", &self.vote)
            .field("committed", &self.committed)
            .finish_non_exhaustive()
    }
}

/// A reader of the log for replication tasks: cheap to clone, reads memory only.
#[derive(Debug, Clone)]
pub struct LogReader {
    /// The store's entries.
    cache: Arc<RwLock<Cache>>,
}

impl LogStore {
    /// Segment size used by [`LogStore::open`]: large enough that rolling is rare, small enough
    /// that purging after a snapshot frees space promptly.
    pub const DEFAULT_SEGMENT_BYTES: u64 = 1 << 20;

    /// Opens (creating if needed) the log in `dir`, recovering what is on disk.
    pub async fn open(dir: impl Into<PathBuf>) -> Result<LogStore, LogStoreError> {
        LogStore::open_with_segment_bytes(dir, Self::DEFAULT_SEGMENT_BYTES).await
    }

    /// Opens the log in `dir`, starting a new segment file once one reaches `segment_bytes`.
    pub async fn open_with_segment_bytes(
        dir: impl Into<PathBuf>,
        segment_bytes: u64,
    ) -> Result<LogStore, LogStoreError> {
        let dir = dir.into();
        let recovered = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || recover(&dir))
                .await
                .map_err(LogStoreError::Join)??
        };
        let (commands, queue) = mpsc::channel();
        let writer = Writer {
            dir: dir.clone(),
            segments: SegmentSet::new(dir.clone(), segment_bytes, recovered.segments),
            failed: None,
        };
        std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || writer.run(queue))
            .map_err(|source| LogStoreError::Io {
                op: "start the writer thread for",
                path: dir.clone(),
                source,
            })?;
        Ok(LogStore {
            dir,
            cache: Arc::new(RwLock::new(Cache {
                entries: recovered.entries,
                last_purged: recovered.last_purged,
            })),
            vote: recovered.vote,
            committed: recovered.committed,
            commands,
        })
    }

    /// The directory holding the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Queues `make(reply)` to the writer and waits for its answer.
    async fn call(&self, make: impl FnOnce(Reply) -> Command) -> Result<(), LogStoreError> {
        let (done, answer) = oneshot::channel();
        self.commands
            .send(make(done))
            .map_err(|_| LogStoreError::WriterGone)?;
        answer.await.map_err(|_| LogStoreError::WriterGone)?
    }
}

/// The openraft error for a failure of this store.
fn storage_error(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: &LogStoreError,
) -> StorageError {
    StorageIOError::new(subject, verb, AnyError::new(e)).into()
}

/// The entries of `cache` in `range`; an inverted range is empty rather than a panic.
fn read_range(cache: &RwLock<Cache>, range: impl RangeBounds<u64>) -> Vec<Entry> {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => Bound::Included(e),
        Bound::Excluded(&e) => Bound::Excluded(e),
        Bound::Unbounded => Bound::Unbounded,
    };
    let empty = match end {
        Bound::Included(e) => start > e,
        Bound::Excluded(e) => start >= e,
        Bound::Unbounded => false,
    };
    if empty {
        return Vec::new();
    }
    cache
        .read()
        .entries
        .range((Bound::Included(start), end))
        .map(|(_, e)| e.clone())
        .collect()
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(read_range(&self.cache, range))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(read_range(&self.cache, range))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let cache = self.cache.read();
        let last_log_id = cache
            .entries
            .last_key_value()
            .map(|(_, e)| e.log_id)
            .or(cache.last_purged);
        Ok(LogState {
            last_purged_log_id: cache.last_purged,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> LogReader {
        LogReader {
            cache: self.cache.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let vote = *vote;
        self.call(|done| Command::SaveVote { vote, done })
            .await
            .map_err(|e| storage_error(ErrorSubject::Vote, ErrorVerb::Write, &e))?;
        self.vote = Some(vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.call(|done| Command::SaveCommitted { committed, done })
            .await
            .map_err(|e| storage_error(ErrorSubject::Store, ErrorVerb::Write, &e))?;
        self.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let mut frames = Vec::with_capacity(entries.len());
        for entry in &entries {
            let index = entry.log_id.index;
            let fail = |e: LogStoreError| storage_error(ErrorSubject::Logs, ErrorVerb::Write, &e);
            let payload = serde_json::to_vec(entry).map_err(|source| {
                fail(LogStoreError::Encode {
                    what: "log entry",
                    source,
                })
            })?;
            let frame = segment::encode_frame(&payload)
                .map_err(|len| fail(LogStoreError::TooLarge { index, len }))?;
            frames.push((index, frame));
        }
        {
            // Readable before this returns, as the trait requires; durable when the callback says.
            let mut cache = self.cache.write();
            for entry in entries {
                cache.entries.insert(entry.log_id.index, entry);
            }
        }
        self.commands
            .send(Command::Append {
                frames,
                done: callback,
            })
            .map_err(|_| {
                storage_error(
                    ErrorSubject::Logs,
                    ErrorVerb::Write,
                    &LogStoreError::WriterGone,
                )
            })
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        drop(self.cache.write().entries.split_off(&log_id.index));
        let index = log_id.index;
        self.call(|done| Command::Truncate { index, done })
            .await
            .map_err(|e| storage_error(ErrorSubject::Logs, ErrorVerb::Delete, &e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        {
            let mut cache = self.cache.write();
            if cache.last_purged >= Some(log_id) {
                return Ok(());
            }
            cache.entries = cache.entries.split_off(&(log_id.index.saturating_add(1)));
            cache.last_purged = Some(log_id);
        }
        self.call(|done| Command::Purge { upto: log_id, done })
            .await
            .map_err(|e| storage_error(ErrorSubject::Logs, ErrorVerb::Delete, &e))
    }
}

/// The writer thread's state: the only code that writes the log directory after open.
struct Writer {
    /// The log directory.
    dir: PathBuf,
    /// The segment files.
    segments: SegmentSet,
    /// Set by the first failed write; every later write is refused with it.
    failed: Option<String>,
}

impl Writer {
    /// Serves commands in order until the store is dropped.
    fn run(mut self, queue: mpsc::Receiver<Command>) {
        let mut held = None;
        loop {
            let command = match held.take() {
                Some(command) => command,
                None => match queue.recv() {
                    Ok(command) => command,
                    Err(mpsc::RecvError) => return,
                },
            };
            // A dropped reply receiver means the caller went away; the write still happened.
            match command {
                Command::Append { frames, done } => {
                    let mut batch = vec![(frames, done)];
                    while let Ok(next) = queue.try_recv() {
                        match next {
                            Command::Append { frames, done } => batch.push((frames, done)),
                            other => {
                                held = Some(other);
                                break;
                            }
                        }
                    }
                    let result =
                        self.guarded(|w| w.segments.append(batch.iter().flat_map(|(f, _)| f)));
                    for (_, done) in batch {
                        let result = match &result {
                            Ok(()) => Ok(()),
                            Err(e) => Err(std::io::Error::other(error_chain(e))),
                        };
                        done.log_io_completed(result);
                    }
                }
                Command::Truncate { index, done } => {
                    let _ = done.send(self.guarded(|w| w.segments.truncate(index)));
                }
                Command::Purge { upto, done } => {
                    let _ = done.send(self.guarded(|w| {
                        w.replace(PURGED_FILE, &upto)?;
                        w.segments.purge(upto.index)
                    }));
                }
                Command::SaveVote { vote, done } => {
                    let _ = done.send(self.guarded(|w| w.replace(VOTE_FILE, &vote)));
                }
                Command::SaveCommitted { committed, done } => {
                    let _ = done.send(self.guarded(|w| w.replace(COMMITTED_FILE, &committed)));
                }
            }
        }
    }

    /// Runs `op` unless an earlier write failed; a failure stops all later writes.
    fn guarded(
        &mut self,
        op: impl FnOnce(&mut Writer) -> Result<(), LogStoreError>,
    ) -> Result<(), LogStoreError> {
        if let Some(reason) = &self.failed {
            return Err(LogStoreError::Stopped(reason.clone()));
        }
        let result = op(self);
        if let Err(e) = &result {
            self.failed = Some(error_chain(e));
        }
        result
    }

    /// Replaces state file `name` with `value` as JSON, durably.
    fn replace(&self, name: &str, value: &impl Serialize) -> Result<(), LogStoreError> {
        let bytes = serde_json::to_vec(value).map_err(|source| LogStoreError::Encode {
            what: "state file",
            source,
        })?;
        let path = self.dir.join(name);
        durable::replace(&path, &bytes).map_err(|source| LogStoreError::Io {
            op: "replace",
            path,
            source,
        })
    }
}

/// What opening found on disk.
struct Recovered {
    vote: Option<Vote>,
    committed: Option<LogId>,
    last_purged: Option<LogId>,
    entries: BTreeMap<u64, Entry>,
    segments: Vec<Segment>,
}

/// Reads the log directory back, cutting a torn tail off the last segment.
fn recover(dir: &Path) -> Result<Recovered, LogStoreError> {
    let io = |op, path: &Path| {
        let path = path.to_path_buf();
        move |source| LogStoreError::Io { op, path, source }
    };
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    for name in [VOTE_FILE, PURGED_FILE, COMMITTED_FILE] {
        durable::remove_temporaries(dir, &format!("{name}."))
            .map_err(io("remove leftover temporaries in", dir))?;
    }
    let vote = read_state::<Vote>(&dir.join(VOTE_FILE))?;
    let last_purged = read_state::<LogId>(&dir.join(PURGED_FILE))?;
    let committed = read_state::<Option<LogId>>(&dir.join(COMMITTED_FILE))?.flatten();

    let mut files = Vec::new();
    for item in std::fs::read_dir(dir).map_err(io("list", dir))? {
        let item = item.map_err(io("list", dir))?;
        if let Some(first) = item.file_name().to_str().and_then(segment::parse_file_name) {
            files.push((first, item.path()));
        }
    }
    files.sort();

    let mut segments: Vec<Segment> = Vec::new();
    let mut entries = BTreeMap::new();
    let count = files.len();
    for (i, (first, path)) in files.into_iter().enumerate() {
        let is_last = i + 1 == count;
        if let Some(previous) = segments.last() {
            if previous.next_index() != first {
                return Err(LogStoreError::Corrupt {
                    path,
                    offset: 0,
                    reason: format!(
                        "segment starts at entry {first} but the one before it ends before entry {}",
                        previous.next_index()
                    ),
                });
            }
        }
        let scanned = segment::scan(&path, first)?;
        if let Some((offset, reason)) = scanned.torn {
            if !is_last {
                return Err(LogStoreError::Corrupt {
                    path,
                    offset,
                    reason: reason.to_string(),
                });
            }
            tracing::warn!(path = %path.display(), offset, reason, "cutting a torn tail off the raft log");
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| {
                    f.set_len(offset)?;
                    f.sync_all()
                })
                .map_err(io("cut the torn tail of", &path))?;
        }
        if scanned.entries.is_empty() {
            if !is_last {
                return Err(LogStoreError::Corrupt {
                    path,
                    offset: 0,
                    reason: "empty segment before the last one".into(),
                });
            }
            // Created, then the crash came before its first entry was durable.
            std::fs::remove_file(&path).map_err(io("remove empty segment", &path))?;
            durable::sync_dir(dir).map_err(io("fsync", dir))?;
            continue;
        }
        let purged_index = last_purged.map(|p| p.index);
        for entry in scanned.entries {
            if purged_index.is_none_or(|p| entry.log_id.index > p) {
                entries.insert(entry.log_id.index, entry);
            }
        }
        segments.push(scanned.segment);
    }
    Ok(Recovered {
        vote,
        committed,
        last_purged,
        entries,
        segments,
    })
}

/// The value in state file `path`, or `None` if there is none yet.
fn read_state<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, LogStoreError> {
    let Some(bytes) = durable::read_optional(path).map_err(|source| LogStoreError::Io {
        op: "read",
        path: path.to_path_buf(),
        source,
    })?
    else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| LogStoreError::DecodeState {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests;
