//! `gregor topics`: Kafka's `kafka-topics.sh` — create, list, describe, alter (partition
//! count) and delete topics, with Kafka's flags, messages and `--describe` layout.

use std::collections::BTreeMap;

use gregor_client::names::{topic_id_string, validate_topic_name};
use gregor_client::requests::{self, Layout, RESOURCE_TOPIC, SOURCE_DEFAULT};
use gregor_client::Cluster;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::{CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest};

use super::{parse_key_values, ToolError};

/// Command-line arguments, Kafka's flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Broker(s) to bootstrap from: host:port, comma-separated for several.
    #[arg(long = "bootstrap-server")]
    pub bootstrap_server: String,
    /// A Kafka client properties file: security.protocol, sasl.mechanism, sasl.jaas.config,
    /// ssl.truststore.*, ssl.keystore.* (Kafka's `--command-config`).
    #[arg(long = "command-config", value_name = "FILE")]
    pub command_config: Option<std::path::PathBuf>,
    /// Create a new topic.
    #[arg(long)]
    pub create: bool,
    /// List all available topics.
    #[arg(long)]
    pub list: bool,
    /// List details for the given topics (all when --topic is absent).
    #[arg(long)]
    pub describe: bool,
    /// Delete a topic.
    #[arg(long)]
    pub delete: bool,
    /// Alter the number of partitions of a topic.
    #[arg(long)]
    pub alter: bool,
    /// The topic to create, alter, describe or delete.
    #[arg(long)]
    pub topic: Option<String>,
    /// The number of partitions for the topic being created or altered. Negative values are
    /// passed to the broker, which refuses them with INVALID_PARTITIONS.
    #[arg(long, allow_negative_numbers = true)]
    pub partitions: Option<i32>,
    /// The replication factor for each partition in the topic being created.
    #[arg(long = "replication-factor", allow_negative_numbers = true)]
    pub replication_factor: Option<i16>,
    /// A topic configuration override for the topic being created (key=value, repeatable).
    #[arg(long = "config")]
    pub config: Vec<String>,
    /// With --create: only create the topic if it does not already exist.
    #[arg(long = "if-not-exists")]
    pub if_not_exists: bool,
    /// With --alter, --describe or --delete: only act if the topic exists.
    #[arg(long = "if-exists")]
    pub if_exists: bool,
    /// With --list or --describe: leave out internal topics.
    #[arg(long = "exclude-internal")]
    pub exclude_internal: bool,
}

/// The action picked by the flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Create,
    List,
    Describe,
    Delete,
    Alter,
}

impl Args {
    /// Checks the flag combination the way `kafka-topics.sh` does and returns the action.
    fn action(&self) -> Result<Action, ToolError> {
        let chosen: Vec<Action> = [
            (self.create, Action::Create),
            (self.list, Action::List),
            (self.describe, Action::Describe),
            (self.delete, Action::Delete),
            (self.alter, Action::Alter),
        ]
        .into_iter()
        .filter_map(|(on, a)| on.then_some(a))
        .collect();
        let [action] = chosen[..] else {
            return Err(ToolError::Usage(
                "Command must include exactly one action: --list, --describe, --create, --alter \
                 or --delete"
                    .into(),
            ));
        };
        let needs_topic = matches!(action, Action::Create | Action::Delete | Action::Alter);
        if needs_topic && self.topic.is_none() {
            return Err(ToolError::Usage(
                "Missing required argument \"[topic]\"".into(),
            ));
        }
        if action == Action::Alter && self.partitions.is_none() {
            return Err(ToolError::Usage(
                "Missing required argument \"[partitions]\" (--alter only changes the \
                 partition count; use kafka-configs for configs)"
                    .into(),
            ));
        }
        if !self.config.is_empty() && action != Action::Create {
            return Err(ToolError::Usage(
                "Option \"[config]\" can only be used with option \"[create]\"".into(),
            ));
        }
        if self.replication_factor.is_some() && action != Action::Create {
            return Err(ToolError::Usage(
                "Option \"[replication-factor]\" can only be used with option \"[create]\"".into(),
            ));
        }
        if self.if_not_exists && action != Action::Create {
            return Err(ToolError::Usage(
                "Option \"[if-not-exists]\" can only be used with option \"[create]\"".into(),
            ));
        }
        if self.if_exists && !matches!(action, Action::Alter | Action::Describe | Action::Delete) {
            return Err(ToolError::Usage(
                "Option \"[if-exists]\" can only be used with options \"[alter]\", \
                 \"[describe]\" or \"[delete]\""
                    .into(),
            ));
        }
        if let Some(p) = self.partitions {
            if p < 1 {
                return Err(ToolError::Usage(
                    "The partitions must be greater than 0".into(),
                ));
            }
        }
        if let Some(r) = self.replication_factor {
            if r < 1 {
                return Err(ToolError::Usage(
                    "The replication factor must be greater than 0".into(),
                ));
            }
        }
        if let Some(t) = &self.topic {
            if action == Action::Create {
                validate_topic_name(t)?;
            }
        }
        Ok(action)
    }
}

