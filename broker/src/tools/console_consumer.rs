//! `gregor console-consumer`: Kafka's `kafka-console-consumer.sh` — reads a topic and prints
//! one record per line, either as a member of a consumer group (`--group`: join, commit,
//! leave on exit) or by reading every partition directly; formatted like Kafka's
//! `DefaultMessageFormatter` (`print.timestamp`, `print.partition`, `print.offset`,
//! `print.headers`, `print.key`, `print.value`, separators, `null.literal`).

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use gregor_client::Cluster;
use kafka_protocol::records::TimestampType;

use super::fetcher::{self, ConsumedRecord, Layout, Tp, EARLIEST, LATEST};
use super::group::GroupMember;
use super::{parse_bool, parse_key_values, unescape, ToolError};

/// How long one fetch may wait on the broker; short enough for timely heartbeats.
const FETCH_MAX_WAIT_MS: i32 = 500;
/// Java's `auto.commit.interval.ms` default.
const AUTO_COMMIT_INTERVAL: Duration = Duration::from_secs(5);

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
    /// The topic to consume.
    #[arg(long)]
    pub topic: String,
    /// The consumer group to join; without it every partition is read directly.
    #[arg(long)]
    pub group: Option<String>,
    /// Start from the earliest offset when there is no committed one.
    #[arg(long = "from-beginning")]
    pub from_beginning: bool,
    /// Exit after this many messages.
    #[arg(long = "max-messages")]
    pub max_messages: Option<u64>,
    /// Exit when no message arrives for this long (ms).
    #[arg(long = "timeout-ms")]
    pub timeout_ms: Option<u64>,
    /// Read only this partition (no group).
    #[arg(long)]
    pub partition: Option<i32>,
    /// With --partition: earliest, latest or an offset (default latest).
    #[arg(long)]
    pub offset: Option<String>,
    /// Formatter properties: print.key, print.value, print.offset, print.partition,
    /// print.timestamp, print.headers, key.separator, line.separator, null.literal.
    #[arg(long = "property", alias = "formatter-property")]
    pub property: Vec<String>,
    /// Consumer properties: group.id, auto.offset.reset, enable.auto.commit.
    #[arg(long = "consumer-property")]
    pub consumer_property: Vec<String>,
}

/// How records are printed, from the formatter properties.
#[derive(Debug, Clone, PartialEq)]
pub struct Format {
    print_timestamp: bool,
    print_partition: bool,
    print_offset: bool,
    print_headers: bool,
    print_key: bool,
    print_value: bool,
    key_separator: String,
    line_separator: String,
    headers_separator: String,
    header_key_separator: String,
    null_literal: String,
}

impl Format {
    /// Reads Kafka's formatter properties; unknown ones are ignored as Kafka does.
    pub fn from_properties(props: &[(String, String)]) -> Self {
        let get = |k: &str| props.iter().rev().find(|(p, _)| p == k).map(|(_, v)| v);
        let flag = |k: &str, default: bool| get(k).map_or(default, |v| parse_bool(v));
        let text =
            |k: &str, default: &str| get(k).map_or_else(|| default.to_owned(), |v| unescape(v));
        Format {
            print_timestamp: flag("print.timestamp", false),
            print_partition: flag("print.partition", false),
            print_offset: flag("print.offset", false),
            print_headers: flag("print.headers", false),
            print_key: flag("print.key", false),
            print_value: flag("print.value", true),
            key_separator: text("key.separator", "\t"),
            line_separator: text("line.separator", "\n"),
            headers_separator: text("headers.separator", ","),
            header_key_separator: text("headers.key.separator", ":"),
            null_literal: text("null.literal", "null"),
        }
    }

