//! In-sync replica bookkeeping for a partition leader, as pure functions of follower progress:
//! the high watermark is the smallest log end offset in the ISR and never moves back; a
//! follower that has not caught up with the leader's log end for `replica.lag.time.max.ms`
//! leaves the ISR; a follower that reaches the high watermark (and the current leader epoch's
//! start) rejoins it; acks=all needs `min.insync.replicas` members.

use std::collections::BTreeMap;

/// What the leader knows of one follower, updated on every follower Fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerProgress {
    /// The follower's log end offset (its fetch offset).
    pub log_end_offset: i64,
    /// The last time its fetch offset reached the leader's log end at that moment (ms).
    pub last_caught_up_ms: i64,
}

impl FollowerProgress {
    /// Applies a follower fetch at `fetch_offset`, made when the leader's log end was
    /// `leader_leo`, at `now_ms`.
    pub fn on_fetch(&mut self, fetch_offset: i64, leader_leo: i64, now_ms: i64) {
        self.log_end_offset = fetch_offset;
        if fetch_offset >= leader_leo {
            self.last_caught_up_ms = now_ms;
        }
    }
}

/// The high watermark: the minimum log end offset over the ISR (the leader's own log end
/// included), never below the current one.
pub fn high_watermark(
    current: i64,
    leader: i32,
    leader_leo: i64,
    isr: &[i32],
    followers: &BTreeMap<i32, FollowerProgress>,
) -> i64 {
    let min = isr
        .iter()
        .filter(|r| **r != leader)
        .map(|r| {
            followers
                .get(r)
                .map(|f| f.log_end_offset)
                .unwrap_or(i64::MIN)
        })
        .fold(leader_leo, i64::min);
    current.max(min)
}

/// ISR members (never the leader) whose last catch-up is older than `lag_max_ms`.
pub fn lagging_members(
    leader: i32,
    isr: &[i32],
    followers: &BTreeMap<i32, FollowerProgress>,
    now_ms: i64,
    lag_max_ms: i64,
) -> Vec<i32> {
    isr.iter()
        .copied()
        .filter(|r| *r != leader)
        .filter(|r| {
            followers
                .get(r)
                .is_none_or(|f| now_ms - f.last_caught_up_ms > lag_max_ms)
        })
        .collect()
}

/// Replicas outside the ISR that may rejoin it: caught up to the high watermark and past the
/// start of the current leader epoch (so they hold no divergent history).
pub fn rejoining_members(
    replicas: &[i32],
    isr: &[i32],
    followers: &BTreeMap<i32, FollowerProgress>,
    high_watermark: i64,
    leader_epoch_start: i64,
) -> Vec<i32> {
    replicas
        .iter()
        .copied()
        .filter(|r| !isr.contains(r))
        .filter(|r| {
            followers.get(r).is_some_and(|f| {
                f.log_end_offset >= high_watermark && f.log_end_offset >= leader_epoch_start
            })
        })
        .collect()
}

/// Whether an acks=all write may be accepted: the ISR has at least `min_insync` members.
pub fn enough_replicas(isr: &[i32], min_insync: i32) -> bool {
    isr.len() as i64 >= i64::from(min_insync)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(entries: &[(i32, i64, i64)]) -> BTreeMap<i32, FollowerProgress> {
        entries
            .iter()
            .map(|(id, leo, caught)| {
                (
                    *id,
                    FollowerProgress {
                        log_end_offset: *leo,
                        last_caught_up_ms: *caught,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn high_watermark_is_the_isr_minimum_and_never_moves_back() {
        let f = progress(&[(2, 80, 0), (3, 95, 0)]);
        assert_eq!(high_watermark(50, 1, 100, &[1, 2, 3], &f), 80);
        assert_eq!(high_watermark(90, 1, 100, &[1, 2, 3], &f), 90);
        assert_eq!(
            high_watermark(0, 1, 100, &[1, 3], &f),
            95,
            "2 is out of the ISR"
        );
        assert_eq!(high_watermark(0, 1, 100, &[1], &f), 100);
    }

    #[test]
    fn a_follower_silent_past_the_lag_limit_leaves_the_isr() {
        let f = progress(&[(2, 100, 1_000), (3, 100, 25_000)]);
        assert_eq!(lagging_members(1, &[1, 2, 3], &f, 32_000, 30_000), vec![2]);
        assert!(lagging_members(1, &[1, 2, 3], &f, 20_000, 30_000).is_empty());
        assert_eq!(
            lagging_members(1, &[1, 4], &f, 0, 30_000),
            vec![4],
            "no progress known"
        );
    }

    #[test]
    fn catching_up_marks_the_time_and_lets_a_replica_rejoin() {
        let mut p = FollowerProgress {
            log_end_offset: 0,
            last_caught_up_ms: 0,
        };
        p.on_fetch(50, 100, 10);
        assert_eq!(p.last_caught_up_ms, 0);
        p.on_fetch(100, 100, 20);
        assert_eq!(p.last_caught_up_ms, 20);
        let f: BTreeMap<i32, FollowerProgress> = [(2, p)].into_iter().collect();
        assert_eq!(rejoining_members(&[1, 2, 3], &[1], &f, 100, 0), vec![2]);
        assert!(rejoining_members(&[1, 2], &[1], &f, 120, 0).is_empty());
        assert!(
            rejoining_members(&[1, 2], &[1], &f, 90, 110).is_empty(),
            "before epoch start"
        );
    }

    #[test]
    fn acks_all_needs_min_insync_members() {
        assert!(enough_replicas(&[1, 2], 2));
        assert!(!enough_replicas(&[1], 2));
    }
}
