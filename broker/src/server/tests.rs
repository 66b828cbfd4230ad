//! Handler behaviour that needs cluster states a single node cannot reach through its API:
//! partitions led by another broker answer NOT_LEADER_OR_FOLLOWER, so clients move to the
//! leader named in Metadata.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use kafka_protocol::ResponseError;

use super::dispatch::{handle, Outcome};
use super::Broker;
use crate::cluster::image::MetadataImage;
use crate::cluster::metadata::MetadataRecord;
use crate::cluster::Cluster;
use crate::config::{parse_properties, Config};
use crate::group::GroupCoordinator;
use crate::metrics::Metrics;

/// A broker (node 1) whose metadata says broker 2 leads `elsewhere-0` and node 1 leads
/// `here-0`.
pub(super) fn broker(dir: &std::path::Path) -> Arc<Broker> {
    broker_over(dir, &two_brokers_image())
}

/// The metadata of [`broker`]: brokers 1 and 2, `elsewhere-0` led by 2 and `here-0` by 1.
pub(super) fn two_brokers_image() -> MetadataImage {
    let mut image = MetadataImage::default();
    register_two_brokers(&mut image);
    for (name, leader) in [("elsewhere", 2), ("here", 1)] {
        image.apply(&MetadataRecord::Topic {
            name: name.into(),
            id: uuid::Uuid::new_v4(),
            partitions: 1,
            replication_factor: 2,
            configs: Default::default(),
        });
        image.apply(&MetadataRecord::PartitionState {
            topic: name.into(),
            partition: 0,
            replicas: vec![leader, 3 - leader],
            leader,
            leader_epoch: 1,
            isr: vec![leader],
        });
    }
    image
}

/// A broker (node 1) over the committed metadata `image`.
pub(super) fn broker_over(dir: &std::path::Path, image: &MetadataImage) -> Arc<Broker> {
    broker_with(dir, image, "")
}

/// Like [`broker_over`], with `extra` lines of `server.properties`.
pub(super) fn broker_with(
    dir: &std::path::Path,
    image: &MetadataImage,
    extra: &str,
) -> Arc<Broker> {
    let props = parse_properties(&format!("node.id=1\nlog.dirs={}\n{extra}", dir.display()));
    let config = Arc::new(Config::from_properties(props).expect("config"));
    let cluster = Arc::new(Cluster::open(config, "c".into()).expect("cluster"));
    cluster.reconcile(image).expect("reconcile");
    let groups = Arc::new(GroupCoordinator::new(Arc::clone(&cluster)));
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    Arc::new(Broker::new(cluster, groups, metrics, None))
}

/// Registers brokers 1 (this node, port 9092) and 2 (port 9093) in `image`.
fn register_two_brokers(image: &mut MetadataImage) {
    for (id, port) in [(1, 9092), (2, 9093)] {
        image.apply(&MetadataRecord::RegisterBroker {
            id,
            host: "localhost".into(),
            port,
            endpoints: Vec::new(),
            rack: None,
        });
    }
}

pub(super) async fn call<R: Request>(b: &Arc<Broker>, version: i16, req: R) -> R::Response {
    call_on(b, "PLAINTEXT", version, req).await
}

/// Like [`call`], on a connection accepted by the listener called `listener`.
async fn call_on<R: Request>(b: &Arc<Broker>, listener: &str, version: i16, req: R) -> R::Response {
    let session = parking_lot::Mutex::new(super::session::Session::new(None, None));
    let (outcome, response) = call_in(b, listener, &session, version, req).await;
    assert!(matches!(outcome, Outcome::Respond), "{outcome:?}");
    response.expect("a response")
}

/// Sends `req` on a connection whose authentication state is `session`: the outcome, and the
/// response when there is one.
pub(super) async fn call_in<R: Request>(
    b: &Arc<Broker>,
    listener: &str,
    session: &parking_lot::Mutex<super::session::Session>,
    version: i16,
    req: R,
) -> (Outcome, Option<R::Response>) {
    let key = ApiKey::try_from(R::KEY).expect("key");
    let mut frame = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("t")))
        .encode(&mut frame, key.request_header_version(version))
        .expect("header");
    req.encode(&mut frame, version).expect("body");
    let peer: SocketAddr = "127.0.0.1:1".parse().expect("addr");
    let mut out = BytesMut::new();
    let mut outcome = handle(b, frame.freeze(), peer, listener, session, &mut out).await;
    if let Outcome::Pending(answer) = outcome {
        out = answer.await.expect("an encoded answer");
        outcome = Outcome::Respond;
    }
    if !matches!(outcome, Outcome::Respond) {
        return (outcome, None);
    }
    let mut body = Bytes::from(out.split_off(4).to_vec());
    ResponseHeader::decode(&mut body, R::Response::header_version(version)).expect("header");
    let response = R::Response::decode(&mut body, version).expect("response");
    (outcome, Some(response))
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

