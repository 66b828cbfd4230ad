//! The metadata image: what the committed metadata log says the cluster looks like (registered
//! brokers; topics with their id, partition count, replication factor, config overrides and
//! per-partition replicas, leader, epoch and ISR; and the next producer id to hand out). The state machine owns one and applies committed records to it; the cluster
//! reads it. Application is deterministic and never fails, so every voter that applies the same
//! log holds the same image.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cluster::metadata::MetadataRecord;

/// The cluster metadata built from the log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetadataImage {
    /// Topics by name.
    pub topics: BTreeMap<String, TopicImage>,
    /// Producer ids below this are taken (handed out in blocks).
    pub next_producer_id: i64,
    /// Registered brokers by id.
    #[serde(default)]
    pub brokers: BTreeMap<i32, BrokerImage>,
    /// The first id of the producer-id block each broker took last.
    #[serde(default)]
    pub producer_blocks: BTreeMap<i32, i64>,
    /// Dynamic broker configs by BROKER resource name: `""` the cluster-wide default, `"<id>"`
    /// one broker. Absent from images written before dynamic broker configs existed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// The ACLs by id. Absent from images written before ACLs existed (and when there are
    /// none), so snapshots carry them and older ones still load.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub acls: crate::authz::Acls,
    /// The SCRAM credentials by user and mechanism. Absent from images written before SCRAM
    /// existed (and when there are none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scram: ScramCredentials,
    /// The client quota configs by entity. Absent from images written before quotas existed.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        with = "crate::quotas::as_pairs"
    )]
    pub quotas: crate::quotas::ClientQuotas,
    /// Group configs (GROUP config resources) by group id. Absent from images written before
    /// group configs existed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub group_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Whether the bootstrap records (`storage format --add-scram`) were applied.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bootstrapped: bool,
}

/// SCRAM credentials: user → mechanism → credential.
pub type ScramCredentials = BTreeMap<
    String,
    BTreeMap<crate::sasl::scram::ScramMechanism, crate::sasl::scram::ScramCredential>,
>;

/// How many producer ids one block holds.
pub const PRODUCER_ID_BLOCK: i64 = 1000;

/// One advertised listener of a broker: the address clients of that listener reach it at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerEndpoint {
    /// Listener name, e.g. PLAINTEXT or EXTERNAL.
    pub listener: String,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: u16,
}

/// A registered broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerImage {
    /// Advertised host of the inter-broker listener: replica fetchers and the controller's
    /// liveness probes connect here.
    pub host: String,
    /// Advertised port of the inter-broker listener.
    pub port: u16,
    /// Every advertised listener. Empty in registrations written before brokers registered
    /// their listeners: `host`/`port` then serve every listener (see [`BrokerImage::endpoint`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<BrokerEndpoint>,
    /// `broker.rack`.
    pub rack: Option<String>,
    /// Fenced brokers lead nothing and are left out of new ISRs.
    #[serde(default)]
    pub fenced: bool,
}

/// One partition's replicas, leader, leader epoch and ISR, and the reassignment under way.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionImage {
    /// Replica broker ids; the first is the preferred leader. While a reassignment runs these
    /// are the target replicas followed by those being removed (Kafka's layout).
    pub replicas: Vec<i32>,
    /// Current leader, or -1.
    pub leader: i32,
    /// Leader epoch.
    pub leader_epoch: i32,
    /// In-sync replicas.
    pub isr: Vec<i32>,
    /// Bumped on every change of leader or ISR, so conditional changes detect staleness.
    #[serde(default)]
    pub partition_epoch: i32,
    /// Replicas a reassignment is adding (they fetch, and join the ISR once caught up).
    /// Empty when no reassignment is under way; absent from images written before
    /// reassignments existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding: Vec<i32>,
    /// Replicas a reassignment removes once every target replica is in the ISR.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing: Vec<i32>,
}

