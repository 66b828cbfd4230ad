//! One share-partition (KIP-932): a share group's view of one topic partition on its leader.
//! Records between the share-partition start offset (SPSO) and the end offset (the next offset
//! not yet read from the log) are in flight: each is available, or acquired by one member
//! under a time lock; acknowledged and archived records leave the window. The SPSO is the
//! first offset still in flight, so it moves as soon as everything before it is done.
//!
//! Pure state: the caller reads the log and hands in the batches it read.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;

use super::state_log::{self, StateBatch};

/// Acknowledgement types as ShareFetch and ShareAcknowledge carry them.
pub const GAP: i8 = 0;
/// The record was processed.
pub const ACCEPT: i8 = 1;
/// The record goes back to be delivered again (to any member).
pub const RELEASE: i8 = 2;
/// The record could not be processed and must not be delivered again.
pub const REJECT: i8 = 3;
/// The member still works on the record: its acquisition lock starts again (KIP-1222; only in
/// requests of version 2 that say `IsRenewAck`).
pub const RENEW: i8 = 4;

/// Whether an acknowledgement may renew acquisition locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// The request may not carry RENEW (before version 2, or without `IsRenewAck`): a RENEW
    /// is INVALID_REQUEST.
    NotInRequest,
    /// The group's `share.renew.acknowledge.enable` is off: INVALID_RECORD_STATE.
    Disabled,
    /// A renewed lock runs until then.
    Until(Instant),
}

/// How records are acquired for a fetch (ShareFetch v2's `ShareAcquireMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcquireMode {
    /// Whole batches of new records, so a fetch may get more than it asked for.
    BatchOptimized,
    /// At most the number asked for: a batch is split, its records past the limit stay
    /// available for the next fetch.
    RecordLimit,
}

/// An in-flight record: available, or acquired by `member` until `until`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Lock {
    Available,
    Acquired { member: String, until: Instant },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct InFlight {
    lock: Lock,
    /// How many times the record has been acquired.
    deliveries: i16,
    /// The first and last offset of the in-flight batch the record came in: the records read
    /// for one fetch (cut at a log batch's end once it holds `BatchSize`), or a run of the
    /// persisted state. Throttled redelivery is reckoned by it, as Kafka's `InFlightBatch`.
    batch: (i64, i64),
}

/// What a fetch asks of [`SharePartition::acquire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetch {
    /// Whether new records (past the end) may be acquired.
    pub read_new: bool,
    /// How many records to acquire (a whole batch may exceed it in batch-optimized mode).
    pub max_records: usize,
    /// The client's preferred batch size (ShareFetch's `BatchSize`): in-flight batches are
    /// cut at the first log batch end past it.
    pub batch_size: usize,
    /// Batch-optimized or record-limit.
    pub mode: AcquireMode,
}

/// A batch the log returned: its offsets, and whether its records are never delivered (a
/// control batch, or, under `share.isolation.level=read_committed`, a batch of an aborted
/// transaction: read past and complete at once, as Kafka archives them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadBatch {
    /// First offset.
    pub base: i64,
    /// Last offset.
    pub last: i64,
    /// Never delivered.
    pub skip: bool,
}

/// Records acquired in one fetch: consecutive offsets with one delivery count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acquired {
    /// First offset.
    pub first: i64,
    /// Last offset (inclusive).
    pub last: i64,
    /// The delivery count of these records, this delivery included.
    pub deliveries: i16,
}

/// The limits a share group puts on its partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long an acquired record stays locked to its member.
    pub lock_duration: Duration,
    /// A record is archived once delivered this many times without being accepted.
    pub delivery_count_limit: i16,
    /// At most this many records in flight.
    pub max_in_flight: i64,
}

/// The in-flight state of one share-partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharePartition {
    /// The state epoch of the persisted state this was read from (its writes carry it).
    pub state_epoch: i32,
    /// The share-partition end: the next offset to read from the log.
    end: i64,
    /// Records in flight that are still to be completed, by offset; an offset in
    /// `[start, end)` that is not here was acknowledged, archived or never a record.
    records: BTreeMap<i64, InFlight>,
}

impl SharePartition {
    /// A share-partition starting (and reading) at `offset`.
    pub fn starting_at(offset: i64) -> SharePartition {
        SharePartition {
            state_epoch: 0,
            end: offset,
            records: BTreeMap::new(),
        }
    }

