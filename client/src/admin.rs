//! The Kafka admin API as the operator's reconciles use it, on this crate's client: the
//! brokers and one topic as Metadata describes them, the topic's own config overrides, and
//! CreateTopics, CreatePartitions, IncrementalAlterConfigs and DeleteTopics with the
//! operator's replica assignments; for a broker scale step, every topic's assignment and
//! AlterPartitionReassignments, ListPartitionReassignments and ElectLeaders, then
//! DescribeCluster (fenced brokers included) and UnregisterBroker for the brokers it removed.
//!
//! Every failure is an [`AdminError`] that says whether trying again later can help
//! ([`AdminError::is_transient`]): a broker that is down, a quorum without a leader or a request
//! that timed out are retried by the controller; a refused config is a problem with the spec.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, DeleteTopicsRequest, DescribeClusterRequest,
    ElectLeadersRequest, IncrementalAlterConfigsRequest, ListPartitionReassignmentsRequest,
    MetadataResponse, UnregisterBrokerRequest,
};
use kafka_protocol::protocol::{Request, StrBytes};

use crate::names::topic_id_string;
use crate::requests::{
    self, broker_ids, topic_name, Layout, ADMIN_TIMEOUT_MS, RESOURCE_BROKER, RESOURCE_TOPIC,
    SOURCE_BROKER_DEFAULT, SOURCE_TOPIC,
};
use crate::{ClientError, Cluster};

/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
/// ElectLeaders election type: the first replica leads again (Kafka's PREFERRED).
const ELECT_PREFERRED: i8 = 0;

/// A broker as Metadata reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    /// Node id.
    pub id: i32,
    /// `broker.rack`, when set. A broker without one shares no rack with any other.
    pub rack: Option<String>,
}

/// Every topic's replica lists, by partition index, preferred leader first.
pub type Assignment = BTreeMap<String, Vec<Vec<i32>>>;

/// A partition and the replicas a reassignment gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reassignment<'a> {
    /// Topic name.
    pub topic: &'a str,
    /// Partition index.
    pub partition: i32,
    /// Its replicas after the reassignment, preferred leader first.
    pub replicas: &'a [i32],
}

/// Why an admin request failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No broker could be reached, the connection broke, or an answer did not decode.
    #[error("{what}: {source}")]
    Unreachable {
        /// What was being done.
        what: String,
        /// The client's error.
        #[source]
        source: ClientError,
    },
    /// A broker answered with an error code.
    #[error("{what}: {error:?}: {message}")]
    Refused {
        /// What was being done.
        what: String,
        /// The error code.
        error: ResponseError,
        /// The broker's message, or the code's description when it sent none.
        message: String,
    },
    /// Something failed on this side before a request went out (the system's random source).
    #[error("{what}: {reason}")]
    Local {
        /// What was being done.
        what: String,
        /// What failed.
        reason: String,
    },
    /// The brokers do not speak a version of an API the operator needs.
    #[error("{what}: {source}")]
    Unsupported {
        /// What was being done.
        what: String,
        /// The client's error.
        #[source]
        source: ClientError,
    },
}

impl AdminError {
    fn client(what: impl Into<String>, source: ClientError) -> AdminError {
        let what = what.into();
        match source {
            ClientError::Kafka { error, .. } => AdminError::Refused {
                what,
                message: error.to_string(),
                error,
            },
            e @ ClientError::UnsupportedApi { .. } => AdminError::Unsupported { what, source: e },
            e => AdminError::Unreachable { what, source: e },
        }
    }

