//! The cluster metadata log: every change to topics, partitions, configs and producer-id
//! blocks is a [`MetadataRecord`] appended (and fsynced) before it takes effect, and the
//! in-memory image is rebuilt by replaying the log at start-up.
//!
//! On a single node the log is a local file of JSON lines under
//! `<metadata.log.dir>/__cluster_metadata-0/`; the replicated controller quorum replaces the
//! storage underneath while the records and their application stay the same.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One change to cluster metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MetadataRecord {
    /// A topic was created.
    Topic {
        /// Topic name.
        name: String,
        /// Topic id (UUID).
        id: uuid::Uuid,
        /// Partition count.
        partitions: i32,
        /// Replication factor asked for.
        replication_factor: i16,
        /// Topic config overrides.
        configs: BTreeMap<String, String>,
    },
    /// A topic's partition count grew.
    Partitions {
        /// Topic name.
        name: String,
        /// The new partition count.
        count: i32,
    },
    /// A topic's config overrides were replaced.
    Configs {
        /// Topic name.
        name: String,
        /// The complete new overrides.
        configs: BTreeMap<String, String>,
    },
    /// A BROKER config resource's dynamic configs were replaced (Kafka's KIP-226): `""` is the
    /// cluster-wide default, `"<id>"` one broker. An empty map clears the resource.
    BrokerConfigs {
        /// `""` or the broker id.
        resource: String,
        /// The complete new dynamic configs of the resource.
        configs: BTreeMap<String, String>,
    },
    /// A topic was deleted.
    RemoveTopic {
        /// Topic name.
        name: String,
    },
    /// A block of producer ids was handed out: ids below `next` are taken.
    ProducerIds {
        /// First id not yet handed out.
        next: i64,
    },
    /// A broker registered (or re-registered with a new address or rack).
    RegisterBroker {
        /// `node.id`.
        id: i32,
        /// Advertised host of its inter-broker listener.
        host: String,
        /// Advertised port of its inter-broker listener.
        port: u16,
        /// Every advertised listener (absent from registrations written before listeners were
        /// recorded: their `host`/`port` then answer for every listener).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        endpoints: Vec<super::image::BrokerEndpoint>,
        /// `broker.rack`.
        rack: Option<String>,
    },
    /// The whole state of one partition: replicas (first is the preferred leader), leader,
    /// leader epoch and ISR. Written at creation and on every leadership or ISR change.
    PartitionState {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
        /// Replica broker ids.
        replicas: Vec<i32>,
        /// Current leader, or -1.
        leader: i32,
        /// Leader epoch, bumped on every leader change.
        leader_epoch: i32,
        /// In-sync replicas.
        isr: Vec<i32>,
    },
    /// A new partition of the topic with id `topic_id`, led by its first replica at epoch 0
    /// with every replica in sync. Applied only while the partition has no state yet, so two
    /// brokers creating or growing the same topic at once never replace each other's.
    NewPartition {
        /// Topic name.
        topic: String,
        /// The id of the topic the creator saw (a re-created topic's partitions are not
        /// the old one's).
        topic_id: uuid::Uuid,
        /// Partition index.
        partition: i32,
        /// Replica broker ids; the first is the preferred leader.
        replicas: Vec<i32>,
    },
    /// A change of one partition's leader and ISR (Kafka's AlterPartition, and the
    /// controller's leader elections), applied only if the partition is still at
    /// `leader_epoch` and `partition_epoch`: a proposal made from a stale view changes nothing.
    /// A new leader bumps the leader epoch; every applied change bumps the partition epoch.
    AlterPartition {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
        /// The leader epoch the proposal was made at.
        leader_epoch: i32,
        /// The partition epoch the proposal was made at.
        partition_epoch: i32,
        /// The new leader, or -1 when no replica can lead.
        leader: i32,
        /// The new ISR.
        isr: Vec<i32>,
    },
    /// A change of one partition's replica set with the leader and ISR that go with it: a
    /// reassignment started (replicas become the target followed by the replicas being
    /// removed), cancelled or completed. Conditional like [`MetadataRecord::AlterPartition`]:
    /// applied only at `leader_epoch` and `partition_epoch`. The leader epoch is bumped when
    /// the leader changes or a replica leaves the set; every applied change bumps the
    /// partition epoch.
    ReassignPartition {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
        /// The leader epoch the change was made at.
        leader_epoch: i32,
        /// The partition epoch the change was made at.
        partition_epoch: i32,
        /// The new replicas.
        replicas: Vec<i32>,
        /// Replicas being added (empty once no reassignment is under way).
        #[serde(default)]
        adding: Vec<i32>,
        /// Replicas being removed (empty once no reassignment is under way).
        #[serde(default)]
        removing: Vec<i32>,
        /// The new leader, or -1.
        leader: i32,
        /// The new ISR.
        isr: Vec<i32>,
    },
    /// A broker was fenced (silent past `broker.session.timeout.ms`, or shutting down) or
    /// unfenced (heartbeating again). A fenced broker leads nothing.
    FenceBroker {
        /// `node.id`.
        id: i32,
        /// Fenced or not.
        fenced: bool,
    },
    /// A broker removed for good (Kafka's UnregisterBroker): its registration goes, so
    /// Metadata, DescribeCluster and replica placement never see it again. Applied only while
    /// the broker is fenced: one that registered again meanwhile (it came back) stays.
    /// Partitions naming it as a replica keep doing so, as in Kafka. Logs written before this
    /// record existed never hold it, so they read as before.
    UnregisterBroker {
        /// `node.id`.
        id: i32,
    },
    /// An ACL was created (Kafka's AccessControlEntryRecord). Applied only while no ACL
    /// with the same fields exists, so a creation raced by an identical one adds nothing.
    Acl {
        /// The ACL's id, which its removal names.
        id: uuid::Uuid,
        /// The ACL.
        acl: crate::authz::Acl,
    },
    /// An ACL was deleted (Kafka's RemoveAccessControlEntryRecord).
    RemoveAcl {
        /// The id its creation gave it.
        id: uuid::Uuid,
    },
    /// A user's SCRAM credential for one mechanism was set (Kafka's
    /// UserScramCredentialRecord): the salted keys, never the password.
    ScramCredential {
        /// The user name.
        user: String,
        /// SCRAM-SHA-256 or SCRAM-SHA-512.
        mechanism: crate::sasl::scram::ScramMechanism,
        /// The credential.
        credential: crate::sasl::scram::ScramCredential,
    },
    /// A user's SCRAM credential for one mechanism was deleted (Kafka's
    /// RemoveUserScramCredentialRecord).
    RemoveScramCredential {
        /// The user name.
        user: String,
        /// SCRAM-SHA-256 or SCRAM-SHA-512.
        mechanism: crate::sasl::scram::ScramMechanism,
    },
    /// A client quota config was set or removed (Kafka's ClientQuotaRecord).
    ClientQuota {
        /// The user / client id / IP it applies to.
        entity: crate::quotas::QuotaEntity,
        /// The quota key, e.g. `producer_byte_rate`.
        key: String,
        /// The new value; `None` removes the key.
        value: Option<f64>,
    },
    /// The credentials `storage format --add-scram` bootstrapped, written by the first active
    /// controller. Applied only once in a cluster's life, so a credential deleted later is not
    /// brought back by a controller that starts with the same bootstrap file.
    Bootstrap {
        /// `(user, mechanism, credential)` in the order given to the format command.
        scram: Vec<(
            String,
            crate::sasl::scram::ScramMechanism,
            crate::sasl::scram::ScramCredential,
        )>,
    },
    /// A broker takes the next block of producer ids; the image records which block it got,
    /// so two brokers asking at once get different blocks.
    AllocateProducerIds {
        /// The broker taking the block.
        broker: i32,
    },
    /// A GROUP config resource's configs were replaced (Kafka's ConfigRecord of resource type
    /// GROUP, KIP-848/KIP-932). An empty map clears the group's configs.
    GroupConfigs {
        /// The group id.
        group: String,
        /// The complete new configs of the group.
        configs: BTreeMap<String, String>,
    },
}

