//! The `gregor` command: storage formatting, the broker itself, and Kafka-familiar tools.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use gregor::config::{self, Config};
use gregor::node::Node;
use gregor::storage;
use gregor::tools;

#[derive(Debug, Parser)]
#[command(
    name = "gregor",
    version,
    about = "A Kafka-compatible event-streaming broker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Cluster ids and log-directory formatting (like kafka-storage).
    Storage {
        #[command(subcommand)]
        command: StorageCommand,
    },
    /// Starts a node from a Kafka `server.properties` file (like kafka-server-start).
    ServerStart {
        /// The server.properties file.
        config: PathBuf,
        /// Overrides a config key: `--override key=value` (repeatable).
        #[arg(long = "override", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
    /// Runs one node with embedded defaults on localhost:9092, formatting its data dir.
    Dev {
        /// Data directory (default: the user's data dir, gregor/dev).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Overrides a config key: `--override key=value` (repeatable).
        #[arg(long = "override", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// A first SCRAM user, as `storage format --add-scram` takes it (repeatable).
        #[arg(long = "add-scram", value_name = "MECHANISM=[name=...,password=...]")]
        add_scram: Vec<String>,
    },
    /// Creates, lists, describes, alters and deletes topics (like kafka-topics).
    Topics(tools::topics::Args),
    /// Reads lines from stdin and produces them (like kafka-console-producer).
    ConsoleProducer(tools::console_producer::Args),
    /// Consumes records and prints them (like kafka-console-consumer).
    ConsoleConsumer(tools::console_consumer::Args),
    /// Lists, describes and deletes consumer groups (like kafka-consumer-groups).
    ConsumerGroups(tools::consumer_groups::Args),
    /// Describes the controller quorum (like kafka-metadata-quorum describe).
    MetadataQuorum(tools::metadata_quorum::Args),
}

#[derive(Debug, Subcommand)]
enum StorageCommand {
    /// Prints a new random cluster id.
    RandomUuid,
    /// Writes meta.properties into every log dir of a config.
    Format {
        /// Cluster id (from `gregor storage random-uuid`). Base64url ids may start with '-'
        /// (ids from elsewhere than random-uuid): taken as the value, not as a flag.
        #[arg(short = 't', long = "cluster-id", allow_hyphen_values = true)]
        cluster_id: String,
        /// The server.properties file.
        #[arg(short = 'c', long = "config")]
        config: PathBuf,
        /// Skip dirs already formatted for this cluster instead of failing.
        #[arg(short = 'g', long = "ignore-formatted")]
        ignore_formatted: bool,
        /// Accepted for compatibility with kafka-storage (single-node quorum).
        #[arg(short = 's', long = "standalone")]
        standalone: bool,
        /// Overrides a config key: `--override key=value` (repeatable).
        #[arg(long = "override", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// A SCRAM credential the cluster starts with, as kafka-storage takes it:
        /// `SCRAM-SHA-512=[name=admin,password=admin-secret]` (repeatable; also `salt`,
        /// `iterations`, `saltedpassword`). Applied once, by the first active controller.
        #[arg(
            short = 'S',
            long = "add-scram",
            value_name = "MECHANISM=[name=...,password=...]"
        )]
        add_scram: Vec<String>,
    },
}

