//! Idempotent-producer state of one partition: per producer id, its epoch and its last five
//! batches (clients keep up to five in flight). A produce request is checked against it before
//! anything is written: a resent batch is recognised as a duplicate and answered with its
//! original offsets, a gap in sequences is rejected. The state is rebuilt on open from the batch
//! headers in the log.

use std::collections::{HashMap, VecDeque};

use super::batch::{add_sequence, BatchHeader};
use super::LogError;

/// Batches remembered per producer.
const REMEMBERED_BATCHES: usize = 5;

/// Where one idempotent batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchMeta {
    /// Sequence of the first record.
    pub first_seq: i32,
    /// Sequence of the last record.
    pub last_seq: i32,
    /// Offset of the first record.
    pub base_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
}

/// What the log knows of one producer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProducerEntry {
    /// The producer's current epoch.
    pub epoch: i16,
    /// Its newest batches, oldest first.
    pub batches: VecDeque<BatchMeta>,
    /// The largest timestamp of its newest batch.
    pub last_timestamp: i64,
}

/// The verdict on one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SequenceCheck {
    /// Write it.
    Accept,
    /// Already in the log at these offsets.
    Duplicate(BatchMeta),
}

/// All producers of a partition.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProducerStates {
    /// By producer id.
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerStates {
    /// Checks an idempotent batch (the caller skips others) against the producer's state.
    pub fn check(&self, header: &BatchHeader) -> Result<SequenceCheck, LogError> {
        let producer_id = header.producer_id;
        let Some(entry) = self.producers.get(&producer_id) else {
            return Ok(SequenceCheck::Accept);
        };
        let got = header.base_sequence;
        if header.producer_epoch < entry.epoch {
            return Err(LogError::InvalidProducerEpoch {
                producer_id,
                current: entry.epoch,
                got: header.producer_epoch,
            });
        }
        if header.producer_epoch > entry.epoch {
            return if got == 0 {
                Ok(SequenceCheck::Accept)
            } else {
                Err(LogError::OutOfOrderSequence {
                    producer_id,
                    expected: 0,
                    got,
                })
            };
        }
        let last_seq = header.last_sequence();
        if let Some(meta) = entry
            .batches
            .iter()
            .find(|m| m.first_seq == got && m.last_seq == last_seq)
        {
            return Ok(SequenceCheck::Duplicate(*meta));
        }
        match entry.batches.back() {
            // Known at this epoch with no batch: a marker of a newer epoch came last (with
            // `transaction.version` 2 every transaction ends so), and the epoch starts at 0.
            None if got == 0 => Ok(SequenceCheck::Accept),
            None => Err(LogError::OutOfOrderSequence {
                producer_id,
                expected: 0,
                got,
            }),
            Some(newest) if add_sequence(newest.last_seq, 1) == got => Ok(SequenceCheck::Accept),
            Some(newest) => Err(LogError::OutOfOrderSequence {
                producer_id,
                expected: add_sequence(newest.last_seq, 1),
                got,
            }),
        }
    }

    /// Records a batch that is now in the log (stamped with its offsets). Batches without a
    /// producer id are ignored; a newer epoch resets the producer's history.
    pub fn record(&mut self, header: &BatchHeader) {
        if header.producer_id < 0 {
            return;
        }
        let entry = self.producers.entry(header.producer_id).or_default();
        if header.producer_epoch != entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        entry.last_timestamp = header.max_timestamp;
        if header.base_sequence < 0 {
            return;
        }
        if entry.batches.len() == REMEMBERED_BATCHES {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchMeta {
            first_seq: header.base_sequence,
            last_seq: header.last_sequence(),
            base_offset: header.base_offset,
            last_offset: header.last_offset(),
        });
    }

    /// The epoch the log last saw from `producer_id`.
    pub fn epoch_of(&self, producer_id: i64) -> Option<i16> {
        self.producers.get(&producer_id).map(|e| e.epoch)
    }

    /// Every producer known here, by id.
    pub fn iter(&self) -> impl Iterator<Item = (i64, &ProducerEntry)> {
        self.producers.iter().map(|(&id, e)| (id, e))
    }

    /// A copy of the state of just these producers, to stage a request's batches on.
    pub fn subset(&self, producer_ids: impl Iterator<Item = i64>) -> ProducerStates {
        let mut staged = ProducerStates::default();
        for id in producer_ids.filter(|&id| id >= 0) {
            if let Some(entry) = self.producers.get(&id) {
                staged.producers.insert(id, entry.clone());
            }
        }
        staged
    }

    /// Adopts the state of every producer in `staged` (a committed [`Self::subset`]).
    pub fn merge(&mut self, staged: ProducerStates) {
        self.producers.extend(staged.producers);
    }

    /// Forgets batches at or past `offset` (the log was truncated there); a producer left
    /// with none is forgotten, so its next sequence is accepted as it comes.
    pub fn truncate(&mut self, offset: i64) {
        self.producers.retain(|_, entry| {
            entry.batches.retain(|m| m.last_offset < offset);
            !entry.batches.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(producer_id: i64, epoch: i16, base_seq: i32, count: i32, base: i64) -> BatchHeader {
        BatchHeader {
            base_offset: base,
            batch_length: 49,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id,
            producer_epoch: epoch,
            base_sequence: base_seq,
            records_count: count,
        }
    }

    #[test]
    fn an_unknown_producer_is_accepted_at_any_sequence() {
        let state = ProducerStates::default();
        assert_eq!(
            state.check(&header(7, 0, 42, 1, 0)).expect("accepted"),
            SequenceCheck::Accept
        );
    }

    #[test]
    fn the_next_sequence_is_accepted_and_a_gap_rejected() {
        let mut state = ProducerStates::default();
        state.record(&header(7, 0, 0, 3, 0));
        assert_eq!(
            state.check(&header(7, 0, 3, 1, 3)).expect("next"),
            SequenceCheck::Accept
        );
        assert!(matches!(
            state.check(&header(7, 0, 5, 1, 3)),
            Err(LogError::OutOfOrderSequence {
                expected: 3,
                got: 5,
                ..
            })
        ));
    }

    #[test]
    fn one_of_the_last_five_batches_is_a_duplicate_but_an_older_one_is_not() {
        let mut state = ProducerStates::default();
        for i in 0..6 {
            state.record(&header(7, 0, i * 2, 2, 100 + i64::from(i) * 2));
        }
        let dup = state.check(&header(7, 0, 2, 2, 0)).expect("duplicate");
        assert_eq!(
            dup,
            SequenceCheck::Duplicate(BatchMeta {
                first_seq: 2,
                last_seq: 3,
                base_offset: 102,
                last_offset: 103
            })
        );
        assert!(state.check(&header(7, 0, 0, 2, 0)).is_err());
    }

    #[test]
    fn epochs_fence_older_and_reset_on_newer() {
        let mut state = ProducerStates::default();
        state.record(&header(7, 3, 10, 1, 0));
        assert!(matches!(
            state.check(&header(7, 2, 11, 1, 1)),
            Err(LogError::InvalidProducerEpoch {
                current: 3,
                got: 2,
                ..
            })
        ));
        assert!(state.check(&header(7, 4, 5, 1, 1)).is_err());
        assert_eq!(
            state.check(&header(7, 4, 0, 1, 1)).expect("new epoch"),
            SequenceCheck::Accept
        );
    }

    #[test]
    fn after_a_marker_of_a_newer_epoch_the_epoch_starts_at_sequence_zero() {
        let mut state = ProducerStates::default();
        state.record(&header(7, 3, 0, 5, 0));
        // The marker ending the transaction under the next epoch (transaction.version 2).
        state.record(&header(7, 4, -1, 1, 5));
        assert!(
            matches!(
                state.check(&header(7, 4, 3, 1, 6)),
                Err(LogError::OutOfOrderSequence {
                    expected: 0,
                    got: 3,
                    ..
                })
            ),
            "a later batch must not land before the epoch's first"
        );
        assert_eq!(
            state
                .check(&header(7, 4, 0, 1, 6))
                .expect("first of the epoch"),
            SequenceCheck::Accept
        );
    }

    #[test]
    fn sequences_wrap_past_max() {
        let mut state = ProducerStates::default();
        state.record(&header(7, 0, i32::MAX - 1, 2, 0));
        assert_eq!(
            state.check(&header(7, 0, 0, 1, 2)).expect("wrapped"),
            SequenceCheck::Accept
        );
    }

    #[test]
    fn truncation_forgets_batches_past_the_cut() {
        let mut state = ProducerStates::default();
        state.record(&header(7, 0, 0, 2, 0));
        state.record(&header(7, 0, 2, 2, 2));
        state.truncate(2);
        assert_eq!(
            state.check(&header(7, 0, 2, 2, 2)).expect("resend"),
            SequenceCheck::Accept
        );
    }
}
