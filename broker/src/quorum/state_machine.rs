//! The quorum's state machine, openraft's [`RaftStateMachine`]: applies committed entries to
//! the [`MetadataImage`], and builds and installs snapshots of it.
//!
//! Application is in memory only; durability comes from snapshots. A snapshot is one JSON file,
//! `snapshot.json` beside the log (the image plus the snapshot's meta: last applied log id and
//! membership), replaced atomically. At open the machine starts from it, and openraft re-applies
//! the log from there up to the saved committed id. The applied state is published through a
//! `watch` channel so the broker can read the image and wait for it to change without a lock
//! shared with the Raft core.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder,
    StorageIOError,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::cluster::image::MetadataImage;
use crate::quorum::durable;
use crate::quorum::types::{
    Entry, LogId, MetadataResponse, NodeId, SnapshotMeta, StorageError, StoredMembership,
    TypeConfig,
};

const SNAPSHOT_FILE: &str = "snapshot.json";

/// Why the state machine failed.
#[derive(Debug, thiserror::Error)]
pub enum StateMachineError {
    /// A file system operation failed.
    #[error("failed to {op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A snapshot (on disk or received from the leader) does not decode.
    #[error("unreadable metadata snapshot {what}")]
    Decode {
        /// Which snapshot: a file path or "received from the leader".
        what: String,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// A snapshot does not encode (never expected).
    #[error("metadata snapshot does not encode")]
    Encode(#[source] serde_json::Error),
    /// A received snapshot's content covers a different log position than its meta says.
    #[error("received snapshot holds state up to {found:?} but its meta says {expected:?}")]
    Mismatch {
        /// The last log id in the meta openraft passed.
        expected: Option<LogId>,
        /// The last log id inside the data.
        found: Option<LogId>,
    },
    /// A blocking task panicked.
    #[error("metadata snapshot task failed")]
    Join(#[source] tokio::task::JoinError),
}

/// What the state machine has applied: the image and the log position it reflects.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppliedState {
    /// The last applied log id.
    pub last_applied: Option<LogId>,
    /// The last applied membership (voters and their controller listeners).
    pub last_membership: StoredMembership,
    /// The cluster metadata.
    pub image: MetadataImage,
}

/// The snapshot file, and the bytes sent to a follower that installs it.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotFile {
    /// Which log position and membership the image reflects.
    meta: SnapshotMeta,
    /// The image.
    image: MetadataImage,
}

/// The current snapshot, kept in memory so serving it needs no disk read.
#[derive(Debug)]
struct StoredSnapshot {
    /// What it covers.
    meta: SnapshotMeta,
    /// `SnapshotFile` as JSON: the file's content and what followers receive.
    bytes: Vec<u8>,
}

/// The current snapshot, shared by the machine and its snapshot builders (which run in their
/// own task).
#[derive(Debug, Default)]
struct Slot {
    /// The current snapshot. Held only to read or swap the pointer, so the reactor may take it.
    current: Mutex<Option<Arc<StoredSnapshot>>>,
    /// Held by the blocking thread that makes a snapshot current, across its compare, rename
    /// and directory fsync, so two snapshots never race for the file; never on the reactor.
    file: Mutex<()>,
}

type SnapshotSlot = Arc<Slot>;

/// The controller quorum's state machine.
#[derive(Debug)]
pub struct StateMachine {
    /// Directory of the snapshot file (the Raft log's directory).
    dir: PathBuf,
    /// The applied state, modified in place and published to subscribers. openraft calls the
    /// machine from one task, so the `watch` lock is only ever contended by readers.
    state: watch::Sender<AppliedState>,
    /// The current snapshot.
    snapshot: SnapshotSlot,
}

/// Builds a snapshot from a copy of the applied state taken when it was created.
#[derive(Debug)]
pub struct SnapshotBuilder {
    /// Where the snapshot file goes.
    dir: PathBuf,
    /// The state to snapshot: a copy, so applying goes on while the snapshot is written.
    state: AppliedState,
    /// The machine's current snapshot, replaced when this one is newer.
    snapshot: SnapshotSlot,
}

impl StateMachine {
    /// Opens the state machine in `dir`, starting from the snapshot there if there is one.
    pub async fn open(dir: impl Into<PathBuf>) -> Result<StateMachine, StateMachineError> {
        let dir = dir.into();
        let loaded = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || load(&dir))
                .await
                .map_err(StateMachineError::Join)??
        };
        let (state, snapshot) = match loaded {
            Some((file, bytes)) => (
                AppliedState {
                    last_applied: file.meta.last_log_id,
                    last_membership: file.meta.last_membership.clone(),
                    image: file.image,
                },
                Some(Arc::new(StoredSnapshot {
                    meta: file.meta,
                    bytes,
                })),
            ),
            None => (AppliedState::default(), None),
        };
        Ok(StateMachine {
            dir,
            state: watch::Sender::new(state),
            snapshot: Arc::new(Slot {
                current: Mutex::new(snapshot),
                file: Mutex::new(()),
            }),
        })
    }

    /// A receiver of the applied state, marked changed after every applied batch or installed
    /// snapshot. Do not hold its borrow across an await.
    pub fn subscribe(&self) -> watch::Receiver<AppliedState> {
        self.state.subscribe()
    }

    /// A copy of the applied state now.
    pub fn applied(&self) -> AppliedState {
        self.state.borrow().clone()
    }
}

