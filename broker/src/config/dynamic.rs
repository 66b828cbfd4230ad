//! Dynamic broker configs (Kafka's KIP-226): which `server.properties` keys Gregor applies at
//! runtime, and how a key's value is found across the layers Kafka reports, highest first:
//! the per-broker dynamic config, the cluster-wide dynamic default, the static file, the
//! built-in default. The values themselves live in the metadata log; this module only knows
//! the keys and the precedence.

use std::collections::BTreeMap;

pub use gregor_client::broker_configs::{is_dynamic_broker_key, DYNAMIC_BROKER_KEYS};

/// Where a config value comes from: Kafka's `ConfigSource` ids, as DescribeConfigs reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A topic's own override.
    Topic = 1,
    /// The dynamic config of this broker.
    DynamicBroker = 2,
    /// The cluster-wide dynamic default.
    DynamicDefault = 3,
    /// `server.properties` (or `--override`).
    Static = 4,
    /// Kafka's built-in default.
    Default = 5,
    /// A group's own config (GROUP resource).
    Group = 8,
}

/// Kafka's built-in defaults of the dynamic keys that have one (the `.ms`/`.minutes` forms of
/// retention and roll have none: their `.hours` synonym carries it).
fn builtin_default(key: &str) -> Option<&'static str> {
    Some(match key {
        "log.cleanup.policy" => "delete",
        "log.cleaner.delete.retention.ms" => "86400000",
        "log.flush.interval.messages" => "9223372036854775807",
        "log.index.interval.bytes" => "4096",
        "log.retention.bytes" => "-1",
        "log.retention.hours" => "168",
        "log.roll.hours" => "168",
        "log.segment.bytes" => "1073741824",
        "message.max.bytes" => "1048588",
        "min.insync.replicas" => "1",
        "unclean.leader.election.enable" => "false",
        _ => return None,
    })
}

/// The keys whose values stand for `key`, most specific first, as Kafka's
/// `brokerConfigSynonyms`: a retention or roll time may be given in ms, minutes or hours.
/// Empty for a key that is its own only synonym.
pub fn synonyms(key: &str) -> &[&str] {
    const RETENTION: &[&str] = &[
        "log.retention.ms",
        "log.retention.minutes",
        "log.retention.hours",
    ];
    const ROLL: &[&str] = &["log.roll.ms", "log.roll.hours"];
    match key {
        "log.retention.ms" => RETENTION,
        "log.retention.minutes" => &RETENTION[1..],
        "log.retention.hours" => &RETENTION[2..],
        "log.roll.ms" => ROLL,
        "log.roll.hours" => &ROLL[1..],
        _ => &[],
    }
}

/// Milliseconds in one unit of a time key (`.ms`, `.minutes`, `.hours`), `None` for others.
fn unit_ms(key: &str) -> Option<i64> {
    if key.ends_with(".ms") {
        Some(1)
    } else if key.ends_with(".minutes") {
        Some(60_000)
    } else if key.ends_with(".hours") {
        Some(3_600_000)
    } else {
        None
    }
}

/// One value of a key in one layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synonym {
    /// The key the layer sets (may be a synonym of the key asked about).
    pub name: String,
    /// Its value there.
    pub value: String,
    /// The layer.
    pub source: Source,
}

/// A broker's config layers, highest precedence first.
#[derive(Debug, Clone, Copy)]
pub struct Layers<'a> {
    /// This broker's dynamic config.
    pub broker: &'a BTreeMap<String, String>,
    /// The cluster-wide dynamic default.
    pub cluster_default: &'a BTreeMap<String, String>,
    /// The static config.
    pub static_config: &'a BTreeMap<String, String>,
}

