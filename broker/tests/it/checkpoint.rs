//! The high-watermark checkpoint of a real process (`<log.dir>/replication-offset-checkpoint`):
//! rewritten every `replica.high.watermark.checkpoint.interval.ms` while it runs, and once more
//! at a clean shutdown.

use std::path::Path;
use std::time::{Duration, Instant};

use kafka_protocol::records::Compression;

use crate::protocol::{batch, create, produce};
use crate::support::{Broker, Conn};

const FILE: &str = "replication-offset-checkpoint";

fn checkpoint(data: &Path) -> Option<String> {
    std::fs::read_to_string(data.join(FILE)).ok()
}

/// Starts a node on `data` with this checkpoint interval, creates `hw` and appends `n`
/// records to it.
fn node_with_records(data: &Path, interval_ms: u64, n: usize) -> Broker {
    let interval = format!("replica.high.watermark.checkpoint.interval.ms={interval_ms}");
    let b = Broker::start_in(data, &[&interval]);
    let mut c = Conn::connect(b.addr);
    assert_eq!(create(&mut c, "hw", 1).topics[0].error_code, 0);
    for i in 0..n {
        let v = format!("record-{i}");
        let records = batch(&[&v], None, Compression::None);
        assert_eq!(produce(&mut c, "hw", 0, -1, records).0, 0);
    }
    b
}

#[test]
fn high_watermarks_are_checkpointed_periodically_while_the_node_runs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let b = node_with_records(&data, 100, 3);
    let deadline = Instant::now() + Duration::from_secs(10);
    while checkpoint(&data).as_deref() != Some("0\n1\nhw 0 3\n") {
        assert!(
            Instant::now() < deadline,
            "no checkpoint of hw-0 at 3: {:?}",
            checkpoint(&data)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(b.stop().success());
}

#[test]
fn a_clean_shutdown_checkpoints_the_last_high_watermarks() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    // An hour between periodic checkpoints: only the shutdown writes one.
    let b = node_with_records(&data, 3_600_000, 5);
    assert_eq!(checkpoint(&data), None);
    assert!(b.stop().success());
    assert_eq!(checkpoint(&data).as_deref(), Some("0\n1\nhw 0 5\n"));
}