/// What committing a batch of records did: how many changed the metadata and how many were
/// ignored (a conditional change made from a stale view, or a record naming a deleted topic).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Committed {
    /// Records that changed the metadata.
    pub applied: u32,
    /// Records that changed nothing.
    pub ignored: u32,
}

/// Why the metadata log failed.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// File system failure.
    #[error("metadata log i/o error on {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A record that does not encode (never expected).
    #[error("metadata record does not encode: {0}")]
    Encode(String),
    /// The controller quorum did not commit the records.
    #[error("the controller quorum did not commit the change: {0}")]
    Quorum(String),
}

/// Where metadata changes are made durable before they take effect: the local file
/// ([`MetadataLog`]) or the controller quorum. Called on blocking threads.
pub trait MetadataStore: std::fmt::Debug + Send {
    /// Makes `records` durable, in order; returns once they are committed.
    fn append(&mut self, records: &[MetadataRecord]) -> Result<Committed, MetadataError>;

    /// The committed image, where the store keeps one (the quorum does; the local file does
    /// not).
    fn image(&self) -> Option<super::image::MetadataImage> {
        None
    }
}

impl MetadataStore for MetadataLog {
    fn append(&mut self, records: &[MetadataRecord]) -> Result<Committed, MetadataError> {
        MetadataLog::append(self, records)?;
        Ok(Committed {
            applied: records.len() as u32,
            ignored: 0,
        })
    }
}

