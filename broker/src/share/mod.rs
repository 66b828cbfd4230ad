//! Share groups (KIP-932): consumers that read partitions cooperatively, each record delivered
//! to one member at a time under an acquisition lock, acknowledged record by record.
//!
//! - [`group`]: membership and assignment, kept by the group coordinator
//!   ([`crate::group::GroupCoordinator`]) beside classic and consumer-protocol groups.
//! - [`partition`]: the in-flight records of one share-partition.
//! - [`SharePartitions`]: every share-partition this node leads and the members' share
//!   sessions (ShareFetch/ShareAcknowledge), with the group configs that govern them.
//!
//! The share-partition state lives in memory on the partition's leader. It is not yet written
//! to `__share_group_state`: after a restart or a leader change a share-partition starts again
//! from `share.auto.offset.reset`, so records may be delivered again (never lost).

pub mod coordinator;
pub mod group;
pub mod partition;
pub mod state_log;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use parking_lot::Mutex;
use uuid::Uuid;

use crate::config::Config;
use partition::{Limits, SharePartition};

/// The group config keys Kafka 4.3 accepts on a GROUP resource, and the kind of value each
/// takes.
const GROUP_CONFIGS: [(&str, Kind); 19] = [
    ("consumer.session.timeout.ms", Kind::Int),
    ("consumer.heartbeat.interval.ms", Kind::Int),
    ("consumer.assignment.interval.ms", Kind::Int),
    ("consumer.assignor.offload.enable", Kind::Bool),
    ("share.session.timeout.ms", Kind::Int),
    ("share.heartbeat.interval.ms", Kind::Int),
    ("share.record.lock.duration.ms", Kind::Int),
    ("share.delivery.count.limit", Kind::Int),
    ("share.partition.max.record.locks", Kind::Int),
    ("share.auto.offset.reset", Kind::AutoReset),
    ("share.isolation.level", Kind::Isolation),
    ("share.renew.acknowledge.enable", Kind::Bool),
    ("share.assignment.interval.ms", Kind::Int),
    ("share.assignor.offload.enable", Kind::Bool),
    ("streams.session.timeout.ms", Kind::Int),
    ("streams.heartbeat.interval.ms", Kind::Int),
    ("streams.num.standby.replicas", Kind::Int),
    ("streams.initial.rebalance.delay.ms", Kind::Int),
    ("streams.assignment.interval.ms", Kind::Int),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Bool,
    AutoReset,
    Isolation,
}