/// Runs the tool.
pub async fn run(args: Args) -> Result<(), super::ToolError> {
    let action = args.action()?;
    let configs = parse_key_values("--config", &args.config)?;
    let mut cluster =
        super::connect(&args.bootstrap_server, args.command_config.as_deref()).await?;
    match action {
        Action::Create => create(&mut cluster, &args, &configs).await,
        Action::List => {
            for name in list(&mut cluster, &args).await? {
                println!("{name}");
            }
            Ok(())
        }
        Action::Describe => describe(&mut cluster, &args).await,
        Action::Delete => delete(&mut cluster, &args).await,
        Action::Alter => alter(&mut cluster, &args).await,
    }
}

async fn create(
    cluster: &mut Cluster,
    args: &Args,
    configs: &[(String, String)],
) -> Result<(), ToolError> {
    let name = args.topic.clone().unwrap_or_default();
    let client = cluster.any();
    let version = client.version::<CreateTopicsRequest>(None)?;
    // Broker defaults (-1) exist from CreateTopics v4 on; before that both are required.
    if version < 4 && (args.partitions.is_none() || args.replication_factor.is_none()) {
        return Err(ToolError::Usage(
            "Missing required argument \"[partitions]\" or \"[replication-factor]\": the broker \
             does not support broker-side defaults"
                .into(),
        ));
    }
    let layout = Layout::Counts {
        partitions: args.partitions.unwrap_or(-1),
        replication_factor: args.replication_factor.unwrap_or(-1),
    };
    let req = requests::create_topic(&name, layout, configs.iter().map(|(k, v)| (k, v)));
    let resp = client.send_at(req, version).await?;
    for t in resp.topics {
        if t.error_code == ResponseError::TopicAlreadyExists.code() {
            if args.if_not_exists {
                return Ok(());
            }
            return Err(ToolError::Failed(format!("Topic '{name}' already exists.")));
        }
        ToolError::check(t.error_code, t.error_message.as_ref(), || {
            format!("creating topic '{name}'")
        })?;
    }
    println!("Created topic {name}.");
    Ok(())
}

/// Topic names, sorted, optionally without internal topics and filtered by --topic.
async fn list(cluster: &mut Cluster, args: &Args) -> Result<Vec<String>, ToolError> {
    let meta = cluster.metadata(None).await?;
    let mut names: Vec<String> = meta
        .topics
        .iter()
        .filter(|t| !(args.exclude_internal && t.is_internal))
        .filter_map(|t| t.name.as_ref().map(|n| n.as_str().to_owned()))
        .filter(|n| args.topic.as_ref().is_none_or(|want| want == n))
        .collect();
    names.sort();
    Ok(names)
}

