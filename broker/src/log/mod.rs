//! The partition log: Kafka's on-disk layout for one partition.
//!
//! `<log.dir>/<topic>-<partition>/` holds segments named by their base offset (20 digits):
//! `.log` (v2 record batches stored as received, with only base offset and partition leader
//! epoch rewritten — both outside the CRC), `.index` (sparse offset index) and `.timeindex`.
//! Opening a log recovers it: the newest segment is scanned, CRCs checked, a torn tail cut and
//! the indexes rebuilt. The log also owns producer state for the idempotent producer, because it
//! is rebuilt from the same batches on recovery.
//!
//! Everything here is blocking file I/O: callers run it off the async reactor.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};

use batch::BatchHeader;
use clean_shutdown::Shutdown;
use control::Marker;

pub mod batch;
pub mod checkpoint;
pub mod clean_shutdown;
mod compaction;
pub(crate) mod control;
pub mod epoch_cache;
mod index;
mod producer_state;
mod segment;
#[cfg(test)]
mod tests;
mod txn;

use epoch_cache::EpochCache;
use index::io_err;
use producer_state::{ProducerStates, SequenceCheck};
use segment::{segment_path, Recovery, Segment, MAX_SEGMENT_BYTES};
pub use txn::AbortedTxn;
use txn::{Transactions, TxnEvent};

/// File holding a log start offset moved past the first segment's base (DeleteRecords).
const LOG_START_FILE: &str = "log-start-offset";

/// Per-partition log settings, resolved from broker defaults and topic overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment once it reaches this size.
    pub segment_bytes: u64,
    /// `segment.ms`: roll the active segment once its first batch is this old.
    pub segment_ms: i64,
    /// `retention.ms`: delete whole segments whose newest timestamp is older; `None` = forever.
    pub retention_ms: Option<i64>,
    /// `retention.bytes`: delete oldest whole segments while the log is larger; `None` = no limit.
    pub retention_bytes: Option<u64>,
    /// `index.interval.bytes`: bytes of log between two offset-index entries.
    pub index_interval_bytes: u32,
    /// `cleanup.policy`: delete, compact, or both.
    pub cleanup_policy: CleanupPolicy,
    /// `delete.retention.ms`: how long tombstones survive compaction.
    pub delete_retention_ms: i64,
    /// `max.message.bytes`: the largest batch accepted.
    pub max_message_bytes: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            index_interval_bytes: 4096,
            cleanup_policy: CleanupPolicy::Delete,
            delete_retention_ms: 24 * 3600 * 1000,
            max_message_bytes: 1_048_588,
        }
    }
}

/// `cleanup.policy` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupPolicy {
    /// Time/size retention only.
    Delete,
    /// Keep the latest record per key.
    Compact,
    /// Both compaction and time/size retention.
    CompactDelete,
    /// Neither (an empty `cleanup.policy`, Kafka 4.x): segments are kept indefinitely.
    Keep,
}

/// What went wrong in the log; each maps to a Kafka error code in responses.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A client append reached a replica that does not lead the partition (it lost the
    /// leadership since the request was routed): NOT_LEADER_OR_FOLLOWER.
    #[error("this broker does not lead the partition")]
    NotLeader,
    /// This node's replica of the partition is offline: its log could not be opened
    /// (KAFKA_STORAGE_ERROR).
    #[error("{0}")]
    Offline(String),
    /// File system failure.
    #[error("i/o error on {path}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The produced bytes are not a valid v2 record batch (CORRUPT_MESSAGE).
    #[error("corrupt record batch: {0}")]
    CorruptBatch(String),
    /// A batch a client may not write, such as a control batch (INVALID_RECORD).
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// A transactional batch of a producer whose transaction does not include this partition
    /// (INVALID_TXN_STATE; KIP-890 verification).
    #[error("producer {0} has no transaction open that includes this partition")]
    NoOpenTransaction(i64),
    /// Magic other than 2 (UNSUPPORTED_FOR_MESSAGE_FORMAT).
    #[error("unsupported record batch magic {0}")]
    UnsupportedMagic(i8),
    /// A batch larger than `max.message.bytes` (MESSAGE_TOO_LARGE).
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    BatchTooLarge {
        /// Batch size.
        size: usize,
        /// Limit.
        max: u32,
    },
    /// Idempotent producer sent a sequence that is not the next one (OUT_OF_ORDER_SEQUENCE_NUMBER).
    #[error("out of order sequence for producer {producer_id}: expected {expected}, got {got}")]
    OutOfOrderSequence {
        /// Producer id.
        producer_id: i64,
        /// Next expected sequence.
        expected: i32,
        /// Received base sequence.
        got: i32,
    },
    /// Producer epoch older than the one seen (INVALID_PRODUCER_EPOCH).
    #[error("producer {producer_id} epoch {got} is older than {current}")]
    InvalidProducerEpoch {
        /// Producer id.
        producer_id: i64,
        /// Epoch seen in the log.
        current: i16,
        /// Received epoch.
        got: i16,
    },
    /// Read at an offset outside [log start, log end] (OFFSET_OUT_OF_RANGE).
    #[error("offset {offset} out of range [{start}, {end}]")]
    OffsetOutOfRange {
        /// Requested offset.
        offset: i64,
        /// Log start offset.
        start: i64,
        /// Log end offset.
        end: i64,
    },
}

