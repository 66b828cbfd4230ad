//! Reading partitions: where their leaders are (Metadata), where their logs start and end
//! (ListOffsets), and their records from a position on (Fetch), with record batches decoded by
//! kafka-protocol's `RecordBatchDecoder` (every codec) after cutting off the partial batch a
//! size-limited fetch may end with.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, ListOffsetsRequest};
use kafka_protocol::records::{RecordBatchDecoder, TimestampType};

use gregor_client::requests::topic_name;
use gregor_client::Cluster;

use super::ToolError;

/// A topic and partition.
pub type Tp = (String, i32);

/// ListOffsets timestamp asking for the log start.
pub const EARLIEST: i64 = -2;
/// ListOffsets timestamp asking for the log end.
pub const LATEST: i64 = -1;
/// Fetch v13 addresses topics by id; this client sends names.
const FETCH_MAX_VERSION: i16 = 12;
/// Bytes asked for per partition and per fetch.
const PARTITION_MAX_BYTES: i32 = 1024 * 1024;
const FETCH_MAX_BYTES: i32 = 50 * 1024 * 1024;
/// Size of a record batch's header up to and including `lastOffsetDelta`.
const BATCH_OFFSETS_END: usize = 27;
/// Size of a whole v2 record batch header.
const BATCH_HEADER_LEN: usize = 61;

/// Where each partition of some topics is led, from one Metadata answer.
#[derive(Debug, Default, Clone)]
pub struct Layout {
    /// Topic to its partitions' leader node ids, by partition index (-1: no leader).
    pub leaders: BTreeMap<String, Vec<i32>>,
}

impl Layout {
    /// Reads the layout of `topics`; a topic that does not exist is an error naming it.
    pub async fn load(cluster: &mut Cluster, topics: &[String]) -> Result<Layout, ToolError> {
        Self::load_with(cluster, topics, false).await
    }

    /// Like [`Layout::load`], letting the broker auto-create missing topics if configured to.
    pub async fn load_with(
        cluster: &mut Cluster,
        topics: &[String],
        allow_auto_create: bool,
    ) -> Result<Layout, ToolError> {
        let meta = cluster
            .metadata_with(Some(topics), allow_auto_create)
            .await?;
        let mut layout = Layout::default();
        for t in meta.topics {
            let name = t
                .name
                .as_ref()
                .map(|n| n.as_str().to_owned())
                .unwrap_or_default();
            let error = ResponseError::try_from_code(t.error_code);
            // A topic being auto-created answers LEADER_NOT_AVAILABLE (or, briefly, unknown)
            // at first: a producer waits for its leaders instead of failing.
            if allow_auto_create && error.is_some_and(|e| e.is_retriable()) {
                layout.leaders.insert(name, Vec::new());
                continue;
            }
            if error == Some(ResponseError::UnknownTopicOrPartition) {
                return Err(ToolError::Failed(format!("Topic '{name}' does not exist")));
            }
            ToolError::check(t.error_code, None, || {
                format!("reading metadata of topic '{name}'")
            })?;
            let mut leaders = vec![-1; t.partitions.len()];
            for p in &t.partitions {
                if let Some(slot) = usize::try_from(p.partition_index)
                    .ok()
                    .and_then(|i| leaders.get_mut(i))
                {
                    *slot = p.leader_id.0;
                }
            }
            layout.leaders.insert(name, leaders);
        }
        Ok(layout)
    }

    /// The number of partitions of `topic` (0 if unknown).
    pub fn partition_count(&self, topic: &str) -> i32 {
        self.leaders.get(topic).map_or(0, |l| l.len() as i32)
    }

    /// The leader of a partition.
    pub fn leader(&self, topic: &str, partition: i32) -> Result<i32, ToolError> {
        usize::try_from(partition)
            .ok()
            .and_then(|p| self.leaders.get(topic)?.get(p).copied())
            .filter(|&l| l >= 0)
            .ok_or_else(|| {
                ToolError::Failed(format!("partition {topic}-{partition} has no leader"))
            })
    }

    /// Whether every partition has a leader (false right after a topic is created).
    pub fn all_led(&self) -> bool {
        self.leaders.values().flatten().all(|&l| l >= 0)
    }

    /// Every partition of every topic in the layout.
    pub fn all_partitions(&self) -> Vec<Tp> {
        self.leaders
            .iter()
            .flat_map(|(t, l)| (0..l.len() as i32).map(move |p| (t.clone(), p)))
            .collect()
    }

    /// Groups partitions by leader node id.
    fn by_leader<'a>(
        &self,
        tps: impl IntoIterator<Item = &'a Tp>,
    ) -> Result<BTreeMap<i32, Vec<&'a Tp>>, ToolError> {
        let mut out: BTreeMap<i32, Vec<&Tp>> = BTreeMap::new();
        for tp in tps {
            out.entry(self.leader(&tp.0, tp.1)?).or_default().push(tp);
        }
        Ok(out)
    }
}