    /// The share-partition a persisted state describes: records in available batches are
    /// in flight with their delivery counts, the rest of the batches are complete.
    pub fn from_state(state_epoch: i32, start: i64, batches: &[StateBatch]) -> SharePartition {
        let mut sp = SharePartition::starting_at(start);
        sp.state_epoch = state_epoch;
        for b in batches.iter().filter(|b| b.last >= start) {
            sp.end = sp.end.max(b.last + 1);
            if b.state == state_log::AVAILABLE {
                for o in b.first.max(start)..=b.last {
                    sp.records.insert(
                        o,
                        InFlight {
                            lock: Lock::Available,
                            deliveries: b.deliveries,
                            batch: (b.first.max(start), b.last),
                        },
                    );
                }
            }
        }
        sp
    }

    /// The state to persist: the start offset and, from it to the end, runs of in-flight
    /// records (available, with their delivery counts: an acquired record is persisted as
    /// available) and of complete ones.
    pub fn state(&self) -> (i64, Vec<StateBatch>) {
        let start = self.start_offset();
        let mut batches: Vec<StateBatch> = Vec::new();
        for o in start..self.end {
            let (state, deliveries) = match self.records.get(&o) {
                Some(r) => (state_log::AVAILABLE, r.deliveries),
                None => (state_log::ACKNOWLEDGED, 1),
            };
            match batches.last_mut() {
                Some(b) if b.state == state && b.deliveries == deliveries => b.last = o,
                _ => batches.push(StateBatch {
                    first: o,
                    last: o,
                    state,
                    deliveries,
                }),
            }
        }
        (start, batches)
    }

    /// The share-partition start offset: the first record not yet completed.
    pub fn start_offset(&self) -> i64 {
        self.records.keys().next().copied().unwrap_or(self.end)
    }

    /// The next offset to read from the log.
    pub fn end_offset(&self) -> i64 {
        self.end
    }

    /// Records in flight (from the start offset to the end).
    pub fn in_flight(&self) -> i64 {
        self.end - self.start_offset()
    }

    /// Drops what the log no longer holds: records before `log_start` are gone.
    pub fn clamp_to_log_start(&mut self, log_start: i64) {
        self.records = self.records.split_off(&log_start);
        self.end = self.end.max(log_start);
    }

    /// Makes records whose lock expired by `now` available again, or archives them once
    /// delivered `limit` times. Returns how many changed.
    pub fn expire_locks(&mut self, now: Instant, limit: i16) -> usize {
        let expired: Vec<i64> = self
            .records
            .iter()
            .filter(|(_, r)| matches!(&r.lock, Lock::Acquired { until, .. } if *until <= now))
            .map(|(&o, _)| o)
            .collect();
        for o in &expired {
            self.make_available(*o, limit);
        }
        expired.len()
    }

    fn make_available(&mut self, offset: i64, limit: i16) {
        if let Some(r) = self.records.get_mut(&offset) {
            if r.deliveries >= limit {
                self.records.remove(&offset);
            } else {
                r.lock = Lock::Available;
            }
        }
    }

    /// Up to `max` offsets available for delivery, in order.
    pub fn available(&self, max: usize) -> Vec<i64> {
        self.records
            .iter()
            .filter(|(_, r)| r.lock == Lock::Available)
            .map(|(&o, _)| o)
            .take(max)
            .collect()
    }

