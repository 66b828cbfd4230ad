//! The share group APIs (KIP-932) at every advertised version, as a share consumer and
//! `kafka-share-groups` use them: join, describe, fetch with acquisition, acknowledge (accept,
//! release, redelivery with a higher delivery count), the share session's epochs, the group's
//! start offset, reset and delete — and Kafka's errors for a stale session epoch, a foreign
//! acknowledgement, a busy group and a group of another type.

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::share_acknowledge_request as ack;
use kafka_protocol::messages::share_fetch_request as sf;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use crate::protocol::batch;
use crate::support::{Broker, Conn};
use gregor::protocol::supported;

const GROUP: &str = "sg-v1";

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn topic(v: &str) -> TopicName {
    TopicName(s(v))
}

fn group() -> GroupId {
    GroupId(s(GROUP))
}

fn versions(key: ApiKey) -> std::ops::RangeInclusive<i16> {
    let a = supported(key).expect("served");
    a.min..=a.max
}

#[test]
fn share_group_apis_answer_at_every_advertised_version() {
    let b = Broker::start();
    let mut c = Conn::connect(b.addr);
    let topic_id = topic_with_three_records(&mut c);
    group_reads_from_the_start(&mut c);
    join_and_describe(&mut c, topic_id);
    fetch_acknowledge_and_redeliver(&mut c, topic_id);
    start_offsets_reset_and_delete(&mut c, topic_id);
    a_classic_group_is_no_share_group(&mut c);
}

/// Creates topic `shv` (one partition) holding "a", "b", "c"; returns its id.
fn topic_with_three_records(c: &mut Conn) -> Uuid {
    let id = create_topic(c, "shv", 1);
    let p = c.call(
        9,
        &ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic("shv"))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch(
                        &["a", "b", "c"],
                        None,
                        Compression::None,
                    )))])]),
    );
    assert_eq!(p.responses[0].partition_responses[0].error_code, 0);
    // The coordinator first, as a client does (it creates __consumer_offsets).
    let found = c.call(3, &FindCoordinatorRequest::default().with_key(s(GROUP)));
    assert_eq!(found.error_code, 0);
    id
}

/// Creates topic `name` with `partitions` partitions (one replica); returns its id.
fn create_topic(c: &mut Conn, name: &str, partitions: i32) -> Uuid {
    let r = c.call(
        7,
        &CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic(name))
                .with_num_partitions(partitions)
                .with_replication_factor(1)])
            .with_timeout_ms(5000),
    );
    assert_eq!(r.topics[0].error_code, 0);
    r.topics[0].topic_id
}

/// Sets a config of the group (a GROUP config resource, as `kafka-configs` sets it): the
/// error code and message.
fn set_group_config(c: &mut Conn, name: &str, value: &str) -> (i16, Option<StrBytes>) {
    set_config_of(c, GROUP, name, value)
}

/// Sets a config of group `group`: the error code and message.
fn set_config_of(c: &mut Conn, group: &str, name: &str, value: &str) -> (i16, Option<StrBytes>) {
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    let r = c.call(
        1,
        &IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(32)
                .with_resource_name(s(group))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(s(name))
                    .with_config_operation(0)
                    .with_value(Some(s(value)))]),
        ]),
    );
    (
        r.responses[0].error_code,
        r.responses[0].error_message.clone(),
    )
}

/// The group reads from the start; an unknown group config is refused by name.
fn group_reads_from_the_start(c: &mut Conn) {
    assert_eq!(
        set_group_config(c, "share.auto.offset.reset", "earliest").0,
        0
    );
    let (code, message) = set_group_config(c, "share.bogus", "1");
    assert_eq!(code, ResponseError::InvalidConfig.code());
    assert!(message.expect("message").contains("share.bogus"));
}

fn join_and_describe(c: &mut Conn, topic_id: Uuid) {
    for v in versions(ApiKey::ShareGroupHeartbeat) {
        let joined = c.call(
            v,
            &ShareGroupHeartbeatRequest::default()
                .with_group_id(group())
                .with_member_id(s("m1"))
                .with_member_epoch(0)
                .with_subscribed_topic_names(Some(vec![topic("shv")])),
        );
        assert_eq!(joined.error_code, 0, "{:?}", joined.error_message);
        let assigned = joined.assignment.expect("assignment");
        assert_eq!(assigned.topic_partitions[0].topic_id, topic_id);
        assert_eq!(assigned.topic_partitions[0].partitions, [0]);
    }
    for v in versions(ApiKey::ShareGroupDescribe) {
        let d = c.call(
            v,
            &ShareGroupDescribeRequest::default()
                .with_group_ids(vec![group(), GroupId(s("nobody"))]),
        );
        assert_eq!(d.groups[0].error_code, 0);
        assert_eq!(d.groups[0].group_state.as_str(), "Stable");
        assert_eq!(d.groups[0].members[0].member_id.as_str(), "m1");
        assert_eq!(
            d.groups[1].error_code,
            ResponseError::GroupIdNotFound.code()
        );
    }
}

