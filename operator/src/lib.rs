//! The Gregor operator: reconciles `KafkaCluster` and `KafkaTopic` custom resources into
//! running, safely rolled Gregor clusters.
//!
//! - [`crd`]: the custom resources, from which `crdgen` writes the CRDs.

pub mod crd;
