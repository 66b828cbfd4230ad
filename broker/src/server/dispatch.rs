//! Request dispatch: header parse, version check, body decode, handler call, response encode.
//! Nothing from the network can panic here: every decode failure is a value.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use kafka_protocol::ResponseError;
use tracing::Instrument;

use super::handlers;
use super::Broker;
use crate::protocol::{self, SUPPORTED_APIS};

/// What the connection does after a request.
#[derive(Debug)]
pub enum Outcome {
    /// Write the encoded response in the output buffer.
    Respond,
    /// Nothing to send (Produce with acks=0).
    NoResponse,
    /// Close the connection, for this reason.
    Close(String),
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
    mut body: Bytes,
    peer: SocketAddr,
    listener: &str,
    out: &mut BytesMut,
) -> Outcome {
    if body.len() < 8 {
        return Outcome::Close(format!("request of {} bytes has no header", body.len()));
    }
    let api_key = i16::from_be_bytes([body[0], body[1]]);
    let version = i16::from_be_bytes([body[2], body[3]]);
    let correlation_id = i32::from_be_bytes([body[4], body[5], body[6], body[7]]);
    let Ok(key) = ApiKey::try_from(api_key) else {
        broker
            .metrics
            .request_errors
            .with_label_values(&["unknown_api"])
            .inc();
        return Outcome::Close(format!("unknown API key {api_key}"));
    };
    if key == ApiKey::ApiVersions && !protocol::serves(key, version) {
        // Newer ApiVersions than we know: answer with a v0 body and error 35 so the client
        // retries with a version we list. The ApiVersions response header is always v0.
        let body = api_versions_body(Some(ResponseError::UnsupportedVersion));
        return match write_response(out, correlation_id, 0, 0, &body) {
            Ok(()) => Outcome::Respond,
            Err(e) => Outcome::Close(e),
        };
    }
    if !protocol::serves(key, version) {
        broker
            .metrics
            .request_errors
            .with_label_values(&["unsupported_version"])
            .inc();
        return Outcome::Close(format!("unsupported version {version} of {key:?}"));
    }
    let header = match RequestHeader::decode(&mut body, key.request_header_version(version)) {
        Ok(h) => h,
        Err(e) => return Outcome::Close(format!("undecodable request header: {e}")),
    };
    let ctx = Ctx {
        broker,
        version,
        client_id: header
            .client_id
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default(),
        peer,
        listener,
    };
    let started = Instant::now();
    let span = tracing::debug_span!(
        "request",
        api = api_label(key),
        version,
        correlation_id,
        client_id = %ctx.client_id
    );
    let outcome = route(&ctx, key, body, correlation_id, out)
        .instrument(span)
        .await;
    let label = api_label(key);
    broker.metrics.requests.with_label_values(&[label]).inc();
    broker
        .metrics
        .request_latency
        .with_label_values(&[label])
        .observe(started.elapsed().as_secs_f64());
    outcome
}

/// A bounded metric label for an API key (only served keys reach here).
fn api_label(key: ApiKey) -> &'static str {
    match key {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Metadata => "Metadata",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::InitProducerId => "InitProducerId",
        ApiKey::OffsetForLeaderEpoch => "OffsetForLeaderEpoch",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::AlterConfigs => "AlterConfigs",
        ApiKey::DeleteGroups => "DeleteGroups",
        ApiKey::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        ApiKey::CreatePartitions => "CreatePartitions",
        ApiKey::DescribeCluster => "DescribeCluster",
        ApiKey::DescribeQuorum => "DescribeQuorum",
        ApiKey::DescribeLogDirs => "DescribeLogDirs",
        ApiKey::ElectLeaders => "ElectLeaders",
        ApiKey::AlterPartitionReassignments => "AlterPartitionReassignments",
        ApiKey::ListPartitionReassignments => "ListPartitionReassignments",
        ApiKey::UnregisterBroker => "UnregisterBroker",
        _ => "other",
    }
}

async fn call<Req, F, Fut>(
    ctx: &Ctx<'_>,
    mut body: Bytes,
    correlation_id: i32,
    out: &mut BytesMut,
    handler: F,
) -> Outcome
where
    Req: Request,
    F: FnOnce(Req) -> Fut,
    Fut: std::future::Future<Output = Option<Req::Response>>,
{
    let req = match Req::decode(&mut body, ctx.version) {
        Ok(r) => r,
        Err(e) => {
            ctx.broker
                .metrics
                .request_errors
                .with_label_values(&["decode"])
                .inc();
            return Outcome::Close(format!("undecodable request body: {e}"));
        }
    };
    let Some(resp) = handler(req).await else {
        return Outcome::NoResponse;
    };
    let header_version = <Req::Response as HeaderVersion>::header_version(ctx.version);
    match write_response(out, correlation_id, ctx.version, header_version, &resp) {
        Ok(()) => Outcome::Respond,
        Err(e) => Outcome::Close(e),
    }
}

