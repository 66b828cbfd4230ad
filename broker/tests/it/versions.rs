//! Every advertised version of every API gets an answer (not a closed connection) for a
//! request that exercises its version-dependent fields. Encoding a field a version lacks is a
//! response-encoding error, which closes the connection; this catches it per version.

use bytes::Bytes;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use kafka_protocol::ResponseError;

use crate::protocol::batch;
use crate::support::{Broker, Conn};
use crate::transactions::transactional_producer;
use gregor::protocol::supported;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn topic(v: &str) -> TopicName {
    TopicName(s(v))
}

fn versions(key: ApiKey) -> std::ops::RangeInclusive<i16> {
    let a = supported(key).expect("served");
    a.min_served..=a.max
}

#[test]
fn every_admin_and_data_api_answers_at_every_advertised_version() {
    let b = Broker::start();
    let mut c = Conn::connect(b.addr);
    create_topics_at_every_version(&mut c);
    produce_at_every_version(&mut c);
    metadata_at_every_version(&mut c);
    fetch_at_every_version(&mut c);
    list_offsets_at_every_version(&mut c);
    delete_records_at_every_version(&mut c);
    offset_for_leader_epoch_at_every_version(&mut c);
    describe_configs_at_every_version(&mut c);
    create_partitions_at_every_version(&mut c);
    describe_quorum_at_every_version(&mut c);
    describe_cluster_at_every_version(&mut c);
    unregister_broker_at_every_version(&mut c);
    init_producer_id_at_every_version(&mut c);
    describe_log_dirs_at_every_version(&mut c);
    alter_partition_reassignments_at_every_version(&mut c);
    list_partition_reassignments_at_every_version(&mut c);
    elect_leaders_at_every_version(&mut c);
    delete_topics_at_every_version(&mut c);
    update_features_at_every_version(&mut c);
}

/// UpdateFeatures at every advertised version, on the broker behind `c`: the level in force
/// is accepted, another refused with a message.
fn update_features_at_every_version(c: &mut Conn) {
    use kafka_protocol::messages::update_features_request::FeatureUpdateKey;
    for v in versions(ApiKey::UpdateFeatures) {
        let update = |level: i16| {
            let key = FeatureUpdateKey::default()
                .with_feature(s("metadata.version"))
                .with_max_version_level(level);
            let key = if v >= 1 {
                key.with_upgrade_type(1)
            } else {
                key
            };
            UpdateFeaturesRequest::default()
                .with_timeout_ms(5000)
                .with_feature_updates(vec![key])
        };
        let ok = c.call(v, &update(25));
        assert_eq!(ok.error_code, 0, "UpdateFeatures v{v}");
        let refused = c.call(v, &update(30));
        let (code, message) = if v >= 2 {
            (refused.error_code, refused.error_message)
        } else {
            let r = &refused.results[0];
            (r.error_code, r.error_message.clone())
        };
        assert_eq!(
            code,
            ResponseError::InvalidUpdateVersion.code(),
            "UpdateFeatures v{v}"
        );
        assert!(
            message.is_some_and(|m| m.contains("fixed")),
            "UpdateFeatures v{v}"
        );
    }
    let r = c.call(3, &ApiVersionsRequest::default());
    let mv = r
        .finalized_features
        .iter()
        .find(|f| f.name.as_str() == "metadata.version")
        .expect("metadata.version finalized");
    assert_eq!(mv.max_version_level, 25);
}

/// CreateTopics at every advertised version, on the broker behind `c`.
fn create_topics_at_every_version(c: &mut Conn) {
    for v in versions(ApiKey::CreateTopics) {
        let name = format!("ct-v{v}");
        let r = c.call(
            v,
            &CreateTopicsRequest::default()
                .with_topics(vec![CreatableTopic::default()
                    .with_name(topic(&name))
                    .with_num_partitions(2)
                    .with_replication_factor(1)
                    .with_configs(vec![CreatableTopicConfig::default()
                        .with_name(s("retention.ms"))
                        .with_value(Some(s("3600000")))])])
                .with_timeout_ms(5000),
        );
        assert_eq!(r.topics[0].error_code, 0, "CreateTopics v{v}");
    }
}

