//! Gregor: a Kafka-compatible event-streaming broker.
//!
//! Map of the crate, top-down (dependencies point down):
//! - [`node`]: a running node — storage check, listeners, background tasks, shutdown.
//! - [`tools`]: Kafka-familiar CLI tools, clients of any broker, built on the `gregor-client` crate.
//! - [`server`]: TCP listener, connections, per-API handlers.
//! - [`group`]: the classic consumer-group coordinator, offsets in `__consumer_offsets`.
//! - [`cluster`]: topics and partitions this node serves; the metadata image and its log.
//! - [`controller`]: broker liveness, fencing and leader election on the active controller.
//! - [`quorum`]: the controller quorum: Raft storage, network and member runtime; holds the
//!   node's metadata.
//! - [`replication`]: ISR and high-watermark rules (for the replicated cluster).
//! - [`log`]: one partition's segments, indexes, recovery, retention and compaction.
//! - [`protocol`]: framing and the API version table (codec from kafka-protocol).
//! - [`config`], [`storage`], [`metrics`]: `server.properties`, `meta.properties`, Prometheus.
//! - `durable`: replacing a small file atomically and durably (checkpoints, Raft state).

#![warn(missing_docs)]

pub mod cluster;
pub mod config;
pub mod controller;
mod durable;
pub mod group;
pub mod log;
pub mod metrics;
pub mod node;
pub mod protocol;
pub mod quorum;
pub mod replication;
pub mod server;
pub mod storage;
pub mod tools;
