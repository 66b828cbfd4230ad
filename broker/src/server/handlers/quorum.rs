//! DescribeQuorum (API 55): the controller quorum as Kafka reports `__cluster_metadata-0` —
//! leader, epoch (Raft term), high watermark, and each voter's and observer's (broker-only
//! node's) log end offset — as the active
//! controller sees it (asked of it when this node does not lead the quorum). `kafka-metadata-quorum describe --status` and the operator's roll planner
//! read it.

use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use crate::authz::{Operation, Resource};
use crate::quorum::status::MemberStatus;
use crate::quorum::types::kafka_node_id;
use crate::server::dispatch::{sb, Ctx};

const METADATA_TOPIC: &str = "__cluster_metadata";

/// DescribeQuorum.
pub async fn describe_quorum(
    ctx: &Ctx<'_>,
    req: DescribeQuorumRequest,
) -> Option<DescribeQuorumResponse> {
    if let Err(e) = ctx.authorize(Operation::Describe, Resource::cluster()) {
        return Some(
            DescribeQuorumResponse::default()
                .with_error_code(super::admin_error_code(&e).code())
                .with_error_message(Some(sb(e.to_string()))),
        );
    }
    let Some(quorum) = ctx.broker.quorum.as_ref() else {
        return Some(
            DescribeQuorumResponse::default()
                .with_error_code(ResponseError::NotController.code())
                .with_error_message(Some(sb("this node runs no quorum member"))),
        );
    };
    let status = quorum.status().await;
    let v = ctx.version;
    let id = |n: u64| BrokerId(kafka_node_id(n).unwrap_or(-1));
    let replica = |member: &MemberStatus| {
        let state = ReplicaState::default()
            .with_replica_id(id(member.id))
            .with_log_end_offset(member.log_end_offset);
        if v >= 1 {
            state
                .with_last_fetch_timestamp(member.last_seen_ms)
                .with_last_caught_up_timestamp(member.last_seen_ms)
        } else {
            state
        }
    };
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let base = PartitionData::default().with_partition_index(p.partition_index);
                    if t.topic_name.0.as_str() != METADATA_TOPIC || p.partition_index != 0 {
                        return base.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    }
                    base.with_leader_id(status.leader.map(id).unwrap_or(BrokerId(-1)))
                        .with_leader_epoch(status.term as i32)
                        .with_high_watermark(status.high_watermark)
                        .with_current_voters(status.voters.iter().map(replica).collect())
                        .with_observers(status.observers.iter().map(replica).collect())
                })
                .collect();
            TopicData::default()
                .with_topic_name(t.topic_name)
                .with_partitions(partitions)
        })
        .collect();
    let mut resp = DescribeQuorumResponse::default().with_topics(topics);
    if v >= 2 {
        resp = resp.with_nodes(
            status
                .voters
                .iter()
                .map(|voter| {
                    Node::default()
                        .with_node_id(id(voter.id))
                        .with_listeners(vec![Listener::default()
                            .with_name(sb("CONTROLLER"))
                            .with_host(sb(voter.node.host.clone()))
                            .with_port(voter.node.port)])
                })
                .collect(),
        );
    }
    Some(resp)
}
