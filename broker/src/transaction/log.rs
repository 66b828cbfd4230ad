//! Records of `__transaction_state` in Apache Kafka's own format, so the topic reads the same to
//! Kafka tooling: the key is the transactional id, the value Kafka's `TransactionLogValue`, and
//! a null value is the tombstone of an expired transactional id.
//!
//! Keys are version 0 (Kafka 4 calls the same leading `0` the coordinator record type). Values
//! are written at version 1, the first flexible version, as Kafka writes them once
//! `transaction.version` is 1 or more: compact strings and arrays, and the previous and next
//! producer id and the client's transaction version as tagged fields, each left out while it
//! holds its default. Version 0 (fixed-width lengths, no tagged fields) is read too. Other tags
//! are skipped, as Kafka skips tags it does not know; among them is Kafka 4.x's
//! `NextProducerEpoch` (tag 3, int16, default -1), which Gregor neither keeps nor writes.
//! Anything else (another key or value version, an unknown state, a cut field) decodes to
//! `None`.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::protocol::fields::{clip, put_compact_len, put_uvarint, Reader};

/// Key version, the same `0` as Kafka 4's coordinator record type of this log.
const KEY_VERSION: i16 = 0;
/// Value version written: the first flexible one.
const VALUE_VERSION: i16 = 1;
/// Tag of `PreviousProducerId` (int64, default -1).
const TAG_PREVIOUS_PRODUCER_ID: u32 = 0;
/// Tag of `NextProducerId` (int64, default -1).
const TAG_NEXT_PRODUCER_ID: u32 = 1;
/// Tag of `ClientTransactionVersion` (int16, default 0).
const TAG_CLIENT_TRANSACTION_VERSION: u32 = 2;

/// The state of a transaction, numbered and named as Kafka's `TransactionState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnState {
    /// No transaction in progress: none yet, or the last one completed.
    Empty,
    /// Partitions have been added; the producer is writing.
    Ongoing,
    /// A commit was requested; commit markers are being written.
    PrepareCommit,
    /// An abort was requested (or the transaction timed out); abort markers are being written.
    PrepareAbort,
    /// Commit markers are written everywhere.
    CompleteCommit,
    /// Abort markers are written everywhere.
    CompleteAbort,
    /// The transactional id expired and is being removed.
    Dead,
    /// The epoch is being bumped to fence an old producer before its transaction is aborted.
    PrepareEpochFence,
}

impl TxnState {
    /// Every state, in id order.
    pub const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];

    /// The state's id in `TransactionStatus` of the log value.
    pub fn id(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    /// The state with this id; `None` for an id Kafka does not define.
    pub fn from_id(id: i8) -> Option<TxnState> {
        TxnState::ALL.get(usize::try_from(id).ok()?).copied()
    }

    /// The name DescribeTransactions and ListTransactions report (and ListTransactions filters
    /// by), as Kafka spells it.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }
}

/// The state of one transactional id, as its `__transaction_state` value holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnLogValue {
    /// Producer id the transactional id currently uses.
    pub producer_id: i64,
    /// Producer id of the last committed transaction, or -1 (tagged; version 1 only).
    pub previous_producer_id: i64,
    /// Producer id handed out for the next transaction when the epoch ran out, or -1 (tagged;
    /// version 1 only).
    pub next_producer_id: i64,
    /// Epoch of `producer_id`.
    pub producer_epoch: i16,
    /// Transaction timeout the producer asked for (ms).
    pub timeout_ms: i32,
    /// Where the transaction stands.
    pub state: TxnState,
    /// Partitions in the transaction, by topic. Always empty in state `Empty`, for which Kafka
    /// writes a null array and ignores what it reads.
    pub partitions: Vec<(String, Vec<i32>)>,
    /// When the state last changed (ms).
    pub last_update_ms: i64,
    /// When the transaction started (ms), or -1.
    pub start_ms: i64,
    /// The transaction protocol version (`transaction.version` level) the client uses, 0 for
    /// clients before KIP-890 (tagged; version 1 only).
    pub client_transaction_version: i16,
}