#[tokio::test]
async fn partitions_led_elsewhere_answer_not_leader_and_metadata_names_the_leader() {
    let d = tempfile::tempdir().expect("tempdir");
    let b = broker(d.path());
    let records = one_record();
    for (topic, want) in [
        ("elsewhere", ResponseError::NotLeaderOrFollower.code()),
        ("here", 0),
    ] {
        let produce = ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(1000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(name(topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records.clone()))])]);
        let r = call(&b, 8, produce).await;
        assert_eq!(
            r.responses[0].partition_responses[0].error_code, want,
            "produce {topic}"
        );
        let fetch = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_topics(vec![FetchTopic::default()
                .with_topic(name(topic))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_partition_max_bytes(1 << 20)])]);
        let r = call(&b, 11, fetch).await;
        assert_eq!(
            r.responses[0].partitions[0].error_code, want,
            "fetch {topic}"
        );
        let list = ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![ListOffsetsPartition::default().with_timestamp(-1)])]);
        let r = call(&b, 5, list).await;
        assert_eq!(
            r.topics[0].partitions[0].error_code, want,
            "list offsets {topic}"
        );
    }
    let m = call(&b, 12, MetadataRequest::default().with_topics(None)).await;
    assert_eq!(m.brokers.len(), 2);
    let t = m
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "elsewhere"))
        .expect("topic");
    let p = &t.partitions[0];
    assert_eq!((p.leader_id.0, p.leader_epoch), (2, 1));
    assert_eq!(
        p.replica_nodes.iter().map(|b| b.0).collect::<Vec<_>>(),
        vec![2, 1]
    );
}

/// Brokers 1 (listeners PLAINTEXT and EXTERNAL) and 2 (PLAINTEXT only) registered with their
/// listeners, over `b`'s topics, with `__consumer_offsets` led by `coordinator`.
fn register_listeners(b: &Arc<Broker>, coordinator: i32) {
    let endpoint = |listener: &str, host: &str, port| crate::cluster::image::BrokerEndpoint {
        listener: listener.into(),
        host: host.into(),
        port,
    };
    let mut image = MetadataImage::default();
    for (id, endpoints) in [
        (
            1,
            vec![
                endpoint("PLAINTEXT", "localhost", 9092),
                endpoint("EXTERNAL", "one.example", 19092),
            ],
        ),
        (2, vec![endpoint("PLAINTEXT", "localhost", 9093)]),
    ] {
        image.apply(&MetadataRecord::RegisterBroker {
            id,
            host: "localhost".into(),
            port: endpoints[0].port,
            endpoints,
            rack: None,
        });
    }
    let offsets = (crate::cluster::CONSUMER_OFFSETS, vec![coordinator]);
    let topics = b
        .cluster
        .topics()
        .into_iter()
        .map(|t| (t.name.clone(), t.partition(0).expect("p0").state().replicas))
        .chain([(offsets.0.to_string(), offsets.1)]);
    for (topic, replicas) in topics {
        image.apply(&MetadataRecord::Topic {
            name: topic.clone(),
            id: b
                .cluster
                .topic(&topic)
                .map_or_else(uuid::Uuid::new_v4, |t| t.id),
            partitions: 1,
            replication_factor: 2,
            configs: Default::default(),
        });
        image.apply(&MetadataRecord::PartitionState {
            topic,
            partition: 0,
            leader: replicas[0],
            isr: replicas.clone(),
            replicas,
            leader_epoch: 1,
        });
    }
    b.cluster.reconcile(&image).expect("reconcile");
}

