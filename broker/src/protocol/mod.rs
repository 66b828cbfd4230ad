//! The wire: size-prefixed frames and the table of API versions Gregor serves. The codec for
//! headers and bodies is kafka-protocol (patched, see `vendor/kafka-protocol.patch`).

pub mod frame;

use kafka_protocol::messages::ApiKey;

/// One advertised API: key and inclusive version range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiRange {
    /// The API.
    pub key: ApiKey,
    /// Lowest version advertised.
    pub min: i16,
    /// Highest version advertised.
    pub max: i16,
    /// Lowest version actually decoded (Produce v0–2 are advertised but refused, see below).
    pub min_served: i16,
}

const fn api(key: ApiKey, min: i16, max: i16) -> ApiRange {
    ApiRange {
        key,
        min,
        max,
        min_served: min,
    }
}

/// Exactly the APIs and versions Gregor implements, advertised in ApiVersions.
///
/// Produce is advertised from v0 although v0–2 (message formats 0/1) are refused: librdkafka
/// before 2.11.1 turns off gzip/snappy/lz4 when a broker's Produce range starts above 0, and
/// Apache Kafka 4.0 advertises the same way.
pub const SUPPORTED_APIS: &[ApiRange] = &[
    ApiRange {
        key: ApiKey::Produce,
        min: 0,
        max: 9,
        min_served: 3,
    },
    api(ApiKey::Fetch, 4, 12),
    api(ApiKey::ListOffsets, 1, 7),
    api(ApiKey::Metadata, 0, 12),
    api(ApiKey::OffsetCommit, 2, 8),
    api(ApiKey::OffsetFetch, 1, 8),
    api(ApiKey::FindCoordinator, 0, 4),
    api(ApiKey::JoinGroup, 0, 7),
    api(ApiKey::Heartbeat, 0, 4),
    api(ApiKey::LeaveGroup, 0, 4),
    api(ApiKey::SyncGroup, 0, 5),
    api(ApiKey::DescribeGroups, 0, 5),
    api(ApiKey::ListGroups, 0, 4),
    api(ApiKey::ApiVersions, 0, 3),
    api(ApiKey::CreateTopics, 2, 7),
    api(ApiKey::DeleteTopics, 1, 6),
    api(ApiKey::InitProducerId, 0, 4),
    api(ApiKey::OffsetForLeaderEpoch, 2, 4),
    api(ApiKey::DescribeConfigs, 1, 4),
    api(ApiKey::AlterConfigs, 0, 2),
    api(ApiKey::DeleteGroups, 0, 2),
    api(ApiKey::IncrementalAlterConfigs, 0, 1),
    api(ApiKey::CreatePartitions, 0, 3),
    api(ApiKey::DescribeCluster, 0, 1),
];

/// The advertised range for `key`, if Gregor serves it.
pub fn supported(key: ApiKey) -> Option<ApiRange> {
    SUPPORTED_APIS.iter().copied().find(|a| a.key == key)
}

/// Whether `version` of `key` can be decoded and answered.
pub fn serves(key: ApiKey, version: i16) -> bool {
    supported(key).is_some_and(|a| version >= a.min_served && version <= a.max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::Message;

    fn crate_range(key: ApiKey) -> (i16, i16) {
        macro_rules! r {
            ($t:ty) => {
                (<$t>::VERSIONS.min, <$t>::VERSIONS.max)
            };
        }
        match key {
            ApiKey::Produce => r!(ProduceRequest),
            ApiKey::Fetch => r!(FetchRequest),
            ApiKey::ListOffsets => r!(ListOffsetsRequest),
            ApiKey::Metadata => r!(MetadataRequest),
            ApiKey::OffsetCommit => r!(OffsetCommitRequest),
            ApiKey::OffsetFetch => r!(OffsetFetchRequest),
            ApiKey::FindCoordinator => r!(FindCoordinatorRequest),
            ApiKey::JoinGroup => r!(JoinGroupRequest),
            ApiKey::Heartbeat => r!(HeartbeatRequest),
            ApiKey::LeaveGroup => r!(LeaveGroupRequest),
            ApiKey::SyncGroup => r!(SyncGroupRequest),
            ApiKey::DescribeGroups => r!(DescribeGroupsRequest),
            ApiKey::ListGroups => r!(ListGroupsRequest),
            ApiKey::ApiVersions => r!(ApiVersionsRequest),
            ApiKey::CreateTopics => r!(CreateTopicsRequest),
            ApiKey::DeleteTopics => r!(DeleteTopicsRequest),
            ApiKey::InitProducerId => r!(InitProducerIdRequest),
            ApiKey::OffsetForLeaderEpoch => r!(OffsetForLeaderEpochRequest),
            ApiKey::DescribeConfigs => r!(DescribeConfigsRequest),
            ApiKey::AlterConfigs => r!(AlterConfigsRequest),
            ApiKey::DeleteGroups => r!(DeleteGroupsRequest),
            ApiKey::IncrementalAlterConfigs => r!(IncrementalAlterConfigsRequest),
            ApiKey::CreatePartitions => r!(CreatePartitionsRequest),
            ApiKey::DescribeCluster => r!(DescribeClusterRequest),
            other => panic!("no range for {other:?}"),
        }
    }

    #[test]
    fn every_served_version_is_decodable_by_the_codec() {
        for a in SUPPORTED_APIS {
            let (min, max) = crate_range(a.key);
            assert!(a.min_served >= min, "{:?} serves below codec min", a.key);
            assert!(a.max <= max, "{:?} advertises above codec max", a.key);
            assert!(a.min <= a.min_served && a.min_served <= a.max);
        }
    }
}