/// A broker config a group config must stay within: its name and value here.
type Bound = Option<(&'static str, i32)>;

/// The bounds of a numeric group config: Kafka's `atLeast` and the broker configs (name,
/// value here) it must stay within.
fn int_bounds(config: &Config, key: &str) -> (i32, Bound, Bound) {
    let d = &config.share;
    match key {
        "consumer.session.timeout.ms" => (
            1,
            Some(("group.consumer.min.session.timeout.ms", 45_000)),
            Some(("group.consumer.max.session.timeout.ms", 60_000)),
        ),
        "consumer.heartbeat.interval.ms" => (
            1,
            Some(("group.consumer.min.heartbeat.interval.ms", 5_000)),
            Some(("group.consumer.max.heartbeat.interval.ms", 15_000)),
        ),
        "share.session.timeout.ms" => (
            1,
            Some(("group.share.min.session.timeout.ms", 45_000)),
            Some(("group.share.max.session.timeout.ms", 60_000)),
        ),
        "share.heartbeat.interval.ms" => (
            1,
            Some(("group.share.min.heartbeat.interval.ms", 5_000)),
            Some(("group.share.max.heartbeat.interval.ms", 15_000)),
        ),
        "share.record.lock.duration.ms" => (
            1_000,
            Some((
                "group.share.min.record.lock.duration.ms",
                d.min_record_lock_duration_ms,
            )),
            Some((
                "group.share.max.record.lock.duration.ms",
                d.max_record_lock_duration_ms,
            )),
        ),
        "share.delivery.count.limit" => {
            (2, None, Some(("group.share.max.delivery.count.limit", 10)))
        }
        "share.partition.max.record.locks" => (
            100,
            None,
            Some(("group.share.max.partition.max.record.locks", 10_000)),
        ),
        _ => (0, None, None),
    }
}

/// Checks a GROUP resource's configs as Kafka's `GroupConfig.validate` does, with its
/// messages: known names, values of the right kind, numbers within the broker's bounds.
pub fn check_group_configs(
    config: &Config,
    configs: &BTreeMap<String, String>,
) -> Result<(), String> {
    for (k, v) in configs {
        let Some((_, kind)) = GROUP_CONFIGS.iter().find(|(n, _)| n == k) else {
            return Err(format!("Unknown group config name: {k}"));
        };
        let invalid = |why: &str| Err(format!("Invalid value {v} for configuration {k}: {why}"));
        match kind {
            Kind::Int => {
                let Ok(n) = v.trim().parse::<i32>() else {
                    return invalid("Not a number of type INT");
                };
                let (at_least, min, max) = int_bounds(config, k);
                if n < at_least {
                    return invalid(&format!("Value must be at least {at_least}"));
                }
                if let Some((name, _)) = min.filter(|(_, m)| n < *m) {
                    return Err(format!("{k} must be greater than or equal to {name}"));
                }
                if let Some((name, _)) = max.filter(|(_, m)| n > *m) {
                    return Err(format!("{k} must be less than or equal to {name}"));
                }
            }
            Kind::Bool if !matches!(v.trim(), "true" | "false") => {
                return invalid("Expected value to be either true or false");
            }
            Kind::AutoReset if AutoReset::parse(v).is_none() => {
                return invalid(
                    "The value must be either 'earliest', 'latest' or of the format \
                     'by_duration:<PnDTnHnMn.nS.>'.",
                );
            }
            Kind::Isolation if !matches!(v.trim(), "read_committed" | "read_uncommitted") => {
                return invalid("String must be one of: read_committed, read_uncommitted");
            }
            _ => {}
        }
    }
    Ok(())
}

/// Every config of group `group_configs` belongs to, as DescribeConfigs of a GROUP resource
/// reports them: the group's own values (source GROUP_CONFIG), else the broker's default.
pub fn group_config_entries(
    config: &Config,
    group_configs: &BTreeMap<String, String>,
) -> Vec<crate::cluster::topic_config::ConfigEntry> {
    use crate::config::dynamic::{Source, Synonym};
    let d = &config.share;
    let defaults: [(&str, String); 11] = [
        (
            "consumer.session.timeout.ms",
            config.group_consumer_session_timeout_ms.to_string(),
        ),
        (
            "consumer.heartbeat.interval.ms",
            config.group_consumer_heartbeat_interval_ms.to_string(),
        ),
        ("share.session.timeout.ms", d.session_timeout_ms.to_string()),
        (
            "share.heartbeat.interval.ms",
            d.heartbeat_interval_ms.to_string(),
        ),
        (
            "share.record.lock.duration.ms",
            d.record_lock_duration_ms.to_string(),
        ),
        (
            "share.delivery.count.limit",
            d.delivery_count_limit.to_string(),
        ),
        (
            "share.partition.max.record.locks",
            d.partition_max_record_locks.to_string(),
        ),
        ("share.auto.offset.reset", "latest".into()),
        ("share.isolation.level", "read_uncommitted".into()),
        ("streams.session.timeout.ms", "45000".into()),
        ("streams.heartbeat.interval.ms", "5000".into()),
    ];
    let defaults: BTreeMap<String, String> = defaults
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let names: BTreeSet<&String> = defaults.keys().chain(group_configs.keys()).collect();
    names
        .into_iter()
        .map(|name| {
            // Kafka's synonyms: the group's own value, then the default under it.
            let layers = [
                group_configs.get(name).map(|v| (v, Source::Group)),
                defaults.get(name).map(|v| (v, Source::Default)),
            ];
            let synonyms: Vec<Synonym> = layers
                .into_iter()
                .flatten()
                .map(|(value, source)| Synonym {
                    name: name.clone(),
                    value: value.clone(),
                    source,
                })
                .collect();
            crate::cluster::topic_config::ConfigEntry {
                name: name.clone(),
                value: synonyms[0].value.clone(),
                source: synonyms[0].source,
                synonyms,
            }
        })
        .collect()
}

/// Where a share-partition with no state starts (`share.auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoReset {
    /// The log start.
    Earliest,
    /// The high watermark (the default).
    Latest,
    /// The first record at most this long ago.
    ByDuration(Duration),
}