#[tokio::test]
async fn metadata_answers_with_the_addresses_of_the_listener_the_request_came_through() {
    let d = tempfile::tempdir().expect("tempdir");
    let b = broker(d.path());
    register_listeners(&b, 2);
    let leader = |m: &MetadataResponse, topic: &str| {
        let t = m
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
            .expect("topic");
        (t.partitions[0].error_code, t.partitions[0].leader_id.0)
    };
    let brokers = |m: &MetadataResponse| {
        m.brokers
            .iter()
            .map(|b| (b.node_id.0, b.host.to_string(), b.port))
            .collect::<Vec<_>>()
    };
    let all = || MetadataRequest::default().with_topics(None);

    let m = call_on(&b, "PLAINTEXT", 12, all()).await;
    assert_eq!(
        brokers(&m),
        [(1, "localhost".into(), 9092), (2, "localhost".into(), 9093)]
    );
    assert_eq!(leader(&m, "elsewhere"), (0, 2));

    let m = call_on(&b, "EXTERNAL", 12, all()).await;
    assert_eq!(
        brokers(&m),
        [(1, "one.example".into(), 19092)],
        "broker 2 has no EXTERNAL listener"
    );
    assert_eq!(leader(&m, "here"), (0, 1));
    assert_eq!(
        leader(&m, "elsewhere"),
        (ResponseError::ListenerNotFound.code(), -1),
        "its leader is alive but lacks the listener"
    );
    let m = call_on(&b, "EXTERNAL", 5, all()).await;
    assert_eq!(
        leader(&m, "elsewhere"),
        (ResponseError::LeaderNotAvailable.code(), -1),
        "before v6 Kafka answers LEADER_NOT_AVAILABLE"
    );

    let d = call_on(&b, "EXTERNAL", 0, DescribeClusterRequest::default()).await;
    let listed: Vec<_> = d
        .brokers
        .iter()
        .map(|b| (b.broker_id.0, b.host.to_string(), b.port))
        .collect();
    assert_eq!(listed, [(1, "one.example".into(), 19092)]);
}

#[tokio::test]
async fn find_coordinator_answers_with_the_listener_the_request_came_through() {
    let d = tempfile::tempdir().expect("tempdir");
    let b = broker(d.path());
    let find = || FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g"));
    register_listeners(&b, 1);
    let r = call_on(&b, "EXTERNAL", 3, find()).await;
    assert_eq!(
        (r.error_code, r.node_id.0, r.host.as_str(), r.port),
        (0, 1, "one.example", 19092)
    );
    let r = call_on(&b, "PLAINTEXT", 3, find()).await;
    assert_eq!((r.host.as_str(), r.port), ("localhost", 9092));
    register_listeners(&b, 2);
    let r = call_on(&b, "EXTERNAL", 3, find()).await;
    assert_eq!(
        (r.error_code, r.node_id.0),
        (ResponseError::CoordinatorNotAvailable.code(), -1),
        "the coordinator has no EXTERNAL listener"
    );
}

#[tokio::test]
async fn transaction_and_share_coordinators_are_found_and_an_unknown_key_type_refused() {
    let d = tempfile::tempdir().expect("tempdir");
    let b = broker(d.path());
    register_listeners(&b, 1);
    let txn = FindCoordinatorRequest::default()
        .with_key(StrBytes::from_static_str("app-1"))
        .with_key_type(1);
    let r = call(&b, 3, txn).await;
    assert_eq!(r.error_code, 0);
    let leader = b.txns.coordinator_for("app-1").expect("a coordinator");
    assert_eq!(
        r.node_id.0, leader,
        "the leader of the id's state partition"
    );
    let state = b
        .cluster
        .topic(crate::cluster::TRANSACTION_STATE)
        .expect("__transaction_state is created on first use");
    assert_eq!(state.partition_count(), 50);
    assert!(state.is_internal());
    // A share coordinator: the leader of the key's __share_group_state partition.
    let key = "share-1:AAAAAAAAAAAAAAAAAAAAAQ:0";
    let batched = FindCoordinatorRequest::default()
        .with_key_type(2)
        .with_coordinator_keys(vec![StrBytes::from_static_str(key)]);
    let r = call(&b, 4, batched).await;
    assert_eq!(r.coordinators[0].error_code, 0);
    let state = b
        .cluster
        .topic(crate::cluster::SHARE_GROUP_STATE)
        .expect("__share_group_state is created on first use");
    let index = crate::group::offsets_log::partition_for(key, state.partition_count());
    let leader = state.partition(index).expect("partition").state().leader;
    assert_eq!(r.coordinators[0].node_id.0, leader);
    // An unknown key type is refused, saying so.
    let unknown = FindCoordinatorRequest::default()
        .with_key_type(3)
        .with_coordinator_keys(vec![StrBytes::from_static_str("x")]);
    let r = call(&b, 4, unknown).await;
    assert_eq!(
        r.coordinators[0].error_code,
        ResponseError::InvalidRequest.code()
    );
    let message = r.coordinators[0].error_message.clone().expect("a message");
    assert!(
        message.contains("unknown coordinator key type 3"),
        "{message}"
    );
}

