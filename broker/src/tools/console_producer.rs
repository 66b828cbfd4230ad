//! `gregor console-producer`: Kafka's `kafka-console-producer.sh` — one record per stdin
//! line, keys split off with `parse.key`/`key.separator`, sent as v2 record batches with
//! Produce to each partition's leader, partitioned as the Java producer does; every batch is
//! acknowledged (per `acks`) before the tool exits, and any failure exits non-zero.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use gregor_client::requests::topic_name;
use gregor_client::Cluster;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::fetcher::Layout;
use super::partitioner::{partition_for_key, Sticky};
use super::{parse_bool, parse_key_values, unescape, ToolError};

/// Produce v13 addresses topics by id; this client sends names.
const PRODUCE_MAX_VERSION: i16 = 12;
/// How long a partial batch waits for more lines (Kafka's `--timeout`, 1000 ms, is for
/// throughput; a short linger keeps interactive use snappy).
const DEFAULT_LINGER_MS: u64 = 10;
/// Attempts per batch on retriable errors (leader moved, topic still being created).
const SEND_ATTEMPTS: u32 = 10;
const RETRY_BACKOFF: Duration = Duration::from_millis(200);

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
    /// The topic to produce to.
    #[arg(long)]
    pub topic: String,
    /// Line reader properties: parse.key, key.separator, parse.headers, headers.delimiter,
    /// headers.separator, headers.key.separator, ignore.error, null.marker.
    #[arg(long = "property", alias = "reader-property")]
    pub property: Vec<String>,
    /// Producer properties: acks, compression.type, batch.size, linger.ms.
    #[arg(long = "producer-property")]
    pub producer_property: Vec<String>,
    /// The acks to require: 0, 1 or -1/all (default all).
    #[arg(long = "request-required-acks")]
    pub request_required_acks: Option<String>,
    /// Compression: none, gzip, snappy, lz4 or zstd (gzip when given without a value).
    #[arg(long = "compression-codec", num_args = 0..=1, default_missing_value = "gzip")]
    pub compression_codec: Option<String>,
    /// Records per Produce batch.
    #[arg(long = "batch-size", default_value_t = 200)]
    pub batch_size: usize,
    /// Send each line as soon as it is read, one at a time.
    #[arg(long)]
    pub sync: bool,
    /// How long the broker may wait for replicas to acknowledge (ms).
    #[arg(long = "request-timeout-ms", default_value_t = 1500)]
    pub request_timeout_ms: i32,
}

/// The settings the flags and properties resolve to.
#[derive(Debug, Clone, PartialEq)]
struct Settings {
    acks: i16,
    compression: Compression,
    parse_key: bool,
    key_separator: String,
    ignore_error: bool,
    null_marker: Option<String>,
    parse_headers: bool,
    headers_delimiter: String,
    headers_separator: String,
    headers_key_separator: String,
    batch_size: usize,
    linger: Duration,
}

impl Settings {
    fn from_args(args: &Args) -> Result<Self, ToolError> {
        let reader: BTreeMap<String, String> = parse_key_values("--property", &args.property)?
            .into_iter()
            .collect();
        let producer: BTreeMap<String, String> =
            parse_key_values("--producer-property", &args.producer_property)?
                .into_iter()
                .collect();
        let acks_text = args
            .request_required_acks
            .clone()
            .or_else(|| producer.get("acks").cloned())
            .unwrap_or_else(|| "all".into());
        let acks = match acks_text.trim() {
            "all" | "-1" => -1,
            "0" => 0,
            "1" => 1,
            other => {
                return Err(ToolError::Usage(format!(
                    "Invalid value {other} for configuration acks: String must be one of: all, \
                     -1, 0, 1"
                )))
            }
        };
        let codec = args
            .compression_codec
            .clone()
            .or_else(|| producer.get("compression.type").cloned())
            .unwrap_or_else(|| "none".into());
        let compression = match codec.trim() {
            "none" => Compression::None,
            "gzip" => Compression::Gzip,
            "snappy" => Compression::Snappy,
            "lz4" => Compression::Lz4,
            "zstd" => Compression::Zstd,
            other => {
                return Err(ToolError::Usage(format!(
                    "Invalid compression codec '{other}': expected none, gzip, snappy, lz4 or zstd"
                )))
            }
        };
        let text = |k: &str, default: &str| {
            reader
                .get(k)
                .map_or_else(|| default.to_owned(), |v| unescape(v))
        };
        let linger = match producer.get("linger.ms") {
            Some(ms) => ms.trim().parse::<u64>().map_err(|_| {
                ToolError::Usage(format!("Invalid value {ms} for configuration linger.ms"))
            })?,
            None => DEFAULT_LINGER_MS,
        };
        if args.batch_size == 0 {
            return Err(ToolError::Usage("--batch-size must be at least 1".into()));
        }
        Ok(Settings {
            acks,
            compression,
            parse_key: reader.get("parse.key").is_some_and(|v| parse_bool(v)),
            key_separator: reader
                .get("key.separator")
                .map_or_else(|| "\t".to_owned(), |s| unescape(s)),
            ignore_error: reader.get("ignore.error").is_some_and(|v| parse_bool(v)),
            null_marker: reader.get("null.marker").cloned(),
            parse_headers: reader.get("parse.headers").is_some_and(|v| parse_bool(v)),
            headers_delimiter: text("headers.delimiter", "\t"),
            headers_separator: text("headers.separator", ","),
            headers_key_separator: text("headers.key.separator", ":"),
            batch_size: if args.sync { 1 } else { args.batch_size },
            linger: Duration::from_millis(linger),
        })
    }

