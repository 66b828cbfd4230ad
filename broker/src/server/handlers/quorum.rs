//! DescribeQuorum (API 55): the controller quorum as Kafka reports `__cluster_metadata-0` —
//! leader, epoch (Raft term), high watermark, and each voter's log end offset — from the Raft
//! node's metrics. `kafka-metadata-quorum describe --status` and the operator's roll planner
//! read it.

use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use crate::cluster::now_ms;
use crate::quorum::types::kafka_node_id;
use crate::server::dispatch::{sb, Ctx};

const METADATA_TOPIC: &str = "__cluster_metadata";

/// DescribeQuorum.
pub async fn describe_quorum(
    ctx: &Ctx<'_>,
    req: DescribeQuorumRequest,
) -> Option<DescribeQuorumResponse> {
    let Some(quorum) = ctx.broker.quorum.as_ref() else {
        return Some(
            DescribeQuorumResponse::default()
                .with_error_code(ResponseError::NotController.code())
                .with_error_message(Some(sb("this node runs no quorum member"))),
        );
    };
    let m = quorum.raft().metrics().borrow().clone();
    let v = ctx.version;
    let now = now_ms();
    let id = |n: u64| BrokerId(kafka_node_id(n).unwrap_or(-1));
    let voters: Vec<u64> = m.membership_config.membership().voter_ids().collect();
    let replica = |voter: u64| {
        let leo = if voter == m.id {
            m.last_log_index.map(|i| i as i64 + 1).unwrap_or(0)
        } else {
            m.replication
                .as_ref()
                .and_then(|r| r.get(&voter).cloned().flatten())
                .map(|l| l.index as i64 + 1)
                .unwrap_or(-1)
        };
        let state = ReplicaState::default()
            .with_replica_id(id(voter))
            .with_log_end_offset(leo);
        if v >= 1 {
            let seen = if voter == m.id || leo >= 0 { now } else { -1 };
            state
                .with_last_fetch_timestamp(seen)
                .with_last_caught_up_timestamp(seen)
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
                    base.with_leader_id(m.current_leader.map(id).unwrap_or(BrokerId(-1)))
                        .with_leader_epoch(m.current_term as i32)
                        .with_high_watermark(
                            m.last_applied.map(|l| l.index as i64 + 1).unwrap_or(0),
                        )
                        .with_current_voters(voters.iter().map(|v| replica(*v)).collect())
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
            m.membership_config
                .membership()
                .nodes()
                .map(|(n, node)| {
                    Node::default()
                        .with_node_id(id(*n))
                        .with_listeners(vec![Listener::default()
                            .with_name(sb("CONTROLLER"))
                            .with_host(sb(node.host.clone()))
                            .with_port(node.port)])
                })
                .collect(),
        );
    }
    Some(resp)
}
