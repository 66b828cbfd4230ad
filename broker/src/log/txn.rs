//! Transactions as one partition's log sees them: which producers have a transaction open
//! (their first offset holds back the last stable offset), and which transactions were
//! aborted, for read_committed fetches to filter out.
//!
//! Aborted transactions are also kept on disk as Kafka does, in a `.txnindex` file beside the
//! segment holding each abort marker: entries of 34 bytes (version 0, producer id, first
//! offset, last offset, last stable offset), big-endian.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use super::batch::BatchHeader;
use super::control::Marker;
use super::index::io_err;
use super::LogError;

/// Bytes of one `.txnindex` entry.
const ENTRY_LEN: usize = 34;

/// An aborted transaction of one producer in this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    /// The producer.
    pub producer_id: i64,
    /// Offset of its first record in the transaction.
    pub first_offset: i64,
    /// Offset of the abort marker.
    pub last_offset: i64,
    /// The last stable offset once the marker was written.
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    /// The entry as stored in a `.txnindex` file.
    fn to_bytes(self) -> [u8; ENTRY_LEN] {
        let mut b = [0u8; ENTRY_LEN];
        b[2..10].copy_from_slice(&self.producer_id.to_be_bytes());
        b[10..18].copy_from_slice(&self.first_offset.to_be_bytes());
        b[18..26].copy_from_slice(&self.last_offset.to_be_bytes());
        b[26..34].copy_from_slice(&self.last_stable_offset.to_be_bytes());
        b
    }

    /// An entry read back; `None` for an unknown version.
    fn from_bytes(b: &[u8]) -> Option<AbortedTxn> {
        let version = i16::from_be_bytes([*b.first()?, *b.get(1)?]);
        let long = |at: usize| b.get(at..at + 8)?.try_into().ok().map(i64::from_be_bytes);
        (version == 0).then_some(())?;
        Some(AbortedTxn {
            producer_id: long(2)?,
            first_offset: long(10)?,
            last_offset: long(18)?,
            last_stable_offset: long(26)?,
        })
    }
}

/// Reads a `.txnindex` file; a missing file is empty and a torn last entry is ignored.
pub(crate) fn read_index(path: &Path) -> Result<Vec<AbortedTxn>, LogError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(path)(e)),
    };
    Ok(bytes
        .chunks_exact(ENTRY_LEN)
        .filter_map(AbortedTxn::from_bytes)
        .collect())
}

/// Appends one entry to a `.txnindex` file, creating it.
pub(crate) fn append_index(path: &Path, entry: AbortedTxn) -> Result<(), LogError> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err(path))?;
    file.write_all(&entry.to_bytes()).map_err(io_err(path))
}

/// Replaces a `.txnindex` file with `entries` (removing it when there are none).
pub(crate) fn write_index(path: &Path, entries: &[AbortedTxn]) -> Result<(), LogError> {
    if entries.is_empty() {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(path)(e)),
            _ => Ok(()),
        };
    }
    let bytes: Vec<u8> = entries.iter().flat_map(|e| e.to_bytes()).collect();
    std::fs::write(path, bytes).map_err(io_err(path))
}

/// Open and aborted transactions of a partition.
#[derive(Debug, Clone)]
pub(crate) struct Transactions {
    /// Producers with a transaction open, and the offset of its first record.
    ongoing: BTreeMap<i64, i64>,
    /// Aborted transactions in marker order.
    aborted: Vec<AbortedTxn>,
    /// The last offset of the newest transactional batch or marker seen (-1: none).
    last_txn_offset: i64,
}

/// What a batch did to the partition's transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxnEvent {
    /// Nothing of note (not transactional, or more records of an open transaction).
    None,
    /// A marker closed the producer's transaction that started at `first_offset`.
    Ended {
        /// The producer.
        producer_id: i64,
        /// Its transaction's first offset (the marker's own offset when none was open).
        first_offset: i64,
        /// The marker's offset.
        marker_offset: i64,
    },
}

impl Default for Transactions {
    fn default() -> Self {
        Transactions {
            ongoing: BTreeMap::new(),
            aborted: Vec::new(),
            last_txn_offset: -1,
        }
    }
}

impl Transactions {
    /// Follows a batch appended to the log: a transactional data batch opens its producer's
    /// transaction (if not open); a control batch closes it. The caller records an abort with
    /// [`Self::record_abort`] once it knows the marker's kind.
    pub fn observe(&mut self, header: &BatchHeader) -> TxnEvent {
        if !header.is_transactional() {
            return TxnEvent::None;
        }
        self.last_txn_offset = self.last_txn_offset.max(header.last_offset());
        if header.is_control() {
            let first_offset = self
                .ongoing
                .remove(&header.producer_id)
                .unwrap_or(header.base_offset);
            return TxnEvent::Ended {
                producer_id: header.producer_id,
                first_offset,
                marker_offset: header.base_offset,
            };
        }
        self.ongoing
            .entry(header.producer_id)
            .or_insert(header.base_offset);
        TxnEvent::None
    }

    /// Remembers an aborted transaction (its marker follows every one recorded so far).
    pub fn record_abort(&mut self, entry: AbortedTxn) {
        self.aborted.push(entry);
    }

    /// Adopts aborted transactions read from a `.txnindex` file, kept in marker order.
    pub fn adopt_aborted(&mut self, entries: Vec<AbortedTxn>) {
        self.aborted.extend(entries);
        self.aborted.sort_by_key(|e| e.last_offset);
        self.aborted.dedup();
    }

