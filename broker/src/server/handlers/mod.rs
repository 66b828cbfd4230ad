//! One module per family of APIs. Handlers take decoded requests and return responses; errors
//! become Kafka error codes per topic/partition, as Kafka reports them.

pub mod acls;
pub mod admin;
pub mod configs;
pub mod consumer_groups;
pub mod features;
pub mod fetch;
pub mod groups;
pub mod log_dirs;
pub mod metadata;
pub mod offsets;
pub mod produce;
pub mod quorum;
pub mod quotas;
pub mod records;
pub mod replicas;
pub mod sasl;
pub mod share;
pub mod share_offsets;
pub mod topic_partitions;
pub mod transactions;
pub mod unregister;

use kafka_protocol::ResponseError;

use crate::authz::ResourceType;
use crate::cluster::AdminError;
use crate::log::LogError;

/// Runs blocking work (file I/O, fsync) off the reactor; its time counts as the request's
/// for `request_percentage` quotas, and its wait for a thread as the request's queue time.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let submitted = std::time::Instant::now();
    let timed = move || {
        let start = std::time::Instant::now();
        let out = f();
        (out, start.elapsed(), start - submitted)
    };
    match tokio::task::spawn_blocking(timed).await {
        Ok((v, spent, queued)) => {
            super::request_time::add_blocking(spent, queued);
            Some(v)
        }
        Err(e) => {
            tracing::error!(error = %e, "blocking task failed");
            None
        }
    }
}

/// The Kafka error code for an admin failure.
pub fn admin_error_code(e: &AdminError) -> ResponseError {
    match e {
        AdminError::TopicExists(_) => ResponseError::TopicAlreadyExists,
        AdminError::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition,
        AdminError::InvalidTopic(_) => ResponseError::InvalidTopicException,
        AdminError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        AdminError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
        AdminError::InvalidConfig(_) => ResponseError::InvalidConfig,
        AdminError::InvalidRequest(_) => ResponseError::InvalidRequest,
        AdminError::DeletionDisabled => ResponseError::TopicDeletionDisabled,
        AdminError::Storage(_) => ResponseError::KafkaStorageError,
        AdminError::NotController(_) => ResponseError::NotController,
        AdminError::UnknownPartition { .. } => ResponseError::UnknownTopicOrPartition,
        AdminError::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment,
        AdminError::NoReassignmentInProgress => ResponseError::NoReassignmentInProgress,
        AdminError::ElectionNotNeeded => ResponseError::ElectionNotNeeded,
        AdminError::PreferredLeaderNotAvailable(_) => ResponseError::PreferredLeaderNotAvailable,
        AdminError::EligibleLeadersNotAvailable(_) => ResponseError::EligibleLeadersNotAvailable,
        AdminError::ChangedConcurrently(_) => ResponseError::RequestTimedOut,
        AdminError::BrokerIdNotRegistered(_) => ResponseError::BrokerIdNotRegistered,
        AdminError::BrokerNotFenced(_) => ResponseError::InvalidRequest,
        AdminError::Unauthorized(kind) => authorization_failed(*kind),
        AdminError::ThrottlingQuotaExceeded => ResponseError::ThrottlingQuotaExceeded,
    }
}

/// The error message for an admin failure: its text, but none for THROTTLING_QUOTA_EXCEEDED,
/// as Kafka answers it.
pub fn admin_error_message(e: &AdminError) -> Option<kafka_protocol::protocol::StrBytes> {
    match e {
        AdminError::ThrottlingQuotaExceeded => None,
        _ => Some(crate::server::dispatch::sb(e.to_string())),
    }
}

/// The Kafka error code for a request refused on a resource of `kind`.
pub fn authorization_failed(kind: ResourceType) -> ResponseError {
    match kind {
        ResourceType::Topic => ResponseError::TopicAuthorizationFailed,
        ResourceType::Group => ResponseError::GroupAuthorizationFailed,
        ResourceType::TransactionalId => ResponseError::TransactionalIdAuthorizationFailed,
        ResourceType::DelegationToken => ResponseError::DelegationTokenAuthorizationFailed,
        ResourceType::Cluster | ResourceType::User => ResponseError::ClusterAuthorizationFailed,
    }
}

/// The partition `index` of `topic` when this node (`node`) leads it, else the error Kafka
/// answers for it, in Kafka's order: the topic's authorization `denied`, no such topic or
/// partition, this node's replica offline, another node leading it.
pub fn led_partition(
    topic: Option<&std::sync::Arc<crate::cluster::Topic>>,
    denied: bool,
    index: i32,
    node: i32,
) -> Result<std::sync::Arc<crate::cluster::Partition>, ResponseError> {
    if denied {
        return Err(ResponseError::TopicAuthorizationFailed);
    }
    let p = topic
        .and_then(|t| t.partition(index))
        .ok_or(ResponseError::UnknownTopicOrPartition)?;
    // Kafka answers an offline replica so whether it leads or not (HostedPartition.Offline).
    if p.offline_reason().is_some() {
        return Err(ResponseError::KafkaStorageError);
    }
    if !p.is_led_by(node) {
        return Err(ResponseError::NotLeaderOrFollower);
    }
    Ok(p)
}

/// The Kafka error code for a log failure.
pub fn log_error_code(e: &LogError) -> ResponseError {
    match e {
        LogError::NotLeader => ResponseError::NotLeaderOrFollower,
        LogError::Io { .. } | LogError::Offline(_) => ResponseError::KafkaStorageError,
        LogError::CorruptBatch(_) => ResponseError::CorruptMessage,
        LogError::InvalidRecord(_) => ResponseError::InvalidRecord,
        LogError::NoOpenTransaction(_) => ResponseError::InvalidTxnState,
        LogError::UnsupportedMagic(_) => ResponseError::UnsupportedForMessageFormat,
        LogError::BatchTooLarge { .. } => ResponseError::MessageTooLarge,
        LogError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        LogError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
    }
}