#[tokio::test]
async fn groups_whose_offsets_partition_is_led_elsewhere_are_sent_to_that_broker() {
    let d = tempfile::tempdir().expect("tempdir");
    let b = broker(d.path());
    // A one-partition offsets topic led by broker 2: it coordinates every group.
    let mut image = MetadataImage::default();
    register_two_brokers(&mut image);
    for t in b.cluster.topics() {
        let s = t.partition(0).expect("p0").state();
        image.apply(&MetadataRecord::Topic {
            name: t.name.clone(),
            id: t.id,
            partitions: 1,
            replication_factor: 2,
            configs: Default::default(),
        });
        image.apply(&MetadataRecord::PartitionState {
            topic: t.name.clone(),
            partition: 0,
            replicas: s.replicas,
            leader: s.leader,
            leader_epoch: s.leader_epoch,
            isr: s.isr,
        });
    }
    image.apply(&MetadataRecord::Topic {
        name: crate::cluster::CONSUMER_OFFSETS.into(),
        id: uuid::Uuid::new_v4(),
        partitions: 1,
        replication_factor: 2,
        configs: Default::default(),
    });
    image.apply(&MetadataRecord::PartitionState {
        topic: crate::cluster::CONSUMER_OFFSETS.into(),
        partition: 0,
        replicas: vec![2, 1],
        leader: 2,
        leader_epoch: 0,
        isr: vec![2, 1],
    });
    b.cluster.reconcile(&image).expect("reconcile");
    let r = call(
        &b,
        3,
        FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g")),
    )
    .await;
    assert_eq!((r.error_code, r.node_id.0, r.port), (0, 2, 9093));
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_session_timeout_ms(10_000)
        .with_protocol_type(StrBytes::from_static_str("consumer"));
    let r = call(&b, 5, join).await;
    assert_eq!(r.error_code, ResponseError::NotCoordinator.code());
    let r = call(
        &b,
        7,
        OffsetFetchRequest::default().with_group_id(GroupId(StrBytes::from_static_str("g"))),
    )
    .await;
    assert_eq!(r.error_code, ResponseError::NotCoordinator.code());
    let hb = HeartbeatRequest::default().with_group_id(GroupId(StrBytes::from_static_str("g")));
    assert_eq!(
        call(&b, 3, hb).await.error_code,
        ResponseError::NotCoordinator.code()
    );
}

fn one_record() -> Bytes {
    let r = kafka_protocol::records::Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: kafka_protocol::records::TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 0,
        key: None,
        value: Some(Bytes::from_static(b"v")),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    kafka_protocol::records::RecordBatchEncoder::encode(
        &mut buf,
        &[r],
        &kafka_protocol::records::RecordEncodeOptions {
            version: 2,
            compression: kafka_protocol::records::Compression::None,
        },
    )
    .expect("encode");
    buf.freeze()
}

pub(super) fn produce_req(topic: &str, acks: i16) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(one_record()))])])
}

pub(super) fn fetch_req(topic: &str, offset: i64, replica: i32) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(replica))
        .with_max_wait_ms(0)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])])
}

/// Node 1 leads `replicated-0` with replicas [1, 2]; `isr` and `min.insync.replicas` vary.
pub(super) fn replicated(b: &Arc<Broker>, isr: Vec<i32>, min_insync: &str) {
    let mut image = MetadataImage::default();
    register_two_brokers(&mut image);
    add_replicated(&mut image, isr, min_insync);
    b.cluster.reconcile(&image).expect("reconcile");
}

/// Adds topic `replicated` to `image`: node 1 leads its partition 0, replicas [1, 2].
pub(super) fn add_replicated(image: &mut MetadataImage, isr: Vec<i32>, min_insync: &str) {
    image.apply(&MetadataRecord::Topic {
        name: "replicated".into(),
        id: uuid::Uuid::new_v4(),
        partitions: 1,
        replication_factor: 2,
        configs: [("min.insync.replicas".to_string(), min_insync.to_string())].into(),
    });
    image.apply(&MetadataRecord::PartitionState {
        topic: "replicated".into(),
        partition: 0,
        replicas: vec![1, 2],
        leader: 1,
        leader_epoch: 0,
        isr,
    });
}

