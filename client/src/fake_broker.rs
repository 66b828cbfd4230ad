//! A scripted broker for tests of code that talks to brokers: it reads request frames and
//! writes the answers a test chooses (or none) on a real loopback socket.

use bytes::BytesMut;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsResponse, ResponseHeader};
use kafka_protocol::protocol::Encodable;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Reads one request frame: (api key, api version, correlation id), which every request
/// header version starts with.
pub async fn read_request(stream: &mut TcpStream) -> (i16, i16, i32) {
    let len = stream.read_i32().await.expect("frame length");
    let mut buf = BytesMut::zeroed(len as usize);
    stream.read_exact(&mut buf).await.expect("frame");
    let key = i16::from_be_bytes([buf[0], buf[1]]);
    let version = i16::from_be_bytes([buf[2], buf[3]]);
    let correlation_id = i32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    (key, version, correlation_id)
}

/// Writes an ApiVersions response frame: always a v0 header, then the body at `version`.
pub async fn write_api_versions(
    stream: &mut TcpStream,
    correlation_id: i32,
    version: i16,
    resp: ApiVersionsResponse,
) {
    let mut buf = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, 0)
        .expect("header");
    resp.encode(&mut buf, version).expect("body");
    stream.write_i32(buf.len() as i32).await.expect("length");
    stream.write_all(&buf).await.expect("frame");
}

/// Accepts one connection on `listener` and answers its ApiVersions request with `apis`
/// ((key, max version) pairs, min version 0); the connection is then the test's.
pub async fn accept_and_negotiate(listener: &TcpListener, apis: &[(i16, i16)]) -> TcpStream {
    let (mut s, _) = listener.accept().await.expect("accept");
    let (key, version, id) = read_request(&mut s).await;
    assert_eq!(key, 18, "a client starts with ApiVersions");
    let keys = apis
        .iter()
        .map(|(k, max)| {
            ApiVersion::default()
                .with_api_key(*k)
                .with_max_version(*max)
        })
        .collect();
    write_api_versions(
        &mut s,
        id,
        version,
        ApiVersionsResponse::default().with_api_keys(keys),
    )
    .await;
    s
}
