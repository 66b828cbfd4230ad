//! `gregor consumer-groups`: Kafka's `kafka-consumer-groups.sh` — list groups (ListGroups on
//! every broker), describe one group's offsets and lag (DescribeGroups, OffsetFetch,
//! ListOffsets) in Kafka's column layout, and delete groups (DeleteGroups).

use std::collections::BTreeSet;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, GroupId, ListGroupsRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::consumer_protocol::decode_assignment;
use super::fetcher::{list_offsets, Layout, Tp, LATEST};
use super::group::committed_offsets;
use super::ToolError;
use crate::client::{Cluster, CoordinatorType};

/// Command-line arguments, Kafka's flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Broker(s) to bootstrap from, host:port[,host:port].
    #[arg(long = "bootstrap-server")]
    pub bootstrap_server: String,
    /// List all consumer groups.
    #[arg(long)]
    pub list: bool,
    /// Describe a consumer group's offsets and lag.
    #[arg(long)]
    pub describe: bool,
    /// Delete a consumer group.
    #[arg(long)]
    pub delete: bool,
    /// The consumer group (repeatable with --delete).
    #[arg(long)]
    pub group: Vec<String>,
}

/// One line of the `--describe` table; `None` prints as `-`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OffsetRow {
    /// The group id.
    pub group: String,
    /// Topic, partition; `None` for a member with nothing assigned.
    pub tp: Option<Tp>,
    /// The committed offset.
    pub current: Option<i64>,
    /// The log end offset.
    pub log_end: Option<i64>,
    /// The member reading the partition: (consumer id, host, client id).
    pub member: Option<(String, String, String)>,
}

/// Runs the tool.
pub async fn run(args: Args) -> Result<(), super::ToolError> {
    let actions = [args.list, args.describe, args.delete]
        .iter()
        .filter(|&&a| a)
        .count();
    if actions != 1 {
        return Err(ToolError::Usage(
            "Command must include exactly one action: --list, --describe, --delete".into(),
        ));
    }
    if (args.describe || args.delete) && args.group.is_empty() {
        let action = if args.describe { "describe" } else { "delete" };
        return Err(ToolError::Usage(format!(
            "Option [{action}] takes one of these options: [group]"
        )));
    }
    let mut cluster = Cluster::connect(&args.bootstrap_server).await?;
    if args.list {
        for g in list(&mut cluster).await? {
            println!("{g}");
        }
        Ok(())
    } else if args.describe {
        for g in &args.group {
            describe(&mut cluster, g).await?;
        }
        Ok(())
    } else {
        delete(&mut cluster, &args.group).await
    }
}

/// Every group on every broker, sorted.
async fn list(cluster: &mut Cluster) -> Result<BTreeSet<String>, ToolError> {
    let mut groups = BTreeSet::new();
    for (node, _) in cluster.brokers() {
        let resp = cluster
            .broker(node)
            .await?
            .send(ListGroupsRequest::default())
            .await?;
        ToolError::check(resp.error_code, None, || {
            format!("listing groups on broker {node}")
        })?;
        groups.extend(resp.groups.iter().map(|g| g.group_id.as_str().to_owned()));
    }
    Ok(groups)
}

