//! Crash recovery of a real process: SIGKILL after acknowledged writes, a torn tail written
//! on top, restart: every acknowledged record is readable, the tail is cut, appends continue.

use std::io::Write;
use std::path::Path;

use kafka_protocol::records::Compression;

use crate::protocol::{batch, create, fetch_values, produce};
use crate::support::{Broker, Conn};

fn newest_segment(dir: &Path) -> std::path::PathBuf {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .expect("partition dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    logs.pop().expect("a segment")
}

#[test]
fn sigkill_then_torn_tail_loses_nothing_acknowledged() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let mut b = Broker::start_in(&data, &["log.segment.bytes=4096"]);
    let mut c = Conn::connect(b.addr);
    assert_eq!(create(&mut c, "crash", 1).topics[0].error_code, 0);
    let mut acked = Vec::new();
    for i in 0..200 {
        let v = format!("record-{i:04}-{}", "x".repeat(40));
        let (err, base) = produce(
            &mut c,
            "crash",
            0,
            -1,
            batch(&[&v], None, Compression::None),
        );
        assert_eq!(err, 0);
        assert_eq!(base, i);
        acked.push(v);
    }
    b.child.kill().expect("SIGKILL");
    b.child.wait().expect("reaped");
    // A torn write: half a batch header and garbage at the end of the newest segment.
    let seg = newest_segment(&data.join("crash-0"));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&seg)
        .expect("open segment");
    f.write_all(&[0, 0, 0, 0, 0, 0, 0, 200, 0, 0, 1, 0, 0xde, 0xad, 0xbe])
        .expect("torn write");
    drop(f);
    let b = Broker::start_in(&data, &["log.segment.bytes=4096"]);
    let mut c = Conn::connect(b.addr);
    let mut got = Vec::new();
    let mut next = 0;
    while next < 200 {
        let (err, recs) = fetch_values(&mut c, "crash", 0, next);
        assert_eq!(err, 0);
        assert!(!recs.is_empty(), "nothing readable at offset {next}");
        for (o, v) in recs {
            assert_eq!(o, next);
            got.push(v);
            next += 1;
        }
    }
    assert_eq!(got, acked);
    let (err, base) = produce(
        &mut c,
        "crash",
        0,
        -1,
        batch(&["after"], None, Compression::None),
    );
    assert_eq!(
        (err, base),
        (0, 200),
        "appends continue right after the cut tail"
    );
}

/// The follower's fetch loop against a real broker ends with a log byte-identical to the
/// leader's, leader epochs included, and picks up later appends. A single node has no other
/// replica, and refuses replica fetches from brokers outside the replica set as Kafka does, so
/// the copy fetches as a consumer would; on one node the high watermark is the log end.
#[test]
fn a_replica_fetcher_copies_the_leaders_log_exactly() {
    let b = Broker::start();
    let mut c = Conn::connect(b.addr);
    assert_eq!(create(&mut c, "repl", 1).topics[0].error_code, 0);
    for i in 0..30 {
        let v = format!("r{i}");
        assert_eq!(
            produce(
                &mut c,
                "repl",
                0,
                -1,
                batch(&[&v, "x"], None, Compression::Lz4)
            )
            .0,
            0
        );
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = gregor::log::PartitionLog::open(dir.path(), Default::default()).expect("open");
    rt.block_on(async {
        let mut client = gregor_client::Client::connect(&b.addr.to_string())
            .await
            .expect("connect");
        let refused =
            gregor::replication::fetcher::fetch_once(&mut client, 2, "repl", 0, &mut log, 100)
                .await;
        assert!(
            matches!(
                refused,
                Err(gregor::replication::fetcher::FetchError::Leader {
                    error: kafka_protocol::ResponseError::NotLeaderOrFollower,
                    ..
                })
            ),
            "broker 2 is no replica of repl-0: {refused:?}"
        );
        let mut last = None;
        while log.log_end_offset() < 60 {
            let p =
                gregor::replication::fetcher::fetch_once(&mut client, -1, "repl", 0, &mut log, 100)
                    .await
                    .expect("fetch");
            assert!(
                last != Some(p.log_end_offset) || p.appended > 0,
                "no progress"
            );
            last = Some(p.log_end_offset);
        }
        assert_eq!(
            produce(
                &mut c,
                "repl",
                0,
                -1,
                batch(&["late"], None, Compression::None)
            )
            .0,
            0
        );
        let p =
            gregor::replication::fetcher::fetch_once(&mut client, -1, "repl", 0, &mut log, 1000)
                .await
                .expect("fetch the late batch");
        assert_eq!(
            (p.appended, p.log_end_offset, p.leader_high_watermark),
            (1, 61, 61)
        );
    });
    let (_, leader_records) = fetch_values(&mut c, "repl", 0, 0);
    let local = log.read(0, 1 << 20, log.log_end_offset()).expect("read");
    let mut follower_records = Vec::new();
    let mut bytes = local.clone();
    for set in kafka_protocol::records::RecordBatchDecoder::decode_all(&mut bytes).expect("decode")
    {
        for r in set.records {
            follower_records.push((
                r.offset,
                String::from_utf8_lossy(&r.value.unwrap_or_default()).to_string(),
            ));
        }
    }
    assert_eq!(follower_records, leader_records);
    assert_eq!(
        log.end_offset_for_epoch(0),
        Some((0, 61)),
        "the leader's epoch came along"
    );
}
