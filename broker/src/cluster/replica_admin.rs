//! Partition reassignments and admin leader elections through the metadata store. Each
//! partition's change is worked out by [`replica_changes`] from the committed state, committed
//! as a conditional record, and applied to the local partition at once (other nodes get it by
//! reconciling). A change that lost to a concurrent one (the controller's elections, a
//! leader's ISR update) is ignored by the image; it is then worked out again from the fresher
//! state, a few times at most.

use super::*;
use image::TopicImage;
use replica_changes::ElectionType;

/// How many times a conditional change is recomputed after losing to a concurrent one.
const ATTEMPTS: usize = 5;

impl Cluster {
    /// Starts the reassignment of `topic`-`partition` to `target`, or cancels the one under way
    /// when `target` is `None` (blocking). `allow_rf_change: false` refuses a target of
    /// another length (KIP-860).
    pub fn alter_reassignment(
        &self,
        topic: &str,
        partition: i32,
        target: Option<&[i32]>,
        allow_rf_change: bool,
    ) -> Result<(), AdminError> {
        let unclean = self.unclean_election_enabled(topic);
        self.change_partition(topic, partition, |image, p| {
            let usable = usable_in(image);
            match target {
                Some(t) => {
                    replica_changes::validate_target(t, &image.brokers)?;
                    if !allow_rf_change {
                        replica_changes::check_replication_factor(p, t)?;
                    }
                    Ok(replica_changes::start(p, t, &usable))
                }
                None => replica_changes::cancel(p, unclean, &usable).map(Some),
            }
        })
    }

    /// Elects a leader for `topic`-`partition` the way `kind` says (ElectLeaders, blocking).
    pub fn elect_leader(
        &self,
        topic: &str,
        partition: i32,
        kind: ElectionType,
    ) -> Result<(), AdminError> {
        self.change_partition(topic, partition, |image, p| {
            replica_changes::elect(p, kind, &usable_in(image)).map(Some)
        })
    }

    /// The partitions with a reassignment under way and their states, by topic name.
    pub fn reassignments(&self) -> BTreeMap<String, Vec<(i32, PartitionImage)>> {
        let mut out = BTreeMap::new();
        for t in self.topics() {
            let ongoing: Vec<(i32, PartitionImage)> = t
                .partitions
                .read()
                .iter()
                .map(|p| (p.index, p.state()))
                .filter(|(_, s)| s.reassigning())
                .collect();
            if !ongoing.is_empty() {
                out.insert(t.name.clone(), ongoing);
            }
        }
        out
    }

    /// Commits the change `decide` makes to `topic`-`partition` in the committed image (`None`:
    /// nothing to change) and applies it locally, recomputing it when a concurrent change got
    /// in first.
    fn change_partition(
        &self,
        topic: &str,
        partition: i32,
        decide: impl Fn(&MetadataImage, &PartitionImage) -> Result<Option<PartitionImage>, AdminError>,
    ) -> Result<(), AdminError> {
        let mut meta = self.meta.lock();
        for _ in 0..ATTEMPTS {
            let image = meta.log.image().unwrap_or_else(|| self.local_image());
            let t = image
                .topics
                .get(topic)
                .ok_or_else(|| AdminError::UnknownTopic(topic.to_string()))?;
            let p = t
                .assignment
                .get(&partition)
                .ok_or_else(|| AdminError::UnknownPartition {
                    topic: topic.to_string(),
                    partition,
                })?;
            let Some(next) = decide(&image, p)? else {
                return Ok(());
            };
            let record = replica_changes::change_record(topic, partition, p, &next);
            let mut predicted = image.clone();
            let applies = predicted.apply(&record);
            let committed = meta.log.append(std::slice::from_ref(&record))?;
            // The quorum reports whether the record changed its image; the local file store
            // (a single writer, whose image is this node's state) does what the copy predicts.
            let after = meta.log.image();
            let applied = match &after {
                Some(_) => committed.applied == 1,
                None => applies,
            };
            if applied {
                let after = after.unwrap_or(predicted);
                self.apply_partition_state(&after, topic, partition)?;
                tracing::info!(topic, partition, change = ?record, "partition change committed");
                return Ok(());
            }
            tracing::debug!(
                topic,
                partition,
                "partition changed concurrently; recomputing"
            );
        }
        Err(AdminError::ChangedConcurrently(format!(
            "partition {topic}-{partition} kept changing concurrently; retry"
        )))
    }

    /// Applies the state `image` holds for `topic`-`partition` to the local partition, if this
    /// node has that topic (it reconciles it later otherwise).
    fn apply_partition_state(
        &self,
        image: &MetadataImage,
        topic: &str,
        partition: i32,
    ) -> Result<(), AdminError> {
        let Some(t) = image.topics.get(topic) else {
            return Ok(());
        };
        let (Some(state), Some(local)) = (t.assignment.get(&partition), self.topic(topic)) else {
            return Ok(());
        };
        if local.id != t.id {
            return Ok(());
        }
        if let Some(p) = local.partition(partition) {
            self.apply_partition(&local, &p, state)?;
        }
        Ok(())
    }

    /// This node's view as an image (brokers and topics with their partition states), for
    /// stores that keep no image of their own.
    fn local_image(&self) -> MetadataImage {
        let topics = self
            .topics()
            .into_iter()
            .map(|t| {
                let assignment = t
                    .partitions
                    .read()
                    .iter()
                    .map(|p| (p.index, p.state()))
                    .collect();
                let image = TopicImage {
                    id: t.id,
                    partitions: t.partition_count(),
                    replication_factor: t.replication_factor,
                    configs: t.configs.read().clone(),
                    assignment,
                };
                (t.name.clone(), image)
            })
            .collect();
        MetadataImage {
            topics,
            brokers: self.brokers(),
            ..MetadataImage::default()
        }
    }

    /// `unclean.leader.election.enable` for `topic`: its override, else the broker's.
    fn unclean_election_enabled(&self, topic: &str) -> bool {
        let default = self
            .effective_config()
            .replication
            .unclean_leader_election_enable;
        self.topic(topic).map_or(default, |t| {
            topic_config::unclean_leader_election_enable(&t.configs.read(), default)
        })
    }
}

/// Which brokers may lead, by the image: registered and unfenced.
fn usable_in(image: &MetadataImage) -> impl Fn(i32) -> bool + '_ {
    |b| image.brokers.get(&b).is_some_and(|x| !x.fenced)
}