/// Parses `--add-scram` arguments and writes them into the metadata log dir.
fn bootstrap_scram(c: &Config, args: &[String]) -> anyhow::Result<()> {
    if args.is_empty() {
        return Ok(());
    }
    let scram = args
        .iter()
        .map(|a| gregor::sasl::bootstrap::parse_add_scram(a).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()
        .context("--add-scram")?;
    storage::write_bootstrap(&c.metadata_log_dir, &scram)?;
    Ok(())
}

fn load_config(path: &std::path::Path, overrides: &[String]) -> anyhow::Result<Config> {
    let mut props = config::read_properties(path)?;
    config::apply_overrides(&mut props, overrides)?;
    Ok(Config::from_properties(props)?)
}

fn all_dirs(c: &Config) -> Vec<PathBuf> {
    let mut dirs = c.log_dirs.clone();
    if !dirs.contains(&c.metadata_log_dir) {
        dirs.push(c.metadata_log_dir.clone());
    }
    dirs
}

fn dev_config(
    data_dir: Option<PathBuf>,
    overrides: &[String],
    add_scram: &[String],
) -> anyhow::Result<Config> {
    let dir = data_dir.unwrap_or_else(config::default_dev_data_dir);
    let mut props = BTreeMap::new();
    for (k, v) in [
        ("node.id", "1"),
        ("process.roles", "broker,controller"),
        ("listeners", "PLAINTEXT://localhost:9092"),
        ("controller.quorum.voters", "1@localhost:9093"),
        ("num.partitions", "1"),
        ("offsets.topic.replication.factor", "1"),
        ("group.initial.rebalance.delay.ms", "0"),
        ("metrics.listener", "127.0.0.1:9095"),
    ] {
        props.insert(k.to_string(), v.to_string());
    }
    props.insert("log.dirs".into(), dir.display().to_string());
    config::apply_overrides(&mut props, overrides)?;
    let c = Config::from_properties(props)?;
    let dirs = all_dirs(&c);
    let existing = dirs
        .iter()
        .find_map(|d| storage::MetaProperties::read(d).ok().flatten());
    let id = existing
        .map(|m| m.cluster_id)
        .unwrap_or_else(storage::random_uuid);
    storage::format(&dirs, &id, c.node_id, true)?;
    bootstrap_scram(&c, add_scram)?;
    Ok(c)
}

async fn run_node(config: Config) -> anyhow::Result<()> {
    gregor::fd_limit::raise_and_log();
    let node = Node::start(config).await?;
    for a in &node.addrs {
        eprintln!("gregor listening on {a}");
    }
    if let Some(m) = node.metrics_addr {
        eprintln!("metrics on http://{m}/metrics");
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing SIGTERM handler")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt: draining"),
    }
    node.stop().await;
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Storage { command } => match command {
            StorageCommand::RandomUuid => println!("{}", storage::random_uuid()),
            StorageCommand::Format {
                cluster_id,
                config,
                ignore_formatted,
                standalone: _,
                overrides,
                add_scram,
            } => {
                let c = load_config(&config, &overrides)?;
                // Checked before anything is written.
                for a in &add_scram {
                    gregor::sasl::bootstrap::parse_add_scram(a)
                        .map_err(anyhow::Error::msg)
                        .context("--add-scram")?;
                }
                for (dir, outcome) in
                    storage::format(&all_dirs(&c), &cluster_id, c.node_id, ignore_formatted)?
                {
                    match outcome {
                        storage::FormatOutcome::Formatted => {
                            println!(
                                "Formatting {} with metadata.version 4.0-IV3.",
                                dir.display()
                            )
                        }
                        storage::FormatOutcome::AlreadyFormatted => {
                            println!("{} is already formatted. Skipping.", dir.display())
                        }
                    }
                }
                bootstrap_scram(&c, &add_scram)?;
            }
        },
        Command::ServerStart { config, overrides } => {
            run_node(load_config(&config, &overrides)?).await?
        }
        Command::Dev {
            data_dir,
            overrides,
            add_scram,
        } => run_node(dev_config(data_dir, &overrides, &add_scram)?).await?,
        Command::Topics(a) => tools::topics::run(a).await?,
        Command::ConsoleProducer(a) => tools::console_producer::run(a).await?,
        Command::ConsoleConsumer(a) => tools::console_consumer::run(a).await?,
        Command::ConsumerGroups(a) => tools::consumer_groups::run(a).await?,
        Command::MetadataQuorum(a) => tools::metadata_quorum::run(a).await?,
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let is_server = matches!(
        cli.command,
        Command::ServerStart { .. } | Command::Dev { .. }
    );
    let default_level = if is_server {
        config::log_filter()
    } else {
        "warn".into()
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(default_level))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let message = format!("error: {e:#}");
            eprintln!("{message}");
            gregor_client::termination::record(&message);
            ExitCode::FAILURE
        }
    }
}
