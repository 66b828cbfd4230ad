//! Dynamic broker configs on this node: the committed BROKER resources (`""` the cluster-wide
//! default, `"<id>"` one broker), the effective config they give this broker over its static
//! one, and applying a change live to every topic that has no override of its own.

use super::*;
use crate::config::dynamic::{self, Layers, Source};
use topic_config::ConfigEntry;

/// The dynamic broker configs as last committed, and the config they give this broker.
#[derive(Debug)]
pub(super) struct DynamicConfigs {
    /// Every BROKER resource's dynamic configs, by resource name.
    by_resource: BTreeMap<String, BTreeMap<String, String>>,
    /// The static config overlaid with the cluster default and this broker's own configs.
    effective: Arc<Config>,
}

impl DynamicConfigs {
    /// The state `by_resource` gives a broker with static config `config`. A committed layer
    /// that does not validate here (checked where it was written, so only against a static
    /// config that differs) is left out with a warning rather than stopping the broker.
    pub(super) fn new(
        config: &Arc<Config>,
        by_resource: BTreeMap<String, BTreeMap<String, String>>,
    ) -> DynamicConfigs {
        let effective = match effective(config, &by_resource) {
            Ok(c) => Arc::new(c),
            Err(e) => {
                tracing::warn!(error = %e, "ignoring dynamic broker configs that do not apply here");
                Arc::clone(config)
            }
        };
        DynamicConfigs {
            by_resource,
            effective,
        }
    }
}

fn effective(
    config: &Config,
    by_resource: &BTreeMap<String, BTreeMap<String, String>>,
) -> Result<Config, crate::config::ConfigError> {
    let empty = BTreeMap::new();
    let layer = |name: &str| by_resource.get(name).unwrap_or(&empty);
    config.reconfigured(layer(""), layer(&config.node_id.to_string()))
}

/// `by_resource` with `resource` holding `configs` (none: removed).
fn with_resource(
    by_resource: &BTreeMap<String, BTreeMap<String, String>>,
    resource: &str,
    configs: &BTreeMap<String, String>,
) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out = by_resource.clone();
    if configs.is_empty() {
        out.remove(resource);
    } else {
        out.insert(resource.to_string(), configs.clone());
    }
    out
}

impl Cluster {
    /// The config this broker would run with if BROKER resource `resource` held `configs`,
    /// checked as [`Cluster::set_broker_configs`] checks them; nothing is committed. The
    /// AlterConfigs handler checks what needs more than the config (TLS material) with it.
    pub fn effective_with(
        &self,
        resource: &str,
        configs: &BTreeMap<String, String>,
    ) -> Result<Config, AdminError> {
        dynamic::check_dynamic(configs, !resource.is_empty())
            .map_err(AdminError::InvalidRequest)?;
        let by_resource = with_resource(&self.dynamic.read().by_resource, resource, configs);
        effective(&self.config, &by_resource).map_err(|e| AdminError::InvalidRequest(e.to_string()))
    }

    /// The config this broker runs with now: static, overlaid with the dynamic broker configs.
    /// Topic defaults, `min.insync.replicas`, `unclean.leader.election.enable` and
    /// `log.flush.interval.messages` are read from it.
    pub fn effective_config(&self) -> Arc<Config> {
        Arc::clone(&self.dynamic.read().effective)
    }

    /// The dynamic configs of BROKER resource `resource` (`""` or a broker id).
    pub fn broker_configs(&self, resource: &str) -> BTreeMap<String, String> {
        self.dynamic
            .read()
            .by_resource
            .get(resource)
            .cloned()
            .unwrap_or_default()
    }

    /// Replaces the dynamic configs of BROKER resource `resource` (blocking): refuses keys
    /// Gregor cannot apply live and values that do not validate (INVALID_REQUEST, as Kafka),
    /// then commits them through the metadata log and applies them.
    pub fn set_broker_configs(
        &self,
        resource: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), AdminError> {
        dynamic::check_dynamic(&configs, !resource.is_empty())
            .map_err(AdminError::InvalidRequest)?;
        let mut meta = self.meta.lock();
        let current = self.dynamic.read().by_resource.clone();
        let by_resource = with_resource(&current, resource, &configs);
        if by_resource == current {
            // Nothing to commit (deleting a key that is not set, or setting what is).
            return Ok(());
        }
        // Validated as every broker will run with it: as the default, over this broker's
        // static config; as this broker's own, over the default as well.
        effective(&self.config, &by_resource)
            .map_err(|e| AdminError::InvalidRequest(e.to_string()))?;
        if validate_only {
            return Ok(());
        }
        meta.log.append(&[MetadataRecord::BrokerConfigs {
            resource: resource.to_string(),
            configs,
        }])?;
        self.apply_broker_configs(by_resource);
        Ok(())
    }