impl BrokerImage {
    /// Where clients that connected through `listener` reach this broker, as Kafka answers
    /// them: `None` when the broker has no such listener. A registration from before listeners
    /// were recorded has one unnamed address, which answers for every listener.
    pub fn endpoint(&self, listener: &str) -> Option<(&str, u16)> {
        if self.endpoints.is_empty() {
            return Some((self.host.as_str(), self.port));
        }
        self.endpoints
            .iter()
            .find(|e| e.listener == listener)
            .map(|e| (e.host.as_str(), e.port))
    }
}

impl PartitionImage {
    /// Whether a reassignment is under way.
    pub fn reassigning(&self) -> bool {
        !self.adding.is_empty() || !self.removing.is_empty()
    }

    /// The replicas a reassignment under way ends with (all replicas when none is).
    pub fn target_replicas(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.removing.contains(r))
            .collect()
    }
}

/// One topic in the image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicImage {
    /// Topic id, fixed at creation; a re-created topic gets a new one.
    pub id: uuid::Uuid,
    /// Partition count.
    pub partitions: i32,
    /// Replication factor asked for at creation.
    pub replication_factor: i16,
    /// Topic config overrides (not the broker defaults they override).
    pub configs: BTreeMap<String, String>,
    /// Partition states by index (absent for partitions written before assignments existed).
    #[serde(default)]
    pub assignment: BTreeMap<i32, PartitionImage>,
}