/// The `__transaction_state` partition of a transactional id: `abs(hash(id)) % partitions` with
/// Java's `String.hashCode`, as Kafka, which places consumer groups the same way.
pub fn partition_for(transactional_id: &str, partitions: i32) -> i32 {
    crate::group::offsets_log::partition_for(transactional_id, partitions)
}

/// Encodes the key of a transactional id.
pub fn encode_key(transactional_id: &str) -> Bytes {
    let id = clip(transactional_id);
    let mut b = BytesMut::with_capacity(4 + id.len());
    b.put_i16(KEY_VERSION);
    b.put_i16(id.len() as i16);
    b.put_slice(id.as_bytes());
    b.freeze()
}

/// Encodes a value at version 1, byte for byte as Kafka writes it. In state `Empty` the
/// partitions are written as a null array, whatever `v.partitions` holds, as Kafka writes them.
pub fn encode_value(v: &TxnLogValue) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(VALUE_VERSION);
    b.put_i64(v.producer_id);
    b.put_i16(v.producer_epoch);
    b.put_i32(v.timeout_ms);
    b.put_i8(v.state.id());
    if v.state == TxnState::Empty {
        put_uvarint(&mut b, 0);
    } else {
        put_compact_len(&mut b, v.partitions.len());
        for (topic, ids) in &v.partitions {
            let topic = clip(topic);
            put_compact_len(&mut b, topic.len());
            b.put_slice(topic.as_bytes());
            put_compact_len(&mut b, ids.len());
            for &id in ids {
                b.put_i32(id);
            }
            // The topic entry's own (empty) tagged fields.
            put_uvarint(&mut b, 0);
        }
    }
    b.put_i64(v.last_update_ms);
    b.put_i64(v.start_ms);
    put_tagged_fields(&mut b, v);
    b.freeze()
}

/// Writes the value's tagged fields that differ from their defaults, in tag order.
fn put_tagged_fields(b: &mut BytesMut, v: &TxnLogValue) {
    let previous = (v.previous_producer_id != -1).then_some(v.previous_producer_id);
    let next = (v.next_producer_id != -1).then_some(v.next_producer_id);
    let client = (v.client_transaction_version != 0).then_some(v.client_transaction_version);
    let count = [previous.is_some(), next.is_some(), client.is_some()]
        .into_iter()
        .map(u32::from)
        .sum();
    put_uvarint(b, count);
    for (tag, long) in [
        (TAG_PREVIOUS_PRODUCER_ID, previous),
        (TAG_NEXT_PRODUCER_ID, next),
    ] {
        if let Some(long) = long {
            put_uvarint(b, tag);
            put_uvarint(b, 8);
            b.put_i64(long);
        }
    }
    if let Some(client) = client {
        put_uvarint(b, TAG_CLIENT_TRANSACTION_VERSION);
        put_uvarint(b, 2);
        b.put_i16(client);
    }
}

/// Decodes a record: the transactional id and its value, `None` for a tombstone. `None` overall
/// for a missing key or anything unrecognised.
pub fn decode(key: Option<&Bytes>, value: Option<&Bytes>) -> Option<(String, Option<TxnLogValue>)> {
    let mut k = Reader::new(key?.clone());
    if k.i16()? != KEY_VERSION {
        return None;
    }
    let id = k.string()?;
    match value {
        None => Some((id, None)),
        Some(v) => Some((id, Some(decode_value(v)?))),
    }
}