/// A ShareFetch of `shv`-0 by member m1 at session `epoch`, acknowledging `acks`.
fn fetch(topic_id: Uuid, epoch: i32, acks: Vec<sf::AcknowledgementBatch>) -> ShareFetchRequest {
    ShareFetchRequest::default()
        .with_group_id(Some(group()))
        .with_member_id(Some(s("m1")))
        .with_share_session_epoch(epoch)
        .with_max_wait_ms(2000)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_max_records(500)
        .with_batch_size(500)
        .with_topics(vec![sf::FetchTopic::default()
            .with_topic_id(topic_id)
            .with_partitions(vec![sf::FetchPartition::default()
                .with_partition_index(0)
                .with_acknowledgement_batches(acks)])])
}

/// The acquired records of a ShareFetch answer: (first, last, delivery count).
fn acquired(r: &ShareFetchResponse) -> Vec<(i64, i64, i16)> {
    r.responses
        .iter()
        .flat_map(|t| &t.partitions)
        .flat_map(|p| &p.acquired_records)
        .map(|a| (a.first_offset, a.last_offset, a.delivery_count))
        .collect()
}

/// ShareAcknowledge at session epoch 1: accepts offsets 0 and 1, releases 2.
fn accept_two_release_one(topic_id: Uuid) -> ShareAcknowledgeRequest {
    ShareAcknowledgeRequest::default()
        .with_group_id(Some(group()))
        .with_member_id(Some(s("m1")))
        .with_share_session_epoch(1)
        .with_topics(vec![ack::AcknowledgeTopic::default()
            .with_topic_id(topic_id)
            .with_partitions(vec![ack::AcknowledgePartition::default()
                .with_partition_index(0)
                .with_acknowledgement_batches(vec![
                    ack::AcknowledgementBatch::default()
                        .with_first_offset(0)
                        .with_last_offset(2)
                        .with_acknowledge_types(vec![1, 1, 2]),
                ])])])
}

fn fetch_acknowledge_and_redeliver(c: &mut Conn, topic_id: Uuid) {
    // Version 1 takes the records through acknowledgement and redelivery; version 2 then
    // renews the lock of the one left (KIP-1222).
    assert_eq!(versions(ApiKey::ShareFetch), 1..=2);
    assert_eq!(versions(ApiKey::ShareAcknowledge), 1..=2);
    {
        let v = 1;
        let first = c.call(v, &fetch(topic_id, 0, vec![]));
        assert_eq!(first.error_code, 0, "{:?}", first.error_message);
        assert_eq!(acquired(&first), [(0, 2, 1)]);
        assert!(first.acquisition_lock_timeout_ms > 0);
        let records = first.responses[0].partitions[0].records.clone();
        assert!(!records.expect("records").is_empty());
        // A stale session epoch is refused.
        let stale = c.call(v, &fetch(topic_id, 5, vec![]));
        assert_eq!(
            stale.error_code,
            ResponseError::InvalidShareSessionEpoch.code()
        );
        let acked = c.call(v, &accept_two_release_one(topic_id));
        assert_eq!(acked.error_code, 0, "{:?}", acked.error_message);
        assert_eq!(acked.responses[0].partitions[0].error_code, 0);
        // The released record comes back with its second delivery; accepting an offset the
        // member no longer holds is INVALID_RECORD_STATE, and changes nothing.
        let accept_zero = sf::AcknowledgementBatch::default()
            .with_first_offset(0)
            .with_last_offset(0)
            .with_acknowledge_types(vec![1]);
        let again = c.call(v, &fetch(topic_id, 2, vec![accept_zero]));
        assert_eq!(
            again.responses[0].partitions[0].acknowledge_error_code,
            ResponseError::InvalidRecordState.code()
        );
        assert_eq!(acquired(&again), [(2, 2, 2)]);
        // Closing the session gives the held record back.
        let closed = c.call(v, &fetch(topic_id, -1, vec![]));
        assert_eq!(closed.error_code, 0);
    }
    renew_at_version_two(c, topic_id);
}

/// A RENEW of offset 2 at session `epoch`.
fn renew_two(topic_id: Uuid, epoch: i32, flag: bool) -> ShareAcknowledgeRequest {
    let mut r = accept_two_release_one(topic_id)
        .with_share_session_epoch(epoch)
        .with_is_renew_ack(flag);
    r.topics[0].partitions[0].acknowledgement_batches = vec![ack::AcknowledgementBatch::default()
        .with_first_offset(2)
        .with_last_offset(2)
        .with_acknowledge_types(vec![4])];
    r
}