async fn route(ctx: &Ctx<'_>, key: ApiKey, body: Bytes, cid: i32, out: &mut BytesMut) -> Outcome {
    use handlers::*;
    match key {
        ApiKey::ApiVersions => {
            call(ctx, body, cid, out, |_: ApiVersionsRequest| async {
                Some(api_versions_body(None))
            })
            .await
        }
        ApiKey::Metadata => call(ctx, body, cid, out, |r| metadata::metadata(ctx, r)).await,
        ApiKey::Produce => call(ctx, body, cid, out, |r| produce::produce(ctx, r)).await,
        ApiKey::Fetch => call(ctx, body, cid, out, |r| fetch::fetch(ctx, r)).await,
        ApiKey::ListOffsets => call(ctx, body, cid, out, |r| fetch::list_offsets(ctx, r)).await,
        ApiKey::OffsetForLeaderEpoch => {
            call(ctx, body, cid, out, |r| {
                fetch::offset_for_leader_epoch(ctx, r)
            })
            .await
        }
        ApiKey::CreateTopics => call(ctx, body, cid, out, |r| admin::create_topics(ctx, r)).await,
        ApiKey::DeleteTopics => call(ctx, body, cid, out, |r| admin::delete_topics(ctx, r)).await,
        ApiKey::CreatePartitions => {
            call(ctx, body, cid, out, |r| admin::create_partitions(ctx, r)).await
        }
        ApiKey::DescribeConfigs => {
            call(ctx, body, cid, out, |r| configs::describe_configs(ctx, r)).await
        }
        ApiKey::AlterConfigs => call(ctx, body, cid, out, |r| configs::alter_configs(ctx, r)).await,
        ApiKey::IncrementalAlterConfigs => {
            call(ctx, body, cid, out, |r| {
                configs::incremental_alter_configs(ctx, r)
            })
            .await
        }
        ApiKey::DescribeCluster => {
            call(ctx, body, cid, out, |r| metadata::describe_cluster(ctx, r)).await
        }
        ApiKey::AlterPartitionReassignments => {
            call(ctx, body, cid, out, |r| {
                replicas::alter_partition_reassignments(ctx, r)
            })
            .await
        }
        ApiKey::ListPartitionReassignments => {
            call(ctx, body, cid, out, |r| {
                replicas::list_partition_reassignments(ctx, r)
            })
            .await
        }
        ApiKey::DescribeLogDirs => {
            call(ctx, body, cid, out, |r| log_dirs::describe_log_dirs(ctx, r)).await
        }
        ApiKey::ElectLeaders => {
            call(ctx, body, cid, out, |r| replicas::elect_leaders(ctx, r)).await
        }
        ApiKey::InitProducerId => {
            call(ctx, body, cid, out, |r| produce::init_producer_id(ctx, r)).await
        }
        ApiKey::FindCoordinator => {
            call(ctx, body, cid, out, |r| groups::find_coordinator(ctx, r)).await
        }
        ApiKey::JoinGroup => call(ctx, body, cid, out, |r| groups::join_group(ctx, r)).await,
        ApiKey::SyncGroup => call(ctx, body, cid, out, |r| groups::sync_group(ctx, r)).await,
        ApiKey::Heartbeat => call(ctx, body, cid, out, |r| groups::heartbeat(ctx, r)).await,
        ApiKey::LeaveGroup => call(ctx, body, cid, out, |r| groups::leave_group(ctx, r)).await,
        ApiKey::DescribeGroups => {
            call(ctx, body, cid, out, |r| groups::describe_groups(ctx, r)).await
        }
        ApiKey::ListGroups => call(ctx, body, cid, out, |r| groups::list_groups(ctx, r)).await,
        ApiKey::DeleteGroups => call(ctx, body, cid, out, |r| groups::delete_groups(ctx, r)).await,
        ApiKey::OffsetCommit => call(ctx, body, cid, out, |r| offsets::offset_commit(ctx, r)).await,
        ApiKey::DescribeQuorum => {
            call(ctx, body, cid, out, |r| quorum::describe_quorum(ctx, r)).await
        }
        ApiKey::UnregisterBroker => {
            call(ctx, body, cid, out, |r| {
                unregister::unregister_broker(ctx, r)
            })
            .await
        }
        ApiKey::OffsetFetch => call(ctx, body, cid, out, |r| offsets::offset_fetch(ctx, r)).await,
        other => Outcome::Close(format!("{other:?} is not served")),
    }
}

/// A `StrBytes` from a `String`.
pub fn sb(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}
