//! ACL administration and enforcement through the request path: CreateAcls, DescribeAcls and
//! DeleteAcls commit through the metadata log, and a DENY stops a produce before it appends.

use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::tests::{broker_over, broker_with, call, produce_req, two_brokers_image};
use crate::authz::{Acl, WireAcl, ANONYMOUS, ANY};
use crate::cluster::image::MetadataImage;
use crate::cluster::metadata::{MetadataLog, MetadataRecord};
use crate::config::STANDARD_AUTHORIZER;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// DENY WRITE on topic `here` for the anonymous principal.
fn deny_write_here() -> AclCreation {
    AclCreation::default()
        .with_resource_type(2)
        .with_resource_name(s("here"))
        .with_resource_pattern_type(3)
        .with_principal(s(ANONYMOUS))
        .with_host(s("*"))
        .with_operation(4)
        .with_permission_type(2)
}

fn describe_all() -> DescribeAclsRequest {
    DescribeAclsRequest::default()
        .with_resource_type_filter(ANY)
        .with_resource_name_filter(None)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_pattern_type_filter(ANY)
        .with_operation(ANY)
        .with_permission_type(ANY)
}

/// The StandardAuthorizer allowing what no ACL names.
fn open_authorizer() -> String {
    format!("authorizer.class.name={STANDARD_AUTHORIZER}\nallow.everyone.if.no.acl.found=true\n")
}

#[tokio::test]
async fn a_deny_acl_refuses_the_produce_and_appends_nothing_until_it_is_deleted() {
    let d = tempfile::tempdir().expect("tempdir");
    let extra = open_authorizer();
    let b = broker_with(d.path(), &two_brokers_image(), &extra);
    let created = call(
        &b,
        3,
        CreateAclsRequest::default().with_creations(vec![
            deny_write_here(),
            deny_write_here().with_resource_type(4),
        ]),
    )
    .await;
    let codes: Vec<i16> = created.results.iter().map(|r| r.error_code).collect();
    assert_eq!(codes, [0, ResponseError::InvalidRequest.code()]);

    let r = call(&b, 9, produce_req("here", 1)).await;
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, ResponseError::TopicAuthorizationFailed.code());
    let here = b.cluster.partition("here", 0).expect("partition");
    assert_eq!(here.log_end_offset(), 0, "nothing appended");

    let described = call(&b, 3, describe_all()).await;
    assert_eq!(described.error_code, 0);
    assert_eq!(described.resources.len(), 1);
    assert_eq!(described.resources[0].resource_name.as_str(), "here");
    assert_eq!(described.resources[0].acls[0].permission_type, 2);

    let filter = DeleteAclsFilter::default()
        .with_resource_type_filter(2)
        .with_resource_name_filter(Some(s("here")))
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_pattern_type_filter(2)
        .with_operation(ANY)
        .with_permission_type(ANY);
    let deleted = call(
        &b,
        3,
        DeleteAclsRequest::default().with_filters(vec![filter]),
    )
    .await;
    assert_eq!(deleted.filter_results[0].matching_acls.len(), 1);
    let r = call(&b, 9, produce_req("here", 1)).await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    assert!(call(&b, 3, describe_all()).await.resources.is_empty());
}

#[tokio::test]
async fn by_default_nobody_may_administer_acls_but_a_super_user() {
    let d = tempfile::tempdir().expect("tempdir");
    let create = || CreateAclsRequest::default().with_creations(vec![deny_write_here()]);
    let extra = format!("authorizer.class.name={STANDARD_AUTHORIZER}\n");
    let b = broker_with(d.path(), &two_brokers_image(), &extra);
    let denied = ResponseError::ClusterAuthorizationFailed.code();
    assert_eq!(call(&b, 3, create()).await.results[0].error_code, denied);
    assert_eq!(call(&b, 3, describe_all()).await.error_code, denied);
    let r = call(&b, 9, produce_req("here", 1)).await;
    let code = r.responses[0].partition_responses[0].error_code;
    assert_eq!(code, ResponseError::TopicAuthorizationFailed.code());
    drop(b);
    let d = tempfile::tempdir().expect("tempdir");
    let b = broker_with(
        d.path(),
        &two_brokers_image(),
        &format!("{extra}super.users=User:root;{ANONYMOUS}\n"),
    );
    assert_eq!(call(&b, 3, create()).await.results[0].error_code, 0);
    let r = call(&b, 9, produce_req("here", 1)).await;
    assert_eq!(
        r.responses[0].partition_responses[0].error_code, 0,
        "a super user"
    );
}

#[tokio::test]
async fn without_an_authorizer_acl_requests_are_security_disabled_and_nothing_is_checked() {
    let d = tempfile::tempdir().expect("tempdir");
    let b = broker_over(d.path(), &two_brokers_image());
    let disabled = ResponseError::SecurityDisabled.code();
    let created = call(
        &b,
        3,
        CreateAclsRequest::default().with_creations(vec![deny_write_here()]),
    )
    .await;
    assert_eq!(created.results[0].error_code, disabled);
    assert_eq!(call(&b, 3, describe_all()).await.error_code, disabled);
    let deleted = call(
        &b,
        3,
        DeleteAclsRequest::default().with_filters(vec![DeleteAclsFilter::default()]),
    )
    .await;
    assert_eq!(deleted.filter_results[0].error_code, disabled);
    let r = call(&b, 9, produce_req("here", 1)).await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
}

