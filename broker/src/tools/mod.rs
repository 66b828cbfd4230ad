//! Kafka-familiar command-line tools (`topics`, `console-producer`, `console-consumer`,
//! `consumer-groups`). They speak the Kafka protocol through [`crate::client`], so they work
//! against any Kafka-compatible broker, Apache Kafka included.

pub mod console_consumer;
pub mod console_producer;
pub mod consumer_groups;
pub mod topics;

/// What a tool run can fail with; printed by `main` and turned into a non-zero exit.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// Bad flags or flag combination.
    #[error("{0}")]
    Usage(String),
    /// Talking to the cluster failed.
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
}
