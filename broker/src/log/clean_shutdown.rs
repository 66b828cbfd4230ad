//! The clean-shutdown marker of a log dir, as Kafka's `.kafka_cleanshutdown`: written (durably)
//! by a node that stopped after flushing every log in the dir, and removed as the next start
//! opens the dir. Its logs were whole when the marker was written, so that start trusts them
//! (no CRC pass over the newest segment, nothing to fsync before they change again); without
//! it, every newest segment is verified batch by batch and cut at the first invalid one.

use std::path::{Path, PathBuf};

use crate::durable;

/// The marker's file name in a log dir.
pub const MARKER: &str = ".gregor_cleanshutdown";

/// How the last run of a node left a log dir.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Every log was flushed and closed: trust what is on disk.
    Clean,
    /// A crash, a kill, or a stop that could not flush everything: recover.
    Unclean,
}

/// Removes the markers of `dirs` and returns the dirs that had one. The removal is made
/// durable before anything in the dir is written, so a crash from here on finds no marker.
pub fn take(dirs: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut clean = Vec::new();
    for dir in dirs {
        let marker = dir.join(MARKER);
        match std::fs::remove_file(&marker) {
            Ok(()) => {
                durable::sync_dir(dir)?;
                clean.push(dir.clone());
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(clean)
}

/// Writes the markers of `dirs`, durably: call after every log in them has been flushed.
pub fn mark(dirs: &[PathBuf]) -> std::io::Result<()> {
    for dir in dirs {
        durable::replace(&dir.join(MARKER), b"")?;
    }
    Ok(())
}

/// How the log dir holding the partition directory `partition_dir` was left, given the
/// `clean` dirs [`take`] found.
pub fn of(partition_dir: &Path, clean: &[PathBuf]) -> Shutdown {
    match partition_dir.parent() {
        Some(dir) if clean.iter().any(|c| c == dir) => Shutdown::Clean,
        _ => Shutdown::Unclean,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_is_taken_once() {
        let d = tempfile::tempdir().expect("tempdir");
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        for dir in [&a, &b] {
            std::fs::create_dir(dir).expect("dir");
        }
        mark(std::slice::from_ref(&a)).expect("mark");
        let dirs = [a.clone(), b.clone()];
        assert_eq!(take(&dirs).expect("take"), vec![a.clone()]);
        assert!(!a.join(MARKER).exists());
        assert_eq!(take(&dirs).expect("take again"), Vec::<PathBuf>::new());
        let clean = [a.clone()];
        assert_eq!(of(&a.join("t-0"), &clean), Shutdown::Clean);
        assert_eq!(of(&b.join("t-0"), &clean), Shutdown::Unclean);
    }
}
