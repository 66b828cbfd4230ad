//! The one table of APIs Gregor serves. Everything that lists APIs is expanded from it: the
//! advertised ranges ([`SUPPORTED_APIS`], answered in ApiVersions), the metric labels, the
//! decoded-request enum ([`ApiRequest`]) and the server's routing to handlers.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable};

use super::DecodeError;

/// Calls `$then!` with the table of served APIs, one row per API:
///
/// `Key(RequestType) min..=max [from first_served] => handler;`
///
/// - `Key` is the `ApiKey` variant; its name is also the metric label and the `ApiRequest`
///   variant.
/// - `min..=max` is the advertised range; `from` is the first version actually decoded, when
///   it is above `min` (Produce v0–2 are advertised but refused: librdkafka before 2.11.1
///   turns off gzip/snappy/lz4 when a broker's Produce range starts above 0, and Apache Kafka
///   4.0 advertises the same way).
/// - `handler` is a path resolved in `server::dispatch`, where `route` is expanded: an
///   `async fn(&Ctx, Request) -> Option<Response>`. Only the server uses this column; naming
///   the handler here is what keeps adding an API to one line.
///
/// Rows are in ApiVersions order.
macro_rules! served_apis {
    ($then:ident) => {
        $then! {
            Produce(ProduceRequest) 0..=12 from 3 => handlers::produce::produce;
            Fetch(FetchRequest) 4..=12 => handlers::fetch::fetch;
            ListOffsets(ListOffsetsRequest) 1..=10 => handlers::fetch::list_offsets;
            Metadata(MetadataRequest) 0..=12 => handlers::metadata::metadata;
            OffsetCommit(OffsetCommitRequest) 2..=9 => handlers::offsets::offset_commit;
            OffsetFetch(OffsetFetchRequest) 1..=9 => handlers::offsets::offset_fetch;
            FindCoordinator(FindCoordinatorRequest) 0..=4 => handlers::groups::find_coordinator;
            JoinGroup(JoinGroupRequest) 0..=7 => handlers::groups::join_group;
            Heartbeat(HeartbeatRequest) 0..=4 => handlers::groups::heartbeat;
            LeaveGroup(LeaveGroupRequest) 0..=4 => handlers::groups::leave_group;
            SyncGroup(SyncGroupRequest) 0..=5 => handlers::groups::sync_group;
            DescribeGroups(DescribeGroupsRequest) 0..=5 => handlers::groups::describe_groups;
            ListGroups(ListGroupsRequest) 0..=5 => handlers::groups::list_groups;
            SaslHandshake(SaslHandshakeRequest) 0..=1 => handlers::sasl::sasl_handshake;
            ApiVersions(ApiVersionsRequest) 0..=3 => api_versions;
            CreateTopics(CreateTopicsRequest) 2..=7 => handlers::admin::create_topics;
            DeleteTopics(DeleteTopicsRequest) 1..=6 => handlers::admin::delete_topics;
            DeleteRecords(DeleteRecordsRequest) 0..=2 => handlers::records::delete_records;
            InitProducerId(InitProducerIdRequest) 0..=5 => handlers::produce::init_producer_id;
            OffsetForLeaderEpoch(OffsetForLeaderEpochRequest) 2..=4
                => handlers::fetch::offset_for_leader_epoch;
            AddPartitionsToTxn(AddPartitionsToTxnRequest) 0..=5
                => handlers::transactions::add_partitions_to_txn;
            AddOffsetsToTxn(AddOffsetsToTxnRequest) 0..=4
                => handlers::transactions::add_offsets_to_txn;
            EndTxn(EndTxnRequest) 0..=5 => handlers::transactions::end_txn;
            WriteTxnMarkers(WriteTxnMarkersRequest) 1..=1
                => handlers::transactions::write_txn_markers;
            TxnOffsetCommit(TxnOffsetCommitRequest) 0..=5
                => handlers::transactions::txn_offset_commit;
            DescribeAcls(DescribeAclsRequest) 1..=3 => handlers::acls::describe_acls;
            CreateAcls(CreateAclsRequest) 1..=3 => handlers::acls::create_acls;
            DeleteAcls(DeleteAclsRequest) 1..=3 => handlers::acls::delete_acls;
            DescribeConfigs(DescribeConfigsRequest) 1..=4 => handlers::configs::describe_configs;
            AlterConfigs(AlterConfigsRequest) 0..=2 => handlers::configs::alter_configs;
            DescribeLogDirs(DescribeLogDirsRequest) 1..=4 => handlers::log_dirs::describe_log_dirs;
            SaslAuthenticate(SaslAuthenticateRequest) 0..=2 => handlers::sasl::sasl_authenticate;
            DeleteGroups(DeleteGroupsRequest) 0..=2 => handlers::groups::delete_groups;
            ElectLeaders(ElectLeadersRequest) 0..=2 => handlers::replicas::elect_leaders;
            IncrementalAlterConfigs(IncrementalAlterConfigsRequest) 0..=1
                => handlers::configs::incremental_alter_configs;
            CreatePartitions(CreatePartitionsRequest) 0..=3 => handlers::admin::create_partitions;
            AlterPartitionReassignments(AlterPartitionReassignmentsRequest) 0..=1
                => handlers::replicas::alter_partition_reassignments;
            ListPartitionReassignments(ListPartitionReassignmentsRequest) 0..=0
                => handlers::replicas::list_partition_reassignments;
            OffsetDelete(OffsetDeleteRequest) 0..=0 => handlers::offsets::offset_delete;
            DescribeClientQuotas(DescribeClientQuotasRequest) 0..=1
                => handlers::quotas::describe_client_quotas;
            AlterClientQuotas(AlterClientQuotasRequest) 0..=1
                => handlers::quotas::alter_client_quotas;
            DescribeUserScramCredentials(DescribeUserScramCredentialsRequest) 0..=0
                => handlers::sasl::describe_user_scram_credentials;
            AlterUserScramCredentials(AlterUserScramCredentialsRequest) 0..=0
                => handlers::sasl::alter_user_scram_credentials;
            DescribeCluster(DescribeClusterRequest) 0..=2 => handlers::metadata::describe_cluster;
            DescribeQuorum(DescribeQuorumRequest) 0..=2 => handlers::quorum::describe_quorum;
            UpdateFeatures(UpdateFeaturesRequest) 0..=2 => handlers::features::update_features;
            DescribeProducers(DescribeProducersRequest) 0..=0
                => handlers::transactions::describe_producers;
            UnregisterBroker(UnregisterBrokerRequest) 0..=0
                => handlers::unregister::unregister_broker;
            DescribeTransactions(DescribeTransactionsRequest) 0..=0
                => handlers::transactions::describe_transactions;
            ListTransactions(ListTransactionsRequest) 0..=2
                => handlers::transactions::list_transactions;
            ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest) 0..=1
                => handlers::consumer_groups::consumer_group_heartbeat;
            ConsumerGroupDescribe(ConsumerGroupDescribeRequest) 0..=1
                => handlers::consumer_groups::consumer_group_describe;
            DescribeTopicPartitions(DescribeTopicPartitionsRequest) 0..=0
                => handlers::topic_partitions::describe_topic_partitions;
            ShareGroupHeartbeat(ShareGroupHeartbeatRequest) 1..=1
                => handlers::share::share_group_heartbeat;
            ShareGroupDescribe(ShareGroupDescribeRequest) 1..=1
                => handlers::share::share_group_describe;
            ShareFetch(ShareFetchRequest) 1..=2 => handlers::share::share_fetch;
            ShareAcknowledge(ShareAcknowledgeRequest) 1..=2 => handlers::share::share_acknowledge;
            InitializeShareGroupState(InitializeShareGroupStateRequest) 0..=0
                => handlers::share_offsets::initialize_share_group_state;
            ReadShareGroupState(ReadShareGroupStateRequest) 0..=0
                => handlers::share_offsets::read_share_group_state;
            ReadShareGroupStateSummary(ReadShareGroupStateSummaryRequest) 0..=0
                => handlers::share_offsets::read_share_group_state_summary;
            WriteShareGroupState(WriteShareGroupStateRequest) 0..=0
                => handlers::share_offsets::write_share_group_state;
            DeleteShareGroupState(DeleteShareGroupStateRequest) 0..=0
                => handlers::share_offsets::delete_share_group_state;
            DescribeShareGroupOffsets(DescribeShareGroupOffsetsRequest) 0..=1
                => handlers::share_offsets::describe_share_group_offsets;
            AlterShareGroupOffsets(AlterShareGroupOffsetsRequest) 0..=0
                => handlers::share_offsets::alter_share_group_offsets;
            DeleteShareGroupOffsets(DeleteShareGroupOffsetsRequest) 0..=0
                => handlers::share_offsets::delete_share_group_offsets;
        }
    };
}
pub(crate) use served_apis;

