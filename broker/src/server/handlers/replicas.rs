//! AlterPartitionReassignments, ListPartitionReassignments and ElectLeaders: which brokers
//! hold a partition's replicas and which of them leads. Every partition's change is its own
//! conditional metadata change, run on a blocking thread; errors are per partition, as Kafka
//! reports them.

use std::sync::Arc;

use kafka_protocol::messages::alter_partition_reassignments_response::*;
use kafka_protocol::messages::elect_leaders_response::*;
use kafka_protocol::messages::list_partition_reassignments_response::*;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::{admin_error_code, blocking};
use crate::authz::{Operation, Resource};
use crate::cluster::replica_changes::ElectionType;
use crate::cluster::AdminError;
use crate::server::dispatch::{sb, Ctx};

/// The error code and message for a per-partition outcome (a null message on success).
fn outcome_fields(outcome: &Result<(), AdminError>) -> (i16, Option<String>) {
    match outcome {
        Ok(()) => (0, None),
        Err(e) => (admin_error_code(e).code(), Some(e.to_string())),
    }
}

/// AlterPartitionReassignments (v0–1): starts (replicas given) or cancels (null replicas)
/// each partition's reassignment.
pub async fn alter_partition_reassignments(
    ctx: &Ctx<'_>,
    req: AlterPartitionReassignmentsRequest,
) -> Option<AlterPartitionReassignmentsResponse> {
    if let Err(e) = ctx.authorize(Operation::Alter, Resource::cluster()) {
        return Some(
            AlterPartitionReassignmentsResponse::default()
                .with_error_code(admin_error_code(&e).code())
                .with_error_message(Some(sb(e.to_string()))),
        );
    }
    // v0 has no such field: the replication factor may change, as it always could.
    let allow_rf_change = ctx.version < 1 || req.allow_replication_factor_change;
    let mut responses = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let cluster = Arc::clone(&ctx.broker.cluster);
            let (topic, index) = (t.name.0.to_string(), p.partition_index);
            let target: Option<Vec<i32>> = p.replicas.map(|r| r.iter().map(|b| b.0).collect());
            let outcome = blocking(move || {
                cluster.alter_reassignment(&topic, index, target.as_deref(), allow_rf_change)
            })
            .await
            .unwrap_or_else(|| Err(AdminError::Storage("task failed".into())));
            let (code, message) = outcome_fields(&outcome);
            partitions.push(
                ReassignablePartitionResponse::default()
                    .with_partition_index(index)
                    .with_error_code(code)
                    .with_error_message(message.map(sb)),
            );
        }
        responses.push(
            ReassignableTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    Some(
        AlterPartitionReassignmentsResponse::default()
            .with_allow_replication_factor_change(allow_rf_change)
            .with_error_message(None)
            .with_responses(responses),
    )
}

/// ListPartitionReassignments (v0): the reassignments under way, of every partition (null
/// topics) or of the partitions named. Unknown topics and partitions are left out, as Kafka
/// does.
pub async fn list_partition_reassignments(
    ctx: &Ctx<'_>,
    req: ListPartitionReassignmentsRequest,
) -> Option<ListPartitionReassignmentsResponse> {
    if let Err(e) = ctx.authorize(Operation::Describe, Resource::cluster()) {
        return Some(
            ListPartitionReassignmentsResponse::default()
                .with_error_code(admin_error_code(&e).code())
                .with_error_message(Some(sb(e.to_string()))),
        );
    }
    let mut ongoing = ctx.broker.cluster.reassignments();
    let wanted: Option<Vec<(String, Vec<i32>)>> = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    if let Some(wanted) = wanted {
        let mut kept = std::collections::BTreeMap::new();
        for (name, indexes) in wanted {
            let Some(parts) = ongoing.get(&name) else {
                continue;
            };
            let parts: Vec<_> = parts
                .iter()
                .filter(|(i, _)| indexes.contains(i))
                .cloned()
                .collect();
            if !parts.is_empty() {
                kept.insert(name, parts);
            }
        }
        ongoing = kept;
    }
    let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
    let topics = ongoing
        .into_iter()
        .map(|(name, parts)| {
            OngoingTopicReassignment::default()
                .with_name(TopicName(sb(name)))
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|(index, s)| {
                            OngoingPartitionReassignment::default()
                                .with_partition_index(index)
                                .with_replicas(ids(&s.replicas))
                                .with_adding_replicas(ids(&s.adding))
                                .with_removing_replicas(ids(&s.removing))
                        })
                        .collect(),
                )
        })
        .collect();
    Some(
        ListPartitionReassignmentsResponse::default()
            .with_error_message(None)
            .with_topics(topics),
    )
}

/// ElectLeaders (v0–2): preferred (v0's only kind) or unclean elections for the partitions
/// named, or for every partition when the list is null (then partitions needing no election
/// are left out of the answer, as Kafka does).
pub async fn elect_leaders(
    ctx: &Ctx<'_>,
    req: ElectLeadersRequest,
) -> Option<ElectLeadersResponse> {
    let Some(kind) = ElectionType::from_code(req.election_type) else {
        // Only v1+ carry a type, and v1+ have a top-level error code.
        return Some(
            ElectLeadersResponse::default().with_error_code(ResponseError::InvalidRequest.code()),
        );
    };
    let cluster = &ctx.broker.cluster;
    if let Err(e) = ctx.authorize(Operation::Alter, Resource::cluster()) {
        // Every partition named is refused, and (v1+) the request.
        let code = admin_error_code(&e).code();
        let results = req
            .topic_partitions
            .unwrap_or_default()
            .into_iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .iter()
                    .map(|i| {
                        PartitionResult::default()
                            .with_partition_id(*i)
                            .with_error_code(code)
                            .with_error_message(Some(sb(e.to_string())))
                    })
                    .collect();
                ReplicaElectionResult::default()
                    .with_topic(t.topic)
                    .with_partition_result(partitions)
            })
            .collect();
        return Some(
            ElectLeadersResponse::default()
                .with_error_code(code)
                .with_replica_election_results(results),
        );
    }
    let all = req.topic_partitions.is_none();
    let targets: Vec<(TopicName, Vec<i32>)> = match req.topic_partitions {
        Some(tps) => tps.into_iter().map(|t| (t.topic, t.partitions)).collect(),
        None => cluster
            .topics()
            .iter()
            .map(|t| {
                let indexes = (0..t.partition_count()).collect();
                (TopicName(sb(t.name.clone())), indexes)
            })
            .collect(),
    };
    let mut results = Vec::with_capacity(targets.len());
    for (topic, indexes) in targets {
        let mut partitions = Vec::with_capacity(indexes.len());
        for index in indexes {
            let c = Arc::clone(cluster);
            let name = topic.0.to_string();
            let outcome = blocking(move || c.elect_leader(&name, index, kind))
                .await
                .unwrap_or_else(|| Err(AdminError::Storage("task failed".into())));
            if all && matches!(outcome, Err(AdminError::ElectionNotNeeded)) {
                continue;
            }
            let (code, message) = outcome_fields(&outcome);
            partitions.push(
                PartitionResult::default()
                    .with_partition_id(index)
                    .with_error_code(code)
                    .with_error_message(message.map(sb)),
            );
        }
        results.push(
            ReplicaElectionResult::default()
                .with_topic(topic)
                .with_partition_result(partitions),
        );
    }
    Some(ElectLeadersResponse::default().with_replica_election_results(results))
}