/// Produce at every advertised version, on the broker behind `c`.
fn produce_at_every_version(c: &mut Conn) {
    let records: Bytes = batch(&["a", "b"], None, Compression::None);
    for v in versions(ApiKey::Produce) {
        let r = c.call(
            v,
            &ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(5000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(topic("ct-v2"))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records.clone()))])]),
        );
        assert_eq!(
            r.responses[0].partition_responses[0].error_code, 0,
            "Produce v{v}"
        );
    }
}

/// Metadata at every advertised version, on the broker behind `c`.
fn metadata_at_every_version(c: &mut Conn) {
    for v in versions(ApiKey::Metadata) {
        let t = MetadataRequestTopic::default().with_name(Some(topic("ct-v2")));
        let r = c.call(v, &MetadataRequest::default().with_topics(Some(vec![t])));
        assert_eq!(r.topics[0].error_code, 0, "Metadata v{v}");
        assert_eq!(r.topics[0].partitions.len(), 2);
    }
}

/// Fetch at every advertised version, on the broker behind `c`.
fn fetch_at_every_version(c: &mut Conn) {
    for v in versions(ApiKey::Fetch) {
        let r = c.call(
            v,
            &FetchRequest::default()
                .with_max_wait_ms(10)
                .with_max_bytes(1 << 20)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(topic("ct-v2"))
                    .with_partitions(vec![FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1 << 20)])]),
        );
        let p = &r.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "Fetch v{v}");
        assert!(
            p.records.as_ref().is_some_and(|r| !r.is_empty()),
            "Fetch v{v}"
        );
    }
}

/// ListOffsets at every advertised version, on the broker behind `c`.
fn list_offsets_at_every_version(c: &mut Conn) {
    for v in versions(ApiKey::ListOffsets) {
        // Max timestamp from v7, earliest local from v8, latest tiered from v9.
        let specs = [(-2, 1), (-1, 1), (0, 1), (-3, 7), (-4, 8), (-5, 9)];
        for (ts, _) in specs.into_iter().filter(|(_, since)| v >= *since) {
            let r = c.call(
                v,
                &ListOffsetsRequest::default()
                    .with_timeout_ms(if v >= 10 { 5000 } else { 0 })
                    .with_topics(vec![ListOffsetsTopic::default()
                        .with_name(topic("ct-v2"))
                        .with_partitions(vec![ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(ts)])]),
            );
            assert_eq!(
                r.topics[0].partitions[0].error_code, 0,
                "ListOffsets v{v} ts {ts}"
            );
        }
    }
}

/// DeleteRecords at every advertised version, on the broker behind `c`: each moves the log
/// start of `ct-v2`-0 one record further.
fn delete_records_at_every_version(c: &mut Conn) {
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };
    for v in versions(ApiKey::DeleteRecords) {
        let offset = i64::from(v) + 1;
        let r = c.call(
            v,
            &DeleteRecordsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![DeleteRecordsTopic::default()
                    .with_name(topic("ct-v2"))
                    .with_partitions(vec![DeleteRecordsPartition::default()
                        .with_partition_index(0)
                        .with_offset(offset)])]),
        );
        let p = &r.topics[0].partitions[0];
        assert_eq!(
            (p.error_code, p.low_watermark),
            (0, offset),
            "DeleteRecords v{v}"
        );
    }
}

/// OffsetForLeaderEpoch at every advertised version, on the broker behind `c`.
fn offset_for_leader_epoch_at_every_version(c: &mut Conn) {
    for v in versions(ApiKey::OffsetForLeaderEpoch) {
        let r = c.call(
            v,
            &OffsetForLeaderEpochRequest::default().with_topics(vec![
                OffsetForLeaderTopic::default()
                    .with_topic(topic("ct-v2"))
                    .with_partitions(vec![OffsetForLeaderPartition::default()
                        .with_partition(0)
                        .with_leader_epoch(0)]),
            ]),
        );
        assert_eq!(
            r.topics[0].partitions[0].error_code, 0,
            "OffsetForLeaderEpoch v{v}"
        );
    }
}