    /// Takes `by_resource` as the committed dynamic configs and applies them to every topic
    /// without an override of its own (called under the metadata lock). Returns whether they
    /// changed.
    pub(super) fn apply_broker_configs(
        &self,
        by_resource: BTreeMap<String, BTreeMap<String, String>>,
    ) -> bool {
        if self.dynamic.read().by_resource == by_resource {
            return false;
        }
        let next = DynamicConfigs::new(&self.config, by_resource);
        let effective = Arc::clone(&next.effective);
        *self.dynamic.write() = next;
        for topic in self.topics() {
            match topic_config::resolve_log_config(&effective, &topic.configs.read()) {
                Ok(c) => topic.set_log_config(&c),
                Err(e) => {
                    tracing::warn!(topic = %topic.name, error = %e, "topic config no longer resolves")
                }
            }
        }
        tracing::info!("dynamic broker configs applied");
        true
    }
}

impl Cluster {
    /// Every topic config of a topic with `overrides`, with its value and source over this
    /// broker's config layers, for DescribeConfigs and CreateTopics.
    pub fn topic_config_entries(&self, overrides: &BTreeMap<String, String>) -> Vec<ConfigEntry> {
        let d = self.dynamic.read();
        let empty = BTreeMap::new();
        let layer = |name: &str| d.by_resource.get(name).unwrap_or(&empty);
        let layers = Layers {
            broker: layer(&self.config.node_id.to_string()),
            cluster_default: layer(""),
            static_config: &self.config.raw,
        };
        topic_config::effective_topic_configs(&d.effective, layers, overrides)
    }

    /// The configs of BROKER resource `resource` as Kafka describes them: for `""` (the cluster
    /// default) only the keys it sets, with their default-layer synonyms; for this broker's id
    /// every key of its static config and every dynamic key, with the value and source each
    /// takes. Another id is INVALID_REQUEST: each broker describes itself.
    pub fn broker_config_entries(&self, resource: &str) -> Result<Vec<ConfigEntry>, AdminError> {
        let me = self.config.node_id.to_string();
        if !resource.is_empty() && resource != me {
            return Err(AdminError::InvalidRequest(format!(
                "Unexpected broker id, expected {me} or empty string, but received {resource}"
            )));
        }
        let d = self.dynamic.read();
        let empty = BTreeMap::new();
        let layer = |name: &str| d.by_resource.get(name).unwrap_or(&empty);
        let default_layer = layer("");
        if resource.is_empty() {
            let layers = Layers {
                broker: &empty,
                cluster_default: default_layer,
                static_config: &empty,
            };
            return Ok(default_layer
                .iter()
                .map(|(k, v)| ConfigEntry {
                    name: k.clone(),
                    value: v.clone(),
                    source: Source::DynamicDefault,
                    synonyms: layers
                        .synonyms(k)
                        .into_iter()
                        .filter(|s| s.source == Source::DynamicDefault)
                        .collect(),
                })
                .collect());
        }
        let layers = Layers {
            broker: layer(&me),
            cluster_default: default_layer,
            static_config: &self.config.raw,
        };
        let mut keys: std::collections::BTreeSet<&str> =
            dynamic::DYNAMIC_BROKER_KEYS.iter().copied().collect();
        keys.extend(self.config.raw.keys().map(String::as_str));
        keys.extend(layers.broker.keys().map(String::as_str));
        keys.extend(default_layer.keys().map(String::as_str));
        Ok(keys
            .into_iter()
            .filter_map(|k| {
                let (value, source) = layers.value(k)?;
                Some(ConfigEntry {
                    name: k.to_string(),
                    value,
                    source,
                    synonyms: layers.synonyms(k),
                })
            })
            .collect())
    }
}
