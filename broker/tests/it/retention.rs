//! Retention and compaction on a running broker: time retention drops whole old segments, and
//! the compacted `__consumer_offsets` keeps every group's latest offset (idle groups included)
//! while shedding superseded commits, across a restart.

use std::time::{Duration, Instant};

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

use crate::protocol::{batch, create, produce};
use crate::support::{Broker, Conn};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn earliest(c: &mut Conn, topic: &str, partition: i32) -> i64 {
    let r = c.call(
        5,
        &ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(-2)])]),
    );
    r.topics[0].partitions[0].offset
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn time_retention_removes_whole_old_segments() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let b = Broker::start_in(
        &tmp.path().join("data"),
        &["log.retention.check.interval.ms=100"],
    );
    let mut c = Conn::connect(b.addr);
    assert_eq!(create(&mut c, "ret", 1).topics[0].error_code, 0);
    let r = c.call(
        0,
        &IncrementalAlterConfigsRequest::default().with_resources(vec![
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("ret"))
                .with_configs(vec![
                    incremental_alter_configs_request::AlterableConfig::default()
                        .with_name(s("segment.bytes"))
                        .with_config_operation(0)
                        .with_value(Some(s("1024"))),
                    incremental_alter_configs_request::AlterableConfig::default()
                        .with_name(s("retention.ms"))
                        .with_config_operation(0)
                        .with_value(Some(s("1000"))),
                ]),
        ]),
    );
    assert_eq!(r.responses[0].error_code, 0);
    // Record timestamps in `batch` are from 2023: far older than retention.ms.
    for _ in 0..40 {
        let (err, _) = produce(
            &mut c,
            "ret",
            0,
            1,
            batch(&["0123456789abcdef"; 4], None, Compression::None),
        );
        assert_eq!(err, 0);
    }
    wait_until("old segments to be deleted", || {
        earliest(&mut c, "ret", 0) > 0
    });
    let start = earliest(&mut c, "ret", 0);
    assert!(
        start < 160,
        "the active segment is never deleted (start {start})"
    );
}

#[test]
fn compacted_offsets_topic_keeps_idle_groups_and_sheds_old_commits() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let opts = [
        "offsets.topic.num.partitions=1",
        "offsets.topic.segment.bytes=2048",
        "log.retention.check.interval.ms=100",
    ];
    let b = Broker::start_in(&data, &opts);
    let mut c = Conn::connect(b.addr);
    assert_eq!(create(&mut c, "src", 1).topics[0].error_code, 0);
    let commit = |c: &mut Conn, group: &str, offset: i64| {
        let r = c.call(
            8,
            &OffsetCommitRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s("src")))
                    .with_partitions(vec![OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(offset)])]),
        );
        assert_eq!(r.topics[0].partitions[0].error_code, 0);
    };
    commit(&mut c, "idle", 42);
    for i in 0..400 {
        commit(&mut c, "busy", i);
    }
    // Compaction leaves the log start where it is but removes superseded commits: 401
    // single-record commit batches take over 36 KB; once compacted, the sealed segments hold
    // two keys and the active segment at most 2 KiB.
    let dir = data.join("__consumer_offsets-0");
    let size = || -> u64 {
        std::fs::read_dir(&dir)
            .map(|r| {
                r.filter_map(|e| e.ok())
                    .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                    .filter_map(|e| e.metadata().ok().map(|m| m.len()))
                    .sum()
            })
            .unwrap_or(0)
    };
    wait_until("__consumer_offsets to be compacted", || size() < 12_000);
    drop(c);
    assert!(b.stop().success());
    let b = Broker::start_in(&data, &opts);
    let mut c = Conn::connect(b.addr);
    for (group, want) in [("idle", 42), ("busy", 399)] {
        let r = c.call(
            7,
            &OffsetFetchRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(TopicName(s("src")))
                    .with_partition_indexes(vec![0])])),
        );
        assert_eq!(r.topics[0].partitions[0].committed_offset, want, "{group}");
    }
}