async fn describe(cluster: &mut Cluster, args: &Args) -> Result<(), ToolError> {
    let wanted: Option<Vec<String>> = args.topic.clone().map(|t| vec![t]);
    let meta = cluster.metadata(wanted.as_deref()).await?;
    let mut topics: Vec<MetadataResponseTopic> = Vec::new();
    for t in meta.topics {
        let name = t
            .name
            .as_ref()
            .map(|n| n.as_str().to_owned())
            .unwrap_or_default();
        if t.error_code == ResponseError::UnknownTopicOrPartition.code() {
            if args.if_exists {
                continue;
            }
            return Err(ToolError::Failed(format!(
                "Topic '{name}' does not exist as expected"
            )));
        }
        ToolError::check(t.error_code, None, || format!("describing topic '{name}'"))?;
        if args.exclude_internal && t.is_internal {
            continue;
        }
        topics.push(t);
    }
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    let names: Vec<String> = topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.as_str().to_owned()))
        .collect();
    let overrides = topic_overrides(cluster, &names).await?;
    for t in &topics {
        let name = t.name.as_ref().map(|n| n.as_str()).unwrap_or_default();
        let configs = overrides.get(name).map(Vec::as_slice).unwrap_or_default();
        print!("{}", format_description(t, configs));
    }
    Ok(())
}

/// Configs not at their built-in default (what Kafka's describe shows), by topic.
async fn topic_overrides(
    cluster: &mut Cluster,
    names: &[String],
) -> Result<BTreeMap<String, Vec<(String, String)>>, ToolError> {
    let mut out = BTreeMap::new();
    if names.is_empty() {
        return Ok(out);
    }
    let client = cluster.any();
    // A broker without DescribeConfigs still gets a describe, without configs.
    let Ok(version) = client.version::<DescribeConfigsRequest>(None) else {
        return Ok(out);
    };
    let req = requests::describe_configs(RESOURCE_TOPIC, names.iter().map(String::as_str));
    let resp = client.send_at(req, version).await?;
    for r in resp.results {
        ToolError::check(r.error_code, r.error_message.as_ref(), || {
            format!(
                "describing the configs of topic '{}'",
                r.resource_name.as_str()
            )
        })?;
        let mut configs: Vec<(String, String)> = r
            .configs
            .iter()
            .filter(|c| c.config_source != SOURCE_DEFAULT)
            .map(|c| {
                let value = if c.is_sensitive {
                    "<sensitive>".to_owned()
                } else {
                    c.value
                        .as_ref()
                        .map(|v| v.as_str().to_owned())
                        .unwrap_or_default()
                };
                (c.name.as_str().to_owned(), value)
            })
            .collect();
        configs.sort();
        out.insert(r.resource_name.as_str().to_owned(), configs);
    }
    Ok(out)
}