/// DescribeConfigs at every advertised version, on the broker behind `c`.
fn describe_configs_at_every_version(c: &mut Conn) {
    for v in versions(ApiKey::DescribeConfigs) {
        let r = c.call(
            v,
            &DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("ct-v2")),
                DescribeConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(s("1")),
            ]),
        );
        assert!(
            r.results.iter().all(|x| x.error_code == 0),
            "DescribeConfigs v{v}"
        );
    }
}

/// CreatePartitions at every advertised version, on the broker behind `c`.
fn create_partitions_at_every_version(c: &mut Conn) {
    for v in versions(ApiKey::CreatePartitions) {
        let r = c.call(
            v,
            &CreatePartitionsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![CreatePartitionsTopic::default()
                    .with_name(topic("ct-v3"))
                    .with_count(3 + i32::from(v))]),
        );
        assert_eq!(r.results[0].error_code, 0, "CreatePartitions v{v}");
    }
}

/// DescribeQuorum at every advertised version, on the broker behind `c`.
fn describe_quorum_at_every_version(c: &mut Conn) {
    for v in versions(ApiKey::DescribeQuorum) {
        let r = c.call(
            v,
            &DescribeQuorumRequest::default().with_topics(vec![
                describe_quorum_request::TopicData::default()
                    .with_topic_name(topic("__cluster_metadata"))
                    .with_partitions(vec![describe_quorum_request::PartitionData::default()]),
            ]),
        );
        let p = &r.topics[0].partitions[0];
        assert_eq!((r.error_code, p.error_code), (0, 0), "DescribeQuorum v{v}");
        assert_eq!(p.leader_id.0, 1, "this node leads its single-voter quorum");
        assert_eq!(p.current_voters.len(), 1);
        assert!(p.high_watermark > 0 && p.current_voters[0].log_end_offset >= p.high_watermark);
    }
}

/// DescribeCluster at every advertised version, on the broker behind `c`.
fn describe_cluster_at_every_version(c: &mut Conn) {
    for v in versions(ApiKey::DescribeCluster) {
        let r = c.call(v, &DescribeClusterRequest::default());
        assert_eq!(r.brokers.len(), 1, "DescribeCluster v{v}");
    }
}

/// UnregisterBroker at every advertised version, on the broker behind `c`.
fn unregister_broker_at_every_version(c: &mut Conn) {
    for v in versions(ApiKey::UnregisterBroker) {
        let unregister = |c: &mut Conn, id| {
            let r = c.call(
                v,
                &UnregisterBrokerRequest::default().with_broker_id(BrokerId(id)),
            );
            (r.error_code, r.error_message.map(|m| m.to_string()))
        };
        assert_eq!(
            unregister(c, 42),
            (
                ResponseError::BrokerIdNotRegistered.code(),
                Some("Broker ID 42 is not currently registered".into())
            ),
            "UnregisterBroker v{v}"
        );
        let (code, message) = unregister(c, 1);
        assert_eq!(
            code,
            ResponseError::InvalidRequest.code(),
            "this live broker: {message:?}"
        );
    }
}

/// InitProducerId at every advertised version, on the broker behind `c`.
fn init_producer_id_at_every_version(c: &mut Conn) {
    for v in versions(ApiKey::InitProducerId) {
        let r = c.call(
            v,
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(1000),
        );
        assert_eq!(r.error_code, 0, "InitProducerId v{v}");
    }
}