    /// Splits one input line into headers, key and value, as Kafka's `LineMessageReader`
    /// does: `[headers<delimiter>][key<separator>]value`.
    fn parse_line(&self, line: &str, line_number: u64) -> Result<ParsedLine, ToolError> {
        let field = |s: &str| {
            if self.null_marker.as_deref() == Some(s) {
                None
            } else {
                Some(Bytes::copy_from_slice(s.as_bytes()))
            }
        };
        let mut rest = line;
        let mut headers = Vec::new();
        if self.parse_headers {
            match split_nonempty(rest, &self.headers_delimiter) {
                Some((h, r)) => {
                    headers = self.parse_headers(h, line_number)?;
                    rest = r;
                }
                None if self.ignore_error => {}
                None => {
                    return Err(ToolError::Failed(format!(
                        "No headers delimiter found on line number {line_number}: '{line}'"
                    )))
                }
            }
        }
        if !self.parse_key {
            return Ok(ParsedLine {
                headers,
                key: None,
                value: field(rest),
            });
        }
        match split_nonempty(rest, &self.key_separator) {
            Some((key, value)) => Ok(ParsedLine {
                headers,
                key: field(key),
                value: field(value),
            }),
            None if self.ignore_error => Ok(ParsedLine {
                headers,
                key: None,
                value: field(rest),
            }),
            None => Err(ToolError::Failed(format!(
                "No key separator found on line number {line_number}: '{line}'"
            ))),
        }
    }

    /// Parses `k1:v1,k2:v2`; a header without a key separator has a null value.
    fn parse_headers(
        &self,
        text: &str,
        line_number: u64,
    ) -> Result<Vec<(String, Option<Bytes>)>, ToolError> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        text.split(self.headers_separator.as_str())
            .map(|h| {
                let (k, v) = match split_nonempty(h, &self.headers_key_separator) {
                    Some((k, v)) => (k, Some(v)),
                    None => (h, None),
                };
                if self.null_marker.as_deref() == Some(k) {
                    return Err(ToolError::Failed(format!(
                        "Header key cannot match null marker on line number {line_number}: '{k}'"
                    )));
                }
                let v = v
                    .filter(|v| self.null_marker.as_deref() != Some(*v))
                    .map(|v| Bytes::copy_from_slice(v.as_bytes()));
                Ok((k.to_owned(), v))
            })
            .collect()
    }
}

/// One input line, parsed.
#[derive(Debug, Clone, PartialEq)]
struct ParsedLine {
    headers: Vec<(String, Option<Bytes>)>,
    key: Option<Bytes>,
    value: Option<Bytes>,
}

/// Splits at the first `sep`; an empty separator never matches.
fn split_nonempty<'a>(s: &'a str, sep: &str) -> Option<(&'a str, &'a str)> {
    if sep.is_empty() {
        None
    } else {
        s.split_once(sep)
    }
}

/// Runs the tool.
pub async fn run(args: Args) -> Result<(), super::ToolError> {
    let settings = Settings::from_args(&args)?;
    gregor_client::names::validate_topic_name(&args.topic)?;
    let mut cluster =
        super::connect(&args.bootstrap_server, args.command_config.as_deref()).await?;
    let mut producer = Producer::new(&mut cluster, &args, settings.clone()).await?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut line_number = 0u64;
    loop {
        // Wait without limit for the first line of a batch; then linger for more.
        let next = if producer.pending == 0 {
            Some(lines.next_line().await)
        } else {
            tokio::time::timeout(settings.linger, lines.next_line())
                .await
                .ok()
        };
        match next {
            None => producer.flush(&mut cluster).await?,
            Some(Ok(Some(line))) => {
                line_number += 1;
                let parsed = settings.parse_line(&line, line_number)?;
                producer.add(parsed);
                if producer.pending >= settings.batch_size {
                    producer.flush(&mut cluster).await?;
                }
            }
            Some(Ok(None)) => break,
            Some(Err(source)) => {
                return Err(ToolError::Io {
                    what: "reading standard input".into(),
                    source,
                })
            }
        }
    }
    producer.flush(&mut cluster).await
}

