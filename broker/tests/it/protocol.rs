//! Protocol behaviour against a real broker process: version negotiation, topic admin errors,
//! produce/fetch round trips, idempotence, acks=0, restart durability and metrics.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use kafka_protocol::ResponseError;

use crate::support::{api_versions_error, raw_header, Broker, Conn};

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

pub fn create(c: &mut Conn, topic: &str, partitions: i32) -> CreateTopicsResponse {
    c.call(
        5,
        &CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(name(topic))
                .with_num_partitions(partitions)
                .with_replication_factor(1)])
            .with_timeout_ms(5000),
    )
}

/// A v2 batch of `values`, optionally from an idempotent producer.
pub fn batch(
    values: &[&str],
    producer: Option<(i64, i16, i32)>,
    compression: Compression,
) -> Bytes {
    encode_values(values, producer, compression, false)
}

/// A v2 batch of `values` in the transaction of producer (id, epoch), from sequence `seq`.
pub fn transactional_batch(values: &[&str], producer: (i64, i16, i32)) -> Bytes {
    encode_values(values, Some(producer), Compression::None, true)
}

fn encode_values(
    values: &[&str],
    producer: Option<(i64, i16, i32)>,
    compression: Compression,
    transactional: bool,
) -> Bytes {
    let (pid, epoch, seq) = producer.unwrap_or((-1, -1, -1));
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: pid,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: if seq < 0 { -1 } else { seq + i as i32 },
            timestamp: 1_700_000_000_000 + i as i64,
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
    .expect("encode");
    buf.freeze()
}

pub fn produce(c: &mut Conn, topic: &str, partition: i32, acks: i16, records: Bytes) -> (i16, i64) {
    let req = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])]);
    let r = c.call(8, &req);
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

pub fn fetch_values(
    c: &mut Conn,
    topic: &str,
    partition: i32,
    offset: i64,
) -> (i16, Vec<(i64, String)>) {
    let req = FetchRequest::default()
        .with_max_wait_ms(100)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
    let r = c.call(11, &req);
    let p = &r.responses[0].partitions[0];
    let mut out = Vec::new();
    if let Some(mut records) = p.records.clone() {
        assert!(p.records.is_some(), "records must never be null");
        for set in RecordBatchDecoder::decode_all(&mut records).expect("decode") {
            for r in set.records {
                if r.offset >= offset {
                    let v = r.value.map(|v| String::from_utf8_lossy(&v).to_string());
                    out.push((r.offset, v.unwrap_or_default()));
                }
            }
        }
    }
    (p.error_code, out)
}

#[test]
fn api_versions_lists_served_apis_and_downgrades_unknown_versions() {
    let b = Broker::start();
    let mut c = Conn::connect(b.addr);
    let r = c.call(3, &ApiVersionsRequest::default());
    assert_eq!(r.error_code, 0);
    let produce = r
        .api_keys
        .iter()
        .find(|k| k.api_key == 0)
        .expect("produce listed");
    // Up to v12: a transaction.version 2 producer adds partitions by producing (KIP-890).
    assert_eq!((produce.min_version, produce.max_version), (0, 12));
    // Share groups (KIP-932) are served, with the share coordinator's state APIs.
    for served in [
        ApiKey::ShareGroupHeartbeat,
        ApiKey::ReadShareGroupState,
        ApiKey::ReadShareGroupStateSummary,
    ] {
        assert!(r.api_keys.iter().any(|k| k.api_key == served as i16));
    }
    // ApiVersions v99: a v0 body with UNSUPPORTED_VERSION listing ApiVersions' range.
    c.send_raw(&raw_header(18, 99, 7));
    let frame = c.read_frame().expect("v0 error response");
    assert_eq!(
        api_versions_error(frame),
        ResponseError::UnsupportedVersion.code()
    );
}

