//! Gregor: a Kafka-compatible event-streaming broker.
//!
//! Map of the crate, top-down (a module uses only those below it; no cycles):
//! - [`node`]: a running node — storage check, listeners, background tasks, shutdown.
//! - [`tools`]: Kafka-familiar CLI tools, clients of any broker, built on the `gregor-client` crate.
//! - [`server`]: TCP listener, connections, per-API handlers.
//! - [`group`]: the classic consumer-group coordinator, offsets in `__consumer_offsets`.
//! - [`controller`]: fencing and leader election on the active controller.
//! - [`replication`]: the follower fetchers, one task per leader broker.
//! - [`quorum`]: the controller quorum: Raft storage, network and member runtime; holds the
//!   node's metadata and the brokers' liveness from their heartbeats.
//! - [`cluster`]: topics and partitions this node serves; the metadata image and its log; the
//!   ISR and high-watermark rules (`cluster::isr`, pure functions).
//! - [`sasl`]: the SASL mechanisms (PLAIN, SCRAM), pure functions of one token at a time.
//! - [`quotas`]: client quota configs: entities, keys, values and describe filters (pure).
//! - [`authz`]: ACLs and the StandardAuthorizer's decision, pure functions of the committed
//!   ACLs the metadata image holds.
//! - [`config`], [`storage`]: `server.properties` (validated), `meta.properties`.
//! - [`log`]: one partition's segments, indexes, recovery, retention and compaction.
//! - [`protocol`]: framing, the one table of served APIs, and the one request decoder the
//!   server, the fuzz target and the golden tests share (codec from kafka-protocol).
//! - [`metrics`]: Prometheus `/metrics`, `/healthz`, `/readyz`.
//! - `durable`: replacing a small file atomically and durably (checkpoints, Raft state).

#![warn(missing_docs)]

pub mod authz;
pub mod close_log;
pub mod cluster;
pub mod config;
pub mod controller;
mod durable;
pub mod fd_limit;
pub mod group;
pub mod log;
pub mod metrics;
pub mod node;
pub mod peer;
pub mod protocol;
pub mod quorum;
pub mod quotas;
pub mod replication;
pub mod sasl;
pub mod server;
pub mod share;
pub mod storage;
pub mod tools;
pub mod transaction;
