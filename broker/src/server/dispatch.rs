//! Request dispatch: header and body decode (the `protocol` decoder the fuzz target and golden
//! tests drive), handler call, response encode. Routing is expanded from the table of served
//! APIs in `protocol`. Nothing from the network can panic here: every decode failure is a value.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, HeaderVersion, StrBytes};
use kafka_protocol::ResponseError;
use tracing::Instrument;

use super::handlers;
use super::session::{Gate, Session};
use super::Broker;
use crate::authz::{self, Operation, Requester, Resource, ResourceType};
use crate::cluster::AdminError;
use crate::config::AuthorizerConfig;
use crate::protocol::{self, ApiRequest, DecodeError, Header, SUPPORTED_APIS};

/// What the connection does after a request.
pub enum Outcome {
    /// Write the encoded response in the output buffer.
    Respond,
    /// The response is still being made (a Produce waiting for the in-sync replicas): the
    /// future encodes it. The connection may serve the requests behind this one meanwhile, and
    /// sends their answers after this one.
    Pending(PendingResponse),
    /// Nothing to send (Produce with acks=0).
    NoResponse,
    /// Close the connection, for this reason.
    Close(String),
}

/// A response frame still being made; an error closes the connection.
pub type PendingResponse = BoxFuture<'static, Result<BytesMut, String>>;

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Respond => f.write_str("Respond"),
            Outcome::Pending(_) => f.write_str("Pending"),
            Outcome::NoResponse => f.write_str("NoResponse"),
            Outcome::Close(reason) => f.debug_tuple("Close").field(reason).finish(),
        }
    }
}

/// Per-request context handed to handlers.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// Shared broker state.
    pub broker: &'a Arc<Broker>,
    /// Request API version.
    pub version: i16,
    /// Client id from the header.
    pub client_id: String,
    /// Peer address.
    pub peer: SocketAddr,
    /// Name of the listener the connection was accepted on: Metadata, FindCoordinator and
    /// DescribeCluster answer with the brokers' addresses on that listener.
    pub listener: &'a str,
    /// The connection's principal (`User:ANONYMOUS` until SASL establishes another), which
    /// the authorizer checks.
    pub principal: &'a str,
    /// The connection's authentication state, which SaslHandshake and SaslAuthenticate move.
    /// Never locked across an await.
    pub session: &'a parking_lot::Mutex<Session>,
}

