//! Storage identity: Kafka-form ids (`random-uuid`) and `meta.properties` in every log dir,
//! written by `gregor storage format` and checked by `server-start`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;

/// Why formatting or checking storage failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// File system failure.
    #[error("i/o error on {path}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The id given to `format -t` is not a Kafka-form id.
    #[error("cluster id {0:?} is not a valid id: expected 22 characters of base64url (use `gregor storage random-uuid`)")]
    BadClusterId(String),
    /// The dir is already formatted (and `--ignore-formatted` was not given).
    #[error("log directory {dir} is already formatted (cluster id {cluster_id}); use --ignore-formatted to skip it")]
    AlreadyFormatted {
        /// The dir.
        dir: PathBuf,
        /// Its cluster id.
        cluster_id: String,
    },
    /// The dir belongs to another cluster.
    #[error("log directory {dir} belongs to cluster {found}, not {expected}")]
    ClusterIdMismatch {
        /// The dir.
        dir: PathBuf,
        /// The cluster id in its meta.properties.
        found: String,
        /// The cluster id asked for.
        expected: String,
    },
    /// The dir belongs to another node.
    #[error("log directory {dir} belongs to node {found}, not node.id {expected}")]
    NodeIdMismatch {
        /// The dir.
        dir: PathBuf,
        /// The node id in its meta.properties.
        found: String,
        /// This node's id.
        expected: i32,
    },
    /// `server-start` on a dir without meta.properties.
    #[error("log directory {0} is not formatted: run `gregor storage format -t <cluster-id> -c <config>` first")]
    NotFormatted(PathBuf),
    /// meta.properties lacks a field.
    #[error("{path} has no {field}")]
    Incomplete {
        /// The file.
        path: PathBuf,
        /// The missing field.
        field: &'static str,
    },
    /// The log dirs of one node name different clusters.
    #[error("log directories disagree on the cluster id: {0} and {1}")]
    MixedClusters(String, String),
}

/// A new Kafka-form id: a version-4 UUID's 16 bytes as unpadded base64url (22 characters),
/// re-rolled when it starts with '-' or is one of the reserved all-zero / 0…01 ids.
pub fn random_uuid() -> String {
    loop {
        let id = uuid::Uuid::new_v4();
        let bytes = id.as_bytes();
        let n = u128::from_be_bytes(*bytes);
        if n <= 1 {
            continue;
        }
        let s = encode_id(bytes);
        if !s.starts_with('-') {
            return s;
        }
    }
}

/// Encodes 16 bytes in Kafka's id form.
pub fn encode_id(bytes: &[u8; 16]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes a Kafka-form id back to its 16 bytes.
pub fn decode_id(s: &str) -> Option<[u8; 16]> {
    if s.len() != 22 {
        return None;
    }
    let v = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()?;
    v.try_into().ok()
}

/// `meta.properties` of one log dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaProperties {
    /// `cluster.id`.
    pub cluster_id: String,
    /// `node.id`.
    pub node_id: i32,
    /// `directory.id`.
    pub directory_id: String,
}

const META_FILE: &str = "meta.properties";