/// Kafka's `--describe` text for one topic: a summary line, then a line per partition.
pub fn format_description(t: &MetadataResponseTopic, configs: &[(String, String)]) -> String {
    let name = t.name.as_ref().map(|n| n.as_str()).unwrap_or_default();
    let replication = t.partitions.first().map_or(0, |p| p.replica_nodes.len());
    let configs = configs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut out = format!(
        "Topic: {name}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {replication}\t\
         Configs: {configs}\n",
        topic_id_string(&t.topic_id),
        t.partitions.len(),
    );
    let mut partitions: Vec<_> = t.partitions.iter().collect();
    partitions.sort_by_key(|p| p.partition_index);
    let ids = |nodes: &[kafka_protocol::messages::BrokerId]| {
        nodes
            .iter()
            .map(|n| n.0.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    for p in partitions {
        let leader = if p.leader_id.0 < 0 {
            "none".to_owned()
        } else {
            p.leader_id.0.to_string()
        };
        out.push_str(&format!(
            "\tTopic: {name}\tPartition: {}\tLeader: {leader}\tReplicas: {}\tIsr: {}",
            p.partition_index,
            ids(&p.replica_nodes),
            ids(&p.isr_nodes),
        ));
        if !p.offline_replicas.is_empty() {
            out.push_str(&format!("\tOffline: {}", ids(&p.offline_replicas)));
        }
        out.push('\n');
    }
    out
}

async fn delete(cluster: &mut Cluster, args: &Args) -> Result<(), ToolError> {
    let name = args.topic.clone().unwrap_or_default();
    let client = cluster.any();
    let version = client.version::<DeleteTopicsRequest>(None)?;
    let resp = client
        .send_at(requests::delete_topic(&name, version), version)
        .await?;
    for r in resp.responses {
        if r.error_code == ResponseError::UnknownTopicOrPartition.code() {
            if args.if_exists {
                return Ok(());
            }
            return Err(ToolError::Failed(format!(
                "Topic '{name}' does not exist as expected"
            )));
        }
        ToolError::check(r.error_code, r.error_message.as_ref(), || {
            format!("deleting topic '{name}'")
        })?;
    }
    Ok(())
}

async fn alter(cluster: &mut Cluster, args: &Args) -> Result<(), ToolError> {
    let name = args.topic.clone().unwrap_or_default();
    let count = args.partitions.unwrap_or_default();
    let req = requests::create_partitions(&name, count, None);
    let resp = cluster.any().send(req).await?;
    for r in resp.results {
        if r.error_code == ResponseError::UnknownTopicOrPartition.code() {
            if args.if_exists {
                return Ok(());
            }
            return Err(ToolError::Failed(format!(
                "Topic '{name}' does not exist as expected"
            )));
        }
        ToolError::check(r.error_code, r.error_message.as_ref(), || {
            format!("altering the partition count of topic '{name}' to {count}")
        })?;
    }
    // Kafka 4's kafka-topics prints nothing on a successful alter.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use kafka_protocol::messages::metadata_response::MetadataResponsePartition;
    use kafka_protocol::messages::{BrokerId, TopicName};
    use kafka_protocol::protocol::StrBytes;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(argv: &[&str]) -> Args {
        let mut full = vec!["topics", "--bootstrap-server", "localhost:9092"];
        full.extend_from_slice(argv);
        Cli::try_parse_from(full).unwrap().args
    }

    #[test]
    fn create_flags_parse_like_kafka_topics() {
        let args = parse(&[
            "--create",
            "--topic",
            "t",
            "--partitions",
            "3",
            "--replication-factor",
            "1",
            "--config",
            "retention.ms=1000",
            "--config",
            "cleanup.policy=compact",
            "--if-not-exists",
        ]);
        assert_eq!(args.action().unwrap(), Action::Create);
        assert_eq!(args.partitions, Some(3));
        assert_eq!(args.config.len(), 2);
    }

    #[test]
    fn exactly_one_action_is_required() {
        let err = parse(&["--list", "--describe"]).action().unwrap_err();
        assert!(err.to_string().contains("exactly one action"), "{err}");
        assert!(parse(&[]).action().is_err());
    }

    #[test]
    fn create_without_topic_and_bad_counts_are_usage_errors() {
        assert!(parse(&["--create"]).action().is_err());
        let err = parse(&["--create", "--topic", "t", "--partitions", "0"])
            .action()
            .unwrap_err();
        assert_eq!(err.to_string(), "The partitions must be greater than 0");
        assert!(parse(&["--alter", "--topic", "t"]).action().is_err());
        assert!(parse(&["--list", "--if-not-exists"]).action().is_err());
        assert!(parse(&["--create", "--topic", "bad name"])
            .action()
            .is_err());
    }

    #[test]
    fn describe_output_matches_kafkas_layout() {
        let partition = |index: i32, leader: i32| {
            MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_id(BrokerId(leader))
                .with_replica_nodes(vec![BrokerId(1), BrokerId(2)])
                .with_isr_nodes(vec![BrokerId(1)])
        };
        let topic = MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("orders"))))
            .with_topic_id(uuid::Uuid::from_bytes([0; 16]))
            .with_partitions(vec![partition(1, -1), partition(0, 1)]);
        let text = format_description(&topic, &[("retention.ms".into(), "1000".into())]);
        assert_eq!(
            text,
            "Topic: orders\tTopicId: AAAAAAAAAAAAAAAAAAAAAA\tPartitionCount: 2\t\
             ReplicationFactor: 2\tConfigs: retention.ms=1000\n\
             \tTopic: orders\tPartition: 0\tLeader: 1\tReplicas: 1,2\tIsr: 1\n\
             \tTopic: orders\tPartition: 1\tLeader: none\tReplicas: 1,2\tIsr: 1\n"
        );
    }
}
