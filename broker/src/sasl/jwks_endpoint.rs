//! Where a listener's JWKS comes from and how it stays current, as Kafka's
//! OAuthBearerValidatorCallbackHandler keeps it: a `file:` URL is read when the listener
//! starts; an `http(s):` endpoint is fetched then too (a failure fails the start, as in Kafka),
//! again every `sasl.oauthbearer.jwks.endpoint.refresh.ms` (1 h) with retries backing off from
//! `sasl.oauthbearer.jwks.endpoint.retry.backoff.ms` (100 ms) for at most
//! `sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms` (10 s), and at once when a token
//! names a key id the set lacks (once a minute per id at most, as Kafka's
//! RefreshingHttpsJwks). A refresh that fails keeps the keys in use.
//!
//! An https endpoint is trusted by the `ssl.truststore.*` options of the listener's
//! OAUTHBEARER JAAS config, as Kafka reads them, else by the system CA bundle
//! ([`SYSTEM_CA_BUNDLES`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use tokio_util::sync::CancellationToken;

use super::jwks::{kid_of, JwksValidator};
use super::oauthbearer::{Invalid, JwksSettings, Validated};

/// The CA bundles an https endpoint is checked against when the JAAS options name no trust
/// store, the first that exists: Debian's and Ubuntu's, Fedora's and RHEL's, Alpine's,
/// openSUSE's (a `FROM scratch` image has none).
pub const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
];
/// The most of a JWKS document read (jose4j's limit).
const MAX_JWKS_BYTES: usize = 512 * 1024;
/// How long a fetch may take, connection included (jose4j's timeouts).
const FETCH_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a missing key id waits before it may ask for another refresh.
const MISSING_KID_INTERVAL: Duration = Duration::from_secs(60);
/// How many missing key ids are remembered.
const MISSING_KIDS_KEPT: usize = 16;
/// Key ids longer than this never ask for a refresh.
const MAX_KID_LEN: usize = 1000;
/// The least time between two refreshes asked for by missing key ids, whoever sends them.
const MIN_EXPEDITED_INTERVAL: Duration = Duration::from_secs(1);

/// A listener's verification keys, replaced when the endpoint is fetched again.
#[derive(Debug)]
pub struct JwksKeys {
    current: parking_lot::RwLock<Arc<JwksValidator>>,
    /// Woken when a token names a key id the set lacks.
    expedite: tokio::sync::Notify,
    /// When each missing key id last asked for a refresh.
    missing: parking_lot::Mutex<HashMap<String, Instant>>,
}

impl PartialEq for JwksKeys {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for JwksKeys {}

impl JwksKeys {
    /// Loads the keys `settings` names (blocking; an http(s) endpoint is fetched on the
    /// runtime this is called from).
    pub fn load(settings: &JwksSettings) -> Result<JwksKeys, String> {
        let text = if is_remote(&settings.url) {
            let endpoint = Endpoint::new(settings)?;
            tokio::runtime::Handle::current().block_on(endpoint.fetch())?
        } else {
            read_file_url(&settings.url)?
        };
        Ok(JwksKeys {
            current: parking_lot::RwLock::new(Arc::new(validator(settings, &text)?)),
            expedite: tokio::sync::Notify::new(),
            missing: parking_lot::Mutex::new(HashMap::new()),
        })
    }

    /// Checks `token` at `now_ms` with the keys in use; a token whose key id is not among
    /// them asks for a refresh.
    pub fn validate(&self, token: &str, now_ms: i64) -> Result<Validated, Invalid> {
        let keys = Arc::clone(&self.current.read());
        let outcome = keys.validate(token, now_ms);
        if outcome.is_err() {
            if let Some(kid) = kid_of(token).filter(|k| !keys.has_kid(k)) {
                self.missing_kid(kid);
            }
        }
        outcome
    }