impl AutoReset {
    /// `earliest`, `latest` or `by_duration:<ISO-8601 duration>` (PnDTnHnMn.nS).
    pub fn parse(v: &str) -> Option<AutoReset> {
        match v.trim() {
            "earliest" => Some(AutoReset::Earliest),
            "latest" => Some(AutoReset::Latest),
            other => other
                .strip_prefix("by_duration:")
                .and_then(iso_duration)
                .map(AutoReset::ByDuration),
        }
    }
}

/// An ISO-8601 duration of days, hours, minutes and seconds (`P1DT2H3M4.5S`), as Java's
/// `Duration.parse` takes it; negative durations are refused.
fn iso_duration(s: &str) -> Option<Duration> {
    let rest = s.strip_prefix('P').or_else(|| s.strip_prefix('p'))?;
    let (days, time) = match rest.split_once(['T', 't']) {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let mut secs = 0f64;
    let mut any = false;
    let mut take = |part: &str, units: &[(char, f64)]| -> Option<()> {
        let mut num = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                num.push(c);
                continue;
            }
            let (_, scale) = units.iter().find(|(u, _)| u.eq_ignore_ascii_case(&c))?;
            secs += num.parse::<f64>().ok()? * scale;
            num.clear();
            any = true;
        }
        num.is_empty().then_some(())
    };
    take(days, &[('D', 86_400.0)])?;
    if let Some(t) = time {
        take(t, &[('H', 3_600.0), ('M', 60.0), ('S', 1.0)])?;
    }
    any.then(|| Duration::from_secs_f64(secs))
}

/// What governs one share group: the broker's `group.share.*` defaults under the group's own
/// configs, clamped to the broker's bounds as Kafka clamps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Lock duration, delivery count limit and in-flight window.
    pub limits: Limits,
    /// Where a share-partition with no state starts.
    pub auto_reset: AutoReset,
    /// The heartbeat interval members are told.
    pub heartbeat_interval_ms: i32,
    /// Members not heard from for this long leave.
    pub session_timeout: Duration,
    /// Whether the group reads only committed transactional records.
    pub read_committed: bool,
    /// Whether members may renew acquisition locks (`share.renew.acknowledge.enable`).
    pub renew_enabled: bool,
}

impl Settings {
    /// The settings of a group with `configs` on a broker with `config`.
    pub fn of(config: &Config, configs: &BTreeMap<String, String>) -> Settings {
        let d = &config.share;
        let int = |k: &str, default: i32| {
            configs
                .get(k)
                .and_then(|v| v.trim().parse::<i32>().ok())
                .unwrap_or(default)
        };
        let lock = int("share.record.lock.duration.ms", d.record_lock_duration_ms).clamp(
            d.min_record_lock_duration_ms,
            d.max_record_lock_duration_ms
                .max(d.min_record_lock_duration_ms),
        );
        Settings {
            limits: Limits {
                lock_duration: Duration::from_millis(lock.max(1) as u64),
                delivery_count_limit: int("share.delivery.count.limit", d.delivery_count_limit)
                    .clamp(2, i16::MAX as i32) as i16,
                max_in_flight: int(
                    "share.partition.max.record.locks",
                    d.partition_max_record_locks,
                )
                .max(1) as i64,
            },
            auto_reset: configs
                .get("share.auto.offset.reset")
                .and_then(|v| AutoReset::parse(v))
                .unwrap_or(AutoReset::Latest),
            heartbeat_interval_ms: int("share.heartbeat.interval.ms", d.heartbeat_interval_ms)
                .max(1),
            session_timeout: Duration::from_millis(
                int("share.session.timeout.ms", d.session_timeout_ms).max(1) as u64,
            ),
            read_committed: configs
                .get("share.isolation.level")
                .is_some_and(|v| v.trim() == "read_committed"),
            renew_enabled: configs
                .get("share.renew.acknowledge.enable")
                .is_none_or(|v| v.trim() != "false"),
        }
    }
}

/// A share-partition's key: group, topic id, partition.
pub type Key = (String, Uuid, i32);

/// One share-partition, locked on its own.
pub type Shared = Arc<Mutex<SharePartition>>;

/// A member's share session on this broker: the partitions it fetches and the epoch its next
/// request must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Session {
    next_epoch: i32,
    partitions: BTreeSet<(Uuid, i32)>,
    /// The connection the session's last request came on.
    peer: SocketAddr,
}

