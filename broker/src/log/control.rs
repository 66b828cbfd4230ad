//! Transaction markers: the control batches Kafka writes into a partition's log to end a
//! transaction there.
//!
//! A marker is a v2 batch with the transactional and control attribute bits set, the
//! producer's id and epoch, base sequence -1, never compressed, holding one record. The record's
//! key is the control record type (version 0, then type 0 for ABORT or 1 for COMMIT) and its
//! value Kafka's `EndTransactionMarker` (version 0, then the coordinator epoch); both are
//! big-endian int16s and an int32, six and four bytes in all. Consumers never see markers as
//! records; `read_committed` ones use the abort markers to drop what a transaction wrote.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::batch::{BatchHeader, HEADER_LEN};

/// Version of the control record key and of the end-transaction marker value.
const VERSION: i16 = 0;
/// Control record type of an abort marker.
const ABORT: i16 = 0;
/// Control record type of a commit marker.
const COMMIT: i16 = 1;
/// Longest zigzag varint (int32) Kafka writes.
const MAX_VARINT: usize = 5;
/// Longest zigzag varlong (int64) Kafka writes.
const MAX_VARLONG: usize = 10;

/// How a transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// Committed: its records become visible to `read_committed` consumers.
    Commit,
    /// Aborted: `read_committed` consumers drop its records.
    Abort,
}

impl Marker {
    /// Kafka's control record type for the marker.
    fn control_type(self) -> i16 {
        match self {
            Marker::Commit => COMMIT,
            Marker::Abort => ABORT,
        }
    }
}

/// Encodes a marker as a whole v2 batch at base offset 0 (the log stamps the real offset and
/// leader epoch), byte for byte as Kafka's `MemoryRecords.withEndTransactionMarker` writes it.
pub fn encode_marker(
    marker: Marker,
    producer_id: i64,
    producer_epoch: i16,
    coordinator_epoch: i32,
    timestamp_ms: i64,
) -> Bytes {
    let mut key = BytesMut::with_capacity(4);
    key.put_i16(VERSION);
    key.put_i16(marker.control_type());
    let mut value = BytesMut::with_capacity(6);
    value.put_i16(VERSION);
    value.put_i32(coordinator_epoch);
    let record = Record {
        transactional: true,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id,
        producer_epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: timestamp_ms,
        key: Some(key.freeze()),
        value: Some(value.freeze()),
        headers: Default::default(),
    };
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    let mut buf = BytesMut::with_capacity(HEADER_LEN + 20);
    match RecordBatchEncoder::encode(&mut buf, std::slice::from_ref(&record), &options) {
        Ok(()) => buf.freeze(),
        // Cannot happen: magic 2 without compression is always supported and one small record
        // is far from any size limit. Were it to, the log rejects an empty append.
        Err(_) => Bytes::new(),
    }
}

/// The marker in one whole control batch as stored in the log, read from its first record's
/// key without decoding the rest; `None` for anything that is not a well-formed, uncompressed
/// commit or abort marker batch.
pub fn marker_of(batch: &[u8]) -> Option<Marker> {
    let header = BatchHeader::parse(batch)?;
    if header.magic != 2
        || !header.is_control()
        || header.compression_codec() != 0
        || header.records_count < 1
    {
        return None;
    }
    let mut records = batch.get(HEADER_LEN..header.total_len())?;
    let length = usize::try_from(varint(&mut records, MAX_VARINT)?).ok()?;
    let mut record = records.get(..length)?;
    // Attributes (unused), timestamp delta and offset delta come before the key.
    take(&mut record, 1)?;
    varint(&mut record, MAX_VARLONG)?;
    varint(&mut record, MAX_VARINT)?;
    let key_len = usize::try_from(varint(&mut record, MAX_VARINT)?).ok()?;
    let key = take(&mut record, key_len)?;
    // As Kafka: a key needs four bytes and a version that is not negative; a newer version is
    // read as version 0.
    let version = i16::from_be_bytes([*key.first()?, *key.get(1)?]);
    let control_type = i16::from_be_bytes([*key.get(2)?, *key.get(3)?]);
    if version < 0 {
        return None;
    }
    match control_type {
        ABORT => Some(Marker::Abort),
        COMMIT => Some(Marker::Commit),
        _ => None,
    }
}

/// The next `n` bytes of `buf`, which moves past them.
fn take<'a>(buf: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (head, rest) = buf.split_at_checked(n)?;
    *buf = rest;
    Some(head)
}