impl PartitionImage {
    /// A new partition: led by its first replica at epoch 0, every replica in sync.
    pub fn new(replicas: Vec<i32>) -> PartitionImage {
        PartitionImage {
            leader: replicas.first().copied().unwrap_or(-1),
            leader_epoch: 0,
            isr: replicas.clone(),
            replicas,
            partition_epoch: 0,
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }
}

impl MetadataImage {
    /// Applies one record. Returns whether it changed the image: records naming a topic the
    /// image does not have are ignored, as the single-node log replay has always done.
    pub fn apply(&mut self, record: &MetadataRecord) -> bool {
        match record {
            MetadataRecord::Topic {
                name,
                id,
                partitions,
                replication_factor,
                configs,
            } => {
                // First creation wins: a broker that raced another to create the same name
                // sees its record ignored and answers TOPIC_ALREADY_EXISTS.
                if self.topics.contains_key(name) {
                    return false;
                }
                self.topics.insert(
                    name.clone(),
                    TopicImage {
                        id: *id,
                        partitions: *partitions,
                        replication_factor: *replication_factor,
                        configs: configs.clone(),
                        assignment: BTreeMap::new(),
                    },
                );
                true
            }
            MetadataRecord::Partitions { name, count } => match self.topics.get_mut(name) {
                // Partition counts only grow; a smaller or equal count raced a bigger one.
                Some(topic) if *count > topic.partitions => {
                    topic.partitions = *count;
                    true
                }
                _ => false,
            },
            MetadataRecord::NewPartition {
                topic,
                topic_id,
                partition,
                replicas,
            } => match self.topics.get_mut(topic) {
                Some(t)
                    if t.id == *topic_id
                        && (0..t.partitions).contains(partition)
                        && !t.assignment.contains_key(partition) =>
                {
                    t.assignment
                        .insert(*partition, PartitionImage::new(replicas.clone()));
                    true
                }
                _ => false,
            },
            MetadataRecord::Configs { name, configs } => match self.topics.get_mut(name) {
                Some(topic) => {
                    topic.configs = configs.clone();
                    true
                }
                None => false,
            },
            MetadataRecord::BrokerConfigs { resource, configs } => {
                if configs.is_empty() {
                    self.broker_configs.remove(resource).is_some()
                } else {
                    self.broker_configs
                        .insert(resource.clone(), configs.clone())
                        != Some(configs.clone())
                }
            }
            MetadataRecord::RemoveTopic { name } => self.topics.remove(name).is_some(),
            MetadataRecord::RegisterBroker {
                id,
                host,
                port,
                endpoints,
                rack,
            } => {
                // A broker registers once it is up and caught up: registering unfences it.
                let b = BrokerImage {
                    host: host.clone(),
                    port: *port,
                    endpoints: endpoints.clone(),
                    rack: rack.clone(),
                    fenced: false,
                };
                self.brokers.insert(*id, b.clone()) != Some(b)
            }
            MetadataRecord::PartitionState {
                topic,
                partition,
                replicas,
                leader,
                leader_epoch,
                isr,
            } => match self.topics.get_mut(topic) {
                Some(t) if *partition >= 0 && *partition < t.partitions => {
                    t.assignment.insert(
                        *partition,
                        PartitionImage {
                            replicas: replicas.clone(),
                            leader: *leader,
                            leader_epoch: *leader_epoch,
                            isr: isr.clone(),
                            partition_epoch: 0,
                            adding: Vec::new(),
                            removing: Vec::new(),
                        },
                    );
                    true
                }
                _ => false,
            },
            MetadataRecord::AlterPartition {
                topic,
                partition,
                leader_epoch,
                partition_epoch,
                leader,
                isr,
            } => {
                // A fenced broker never joins an ISR (Kafka's INELIGIBLE_REPLICA).
                let fenced: Vec<i32> = self
                    .brokers
                    .iter()
                    .filter(|(_, b)| b.fenced)
                    .map(|(id, _)| *id)
                    .collect();
                let Some(p) = self.at_epochs(topic, *partition, *leader_epoch, *partition_epoch)
                else {
                    return false;
                };
                if isr.iter().any(|b| !p.isr.contains(b) && fenced.contains(b)) {
                    return false;
                }
                if p.leader != *leader {
                    p.leader_epoch += 1;
                    p.leader = *leader;
                }
                p.isr = isr.clone();
                p.partition_epoch += 1;
                true
            }
            MetadataRecord::ReassignPartition {
                topic,
                partition,
                leader_epoch,
                partition_epoch,
                replicas,
                adding,
                removing,
                leader,
                isr,
            } => {
                let Some(p) = self.at_epochs(topic, *partition, *leader_epoch, *partition_epoch)
                else {
                    return false;
                };
                // A replica leaving the set bumps the leader epoch even when the leader stays,
                // as in Kafka: the removed replica's fetches are then fenced.
                let shrinks = p.replicas.iter().any(|r| !replicas.contains(r));
                if p.leader != *leader || shrinks {
                    p.leader_epoch += 1;
                }
                p.leader = *leader;
                p.replicas = replicas.clone();
                p.adding = adding.clone();
                p.removing = removing.clone();
                p.isr = isr.clone();
                p.partition_epoch += 1;
                true
            }
            MetadataRecord::FenceBroker { id, fenced } => match self.brokers.get_mut(id) {
                Some(b) if b.fenced != *fenced => {
                    b.fenced = *fenced;
                    true
                }
                _ => false,
            },
            MetadataRecord::UnregisterBroker { id } => match self.brokers.get(id) {
                Some(b) if b.fenced => self.brokers.remove(id).is_some(),
                _ => false,
            },
            MetadataRecord::AllocateProducerIds { broker } => {
                self.producer_blocks.insert(*broker, self.next_producer_id);
                self.next_producer_id += PRODUCER_ID_BLOCK;
                true
            }
            MetadataRecord::Acl { .. }
            | MetadataRecord::RemoveAcl { .. }
            | MetadataRecord::ScramCredential { .. }
            | MetadataRecord::RemoveScramCredential { .. }
            | MetadataRecord::ClientQuota { .. }
            | MetadataRecord::Bootstrap { .. } => self.apply_security(record),
            MetadataRecord::GroupConfigs { group, configs } => {
                if configs.is_empty() {
                    self.group_configs.remove(group).is_some()
                } else {
                    self.group_configs.insert(group.clone(), configs.clone())
                        != Some(configs.clone())
                }
            }
            MetadataRecord::ProducerIds { next } => {
                // Blocks only move forward: a stale allocation can never hand out ids twice.
                if *next > self.next_producer_id {
                    self.next_producer_id = *next;
                    true
                } else {
                    false
                }
            }
        }
    }

