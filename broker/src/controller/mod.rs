//! The controller's duties beyond the Raft log itself: broker liveness from the heartbeats the
//! quorum records ([`crate::quorum::liveness`]; early fencing of brokers whose listener refuses
//! connections, [`probe`]), fencing, partition leader election from the ISR, preferred-leader rebalancing, and the
//! broker's side of a controlled shutdown. The decisions are pure ([`decide`]); this module runs
//! them on the active controller and commits what they return through the quorum.

pub mod decide;
pub mod probe;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::cluster::error_chain;
use crate::config::ReplicationConfig;
use crate::quorum::liveness::Liveness;
use crate::quorum::node::QuorumNode;
use decide::Policy;

/// How often the active controller re-checks liveness and leadership.
const TICK: Duration = Duration::from_millis(250);

/// Runs the active controller's duties whenever this node leads the quorum, until `shutdown`.
pub async fn run(
    quorum: Arc<QuorumNode>,
    liveness: Arc<Liveness>,
    config: ReplicationConfig,
    bootstrap: Vec<crate::sasl::bootstrap::BootstrapCredential>,
    shutdown: CancellationToken,
) {
    let session = Duration::from_millis(config.broker_session_timeout_ms);
    let rebalance_every = Duration::from_millis(config.leader_imbalance_check_interval_ms);
    let mut last_rebalance = Instant::now();
    let prober = probe::Prober::new(
        Arc::clone(&liveness),
        Duration::from_millis(config.broker_heartbeat_interval_ms),
    );
    let departed = Arc::clone(&prober.departed);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
            _ = departed.notified() => {}
        }
        if !quorum.is_leader() {
            continue;
        }
        let rebalance =
            config.auto_leader_rebalance_enable && last_rebalance.elapsed() >= rebalance_every;
        if rebalance {
            last_rebalance = Instant::now();
        }
        let image = quorum.applied().image;
        if !image.bootstrapped {
            // A new cluster: its bootstrap record (this node's `--add-scram` credentials, if
            // any) marks it bootstrapped, once.
            let record = crate::cluster::metadata::MetadataRecord::Bootstrap {
                scram: bootstrap.clone(),
            };
            commit_decisions(&quorum, vec![record]).await;
        }
        let now = Instant::now();
        prober.check(&image, now);
        let alive = |b: i32| liveness.is_alive(b, session, now);
        let policy = Policy {
            unclean: unclean_default(&image, config.unclean_leader_election_enable),
            rebalance,
        };
        let records = decide::decide(&image, &alive, policy);
        if !records.is_empty() {
            commit_decisions(&quorum, records).await;
        }
    }
}

/// Logs each of the controller's decisions and proposes them to the quorum.
async fn commit_decisions(
    quorum: &QuorumNode,
    records: Vec<crate::cluster::metadata::MetadataRecord>,
) {
    for r in &records {
        tracing::info!(change = ?r, "controller decision");
    }
    if let Err(e) = quorum.write(records).await {
        tracing::warn!(error = %error_chain(&e), "controller decision not committed");
    }
}

/// `unclean.leader.election.enable` for topics without their own setting: the cluster-wide
/// dynamic default when one is set (and valid), else this controller's static config.
fn unclean_default(image: &crate::cluster::image::MetadataImage, static_value: bool) -> bool {
    image
        .broker_configs
        .get("")
        .and_then(|c| c.get("unclean.leader.election.enable"))
        .and_then(|v| v.trim().to_ascii_lowercase().parse().ok())
        .unwrap_or(static_value)
}

/// Tells every voter that `broker` is alive, every `broker.heartbeat.interval.ms`, until
/// `shutdown`.
pub async fn heartbeat(
    quorum: Arc<QuorumNode>,
    liveness: Arc<Liveness>,
    broker: i32,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        beat_all(&quorum, &liveness, broker, false, interval).await;
    }
}

async fn beat_all(
    quorum: &QuorumNode,
    liveness: &Liveness,
    broker: i32,
    shutting_down: bool,
    timeout: Duration,
) {
    // This node's own table is written directly: its controller listener may have moved (an
    // ephemeral port on a single node) since the membership recorded it.
    if shutting_down {
        liveness.depart(broker);
    } else {
        liveness.heard_from(broker, Instant::now());
    }
    let me = quorum.node_id();
    let others = quorum.voters().into_iter().filter(|(id, _)| *id != me);
    let calls = others.map(|(id, node)| async move {
        let r =
            crate::quorum::network::heartbeat(&node, quorum.peer(), broker, shutting_down, timeout)
                .await;
        if let Err(e) = r {
            tracing::debug!(voter = id, error = %e, "heartbeat not delivered");
        }
    });
    futures::future::join_all(calls).await;
}

/// Controlled shutdown: tells the voters this broker is leaving, fences it and hands its
/// leaderships to other ISR members, then waits (up to `timeout`) until it leads nothing that
/// another replica could lead. Returns whether it got there.
pub async fn controlled_shutdown(
    quorum: &QuorumNode,
    liveness: &Liveness,
    broker: i32,
    timeout: Duration,
) -> bool {
    let deadline = Instant::now() + timeout;
    beat_all(quorum, liveness, broker, true, Duration::from_secs(1)).await;
    loop {
        let image = quorum.applied().image;
        let mut records = decide::move_leaderships_off(&image, broker);
        let fenced = image.brokers.get(&broker).is_none_or(|b| b.fenced);
        if records.is_empty() && fenced {
            return true;
        }
        if !fenced {
            records.insert(
                0,
                crate::cluster::metadata::MetadataRecord::FenceBroker {
                    id: broker,
                    fenced: true,
                },
            );
        }
        tracing::info!(
            partitions = records.len(),
            "controlled shutdown: handing leaderships over"
        );
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        match tokio::time::timeout(left, quorum.write(records)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %error_chain(&e), "controlled shutdown: change not committed");
                tokio::time::sleep(Duration::from_millis(200).min(left)).await;
            }
            Err(_) => return false,
        }
    }
}
