//! The v2 record batch header (magic 2): parsing, validation and the two fields the broker
//! stamps (base offset and partition leader epoch, both outside the CRC).

use super::LogError;

/// Bytes in a v2 record batch header.
pub const HEADER_LEN: usize = 61;

/// The fixed header of one v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes after the length field (so the whole batch is `batch_length + 12`).
    pub batch_length: i32,
    /// Leader epoch stamped by the leader.
    pub partition_leader_epoch: i32,
    /// Always 2 here.
    pub magic: i8,
    /// CRC-32C over attributes..end.
    pub crc: u32,
    /// Codec, timestamp type, transactional, control bits.
    pub attributes: i16,
    /// Offset of the last record relative to base offset.
    pub last_offset_delta: i32,
    /// First record's timestamp.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Idempotent/transactional producer id, -1 if none.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// Sequence of the first record, -1 if none.
    pub base_sequence: i32,
    /// Number of records.
    pub records_count: i32,
}

impl BatchHeader {
    /// Parses the header at the start of `buf`; `None` if fewer than [`HEADER_LEN`] bytes.
    pub fn parse(buf: &[u8]) -> Option<BatchHeader> {
        if buf.len() < HEADER_LEN {
            return None;
        }
        let i64_at = |o: usize| i64::from_be_bytes(array(buf, o));
        let i32_at = |o: usize| i32::from_be_bytes(array(buf, o));
        let i16_at = |o: usize| i16::from_be_bytes(array(buf, o));
        Some(BatchHeader {
            base_offset: i64_at(0),
            batch_length: i32_at(8),
            partition_leader_epoch: i32_at(12),
            magic: buf[16] as i8,
            crc: u32::from_be_bytes(array(buf, 17)),
            attributes: i16_at(21),
            last_offset_delta: i32_at(23),
            base_timestamp: i64_at(27),
            max_timestamp: i64_at(35),
            producer_id: i64_at(43),
            producer_epoch: i16_at(51),
            base_sequence: i32_at(53),
            records_count: i32_at(57),
        })
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        // Saturating: a corrupt header read from disk must not overflow.
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// Whole batch size in bytes.
    pub fn total_len(&self) -> usize {
        // A negative length (only in a header not yet checked) counts as header-only.
        usize::try_from(self.batch_length).unwrap_or(0) + 12
    }
}

/// Smallest legal `batch_length`: the header after the length field, with no records.
pub const MIN_BATCH_LENGTH: i32 = (HEADER_LEN - 12) as i32;

/// Attribute bit: timestamps are the broker's log append time.
const LOG_APPEND_TIME_BIT: i16 = 1 << 3;
/// Attribute bit: the batch belongs to a transaction.
const TRANSACTIONAL_BIT: i16 = 1 << 4;
/// Attribute bit: the batch holds a control record (transaction marker).
const CONTROL_BIT: i16 = 1 << 5;

/// Copies `N` bytes of `buf` at `at`; the caller has checked the length.
fn array<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&buf[at..at + N]);
    out
}

impl BatchHeader {
    /// Compression codec (attribute bits 0–2): 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn compression_codec(&self) -> i16 {
        self.attributes & 0x7
    }

    /// Whether the producer asked for log-append-time timestamps (attribute bit 3).
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & LOG_APPEND_TIME_BIT != 0
    }

    /// Whether the batch is part of a transaction (attribute bit 4).
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// Whether the batch holds control records (attribute bit 5).
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// Whether the idempotent-producer sequence check applies to this batch.
    pub fn is_idempotent(&self) -> bool {
        self.producer_id >= 0 && self.base_sequence >= 0
    }

    /// Sequence of the last record; sequences wrap from `i32::MAX` to 0.
    pub fn last_sequence(&self) -> i32 {
        add_sequence(self.base_sequence, self.last_offset_delta)
    }
}

/// `seq + delta` in producer sequence space, which wraps from `i32::MAX` to 0.
pub fn add_sequence(seq: i32, delta: i32) -> i32 {
    let sum = i64::from(seq) + i64::from(delta);
    let modulus = i64::from(i32::MAX) + 1;
    // rem_euclid keeps the result in [0, i32::MAX], so the narrowing cannot truncate.
    sum.rem_euclid(modulus) as i32
}

/// Checks the batch at the start of `buf` without its CRC: magic, a sane length, and that the
/// whole batch is present. Returns the header; the batch is `buf[..header.total_len()]`.
pub fn check_framing(buf: &[u8]) -> Result<BatchHeader, LogError> {
    check_header(buf, buf.len())
}