/// Asks each partition's leader for the offset at `timestamp` ([`EARLIEST`], [`LATEST`]).
pub async fn list_offsets(
    cluster: &mut Cluster,
    layout: &Layout,
    tps: &[Tp],
    timestamp: i64,
) -> Result<BTreeMap<Tp, i64>, ToolError> {
    let mut out = BTreeMap::new();
    for (leader, tps) in layout.by_leader(tps)? {
        let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (t, p) in tps {
            topics.entry(t).or_default().push(*p);
        }
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(
                topics
                    .iter()
                    .map(|(t, ps)| {
                        ListOffsetsTopic::default()
                            .with_name(topic_name(t))
                            .with_partitions(
                                ps.iter()
                                    .map(|&p| {
                                        ListOffsetsPartition::default()
                                            .with_partition_index(p)
                                            .with_timestamp(timestamp)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let resp = cluster.broker(leader).await?.send(req).await?;
        for t in resp.topics {
            let topic = t.name.as_str().to_owned();
            for p in t.partitions {
                ToolError::check(p.error_code, None, || {
                    format!("listing offsets of {topic}-{}", p.partition_index)
                })?;
                out.insert((topic.clone(), p.partition_index), p.offset);
            }
        }
    }
    Ok(out)
}

/// One record as the console tools show it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumedRecord {
    /// Topic it came from.
    pub topic: String,
    /// Partition it came from.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its timestamp, in milliseconds since the epoch.
    pub timestamp: i64,
    /// Whether the timestamp is the producer's or the broker's.
    pub timestamp_type: TimestampType,
    /// Its key.
    pub key: Option<Bytes>,
    /// Its value.
    pub value: Option<Bytes>,
    /// Its headers, in order.
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// What one round of fetches produced.
#[derive(Debug, Default)]
pub struct Fetched {
    /// Records at or past each position, in partition then offset order.
    pub records: Vec<ConsumedRecord>,
    /// A leader moved or a partition is unknown: reload the [`Layout`] before the next round.
    pub stale_layout: bool,
    /// Partitions whose position is outside the log and must be reset.
    pub out_of_range: Vec<Tp>,
}

/// Fetches once from every leader of the partitions in `positions`, advancing each position
/// past what was returned.
pub async fn fetch(
    cluster: &mut Cluster,
    layout: &Layout,
    positions: &mut BTreeMap<Tp, i64>,
    max_wait_ms: i32,
) -> Result<Fetched, ToolError> {
    let mut fetched = Fetched::default();
    let tps: Vec<Tp> = positions.keys().cloned().collect();
    for (leader, tps) in layout.by_leader(&tps)? {
        let mut topics: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
        for tp in tps {
            let offset = positions.get(tp).copied().unwrap_or(0);
            topics.entry(&tp.0).or_default().push(
                FetchPartition::default()
                    .with_partition(tp.1)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(PARTITION_MAX_BYTES),
            );
        }
        let client = cluster.broker(leader).await?;
        let version = client.version::<FetchRequest>(Some(FETCH_MAX_VERSION))?;
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(FETCH_MAX_BYTES)
            .with_session_epoch(-1)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        FetchTopic::default()
                            .with_topic(topic_name(t))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        let resp = client.send_at(req, version).await?;
        ToolError::check(resp.error_code, None, || {
            format!("fetching from broker {leader}")
        })?;
        for t in resp.responses {
            let topic = t.topic.as_str().to_owned();
            for p in t.partitions {
                let tp = (topic.clone(), p.partition_index);
                match ResponseError::try_from_code(p.error_code) {
                    None => {}
                    Some(ResponseError::OffsetOutOfRange) => {
                        fetched.out_of_range.push(tp);
                        continue;
                    }
                    Some(e) if e.is_retriable() => {
                        fetched.stale_layout = true;
                        continue;
                    }
                    Some(error) => {
                        return Err(ToolError::Kafka {
                            what: format!("fetching {topic}-{}", p.partition_index),
                            error,
                            message: None,
                        })
                    }
                }
                let Some(position) = positions.get_mut(&tp) else {
                    continue;
                };
                let records = p.records.unwrap_or_default();
                decode_records(&tp, records, position, &mut fetched.records)?;
            }
        }
    }
    Ok(fetched)
}

/// Decodes the complete batches in `data`, keeping records at or past `*position` and moving
/// `*position` past every complete batch (control and fully-skipped ones included).
pub fn decode_records(
    tp: &Tp,
    data: Bytes,
    position: &mut i64,
    out: &mut Vec<ConsumedRecord>,
) -> Result<(), ToolError> {
    let mut rest = data;
    while rest.len() >= BATCH_OFFSETS_END {
        let base_offset = i64::from_be_bytes(array(&rest[0..8]));
        let batch_len = i32::from_be_bytes(array(&rest[8..12]));
        let Some(total) = usize::try_from(batch_len)
            .ok()
            .and_then(|l| l.checked_add(12))
            .filter(|&t| t >= BATCH_HEADER_LEN)
        else {
            return Err(bad_batch(
                tp,
                base_offset,
                &format!("batch length {batch_len} is shorter than a batch header"),
            ));
        };
        if total > rest.len() {
            // A fetch cut at max bytes ends in a partial batch; it comes whole next time.
            break;
        }
        let mut batch = rest.split_to(total);
        let magic = batch[16];
        if magic != 2 {
            return Err(bad_batch(
                tp,
                base_offset,
                &format!("message format v{magic} is not supported (only v2 record batches)"),
            ));
        }
        let last_offset_delta = i32::from_be_bytes(array(&batch[23..27]));
        let set = RecordBatchDecoder::decode(&mut batch)
            .map_err(|e| bad_batch(tp, base_offset, &e.to_string()))?;
        for r in set.records {
            if r.control || r.offset < *position {
                continue;
            }
            out.push(ConsumedRecord {
                topic: tp.0.clone(),
                partition: tp.1,
                offset: r.offset,
                timestamp: r.timestamp,
                timestamp_type: r.timestamp_type,
                key: r.key,
                value: r.value,
                headers: r
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k.as_str().to_owned(), v))
                    .collect(),
            });
        }
        let next = base_offset
            .saturating_add(i64::from(last_offset_delta))
            .saturating_add(1);
        *position = (*position).max(next);
    }
    Ok(())
}

fn array<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut a = [0; N];
    a.copy_from_slice(&s[..N]);
    a
}

fn bad_batch(tp: &Tp, base_offset: i64, reason: &str) -> ToolError {
    ToolError::Failed(format!(
        "cannot decode the record batch at offset {base_offset} of {}-{}: {reason}",
        tp.0, tp.1
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions};

    fn batch(base: i64, values: &[&str], compression: Compression) -> Bytes {
        let records: Vec<Record> = (0i64..)
            .zip(values)
            .map(|(i, v)| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: base + i,
                sequence: -1,
                timestamp: 1_000 + i,
                key: None,
                value: Some(Bytes::copy_from_slice(v.as_bytes())),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        buf.freeze()
    }

    #[test]
    fn records_before_the_position_are_skipped_and_partial_batches_left() {
        let mut data = BytesMut::new();
        data.extend_from_slice(&batch(10, &["a", "b", "c"], Compression::None));
        data.extend_from_slice(&batch(13, &["d"], Compression::Gzip));
        let partial = batch(14, &["e"], Compression::None);
        data.extend_from_slice(&partial[..partial.len() - 3]);
        let tp = ("t".to_string(), 0);
        let mut position = 11;
        let mut out = Vec::new();
        decode_records(&tp, data.freeze(), &mut position, &mut out).unwrap();
        let values: Vec<_> = out.iter().map(|r| r.value.clone().unwrap()).collect();
        assert_eq!(values, vec!["b", "c", "d"]);
        assert_eq!(out[0].offset, 11);
        assert_eq!(position, 14);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_fetch_bytes_never_panic(data: Vec<u8>, flip in 0usize..200) {
            let _ = decode_records(&("t".into(), 0), Bytes::from(data), &mut 0, &mut Vec::new());
            // A real batch with one byte changed must not panic either.
            let mut real = BytesMut::from(&batch(0, &["a", "bb"], Compression::Gzip)[..]);
            let i = flip % real.len();
            real[i] ^= 0x5a;
            let _ = decode_records(&("t".into(), 0), real.freeze(), &mut 0, &mut Vec::new());
        }
    }

    #[test]
    fn a_batch_length_shorter_than_a_header_is_an_error_not_a_panic() {
        let data = vec![0u8; 40];
        let err = decode_records(&("t".into(), 0), Bytes::from(data), &mut 0, &mut Vec::new())
            .unwrap_err();
        assert!(
            err.to_string().contains("shorter than a batch header"),
            "{err}"
        );
    }

    #[test]
    fn a_corrupt_batch_is_an_error_naming_the_partition() {
        let mut data = BytesMut::from(&batch(0, &["a"], Compression::None)[..]);
        let last = data.len() - 1;
        data[last] ^= 0xff;
        data[16] = 1;
        let err =
            decode_records(&("t".into(), 3), data.freeze(), &mut 0, &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("t-3"), "{err}");
    }
}
