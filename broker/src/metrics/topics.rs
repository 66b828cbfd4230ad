//! Per-topic and per-partition series, as Kafka's BrokerTopicMetrics and Log metrics, with
//! bounded cardinality: the first `metrics.topic.labels.max` topics this broker serves get a
//! `topic` label value of their own, kept while the topic exists; every other topic adds to
//! [`OTHER`]. Per-partition series (log end and start offsets, size, high watermark) exist only
//! for labelled topics, and only for the first `metrics.partition.labels.max` partitions.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::cluster::Cluster;

use super::Scrape;

/// The `topic` label value of the topics past the cap. Parentheses are not allowed in Kafka
/// topic names, so no topic can be mistaken for it.
pub const OTHER: &str = "(other)";

/// What one topic (or the [`OTHER`] bucket) counted on this broker.
#[derive(Debug, Default)]
pub struct TopicCounters {
    /// Record bytes appended by producers (BytesInPerSec).
    pub bytes_in: AtomicU64,
    /// Records appended by producers (MessagesInPerSec).
    pub messages_in: AtomicU64,
    /// Record bytes returned to consumers (BytesOutPerSec; followers' fetches excluded).
    pub bytes_out: AtomicU64,
    /// Partition appends refused for a reason other than leadership or an unknown partition
    /// (FailedProduceRequestsPerSec).
    pub failed_produce: AtomicU64,
    /// Partition reads that failed for the same kind of reason (FailedFetchRequestsPerSec).
    pub failed_fetch: AtomicU64,
}

impl TopicCounters {
    /// Counts an append of `messages` records in `bytes`.
    pub fn produced(&self, bytes: u64, messages: u64) {
        self.bytes_in.fetch_add(bytes, Ordering::Relaxed);
        self.messages_in.fetch_add(messages, Ordering::Relaxed);
    }

    fn get(&self, field: Field) -> u64 {
        field(self).load(Ordering::Relaxed)
    }
}

/// One of [`TopicCounters`]' counters.
type Field = fn(&TopicCounters) -> &AtomicU64;

/// The topics with series of their own, and the rest.
#[derive(Debug)]
pub struct TopicSeries {
    cap: usize,
    labelled: RwLock<HashMap<String, Arc<TopicCounters>>>,
    other: Arc<TopicCounters>,
}

impl TopicSeries {
    /// At most `cap` topics labelled.
    pub fn new(cap: usize) -> TopicSeries {
        TopicSeries {
            cap,
            labelled: RwLock::default(),
            other: Arc::default(),
        }
    }

    /// The counters of `topic`: its own while it holds (or can take) one of the cap's slots,
    /// else the [`OTHER`] bucket's.
    pub fn of(&self, topic: &str) -> Arc<TopicCounters> {
        {
            let labelled = self.labelled.read();
            if let Some(c) = labelled.get(topic) {
                return Arc::clone(c);
            }
            if labelled.len() >= self.cap {
                return Arc::clone(&self.other);
            }
        }
        let mut labelled = self.labelled.write();
        if labelled.len() >= self.cap && !labelled.contains_key(topic) {
            return Arc::clone(&self.other);
        }
        Arc::clone(labelled.entry(topic.to_string()).or_default())
    }

    /// Whether every slot is taken.
    pub fn is_full(&self) -> bool {
        self.labelled.read().len() >= self.cap
    }

    /// Frees the slots of topics that no longer exist (their series end).
    pub fn retain(&self, exists: impl Fn(&str) -> bool) {
        self.labelled.write().retain(|t, _| exists(t));
    }

    /// The labelled topics, by name.
    pub fn labelled(&self) -> BTreeSet<String> {
        self.labelled.read().keys().cloned().collect()
    }

    /// Adds the per-topic counters to `out`.
    pub fn scrape(&self, out: &mut Scrape) {
        let mut rows: Vec<(String, Arc<TopicCounters>)> = self
            .labelled
            .read()
            .iter()
            .map(|(t, c)| (t.clone(), Arc::clone(c)))
            .collect();
        rows.push((OTHER.to_string(), Arc::clone(&self.other)));
        let families: [(&str, &str, Field); 5] = [
            (
                "gregor_topic_bytes_in_total",
                "Record bytes appended by producers, by topic",
                |c| &c.bytes_in,
            ),
            (
                "gregor_topic_messages_in_total",
                "Records appended by producers, by topic",
                |c| &c.messages_in,
            ),
            (
                "gregor_topic_bytes_out_total",
                "Record bytes returned to consumers, by topic",
                |c| &c.bytes_out,
            ),
            (
                "gregor_topic_failed_produce_requests_total",
                "Partition appends refused (not for leadership or an unknown partition), by topic",
                |c| &c.failed_produce,
            ),
            (
                "gregor_topic_failed_fetch_requests_total",
                "Partition reads that failed (not for leadership or an unknown partition), by topic",
                |c| &c.failed_fetch,
            ),
        ];
        for (name, help, field) in families {
            out.counters(
                name,
                help,
                &["topic"],
                rows.iter().map(|(t, c)| (vec![t.as_str()], c.get(field))),
            );
        }
    }
}