/// Records waiting to be sent, by partition, and where the partitions are led.
struct Producer {
    topic: String,
    settings: Settings,
    timeout_ms: i32,
    layout: Layout,
    sticky: Sticky,
    batches: BTreeMap<i32, Vec<Record>>,
    pending: usize,
}

impl Producer {
    async fn new(
        cluster: &mut Cluster,
        args: &Args,
        settings: Settings,
    ) -> Result<Self, ToolError> {
        let topics = [args.topic.clone()];
        let mut layout = Layout::load_with(cluster, &topics, true).await?;
        for _ in 0..SEND_ATTEMPTS {
            if layout.all_led() && layout.partition_count(&args.topic) > 0 {
                break;
            }
            tokio::time::sleep(RETRY_BACKOFF).await;
            layout = Layout::load_with(cluster, &topics, true).await?;
        }
        let count = layout.partition_count(&args.topic);
        if count == 0 {
            return Err(ToolError::Failed(format!(
                "Topic '{}' does not exist and was not auto-created (waited {} ms)",
                args.topic,
                RETRY_BACKOFF.as_millis() * u128::from(SEND_ATTEMPTS)
            )));
        }
        Ok(Producer {
            topic: args.topic.clone(),
            settings,
            timeout_ms: args.request_timeout_ms,
            sticky: Sticky::new(count),
            layout,
            batches: BTreeMap::new(),
            pending: 0,
        })
    }

    fn add(&mut self, line: ParsedLine) {
        let ParsedLine {
            headers,
            key,
            value,
        } = line;
        let count = self.layout.partition_count(&self.topic);
        let partition = match &key {
            Some(k) => partition_for_key(k, count),
            None => self.sticky.partition(),
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let batch = self.batches.entry(partition).or_default();
        let offset = batch.len() as i64;
        batch.push(Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset,
            // The encoder starts a new batch wherever `offset - sequence` changes and derives
            // the batch's base sequence from the first record: keeping the difference at 1
            // makes one batch (Produce takes one per partition) with base sequence -1 (none).
            sequence: (offset as i32).wrapping_sub(1),
            timestamp: now,
            key,
            value,
            headers: headers
                .into_iter()
                .map(|(k, v)| (StrBytes::from_string(k), v))
                .collect(),
        });
        self.pending += 1;
    }

    /// Sends every pending batch and waits for the acks, retrying retriable errors.
    async fn flush(&mut self, cluster: &mut Cluster) -> Result<(), ToolError> {
        if self.pending == 0 {
            return Ok(());
        }
        let mut encoded = BTreeMap::new();
        for (&partition, records) in &self.batches {
            let mut buf = BytesMut::new();
            let options = RecordEncodeOptions {
                version: 2,
                compression: self.settings.compression,
            };
            RecordBatchEncoder::encode(&mut buf, records, &options)
                .map_err(|e| ToolError::Failed(format!("cannot encode a record batch: {e}")))?;
            encoded.insert(partition, buf.freeze());
        }
        for attempt in 1..=SEND_ATTEMPTS {
            let retry = self.send(cluster, &mut encoded).await?;
            if encoded.is_empty() {
                break;
            }
            if attempt == SEND_ATTEMPTS {
                let reason = retry.unwrap_or_else(|| "no answer".into());
                return Err(ToolError::Failed(format!(
                    "producing to topic '{}' failed after {SEND_ATTEMPTS} attempts: {reason}",
                    self.topic
                )));
            }
            tokio::time::sleep(RETRY_BACKOFF).await;
            self.layout =
                Layout::load_with(cluster, std::slice::from_ref(&self.topic), true).await?;
        }
        self.batches.clear();
        self.pending = 0;
        let count = self.layout.partition_count(&self.topic);
        self.sticky.next_batch(count);
        Ok(())
    }

