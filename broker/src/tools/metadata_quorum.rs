//! `gregor metadata-quorum`: Kafka's `kafka-metadata-quorum.sh describe` — the controller
//! quorum's leader, epoch, high watermark, voters and observers (`--status`, the default) or
//! each voter's and observer's replication progress (`--replication`), from DescribeQuorum, in
//! Kafka's layout.

use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::describe_quorum_response::{self, ReplicaState};
use kafka_protocol::messages::{DescribeQuorumRequest, DescribeQuorumResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::ToolError;

/// The metadata log's name in DescribeQuorum.
const METADATA_TOPIC: &str = "__cluster_metadata";

/// Command-line arguments, Kafka's flags (`describe` may be given as a word or as
/// `--describe`).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Broker(s) to bootstrap from: host:port, comma-separated for several.
    #[arg(long = "bootstrap-server")]
    pub bootstrap_server: String,
    /// A Kafka client properties file: security.protocol, sasl.mechanism, sasl.jaas.config,
    /// ssl.truststore.*, ssl.keystore.* (Kafka's `--command-config`).
    #[arg(long = "command-config", value_name = "FILE")]
    pub command_config: Option<std::path::PathBuf>,
    /// `describe` (the only action, also the default).
    #[arg(value_parser = ["describe"])]
    pub action: Option<String>,
    /// Describe the quorum (the default action).
    #[arg(long)]
    pub describe: bool,
    /// Leader, epoch, high watermark, lag and voters (the default view).
    #[arg(long)]
    pub status: bool,
    /// Each voter's and observer's log end offset, lag and last contact.
    #[arg(long, conflicts_with = "status")]
    pub replication: bool,
}

/// Runs the tool, printing to stdout.
pub async fn run(args: Args) -> Result<(), ToolError> {
    let mut cluster =
        super::connect(&args.bootstrap_server, args.command_config.as_deref()).await?;
    let cluster_id = cluster
        .metadata(Some(&[]))
        .await?
        .cluster_id
        .map(|s| s.to_string())
        .unwrap_or_default();
    let req = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC)))
        .with_partitions(vec![PartitionData::default()])]);
    let resp = cluster.any().send(req).await?;
    ToolError::check(resp.error_code, resp.error_message.as_ref(), || {
        "describing the metadata quorum".into()
    })?;
    let p = resp
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or_else(|| ToolError::Failed("the broker described no metadata partition".into()))?;
    ToolError::check(p.error_code, p.error_message.as_ref(), || {
        "describing the metadata quorum".into()
    })?;
    let now = crate::cluster::now_ms();
    let text = if args.replication {
        replication(&resp, p, now)
    } else {
        status(&cluster_id, &resp, p, now)
    };
    print!("{text}");
    Ok(())
}

fn leader_leo(p: &describe_quorum_response::PartitionData) -> i64 {
    p.current_voters
        .iter()
        .find(|v| v.replica_id == p.leader_id)
        .map(|v| v.log_end_offset)
        .unwrap_or(p.high_watermark)
}

/// Kafka's `--status` view.
fn status(
    cluster_id: &str,
    resp: &DescribeQuorumResponse,
    p: &describe_quorum_response::PartitionData,
    now: i64,
) -> String {
    let leo = leader_leo(p);
    let followers = || {
        p.current_voters
            .iter()
            .filter(|v| v.replica_id != p.leader_id)
    };
    let max_lag = followers()
        .map(|v| (leo - v.log_end_offset).max(0))
        .max()
        .unwrap_or(0);
    let max_lag_ms = followers()
        .map(|v| {
            if v.last_caught_up_timestamp < 0 {
                -1
            } else {
                (now - v.last_caught_up_timestamp).max(0)
            }
        })
        .max()
        .unwrap_or(0);
    let endpoints = |id: i32| -> Vec<String> {
        resp.nodes
            .iter()
            .filter(|n| n.node_id.0 == id)
            .flat_map(|n| n.listeners.iter())
            .map(|l| format!("\"{}://{}:{}\"", l.name.as_str(), l.host.as_str(), l.port))
            .collect()
    };
    let voters: Vec<String> = p
        .current_voters
        .iter()
        .map(|v| {
            format!(
                "{{\"id\": {}, \"endpoints\": [{}]}}",
                v.replica_id.0,
                endpoints(v.replica_id.0).join(", ")
            )
        })
        .collect();
    let observers: Vec<String> = p
        .observers
        .iter()
        .map(|o| format!("{{\"id\": {}}}", o.replica_id.0))
        .collect();
    let rows = [
        ("ClusterId", cluster_id.to_string()),
        ("LeaderId", p.leader_id.0.to_string()),
        ("LeaderEpoch", p.leader_epoch.to_string()),
        ("HighWatermark", p.high_watermark.to_string()),
        ("MaxFollowerLag", max_lag.to_string()),
        ("MaxFollowerLagTimeMs", max_lag_ms.to_string()),
        ("CurrentVoters", format!("[{}]", voters.join(", "))),
        ("CurrentObservers", format!("[{}]", observers.join(", "))),
    ];
    rows.iter()
        .map(|(k, v)| format!("{:<24}{v}\n", format!("{k}:")))
        .collect()
}

