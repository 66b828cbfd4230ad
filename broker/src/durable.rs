//! Small durable-file helpers shared by the quorum's log store and state machine and the
//! checkpoint files of the partition logs: replace a file atomically (write a temporary beside
//! it, fsync, rename, fsync the directory) so a crash leaves either the old or the new
//! content, never a torn mix; and read such a file back. All blocking: call from a blocking
//! thread.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The temporary a replacement of `path` is written to before the rename.
pub(crate) fn temp_path(path: &Path, tag: &str) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".{tag}.tmp"));
    path.with_file_name(name)
}

/// Writes `bytes` to `temp` and fsyncs it: the first half of a replacement.
pub(crate) fn write_synced(temp: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = File::create(temp)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Renames `temp` over `path` and fsyncs the directory so the rename itself is durable.
pub(crate) fn commit(temp: &Path, path: &Path) -> io::Result<()> {
    fs::rename(temp, path)?;
    sync_parent(path)
}

/// Replaces `path` with `bytes` atomically and durably.
pub(crate) fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temp = temp_path(path, "new");
    write_synced(&temp, bytes)?;
    commit(&temp, path)
}

/// Fsyncs the directory holding `path`, making creations, renames and removals in it durable.
pub(crate) fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

/// Fsyncs directory `dir`.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The content of `path`, or `None` if there is no such file.
pub(crate) fn read_optional(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes the temporaries in `dir` whose names start with `prefix`: leftovers of replacements
/// a crash interrupted before the rename.
pub(crate) fn remove_temporaries(dir: &Path, prefix: &str) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(prefix) && name.ends_with(".tmp") {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_file_holds_the_new_content_and_no_temporary_is_left() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("vote.json");
        replace(&path, b"one").expect("first write");
        replace(&path, b"two").expect("second write");
        assert_eq!(read_optional(&path).expect("read"), Some(b"two".to_vec()));
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("vote.json")]);
    }

    #[test]
    fn leftover_temporaries_with_the_prefix_are_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("snapshot.json");
        write_synced(&temp_path(&path, "abc"), b"partial").expect("temp");
        fs::write(dir.path().join("vote.json.new.tmp"), b"x").expect("other temp");
        remove_temporaries(dir.path(), "snapshot.json.").expect("cleanup");
        assert!(!temp_path(&path, "abc").exists());
        assert!(dir.path().join("vote.json.new.tmp").exists());
        assert_eq!(read_optional(&path).expect("read"), None);
    }
}
