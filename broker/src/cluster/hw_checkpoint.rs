//! The high-watermark checkpoint of one log dir, Kafka's `replication-offset-checkpoint`:
//! `topic partition high_watermark` lines for every partition log the dir holds, in the
//! checkpoint format of [`crate::log::checkpoint`]. It is rewritten every
//! `replica.high.watermark.checkpoint.interval.ms` and at a clean shutdown, so that a restarted
//! leader knows at once (up to that interval) which of its records are committed, instead of
//! starting from 0 and answering OFFSET_NOT_AVAILABLE until every ISR member has fetched again.

use std::collections::BTreeMap;
use std::path::Path;

use crate::log::checkpoint::{self, CheckpointError};

/// The file name inside each log dir, as in Kafka.
pub const FILE: &str = "replication-offset-checkpoint";

/// High watermarks by (topic, partition).
pub type HighWatermarks = BTreeMap<(String, i32), i64>;

/// Reads `<log_dir>/replication-offset-checkpoint`; an absent file holds nothing.
pub fn read(log_dir: &Path) -> Result<HighWatermarks, CheckpointError> {
    let path = log_dir.join(FILE);
    let mut out = HighWatermarks::new();
    for entry in checkpoint::read(&path, 3)?.unwrap_or_default() {
        match (entry[1].parse(), entry[2].parse()) {
            (Ok(partition), Ok(hw)) => {
                out.insert((entry[0].clone(), partition), hw);
            }
            _ => {
                return Err(CheckpointError::malformed(
                    &path,
                    "an entry is not `topic partition offset`",
                ))
            }
        }
    }
    Ok(out)
}

/// Replaces `<log_dir>/replication-offset-checkpoint` with `hws`, durably.
pub fn write(log_dir: &Path, hws: &HighWatermarks) -> Result<(), CheckpointError> {
    let entries: Vec<String> = hws
        .iter()
        .map(|((topic, partition), hw)| format!("{topic} {partition} {hw}"))
        .collect();
    checkpoint::write(&log_dir.join(FILE), &entries)
}

/// The high watermark a log opens with: the checkpointed one, kept within the log (a log cut
/// short by recovery cannot have committed more than it holds), else the log start (as Kafka
/// starts a log with no checkpoint).
pub fn restored(checkpointed: Option<i64>, log_start: i64, log_end: i64) -> i64 {
    checkpointed
        .unwrap_or(log_start)
        .clamp(log_start, log_end.max(log_start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn high_watermarks_round_trip_in_kafkas_format() {
        let d = tempfile::tempdir().expect("tempdir");
        assert!(read(d.path()).expect("absent file").is_empty());
        let hws: HighWatermarks = [(("orders".to_string(), 2), 42), (("a.b".to_string(), 0), 0)]
            .into_iter()
            .collect();
        write(d.path(), &hws).expect("write");
        assert_eq!(
            std::fs::read_to_string(d.path().join(FILE)).expect("text"),
            "0\n2\na.b 0 0\norders 2 42\n"
        );
        assert_eq!(read(d.path()).expect("read"), hws);
        write(d.path(), &HighWatermarks::new()).expect("rewrite");
        assert!(read(d.path()).expect("read").is_empty(), "replaced whole");
    }

    #[test]
    fn an_entry_that_is_not_topic_partition_offset_is_refused() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::write(d.path().join(FILE), "0\n1\norders x 42\n").expect("write");
        assert!(matches!(
            read(d.path()),
            Err(CheckpointError::Malformed { .. })
        ));
    }

    #[test]
    fn a_restored_high_watermark_stays_within_the_log() {
        assert_eq!(restored(Some(42), 0, 100), 42);
        assert_eq!(restored(Some(42), 0, 30), 30, "recovery cut the log short");
        assert_eq!(restored(Some(5), 10, 30), 10, "below the log start");
        assert_eq!(restored(None, 10, 30), 10, "no checkpoint: the log start");
    }
}