    fn missing_kid(&self, kid: String) {
        if kid.len() > MAX_KID_LEN {
            return;
        }
        let now = Instant::now();
        let mut missing = self.missing.lock();
        if missing
            .get(&kid)
            .is_some_and(|at| now.duration_since(*at) < MISSING_KID_INTERVAL)
        {
            return;
        }
        if missing.len() >= MISSING_KIDS_KEPT {
            // The oldest goes, as from Kafka's LRU: junk ids cannot keep a real one out.
            let oldest = missing
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                missing.remove(&oldest);
            }
        }
        missing.insert(kid, now);
        self.expedite.notify_one();
    }
}

/// Whether `url` is an http(s) endpoint (else a `file:` URL).
pub fn is_remote(url: &str) -> bool {
    url.starts_with("https://") || url.starts_with("http://")
}

fn read_file_url(url: &str) -> Result<String, String> {
    let path = url
        .strip_prefix("file://")
        .or_else(|| url.strip_prefix("file:"))
        .ok_or_else(|| format!("{url}: expected a file:, http: or https: URL"))?;
    std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))
}

fn validator(settings: &JwksSettings, text: &str) -> Result<JwksValidator, String> {
    JwksValidator::from_jwks(
        text,
        settings.audience.clone(),
        settings.issuer.clone(),
        settings.sub_claim.clone(),
        settings.clock_skew_s,
    )
    .map_err(|e| format!("{}: {e}", settings.url))
}

/// An http(s) JWKS endpoint and how it is reached.
struct Endpoint {
    uri: http::Uri,
    host: String,
    port: u16,
    /// The TLS client settings of an https endpoint.
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Endpoint {
    /// The endpoint `settings` names, its trust store read (blocking).
    fn new(settings: &JwksSettings) -> Result<Endpoint, String> {
        let url = &settings.url;
        let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let https = uri.scheme_str() == Some("https");
        let host = uri
            .host()
            .ok_or_else(|| format!("{url}: no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https { Some(trust(settings)?) } else { None };
        Ok(Endpoint {
            uri,
            host,
            port,
            tls,
        })
    }

    /// GETs the document (a 200 response of at most [`MAX_JWKS_BYTES`]).
    async fn fetch(&self) -> Result<String, String> {
        let url = &self.uri;
        tokio::time::timeout(FETCH_TIMEOUT, self.get())
            .await
            .map_err(|_| format!("{url}: no answer within {}s", FETCH_TIMEOUT.as_secs()))?
            .map_err(|e| format!("{url}: {e}"))
    }

    async fn get(&self) -> Result<String, String> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| e.to_string())?;
        match &self.tls {
            None => self.exchange(tcp).await,
            Some(config) => {
                let name = rustls_pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| e.to_string())?;
                let tls = tokio_rustls::TlsConnector::from(Arc::clone(config))
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS: {e}"))?;
                self.exchange(tls).await
            }
        }
    }

    async fn exchange<S>(&self, stream: S) -> Result<String, String>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let path = self.uri.path_and_query().map_or("/", |p| p.as_str());
        let authority = self
            .uri
            .authority()
            .map_or(self.host.as_str(), |a| a.as_str());
        let request = http::Request::get(path)
            .header(http::header::HOST, authority)
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        if status != http::StatusCode::OK {
            return Err(format!("Non 200 status code ({status}) returned"));
        }
        let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading the body: {e}"))?
            .to_bytes();
        String::from_utf8(body.to_vec()).map_err(|_| "the body is not UTF-8".to_string())
    }
}

