//! `server.properties`: Apache Kafka's own configuration vocabulary, parsed once into a
//! validated [`Config`]. Unknown keys are kept (for DescribeConfigs) and logged; a malformed
//! value fails start-up naming the key. This is the only module that reads the environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use gregor_client::properties::parse_properties;

use crate::log::{CleanupPolicy, LogConfig};

pub mod dynamic;
mod providers;
pub use providers::resolve as resolve_providers;
mod authorizer;
pub mod peer;
pub mod principal_rules;
mod replication;
pub mod sasl;
pub mod ssl;
pub use authorizer::{AuthorizerConfig, STANDARD_AUTHORIZER};
pub use dynamic::{is_dynamic_broker_key, DYNAMIC_BROKER_KEYS};
pub use replication::ReplicationConfig;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The properties file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A key's value does not parse or is out of range.
    #[error("invalid value {value:?} for config key {key}: {reason}")]
    Invalid {
        /// The key.
        key: String,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A required key is missing.
    #[error("missing required config key {0}")]
    Missing(String),
    /// An `--override` argument is not `key=value`.
    #[error("override {0:?} is not of the form key=value")]
    BadOverride(String),
    /// `process.roles` does not fit the voters or listeners (Kafka's own wording).
    #[error("{0}")]
    Roles(String),
}

/// Roles in `process.roles`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Serves clients and stores partitions.
    Broker,
    /// Votes in the metadata quorum.
    Controller,
}

/// One `listeners` entry: `NAME://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Listener name, e.g. PLAINTEXT or CONTROLLER.
    pub name: String,
    /// Host; empty means all interfaces.
    pub host: String,
    /// TCP port; 0 picks a free one (tests).
    pub port: u16,
}

/// One `controller.quorum.voters` entry: `id@host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voter {
    /// Node id of the voter.
    pub id: i32,
    /// Host of its controller listener.
    pub host: String,
    /// Port of its controller listener.
    pub port: u16,
}

