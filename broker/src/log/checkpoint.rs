//! Kafka's checkpoint file format, shared by the per-partition `leader-epoch-checkpoint` and
//! the per-log-dir `replication-offset-checkpoint`: a version line (0), a count line, then one
//! entry per line with its fields separated by spaces. Files are replaced whole — written to a
//! temp file, fsynced, renamed over the old one and the directory fsynced — so a crash leaves
//! the old checkpoint or the new one, never a torn mix.

use std::path::{Path, PathBuf};

use crate::durable;

/// The only version Kafka writes for these files.
const VERSION: &str = "0";

/// Why a checkpoint file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// File system failure.
    #[error("i/o error on {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not in Kafka's checkpoint format.
    #[error("{path} is not a checkpoint file: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl CheckpointError {
    /// A [`CheckpointError::Malformed`] for `path`.
    pub fn malformed(path: &Path, reason: impl Into<String>) -> CheckpointError {
        CheckpointError::Malformed {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

/// The entries of the checkpoint at `path`, each split into exactly `fields` fields; `None`
/// when there is no such file.
pub fn read(path: &Path, fields: usize) -> Result<Option<Vec<Vec<String>>>, CheckpointError> {
    let Some(bytes) = durable::read_optional(path).map_err(io(path))? else {
        return Ok(None);
    };
    let text =
        String::from_utf8(bytes).map_err(|_| CheckpointError::malformed(path, "not UTF-8"))?;
    let mut lines = text.lines();
    if lines.next().map(str::trim) != Some(VERSION) {
        return Err(CheckpointError::malformed(path, "unknown version"));
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| CheckpointError::malformed(path, "no entry count"))?;
    let mut entries = Vec::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        let line = lines
            .next()
            .ok_or_else(|| CheckpointError::malformed(path, "fewer entries than its count"))?;
        let entry: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        if entry.len() != fields {
            return Err(CheckpointError::malformed(
                path,
                format!("an entry has {} fields, not {fields}", entry.len()),
            ));
        }
        entries.push(entry);
    }
    Ok(Some(entries))
}

/// Replaces the checkpoint at `path` with `entries` (each one line, fields already joined by
/// spaces), durably.
pub fn write(path: &Path, entries: &[String]) -> Result<(), CheckpointError> {
    let mut text = format!("{VERSION}\n{}\n", entries.len());
    for e in entries {
        text.push_str(e);
        text.push('\n');
    }
    durable::replace(path, text.as_bytes()).map_err(io(path))
}

/// A [`CheckpointError::Io`] maker for `path`.
fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError {
    let path = path.to_path_buf();
    move |source| CheckpointError::Io { path, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_in_kafkas_layout() {
        let d = tempfile::tempdir().expect("tempdir");
        let path = d.path().join("cp");
        assert!(read(&path, 2).expect("absent").is_none());
        write(&path, &["a 1".into(), "b 2".into()]).expect("write");
        assert_eq!(
            std::fs::read_to_string(&path).expect("text"),
            "0\n2\na 1\nb 2\n"
        );
        assert_eq!(
            read(&path, 2).expect("read"),
            Some(vec![
                vec!["a".into(), "1".into()],
                vec!["b".into(), "2".into()]
            ])
        );
    }

    #[test]
    fn a_wrong_version_count_or_field_count_is_malformed() {
        let d = tempfile::tempdir().expect("tempdir");
        let path = d.path().join("cp");
        for text in ["1\n0\n", "0\nx\n", "0\n2\na 1\n", "0\n1\na 1 2\n"] {
            std::fs::write(&path, text).expect("write");
            assert!(
                matches!(read(&path, 2), Err(CheckpointError::Malformed { .. })),
                "{text:?}"
            );
        }
    }
}