#[tokio::test]
async fn delete_records_moves_the_log_start_up_to_the_high_watermark_only() {
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };
    let d = tempfile::tempdir().expect("tempdir");
    let b = broker(d.path());
    replicated(&b, vec![1], "1");
    for _ in 0..5 {
        let r = call(&b, 8, produce_req("replicated", 1)).await;
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
    let delete = |topic: &str, offset: i64| {
        DeleteRecordsRequest::default()
            .with_timeout_ms(1000)
            .with_topics(vec![DeleteRecordsTopic::default()
                .with_name(name(topic))
                .with_partitions(vec![DeleteRecordsPartition::default()
                    .with_partition_index(0)
                    .with_offset(offset)])])
    };
    let answer = |r: DeleteRecordsResponse| {
        let p = &r.topics[0].partitions[0];
        (p.error_code, p.low_watermark)
    };
    assert_eq!(answer(call(&b, 2, delete("replicated", 3)).await), (0, 3));
    assert_eq!(
        b.cluster
            .partition("replicated", 0)
            .unwrap()
            .log_start_offset(),
        3
    );
    let beyond = answer(call(&b, 2, delete("replicated", 9)).await);
    assert_eq!(beyond, (ResponseError::OffsetOutOfRange.code(), -1));
    // Below the log start: nothing moves.
    assert_eq!(answer(call(&b, 2, delete("replicated", 1)).await), (0, 3));
    // -1: up to the high watermark.
    assert_eq!(answer(call(&b, 1, delete("replicated", -1)).await), (0, 5));
    let unknown = answer(call(&b, 0, delete("nope", 0)).await);
    assert_eq!(unknown, (ResponseError::UnknownTopicOrPartition.code(), -1));
    // A consumer asking below the log start is out of range; the earliest offset is 5.
    let r = call(&b, 12, fetch_req("replicated", 2, -1)).await;
    let p = &r.responses[0].partitions[0];
    assert_eq!(
        (p.error_code, p.log_start_offset),
        (ResponseError::OffsetOutOfRange.code(), 5)
    );
}

#[tokio::test]
async fn acks_all_waits_for_the_isr_and_consumers_see_only_committed_records() {
    let d = tempfile::tempdir().expect("tempdir");
    let b = broker(d.path());
    replicated(&b, vec![1, 2], "2");
    let produce = call(&b, 8, produce_req("replicated", -1));
    tokio::pin!(produce);
    // Appended on the leader, but not acknowledged until follower 2 has it.
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(200), &mut produce)
            .await
            .is_err(),
        "acks=all answered before the follower had the record"
    );
    let consumer = call(&b, 11, fetch_req("replicated", 0, -1)).await;
    let p = &consumer.responses[0].partitions[0];
    assert_eq!((p.error_code, p.high_watermark), (0, 0));
    assert_eq!(
        p.records.as_ref().map(|r| r.len()),
        Some(0),
        "nothing is committed yet"
    );
    // Follower 2 fetches the record, then fetches again from its new log end.
    let replica = call(&b, 11, fetch_req("replicated", 0, 2)).await;
    assert!(replica.responses[0].partitions[0]
        .records
        .as_ref()
        .is_some_and(|r| !r.is_empty()));
    call(&b, 11, fetch_req("replicated", 1, 2)).await;
    let r = tokio::time::timeout(std::time::Duration::from_secs(5), produce)
        .await
        .expect("acks=all completes once the ISR has the record");
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    let consumer = call(&b, 11, fetch_req("replicated", 0, -1)).await;
    assert_eq!(consumer.responses[0].partitions[0].high_watermark, 1);
}

#[tokio::test]
async fn acks_all_is_refused_when_the_isr_is_below_min_insync_replicas() {
    let d = tempfile::tempdir().expect("tempdir");
    let b = broker(d.path());
    replicated(&b, vec![1], "2");
    let r = call(&b, 8, produce_req("replicated", -1)).await;
    assert_eq!(
        r.responses[0].partition_responses[0].error_code,
        ResponseError::NotEnoughReplicas.code()
    );
    let r = call(&b, 8, produce_req("replicated", 1)).await;
    assert_eq!(
        r.responses[0].partition_responses[0].error_code, 0,
        "acks=1 still works"
    );
}

