//! `gregor consumer-groups`: Kafka's `kafka-consumer-groups.sh` — list groups (ListGroups on
//! every broker), describe one group's offsets and lag (DescribeGroups, OffsetFetch,
//! ListOffsets), members or state in Kafka's column layouts, delete groups (DeleteGroups),
//! and reset offsets (see [`super::reset_offsets`]).

use std::collections::BTreeSet;

use gregor_client::{Cluster, CoordinatorType};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, GroupId, ListGroupsRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::consumer_protocol::decode_assignment;
use super::fetcher::{list_offsets, Layout, Tp, LATEST};
use super::group::committed_offsets;
use super::reset_offsets::{reset, ResetPlan, ResetTo};
use super::ToolError;

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
    /// List all consumer groups.
    #[arg(long)]
    pub list: bool,
    /// Describe a consumer group's offsets and lag.
    #[arg(long)]
    pub describe: bool,
    /// Delete a consumer group.
    #[arg(long)]
    pub delete: bool,
    /// The consumer group (repeatable).
    #[arg(long)]
    pub group: Vec<String>,
    /// With --describe or --delete: act on every group.
    #[arg(long = "all-groups")]
    pub all_groups: bool,
    /// With --describe: show offsets and lag (the default).
    #[arg(long)]
    pub offsets: bool,
    /// With --describe: show the group's members.
    #[arg(long)]
    pub members: bool,
    /// With --describe: show the group's state.
    #[arg(long)]
    pub state: bool,
    /// Reset the group's committed offsets (printed only, unless --execute).
    #[arg(long = "reset-offsets")]
    pub reset_offsets: bool,
    /// With --reset-offsets: to the log start.
    #[arg(long = "to-earliest")]
    pub to_earliest: bool,
    /// With --reset-offsets: to the log end.
    #[arg(long = "to-latest")]
    pub to_latest: bool,
    /// With --reset-offsets: to the committed offset.
    #[arg(long = "to-current")]
    pub to_current: bool,
    /// With --reset-offsets: to this offset.
    #[arg(long = "to-offset", allow_negative_numbers = true)]
    pub to_offset: Option<i64>,
    /// With --reset-offsets: move the committed offset by this much (may be negative).
    #[arg(long = "shift-by", allow_negative_numbers = true)]
    pub shift_by: Option<i64>,
    /// With --reset-offsets: the topic, or topic:partition,partition (repeatable).
    #[arg(long)]
    pub topic: Vec<String>,
    /// With --reset-offsets: every topic the group has offsets for.
    #[arg(long = "all-topics")]
    pub all_topics: bool,
    /// With --reset-offsets: commit the new offsets.
    #[arg(long)]
    pub execute: bool,
    /// With --reset-offsets: only print the new offsets (the default).
    #[arg(long = "dry-run")]
    pub dry_run: bool,
}

/// What the flags ask for.
#[derive(Debug, Clone)]
enum Action {
    List,
    Describe(View),
    Delete,
    Reset(ResetPlan),
}

