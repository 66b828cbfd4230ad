//! Topic-level configs: validation with Kafka's rules and resolution of a partition's
//! [`LogConfig`] from broker defaults plus topic overrides. (Topic names are checked by
//! [`gregor_client::names::validate_topic_name`].)

use std::collections::BTreeMap;

use crate::config::dynamic::{Layers, Source, Synonym};
use crate::config::{parse_cleanup_policy, Config};
use crate::log::LogConfig;

/// Topic config keys Gregor accepts, with the broker key their default comes from.
pub const TOPIC_CONFIG_KEYS: &[(&str, &str)] = &[
    ("cleanup.policy", "log.cleanup.policy"),
    ("retention.ms", "log.retention.ms"),
    ("retention.bytes", "log.retention.bytes"),
    ("segment.bytes", "log.segment.bytes"),
    ("segment.ms", "log.roll.ms"),
    ("delete.retention.ms", "log.cleaner.delete.retention.ms"),
    ("index.interval.bytes", "log.index.interval.bytes"),
    ("max.message.bytes", "message.max.bytes"),
    ("min.insync.replicas", "min.insync.replicas"),
    ("message.timestamp.type", "log.message.timestamp.type"),
    ("compression.type", "compression.type"),
    (
        "unclean.leader.election.enable",
        "unclean.leader.election.enable",
    ),
    ("min.compaction.lag.ms", "log.cleaner.min.compaction.lag.ms"),
    ("max.compaction.lag.ms", "log.cleaner.max.compaction.lag.ms"),
    (
        "min.cleanable.dirty.ratio",
        "log.cleaner.min.cleanable.ratio",
    ),
    ("flush.messages", "log.flush.interval.messages"),
    ("flush.ms", "log.flush.interval.ms"),
    ("file.delete.delay.ms", "log.segment.delete.delay.ms"),
    ("preallocate", "log.preallocate"),
    (
        "message.downconversion.enable",
        "log.message.downconversion.enable",
    ),
    ("local.retention.ms", "log.local.retention.ms"),
    ("local.retention.bytes", "log.local.retention.bytes"),
];

const COMPRESSION_TYPES: &[&str] = &["uncompressed", "producer", "gzip", "snappy", "lz4", "zstd"];

fn parse_i64(key: &str, v: &str) -> Result<i64, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("invalid value {v:?} for topic config {key}: not a number"))
}

/// Validates topic config overrides (INVALID_CONFIG on failure) and returns the log config
/// they give on top of the broker defaults.
pub fn resolve_log_config(
    broker: &Config,
    overrides: &BTreeMap<String, String>,
) -> Result<LogConfig, String> {
    let mut c = broker.log.clone();
    for (k, v) in overrides {
        if !TOPIC_CONFIG_KEYS.iter().any(|(t, _)| t == k) {
            return Err(format!("unknown topic config {k}"));
        }
        match k.as_str() {
            "cleanup.policy" => {
                c.cleanup_policy = parse_cleanup_policy(v).ok_or_else(|| {
                    format!("invalid value {v:?} for topic config cleanup.policy: expected delete, compact, both, or nothing (no cleanup)")
                })?
            }
            "retention.ms" => {
                let n = parse_i64(k, v)?;
                c.retention_ms = (n >= 0).then_some(n);
            }
            "retention.bytes" => {
                let n = parse_i64(k, v)?;
                c.retention_bytes = (n >= 0).then_some(n as u64);
            }
            "segment.bytes" => {
                let n = parse_i64(k, v)?;
                if n < 14 {
                    return Err(format!("invalid value {v} for topic config segment.bytes: must be at least 14"));
                }
                c.segment_bytes = n as u64;
            }
            "segment.ms" => {
                let n = parse_i64(k, v)?;
                if n < 1 {
                    return Err(format!("invalid value {v} for topic config segment.ms: must be positive"));
                }
                c.segment_ms = n;
            }
            "delete.retention.ms" => c.delete_retention_ms = parse_i64(k, v)?.max(0),
            "index.interval.bytes" => c.index_interval_bytes = parse_i64(k, v)?.clamp(0, i64::from(u32::MAX)) as u32,
            "max.message.bytes" => c.max_message_bytes = parse_i64(k, v)?.clamp(0, i64::from(u32::MAX)) as u32,
            "min.insync.replicas" if parse_i64(k, v)? < 1 => {
                return Err(format!(
                    "invalid value {v} for topic config min.insync.replicas: must be at least 1"
                ));
            }
            "message.timestamp.type" if v != "CreateTime" && v != "LogAppendTime" => {
                return Err(format!(
                    "invalid value {v:?} for topic config message.timestamp.type: \
                     expected CreateTime or LogAppendTime"
                ));
            }
            "compression.type" if !COMPRESSION_TYPES.contains(&v.as_str()) => {
                return Err(format!(
                    "invalid value {v:?} for topic config compression.type: expected one of {}",
                    COMPRESSION_TYPES.join(", ")
                ));
            }
            _ => {}
        }
    }
    Ok(c)
}

/// The topic config key of the ISR size an acks=all produce needs.
pub const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";

/// The topic overrides read on the request path, parsed once whenever the topic's configs
/// change instead of on every request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParsedTopicConfig {
    /// `min.insync.replicas` when the topic overrides it. `None` follows the broker's
    /// effective default, which a dynamic broker config may change without the topic changing.
    pub min_insync_replicas: Option<i32>,
}

impl ParsedTopicConfig {
    /// Parses `overrides`. A value that is not an `i32` counts as no override, as it always
    /// has on the produce path (validation already refuses anything below 1).
    pub fn parse(overrides: &BTreeMap<String, String>) -> ParsedTopicConfig {
        ParsedTopicConfig {
            min_insync_replicas: overrides
                .get(MIN_INSYNC_REPLICAS)
                .and_then(|v| v.parse().ok()),
        }
    }
}

