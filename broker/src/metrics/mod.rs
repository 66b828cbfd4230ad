//! Prometheus metrics and the HTTP endpoint serving them on `metrics.listener`: `/metrics`
//! (text format), `/healthz` (process alive) and `/readyz` (serving clients). Labels come only
//! from bounded sets (API names, error categories, Raft states). `docs/metrics.md` lists every
//! series with the Kafka metric it stands for.
//!
//! Counters bumped on the request path live in [`Metrics`]' registry. Gauges that describe
//! state (the local replicas' health, the quorum, the controller's view) are computed when
//! scraped, by the node's [`Refresh`] ([`replicas`], [`quorum`]), and the process collector adds
//! `process_*`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub mod quorum;
pub mod replicas;

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
    /// Raft elections this node saw start (its term moved on).
    pub raft_elections: IntCounter,
    /// Times this node saw the quorum's leader change to another node.
    pub raft_leader_changes: IntCounter,
    /// `process_*`: resident memory, CPU seconds, open descriptors.
    process: prometheus::process_collector::ProcessCollector,
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
            raft_elections: counter(
                "raft_elections_total",
                "Raft elections this node saw start (its term moved on)",
            )?,
            raft_leader_changes: counter(
                "raft_leader_changes_total",
                "Times this node saw the metadata quorum's leader change",
            )?,
            process: prometheus::process_collector::ProcessCollector::for_self(),
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
            &m.raft_elections,
            &m.raft_leader_changes,
        ] {
            m.registry.register(Box::new(c.clone()))?;
        }
        m.registry.register(Box::new(m.connections.clone()))?;
        Ok(m)
    }

    /// The text exposition of every metric: the registry's, `scraped` (computed for this
    /// scrape) and the process collector's, sorted by name.
    pub fn render(&self, scraped: Scrape) -> String {
        let mut families = self.registry.gather();
        families.extend(scraped.families);
        families.extend(self.process.collect());
        families.retain(|f| !f.get_metric().is_empty());
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Metric families computed for one scrape, each named in full (`gregor_...`). A name the
/// Prometheus library refuses is logged and left out (the names are constants, and a test
/// renders every one).
#[derive(Default)]
pub struct Scrape {
    families: Vec<MetricFamily>,
}

impl Scrape {
    /// One gauge without labels.
    pub fn gauge(&mut self, name: &str, help: &str, value: i64) {
        match IntGauge::new(name, help) {
            Ok(g) => {
                g.set(value);
                self.families.extend(g.collect());
            }
            Err(e) => tracing::warn!(name, error = %e, "metric left out"),
        }
    }

    /// One counter without labels, at `value` (a total kept elsewhere).
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        match IntCounter::new(name, help) {
            Ok(c) => {
                c.inc_by(value);
                self.families.extend(c.collect());
            }
            Err(e) => tracing::warn!(name, error = %e, "metric left out"),
        }
    }

    /// One gauge with labels `names`, a sample per `(values, value)`. A family with no sample
    /// is left out of the exposition.
    pub fn gauges<'a>(
        &mut self,
        name: &str,
        help: &str,
        names: &[&str],
        samples: impl IntoIterator<Item = (Vec<&'a str>, i64)>,
    ) {
        match IntGaugeVec::new(Opts::new(name, help), names) {
            Ok(g) => {
                for (values, value) in samples {
                    if let Ok(s) = g.get_metric_with_label_values(&values) {
                        s.set(value);
                    }
                }
                self.families.extend(g.collect());
            }
            Err(e) => tracing::warn!(name, error = %e, "metric left out"),
        }
    }

    /// The families so far, by name (for tests).
    pub fn names(&self) -> Vec<&str> {
        self.families.iter().map(MetricFamily::name).collect()
    }
}

/// Computes the node's scrape-time families.
pub type Refresh = Arc<dyn Fn(&mut Scrape) + Send + Sync>;

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
                        let mut scraped = Scrape::default();
                        refresh(&mut scraped);
                        respond(StatusCode::OK, metrics.render(scraped))
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