    /// Writes one record as `DefaultMessageFormatter` does: each printed field followed by
    /// the key separator, except the last, which is followed by the line separator.
    pub fn write(&self, out: &mut Vec<u8>, r: &ConsumedRecord) {
        let mut fields: Vec<Vec<u8>> = Vec::new();
        if self.print_timestamp {
            let kind = match r.timestamp_type {
                TimestampType::Creation => "CreateTime",
                TimestampType::LogAppend => "LogAppendTime",
            };
            fields.push(if r.timestamp < 0 {
                b"NO_TIMESTAMP".to_vec()
            } else {
                format!("{kind}:{}", r.timestamp).into_bytes()
            });
        }
        if self.print_partition {
            fields.push(format!("Partition:{}", r.partition).into_bytes());
        }
        if self.print_offset {
            fields.push(format!("Offset:{}", r.offset).into_bytes());
        }
        if self.print_headers {
            let headers = if r.headers.is_empty() {
                b"NO_HEADERS".to_vec()
            } else {
                let mut h = Vec::new();
                for (i, (k, v)) in r.headers.iter().enumerate() {
                    if i > 0 {
                        h.extend_from_slice(self.headers_separator.as_bytes());
                    }
                    h.extend_from_slice(k.as_bytes());
                    h.extend_from_slice(self.header_key_separator.as_bytes());
                    h.extend_from_slice(v.as_deref().unwrap_or(self.null_literal.as_bytes()));
                }
                h
            };
            fields.push(headers);
        }
        let or_null = |b: &Option<bytes::Bytes>| {
            b.as_deref()
                .map_or_else(|| self.null_literal.as_bytes().to_vec(), <[u8]>::to_vec)
        };
        if self.print_key {
            fields.push(or_null(&r.key));
        }
        if self.print_value {
            fields.push(or_null(&r.value));
        }
        for (i, f) in fields.iter().enumerate() {
            out.extend_from_slice(f);
            if i + 1 < fields.len() {
                out.extend_from_slice(self.key_separator.as_bytes());
            }
        }
        out.extend_from_slice(self.line_separator.as_bytes());
    }
}

/// Where to start reading a partition with no committed offset.
fn reset_timestamp(args: &Args, consumer: &BTreeMap<String, String>) -> Result<i64, ToolError> {
    if args.from_beginning {
        return Ok(EARLIEST);
    }
    match consumer.get("auto.offset.reset").map(String::as_str) {
        None | Some("latest") => Ok(LATEST),
        Some("earliest") => Ok(EARLIEST),
        Some(other) => Err(ToolError::Usage(format!(
            "Invalid value {other} for configuration auto.offset.reset: String must be one of: \
             latest, earliest"
        ))),
    }
}

/// Checks the flag combinations Kafka's console consumer refuses.
fn validate(args: &Args, group: Option<&String>) -> Result<(), ToolError> {
    if args.from_beginning && args.offset.is_some() {
        return Err(ToolError::Usage(
            "Options from-beginning and offset cannot be specified together.".into(),
        ));
    }
    if args.offset.is_some() && args.partition.is_none() {
        return Err(ToolError::Usage(
            "The partition is required when offset is specified.".into(),
        ));
    }
    if group.is_some() && args.partition.is_some() {
        return Err(ToolError::Usage(
            "Options group and partition cannot be specified together.".into(),
        ));
    }
    Ok(())
}

