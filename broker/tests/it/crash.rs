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
