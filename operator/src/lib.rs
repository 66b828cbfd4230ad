//! The Gregor operator: reconciles `KafkaCluster` and `KafkaTopic` custom resources into
//! running, safely rolled Gregor clusters.
//!
//! - [`crd`]: the custom resources, from which `crdgen` writes the CRDs.
//! - [`validate`]: a spec checked and completed into a [`validate::ValidatedCluster`], with no
//!   client.
//! - [`build`]: pure functions from a validated cluster to the objects that run it.
//! - [`health`]: what a running cluster says about its ISRs and quorum, for the roll.
//! - [`leader`]: leader election over a Lease, so replicas can run side by side.
//! - [`metrics`]: the operator's Prometheus metrics and their endpoint.
//! - [`pki`]: certificate authorities and the certificates they issue, made and read back.
//! - [`placement`]: where a topic's new partitions go, balanced and rack-aware.
//! - [`rack`]: the `rack` subcommand of broker pods' init container: their node's rack label.
//! - [`rebalance`]: which partitions a broker scale step reassigns, so every topic stays
//!   balanced over the brokers that remain.
//! - [`roll`]: the rolling-restart planner: which pod next, or why wait or halt.
//! - [`scale`]: the broker scale-step planner: the StatefulSet's size now, and what to ask
//!   the brokers first.
//! - [`reconcile`]: validate → build → apply in order → status, per resource.

#![warn(missing_docs)]

pub mod build;
pub mod crd;
pub mod health;
pub mod leader;
pub mod metrics;
pub mod pki;
pub mod placement;
pub mod rack;
pub mod rebalance;
pub mod reconcile;
pub mod roll;
pub mod scale;
pub mod validate;