    /// Up to `max` available offsets to deliver again, in order, throttled as Kafka 4.3
    /// throttles records that keep coming back (KIP-932's poison-record handling,
    /// KAFKA-17541): an in-flight batch with an available record delivered at least
    /// max(2, ⌈limit/2⌉) times is served alone in a fetch of its own (true: no new records
    /// with it), at most N >> (d − that + 1) of its records (N its size, d the record's
    /// delivery count, at least one), and a record on its last delivery (d = limit − 1, limit
    /// above 2) alone.
    pub fn redeliverable(&self, max: usize, limit: i16) -> (Vec<i64>, bool) {
        let throttle = 2.max((limit + 1) / 2);
        let last_try = |d: i16| limit > 2 && d == limit - 1;
        let available: Vec<(i64, &InFlight)> = self
            .records
            .iter()
            .filter(|(_, r)| r.lock == Lock::Available)
            .map(|(&o, r)| (o, r))
            .collect();
        let mut out = Vec::new();
        let mut at = 0;
        while at < available.len() && out.len() < max {
            let batch = available[at].1.batch;
            let end = available[at..]
                .iter()
                .position(|(_, r)| r.batch != batch)
                .map_or(available.len(), |n| at + n);
            let run = &available[at..end];
            if run.iter().all(|(_, r)| r.deliveries < throttle) {
                out.extend(run.iter().map(|(o, _)| *o).take(max - out.len()));
                at = end;
                continue;
            }
            if !out.is_empty() {
                // The throttled batch goes alone, in the next fetch.
                return (out, true);
            }
            let size = batch.1 - batch.0 + 1;
            let mut cap = max;
            let mut capped = false;
            for (o, r) in run {
                if last_try(r.deliveries) {
                    if out.is_empty() {
                        out.push(*o);
                    }
                    break;
                }
                if r.deliveries >= throttle && !capped {
                    capped = true;
                    let shift = (r.deliveries - throttle + 1) as u32;
                    cap = cap.min(size.checked_shr(shift).unwrap_or(0).max(1) as usize);
                }
                out.push(*o);
                if out.len() >= cap {
                    break;
                }
            }
            return (out, true);
        }
        (out, false)
    }

    /// The last offset of the in-flight batch `offset` is in, if it is in flight.
    pub fn batch_end(&self, offset: i64) -> Option<i64> {
        self.records.get(&offset).map(|r| r.batch.1)
    }

    /// Whether new records may be read from the log: fewer than `max_records` are being
    /// redelivered and the in-flight window has room.
    pub fn may_read_new(&self, redelivering: usize, max_records: usize, limits: &Limits) -> bool {
        redelivering < max_records && self.in_flight() < limits.max_in_flight
    }

    /// Acquires for `member`, until `now` plus the lock duration, the `redeliver` offsets (from
    /// [`SharePartition::available`]) found in `batches`, and, when `read_new`, the records of
    /// the batches at or past the end, batch by batch until `max_records` are acquired in all
    /// (in [`AcquireMode::RecordLimit`], record by record up to exactly `max_records`).
    /// Returns the acquired ranges and the number of batches that carry them (the rest of
    /// what was read can be left out of the answer).
    pub fn acquire(
        &mut self,
        member: &str,
        redeliver: &[i64],
        batches: &[ReadBatch],
        fetch: Fetch,
        now: Instant,
        limits: &Limits,
    ) -> (Vec<Acquired>, usize) {
        let until = now + limits.lock_duration;
        let lock = || Lock::Acquired {
            member: member.to_string(),
            until,
        };
        let mut taken: Vec<(i64, i16)> = Vec::new();
        let mut used = 0;
        let Fetch {
            read_new,
            max_records,
            batch_size,
            mode,
        } = fetch;
        // The in-flight batches the new records form: (first, last) each.
        let mut formed: Vec<(i64, i64)> = Vec::new();
        for (i, b) in batches.iter().enumerate() {
            let before = taken.len();
            for &o in redeliver.iter().filter(|&&o| o >= b.base && o <= b.last) {
                if let Some(r) = self.records.get_mut(&o) {
                    r.deliveries += 1;
                    r.lock = lock();
                    taken.push((o, r.deliveries));
                }
            }
            let new_from = b.base.max(self.end);
            if read_new && b.last >= self.end && taken.len() < max_records {
                match formed.last_mut() {
                    Some(f)
                        if mode == AcquireMode::BatchOptimized
                            && f.1 - f.0 + 1 < batch_size as i64 =>
                    {
                        f.1 = b.last
                    }
                    _ => formed.push((new_from, b.last)),
                }
                if !b.skip {
                    for o in new_from..=b.last {
                        // Past the limit in record_limit mode the rest of the batch is in
                        // flight but not yet delivered.
                        let take = mode == AcquireMode::BatchOptimized || taken.len() < max_records;
                        self.records.insert(
                            o,
                            InFlight {
                                lock: if take { lock() } else { Lock::Available },
                                deliveries: i16::from(take),
                                batch: (new_from, b.last),
                            },
                        );
                        if take {
                            taken.push((o, 1));
                        }
                    }
                }
                self.end = b.last + 1;
            }
            if taken.len() > before {
                used = i + 1;
            }
        }
        // Each new record belongs to the in-flight batch that covers it.
        for &(first, last) in &formed {
            for (_, r) in self.records.range_mut(first..=last) {
                r.batch = (first, last);
            }
        }
        taken.sort_unstable();
        let mut ranges: Vec<Acquired> = Vec::new();
        for (o, d) in taken {
            match ranges.last_mut() {
                Some(r) if r.last + 1 == o && r.deliveries == d => r.last = o,
                _ => ranges.push(Acquired {
                    first: o,
                    last: o,
                    deliveries: d,
                }),
            }
        }
        (ranges, used)
    }

