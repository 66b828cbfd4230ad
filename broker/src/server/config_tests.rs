//! Dynamic broker configs through the wire: BROKER resources altered, refused and described as
//! Kafka does, and a cluster-wide default taking effect on a topic without its own override.

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::tests::{broker, call, produce_req};

const BROKER: i8 = 4;

fn op(name: &str, operation: i8, value: Option<&str>) -> AlterableConfig {
    AlterableConfig::default()
        .with_name(StrBytes::from_string(name.into()))
        .with_config_operation(operation)
        .with_value(value.map(|v| StrBytes::from_string(v.into())))
}

fn alter(
    resource: &str,
    ops: Vec<AlterableConfig>,
    validate_only: bool,
) -> IncrementalAlterConfigsRequest {
    IncrementalAlterConfigsRequest::default()
        .with_validate_only(validate_only)
        .with_resources(vec![AlterConfigsResource::default()
            .with_resource_type(BROKER)
            .with_resource_name(StrBytes::from_string(resource.into()))
            .with_configs(ops)])
}

fn describe(resource_type: i8, name: &str, key: &str) -> DescribeConfigsRequest {
    DescribeConfigsRequest::default()
        .with_include_synonyms(true)
        .with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(StrBytes::from_string(name.into()))
            .with_configuration_keys(Some(vec![StrBytes::from_string(key.into())]))])
}

/// (value, source, [(synonym source, name, value)]) of the one entry a describe returned.
fn entry(r: &DescribeConfigsResponse) -> (String, i8, Vec<(i8, String, String)>) {
    assert_eq!(
        r.results[0].error_code, 0,
        "{:?}",
        r.results[0].error_message
    );
    let e = &r.results[0].configs[0];
    let synonyms = e
        .synonyms
        .iter()
        .map(|s| {
            let value = s.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
            (s.source, s.name.to_string(), value)
        })
        .collect();
    let value = e.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
    (value, e.config_source, synonyms)
}

#[tokio::test]
async fn a_cluster_default_min_insync_replicas_applies_live_to_topics_without_an_override() {
    let d = tempfile::tempdir().expect("tempdir");
    let b = broker(d.path());
    // `here-0` is led by this broker with itself alone in the ISR.
    let r = call(&b, 8, produce_req("here", -1)).await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    let set = alter("", vec![op("min.insync.replicas", 0, Some("2"))], false);
    assert_eq!(call(&b, 1, set).await.responses[0].error_code, 0);
    let r = call(&b, 8, produce_req("here", -1)).await;
    assert_eq!(
        r.responses[0].partition_responses[0].error_code,
        ResponseError::NotEnoughReplicas.code()
    );

    let (value, source, synonyms) =
        entry(&call(&b, 4, describe(BROKER, "1", "min.insync.replicas")).await);
    assert_eq!(
        (value.as_str(), source),
        ("2", 3),
        "DYNAMIC_DEFAULT_BROKER_CONFIG"
    );
    assert_eq!(
        synonyms,
        [
            (3, "min.insync.replicas".into(), "2".into()),
            (5, "min.insync.replicas".into(), "1".into())
        ]
    );
    let (value, source, _) = entry(&call(&b, 4, describe(2, "here", "min.insync.replicas")).await);
    assert_eq!(
        (value.as_str(), source),
        ("2", 3),
        "the topic's default says where it comes from"
    );

    // This broker's own value wins over the cluster default.
    let mine = alter("1", vec![op("min.insync.replicas", 0, Some("1"))], false);
    assert_eq!(call(&b, 1, mine).await.responses[0].error_code, 0);
    let r = call(&b, 8, produce_req("here", -1)).await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    let (value, source, _) =
        entry(&call(&b, 4, describe(BROKER, "1", "min.insync.replicas")).await);
    assert_eq!((value.as_str(), source), ("1", 2), "DYNAMIC_BROKER_CONFIG");
    let (value, source, _) = entry(&call(&b, 4, describe(BROKER, "", "min.insync.replicas")).await);
    assert_eq!(
        (value.as_str(), source),
        ("2", 3),
        "the default resource reports its own"
    );

    for resource in ["1", ""] {
        let clear = alter(resource, vec![op("min.insync.replicas", 1, None)], false);
        assert_eq!(call(&b, 1, clear).await.responses[0].error_code, 0);
    }
    let (value, source, _) =
        entry(&call(&b, 4, describe(BROKER, "1", "min.insync.replicas")).await);
    assert_eq!((value.as_str(), source), ("1", 5), "back to DEFAULT_CONFIG");
    let all = call(&b, 4, describe(BROKER, "", "min.insync.replicas")).await;
    assert!(all.results[0].configs.is_empty(), "nothing set by default");
}