/// Runs the tool.
pub async fn run(args: Args) -> Result<(), super::ToolError> {
    let format = Format::from_properties(&parse_key_values("--property", &args.property)?);
    let consumer: BTreeMap<String, String> =
        parse_key_values("--consumer-property", &args.consumer_property)?
            .into_iter()
            .collect();
    let group = args
        .group
        .clone()
        .or_else(|| consumer.get("group.id").cloned());
    validate(&args, group.as_ref())?;
    let reset = reset_timestamp(&args, &consumer)?;
    let auto_commit = consumer
        .get("enable.auto.commit")
        .is_none_or(|v| parse_bool(v));

    let mut cluster =
        super::connect(&args.bootstrap_server, args.command_config.as_deref()).await?;
    let topics = [args.topic.clone()];
    let mut layout = Layout::load(&mut cluster, &topics).await?;
    let mut member = match &group {
        Some(g) => Some(GroupMember::join(&mut cluster, g, &topics).await?),
        None => None,
    };
    let mut positions =
        start_positions(&mut cluster, &layout, &args, member.as_ref(), reset).await?;

    let mut processed = 0u64;
    let mut last_message = Instant::now();
    let mut last_commit = Instant::now();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut stdout = std::io::stdout();
    while args.max_messages.is_none_or(|m| processed < m) {
        if let Some(t) = args.timeout_ms {
            if last_message.elapsed() >= Duration::from_millis(t) {
                break;
            }
        }
        let round = async {
            if let Some(m) = member.as_mut() {
                let rejoin = Rejoin {
                    layout: &layout,
                    args: &args,
                    reset,
                    auto_commit,
                };
                rejoin.if_due(&mut cluster, m, &mut positions).await?;
            }
            fetcher::fetch(&mut cluster, &layout, &mut positions, FETCH_MAX_WAIT_MS).await
        };
        let fetched = tokio::select! {
            biased;
            _ = &mut ctrl_c => break,
            f = round => f?,
        };
        if fetched.stale_layout {
            layout = Layout::load(&mut cluster, &topics).await?;
        }
        if !fetched.out_of_range.is_empty() {
            let reset_to =
                fetcher::list_offsets(&mut cluster, &layout, &fetched.out_of_range, reset).await?;
            positions.extend(reset_to);
        }
        let mut commit_positions = positions.clone();
        let out = format_records(
            &fetched.records,
            &format,
            args.max_messages,
            &mut processed,
            &mut commit_positions,
        );
        if !fetched.records.is_empty() {
            last_message = Instant::now();
        }
        stdout
            .write_all(&out)
            .and_then(|()| stdout.flush())
            .map_err(|source| ToolError::Io {
                what: "writing to standard output".into(),
                source,
            })?;
        if let Some(m) = &member {
            let done = args.max_messages.is_some_and(|max| processed >= max);
            if auto_commit && (done || last_commit.elapsed() >= AUTO_COMMIT_INTERVAL) {
                m.commit(&mut cluster, &commit_positions).await?;
                last_commit = Instant::now();
            }
            if done {
                positions = commit_positions;
            }
        }
    }
    // A request cut off by Ctrl-C leaves its connection marked broken; the goodbyes below
    // then go over a fresh one.
    if let Some(m) = &member {
        leave(&mut cluster, m, auto_commit, &positions).await?;
    }
    eprintln!("Processed a total of {processed} messages");
    Ok(())
}

/// Commits the positions reached (when auto-commit is on) and leaves the group.
async fn leave(
    cluster: &mut Cluster,
    m: &GroupMember,
    auto_commit: bool,
    positions: &BTreeMap<Tp, i64>,
) -> Result<(), ToolError> {
    if auto_commit {
        m.commit(cluster, positions).await?;
    }
    m.leave(cluster).await
}

/// What a group member needs to rejoin its group when a rebalance starts.
struct Rejoin<'a> {
    layout: &'a Layout,
    args: &'a Args,
    reset: i64,
    auto_commit: bool,
}

impl Rejoin<'_> {
    /// Heartbeats when one is due; when the group is rebalancing, commits (when auto-commit
    /// is on), rejoins, and starts over from the positions of the new assignment.
    async fn if_due(
        &self,
        cluster: &mut Cluster,
        m: &mut GroupMember,
        positions: &mut BTreeMap<Tp, i64>,
    ) -> Result<(), ToolError> {
        if !m.heartbeat_if_due(cluster).await? {
            return Ok(());
        }
        if self.auto_commit {
            // Best effort: a member already fenced out cannot commit, and the records are
            // then read again by the next owner (at least once).
            if let Err(e) = m.commit(cluster, positions).await {
                eprintln!("WARN: offsets not committed before rebalancing: {e}");
            }
        }
        m.rejoin(cluster).await?;
        *positions = start_positions(cluster, self.layout, self.args, Some(m), self.reset).await?;
        Ok(())
    }
}

/// Formats `records` for standard output, up to `--max-messages` in all (`processed` counts
/// them); a record past the limit moves its partition's commit position back to it, so the
/// group resumes there next time.
fn format_records(
    records: &[ConsumedRecord],
    format: &Format,
    max_messages: Option<u64>,
    processed: &mut u64,
    commit_positions: &mut BTreeMap<Tp, i64>,
) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        if max_messages.is_some_and(|m| *processed >= m) {
            // Not printed: the group resumes here next time.
            let tp = (r.topic.clone(), r.partition);
            let pos = commit_positions.entry(tp).or_insert(r.offset);
            *pos = (*pos).min(r.offset);
            continue;
        }
        format.write(&mut out, r);
        *processed += 1;
    }
    out
}