/// DescribeLogDirs at every advertised version, on the broker behind `c`.
fn describe_log_dirs_at_every_version(c: &mut Conn) {
    for v in versions(ApiKey::DescribeLogDirs) {
        use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
        for topics in [
            None,
            Some(vec![DescribableLogDirTopic::default()
                .with_topic(topic("ct-v2"))
                .with_partitions(vec![0])]),
        ] {
            let all = topics.is_none();
            let r = c.call(v, &DescribeLogDirsRequest::default().with_topics(topics));
            assert_eq!(
                (r.error_code, r.results.len()),
                (0, 1),
                "DescribeLogDirs v{v}"
            );
            let dir = &r.results[0];
            let t = dir
                .topics
                .iter()
                .find(|t| t.name.0.as_str() == "ct-v2")
                .expect("the produced-to topic");
            let sizes: Vec<(i32, bool)> = t
                .partitions
                .iter()
                .map(|p| (p.partition_index, p.partition_size > 0))
                .collect();
            let want = if all {
                vec![(0, true), (1, false)]
            } else {
                vec![(0, true)]
            };
            assert_eq!(sizes, want, "DescribeLogDirs v{v}");
            assert_eq!(
                dir.topics.len() > 1,
                all,
                "DescribeLogDirs v{v}: only what was asked"
            );
        }
    }
}

/// AlterPartitionReassignments at every advertised version, on the broker behind `c`.
fn alter_partition_reassignments_at_every_version(c: &mut Conn) {
    for v in versions(ApiKey::AlterPartitionReassignments) {
        use kafka_protocol::messages::alter_partition_reassignments_request::*;
        for (replicas, want) in [(Some(vec![BrokerId(1)]), 0), (None, 85)] {
            let r = c.call(
                v,
                &AlterPartitionReassignmentsRequest::default()
                    // v1 can forbid a change of replication factor; this one keeps it.
                    .with_allow_replication_factor_change(v == 0)
                    .with_topics(vec![ReassignableTopic::default()
                        .with_name(topic("ct-v2"))
                        .with_partitions(vec![ReassignablePartition::default()
                            .with_partition_index(0)
                            .with_replicas(replicas)])]),
            );
            let p = &r.responses[0].partitions[0];
            assert_eq!(
                (r.error_code, p.error_code),
                (0, want),
                "AlterPartitionReassignments v{v}: moving to where it is changes nothing, and \
                 there is nothing to cancel"
            );
        }
    }
}

/// ListPartitionReassignments at every advertised version, on the broker behind `c`.
fn list_partition_reassignments_at_every_version(c: &mut Conn) {
    for v in versions(ApiKey::ListPartitionReassignments) {
        use kafka_protocol::messages::list_partition_reassignments_request::*;
        for topics in [
            None,
            Some(vec![ListPartitionReassignmentsTopics::default()
                .with_name(topic("ct-v2"))
                .with_partition_indexes(vec![0, 1])]),
        ] {
            let r = c.call(
                v,
                &ListPartitionReassignmentsRequest::default().with_topics(topics),
            );
            assert_eq!(
                (r.error_code, r.topics.len()),
                (0, 0),
                "ListPartitionReassignments v{v}"
            );
        }
    }
}

/// ElectLeaders at every advertised version, on the broker behind `c`.
fn elect_leaders_at_every_version(c: &mut Conn) {
    for v in versions(ApiKey::ElectLeaders) {
        use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
        let r = c.call(
            v,
            &ElectLeadersRequest::default().with_topic_partitions(Some(vec![
                TopicPartitions::default()
                    .with_topic(topic("ct-v2"))
                    .with_partitions(vec![0]),
            ])),
        );
        let p = &r.replica_election_results[0].partition_result[0];
        assert_eq!(
            (r.error_code, p.partition_id, p.error_code),
            (0, 0, 84),
            "ElectLeaders v{v}: the only replica leads already"
        );
        let all = c.call(
            v,
            &ElectLeadersRequest::default().with_topic_partitions(None),
        );
        assert!(
            all.replica_election_results
                .iter()
                .all(|t| t.partition_result.is_empty()),
            "ElectLeaders v{v}: every partition has its preferred leader"
        );
    }
}

/// DeleteTopics at every advertised version, on the broker behind `c`.
fn delete_topics_at_every_version(c: &mut Conn) {
    for v in versions(ApiKey::DeleteTopics) {
        let name = format!("ct-v{}", v + 1);
        let req = if v >= 6 {
            DeleteTopicsRequest::default().with_topics(vec![
                DeleteTopicState::default().with_name(Some(topic(&name)))
            ])
        } else {
            DeleteTopicsRequest::default().with_topic_names(vec![topic(&name)])
        };
        let r = c.call(v, &req.with_timeout_ms(5000));
        assert_eq!(r.responses[0].error_code, 0, "DeleteTopics v{v}");
    }
}