/// The first decoded version of a row: its `from`, else its advertised minimum.
macro_rules! first_served {
    ($min:literal) => {
        $min
    };
    ($min:literal $from:literal) => {
        $from
    };
}

/// One advertised API: key, label and inclusive version range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiRange {
    /// The API.
    pub key: ApiKey,
    /// The API's name as Kafka spells it: the metric label and span field, bounded by the table.
    pub label: &'static str,
    /// Lowest version advertised.
    pub min: i16,
    /// Highest version advertised.
    pub max: i16,
    /// Lowest version actually decoded (Produce v0–2 are advertised but refused).
    pub min_served: i16,
}

impl ApiRange {
    /// Whether `version` of this API can be decoded and answered.
    pub fn serves(&self, version: i16) -> bool {
        version >= self.min_served && version <= self.max
    }
}

/// Expands the table into the advertised ranges and the decoded-request enum.
macro_rules! expand_table {
    ($( $key:ident($req:ty) $min:literal..=$max:literal $(from $from:literal)?
        => $handler:path; )*) => {
        /// Exactly the APIs and versions Gregor implements, advertised in ApiVersions in this
        /// order. Produce is advertised from v0 although v0–2 (message formats 0/1) are
        /// refused; see `min_served`.
        pub const SUPPORTED_APIS: &[ApiRange] = &[$(
            ApiRange {
                key: ApiKey::$key,
                label: stringify!($key),
                min: $min,
                max: $max,
                min_served: first_served!($min $($from)?),
            },
        )*];

        /// A decoded request of an API Gregor serves: one variant per row of the table.
        #[derive(Debug, Clone, PartialEq)]
        pub enum ApiRequest {$(
            #[doc = concat!("A ", stringify!($key), " request.")]
            $key($req),
        )*}

        impl ApiRequest {
            /// Decodes the body of a `key` request at `version`.
            pub(super) fn decode(
                key: ApiKey,
                version: i16,
                body: &mut Bytes,
            ) -> Result<ApiRequest, DecodeError> {
                let decoded = match key {
                    $(ApiKey::$key => <$req>::decode(body, version).map(ApiRequest::$key),)*
                    // The header decoder admits only served keys; this is a value, not a panic.
                    _ => return Err(DecodeError::UnknownApi(key as i16)),
                };
                decoded.map_err(|e| DecodeError::Body(e.to_string()))
            }

            /// The API this request belongs to.
            pub fn key(&self) -> ApiKey {
                match self {
                    $(ApiRequest::$key(_) => ApiKey::$key,)*
                }
            }

            /// Encodes the body at `version`, as a client would have sent it.
            pub(super) fn encode(
                &self,
                out: &mut BytesMut,
                version: i16,
            ) -> Result<(), DecodeError> {
                let encoded = match self {
                    $(ApiRequest::$key(r) => r.encode(out, version),)*
                };
                encoded.map_err(|e| DecodeError::Reencode(e.to_string()))
            }
        }

        /// The codec's own version range for `key`'s request type, if Gregor serves it.
        #[cfg(test)]
        fn codec_versions(key: ApiKey) -> Option<(i16, i16)> {
            use kafka_protocol::protocol::Message;
            match key {
                $(ApiKey::$key => Some((<$req>::VERSIONS.min, <$req>::VERSIONS.max)),)*
                _ => None,
            }
        }
    };
}
served_apis!(expand_table);

/// The advertised range for `key`, if Gregor serves it.
pub fn supported(key: ApiKey) -> Option<ApiRange> {
    SUPPORTED_APIS.iter().copied().find(|a| a.key == key)
}

/// Whether `version` of `key` can be decoded and answered.
pub fn serves(key: ApiKey, version: i16) -> bool {
    supported(key).is_some_and(|a| a.serves(version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_version_is_decodable_by_the_codec() {
        for a in SUPPORTED_APIS {
            let (min, max) = codec_versions(a.key).expect("a request type per served key");
            assert!(a.min_served >= min, "{:?} serves below codec min", a.key);
            assert!(a.max <= max, "{:?} advertises above codec max", a.key);
            assert!(a.min <= a.min_served && a.min_served <= a.max);
        }
    }

    #[test]
    fn labels_are_the_kafka_names_of_the_keys() {
        for a in SUPPORTED_APIS {
            assert_eq!(a.label, format!("{:?}", a.key));
        }
        assert_eq!(supported(ApiKey::Produce).map(|a| a.min_served), Some(3));
    }
}
