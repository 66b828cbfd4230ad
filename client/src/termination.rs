//! The reason a failed command leaves for Kubernetes. A pod's status shows an init
//! container's termination message; the kubelet takes it from a file the container wrote
//! (`terminationMessagePath`), else, with `FallbackToLogsOnError`, from the container's last
//! log lines. The log fallback races the log's last write: under load the kubelet can read
//! the log before the error line reaches it and report a bare exit code. A command run with
//! [`TERMINATION_LOG_ENV`] set writes its error to that file before it exits, so the message
//! is there when the kubelet looks.

use std::path::Path;

/// The environment variable naming the file a failed command writes its error to. The
/// operator sets it, to the container's `terminationMessagePath`, on the init containers
/// whose failures it reports.
pub const TERMINATION_LOG_ENV: &str = "GREGOR_TERMINATION_LOG";

/// The most the kubelet keeps of a termination message, in bytes.
const LIMIT: usize = 4096;

/// Writes `message` to the file named by [`TERMINATION_LOG_ENV`], when it is set. Best
/// effort: the error also goes to stderr, so a file that cannot be written only costs the
/// race this exists to win, and is said on stderr.
pub fn record(message: &str) {
    if let Some(path) = std::env::var_os(TERMINATION_LOG_ENV) {
        if let Err(e) = write(Path::new(&path), message) {
            eprintln!(
                "cannot write the termination message to {}: {e}",
                Path::new(&path).display()
            );
        }
    }
}

/// Writes the first [`LIMIT`] bytes of `message` (cut at a character boundary) to `path`.
fn write(path: &Path, message: &str) -> std::io::Result<()> {
    let mut end = message.len().min(LIMIT);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    std::fs::write(path, &message[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_message_is_cut_to_the_kubelet_limit_at_a_character_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("termination-log");
        let message = format!("error: {}", "é".repeat(LIMIT));
        write(&path, &message).unwrap();
        let written = std::fs::read_to_string(&path).unwrap();
        assert!(written.len() <= LIMIT && written.len() > LIMIT - 2);
        assert!(message.starts_with(&written));
    }

    #[test]
    fn a_short_message_is_written_whole_over_what_was_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("termination-log");
        std::fs::write(&path, "an older, longer message").unwrap();
        write(&path, "error: the cluster id differs").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "error: the cluster id differs"
        );
    }
}
