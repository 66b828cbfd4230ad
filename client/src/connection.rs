//! One connection to one broker (TCP, or TLS over TCP): size-prefixed frames,
//! request/response headers, correlation ids, API version negotiation and SASL.
//!
//! [`Client::connect_with`] opens TLS first when the [`ClientSecurity`] asks for it, then sends
//! ApiVersions, then authenticates with SASL when it asks for that; [`Client::connect`] is the
//! same over PLAINTEXT. ApiVersions comes before anything else (v3, and again at a version the
//! broker lists if it answers UNSUPPORTED_VERSION with a v0 body), and [`Client::send`] then
//! picks, per request, the newest version both sides speak. Requests whose shape changes with
//! the version (topic ids, batched groups) ask [`Client::version`] first and build to suit.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{error_chain, ClientError, ClientSecurity};

/// Client id sent in every request header.
const CLIENT_ID: &str = "gregor-cli";
/// Largest response frame accepted; a bigger length prefix means a confused peer.
const MAX_FRAME: usize = 256 * 1024 * 1024;
/// How long one request may wait for its response, unless the connection was made with
/// another limit ([`Client::connect_one_within`]).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The ApiVersions version tried first; v3 is the first flexible one and what Java sends.
const API_VERSIONS_FIRST: i16 = 3;

/// A byte stream to a broker: TCP, or TLS over TCP.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync + std::fmt::Debug {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync + std::fmt::Debug> Stream for T {}

/// A connection to one broker, with the API versions it advertised.
#[derive(Debug)]
pub struct Client {
    /// The address we connected to, for error messages.
    addr: String,
    /// The socket (TCP or TLS); requests are sent one at a time, so no pipelining bookkeeping
    /// is needed.
    stream: Box<dyn Stream>,
    /// Next correlation id; each request gets its own so a stray answer is detected.
    next_correlation_id: i32,
    /// Broker-advertised (min, max) version per API key.
    versions: HashMap<i16, (i16, i16)>,
    /// Set while a request is in flight and left set if it fails: the stream position is
    /// then unknown, so the next response could be misread as another request's.
    broken: bool,
    /// How long connecting and each request may take: a peer that stops answering without
    /// closing the connection (cut off, hung) costs this long, then the request fails.
    request_timeout: Duration,
}

impl Client {
    /// Connects to the first reachable address of a comma-separated `host:port` list and
    /// negotiates API versions.
    pub async fn connect(bootstrap: &str) -> Result<Self, ClientError> {
        Self::connect_with(bootstrap, &ClientSecurity::plaintext()).await
    }

    /// Like [`Client::connect`], secured as `security` says (TLS, SASL).
    pub async fn connect_with(
        bootstrap: &str,
        security: &ClientSecurity,
    ) -> Result<Self, ClientError> {
        let mut reasons = Vec::new();
        for addr in bootstrap
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
        {
            match Self::connect_one_with(addr, security).await {
                Ok(client) => return Ok(client),
                Err(e) => reasons.push(format!("{addr}: {}", error_chain(&e))),
            }
        }
        if reasons.is_empty() {
            reasons.push("no address given".to_owned());
        }
        Err(ClientError::NoBroker {
            bootstrap: bootstrap.to_owned(),
            reasons: reasons.join("; "),
        })
    }

    /// Connects to exactly one `host:port` and negotiates API versions.
    pub async fn connect_one(addr: &str) -> Result<Self, ClientError> {
        Self::connect_one_within(addr, REQUEST_TIMEOUT).await
    }

    /// Like [`Client::connect_one`], with `timeout` as the limit for connecting, negotiating
    /// and every later request (a follower's `replica.socket.timeout.ms`).
    pub async fn connect_one_within(addr: &str, timeout: Duration) -> Result<Self, ClientError> {
        Self::connect_secured(addr, timeout, &ClientSecurity::plaintext()).await
    }