impl Ctx<'_> {
    /// Whether the request's principal may perform `op` on `resource`: always when no
    /// authorizer is configured, else as the StandardAuthorizer decides from the committed
    /// ACLs.
    pub fn authorized(&self, op: Operation, resource: Resource<'_>) -> bool {
        self.decide(|config, acls, who| authz::authorize(config, acls.values(), who, op, resource))
    }

    /// KIP-430: the bit field (1 << operation code) of the operations the principal may
    /// perform on `resource`, of those its type supports; all of them without an authorizer.
    pub fn authorized_operations(&self, resource: Resource<'_>) -> i32 {
        authz::supported_operations(resource.kind)
            .iter()
            .filter(|op| self.authorized(**op, resource))
            .fold(0, |bits, op| bits | (1 << op.code()))
    }

    /// Whether the principal may perform `op` on at least one resource of type `kind`
    /// (Kafka's `authorizeByResourceType`): always when no authorizer is configured.
    pub fn authorized_any(&self, op: Operation, kind: ResourceType) -> bool {
        self.decide(|config, acls, who| {
            authz::authorize_by_resource_type(config, acls.values(), who, op, kind)
        })
    }

    /// Runs an authorizer decision for this request's principal and host; true without an
    /// authorizer.
    fn decide(
        &self,
        decision: impl FnOnce(&AuthorizerConfig, &authz::Acls, Requester<'_>) -> bool,
    ) -> bool {
        let cluster = &self.broker.cluster;
        let Some(config) = &cluster.config.authorizer else {
            return true;
        };
        let host = self.peer.ip().to_canonical().to_string();
        let who = Requester {
            principal: self.principal,
            host: &host,
        };
        decision(config, &cluster.acls(), who)
    }

    /// Records `bytes` of `kind` against the client's quota; the throttle time to answer
    /// (ms, 0 within quota), for which the connection is then muted.
    pub fn throttle(&self, kind: super::throttle::QuotaKind, bytes: u64) -> i32 {
        let now = Instant::now();
        let quotas = self.broker.cluster.client_quotas();
        let user = super::throttle::quota_user(self.principal);
        let throttle =
            self.broker
                .throttler
                .record(&quotas, kind, user, &self.client_id, bytes, now);
        if throttle.is_zero() {
            return 0;
        }
        self.session.lock().mute(now, throttle);
        i32::try_from(throttle.as_millis()).unwrap_or(i32::MAX)
    }

    /// Records the time this request kept the broker busy against the client's
    /// `request_percentage`; the throttle time to answer (ms, 0 within quota), for which the
    /// connection is then muted.
    fn throttle_request(&self, busy: std::time::Duration) -> i32 {
        let now = Instant::now();
        let quotas = self.broker.cluster.client_quotas();
        let user = super::throttle::quota_user(self.principal);
        let throttle = self
            .broker
            .throttler
            .record_time(&quotas, user, &self.client_id, busy, now);
        if throttle.is_zero() {
            return 0;
        }
        self.session.lock().mute(now, throttle);
        i32::try_from(throttle.as_millis()).unwrap_or(i32::MAX)
    }

    /// Whether this client has spent its `controller_mutation_rate` (KIP-599): its bucket is
    /// negative.
    pub fn mutations_spent(&self) -> bool {
        !self.mutation_throttle().is_zero()
    }

    /// Takes `partitions` created or deleted from this client's mutation bucket.
    pub fn record_mutation(&self, partitions: u32) {
        let quotas = self.broker.cluster.client_quotas();
        let user = super::throttle::quota_user(self.principal);
        self.broker
            .mutations
            .record(&quotas, user, &self.client_id, partitions, Instant::now());
    }

    /// How long this client must back off after its mutations (ms, 0 within its
    /// `controller_mutation_rate`); the connection is muted for that long.
    pub fn mutation_throttle_ms(&self) -> i32 {
        let throttle = self.mutation_throttle();
        if throttle.is_zero() {
            return 0;
        }
        self.session.lock().mute(Instant::now(), throttle);
        i32::try_from(throttle.as_millis()).unwrap_or(i32::MAX)
    }

    fn mutation_throttle(&self) -> std::time::Duration {
        let quotas = self.broker.cluster.client_quotas();
        let user = super::throttle::quota_user(self.principal);
        self.broker
            .mutations
            .throttle(&quotas, user, &self.client_id, Instant::now())
    }

    /// Takes back `bytes` of `kind` recorded by [`Ctx::throttle`]: a throttled fetch answers
    /// no records, so they do not count.
    pub fn unrecord(&self, kind: super::throttle::QuotaKind, bytes: u64) {
        let quotas = self.broker.cluster.client_quotas();
        let user = super::throttle::quota_user(self.principal);
        self.broker
            .throttler
            .unrecord(&quotas, kind, user, &self.client_id, bytes, Instant::now());
    }

    /// Whether the principal may create topic `name`: CREATE on the cluster or on the topic.
    pub fn may_create_topic(&self, name: &str) -> bool {
        self.authorized(Operation::Create, Resource::cluster())
            || self.authorized(Operation::Create, Resource::topic(name))
    }

    /// [`Ctx::authorized`] as a result: the refusal is the resource kind's
    /// AUTHORIZATION_FAILED error.
    pub fn authorize(&self, op: Operation, resource: Resource<'_>) -> Result<(), AdminError> {
        if self.authorized(op, resource) {
            Ok(())
        } else {
            Err(AdminError::Unauthorized(resource.kind))
        }
    }
}