/// The validated broker configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `node.id`.
    pub node_id: i32,
    /// `process.roles`.
    pub process_roles: Vec<Role>,
    /// `listeners`.
    pub listeners: Vec<Listener>,
    /// `advertised.listeners` (defaults to `listeners` minus the controller listeners).
    pub advertised_listeners: Vec<Listener>,
    /// `controller.listener.names`.
    pub controller_listener_names: Vec<String>,
    /// `inter.broker.listener.name`.
    pub inter_broker_listener_name: String,
    /// `controller.quorum.voters`.
    pub controller_quorum_voters: Vec<Voter>,
    /// `log.dirs` (or `log.dir`).
    pub log_dirs: Vec<PathBuf>,
    /// `metadata.log.dir` (defaults to the first log dir).
    pub metadata_log_dir: PathBuf,
    /// `num.partitions` for auto-created topics and CreateTopics with -1.
    pub num_partitions: i32,
    /// `default.replication.factor`.
    pub default_replication_factor: i16,
    /// `min.insync.replicas`.
    pub min_insync_replicas: i32,
    /// `auto.create.topics.enable`.
    pub auto_create_topics_enable: bool,
    /// `delete.topic.enable`.
    pub delete_topic_enable: bool,
    /// Broker-wide log defaults (`log.segment.bytes`, `log.retention.*`, ...).
    pub log: LogConfig,
    /// `log.retention.check.interval.ms`.
    pub log_retention_check_interval_ms: u64,
    /// `log.flush.interval.messages`: fsync after this many messages; `None` leaves it to the OS.
    pub log_flush_interval_messages: Option<u64>,
    /// `log.flush.interval.ms`: fsync dirty logs at least this often; `None` leaves it to the OS.
    pub log_flush_interval_ms: Option<u64>,
    /// `offsets.topic.num.partitions`.
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.replication.factor`.
    pub offsets_topic_replication_factor: i16,
    /// `offsets.topic.segment.bytes`: segment size of `__consumer_offsets`.
    pub offsets_topic_segment_bytes: u64,
    /// `offsets.retention.minutes`, in ms.
    pub offsets_retention_ms: i64,
    /// `group.consumer.session.timeout.ms`: a consumer-protocol member not heard from for
    /// this long leaves its group.
    pub group_consumer_session_timeout_ms: u64,
    /// `group.consumer.heartbeat.interval.ms`: how often consumer-protocol members heartbeat.
    pub group_consumer_heartbeat_interval_ms: i32,
    /// The `group.share.*` defaults of share groups (KIP-932).
    pub share: ShareGroupDefaults,
    /// `transaction.state.log.num.partitions`.
    pub transaction_state_num_partitions: i32,
    /// `transaction.state.log.replication.factor`.
    pub transaction_state_replication_factor: i16,
    /// `transaction.state.log.min.isr`.
    pub transaction_state_min_isr: i32,
    /// `transaction.state.log.segment.bytes`.
    pub transaction_state_segment_bytes: u64,
    /// `transaction.max.timeout.ms`: the longest `transaction.timeout.ms` a producer may ask.
    pub transaction_max_timeout_ms: i32,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
    pub transaction_abort_check_interval_ms: u64,
    /// `socket.request.max.bytes`: frames larger than this close the connection.
    pub socket_request_max_bytes: usize,
    /// `message.max.bytes`: the largest record batch accepted (topic `max.message.bytes`).
    pub message_max_bytes: u32,
    /// `group.initial.rebalance.delay.ms`.
    pub group_initial_rebalance_delay_ms: u64,
    /// `group.min.session.timeout.ms`.
    pub group_min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub group_max_session_timeout_ms: i32,
    /// `max.connections`: further connections are closed at accept.
    pub max_connections: usize,
    /// `quota.window.num`: how many windows client quota rates are measured over.
    pub quota_window_num: usize,
    /// `controller.quota.window.num`: with the window size, how many seconds of a client's
    /// `controller_mutation_rate` it may spend at once (Kafka's token bucket burst).
    pub controller_quota_window_num: usize,
    /// `controller.quota.window.size.seconds`.
    pub controller_quota_window_size_seconds: u64,
    /// `quota.window.size.seconds`: each quota window's length.
    pub quota_window_size_seconds: u64,
    /// `ssl.reload.interval.ms` (a Gregor key): how often SSL listeners look for changed key
    /// and trust store files; 0 turns reloading off.
    pub ssl_reload_interval_ms: u64,
    /// `broker.rack`.
    pub broker_rack: Option<String>,
    /// Replication and controller timing.
    pub replication: ReplicationConfig,
    /// `metrics.listener`: `HOST:PORT` of the Prometheus endpoint, if any.
    pub metrics_listener: Option<String>,
    /// How many topics, partitions and groups get series of their own (Gregor keys).
    pub metrics_limits: crate::metrics::Limits,
    /// `metadata.replication.listener` (a Gregor key): `(host, port)` where a broker-only node
    /// receives the metadata log from the active controller. Unset, it binds the inter-broker
    /// listener's host on a free port and tells the controllers that address on every start.
    pub metadata_replication_listener: Option<(String, u16)>,
    /// The listeners whose security protocol is SSL, with their `ssl.*` settings; every other
    /// listener is PLAINTEXT.
    pub ssl_listeners: BTreeMap<String, ssl::SslConfig>,
    /// The listeners whose security protocol is SASL_PLAINTEXT or SASL_SSL, with their SASL
    /// settings; their clients authenticate before any other request.
    pub sasl_listeners: BTreeMap<String, sasl::SaslConfig>,
    /// The controller listener's security (both sides), when there is a controller listener.
    pub controller_listener: Option<peer::ControllerListener>,
    /// How this broker connects to the other brokers' inter-broker listener (replication).
    pub inter_broker_client: peer::ClientProps,
    /// `authorizer.class.name` and its keys: `None` when requests are not authorized.
    pub authorizer: Option<AuthorizerConfig>,
    /// Every key as given (after overrides), for DescribeConfigs.
    pub raw: BTreeMap<String, String>,
}

/// Keys Gregor reads (or accepts as meaningful defaults), with [`replication::KEYS`]. Anything
/// else is logged and ignored.
const KNOWN_KEYS: &[&str] = &[
    "node.id",
    "broker.id",
    "process.roles",
    "listeners",
    "advertised.listeners",
    "controller.listener.names",
    "listener.security.protocol.map",
    "security.inter.broker.protocol",
    "inter.broker.listener.name",
    "controller.quorum.voters",
    "controller.quorum.bootstrap.servers",
    "log.dirs",
    "log.dir",
    "metadata.log.dir",
    "num.partitions",
    "default.replication.factor",
    "min.insync.replicas",
    "auto.create.topics.enable",
    "delete.topic.enable",
    "log.segment.bytes",
    "log.roll.ms",
    "log.roll.hours",
    "log.retention.ms",
    "log.retention.minutes",
    "log.retention.hours",
    "log.retention.bytes",
    "log.retention.check.interval.ms",
    "log.cleanup.policy",
    "log.cleaner.delete.retention.ms",
    "log.index.interval.bytes",
    "log.flush.interval.messages",
    "log.flush.interval.ms",
    "offsets.topic.num.partitions",
    "offsets.topic.replication.factor",
    "offsets.topic.segment.bytes",
    "offsets.retention.minutes",
    "socket.request.max.bytes",
    "message.max.bytes",
    "group.initial.rebalance.delay.ms",
    "group.min.session.timeout.ms",
    "group.max.session.timeout.ms",
    "max.connections",
    "quota.window.num",
    "quota.window.size.seconds",
    "controller.quota.window.num",
    "controller.quota.window.size.seconds",
    "broker.rack",
    "metrics.listener",
    "metrics.topic.labels.max",
    "metrics.partition.labels.max",
    "metrics.group.labels.max",
    "metadata.replication.listener",
    "num.network.threads",
    "num.io.threads",
    "socket.send.buffer.bytes",
    "socket.receive.buffer.bytes",
    "num.recovery.threads.per.data.dir",
    "transaction.state.log.num.partitions",
    "group.consumer.session.timeout.ms",
    "group.consumer.heartbeat.interval.ms",
    "group.share.record.lock.duration.ms",
    "group.share.min.record.lock.duration.ms",
    "group.share.max.record.lock.duration.ms",
    "group.share.delivery.count.limit",
    "group.share.partition.max.record.locks",
    "group.share.heartbeat.interval.ms",
    "group.share.session.timeout.ms",
    "share.coordinator.state.topic.num.partitions",
    "share.coordinator.state.topic.replication.factor",
    "share.coordinator.state.topic.min.isr",
    "share.coordinator.state.topic.segment.bytes",
    "transaction.state.log.replication.factor",
    "transaction.state.log.min.isr",
    "transaction.state.log.segment.bytes",
    "transaction.max.timeout.ms",
    "transaction.abort.timed.out.transaction.cleanup.interval.ms",
    "share.coordinator.state.topic.replication.factor",
    "share.coordinator.state.topic.min.isr",
];

/// Applies `--override key=value` arguments on top of `props`.
pub fn apply_overrides(
    props: &mut BTreeMap<String, String>,
    overrides: &[String],
) -> Result<(), ConfigError> {
    for o in overrides {
        let (k, v) = o
            .split_once('=')
            .ok_or_else(|| ConfigError::BadOverride(o.clone()))?;
        if k.trim().is_empty() {
            return Err(ConfigError::BadOverride(o.clone()));
        }
        props.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(())
}

/// Reads a properties file.
pub fn read_properties(path: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(parse_properties(&text))
}

/// The default data directory of `gregor dev`: `$XDG_DATA_HOME/gregor/dev` (or the platform
/// equivalent), falling back to the temp dir.
pub fn default_dev_data_dir() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("gregor")
        .join("dev")
}

/// The log filter from `RUST_LOG`, defaulting to `info`.
pub fn log_filter() -> String {
    std::env::var("RUST_LOG").unwrap_or_else(|_| "info,openraft=warn".to_string())
}

struct Props<'a> {
    map: &'a BTreeMap<String, String>,
}

impl Props<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(|s| s.trim())
    }

    fn invalid(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
        let value = if ssl::is_sensitive_key(key) {
            "[hidden]"
        } else {
            value
        };
        ConfigError::Invalid {
            key: key.to_string(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    fn num<T: std::str::FromStr + PartialOrd + Copy + std::fmt::Display>(
        &self,
        key: &str,
        default: T,
        min: T,
    ) -> Result<T, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => {
                let n: T = v
                    .parse()
                    .map_err(|_| Self::invalid(key, v, "not a number"))?;
                if n < min {
                    return Err(Self::invalid(key, v, format!("must be at least {min}")));
                }
                Ok(n)
            }
        }
    }

    fn opt_num(&self, key: &str) -> Result<Option<i64>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .map(Some)
                .map_err(|_| Self::invalid(key, v, "not a number")),
        }
    }

    fn bool(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(Self::invalid(key, v, "expected true or false")),
            },
        }
    }

    fn list(&self, key: &str) -> Vec<String> {
        self.get(key)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Parses `NAME://host:port` (IPv6 hosts in brackets).