    /// Applies `member`'s acknowledgement of `first..=last`: one type for the whole range, or
    /// one per offset. Every offset must be acquired by `member` (a gap, which has no record,
    /// may also be already complete), else nothing changes and the answer is
    /// INVALID_RECORD_STATE, as Kafka answers a late or foreign acknowledgement. A RENEW
    /// keeps the record acquired, its lock running again from now, as `renewal` allows.
    pub fn acknowledge(
        &mut self,
        member: &str,
        (first, last): (i64, i64),
        types: &[i8],
        (limit, renewal): (i16, Renewal),
    ) -> Result<(), ResponseError> {
        let count = last.checked_sub(first).map(|d| d + 1).unwrap_or(0);
        let highest = if renewal == Renewal::NotInRequest {
            REJECT
        } else {
            RENEW
        };
        if count <= 0
            || types.is_empty()
            || (types.len() != 1 && types.len() as i64 != count)
            || types.iter().any(|t| !(GAP..=highest).contains(t))
        {
            return Err(ResponseError::InvalidRequest);
        }
        if renewal == Renewal::Disabled && types.contains(&RENEW) {
            return Err(ResponseError::InvalidRecordState);
        }
        let kind = |o: i64| {
            if types.len() == 1 {
                types[0]
            } else {
                types[(o - first) as usize]
            }
        };
        for o in first..=last {
            let held = matches!(self.records.get(&o),
                Some(InFlight { lock: Lock::Acquired { member: m, .. }, .. }) if m == member);
            let settled_gap = kind(o) == GAP && o < self.end && !self.records.contains_key(&o);
            if !held && !settled_gap {
                return Err(ResponseError::InvalidRecordState);
            }
        }
        for o in first..=last {
            match kind(o) {
                RELEASE => self.make_available(o, limit),
                RENEW => {
                    if let (Some(r), Renewal::Until(until)) = (self.records.get_mut(&o), renewal) {
                        r.lock = Lock::Acquired {
                            member: member.to_string(),
                            until,
                        };
                    }
                }
                _ => {
                    self.records.remove(&o);
                }
            }
        }
        Ok(())
    }

    /// Releases every record `member` holds (its share session closed or its connection
    /// dropped): they become available again at once, and the delivery counts, as in Kafka.
    pub fn release_member(&mut self, member: &str, limit: i16) -> usize {
        let held: Vec<i64> = self
            .records
            .iter()
            .filter(|(_, r)| matches!(&r.lock, Lock::Acquired { member: m, .. } if m == member))
            .map(|(&o, _)| o)
            .collect();
        for &o in &held {
            self.make_available(o, limit);
        }
        held.len()
    }

    /// Records up to `high_watermark` not yet delivered for good (KIP-1226's lag): those past
    /// the end, and those in flight still to be completed.
    pub fn lag(&self, high_watermark: i64) -> i64 {
        (high_watermark - self.end).max(0) + self.records.len() as i64
    }