impl Layers<'_> {
    /// Every value `key` has across the layers, in Kafka's order: each layer from the highest,
    /// and within a layer each synonym from the most specific; the built-in defaults last.
    pub fn synonyms(&self, key: &str) -> Vec<Synonym> {
        let names: Vec<&str> = match synonyms(key) {
            [] => vec![key],
            s => s.to_vec(),
        };
        let mut out = Vec::new();
        let layers = [
            (self.broker, Source::DynamicBroker),
            (self.cluster_default, Source::DynamicDefault),
            (self.static_config, Source::Static),
        ];
        for (map, source) in layers {
            for name in &names {
                if let Some(v) = map.get(*name) {
                    out.push(Synonym {
                        name: name.to_string(),
                        value: v.clone(),
                        source,
                    });
                }
            }
        }
        for name in &names {
            if let Some(v) = builtin_default(name) {
                out.push(Synonym {
                    name: name.to_string(),
                    value: v.to_string(),
                    source: Source::Default,
                });
            }
        }
        out
    }

    /// The value `key` takes and where it comes from: the first of [`Layers::synonyms`],
    /// converted to `key`'s unit when a synonym in another unit supplies it.
    pub fn value(&self, key: &str) -> Option<(String, Source)> {
        let head = self.synonyms(key).into_iter().next()?;
        if head.name == key {
            return Some((head.value, head.source));
        }
        let converted = match (
            unit_ms(&head.name),
            unit_ms(key),
            head.value.trim().parse::<i64>(),
        ) {
            (Some(from), Some(to), Ok(n)) if n >= 0 => (n.saturating_mul(from) / to).to_string(),
            _ => head.value,
        };
        Some((converted, head.source))
    }
}

/// Kafka's `SslConfigs.RECONFIGURABLE_CONFIGS`: the TLS keys a broker takes at runtime, and
/// only per broker and per listener (`listener.name.<l>.ssl.keystore.location`, ...).
pub const RECONFIGURABLE_SSL_KEYS: &[&str] = &[
    "ssl.key.password",
    "ssl.keystore.certificate.chain",
    "ssl.keystore.key",
    "ssl.keystore.location",
    "ssl.keystore.password",
    "ssl.keystore.type",
    "ssl.truststore.certificates",
    "ssl.truststore.location",
    "ssl.truststore.password",
    "ssl.truststore.type",
];

/// The listener (lower case, as written) and the reconfigurable TLS key of a
/// `listener.name.<l>.ssl.*` key; `None` for any other key.
pub fn listener_ssl_key(key: &str) -> Option<(&str, &str)> {
    let (listener, ssl_key) = key.strip_prefix("listener.name.")?.split_once('.')?;
    (!listener.is_empty() && RECONFIGURABLE_SSL_KEYS.contains(&ssl_key))
        .then_some((listener, ssl_key))
}

/// The keys of `configs` that cannot be set on this BROKER resource (`per_broker`: one
/// broker's own, else the cluster default), refused in Kafka's words
/// (`DynamicBrokerConfig.validateConfigs`): keys Gregor cannot apply at runtime, TLS keys
/// without a listener prefix, and listener TLS keys as a cluster default.
pub fn check_dynamic(configs: &BTreeMap<String, String>, per_broker: bool) -> Result<(), String> {
    let refuse = |message: &str, keys: Vec<&str>| {
        if keys.is_empty() {
            Ok(())
        } else {
            Err(format!("{message}: [{}]", keys.join(", ")))
        }
    };
    let keys = || configs.keys().map(String::as_str);
    let unprefixed_ssl = |k: &str| RECONFIGURABLE_SSL_KEYS.contains(&k);
    refuse(
        "Cannot update these configs dynamically",
        keys()
            .filter(|k| {
                !is_dynamic_broker_key(k) && listener_ssl_key(k).is_none() && !unprefixed_ssl(k)
            })
            .collect(),
    )?;
    refuse(
        "These security configs can be dynamically updated only per-listener using the \
         listener prefix",
        keys().filter(|k| unprefixed_ssl(k)).collect(),
    )?;
    if per_broker {
        return Ok(());
    }
    refuse(
        "Cannot update these configs at default cluster level, broker id must be specified",
        keys().filter(|k| listener_ssl_key(k).is_some()).collect(),
    )
}