impl MetaProperties {
    /// Reads `<dir>/meta.properties`; `Ok(None)` if the dir is not formatted.
    pub fn read(dir: &Path) -> Result<Option<MetaProperties>, StorageError> {
        let path = dir.join(META_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StorageError::Io { path, source }),
        };
        let map = crate::config::parse_properties(&text);
        let field = |f: &'static str| {
            map.get(f).cloned().ok_or(StorageError::Incomplete {
                path: path.clone(),
                field: f,
            })
        };
        Ok(Some(MetaProperties {
            cluster_id: field("cluster.id")?,
            node_id: field("node.id")?
                .parse()
                .map_err(|_| StorageError::Incomplete {
                    path: path.clone(),
                    field: "node.id",
                })?,
            directory_id: map.get("directory.id").cloned().unwrap_or_default(),
        }))
    }

    /// Writes `<dir>/meta.properties` atomically (temp file, fsync, rename, fsync dir).
    pub fn write(&self, dir: &Path) -> Result<(), StorageError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StorageError::Io { path, source }
        };
        fs::create_dir_all(dir).map_err(io(dir))?;
        let mut map = BTreeMap::new();
        map.insert("cluster.id", self.cluster_id.clone());
        map.insert("node.id", self.node_id.to_string());
        map.insert("directory.id", self.directory_id.clone());
        map.insert("version", "1".to_string());
        let mut text = String::from("#\n#Written by gregor storage format\n");
        for (k, v) in map {
            text.push_str(&format!("{k}={v}\n"));
        }
        let tmp = dir.join("meta.properties.tmp");
        let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(text.as_bytes()).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        let dst = dir.join(META_FILE);
        fs::rename(&tmp, &dst).map_err(io(&dst))?;
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
        Ok(())
    }
}

/// What `format` did to one dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatOutcome {
    /// meta.properties written.
    Formatted,
    /// Already formatted for this cluster and node; left alone (`--ignore-formatted`).
    AlreadyFormatted,
}

/// Formats every dir in `dirs` for `cluster_id` / `node_id`.
pub fn format(
    dirs: &[PathBuf],
    cluster_id: &str,
    node_id: i32,
    ignore_formatted: bool,
) -> Result<Vec<(PathBuf, FormatOutcome)>, StorageError> {
    if decode_id(cluster_id).is_none() {
        return Err(StorageError::BadClusterId(cluster_id.to_string()));
    }
    // Check every dir before writing any, so a mismatch leaves nothing half-formatted.
    let mut plan = Vec::new();
    for dir in dirs {
        match MetaProperties::read(dir)? {
            None => plan.push((dir.clone(), true)),
            Some(m) if m.cluster_id != cluster_id => {
                return Err(StorageError::ClusterIdMismatch {
                    dir: dir.clone(),
                    found: m.cluster_id,
                    expected: cluster_id.to_string(),
                })
            }
            Some(m) if m.node_id != node_id => {
                return Err(StorageError::NodeIdMismatch {
                    dir: dir.clone(),
                    found: m.node_id.to_string(),
                    expected: node_id,
                })
            }
            Some(m) if !ignore_formatted => {
                return Err(StorageError::AlreadyFormatted {
                    dir: dir.clone(),
                    cluster_id: m.cluster_id,
                })
            }
            Some(_) => plan.push((dir.clone(), false)),
        }
    }
    let mut out = Vec::new();
    for (dir, write) in plan {
        if write {
            MetaProperties {
                cluster_id: cluster_id.to_string(),
                node_id,
                directory_id: random_uuid(),
            }
            .write(&dir)?;
            out.push((dir, FormatOutcome::Formatted));
        } else {
            out.push((dir, FormatOutcome::AlreadyFormatted));
        }
    }
    Ok(out)
}

/// The file, in the metadata log dir, holding the credentials `format --add-scram` gave
/// (salted, never the passwords): Kafka's `bootstrap.checkpoint`, as JSON.
pub const BOOTSTRAP_FILE: &str = "bootstrap.json";

