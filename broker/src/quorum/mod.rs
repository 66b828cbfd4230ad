//! The controller quorum: cluster metadata as a Raft log (openraft), replacing the single-node
//! metadata file. Every node runs a member: a voter on controllers (dedicated or combined), a
//! learner (Kafka's observer) on broker-only nodes:
//! - [`types`]: the openraft type configuration (node ids, controller addresses, entry payload).
//! - [`log_store`]: the durable Raft log, vote and purge point, in files under one directory.
//! - [`state_machine`]: applies committed records to the [`crate::cluster::image::MetadataImage`], and builds,
//!   persists and installs snapshots of it.
//! - [`rpc`], [`network`], [`rpc_server`]: the quorum's RPCs over the controller listener, with
//!   the cluster id checked on every request.
//! - [`node`]: a running member with the static voter set of `controller.quorum.voters`.
//! - [`learner`]: how a broker-only node joins as a learner, and how the leader admits it.
//! - [`liveness`]: which brokers are alive, from the heartbeats every voter receives; the
//!   active controller fences and unfences by it.
//! - [`startup`]: a node's member from its config, and the cluster's store writing through it.
//! - [`status`]: what DescribeQuorum reports (voters and observers), from the leader's view.
//!
//! Layout under `<metadata.log.dir>/__cluster_metadata-0/raft/`: `<20-digit index>.log`
//! segments, `vote.json`, `purged.json`, `committed.json`, `snapshot.json`.

use crate::durable;
pub mod learner;
pub mod liveness;
pub mod log_store;
pub mod network;
pub mod node;
pub mod rpc;
pub mod rpc_server;
pub mod startup;
pub mod state_machine;
pub mod status;
pub mod transport;
pub mod types;

#[cfg(test)]
mod cluster_tests;
#[cfg(test)]
mod conformance;
#[cfg(test)]
mod raft_tests;

use std::path::{Path, PathBuf};

/// The quorum's directory under the metadata log dir.
pub fn raft_dir(metadata_log_dir: &Path) -> PathBuf {
    metadata_log_dir.join("__cluster_metadata-0").join("raft")
}
