//! Kafka's names for things, as clients and brokers both check and print them: the topic-name
//! rule and the text form of a topic id.

use base64::Engine as _;

/// The longest topic name Kafka allows.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// A topic name Kafka would refuse, with Kafka's own message for it (the text of the
/// `InvalidTopicException` that `Topic.validate` throws, in brokers and clients alike).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidTopicName(pub String);

/// Kafka's topic-name rule: 1–249 characters of `[a-zA-Z0-9._-]`, and not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), InvalidTopicName> {
    let problem = if name.is_empty() {
        "Topic name is illegal, it can't be empty".to_owned()
    } else if name == "." || name == ".." {
        "Topic name cannot be \".\" or \"..\"".to_owned()
    } else if name.len() > MAX_TOPIC_NAME_LEN {
        format!(
            "Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME_LEN} characters, \
             topic name: {name}"
        )
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII \
             alphanumerics, '.', '_' and '-'"
        )
    } else {
        return Ok(());
    };
    Err(InvalidTopicName(problem))
}

/// Kafka's text form of a topic id: the 16 bytes in URL-safe base64 without padding.
pub fn topic_id_string(id: &uuid::Uuid) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafkas_rule() {
        assert!(validate_topic_name("orders.v1_x-2").is_ok());
        assert!(validate_topic_name(&"x".repeat(249)).is_ok());
        for bad in ["", ".", "..", "a b", "ö", "a/b"] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }

    #[test]
    fn refusals_carry_kafkas_messages() {
        assert_eq!(
            validate_topic_name("").unwrap_err().to_string(),
            "Topic name is illegal, it can't be empty"
        );
        assert_eq!(
            validate_topic_name("a b").unwrap_err().to_string(),
            "Topic name \"a b\" is illegal, it contains a character other than ASCII \
             alphanumerics, '.', '_' and '-'"
        );
    }

    #[test]
    fn topic_ids_print_as_22_character_base64url() {
        let id = uuid::Uuid::from_bytes([0xfb; 16]);
        let text = topic_id_string(&id);
        assert_eq!(text.len(), 22);
        assert_eq!(text, "-_v7-_v7-_v7-_v7-_v7-w");
    }
}