    /// Applies a security record: an ACL, a SCRAM credential, a client quota or the bootstrap
    /// credentials.
    fn apply_security(&mut self, record: &MetadataRecord) -> bool {
        match record {
            MetadataRecord::Acl { id, acl } => {
                if self.acls.contains_key(id) || self.acls.values().any(|a| a == acl) {
                    return false;
                }
                self.acls.insert(*id, acl.clone());
                true
            }
            MetadataRecord::RemoveAcl { id } => self.acls.remove(id).is_some(),
            MetadataRecord::ScramCredential {
                user,
                mechanism,
                credential,
            } => {
                self.scram
                    .entry(user.clone())
                    .or_default()
                    .insert(*mechanism, credential.clone());
                true
            }
            MetadataRecord::RemoveScramCredential { user, mechanism } => {
                let Some(mechanisms) = self.scram.get_mut(user) else {
                    return false;
                };
                let removed = mechanisms.remove(mechanism).is_some();
                if mechanisms.is_empty() {
                    self.scram.remove(user);
                }
                removed
            }
            MetadataRecord::ClientQuota { entity, key, value } => {
                crate::quotas::apply(&mut self.quotas, entity, key, *value)
            }
            MetadataRecord::Bootstrap { scram } => {
                if self.bootstrapped {
                    return false;
                }
                self.bootstrapped = true;
                for (user, mechanism, credential) in scram {
                    self.scram
                        .entry(user.clone())
                        .or_default()
                        .insert(*mechanism, credential.clone());
                }
                true
            }
            _ => false,
        }
    }

    /// The state of `topic`-`partition` if it is still at the epochs a conditional change was
    /// made at.
    fn at_epochs(
        &mut self,
        topic: &str,
        partition: i32,
        leader_epoch: i32,
        partition_epoch: i32,
    ) -> Option<&mut PartitionImage> {
        self.topics
            .get_mut(topic)
            .and_then(|t| t.assignment.get_mut(&partition))
            .filter(|p| p.leader_epoch == leader_epoch && p.partition_epoch == partition_epoch)
    }

    /// The topic called `name`.
    pub fn topic(&self, name: &str) -> Option<&TopicImage> {
        self.topics.get(name)
    }

