//! The wire: size-prefixed frames and the table of API versions Gregor serves. The codec for
//! headers and bodies is kafka-protocol (patched, see `vendor/kafka-protocol.patch`).

pub mod frame;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable};

/// Expands `$m!(RequestType)` for the request type of a served API key, else `$other`.
macro_rules! with_request_type {
    ($key:expr, $m:ident, $other:expr) => {
        match $key {
            ApiKey::Produce => $m!(ProduceRequest),
            ApiKey::Fetch => $m!(FetchRequest),
            ApiKey::ListOffsets => $m!(ListOffsetsRequest),
            ApiKey::Metadata => $m!(MetadataRequest),
            ApiKey::OffsetCommit => $m!(OffsetCommitRequest),
            ApiKey::OffsetFetch => $m!(OffsetFetchRequest),
            ApiKey::FindCoordinator => $m!(FindCoordinatorRequest),
            ApiKey::JoinGroup => $m!(JoinGroupRequest),
            ApiKey::Heartbeat => $m!(HeartbeatRequest),
            ApiKey::LeaveGroup => $m!(LeaveGroupRequest),
            ApiKey::SyncGroup => $m!(SyncGroupRequest),
            ApiKey::DescribeGroups => $m!(DescribeGroupsRequest),
            ApiKey::ListGroups => $m!(ListGroupsRequest),
            ApiKey::ApiVersions => $m!(ApiVersionsRequest),
            ApiKey::CreateTopics => $m!(CreateTopicsRequest),
            ApiKey::DeleteTopics => $m!(DeleteTopicsRequest),
            ApiKey::InitProducerId => $m!(InitProducerIdRequest),
            ApiKey::OffsetForLeaderEpoch => $m!(OffsetForLeaderEpochRequest),
            ApiKey::DescribeConfigs => $m!(DescribeConfigsRequest),
            ApiKey::AlterConfigs => $m!(AlterConfigsRequest),
            ApiKey::DeleteGroups => $m!(DeleteGroupsRequest),
            ApiKey::IncrementalAlterConfigs => $m!(IncrementalAlterConfigsRequest),
            ApiKey::CreatePartitions => $m!(CreatePartitionsRequest),
            ApiKey::DescribeCluster => $m!(DescribeClusterRequest),
            ApiKey::DescribeQuorum => $m!(DescribeQuorumRequest),
            ApiKey::DescribeLogDirs => $m!(DescribeLogDirsRequest),
            ApiKey::ElectLeaders => $m!(ElectLeadersRequest),
            ApiKey::AlterPartitionReassignments => $m!(AlterPartitionReassignmentsRequest),
            ApiKey::ListPartitionReassignments => $m!(ListPartitionReassignmentsRequest),
            ApiKey::UnregisterBroker => $m!(UnregisterBrokerRequest),
            _ => $other,
        }
    };
}

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
    api(ApiKey::DescribeLogDirs, 1, 4),
    api(ApiKey::DeleteGroups, 0, 2),
    api(ApiKey::ElectLeaders, 0, 2),
    api(ApiKey::IncrementalAlterConfigs, 0, 1),
    api(ApiKey::CreatePartitions, 0, 3),
    api(ApiKey::AlterPartitionReassignments, 0, 1),
    api(ApiKey::ListPartitionReassignments, 0, 0),
    api(ApiKey::DescribeCluster, 0, 2),
    api(ApiKey::DescribeQuorum, 0, 2),
    api(ApiKey::UnregisterBroker, 0, 0),
];

/// The advertised range for `key`, if Gregor serves it.
pub fn supported(key: ApiKey) -> Option<ApiRange> {
    SUPPORTED_APIS.iter().copied().find(|a| a.key == key)
}

/// Whether `version` of `key` can be decoded and answered.
pub fn serves(key: ApiKey, version: i16) -> bool {
    supported(key).is_some_and(|a| version >= a.min_served && version <= a.max)
}

/// Why a request frame does not decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer than the 8 fixed header bytes.
    #[error("request of {0} bytes has no header")]
    Short(usize),
    /// An API key Gregor does not know.
    #[error("unknown API key {0}")]
    UnknownApi(i16),
    /// A version Gregor does not serve.
    #[error("unsupported version {version} of API key {key}")]
    UnsupportedVersion {
        /// API key.
        key: i16,
        /// Version asked for.
        version: i16,
    },
    /// Header or body bytes the codec rejects.
    #[error("undecodable request: {0}")]
    Body(String),
}

/// Decodes a whole request frame body (header and request) the way the server does, and
/// returns its key and version. The fuzz target and property tests drive this.
pub fn decode_request(frame: Bytes) -> Result<(ApiKey, i16), DecodeError> {
    decode_and_reencode(frame, false).map(|(k, v, _)| (k, v))
}

/// Decodes a request frame body and encodes it again at the same version: golden bytes from
/// real clients must survive this unchanged.
pub fn reencode_request(frame: Bytes) -> Result<Bytes, DecodeError> {
    decode_and_reencode(frame, true).map(|(_, _, b)| b)
}