#[tokio::test]
async fn replica_fetches_from_a_broker_outside_the_replica_set_are_refused_and_count_for_nothing() {
    let d = tempfile::tempdir().expect("tempdir");
    let b = broker(d.path());
    replicated(&b, vec![1, 2], "1");
    let r = call(&b, 8, produce_req("replicated", 1)).await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    // Broker 3 claims to have everything; Kafka refuses it by whether it names the epoch.
    for (epoch, refusal) in [
        (-1, ResponseError::NotLeaderOrFollower),
        (0, ResponseError::UnknownLeaderEpoch),
    ] {
        let mut req = fetch_req("replicated", 1, 3);
        req.topics[0].partitions[0].current_leader_epoch = epoch;
        let r = call(&b, 12, req).await;
        assert_eq!(r.responses[0].partitions[0].error_code, refusal.code());
    }
    let consumer = call(&b, 11, fetch_req("replicated", 0, -1)).await;
    assert_eq!(
        consumer.responses[0].partitions[0].high_watermark, 0,
        "only follower 2's progress can commit"
    );
    call(&b, 11, fetch_req("replicated", 1, 2)).await;
    let consumer = call(&b, 11, fetch_req("replicated", 0, -1)).await;
    assert_eq!(consumer.responses[0].partitions[0].high_watermark, 1);
}

#[tokio::test]
async fn a_partition_with_no_replica_here_has_no_log_here_and_answers_not_leader() {
    use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
    use kafka_protocol::messages::offset_for_leader_epoch_request::*;
    let d = tempfile::tempdir().expect("tempdir");
    let b = broker(d.path());
    partitions(
        &b,
        &[
            ("foreign", &[(vec![2], 2, vec![2])]),
            ("mine", &[(vec![1], 1, vec![1])]),
        ],
    );
    assert!(!d.path().join("foreign-0").exists());
    assert!(d.path().join("mine-0").is_dir());
    let not_leader = ResponseError::NotLeaderOrFollower.code();
    let r = call(&b, 8, produce_req("foreign", 1)).await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, not_leader);
    for replica in [-1, 2] {
        let r = call(&b, 11, fetch_req("foreign", 0, replica)).await;
        assert_eq!(r.responses[0].partitions[0].error_code, not_leader);
    }
    let list = ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
        .with_name(name("foreign"))
        .with_partitions(vec![ListOffsetsPartition::default().with_timestamp(-1)])]);
    let r = call(&b, 5, list).await;
    assert_eq!(r.topics[0].partitions[0].error_code, not_leader);
    let epochs =
        OffsetForLeaderEpochRequest::default().with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(name("foreign"))
            .with_partitions(vec![OffsetForLeaderPartition::default()])]);
    let r = call(&b, 3, epochs).await;
    assert_eq!(r.topics[0].partitions[0].error_code, not_leader);

    let all = call(&b, 1, DescribeLogDirsRequest::default().with_topics(None)).await;
    let asked =
        DescribeLogDirsRequest::default()
            .with_topics(Some(vec![DescribableLogDirTopic::default()
                .with_topic(name("foreign"))
                .with_partitions(vec![0])]));
    let foreign = call(&b, 1, asked).await;
    let listed = |r: &DescribeLogDirsResponse| {
        r.results
            .iter()
            .flat_map(|dir| dir.topics.iter().map(|t| t.name.0.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(listed(&all), ["mine"]);
    assert!(listed(&foreign).is_empty());
}

/// One partition's replicas, leader and ISR.
type State = (Vec<i32>, i32, Vec<i32>);

/// Node 1's metadata holds brokers 1 and 2 (and 3, fenced) and the topics `parts` lists: name,
/// then each partition's state.
fn partitions(b: &Arc<Broker>, parts: &[(&str, &[State])]) {
    let mut image = MetadataImage::default();
    register_two_brokers(&mut image);
    image.apply(&MetadataRecord::RegisterBroker {
        id: 3,
        host: "localhost".into(),
        port: 9094,
        endpoints: Vec::new(),
        rack: None,
    });
    image.apply(&MetadataRecord::FenceBroker {
        id: 3,
        fenced: true,
    });
    for (topic, states) in parts {
        image.apply(&MetadataRecord::Topic {
            name: topic.to_string(),
            id: uuid::Uuid::new_v4(),
            partitions: states.len() as i32,
            replication_factor: 2,
            configs: [("min.insync.replicas".to_string(), "1".to_string())].into(),
        });
        for (i, (replicas, leader, isr)) in states.iter().enumerate() {
            image.apply(&MetadataRecord::PartitionState {
                topic: topic.to_string(),
                partition: i as i32,
                replicas: replicas.clone(),
                leader: *leader,
                leader_epoch: 0,
                isr: isr.clone(),
            });
        }
    }
    b.cluster.reconcile(&image).expect("reconcile");
}

/// One partition's reassignment at `version`: its error code.
async fn reassign(
    b: &Arc<Broker>,
    version: i16,
    topic: &str,
    partition: i32,
    replicas: Option<Vec<i32>>,
    allow_rf_change: bool,
) -> i16 {
    use kafka_protocol::messages::alter_partition_reassignments_request::*;
    let req = AlterPartitionReassignmentsRequest::default()
        .with_allow_replication_factor_change(allow_rf_change)
        .with_topics(vec![ReassignableTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![ReassignablePartition::default()
                .with_partition_index(partition)
                .with_replicas(
                    replicas.map(|r| r.into_iter().map(BrokerId).collect()),
                )])]);
    let r = call(b, version, req).await;
    assert_eq!(r.error_code, 0);
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.partition_index, partition);
    p.error_code
}

