//! Request dispatch: header and body decode (the `protocol` decoder the fuzz target and golden
//! tests drive), handler call, response encode. Routing is expanded from the table of served
//! APIs in `protocol`. Nothing from the network can panic here: every decode failure is a value.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, HeaderVersion, StrBytes};
use kafka_protocol::ResponseError;
use tracing::Instrument;

use super::handlers;
use super::Broker;
use crate::protocol::{self, ApiRequest, DecodeError, Header, SUPPORTED_APIS};

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
    mut frame: Bytes,
    peer: SocketAddr,
    listener: &str,
    out: &mut BytesMut,
) -> Outcome {
    let header = match protocol::decode_header(&mut frame) {
        Ok(h) => h,
        Err(e) => return refuse(broker, e, out),
    };
    let ctx = Ctx {
        broker,
        version: header.version,
        client_id: header.client_id(),
        peer,
        listener,
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
    broker.metrics.requests.with_label_values(&[label]).inc();
    broker
        .metrics
        .request_latency
        .with_label_values(&[label])
        .observe(started.elapsed().as_secs_f64());
    outcome
}
/// The answer to a frame whose header does not decode: close the connection, except that an
/// ApiVersions request newer than Gregor knows gets a v0 body with UNSUPPORTED_VERSION, so the
/// client retries with a version Gregor lists (the ApiVersions response header is always v0).
fn refuse(broker: &Broker, error: DecodeError, out: &mut BytesMut) -> Outcome {
    let category = match error {
        DecodeError::UnsupportedVersion {
            key: ApiKey::ApiVersions,
            correlation_id,
            ..
        } => {
            let body = api_versions_body(Some(ResponseError::UnsupportedVersion));
            return match write_response(out, correlation_id, 0, 0, &body) {
                Ok(()) => Outcome::Respond,
                Err(e) => Outcome::Close(e),
            };
        }
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
    route(ctx, header.correlation_id(), request, out).await
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
    Some(api_versions_body(None))
}

/// Expands the table of served APIs into `route`: each request to its handler.
macro_rules! expand_route {
    ($( $key:ident($req:ty) $min:literal..=$max:literal $(from $from:literal)?
        => $handler:path; )*) => {
        /// Calls the handler of `request` and writes its response.
        async fn route(
            ctx: &Ctx<'_>,
            correlation_id: i32,
            request: ApiRequest,
            out: &mut BytesMut,
        ) -> Outcome {
            match request {
                $(ApiRequest::$key(r) => respond(ctx, correlation_id, out, $handler(ctx, r).await),)*
            }
        }
    };
}
protocol::served_apis!(expand_route);

/// A `StrBytes` from a `String`.
pub fn sb(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}