#[test]
fn every_group_api_answers_at_every_advertised_version() {
    let b = Broker::start();
    let mut c = Conn::connect(b.addr);
    let r = c.call(
        5,
        &CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
            .with_name(topic("g"))
            .with_num_partitions(1)
            .with_replication_factor(1)]),
    );
    assert_eq!(r.topics[0].error_code, 0);
    find_coordinator_at_every_version(&mut c);
    join_and_sync_group_at_every_version(&mut c);
    for v in versions(ApiKey::OffsetFetch) {
        let r = if v >= 8 {
            c.call(
                v,
                &OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default(
                )
                .with_group_id(GroupId(s("grp-5")))
                .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                    .with_name(topic("g"))
                    .with_partition_indexes(vec![0])]))]),
            )
        } else {
            c.call(
                v,
                &OffsetFetchRequest::default()
                    .with_group_id(GroupId(s("grp-5")))
                    .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                        .with_name(topic("g"))
                        .with_partition_indexes(vec![0])])),
            )
        };
        let offset = if v >= 8 {
            r.groups[0].topics[0].partitions[0].committed_offset
        } else {
            r.topics[0].partitions[0].committed_offset
        };
        assert_eq!(offset, 7, "OffsetFetch v{v}");
    }
    for v in versions(ApiKey::ListGroups) {
        let r = c.call(v, &ListGroupsRequest::default());
        assert!(r.groups.len() >= 5, "ListGroups v{v}");
    }
    for v in versions(ApiKey::OffsetDelete) {
        use kafka_protocol::messages::offset_delete_request::{
            OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
        };
        let r = c.call(
            v,
            &OffsetDeleteRequest::default()
                .with_group_id(GroupId(s("grp-5")))
                .with_topics(vec![OffsetDeleteRequestTopic::default()
                    .with_name(topic("g"))
                    .with_partitions(vec![
                        OffsetDeleteRequestPartition::default().with_partition_index(0)
                    ])]),
        );
        assert_eq!(r.error_code, 0, "OffsetDelete v{v}");
        assert_eq!(r.topics[0].partitions[0].error_code, 0, "OffsetDelete v{v}");
    }
    for v in versions(ApiKey::DeleteGroups) {
        let r = c.call(
            v,
            &DeleteGroupsRequest::default()
                .with_groups_names(vec![GroupId(s(&format!("grp-{v}")))]),
        );
        assert_eq!(r.results[0].error_code, 0, "DeleteGroups v{v}");
    }
}

/// FindCoordinator at every advertised version, on the broker behind `c`.
fn find_coordinator_at_every_version(c: &mut Conn) {
    for v in versions(ApiKey::FindCoordinator) {
        let req = if v >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![s("grp")])
        } else {
            FindCoordinatorRequest::default().with_key(s("grp"))
        };
        let r = c.call(v, &req);
        let err = if v >= 4 {
            r.coordinators[0].error_code
        } else {
            r.error_code
        };
        assert_eq!(err, 0, "FindCoordinator v{v}");
    }
}

