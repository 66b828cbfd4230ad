//! A cluster view over [`Client`] connections: Metadata, and a connection per broker node,
//! opened on demand, for partition leaders and group coordinators.

use std::collections::HashMap;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    FindCoordinatorRequest, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::{Client, ClientError, ClientSecurity};

/// FindCoordinator v4 batches keys; this client asks for one key at a time.
const FIND_COORDINATOR_MAX: i16 = 3;
/// How often a coordinator lookup is retried while the coordinator is loading or moving.
const COORDINATOR_ATTEMPTS: u32 = 20;
/// Pause between coordinator lookups.
const COORDINATOR_BACKOFF: Duration = Duration::from_millis(250);

/// What a coordinator coordinates (FindCoordinator's `key_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoordinatorType {
    /// A consumer group (key type 0).
    Group,
    /// A transactional id (key type 1).
    Transaction,
}

impl CoordinatorType {
    fn key_type(self) -> i8 {
        match self {
            CoordinatorType::Group => 0,
            CoordinatorType::Transaction => 1,
        }
    }
}

/// The brokers of one cluster, reached through a bootstrap connection.
#[derive(Debug)]
pub struct Cluster {
    /// The connection metadata and admin requests go to.
    bootstrap: Client,
    /// Node id to `host:port`, from the last Metadata or FindCoordinator answer.
    brokers: HashMap<i32, String>,
    /// Open connections by node id; a node's connection is reused for all its requests.
    connections: HashMap<i32, Client>,
    /// How every connection is secured: the bootstrap one and each broker's alike.
    security: ClientSecurity,
}

impl Cluster {
    /// Connects to one of the comma-separated bootstrap servers and reads the broker list.
    pub async fn connect(bootstrap: &str) -> Result<Self, ClientError> {
        Self::connect_with(bootstrap, &ClientSecurity::plaintext()).await
    }

    /// Like [`Cluster::connect`], with every connection (bootstrap and per broker) secured as
    /// `security` says.
    pub async fn connect_with(
        bootstrap: &str,
        security: &ClientSecurity,
    ) -> Result<Self, ClientError> {
        let client = Client::connect_with(bootstrap, security).await?;
        let mut cluster = Cluster {
            bootstrap: client,
            brokers: HashMap::new(),
            connections: HashMap::new(),
            security: security.clone(),
        };
        cluster.metadata(Some(&[])).await?;
        Ok(cluster)
    }

    /// The bootstrap connection, for requests any broker can answer.
    pub fn any(&mut self) -> &mut Client {
        &mut self.bootstrap
    }

    /// Known brokers as (node id, `host:port`), sorted by node id.
    pub fn brokers(&self) -> Vec<(i32, String)> {
        let mut brokers: Vec<_> = self
            .brokers
            .iter()
            .map(|(&id, addr)| (id, addr.clone()))
            .collect();
        brokers.sort();
        brokers
    }

    /// Fetches Metadata for `topics` (`None`: all topics) and refreshes the broker list.
    /// Topic-level errors are left in the response for the caller to judge.
    pub async fn metadata(
        &mut self,
        topics: Option<&[String]>,
    ) -> Result<MetadataResponse, ClientError> {
        self.metadata_with(topics, false).await
    }

    /// Like [`Cluster::metadata`], letting the broker auto-create missing topics when it is
    /// configured to (what producers ask for).
    pub async fn metadata_with(
        &mut self,
        topics: Option<&[String]>,
        allow_auto_create: bool,
    ) -> Result<MetadataResponse, ClientError> {
        let version = self.bootstrap.version::<MetadataRequest>(None)?;
        let topics = match topics {
            Some(names) => Some(
                names
                    .iter()
                    .map(|n| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(n.clone()))))
                    })
                    .collect(),
            ),
            // v0 has no null list: an empty one means all topics there.
            None if version == 0 => Some(Vec::new()),
            None => None,
        };
        let req = MetadataRequest::default()
            .with_topics(topics)
            // Before v4 the field does not exist and must keep its default (true).
            .with_allow_auto_topic_creation(version < 4 || allow_auto_create);
        let resp = self.bootstrap.send_at(req, version).await?;
        if let Some(e) = ClientError::from_code(resp.error_code, || "fetching metadata".into()) {
            return Err(e);
        }
        for b in &resp.brokers {
            self.brokers
                .insert(b.node_id.0, format!("{}:{}", b.host.as_str(), b.port));
        }
        Ok(resp)
    }

    /// The connection to broker `node_id`, opened if need be (or again, if the last one
    /// broke).
    pub async fn broker(&mut self, node_id: i32) -> Result<&mut Client, ClientError> {
        if self
            .connections
            .get(&node_id)
            .is_some_and(Client::is_broken)
        {
            self.connections.remove(&node_id);
        }
        if !self.connections.contains_key(&node_id) {
            let addr = self
                .brokers
                .get(&node_id)
                .ok_or(ClientError::UnknownNode { node_id })?;
            let client = Client::connect_one_with(addr, &self.security).await?;
            self.connections.insert(node_id, client);
        }
        self.connections
            .get_mut(&node_id)
            .ok_or(ClientError::UnknownNode { node_id })
    }

    /// Drops the connection to `node_id`, e.g. after it broke; the next use reconnects.
    pub fn forget(&mut self, node_id: i32) {
        self.connections.remove(&node_id);
    }

    /// Finds the coordinator for `key` and returns its node id (retrying while the coordinator
    /// is loading); reach it with [`Cluster::broker`].
    pub async fn coordinator(
        &mut self,
        key: &str,
        kind: CoordinatorType,
    ) -> Result<i32, ClientError> {
        let version = self
            .bootstrap
            .version::<FindCoordinatorRequest>(Some(FIND_COORDINATOR_MAX))?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let req = FindCoordinatorRequest::default()
                .with_key(StrBytes::from_string(key.to_owned()))
                .with_key_type(if version >= 1 { kind.key_type() } else { 0 });
            let resp = self.bootstrap.send_at(req, version).await?;
            match ResponseError::try_from_code(resp.error_code) {
                None => {
                    let node_id = resp.node_id.0;
                    let addr = format!("{}:{}", resp.host.as_str(), resp.port);
                    if self.brokers.get(&node_id) != Some(&addr) {
                        self.connections.remove(&node_id);
                        self.brokers.insert(node_id, addr);
                    }
                    return Ok(node_id);
                }
                Some(error) if error.is_retriable() && attempt < COORDINATOR_ATTEMPTS => {
                    tokio::time::sleep(COORDINATOR_BACKOFF).await;
                }
                Some(error) => {
                    return Err(ClientError::Kafka {
                        what: format!("finding the coordinator for '{key}'"),
                        error,
                    })
                }
            }
        }
    }
}