/// What a request does to its share session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionStep {
    /// The session is open: fetch these partitions.
    Open(Vec<(Uuid, i32)>),
    /// The session closed (epoch -1): release what the member holds; fetch nothing.
    Closed,
}

/// Every share-partition this node leads, and the share sessions of the members fetching them.
#[derive(Debug, Default)]
pub struct SharePartitions {
    partitions: Mutex<HashMap<Key, Arc<Mutex<SharePartition>>>>,
    /// One writer at a time per share-partition to its share coordinator.
    writes: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
    sessions: Mutex<HashMap<(String, String), Session>>,
    /// Woken when records become available again (released, or a session closed), so
    /// long-polling fetches of other members see them.
    pub released: tokio::sync::Notify,
}

impl SharePartitions {
    /// Applies a request's share session epoch: 0 opens a session (replacing one the member
    /// had), -1 closes it, anything else must be the session's next epoch
    /// (INVALID_SHARE_SESSION_EPOCH; SHARE_SESSION_NOT_FOUND without a session). `add` and
    /// `forget` change the session's partitions.
    pub fn session(
        &self,
        (group, member): (&str, &str),
        peer: SocketAddr,
        epoch: i32,
        add: &[(Uuid, i32)],
        forget: &[(Uuid, i32)],
    ) -> Result<SessionStep, ResponseError> {
        let key = (group.to_string(), member.to_string());
        let mut sessions = self.sessions.lock();
        match epoch {
            0 => {
                sessions.insert(
                    key.clone(),
                    Session {
                        next_epoch: 1,
                        partitions: BTreeSet::new(),
                        peer,
                    },
                );
            }
            -1 => {
                return sessions
                    .remove(&key)
                    .map(|_| SessionStep::Closed)
                    .ok_or(ResponseError::ShareSessionNotFound);
            }
            e => {
                let s = sessions
                    .get_mut(&key)
                    .ok_or(ResponseError::ShareSessionNotFound)?;
                if e != s.next_epoch {
                    return Err(ResponseError::InvalidShareSessionEpoch);
                }
                s.next_epoch = if e == i32::MAX { 1 } else { e + 1 };
            }
        }
        let s = sessions.get_mut(&key).expect("opened or checked above");
        s.peer = peer;
        s.partitions.extend(add.iter().copied());
        for f in forget {
            s.partitions.remove(f);
        }
        Ok(SessionStep::Open(s.partitions.iter().copied().collect()))
    }

    /// Adopts `sp` as the share-partition `key` unless this node has one already; returns the
    /// one in use.
    pub fn adopt(&self, key: &Key, sp: SharePartition) -> Shared {
        Arc::clone(
            self.partitions
                .lock()
                .entry(key.clone())
                .or_insert_with(|| Arc::new(Mutex::new(sp))),
        )
    }

    /// The lock that orders the writes of share-partition `key`'s state.
    pub fn write_order(&self, key: &Key) -> Arc<tokio::sync::Mutex<()>> {
        Arc::clone(self.writes.lock().entry(key.clone()).or_default())
    }

    /// Forgets the share-partition `key` here (its persisted state is read again next time).
    pub fn forget(&self, key: &Key) {
        self.partitions.lock().remove(key);
    }

    /// The share-partition `key`, if this node has it.
    pub fn get(&self, key: &Key) -> Option<Arc<Mutex<SharePartition>>> {
        self.partitions.lock().get(key).cloned()
    }

    /// Releases every record `member` of `group` holds here (archiving those delivered
    /// `limit` times) and ends its share session: it closed its session, its connection
    /// dropped, it left the group or expired.
    pub fn release_member(&self, group: &str, member: &str, limit: i16) {
        self.sessions
            .lock()
            .remove(&(group.to_string(), member.to_string()));
        let mut released = 0;
        for sp in self.of_group(group) {
            released += sp.1.lock().release_member(member, limit);
        }
        if released > 0 {
            self.released.notify_waiters();
        }
    }