/// The append-only metadata log file.
#[derive(Debug)]
pub struct MetadataLog {
    path: PathBuf,
    file: File,
}

impl MetadataLog {
    /// The file of the log under metadata log dir `dir`.
    pub fn file_path(dir: &Path) -> PathBuf {
        dir.join("__cluster_metadata-0")
            .join("gregor-metadata.jsonl")
    }

    /// Opens the log in `dir`, returning it and every record in order. A torn last line (from a
    /// crash mid-write) is cut.
    pub fn open(dir: &Path) -> Result<(MetadataLog, Vec<MetadataRecord>), MetadataError> {
        let path = MetadataLog::file_path(dir);
        let part_dir = dir.join("__cluster_metadata-0");
        let io = |source| MetadataError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&part_dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io)?;
        let mut records = Vec::new();
        let mut good_len = 0u64;
        {
            let mut reader = BufReader::new(&file);
            let mut line = String::new();
            loop {
                line.clear();
                let n = reader.read_line(&mut line).map_err(io)?;
                if n == 0 || !line.ends_with('\n') {
                    break;
                }
                match serde_json::from_str::<MetadataRecord>(line.trim_end()) {
                    Ok(r) => records.push(r),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cutting metadata log at an unreadable record");
                        break;
                    }
                }
                good_len += n as u64;
            }
        }
        if file.metadata().map_err(io)?.len() != good_len {
            file.set_len(good_len).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        file.seek(std::io::SeekFrom::End(0)).map_err(io)?;
        Ok((MetadataLog { path, file }, records))
    }

    /// Appends records durably (written and fsynced before returning).
    pub fn append(&mut self, records: &[MetadataRecord]) -> Result<(), MetadataError> {
        let mut text = String::new();
        for r in records {
            text.push_str(
                &serde_json::to_string(r).map_err(|e| MetadataError::Encode(e.to_string()))?,
            );
            text.push('\n');
        }
        let io = |source| MetadataError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(text.as_bytes()).map_err(io)?;
        self.file.sync_data().map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_reopen_and_torn_tail_is_cut() {
        let d = tempfile::tempdir().expect("tempdir");
        let (mut log, recs) = MetadataLog::open(d.path()).expect("open");
        assert!(recs.is_empty());
        let r = MetadataRecord::Partitions {
            name: "t".into(),
            count: 3,
        };
        log.append(&[r.clone(), MetadataRecord::ProducerIds { next: 1000 }])
            .expect("append");
        drop(log);
        let path = d.path().join("__cluster_metadata-0/gregor-metadata.jsonl");
        let mut f = OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open file");
        f.write_all(b"{\"type\":\"remove_to").expect("torn write");
        drop(f);
        let (mut log, recs) = MetadataLog::open(d.path()).expect("reopen");
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0], r);
        log.append(&[MetadataRecord::RemoveTopic { name: "t".into() }])
            .expect("append after cut");
        drop(log);
        let (_, recs) = MetadataLog::open(d.path()).expect("reopen");
        assert_eq!(recs.len(), 3);
    }
}