impl From<checkpoint::CheckpointError> for LogError {
    /// A checkpoint file's failure, with the OS's reason kept as the source (a storage error
    /// names it: "Too many open files", "No space left on device").
    fn from(e: checkpoint::CheckpointError) -> LogError {
        match e {
            checkpoint::CheckpointError::Io { path, source } => LogError::Io { path, source },
            checkpoint::CheckpointError::Malformed { ref path, .. } => LogError::Io {
                path: path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
            },
        }
    }
}

/// Result of appending a produce request's records to the log.
#[derive(Debug, Clone, PartialEq)]
pub enum AppendOutcome {
    /// Appended: offsets assigned.
    Appended(AppendInfo),
    /// An idempotent producer resent a batch already in the log: answer with the original offsets.
    Duplicate(AppendInfo),
}

/// Offsets assigned to an append.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AppendInfo {
    /// Offset of the first record appended.
    pub base_offset: i64,
    /// Offset of the last record appended.
    pub last_offset: i64,
    /// Log append time if `message.timestamp.type=LogAppendTime`, else -1.
    pub log_append_time: i64,
    /// Log start offset after the append.
    pub log_start_offset: i64,
}

/// A producer as DescribeProducers reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerSnapshot {
    /// Producer id.
    pub producer_id: i64,
    /// Its epoch.
    pub epoch: i16,
    /// Sequence of its last record, or -1.
    pub last_sequence: i32,
    /// The largest timestamp of its newest batch.
    pub last_timestamp: i64,
    /// First offset of its open transaction here, or -1.
    pub txn_start_offset: i64,
}

/// One partition's log on disk.
#[derive(Debug)]
pub struct PartitionLog {
    /// The partition directory.
    dir: PathBuf,
    /// Current settings; topic config changes replace it.
    config: LogConfig,
    /// Segments by base offset; never empty, the last one is active (appended to).
    segments: BTreeMap<i64, Segment>,
    /// First offset readable; at or above the first segment's base.
    log_start: i64,
    /// Idempotent-producer state, rebuilt from batch headers on open.
    producers: ProducerStates,
    /// Open and aborted transactions, rebuilt from batch headers and `.txnindex` files.
    txns: Transactions,
    /// First offset of each leader epoch, for OffsetForLeaderEpoch and truncation.
    epochs: EpochCache,
    /// Active segment base and clock of the last compaction, to skip needless rescans.
    last_compaction: Option<(i64, i64)>,
}

impl PartitionLog {
    /// Opens (creating if missing) and recovers the log in `dir`, as after a crash.
    pub fn open(dir: &Path, config: LogConfig) -> Result<PartitionLog, LogError> {
        PartitionLog::open_after(dir, config, Shutdown::Unclean)
    }