/// JoinGroup at every advertised version, each in a group of its own, then SyncGroup,
/// Heartbeat, OffsetCommit, DescribeGroups and LeaveGroup there, on the broker behind `c`.
fn join_and_sync_group_at_every_version(c: &mut Conn) {
    for v in versions(ApiKey::JoinGroup) {
        let group = format!("grp-{v}");
        let join = |member: &str| {
            JoinGroupRequest::default()
                .with_group_id(GroupId(s(&group)))
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(10_000)
                .with_member_id(s(member))
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(s("range"))
                    .with_metadata(Bytes::from_static(b"meta"))])
        };
        let mut r = c.call(v, &join(""));
        if v >= 4 {
            assert_eq!(r.error_code, 79, "JoinGroup v{v} needs a member id first");
            let id = r.member_id.to_string();
            r = c.call(v, &join(&id));
        }
        assert_eq!(r.error_code, 0, "JoinGroup v{v}");
        assert_eq!(r.leader, r.member_id);
        let member = r.member_id.clone();
        let sync_v = v.min(*versions(ApiKey::SyncGroup).end());
        let mut sync = SyncGroupRequest::default()
            .with_group_id(GroupId(s(&group)))
            .with_generation_id(r.generation_id)
            .with_member_id(member.clone())
            .with_assignments(vec![SyncGroupRequestAssignment::default()
                .with_member_id(member.clone())
                .with_assignment(Bytes::from_static(b"assigned"))]);
        if sync_v >= 5 {
            sync = sync
                .with_protocol_type(Some(s("consumer")))
                .with_protocol_name(Some(s("range")));
        }
        let sr = c.call(sync_v, &sync);
        assert_eq!(sr.error_code, 0, "SyncGroup v{sync_v}");
        assert_eq!(&sr.assignment[..], b"assigned");
        let hb_v = v.min(*versions(ApiKey::Heartbeat).end());
        let hr = c.call(
            hb_v,
            &HeartbeatRequest::default()
                .with_group_id(GroupId(s(&group)))
                .with_generation_id(r.generation_id)
                .with_member_id(member.clone()),
        );
        assert_eq!(hr.error_code, 0, "Heartbeat v{hb_v}");
        let oc_v = v.clamp(2, *versions(ApiKey::OffsetCommit).end());
        let ocr = c.call(
            oc_v,
            &OffsetCommitRequest::default()
                .with_group_id(GroupId(s(&group)))
                .with_generation_id_or_member_epoch(r.generation_id)
                .with_member_id(member.clone())
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(topic("g"))
                    .with_partitions(vec![OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(7)])]),
        );
        assert_eq!(
            ocr.topics[0].partitions[0].error_code, 0,
            "OffsetCommit v{oc_v}"
        );
        let dr = c.call(
            v.min(*versions(ApiKey::DescribeGroups).end()),
            &DescribeGroupsRequest::default().with_groups(vec![GroupId(s(&group))]),
        );
        assert_eq!(dr.groups[0].group_state.as_str(), "Stable");
        let lv = v.min(*versions(ApiKey::LeaveGroup).end());
        let leave = if lv >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(GroupId(s(&group)))
                .with_members(vec![
                    MemberIdentity::default().with_member_id(member.clone())
                ])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(GroupId(s(&group)))
                .with_member_id(member.clone())
        };
        let lr = c.call(lv, &leave);
        assert_eq!(lr.error_code, 0, "LeaveGroup v{lv}");
    }
}