/// Whether a partition's error code counts in the topic's failed produce or fetch requests.
/// As Kafka's FailedProduceRequestsPerSec and FailedFetchRequestsPerSec, the refusals every
/// client expects and handles by itself (leadership and epochs, unknown partitions, offsets
/// out of range, oversized or corrupt batches, storage errors) and authorization are not
/// counted: what is left are the broker's failures and invalid records.
pub fn counts_as_failed(code: i16) -> bool {
    use kafka_protocol::ResponseError::*;
    let expected = [
        NotLeaderOrFollower,
        UnknownTopicOrPartition,
        UnknownTopicId,
        FencedLeaderEpoch,
        UnknownLeaderEpoch,
        OffsetOutOfRange,
        RecordListTooLarge,
        MessageTooLarge,
        CorruptMessage,
        KafkaStorageError,
        TopicAuthorizationFailed,
        InvalidRequiredAcks,
        InvalidTopicException,
        ReplicaNotAvailable,
        InconsistentTopicId,
        // A transactional produce's verification (KIP-890) refused it before any append.
        ConcurrentTransactions,
        NotCoordinator,
        CoordinatorNotAvailable,
        InvalidTxnState,
    ];
    code != 0 && !expected.iter().any(|e| e.code() == code)
}

/// One partition's offsets and size, as this broker's replica has them.
struct PartitionRow {
    topic: String,
    index: String,
    log_end: i64,
    log_start: i64,
    size: Option<u64>,
    /// Only on the leader, whose high watermark is the partition's.
    high_watermark: Option<i64>,
}

/// The per-partition series of the labelled topics' local replicas, at most `cap` partitions
/// (by topic name, then index).
pub fn scrape_partitions(cluster: &Cluster, topics: &TopicSeries, cap: usize, out: &mut Scrape) {
    let me = cluster.config.node_id;
    let mut rows = Vec::new();
    'topics: for name in topics.labelled() {
        let Some(topic) = cluster.topic(&name) else {
            continue;
        };
        for p in topic.partitions.read().iter() {
            let state = p.state();
            if !state.replicas.contains(&me) {
                continue;
            }
            if rows.len() >= cap {
                break 'topics;
            }
            rows.push(PartitionRow {
                topic: name.clone(),
                index: p.index.to_string(),
                log_end: p.log_end_offset(),
                log_start: p.log_start_offset(),
                size: p.try_log().map(|l| l.size_bytes()),
                high_watermark: (state.leader == me).then(|| p.high_watermark()),
            });
        }
    }
    let labels = ["topic", "partition"];
    fn key(r: &PartitionRow) -> Vec<&str> {
        vec![r.topic.as_str(), r.index.as_str()]
    }
    out.gauges(
        "gregor_partition_log_end_offset",
        "The log end offset of this broker's replica",
        &labels,
        rows.iter().map(|r| (key(r), r.log_end)),
    );
    out.gauges(
        "gregor_partition_log_start_offset",
        "The log start offset of this broker's replica",
        &labels,
        rows.iter().map(|r| (key(r), r.log_start)),
    );
    out.gauges(
        "gregor_partition_size_bytes",
        "Bytes of this broker's replica's log",
        &labels,
        rows.iter().filter_map(|r| Some((key(r), r.size? as i64))),
    );
    out.gauges(
        "gregor_partition_high_watermark",
        "The partition's high watermark, on its leader",
        &labels,
        rows.iter()
            .filter_map(|r| Some((key(r), r.high_watermark?))),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_past_the_cap_share_the_other_bucket_until_a_slot_frees() {
        let s = TopicSeries::new(2);
        s.of("a").produced(10, 1);
        s.of("b").produced(20, 2);
        s.of("c").produced(30, 3);
        s.of("d").produced(40, 4);
        s.of("a").produced(1, 1);
        assert_eq!(s.labelled(), BTreeSet::from(["a".into(), "b".into()]));
        assert_eq!(s.of("a").bytes_in.load(Ordering::Relaxed), 11);
        assert_eq!(s.other.bytes_in.load(Ordering::Relaxed), 70);
        assert_eq!(s.other.messages_in.load(Ordering::Relaxed), 7);
        // "b" is deleted: its slot goes to the next topic seen.
        s.retain(|t| t != "b");
        s.of("c").produced(5, 1);
        assert_eq!(s.labelled(), BTreeSet::from(["a".into(), "c".into()]));
        assert_eq!(s.of("c").bytes_in.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn only_failures_clients_do_not_handle_by_themselves_count() {
        use kafka_protocol::ResponseError;
        assert!(!counts_as_failed(0));
        assert!(!counts_as_failed(ResponseError::NotLeaderOrFollower.code()));
        assert!(!counts_as_failed(ResponseError::RecordListTooLarge.code()));
        assert!(counts_as_failed(ResponseError::NotEnoughReplicas.code()));
        assert!(counts_as_failed(ResponseError::InvalidRecord.code()));
        assert!(counts_as_failed(ResponseError::UnknownServerError.code()));
    }

    #[test]
    fn a_cap_of_zero_puts_every_topic_in_the_other_bucket() {
        let s = TopicSeries::new(0);
        s.of("a").produced(1, 1);
        assert!(s.labelled().is_empty());
        let mut out = Scrape::default();
        s.scrape(&mut out);
        let text = out.render_for_test();
        assert!(
            text.contains("gregor_topic_bytes_in_total{topic=\"(other)\"} 1"),
            "{text}"
        );
        assert!(!text.contains("topic=\"a\""), "{text}");
    }

    #[test]
    fn every_topic_family_has_one_series_per_labelled_topic_and_one_other() {
        let s = TopicSeries::new(3);
        for i in 0..10 {
            s.of(&format!("t{i}")).produced(1, 1);
        }
        let mut out = Scrape::default();
        s.scrape(&mut out);
        let text = out.render_for_test();
        for family in [
            "gregor_topic_bytes_in_total",
            "gregor_topic_messages_in_total",
            "gregor_topic_bytes_out_total",
            "gregor_topic_failed_produce_requests_total",
            "gregor_topic_failed_fetch_requests_total",
        ] {
            let series = text
                .lines()
                .filter(|l| l.starts_with(&format!("{family}{{")))
                .count();
            assert_eq!(series, 4, "{family} in\n{text}");
        }
    }
}
