//! UnregisterBroker and DescribeCluster's fenced brokers on a node whose metadata registers
//! brokers 1 (this node) and 2: errors in Kafka's words, a live broker refused, a fenced one
//! removed for good (and registering again afterwards).

use std::sync::Arc;

use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::tests::{broker, broker_over, call, two_brokers_image};
use super::Broker;
use crate::cluster::metadata::MetadataRecord;

async fn unregister(b: &Arc<Broker>, id: i32) -> (i16, Option<String>) {
    let req = UnregisterBrokerRequest::default().with_broker_id(BrokerId(id));
    let resp = call(b, 0, req).await;
    (resp.error_code, resp.error_message.map(|m| m.to_string()))
}

/// (id, fenced) of every broker DescribeCluster v2 lists, fenced ones included.
async fn described(b: &Arc<Broker>) -> Vec<(i32, bool)> {
    let req = DescribeClusterRequest::default().with_include_fenced_brokers(true);
    let resp = call(b, 2, req).await;
    resp.brokers
        .iter()
        .map(|x| (x.broker_id.0, x.is_fenced))
        .collect()
}

#[tokio::test]
async fn an_unknown_id_is_not_registered_in_kafkas_words() {
    let d = tempfile::tempdir().expect("tempdir");
    let b = broker(d.path());
    assert_eq!(
        unregister(&b, 7).await,
        (
            ResponseError::BrokerIdNotRegistered.code(),
            Some("Broker ID 7 is not currently registered".into())
        )
    );
}

#[tokio::test]
async fn a_live_broker_is_refused_and_a_fenced_one_removed_for_good() {
    let d = tempfile::tempdir().expect("tempdir");
    let mut image = two_brokers_image();
    let b = broker_over(d.path(), &image);
    let (code, message) = unregister(&b, 2).await;
    assert_eq!(code, ResponseError::InvalidRequest.code());
    assert!(
        message.as_deref().is_some_and(|m| m.contains("not fenced")),
        "{message:?}"
    );
    assert_eq!(described(&b).await, [(1, false), (2, false)]);

    image.apply(&MetadataRecord::FenceBroker {
        id: 2,
        fenced: true,
    });
    b.cluster.reconcile(&image).expect("reconcile");
    assert_eq!(described(&b).await, [(1, false), (2, true)]);
    let v1 = call(&b, 1, DescribeClusterRequest::default()).await;
    assert_eq!(v1.brokers.len(), 1, "before v2, only unfenced brokers");

    assert_eq!(unregister(&b, 2).await, (0, None));
    assert_eq!(described(&b).await, [(1, false)]);
    assert!(!b.cluster.brokers().contains_key(&2));
    let (code, _) = unregister(&b, 2).await;
    assert_eq!(code, ResponseError::BrokerIdNotRegistered.code(), "done");
    let md = call(&b, 12, MetadataRequest::default().with_topics(None)).await;
    assert_eq!(md.brokers.len(), 1);
    let elsewhere = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "elsewhere"))
        .expect("topic");
    assert_eq!(
        elsewhere.partitions[0].replica_nodes,
        [BrokerId(2), BrokerId(1)],
        "partitions keep naming it, as in Kafka"
    );
}
