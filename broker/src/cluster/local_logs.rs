//! Which partition logs this node holds, and their high-watermark checkpoints. A node opens
//! (creating its directory) the log of a partition only while the committed metadata lists it
//! among the partition's replicas — a reassignment's `adding` replicas included, as they are
//! among the replicas — and closes and deletes it once it is no longer one, as Kafka's
//! StopReplica with deletion does. Every other partition is known here by its state alone:
//! Metadata describes it, and fetches and appends answer NOT_LEADER_OR_FOLLOWER.
//!
//! High watermarks are checkpointed per log dir ([`hw_checkpoint`]); a log opened after a
//! restart starts from its checkpointed high watermark.

use super::*;
use crate::log::checkpoint::CheckpointError;
use crate::log::clean_shutdown;

impl Cluster {
    /// Adds partitions `current..count` of `topic` with their committed states in
    /// `assignment`, opening the logs of this node's replicas (blocking).
    pub(super) fn add_partitions(
        &self,
        topic: &Topic,
        count: i32,
        assignment: &BTreeMap<i32, PartitionImage>,
    ) -> Result<(), AdminError> {
        let me = self.config.node_id;
        for index in topic.partition_count()..count {
            // Partitions written before assignments were recorded are led by this node.
            let state = assignment
                .get(&index)
                .cloned()
                .unwrap_or_else(|| self.local_partition_state());
            if moved_off(&state, me) {
                self.remove_stray_dirs(&topic.name, index);
            }
            let p = Partition::new(
                &topic.name,
                index,
                me,
                Arc::clone(&self.data_arrived),
                Arc::clone(&self.log_timings),
            );
            self.apply_partition(topic, &p, &state)?;
            topic.partitions.write().push(Arc::new(p));
        }
        Ok(())
    }

    /// Applies the committed `state` to partition `p` of `topic`: opens this node's log when
    /// the state makes it a replica, closes and deletes it when the state no longer does
    /// (blocking). Returns whether anything changed.
    pub(super) fn apply_partition(
        &self,
        topic: &Topic,
        p: &Partition,
        state: &PartitionImage,
    ) -> Result<bool, AdminError> {
        let me = self.config.node_id;
        let mut slot = p.log.lock();
        let mut changed = false;
        if state.replicas.contains(&me) && slot.is_none() && p.offline_reason().is_none() {
            let config =
                topic_config::resolve_log_config(&self.effective_config(), &topic.configs.read())
                    .map_err(AdminError::InvalidConfig)?;
            let dir = self.partition_dir(&topic.name, p.index);
            let shutdown = clean_shutdown::of(&dir, &self.clean_dirs);
            match PartitionLog::open_after(&dir, config, shutdown) {
                Ok(log) => {
                    let checkpointed = self
                        .hw_checkpoints
                        .lock()
                        .remove(&(topic.name.clone(), p.index));
                    p.install_log(&mut slot, log, checkpointed);
                }
                // One partition's storage failure takes that replica offline, not the node:
                // the rest of the metadata still applies and the other partitions serve.
                Err(e) => {
                    let reason = error_chain(&e);
                    tracing::error!(topic = %topic.name, partition = p.index, error = %reason,
                        "the partition's log cannot be opened: this replica is offline until the node restarts");
                    p.take_offline(reason);
                }
            }
            changed = true;
        }
        let before = p.state();
        changed |= p.apply_state(&mut slot, state)?;
        self.isr_changes.observe(me, &before, state);
        if moved_off(state, me) {
            if let Some(dir) = p.remove_log(&mut slot) {
                tracing::info!(topic = %topic.name, partition = p.index, "not a replica any more: deleting the local log");
                remove_partition_dir(&dir);
                changed = true;
            }
        }
        Ok(changed)
    }

    /// A partition led by this node alone, at epoch 0.
    pub(super) fn local_partition_state(&self) -> PartitionImage {
        let me = self.config.node_id;
        PartitionImage {
            replicas: vec![me],
            leader: me,
            isr: vec![me],
            ..PartitionImage::default()
        }
    }

    /// Where a partition's directory is: an existing one in any log dir, else the log dir
    /// holding the fewest partitions (with one log dir, that one, without counting: a count
    /// per new partition made creating thousands of them quadratic).
    fn partition_dir(&self, topic: &str, index: i32) -> PathBuf {
        let name = format!("{topic}-{index}");
        let dirs = &self.config.log_dirs;
        if let [only] = dirs.as_slice() {
            return only.join(name);
        }
        if let Some(existing) = dirs.iter().map(|d| d.join(&name)).find(|p| p.is_dir()) {
            return existing;
        }
        let count = |d: &Path| std::fs::read_dir(d).map(|r| r.count()).unwrap_or(0);
        dirs.iter()
            .min_by_key(|d| count(d))
            .map(|d| d.join(&name))
            .unwrap_or_else(|| PathBuf::from(name))
    }

    /// Deletes what the log dirs hold of a partition this node is not a replica of: left by a
    /// move that completed while it was down, or by an older Gregor, which opened a log for
    /// every partition on every node.
    fn remove_stray_dirs(&self, topic: &str, index: i32) {
        let name = format!("{topic}-{index}");
        for dir in self.config.log_dirs.iter().map(|d| d.join(&name)) {
            if dir.is_dir() {
                tracing::info!(dir = %dir.display(), "not a replica: deleting a stray partition directory");
                remove_partition_dir(&dir);
            }
        }
    }