/// Checks the header at the start of `buf` (at least [`HEADER_LEN`] bytes unless torn) for a
/// batch of which `available` bytes exist: magic 2, a sane length and offset delta, and the
/// whole batch within `available`.
pub fn check_header(buf: &[u8], available: usize) -> Result<BatchHeader, LogError> {
    if buf.len() < 17 {
        return Err(LogError::CorruptBatch(format!(
            "{} bytes cannot hold a batch header",
            buf.len()
        )));
    }
    let magic = buf[16] as i8;
    if magic != 2 {
        return Err(LogError::UnsupportedMagic(magic));
    }
    let Some(header) = BatchHeader::parse(buf) else {
        return Err(LogError::CorruptBatch(format!(
            "{} bytes cannot hold a batch header",
            buf.len()
        )));
    };
    if header.batch_length < MIN_BATCH_LENGTH {
        return Err(LogError::CorruptBatch(format!(
            "batch length {} is below the minimum {MIN_BATCH_LENGTH}",
            header.batch_length
        )));
    }
    if header.last_offset_delta < 0 || header.records_count < 0 {
        return Err(LogError::CorruptBatch(format!(
            "negative last offset delta {} or record count {}",
            header.last_offset_delta, header.records_count
        )));
    }
    if available < header.total_len() {
        return Err(LogError::CorruptBatch(format!(
            "batch of {} bytes but only {available} present",
            header.total_len(),
        )));
    }
    Ok(header)
}

/// Checks the CRC-32C of a whole batch (`batch` is exactly the batch, header included).
pub fn check_crc(header: &BatchHeader, batch: &[u8]) -> Result<(), LogError> {
    let actual = crc32c::crc32c(&batch[21..header.total_len()]);
    if actual != header.crc {
        return Err(LogError::CorruptBatch(format!(
            "crc mismatch: stored {:#010x}, computed {actual:#010x}",
            header.crc
        )));
    }
    Ok(())
}

/// Validates a produced record set — one or more concatenated v2 batches — and returns the
/// header of each. Rejects an empty set, any magic but 2, a short or torn batch, a CRC
/// mismatch, and a batch larger than `max_message_bytes`.
pub fn validate_record_set(
    records: &[u8],
    max_message_bytes: u32,
) -> Result<Vec<BatchHeader>, LogError> {
    if records.is_empty() {
        return Err(LogError::CorruptBatch("empty record set".into()));
    }
    let mut headers = Vec::new();
    let mut pos = 0;
    while pos < records.len() {
        let rest = &records[pos..];
        if rest.len() >= 12 {
            let length = i32::from_be_bytes(array(rest, 8));
            let size = i64::from(length) + 12;
            if size > i64::from(max_message_bytes) {
                return Err(LogError::BatchTooLarge {
                    size: usize::try_from(size).unwrap_or(usize::MAX),
                    max: max_message_bytes,
                });
            }
        }
        let header = check_framing(rest)?;
        check_crc(&header, &rest[..header.total_len()])?;
        pos += header.total_len();
        headers.push(header);
    }
    Ok(headers)
}

/// Writes `base_offset` into bytes 0..8 of a batch. Outside the CRC, so the CRC stays valid.
pub fn stamp_base_offset(batch: &mut [u8], base_offset: i64) {
    if let Some(slot) = batch.get_mut(0..8) {
        slot.copy_from_slice(&base_offset.to_be_bytes());
    }
}

/// Writes `epoch` into bytes 12..16 of a batch. Outside the CRC, so the CRC stays valid.
pub fn stamp_leader_epoch(batch: &mut [u8], epoch: i32) {
    if let Some(slot) = batch.get_mut(12..16) {
        slot.copy_from_slice(&epoch.to_be_bytes());
    }
}

/// Recomputes the CRC of a whole batch after its attributes..end bytes were changed.
pub fn recompute_crc(batch: &mut [u8]) {
    if batch.len() >= HEADER_LEN {
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
    }
}