    /// The topic whose id is `id`, with its name.
    pub fn topic_by_id(&self, id: uuid::Uuid) -> Option<(&str, &TopicImage)> {
        self.topics
            .iter()
            .find(|(_, t)| t.id == id)
            .map(|(name, t)| (name.as_str(), t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brokers_and_partition_states_are_tracked() {
        let mut image = MetadataImage::default();
        let reg = MetadataRecord::RegisterBroker {
            id: 2,
            host: "h".into(),
            port: 9092,
            endpoints: Vec::new(),
            rack: Some("r1".into()),
        };
        assert!(image.apply(&reg));
        assert!(
            !image.apply(&reg),
            "re-registering unchanged changes nothing"
        );
        image.apply(&topic("a", 2));
        let state = |p: i32| MetadataRecord::PartitionState {
            topic: "a".into(),
            partition: p,
            replicas: vec![2, 3],
            leader: 2,
            leader_epoch: 4,
            isr: vec![2],
        };
        assert!(image.apply(&state(1)));
        assert!(
            !image.apply(&state(5)),
            "a partition the topic does not have is ignored"
        );
        let a = &image.topics["a"].assignment[&1];
        assert_eq!((a.leader, a.leader_epoch, a.isr.clone()), (2, 4, vec![2]));
        assert_eq!(image.brokers[&2].rack.as_deref(), Some("r1"));
    }

    #[test]
    fn alter_partition_applies_only_at_the_epochs_it_was_made_at() {
        let mut image = MetadataImage::default();
        image.apply(&topic("a", 1));
        image.apply(&MetadataRecord::PartitionState {
            topic: "a".into(),
            partition: 0,
            replicas: vec![1, 2, 3],
            leader: 1,
            leader_epoch: 0,
            isr: vec![1, 2, 3],
        });
        let alter =
            |leader_epoch, partition_epoch, leader, isr: &[i32]| MetadataRecord::AlterPartition {
                topic: "a".into(),
                partition: 0,
                leader_epoch,
                partition_epoch,
                leader,
                isr: isr.to_vec(),
            };
        assert!(image.apply(&alter(0, 0, 1, &[1, 2])), "ISR shrink");
        let p = &image.topics["a"].assignment[&0];
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (1, 0, 1));
        assert!(
            !image.apply(&alter(0, 0, 2, &[2, 3])),
            "made before the shrink: stale"
        );
        assert!(image.apply(&alter(0, 1, 2, &[2])), "election");
        let p = &image.topics["a"].assignment[&0];
        assert_eq!(
            (p.leader, p.leader_epoch, p.partition_epoch, p.isr.clone()),
            (2, 1, 2, vec![2])
        );
        assert!(!image.apply(&alter(0, 2, 1, &[1])), "old leader epoch");
        image.apply(&MetadataRecord::RegisterBroker {
            id: 3,
            host: "h".into(),
            port: 1,
            endpoints: Vec::new(),
            rack: None,
        });
        image.apply(&MetadataRecord::FenceBroker {
            id: 3,
            fenced: true,
        });
        assert!(
            !image.apply(&alter(1, 2, 2, &[2, 3])),
            "a fenced broker never joins the ISR"
        );
        assert!(image.apply(&alter(1, 2, 2, &[2, 1])), "an unknown one may");
        assert!(!image.apply(&MetadataRecord::AlterPartition {
            topic: "b".into(),
            partition: 0,
            leader_epoch: 0,
            partition_epoch: 0,
            leader: 1,
            isr: vec![1],
        }));
    }

    #[test]
    fn replica_set_changes_are_conditional_and_a_shrink_bumps_the_leader_epoch() {
        let mut image = MetadataImage::default();
        image.apply(&topic("a", 1));
        image.apply(&MetadataRecord::PartitionState {
            topic: "a".into(),
            partition: 0,
            replicas: vec![1, 2],
            leader: 1,
            leader_epoch: 0,
            isr: vec![1, 2],
        });
        let change = |partition_epoch, replicas: &[i32], adding: &[i32], removing: &[i32]| {
            MetadataRecord::ReassignPartition {
                topic: "a".into(),
                partition: 0,
                leader_epoch: 0,
                partition_epoch,
                replicas: replicas.to_vec(),
                adding: adding.to_vec(),
                removing: removing.to_vec(),
                leader: 1,
                isr: vec![1, 2],
            }
        };
        assert!(image.apply(&change(0, &[2, 3, 1], &[3], &[1])), "started");
        let p = &image.topics["a"].assignment[&0];
        assert_eq!(
            (p.leader_epoch, p.partition_epoch, p.reassigning()),
            (0, 1, true),
            "growing keeps the leader epoch"
        );
        assert_eq!(p.target_replicas(), vec![2, 3]);
        assert!(!image.apply(&change(0, &[2, 3], &[], &[])), "stale");
        assert!(image.apply(&change(1, &[2, 1], &[], &[])), "a shrink");
        let p = &image.topics["a"].assignment[&0];
        assert_eq!((p.leader_epoch, p.partition_epoch), (1, 2));
        assert_eq!((p.replicas.clone(), p.reassigning()), (vec![2, 1], false));
    }

    #[test]
    fn images_written_before_reassignments_existed_still_load() {
        let old =
            r#"{"replicas":[1,2],"leader":1,"leader_epoch":3,"isr":[1,2],"partition_epoch":5}"#;
        let p: PartitionImage = serde_json::from_str(old).expect("decodes");
        assert!(!p.reassigning());
        let text = serde_json::to_string(&p).expect("encodes");
        assert_eq!(text, old, "no reassignment: nothing new is written");
    }

    #[test]
    fn a_registration_written_before_listeners_were_recorded_answers_for_every_listener() {
        let old = r#"{"type":"register_broker","id":1,"host":"h","port":9092,"rack":null}"#;
        let record: MetadataRecord = serde_json::from_str(old).expect("decodes");
        let mut image = MetadataImage::default();
        image.apply(&record);
        let b = &image.brokers[&1];
        assert_eq!(b.endpoint("PLAINTEXT"), Some(("h", 9092)));
        assert_eq!(b.endpoint("EXTERNAL"), Some(("h", 9092)));
        let saved = r#"{"host":"h","port":9092,"rack":null,"fenced":true}"#;
        let b: BrokerImage = serde_json::from_str(saved).expect("an old image decodes");
        assert_eq!((b.endpoint("ANY"), b.fenced), (Some(("h", 9092)), true));
    }

    #[test]
    fn a_broker_answers_only_for_the_listeners_it_registered() {
        let endpoint = |listener: &str, port| BrokerEndpoint {
            listener: listener.into(),
            host: listener.to_lowercase(),
            port,
        };
        let mut image = MetadataImage::default();
        let reg = MetadataRecord::RegisterBroker {
            id: 1,
            host: "client".into(),
            port: 1,
            endpoints: vec![endpoint("CLIENT", 1), endpoint("EXTERNAL", 2)],
            rack: None,
        };
        image.apply(&reg);
        let text = serde_json::to_string(&reg).expect("encodes");
        assert_eq!(
            serde_json::from_str::<MetadataRecord>(&text).expect("decodes"),
            reg
        );
        let b = &image.brokers[&1];
        assert_eq!(b.endpoint("EXTERNAL"), Some(("external", 2)));
        assert_eq!(b.endpoint("CLIENT"), Some(("client", 1)));
        assert_eq!(b.endpoint("PLAINTEXT"), None);
        let moved = MetadataRecord::RegisterBroker {
            id: 1,
            host: "client".into(),
            port: 1,
            endpoints: vec![endpoint("CLIENT", 1), endpoint("EXTERNAL", 3)],
            rack: None,
        };
        assert!(image.apply(&moved), "a moved listener re-registers");
    }

    #[test]
    fn broker_configs_replace_a_resource_and_an_empty_set_clears_it() {
        let mut image = MetadataImage::default();
        let set = |resource: &str, pairs: &[(&str, &str)]| MetadataRecord::BrokerConfigs {
            resource: resource.into(),
            configs: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        assert!(image.apply(&set("", &[("log.retention.ms", "1000")])));
        assert!(image.apply(&set("1", &[("min.insync.replicas", "2")])));
        assert!(
            !image.apply(&set("1", &[("min.insync.replicas", "2")])),
            "unchanged"
        );
        assert_eq!(image.broker_configs[""]["log.retention.ms"], "1000");
        assert!(image.apply(&set("", &[])));
        assert!(!image.apply(&set("", &[])), "already clear");
        assert_eq!(image.broker_configs.keys().collect::<Vec<_>>(), ["1"]);
        let text = serde_json::to_string(&MetadataImage::default()).expect("encodes");
        assert!(!text.contains("broker_configs"), "{text}");
        let old: MetadataImage =
            serde_json::from_str(r#"{"topics":{},"next_producer_id":0}"#).expect("decodes");
        assert!(old.broker_configs.is_empty());
    }

    #[test]
    fn fencing_and_registration_and_producer_blocks() {
        let mut image = MetadataImage::default();
        let reg = MetadataRecord::RegisterBroker {
            id: 1,
            host: "h".into(),
            port: 1,
            endpoints: Vec::new(),
            rack: None,
        };
        image.apply(&reg);
        let fence = |fenced| MetadataRecord::FenceBroker { id: 1, fenced };
        assert!(image.apply(&fence(true)));
        assert!(!image.apply(&fence(true)), "already fenced");
        assert!(image.brokers[&1].fenced);
        assert!(image.apply(&reg), "registering again unfences");
        assert!(!image.brokers[&1].fenced);
        assert!(!image.apply(&MetadataRecord::FenceBroker {
            id: 9,
            fenced: true
        }));
        image.apply(&MetadataRecord::AllocateProducerIds { broker: 1 });
        image.apply(&MetadataRecord::AllocateProducerIds { broker: 2 });
        assert_eq!(image.producer_blocks[&1], 0);
        assert_eq!(image.producer_blocks[&2], PRODUCER_ID_BLOCK);
        assert_eq!(image.next_producer_id, 2 * PRODUCER_ID_BLOCK);
    }

    #[test]
    fn unregistering_removes_a_fenced_broker_and_leaves_a_live_one_and_its_replicas() {
        let mut image = MetadataImage::default();
        let reg = MetadataRecord::RegisterBroker {
            id: 3,
            host: "h".into(),
            port: 1,
            endpoints: Vec::new(),
            rack: None,
        };
        image.apply(&reg);
        image.apply(&topic("a", 1));
        image.apply(&MetadataRecord::PartitionState {
            topic: "a".into(),
            partition: 0,
            replicas: vec![3, 1],
            leader: 1,
            leader_epoch: 0,
            isr: vec![1],
        });
        let unregister = MetadataRecord::UnregisterBroker { id: 3 };
        assert!(!image.apply(&unregister), "an unfenced broker stays");
        assert!(image.brokers.contains_key(&3));
        image.apply(&MetadataRecord::FenceBroker {
            id: 3,
            fenced: true,
        });
        assert!(image.apply(&unregister));
        assert!(!image.brokers.contains_key(&3));
        assert!(!image.apply(&unregister), "already gone");
        assert_eq!(
            image.topics["a"].assignment[&0].replicas,
            vec![3, 1],
            "replicas keep naming it"
        );
        assert!(image.apply(&reg), "it may register again");
        assert!(!image.brokers[&3].fenced);
        let text = serde_json::to_string(&unregister).expect("encodes");
        assert_eq!(text, r#"{"type":"unregister_broker","id":3}"#);
    }

    #[test]
    fn acls_are_added_once_removed_by_id_and_carried_by_the_image() {
        use crate::authz::{Acl, Operation, PatternType, Permission, ResourceType};
        let read = Acl {
            resource_type: ResourceType::Topic,
            resource_name: "t".into(),
            pattern_type: PatternType::Literal,
            principal: "User:a".into(),
            host: "*".into(),
            operation: Operation::Read,
            permission: Permission::Allow,
        };
        let (first, second) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        let add = |id, acl: &Acl| MetadataRecord::Acl {
            id,
            acl: acl.clone(),
        };
        let mut image = MetadataImage::default();
        assert!(image.apply(&add(first, &read)));
        assert!(
            !image.apply(&add(second, &read)),
            "an identical ACL is not added twice"
        );
        let write = Acl {
            operation: Operation::Write,
            ..read.clone()
        };
        assert!(image.apply(&add(second, &write)));
        assert!(image.apply(&MetadataRecord::RemoveAcl { id: first }));
        assert!(
            !image.apply(&MetadataRecord::RemoveAcl { id: first }),
            "gone"
        );
        let text = serde_json::to_string(&image).expect("encodes");
        let back: MetadataImage = serde_json::from_str(&text).expect("decodes");
        assert_eq!(back.acls.values().collect::<Vec<_>>(), [&write]);
        let record =
            serde_json::to_string(&MetadataRecord::RemoveAcl { id: first }).expect("encodes");
        assert_eq!(
            serde_json::from_str::<MetadataRecord>(&record).expect("decodes"),
            MetadataRecord::RemoveAcl { id: first }
        );
        assert!(!serde_json::to_string(&MetadataImage::default())
            .expect("encodes")
            .contains("acls"));
    }

    fn topic(name: &str, partitions: i32) -> MetadataRecord {
        MetadataRecord::Topic {
            name: name.into(),
            id: uuid::Uuid::new_v4(),
            partitions,
            replication_factor: 3,
            configs: BTreeMap::from([("cleanup.policy".into(), "compact".into())]),
        }
    }

    #[test]
    fn a_created_topic_appears_with_its_id_partitions_and_configs() {
        let mut image = MetadataImage::default();
        let record = topic("orders", 6);
        assert!(image.apply(&record));
        let MetadataRecord::Topic { id, .. } = record else {
            unreachable!("built as a topic record")
        };
        let t = image.topic("orders").expect("topic in image");
        assert_eq!((t.id, t.partitions, t.replication_factor), (id, 6, 3));
        assert_eq!(
            t.configs.get("cleanup.policy").map(String::as_str),
            Some("compact")
        );
        assert_eq!(image.topic_by_id(id).map(|(n, _)| n), Some("orders"));
    }

    #[test]
    fn partitions_configs_and_removal_change_only_existing_topics() {
        let mut image = MetadataImage::default();
        image.apply(&topic("t", 1));
        assert!(image.apply(&MetadataRecord::Partitions {
            name: "t".into(),
            count: 4
        }));
        assert!(image.apply(&MetadataRecord::Configs {
            name: "t".into(),
            configs: BTreeMap::new()
        }));
        let t = image.topic("t").expect("topic in image");
        assert_eq!(t.partitions, 4);
        assert!(t.configs.is_empty());
        assert!(image.apply(&MetadataRecord::RemoveTopic { name: "t".into() }));
        assert!(image.topic("t").is_none());
        let before = image.clone();
        assert!(!image.apply(&MetadataRecord::Partitions {
            name: "t".into(),
            count: 9
        }));
        assert!(!image.apply(&MetadataRecord::Configs {
            name: "t".into(),
            configs: BTreeMap::new()
        }));
        assert!(!image.apply(&MetadataRecord::RemoveTopic { name: "t".into() }));
        assert_eq!(image, before);
    }

    #[test]
    fn producer_id_blocks_only_move_forward() {
        let mut image = MetadataImage::default();
        assert!(image.apply(&MetadataRecord::ProducerIds { next: 1000 }));
        assert!(!image.apply(&MetadataRecord::ProducerIds { next: 500 }));
        assert_eq!(image.next_producer_id, 1000);
    }

    #[test]
    fn racing_creations_and_grows_never_replace_what_won() {
        let mut image = MetadataImage::default();
        let first = topic("t", 1);
        let MetadataRecord::Topic { id, .. } = first.clone() else {
            unreachable!("built as a topic record")
        };
        let new_partition = |topic_id, partition, replicas: &[i32]| MetadataRecord::NewPartition {
            topic: "t".into(),
            topic_id,
            partition,
            replicas: replicas.to_vec(),
        };
        assert!(image.apply(&first));
        assert!(image.apply(&new_partition(id, 0, &[1, 2])));
        let rival = topic("t", 3);
        assert!(
            !image.apply(&rival),
            "the second creation of a name is ignored"
        );
        assert!(
            !image.apply(&new_partition(uuid::Uuid::new_v4(), 0, &[3])),
            "nor do its partitions replace the winner's"
        );
        assert!(!image.apply(&new_partition(id, 0, &[3])), "a state exists");
        assert_eq!(image.topics["t"].assignment[&0].replicas, vec![1, 2]);
        assert!(image.apply(&MetadataRecord::Partitions {
            name: "t".into(),
            count: 3
        }));
        assert!(
            !image.apply(&MetadataRecord::Partitions {
                name: "t".into(),
                count: 2
            }),
            "counts only grow"
        );
        assert!(image.apply(&new_partition(id, 2, &[2, 1])));
        assert_eq!(image.topics["t"].assignment[&2].leader, 2);
    }

    #[test]
    fn a_recreated_topic_gets_the_new_id() {
        let mut image = MetadataImage::default();
        image.apply(&topic("t", 1));
        image.apply(&MetadataRecord::RemoveTopic { name: "t".into() });
        let again = topic("t", 2);
        image.apply(&again);
        let MetadataRecord::Topic { id, .. } = again else {
            unreachable!("built as a topic record")
        };
        assert_eq!(
            image.topic("t").map(|t| (t.id, t.partitions)),
            Some((id, 2))
        );
    }
}