    /// What `f` makes of each local log, by the configured log dir holding it; every log dir
    /// appears, holding something or not (blocking: takes each log's lock in turn, and calls
    /// `f` with it held).
    pub fn by_log_dir<T>(
        &self,
        mut f: impl FnMut(&Topic, &Partition, &PartitionLog) -> Option<T>,
    ) -> BTreeMap<PathBuf, Vec<T>> {
        let mut out: BTreeMap<PathBuf, Vec<T>> = self
            .config
            .log_dirs
            .iter()
            .map(|d| (d.clone(), Vec::new()))
            .collect();
        for t in self.topics() {
            for p in t.partitions.read().iter() {
                let Some(log) = p.log() else { continue };
                let Some(held) = log.dir().parent().and_then(|root| out.get_mut(root)) else {
                    continue;
                };
                held.extend(f(&t, p, &log));
            }
        }
        out
    }

    /// Writes every local log's high watermark to its log dir's checkpoint (blocking). Every
    /// log dir gets a file, an empty one when it holds no log, so no stale entry outlives its
    /// partition.
    pub fn checkpoint_high_watermarks(&self) -> Result<(), CheckpointError> {
        let _writer = self.checkpoint_writer.lock();
        let mut by_dir =
            self.by_log_dir(|t, p, _| Some(((t.name.clone(), p.index), p.high_watermark())));
        // An offline replica keeps the high watermark it was checkpointed with, for the start
        // that opens it again. (Its key is taken first: the checkpoints' lock is never held
        // while taking a partition list's.)
        for key in self.offline_replicas() {
            let Some(hw) = self.hw_checkpoints.lock().get(&key).copied() else {
                continue;
            };
            let dir = self.partition_dir(&key.0, key.1);
            if let Some(held) = dir.parent().and_then(|root| by_dir.get_mut(root)) {
                held.push((key, hw));
            }
        }
        let mut failed = None;
        for (dir, hws) in by_dir {
            if let Err(e) = hw_checkpoint::write(&dir, &hws.into_iter().collect()) {
                failed.get_or_insert(e);
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// The (topic, partition) of every replica on this node that is offline.
    fn offline_replicas(&self) -> Vec<(String, i32)> {
        let mut out = Vec::new();
        for t in self.topics() {
            let partitions = t.partitions.read();
            let offline = partitions.iter().filter(|p| p.offline_reason().is_some());
            out.extend(offline.map(|p| (t.name.clone(), p.index)));
        }
        out
    }

    /// The last writes of a clean shutdown: fsyncs every local log, then checkpoints the high
    /// watermarks (blocking). Returns whether every log (and checkpoint) was flushed.
    pub fn flush_and_checkpoint(&self) -> bool {
        let mut all = true;
        for t in self.topics() {
            for p in t.partitions.read().iter() {
                if let Err(e) = p.log().map_or(Ok(()), |mut log| p.flush_log(&mut log)) {
                    tracing::warn!(topic = %p.topic, partition = p.index, error = %error_chain(&e), "flush at shutdown failed");
                    all = false;
                }
            }
        }
        if let Err(e) = self.checkpoint_high_watermarks() {
            tracing::warn!(error = %error_chain(&e), "high-watermark checkpoint at shutdown failed");
            all = false;
        }
        all
    }

    /// The last step of a clean stop, once nothing writes the logs any more: flushes them and
    /// marks the log dirs shut down cleanly, so the next start opens them without recovery. A
    /// log that could not be flushed leaves no marker.
    pub fn close_cleanly(&self) {
        if !self.flush_and_checkpoint() {
            return;
        }
        // An offline replica's log was never opened (so never recovered) in this run: it may
        // still hold a crash's torn tail, which only a recovering open checks.
        if !self.offline_replicas().is_empty() {
            tracing::info!("an offline replica: no clean-shutdown marker");
            return;
        }
        match clean_shutdown::mark(&self.config.log_dirs) {
            Ok(()) => tracing::info!("logs flushed: log dirs marked shut down cleanly"),
            Err(e) => tracing::warn!(error = %e, "writing the clean-shutdown markers failed"),
        }
    }
}

/// Whether `state` leaves `node` without a replica: it names replicas, and `node` is not among
/// them. (A state naming none is no reason to delete anything.)
fn moved_off(state: &PartitionImage, node: i32) -> bool {
    !state.replicas.is_empty() && !state.replicas.contains(&node)
}

/// The checkpointed high watermarks of every log dir. One that cannot be read is skipped with
/// a warning: its partitions start from their log starts, as before checkpoints existed.
pub(super) fn read_checkpoints(log_dirs: &[PathBuf]) -> hw_checkpoint::HighWatermarks {
    let mut out = hw_checkpoint::HighWatermarks::new();
    for dir in log_dirs {
        match hw_checkpoint::read(dir) {
            Ok(hws) => out.extend(hws),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %error_chain(&e), "ignoring an unreadable high-watermark checkpoint")
            }
        }
    }
    out
}

/// Closes the local log of a deleted topic's partition and deletes its directory (blocking).
pub(super) fn delete_log(p: &Partition) {
    if let Some(dir) = p.remove_log(&mut p.log.lock()) {
        remove_partition_dir(&dir);
    }
}

fn remove_partition_dir(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "could not delete a partition directory");
    }
}
