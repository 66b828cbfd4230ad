//! Consumer groups, as the coordinator knows them (no exporter needed): groups by state and
//! type, members, committed offsets and lag. Only the node coordinating a group reports it,
//! so summing over the cluster counts each group once.
//!
//! Lag is the partition's high watermark minus the committed offset, where this node leads the
//! partition or follows it in the ISR (a follower's high watermark trails the leader's by at
//! most one replica fetch). For partitions with no replica here, `docs/metrics.md` gives the
//! PromQL joining `gregor_consumer_group_committed_offset` with the leader's
//! `gregor_partition_high_watermark`.

use std::collections::BTreeMap;

use crate::cluster::Cluster;
use crate::group::GroupsView;

use super::{Limits, Scrape};

/// `high_watermark` minus `committed`, never negative (an offset committed past the high
/// watermark, e.g. after a truncation, is no lag), or `None` without a high watermark.
pub fn lag(high_watermark: Option<i64>, committed: i64) -> Option<i64> {
    high_watermark.map(|hw| (hw - committed).max(0))
}

/// Whether this node's high watermark of a partition in `state` is the leader's or trails it
/// by at most a replica fetch: it leads, or follows in the ISR (an out-of-sync follower's may
/// be arbitrarily old).
fn in_sync_here(state: &crate::cluster::image::PartitionImage, me: i32) -> bool {
    state.leader >= 0 && (state.leader == me || state.isr.contains(&me))
}

/// Adds the group families of `view` to `out`; the high watermarks come from `cluster`'s local
/// replicas.
pub fn scrape(view: &GroupsView, cluster: &Cluster, limits: &Limits, out: &mut Scrape) {
    let mut by_state: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for g in &view.listed {
        *by_state.entry((g.state, g.group_type)).or_default() += 1;
    }
    out.gauge(
        "gregor_consumer_groups",
        "Groups this broker coordinates",
        view.listed.len() as i64,
    );
    out.gauges(
        "gregor_consumer_groups_by_state",
        "Groups this broker coordinates, by state and type (classic, consumer, share)",
        &["state", "type"],
        by_state.iter().map(|((s, t), n)| (vec![*s, *t], *n)),
    );
    out.gauges(
        "gregor_consumer_group_members",
        "Members of each group this broker coordinates",
        &["group"],
        view.members
            .iter()
            .map(|(g, n)| (vec![g.as_str()], *n as i64)),
    );
    let me = cluster.config.node_id;
    let rows: Vec<(&str, &str, String, i64, Option<i64>)> = view
        .offsets
        .iter()
        .take(limits.partitions)
        .map(|(group, topic, partition, offset)| {
            let hw = cluster
                .partition(topic, *partition)
                .filter(|p| in_sync_here(&p.state(), me))
                .map(|p| p.high_watermark());
            (
                group.as_str(),
                topic.as_str(),
                partition.to_string(),
                *offset,
                lag(hw, *offset),
            )
        })
        .collect();
    let labels = ["group", "topic", "partition"];
    out.gauges(
        "gregor_consumer_group_committed_offset",
        "The offset each group committed, by partition",
        &labels,
        rows.iter()
            .map(|(g, t, p, o, _)| (vec![*g, *t, p.as_str()], *o)),
    );
    out.gauges(
        "gregor_consumer_group_lag",
        "High watermark minus committed offset, where this broker leads or follows in the ISR",
        &labels,
        rows.iter()
            .filter_map(|(g, t, p, _, lag)| Some((vec![*g, *t, p.as_str()], (*lag)?))),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_the_high_watermark_past_the_committed_offset_and_never_negative() {
        assert_eq!(lag(Some(100), 40), Some(60));
        assert_eq!(lag(Some(100), 100), Some(0));
        assert_eq!(
            lag(Some(80), 100),
            Some(0),
            "committed past a truncated log"
        );
        assert_eq!(lag(None, 5), None, "no replica here");
    }

    #[test]
    fn only_the_leader_and_in_sync_followers_know_the_high_watermark() {
        let state = crate::cluster::image::PartitionImage {
            replicas: vec![1, 2, 3],
            leader: 1,
            isr: vec![1, 2],
            ..Default::default()
        };
        assert!(in_sync_here(&state, 1));
        assert!(in_sync_here(&state, 2));
        assert!(!in_sync_here(&state, 3), "out of the ISR");
        let offline = crate::cluster::image::PartitionImage {
            leader: -1,
            ..state
        };
        assert!(!in_sync_here(&offline, 2), "no leader to trail");
    }
}