#[test]
fn bad_topic_requests_get_kafka_error_codes() {
    let b = Broker::start();
    let mut c = Conn::connect(b.addr);
    let r = create(&mut c, "bad name!", 1);
    assert_eq!(
        r.topics[0].error_code,
        ResponseError::InvalidTopicException.code()
    );
    assert!(r.topics[0]
        .error_message
        .as_ref()
        .is_some_and(|m| m.contains("bad name!")));
    let r = create(&mut c, "negative", -5);
    assert_eq!(
        r.topics[0].error_code,
        ResponseError::InvalidPartitions.code()
    );
    let r = create(&mut c, "zero", 0);
    assert_eq!(
        r.topics[0].error_code,
        ResponseError::InvalidPartitions.code()
    );
    let r = create(&mut c, "ok", 2);
    assert_eq!(r.topics[0].error_code, 0);
    let r = create(&mut c, "ok", 2);
    assert_eq!(
        r.topics[0].error_code,
        ResponseError::TopicAlreadyExists.code()
    );
    let m = c.call(
        9,
        &MetadataRequest::default()
            .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
            )
            .with_name(Some(name("no/such")))]))
            .with_allow_auto_topic_creation(true),
    );
    assert_eq!(
        m.topics[0].error_code,
        ResponseError::InvalidTopicException.code()
    );
    let (err, _) = produce(
        &mut c,
        "missing-topic",
        0,
        1,
        batch(&["x"], None, Compression::None),
    );
    assert_eq!(err, ResponseError::UnknownTopicOrPartition.code());
    let (err, _) = produce(&mut c, "ok", 7, 1, batch(&["x"], None, Compression::None));
    assert_eq!(err, ResponseError::UnknownTopicOrPartition.code());
}

#[test]
fn produce_then_fetch_round_trips_every_codec_and_survives_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let b = Broker::start_in(&data, &[]);
    let mut c = Conn::connect(b.addr);
    assert_eq!(create(&mut c, "rt", 1).topics[0].error_code, 0);
    let codecs = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    let mut expected = Vec::new();
    for (i, codec) in codecs.into_iter().enumerate() {
        let vals: Vec<String> = (0..3).map(|j| format!("{codec:?}-{i}-{j}")).collect();
        let refs: Vec<&str> = vals.iter().map(String::as_str).collect();
        let (err, base) = produce(&mut c, "rt", 0, -1, batch(&refs, None, codec));
        assert_eq!(err, 0);
        assert_eq!(base, (i * 3) as i64);
        expected.extend(vals);
    }
    let (err, got) = fetch_values(&mut c, "rt", 0, 0);
    assert_eq!(err, 0);
    assert_eq!(
        got.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(),
        expected
    );
    // Mid-batch fetch returns the whole batch; the client skips earlier records.
    let (_, got) = fetch_values(&mut c, "rt", 0, 4);
    assert_eq!(got.first().map(|(o, _)| *o), Some(4));
    // Past the end: OFFSET_OUT_OF_RANGE.
    let (err, _) = fetch_values(&mut c, "rt", 0, 1000);
    assert_eq!(err, ResponseError::OffsetOutOfRange.code());
    drop(c);
    assert!(b.stop().success(), "SIGTERM should exit cleanly");
    let b = Broker::start_in(&data, &[]);
    let mut c = Conn::connect(b.addr);
    let (_, got) = fetch_values(&mut c, "rt", 0, 0);
    assert_eq!(
        got.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(),
        expected
    );
}

#[test]
fn idempotent_duplicates_get_the_original_offset_and_gaps_are_refused() {
    let b = Broker::start();
    let mut c = Conn::connect(b.addr);
    let pid = c.call(
        1,
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60000),
    );
    assert_eq!(pid.error_code, 0);
    let p = (pid.producer_id.0, pid.producer_epoch, 0);
    assert_eq!(create(&mut c, "idem", 1).topics[0].error_code, 0);
    let first = batch(&["a", "b"], Some(p), Compression::None);
    assert_eq!(produce(&mut c, "idem", 0, -1, first.clone()), (0, 0));
    assert_eq!(
        produce(&mut c, "idem", 0, -1, first),
        (0, 0),
        "duplicate answered with original offset"
    );
    let next = batch(&["c"], Some((p.0, p.1, 2)), Compression::None);
    assert_eq!(produce(&mut c, "idem", 0, -1, next), (0, 2));
    let gap = batch(&["e"], Some((p.0, p.1, 9)), Compression::None);
    let (err, _) = produce(&mut c, "idem", 0, -1, gap);
    assert_eq!(err, ResponseError::OutOfOrderSequenceNumber.code());
    let (_, got) = fetch_values(&mut c, "idem", 0, 0);
    assert_eq!(got.len(), 3, "no duplicate was written: {got:?}");
}

