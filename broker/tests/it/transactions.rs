//! Transactions with bad input, as Kafka answers it: each request gets Kafka's error code and
//! nothing is written.

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::protocol::{create, produce, transactional_batch};
use crate::support::{Broker, Conn};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// Initialises `id` as a transactional producer (InitProducerId v4, retried while the
/// coordinator loads): its producer id and epoch.
pub fn transactional_producer(c: &mut Conn, id: &str) -> (i64, i16) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    // As a client does: the coordinator first (which creates __transaction_state).
    let found = c.call(
        3,
        &FindCoordinatorRequest::default()
            .with_key(s(id))
            .with_key_type(1),
    );
    assert_eq!(found.error_code, 0, "FindCoordinator for {id}");
    loop {
        let r = c.call(
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(s(id))))
                .with_transaction_timeout_ms(60_000),
        );
        if r.error_code == 0 {
            return (r.producer_id.0, r.producer_epoch);
        }
        let retriable = [
            ResponseError::CoordinatorLoadInProgress.code(),
            ResponseError::NotCoordinator.code(),
            ResponseError::CoordinatorNotAvailable.code(),
        ];
        assert!(
            retriable.contains(&r.error_code) && std::time::Instant::now() < deadline,
            "InitProducerId for {id}: error {}",
            r.error_code
        );
        std::thread::yield_now();
    }
}

/// The high watermark of partition 0 of `topic`.
fn end_offset(c: &mut Conn, topic: &str) -> i64 {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let r = c.call(
        7,
        &ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-1)])]),
    );
    r.topics[0].partitions[0].offset
}

fn add_partitions(c: &mut Conn, id: &str, (pid, epoch): (i64, i16), topic: &str) -> Vec<i16> {
    let r = c.call(
        3,
        &AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(TransactionalId(s(id)))
            .with_v3_and_below_producer_id(ProducerId(pid))
            .with_v3_and_below_producer_epoch(epoch)
            .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partitions(vec![0])]),
    );
    r.results_by_topic_v3_and_below
        .iter()
        .flat_map(|t| {
            t.results_by_partition
                .iter()
                .map(|p| p.partition_error_code)
        })
        .collect()
}

/// A transactional produce (acks=all) of `records` to partition 0 of `topic`: its error.
fn produce_in(c: &mut Conn, id: &str, topic: &str, records: bytes::Bytes) -> i16 {
    let req = ProduceRequest::default()
        .with_transactional_id(Some(TransactionalId(s(id))))
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(s(topic)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    c.call(8, &req).responses[0].partition_responses[0].error_code
}

fn end_txn(c: &mut Conn, version: i16, id: &str, (pid, epoch): (i64, i16)) -> i16 {
    c.call(
        version,
        &EndTxnRequest::default()
            .with_transactional_id(TransactionalId(s(id)))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_committed(true),
    )
    .error_code
}

#[test]
fn bad_transactional_requests_get_kafkas_error_codes_and_write_nothing() {
    let b = Broker::start();
    let mut c = Conn::connect(b.addr);
    assert_eq!(create(&mut c, "txbad", 1).topics[0].error_code, 0);

    // EndTxn for a transactional id the coordinator never saw.
    let first = transactional_producer(&mut c, "known");
    assert_eq!(
        end_txn(&mut c, 3, "unknown", first),
        ResponseError::InvalidProducerIdMapping.code()
    );
    // EndTxn with no transaction open.
    assert_eq!(
        end_txn(&mut c, 3, "known", first),
        ResponseError::InvalidTxnState.code()
    );
    // A topic that does not exist.
    assert_eq!(
        add_partitions(&mut c, "known", first, "no-such-topic"),
        [ResponseError::UnknownTopicOrPartition.code()]
    );
    // A produce into a partition not added to the transaction (KIP-890 verification), and
    // transactional records without a transactional id.
    let records = transactional_batch(&["stray"], (first.0, first.1, 0));
    let code = produce_in(&mut c, "known", "txbad", records.clone());
    assert_eq!(code, ResponseError::InvalidTxnState.code());
    let (code, _) = produce(&mut c, "txbad", 0, -1, records);
    assert_eq!(
        code,
        ResponseError::TransactionalIdAuthorizationFailed.code()
    );
    assert_eq!(end_offset(&mut c, "txbad"), 0, "nothing written");

    // A second InitProducerId fences the first epoch: its requests are refused.
    let second = transactional_producer(&mut c, "known");
    assert_eq!(second, (first.0, first.1 + 1));
    assert_eq!(
        add_partitions(&mut c, "known", first, "txbad"),
        [ResponseError::ProducerFenced.code()]
    );
    assert_eq!(
        end_txn(&mut c, 1, "known", first),
        ResponseError::InvalidProducerEpoch.code(),
        "before KIP-588 (EndTxn v2) clients are told INVALID_PRODUCER_EPOCH"
    );
    assert_eq!(add_partitions(&mut c, "known", second, "txbad"), [0]);
    let stale = transactional_batch(&["zombie"], (first.0, first.1, 0));
    let code = produce_in(&mut c, "known", "txbad", stale);
    assert_eq!(code, ResponseError::InvalidProducerEpoch.code());
    assert_eq!(end_offset(&mut c, "txbad"), 0, "nothing written");

    // A timeout above transaction.max.timeout.ms (15 minutes by default).
    let r = c.call(
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(s("known"))))
            .with_transaction_timeout_ms(900_001),
    );
    assert_eq!(
        r.error_code,
        ResponseError::InvalidTransactionTimeout.code()
    );

    // The current epoch still works end to end.
    let records = transactional_batch(&["ok"], (second.0, second.1, 0));
    assert_eq!(produce_in(&mut c, "known", "txbad", records), 0);
    assert_eq!(end_txn(&mut c, 3, "known", second), 0);
    assert_eq!(
        end_offset(&mut c, "txbad"),
        2,
        "the record and its commit marker"
    );
}