    /// Opens (creating if missing) the log in `dir`, which the node's last run left as
    /// `shutdown` says: after a crash the newest segment is verified batch by batch (CRCs) and
    /// cut at the first invalid one; after a clean shutdown its headers are only read, and its
    /// files count as flushed.
    pub fn open_after(
        dir: &Path,
        config: LogConfig,
        shutdown: Shutdown,
    ) -> Result<PartitionLog, LogError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut bases = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
            let path = entry.map_err(io_err(dir))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.ends_with(compaction::TEMP_SUFFIX) {
                // A compaction that did not finish; the original segment is intact.
                std::fs::remove_file(&path).map_err(io_err(&path))?;
            } else if let Some(stem) = name.strip_suffix(".log") {
                if stem.len() == 20 {
                    if let Ok(base) = stem.parse::<i64>() {
                        bases.push(base);
                    }
                }
            }
        }
        bases.sort_unstable();
        let persisted_start = read_log_start(dir)?;
        let mut producers = ProducerStates::default();
        let mut epochs = EpochCache::read(dir).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "rebuilding the leader-epoch cache from the log");
            EpochCache::new()
        });
        let mut txns = Transactions::default();
        let mut segments = BTreeMap::new();
        for (i, &base) in bases.iter().enumerate() {
            let newest = i + 1 == bases.len();
            let recovery = if newest && shutdown == Shutdown::Unclean {
                Recovery::Verify
            } else {
                Recovery::Trust
            };
            // Markers that closed a transaction, at their position in the segment.
            let mut ended = Vec::new();
            let mut position = 0u64;
            let segment =
                Segment::open(dir, base, recovery, config.index_interval_bytes, &mut |h| {
                    producers.record(h);
                    note_epoch(&mut epochs, h);
                    let event = txns.observe(h);
                    if event != TxnEvent::None {
                        ended.push((event, position, h.total_len()));
                    }
                    position += h.total_len() as u64;
                })?;
            let index = segment_path(dir, base, "txnindex");
            if !newest {
                txns.adopt_aborted(txn::read_index(&index)?);
            } else {
                // The newest segment's index is appended to without an fsync (not even at a
                // clean shutdown), so it may lag its log: rebuilt from the markers themselves.
                let mut aborted = Vec::new();
                for (event, position, len) in ended {
                    let bytes = segment.read_bytes(position, len)?;
                    let marker = control::marker_of(&bytes);
                    let unstable = txns.first_unstable_offset();
                    aborted.extend(txn::abort_entry(event, marker, unstable));
                }
                txn::write_index(&index, &aborted)?;
                txns.adopt_aborted(aborted);
            }
            if shutdown == Shutdown::Clean {
                segment.mark_synced();
            }
            segments.insert(base, segment);
        }
        if segments.is_empty() {
            let base = persisted_start.unwrap_or(0).max(0);
            segments.insert(base, Segment::create(dir, base)?);
        }
        let mut log = PartitionLog {
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start: 0,
            producers,
            txns,
            epochs,
            last_compaction: None,
        };
        log.active_mut()?.activate(dir)?;
        // Epochs recorded past a cut tail belong to records that are gone. One starting at the
        // log end stays: its leader has appended nothing yet (every partition that has taken
        // no records since its election), and dropping it would rewrite the checkpoint of
        // every such partition at each start.
        let end = log.log_end_offset();
        log.epochs.truncate_from_end(end.saturating_add(1));
        let first_base = log.first_base();
        log.log_start = persisted_start
            .unwrap_or(first_base)
            .clamp(first_base, log.log_end_offset().max(first_base));
        Ok(log)
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Replaces the config (topic config altered).
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    /// The settings the log runs with now.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Appends one produce request's record set (one or more v2 batches as received),
    /// stamping base offsets and `leader_epoch`. Validates every batch first (length, magic,
    /// CRC, size limit, producer sequence); nothing is written if any batch is invalid.
    /// `now_ms` is the broker clock, for LogAppendTime and segment roll by time.
    pub fn append(
        &mut self,
        records: Bytes,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendOutcome, LogError> {
        self.append_batches(records, leader_epoch, now_ms, None)
    }

    /// Writes a transaction marker (a control batch) for `producer_id`, closing its
    /// transaction in this partition, as the leader does on WriteTxnMarkers.
    pub fn append_marker(
        &mut self,
        marker: Marker,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        // A marker from an older incarnation than the log has seen (a fenced producer's, or a
        // stale admin abort) would reopen its epoch: refused, as Kafka refuses it.
        if let Some(current) = self.producers.epoch_of(producer_id) {
            if producer_epoch < current {
                return Err(LogError::InvalidProducerEpoch {
                    producer_id,
                    current,
                    got: producer_epoch,
                });
            }
        }
        let batch = control::encode_marker(
            marker,
            producer_id,
            producer_epoch,
            coordinator_epoch,
            now_ms,
        );
        match self.append_batches(batch, leader_epoch, now_ms, Some(marker))? {
            AppendOutcome::Appended(info) | AppendOutcome::Duplicate(info) => Ok(info),
        }
    }

    /// Offsets and leader epochs stamped on `records`, which [`Self::append`] checks and
    /// writes; `marker` is the kind of the control batch when the records are one.
    fn append_batches(
        &mut self,
        records: Bytes,
        leader_epoch: i32,
        now_ms: i64,
        marker: Option<Marker>,
    ) -> Result<AppendOutcome, LogError> {
        let headers = batch::validate_record_set(&records, self.config.max_message_bytes)?;
        if marker.is_none() && headers.iter().any(BatchHeader::is_control) {
            return Err(LogError::InvalidRecord(
                "control batches are written only by the transaction coordinator".into(),
            ));
        }
        let mut next = self.log_end_offset();
        let mut stamped = Vec::with_capacity(headers.len());
        for mut header in headers {
            header.base_offset = next;
            header.partition_leader_epoch = leader_epoch;
            next = header.last_offset() + 1;
            stamped.push(header);
        }
        // Checked on a copy of the producers involved, so a rejected request changes nothing
        // and later batches of the request see the earlier ones.
        let mut staged = self.producers.subset(stamped.iter().map(|h| h.producer_id));
        for header in &stamped {
            if header.is_idempotent() {
                if let SequenceCheck::Duplicate(meta) = staged.check(header)? {
                    return Ok(AppendOutcome::Duplicate(AppendInfo {
                        base_offset: meta.base_offset,
                        last_offset: meta.last_offset,
                        log_append_time: -1,
                        log_start_offset: self.log_start,
                    }));
                }
            }
            staged.record(header);
        }
        let (Some(first), Some(last)) = (stamped.first(), stamped.last()) else {
            return Err(LogError::CorruptBatch("empty record set".into()));
        };
        let (base_offset, last_offset) = (first.base_offset, last.last_offset());
        let log_append_time = if first.is_log_append_time() {
            now_ms
        } else {
            -1
        };
        let limit = self.config.segment_bytes.min(MAX_SEGMENT_BYTES);
        let active = self.active()?;
        if active.size() > 0
            && (active.size() + records.len() as u64 > limit
                || active.is_due_for_roll(now_ms, self.config.segment_ms)
                || last_offset - active.base_offset > i64::from(u32::MAX))
        {
            self.roll()?;
        }
        let active_base = self.active()?.base_offset;
        if last_offset - active_base > i64::from(u32::MAX) {
            return Err(LogError::CorruptBatch(format!(
                "last offset delta {} is too large",
                last_offset - base_offset
            )));
        }
        let mut data = BytesMut::from(&records[..]);
        let mut position = 0;
        for header in &stamped {
            let batch = &mut data[position..position + header.total_len()];
            batch::stamp_base_offset(batch, header.base_offset);
            batch::stamp_leader_epoch(batch, leader_epoch);
            position += header.total_len();
        }
        let interval = self.config.index_interval_bytes;
        self.active_mut()?
            .append(&data, &stamped, interval, now_ms)?;
        self.producers.merge(staged);
        for header in &stamped {
            self.follow_transactions(header, marker)?;
        }
        if leader_epoch >= 0 && self.epochs.latest_epoch().is_none_or(|e| leader_epoch > e) {
            self.epochs.assign(leader_epoch, base_offset);
            self.write_epochs()?;
        }
        Ok(AppendOutcome::Appended(AppendInfo {
            base_offset,
            last_offset,
            log_append_time,
            log_start_offset: self.log_start,
        }))
    }

    /// Appends batches fetched from the partition leader as they are: offsets and leader
    /// epochs come from the leader. The first batch must start at this log's end (the
    /// follower truncates first when it does not).
    pub fn append_replica(&mut self, records: Bytes, now_ms: i64) -> Result<AppendInfo, LogError> {
        let headers = batch::validate_record_set(&records, u32::MAX)?;
        let mut expected = self.log_end_offset();
        for h in &headers {
            if h.base_offset != expected {
                return Err(LogError::CorruptBatch(format!(
                    "replicated batch starts at offset {} but the log ends at {expected}",
                    h.base_offset
                )));
            }
            expected = h.last_offset() + 1;
        }
        let (Some(first), Some(last)) = (headers.first(), headers.last()) else {
            return Err(LogError::CorruptBatch("empty record set".into()));
        };
        let (base_offset, last_offset) = (first.base_offset, last.last_offset());
        let limit = self.config.segment_bytes.min(MAX_SEGMENT_BYTES);
        let active = self.active()?;
        if active.size() > 0
            && (active.size() + records.len() as u64 > limit
                || active.is_due_for_roll(now_ms, self.config.segment_ms)
                || last_offset - active.base_offset > i64::from(u32::MAX))
        {
            self.roll()?;
        }
        let interval = self.config.index_interval_bytes;
        self.active_mut()?
            .append(&records, &headers, interval, now_ms)?;
        let before = self.epochs.latest_epoch();
        let mut position = 0;
        for h in &headers {
            self.producers.record(h);
            note_epoch(&mut self.epochs, h);
            let marker = records
                .get(position..position + h.total_len())
                .filter(|_| h.is_control())
                .and_then(control::marker_of);
            self.follow_transactions(h, marker)?;
            position += h.total_len();
        }
        if self.epochs.latest_epoch() != before {
            self.write_epochs()?;
        }
        Ok(AppendInfo {
            base_offset,
            last_offset,
            log_append_time: -1,
            log_start_offset: self.log_start,
        })
    }

    /// Follows a batch just written: opens or closes its producer's transaction, and records
    /// an abort marker in memory and in the active segment's `.txnindex`.
    fn follow_transactions(
        &mut self,
        header: &BatchHeader,
        marker: Option<Marker>,
    ) -> Result<(), LogError> {
        let event = self.txns.observe(header);
        let unstable = self.txns.first_unstable_offset();
        if let Some(entry) = txn::abort_entry(event, marker, unstable) {
            let base = self.active()?.base_offset;
            txn::append_index(&segment_path(&self.dir, base, "txnindex"), entry)?;
            self.txns.record_abort(entry);
        }
        Ok(())
    }

    /// The first offset of the oldest transaction still open in this partition: the last
    /// stable offset cannot pass it.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.txns.first_unstable_offset()
    }

    /// The producers this partition's log knows, with their open transactions.
    pub fn active_producers(&self) -> Vec<ProducerSnapshot> {
        let open: BTreeMap<i64, i64> = self.txns.open_transactions().collect();
        self.producers
            .iter()
            .map(|(producer_id, e)| ProducerSnapshot {
                producer_id,
                epoch: e.epoch,
                last_sequence: e.batches.back().map_or(-1, |b| b.last_seq),
                last_timestamp: e.last_timestamp,
                txn_start_offset: open.get(&producer_id).copied().unwrap_or(-1),
            })
            .collect()
    }

    /// Whether `producer_id` has a transaction open in this partition, written at
    /// `producer_epoch`: with `transaction.version` 2 every transaction has its own epoch, so
    /// one open at another epoch is an earlier transaction whose marker is still to come.
    pub fn has_open_transaction(&self, producer_id: i64, producer_epoch: i16) -> bool {
        self.txns.is_open(producer_id)
            && self.producers.epoch_of(producer_id) == Some(producer_epoch)
    }

    /// Producers with a transaction open here, with each one's first offset.
    pub fn open_transactions(&self) -> Vec<(i64, i64)> {
        self.txns.open_transactions().collect()
    }

    /// The aborted transactions a read_committed fetch of offsets `from..to` must be told of.
    pub fn aborted_transactions(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        self.txns.aborted_between(from, to)
    }

    /// Starts `epoch` at the current log end, as a new partition leader does, so
    /// OffsetForLeaderEpoch answers for it even before its first append.
    pub fn assign_epoch(&mut self, epoch: i32) -> Result<(), LogError> {
        if epoch >= 0 && self.epochs.latest_epoch().is_none_or(|e| epoch > e) {
            self.epochs.assign(epoch, self.log_end_offset());
            self.write_epochs()?;
        }
        Ok(())
    }

    /// The latest leader epoch in the log, if any.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.latest_epoch()
    }

    /// OffsetForLeaderEpoch: the largest epoch <= `epoch` and the offset where it ends.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        self.epochs.end_offset_for(epoch, self.log_end_offset())
    }

    fn write_epochs(&self) -> Result<(), LogError> {
        self.epochs.write(&self.dir).map_err(LogError::from)
    }

    /// Reads whole batches starting with the one containing `offset`, up to `max_bytes`
    /// (but always at least one whole batch when `offset` < `upper_bound`), never returning
    /// batches at or past `upper_bound` (the high watermark for consumers, the log end for
    /// replicas). An offset equal to `upper_bound`, or to the log end, returns empty bytes.
    pub fn read(&self, offset: i64, max_bytes: usize, upper_bound: i64) -> Result<Bytes, LogError> {
        let end = self.log_end_offset();
        if offset < self.log_start || offset > end {
            return Err(LogError::OffsetOutOfRange {
                offset,
                start: self.log_start,
                end,
            });
        }
        if offset == end || offset >= upper_bound {
            return Ok(Bytes::new());
        }
        let first = self
            .segments
            .range(..=offset)
            .next_back()
            .map_or(self.first_base(), |(&base, _)| base);
        let mut out = Vec::new();
        let mut looking = true;
        for segment in self.segments.range(first..).map(|(_, s)| s) {
            let position = if looking {
                match segment.find(offset)? {
                    Some((position, _)) => position,
                    // Compaction left nothing at or after `offset` here; the next segment has it.
                    None => continue,
                }
            } else {
                0
            };
            looking = false;
            let budget = max_bytes.saturating_sub(out.len());
            let (bytes, at_end) =
                segment.read_batches(position, budget, upper_bound, out.is_empty())?;
            out.extend_from_slice(&bytes);
            if !at_end || out.len() >= max_bytes {
                break;
            }
        }
        Ok(Bytes::from(out))
    }

    /// First offset still in the log.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start
    }

    /// Offset the next appended record will get.
    pub fn log_end_offset(&self) -> i64 {
        self.segments
            .last_key_value()
            .map_or(self.log_start, |(_, s)| s.next_offset())
    }

    /// Total bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(Segment::size).sum()
    }

    /// The earliest record whose timestamp is >= `timestamp`, as (offset, timestamp), or `None`.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>, LogError> {
        for segment in self.segments.values() {
            if segment
                .max_timestamp()
                .is_none_or(|(max, _)| max < timestamp)
            {
                continue;
            }
            let Some((position, header)) = segment.find_by_time(timestamp, self.log_start)? else {
                continue;
            };
            let bytes = segment.read_bytes(position, header.total_len())?;
            let exact = compaction::decode(&bytes).ok().and_then(|set| {
                set.records
                    .iter()
                    .find(|r| r.offset >= self.log_start && r.timestamp >= timestamp)
                    .map(|r| (r.offset, r.timestamp))
            });
            let fallback = (header.base_offset.max(self.log_start), header.max_timestamp);
            return Ok(Some(if header.is_log_append_time() {
                fallback
            } else {
                exact.unwrap_or(fallback)
            }));
        }
        Ok(None)
    }

    /// The largest timestamp in the log and its offset, as (timestamp, offset) — the last
    /// offset of the first batch carrying it (ListOffsets -3) — or `None` when empty.
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        self.segments
            .values()
            .filter_map(Segment::max_timestamp)
            .fold(None, |best: Option<(i64, i64)>, candidate| match best {
                Some(b) if b.0 >= candidate.0 => Some(b),
                _ => Some(candidate),
            })
    }

    /// The record with the largest timestamp, as (timestamp, offset): the first record
    /// carrying it, not its batch's last offset (ListOffsets -3, KIP-734, as Kafka answers
    /// since KAFKA-16310); `None` when the log is empty.
    pub fn max_timestamp_record(&self) -> Result<Option<(i64, i64)>, LogError> {
        let Some((timestamp, _)) = self.max_timestamp() else {
            return Ok(None);
        };
        Ok(self
            .offset_for_timestamp(timestamp)?
            .map(|(offset, ts)| (ts, offset)))
    }

    /// Applies time and size retention (whole segments, never the active one) and, for
    /// compacted topics, compaction. Returns the number of segments removed or rewritten.
    pub fn maintain(&mut self, now_ms: i64) -> Result<usize, LogError> {
        let mut changed = 0;
        let policy = self.config.cleanup_policy;
        if matches!(policy, CleanupPolicy::Delete | CleanupPolicy::CompactDelete) {
            if let Some(ms) = self.config.retention_ms.filter(|&ms| ms >= 0) {
                let cutoff = now_ms.saturating_sub(ms);
                changed += self.delete_oldest_while(|segment, _| {
                    segment.max_timestamp().is_none_or(|(ts, _)| ts < cutoff)
                })?;
            }
            if let Some(limit) = self.config.retention_bytes {
                // Like Kafka: a segment goes only if the log stays at or above the limit.
                changed += self.delete_oldest_while(|segment, total| {
                    total.saturating_sub(segment.size()) >= limit
                })?;
            }
        }
        if matches!(
            policy,
            CleanupPolicy::Compact | CleanupPolicy::CompactDelete
        ) {
            changed += self.compact(now_ms)?;
        }
        Ok(changed)
    }

    /// Deletes the oldest non-active segments while `doomed(segment, log size)` holds.
    fn delete_oldest_while(
        &mut self,
        doomed: impl Fn(&Segment, u64) -> bool,
    ) -> Result<usize, LogError> {
        let mut deleted = 0;
        let mut total = self.size_bytes();
        while self.segments.len() > 1 {
            let Some(entry) = self.segments.first_entry() else {
                break;
            };
            if !doomed(entry.get(), total) {
                break;
            }
            let segment = entry.remove();
            total -= segment.size();
            segment.delete_files(&self.dir)?;
            deleted += 1;
        }
        self.log_start = self.log_start.max(self.first_base());
        self.txns.drop_before(self.first_base());
        Ok(deleted)
    }

    /// Moves the log start offset forward (DeleteRecords); whole segments below it go.
    pub fn advance_log_start(&mut self, offset: i64) -> Result<(), LogError> {
        if offset <= self.log_start {
            return Ok(());
        }
        let end = self.log_end_offset();
        if offset > end {
            return Err(LogError::OffsetOutOfRange {
                offset,
                start: self.log_start,
                end,
            });
        }
        self.log_start = offset;
        self.epochs.truncate_from_start(offset);
        self.write_epochs()?;
        while self.segments.len() > 1 {
            let second = self.segments.keys().nth(1).copied().unwrap_or(i64::MAX);
            if second > offset {
                break;
            }
            if let Some((_, segment)) = self.segments.pop_first() {
                segment.delete_files(&self.dir)?;
            }
        }
        self.txns.drop_before(self.first_base());
        self.persist_log_start()
    }

    /// Drops every record and starts the log empty at `offset` (a follower that fell behind
    /// the leader's log start).
    pub fn reset_to(&mut self, offset: i64) -> Result<(), LogError> {
        while let Some((_, segment)) = self.segments.pop_first() {
            segment.delete_files(&self.dir)?;
        }
        self.segments
            .insert(offset, Segment::create(&self.dir, offset)?);
        self.log_start = offset;
        self.producers = ProducerStates::default();
        self.txns = Transactions::default();
        self.epochs = EpochCache::new();
        self.write_epochs()?;
        self.persist_log_start()
    }

    /// Drops every record at or after `offset` (replica truncation). A batch straddling
    /// `offset` goes whole, as in Kafka, so the log end may land below `offset`.
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), LogError> {
        let end = self.log_end_offset();
        if offset >= end {
            // Nothing to cut, but an epoch starting at the log end goes, as in Kafka: this
            // node led it and appended nothing before another leader was elected, and the
            // records it is about to fetch belong to the new leader's epochs.
            if self.epochs.latest_start().is_some_and(|s| s >= end) {
                self.epochs.truncate_from_end(end);
                self.write_epochs()?;
            }
            return Ok(());
        }
        let offset = offset.max(0);
        if offset < self.log_start {
            return self.reset_to(offset);
        }
        while self.segments.len() > 1 && self.segments.keys().next_back() >= Some(&offset) {
            if let Some((_, segment)) = self.segments.pop_last() {
                segment.delete_files(&self.dir)?;
            }
        }
        let dir = self.dir.clone();
        let interval = self.config.index_interval_bytes;
        let active = self.active_mut()?;
        active.activate(&dir)?;
        if let Some((position, _)) = active.find(offset)? {
            active.truncate_at(position, interval)?;
        }
        let end = self.log_end_offset();
        self.producers.truncate(end);
        if self.txns.touches_from(end) {
            self.rebuild_transactions()?;
        }
        self.epochs.truncate_from_end(end);
        self.write_epochs()?;
        if self.log_start > end {
            self.log_start = end;
            self.persist_log_start()?;
        }
        Ok(())
    }

    /// Rebuilds the transactions from the log (after a truncation cut a transactional batch
    /// or marker): headers of every segment, and the markers of the newest one; the older
    /// segments' `.txnindex` files are intact.
    fn rebuild_transactions(&mut self) -> Result<(), LogError> {
        let mut txns = Transactions::default();
        let active_base = self.active()?.base_offset;
        let mut aborted = Vec::new();
        for (&base, segment) in &self.segments {
            let mut position = 0;
            while let Some(header) = segment.header_at(position)? {
                let event = txns.observe(&header);
                if base == active_base && event != TxnEvent::None {
                    let bytes = segment.read_bytes(position, header.total_len())?;
                    let unstable = txns.first_unstable_offset();
                    aborted.extend(txn::abort_entry(
                        event,
                        control::marker_of(&bytes),
                        unstable,
                    ));
                }
                position += header.total_len() as u64;
            }
            if base != active_base {
                txns.adopt_aborted(txn::read_index(&segment_path(&self.dir, base, "txnindex"))?);
            }
        }
        txn::write_index(&segment_path(&self.dir, active_base, "txnindex"), &aborted)?;
        txns.adopt_aborted(aborted);
        self.txns = txns;
        Ok(())
    }

    /// fsyncs the active segment and its indexes.
    pub fn flush(&mut self) -> Result<(), LogError> {
        self.active()?.sync()
    }

    /// Closes the log and removes its directory (topic deleted).
    pub fn delete(self) -> Result<(), LogError> {
        let dir = self.dir.clone();
        drop(self);
        std::fs::remove_dir_all(&dir).map_err(io_err(&dir))
    }

    /// Base offset of the oldest segment.
    fn first_base(&self) -> i64 {
        self.segments.keys().next().copied().unwrap_or(0)
    }

    /// The active segment.
    fn active(&self) -> Result<&Segment, LogError> {
        self.segments
            .values()
            .next_back()
            .ok_or_else(|| LogError::CorruptBatch("log has no segments".into()))
    }

    /// The active segment, mutably.
    fn active_mut(&mut self) -> Result<&mut Segment, LogError> {
        self.segments
            .values_mut()
            .next_back()
            .ok_or_else(|| LogError::CorruptBatch("log has no segments".into()))
    }

    /// Starts a new active segment at the log end, syncing and closing the old one's indexes.
    fn roll(&mut self) -> Result<(), LogError> {
        let base = self.log_end_offset();
        self.active_mut()?.deactivate()?;
        let segment = Segment::create(&self.dir, base)?;
        self.segments.insert(base, segment);
        Ok(())
    }

    /// Writes the log start offset (temp file, fsync, rename) when it is past the first
    /// segment's base, and removes a stale file otherwise.
    fn persist_log_start(&self) -> Result<(), LogError> {
        let path = self.dir.join(LOG_START_FILE);
        if self.log_start <= self.first_base() {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&path)(e)),
                _ => Ok(()),
            };
        }
        let tmp = self.dir.join(format!("{LOG_START_FILE}.tmp"));
        let write = || -> std::io::Result<()> {
            let file = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut &file, self.log_start.to_string().as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(io_err(&path))
    }
}

/// The persisted log start offset, if the file exists and holds a number.
fn read_log_start(dir: &Path) -> Result<Option<i64>, LogError> {
    let path = dir.join(LOG_START_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text.trim().parse().ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(&path)(e)),
    }
}

/// Starts a new epoch entry when a batch carries a newer leader epoch than any seen.
fn note_epoch(epochs: &mut EpochCache, h: &batch::BatchHeader) {
    let epoch = h.partition_leader_epoch;
    if epoch >= 0 && epochs.latest_epoch().is_none_or(|e| epoch > e) {
        epochs.assign(epoch, h.base_offset);
    }
}