/// The ongoing reassignments ListPartitionReassignments reports: (topic, partition, replicas,
/// adding, removing).
async fn ongoing(
    b: &Arc<Broker>,
    topics: Option<Vec<(&str, Vec<i32>)>>,
) -> Vec<(String, i32, Vec<i32>, Vec<i32>, Vec<i32>)> {
    use kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
    let topics = topics.map(|ts| {
        ts.into_iter()
            .map(|(t, p)| {
                ListPartitionReassignmentsTopics::default()
                    .with_name(name(t))
                    .with_partition_indexes(p)
            })
            .collect()
    });
    let r = call(
        b,
        0,
        ListPartitionReassignmentsRequest::default().with_topics(topics),
    )
    .await;
    let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<_>>();
    r.topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    t.name.0.to_string(),
                    p.partition_index,
                    ids(&p.replicas),
                    ids(&p.adding_replicas),
                    ids(&p.removing_replicas),
                )
            })
        })
        .collect()
}

/// Leader, leader epoch and replicas of `topic`-`partition` in a Metadata answer.
async fn placement(b: &Arc<Broker>, topic: &str, partition: i32) -> (i32, i32, Vec<i32>) {
    let m = call(b, 12, MetadataRequest::default().with_topics(None)).await;
    let t = m
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
        .expect("topic");
    let p = &t.partitions[partition as usize];
    (
        p.leader_id.0,
        p.leader_epoch,
        p.replica_nodes.iter().map(|b| b.0).collect(),
    )
}

#[tokio::test]
async fn reassignments_are_validated_listed_and_cancelled_like_kafka() {
    let d = tempfile::tempdir().expect("tempdir");
    let b = broker(d.path());
    partitions(&b, &[("moving", &[(vec![1, 2], 1, vec![1])])]);
    let unknown = ResponseError::UnknownTopicOrPartition.code();
    let invalid = ResponseError::InvalidReplicaAssignment.code();
    assert_eq!(
        reassign(&b, 0, "nope", 0, Some(vec![1]), true).await,
        unknown
    );
    assert_eq!(
        reassign(&b, 0, "moving", 5, Some(vec![1]), true).await,
        unknown
    );
    for bad in [vec![], vec![1, 1], vec![1, 7]] {
        assert_eq!(
            reassign(&b, 0, "moving", 0, Some(bad.clone()), true).await,
            invalid,
            "{bad:?}"
        );
    }
    assert_eq!(
        reassign(&b, 0, "moving", 0, None, true).await,
        ResponseError::NoReassignmentInProgress.code()
    );
    assert_eq!(
        reassign(&b, 1, "moving", 0, Some(vec![2]), false).await,
        ResponseError::InvalidReplicationFactor.code(),
        "v1 may forbid a change of replication factor"
    );
    // 2 is not in the ISR: the move waits for it, keeping 1 meanwhile.
    assert_eq!(reassign(&b, 0, "moving", 0, Some(vec![2]), true).await, 0);
    let expected = vec![("moving".to_string(), 0, vec![2, 1], vec![], vec![1])];
    assert_eq!(ongoing(&b, None).await, expected);
    assert_eq!(
        ongoing(&b, Some(vec![("moving", vec![0, 3]), ("nope", vec![0])])).await,
        expected,
        "unknown topics and partitions are left out"
    );
    assert!(ongoing(&b, Some(vec![("moving", vec![1])]))
        .await
        .is_empty());
    assert_eq!(placement(&b, "moving", 0).await, (1, 0, vec![2, 1]));
    assert_eq!(
        reassign(&b, 1, "moving", 0, None, true).await,
        0,
        "cancelled"
    );
    assert!(ongoing(&b, None).await.is_empty());
    assert_eq!(
        reassign(&b, 0, "moving", 0, None, true).await,
        ResponseError::NoReassignmentInProgress.code()
    );
}