/// The openraft error for a failure of this machine.
fn storage_error(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: &StateMachineError,
) -> StorageError {
    StorageIOError::new(subject, verb, AnyError::new(e)).into()
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let state = self.state.borrow();
        Ok((state.last_applied, state.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<MetadataResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        self.state.send_modify(|state| {
            for entry in entries {
                state.last_applied = Some(entry.log_id);
                let mut response = MetadataResponse::default();
                match entry.payload {
                    EntryPayload::Blank => {}
                    EntryPayload::Normal(request) => {
                        for record in &request.records {
                            if state.image.apply(record) {
                                response.applied += 1;
                            } else {
                                response.ignored += 1;
                            }
                        }
                    }
                    EntryPayload::Membership(membership) => {
                        state.last_membership =
                            StoredMembership::new(Some(entry.log_id), membership);
                    }
                }
                responses.push(response);
            }
        });
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            dir: self.dir.clone(),
            state: self.state.borrow().clone(),
            snapshot: self.snapshot.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let fail = |e: StateMachineError| {
            storage_error(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Write,
                &e,
            )
        };
        let bytes = snapshot.into_inner();
        let received =
            tokio::task::spawn_blocking(move || serde_json::from_slice::<SnapshotFile>(&bytes))
                .await
                .map_err(|e| fail(StateMachineError::Join(e)))?
                .map_err(|source| {
                    fail(StateMachineError::Decode {
                        what: "received from the leader".into(),
                        source,
                    })
                })?;
        if received.meta.last_log_id != meta.last_log_id {
            return Err(fail(StateMachineError::Mismatch {
                expected: meta.last_log_id,
                found: received.meta.last_log_id,
            }));
        }
        // Stored under the meta openraft passed, which is authoritative.
        let file = SnapshotFile {
            meta: meta.clone(),
            image: received.image,
        };
        let (_, image) = persist(self.dir.clone(), self.snapshot.clone(), file, true)
            .await
            .map_err(fail)?;
        self.state.send_replace(AppliedState {
            last_applied: meta.last_log_id,
            last_membership: meta.last_membership.clone(),
            image,
        });
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let current = self.snapshot.current.lock().clone();
        Ok(current.map(|s| Snapshot {
            meta: s.meta.clone(),
            snapshot: Box::new(Cursor::new(s.bytes.clone())),
        }))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let last = self.state.last_applied;
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: self.state.last_membership.clone(),
            snapshot_id: format!(
                "{}-{}-{}",
                last.map_or(0, |l| l.leader_id.term),
                last.map_or(0, |l| l.index),
                uuid::Uuid::new_v4().simple()
            ),
        };
        let fail = |e: StateMachineError| {
            storage_error(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Write,
                &e,
            )
        };
        let file = SnapshotFile {
            meta: meta.clone(),
            image: self.state.image.clone(),
        };
        let (stored, _) = persist(self.dir.clone(), self.snapshot.clone(), file, false)
            .await
            .map_err(fail)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(stored.bytes.clone())),
        })
    }
}

/// Encodes `file` and makes it the current snapshot on disk and in `slot`, returning the stored
/// snapshot and the image back. Unless `force`d (an install, which openraft orders), a snapshot
/// older than the current one is dropped: a slow builder must not replace a newer snapshot
/// installed meanwhile.
async fn persist(
    dir: PathBuf,
    slot: SnapshotSlot,
    file: SnapshotFile,
    force: bool,
) -> Result<(Arc<StoredSnapshot>, MetadataImage), StateMachineError> {
    tokio::task::spawn_blocking(move || {
        let bytes = serde_json::to_vec(&file).map_err(StateMachineError::Encode)?;
        let stored = Arc::new(StoredSnapshot {
            meta: file.meta,
            bytes,
        });
        let path = dir.join(SNAPSHOT_FILE);
        let io = |op, path: &Path| {
            let path = path.to_path_buf();
            move |source| StateMachineError::Io { op, path, source }
        };
        // The snapshot id may come from the leader: never put it in a path.
        let temp = durable::temp_path(&path, &uuid::Uuid::new_v4().simple().to_string());
        durable::write_synced(&temp, &stored.bytes).map_err(io("write", &temp))?;
        let _file = slot.file.lock();
        let newer_exists = slot
            .current
            .lock()
            .as_ref()
            .is_some_and(|c| c.meta.last_log_id > stored.meta.last_log_id);
        if newer_exists && !force {
            std::fs::remove_file(&temp).map_err(io("remove", &temp))?;
        } else {
            durable::commit(&temp, &path).map_err(io("rename into place", &path))?;
            *slot.current.lock() = Some(stored.clone());
        }
        Ok((stored, file.image))
    })
    .await
    .map_err(StateMachineError::Join)?
}

/// The snapshot file in `dir` and its bytes, if there is one. Leftover temporaries go.
fn load(dir: &Path) -> Result<Option<(SnapshotFile, Vec<u8>)>, StateMachineError> {
    let path = dir.join(SNAPSHOT_FILE);
    let io = |op, path: &Path| {
        let path = path.to_path_buf();
        move |source| StateMachineError::Io { op, path, source }
    };
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    durable::remove_temporaries(dir, &format!("{SNAPSHOT_FILE}."))
        .map_err(io("remove leftover temporaries in", dir))?;
    let Some(bytes) = durable::read_optional(&path).map_err(io("read", &path))? else {
        return Ok(None);
    };
    let file = serde_json::from_slice(&bytes).map_err(|source| StateMachineError::Decode {
        what: path.display().to_string(),
        source,
    })?;
    Ok(Some((file, bytes)))
}

#[cfg(test)]
mod tests;