#[test]
fn every_transaction_api_answers_at_every_advertised_version() {
    use kafka_protocol::messages::add_partitions_to_txn_request::{
        AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
    };
    use kafka_protocol::messages::describe_producers_request::TopicRequest;
    use kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::write_txn_markers_request::{
        WritableTxnMarker, WritableTxnMarkerTopic,
    };
    let b = Broker::start();
    let mut c = Conn::connect(b.addr);
    let r = c.call(
        5,
        &CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic("txv"))
                .with_num_partitions(1)
                .with_replication_factor(1)])
            .with_timeout_ms(5000),
    );
    assert_eq!(r.topics[0].error_code, 0);
    let txv = || {
        vec![AddPartitionsToTxnTopic::default()
            .with_name(topic("txv"))
            .with_partitions(vec![0])]
    };
    let mut ended = Vec::new();
    for v in versions(ApiKey::AddPartitionsToTxn).filter(|v| *v <= 3) {
        let id = format!("apt-v{v}");
        let (pid, epoch) = transactional_producer(&mut c, &id);
        let r = c.call(
            v,
            &AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(TransactionalId(s(&id)))
                .with_v3_and_below_producer_id(ProducerId(pid))
                .with_v3_and_below_producer_epoch(epoch)
                .with_v3_and_below_topics(txv()),
        );
        let codes: Vec<i16> = r.results_by_topic_v3_and_below[0]
            .results_by_partition
            .iter()
            .map(|p| p.partition_error_code)
            .collect();
        assert_eq!(codes, [0], "AddPartitionsToTxn v{v}");
        ended.push((id, pid, epoch));
    }
    // The brokers' batched form (v4+), verify-only: the partition is in the first producer's
    // transaction, not in a stranger's.
    let (first_id, first_pid, first_epoch) = ended[0].clone();
    for v in versions(ApiKey::AddPartitionsToTxn).filter(|v| *v >= 4) {
        let check = |id: &str, pid: i64| {
            AddPartitionsToTxnTransaction::default()
                .with_transactional_id(TransactionalId(s(id)))
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(first_epoch)
                .with_verify_only(true)
                .with_topics(txv())
        };
        let r = c.call(
            v,
            &AddPartitionsToTxnRequest::default()
                .with_transactions(vec![check(&first_id, first_pid), check("nobody", 1)]),
        );
        let codes: Vec<i16> = r
            .results_by_transaction
            .iter()
            .map(|t| t.topic_results[0].results_by_partition[0].partition_error_code)
            .collect();
        assert_eq!(
            codes,
            [0, ResponseError::InvalidProducerIdMapping.code()],
            "AddPartitionsToTxn v{v}"
        );
    }
    for v in versions(ApiKey::AddOffsetsToTxn) {
        let (id, pid, epoch) = &ended[v as usize % ended.len()];
        let r = c.call(
            v,
            &AddOffsetsToTxnRequest::default()
                .with_transactional_id(TransactionalId(s(id)))
                .with_producer_id(ProducerId(*pid))
                .with_producer_epoch(*epoch)
                .with_group_id(GroupId(s("txv-group"))),
        );
        assert_eq!(r.error_code, 0, "AddOffsetsToTxn v{v}");
    }
    for v in versions(ApiKey::TxnOffsetCommit) {
        let (id, pid, epoch) = &ended[v as usize % ended.len()];
        let r = c.call(
            v,
            &TxnOffsetCommitRequest::default()
                .with_transactional_id(TransactionalId(s(id)))
                .with_group_id(GroupId(s("txv-group")))
                .with_producer_id(ProducerId(*pid))
                .with_producer_epoch(*epoch)
                .with_generation_id(-1)
                .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                    .with_name(topic("txv"))
                    .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(1)])]),
        );
        assert_eq!(
            r.topics[0].partitions[0].error_code, 0,
            "TxnOffsetCommit v{v}"
        );
    }
    for v in versions(ApiKey::DescribeTransactions) {
        let r = c.call(
            v,
            &DescribeTransactionsRequest::default().with_transactional_ids(vec![
                TransactionalId(s(&first_id)),
                TransactionalId(s("nobody")),
            ]),
        );
        let states: Vec<(i16, &str)> = r
            .transaction_states
            .iter()
            .map(|t| (t.error_code, t.transaction_state.as_str()))
            .collect();
        assert_eq!(
            states,
            [
                (0, "Ongoing"),
                (ResponseError::TransactionalIdNotFound.code(), "")
            ],
            "DescribeTransactions v{v}"
        );
    }
    for v in versions(ApiKey::ListTransactions) {
        let r = c.call(
            v,
            &ListTransactionsRequest::default()
                .with_state_filters(vec![s("Ongoing"), s("Bogus")])
                .with_duration_filter(-1),
        );
        assert_eq!(r.error_code, 0, "ListTransactions v{v}");
        assert_eq!(
            r.unknown_state_filters,
            [s("Bogus")],
            "ListTransactions v{v}"
        );
        assert_eq!(
            r.transaction_states.len(),
            ended.len(),
            "ListTransactions v{v}"
        );
    }
    for v in versions(ApiKey::DescribeProducers) {
        let r = c.call(
            v,
            &DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
                .with_name(topic("txv"))
                .with_partition_indexes(vec![0])]),
        );
        assert_eq!(
            r.topics[0].partitions[0].error_code, 0,
            "DescribeProducers v{v}"
        );
    }
    for (i, v) in versions(ApiKey::EndTxn).enumerate() {
        let (id, pid, epoch) = &ended[i % ended.len()];
        let r = c.call(
            v,
            &EndTxnRequest::default()
                .with_transactional_id(TransactionalId(s(id)))
                .with_producer_id(ProducerId(*pid))
                .with_producer_epoch(*epoch)
                .with_committed(true),
        );
        // A retried commit of a completed transaction succeeds too.
        assert_eq!(r.error_code, 0, "EndTxn v{v}");
    }
    for v in versions(ApiKey::WriteTxnMarkers) {
        let r = c.call(
            v,
            &WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
                .with_producer_id(ProducerId(4242))
                .with_producer_epoch(0)
                .with_transaction_result(false)
                .with_topics(vec![WritableTxnMarkerTopic::default()
                    .with_name(topic("txv"))
                    .with_partition_indexes(vec![0])])]),
        );
        assert_eq!(
            r.markers[0].topics[0].partitions[0].error_code, 0,
            "WriteTxnMarkers v{v}"
        );
    }
}