    /// Whether any record is acquired by a member now.
    pub fn has_acquired(&self) -> bool {
        self.records
            .values()
            .any(|r| matches!(r.lock, Lock::Acquired { .. }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetch(read_new: bool, max_records: usize) -> Fetch {
        Fetch {
            read_new,
            max_records,
            batch_size: max_records,
            mode: AcquireMode::BatchOptimized,
        }
    }
    const NO_RENEW: (i16, Renewal) = (3, Renewal::NotInRequest);

    fn limits_with(delivery_count_limit: i16) -> Limits {
        Limits {
            delivery_count_limit,
            ..limits()
        }
    }

    fn limits() -> Limits {
        Limits {
            lock_duration: Duration::from_secs(30),
            delivery_count_limit: 3,
            max_in_flight: 100,
        }
    }

    fn batch(base: i64, last: i64) -> ReadBatch {
        ReadBatch {
            base,
            last,
            skip: false,
        }
    }

    #[test]
    fn new_records_are_acquired_batch_by_batch_and_accepting_moves_the_start() {
        let mut sp = SharePartition::starting_at(0);
        let now = Instant::now();
        let (got, used) = sp.acquire(
            "a",
            &[],
            &[batch(0, 4), batch(5, 9), batch(10, 14)],
            fetch(true, 6),
            now,
            &limits(),
        );
        // Six records asked for: two whole batches.
        assert_eq!(
            got,
            [Acquired {
                first: 0,
                last: 9,
                deliveries: 1
            }]
        );
        assert_eq!(used, 2);
        assert_eq!(sp.end_offset(), 10);
        assert_eq!(sp.start_offset(), 0);
        sp.acknowledge("a", (0, 4), &[ACCEPT], NO_RENEW).unwrap();
        assert_eq!(sp.start_offset(), 5);
        // Another member cannot acknowledge what "a" holds; nothing changes.
        assert_eq!(
            sp.acknowledge("b", (5, 5), &[ACCEPT], NO_RENEW),
            Err(ResponseError::InvalidRecordState)
        );
        assert_eq!(sp.start_offset(), 5);
    }

    #[test]
    fn released_and_expired_records_are_redelivered_until_the_limit_then_archived() {
        let mut sp = SharePartition::starting_at(0);
        let t0 = Instant::now();
        sp.acquire("a", &[], &[batch(0, 1)], fetch(true, 10), t0, &limits());
        sp.acknowledge("a", (0, 1), &[RELEASE, ACCEPT], NO_RENEW)
            .unwrap();
        assert_eq!(sp.available(10), [0]);
        let (got, _) = sp.acquire("b", &[0], &[batch(0, 1)], fetch(false, 10), t0, &limits());
        assert_eq!(
            got,
            [Acquired {
                first: 0,
                last: 0,
                deliveries: 2
            }]
        );
        // The lock runs out: back to available, then a third delivery, then archived.
        let later = t0 + Duration::from_secs(31);
        assert_eq!(sp.expire_locks(later, 3), 1);
        let (got, _) = sp.acquire(
            "c",
            &[0],
            &[batch(0, 1)],
            fetch(false, 10),
            later,
            &limits(),
        );
        assert_eq!(got[0].deliveries, 3);
        assert_eq!(sp.expire_locks(later + Duration::from_secs(31), 3), 1);
        assert!(sp.available(10).is_empty());
        assert_eq!(sp.start_offset(), 2);
    }

    #[test]
    fn rejected_records_never_return_and_a_closed_session_gives_records_back_at_once() {
        let mut sp = SharePartition::starting_at(10);
        let now = Instant::now();
        sp.acquire("a", &[], &[batch(10, 13)], fetch(true, 10), now, &limits());
        sp.acknowledge("a", (10, 11), &[REJECT], NO_RENEW).unwrap();
        assert_eq!(sp.release_member("a", 3), 2);
        assert_eq!(sp.available(10), [12, 13]);
        let (got, _) = sp.acquire(
            "b",
            &[12, 13],
            &[batch(10, 13)],
            fetch(false, 10),
            now,
            &limits(),
        );
        // The delivery to the member whose session closed counts.
        assert_eq!(
            got,
            [Acquired {
                first: 12,
                last: 13,
                deliveries: 2
            }]
        );
    }

    #[test]
    fn control_batches_and_gaps_are_not_delivered_and_bad_acknowledgements_are_refused() {
        let mut sp = SharePartition::starting_at(0);
        let now = Instant::now();
        let control = ReadBatch {
            base: 2,
            last: 2,
            skip: true,
        };
        let (got, _) = sp.acquire(
            "a",
            &[],
            &[batch(0, 1), control],
            fetch(true, 10),
            now,
            &limits(),
        );
        assert_eq!(got.len(), 1);
        assert_eq!(sp.end_offset(), 3);
        assert_eq!(
            sp.acknowledge("a", (0, 1), &[ACCEPT, ACCEPT, ACCEPT], NO_RENEW),
            Err(ResponseError::InvalidRequest)
        );
        assert_eq!(
            sp.acknowledge("a", (0, 1), &[7], NO_RENEW),
            Err(ResponseError::InvalidRequest)
        );
        sp.acknowledge("a", (0, 2), &[ACCEPT, ACCEPT, GAP], NO_RENEW)
            .unwrap();
        assert_eq!(sp.start_offset(), 3);
        sp.clamp_to_log_start(8);
        assert_eq!((sp.start_offset(), sp.end_offset()), (8, 8));
    }

    #[test]
    fn record_limit_splits_a_batch_and_the_rest_waits_undelivered() {
        let mut sp = SharePartition::starting_at(0);
        let now = Instant::now();
        let limited = Fetch {
            mode: AcquireMode::RecordLimit,
            ..fetch(true, 3)
        };
        let (got, used) = sp.acquire(
            "a",
            &[],
            &[batch(0, 4), batch(5, 9)],
            limited,
            now,
            &limits(),
        );
        assert_eq!(
            got,
            [Acquired {
                first: 0,
                last: 2,
                deliveries: 1
            }]
        );
        assert_eq!((used, sp.end_offset()), (1, 5));
        // 3 and 4 were read but not delivered: next, and as first deliveries.
        assert_eq!(sp.available(10), [3, 4]);
        let (got, _) = sp.acquire("b", &[3, 4], &[batch(0, 4)], limited, now, &limits());
        assert_eq!(
            got,
            [Acquired {
                first: 3,
                last: 4,
                deliveries: 1
            }]
        );
        let (start, batches) = sp.state();
        assert_eq!((start, batches.len()), (0, 1));
    }

    #[test]
    fn renew_restarts_the_lock_of_held_records_only_where_allowed() {
        let mut sp = SharePartition::starting_at(0);
        let t0 = Instant::now();
        sp.acquire("a", &[], &[batch(0, 3)], fetch(true, 10), t0, &limits());
        let later = t0 + Duration::from_secs(20);
        let renew = (3, Renewal::Until(later + limits().lock_duration));
        // A RENEW is a bad request where the request may not carry it, refused where the
        // group disabled it, and only for records the member holds.
        assert_eq!(
            sp.acknowledge("a", (0, 1), &[RENEW], NO_RENEW),
            Err(ResponseError::InvalidRequest)
        );
        assert_eq!(
            sp.acknowledge("a", (0, 1), &[RENEW], (3, Renewal::Disabled)),
            Err(ResponseError::InvalidRecordState)
        );
        assert_eq!(
            sp.acknowledge("b", (0, 1), &[RENEW], renew),
            Err(ResponseError::InvalidRecordState)
        );
        sp.acknowledge("a", (0, 1), &[RENEW], renew).unwrap();
        // 31 s after the fetch the renewed records are still held, the others expired.
        assert_eq!(sp.expire_locks(t0 + Duration::from_secs(31), 3), 2);
        assert_eq!(sp.available(10), [2, 3]);
        sp.acknowledge("a", (0, 1), &[ACCEPT, RENEW], renew)
            .unwrap();
        assert_eq!(sp.start_offset(), 1);
        assert!(sp.has_acquired());
    }

    /// Delivers what `redeliverable` offers (each of `batches` one record) to "a" and
    /// releases it: the offsets delivered, and whether new records were held back.
    fn redeliver_and_release(sp: &mut SharePartition, limits: &Limits) -> (Vec<i64>, bool) {
        let (offsets, throttled) = sp.redeliverable(500, limits.delivery_count_limit);
        let batches: Vec<ReadBatch> = offsets.iter().map(|&o| batch(o, o)).collect();
        let now = Instant::now();
        sp.acquire("a", &offsets, &batches, fetch(false, 500), now, limits);
        for &o in &offsets {
            let release = (limits.delivery_count_limit, Renewal::NotInRequest);
            sp.acknowledge("a", (o, o), &[RELEASE], release).unwrap();
        }
        (offsets, throttled)
    }

    #[test]
    fn records_that_keep_coming_back_are_throttled_then_delivered_alone() {
        // Kafka's default limit 5: throttled from the 4th delivery (max(2, ⌈5/2⌉) = 3 before
        // it), half of the in-flight batch at a time; the 5th and last delivery one by one.
        // Offsets are taken in order, so a record on its last delivery goes first.
        let limits = limits_with(5);
        let mut sp = SharePartition::starting_at(0);
        let singles: Vec<ReadBatch> = (0..20).map(|o| batch(o, o)).collect();
        let now = Instant::now();
        sp.acquire("a", &[], &singles, fetch(true, 500), now, &limits);
        sp.acknowledge("a", (0, 19), &[RELEASE], (5, Renewal::NotInRequest))
            .unwrap();
        for _ in 2..=3 {
            let (offsets, throttled) = redeliver_and_release(&mut sp, &limits);
            assert_eq!((offsets.len(), throttled), (20, false));
        }
        // The first half's 4th delivery; then each of those, at its 5th, alone; then the
        // second half's 4th delivery, and its 5th one by one.
        let mut sizes = Vec::new();
        loop {
            let (offsets, throttled) = redeliver_and_release(&mut sp, &limits);
            if offsets.is_empty() {
                break;
            }
            assert!(throttled);
            sizes.push(offsets.len());
        }
        let ones = [1; 10];
        assert_eq!(sizes, [&[10][..], &ones, &[10], &ones].concat());
        // Delivered five times: archived.
        assert_eq!(sp.redeliverable(500, 5), (vec![], false));
        assert_eq!(sp.start_offset(), 20);
    }

    #[test]
    fn a_throttled_batch_waits_for_a_fetch_of_its_own() {
        let limits = limits_with(10);
        let mut sp = SharePartition::starting_at(0);
        let now = Instant::now();
        // Two fetches: in-flight batches 0..=3 and 4..=7.
        sp.acquire("a", &[], &[batch(0, 3)], fetch(true, 4), now, &limits);
        sp.acquire("a", &[], &[batch(4, 7)], fetch(true, 4), now, &limits);
        sp.acknowledge("a", (4, 7), &[RELEASE], (10, Renewal::NotInRequest))
            .unwrap();
        // Offset 4 comes back until it has been delivered 5 times (the throttle for 10).
        for _ in 0..4 {
            sp.acquire("a", &[4], &[batch(4, 7)], fetch(false, 1), now, &limits);
            sp.acknowledge("a", (4, 4), &[RELEASE], (10, Renewal::NotInRequest))
                .unwrap();
        }
        sp.acknowledge("a", (0, 3), &[RELEASE], (10, Renewal::NotInRequest))
            .unwrap();
        // The first batch is served without the throttled one; then the throttled one alone,
        // 4 >> (5 - 5 + 1) = 2 of its records.
        assert_eq!(sp.redeliverable(500, 10), (vec![0, 1, 2, 3], true));
        sp.acquire(
            "a",
            &[0, 1, 2, 3],
            &[batch(0, 3)],
            fetch(false, 9),
            now,
            &limits,
        );
        assert_eq!(sp.redeliverable(500, 10), (vec![4, 5], true));
    }

    #[test]
    fn the_persisted_state_gives_back_the_same_share_partition() {
        let mut sp = SharePartition::starting_at(0);
        let now = Instant::now();
        sp.acquire("a", &[], &[batch(0, 5)], fetch(true, 10), now, &limits());
        sp.acknowledge(
            "a",
            (0, 5),
            &[ACCEPT, RELEASE, ACCEPT, REJECT, ACCEPT, ACCEPT],
            NO_RENEW,
        )
        .unwrap();
        let (start, batches) = sp.state();
        assert_eq!(start, 1);
        assert_eq!(batches.len(), 2);
        assert_eq!(
            (batches[0].first, batches[0].last, batches[0].state),
            (1, 1, 0)
        );
        assert_eq!(
            (batches[1].first, batches[1].last, batches[1].state),
            (2, 5, 2)
        );
        let back = SharePartition::from_state(4, start, &batches);
        assert_eq!(back.state_epoch, 4);
        assert_eq!(back.available(10), [1]);
        assert_eq!((back.start_offset(), back.end_offset()), (1, 6));
        assert_eq!(back.state(), (start, batches));
    }
}
