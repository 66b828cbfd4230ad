//! Records of `__consumer_offsets` in Apache Kafka's own format, so the topic reads the same to
//! Kafka tooling: offset-commit keys (version 1: group, topic, partition) with values
//! (version 3: offset, leader epoch, metadata, commit timestamp), and null values as tombstones.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Key of an offset commit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OffsetKey {
    /// Group id.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    /// Next offset to consume.
    pub offset: i64,
    /// Leader epoch of the last consumed record, or -1.
    pub leader_epoch: i32,
    /// Client metadata string.
    pub metadata: String,
    /// When it was committed (ms).
    pub commit_timestamp: i64,
}

/// A decoded `__consumer_offsets` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetsRecord {
    /// An offset commit, or its tombstone (`None`).
    Offset(OffsetKey, Option<OffsetValue>),
    /// Group metadata (key version 2); Gregor does not need its value.
    Group(String),
}

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_i16(s.len().min(i16::MAX as usize) as i16);
    b.put_slice(&s.as_bytes()[..s.len().min(i16::MAX as usize)]);
}

fn get_str(b: &mut Bytes) -> Option<String> {
    if b.remaining() < 2 {
        return None;
    }
    let n = b.get_i16();
    if n < 0 || b.remaining() < n as usize {
        return None;
    }
    String::from_utf8(b.split_to(n as usize).to_vec()).ok()
}

/// Encodes an offset-commit key.
pub fn encode_key(k: &OffsetKey) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(1);
    put_str(&mut b, &k.group);
    put_str(&mut b, &k.topic);
    b.put_i32(k.partition);
    b.freeze()
}

/// Encodes an offset-commit value (version 3).
pub fn encode_value(v: &OffsetValue) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(3);
    b.put_i64(v.offset);
    b.put_i32(v.leader_epoch);
    put_str(&mut b, &v.metadata);
    b.put_i64(v.commit_timestamp);
    b.freeze()
}

/// Decodes a record's key and value; `None` for anything unrecognised.
pub fn decode(key: Option<&Bytes>, value: Option<&Bytes>) -> Option<OffsetsRecord> {
    let mut k = key?.clone();
    if k.remaining() < 2 {
        return None;
    }
    match k.get_i16() {
        0 | 1 => {
            let group = get_str(&mut k)?;
            let topic = get_str(&mut k)?;
            if k.remaining() < 4 {
                return None;
            }
            let partition = k.get_i32();
            let key = OffsetKey {
                group,
                topic,
                partition,
            };
            let Some(v) = value else {
                return Some(OffsetsRecord::Offset(key, None));
            };
            let mut v = v.clone();
            if v.remaining() < 10 {
                return None;
            }
            let version = v.get_i16();
            let offset = v.get_i64();
            let leader_epoch = if version >= 3 {
                if v.remaining() < 4 {
                    return None;
                }
                v.get_i32()
            } else {
                -1
            };
            let metadata = get_str(&mut v)?;
            let commit_timestamp = if v.remaining() >= 8 { v.get_i64() } else { -1 };
            Some(OffsetsRecord::Offset(
                key,
                Some(OffsetValue {
                    offset,
                    leader_epoch,
                    metadata,
                    commit_timestamp,
                }),
            ))
        }
        2 => Some(OffsetsRecord::Group(get_str(&mut k)?)),
        _ => None,
    }
}

/// Java's `String.hashCode` (over UTF-16 code units), used to place a group on a partition.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// The `__consumer_offsets` partition of a group: `abs(hash(group)) % partitions`, as Kafka.
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let h = java_string_hash(group);
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_records_round_trip() {
        let k = OffsetKey {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
        };
        let v = OffsetValue {
            offset: 42,
            leader_epoch: 0,
            metadata: "m".into(),
            commit_timestamp: 7,
        };
        let got = decode(Some(&encode_key(&k)), Some(&encode_value(&v)));
        assert_eq!(got, Some(OffsetsRecord::Offset(k.clone(), Some(v))));
        assert_eq!(
            decode(Some(&encode_key(&k)), None),
            Some(OffsetsRecord::Offset(k, None))
        );
        assert_eq!(decode(Some(&Bytes::from_static(&[0, 9])), None), None);
        assert_eq!(decode(Some(&Bytes::from_static(&[0, 1, 0, 9])), None), None);
    }

    #[test]
    fn group_placement_matches_java_string_hash() {
        // Well-known values of String.hashCode() in Java.
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for("hello", 50), 99_162_322 % 50);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
    }
}