    /// Like [`Client::connect_one_within`], secured as `security` says (TLS, SASL).
    pub async fn connect_one_within_with(
        addr: &str,
        timeout: Duration,
        security: &ClientSecurity,
    ) -> Result<Self, ClientError> {
        Self::connect_secured(addr, timeout, security).await
    }

    /// Like [`Client::connect_one`], secured as `security` says (TLS, SASL).
    pub async fn connect_one_with(
        addr: &str,
        security: &ClientSecurity,
    ) -> Result<Self, ClientError> {
        Self::connect_secured(addr, REQUEST_TIMEOUT, security).await
    }

    /// Connects to `addr` within `timeout`, opens TLS if `security` asks for it, negotiates
    /// API versions and authenticates if `security` asks for SASL.
    async fn connect_secured(
        addr: &str,
        timeout: Duration,
        security: &ClientSecurity,
    ) -> Result<Self, ClientError> {
        // Connecting and the TLS handshake count as the ApiVersions exchange that follows.
        let timed_out = |_| ClientError::Timeout {
            addr: addr.to_owned(),
            api: ApiKey::ApiVersions,
            millis: timeout.as_millis() as u64,
        };
        let io = |source| ClientError::Io {
            addr: addr.to_owned(),
            source,
        };
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(timed_out)?
            .map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        let stream: Box<dyn Stream> = match security.tls() {
            None => Box::new(stream),
            Some(config) => {
                let name = server_name(addr)?;
                let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::clone(config));
                let tls = tokio::time::timeout(timeout, connector.connect(name, stream))
                    .await
                    .map_err(timed_out)?
                    .map_err(|source| ClientError::Tls {
                        addr: addr.to_owned(),
                        source,
                    })?;
                Box::new(tls)
            }
        };
        let mut client = Client {
            addr: addr.to_owned(),
            stream,
            next_correlation_id: 0,
            versions: HashMap::new(),
            broken: false,
            request_timeout: timeout,
        };
        client.negotiate_versions().await?;
        if let Some(credentials) = security.sasl() {
            client.authenticate(credentials).await?;
        }
        Ok(client)
    }

    /// The address this client is connected to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The newest version of `R` that both the broker and this client speak, capped at `cap`
    /// when the caller builds only older shapes of the request.
    pub fn version<R: Request>(&self, cap: Option<i16>) -> Result<i16, ClientError> {
        let client_max = cap.map_or(R::VERSIONS.max, |c| c.min(R::VERSIONS.max));
        let (broker_min, broker_max) = self.versions.get(&R::KEY).copied().unwrap_or((-1, -1));
        let version = broker_max.min(client_max);
        if broker_max < 0 || version < broker_min || version < R::VERSIONS.min {
            return Err(ClientError::UnsupportedApi {
                addr: self.addr.clone(),
                api: api_key(R::KEY),
                broker_min,
                broker_max,
                client_min: R::VERSIONS.min,
                client_max,
            });
        }
        Ok(version)
    }

    /// Sends `req` at the newest common version and waits for its response.
    pub async fn send<R: Request>(&mut self, req: R) -> Result<R::Response, ClientError> {
        let version = self.version::<R>(None)?;
        self.send_at(req, version).await
    }

    /// Sends `req` at `version` (normally from [`Client::version`]) and waits for its response.
    pub async fn send_at<R: Request>(
        &mut self,
        req: R,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        let mut body = self
            .exchange(&req, version, R::Response::header_version(version))
            .await?;
        R::Response::decode(&mut body, version).map_err(|e| {
            ClientError::Protocol(format!(
                "bad {:?} v{version} response from {}: {e}",
                api_key(R::KEY),
                self.addr
            ))
        })
    }

    /// Whether an earlier request failed or was abandoned mid-way, leaving the stream at an
    /// unknown position; such a client refuses further requests and should be replaced.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Writes one request and reads its response, returning the body after a checked
    /// response header of version `response_header_version`.
    async fn exchange<R: Request>(
        &mut self,
        req: &R,
        version: i16,
        response_header_version: i16,
    ) -> Result<Bytes, ClientError> {
        let api = api_key(R::KEY);
        let (correlation_id, frame) = self.prepare(req, version)?;
        // Stays set if this future errs or is dropped before the response is read whole.
        self.broken = true;
        let limit = self.request_timeout;
        let exchange = async {
            self.stream
                .write_all(&frame)
                .await
                .map_err(|source| self.io_error(source))?;
            self.read_frame().await
        };
        let mut body =
            tokio::time::timeout(limit, exchange)
                .await
                .map_err(|_| ClientError::Timeout {
                    addr: self.addr.clone(),
                    api,
                    millis: limit.as_millis() as u64,
                })??;
        let header = ResponseHeader::decode(&mut body, response_header_version).map_err(|e| {
            ClientError::Protocol(format!(
                "bad {api:?} response header from {}: {e}",
                self.addr
            ))
        })?;
        if header.correlation_id != correlation_id {
            return Err(ClientError::Protocol(format!(
                "{} answered correlation id {} to {api:?} request {correlation_id}",
                self.addr, header.correlation_id
            )));
        }
        self.broken = false;
        Ok(body)
    }

    /// Refuses a broken connection, else takes the next correlation id and encodes `req`.
    fn prepare<R: Request>(&mut self, req: &R, version: i16) -> Result<(i32, Bytes), ClientError> {
        if self.broken {
            return Err(ClientError::Protocol(format!(
                "connection to {} is unusable after an earlier failure",
                self.addr
            )));
        }
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let frame = encode_request(req, version, correlation_id)?;
        Ok((correlation_id, frame))
    }

    /// Sends `req` at `version` without waiting for an answer: for Produce with acks=0, which
    /// the broker never answers.
    pub async fn send_oneway<R: Request>(
        &mut self,
        req: R,
        version: i16,
    ) -> Result<(), ClientError> {
        let (_, frame) = self.prepare(&req, version)?;
        self.broken = true;
        self.stream
            .write_all(&frame)
            .await
            .map_err(|source| self.io_error(source))?;
        self.stream
            .flush()
            .await
            .map_err(|source| self.io_error(source))?;
        self.broken = false;
        Ok(())
    }

    /// Sends ApiVersions and records the broker's ranges; retries once at an older version
    /// when the broker does not speak ours (it then answers a v0 body listing what it does).
    async fn negotiate_versions(&mut self) -> Result<(), ClientError> {
        let mut version = API_VERSIONS_FIRST;
        for _attempt in 0..2 {
            let req = ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("gregor"))
                .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
            let req = if version >= 3 {
                req
            } else {
                ApiVersionsRequest::default()
            };
            // The ApiVersions response header is v0 whatever the request version.
            let body = self.exchange(&req, version, 0).await?;
            let error_code = body.clone().try_get_i16().map_err(|_| {
                ClientError::Protocol(format!("empty ApiVersions response from {}", self.addr))
            })?;
            let unsupported = error_code == ResponseError::UnsupportedVersion.code();
            // An UNSUPPORTED_VERSION answer is a v0 body whatever version we asked for.
            let decode_version = if unsupported { 0 } else { version };
            let resp =
                ApiVersionsResponse::decode(&mut body.clone(), decode_version).map_err(|e| {
                    ClientError::Protocol(format!(
                        "bad ApiVersions response from {}: {e}",
                        self.addr
                    ))
                })?;
            self.versions = resp
                .api_keys
                .iter()
                .map(|k| (k.api_key, (k.min_version, k.max_version)))
                .collect();
            if unsupported {
                let broker_max = self
                    .versions
                    .get(&ApiVersionsRequest::KEY)
                    .map_or(0, |&(_, max)| max);
                version = broker_max.clamp(0, version - 1);
                continue;
            }
            if let Some(error) = ClientError::from_code(error_code, || {
                format!("negotiating API versions with {}", self.addr)
            }) {
                return Err(error);
            }
            return Ok(());
        }
        Err(ClientError::Protocol(format!(
            "{} refused every ApiVersions version offered",
            self.addr
        )))
    }

    /// Reads one size-prefixed frame.
    async fn read_frame(&mut self) -> Result<Bytes, ClientError> {
        let len = self
            .stream
            .read_i32()
            .await
            .map_err(|source| self.io_error(source))?;
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= MAX_FRAME)
            .ok_or_else(|| {
                ClientError::Protocol(format!("{} sent a frame of length {len}", self.addr))
            })?;
        let mut buf = BytesMut::zeroed(len);
        self.stream
            .read_exact(&mut buf)
            .await
            .map_err(|source| self.io_error(source))?;
        Ok(buf.freeze())
    }

    fn io_error(&self, source: std::io::Error) -> ClientError {
        ClientError::Io {
            addr: self.addr.clone(),
            source,
        }
    }
}