#[tokio::test]
async fn broker_config_changes_kafka_refuses_are_refused_in_its_words() {
    let d = tempfile::tempdir().expect("tempdir");
    let b = broker(d.path());
    let refused = |r: IncrementalAlterConfigsResponse| {
        let r = &r.responses[0];
        let message = r
            .error_message
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default();
        (r.error_code, message)
    };
    let invalid_request = ResponseError::InvalidRequest.code();
    let static_key = alter("", vec![op("listeners", 0, Some("PLAINTEXT://:1"))], false);
    assert_eq!(
        refused(call(&b, 1, static_key).await),
        (
            invalid_request,
            "Cannot update these configs dynamically: [listeners]".into()
        )
    );
    let bad_value = alter("", vec![op("min.insync.replicas", 0, Some("0"))], false);
    let (code, message) = refused(call(&b, 1, bad_value).await);
    assert_eq!(code, invalid_request);
    assert!(message.contains("min.insync.replicas"), "{message}");
    let other_broker = alter("7", vec![op("min.insync.replicas", 0, Some("2"))], false);
    assert_eq!(
        refused(call(&b, 1, other_broker).await),
        (
            invalid_request,
            "Unexpected broker id, expected 1, but received 7".into()
        )
    );
    // What kafka-reassign-partitions --verify sends to clear its throttles: nothing to delete.
    let clear_throttle = alter(
        "1",
        vec![op("leader.replication.throttled.rate", 1, None)],
        false,
    );
    assert_eq!(refused(call(&b, 1, clear_throttle).await).0, 0);

    let validate_only = alter("", vec![op("log.retention.ms", 0, Some("1000"))], true);
    assert_eq!(refused(call(&b, 1, validate_only).await).0, 0);
    let r = call(&b, 4, describe(BROKER, "", "log.retention.ms")).await;
    assert!(
        r.results[0].configs.is_empty(),
        "validate_only changes nothing"
    );
    assert!(b.cluster.broker_configs("").is_empty());
}

#[tokio::test]
async fn passwords_are_described_as_sensitive_without_their_value() {
    use std::sync::Arc;

    use crate::cluster::Cluster;
    use crate::config::{parse_properties, Config};
    use crate::group::GroupCoordinator;
    use crate::metrics::Metrics;
    use crate::server::Broker;

    let dir = tempfile::tempdir().expect("tempdir");
    let props = parse_properties(&format!(
        "node.id=1\nlog.dirs={}\nlisteners=PLAINTEXT://:9092,SSL://:9093\n\
         ssl.keystore.location=/k.pem\nssl.key.password=hunter2\n",
        dir.path().display()
    ));
    let config = Arc::new(Config::from_properties(props).expect("config"));
    let cluster = Arc::new(Cluster::open(config, "c".into()).expect("cluster"));
    let groups = Arc::new(GroupCoordinator::new(Arc::clone(&cluster)));
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let b = Arc::new(Broker::new(cluster, groups, metrics, None));
    for (key, sensitive) in [("ssl.key.password", true), ("ssl.keystore.location", false)] {
        let r = call(&b, 2, describe(BROKER, "1", key)).await;
        let e = &r.results[0].configs[0];
        assert_eq!(e.is_sensitive, sensitive, "{key}");
        assert_eq!(e.value.is_none(), sensitive, "{key}");
        assert!(e.synonyms.iter().all(|s| s.value.is_none() == sensitive));
    }
}