/// Writes the bootstrap credentials into `dir` (replacing any), durably.
pub fn write_bootstrap(
    dir: &Path,
    scram: &[crate::sasl::bootstrap::BootstrapCredential],
) -> Result<(), StorageError> {
    let path = dir.join(BOOTSTRAP_FILE);
    let json = serde_json::to_vec_pretty(scram).map_err(|e| StorageError::Io {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    crate::durable::replace(&path, &json).map_err(|source| StorageError::Io { path, source })
}

/// The bootstrap credentials in `dir` (none when it has no bootstrap file).
pub fn read_bootstrap(
    dir: &Path,
) -> Result<Vec<crate::sasl::bootstrap::BootstrapCredential>, StorageError> {
    let path = dir.join(BOOTSTRAP_FILE);
    let io = |source| StorageError::Io {
        path: path.clone(),
        source,
    };
    match crate::durable::read_optional(&path).map_err(io)? {
        None => Ok(Vec::new()),
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| io(std::io::Error::other(e))),
    }
}

/// Checks that every dir is formatted for one cluster and this node; returns the cluster id.
pub fn check(dirs: &[PathBuf], node_id: i32) -> Result<String, StorageError> {
    let mut cluster: Option<String> = None;
    for dir in dirs {
        let m =
            MetaProperties::read(dir)?.ok_or_else(|| StorageError::NotFormatted(dir.clone()))?;
        if m.node_id != node_id {
            return Err(StorageError::NodeIdMismatch {
                dir: dir.clone(),
                found: m.node_id.to_string(),
                expected: node_id,
            });
        }
        match &cluster {
            Some(c) if *c != m.cluster_id => {
                return Err(StorageError::MixedClusters(c.clone(), m.cluster_id))
            }
            _ => cluster = Some(m.cluster_id),
        }
    }
    cluster.ok_or_else(|| StorageError::NotFormatted(PathBuf::from("<no log.dirs>")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_uuid_has_kafka_form() {
        for _ in 0..200 {
            let id = random_uuid();
            assert_eq!(id.len(), 22);
            assert!(!id.starts_with('-'));
            assert!(id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
            assert!(decode_id(&id).is_some());
        }
    }

    #[test]
    fn bootstrap_credentials_round_trip_without_the_password() {
        let d = tempfile::tempdir().expect("tempdir");
        assert!(read_bootstrap(d.path()).expect("none").is_empty());
        let cred = crate::sasl::bootstrap::parse_add_scram(
            "SCRAM-SHA-512=[name=admin,password=admin-secret]",
        )
        .expect("parse");
        write_bootstrap(d.path(), std::slice::from_ref(&cred)).expect("write");
        let text = fs::read_to_string(d.path().join(BOOTSTRAP_FILE)).expect("read");
        assert!(!text.contains("admin-secret"), "{text}");
        assert_eq!(read_bootstrap(d.path()).expect("read"), vec![cred]);
    }

    #[test]
    fn format_is_idempotent_only_with_ignore_formatted() {
        let d = tempfile::tempdir().expect("tempdir");
        let dirs = vec![d.path().join("a"), d.path().join("b")];
        let id = random_uuid();
        format(&dirs, &id, 1, false).expect("format");
        assert!(matches!(
            format(&dirs, &id, 1, false),
            Err(StorageError::AlreadyFormatted { .. })
        ));
        let again = format(&dirs, &id, 1, true).expect("ignore formatted");
        assert!(again
            .iter()
            .all(|(_, o)| *o == FormatOutcome::AlreadyFormatted));
        assert_eq!(check(&dirs, 1).expect("check"), id);
        let m = MetaProperties::read(&dirs[0])
            .expect("read")
            .expect("formatted");
        assert_eq!(m.node_id, 1);
        assert_eq!(m.directory_id.len(), 22);
    }

    #[test]
    fn format_with_another_cluster_id_names_both() {
        let d = tempfile::tempdir().expect("tempdir");
        let dirs = vec![d.path().to_path_buf()];
        let first = random_uuid();
        let second = random_uuid();
        format(&dirs, &first, 1, false).expect("format");
        let err = format(&dirs, &second, 1, true).expect_err("mismatch");
        let msg = err.to_string();
        assert!(msg.contains(&first) && msg.contains(&second), "{msg}");
    }

    #[test]
    fn check_refuses_unformatted_dir() {
        let d = tempfile::tempdir().expect("tempdir");
        let err = check(&[d.path().to_path_buf()], 1).expect_err("unformatted");
        assert!(err.to_string().contains("not formatted"));
    }

    #[test]
    fn bad_cluster_id_is_refused() {
        let d = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            format(&[d.path().to_path_buf()], "nope", 1, false),
            Err(StorageError::BadClusterId(_))
        ));
    }
}