/// The TLS client settings for an https endpoint: the JAAS options' trust store, else the
/// system CA bundle.
fn trust(settings: &JwksSettings) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut props: BTreeMap<String, String> = settings
        .trust
        .iter()
        .map(|(k, v)| (k.clone(), v.expose().to_string()))
        .collect();
    let named = props.contains_key("ssl.truststore.location")
        || props.contains_key("ssl.truststore.certificates");
    if !named {
        let Some(bundle) = SYSTEM_CA_BUNDLES
            .iter()
            .find(|b| std::path::Path::new(b).exists())
        else {
            return Err(format!(
                "{}: no trust store for the https endpoint: give ssl.truststore.location (and \
                 ssl.truststore.type) in the listener's OAUTHBEARER sasl.jaas.config options, as \
                 Kafka reads them, or install a CA bundle at one of {SYSTEM_CA_BUNDLES:?}",
                settings.url
            ));
        };
        props.insert("ssl.truststore.location".into(), bundle.to_string());
        props.insert("ssl.truststore.type".into(), "PEM".into());
    }
    props.insert("security.protocol".into(), "SSL".into());
    let security = gregor_client::ClientSecurity::from_properties(&props)
        .map_err(|e| format!("{}: the endpoint's trust store: {e}", settings.url))?;
    security
        .tls()
        .cloned()
        .ok_or_else(|| format!("{}: no TLS settings", settings.url))
}

/// Keeps `keys` current from its http(s) endpoint until `shutdown`: a refresh every
/// `refresh_ms`, or at once when a token names a missing key id; each refresh retries with
/// backoff and, if it still fails, keeps the keys in use.
pub async fn refresh(
    keys: Arc<JwksKeys>,
    settings: JwksSettings,
    listener: String,
    shutdown: CancellationToken,
) {
    let s = settings.clone();
    let endpoint = match tokio::task::spawn_blocking(move || Endpoint::new(&s)).await {
        Ok(Ok(e)) => e,
        Ok(Err(e)) => return tracing::warn!(%listener, "JWKS endpoint not refreshed: {e}"),
        Err(_) => return,
    };
    let every = Duration::from_millis(settings.refresh_ms.max(1));
    let mut last = Instant::now();
    while next_refresh(&keys, every, last, &shutdown).await {
        last = Instant::now();
        let fetched = fetch_with_retries(&endpoint, &settings, &shutdown).await;
        install(&keys, fetched, &settings.url, &listener);
    }
}

/// Puts freshly fetched keys in use, or logs why there are none (the keys in use stay).
fn install(keys: &JwksKeys, fetched: Result<JwksValidator, String>, url: &str, listener: &str) {
    match fetched {
        Ok(v) => {
            *keys.current.write() = Arc::new(v);
            tracing::info!(%listener, %url, "OAuth JWKS refreshed");
        }
        Err(e) => tracing::warn!(
            %listener,
            "OAuth JWKS refresh of {url} encountered an error; not updating local JWKS cache: {e}"
        ),
    }
}

/// Waits for the next refresh: `every` after the last one, or a missing key id's request, at
/// least [`MIN_EXPEDITED_INTERVAL`] after the last (tokens naming ever new key ids must not
/// turn into a stream of fetches). False once `shutdown` is cancelled.
async fn next_refresh(
    keys: &JwksKeys,
    every: Duration,
    last: Instant,
    shutdown: &CancellationToken,
) -> bool {
    let due = tokio::select! {
        _ = shutdown.cancelled() => return false,
        _ = tokio::time::sleep(every) => return true,
        _ = keys.expedite.notified() => (last + MIN_EXPEDITED_INTERVAL).into(),
    };
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep_until(due) => true,
    }
}

