//! The records of `__share_group_state` in Kafka's format (the share coordinator's
//! `ShareSnapshotKey` / `ShareSnapshotValue`): the key is the record type (0) and the group,
//! topic id and partition; the value is version 0 of a flexible message with the state epoch,
//! the share-partition start offset and its state batches. A null value deletes the state.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use uuid::Uuid;

use super::Key;

/// `ShareSnapshotKey`'s record type.
const SNAPSHOT: i16 = 0;

/// A delivery state as the state batches carry it.
pub const AVAILABLE: i8 = 0;
/// Accepted (or a gap): complete.
pub const ACKNOWLEDGED: i8 = 2;
/// Rejected or out of deliveries: complete.
pub const ARCHIVED: i8 = 4;

/// A run of offsets in one delivery state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateBatch {
    /// First offset.
    pub first: i64,
    /// Last offset (inclusive).
    pub last: i64,
    /// [`AVAILABLE`], [`ACKNOWLEDGED`] or [`ARCHIVED`].
    pub state: i8,
    /// Deliveries so far.
    pub deliveries: i16,
}

/// A share-partition's persisted state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Bumped by every write (Kafka's snapshot epoch).
    pub snapshot_epoch: i32,
    /// Bumped when the state is reset (AlterShareGroupOffsets): writes of an older state epoch
    /// are fenced.
    pub state_epoch: i32,
    /// The partition's leader epoch at the write.
    pub leader_epoch: i32,
    /// The share-partition start offset (-1: not initialized).
    pub start_offset: i64,
    /// Offsets at or after the start that are complete, or -1 when unknown.
    pub delivery_complete_count: i32,
    /// When the state was first written.
    pub create_timestamp: i64,
    /// When it was written last.
    pub write_timestamp: i64,
    /// The in-flight records from the start offset on.
    pub batches: Vec<StateBatch>,
}

/// The key of `key`'s state.
pub fn encode_key((group, topic, partition): &Key) -> Bytes {
    let mut b = BytesMut::with_capacity(2 + 2 + group.len() + 16 + 4);
    b.put_i16(SNAPSHOT);
    b.put_i16(group.len().min(i16::MAX as usize) as i16);
    b.put_slice(&group.as_bytes()[..group.len().min(i16::MAX as usize)]);
    b.put_slice(topic.as_bytes());
    b.put_i32(*partition);
    b.freeze()
}

fn put_uvarint(b: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        b.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    b.put_u8(v as u8);
}

