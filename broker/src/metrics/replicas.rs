//! The health of this broker's replicas, as Kafka's ReplicaManager reports it: partitions led,
//! partitions held, under-replicated, under and at min ISR, ISR shrinks and expands, and how far
//! the followers here trail their leaders. Computed from the partitions' committed states when
//! scraped, so a gauge never drifts from what Metadata answers.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::cluster::image::PartitionImage;
use crate::cluster::Cluster;

use super::Scrape;

/// ISR changes of the partitions this node leads, counted when the committed state moves the
/// ISR under one leader epoch (Kafka's IsrShrinksPerSec and IsrExpandsPerSec). A shrink the
/// controller makes (a follower fenced) counts as well as one this leader asked for.
#[derive(Debug, Default)]
pub struct IsrChanges {
    shrinks: AtomicU64,
    expands: AtomicU64,
}

impl IsrChanges {
    /// Counts what the committed change from `before` to `after` did to the ISR, if `me` led
    /// the partition throughout. A change that both drops and adds replicas counts once each.
    pub fn observe(&self, me: i32, before: &PartitionImage, after: &PartitionImage) {
        let same_leadership =
            before.leader == me && after.leader == me && before.leader_epoch == after.leader_epoch;
        if !same_leadership {
            return;
        }
        if before.isr.iter().any(|r| !after.isr.contains(r)) {
            self.shrinks.fetch_add(1, Ordering::Relaxed);
        }
        if after.isr.iter().any(|r| !before.isr.contains(r)) {
            self.expands.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// ISR shrinks so far.
    pub fn shrinks(&self) -> u64 {
        self.shrinks.load(Ordering::Relaxed)
    }

    /// ISR expansions so far.
    pub fn expands(&self) -> u64 {
        self.expands.load(Ordering::Relaxed)
    }
}

/// What this node's partitions add up to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaHealth {
    /// Partitions with a replica here (Kafka's PartitionCount).
    pub replicas: i64,
    /// Partitions this node leads (LeaderCount).
    pub leaders: i64,
    /// Led here, with an ISR smaller than the replication factor (UnderReplicatedPartitions).
    pub under_replicated: i64,
    /// Led here, with an ISR smaller than the effective min ISR (UnderMinIsrPartitionCount).
    pub under_min_isr: i64,
    /// Led here, with an ISR exactly at the effective min ISR (AtMinIsrPartitionCount).
    pub at_min_isr: i64,
    /// The most messages a follower here trails its leader's high watermark by (MaxLag).
    pub max_follower_lag: i64,
    /// Replicas here whose log could not be opened (OfflineReplicaCount).
    pub offline: i64,
}

impl ReplicaHealth {
    /// Adds one partition this node holds a replica of, in its committed `state`, with the topic's
    /// `min.insync.replicas` and, when it follows, its `follower_lag`.
    ///
    /// Kafka's arithmetic: the replication factor leaves out replicas a reassignment is still
    /// adding, and the effective min ISR is `min.insync.replicas` capped at the replica count,
    /// so a topic whose min ISR exceeds its replicas is under min ISR only below all of them.
    pub fn add(&mut self, me: i32, state: &PartitionImage, min_isr: i32, follower_lag: i64) {
        self.replicas += 1;
        if state.leader != me {
            if state.leader >= 0 {
                self.max_follower_lag = self.max_follower_lag.max(follower_lag);
            }
            return;
        }
        self.leaders += 1;
        let factor = state
            .replicas
            .iter()
            .filter(|r| !state.adding.contains(r))
            .count();
        let isr = state.isr.len();
        if isr < factor {
            self.under_replicated += 1;
        }
        let effective_min_isr = usize::try_from(min_isr.max(1))
            .unwrap_or(1)
            .min(state.replicas.len());
        if isr < effective_min_isr {
            self.under_min_isr += 1;
        } else if isr == effective_min_isr {
            self.at_min_isr += 1;
        }
    }

