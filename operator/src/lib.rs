//! The Gregor operator: reconciles `KafkaCluster` and `KafkaTopic` custom resources into
//! running, safely rolled Gregor clusters.
//!
//! - [`crd`]: the custom resources, from which `crdgen` writes the CRDs.
//! - [`validate`]: a spec checked and completed into a [`validate::ValidatedCluster`], with no
//!   client.
//! - [`build`]: pure functions from a validated cluster to the objects that run it.
//! - [`reconcile`]: validate → build → apply in order → status, per resource.

pub mod build;
pub mod crd;
pub mod reconcile;
pub mod validate;
