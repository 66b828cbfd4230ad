//! The replication, liveness and leadership keys of `server.properties` (Kafka's keys and
//! defaults, except where a comment says why not), parsed into [`ReplicationConfig`].

use super::{ConfigError, Props};

/// `replica.socket.timeout.ms` when the config does not set it. Kafka's default is 30 s; a
/// follower whose leader was cut off without a reset (packets dropped) would then wait that
/// long before it reconnects, and a leader that comes back, or a leadership that moves back to
/// it, would see that follower — and so its high watermark and acks=all — stall as long.
/// Five seconds is ten long-polls at Kafka's `replica.fetch.wait.max.ms` of 500 ms, so a
/// leader that answers at all answers well within it, and a timeout costs only a reconnect.
const DEFAULT_REPLICA_SOCKET_TIMEOUT_MS: u64 = 5_000;

/// The keys this module reads.
pub(super) const KEYS: &[&str] = &[
    "broker.heartbeat.interval.ms",
    "broker.session.timeout.ms",
    "replica.lag.time.max.ms",
    "replica.fetch.wait.max.ms",
    "replica.fetch.max.bytes",
    "replica.fetch.response.max.bytes",
    "replica.socket.timeout.ms",
    "replica.high.watermark.checkpoint.interval.ms",
    "unclean.leader.election.enable",
    "auto.leader.rebalance.enable",
    "leader.imbalance.check.interval.seconds",
    "controlled.shutdown.enable",
];

/// Replication, liveness and leadership settings (Kafka's keys and defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicationConfig {
    /// `broker.heartbeat.interval.ms`: how often a broker tells the controllers it is alive.
    pub broker_heartbeat_interval_ms: u64,
    /// `broker.session.timeout.ms`: a broker silent this long is fenced.
    pub broker_session_timeout_ms: u64,
    /// `replica.lag.time.max.ms`: a follower not caught up this long leaves the ISR.
    pub replica_lag_time_max_ms: i64,
    /// `replica.fetch.wait.max.ms`: follower fetch long-poll.
    pub replica_fetch_wait_max_ms: i32,
    /// `replica.fetch.max.bytes`: per partition and fetch.
    pub replica_fetch_max_bytes: i32,
    /// `replica.fetch.response.max.bytes`: per fetch.
    pub replica_fetch_response_max_bytes: i32,
    /// `replica.socket.timeout.ms`: how long a follower waits for its leader to answer a
    /// fetch (or an OffsetForLeaderEpoch, or to accept a connection) before it drops the
    /// connection and connects again. At least `replica.fetch.wait.max.ms`, as Kafka
    /// requires. Default 5000 ms, below Kafka's 30000 (`DEFAULT_REPLICA_SOCKET_TIMEOUT_MS`
    /// in the source says why).
    pub replica_socket_timeout_ms: u64,
    /// `replica.high.watermark.checkpoint.interval.ms`: how often every log dir's high
    /// watermarks are checkpointed.
    pub replica_high_watermark_checkpoint_interval_ms: u64,
    /// `unclean.leader.election.enable`: elect an out-of-sync replica when no ISR member is
    /// left (losing what only the ISR had).
    pub unclean_leader_election_enable: bool,
    /// `auto.leader.rebalance.enable`: move leadership back to preferred replicas.
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds`, in ms.
    pub leader_imbalance_check_interval_ms: u64,
    /// `controlled.shutdown.enable`: on SIGTERM, hand leaderships over before stopping.
    pub controlled_shutdown_enable: bool,
}

impl ReplicationConfig {
    /// Reads and validates the keys of [`KEYS`].
    pub(super) fn from_props(p: &Props<'_>) -> Result<ReplicationConfig, ConfigError> {
        let replica_fetch_wait_max_ms: i32 = p.num("replica.fetch.wait.max.ms", 500, 0)?;
        let long_poll = u64::from(replica_fetch_wait_max_ms.unsigned_abs());
        let replica_socket_timeout_ms = match p.get("replica.socket.timeout.ms") {
            None => DEFAULT_REPLICA_SOCKET_TIMEOUT_MS.max(long_poll + 1_000),
            Some(v) => {
                let ms = p.num("replica.socket.timeout.ms", 0u64, 1)?;
                if ms < long_poll {
                    return Err(Props::invalid(
                        "replica.socket.timeout.ms",
                        v,
                        format!(
                            "must be at least replica.fetch.wait.max.ms ({long_poll}), or \
                             idle long-polls would time out"
                        ),
                    ));
                }
                ms
            }
        };
        Ok(ReplicationConfig {
            broker_heartbeat_interval_ms: p.num("broker.heartbeat.interval.ms", 2000, 1)?,
            broker_session_timeout_ms: p.num("broker.session.timeout.ms", 9000, 1)?,
            replica_lag_time_max_ms: p.num("replica.lag.time.max.ms", 30_000, 1)?,
            replica_fetch_wait_max_ms,
            replica_fetch_max_bytes: p.num("replica.fetch.max.bytes", 1_048_576, 1)?,
            replica_fetch_response_max_bytes: p.num(
                "replica.fetch.response.max.bytes",
                10_485_760,
                1,
            )?,
            replica_socket_timeout_ms,
            replica_high_watermark_checkpoint_interval_ms: p.num(
                "replica.high.watermark.checkpoint.interval.ms",
                5_000,
                1,
            )?,
            unclean_leader_election_enable: p.bool("unclean.leader.election.enable", false)?,
            auto_leader_rebalance_enable: p.bool("auto.leader.rebalance.enable", true)?,
            leader_imbalance_check_interval_ms: p
                .num::<u64>("leader.imbalance.check.interval.seconds", 300, 1)?
                .saturating_mul(1000),
            controlled_shutdown_enable: p.bool("controlled.shutdown.enable", true)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse_properties, Config};

    fn replication(extra: &str) -> Result<super::ReplicationConfig, super::ConfigError> {
        Config::from_properties(parse_properties(&format!("node.id=1\n{extra}")))
            .map(|c| c.replication)
    }

    #[test]
    fn the_checkpoint_interval_and_socket_timeout_have_defaults_and_can_be_set() {
        let c = replication("").expect("defaults");
        assert_eq!(c.replica_high_watermark_checkpoint_interval_ms, 5_000);
        assert_eq!(c.replica_socket_timeout_ms, 5_000);
        let c = replication(
            "replica.high.watermark.checkpoint.interval.ms=100\nreplica.socket.timeout.ms=30000\n",
        )
        .expect("set");
        assert_eq!(
            (
                c.replica_high_watermark_checkpoint_interval_ms,
                c.replica_socket_timeout_ms
            ),
            (100, 30_000)
        );
    }

    #[test]
    fn the_socket_timeout_is_never_shorter_than_the_fetch_long_poll() {
        let err = replication("replica.fetch.wait.max.ms=2000\nreplica.socket.timeout.ms=1000\n")
            .expect_err("shorter than the long-poll");
        assert!(
            err.to_string().contains("replica.socket.timeout.ms"),
            "{err}"
        );
        let c = replication("replica.fetch.wait.max.ms=9000\n").expect("default follows");
        assert_eq!(
            c.replica_socket_timeout_ms, 10_000,
            "the default leaves a long-poll a second to answer"
        );
    }
}
