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

// SKELETON: the API the rest of the broker codes against; bodies are filled in by the log work.

use std::path::{Path, PathBuf};

use bytes::Bytes;

pub mod batch;

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
}

/// What went wrong in the log; each maps to a Kafka error code in responses.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
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

/// One partition's log on disk.
#[derive(Debug)]
pub struct PartitionLog {
    dir: PathBuf,
}

impl PartitionLog {
    /// Opens (creating if missing) and recovers the log in `dir`.
    pub fn open(dir: &Path, config: LogConfig) -> Result<PartitionLog, LogError> {
        let _ = config;
        Ok(PartitionLog {
            dir: dir.to_path_buf(),
        })
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Replaces the config (topic config altered).
    pub fn set_config(&mut self, config: LogConfig) {
        let _ = config;
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
        let _ = (records, leader_epoch, now_ms);
        todo!("log append")
    }

    /// Reads whole batches starting with the one containing `offset`, up to `max_bytes`
    /// (but always at least one whole batch when `offset` < `upper_bound`), never returning
    /// batches at or past `upper_bound` (the high watermark for consumers, the log end for
    /// replicas). An offset equal to `upper_bound`, or to the log end, returns empty bytes.
    pub fn read(&self, offset: i64, max_bytes: usize, upper_bound: i64) -> Result<Bytes, LogError> {
        let _ = (offset, max_bytes, upper_bound);
        todo!("log read")
    }

    /// First offset still in the log.
    pub fn log_start_offset(&self) -> i64 {
        0
    }

    /// Offset the next appended record will get.
    pub fn log_end_offset(&self) -> i64 {
        0
    }

    /// Total bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        0
    }

    /// The earliest record whose timestamp is >= `timestamp`: (offset, timestamp), or `None`.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>, LogError> {
        let _ = timestamp;
        todo!("time index lookup")
    }

    /// The largest timestamp in the log and its offset (ListOffsets -3), or `None` when empty.
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        None
    }

    /// Applies time and size retention (whole segments, never the active one) and, for
    /// compacted topics, compaction. Returns the number of segments removed or rewritten.
    pub fn maintain(&mut self, now_ms: i64) -> Result<usize, LogError> {
        let _ = now_ms;
        Ok(0)
    }

    /// Moves the log start offset forward (DeleteRecords); whole segments below it go.
    pub fn advance_log_start(&mut self, offset: i64) -> Result<(), LogError> {
        let _ = offset;
        Ok(())
    }

    /// Drops every record at or after `offset` (replica truncation).
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), LogError> {
        let _ = offset;
        Ok(())
    }

    /// fsyncs the active segment and its indexes.
    pub fn flush(&mut self) -> Result<(), LogError> {
        Ok(())
    }

    /// Closes the log and removes its directory (topic deleted).
    pub fn delete(self) -> Result<(), LogError> {
        std::fs::remove_dir_all(&self.dir).map_err(|source| LogError::Io {
            path: self.dir.clone(),
            source,
        })
    }
}
