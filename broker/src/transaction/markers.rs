//! WriteTxnMarkers between brokers: the coordinator asks the leader of each partition of an
//! ending transaction to write its marker there.

use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{ProducerId, TopicName, WriteTxnMarkersRequest};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::Cluster;
use crate::log::control::Marker;

/// How long a leader has to connect and answer.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Sends one marker for `parts` to their leader `leader`; returns the partitions it did not
/// write (unreachable, an error, or left out of the answer), to be tried again.
pub async fn send(
    cluster: &Cluster,
    leader: i32,
    producer_id: i64,
    producer_epoch: i16,
    marker: Marker,
    coordinator_epoch: i32,
    parts: Vec<(String, i32)>,
) -> Vec<(String, i32)> {
    let Some(mut client) = crate::peer::connect_broker(cluster, leader, TIMEOUT).await else {
        return parts;
    };
    let mut topics: std::collections::BTreeMap<&str, Vec<i32>> = Default::default();
    for (t, p) in &parts {
        topics.entry(t).or_default().push(*p);
    }
    let request =
        WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(producer_epoch)
            .with_transaction_result(marker == Marker::Commit)
            .with_coordinator_epoch(coordinator_epoch)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        WritableTxnMarkerTopic::default()
                            .with_name(TopicName(StrBytes::from_string(t.to_string())))
                            .with_partition_indexes(ps)
                    })
                    .collect(),
            )]);
    let response = match client.send(request).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(leader, error = %crate::cluster::error_chain(&e), "WriteTxnMarkers failed");
            return parts;
        }
    };
    let written: std::collections::BTreeSet<(String, i32)> = response
        .markers
        .iter()
        .flat_map(|m| &m.topics)
        .flat_map(|t| {
            t.partitions
                .iter()
                .filter(|p| p.error_code == 0)
                .map(move |p| (t.name.0.to_string(), p.partition_index))
        })
        .collect();
    parts.into_iter().filter(|p| !written.contains(p)).collect()
}

/// KIP-890 verification through the coordinator `coordinator` on another broker: for each of
/// `parts`, `None` when it is in the producer's open transaction (or, unless `verify_only`,
/// now added to it: `transaction.version` 2), else the coordinator's error
/// (COORDINATOR_NOT_AVAILABLE when it cannot be asked, which producers retry).
pub async fn verify_remote(
    cluster: &Cluster,
    coordinator: i32,
    transactional_id: &str,
    (producer_id, producer_epoch): (i64, i16),
    parts: &[(String, i32)],
    verify_only: bool,
) -> Vec<Option<kafka_protocol::ResponseError>> {
    use kafka_protocol::messages::add_partitions_to_txn_request::{
        AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
    };
    use kafka_protocol::messages::{AddPartitionsToTxnRequest, TransactionalId};
    use kafka_protocol::ResponseError;
    let unavailable = || vec![Some(ResponseError::CoordinatorNotAvailable); parts.len()];
    let Some(mut client) = crate::peer::connect_broker(cluster, coordinator, TIMEOUT).await else {
        return unavailable();
    };
    let mut topics: std::collections::BTreeMap<&str, Vec<i32>> = Default::default();
    for (t, p) in parts {
        topics.entry(t).or_default().push(*p);
    }
    let transaction = AddPartitionsToTxnTransaction::default()
        .with_transactional_id(TransactionalId(StrBytes::from_string(
            transactional_id.to_string(),
        )))
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(producer_epoch)
        .with_verify_only(verify_only)
        .with_topics(
            topics
                .into_iter()
                .map(|(t, ps)| {
                    AddPartitionsToTxnTopic::default()
                        .with_name(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partitions(ps)
                })
                .collect(),
        );
    let request = AddPartitionsToTxnRequest::default().with_transactions(vec![transaction]);
    let version = match client.version::<AddPartitionsToTxnRequest>(None) {
        Ok(v) if v >= 4 => v,
        _ => return unavailable(),
    };
    let response = match client.send_at(request, version).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(coordinator, error = %crate::cluster::error_chain(&e), "transaction verification failed");
            return unavailable();
        }
    };
    if response.error_code != 0 {
        return vec![ResponseError::try_from_code(response.error_code); parts.len()];
    }
    let results: std::collections::BTreeMap<(String, i32), i16> = response
        .results_by_transaction
        .iter()
        .flat_map(|r| &r.topic_results)
        .flat_map(|t| {
            t.results_by_partition.iter().map(move |p| {
                (
                    (t.name.0.to_string(), p.partition_index),
                    p.partition_error_code,
                )
            })
        })
        .collect();
    parts
        .iter()
        .map(|p| match results.get(p) {
            Some(0) => None,
            Some(&code) => ResponseError::try_from_code(code),
            None => Some(ResponseError::InvalidTxnState),
        })
        .collect()
}
