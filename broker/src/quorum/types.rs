//! The openraft type configuration of the controller quorum: who the voters are
//! ([`NodeId`], [`ControllerNode`]), what a log entry carries ([`MetadataRequest`], a batch of
//! [`MetadataRecord`]s) and what applying one answers ([`MetadataResponse`]). Everything the
//! quorum stores or sends is one of these types, serialized as JSON.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::cluster::metadata::MetadataRecord;

/// A controller's id in the quorum: Kafka's `node.id` (an `i32`, never negative for a voter)
/// widened to the `u64` openraft's testing suite needs. Convert with [`node_id`] and
/// [`kafka_node_id`] at the edges.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The type configuration of Gregor's controller quorum.
    pub TypeConfig:
        D = MetadataRequest,
        R = MetadataResponse,
        NodeId = NodeId,
        Node = ControllerNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = std::io::Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A Raft log entry of the quorum.
pub type Entry = openraft::Entry<TypeConfig>;
/// A Raft log id (leader term and node, index).
pub type LogId = openraft::LogId<NodeId>;
/// A vote (term, candidate, committed or not).
pub type Vote = openraft::Vote<NodeId>;
/// The voters and learners, with the log id of the entry that set them.
pub type StoredMembership = openraft::StoredMembership<NodeId, ControllerNode>;
/// What a snapshot covers: last log id, membership and snapshot id.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, ControllerNode>;
/// The error openraft expects from storage.
pub type StorageError = openraft::StorageError<NodeId>;

/// Where a controller listens for quorum traffic: the host and port of its controller listener
/// (`controller.quorum.voters` entry `id@host:port`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerNode {
    /// Host name or address of the controller listener.
    pub host: String,
    /// Port of the controller listener.
    pub port: u16,
}

impl fmt::Display for ControllerNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// What a client of the quorum proposes: records applied together, in order, at one log index.
/// A batch lets the controller make a multi-record change (a topic and its partitions) atomic.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetadataRequest {
    /// The records, applied in order.
    pub records: Vec<MetadataRecord>,
}

/// What applying one log entry did to the image. The controller validates records before it
/// proposes them, so `ignored` is non-zero only when a proposal raced another change (a
/// partition count for a topic deleted meanwhile); application stays deterministic either way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataResponse {
    /// Records that changed the image.
    pub applied: u32,
    /// Records that named something the image no longer has, and so changed nothing.
    pub ignored: u32,
}

/// A Kafka node id that cannot be a quorum voter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("node id {0} cannot be a controller: node ids are 0 or more")]
pub struct NegativeNodeId(pub i32);

/// The quorum id of Kafka node `id`.
pub fn node_id(id: i32) -> Result<NodeId, NegativeNodeId> {
    u64::try_from(id).map_err(|_| NegativeNodeId(id))
}

/// The Kafka node id of quorum node `id`, if it fits an `i32` (it always does for ids made by
/// [`node_id`]).
pub fn kafka_node_id(id: NodeId) -> Option<i32> {
    i32::try_from(id).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_node_ids_convert_both_ways_and_negative_ones_are_refused() {
        assert_eq!(node_id(3), Ok(3));
        assert_eq!(kafka_node_id(3), Some(3));
        assert_eq!(
            node_id(i32::MAX).ok().and_then(kafka_node_id),
            Some(i32::MAX)
        );
        assert_eq!(node_id(-1), Err(NegativeNodeId(-1)));
        assert_eq!(kafka_node_id(u64::from(u32::MAX)), None);
    }

    #[test]
    fn a_controller_node_displays_as_host_colon_port() {
        let node = ControllerNode {
            host: "c1.local".into(),
            port: 9093,
        };
        assert_eq!(node.to_string(), "c1.local:9093");
    }
}