/// The property map a broker runs with: the static config overlaid with the cluster default,
/// then with this broker's dynamic config. Synonyms resolve afterwards as they do in a static
/// file (`log.retention.ms` over `.minutes` over `.hours`, whatever layer each comes from), as
/// Kafka's merged config does.
pub fn overlay(layers: Layers<'_>) -> BTreeMap<String, String> {
    let mut out = layers.static_config.clone();
    for map in [layers.cluster_default, layers.broker] {
        out.extend(map.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_per_broker_value_beats_the_cluster_default_which_beats_the_static_one() {
        let broker = map(&[("min.insync.replicas", "3")]);
        let default = map(&[("min.insync.replicas", "2"), ("log.retention.ms", "1000")]);
        let file = map(&[("min.insync.replicas", "1"), ("log.retention.hours", "24")]);
        let layers = Layers {
            broker: &broker,
            cluster_default: &default,
            static_config: &file,
        };
        assert_eq!(
            layers.value("min.insync.replicas"),
            Some(("3".into(), Source::DynamicBroker))
        );
        let sources: Vec<Source> = layers
            .synonyms("min.insync.replicas")
            .iter()
            .map(|s| s.source)
            .collect();
        assert_eq!(
            sources,
            [
                Source::DynamicBroker,
                Source::DynamicDefault,
                Source::Static,
                Source::Default
            ]
        );
        assert_eq!(
            layers.value("log.retention.ms"),
            Some(("1000".into(), Source::DynamicDefault))
        );
        assert_eq!(overlay(layers)["min.insync.replicas"], "3");
    }

    #[test]
    fn a_time_given_in_another_unit_is_reported_in_the_unit_asked_for() {
        let empty = BTreeMap::new();
        let file = map(&[("log.retention.hours", "2")]);
        let layers = Layers {
            broker: &empty,
            cluster_default: &empty,
            static_config: &file,
        };
        assert_eq!(
            layers.value("log.retention.ms"),
            Some(("7200000".into(), Source::Static))
        );
        let names: Vec<String> = layers
            .synonyms("log.retention.ms")
            .into_iter()
            .map(|s| format!("{:?}:{}={}", s.source, s.name, s.value))
            .collect();
        assert_eq!(
            names,
            [
                "Static:log.retention.hours=2",
                "Default:log.retention.hours=168"
            ]
        );
        assert_eq!(
            layers.value("log.segment.bytes"),
            Some(("1073741824".into(), Source::Default))
        );
        assert_eq!(layers.value("no.such.key"), None);
    }

    #[test]
    fn only_the_keys_gregor_applies_live_are_dynamic_and_others_are_refused_in_kafkas_words() {
        assert!(is_dynamic_broker_key("log.retention.ms"));
        assert!(!is_dynamic_broker_key("listeners"));
        assert_eq!(
            check_dynamic(
                &map(&[("listeners", "x"), ("log.retention.ms", "1"), ("a.b", "1")]),
                true
            ),
            Err("Cannot update these configs dynamically: [a.b, listeners]".into())
        );
        assert_eq!(
            check_dynamic(&map(&[("min.insync.replicas", "2")]), false),
            Ok(())
        );
        let mut sorted = DYNAMIC_BROKER_KEYS.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, DYNAMIC_BROKER_KEYS, "kept sorted for the docs");
    }

    #[test]
    fn listener_tls_keys_are_dynamic_per_broker_and_per_listener_only() {
        let prefixed = map(&[
            ("listener.name.external.ssl.keystore.location", "/k.pem"),
            ("listener.name.external.ssl.truststore.certificates", "x"),
        ]);
        assert_eq!(check_dynamic(&prefixed, true), Ok(()));
        assert_eq!(
            check_dynamic(&prefixed, false),
            Err(
                "Cannot update these configs at default cluster level, broker id must be \
                 specified: [listener.name.external.ssl.keystore.location, \
                 listener.name.external.ssl.truststore.certificates]"
                    .into()
            )
        );
        assert_eq!(
            check_dynamic(&map(&[("ssl.keystore.location", "/k.pem")]), true),
            Err(
                "These security configs can be dynamically updated only per-listener using \
                 the listener prefix: [ssl.keystore.location]"
                    .into()
            )
        );
        // A key that is not one of the reconfigurable ones is not dynamic, prefixed or not.
        assert_eq!(
            check_dynamic(
                &map(&[("listener.name.external.ssl.client.auth", "none")]),
                true
            ),
            Err("Cannot update these configs dynamically: \
                 [listener.name.external.ssl.client.auth]"
                .into())
        );
        assert_eq!(
            listener_ssl_key("listener.name.external.ssl.key.password"),
            Some(("external", "ssl.key.password"))
        );
        assert_eq!(listener_ssl_key("listener.name..ssl.key.password"), None);
        assert_eq!(listener_ssl_key("ssl.key.password"), None);
    }
}