/// Version 2: RENEW only with IsRenewAck, in a ShareAcknowledge or in a ShareFetch that asks
/// for no records; the renewed record stays the member's.
fn renew_at_version_two(c: &mut Conn, topic_id: Uuid) {
    let held = c.call(2, &fetch(topic_id, 0, vec![]));
    assert_eq!(acquired(&held), [(2, 2, 3)]);
    let unflagged = c.call(2, &renew_two(topic_id, 1, false));
    assert_eq!(
        unflagged.responses[0].partitions[0].error_code,
        ResponseError::InvalidRequest.code()
    );
    let renewed = c.call(2, &renew_two(topic_id, 2, true));
    assert_eq!(renewed.responses[0].partitions[0].error_code, 0);
    assert!(renewed.acquisition_lock_timeout_ms > 0);
    let renew = sf::AcknowledgementBatch::default()
        .with_first_offset(2)
        .with_last_offset(2)
        .with_acknowledge_types(vec![4]);
    let sized = c.call(
        2,
        &fetch(topic_id, 3, vec![renew.clone()]).with_is_renew_ack(true),
    );
    assert_eq!(sized.error_code, ResponseError::InvalidRequest.code());
    let message = sized.error_message.expect("message");
    assert!(message.contains("maxBytes"), "{message}");
    let renewing = fetch(topic_id, 3, vec![renew])
        .with_is_renew_ack(true)
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(0)
        .with_max_records(0);
    let r = c.call(2, &renewing);
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    assert_eq!(r.responses[0].partitions[0].acknowledge_error_code, 0);
    assert!(acquired(&r).is_empty());
    let closed = c.call(2, &fetch(topic_id, -1, vec![]));
    assert_eq!(closed.error_code, 0);
}

fn start_offsets_reset_and_delete(c: &mut Conn, topic_id: Uuid) {
    use kafka_protocol::messages::alter_share_group_offsets_request::{
        AlterShareGroupOffsetsRequestPartition, AlterShareGroupOffsetsRequestTopic,
    };
    use kafka_protocol::messages::delete_share_group_offsets_request::DeleteShareGroupOffsetsRequestTopic;
    use kafka_protocol::messages::describe_share_group_offsets_request::{
        DescribeShareGroupOffsetsRequestGroup, DescribeShareGroupOffsetsRequestTopic,
    };
    for v in versions(ApiKey::DescribeShareGroupOffsets) {
        let d = c.call(
            v,
            &DescribeShareGroupOffsetsRequest::default().with_groups(vec![
                DescribeShareGroupOffsetsRequestGroup::default()
                    .with_group_id(group())
                    .with_topics(Some(vec![DescribeShareGroupOffsetsRequestTopic::default()
                        .with_topic_name(topic("shv"))
                        .with_partitions(vec![0])])),
            ]),
        );
        assert_eq!(d.groups[0].error_code, 0);
        // Offsets 0 and 1 were accepted; 2 is available again.
        assert_eq!(d.groups[0].topics[0].partitions[0].start_offset, 2);
    }
    // The share coordinator's summary of the same state (what Kafka's group coordinator asks
    // its share coordinator for): the start offset, and nothing for a partition without state.
    for v in versions(ApiKey::ReadShareGroupStateSummary) {
        use kafka_protocol::messages::read_share_group_state_summary_request as summary;
        let r = c.call(
            v,
            &ReadShareGroupStateSummaryRequest::default()
                .with_group_id(s(GROUP))
                .with_topics(vec![summary::ReadStateSummaryData::default()
                    .with_topic_id(topic_id)
                    .with_partitions(
                        [0, 7]
                            .map(|p| summary::PartitionData::default().with_partition(p))
                            .to_vec(),
                    )]),
        );
        let parts = &r.results[0].partitions;
        assert_eq!(
            parts
                .iter()
                .map(|p| (p.partition, p.error_code, p.start_offset))
                .collect::<Vec<_>>(),
            [(0, 0, 2), (7, 0, -1)]
        );
    }
    // Offsets change only in an empty group.
    let alter = AlterShareGroupOffsetsRequest::default()
        .with_group_id(group())
        .with_topics(vec![AlterShareGroupOffsetsRequestTopic::default()
            .with_topic_name(topic("shv"))
            .with_partitions(vec![
                AlterShareGroupOffsetsRequestPartition::default()
                    .with_partition_index(0)
                    .with_start_offset(0),
            ])]);
    for v in versions(ApiKey::AlterShareGroupOffsets) {
        let busy = c.call(v, &alter);
        assert_eq!(busy.error_code, ResponseError::NonEmptyGroup.code());
    }
    let left = c.call(
        1,
        &ShareGroupHeartbeatRequest::default()
            .with_group_id(group())
            .with_member_id(s("m1"))
            .with_member_epoch(-1),
    );
    assert_eq!((left.error_code, left.member_epoch), (0, -1));
    for v in versions(ApiKey::AlterShareGroupOffsets) {
        let r = c.call(v, &alter);
        assert_eq!(r.error_code, 0, "{:?}", r.error_message);
        assert_eq!(r.responses[0].partitions[0].error_code, 0);
    }
    for v in versions(ApiKey::DeleteShareGroupOffsets) {
        let r = c.call(
            v,
            &DeleteShareGroupOffsetsRequest::default()
                .with_group_id(group())
                .with_topics(vec![
                    DeleteShareGroupOffsetsRequestTopic::default().with_topic_name(topic("shv"))
                ]),
        );
        assert_eq!(r.error_code, 0, "{:?}", r.error_message);
        assert_eq!(r.responses[0].error_code, 0);
    }
}

