//! `gregor consumer-groups --reset-offsets`: moves an inactive group's committed offsets
//! (to the earliest, the latest, the current, a given or a shifted offset), printing the plan
//! as Kafka does and committing it only with `--execute`.

use std::collections::{BTreeMap, BTreeSet};

use gregor_client::{Cluster, CoordinatorType};
use kafka_protocol::messages::{DescribeGroupsRequest, GroupId};
use kafka_protocol::protocol::StrBytes;

use super::fetcher::{list_offsets, Layout, Tp, EARLIEST, LATEST};
use super::group::{commit_offsets, committed_offsets};
use super::ToolError;

/// Where to move each offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    /// The log start.
    Earliest,
    /// The log end.
    Latest,
    /// The committed offset (the log end where there is none).
    Current,
    /// A fixed offset, clamped into the log.
    Offset(i64),
    /// The committed offset moved by this much, clamped into the log.
    ShiftBy(i64),
}

/// What to reset, from the flags.
#[derive(Debug, Clone)]
pub struct ResetPlan {
    /// Where to.
    pub to: ResetTo,
    /// `--topic` values: `topic` or `topic:0,1`.
    pub topics: Vec<String>,
    /// `--all-topics`: every topic the group has offsets for.
    pub all_topics: bool,
    /// Commit the new offsets (otherwise only print them).
    pub execute: bool,
}

/// The new offset of one partition, or why it cannot be computed.
pub fn new_offset(
    to: ResetTo,
    tp: &Tp,
    committed: Option<i64>,
    earliest: i64,
    latest: i64,
) -> Result<i64, ToolError> {
    let clamp = |o: i64| o.clamp(earliest, latest.max(earliest));
    Ok(match to {
        ResetTo::Earliest => earliest,
        ResetTo::Latest => latest,
        ResetTo::Current => committed.unwrap_or(latest),
        ResetTo::Offset(o) => clamp(o),
        ResetTo::ShiftBy(by) => {
            let current = committed.ok_or_else(|| {
                ToolError::Failed(format!(
                    "Cannot shift offset for partition {}-{} since there is no current \
                     committed offset",
                    tp.0, tp.1
                ))
            })?;
            clamp(current.saturating_add(by))
        }
    })
}

/// Parses `topic` or `topic:0,1,2`.
pub fn parse_topic_partitions(spec: &str) -> Result<(String, Option<Vec<i32>>), ToolError> {
    match spec.split_once(':') {
        None => Ok((spec.to_owned(), None)),
        Some((topic, parts)) => {
            let parts = parts
                .split(',')
                .map(|p| p.trim().parse::<i32>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| {
                    ToolError::Usage(format!(
                        "Invalid --topic '{spec}': expected topic or topic:partition,partition"
                    ))
                })?;
            Ok((topic.to_owned(), Some(parts)))
        }
    }
}