/// `unclean.leader.election.enable` for a topic with these overrides: its own value when it
/// sets one (Kafka's topic-level override wins), else `broker_default`, the broker's
/// `unclean.leader.election.enable`.
pub fn unclean_leader_election_enable(
    overrides: &BTreeMap<String, String>,
    broker_default: bool,
) -> bool {
    match overrides
        .get("unclean.leader.election.enable")
        .map(|v| v.trim())
    {
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        _ => broker_default,
    }
}

/// One config as DescribeConfigs reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// The key.
    pub name: String,
    /// Its value.
    pub value: String,
    /// Where the value comes from.
    pub source: Source,
    /// Every value the key has across the layers, highest precedence first.
    pub synonyms: Vec<Synonym>,
}

/// The effective value of every topic config (the topic's override, else the broker default
/// from `effective`, the broker's config with its dynamic layers applied), with where it comes
/// from in `layers`, for DescribeConfigs.
pub fn effective_topic_configs(
    effective: &Config,
    layers: Layers<'_>,
    overrides: &BTreeMap<String, String>,
) -> Vec<ConfigEntry> {
    TOPIC_CONFIG_KEYS
        .iter()
        .map(|(k, broker_key)| {
            let mut synonyms = layers.synonyms(broker_key);
            let (value, source) = match overrides.get(*k) {
                Some(v) => {
                    synonyms.insert(
                        0,
                        Synonym {
                            name: k.to_string(),
                            value: v.clone(),
                            source: Source::Topic,
                        },
                    );
                    (v.clone(), Source::Topic)
                }
                None => (
                    default_value(effective, k, broker_key),
                    synonyms.first().map_or(Source::Default, |s| s.source),
                ),
            };
            ConfigEntry {
                name: k.to_string(),
                value,
                source,
                synonyms,
            }
        })
        .collect()
}

fn default_value(broker: &Config, key: &str, broker_key: &str) -> String {
    if let Some(v) = broker.raw.get(broker_key) {
        return v.clone();
    }
    let l = &broker.log;
    match key {
        "cleanup.policy" => "delete".into(),
        "retention.ms" => l.retention_ms.unwrap_or(-1).to_string(),
        "retention.bytes" => l
            .retention_bytes
            .map(|b| b as i64)
            .unwrap_or(-1)
            .to_string(),
        "segment.bytes" => l.segment_bytes.to_string(),
        "segment.ms" => l.segment_ms.to_string(),
        "delete.retention.ms" => l.delete_retention_ms.to_string(),
        "index.interval.bytes" => l.index_interval_bytes.to_string(),
        "max.message.bytes" => l.max_message_bytes.to_string(),
        "min.insync.replicas" => broker.min_insync_replicas.to_string(),
        "message.timestamp.type" => "CreateTime".into(),
        "compression.type" => "producer".into(),
        "unclean.leader.election.enable" => "false".into(),
        "min.compaction.lag.ms" => "0".into(),
        "max.compaction.lag.ms" => i64::MAX.to_string(),
        "min.cleanable.dirty.ratio" => "0.5".into(),
        "flush.messages" => i64::MAX.to_string(),
        "flush.ms" => i64::MAX.to_string(),
        "file.delete.delay.ms" => "60000".into(),
        "preallocate" => "false".into(),
        "message.downconversion.enable" => "true".into(),
        "local.retention.ms" => "-2".into(),
        "local.retention.bytes" => "-2".into(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topics_unclean_election_override_wins_over_the_broker_default() {
        let set = |v: &str| BTreeMap::from([("unclean.leader.election.enable".into(), v.into())]);
        assert!(unclean_leader_election_enable(&set("true"), false));
        assert!(!unclean_leader_election_enable(&set("FALSE"), true));
        assert!(unclean_leader_election_enable(&BTreeMap::new(), true));
        assert!(!unclean_leader_election_enable(&BTreeMap::new(), false));
    }

    #[test]
    fn min_insync_replicas_is_parsed_only_when_the_topic_sets_a_number() {
        let set = |v: &str| BTreeMap::from([(MIN_INSYNC_REPLICAS.to_string(), v.to_string())]);
        assert_eq!(
            ParsedTopicConfig::parse(&set("2")).min_insync_replicas,
            Some(2)
        );
        assert_eq!(
            ParsedTopicConfig::parse(&set("two")).min_insync_replicas,
            None
        );
        assert_eq!(
            ParsedTopicConfig::parse(&BTreeMap::new()).min_insync_replicas,
            None
        );
    }

    fn broker() -> Config {
        Config::from_properties(crate::config::parse_properties("node.id=1\n")).expect("config")
    }

    #[test]
    fn overrides_change_the_log_config_and_bad_ones_name_the_key() {
        let b = broker();
        let mut o = BTreeMap::new();
        o.insert("cleanup.policy".to_string(), "compact".to_string());
        o.insert("retention.ms".to_string(), "-1".to_string());
        let c = resolve_log_config(&b, &o).expect("valid");
        assert_eq!(c.cleanup_policy, crate::log::CleanupPolicy::Compact);
        assert_eq!(c.retention_ms, None);
        o.insert("segment.bytes".to_string(), "x".to_string());
        assert!(resolve_log_config(&b, &o)
            .unwrap_err()
            .contains("segment.bytes"));
        let mut o = BTreeMap::new();
        o.insert("no.such.key".to_string(), "1".to_string());
        assert!(resolve_log_config(&b, &o)
            .unwrap_err()
            .contains("no.such.key"));
    }
}