#[tokio::test]
async fn acls_survive_a_restart_from_the_metadata_log() {
    let d = tempfile::tempdir().expect("tempdir");
    let extra = open_authorizer();
    let b = broker_with(d.path(), &two_brokers_image(), &extra);
    let created = call(
        &b,
        3,
        CreateAclsRequest::default().with_creations(vec![deny_write_here()]),
    )
    .await;
    assert_eq!(created.results[0].error_code, 0);
    drop(b);
    let (_, records) = MetadataLog::open(d.path()).expect("metadata log");
    let mut image = MetadataImage::default();
    for r in &records {
        image.apply(r);
    }
    assert_eq!(image.acls.len(), 1, "replayed from the log");
}

#[tokio::test]
async fn acls_in_the_committed_image_close_metadata_and_fetch_on_every_broker() {
    let d = tempfile::tempdir().expect("tempdir");
    let mut image = two_brokers_image();
    // Committed elsewhere: this broker learns it from the image it reconciles.
    image.apply(&MetadataRecord::Acl {
        id: uuid::Uuid::new_v4(),
        acl: Acl::from_wire(WireAcl {
            resource_type: 2,
            resource_name: Some("here"),
            pattern_type: 3,
            principal: Some(ANONYMOUS),
            host: Some("*"),
            operation: 4,
            permission: 2,
        })
        .expect("acl"),
    });
    let extra = open_authorizer();
    let b = broker_with(d.path(), &image, &extra);
    let all = call(&b, 12, MetadataRequest::default().with_topics(None)).await;
    let names: Vec<String> = all
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
        .collect();
    assert_eq!(
        names,
        ["elsewhere"],
        "a topic with ACLs but none allowing DESCRIBE is hidden"
    );
    let named = call(
        &b,
        12,
        MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(TopicName(s("here"))))
        ])),
    )
    .await;
    let code = named.topics[0].error_code;
    assert_eq!(code, ResponseError::TopicAuthorizationFailed.code());
    let fetch = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(s("here")))
            .with_partitions(vec![FetchPartition::default()])]);
    let r = call(&b, 12, fetch).await;
    let code = r.responses[0].partitions[0].error_code;
    assert_eq!(code, ResponseError::TopicAuthorizationFailed.code());
}

/// Kafka's checks on the inter-broker and cluster-administration APIs: under a default-deny
/// authorizer, ANONYMOUS (no ACLs) is refused each with Kafka's code.
#[tokio::test]
async fn cluster_apis_need_their_cluster_operation() {
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    let d = tempfile::tempdir().expect("tempdir");
    let extra = format!("authorizer.class.name={STANDARD_AUTHORIZER}\n");
    let b = broker_with(d.path(), &two_brokers_image(), &extra);
    let cluster_denied = ResponseError::ClusterAuthorizationFailed.code();

    let pid = call(
        &b,
        4,
        InitProducerIdRequest::default().with_transactional_id(None),
    )
    .await;
    assert_eq!(pid.error_code, cluster_denied);

    let epochs = |replica: i32| {
        OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(replica))
            .with_topics(vec![OffsetForLeaderTopic::default()
                .with_topic(TopicName(s("here")))
                .with_partitions(vec![
                    OffsetForLeaderPartition::default().with_leader_epoch(1)
                ])])
    };
    let client = call(&b, 4, epochs(-1)).await;
    assert_eq!(
        client.topics[0].partitions[0].error_code,
        ResponseError::TopicAuthorizationFailed.code()
    );
    let follower = call(&b, 4, epochs(2)).await;
    assert_eq!(follower.topics[0].partitions[0].error_code, cluster_denied);

    let fetch = call(
        &b,
        12,
        FetchRequest::default()
            .with_replica_id(BrokerId(2))
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(s("here")))
                .with_partitions(vec![FetchPartition::default()])]),
    )
    .await;
    assert_eq!(
        fetch.responses[0].partitions[0].error_code,
        ResponseError::TopicAuthorizationFailed.code()
    );

    let dirs = call(&b, 4, DescribeLogDirsRequest::default()).await;
    assert_eq!((dirs.error_code, dirs.results.len()), (cluster_denied, 0));
    let elect = call(&b, 2, ElectLeadersRequest::default()).await;
    assert_eq!(elect.error_code, cluster_denied);
    let alter = call(&b, 1, AlterPartitionReassignmentsRequest::default()).await;
    assert_eq!(alter.error_code, cluster_denied);
    let list = call(&b, 0, ListPartitionReassignmentsRequest::default()).await;
    assert_eq!(list.error_code, cluster_denied);
    let quorum = call(&b, 2, DescribeQuorumRequest::default()).await;
    assert_eq!(quorum.error_code, cluster_denied);
    let unregister = call(
        &b,
        0,
        UnregisterBrokerRequest::default().with_broker_id(BrokerId(2)),
    )
    .await;
    assert_eq!(unregister.error_code, cluster_denied);

    // WRITE on any one topic is enough for an idempotent producer id.
    let mut image = two_brokers_image();
    let write_here = Acl {
        resource_type: crate::authz::ResourceType::Topic,
        resource_name: "here".into(),
        pattern_type: crate::authz::PatternType::Literal,
        principal: ANONYMOUS.into(),
        host: "*".into(),
        operation: crate::authz::Operation::Write,
        permission: crate::authz::Permission::Allow,
    };
    image.apply(&MetadataRecord::Acl {
        id: uuid::Uuid::new_v4(),
        acl: write_here,
    });
    let d2 = tempfile::tempdir().expect("tempdir");
    let writer = broker_with(d2.path(), &image, &extra);
    let pid = call(
        &writer,
        4,
        InitProducerIdRequest::default().with_transactional_id(None),
    )
    .await;
    assert_eq!(pid.error_code, 0);
    assert!(pid.producer_id.0 >= 0);
}
