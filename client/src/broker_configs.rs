//! The broker configs Gregor changes at runtime: the keys a client may alter with
//! (Incremental)AlterConfigs on a BROKER resource. The broker refuses the others; the operator
//! tells a live change from one that needs a rolling restart by this list.

/// The broker keys Gregor applies without a restart, settable with AlterConfigs or
/// IncrementalAlterConfigs on a BROKER resource (`""` for the cluster default, `"<id>"` for one
/// broker). They are the broker-wide defaults of topic configs (a topic's own override still
/// wins) plus `log.flush.interval.messages`; every other key is read-only. The operator
/// reads this list to tell a live change from one that needs a rolling restart.
pub const DYNAMIC_BROKER_KEYS: &[&str] = &[
    "log.cleaner.delete.retention.ms",
    "log.cleanup.policy",
    "log.flush.interval.messages",
    "log.index.interval.bytes",
    "log.retention.bytes",
    "log.retention.hours",
    "log.retention.minutes",
    "log.retention.ms",
    "log.roll.hours",
    "log.roll.ms",
    "log.segment.bytes",
    "message.max.bytes",
    "min.insync.replicas",
    "unclean.leader.election.enable",
];

/// Whether Gregor applies `key` at runtime (it is in [`DYNAMIC_BROKER_KEYS`]).
pub fn is_dynamic_broker_key(key: &str) -> bool {
    DYNAMIC_BROKER_KEYS.contains(&key)
}