#[test]
fn the_consumer_group_protocol_answers_at_every_advertised_version() {
    let b = Broker::start();
    let mut c = Conn::connect(b.addr);
    let r = c.call(
        5,
        &CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic("cgv"))
                .with_num_partitions(2)
                .with_replication_factor(1)])
            .with_timeout_ms(5000),
    );
    assert_eq!(r.topics[0].error_code, 0);
    // The coordinator first, as a client does (it creates __consumer_offsets).
    let found = c.call(3, &FindCoordinatorRequest::default().with_key(s("cg-v0")));
    assert_eq!(found.error_code, 0);
    for v in versions(ApiKey::ConsumerGroupHeartbeat) {
        let group = GroupId(s(&format!("cg-v{v}")));
        let member = format!("member-v{v}");
        let r = c.call(
            v,
            &ConsumerGroupHeartbeatRequest::default()
                .with_group_id(group.clone())
                .with_member_id(s(&member))
                .with_member_epoch(0)
                .with_rebalance_timeout_ms(30_000)
                .with_subscribed_topic_names(Some(vec![topic("cgv")]))
                .with_topic_partitions(Some(vec![])),
        );
        assert_eq!(
            r.error_code, 0,
            "ConsumerGroupHeartbeat v{v}: {:?}",
            r.error_message
        );
        assert!(r.member_epoch > 0, "ConsumerGroupHeartbeat v{v}");
        let assigned: usize = r.assignment.as_ref().map_or(0, |a| {
            a.topic_partitions.iter().map(|t| t.partitions.len()).sum()
        });
        assert_eq!(
            assigned, 2,
            "ConsumerGroupHeartbeat v{v}: a lone member gets both"
        );
        let member_id = r.member_id.clone().expect("member id");
        for dv in versions(ApiKey::ConsumerGroupDescribe) {
            let d = c.call(
                dv,
                &ConsumerGroupDescribeRequest::default().with_group_ids(vec![group.clone()]),
            );
            let g = &d.groups[0];
            assert_eq!(
                (g.error_code, g.members.len()),
                (0, 1),
                "ConsumerGroupDescribe v{dv}"
            );
            assert_eq!(
                g.members[0].member_id, member_id,
                "ConsumerGroupDescribe v{dv}"
            );
        }
        // A bogus epoch is fenced; leaving (-1) succeeds.
        let fenced = c.call(
            v,
            &ConsumerGroupHeartbeatRequest::default()
                .with_group_id(group.clone())
                .with_member_id(member_id.clone())
                .with_member_epoch(r.member_epoch + 7),
        );
        assert_eq!(fenced.error_code, ResponseError::FencedMemberEpoch.code());
        let left = c.call(
            v,
            &ConsumerGroupHeartbeatRequest::default()
                .with_group_id(group)
                .with_member_id(member_id)
                .with_member_epoch(-1),
        );
        assert_eq!((left.error_code, left.member_epoch), (0, -1), "leave v{v}");
    }
}