/// A classic group's id is not a share group's: GROUP_ID_NOT_FOUND, as Kafka answers.
fn a_classic_group_is_no_share_group(c: &mut Conn) {
    let committed = c.call(
        2,
        &OffsetCommitRequest::default()
            .with_group_id(GroupId(s("sg-v1-classic")))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(topic("shv"))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(1)])]),
    );
    assert_eq!(committed.topics[0].partitions[0].error_code, 0);
    let refused = c.call(
        1,
        &ShareGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s("sg-v1-classic")))
            .with_member_id(s("m2"))
            .with_member_epoch(0)
            .with_subscribed_topic_names(Some(vec![topic("shv")])),
    );
    assert_eq!(refused.error_code, ResponseError::GroupIdNotFound.code());
}

/// Records acquired per partition in a ShareFetch answer.
fn acquired_by_partition(r: &ShareFetchResponse) -> Vec<(i32, i64)> {
    r.responses
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| {
            let n = p
                .acquired_records
                .iter()
                .map(|a| a.last_offset - a.first_offset + 1)
                .sum();
            (p.partition_index, n)
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

#[test]
fn record_limit_counts_the_whole_fetch_and_partitions_take_turns() {
    let b = Broker::start();
    let mut c = Conn::connect(b.addr);
    let topic_id = create_topic(&mut c, "shl", 2);
    let five = || Some(batch(&["a", "b", "c", "d", "e"], None, Compression::None));
    let produced = c.call(
        9,
        &ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic("shl"))
                .with_partition_data(
                    [0, 1]
                        .map(|i| {
                            PartitionProduceData::default()
                                .with_index(i)
                                .with_records(five())
                        })
                        .to_vec(),
                )]),
    );
    assert!(produced.responses[0]
        .partition_responses
        .iter()
        .all(|p| p.error_code == 0));
    let group = GroupId(s("sg-limit"));
    let found = c.call(
        3,
        &FindCoordinatorRequest::default().with_key(s("sg-limit")),
    );
    assert_eq!(found.error_code, 0);
    let (code, _) = set_config_of(&mut c, "sg-limit", "share.auto.offset.reset", "earliest");
    assert_eq!(code, 0);
    let joined = c.call(
        1,
        &ShareGroupHeartbeatRequest::default()
            .with_group_id(group.clone())
            .with_member_id(s("m1"))
            .with_member_epoch(0)
            .with_subscribed_topic_names(Some(vec![topic("shl")])),
    );
    assert_eq!(joined.error_code, 0, "{:?}", joined.error_message);
    // record_limit (mode 1), three records a fetch over both partitions: the first fetch's
    // three come from partition 0, the next fetch starts at partition 1.
    let fetch = |epoch: i32| {
        ShareFetchRequest::default()
            .with_group_id(Some(group.clone()))
            .with_member_id(Some(s("m1")))
            .with_share_session_epoch(epoch)
            .with_max_wait_ms(2000)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_max_records(3)
            .with_batch_size(3)
            .with_share_acquire_mode(1)
            .with_topics(vec![sf::FetchTopic::default()
                .with_topic_id(topic_id)
                .with_partitions(
                    [0, 1]
                        .map(|i| sf::FetchPartition::default().with_partition_index(i))
                        .to_vec(),
                )])
    };
    let got: Vec<Vec<(i32, i64)>> = (0..4)
        .map(|epoch| {
            let r = c.call(2, &fetch(epoch));
            assert_eq!(r.error_code, 0, "{:?}", r.error_message);
            acquired_by_partition(&r)
        })
        .collect();
    assert_eq!(
        got,
        [
            vec![(0, 3)],
            vec![(1, 3)],
            vec![(0, 2), (1, 1)],
            vec![(1, 1)]
        ]
    );
}
