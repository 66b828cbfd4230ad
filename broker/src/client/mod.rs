//! A small async Kafka protocol client used by the CLI tools and the tests: connects to a
//! bootstrap broker, negotiates API versions, and sends typed requests from kafka-protocol.

// SKELETON: filled in by the CLI tools work.

/// What a client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Could not connect or the connection broke.
    #[error("i/o error talking to {addr}")]
    Io {
        /// Broker address.
        addr: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The broker answered something that does not decode.
    #[error("protocol error: {0}")]
    Protocol(String),
}