/// Resets `group`'s offsets per `plan` and prints the new offsets.
pub async fn reset(cluster: &mut Cluster, group: &str, plan: &ResetPlan) -> Result<(), ToolError> {
    let coordinator = cluster.coordinator(group, CoordinatorType::Group).await?;
    if plan.execute {
        let req = DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(StrBytes::from_string(group.to_owned()))]);
        let resp = cluster.broker(coordinator).await?.send(req).await?;
        if let Some(g) = resp.groups.iter().find(|g| g.group_id.as_str() == group) {
            let state = g.group_state.as_str();
            if !matches!(state, "Empty" | "Dead" | "") {
                return Err(ToolError::Failed(format!(
                    "Assignments can only be reset if the group '{group}' is inactive, but the \
                     current state is {state}."
                )));
            }
        }
    }
    let committed = committed_offsets(cluster, coordinator, group, None).await?;
    // --all-topics means the partitions the group has offsets for, as in Kafka.
    let mut wanted: BTreeMap<String, Option<BTreeSet<i32>>> = BTreeMap::new();
    if plan.all_topics {
        for (t, p) in committed.keys() {
            wanted
                .entry(t.clone())
                .or_insert_with(|| Some(BTreeSet::new()))
                .get_or_insert_with(BTreeSet::new)
                .insert(*p);
        }
    }
    for spec in &plan.topics {
        let (topic, parts) = parse_topic_partitions(spec)?;
        wanted.insert(topic, parts.map(|p| p.into_iter().collect()));
    }
    let topics: Vec<String> = wanted.keys().cloned().collect();
    if topics.is_empty() {
        return Ok(());
    }
    let layout = Layout::load(cluster, &topics).await?;
    let tps: Vec<Tp> = layout
        .all_partitions()
        .into_iter()
        .filter(|(t, p)| {
            wanted
                .get(t)
                .is_some_and(|parts| parts.as_ref().is_none_or(|ps| ps.contains(p)))
        })
        .collect();
    let earliest = list_offsets(cluster, &layout, &tps, EARLIEST).await?;
    let latest = list_offsets(cluster, &layout, &tps, LATEST).await?;
    let mut plan_offsets = BTreeMap::new();
    for tp in &tps {
        let e = earliest.get(tp).copied().unwrap_or(0);
        let l = latest.get(tp).copied().unwrap_or(e);
        let offset = new_offset(plan.to, tp, committed.get(tp).copied(), e, l)?;
        plan_offsets.insert(tp.clone(), offset);
    }
    if plan.execute {
        commit_offsets(cluster, coordinator, group, None, &plan_offsets).await?;
    }
    print!("{}", format_reset(group, &plan_offsets));
    Ok(())
}

/// Kafka's reset table: GROUP, TOPIC, PARTITION, NEW-OFFSET.
pub fn format_reset(group: &str, offsets: &BTreeMap<Tp, i64>) -> String {
    let g = group.len().max(15);
    let t = offsets
        .keys()
        .map(|(t, _)| t.len())
        .max()
        .unwrap_or(0)
        .max(15);
    let mut out = format!(
        "\n{:<g$} {:<t$} {:<10} {}",
        "GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"
    );
    for ((topic, p), o) in offsets {
        out.push_str(&format!("\n{group:<g$} {topic:<t$} {p:<10} {o}"));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp() -> Tp {
        ("t".into(), 2)
    }

    #[test]
    fn offsets_are_clamped_into_the_log() {
        assert_eq!(
            new_offset(ResetTo::Offset(3), &tp(), None, 0, 0).unwrap(),
            0
        );
        assert_eq!(
            new_offset(ResetTo::Offset(3), &tp(), None, 5, 9).unwrap(),
            5
        );
        assert_eq!(
            new_offset(ResetTo::ShiftBy(-5), &tp(), Some(400), 0, 900).unwrap(),
            395
        );
        assert_eq!(
            new_offset(ResetTo::ShiftBy(50), &tp(), Some(890), 0, 900).unwrap(),
            900
        );
        assert_eq!(new_offset(ResetTo::Current, &tp(), None, 0, 7).unwrap(), 7);
        assert_eq!(
            new_offset(ResetTo::Earliest, &tp(), Some(4), 2, 7).unwrap(),
            2
        );
    }

    #[test]
    fn shifting_without_a_committed_offset_names_the_partition() {
        let err = new_offset(ResetTo::ShiftBy(1), &tp(), None, 0, 7).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Cannot shift offset for partition t-2 since there is no current committed offset"
        );
    }

    #[test]
    fn topic_specs_take_optional_partition_lists() {
        assert_eq!(parse_topic_partitions("t").unwrap(), ("t".into(), None));
        assert_eq!(
            parse_topic_partitions("t:0,2").unwrap(),
            ("t".into(), Some(vec![0, 2]))
        );
        assert!(parse_topic_partitions("t:x").is_err());
    }

    #[test]
    fn reset_table_matches_kafkas_layout() {
        let offsets = BTreeMap::from([(("t3".to_string(), 1), 1100)]);
        assert_eq!(
            format_reset("gk", &offsets),
            "\nGROUP           TOPIC           PARTITION  NEW-OFFSET\n\
             gk              t3              1          1100\n"
        );
    }
}
