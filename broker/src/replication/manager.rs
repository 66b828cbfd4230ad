//! Which partitions this node follows, and one fetcher task per leader broker moving them
//! forward. After every metadata change [`ReplicaManager::sync`] compares each partition's
//! committed leader and epoch with what the fetchers follow: a partition under a new leader
//! (or epoch) moves to that leader's fetcher, which first truncates it to the leader's history
//! (OffsetForLeaderEpoch) and then fetches it in the same Fetch request as every other
//! partition that leader leads. The leader-side ISR rules run in [`ReplicaManager::isr_changes`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gregor_client::Client;
use kafka_protocol::ResponseError;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::fetcher::{self, EpochQuery, FetchTarget, Fetched, Limits};
use crate::cluster::metadata::MetadataRecord;
use crate::cluster::{error_chain, now_ms, Cluster, Partition};
use crate::config::ReplicationConfig;

/// Backoff after a failed connection or a refused partition (`replica.fetch.backoff.ms`).
const BACKOFF: Duration = Duration::from_millis(200);

type Key = (String, i32);

/// A partition one fetcher follows.
#[derive(Debug, Clone)]
struct Followed {
    partition: Arc<Partition>,
    /// The leader epoch it follows at.
    epoch: i32,
    /// Cut to the leader's history already (under this epoch).
    truncated: bool,
    /// Refused by the leader (it has not caught up with the metadata yet): wait until then.
    retry_at: Option<Instant>,
}

/// The partitions one leader's fetcher follows.
#[derive(Debug, Default)]
struct Fetcher {
    partitions: Mutex<BTreeMap<Key, Followed>>,
    wake: Notify,
}