/// Decodes a value of version 0 or 1.
fn decode_value(bytes: &Bytes) -> Option<TxnLogValue> {
    let mut r = Reader::new(bytes.clone());
    let version = r.i16()?;
    if !(0..=VALUE_VERSION).contains(&version) {
        return None;
    }
    r.flexible = version >= 1;
    let producer_id = r.i64()?;
    let producer_epoch = r.i16()?;
    let timeout_ms = r.i32()?;
    let state = TxnState::from_id(r.i8()?)?;
    let partitions = read_partitions(&mut r)?;
    let mut v = TxnLogValue {
        producer_id,
        previous_producer_id: -1,
        next_producer_id: -1,
        producer_epoch,
        timeout_ms,
        state,
        // Kafka ignores the partitions of an empty transaction.
        partitions: if state == TxnState::Empty {
            Vec::new()
        } else {
            partitions
        },
        last_update_ms: r.i64()?,
        start_ms: r.i64()?,
        client_transaction_version: 0,
    };
    if r.flexible {
        r.tagged_fields(|tag, mut data| {
            match (tag, data.len()) {
                (TAG_PREVIOUS_PRODUCER_ID, 8) => v.previous_producer_id = data.get_i64(),
                (TAG_NEXT_PRODUCER_ID, 8) => v.next_producer_id = data.get_i64(),
                (TAG_CLIENT_TRANSACTION_VERSION, 2) => {
                    v.client_transaction_version = data.get_i16()
                }
                // A kept tag of the wrong size is corrupt; any other is skipped, as by Kafka.
                (
                    TAG_PREVIOUS_PRODUCER_ID
                    | TAG_NEXT_PRODUCER_ID
                    | TAG_CLIENT_TRANSACTION_VERSION,
                    _,
                ) => return None,
                _ => {}
            }
            Some(())
        })?;
    }
    Some(v)
}