async fn describe(cluster: &mut Cluster, group: &str) -> Result<(), ToolError> {
    let coordinator = cluster.coordinator(group, CoordinatorType::Group).await?;
    let req = DescribeGroupsRequest::default()
        .with_groups(vec![GroupId(StrBytes::from_string(group.to_owned()))]);
    let resp = cluster.broker(coordinator).await?.send(req).await?;
    let described = resp
        .groups
        .into_iter()
        .find(|g| g.group_id.as_str() == group)
        .ok_or_else(|| ToolError::Failed(format!("Consumer group '{group}' was not described")))?;
    if described.error_code == ResponseError::GroupIdNotFound.code()
        || described.group_state.as_str() == "Dead"
    {
        return Err(ToolError::Failed(format!(
            "Consumer group '{group}' does not exist."
        )));
    }
    ToolError::check(
        described.error_code,
        described.error_message.as_ref(),
        || format!("describing group '{group}'"),
    )?;
    match described.group_state.as_str() {
        "Empty" => eprintln!("\nConsumer group '{group}' has no active members."),
        "PreparingRebalance" | "CompletingRebalance" | "Assigning" | "Reconciling" => {
            eprintln!("\nWarning: Consumer group '{group}' is rebalancing.")
        }
        _ => {}
    }

    let committed = committed_offsets(cluster, coordinator, group, None).await?;
    let mut rows = Vec::new();
    let mut assigned: BTreeSet<Tp> = BTreeSet::new();
    for m in &described.members {
        let member = Some((
            m.member_id.as_str().to_owned(),
            m.client_host.as_str().to_owned(),
            m.client_id.as_str().to_owned(),
        ));
        let assignment = if described.protocol_type.as_str() == "consumer" {
            decode_assignment(&m.member_assignment).unwrap_or_default()
        } else {
            Default::default()
        };
        let tps: Vec<Tp> = assignment
            .iter()
            .flat_map(|(t, ps)| ps.iter().map(move |&p| (t.clone(), p)))
            .collect();
        if tps.is_empty() {
            rows.push(OffsetRow {
                group: group.to_owned(),
                member: member.clone(),
                ..OffsetRow::default()
            });
        }
        for tp in tps {
            assigned.insert(tp.clone());
            rows.push(OffsetRow {
                group: group.to_owned(),
                current: committed.get(&tp).copied(),
                tp: Some(tp),
                log_end: None,
                member: member.clone(),
            });
        }
    }
    for (tp, &offset) in &committed {
        if !assigned.contains(tp) {
            rows.push(OffsetRow {
                group: group.to_owned(),
                tp: Some(tp.clone()),
                current: Some(offset),
                log_end: None,
                member: None,
            });
        }
    }
    let tps: Vec<Tp> = rows.iter().filter_map(|r| r.tp.clone()).collect();
    let topics: Vec<String> = tps
        .iter()
        .map(|(t, _)| t.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !topics.is_empty() {
        let layout = Layout::load(cluster, &topics).await?;
        let ends = list_offsets(cluster, &layout, &tps, LATEST).await?;
        for r in &mut rows {
            r.log_end = r.tp.as_ref().and_then(|tp| ends.get(tp).copied());
        }
    }
    rows.sort_by(|a, b| (a.tp.is_none(), &a.tp).cmp(&(b.tp.is_none(), &b.tp)));
    if !rows.is_empty() {
        print!("{}", format_offsets(&rows));
    }
    Ok(())
}

/// Kafka's `--describe --offsets` table: a blank line, the header, then one row per line,
/// columns at least 15 wide (PARTITION 10) and as wide as their widest value.
pub fn format_offsets(rows: &[OffsetRow]) -> String {
    let dash = || "-".to_owned();
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|r| {
            let (topic, partition) =
                r.tp.as_ref()
                    .map_or((dash(), dash()), |(t, p)| (t.clone(), p.to_string()));
            let lag = match (r.current, r.log_end) {
                (Some(c), Some(e)) => (e - c).max(0).to_string(),
                _ => dash(),
            };
            let (id, host, client) = r.member.clone().unwrap_or_else(|| (dash(), dash(), dash()));
            [
                r.group.clone(),
                topic,
                partition,
                r.current.map_or_else(dash, |c| c.to_string()),
                r.log_end.map_or_else(dash, |e| e.to_string()),
                lag,
                id,
                host,
                client,
            ]
        })
        .collect();
    let width = |col: usize| {
        cells
            .iter()
            .map(|c| c[col].len())
            .max()
            .unwrap_or(0)
            .max(15)
    };
    let widths = [width(0), width(1), 10, 15, 15, 15, width(6), width(7)];
    let line = |c: &[String; 9]| {
        let mut s = String::from("\n");
        for (cell, w) in c.iter().zip(widths) {
            s.push_str(&format!("{cell:<w$} "));
        }
        s.push_str(&c[8]);
        s
    };
    let header = [
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "CONSUMER-ID",
        "HOST",
        "CLIENT-ID",
    ]
    .map(str::to_owned);
    let mut out = line(&header);
    for c in &cells {
        out.push_str(&line(c));
    }
    out.push('\n');
    out
}

async fn delete(cluster: &mut Cluster, groups: &[String]) -> Result<(), ToolError> {
    let mut failures = Vec::new();
    for group in groups {
        let coordinator = cluster.coordinator(group, CoordinatorType::Group).await?;
        let req = DeleteGroupsRequest::default()
            .with_groups_names(vec![GroupId(StrBytes::from_string(group.clone()))]);
        let resp = cluster.broker(coordinator).await?.send(req).await?;
        for r in resp.results {
            if let Some(error) = ResponseError::try_from_code(r.error_code) {
                failures.push(format!(
                    "* Group '{}' could not be deleted due to: {error} (error code {})",
                    r.group_id.as_str(),
                    error.code()
                ));
            }
        }
    }
    if !failures.is_empty() {
        return Err(ToolError::Failed(format!(
            "Deletion of some consumer groups failed:\n{}",
            failures.join("\n")
        )));
    }
    let quoted: Vec<String> = groups.iter().map(|g| format!("'{g}'")).collect();
    println!(
        "Deletion of requested consumer groups ({}) was successful.",
        quoted.join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_table_matches_kafkas_columns() {
        let rows = vec![
            OffsetRow {
                group: "g".into(),
                tp: Some(("orders".into(), 0)),
                current: Some(5),
                log_end: Some(8),
                member: Some((
                    "consumer-1-abc".into(),
                    "/127.0.0.1".into(),
                    "consumer-1".into(),
                )),
            },
            OffsetRow {
                group: "g".into(),
                tp: Some(("orders".into(), 1)),
                current: None,
                log_end: Some(2),
                member: None,
            },
        ];
        let text = format_offsets(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "");
        assert_eq!(
            lines[1],
            "GROUP           TOPIC           PARTITION  CURRENT-OFFSET  LOG-END-OFFSET  LAG      \
             \u{20}      CONSUMER-ID     HOST            CLIENT-ID"
        );
        assert_eq!(
            lines[2],
            "g               orders          0          5               8               3        \
             \u{20}      consumer-1-abc  /127.0.0.1      consumer-1"
        );
        assert_eq!(
            lines[3],
            "g               orders          1          -               2               -        \
             \u{20}      -               -               -"
        );
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn wide_values_widen_their_column() {
        let rows = vec![OffsetRow {
            group: "a-very-long-group-name".into(),
            ..OffsetRow::default()
        }];
        let text = format_offsets(&rows);
        assert!(text.contains("GROUP                  TOPIC"), "{text}");
    }
}