/// Encodes keyed records as one uncompressed v2 batch stamped `timestamp`, as the broker
/// writes its own records (offsets, group metadata, transaction state): from no producer, or,
/// with `producer` (id, epoch), as part of that producer's transaction. Base sequence -1: the
/// broker's batches are not sequence-checked.
pub fn encode_keyed(
    records: Vec<(bytes::Bytes, Option<bytes::Bytes>)>,
    timestamp: i64,
    producer: Option<(i64, i16)>,
) -> Result<bytes::Bytes, LogError> {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let (producer_id, producer_epoch) = producer.unwrap_or((-1, -1));
    let records: Vec<Record> = records
        .into_iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: producer.is_some(),
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch wherever offset - sequence changes: consecutive
            // sequences from -1 keep one batch whose base sequence is -1.
            sequence: (i as i32).wrapping_sub(1),
            timestamp,
            key: Some(key),
            value,
            headers: Default::default(),
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options)
        .map_err(|e| LogError::CorruptBatch(e.to_string()))?;
    Ok(buf.freeze())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    /// One record with the given key, value and timestamp, for building test batches.
    pub(crate) fn record(key: Option<&str>, value: Option<&str>, timestamp: i64) -> Record {
        Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp,
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            headers: Default::default(),
        }
    }

    /// Encodes `records` as one v2 batch (offsets 0..n, as a producer sends them).
    pub(crate) fn encode(mut records: Vec<Record>, compression: Compression) -> Bytes {
        for (i, r) in records.iter_mut().enumerate() {
            r.offset = i as i64;
            // The encoder splits a batch where offset - sequence changes, so even records
            // without a producer get consecutive sequences; the batch's base stays -1.
            r.sequence = r.sequence.wrapping_add(i as i32);
        }
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression,
        };
        RecordBatchEncoder::encode(&mut buf, &records, &options).expect("test batch encodes");
        buf.freeze()
    }

    /// A batch of `n` small uncompressed records with timestamp `ts`.
    pub(crate) fn batch_of(n: usize, ts: i64) -> Bytes {
        let records = (0..n)
            .map(|i| record(Some(&format!("k{i}")), Some("value"), ts))
            .collect();
        encode(records, Compression::None)
    }

    /// An idempotent batch of `n` records from `producer_id`/`epoch` starting at `base_seq`.
    pub(crate) fn idempotent_batch(producer_id: i64, epoch: i16, base_seq: i32, n: usize) -> Bytes {
        let records = (0..n)
            .map(|_| {
                let mut r = record(Some("k"), Some("v"), 1_000);
                r.producer_id = producer_id;
                r.producer_epoch = epoch;
                r.sequence = base_seq;
                r
            })
            .collect();
        encode(records, Compression::None)
    }

    #[test]
    fn a_valid_batch_passes_and_its_header_is_parsed() {
        let batch = batch_of(3, 42);
        let headers = validate_record_set(&batch, 1 << 20).expect("valid");
        assert_eq!(headers.len(), 1);
        assert_eq!(headers[0].records_count, 3);
        assert_eq!(headers[0].last_offset_delta, 2);
        assert_eq!(headers[0].max_timestamp, 42);
        assert_eq!(headers[0].total_len(), batch.len());
    }

    #[test]
    fn concatenated_batches_are_each_validated() {
        let mut both = batch_of(2, 1).to_vec();
        both.extend_from_slice(&batch_of(5, 2));
        assert_eq!(validate_record_set(&both, 1 << 20).expect("valid").len(), 2);
        let last = both.len() - 1;
        both[last] ^= 0xff;
        assert!(matches!(
            validate_record_set(&both, 1 << 20),
            Err(LogError::CorruptBatch(_))
        ));
    }

    #[test]
    fn a_torn_batch_is_corrupt() {
        let batch = batch_of(3, 0);
        for cut in [5, 16, 30, 60, batch.len() - 1] {
            assert!(
                matches!(
                    validate_record_set(&batch[..cut], 1 << 20),
                    Err(LogError::CorruptBatch(_))
                ),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn an_old_magic_is_unsupported() {
        let mut batch = batch_of(1, 0).to_vec();
        batch[16] = 1;
        assert!(matches!(
            validate_record_set(&batch, 1 << 20),
            Err(LogError::UnsupportedMagic(1))
        ));
    }

    #[test]
    fn a_length_below_the_header_is_corrupt() {
        let mut batch = batch_of(1, 0).to_vec();
        batch[8..12].copy_from_slice(&48i32.to_be_bytes());
        assert!(matches!(
            validate_record_set(&batch, 1 << 20),
            Err(LogError::CorruptBatch(_))
        ));
    }

    #[test]
    fn a_batch_over_max_message_bytes_is_too_large() {
        let batch = batch_of(10, 0);
        let max = (batch.len() - 1) as u32;
        assert!(matches!(
            validate_record_set(&batch, max),
            Err(LogError::BatchTooLarge { size, max: m }) if size == batch.len() && m == max
        ));
        assert!(validate_record_set(&batch, batch.len() as u32).is_ok());
    }

    #[test]
    fn stamping_offset_and_epoch_keeps_the_crc_valid() {
        let mut batch = batch_of(2, 0).to_vec();
        stamp_base_offset(&mut batch, 1234);
        stamp_leader_epoch(&mut batch, 7);
        let headers = validate_record_set(&batch, 1 << 20).expect("still valid");
        assert_eq!(headers[0].base_offset, 1234);
        assert_eq!(headers[0].partition_leader_epoch, 7);
    }

    #[test]
    fn sequences_wrap_from_max_to_zero() {
        assert_eq!(add_sequence(i32::MAX, 1), 0);
        assert_eq!(add_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(add_sequence(5, 2), 7);
    }
}
