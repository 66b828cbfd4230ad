//! Bringing this node's topics and partitions in line with the committed metadata image. Admin
//! operations on the node that committed a change apply it themselves; every other node (and
//! this one after a change committed elsewhere) gets it here, from the image the quorum member
//! applied. Runs under the metadata lock, so it sees an admin operation either wholly done or
//! not begun, and is a no-op when nothing differs.

use super::*;

impl Cluster {
    /// Applies `image` to the local state: brokers, producer-id blocks, topics created, grown,
    /// reconfigured or deleted, and partition leadership (blocking). Returns how many things
    /// changed.
    pub fn reconcile(&self, image: &MetadataImage) -> Result<usize, AdminError> {
        self.reconcile_latest(|| image.clone())
    }

    /// Like [`Cluster::reconcile`], with the image read only once the metadata lock is held.
    /// An image captured before waiting for the lock may predate a change an admin operation
    /// committed and applied meanwhile, and would undo it; one read under the lock cannot.
    pub fn reconcile_latest(
        &self,
        latest: impl FnOnce() -> MetadataImage,
    ) -> Result<usize, AdminError> {
        let mut meta = self.meta.lock();
        let image = &latest();
        let mut changed = 0;
        // Before the topics: their logs resolve their configs over the new defaults.
        if self.apply_broker_configs(image.broker_configs.clone()) {
            changed += 1;
        }
        if self.apply_acls(&image.acls) {
            changed += 1;
        }
        if self.apply_scram(&image.scram) {
            changed += 1;
        }
        if self.apply_quotas(&image.quotas) {
            changed += 1;
        }
        if self.apply_group_configs(&image.group_configs) {
            changed += 1;
        }
        if *self.brokers.read() != image.brokers {
            *self.brokers.write() = image.brokers.clone();
            changed += 1;
        }
        // Legacy blocks (ProducerIds) were taken by whoever wrote them last: never hand out
        // ids below a block another node reserved. (AllocateProducerIds blocks are owned.)
        if image.producer_blocks.is_empty() && image.next_producer_id > meta.producer_id_block_end {
            meta.next_producer_id = image.next_producer_id;
            meta.producer_id_block_end = image.next_producer_id;
            changed += 1;
        }
        for (name, t) in &image.topics {
            match self.topic(name) {
                Some(existing) if existing.id == t.id => {
                    changed += self.reconcile_topic(&existing, t)?;
                }
                other => {
                    if let Some(old) = other {
                        // Deleted and re-created elsewhere: the old data goes.
                        self.remove_locally(&old);
                    }
                    let topic = self.open_topic(
                        name,
                        t.id,
                        t.partitions,
                        t.replication_factor,
                        t.configs.clone(),
                        &t.assignment,
                    )?;
                    self.topics.write().insert(name.clone(), topic);
                    tracing::info!(topic = %name, "topic created by the controller");
                    changed += 1;
                }
            }
        }
        let gone: Vec<Arc<Topic>> = self
            .topics()
            .into_iter()
            .filter(|t| !image.topics.contains_key(&t.name))
            .collect();
        for t in gone {
            self.remove_locally(&t);
            changed += 1;
        }
        Ok(changed)
    }

    fn reconcile_topic(
        &self,
        topic: &Topic,
        image: &image::TopicImage,
    ) -> Result<usize, AdminError> {
        let mut changed = 0;
        if *topic.configs.read() != image.configs {
            let log_config =
                topic_config::resolve_log_config(&self.effective_config(), &image.configs)
                    .map_err(AdminError::InvalidConfig)?;
            topic.reconfigure(image.configs.clone(), &log_config);
            changed += 1;
        }
        if image.partitions > topic.partition_count() {
            self.add_partitions(topic, image.partitions, &image.assignment)?;
            changed += 1;
        }
        for p in topic.partitions.read().iter() {
            let Some(state) = image.assignment.get(&p.index) else {
                continue;
            };
            if self.apply_partition(topic, p, state)? {
                changed += 1;
            }
        }
        Ok(changed)
    }
}