/// A zigzag varint of at most `max_bytes` bytes (5 for an int32, 10 for an int64), as Kafka's
/// `ByteUtils.readVarint`/`readVarlong` read them.
fn varint(buf: &mut &[u8], max_bytes: usize) -> Option<i64> {
    let mut raw = 0u64;
    for i in 0..max_bytes {
        let byte = *take(buf, 1)?.first()?;
        raw |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            // Zigzag: 0, -1, 1, -2, ... are 0, 1, 2, 3, ...
            return Some((raw >> 1) as i64 ^ -((raw & 1) as i64));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    /// What Kafka 4.3.1's `MemoryRecords.withEndTransactionMarker(0, 1_700_000_000_123, 0,
    /// 1000, 5, new EndTransactionMarker(COMMIT, 3))` returns, laid out field by field.
    const KAFKA_COMMIT: &[u8] = &[
        0, 0, 0, 0, 0, 0, 0, 0, // base offset 0
        0, 0, 0, 0x42, // batch length 66
        0, 0, 0, 0, // partition leader epoch 0
        2, // magic
        0xbf, 0x50, 0x6f, 0x51, // CRC-32C
        0x00, 0x30, // attributes: transactional | control
        0, 0, 0, 0, // last offset delta 0
        0, 0, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x7b, // base timestamp
        0, 0, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x7b, // max timestamp
        0, 0, 0, 0, 0, 0, 0x03, 0xe8, // producer id 1000
        0, 5, // producer epoch 5
        0xff, 0xff, 0xff, 0xff, // base sequence -1
        0, 0, 0, 1,    // one record
        0x20, // record length 16 (zigzag)
        0x00, // record attributes
        0x00, // timestamp delta 0
        0x00, // offset delta 0
        0x08, // key length 4
        0, 0, 0, 1,    // key: version 0, type COMMIT
        0x0c, // value length 6
        0, 0, 0, 0, 0, 3,    // value: version 0, coordinator epoch 3
        0x00, // no headers
    ];

    #[test]
    fn markers_match_the_bytes_kafka_writes() {
        let commit = encode_marker(Marker::Commit, 1000, 5, 3, 1_700_000_000_123);
        assert_eq!(&commit[..], KAFKA_COMMIT);
        // Kafka's abort marker differs only in the type and so the CRC.
        let mut kafka_abort = KAFKA_COMMIT.to_vec();
        kafka_abort[17..21].copy_from_slice(&[0x4b, 0x6e, 0xb9, 0x19]);
        kafka_abort[69] = 0;
        let abort = encode_marker(Marker::Abort, 1000, 5, 3, 1_700_000_000_123);
        assert_eq!(abort.to_vec(), kafka_abort);
    }

    #[test]
    fn the_header_marks_a_transactional_control_batch() {
        let batch = encode_marker(Marker::Abort, 77, 9, 1, 123);
        let h = BatchHeader::parse(&batch).expect("a whole header");
        assert!(h.is_control() && h.is_transactional());
        assert_eq!(h.compression_codec(), 0);
        assert_eq!((h.producer_id, h.producer_epoch), (77, 9));
        assert_eq!(h.base_sequence, -1);
        assert_eq!(
            (h.base_offset, h.last_offset_delta, h.records_count),
            (0, 0, 1)
        );
        assert_eq!((h.base_timestamp, h.max_timestamp), (123, 123));
        assert_eq!(h.total_len(), batch.len());
        assert!(!h.is_idempotent());
    }

    #[test]
    fn marker_of_reads_back_both_kinds() {
        for marker in [Marker::Commit, Marker::Abort] {
            let batch = encode_marker(marker, 1, 0, 0, 0);
            assert_eq!(marker_of(&batch), Some(marker));
        }
        // Large values make every varint and field wider; the key is found all the same.
        let batch = encode_marker(Marker::Commit, i64::MAX, i16::MAX, i32::MAX, i64::MAX);
        assert_eq!(marker_of(&batch), Some(Marker::Commit));
        assert_eq!(marker_of(KAFKA_COMMIT), Some(Marker::Commit));
    }

    #[test]
    fn kafka_protocol_decodes_one_control_record() {
        let batch = encode_marker(Marker::Commit, 1000, 5, 3, 42);
        let mut buf = batch.clone();
        let set = RecordBatchDecoder::decode(&mut buf).expect("decodes");
        assert_eq!(set.records.len(), 1);
        let r = &set.records[0];
        assert!(r.control && r.transactional);
        assert_eq!((r.producer_id, r.producer_epoch, r.sequence), (1000, 5, -1));
        assert_eq!((r.offset, r.timestamp), (0, 42));
        assert_eq!(r.key.as_deref(), Some(&[0u8, 0, 0, 1][..]));
        assert_eq!(r.value.as_deref(), Some(&[0u8, 0, 0, 0, 0, 3][..]));
    }

    #[test]
    fn marker_of_rejects_what_is_not_a_marker_batch() {
        let batch = encode_marker(Marker::Abort, 1, 0, 0, 0).to_vec();
        for n in 0..batch.len() {
            assert_eq!(marker_of(&batch[..n]), None, "cut at {n}");
        }
        assert_eq!(marker_of(&[0xff; 100]), None);
        assert_eq!(marker_of(&[]), None);

        let with = |at: usize, byte: u8| {
            let mut b = batch.clone();
            b[at] = byte;
            marker_of(&b)
        };
        assert_eq!(with(22, 0x10), None, "control bit cleared");
        assert_eq!(with(22, 0x31), None, "compressed");
        assert_eq!(with(16, 1), None, "magic 1");
        assert_eq!(with(60, 0), None, "no records");
        assert_eq!(with(69, 2), None, "LEADER_CHANGE, not a marker");
        assert_eq!(with(66, 0x80), None, "negative key version");
        assert_eq!(with(65, 0x06), None, "key of three bytes");
        assert_eq!(with(61, 0x7e), None, "record longer than the batch");
        assert_eq!(with(63, 0x80), None, "varint that runs into the key");
        // A newer key version is read as version 0, as Kafka does.
        assert_eq!(with(67, 1), Some(Marker::Abort));

        // An ordinary transactional batch is not a marker.
        let data = Record {
            control: false,
            key: Some(Bytes::from_static(&[0, 0, 0, 1])),
            ..kafka_protocol_record()
        };
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut buf, [&data], &options).expect("encodes");
        assert_eq!(marker_of(&buf), None);
    }

    /// A transactional record to vary.
    fn kafka_protocol_record() -> Record {
        Record {
            transactional: true,
            control: true,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: 1,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: 0,
            timestamp: 0,
            key: None,
            value: None,
            headers: Default::default(),
        }
    }
}