/// Where each partition we read starts: the committed offset, else `--offset`, else the
/// reset policy.
async fn start_positions(
    cluster: &mut Cluster,
    layout: &Layout,
    args: &Args,
    member: Option<&GroupMember>,
    reset: i64,
) -> Result<BTreeMap<Tp, i64>, ToolError> {
    let tps: Vec<Tp> = match (member, args.partition) {
        (Some(m), _) => m.partitions(),
        (None, Some(p)) => {
            if p < 0 || p >= layout.partition_count(&args.topic) {
                return Err(ToolError::Failed(format!(
                    "Partition {p} does not exist in topic '{}'",
                    args.topic
                )));
            }
            vec![(args.topic.clone(), p)]
        }
        (None, None) => layout.all_partitions(),
    };
    let mut positions = match member {
        Some(m) => m.committed(cluster, &tps).await?,
        None => BTreeMap::new(),
    };
    let explicit = match args.offset.as_deref() {
        None => None,
        Some("earliest") => Some(EARLIEST),
        Some("latest") => Some(LATEST),
        Some(n) => match n.parse::<i64>() {
            Ok(o) if o >= 0 => {
                for tp in &tps {
                    positions.insert(tp.clone(), o);
                }
                None
            }
            _ => {
                return Err(ToolError::Usage(format!(
                    "The provided offset value '{n}' is incorrect. Valid values are 'earliest', \
                     'latest', or a non-negative long."
                )))
            }
        },
    };
    let missing: Vec<Tp> = tps
        .iter()
        .filter(|tp| !positions.contains_key(*tp))
        .cloned()
        .collect();
    if !missing.is_empty() {
        let at = explicit.unwrap_or(reset);
        positions.extend(fetcher::list_offsets(cluster, layout, &missing, at).await?);
    }
    Ok(positions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn record() -> ConsumedRecord {
        ConsumedRecord {
            topic: "t".into(),
            partition: 2,
            offset: 40,
            timestamp: 1_700,
            timestamp_type: TimestampType::Creation,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"v")),
            headers: vec![("h".into(), Some(Bytes::from_static(b"x")))],
        }
    }

    fn render(props: &[(&str, &str)], r: &ConsumedRecord) -> String {
        let props: Vec<(String, String)> = props
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut out = Vec::new();
        Format::from_properties(&props).write(&mut out, r);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn values_print_one_per_line_by_default() {
        assert_eq!(render(&[], &record()), "v\n");
    }

    #[test]
    fn printed_fields_follow_kafkas_order_and_separators() {
        let text = render(
            &[
                ("print.key", "true"),
                ("print.offset", "true"),
                ("print.partition", "true"),
                ("print.timestamp", "true"),
                ("print.headers", "true"),
                ("key.separator", ":"),
            ],
            &record(),
        );
        assert_eq!(text, "CreateTime:1700:Partition:2:Offset:40:h:x:k:v\n");
    }

    #[test]
    fn null_keys_and_values_print_the_null_literal() {
        let mut r = record();
        r.key = None;
        r.value = None;
        assert_eq!(render(&[("print.key", "true")], &r), "null\tnull\n");
        assert_eq!(render(&[("null.literal", "NIL")], &r), "NIL\n");
    }

    #[test]
    fn kafkas_refused_flag_combinations_are_usage_errors() {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let parse = |extra: &[&str]| {
            let mut v = vec!["c", "--bootstrap-server", "h:1", "--topic", "t"];
            v.extend_from_slice(extra);
            Cli::try_parse_from(v).unwrap().args
        };
        let a = parse(&["--from-beginning", "--partition", "0", "--offset", "5"]);
        assert!(validate(&a, None).is_err());
        let a = parse(&["--offset", "5"]);
        assert!(validate(&a, None).is_err());
        let a = parse(&["--group", "g", "--partition", "0"]);
        assert!(validate(&a, a.group.as_ref()).is_err());
        let a = parse(&["--group", "g", "--max-messages", "3", "--timeout-ms", "100"]);
        assert!(validate(&a, a.group.as_ref()).is_ok());
        assert_eq!(a.max_messages, Some(3));
    }
}