/// `TransactionPartitions`: a nullable array (null reads as empty) of topics, each with a
/// non-null array of partition ids.
fn read_partitions(r: &mut Reader) -> Option<Vec<(String, Vec<i32>)>> {
    let Some(topics) = r.array_len()? else {
        return Some(Vec::new());
    };
    // Counts come off the wire: nothing is allocated for more entries than the bytes hold.
    let mut out = Vec::new();
    for _ in 0..topics {
        let topic = r.string()?;
        let ids = r.i32s()?;
        if r.flexible {
            r.skip_tags()?;
        }
        out.push((topic, ids));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes from a hex string (whitespace ignored).
    fn hex(s: &str) -> Bytes {
        let digits: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
        digits
            .chunks(2)
            .map(|pair| {
                u8::from_str_radix(std::str::from_utf8(pair).expect("ascii"), 16).expect("hex")
            })
            .collect::<Vec<u8>>()
            .into()
    }

    /// An ongoing transaction over two partitions of `t`, with a previous producer id and
    /// client transaction version 2.
    fn ongoing() -> TxnLogValue {
        TxnLogValue {
            producer_id: 1000,
            previous_producer_id: 999,
            next_producer_id: -1,
            producer_epoch: 5,
            timeout_ms: 60_000,
            state: TxnState::Ongoing,
            partitions: vec![("t".into(), vec![0, 2])],
            last_update_ms: 1_700_000_000_123,
            start_ms: 1_700_000_000_000,
            client_transaction_version: 2,
        }
    }

    #[test]
    fn states_carry_kafkas_ids_and_names() {
        let named: Vec<(i8, &str)> = TxnState::ALL.iter().map(|s| (s.id(), s.name())).collect();
        assert_eq!(
            named,
            [
                (0, "Empty"),
                (1, "Ongoing"),
                (2, "PrepareCommit"),
                (3, "PrepareAbort"),
                (4, "CompleteCommit"),
                (5, "CompleteAbort"),
                (6, "Dead"),
                (7, "PrepareEpochFence"),
            ]
        );
        for state in TxnState::ALL {
            assert_eq!(TxnState::from_id(state.id()), Some(state));
        }
        assert_eq!(TxnState::from_id(8), None);
        assert_eq!(TxnState::from_id(-1), None);
    }

    #[test]
    fn values_round_trip_in_every_state() {
        for state in TxnState::ALL {
            let mut v = ongoing();
            v.state = state;
            v.next_producer_id = 1001;
            if state == TxnState::Empty {
                v.partitions.clear();
            } else {
                v.partitions.push(("other-topic".into(), Vec::new()));
            }
            let key = encode_key("my-txn");
            let got = decode(Some(&key), Some(&encode_value(&v)));
            assert_eq!(got, Some(("my-txn".to_string(), Some(v))), "{state:?}");
        }
    }

    #[test]
    fn a_null_value_is_a_tombstone() {
        let key = encode_key("gone");
        assert_eq!(decode(Some(&key), None), Some(("gone".to_string(), None)));
        assert_eq!(decode(None, Some(&encode_value(&ongoing()))), None);
    }

    #[test]
    fn the_key_is_version_0_then_the_id_as_kafka_writes_it() {
        // From Kafka 4.3.1: MessageUtil.toCoordinatorTypePrefixedBytes(TransactionLogKey "my-txn").
        assert_eq!(encode_key("my-txn"), hex("0000 0006 6d792d74786e"));
    }

    #[test]
    fn values_match_the_bytes_kafka_writes() {
        // Laid out by hand from TransactionLogValue.json (version 1), and identical to what
        // Kafka 4.3.1's MessageUtil.toVersionPrefixedBytes(1, value) returns.
        let kafka: &[u8] = &[
            0x00, 0x01, // version 1
            0, 0, 0, 0, 0, 0, 0x03, 0xe8, // ProducerId 1000
            0x00, 0x05, // ProducerEpoch 5
            0x00, 0x00, 0xea, 0x60, // TransactionTimeoutMs 60000
            0x01, // TransactionStatus Ongoing
            0x02, // TransactionPartitions: compact length 1 + 1
            0x02, b't', // Topic "t"
            0x03, 0, 0, 0, 0, 0, 0, 0, 2,    // PartitionIds [0, 2]
            0x00, // the topic's tagged fields: none
            0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x7b, // LastUpdate 1_700_000_000_123
            0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00, // Start 1_700_000_000_000
            0x02, // two tagged fields
            0x00, 0x08, 0, 0, 0, 0, 0, 0, 0x03, 0xe7, // tag 0 PreviousProducerId 999
            0x02, 0x02, 0x00, 0x02, // tag 2 ClientTransactionVersion 2
        ];
        assert_eq!(encode_value(&ongoing()), Bytes::from_static(kafka));
        let key = encode_key("my-txn");
        assert_eq!(
            decode(Some(&key), Some(&Bytes::from_static(kafka))),
            Some(("my-txn".to_string(), Some(ongoing())))
        );

        // Every tagged field set, two topics (Kafka 4.3.1 again).
        let all_tags = TxnLogValue {
            producer_id: 42,
            previous_producer_id: 7,
            next_producer_id: 8,
            producer_epoch: i16::MAX,
            timeout_ms: 1,
            state: TxnState::PrepareCommit,
            partitions: vec![("a".into(), vec![1]), ("bb".into(), vec![3, 4])],
            last_update_ms: 5,
            start_ms: -1,
            client_transaction_version: 2,
        };
        let kafka = hex("0001 000000000000002a 7fff 00000001 02
             03 0261 0200000001 00 036262 030000000300000004 00
             0000000000000005 ffffffffffffffff
             04 0008 0000000000000007 0108 0000000000000008 0202 0002 0302 0000");
        // Kafka 4.3.1 also set NextProducerEpoch 0 here (tag 3): read past, not kept.
        assert_eq!(decode_value(&kafka), Some(all_tags.clone()));
        let kafka = hex("0001 000000000000002a 7fff 00000001 02
             03 0261 0200000001 00 036262 030000000300000004 00
             0000000000000005 ffffffffffffffff
             03 0008 0000000000000007 0108 0000000000000008 0202 0002");
        assert_eq!(encode_value(&all_tags), kafka);
        assert_eq!(decode_value(&kafka), Some(all_tags));
    }

    #[test]
    fn an_empty_transaction_writes_null_partitions() {
        let empty = TxnLogValue {
            previous_producer_id: -1,
            client_transaction_version: 0,
            state: TxnState::Empty,
            partitions: Vec::new(),
            start_ms: -1,
            ..ongoing()
        };
        // Kafka 4.3.1, version 1: null array (0), no tagged fields (0).
        let kafka = hex("0001 00000000000003e8 0005 0000ea60 00 00
             0000018bcfe5687b ffffffffffffffff 00");
        assert_eq!(encode_value(&empty), kafka);
        assert_eq!(decode_value(&kafka), Some(empty.clone()));

        // Kafka 4.3.1, version 0: null array (-1), tagged fields read as their defaults.
        let v0 = hex("0000 00000000000003e8 0005 0000ea60 00 ffffffff
             0000018bcfe5687b ffffffffffffffff");
        assert_eq!(decode_value(&v0), Some(empty));
    }

    #[test]
    fn version_0_values_with_partitions_decode() {
        // By hand from TransactionLogValue.json at version 0: fixed-width lengths, no tags.
        let v0 = hex("0000 00000000000003e8 0005 0000ea60 01
             00000001 0001 74 00000002 00000000 00000002
             0000018bcfe5687b 0000018bcfe56800");
        let expected = TxnLogValue {
            previous_producer_id: -1,
            client_transaction_version: 0,
            ..ongoing()
        };
        assert_eq!(decode_value(&v0), Some(expected));
    }

    #[test]
    fn unknown_tagged_fields_are_skipped() {
        let mut bytes = encode_value(&ongoing()).to_vec();
        // Two tagged fields become three: tag 9 with three bytes goes last.
        let at = bytes.len() - 15;
        assert_eq!(bytes[at], 0x02);
        bytes[at] = 0x03;
        bytes.extend_from_slice(&[0x09, 0x03, 1, 2, 3]);
        assert_eq!(decode_value(&Bytes::from(bytes)), Some(ongoing()));
    }

    #[test]
    fn cut_or_unknown_records_decode_to_none() {
        let key = encode_key("my-txn");
        let value = encode_value(&ongoing());
        for n in 0..key.len() {
            assert_eq!(decode(Some(&key.slice(..n)), None), None, "key cut at {n}");
        }
        for n in 0..value.len() {
            assert_eq!(
                decode(Some(&key), Some(&value.slice(..n))),
                None,
                "value cut at {n}"
            );
        }
        // Another key version (e.g. a group record), another value version, an unknown state.
        let other_key = hex("0001 0006 6d792d74786e");
        assert_eq!(decode(Some(&other_key), None), None);
        let mut v2 = value.to_vec();
        v2[1] = 2;
        assert_eq!(decode(Some(&key), Some(&Bytes::from(v2))), None);
        let mut bad_state = value.to_vec();
        bad_state[16] = 8;
        assert_eq!(decode(Some(&key), Some(&Bytes::from(bad_state))), None);
        // A known tag of the wrong size, a varint that never ends, and plain garbage.
        let mut bad_tag = value.to_vec();
        let at = bad_tag.len() - 3;
        assert_eq!(bad_tag[at - 1..at + 1], [0x02, 0x02]);
        bad_tag[at] = 0x01;
        assert_eq!(decode_value(&Bytes::from(bad_tag)), None);
        let endless = hex("0001 0000000000000001 0000 00000000 01 ffffffffffff");
        assert_eq!(decode_value(&endless), None);
        assert_eq!(decode(Some(&Bytes::from_static(b"\xff\xff")), None), None);
        assert_eq!(decode(Some(&key), Some(&Bytes::from_static(b"\x00"))), None);
    }

    #[test]
    fn ids_are_placed_as_java_string_hash_places_them() {
        // From Java 17: h = s.hashCode(); (h == MIN_VALUE ? 0 : Math.abs(h)) % n.
        assert_eq!(partition_for("my-txn", 50), 45); // hashCode -1061187895
        assert_eq!(partition_for("transactional-id-1", 50), 41); // hashCode 1051133891
        assert_eq!(partition_for("tx", 50), 16); // hashCode 3716
        assert_eq!(partition_for("polygenelubricants", 50), 0); // hashCode MIN_VALUE
        assert_eq!(partition_for("txn-\u{e9}\u{1f600}", 50), 17); // UTF-16 surrogates
        assert_eq!(partition_for("my-txn", 7), 5);
    }
}