/// The TLS server name of `host:port` (a DNS name or an IP address, `[v6]` bracketed).
pub fn server_name(addr: &str) -> Result<ServerName<'static>, ClientError> {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned())
        .map_err(|e| ClientError::Protocol(format!("{addr}: not a TLS server name: {e}")))
}

/// Encodes a whole request frame: length prefix, header, body.
fn encode_request<R: Request>(
    req: &R,
    version: i16,
    correlation_id: i32,
) -> Result<Bytes, ClientError> {
    let api = api_key(R::KEY);
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    header
        .encode(&mut buf, R::header_version(version))
        .and_then(|()| req.encode(&mut buf, version))
        .map_err(|e| ClientError::Protocol(format!("cannot encode {api:?} v{version}: {e}")))?;
    let len = i32::try_from(buf.len() - 4)
        .map_err(|_| ClientError::Protocol(format!("{api:?} request too large")))?;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

/// The [`ApiKey`] for a request type's key; every `Request` impl has one.
fn api_key(key: i16) -> ApiKey {
    ApiKey::try_from(key).unwrap_or(ApiKey::ApiVersions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_broker::{accept_and_negotiate, read_request, write_api_versions};
    use kafka_protocol::messages::MetadataRequest;

    #[test]
    fn request_frame_has_length_prefix_and_flexible_header() {
        let frame = encode_request(&ApiVersionsRequest::default(), 3, 7).unwrap();
        let len = i32::from_be_bytes(frame[..4].try_into().unwrap());
        assert_eq!(len as usize, frame.len() - 4);
        let mut rest = frame.slice(4..);
        let header = RequestHeader::decode(&mut rest, 2).unwrap();
        assert_eq!(header.request_api_key, 18);
        assert_eq!(header.request_api_version, 3);
        assert_eq!(header.correlation_id, 7);
        assert_eq!(header.client_id.as_deref(), Some(CLIENT_ID));
    }

    #[tokio::test]
    async fn api_versions_falls_back_when_the_broker_answers_unsupported_version() {
        use kafka_protocol::messages::api_versions_response::ApiVersion;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let broker = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let (_, v, id) = read_request(&mut s).await;
            assert_eq!(v, 3);
            let refusal = ApiVersionsResponse::default()
                .with_error_code(35)
                .with_api_keys(vec![ApiVersion::default()
                    .with_api_key(18)
                    .with_min_version(0)
                    .with_max_version(2)]);
            write_api_versions(&mut s, id, 0, refusal).await;
            let (_, v, id) = read_request(&mut s).await;
            assert_eq!(v, 2);
            let ok = ApiVersionsResponse::default().with_api_keys(vec![
                ApiVersion::default().with_api_key(18).with_max_version(2),
                ApiVersion::default().with_api_key(3).with_max_version(8),
            ]);
            write_api_versions(&mut s, id, 2, ok).await;
        });
        let client = Client::connect(&format!("127.0.0.1:1,{addr}"))
            .await
            .unwrap();
        broker.await.unwrap();
        assert_eq!(client.addr(), addr);
        assert_eq!(client.version::<MetadataRequest>(None).unwrap(), 8);
        assert!(client.version::<ApiVersionsRequest>(Some(3)).is_ok());
    }

    #[tokio::test]
    async fn a_mismatched_correlation_id_breaks_the_connection_for_good() {
        use kafka_protocol::messages::api_versions_response::ApiVersion;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let broker = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let (_, _, id) = read_request(&mut s).await;
            let ok = ApiVersionsResponse::default().with_api_keys(vec![
                ApiVersion::default().with_api_key(18).with_max_version(3),
                ApiVersion::default().with_api_key(3).with_max_version(8),
            ]);
            write_api_versions(&mut s, id, 3, ok.clone()).await;
            let (_, _, id) = read_request(&mut s).await;
            write_api_versions(&mut s, id + 100, 0, ok).await;
            s
        });
        let mut client = Client::connect(&addr).await.unwrap();
        let err = client
            .send_at(ApiVersionsRequest::default(), 0)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("correlation id"), "{err}");
        assert!(client.is_broken());
        let err = client
            .send_at(ApiVersionsRequest::default(), 0)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("unusable"), "{err}");
        drop(broker.await.unwrap());
    }

    #[tokio::test]
    async fn a_peer_that_accepts_and_never_answers_times_out_within_the_limit_given() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let limit = Duration::from_millis(300);
        let started = std::time::Instant::now();
        let silent = async {
            let accepted = listener.accept().await.unwrap();
            std::future::pending::<()>().await;
            accepted
        };
        let err = tokio::select! {
            r = Client::connect_one_within(&addr, limit) => r.unwrap_err(),
            _ = silent => unreachable!(),
        };
        assert!(
            matches!(err, ClientError::Timeout { millis: 300, .. }),
            "{err}"
        );
        let waited = started.elapsed();
        assert!(
            waited >= limit && waited < Duration::from_secs(5),
            "{waited:?}"
        );
    }

    #[tokio::test]
    async fn a_request_the_peer_never_answers_times_out_and_breaks_the_connection() {
        use kafka_protocol::messages::FetchRequest;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let broker = tokio::spawn(async move {
            let mut s = accept_and_negotiate(&listener, &[(18, 3), (1, 12)]).await;
            let (key, _, _) = read_request(&mut s).await;
            (key, s)
        });
        let limit = Duration::from_millis(300);
        let mut client = Client::connect_one_within(&addr, limit).await.unwrap();
        let started = std::time::Instant::now();
        let err = client.send(FetchRequest::default()).await.unwrap_err();
        assert!(matches!(err, ClientError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            client.is_broken(),
            "the answer may still come: never reuse the stream"
        );
        let (key, _open) = broker.await.unwrap();
        assert_eq!(
            key, 1,
            "the fetch reached the peer, which kept the connection open"
        );
    }

    #[test]
    fn version_picks_the_newest_common_one_and_reports_no_overlap() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let stream = TcpStream::connect(addr).await.unwrap();
            let mut client = Client {
                addr: addr.to_string(),
                stream: Box::new(stream),
                next_correlation_id: 0,
                versions: HashMap::new(),
                broken: false,
                request_timeout: REQUEST_TIMEOUT,
            };
            client.versions.insert(MetadataRequest::KEY, (0, 8));
            assert_eq!(client.version::<MetadataRequest>(None).unwrap(), 8);
            assert_eq!(client.version::<MetadataRequest>(Some(4)).unwrap(), 4);
            client.versions.insert(MetadataRequest::KEY, (20, 30));
            let err = client.version::<MetadataRequest>(None).unwrap_err();
            assert!(matches!(err, ClientError::UnsupportedApi { .. }), "{err}");
            let err = client.version::<ApiVersionsRequest>(None).unwrap_err();
            assert!(err.to_string().contains("ApiVersions"), "{err}");
        });
    }
}