fn write_response<R: Encodable + HeaderVersion>(
    out: &mut BytesMut,
    correlation_id: i32,
    version: i16,
    header_version: i16,
    body: &R,
) -> Result<(), String> {
    let start = out.len();
    out.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(out, header_version)
        .map_err(|e| format!("encoding response header: {e}"))?;
    body.encode(out, version)
        .map_err(|e| format!("encoding response: {e}"))?;
    let len = (out.len() - start - 4) as i32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

fn api_versions_body(error: Option<ResponseError>) -> ApiVersionsResponse {
    let keys = SUPPORTED_APIS
        .iter()
        .filter(|a| error.is_none() || a.key == ApiKey::ApiVersions)
        .map(|a| {
            ApiVersion::default()
                .with_api_key(a.key as i16)
                .with_min_version(a.min)
                .with_max_version(a.max)
        })
        .collect();
    ApiVersionsResponse::default()
        .with_error_code(error.map(|e| e.code()).unwrap_or(0))
        .with_api_keys(keys)
}

/// Handles one request frame, writing the response frame (if any) to `out`.
pub async fn handle(
    broker: &Arc<Broker>,
    mut frame: Bytes,
    peer: SocketAddr,
    listener: &str,
    session: &parking_lot::Mutex<Session>,
    out: &mut BytesMut,
) -> Outcome {
    let request_size = frame.len() as f64;
    let header = match protocol::decode_header(&mut frame) {
        Ok(h) => h,
        Err(e) => return refuse(broker, e, out),
    };
    let gate = session.lock().admits(header.api.key, Instant::now());
    if let Gate::Close(reason) = gate {
        broker
            .metrics
            .request_errors
            .with_label_values(&["unauthenticated"])
            .inc();
        return Outcome::Close(reason);
    }
    let principal = session.lock().principal();
    let ctx = Ctx {
        broker,
        version: header.version,
        client_id: header.client_id(),
        peer,
        listener,
        principal: &principal,
        session,
    };
    let label = header.api.label;
    let started = Instant::now();
    let span = tracing::debug_span!(
        "request",
        api = label,
        version = header.version,
        correlation_id = header.correlation_id(),
        client_id = %ctx.client_id
    );
    let outcome = serve(&ctx, &header, frame, out).instrument(span).await;
    let m = &broker.metrics;
    m.requests.with_label_values(&[label]).inc();
    m.request_size
        .with_label_values(&[label])
        .observe(request_size);
    let observe = move |m: &crate::metrics::Metrics, out: &BytesMut| {
        m.request_latency
            .with_label_values(&[label])
            .observe(started.elapsed().as_secs_f64());
        if !out.is_empty() {
            m.response_size
                .with_label_values(&[label])
                .observe(out.len() as f64);
        }
    };
    match outcome {
        // Timed to its answer, like any other request.
        Outcome::Pending(answer) => {
            let metrics = Arc::clone(&broker.metrics);
            Outcome::Pending(Box::pin(async move {
                let out = answer.await?;
                observe(&metrics, &out);
                Ok(out)
            }))
        }
        outcome => {
            observe(m, out);
            outcome
        }
    }
}

/// The answer to a frame whose header does not decode: close the connection, except that an
/// ApiVersions request newer than Gregor knows gets a v0 body with UNSUPPORTED_VERSION, so the
/// client retries with a version Gregor lists (the ApiVersions response header is always v0).
fn refuse(broker: &Broker, error: DecodeError, out: &mut BytesMut) -> Outcome {
    if let DecodeError::UnsupportedVersion {
        key: ApiKey::ApiVersions,
        correlation_id,
        ..
    } = error
    {
        let body = api_versions_body(Some(ResponseError::UnsupportedVersion));
        return match write_response(out, correlation_id, 0, 0, &body) {
            Ok(()) => Outcome::Respond,
            Err(e) => Outcome::Close(e),
        };
    }
    let category = match error {
        DecodeError::UnknownApi(_) => Some("unknown_api"),
        DecodeError::UnsupportedVersion { .. } => Some("unsupported_version"),
        DecodeError::Short(_)
        | DecodeError::Header(_)
        | DecodeError::Body(_)
        | DecodeError::Reencode(_) => None,
    };
    if let Some(category) = category {
        broker
            .metrics
            .request_errors
            .with_label_values(&[category])
            .inc();
    }
    Outcome::Close(error.to_string())
}

/// Decodes the body of a request whose header decoded, calls its handler and writes the
/// response.
async fn serve(ctx: &Ctx<'_>, header: &Header, body: Bytes, out: &mut BytesMut) -> Outcome {
    let request = match protocol::decode_body(header, body) {
        Ok(r) => r,
        Err(e) => {
            ctx.broker
                .metrics
                .request_errors
                .with_label_values(&["decode"])
                .inc();
            return Outcome::Close(e.to_string());
        }
    };
    match request {
        ApiRequest::Produce(r) => produce(ctx, header.correlation_id(), r, out).await,
        request => route(ctx, header.correlation_id(), request, out).await,
    }
}

/// Produce, outside the table's routing: its appends run now, in request order, and an acks=all
/// wait for the in-sync replicas becomes a pending response, so that the connection serves the
/// requests behind it meanwhile instead of waiting on a follower's next fetch.
async fn produce(
    ctx: &Ctx<'_>,
    correlation_id: i32,
    request: ProduceRequest,
    out: &mut BytesMut,
) -> Outcome {
    // As exempt_from_request_quota says of a Produce.
    let exempt = request.acks == 0;
    let (produced, time) =
        super::request_time::timed(handlers::produce::append(ctx, request)).await;
    observe_queued(ctx, "Produce", time.queued);
    match produced {
        handlers::produce::Produced::Now(response) => {
            let response = request_quota(ctx, exempt, time.busy, response);
            respond(ctx, correlation_id, out, response)
        }
        handlers::produce::Produced::Later(answer) => {
            // The request quota counts the time the appends kept the broker busy.
            let throttle = if exempt {
                0
            } else {
                ctx.throttle_request(time.busy)
            };
            let version = ctx.version;
            Outcome::Pending(Box::pin(async move {
                let mut response = answer.await;
                response.throttle_time_ms = response.throttle_time_ms.max(throttle);
                let mut out = BytesMut::new();
                let header_version = ProduceResponse::header_version(version);
                write_response(&mut out, correlation_id, version, header_version, &response)?;
                Ok(out)
            }))
        }
    }
}

/// Records how long a request waited for a worker before its handler ran.
fn observe_queued(ctx: &Ctx<'_>, api: &str, queued: Option<std::time::Duration>) {
    if let Some(queued) = queued {
        ctx.broker
            .metrics
            .request_queue
            .with_label_values(&[api])
            .observe(queued.as_secs_f64());
    }
}

/// Writes `response` at the request's version, or nothing when the handler has no answer
/// (Produce with acks=0).
fn respond<R: Encodable + HeaderVersion>(
    ctx: &Ctx<'_>,
    correlation_id: i32,
    out: &mut BytesMut,
    response: Option<R>,
) -> Outcome {
    let Some(response) = response else {
        return Outcome::NoResponse;
    };
    let header_version = R::header_version(ctx.version);
    match write_response(out, correlation_id, ctx.version, header_version, &response) {
        Ok(()) => Outcome::Respond,
        Err(e) => Outcome::Close(e),
    }
}

/// ApiVersions: the table's advertised ranges.
async fn api_versions(_: &Ctx<'_>, _: ApiVersionsRequest) -> Option<ApiVersionsResponse> {
    Some(handlers::features::with_features(api_versions_body(None)))
}

/// A response's `throttle_time_ms`, where its message has one (every response Gregor serves
/// but SaslHandshake's, SaslAuthenticate's and DescribeQuorum's).
trait ThrottleTime {
    fn throttle_time_mut(&mut self) -> Option<&mut i32>;

    /// Takes out the data a throttled answer must not carry; the record bytes taken (only a
    /// Fetch response has any).
    fn withhold_data(&mut self) -> u64 {
        0
    }
}

/// A fetch throttled by its request quota answers no records, as Kafka's
/// (`getThrottledResponse`); they stay to be fetched again.
impl ThrottleTime for FetchResponse {
    fn throttle_time_mut(&mut self) -> Option<&mut i32> {
        Some(&mut self.throttle_time_ms)
    }

    fn withhold_data(&mut self) -> u64 {
        let bytes = self
            .responses
            .iter()
            .flat_map(|t| &t.partitions)
            .filter_map(|p| p.records.as_ref())
            .map(|r| r.len() as u64)
            .sum();
        self.responses.clear();
        bytes
    }
}

macro_rules! throttle_time {
    ($($response:ty),* $(,)?) => {$(
        impl ThrottleTime for $response {
            fn throttle_time_mut(&mut self) -> Option<&mut i32> {
                Some(&mut self.throttle_time_ms)
            }
        }
    )*};
}

macro_rules! no_throttle_time {
    ($($response:ty),* $(,)?) => {$(
        impl ThrottleTime for $response {
            fn throttle_time_mut(&mut self) -> Option<&mut i32> {
                None
            }
        }
    )*};
}

throttle_time!(
    DeleteRecordsResponse,
    DescribeTopicPartitionsResponse,
    UpdateFeaturesResponse,
    OffsetDeleteResponse,
    ProduceResponse,
    ListOffsetsResponse,
    MetadataResponse,
    OffsetCommitResponse,
    OffsetFetchResponse,
    FindCoordinatorResponse,
    JoinGroupResponse,
    HeartbeatResponse,
    LeaveGroupResponse,
    SyncGroupResponse,
    DescribeGroupsResponse,
    ListGroupsResponse,
    ApiVersionsResponse,
    CreateTopicsResponse,
    DeleteTopicsResponse,
    InitProducerIdResponse,
    OffsetForLeaderEpochResponse,
    AddPartitionsToTxnResponse,
    AddOffsetsToTxnResponse,
    EndTxnResponse,
    TxnOffsetCommitResponse,
    ConsumerGroupHeartbeatResponse,
    ConsumerGroupDescribeResponse,
    DescribeProducersResponse,
    DescribeTransactionsResponse,
    ListTransactionsResponse,
    DescribeAclsResponse,
    CreateAclsResponse,
    DeleteAclsResponse,
    DescribeConfigsResponse,
    AlterConfigsResponse,
    DescribeLogDirsResponse,
    DeleteGroupsResponse,
    ElectLeadersResponse,
    IncrementalAlterConfigsResponse,
    CreatePartitionsResponse,
    AlterPartitionReassignmentsResponse,
    ListPartitionReassignmentsResponse,
    DescribeClientQuotasResponse,
    AlterClientQuotasResponse,
    DescribeUserScramCredentialsResponse,
    AlterUserScramCredentialsResponse,
    DescribeClusterResponse,
    UnregisterBrokerResponse,
    ShareGroupHeartbeatResponse,
    ShareGroupDescribeResponse,
    ShareFetchResponse,
    ShareAcknowledgeResponse,
    DescribeShareGroupOffsetsResponse,
    AlterShareGroupOffsetsResponse,
    DeleteShareGroupOffsetsResponse,
);

no_throttle_time!(
    WriteTxnMarkersResponse,
    InitializeShareGroupStateResponse,
    ReadShareGroupStateResponse,
    ReadShareGroupStateSummaryResponse,
    WriteShareGroupStateResponse,
    DeleteShareGroupStateResponse,
    SaslHandshakeResponse,
    SaslAuthenticateResponse,
    DescribeQuorumResponse
);

/// Whether `request` is exempt from `request_percentage`, as Kafka exempts it: a follower's
/// replication fetch (a cluster action), a Produce with acks=0 (no response to carry a
/// throttle time), and the SASL exchange (Kafka's network threads authenticate, outside the
/// request quota; its answers carry no throttle time either).
fn exempt_from_request_quota(request: &ApiRequest) -> bool {
    match request {
        ApiRequest::Fetch(f) => f.replica_id.0 >= 0,
        ApiRequest::Produce(p) => p.acks == 0,
        ApiRequest::SaslHandshake(_) | ApiRequest::SaslAuthenticate(_) => true,
        _ => false,
    }
}

/// Applies the request quota to `response`, the answer to a request that kept the broker busy
/// for `busy`: over the quota, its throttle time is at least the request throttle (Produce and
/// Fetch carry their byte-rate throttle already; the larger wins, as in Kafka), and a fetch
/// answers no records (they are taken back out of its byte rate).
fn request_quota<R: ThrottleTime>(
    ctx: &Ctx<'_>,
    exempt: bool,
    busy: std::time::Duration,
    response: Option<R>,
) -> Option<R> {
    if exempt {
        return response;
    }
    let throttle = ctx.throttle_request(busy);
    response.map(|mut r| {
        if throttle > 0 {
            let withheld = r.withhold_data();
            if withheld > 0 {
                ctx.unrecord(super::throttle::QuotaKind::Fetch, withheld);
            }
        }
        if let Some(t) = r.throttle_time_mut() {
            *t = (*t).max(throttle);
        }
        r
    })
}

/// Expands the table of served APIs into `route`: each request to its handler.
macro_rules! expand_route {
    ($( $key:ident($req:ty) $min:literal..=$max:literal $(from $from:literal)?
        => $handler:path; )*) => {
        /// Calls the handler of `request`, applies the client's request quota to its response
        /// and writes it.
        async fn route(
            ctx: &Ctx<'_>,
            correlation_id: i32,
            request: ApiRequest,
            out: &mut BytesMut,
        ) -> Outcome {
            let exempt = exempt_from_request_quota(&request);
            match request {$(
                ApiRequest::$key(r) => {
                    let (response, time) = super::request_time::timed($handler(ctx, r)).await;
                    observe_queued(ctx, stringify!($key), time.queued);
                    let response = request_quota(ctx, exempt, time.busy, response);
                    respond(ctx, correlation_id, out, response)
                }
            )*}
        }
    };
}
protocol::served_apis!(expand_route);

/// A `StrBytes` from a `String`.
pub fn sb(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

#[cfg(test)]
mod tests {
    use kafka_protocol::protocol::Decodable;

    use super::*;

    #[test]
    fn a_request_throttled_fetch_withholds_its_records_and_other_answers_have_none() {
        use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
        let partition = |bytes: &'static [u8]| {
            PartitionData::default().with_records(Some(bytes::Bytes::from_static(bytes)))
        };
        let mut fetch = FetchResponse::default().with_responses(vec![
            FetchableTopicResponse::default()
                .with_partitions(vec![partition(b"abcd"), partition(b"ef")]),
            FetchableTopicResponse::default().with_partitions(vec![partition(b"")]),
        ]);
        assert_eq!(fetch.withhold_data(), 6);
        assert!(fetch.responses.is_empty());
        assert_eq!(fetch.withhold_data(), 0);
        assert_eq!(MetadataResponse::default().withhold_data(), 0);
    }

    fn errors(b: &Broker, category: &str) -> u64 {
        b.metrics
            .request_errors
            .with_label_values(&[category])
            .get()
    }

    #[tokio::test]
    async fn undecodable_frames_close_with_their_reason_and_count_a_bounded_category() {
        let d = tempfile::tempdir().expect("tempdir");
        let b = super::super::tests::broker(d.path());
        let peer: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let cases: [(&[u8], &str, Option<&str>); 6] = [
            (&[0, 3, 0], "request of 3 bytes has no header", None),
            // The refusal names the client.
            (
                &[0, 0, 0, 1, 0, 0, 0, 1, 0, 3, b'a', b'p', b'p'],
                "unsupported version 1 of Produce (client id \"app\")",
                Some("unsupported_version"),
            ),
            (
                &[0x7f, 0, 0, 0, 0, 0, 0, 1],
                "unknown API key 32512",
                Some("unknown_api"),
            ),
            (
                &[0, 0, 0, 1, 0, 0, 0, 1],
                "unsupported version 1 of Produce",
                Some("unsupported_version"),
            ),
            // Metadata v0, client id of 5 bytes with none sent.
            (
                &[0, 3, 0, 0, 0, 0, 0, 1, 0, 5],
                "undecodable request header",
                None,
            ),
            // Metadata v0, null client id, then a topic count of 0x033c0c00.
            (
                &[0, 3, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0x03, 0x3c, 0x0c, 0x00],
                "undecodable request body",
                Some("decode"),
            ),
        ];
        for (frame, reason, category) in cases {
            let before = category.map(|c| errors(&b, c));
            let mut out = BytesMut::new();
            let outcome = handle(
                &b,
                Bytes::from_static(frame),
                peer,
                "PLAINTEXT",
                &parking_lot::Mutex::new(Session::new(None, None)),
                &mut out,
            )
            .await;
            assert!(
                matches!(&outcome, Outcome::Close(r) if r.starts_with(reason)),
                "{frame:?}: {outcome:?}"
            );
            assert!(out.is_empty(), "{frame:?}");
            if let (Some(c), Some(before)) = (category, before) {
                assert_eq!(errors(&b, c), before + 1, "{frame:?}");
            }
        }
    }

    #[tokio::test]
    async fn a_newer_api_versions_gets_the_v0_downgrade_with_its_correlation_id() {
        let d = tempfile::tempdir().expect("tempdir");
        let b = super::super::tests::broker(d.path());
        let peer: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let mut out = BytesMut::new();
        let frame = Bytes::from_static(&[0, 18, 0, 99, 0, 0, 0, 42]);
        let session = parking_lot::Mutex::new(Session::new(None, None));
        let outcome = handle(&b, frame, peer, "PLAINTEXT", &session, &mut out).await;
        assert!(matches!(outcome, Outcome::Respond), "{outcome:?}");
        let mut body = out.split_off(4).freeze();
        let header = ResponseHeader::decode(&mut body, 0).expect("header");
        assert_eq!(header.correlation_id, 42);
        let r = ApiVersionsResponse::decode(&mut body, 0).expect("body");
        assert_eq!(r.error_code, ResponseError::UnsupportedVersion.code());
        assert_eq!(r.api_keys.len(), 1);
        assert_eq!(r.api_keys[0].api_key, ApiKey::ApiVersions as i16);
    }
}