fn get_uvarint(b: &mut &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for shift in (0..35).step_by(7) {
        if !b.has_remaining() {
            return None;
        }
        let byte = b.get_u8();
        v |= u32::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The value (`ShareSnapshotValue` v0) of a snapshot.
pub fn encode_value(s: &Snapshot) -> Bytes {
    let mut b = BytesMut::with_capacity(48 + s.batches.len() * 20);
    b.put_i16(0);
    b.put_i32(s.snapshot_epoch);
    b.put_i32(s.state_epoch);
    b.put_i32(s.leader_epoch);
    b.put_i64(s.start_offset);
    b.put_i64(s.create_timestamp);
    b.put_i64(s.write_timestamp);
    put_uvarint(&mut b, s.batches.len() as u32 + 1);
    for batch in &s.batches {
        b.put_i64(batch.first);
        b.put_i64(batch.last);
        b.put_i8(batch.state);
        b.put_i16(batch.deliveries);
        b.put_u8(0);
    }
    // Tagged fields: DeliveryCompleteCount (tag 0) unless it is the default, -1.
    if s.delivery_complete_count == -1 {
        b.put_u8(0);
    } else {
        b.put_u8(1);
        b.put_u8(0);
        b.put_u8(4);
        b.put_i32(s.delivery_complete_count);
    }
    b.freeze()
}

/// Decodes a record of `__share_group_state`: the key and its snapshot (`None`: deleted).
/// Records of other types (Kafka's `ShareUpdate` deltas, which Gregor does not write) are
/// `None`.
pub fn decode(key: Option<&Bytes>, value: Option<&Bytes>) -> Option<(Key, Option<Snapshot>)> {
    let mut k: &[u8] = key?;
    if k.remaining() < 4 || k.get_i16() != SNAPSHOT {
        return None;
    }
    let len = k.get_i16();
    if len < 0 || k.remaining() < len as usize + 20 {
        return None;
    }
    let group = String::from_utf8(k[..len as usize].to_vec()).ok()?;
    k.advance(len as usize);
    let topic = Uuid::from_slice(&k[..16]).ok()?;
    k.advance(16);
    let partition = k.get_i32();
    let key = (group, topic, partition);
    let Some(v) = value else {
        return Some((key, None));
    };
    let mut v: &[u8] = v;
    if v.remaining() < 2 + 12 + 24 || v.get_i16() != 0 {
        return None;
    }
    let (snapshot_epoch, state_epoch, leader_epoch) = (v.get_i32(), v.get_i32(), v.get_i32());
    let start_offset = v.get_i64();
    let (create_timestamp, write_timestamp) = (v.get_i64(), v.get_i64());
    let n = get_uvarint(&mut v)?.checked_sub(1)? as usize;
    let mut batches = Vec::with_capacity(n.min(v.remaining() / 20));
    for _ in 0..n {
        if v.remaining() < 20 {
            return None;
        }
        batches.push(StateBatch {
            first: v.get_i64(),
            last: v.get_i64(),
            state: v.get_i8(),
            deliveries: v.get_i16(),
        });
        skip_tagged(&mut v)?;
    }
    let mut delivery_complete_count = -1;
    let tags = get_uvarint(&mut v)?;
    for _ in 0..tags {
        let (tag, size) = (get_uvarint(&mut v)?, get_uvarint(&mut v)? as usize);
        if v.remaining() < size {
            return None;
        }
        if tag == 0 && size == 4 {
            delivery_complete_count = (&v[..4]).get_i32();
        }
        v.advance(size);
    }
    Some((
        key,
        Some(Snapshot {
            snapshot_epoch,
            state_epoch,
            leader_epoch,
            start_offset,
            delivery_complete_count,
            create_timestamp,
            write_timestamp,
            batches,
        }),
    ))
}

fn skip_tagged(v: &mut &[u8]) -> Option<()> {
    for _ in 0..get_uvarint(v)? {
        get_uvarint(v)?;
        let size = get_uvarint(v)? as usize;
        if v.remaining() < size {
            return None;
        }
        v.advance(size);
    }
    Some(())
}

/// The `__share_group_state` partition of `key`: Kafka hashes `group:topicId:partition`.
pub fn partition_for((group, topic, partition): &Key, partitions: i32) -> i32 {
    let coordinator_key = format!("{group}:{}:{partition}", base64_uuid(topic));
    crate::group::offsets_log::partition_for(&coordinator_key, partitions)
}

/// A topic id as Kafka prints it (`Uuid.toString`): URL-safe base64 without padding.
fn base64_uuid(id: &Uuid) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = id.as_bytes();
    let mut out = String::with_capacity(22);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_round_trip_in_kafkas_layout() {
        let key = ("g".to_string(), Uuid::from_u128(7), 3);
        let s = Snapshot {
            snapshot_epoch: 2,
            state_epoch: 1,
            leader_epoch: 5,
            start_offset: 10,
            delivery_complete_count: 4,
            create_timestamp: 1,
            write_timestamp: 2,
            batches: vec![
                StateBatch {
                    first: 10,
                    last: 12,
                    state: AVAILABLE,
                    deliveries: 2,
                },
                StateBatch {
                    first: 13,
                    last: 13,
                    state: ACKNOWLEDGED,
                    deliveries: 1,
                },
            ],
        };
        let (k, v) = (encode_key(&key), encode_value(&s));
        // Record type 0, then a non-flexible string, the uuid and the partition.
        assert_eq!(&k[..5], &[0, 0, 0, 1, b'g']);
        assert_eq!(k.len(), 2 + 3 + 16 + 4);
        // Version 0, three epochs, start offset, two timestamps, a compact array of two.
        assert_eq!(&v[..2], &[0, 0]);
        assert_eq!(v[2 + 12 + 24], 3);
        assert_eq!(decode(Some(&k), Some(&v)), Some((key.clone(), Some(s))));
        assert_eq!(decode(Some(&k), None), Some((key, None)));
        assert_eq!(decode(Some(&Bytes::from_static(&[0, 1, 0, 0])), None), None);
    }

    #[test]
    fn topic_ids_print_as_kafka_prints_them() {
        // Kafka's Uuid.toString of 0...01 (most significant bits 0, least 1).
        assert_eq!(base64_uuid(&Uuid::from_u128(1)), "AAAAAAAAAAAAAAAAAAAAAQ");
        assert_eq!(base64_uuid(&Uuid::nil()).len(), 22);
    }
}