    /// The first offset of the oldest open transaction: nothing from here on is stable.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing.values().min().copied()
    }

    /// Whether the producer has a transaction open here.
    pub fn is_open(&self, producer_id: i64) -> bool {
        self.ongoing.contains_key(&producer_id)
    }

    /// Producers with a transaction open, and where each started.
    pub fn open_transactions(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.ongoing.iter().map(|(&p, &o)| (p, o))
    }

    /// Aborted transactions a read of offsets `from..to` can meet: their marker is at or
    /// after `from` and their first record before `to`.
    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        let start = self.aborted.partition_point(|e| e.last_offset < from);
        self.aborted[start..]
            .iter()
            .filter(|e| e.first_offset < to)
            .copied()
            .collect()
    }

    /// Forgets aborted transactions whose marker is before `offset` (segments deleted).
    pub fn drop_before(&mut self, offset: i64) {
        self.aborted.retain(|e| e.last_offset >= offset);
    }

    /// Whether a truncation to `end` can have removed a transactional batch or marker, so the
    /// state must be rebuilt from the log.
    pub fn touches_from(&self, end: i64) -> bool {
        self.last_txn_offset >= end
    }
}

/// The aborted-transaction entry for a marker that just closed a transaction, or `None` for
/// a commit or no event. `first_unstable` is the oldest transaction still open after it.
pub(crate) fn abort_entry(
    event: TxnEvent,
    marker: Option<Marker>,
    first_unstable: Option<i64>,
) -> Option<AbortedTxn> {
    match (event, marker) {
        (
            TxnEvent::Ended {
                producer_id,
                first_offset,
                marker_offset,
            },
            Some(Marker::Abort),
        ) => Some(AbortedTxn {
            producer_id,
            first_offset,
            last_offset: marker_offset,
            last_stable_offset: first_unstable
                .map_or(marker_offset + 1, |o| o.min(marker_offset + 1)),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(producer_id: i64, base: i64, attributes: i16) -> BatchHeader {
        BatchHeader {
            base_offset: base,
            batch_length: 49,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes,
            last_offset_delta: 0,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id,
            producer_epoch: 0,
            base_sequence: 0,
            records_count: 1,
        }
    }

    const TXN: i16 = 0x10;
    const CONTROL: i16 = 0x30;

    #[test]
    fn an_open_transaction_holds_back_stability_until_its_marker() {
        let mut t = Transactions::default();
        assert_eq!(t.observe(&header(7, 3, TXN)), TxnEvent::None);
        assert_eq!(t.observe(&header(8, 5, TXN)), TxnEvent::None);
        t.observe(&header(7, 6, TXN));
        assert_eq!(t.first_unstable_offset(), Some(3));
        let ended = t.observe(&header(7, 9, CONTROL));
        assert_eq!(
            ended,
            TxnEvent::Ended {
                producer_id: 7,
                first_offset: 3,
                marker_offset: 9
            }
        );
        assert_eq!(t.first_unstable_offset(), Some(5));
        assert_eq!(t.observe(&header(9, 10, 0)), TxnEvent::None);
        assert!(!t.is_open(9));
    }

    #[test]
    fn aborted_transactions_are_found_by_the_range_a_fetch_reads() {
        let mut t = Transactions::default();
        for (first, last) in [(0, 4), (10, 12), (20, 30)] {
            t.record_abort(AbortedTxn {
                producer_id: first,
                first_offset: first,
                last_offset: last,
                last_stable_offset: last + 1,
            });
        }
        let firsts = |v: Vec<AbortedTxn>| v.iter().map(|e| e.first_offset).collect::<Vec<_>>();
        assert_eq!(firsts(t.aborted_between(5, 21)), [10, 20]);
        assert_eq!(firsts(t.aborted_between(4, 10)), [0]);
        assert_eq!(firsts(t.aborted_between(31, 40)), Vec::<i64>::new());
        t.drop_before(10);
        assert_eq!(firsts(t.aborted_between(0, 100)), [10, 20]);
    }

    #[test]
    fn the_index_file_round_trips_and_ignores_a_torn_entry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("00000000000000000000.txnindex");
        assert!(read_index(&path).expect("missing is empty").is_empty());
        let a = AbortedTxn {
            producer_id: 1000,
            first_offset: 5,
            last_offset: 9,
            last_stable_offset: 10,
        };
        let b = AbortedTxn {
            producer_id: 1001,
            first_offset: 7,
            last_offset: 12,
            last_stable_offset: 13,
        };
        append_index(&path, a).expect("append");
        append_index(&path, b).expect("append");
        let mut bytes = std::fs::read(&path).expect("read");
        assert_eq!(bytes.len(), 2 * ENTRY_LEN);
        assert_eq!(&bytes[..2], &[0, 0], "version 0");
        assert_eq!(&bytes[2..10], &1000i64.to_be_bytes());
        bytes.extend_from_slice(&[0, 0, 1]);
        std::fs::write(&path, &bytes).expect("write");
        assert_eq!(read_index(&path).expect("read"), [a, b]);
        write_index(&path, &[b]).expect("rewrite");
        assert_eq!(read_index(&path).expect("read"), [b]);
        write_index(&path, &[]).expect("remove");
        assert!(!path.exists());
    }
}