fn decode_and_reencode(
    mut frame: Bytes,
    reencode: bool,
) -> Result<(ApiKey, i16, Bytes), DecodeError> {
    if frame.len() < 8 {
        return Err(DecodeError::Short(frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let key = ApiKey::try_from(raw_key).map_err(|_| DecodeError::UnknownApi(raw_key))?;
    if !serves(key, version) {
        return Err(DecodeError::UnsupportedVersion {
            key: raw_key,
            version,
        });
    }
    let header_version = key.request_header_version(version);
    let header = RequestHeader::decode(&mut frame, header_version)
        .map_err(|e| DecodeError::Body(e.to_string()))?;
    let mut out = bytes::BytesMut::new();
    macro_rules! body {
        ($t:ty) => {{
            let req =
                <$t>::decode(&mut frame, version).map_err(|e| DecodeError::Body(e.to_string()))?;
            if reencode {
                header
                    .encode(&mut out, header_version)
                    .and_then(|_| req.encode(&mut out, version))
                    .map_err(|e| DecodeError::Body(format!("re-encoding: {e}")))
            } else {
                Ok(())
            }
        }};
    }
    with_request_type!(key, body, Err(DecodeError::UnknownApi(raw_key)))?;
    Ok((key, version, out.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::Message;

    fn crate_range(key: ApiKey) -> (i16, i16) {
        macro_rules! range {
            ($t:ty) => {
                (<$t>::VERSIONS.min, <$t>::VERSIONS.max)
            };
        }
        with_request_type!(key, range, panic!("no request type for {key:?}"))
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

#[cfg(test)]
mod decode_props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_bytes_after_a_valid_key_and_version_never_panic(
            api in 0usize..SUPPORTED_APIS.len(),
            version_pick in 0i16..20,
            tail in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let a = SUPPORTED_APIS[api];
            let version = a.min_served + version_pick % (a.max - a.min_served + 1);
            let mut frame = Vec::new();
            frame.extend_from_slice(&(a.key as i16).to_be_bytes());
            frame.extend_from_slice(&version.to_be_bytes());
            frame.extend_from_slice(&[0, 0, 0, 1]);
            frame.extend_from_slice(&tail);
            let _ = decode_request(Bytes::from(frame));
        }

        #[test]
        fn arbitrary_frames_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_request(Bytes::from(frame));
        }
    }

    fn frame_of<R: kafka_protocol::protocol::Request>(version: i16, req: &R) -> Bytes {
        let key = ApiKey::try_from(R::KEY).expect("key");
        let mut b = bytes::BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(kafka_protocol::protocol::StrBytes::from_static_str(
                "prop",
            )))
            .encode(&mut b, key.request_header_version(version))
            .expect("header");
        req.encode(&mut b, version).expect("body");
        b.freeze()
    }

    proptest! {
        #[test]
        fn produce_requests_round_trip_through_the_server_decoder(
            version in 3i16..=9,
            acks in -1i16..=1,
            topics in proptest::collection::vec(
                ("[a-z._-]{1,40}", proptest::collection::vec((0i32..1000, proptest::collection::vec(any::<u8>(), 0..128)), 0..4)),
                0..4,
            ),
        ) {
            let req = ProduceRequest::default()
                .with_acks(acks)
                .with_timeout_ms(30_000)
                .with_topic_data(topics.into_iter().map(|(name, parts)| {
                    produce_request::TopicProduceData::default()
                        .with_name(TopicName(kafka_protocol::protocol::StrBytes::from_string(name)))
                        .with_partition_data(parts.into_iter().map(|(i, rec)| {
                            produce_request::PartitionProduceData::default()
                                .with_index(i)
                                .with_records(Some(Bytes::from(rec)))
                        }).collect())
                }).collect());
            let frame = frame_of(version, &req);
            prop_assert_eq!(decode_request(frame.clone()), Ok((ApiKey::Produce, version)));
            prop_assert_eq!(reencode_request(frame.clone()), Ok(frame));
        }

        #[test]
        fn metadata_requests_round_trip_through_the_server_decoder(
            version in 0i16..=12,
            names in proptest::collection::vec("[a-zA-Z0-9._-]{1,60}", 0..8),
            auto_create in any::<bool>(),
        ) {
            let topics = names.into_iter().map(|n| {
                metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(TopicName(kafka_protocol::protocol::StrBytes::from_string(n))))
            }).collect();
            let req = MetadataRequest::default()
                .with_topics(Some(topics))
                .with_allow_auto_topic_creation(auto_create || version < 4);
            let frame = frame_of(version, &req);
            prop_assert_eq!(reencode_request(frame.clone()), Ok(frame));
        }
    }

    #[test]
    fn the_eight_byte_killer_frame_is_an_error() {
        // api key 3, version 0, correlation id, null client id, then 0x033c0c00 topics.
        let frame = Bytes::from_static(&[
            0, 3, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0x03, 0x3c, 0x0c, 0x00, 0xb6,
        ]);
        assert!(matches!(decode_request(frame), Err(DecodeError::Body(_))));
    }
}