    /// Every partition with a replica on `cluster`'s node, as committed, and the bytes of
    /// their logs (those not locked at the moment), in one pass.
    pub fn of(cluster: &Cluster) -> (ReplicaHealth, u64) {
        let me = cluster.config.node_id;
        let default_min_isr = cluster.effective_config().min_insync_replicas;
        let (mut health, mut log_bytes) = (ReplicaHealth::default(), 0);
        for t in cluster.topics() {
            let min_isr = t.min_insync_replicas(default_min_isr);
            for p in t.partitions.read().iter() {
                let state = p.state();
                if state.replicas.contains(&me) {
                    health.add(me, &state, min_isr, p.follower_lag());
                    health.offline += i64::from(p.offline_reason().is_some());
                    log_bytes += p.try_log().map_or(0, |l| l.size_bytes());
                }
            }
        }
        (health, log_bytes)
    }
}

/// The broker's replica scrape: health, ISR changes, log sizes and log dirs.
pub fn refresh(cluster: &Cluster, out: &mut Scrape) {
    let (h, size) = ReplicaHealth::of(cluster);
    out.gauge(
        "gregor_replica_partitions",
        "Partitions with a replica (a log) on this broker",
        h.replicas,
    );
    out.gauge(
        "gregor_leader_partitions",
        "Partitions this broker leads",
        h.leaders,
    );
    out.gauge(
        "gregor_under_replicated_partitions",
        "Partitions this broker leads whose ISR is smaller than their replicas",
        h.under_replicated,
    );
    out.gauge(
        "gregor_under_min_isr_partitions",
        "Partitions this broker leads whose ISR is below min.insync.replicas (capped at the replicas)",
        h.under_min_isr,
    );
    out.gauge(
        "gregor_at_min_isr_partitions",
        "Partitions this broker leads whose ISR is exactly min.insync.replicas (capped at the replicas)",
        h.at_min_isr,
    );
    out.gauge(
        "gregor_replica_max_lag_messages",
        "Most messages a follower on this broker trails its leader's high watermark by",
        h.max_follower_lag,
    );
    out.gauge(
        "gregor_offline_replicas",
        "Replicas on this broker whose log could not be opened (offline until it restarts)",
        h.offline,
    );
    out.counter(
        "gregor_isr_shrinks_total",
        "ISR shrinks of partitions this broker leads",
        cluster.isr_changes.shrinks(),
    );
    out.counter(
        "gregor_replication_bytes_in_total",
        "Record bytes this broker's followers fetched from their leaders",
        cluster
            .replication_bytes_in
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    out.counter(
        "gregor_isr_expands_total",
        "ISR expansions of partitions this broker leads",
        cluster.isr_changes.expands(),
    );
    out.gauge(
        "gregor_log_size_bytes",
        "Bytes of every partition log on this broker",
        size as i64,
    );
    log_dirs(&cluster.config.log_dirs, out);
}

/// Free and total bytes of each configured log dir's file system (`dir`: the configured path,
/// so the label takes only as many values as `log.dirs` has). A dir that cannot be read
/// (gone, unmounted) has no sample.
fn log_dirs(dirs: &[std::path::PathBuf], out: &mut Scrape) {
    let stats: Vec<(String, DiskSpace)> = dirs
        .iter()
        .filter_map(|d| Some((d.display().to_string(), DiskSpace::of(d)?)))
        .collect();
    out.gauges(
        "gregor_log_dir_free_bytes",
        "Bytes available to the broker on the file system of each log dir",
        &["dir"],
        stats.iter().map(|(d, s)| (vec![d.as_str()], s.free as i64)),
    );
    out.gauges(
        "gregor_log_dir_total_bytes",
        "Size in bytes of the file system of each log dir",
        &["dir"],
        stats
            .iter()
            .map(|(d, s)| (vec![d.as_str()], s.total as i64)),
    );
}

/// A file system's size and what an unprivileged writer may still use of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    /// Bytes available to unprivileged users (statvfs `f_bavail`).
    pub free: u64,
    /// Bytes in all (`f_blocks`).
    pub total: u64,
}

impl DiskSpace {
    /// The file system holding `path`, or `None` when it cannot be read.
    pub fn of(path: &std::path::Path) -> Option<DiskSpace> {
        let s = rustix::fs::statvfs(path).ok()?;
        Some(DiskSpace {
            free: s.f_bavail.saturating_mul(s.f_frsize),
            total: s.f_blocks.saturating_mul(s.f_frsize),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(replicas: &[i32], leader: i32, isr: &[i32]) -> PartitionImage {
        PartitionImage {
            replicas: replicas.to_vec(),
            leader,
            leader_epoch: 3,
            isr: isr.to_vec(),
            ..PartitionImage::default()
        }
    }

    fn health(me: i32, parts: &[(PartitionImage, i32, i64)]) -> ReplicaHealth {
        let mut h = ReplicaHealth::default();
        for (s, min_isr, lag) in parts {
            h.add(me, s, *min_isr, *lag);
        }
        h
    }

    #[test]
    fn a_leader_with_a_full_isr_is_healthy_and_counts_at_min_isr_only_when_equal() {
        let h = health(1, &[(state(&[1, 2, 3], 1, &[1, 2, 3]), 2, 0)]);
        assert_eq!(
            h,
            ReplicaHealth {
                replicas: 1,
                leaders: 1,
                ..ReplicaHealth::default()
            }
        );
        let h = health(1, &[(state(&[1, 2, 3], 1, &[1, 2]), 2, 0)]);
        assert_eq!(
            (h.under_replicated, h.at_min_isr, h.under_min_isr),
            (1, 1, 0)
        );
        let h = health(1, &[(state(&[1, 2, 3], 1, &[1]), 2, 0)]);
        assert_eq!(
            (h.under_replicated, h.at_min_isr, h.under_min_isr),
            (1, 0, 1)
        );
    }

    #[test]
    fn only_the_leader_reports_a_partitions_isr() {
        let shrunk = state(&[1, 2, 3], 2, &[2]);
        let h = health(1, &[(shrunk.clone(), 2, 7)]);
        assert_eq!(
            h,
            ReplicaHealth {
                replicas: 1,
                max_follower_lag: 7,
                ..ReplicaHealth::default()
            }
        );
        assert_eq!(health(2, &[(shrunk, 2, 0)]).under_min_isr, 1);
    }

    #[test]
    fn min_isr_above_the_replica_count_is_capped_at_it() {
        // RF 1 with min.insync.replicas=2 (Kafka's default topic on one node): at min ISR,
        // not under it.
        let h = health(1, &[(state(&[1], 1, &[1]), 2, 0)]);
        assert_eq!(
            (h.under_min_isr, h.at_min_isr, h.under_replicated),
            (0, 1, 0)
        );
    }

    #[test]
    fn replicas_a_reassignment_is_adding_do_not_make_a_partition_under_replicated() {
        let mut s = state(&[1, 2, 4], 1, &[1, 2]);
        s.adding = vec![4];
        assert_eq!(health(1, &[(s.clone(), 1, 0)]).under_replicated, 0);
        s.adding.clear();
        assert_eq!(health(1, &[(s, 1, 0)]).under_replicated, 1);
    }

    #[test]
    fn the_largest_follower_lag_is_reported() {
        let h = health(
            3,
            &[
                (state(&[1, 3], 1, &[1, 3]), 1, 4),
                (state(&[2, 3], 2, &[2]), 1, 90),
                (state(&[3, 1], 3, &[3, 1]), 1, 500),
                // Offline: the lag of its last fetch means nothing now.
                (state(&[4, 3], -1, &[4]), 1, 900),
            ],
        );
        assert_eq!((h.replicas, h.leaders, h.max_follower_lag), (4, 1, 90));
    }

    #[test]
    fn a_log_dirs_space_is_read_from_its_file_system() {
        let dir = tempfile::tempdir().expect("dir");
        let s = DiskSpace::of(dir.path()).expect("statvfs");
        assert!(s.total > 0 && s.free <= s.total, "{s:?}");
        assert_eq!(DiskSpace::of(&dir.path().join("gone")), None);
    }

    #[test]
    fn isr_changes_count_only_under_one_leadership_of_this_node() {
        let c = IsrChanges::default();
        let full = state(&[1, 2, 3], 1, &[1, 2, 3]);
        let shrunk = state(&[1, 2, 3], 1, &[1, 3]);
        c.observe(1, &full, &shrunk);
        c.observe(1, &shrunk, &full);
        assert_eq!((c.shrinks(), c.expands()), (1, 1));
        // Another node's partition, and a new leader epoch, count nothing.
        c.observe(2, &full, &shrunk);
        let mut new_epoch = shrunk.clone();
        new_epoch.leader_epoch += 1;
        c.observe(1, &full, &new_epoch);
        // A swap of one replica for another is a shrink and an expansion.
        c.observe(1, &state(&[1, 2, 3], 1, &[1, 2]), &shrunk);
        assert_eq!((c.shrinks(), c.expands()), (2, 2));
    }
}
