//! The v2 record batch header (magic 2): parsing, validation and the two fields the broker
//! stamps (base offset and partition leader epoch, both outside the CRC).

// SKELETON: filled in by the log work.

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
        let i64_at = |o: usize| i64::from_be_bytes(buf[o..o + 8].try_into().expect("8 bytes"));
        let i32_at = |o: usize| i32::from_be_bytes(buf[o..o + 4].try_into().expect("4 bytes"));
        let i16_at = |o: usize| i16::from_be_bytes(buf[o..o + 2].try_into().expect("2 bytes"));
        Some(BatchHeader {
            base_offset: i64_at(0),
            batch_length: i32_at(8),
            partition_leader_epoch: i32_at(12),
            magic: buf[16] as i8,
            crc: u32::from_be_bytes(buf[17..21].try_into().expect("4 bytes")),
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
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Whole batch size in bytes.
    pub fn total_len(&self) -> usize {
        self.batch_length as usize + 12
    }
}