    /// A failure on this side; `what` says what was being done.
    pub(crate) fn local(what: impl Into<String>, reason: impl Into<String>) -> AdminError {
        AdminError::Local {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// Checks a response's error code; `what` says what was being done.
    pub(crate) fn check(
        code: i16,
        message: Option<&StrBytes>,
        what: impl FnOnce() -> String,
    ) -> Result<(), AdminError> {
        match ResponseError::try_from_code(code) {
            None => Ok(()),
            Some(error) => Err(AdminError::Refused {
                what: what(),
                message: message
                    .map(|m| m.to_string())
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| error.to_string()),
                error,
            }),
        }
    }

    /// Whether trying again later can succeed with the same request: the brokers were out of
    /// reach, busy or between controllers. Kafka marks these codes retriable (NOT_CONTROLLER,
    /// REQUEST_TIMED_OUT, LEADER_NOT_AVAILABLE, ...); a topic created or deleted at the same
    /// time by someone else is also worth another look.
    pub fn is_transient(&self) -> bool {
        match self {
            AdminError::Unreachable { .. } => true,
            AdminError::Refused { error, .. } => {
                error.is_retriable() || matches!(error, ResponseError::TopicAlreadyExists)
            }
            AdminError::Unsupported { .. } | AdminError::Local { .. } => false,
        }
    }

    /// The Kafka error code, when a broker answered with one.
    pub fn code(&self) -> Option<ResponseError> {
        match self {
            AdminError::Refused { error, .. } => Some(*error),
            _ => None,
        }
    }
}

/// A topic as Metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    /// The topic id, in Kafka's text form (22 characters of base64url).
    pub id: String,
    /// Replica broker ids of each partition, by partition index, leader first.
    pub partitions: Vec<Vec<i32>>,
}

/// A change to one topic config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigChange {
    /// Set the key to the value.
    Set(String, String),
    /// Remove the topic's own value, so the broker default applies again.
    Delete(String),
}

impl ConfigChange {
    /// The key changed.
    pub fn key(&self) -> &str {
        match self {
            ConfigChange::Set(k, _) | ConfigChange::Delete(k) => k,
        }
    }
}

/// An admin connection to one cluster.
#[derive(Debug)]
pub struct Admin {
    /// Metadata and admin requests go to its bootstrap connection: any broker forwards them
    /// to the controller quorum.
    cluster: Cluster,
}

/// The brokers a Metadata response lists, sorted by id.
fn brokers_of(meta: &MetadataResponse) -> Vec<Broker> {
    let mut brokers: Vec<Broker> = meta
        .brokers
        .iter()
        .map(|b| Broker {
            id: b.node_id.0,
            rack: b.rack.as_ref().map(|r| r.to_string()),
        })
        .collect();
    brokers.sort_by_key(|b| b.id);
    brokers
}

/// A Metadata topic's replica lists, by partition index.
fn replicas_of(t: &MetadataResponseTopic) -> Vec<Vec<i32>> {
    let mut partitions: Vec<(i32, Vec<i32>)> = t
        .partitions
        .iter()
        .map(|p| {
            (
                p.partition_index,
                p.replica_nodes.iter().map(|b| b.0).collect(),
            )
        })
        .collect();
    partitions.sort_by_key(|(i, _)| *i);
    partitions.into_iter().map(|(_, r)| r).collect()
}

impl Admin {
    /// Sends `req` to the bootstrap broker at the newest version both speak.
    pub(crate) async fn send<R: Request>(
        &mut self,
        req: R,
        what: &(dyn Fn() -> String + Sync),
    ) -> Result<R::Response, AdminError> {
        self.cluster
            .any()
            .send(req)
            .await
            .map_err(|e| AdminError::client(what(), e))
    }

    /// Connects to one of the comma-separated `bootstrap` servers.
    pub async fn connect(bootstrap: &str) -> Result<Admin, AdminError> {
        Admin::connect_with(bootstrap, &crate::ClientSecurity::plaintext()).await
    }

    /// Like [`Admin::connect`], with every connection secured as `security` says.
    pub async fn connect_with(
        bootstrap: &str,
        security: &crate::ClientSecurity,
    ) -> Result<Admin, AdminError> {
        let cluster = Cluster::connect_with(bootstrap, security)
            .await
            .map_err(|e| AdminError::client(format!("connecting to {bootstrap}"), e))?;
        Ok(Admin { cluster })
    }