    /// One Produce per leader; acknowledged partitions leave `encoded`. Returns the last
    /// retriable failure seen, described, if any.
    async fn send(
        &mut self,
        cluster: &mut Cluster,
        encoded: &mut BTreeMap<i32, Bytes>,
    ) -> Result<Option<String>, ToolError> {
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        let mut retry = None;
        for &partition in encoded.keys() {
            match self.layout.leader(&self.topic, partition) {
                Ok(leader) => by_leader.entry(leader).or_default().push(partition),
                Err(e) => retry = Some(e.to_string()),
            }
        }
        for (leader, partitions) in by_leader {
            let data = partitions
                .iter()
                .map(|&p| {
                    PartitionProduceData::default()
                        .with_index(p)
                        .with_records(encoded.get(&p).cloned())
                })
                .collect();
            let req = ProduceRequest::default()
                .with_acks(self.settings.acks)
                .with_timeout_ms(self.timeout_ms)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(topic_name(&self.topic))
                    .with_partition_data(data)]);
            let client = match cluster.broker(leader).await {
                Ok(c) => c,
                Err(e) => {
                    cluster.forget(leader);
                    retry = Some(gregor_client::error_chain(&e));
                    continue;
                }
            };
            let version = client.version::<ProduceRequest>(Some(PRODUCE_MAX_VERSION))?;
            if self.settings.acks == 0 {
                client.send_oneway(req, version).await?;
                for p in partitions {
                    encoded.remove(&p);
                }
                continue;
            }
            let resp = client.send_at(req, version).await?;
            for t in resp.responses {
                for p in t.partition_responses {
                    match ResponseError::try_from_code(p.error_code) {
                        None => {
                            encoded.remove(&p.index);
                        }
                        Some(e) if e.is_retriable() => {
                            retry = Some(format!(
                                "{}-{}: {e} (error code {})",
                                self.topic,
                                p.index,
                                e.code()
                            ))
                        }
                        Some(error) => {
                            return Err(ToolError::Kafka {
                                what: format!("producing to {}-{}", self.topic, p.index),
                                error,
                                message: p.error_message.map(|m| m.as_str().to_owned()),
                            })
                        }
                    }
                }
            }
        }
        Ok(retry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn settings(argv: &[&str]) -> Result<Settings, ToolError> {
        let mut full = vec!["p", "--bootstrap-server", "h:1", "--topic", "t"];
        full.extend_from_slice(argv);
        Settings::from_args(&Cli::try_parse_from(full).unwrap().args)
    }

    #[test]
    fn defaults_are_acks_all_uncompressed_and_no_keys() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.acks, -1);
        assert_eq!(s.compression, Compression::None);
        assert!(!s.parse_key);
        assert_eq!(s.key_separator, "\t");
    }

    #[test]
    fn acks_come_from_the_flag_before_the_producer_property() {
        assert_eq!(
            settings(&["--producer-property", "acks=1"]).unwrap().acks,
            1
        );
        let s = settings(&[
            "--producer-property",
            "acks=1",
            "--request-required-acks",
            "0",
        ]);
        assert_eq!(s.unwrap().acks, 0);
        assert!(settings(&["--request-required-acks", "2"]).is_err());
    }

    #[test]
    fn compression_codec_without_value_means_gzip() {
        let s = settings(&["--compression-codec"]).unwrap();
        assert_eq!(s.compression, Compression::Gzip);
        let s = settings(&["--producer-property", "compression.type=zstd"]).unwrap();
        assert_eq!(s.compression, Compression::Zstd);
        assert!(settings(&["--compression-codec", "brotli"]).is_err());
    }

    #[test]
    fn keys_are_split_at_the_first_separator() {
        let s = settings(&[
            "--property",
            "parse.key=true",
            "--property",
            "key.separator=:",
        ])
        .unwrap();
        let line = s.parse_line("k1:v:1", 1).unwrap();
        assert_eq!(line.key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(line.value.as_deref(), Some(&b"v:1"[..]));
        let err = s.parse_line("novalue", 7).unwrap_err();
        assert_eq!(
            err.to_string(),
            "No key separator found on line number 7: 'novalue'"
        );
    }

    #[test]
    fn headers_come_before_the_key_as_kafkas_line_reader_reads_them() {
        let s = settings(&[
            "--property",
            "parse.headers=true",
            "--property",
            "parse.key=true",
        ])
        .unwrap();
        let line = s.parse_line("h1:a,h2\tk\tv", 1).unwrap();
        assert_eq!(
            line.headers,
            vec![
                ("h1".to_string(), Some(Bytes::from_static(b"a"))),
                ("h2".to_string(), None)
            ]
        );
        assert_eq!(line.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(line.value.as_deref(), Some(&b"v"[..]));
        let err = s.parse_line("noheaders", 3).unwrap_err();
        assert!(err.to_string().contains("No headers delimiter"), "{err}");
    }

    #[test]
    fn lines_without_parse_key_are_whole_values_and_null_marker_means_null() {
        let s = settings(&["--property", "null.marker=NULL"]).unwrap();
        assert_eq!(
            s.parse_line("a\tb", 1).unwrap().value.as_deref(),
            Some(&b"a\tb"[..])
        );
        let line = s.parse_line("NULL", 1).unwrap();
        assert_eq!((line.key, line.value), (None, None));
        let s = settings(&[
            "--property",
            "parse.key=true",
            "--property",
            "ignore.error=true",
        ])
        .unwrap();
        assert_eq!(
            s.parse_line("x", 1).unwrap().value.as_deref(),
            Some(&b"x"[..])
        );
    }
}
