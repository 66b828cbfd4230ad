//! What a client call can fail with, and how an error prints with its causes.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;

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
    /// None of the bootstrap addresses accepted a connection.
    #[error("could not connect to any bootstrap server in '{bootstrap}': {reasons}")]
    NoBroker {
        /// The bootstrap list as given.
        bootstrap: String,
        /// Each address and why it failed, joined for display.
        reasons: String,
    },
    /// The broker does not support any version of an API that this client can speak.
    #[error(
        "broker {addr} does not support {api:?} in a version this client speaks \
         (broker {broker_min}..={broker_max}, client {client_min}..={client_max})"
    )]
    UnsupportedApi {
        /// Broker address.
        addr: String,
        /// The API.
        api: ApiKey,
        /// Oldest version the broker speaks (-1 when it lists none).
        broker_min: i16,
        /// Newest version the broker speaks (-1 when it lists none).
        broker_max: i16,
        /// Oldest version this client speaks.
        client_min: i16,
        /// Newest version this client speaks.
        client_max: i16,
    },
    /// The broker did not answer in time.
    #[error("timed out after {millis} ms waiting for {addr} to answer {api:?}")]
    Timeout {
        /// Broker address.
        addr: String,
        /// The request being waited on.
        api: ApiKey,
        /// How long we waited.
        millis: u64,
    },
    /// The broker answered with a Kafka error code.
    #[error("{what}: {error} (error code {code})", code = error.code())]
    Kafka {
        /// What was being done, e.g. "finding the coordinator for group g".
        what: String,
        /// The error the broker returned.
        error: ResponseError,
    },
    /// The TLS handshake failed: an untrusted or misnamed certificate, no common protocol.
    #[error("TLS handshake with {addr} failed")]
    Tls {
        /// Broker address.
        addr: String,
        /// What rustls reported.
        #[source]
        source: std::io::Error,
    },
    /// SASL authentication was refused; `message` is the broker's own text (Kafka's
    /// SASL_AUTHENTICATION_FAILED message) or what the client found wrong in the exchange.
    #[error("authentication with {addr} failed: {message}")]
    Authentication {
        /// Broker address.
        addr: String,
        /// Why.
        message: String,
    },
    /// Metadata named a node id that is not in its broker list.
    #[error("broker {node_id} is not in the cluster metadata")]
    UnknownNode {
        /// The node id.
        node_id: i32,
    },
}

impl ClientError {
    /// Builds a [`ClientError::Kafka`] from a non-zero error code; `None` when `code` is 0.
    pub fn from_code(code: i16, what: impl FnOnce() -> String) -> Option<Self> {
        ResponseError::try_from_code(code).map(|error| ClientError::Kafka {
            what: what(),
            error,
        })
    }
}

/// Formats an error with its sources, `outer: inner: innermost`, for messages and logs that
/// fold several errors together.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