pub fn parse_listener(key: &str, s: &str) -> Result<Listener, ConfigError> {
    let bad = |reason: &str| Props::invalid(key, s, reason);
    let (name, rest) = s
        .split_once("://")
        .ok_or_else(|| bad("expected NAME://host:port"))?;
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| bad("expected NAME://host:port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().map_err(|_| bad("port is not a number"))?;
    if name.is_empty() {
        return Err(bad("listener name is empty"));
    }
    Ok(Listener {
        name: name.to_ascii_uppercase(),
        host: host.to_string(),
        port,
    })
}

fn parse_voter(key: &str, s: &str) -> Result<Voter, ConfigError> {
    let bad = |reason: &str| Props::invalid(key, s, reason);
    let (id, addr) = s
        .split_once('@')
        .ok_or_else(|| bad("expected id@host:port"))?;
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| bad("expected id@host:port"))?;
    Ok(Voter {
        id: id.parse().map_err(|_| bad("voter id is not a number"))?,
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port: port.parse().map_err(|_| bad("port is not a number"))?,
    })
}

/// Parses `HOST:PORT` (an IPv6 host in brackets).
fn parse_host_port(key: &str, s: &str) -> Result<(String, u16), ConfigError> {
    let bad = |reason: &str| Props::invalid(key, s, reason);
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| bad("expected host:port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = port.parse().map_err(|_| bad("port is not a number"))?;
    Ok((host.to_string(), port))
}

/// `inter.broker.listener.name`, or the listener `security.inter.broker.protocol` names (as in
/// Kafka, the two may not both be set); PLAINTEXT when neither is.
fn parse_inter_broker_listener_name(p: &Props) -> Result<String, ConfigError> {
    const NAME: &str = "inter.broker.listener.name";
    const PROTOCOL: &str = "security.inter.broker.protocol";
    match (p.get(NAME), p.get(PROTOCOL)) {
        (Some(_), Some(v)) => Err(Props::invalid(
            PROTOCOL,
            v,
            format!("{NAME} and {PROTOCOL} may not both be set (as in Kafka): keep {NAME}"),
        )),
        (Some(name), None) | (None, Some(name)) => Ok(name.to_ascii_uppercase()),
        (None, None) => Ok("PLAINTEXT".into()),
    }
}

/// Warns about each key Gregor neither reads nor passes through (config providers, `ssl.*`).
fn warn_unknown_keys(map: &BTreeMap<String, String>) {
    for key in map.keys() {
        let known = KNOWN_KEYS.contains(&key.as_str())
            || replication::KEYS.contains(&key.as_str())
            || authorizer::KEYS.contains(&key.as_str())
            || sasl::KEYS.contains(&key.as_str())
            || peer::KEYS.contains(&key.as_str())
            || key.starts_with(providers::PROVIDERS_KEY);
        let listener_ssl = key
            .strip_prefix("listener.name.")
            .and_then(|rest| rest.split_once('.'))
            .is_some_and(|(_, k)| k.starts_with("ssl.") || sasl::is_listener_key(k));
        if !known && !key.starts_with("ssl.") && !listener_ssl {
            tracing::warn!(key = %key, "ignoring config key Gregor does not support");
        }
    }
}

/// `node.id`, or the older `broker.id` when `node.id` is absent; one of them is required.
fn parse_node_id(p: &Props) -> Result<i32, ConfigError> {
    let node_id_key = if p.get("node.id").is_some() {
        "node.id"
    } else {
        "broker.id"
    };
    match p.get(node_id_key) {
        Some(_) => p.num(node_id_key, 0, 0),
        None => Err(ConfigError::Missing("node.id".into())),
    }
}

/// `process.roles`; both roles (a combined node) when unset.
fn parse_process_roles(p: &Props) -> Result<Vec<Role>, ConfigError> {
    let mut process_roles = Vec::new();
    for r in p.list("process.roles") {
        process_roles.push(match r.as_str() {
            "broker" => Role::Broker,
            "controller" => Role::Controller,
            _ => {
                return Err(Props::invalid(
                    "process.roles",
                    &r,
                    "expected broker and/or controller",
                ))
            }
        });
    }
    if process_roles.is_empty() {
        process_roles = vec![Role::Broker, Role::Controller];
    }
    Ok(process_roles)
}

/// `listeners`; `PLAINTEXT://:9092` when unset.
fn parse_listeners(p: &Props) -> Result<Vec<Listener>, ConfigError> {
    let mut listeners = Vec::new();
    for l in p.list("listeners") {
        listeners.push(parse_listener("listeners", &l)?);
    }
    if listeners.is_empty() {
        listeners.push(Listener {
            name: "PLAINTEXT".into(),
            host: String::new(),
            port: 9092,
        });
    }
    Ok(listeners)
}

/// `advertised.listeners`; when unset, the listeners but the controller ones.
fn parse_advertised_listeners(
    p: &Props,
    listeners: &[Listener],
    controller_listener_names: &[String],
) -> Result<Vec<Listener>, ConfigError> {
    let mut advertised_listeners = Vec::new();
    for l in p.list("advertised.listeners") {
        advertised_listeners.push(parse_listener("advertised.listeners", &l)?);
    }
    if advertised_listeners.is_empty() {
        advertised_listeners = listeners
            .iter()
            .filter(|l| !controller_listener_names.contains(&l.name))
            .cloned()
            .collect();
    }
    Ok(advertised_listeners)
}

/// `log.dirs`, else `log.dir`, else one directory under the system's temporary directory.
fn parse_log_dirs(p: &Props) -> Vec<PathBuf> {
    let mut log_dirs: Vec<PathBuf> = p.list("log.dirs").into_iter().map(PathBuf::from).collect();
    if log_dirs.is_empty() {
        log_dirs = p.list("log.dir").into_iter().map(PathBuf::from).collect();
    }
    if log_dirs.is_empty() {
        log_dirs.push(std::env::temp_dir().join("kraft-combined-logs"));
    }
    log_dirs
}

/// The broker-wide defaults of every topic's log: the `log.*` keys and `message.max.bytes`.
fn parse_log_config(p: &Props) -> Result<LogConfig, ConfigError> {
    let defaults = LogConfig::default();
    let retention_ms = match (
        p.opt_num("log.retention.ms")?,
        p.opt_num("log.retention.minutes")?,
        p.opt_num("log.retention.hours")?,
    ) {
        (Some(ms), _, _) => ms,
        (None, Some(m), _) => m.saturating_mul(60_000),
        (None, None, Some(h)) => hours_to_ms(h),
        (None, None, None) => hours_to_ms(168),
    };
    let segment_ms = match (p.opt_num("log.roll.ms")?, p.opt_num("log.roll.hours")?) {
        (Some(ms), _) => ms,
        (None, Some(h)) => hours_to_ms(h),
        (None, None) => defaults.segment_ms,
    };
    if segment_ms <= 0 {
        return Err(Props::invalid(
            "log.roll.ms",
            &segment_ms.to_string(),
            "must be positive",
        ));
    }
    let retention_bytes = p.num::<i64>("log.retention.bytes", -1, -1)?;
    let message_max_bytes = p.num::<u32>("message.max.bytes", 1_048_588, 0)?;
    let cleanup_policy = match p.get("log.cleanup.policy") {
        None => CleanupPolicy::Delete,
        Some(v) => parse_cleanup_policy(v).ok_or_else(|| {
            Props::invalid(
                "log.cleanup.policy",
                v,
                "expected delete, compact, both, or nothing (no cleanup)",
            )
        })?,
    };
    Ok(LogConfig {
        segment_bytes: p.num::<u64>("log.segment.bytes", defaults.segment_bytes, 14)?,
        segment_ms,
        retention_ms: (retention_ms >= 0).then_some(retention_ms),
        retention_bytes: (retention_bytes >= 0).then_some(retention_bytes as u64),
        index_interval_bytes: p.num::<u32>("log.index.interval.bytes", 4096, 0)?,
        cleanup_policy,
        delete_retention_ms: p.num::<i64>(
            "log.cleaner.delete.retention.ms",
            defaults.delete_retention_ms,
            0,
        )?,
        max_message_bytes: message_max_bytes,
    })
}

fn hours_to_ms(h: i64) -> i64 {
    h.saturating_mul(3_600_000)
}

impl Config {
    /// Validates a property map into a [`Config`] (after resolving config-provider variables),
    /// logging keys Gregor does not use.
    pub fn from_properties(map: BTreeMap<String, String>) -> Result<Config, ConfigError> {
        let map = providers::resolve(map, &|name| std::env::var(name).ok())?;
        Config::parse(map, true)
    }

    /// The config this broker runs with under dynamic configs: its static properties overlaid
    /// with the cluster-wide default and then with its own dynamic config, validated as a
    /// whole (an invalid dynamic value fails naming its key). `raw` holds the merged map.
    pub fn reconfigured(
        &self,
        cluster_default: &BTreeMap<String, String>,
        broker: &BTreeMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let merged = dynamic::overlay(dynamic::Layers {
            broker,
            cluster_default,
            static_config: &self.raw,
        });
        // The static keys were warned about at start-up.
        Config::parse(merged, false)
    }

    fn parse(map: BTreeMap<String, String>, warn_unknown: bool) -> Result<Config, ConfigError> {
        let p = Props { map: &map };
        if warn_unknown {
            warn_unknown_keys(&map);
        }
        let node_id = parse_node_id(&p)?;
        let process_roles = parse_process_roles(&p)?;
        let listeners = parse_listeners(&p)?;
        let controller_listener_names: Vec<String> = p
            .list("controller.listener.names")
            .into_iter()
            .map(|s| s.to_ascii_uppercase())
            .collect();
        let advertised_listeners =
            parse_advertised_listeners(&p, &listeners, &controller_listener_names)?;
        let inter_broker_listener_name = parse_inter_broker_listener_name(&p)?;
        let secured = ssl::listener_security(
            &p,
            &ssl::ListenerLayout {
                listeners: &listeners,
                advertised: &advertised_listeners,
                controller_listener_names: &controller_listener_names,
                inter_broker_listener_name: &inter_broker_listener_name,
                is_broker: process_roles.contains(&Role::Broker),
            },
        )?;
        let mut controller_quorum_voters = Vec::new();
        for v in p.list("controller.quorum.voters") {
            controller_quorum_voters.push(parse_voter("controller.quorum.voters", &v)?);
        }
        let log_dirs = parse_log_dirs(&p);
        let metadata_log_dir = p
            .get("metadata.log.dir")
            .map(PathBuf::from)
            .unwrap_or_else(|| log_dirs[0].clone());
        let log = parse_log_config(&p)?;
        let message_max_bytes = log.max_message_bytes;
        let flush_msgs = p.opt_num("log.flush.interval.messages")?;
        let flush_ms = p.opt_num("log.flush.interval.ms")?;
        let default_replication_factor = p.num::<i16>("default.replication.factor", 1, 1)?;
        let config = Config {
            node_id,
            process_roles,
            listeners,
            advertised_listeners,
            controller_listener_names,
            inter_broker_listener_name,
            controller_quorum_voters,
            log_dirs,
            metadata_log_dir,
            num_partitions: p.num("num.partitions", 1, 1)?,
            default_replication_factor,
            min_insync_replicas: p.num("min.insync.replicas", 1, 1)?,
            auto_create_topics_enable: p.bool("auto.create.topics.enable", true)?,
            delete_topic_enable: p.bool("delete.topic.enable", true)?,
            log,
            log_retention_check_interval_ms: p.num(
                "log.retention.check.interval.ms",
                300_000,
                1,
            )?,
            log_flush_interval_messages: flush_msgs
                .filter(|n| *n > 0 && *n < i64::MAX)
                .map(|n| n as u64),
            log_flush_interval_ms: flush_ms
                .filter(|n| *n > 0 && *n < i64::MAX)
                .map(|n| n as u64),
            offsets_topic_num_partitions: p.num("offsets.topic.num.partitions", 50, 1)?,
            offsets_topic_replication_factor: p.num("offsets.topic.replication.factor", 3, 1)?,
            offsets_topic_segment_bytes: p.num("offsets.topic.segment.bytes", 104_857_600, 14)?,
            offsets_retention_ms: p
                .num::<i64>("offsets.retention.minutes", 10_080, 1)?
                .saturating_mul(60_000),
            group_consumer_session_timeout_ms: p.num(
                "group.consumer.session.timeout.ms",
                45_000,
                1,
            )?,
            group_consumer_heartbeat_interval_ms: p.num(
                "group.consumer.heartbeat.interval.ms",
                5_000,
                1,
            )?,
            share: ShareGroupDefaults {
                record_lock_duration_ms: p.num("group.share.record.lock.duration.ms", 30_000, 1)?,
                min_record_lock_duration_ms: p.num(
                    "group.share.min.record.lock.duration.ms",
                    15_000,
                    1,
                )?,
                max_record_lock_duration_ms: p.num(
                    "group.share.max.record.lock.duration.ms",
                    60_000,
                    1,
                )?,
                delivery_count_limit: p.num("group.share.delivery.count.limit", 5, 2)?,
                partition_max_record_locks: p.num(
                    "group.share.partition.max.record.locks",
                    2_000,
                    100,
                )?,
                heartbeat_interval_ms: p.num("group.share.heartbeat.interval.ms", 5_000, 1)?,
                session_timeout_ms: p.num("group.share.session.timeout.ms", 45_000, 1)?,
                state_topic_partitions: p.num(
                    "share.coordinator.state.topic.num.partitions",
                    50,
                    1,
                )?,
                state_topic_replication_factor: p.num(
                    "share.coordinator.state.topic.replication.factor",
                    3,
                    1,
                )?,
                state_topic_min_isr: p.num("share.coordinator.state.topic.min.isr", 2, 1)?,
                state_topic_segment_bytes: p.num(
                    "share.coordinator.state.topic.segment.bytes",
                    104_857_600,
                    14,
                )?,
            },
            transaction_state_num_partitions: p.num(
                "transaction.state.log.num.partitions",
                50,
                1,
            )?,
            transaction_state_replication_factor: p.num(
                "transaction.state.log.replication.factor",
                3,
                1,
            )?,
            transaction_state_min_isr: p.num("transaction.state.log.min.isr", 2, 1)?,
            transaction_state_segment_bytes: p.num(
                "transaction.state.log.segment.bytes",
                104_857_600,
                14,
            )?,
            transaction_max_timeout_ms: p.num("transaction.max.timeout.ms", 900_000, 1)?,
            transaction_abort_check_interval_ms: p.num(
                "transaction.abort.timed.out.transaction.cleanup.interval.ms",
                10_000,
                1,
            )?,
            socket_request_max_bytes: p.num("socket.request.max.bytes", 104_857_600, 1024)?,
            message_max_bytes,
            group_initial_rebalance_delay_ms: p.num("group.initial.rebalance.delay.ms", 3000, 0)?,
            group_min_session_timeout_ms: p.num("group.min.session.timeout.ms", 6000, 0)?,
            group_max_session_timeout_ms: p.num("group.max.session.timeout.ms", 1_800_000, 0)?,
            max_connections: p.num("max.connections", 10_000, 1)?,
            quota_window_num: p.num("quota.window.num", 11, 1)?,
            controller_quota_window_num: p.num("controller.quota.window.num", 11, 1)?,
            controller_quota_window_size_seconds: p.num(
                "controller.quota.window.size.seconds",
                1,
                1,
            )?,
            quota_window_size_seconds: p.num("quota.window.size.seconds", 1, 1)?,
            ssl_reload_interval_ms: p.num("ssl.reload.interval.ms", 10_000, 0)?,
            broker_rack: p.get("broker.rack").map(str::to_string),
            replication: ReplicationConfig::from_props(&p)?,
            metrics_listener: p.get("metrics.listener").map(str::to_string),
            metrics_limits: crate::metrics::Limits {
                topics: p.num("metrics.topic.labels.max", 200, 0)?,
                partitions: p.num("metrics.partition.labels.max", 2000, 0)?,
                groups: p.num("metrics.group.labels.max", 200, 0)?,
            },
            metadata_replication_listener: p
                .get("metadata.replication.listener")
                .map(|v| parse_host_port("metadata.replication.listener", v))
                .transpose()?,
            ssl_listeners: secured.ssl,
            sasl_listeners: secured.sasl,
            controller_listener: secured.controller,
            inter_broker_client: secured.inter_broker_client,
            authorizer: AuthorizerConfig::from_props(&p)?,
            raw: map.clone(),
        };
        check_roles(&config)?;
        Ok(config)
    }

    /// Whether this node serves clients and stores partitions (`process.roles` has `broker`).
    pub fn is_broker(&self) -> bool {
        self.process_roles.contains(&Role::Broker)
    }

    /// Whether this node votes in the controller quorum (`process.roles` has `controller`).
    pub fn is_controller(&self) -> bool {
        self.process_roles.contains(&Role::Controller)
    }

    /// The listeners clients connect to (all but the controller listeners).
    pub fn client_listeners(&self) -> impl Iterator<Item = &Listener> {
        self.listeners
            .iter()
            .filter(|l| !self.controller_listener_names.contains(&l.name))
    }

    /// The advertised address of the inter-broker (or first) listener, as (host, port).
    pub fn advertised_address(&self) -> (String, u16) {
        let l = self
            .advertised_listeners
            .iter()
            .find(|l| l.name == self.inter_broker_listener_name)
            .or_else(|| self.advertised_listeners.first());
        match l {
            Some(l) if !l.host.is_empty() => (l.host.clone(), l.port),
            Some(l) => ("localhost".to_string(), l.port),
            None => ("localhost".to_string(), 9092),
        }
    }
}

/// Refuses the role layouts Kafka refuses, in Kafka's words: a controller must be one of
/// `controller.quorum.voters` and listen only on its controller listener; a broker-only node must
/// not be a voter and must not listen on a controller listener. A combined node keeps today's one
/// rule (it is a voter when voters are configured), so `gregor dev` and single-node configs without
/// a controller listener still start.
fn check_roles(c: &Config) -> Result<(), ConfigError> {
    let voters: std::collections::BTreeSet<i32> =
        c.controller_quorum_voters.iter().map(|v| v.id).collect();
    let voter_list = || {
        let ids: Vec<String> = voters.iter().map(i32::to_string).collect();
        format!("controller.quorum.voters=[{}]", ids.join(", "))
    };
    let is_controller_listener = |l: &Listener| c.controller_listener_names.contains(&l.name);
    let fail = |m: String| Err(ConfigError::Roles(m));
    let not_a_voter = || {
        fail(format!(
            "If process.roles contains the 'controller' role, the node id {} must be included in \
             the set of voters {}",
            c.node_id,
            voter_list()
        ))
    };
    match (c.is_broker(), c.is_controller()) {
        (true, true) => {
            if !voters.is_empty() && !voters.contains(&c.node_id) {
                return not_a_voter();
            }
        }
        (true, false) => {
            if voters.is_empty() {
                return fail(
                    "If using process.roles, controller.quorum.voters must contain a parseable \
                     set of voters."
                        .into(),
                );
            }
            if voters.contains(&c.node_id) {
                return fail(format!(
                    "If process.roles contains just the 'broker' role, the node id {} must not \
                     be included in the set of voters {}",
                    c.node_id,
                    voter_list()
                ));
            }
            if c.controller_listener_names.is_empty() {
                return fail(
                    "controller.listener.names must contain at least one value when running \
                     KRaft with just the broker role"
                        .into(),
                );
            }
            if c.listeners.iter().any(is_controller_listener) {
                return fail(
                    "controller.listener.names must not contain a value appearing in the \
                     'listeners' configuration when running KRaft with just the broker role"
                        .into(),
                );
            }
            if c.advertised_listeners.iter().any(is_controller_listener) {
                return fail(
                    "advertised.listeners must not contain KRaft controller listeners from \
                     controller.listener.names when process.roles contains the broker role: \
                     clients only send requests to brokers"
                        .into(),
                );
            }
        }
        (false, _) => {
            if voters.is_empty() {
                return fail(
                    "If using process.roles, controller.quorum.voters must contain a parseable \
                     set of voters."
                        .into(),
                );
            }
            if !voters.contains(&c.node_id) {
                return not_a_voter();
            }
            if !c.listeners.iter().any(is_controller_listener) {
                return fail(
                    "controller.listener.names must contain at least one value appearing in the \
                     'listeners' configuration when running the KRaft controller role"
                        .into(),
                );
            }
            if let Some(missing) = c
                .controller_listener_names
                .iter()
                .find(|n| !c.listeners.iter().any(|l| l.name == **n))
            {
                return fail(format!(
                    "controller.listener.names must only contain values appearing in the \
                     'listeners' configuration when running the KRaft controller role, but did \
                     not contain {missing}"
                ));
            }
            if c.listeners.iter().any(|l| !is_controller_listener(l)) {
                return fail(
                    "The listeners config must only contain KRaft controller listeners from \
                     controller.listener.names when process.roles=controller"
                        .into(),
                );
            }
            if c.advertised_listeners
                .iter()
                .any(|l| !is_controller_listener(l))
            {
                return fail(
                    "The advertised.listeners config must only contain KRaft controller \
                     listeners from controller.listener.names when process.roles=controller"
                        .into(),
                );
            }
        }
    }
    Ok(())
}

/// Parses a `cleanup.policy` value.
pub fn parse_cleanup_policy(v: &str) -> Option<CleanupPolicy> {
    let mut parts: Vec<&str> = v
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    parts.sort_unstable();
    parts.dedup();
    match parts.as_slice() {
        ["delete"] => Some(CleanupPolicy::Delete),
        ["compact"] => Some(CleanupPolicy::Compact),
        ["compact", "delete"] => Some(CleanupPolicy::CompactDelete),
        // Kafka 4.x: an empty list applies no cleanup policy, retention is infinite.
        [] => Some(CleanupPolicy::Keep),
        _ => None,
    }
}

/// The broker's defaults for share groups (Kafka's `ShareGroupConfig`); a group's own configs
/// (`share.record.lock.duration.ms`, ...) override them within the min/max bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShareGroupDefaults {
    /// `group.share.record.lock.duration.ms`.
    pub record_lock_duration_ms: i32,
    /// `group.share.min.record.lock.duration.ms`.
    pub min_record_lock_duration_ms: i32,
    /// `group.share.max.record.lock.duration.ms`.
    pub max_record_lock_duration_ms: i32,
    /// `group.share.delivery.count.limit`.
    pub delivery_count_limit: i32,
    /// `group.share.partition.max.record.locks`.
    pub partition_max_record_locks: i32,
    /// `group.share.heartbeat.interval.ms`.
    pub heartbeat_interval_ms: i32,
    /// `group.share.session.timeout.ms`.
    pub session_timeout_ms: i32,
    /// `share.coordinator.state.topic.num.partitions`: partitions of `__share_group_state`.
    pub state_topic_partitions: i32,
    /// `share.coordinator.state.topic.replication.factor`.
    pub state_topic_replication_factor: i16,
    /// `share.coordinator.state.topic.min.isr`.
    pub state_topic_min_isr: i32,
    /// `share.coordinator.state.topic.segment.bytes`.
    pub state_topic_segment_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(s: &str) -> BTreeMap<String, String> {
        parse_properties(s)
    }

    #[test]
    fn kafka_quickstart_config_validates() {
        let m = props(
            "process.roles=broker,controller\nnode.id=1\n\
             controller.quorum.voters=1@localhost:9093\n\
             listeners=PLAINTEXT://:9092,CONTROLLER://:9093\n\
             inter.broker.listener.name=PLAINTEXT\n\
             advertised.listeners=PLAINTEXT://localhost:9092\n\
             controller.listener.names=CONTROLLER\n\
             listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n\
             log.dirs=/tmp/kraft-combined-logs\nnum.partitions=3\nlog.retention.hours=168\n\
             some.unknown.key=1\n",
        );
        let c = Config::from_properties(m).expect("valid");
        assert_eq!(c.node_id, 1);
        assert_eq!(c.client_listeners().count(), 1);
        assert_eq!(c.controller_quorum_voters[0].port, 9093);
        assert_eq!(c.num_partitions, 3);
        assert_eq!(c.log.retention_ms, Some(168 * 3_600_000));
        assert_eq!(c.advertised_address(), ("localhost".into(), 9092));
    }

    #[test]
    fn malformed_value_names_the_key() {
        let err = Config::from_properties(props("node.id=1\nnum.partitions=lots\n"))
            .expect_err("invalid");
        assert!(err.to_string().contains("num.partitions"), "{err}");
    }

    #[test]
    fn missing_node_id_is_an_error() {
        let err = Config::from_properties(props("num.partitions=1\n")).expect_err("invalid");
        assert!(err.to_string().contains("node.id"), "{err}");
    }

    #[test]
    fn overrides_replace_keys_and_reject_garbage() {
        let mut m = props("a=1\n");
        apply_overrides(&mut m, &["a=2".into(), "b=x=y".into()]).expect("ok");
        assert_eq!(m["a"], "2");
        assert_eq!(m["b"], "x=y");
        assert!(apply_overrides(&mut m, &["novalue".into()]).is_err());
    }

    /// A dedicated node's properties: `roles`, node 4 unless `extra` says otherwise, three voters.
    fn dedicated(roles: &str, listeners: &str, extra: &str) -> Result<Config, ConfigError> {
        Config::from_properties(props(&format!(
            "process.roles={roles}\nnode.id=4\n\
             controller.quorum.voters=1@c1:9093,2@c2:9093,3@c3:9093\n\
             controller.listener.names=CONTROLLER\nlisteners={listeners}\n{extra}"
        )))
    }

    #[test]
    fn a_broker_only_node_outside_the_voters_validates() {
        let c = dedicated("broker", "PLAINTEXT://:9092", "").expect("valid");
        assert!(c.is_broker() && !c.is_controller());
        assert_eq!(c.client_listeners().count(), 1);
        assert_eq!(c.metadata_replication_listener, None);
        let c = dedicated(
            "broker",
            "PLAINTEXT://:9092",
            "metadata.replication.listener=10.0.0.4:9094\n",
        )
        .expect("valid");
        assert_eq!(
            c.metadata_replication_listener,
            Some(("10.0.0.4".into(), 9094))
        );
    }

    #[test]
    fn a_broker_only_node_among_the_voters_is_refused_in_kafkas_words() {
        let err = dedicated("broker", "PLAINTEXT://:9092", "node.id=2\n").expect_err("a voter");
        assert_eq!(
            err.to_string(),
            "If process.roles contains just the 'broker' role, the node id 2 must not be \
             included in the set of voters controller.quorum.voters=[1, 2, 3]"
        );
    }

    #[test]
    fn a_broker_only_node_may_not_listen_on_a_controller_listener() {
        let err = dedicated("broker", "PLAINTEXT://:9092,CONTROLLER://:9093", "")
            .expect_err("controller listener");
        assert!(
            err.to_string()
                .contains("must not contain a value appearing in the 'listeners'"),
            "{err}"
        );
        let err = dedicated(
            "broker",
            "PLAINTEXT://:9092",
            "advertised.listeners=CONTROLLER://b4:9093\n",
        )
        .expect_err("advertised controller listener");
        assert!(
            err.to_string()
                .starts_with("advertised.listeners must not contain"),
            "{err}"
        );
    }

    #[test]
    fn a_broker_only_node_needs_voters_and_a_controller_listener_name() {
        let err = Config::from_properties(props(
            "process.roles=broker\nnode.id=4\ncontroller.listener.names=CONTROLLER\n",
        ))
        .expect_err("no voters");
        assert!(
            err.to_string()
                .contains("controller.quorum.voters must contain"),
            "{err}"
        );
        let err = Config::from_properties(props(
            "process.roles=broker\nnode.id=4\ncontroller.quorum.voters=1@c1:9093\n",
        ))
        .expect_err("no controller listener name");
        assert!(
            err.to_string()
                .starts_with("controller.listener.names must contain at least one value"),
            "{err}"
        );
    }

    #[test]
    fn a_controller_only_node_listens_only_on_its_controller_listener() {
        let c = dedicated("controller", "CONTROLLER://:9093", "node.id=1\n").expect("valid");
        assert!(c.is_controller() && !c.is_broker());
        assert_eq!(c.client_listeners().count(), 0);
        let err = dedicated(
            "controller",
            "PLAINTEXT://:9092,CONTROLLER://:9093",
            "node.id=1\n",
        )
        .expect_err("client listener");
        assert!(
            err.to_string()
                .starts_with("The listeners config must only contain KRaft controller listeners"),
            "{err}"
        );
        // Without `listeners` a node gets Kafka's default PLAINTEXT://:9092, no controller one.
        let err = Config::from_properties(props(
            "process.roles=controller\nnode.id=1\ncontroller.quorum.voters=1@c1:9093\n\
             controller.listener.names=CONTROLLER\n",
        ))
        .expect_err("no controller listener");
        assert!(
            err.to_string()
                .contains("at least one value appearing in the 'listeners'"),
            "{err}"
        );
        let err = dedicated(
            "controller",
            "CONTROLLER://:9093",
            "node.id=1\ncontroller.listener.names=CONTROLLER,OTHER\n",
        )
        .expect_err("a name without a listener");
        assert!(
            err.to_string().ends_with("but did not contain OTHER"),
            "{err}"
        );
        let err = dedicated(
            "controller",
            "CONTROLLER://:9093",
            "node.id=1\nadvertised.listeners=PLAINTEXT://c1:9092\n",
        )
        .expect_err("advertised client listener");
        assert!(
            err.to_string()
                .starts_with("The advertised.listeners config"),
            "{err}"
        );
    }

    #[test]
    fn a_controller_outside_the_voters_is_refused_in_kafkas_words() {
        let err = dedicated("controller", "CONTROLLER://:9093", "").expect_err("not a voter");
        assert_eq!(
            err.to_string(),
            "If process.roles contains the 'controller' role, the node id 4 must be included in \
             the set of voters controller.quorum.voters=[1, 2, 3]"
        );
        let err = dedicated(
            "broker,controller",
            "PLAINTEXT://:9092,CONTROLLER://:9093",
            "",
        )
        .expect_err("combined, not a voter");
        assert!(
            err.to_string().contains("node id 4 must be included"),
            "{err}"
        );
    }

    #[test]
    fn a_combined_node_without_voters_still_validates() {
        let c = Config::from_properties(props("node.id=1\n")).expect("valid");
        assert!(c.is_broker() && c.is_controller());
    }

    #[test]
    fn cleanup_policy_accepts_both_orders() {
        assert_eq!(
            parse_cleanup_policy("delete,compact"),
            Some(CleanupPolicy::CompactDelete)
        );
        assert_eq!(
            parse_cleanup_policy("compact"),
            Some(CleanupPolicy::Compact)
        );
        assert_eq!(parse_cleanup_policy("zap"), None);
        assert_eq!(parse_cleanup_policy(""), Some(CleanupPolicy::Keep));
        assert_eq!(parse_cleanup_policy(" , "), Some(CleanupPolicy::Keep));
    }
}
