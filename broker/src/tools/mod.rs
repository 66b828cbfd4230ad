//! Kafka-familiar command-line tools (`topics`, `console-producer`, `console-consumer`,
//! `consumer-groups`, `metadata-quorum`). They speak the Kafka protocol through [`gregor_client`], so they work
//! against any Kafka-compatible broker, Apache Kafka included.
//!
//! Shared pieces live beside them: [`partitioner`] (Java's murmur2 key hashing),
//! [`consumer_protocol`] (the classic consumer's subscription/assignment bytes and the range
//! and round-robin assignors), [`group`] (a classic consumer-group member), [`fetcher`]
//! (ListOffsets and Fetch over a set of partitions) and [`reset_offsets`] (the
//! `consumer-groups --reset-offsets` plan).

pub mod console_consumer;
pub mod console_producer;
pub mod consumer_groups;
pub mod consumer_protocol;
pub mod fetcher;
pub mod group;
pub mod metadata_quorum;
pub mod partitioner;
pub mod reset_offsets;
pub mod topics;

use kafka_protocol::error::ResponseError;
use kafka_protocol::protocol::StrBytes;

/// What a tool run can fail with; printed by `main` and turned into a non-zero exit.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// Bad flags or flag combination.
    #[error("{0}")]
    Usage(String),
    /// The `--command-config` file is unreadable or has a bad value.
    #[error("--command-config: {0}")]
    Security(#[from] gregor_client::SecurityError),
    /// Talking to the cluster failed.
    #[error(transparent)]
    Client(#[from] gregor_client::ClientError),
    /// The cluster refused an operation.
    #[error("{what}: {error}{}", message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Kafka {
        /// What was being done, naming the topic, partition or group.
        what: String,
        /// The error code the broker returned.
        error: ResponseError,
        /// The broker's own explanation, when it sent one.
        message: Option<String>,
    },
    /// The operation cannot be done as asked, e.g. a topic that does not exist.
    #[error("{0}")]
    Failed(String),
    /// Reading stdin or writing stdout failed.
    #[error("{what}")]
    Io {
        /// What was being read or written.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl ToolError {
    /// Turns a broker error code into an error naming `what` failed; `Ok` when it is 0.
    pub fn check(
        code: i16,
        message: Option<&StrBytes>,
        what: impl FnOnce() -> String,
    ) -> Result<(), ToolError> {
        match ResponseError::try_from_code(code) {
            None => Ok(()),
            Some(error) => Err(ToolError::Kafka {
                what: what(),
                error,
                message: message.map(|m| m.as_str().to_owned()),
            }),
        }
    }
}

/// Connects to the cluster at `bootstrap`, secured as the `--command-config` file says
/// (PLAINTEXT without one). The file and its stores are read off the reactor.
pub async fn connect(
    bootstrap: &str,
    command_config: Option<&std::path::Path>,
) -> Result<gregor_client::Cluster, ToolError> {
    let security = match command_config {
        None => gregor_client::ClientSecurity::plaintext(),
        Some(path) => {
            let path = path.to_owned();
            tokio::task::spawn_blocking(move || gregor_client::ClientSecurity::from_file(&path))
                .await
                .map_err(|e| ToolError::Failed(format!("reading --command-config: {e}")))??
        }
    };
    Ok(gregor_client::Cluster::connect_with(bootstrap, &security).await?)
}

/// Parses `key=value` flags (`--config`, `--property`, ...) in order; `flag` names the flag in
/// the error for a malformed one.
pub fn parse_key_values(flag: &str, items: &[String]) -> Result<Vec<(String, String)>, ToolError> {
    items
        .iter()
        .map(|item| {
            item.split_once('=')
                .filter(|(k, _)| !k.trim().is_empty())
                .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
                .ok_or_else(|| {
                    ToolError::Usage(format!(
                        "Invalid {flag} '{item}': expected the form key=value"
                    ))
                })
        })
        .collect()
}

/// Turns Kafka's escaped separators (`\t`, `\n`, `\r`, `\\`) in property values into the
/// characters, as Kafka's console tools do.
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Parses a boolean property value as Java's `Boolean.parseBoolean` does.
pub fn parse_bool(value: &str) -> bool {
    value.trim().eq_ignore_ascii_case("true")
}

impl From<gregor_client::names::InvalidTopicName> for ToolError {
    fn from(e: gregor_client::names::InvalidTopicName) -> Self {
        ToolError::Usage(e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_split_at_the_first_equals_sign() {
        let parsed =
            parse_key_values("--config", &["a=1".into(), "b=x=y".into(), "c=".into()]).unwrap();
        assert_eq!(
            parsed,
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x=y".into()),
                ("c".into(), String::new())
            ]
        );
    }

    #[test]
    fn key_values_without_equals_sign_are_rejected_naming_the_flag() {
        let err = parse_key_values("--config", &["retention.ms".into()]).unwrap_err();
        assert!(err.to_string().contains("--config 'retention.ms'"), "{err}");
    }

    #[test]
    fn escaped_separators_are_unescaped() {
        assert_eq!(unescape("\\t"), "\t");
        assert_eq!(unescape("a\\nb\\\\"), "a\nb\\");
        assert_eq!(unescape(":"), ":");
    }

    #[test]
    fn kafka_errors_name_the_operation_and_the_brokers_message() {
        let msg = StrBytes::from_static_str("details");
        let err = ToolError::check(36, Some(&msg), || "creating topic 't'".into()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "creating topic 't': TopicAlreadyExists (details)"
        );
        assert!(ToolError::check(0, None, || unreachable!()).is_ok());
    }
}