#[test]
fn acks_zero_gets_no_response_and_later_responses_stay_in_order() {
    let b = Broker::start();
    let mut c = Conn::connect(b.addr);
    assert_eq!(create(&mut c, "fire", 1).topics[0].error_code, 0);
    let req = ProduceRequest::default()
        .with_acks(0)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name("fire"))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch(&["f"], None, Compression::None)))])]);
    c.send(8, &req);
    // Pipelined: the next response must be the metadata one (recv asserts the correlation id).
    let m = c.call(9, &MetadataRequest::default().with_topics(None));
    assert!(m
        .topics
        .iter()
        .any(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "fire")));
    let (_, got) = fetch_values(&mut c, "fire", 0, 0);
    assert_eq!(got, vec![(0, "f".to_string())]);
}

#[test]
fn metrics_and_probes_are_served() {
    let b = Broker::start();
    let mut c = Conn::connect(b.addr);
    assert_eq!(create(&mut c, "m", 3).topics[0].error_code, 0);
    produce(
        &mut c,
        "m",
        0,
        1,
        batch(&["x", "y"], None, Compression::None),
    );
    assert_eq!(b.http_get("/healthz").0, 200);
    assert_eq!(b.http_get("/readyz").0, 200);
    let (code, body) = b.http_get("/metrics");
    assert_eq!(code, 200);
    for needle in [
        "gregor_requests_total{api=\"Produce\"} 1",
        "gregor_messages_in_total 2",
        "gregor_connections 1",
        "gregor_request_duration_seconds_bucket{api=\"CreateTopics\"",
        // One node leads all three partitions, with RF 1: healthy.
        "gregor_replica_partitions 3",
        "gregor_leader_partitions 3",
        "gregor_under_replicated_partitions 0",
        "gregor_isr_shrinks_total 0",
        // It is the active controller of a one-voter quorum.
        "gregor_active_controller 1",
        "gregor_global_partitions 3",
        "gregor_offline_partitions 0",
        "gregor_registered_brokers 1",
        "gregor_raft_state{state=\"leader\"} 1",
        "gregor_raft_leader_changes_total 1",
        // Per topic, and per partition for topics within the cap.
        "gregor_topic_bytes_in_total{topic=\"m\"} ",
        "gregor_topic_messages_in_total{topic=\"m\"} 2",
        "gregor_topic_messages_in_total{topic=\"(other)\"} 0",
        "gregor_partition_log_end_offset{partition=\"0\",topic=\"m\"} 2",
        "gregor_partition_high_watermark{partition=\"0\",topic=\"m\"} 2",
        "gregor_partition_log_end_offset{partition=\"2\",topic=\"m\"} 0",
        "gregor_request_size_bytes_count{api=\"Produce\"} 1",
        "gregor_response_size_bytes_count{api=\"Produce\"} 1",
        "gregor_request_queue_seconds_count{api=\"Produce\"} 1",
        "gregor_log_append_seconds_count 1",
        "gregor_log_dir_free_bytes{dir=",
        "process_resident_memory_bytes ",
        "process_open_fds ",
    ] {
        assert!(body.contains(needle), "missing {needle:?} in:\n{body}");
    }
}