/// The follower side of this node.
#[derive(Debug)]
pub struct ReplicaManager {
    cluster: Arc<Cluster>,
    me: i32,
    config: ReplicationConfig,
    /// Fetchers by leader broker id.
    fetchers: Mutex<BTreeMap<i32, Arc<Fetcher>>>,
    /// What each followed partition follows: (leader, epoch).
    following: Mutex<BTreeMap<Key, (i32, i32)>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl ReplicaManager {
    /// A manager for `cluster`'s partitions; its fetcher tasks run on `tracker` until
    /// `shutdown`.
    pub fn new(
        cluster: Arc<Cluster>,
        config: ReplicationConfig,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> Arc<ReplicaManager> {
        Arc::new(ReplicaManager {
            me: cluster.config.node_id,
            cluster,
            config,
            fetchers: Mutex::new(BTreeMap::new()),
            following: Mutex::new(BTreeMap::new()),
            shutdown,
            tracker,
        })
    }

    /// Brings the fetchers in line with the committed partition states.
    pub fn sync(self: &Arc<Self>) {
        let mut wanted: BTreeMap<Key, (i32, i32, Arc<Partition>)> = BTreeMap::new();
        for t in self.cluster.topics() {
            for p in t.partitions.read().iter() {
                let s = p.state();
                // An offline replica has no log to fetch into: it is left out, so the other
                // partitions followed from the same leader keep replicating.
                if s.leader >= 0
                    && s.leader != self.me
                    && s.replicas.contains(&self.me)
                    && p.offline_reason().is_none()
                {
                    wanted.insert(
                        (t.name.clone(), p.index),
                        (s.leader, s.leader_epoch, Arc::clone(p)),
                    );
                }
            }
        }
        let mut following = self.following.lock();
        let stale: Vec<(Key, i32)> = following
            .iter()
            .filter(|(k, (leader, epoch))| {
                wanted
                    .get(*k)
                    .is_none_or(|(l, e, _)| l != leader || e != epoch)
            })
            .map(|(k, (leader, _))| (k.clone(), *leader))
            .collect();
        for (key, leader) in stale {
            following.remove(&key);
            if let Some(f) = self.fetchers.lock().get(&leader) {
                f.partitions.lock().remove(&key);
            }
        }
        for (key, (leader, epoch, partition)) in wanted {
            if following.get(&key) == Some(&(leader, epoch)) {
                continue;
            }
            following.insert(key.clone(), (leader, epoch));
            let fetcher = self.fetcher_for(leader);
            fetcher.partitions.lock().insert(
                key,
                Followed {
                    partition,
                    epoch,
                    truncated: false,
                    retry_at: None,
                },
            );
            fetcher.wake.notify_one();
        }
    }

    fn fetcher_for(self: &Arc<Self>, leader: i32) -> Arc<Fetcher> {
        let mut fetchers = self.fetchers.lock();
        if let Some(f) = fetchers.get(&leader) {
            return Arc::clone(f);
        }
        let f = Arc::new(Fetcher::default());
        fetchers.insert(leader, Arc::clone(&f));
        let (me, fetcher) = (Arc::clone(self), Arc::clone(&f));
        self.tracker
            .spawn(async move { me.run_fetcher(leader, fetcher).await });
        f
    }

    /// Whether this node currently follows `topic`-`partition` (for tests and metrics).
    pub fn follows(&self, topic: &str, partition: i32) -> Option<i32> {
        self.following
            .lock()
            .get(&(topic.to_string(), partition))
            .map(|(leader, _)| *leader)
    }

    async fn run_fetcher(self: Arc<Self>, leader: i32, fetcher: Arc<Fetcher>) {
        let mut client: Option<Client> = None;
        let limits = Limits {
            max_wait_ms: self.config.replica_fetch_wait_max_ms,
            partition_max_bytes: self.config.replica_fetch_max_bytes,
            max_bytes: self.config.replica_fetch_response_max_bytes,
        };
        loop {
            if self.shutdown.is_cancelled() {
                break;
            }
            let now = Instant::now();
            let ready: Vec<(Key, Followed)> = fetcher
                .partitions
                .lock()
                .iter()
                .filter(|(_, f)| f.retry_at.is_none_or(|t| t <= now))
                .map(|(k, f)| (k.clone(), f.clone()))
                .collect();
            if ready.is_empty() {
                if self.idle(&fetcher).await {
                    break;
                }
                continue;
            }
            if client.as_ref().is_none_or(Client::is_broken) {
                client = self.connect(leader).await;
                if client.is_none() {
                    if self.back_off().await {
                        break;
                    }
                    continue;
                }
            }
            let Some(c) = client.as_mut() else { continue };
            if let Err(e) = self.round(c, &fetcher, &ready, limits).await {
                tracing::debug!(leader, error = %error_chain(&e), "replica fetch failed; reconnecting");
                client = None;
                if self.back_off().await {
                    break;
                }
            }
        }
    }

    /// Waits, with nothing ready to fetch, for a partition's retry time or a new partition;
    /// returns whether the node is shutting down instead.
    async fn idle(&self, fetcher: &Fetcher) -> bool {
        let next_retry = fetcher
            .partitions
            .lock()
            .values()
            .filter_map(|f| f.retry_at)
            .min();
        let wait = next_retry.map_or(Duration::from_secs(3600), |t| {
            t.saturating_duration_since(Instant::now())
        });
        tokio::select! {
            _ = self.shutdown.cancelled() => true,
            _ = fetcher.wake.notified() => false,
            _ = tokio::time::sleep(wait) => false,
        }
    }

    /// Waits [`BACKOFF`] before connecting again; returns whether the node is shutting down
    /// instead.
    async fn back_off(&self) -> bool {
        tokio::select! {
            _ = self.shutdown.cancelled() => true,
            _ = tokio::time::sleep(BACKOFF) => false,
        }
    }

    /// One request to the leader: truncation first while any ready partition has not been
    /// truncated to the leader's epoch, else a fetch of every ready partition.
    async fn round(
        &self,
        c: &mut Client,
        fetcher: &Fetcher,
        ready: &[(Key, Followed)],
        limits: Limits,
    ) -> Result<(), gregor_client::ClientError> {
        let untruncated: Vec<(Key, Followed)> = ready
            .iter()
            .filter(|(_, f)| !f.truncated)
            .cloned()
            .collect();
        if untruncated.is_empty() {
            self.fetch_round(c, fetcher, ready, limits).await
        } else {
            self.truncate_round(c, fetcher, &untruncated).await
        }
    }

    /// A connection to `leader` at the address the metadata gives it now (a restarted leader
    /// may have moved), whose requests give up after `replica.socket.timeout.ms`: a leader
    /// that stops answering without closing the connection is then dropped and connected to
    /// again, instead of stalling its partitions. Secured as the inter-broker listener is, its
    /// stores read afresh so rotated certificates are used.
    async fn connect(&self, leader: i32) -> Option<Client> {
        let timeout = Duration::from_millis(self.config.replica_socket_timeout_ms);
        crate::peer::connect_broker(&self.cluster, leader, timeout).await
    }

    /// Cuts each partition to the leader's history of its latest epoch.
    async fn truncate_round(
        &self,
        client: &mut Client,
        fetcher: &Fetcher,
        parts: &[(Key, Followed)],
    ) -> Result<(), gregor_client::ClientError> {
        let queries: Vec<EpochQuery> = parts
            .iter()
            .map(|((topic, partition), f)| EpochQuery {
                topic: topic.clone(),
                partition: *partition,
                current_leader_epoch: f.epoch,
                epoch: f
                    .partition
                    .log()
                    .and_then(|log| log.latest_epoch())
                    .unwrap_or(-1),
            })
            .collect();
        let answers = fetcher::end_offsets(client, self.me, &queries).await?;
        let mut done = Vec::new();
        for ((key, f), answer) in parts.iter().zip(answers) {
            match answer {
                Ok(answer) => done.push((key.clone(), Arc::clone(&f.partition), answer)),
                Err(e) => self.refused(fetcher, key, f.epoch, e),
            }
        }
        let cut = tokio::task::spawn_blocking(move || {
            let mut ok = Vec::new();
            for (key, p, answer) in done {
                // No local log: the replica moved off this node meanwhile.
                let Some(mut log) = p.log() else { continue };
                let hw = p.high_watermark();
                let target = if log.latest_epoch().is_none() {
                    log.log_end_offset()
                } else {
                    fetcher::truncation_offset(&log, answer, hw)
                };
                if target < log.log_end_offset() {
                    tracing::info!(topic = %key.0, partition = key.1, from = log.log_end_offset(), to = target, "truncating to the leader's history");
                    if let Err(e) = log.truncate_to(target) {
                        tracing::warn!(topic = %key.0, partition = key.1, error = %error_chain(&e), "truncation failed");
                        continue;
                    }
                }
                p.refresh_follower(&log);
                ok.push(key);
            }
            ok
        })
        .await
        .unwrap_or_default();
        let mut partitions = fetcher.partitions.lock();
        for key in cut {
            if let Some(f) = partitions.get_mut(&key) {
                f.truncated = true;
            }
        }
        Ok(())
    }

    /// One Fetch of every ready partition, appended locally.
    async fn fetch_round(
        &self,
        client: &mut Client,
        fetcher: &Fetcher,
        parts: &[(Key, Followed)],
        limits: Limits,
    ) -> Result<(), gregor_client::ClientError> {
        let targets: Vec<FetchTarget> = parts
            .iter()
            .map(|((topic, partition), f)| FetchTarget {
                topic: topic.clone(),
                partition: *partition,
                fetch_offset: f.partition.log_end_offset(),
                leader_epoch: f.epoch,
            })
            .collect();
        let fetched = fetcher::fetch(client, self.me, &targets, limits).await?;
        let by_key: BTreeMap<Key, &Followed> = parts.iter().map(|(k, f)| (k.clone(), f)).collect();
        let mut work: Vec<(Key, Arc<Partition>, Fetched)> = Vec::new();
        for d in fetched {
            let key = (d.topic.clone(), d.partition);
            let Some(f) = by_key.get(&key) else { continue };
            match d.error {
                None => work.push((key, Arc::clone(&f.partition), d)),
                Some(ResponseError::OffsetOutOfRange) => {
                    // Ahead of the leader (history to cut) or behind its log start.
                    if let Some(p) = fetcher.partitions.lock().get_mut(&key) {
                        p.truncated = false;
                    }
                    work.push((key, Arc::clone(&f.partition), d));
                }
                Some(e) => self.refused(fetcher, &key, f.epoch, e),
            }
        }
        if work.is_empty() {
            return Ok(());
        }
        let (cluster, me) = (Arc::clone(&self.cluster), self.me);
        tokio::task::spawn_blocking(move || {
            let now = now_ms();
            let mut bytes = 0;
            for (key, p, d) in work {
                bytes += d.records.len() as u64;
                apply_fetched(&key, &p, d, me, now);
            }
            cluster
                .replication_bytes_in
                .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
            cluster.notify_appended();
        })
        .await
        .ok();
        Ok(())
    }

    fn refused(&self, fetcher: &Fetcher, key: &Key, epoch: i32, error: ResponseError) {
        tracing::debug!(topic = %key.0, partition = key.1, epoch, %error, "the leader refused; retrying shortly");
        if let Some(f) = fetcher.partitions.lock().get_mut(key) {
            f.retry_at = Some(Instant::now() + BACKOFF);
        }
    }

    /// The ISR changes this node's led partitions need by the lag rules, as conditional
    /// AlterPartition records (blocking).
    pub fn isr_changes(&self) -> Vec<MetadataRecord> {
        let now = now_ms();
        let brokers = self.cluster.brokers();
        let eligible = |b: i32| brokers.get(&b).is_some_and(|b| !b.fenced);
        let lag_max = self.config.replica_lag_time_max_ms;
        let mut out = Vec::new();
        for t in self.cluster.topics() {
            for p in t.partitions.read().iter() {
                let Some(next) = p.isr_change(self.me, lag_max, now, &eligible) else {
                    continue;
                };
                tracing::info!(topic = %t.name, partition = p.index, from = ?p.state().isr, to = ?next.isr, "proposing an ISR change");
                out.push(MetadataRecord::AlterPartition {
                    topic: t.name.clone(),
                    partition: p.index,
                    leader_epoch: next.leader_epoch,
                    partition_epoch: next.partition_epoch,
                    leader: self.me,
                    isr: next.isr,
                });
            }
        }
        out
    }
}

/// Empties a follower log that fell behind the leader's log start, to continue from there.
fn start_over_at(key: &Key, p: &Partition, log: &mut crate::log::PartitionLog, start: i64) {
    tracing::info!(topic = %key.0, partition = key.1, start, "behind the leader's log start: starting over there");
    if let Err(e) = log.reset_to(start) {
        tracing::warn!(error = %error_chain(&e), "resetting the follower log failed");
    }
    p.refresh_follower(log);
}

/// Writes what the leader sent for one partition into its follower log (blocking): the
/// batches appended, or the log started over at the leader's log start when it fell behind
/// it; then the follower's high watermark.
fn apply_fetched(key: &Key, p: &Partition, d: Fetched, me: i32, now: i64) {
    // Moved off this node while the fetch was out: its local log was deleted. (The
    // state changes only under the log lock, so it agrees with the log here.)
    let Some(mut log) = p.log() else { return };
    if !p.state().replicas.contains(&me) {
        return;
    }
    if d.error == Some(ResponseError::OffsetOutOfRange) {
        if log.log_end_offset() < d.log_start_offset {
            start_over_at(key, p, &mut log, d.log_start_offset);
        }
        return;
    }
    if !d.records.is_empty() {
        if let Err(e) = log.append_replica(d.records, now) {
            tracing::warn!(topic = %key.0, partition = key.1, error = %error_chain(&e), "replicated batches not appended");
            return;
        }
    }
    // The leader's log start moved (DeleteRecords, retention): so does this replica's, as
    // far as its log reaches.
    let start = d.log_start_offset.min(log.log_end_offset());
    if start > log.log_start_offset() {
        if let Err(e) = log.advance_log_start(start) {
            tracing::warn!(topic = %key.0, partition = key.1, error = %error_chain(&e), "log start not moved to the leader's");
        }
    }
    p.refresh_follower(&log);
    drop(log);
    p.set_follower_high_watermark(d.high_watermark);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::image::MetadataImage;
    use crate::config::{parse_properties, Config};
    use gregor_client::fake_broker::{accept_and_negotiate, read_request};

    /// Node 1 following `r`-0, which broker 2 at `leader` leads.
    fn follower(dir: &std::path::Path, leader: std::net::SocketAddr) -> Arc<Cluster> {
        let props = parse_properties(&format!("node.id=1\nlog.dirs={}\n", dir.display()));
        let config = Arc::new(Config::from_properties(props).expect("config"));
        let cluster = Arc::new(Cluster::open(config, "c".into()).expect("cluster"));
        let mut image = MetadataImage::default();
        image.apply(&MetadataRecord::RegisterBroker {
            id: 2,
            host: leader.ip().to_string(),
            port: leader.port(),
            endpoints: Vec::new(),
            rack: None,
        });
        image.apply(&MetadataRecord::Topic {
            name: "r".into(),
            id: uuid::Uuid::nil(),
            partitions: 1,
            replication_factor: 2,
            configs: Default::default(),
        });
        image.apply(&MetadataRecord::PartitionState {
            topic: "r".into(),
            partition: 0,
            replicas: vec![2, 1],
            leader: 2,
            leader_epoch: 1,
            isr: vec![2, 1],
        });
        cluster.reconcile(&image).expect("reconcile");
        cluster
    }

    #[tokio::test]
    async fn a_leader_that_stops_answering_is_dropped_and_connected_to_again_after_the_socket_timeout(
    ) {
        let d = tempfile::tempdir().expect("tempdir");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let cluster = follower(d.path(), listener.local_addr().expect("addr"));
        let config = ReplicationConfig {
            replica_socket_timeout_ms: 300,
            ..cluster.config.replication.clone()
        };
        let (shutdown, tracker) = (CancellationToken::new(), TaskTracker::new());
        let manager = ReplicaManager::new(cluster, config, shutdown.clone(), tracker.clone());
        manager.sync();
        // ApiVersions, Fetch, OffsetForLeaderEpoch.
        let apis = [(18, 3), (1, 12), (23, 4)];
        let mut first = accept_and_negotiate(&listener, &apis).await;
        let (key, _, _) = read_request(&mut first).await;
        assert_eq!(key, 23, "a new follower asks where its epoch ends first");
        // Never answered, never closed: only the timeout tells the follower to move on.
        let asked = Instant::now();
        let second = tokio::time::timeout(
            Duration::from_secs(10),
            accept_and_negotiate(&listener, &apis),
        )
        .await
        .expect("the follower connected again");
        let waited = asked.elapsed();
        assert!(
            waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
            "reconnected after {waited:?}"
        );
        shutdown.cancel();
        tracker.close();
        tracker.wait().await;
        drop((first, second));
    }
}
