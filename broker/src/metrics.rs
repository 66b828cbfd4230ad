//! Prometheus metrics and the HTTP endpoint serving them on `metrics.listener`: `/metrics`
//! (text format), `/healthz` (process alive) and `/readyz` (serving clients). Labels come only
//! from bounded sets (API names, error categories).

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Every metric the broker exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests by API.
    pub requests: IntCounterVec,
    /// Request latency by API, seconds.
    pub request_latency: HistogramVec,
    /// Requests refused or connections closed, by category.
    pub request_errors: IntCounterVec,
    /// SASL authentications by result (`success`, `failure`): Kafka's
    /// successful-/failed-authentication-total.
    pub authentications: IntCounterVec,
    /// TLS material reloads by result (`success`, `failure`).
    pub tls_reloads: IntCounterVec,
    /// Bytes read from clients.
    pub bytes_in: IntCounter,
    /// Bytes written to clients.
    pub bytes_out: IntCounter,
    /// Record bytes accepted by Produce.
    pub produce_bytes: IntCounter,
    /// Record bytes returned by Fetch.
    pub fetch_bytes: IntCounter,
    /// Records appended.
    pub messages_in: IntCounter,
    /// Open client connections.
    pub connections: IntGauge,
    /// Partitions on this node (refreshed on scrape).
    pub partitions: IntGauge,
    /// Consumer groups known (refreshed on scrape).
    pub groups: IntGauge,
    /// Total bytes of all partition logs (refreshed on scrape).
    pub log_size_bytes: IntGauge,
    /// Sum of log end offsets over partitions (refreshed on scrape).
    pub log_end_offset_sum: IntGauge,
    /// Whether the broker is serving (for `/readyz`).
    pub ready: AtomicBool,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new_custom(Some("gregor".into()), None)?;
        let requests =
            IntCounterVec::new(Opts::new("requests_total", "Requests by API"), &["api"])?;
        let request_latency = HistogramVec::new(
            HistogramOpts::new("request_duration_seconds", "Request latency by API").buckets(vec![
                0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0,
            ]),
            &["api"],
        )?;
        let request_errors = IntCounterVec::new(
            Opts::new(
                "request_errors_total",
                "Requests refused or connections closed, by category",
            ),
            &["category"],
        )?;
        let authentications = IntCounterVec::new(
            Opts::new("authentications_total", "SASL authentications by result"),
            &["result"],
        )?;
        let tls_reloads = IntCounterVec::new(
            Opts::new("tls_reloads_total", "TLS material reloads by result"),
            &["result"],
        )?;
        let counter = |n: &str, h: &str| IntCounter::new(n, h);
        let gauge = |n: &str, h: &str| IntGauge::new(n, h);
        let m = Metrics {
            requests,
            request_latency,
            request_errors,
            authentications,
            tls_reloads,
            bytes_in: counter("bytes_in_total", "Bytes read from clients")?,
            bytes_out: counter("bytes_out_total", "Bytes written to clients")?,
            produce_bytes: counter("produce_bytes_total", "Record bytes accepted by Produce")?,
            fetch_bytes: counter("fetch_bytes_total", "Record bytes returned by Fetch")?,
            messages_in: counter("messages_in_total", "Records appended")?,
            connections: gauge("connections", "Open client connections")?,
            partitions: gauge("partitions", "Partitions on this node")?,
            groups: gauge("consumer_groups", "Consumer groups known")?,
            log_size_bytes: gauge("log_size_bytes", "Total bytes of all partition logs")?,
            log_end_offset_sum: gauge(
                "log_end_offset_sum",
                "Sum of log end offsets over partitions",
            )?,
            ready: AtomicBool::new(false),
            registry,
        };
        m.registry.register(Box::new(m.requests.clone()))?;
        m.registry.register(Box::new(m.request_latency.clone()))?;
        m.registry.register(Box::new(m.request_errors.clone()))?;
        m.registry.register(Box::new(m.authentications.clone()))?;
        m.registry.register(Box::new(m.tls_reloads.clone()))?;
        for c in [
            &m.bytes_in,
            &m.bytes_out,
            &m.produce_bytes,
            &m.fetch_bytes,
            &m.messages_in,
        ] {
            m.registry.register(Box::new(c.clone()))?;
        }
        for g in [
            &m.connections,
            &m.partitions,
            &m.groups,
            &m.log_size_bytes,
            &m.log_end_offset_sum,
        ] {
            m.registry.register(Box::new(g.clone()))?;
        }
        Ok(m)
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Refreshes gauges that are computed on scrape.
pub type Refresh = Arc<dyn Fn() + Send + Sync>;

fn respond(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

/// Serves the metrics endpoint until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    refresh: Refresh,
    shutdown: CancellationToken,
) {
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    continue;
                }
            },
        };
        let metrics = Arc::clone(&metrics);
        let refresh = Arc::clone(&refresh);
        let shutdown = shutdown.clone();
        let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let metrics = Arc::clone(&metrics);
            let refresh = Arc::clone(&refresh);
            async move {
                Ok::<_, Infallible>(match req.uri().path() {
                    "/metrics" => {
                        refresh();
                        respond(StatusCode::OK, metrics.render())
                    }
                    "/healthz" => respond(StatusCode::OK, "ok\n".into()),
                    "/readyz" if metrics.ready.load(Ordering::Acquire) => {
                        respond(StatusCode::OK, "ready\n".into())
                    }
                    "/readyz" => respond(StatusCode::SERVICE_UNAVAILABLE, "not ready\n".into()),
                    _ => respond(StatusCode::NOT_FOUND, "not found\n".into()),
                })
            }
        });
        connections.spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = shutdown.cancelled() => {},
                r = conn => if let Err(e) = r { tracing::debug!(error = %e, "metrics connection"); },
            }
        });
    }
    connections.close();
    connections.wait().await;
}
