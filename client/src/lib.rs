//! Gregor's Kafka client: what the broker's CLI tools, its replication fetcher and the operator
//! share to talk to Kafka brokers (Gregor's or Apache Kafka's).
//!
//! - [`connection`]: one connection to one broker (TCP or TLS): size-prefixed frames, request
//!   and response headers, correlation ids, API version negotiation (ApiVersions first), then
//!   SASL ([`sasl`]) when the [`security`] settings ask for it.
//! - [`security`]: Kafka's client properties (`--command-config`) checked into a
//!   [`ClientSecurity`], with the key and trust stores ([`stores`]) loaded; [`properties`]
//!   reads the file, [`jaas`] the login module, [`scram`] is SCRAM's client side and the
//!   primitives the broker's server side shares.
//! - [`cluster`]: a cluster view on top of it: Metadata, and connections to partition
//!   leaders and group coordinators by node id.
//! - [`requests`]: the admin requests the tools and the operator both build (CreateTopics,
//!   CreatePartitions, DeleteTopics, DescribeConfigs) and the admin timeout.
//! - [`admin`]: the typed admin API the operator reconciles with; [`admin_principals`] its
//!   ACLs, SCRAM credentials and user quotas.
//! - [`names`], [`broker_configs`]: Kafka vocabulary both sides check: the topic-name rule,
//!   the text form of topic ids, the broker configs that change without a restart.
//! - [`termination`]: the error a failed command leaves for Kubernetes to show in a pod's
//!   status.
//!
//! Typed requests and responses come from kafka-protocol; this crate owns the I/O and the
//! vocabulary, nothing of the broker's storage, consensus or server.

#![warn(missing_docs)]

pub mod admin;
pub mod admin_principals;
pub mod broker_configs;
pub mod cluster;
pub mod connection;
mod error;
#[cfg(any(test, feature = "test-support"))]
pub mod fake_broker;
pub mod jaas;
pub mod names;
pub mod properties;
pub mod requests;
pub mod sasl;
pub mod scram;
pub mod security;
pub mod stores;
pub mod termination;

pub use cluster::{Cluster, CoordinatorType};
pub use connection::Client;
pub use error::{error_chain, ClientError};
pub use security::{ClientSecurity, SecurityError};