/// Kafka's `--replication` view: one row per voter, leader first, then one per observer.
fn replication(
    _resp: &DescribeQuorumResponse,
    p: &describe_quorum_response::PartitionData,
    now: i64,
) -> String {
    let leo = leader_leo(p);
    let mut voters: Vec<&ReplicaState> = p.current_voters.iter().collect();
    voters.sort_by_key(|v| (v.replica_id != p.leader_id, v.replica_id.0));
    let mut observers: Vec<&ReplicaState> = p.observers.iter().collect();
    observers.sort_by_key(|o| o.replica_id.0);
    let ago = |t: i64| {
        if t < 0 {
            "-".to_string()
        } else {
            format!("{} ms ago", (now - t).max(0))
        }
    };
    let mut rows = vec![[
        "NodeId".to_string(),
        "LogEndOffset".into(),
        "Lag".into(),
        "LastFetchTimestamp".into(),
        "LastCaughtUpTimestamp".into(),
        "Status".into(),
    ]];
    let rows_of = voters
        .into_iter()
        .map(|v| (v, false))
        .chain(observers.into_iter().map(|o| (o, true)));
    for (v, observer) in rows_of {
        let status = if observer {
            "Observer"
        } else if v.replica_id == p.leader_id {
            "Leader"
        } else {
            "Follower"
        };
        rows.push([
            v.replica_id.0.to_string(),
            v.log_end_offset.to_string(),
            (leo - v.log_end_offset).max(0).to_string(),
            ago(v.last_fetch_timestamp),
            ago(v.last_caught_up_timestamp),
            status.into(),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|r| {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            format!("{}\n", cells.join("\t").trim_end())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::describe_quorum_response::{Listener, Node};
    use kafka_protocol::messages::BrokerId;

    use super::*;

    fn quorum() -> (
        DescribeQuorumResponse,
        describe_quorum_response::PartitionData,
    ) {
        let voter = |id: i32, leo: i64, seen: i64| {
            ReplicaState::default()
                .with_replica_id(BrokerId(id))
                .with_log_end_offset(leo)
                .with_last_fetch_timestamp(seen)
                .with_last_caught_up_timestamp(seen)
        };
        let p = describe_quorum_response::PartitionData::default()
            .with_leader_id(BrokerId(2))
            .with_leader_epoch(7)
            .with_high_watermark(100)
            .with_current_voters(vec![
                voter(1, 90, 900),
                voter(2, 100, 1000),
                voter(3, -1, -1),
            ])
            .with_observers(vec![voter(5, 100, 950), voter(4, 97, 990)]);
        let resp = DescribeQuorumResponse::default().with_nodes(vec![Node::default()
            .with_node_id(BrokerId(1))
            .with_listeners(vec![Listener::default()
                .with_name(StrBytes::from_static_str("CONTROLLER"))
                .with_host(StrBytes::from_static_str("h1"))
                .with_port(9093)])]);
        (resp, p)
    }

    #[test]
    fn status_shows_the_leader_lag_and_voters_in_kafkas_layout() {
        let (resp, p) = quorum();
        let out = status("abc", &resp, &p, 1000);
        assert!(out.contains("ClusterId:              abc\n"), "{out}");
        assert!(out.contains("LeaderId:               2\n"), "{out}");
        assert!(out.contains("LeaderEpoch:            7\n"), "{out}");
        assert!(out.contains("HighWatermark:          100\n"), "{out}");
        assert!(out.contains("MaxFollowerLag:         101\n"), "{out}");
        assert!(
            out.contains(r#"{"id": 1, "endpoints": ["CONTROLLER://h1:9093"]}"#),
            "{out}"
        );
        assert!(
            out.contains(r#"CurrentObservers:       [{"id": 5}, {"id": 4}]"#),
            "{out}"
        );
    }

    #[test]
    fn replication_lists_the_leader_first_with_each_lag() {
        let (resp, p) = quorum();
        let out = replication(&resp, &p, 1000);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("NodeId"), "{out}");
        assert!(
            lines[1].starts_with('2') && lines[1].ends_with("Leader"),
            "{out}"
        );
        assert!(
            lines[2].contains("10") && lines[2].contains("100 ms ago"),
            "{out}"
        );
        assert!(lines[3].starts_with('3') && lines[3].contains('-'), "{out}");
        assert!(
            lines[4].starts_with('4') && lines[4].ends_with("Observer"),
            "{out}"
        );
        assert!(
            lines[5].starts_with('5') && lines[5].ends_with("Observer"),
            "{out}"
        );
        assert_eq!(lines.len(), 6, "{out}");
    }
}