/// Fetches and parses the keys, retrying from `retry_backoff_ms`, doubling, for at most
/// `retry_backoff_max_ms` in all (Kafka's `Retry`).
async fn fetch_with_retries(
    endpoint: &Endpoint,
    settings: &JwksSettings,
    shutdown: &CancellationToken,
) -> Result<JwksValidator, String> {
    let give_up = Instant::now() + Duration::from_millis(settings.retry_backoff_max_ms);
    let mut wait = Duration::from_millis(settings.retry_backoff_ms.max(1));
    loop {
        let fetched = tokio::select! {
            _ = shutdown.cancelled() => return Err("shutting down".into()),
            f = endpoint.fetch() => f,
        };
        let outcome = fetched.and_then(|text| validator(settings, &text));
        let now = Instant::now();
        match outcome {
            Ok(v) => return Ok(v),
            Err(e) if now + wait > give_up => return Err(e),
            Err(_) => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Err("shutting down".into()),
            _ = tokio::time::sleep(wait) => {}
        }
        wait *= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::jwks::testing::{key_with_id, sign};
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves `doc` to every GET on a loopback port (404 once `doc` is empty); the URL.
    async fn serve(doc: Arc<parking_lot::Mutex<String>>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let doc = doc.lock().clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tcp.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let status = if doc.is_empty() {
                        "404 Not Found"
                    } else {
                        "200 OK"
                    };
                    let response = format!(
                        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{doc}",
                        doc.len()
                    );
                    let _ = tcp.write_all(response.as_bytes()).await;
                });
            }
        });
        format!("http://{addr}/jwks.json")
    }

    fn settings(url: String) -> JwksSettings {
        JwksSettings {
            url,
            audience: Vec::new(),
            issuer: None,
            sub_claim: "sub".into(),
            clock_skew_s: 30,
            refresh_ms: 3_600_000,
            retry_backoff_ms: 10,
            retry_backoff_max_ms: 100,
            trust: BTreeMap::new(),
        }
    }

    async fn load(s: &JwksSettings) -> Result<JwksKeys, String> {
        let s = s.clone();
        tokio::task::spawn_blocking(move || JwksKeys::load(&s))
            .await
            .expect("joins")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_endpoint_is_fetched_at_start_and_again_when_a_token_names_a_new_key() {
        let now_s = 1_800_000_000;
        let claims = json!({"sub": "alice", "iat": now_s, "exp": now_s + 600});
        let token = |pair, kid: &str| sign(pair, &json!({"alg": "ES256", "kid": kid}), &claims);
        let (a, jwks_a) = key_with_id("a");
        let (b, jwks_b) = key_with_id("b");
        let doc = Arc::new(parking_lot::Mutex::new(jwks_a));
        let s = settings(serve(Arc::clone(&doc)).await);
        let keys = Arc::new(load(&s).await.expect("fetched"));
        let now_ms = now_s * 1000;
        keys.validate(&token(&a, "a"), now_ms).expect("key a");

        // The identity provider rotates to key b: its first token asks for a refresh.
        *doc.lock() = jwks_b;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(refresh(
            Arc::clone(&keys),
            s.clone(),
            "SASL".into(),
            shutdown.clone(),
        ));
        let token_b = token(&b, "b");
        assert!(keys.validate(&token_b, now_ms).is_err(), "not fetched yet");
        let deadline = Instant::now() + Duration::from_secs(20);
        while keys.validate(&token_b, now_ms).is_err() {
            assert!(Instant::now() < deadline, "key b was never fetched");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            keys.validate(&token(&a, "a"), now_ms).is_err(),
            "key a is gone"
        );
        shutdown.cancel();
        task.await.expect("stops");

        // An endpoint that does not answer 200 fails the load, naming the URL.
        doc.lock().clear();
        let e = load(&s).await.expect_err("404");
        assert!(
            e.contains("Non 200 status code (404 Not Found)") && e.contains(&s.url),
            "{e}"
        );
    }

    #[test]
    fn a_missing_key_id_asks_for_a_refresh_once_a_minute_and_junk_ids_cannot_crowd_it_out() {
        let (_, jwks) = key_with_id("a");
        let keys = JwksKeys {
            current: parking_lot::RwLock::new(Arc::new(
                validator(&settings("file:///x".into()), &jwks).expect("keys"),
            )),
            expedite: tokio::sync::Notify::new(),
            missing: parking_lot::Mutex::new(HashMap::new()),
        };
        keys.missing_kid("b".into());
        keys.missing_kid("b".into());
        keys.missing_kid("x".repeat(MAX_KID_LEN + 1));
        assert_eq!(keys.missing.lock().len(), 1);
        // Junk ids do not keep a real one out: the oldest make room.
        for i in 0..40 {
            keys.missing_kid(format!("junk{i}"));
        }
        keys.missing_kid("real".into());
        let missing = keys.missing.lock();
        assert_eq!(missing.len(), MISSING_KIDS_KEPT);
        assert!(missing.contains_key("real"));
    }
}
