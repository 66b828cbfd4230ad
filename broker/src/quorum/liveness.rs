//! Which brokers are alive, from their heartbeats. Every broker heartbeats every voter, so
//! whichever voter becomes the active controller already knows who is alive; a voter that has
//! just started gives every broker one session of grace before calling it silent.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Last heartbeat per broker.
#[derive(Debug)]
pub struct Liveness {
    started: Instant,
    last: Mutex<BTreeMap<i32, Beat>>,
}

#[derive(Debug, Clone, Copy)]
enum Beat {
    At(Instant),
    /// Said it is shutting down: dead until it heartbeats again.
    Departed,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness::new(Instant::now())
    }
}

impl Liveness {
    /// An empty table whose grace period starts at `started`.
    pub fn new(started: Instant) -> Liveness {
        Liveness {
            started,
            last: Mutex::new(BTreeMap::new()),
        }
    }

    /// Records a heartbeat from `broker` at `at`.
    pub fn heard_from(&self, broker: i32, at: Instant) {
        let mut last = self.last.lock();
        let beat = match last.get(&broker) {
            Some(Beat::At(t)) => (*t).max(at),
            _ => at,
        };
        last.insert(broker, Beat::At(beat));
    }

    /// Marks `broker` as gone (it announced it is shutting down) until it heartbeats again.
    pub fn depart(&self, broker: i32) {
        self.last.lock().insert(broker, Beat::Departed);
    }

    /// Since when `broker` has been silent: its last heartbeat, or the table's start when it
    /// never heartbeat; `None` once it departed.
    pub fn silent_since(&self, broker: i32) -> Option<Instant> {
        match self.last.lock().get(&broker) {
            Some(Beat::At(t)) => Some(*t),
            Some(Beat::Departed) => None,
            None => Some(self.started),
        }
    }

    /// Marks `broker` as gone unless it heartbeat after `since`, so a broker that came back
    /// while it was being probed stays alive. Returns whether it was marked.
    pub fn depart_if_silent_since(&self, broker: i32, since: Instant) -> bool {
        let mut last = self.last.lock();
        let silent = match last.get(&broker) {
            Some(Beat::At(t)) => *t <= since,
            Some(Beat::Departed) => false,
            None => self.started <= since,
        };
        if silent {
            last.insert(broker, Beat::Departed);
        }
        silent
    }

    /// When `broker` last heartbeat, in ms since the Unix epoch (`None`: not since this table
    /// started, or it departed).
    pub fn last_heard_ms(&self, broker: i32) -> Option<i64> {
        match self.last.lock().get(&broker) {
            Some(Beat::At(t)) => Some(crate::cluster::now_ms() - t.elapsed().as_millis() as i64),
            _ => None,
        }
    }

    /// Whether `broker` heartbeat within `session` before `now`; one it never heard from counts
    /// as alive while this table is younger than a session.
    pub fn is_alive(&self, broker: i32, session: Duration, now: Instant) -> bool {
        let reference = match self.last.lock().get(&broker) {
            Some(Beat::At(t)) => *t,
            Some(Beat::Departed) => return false,
            None => self.started,
        };
        now.saturating_duration_since(reference) <= session
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_keep_a_broker_alive_for_one_session() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let l = Liveness::new(t0);
        let session = Duration::from_millis(50);
        assert!(l.is_alive(1, session, at(40)), "grace period after start");
        assert!(
            !l.is_alive(2, session, at(60)),
            "never heard of, grace over"
        );
        l.heard_from(1, at(30));
        assert!(l.is_alive(1, session, at(70)));
        assert!(!l.is_alive(1, session, at(90)), "silent past the session");
        l.heard_from(1, at(100));
        l.heard_from(1, at(95));
        assert!(l.is_alive(1, session, at(140)), "an older beat never wins");
        l.depart(1);
        assert!(!l.is_alive(1, session, at(100)), "departed");
        l.heard_from(1, at(101));
        assert!(l.is_alive(1, session, at(110)), "back");
    }

    #[test]
    fn a_probe_departs_only_a_broker_still_silent_since_it_was_sent() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let l = Liveness::new(t0);
        let session = Duration::from_secs(60);
        assert_eq!(
            l.silent_since(7),
            Some(t0),
            "never heard: silent since the start"
        );
        l.heard_from(1, at(10));
        let probed_at = l.silent_since(1).unwrap();
        l.heard_from(1, at(20));
        assert!(
            !l.depart_if_silent_since(1, probed_at),
            "it heartbeat while the probe ran"
        );
        assert!(l.is_alive(1, session, at(30)));
        assert!(l.depart_if_silent_since(1, at(20)));
        assert!(
            !l.is_alive(1, session, at(30)),
            "departed despite a long session"
        );
        assert_eq!(l.silent_since(1), None);
        assert!(!l.depart_if_silent_since(1, at(40)), "already departed");
        assert!(l.depart_if_silent_since(7, t0), "never heard from");
    }
}