impl Args {
    /// Checks the flag combination the way `kafka-consumer-groups.sh` does.
    fn action(&self) -> Result<Action, ToolError> {
        let actions = [self.list, self.describe, self.delete, self.reset_offsets]
            .iter()
            .filter(|&&a| a)
            .count();
        if actions != 1 {
            return Err(ToolError::Usage(
                "Command must include exactly one action: --list, --describe, --delete, \
                 --reset-offsets"
                    .into(),
            ));
        }
        // Exactly one of --group and --all-groups names what to act on.
        let named = !self.group.is_empty();
        if !self.list && named == self.all_groups {
            return Err(ToolError::Usage(
                "Option [describe], [delete] or [reset-offsets] takes exactly one of these \
                 options: [all-groups], [group]"
                    .into(),
            ));
        }
        if self.list && (self.all_groups || named) {
            return Err(ToolError::Usage(
                "Option [list] takes neither [group] nor [all-groups]".into(),
            ));
        }
        let views = [self.offsets, self.members, self.state]
            .iter()
            .filter(|&&v| v)
            .count();
        if views > 1 || (views == 1 && !self.describe) {
            return Err(ToolError::Usage(
                "Option [describe] takes at most one of these options: [members], [offsets], \
                 [state]; they need [describe]"
                    .into(),
            ));
        }
        let scenarios: Vec<ResetTo> = [
            self.to_earliest.then_some(ResetTo::Earliest),
            self.to_latest.then_some(ResetTo::Latest),
            self.to_current.then_some(ResetTo::Current),
            self.to_offset.map(ResetTo::Offset),
            self.shift_by.map(ResetTo::ShiftBy),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !self.reset_offsets {
            if !scenarios.is_empty() || self.execute || self.dry_run || self.all_topics {
                return Err(ToolError::Usage(
                    "Options [to-*], [shift-by], [execute], [dry-run] and [all-topics] need \
                     [reset-offsets]"
                        .into(),
                ));
            }
        } else {
            let [to] = scenarios[..] else {
                return Err(ToolError::Usage(
                    "Option '[reset-offsets]' requires one of the following scenarios: \
                     [[shift-by], [to-offset], [to-earliest], [to-current], [to-latest]]"
                        .into(),
                ));
            };
            let topics_named = !self.topic.is_empty();
            if topics_named == self.all_topics {
                return Err(ToolError::Usage(
                    "Option [reset-offsets] takes exactly one of these options: [all-topics], \
                     [topic]"
                        .into(),
                ));
            }
            if self.execute && self.dry_run {
                return Err(ToolError::Usage(
                    "Option [execute] and [dry-run] cannot be used together".into(),
                ));
            }
            return Ok(Action::Reset(ResetPlan {
                to,
                topics: self.topic.clone(),
                all_topics: self.all_topics,
                execute: self.execute,
            }));
        }
        Ok(if self.list {
            Action::List
        } else if self.delete {
            Action::Delete
        } else if self.members {
            Action::Describe(View::Members)
        } else if self.state {
            Action::Describe(View::State)
        } else {
            Action::Describe(View::Offsets)
        })
    }
}

/// What `--describe` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    Offsets,
    Members,
    State,
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
    let action = args.action()?;
    let mut cluster =
        super::connect(&args.bootstrap_server, args.command_config.as_deref()).await?;
    if let Action::List = action {
        for g in list(&mut cluster).await? {
            println!("{g}");
        }
        return Ok(());
    }
    let groups: Vec<String> = if args.all_groups {
        list(&mut cluster).await?.into_iter().collect()
    } else {
        args.group.clone()
    };
    match action {
        Action::List => Ok(()),
        Action::Describe(view) => {
            for g in &groups {
                describe(&mut cluster, g, view).await?;
            }
            Ok(())
        }
        Action::Delete if groups.is_empty() => Ok(()),
        Action::Delete => delete(&mut cluster, &groups).await,
        Action::Reset(plan) => {
            if !plan.execute && !args.dry_run {
                eprintln!(
                    "WARN: No action will be performed as the --execute option is missing. \
                     Add --dry-run to keep this behaviour explicitly, or --execute to reset."
                );
            }
            for g in &groups {
                reset(&mut cluster, g, &plan).await?;
            }
            Ok(())
        }
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

async fn describe(cluster: &mut Cluster, group: &str, view: View) -> Result<(), ToolError> {
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
    if view == View::State {
        let addr = cluster
            .brokers()
            .into_iter()
            .find(|(id, _)| *id == coordinator)
            .map_or_else(|| "-".to_owned(), |(_, addr)| addr);
        let strategy = described.protocol_data.as_str();
        print!(
            "{}",
            format_state(&StateRow {
                group: group.to_owned(),
                coordinator: format!("{addr}  ({coordinator})"),
                strategy: if strategy.is_empty() { "-" } else { strategy }.to_owned(),
                state: described.group_state.as_str().to_owned(),
                members: described.members.len(),
            })
        );
        return Ok(());
    }
    if view == View::Members {
        let rows: Vec<MemberRow> = described
            .members
            .iter()
            .map(|m| MemberRow {
                group: group.to_owned(),
                consumer_id: m.member_id.as_str().to_owned(),
                host: m.client_host.as_str().to_owned(),
                client_id: m.client_id.as_str().to_owned(),
                partitions: decode_assignment(&m.member_assignment)
                    .map_or(0, |a| a.values().map(Vec::len).sum()),
            })
            .collect();
        print!("{}", format_members(&rows));
        return Ok(());
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

/// One line of `--describe --state`.
#[derive(Debug, Clone, PartialEq)]
pub struct StateRow {
    /// The group id.
    pub group: String,
    /// `host:port  (node id)` of the coordinator.
    pub coordinator: String,
    /// The assignor chosen, or `-`.
    pub strategy: String,
    /// The group state, e.g. `Stable`.
    pub state: String,
    /// The number of members.
    pub members: usize,
}

/// Kafka's `--describe --state` table.
pub fn format_state(r: &StateRow) -> String {
    let g = r.group.len().max(15);
    let c = r.coordinator.len().max(25);
    let line = |a: &str, b: &str, d: &str, e: &str, f: &str| {
        format!("\n{a:<g$} {b:<c$} {d:<20} {e:<20} {f}")
    };
    let mut out = line(
        "GROUP",
        "COORDINATOR (ID)",
        "ASSIGNMENT-STRATEGY",
        "STATE",
        "#MEMBERS",
    );
    out.push_str(&line(
        &r.group,
        &r.coordinator,
        &r.strategy,
        &r.state,
        &r.members.to_string(),
    ));
    out.push('\n');
    out
}

/// One line of `--describe --members`.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberRow {
    /// The group id.
    pub group: String,
    /// The member id.
    pub consumer_id: String,
    /// The member's host as the coordinator saw it.
    pub host: String,
    /// The member's client id.
    pub client_id: String,
    /// How many partitions it is assigned.
    pub partitions: usize,
}

/// Kafka's `--describe --members` table (each line ends in a space, as Kafka's does).
pub fn format_members(rows: &[MemberRow]) -> String {
    let width = |f: fn(&MemberRow) -> usize| rows.iter().map(f).max().unwrap_or(0).max(15);
    let (g, i, h, c) = (
        width(|r| r.group.len()),
        width(|r| r.consumer_id.len()),
        width(|r| r.host.len()),
        width(|r| r.client_id.len()),
    );
    let line = |a: &str, b: &str, d: &str, e: &str, f: &str| {
        format!("\n{a:<g$} {b:<i$} {d:<h$} {e:<c$} {f:<15} ")
    };
    let mut out = line("GROUP", "CONSUMER-ID", "HOST", "CLIENT-ID", "#PARTITIONS");
    for r in rows {
        out.push_str(&line(
            &r.group,
            &r.consumer_id,
            &r.host,
            &r.client_id,
            &r.partitions.to_string(),
        ));
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
    fn state_and_members_tables_match_kafkas_layout() {
        let state = format_state(&StateRow {
            group: "g7".into(),
            coordinator: "127.0.0.1:19092  (1)".into(),
            strategy: "range".into(),
            state: "Stable".into(),
            members: 1,
        });
        assert_eq!(
            state,
            "\nGROUP           COORDINATOR (ID)          ASSIGNMENT-STRATEGY  STATE                \
             #MEMBERS\ng7              127.0.0.1:19092  (1)      range                Stable    \
             \u{20}          1\n"
        );
        let members = format_members(&[MemberRow {
            group: "g7".into(),
            consumer_id: "c-1".into(),
            host: "/127.0.0.1".into(),
            client_id: "c".into(),
            partitions: 3,
        }]);
        assert_eq!(
            members,
            "\nGROUP           CONSUMER-ID     HOST            CLIENT-ID       #PARTITIONS     \
             \ng7              c-1             /127.0.0.1      c               3               \n"
        );
    }

    fn parse(argv: &[&str]) -> Result<Action, ToolError> {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let mut full = vec!["cg", "--bootstrap-server", "h:1"];
        full.extend_from_slice(argv);
        Cli::try_parse_from(full).unwrap().args.action()
    }

    #[test]
    fn flags_pick_one_action_as_kafka_consumer_groups_does() {
        assert!(matches!(parse(&["--list"]), Ok(Action::List)));
        assert!(matches!(
            parse(&["--describe", "--group", "g", "--state"]),
            Ok(Action::Describe(View::State))
        ));
        assert!(parse(&["--describe"]).is_err());
        assert!(parse(&["--describe", "--group", "g", "--all-groups"]).is_err());
        assert!(parse(&["--list", "--delete"]).is_err());
        assert!(parse(&["--delete", "--group", "g", "--members"]).is_err());
    }

    #[test]
    fn reset_offsets_needs_one_scenario_and_a_topic_choice() {
        let Ok(Action::Reset(plan)) = parse(&[
            "--reset-offsets",
            "--group",
            "g",
            "--shift-by",
            "-5",
            "--topic",
            "t:0,1",
            "--execute",
        ]) else {
            panic!("expected a reset");
        };
        assert_eq!(plan.to, ResetTo::ShiftBy(-5));
        assert!(plan.execute);
        assert!(parse(&["--reset-offsets", "--group", "g", "--all-topics"]).is_err());
        assert!(parse(&[
            "--reset-offsets",
            "--group",
            "g",
            "--to-earliest",
            "--to-latest",
            "--all-topics"
        ])
        .is_err());
        assert!(parse(&["--reset-offsets", "--group", "g", "--to-earliest"]).is_err());
        assert!(parse(&["--describe", "--group", "g", "--to-earliest"]).is_err());
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