    /// The (group, member) of every share session whose last request came on the connection
    /// from `peer`.
    pub fn sessions_on(&self, peer: SocketAddr) -> Vec<(String, String)> {
        self.sessions
            .lock()
            .iter()
            .filter(|(_, s)| s.peer == peer)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The share-partitions of `group` here, by (topic id, partition).
    pub fn of_group(&self, group: &str) -> Vec<((Uuid, i32), Shared)> {
        self.partitions
            .lock()
            .iter()
            .filter(|((g, _, _), _)| g == group)
            .map(|((_, t, p), sp)| ((*t, *p), Arc::clone(sp)))
            .collect()
    }

    /// Forgets `group`'s state for `topic` (DeleteShareGroupOffsets), or for every topic.
    pub fn remove(&self, group: &str, topic: Option<Uuid>) {
        self.partitions
            .lock()
            .retain(|(g, t, _), _| g != group || topic.is_some_and(|id| id != *t));
        if topic.is_none() {
            self.sessions.lock().retain(|(g, _), _| g != group);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let props = crate::config::parse_properties("node.id=1\nlog.dirs=/nonexistent\n");
        Config::from_properties(props).expect("config")
    }

    #[test]
    fn group_configs_are_checked_by_name_kind_and_the_broker_bounds() {
        let config = config();
        let ok = BTreeMap::from([
            (
                "share.auto.offset.reset".to_string(),
                "earliest".to_string(),
            ),
            (
                "share.record.lock.duration.ms".to_string(),
                "20000".to_string(),
            ),
        ]);
        assert_eq!(check_group_configs(&config, &ok), Ok(()));
        let unknown = BTreeMap::from([("share.bogus".to_string(), "1".to_string())]);
        assert_eq!(
            check_group_configs(&config, &unknown).unwrap_err(),
            "Unknown group config name: share.bogus"
        );
        let bad = BTreeMap::from([("share.auto.offset.reset".to_string(), "soon".to_string())]);
        assert!(check_group_configs(&config, &bad)
            .unwrap_err()
            .starts_with("Invalid value soon for configuration share.auto.offset.reset"));
        let short = BTreeMap::from([(
            "share.record.lock.duration.ms".to_string(),
            "5000".to_string(),
        )]);
        assert_eq!(
            check_group_configs(&config, &short).unwrap_err(),
            "share.record.lock.duration.ms must be greater than or equal to \
             group.share.min.record.lock.duration.ms"
        );
        let once = BTreeMap::from([("share.delivery.count.limit".to_string(), "1".to_string())]);
        assert_eq!(
            check_group_configs(&config, &once).unwrap_err(),
            "Invalid value 1 for configuration share.delivery.count.limit: Value must be at least 2"
        );
        assert_eq!(
            AutoReset::parse("by_duration:P1DT2H0.5S"),
            Some(AutoReset::ByDuration(Duration::from_secs_f64(
                86_400.0 + 7_200.0 + 0.5
            )))
        );
        assert_eq!(AutoReset::parse("by_duration:-PT1S"), None);
    }

    #[test]
    fn settings_take_the_group_config_within_the_broker_bounds() {
        let config = config();
        let configs = BTreeMap::from([(
            "share.record.lock.duration.ms".to_string(),
            "1000".to_string(),
        )]);
        let s = Settings::of(&config, &configs);
        // Below `group.share.min.record.lock.duration.ms` (15 s): clamped up, as Kafka does.
        assert_eq!(s.limits.lock_duration, Duration::from_secs(15));
        assert_eq!(s.auto_reset, AutoReset::Latest);
        assert_eq!(s.limits.delivery_count_limit, 5);
    }

    #[test]
    fn share_sessions_follow_their_epochs() {
        let s = SharePartitions::default();
        let t = Uuid::new_v4();
        let who = ("g", "m");
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(
            s.session(who, peer, 1, &[], &[]),
            Err(ResponseError::ShareSessionNotFound)
        );
        assert_eq!(
            s.session(who, peer, 0, &[(t, 0), (t, 1)], &[]),
            Ok(SessionStep::Open(vec![(t, 0), (t, 1)]))
        );
        assert_eq!(
            s.session(who, peer, 2, &[], &[]),
            Err(ResponseError::InvalidShareSessionEpoch)
        );
        assert_eq!(
            s.session(who, peer, 1, &[], &[(t, 0)]),
            Ok(SessionStep::Open(vec![(t, 1)]))
        );
        assert_eq!(s.session(who, peer, -1, &[], &[]), Ok(SessionStep::Closed));
        assert_eq!(
            s.session(who, peer, -1, &[], &[]),
            Err(ResponseError::ShareSessionNotFound)
        );
    }
}