#[test]
fn a_long_poll_fetch_returns_as_soon_as_data_arrives() {
    let b = Broker::start();
    let mut c = Conn::connect(b.addr);
    assert_eq!(create(&mut c, "poll", 1).topics[0].error_code, 0);
    let req = FetchRequest::default()
        .with_max_wait_ms(20_000)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name("poll"))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let started = std::time::Instant::now();
    let cid = c.send(11, &req);
    // The fetch is parked: produce on a second connection, then the fetch must answer with it.
    let mut p = Conn::connect(b.addr);
    assert_eq!(
        produce(
            &mut p,
            "poll",
            0,
            1,
            batch(&["wake"], None, Compression::None)
        )
        .0,
        0
    );
    let r = c.recv::<FetchRequest>(11, cid);
    let waited = started.elapsed();
    let records = r.responses[0].partitions[0]
        .records
        .clone()
        .expect("records");
    assert!(!records.is_empty(), "the fetch returned the produced batch");
    assert!(
        waited < std::time::Duration::from_secs(10),
        "woke after {waited:?}, not at max.wait"
    );
    // And with nothing to read, it waits for max.wait before answering empty.
    let started = std::time::Instant::now();
    let empty = c.call(
        11,
        &req.clone()
            .with_max_wait_ms(300)
            .with_topics(vec![FetchTopic::default()
                .with_topic(name("poll"))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(1)
                    .with_partition_max_bytes(1 << 20)])]),
    );
    assert!(started.elapsed() >= std::time::Duration::from_millis(250));
    assert_eq!(
        empty.responses[0].partitions[0]
            .records
            .as_ref()
            .map(|r| r.len()),
        Some(0)
    );
}

#[test]
fn topic_partitions_are_described_a_page_at_a_time_with_a_cursor() {
    use kafka_protocol::messages::describe_topic_partitions_request::{Cursor, TopicRequest};
    let b = Broker::start();
    let mut c = Conn::connect(b.addr);
    assert_eq!(create(&mut c, "pages-a", 3).topics[0].error_code, 0);
    assert_eq!(create(&mut c, "pages-b", 2).topics[0].error_code, 0);
    let ask = |names: &[&str], cursor: Option<(&str, i32)>| {
        DescribeTopicPartitionsRequest::default()
            .with_topics(
                names
                    .iter()
                    .map(|n| TopicRequest::default().with_name(name(n)))
                    .collect(),
            )
            .with_response_partition_limit(2)
            .with_cursor(cursor.map(|(t, p)| {
                Cursor::default()
                    .with_topic_name(name(t))
                    .with_partition_index(p)
            }))
    };
    let page = |r: &DescribeTopicPartitionsResponse| {
        let listed: Vec<(String, i32)> = r
            .topics
            .iter()
            .flat_map(|t| {
                let n = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
                t.partitions
                    .iter()
                    .map(move |p| (n.clone(), p.partition_index))
            })
            .collect();
        let next = r
            .next_cursor
            .as_ref()
            .map(|c| (c.topic_name.0.to_string(), c.partition_index));
        (listed, next)
    };
    let topics = ["pages-b", "pages-a"];
    let first = c.call(0, &ask(&topics, None));
    let owned = |v: &[(&str, i32)]| {
        v.iter()
            .map(|(t, p)| (t.to_string(), *p))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        page(&first),
        (
            owned(&[("pages-a", 0), ("pages-a", 1)]),
            Some(("pages-a".into(), 2))
        )
    );
    assert!(first.topics[0].partitions[0].leader_id.0 >= 0);
    let second = c.call(0, &ask(&topics, Some(("pages-a", 2))));
    assert_eq!(
        page(&second),
        (
            owned(&[("pages-a", 2), ("pages-b", 0)]),
            Some(("pages-b".into(), 1))
        )
    );
    let last = c.call(0, &ask(&topics, Some(("pages-b", 1))));
    assert_eq!(page(&last), (owned(&[("pages-b", 1)]), None));
    // An unknown topic is named with its error; a cursor outside the asked topics is refused.
    let unknown = c.call(0, &ask(&["nope"], None));
    assert_eq!(
        unknown.topics[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    let stray = c.call(0, &ask(&["pages-a"], Some(("pages-b", 0))));
    assert_eq!(
        stray.topics[0].error_code,
        ResponseError::InvalidRequest.code()
    );
    // None named: every topic, in name order.
    let everything = c.call(
        0,
        &DescribeTopicPartitionsRequest::default().with_response_partition_limit(100),
    );
    let names: Vec<String> = everything
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
        .collect();
    assert_eq!(names, ["pages-a", "pages-b"]);
}