#[tokio::test]
async fn a_move_off_this_node_hands_leadership_over_and_deletes_the_local_log() {
    let d = tempfile::tempdir().expect("tempdir");
    let b = broker(d.path());
    partitions(&b, &[("moved", &[(vec![1, 2], 1, vec![1, 2])])]);
    let r = call(&b, 8, produce_req("moved", 1)).await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    let p = b.cluster.partition("moved", 0).expect("partition");
    assert_eq!(p.log_end_offset(), 1);
    let dir = p.log().expect("a replica here").dir().to_path_buf();
    // Every target replica is in the ISR already: the move completes at once.
    assert_eq!(reassign(&b, 1, "moved", 0, Some(vec![2]), true).await, 0);
    assert_eq!(
        placement(&b, "moved", 0).await,
        (2, 1, vec![2]),
        "2 leads in a new epoch"
    );
    assert!(ongoing(&b, None).await.is_empty());
    assert_eq!((p.log_end_offset(), p.log_start_offset()), (0, 0));
    assert!(p.log().is_none(), "no log of it open here");
    assert!(!dir.exists(), "no data of it left on this node");
}

/// One ElectLeaders call: (top-level error, per-topic (partition, error) results).
async fn elect(
    b: &Arc<Broker>,
    version: i16,
    election_type: i8,
    topics: Option<Vec<(&str, Vec<i32>)>>,
) -> (i16, Vec<(String, Vec<(i32, i16)>)>) {
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
    let topics = topics.map(|ts| {
        ts.into_iter()
            .map(|(t, p)| {
                TopicPartitions::default()
                    .with_topic(name(t))
                    .with_partitions(p)
            })
            .collect()
    });
    let r = call(
        b,
        version,
        ElectLeadersRequest::default()
            .with_election_type(election_type)
            .with_topic_partitions(topics),
    )
    .await;
    let results = r
        .replica_election_results
        .iter()
        .map(|t| {
            let parts = t
                .partition_result
                .iter()
                .map(|p| (p.partition_id, p.error_code))
                .collect();
            (t.topic.0.to_string(), parts)
        })
        .collect();
    (r.error_code, results)
}

#[tokio::test]
async fn elect_leaders_answers_per_partition_like_kafka() {
    let d = tempfile::tempdir().expect("tempdir");
    let b = broker(d.path());
    partitions(
        &b,
        &[
            (
                "pref",
                &[
                    (vec![1, 2], 2, vec![1, 2]),
                    (vec![1, 2], 1, vec![1, 2]),
                    (vec![2, 1], 1, vec![1]),
                ],
            ),
            ("offline", &[(vec![3, 1], -1, vec![3])]),
        ],
    );
    let not_needed = ResponseError::ElectionNotNeeded.code();
    let unavailable = ResponseError::PreferredLeaderNotAvailable.code();
    let (_, r) = elect(&b, 0, 0, Some(vec![("pref", vec![0, 1, 2, 7])])).await;
    assert_eq!(
        r,
        vec![(
            "pref".to_string(),
            vec![
                (0, 0),
                (1, not_needed),
                (2, unavailable),
                (7, ResponseError::UnknownTopicOrPartition.code())
            ]
        )]
    );
    assert_eq!(placement(&b, "pref", 0).await, (1, 1, vec![1, 2]));
    let (_, r) = elect(
        &b,
        1,
        1,
        Some(vec![("offline", vec![0]), ("pref", vec![1])]),
    )
    .await;
    assert_eq!(
        r,
        vec![
            ("offline".to_string(), vec![(0, 0)]),
            ("pref".to_string(), vec![(1, not_needed)])
        ],
        "3 is fenced: 1 leads although it is out of sync"
    );
    assert_eq!(placement(&b, "offline", 0).await, (1, 1, vec![3, 1]));
    let (code, r) = elect(&b, 2, 0, None).await;
    assert_eq!(code, 0);
    assert_eq!(
        r,
        vec![
            ("offline".to_string(), vec![(0, unavailable)]),
            ("pref".to_string(), vec![(2, unavailable)])
        ],
        "all partitions: those needing no election are left out"
    );
    let (code, _) = elect(&b, 1, 5, None).await;
    assert_eq!(code, ResponseError::InvalidRequest.code());
}