    /// The brokers, sorted by id, and `topic` if it exists.
    pub async fn describe(
        &mut self,
        topic: &str,
    ) -> Result<(Vec<Broker>, Option<Topic>), AdminError> {
        let what = || format!("describing topic {topic}");
        let meta = self
            .cluster
            .metadata(Some(&[topic.to_owned()]))
            .await
            .map_err(|e| AdminError::client(what(), e))?;
        let brokers = brokers_of(&meta);
        let Some(t) = meta
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == topic))
        else {
            return Ok((brokers, None));
        };
        if t.error_code == ResponseError::UnknownTopicOrPartition.code() {
            return Ok((brokers, None));
        }
        AdminError::check(t.error_code, None, what)?;
        let topic = Topic {
            id: topic_id_string(&t.topic_id),
            partitions: replicas_of(t),
        };
        Ok((brokers, Some(topic)))
    }

    /// The configs set on `topic` itself (not broker defaults), by key.
    pub async fn topic_configs(
        &mut self,
        topic: &str,
    ) -> Result<BTreeMap<String, String>, AdminError> {
        let what = || format!("describing the configs of topic {topic}");
        self.configs(RESOURCE_TOPIC, topic, SOURCE_TOPIC, &what)
            .await
    }

    /// The cluster-wide dynamic broker configs (`kafka-configs --entity-type brokers
    /// --entity-default`), by key.
    pub async fn broker_defaults(&mut self) -> Result<BTreeMap<String, String>, AdminError> {
        let what = || "describing the cluster-wide broker configs".to_string();
        self.configs(RESOURCE_BROKER, "", SOURCE_BROKER_DEFAULT, &what)
            .await
    }

    /// The configs of one resource whose source is `source`, by key.
    async fn configs(
        &mut self,
        resource_type: i8,
        name: &str,
        source: i8,
        what: &(dyn Fn() -> String + Sync),
    ) -> Result<BTreeMap<String, String>, AdminError> {
        let req = requests::describe_configs(resource_type, [name]);
        let resp = self.send(req, what).await?;
        let mut out = BTreeMap::new();
        for r in resp.results {
            AdminError::check(r.error_code, r.error_message.as_ref(), what)?;
            for c in r.configs.iter().filter(|c| c.config_source == source) {
                let value = c.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
                out.insert(c.name.to_string(), value);
            }
        }
        Ok(out)
    }

    /// Creates `topic` with one partition per entry of `assignment` (replica broker ids,
    /// leader first) and `configs`.
    pub async fn create_topic(
        &mut self,
        topic: &str,
        assignment: &[Vec<i32>],
        configs: &BTreeMap<String, String>,
    ) -> Result<(), AdminError> {
        let what = || format!("creating topic {topic}");
        let req = requests::create_topic(topic, Layout::Assignment(assignment), configs);
        let resp = self.send(req, &what).await?;
        for t in resp.topics {
            AdminError::check(t.error_code, t.error_message.as_ref(), what)?;
        }
        Ok(())
    }

    /// Grows `topic` to `total` partitions, the new ones placed as `assignment` says.
    pub async fn create_partitions(
        &mut self,
        topic: &str,
        total: i32,
        assignment: &[Vec<i32>],
    ) -> Result<(), AdminError> {
        let what = || format!("growing topic {topic} to {total} partitions");
        let req = requests::create_partitions(topic, total, Some(assignment));
        let resp = self.send(req, &what).await?;
        for r in resp.results {
            AdminError::check(r.error_code, r.error_message.as_ref(), what)?;
        }
        Ok(())
    }

    /// Applies `changes` to the configs of `topic` in one IncrementalAlterConfigs request.
    pub async fn alter_configs(
        &mut self,
        topic: &str,
        changes: &[ConfigChange],
    ) -> Result<(), AdminError> {
        self.alter(RESOURCE_TOPIC, topic, &format!("topic {topic}"), changes)
            .await
    }

    /// Applies `changes` to the cluster-wide dynamic broker configs, which every broker applies
    /// at once.
    pub async fn alter_broker_defaults(
        &mut self,
        changes: &[ConfigChange],
    ) -> Result<(), AdminError> {
        self.alter(
            RESOURCE_BROKER,
            "",
            "the cluster-wide broker defaults",
            changes,
        )
        .await
    }

    /// One IncrementalAlterConfigs request for resource `name` (`label` in errors).
    async fn alter(
        &mut self,
        resource_type: i8,
        name: &str,
        label: &str,
        changes: &[ConfigChange],
    ) -> Result<(), AdminError> {
        let what = || {
            let keys: BTreeSet<&str> = changes.iter().map(ConfigChange::key).collect();
            format!(
                "altering configs {} of {label}",
                keys.into_iter().collect::<Vec<_>>().join(", ")
            )
        };
        let configs = changes
            .iter()
            .map(|c| match c {
                ConfigChange::Set(k, v) => AlterableConfig::default()
                    .with_name(StrBytes::from_string(k.clone()))
                    .with_config_operation(OP_SET)
                    .with_value(Some(StrBytes::from_string(v.clone()))),
                ConfigChange::Delete(k) => AlterableConfig::default()
                    .with_name(StrBytes::from_string(k.clone()))
                    .with_config_operation(OP_DELETE)
                    .with_value(None),
            })
            .collect();
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(StrBytes::from_string(name.to_owned()))
                .with_configs(configs),
        ]);
        let resp = self.send(req, &what).await?;
        for r in resp.responses {
            AdminError::check(r.error_code, r.error_message.as_ref(), what)?;
        }
        Ok(())
    }

    /// Deletes `topic`; `false` when it did not exist.
    pub async fn delete_topic(&mut self, topic: &str) -> Result<bool, AdminError> {
        let what = || format!("deleting topic {topic}");
        let client = self.cluster.any();
        let version = client
            .version::<DeleteTopicsRequest>(None)
            .map_err(|e| AdminError::client(what(), e))?;
        let resp = client
            .send_at(requests::delete_topic(topic, version), version)
            .await
            .map_err(|e| AdminError::client(what(), e))?;
        for r in resp.responses {
            if r.error_code == ResponseError::UnknownTopicOrPartition.code() {
                return Ok(false);
            }
            AdminError::check(r.error_code, r.error_message.as_ref(), what)?;
        }
        Ok(true)
    }

    /// The brokers Metadata lists (registered and not fenced), sorted by id, and every
    /// topic's replica assignment, internal topics included.
    pub async fn assignment(&mut self) -> Result<(Vec<Broker>, Assignment), AdminError> {
        let what = || "describing every topic".to_string();
        let meta = self
            .cluster
            .metadata(None)
            .await
            .map_err(|e| AdminError::client(what(), e))?;
        let brokers = brokers_of(&meta);
        let mut out = Assignment::new();
        for t in &meta.topics {
            let Some(name) = t.name.as_ref() else {
                continue;
            };
            AdminError::check(t.error_code, None, || {
                format!("describing topic {}", name.0)
            })?;
            out.insert(name.0.to_string(), replicas_of(t));
        }
        Ok((brokers, out))
    }

    /// Starts every reassignment of `moves` in one AlterPartitionReassignments request.
    pub async fn reassign(&mut self, moves: &[Reassignment<'_>]) -> Result<(), AdminError> {
        let what = || format!("reassigning {} partitions", moves.len());
        let mut topics: BTreeMap<&str, Vec<ReassignablePartition>> = BTreeMap::new();
        for m in moves {
            topics.entry(m.topic).or_default().push(
                ReassignablePartition::default()
                    .with_partition_index(m.partition)
                    .with_replicas(Some(broker_ids(m.replicas))),
            );
        }
        let req = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(ADMIN_TIMEOUT_MS)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, partitions)| {
                        ReassignableTopic::default()
                            .with_name(topic_name(t))
                            .with_partitions(partitions)
                    })
                    .collect(),
            );
        let resp = self.send(req, &what).await?;
        AdminError::check(resp.error_code, resp.error_message.as_ref(), what)?;
        for t in resp.responses {
            for p in t.partitions {
                AdminError::check(p.error_code, p.error_message.as_ref(), || {
                    format!("reassigning {}-{}", t.name.0, p.partition_index)
                })?;
            }
        }
        Ok(())
    }

    /// How many partitions have a reassignment under way.
    pub async fn reassignments_under_way(&mut self) -> Result<usize, AdminError> {
        let what = || "listing partition reassignments".to_string();
        let req = ListPartitionReassignmentsRequest::default()
            .with_timeout_ms(ADMIN_TIMEOUT_MS)
            .with_topics(None);
        let resp = self.send(req, &what).await?;
        AdminError::check(resp.error_code, resp.error_message.as_ref(), what)?;
        Ok(resp.topics.iter().map(|t| t.partitions.len()).sum())
    }

    /// Every registered broker as (id, fenced), sorted by id: DescribeCluster v2 with fenced
    /// brokers included (KIP-1073). Brokers that speak only an older version list unfenced
    /// brokers alone.
    pub async fn registrations(&mut self) -> Result<Vec<(i32, bool)>, AdminError> {
        let what = || "describing the registered brokers".to_string();
        let client = self.cluster.any();
        let version = client
            .version::<DescribeClusterRequest>(None)
            .map_err(|e| AdminError::client(what(), e))?;
        let req = DescribeClusterRequest::default().with_include_fenced_brokers(version >= 2);
        let resp = client
            .send_at(req, version)
            .await
            .map_err(|e| AdminError::client(what(), e))?;
        AdminError::check(resp.error_code, resp.error_message.as_ref(), what)?;
        let mut out: Vec<(i32, bool)> = resp
            .brokers
            .iter()
            .map(|b| (b.broker_id.0, b.is_fenced))
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    /// Removes broker `id` from the cluster's metadata for good (UnregisterBroker). Returns
    /// whether it was registered: BROKER_ID_NOT_REGISTERED means it is already gone.
    pub async fn unregister_broker(&mut self, id: i32) -> Result<bool, AdminError> {
        let what = || format!("unregistering broker {id}");
        let req = UnregisterBrokerRequest::default().with_broker_id(BrokerId(id));
        let resp = self.send(req, &what).await?;
        if resp.error_code == ResponseError::BrokerIdNotRegistered.code() {
            return Ok(false);
        }
        AdminError::check(resp.error_code, resp.error_message.as_ref(), what)?;
        Ok(true)
    }

    /// Runs a preferred leader election on every partition whose first replica does not lead
    /// it. Returns the partitions the brokers could not move yet (`topic-partition: why`,
    /// e.g. a preferred replica still out of the ISR); partitions that needed no election are
    /// not among them.
    pub async fn elect_preferred_leaders(&mut self) -> Result<Vec<String>, AdminError> {
        let what = || "electing preferred leaders".to_string();
        let req = ElectLeadersRequest::default()
            .with_election_type(ELECT_PREFERRED)
            .with_topic_partitions(None)
            .with_timeout_ms(ADMIN_TIMEOUT_MS);
        let resp = self.send(req, &what).await?;
        AdminError::check(resp.error_code, None, what)?;
        let mut pending = Vec::new();
        for t in resp.replica_election_results {
            for p in t.partition_result {
                if p.error_code == 0 || p.error_code == ResponseError::ElectionNotNeeded.code() {
                    continue;
                }
                let why = p
                    .error_message
                    .as_ref()
                    .map(|m| m.to_string())
                    .filter(|m| !m.is_empty())
                    .or_else(|| ResponseError::try_from_code(p.error_code).map(|e| e.to_string()))
                    .unwrap_or_default();
                pending.push(format!("{}-{}: {why}", t.topic.0, p.partition_id));
            }
        }
        Ok(pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quorum_without_a_leader_or_a_broken_connection_is_retried_and_a_bad_config_is_not() {
        let refused = |error: ResponseError| AdminError::Refused {
            what: "altering".into(),
            error,
            message: String::new(),
        };
        for transient in [
            ResponseError::NotController,
            ResponseError::RequestTimedOut,
            ResponseError::LeaderNotAvailable,
            ResponseError::TopicAlreadyExists,
        ] {
            assert!(refused(transient).is_transient(), "{transient:?}");
        }
        for spec_problem in [
            ResponseError::InvalidConfig,
            ResponseError::InvalidReplicationFactor,
            ResponseError::PolicyViolation,
            ResponseError::TopicDeletionDisabled,
        ] {
            assert!(!refused(spec_problem).is_transient(), "{spec_problem:?}");
        }
        let io = AdminError::client(
            "connecting",
            ClientError::NoBroker {
                bootstrap: "nowhere:9092".into(),
                reasons: "refused".into(),
            },
        );
        assert!(io.is_transient());
        let coded = AdminError::client(
            "fetching metadata",
            ClientError::Kafka {
                what: "fetching metadata".into(),
                error: ResponseError::InvalidConfig,
            },
        );
        assert_eq!(coded.code(), Some(ResponseError::InvalidConfig));
    }

    #[test]
    fn a_refusal_names_the_code_and_the_brokers_message() {
        let err = AdminError::check(
            40,
            Some(&StrBytes::from_static_str("retention.ms: not a number")),
            || "altering configs retention.ms of topic t".into(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "altering configs retention.ms of topic t: InvalidConfig: retention.ms: not a number"
        );
        assert!(AdminError::check(0, None, || unreachable!()).is_ok());
    }
}
