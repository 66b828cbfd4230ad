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

pub mod groups;
pub mod quorum;
pub mod replicas;
pub mod topics;

/// How many topics, partitions and groups get series of their own: Gregor's
/// `metrics.topic.labels.max`, `metrics.partition.labels.max` and `metrics.group.labels.max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Topics with a `topic` label value of their own; the rest share `topic="(other)"`.
    pub topics: usize,
    /// Partitions with per-partition series (of labelled topics), and group offsets series.
    pub partitions: usize,
    /// Groups with per-group series.
    pub groups: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            topics: 200,
            partitions: 2000,
            groups: 200,
        }
    }
}

/// How long partition log appends and fsyncs take on this node (no Kafka MBean for appends;
/// LogFlushRateAndTimeMs for flushes). Made with the cluster and registered by the node.
#[derive(Debug, Clone)]
pub struct LogTimings {
    /// `gregor_log_append_seconds`: one append of a batch (or marker) to a leader's log.
    pub append: prometheus::Histogram,
    /// `gregor_log_flush_seconds`: one fsync of a partition log.
    pub flush: prometheus::Histogram,
}

impl LogTimings {
    /// Unregistered histograms; [`LogTimings::register`] adds them to a node's metrics.
    pub fn new() -> LogTimings {
        let histogram = |name: &str, help: &str| {
            prometheus::Histogram::with_opts(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
            )
            .expect("constant options are valid")
        };
        LogTimings {
            append: histogram(
                "log_append_seconds",
                "How long one append to a partition log takes",
            ),
            flush: histogram(
                "log_flush_seconds",
                "How long one fsync of a partition log takes",
            ),
        }
    }

    /// Adds both histograms to `metrics`.
    pub fn register(&self, metrics: &Metrics) -> Result<(), prometheus::Error> {
        metrics.register(Box::new(self.append.clone()))?;
        metrics.register(Box::new(self.flush.clone()))
    }
}

impl Default for LogTimings {
    fn default() -> LogTimings {
        LogTimings::new()
    }
}

/// The `category` values of `gregor_request_errors_total`.
pub const REQUEST_ERROR_CATEGORIES: [&str; 7] = [
    "frame",
    "tls",
    "connection_throttled",
    "unauthenticated",
    "unknown_api",
    "unsupported_version",
    "decode",
];

/// Buckets of a latency histogram, seconds: 100 µs to 30 s.
const LATENCY_BUCKETS: [f64; 11] = [
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0,
];

/// Buckets of a size histogram, bytes: 64 B to 64 MiB, by fours.
const SIZE_BUCKETS: [f64; 11] = [
    64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
    67108864.0,
];

/// Every metric the broker exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests by API.
    pub requests: IntCounterVec,
    /// Request latency by API, seconds.
    pub request_latency: HistogramVec,
    /// How long a request's blocking work waited for a thread, by API.
    pub request_queue: HistogramVec,
    /// Request frame sizes by API.
    pub request_size: HistogramVec,
    /// Response frame sizes by API.
    pub response_size: HistogramVec,
    /// How long acks=all produce requests waited for their ISR.
    pub acks_all_wait: prometheus::Histogram,
    /// How long fetches waited for data (long polls), by `kind` (consumer, follower).
    pub fetch_wait: HistogramVec,
    /// Record bytes this leader returned to followers (ReplicationBytesOutPerSec).
    pub replication_bytes_out: IntCounter,
    /// Per-topic counters, capped.
    pub topics: topics::TopicSeries,
    /// The caps of topic, partition and group series.
    pub limits: Limits,
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
    /// Creates and registers every metric, with the default [`Limits`].
    pub fn new() -> Result<Metrics, prometheus::Error> {
        Metrics::with_limits(Limits::default())
    }

    /// Creates and registers every metric.
    pub fn with_limits(limits: Limits) -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new_custom(Some("gregor".into()), None)?;
        let requests =
            IntCounterVec::new(Opts::new("requests_total", "Requests by API"), &["api"])?;
        let latency = |name: &str, help: &str, labels: &[&str]| {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                labels,
            )
        };
        let sizes = |name: &str, help: &str| {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(SIZE_BUCKETS.to_vec()),
                &["api"],
            )
        };
        let request_latency = latency(
            "request_duration_seconds",
            "Request latency by API",
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
            request_queue: latency(
                "request_queue_seconds",
                "How long a request's blocking work waited for a thread, by API",
                &["api"],
            )?,
            request_size: sizes("request_size_bytes", "Request frame sizes by API")?,
            response_size: sizes("response_size_bytes", "Response frame sizes by API")?,
            acks_all_wait: prometheus::Histogram::with_opts(
                HistogramOpts::new(
                    "produce_acks_all_wait_seconds",
                    "How long acks=all produce requests waited for their ISR",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
            )?,
            fetch_wait: latency(
                "fetch_wait_seconds",
                "How long fetches waited for data, by kind (consumer, follower)",
                &["kind"],
            )?,
            replication_bytes_out: counter(
                "replication_bytes_out_total",
                "Record bytes returned to followers",
            )?,
            topics: topics::TopicSeries::new(limits.topics),
            limits,
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
        // Every value of a bounded label exists from the start, so a rate over it has data
        // before the first error.
        for category in REQUEST_ERROR_CATEGORIES {
            m.request_errors.with_label_values(&[category]);
        }
        for result in ["success", "failure"] {
            m.authentications.with_label_values(&[result]);
            m.tls_reloads.with_label_values(&[result]);
        }
        m.registry.register(Box::new(m.requests.clone()))?;
        for h in [
            &m.request_latency,
            &m.request_queue,
            &m.request_size,
            &m.response_size,
            &m.fetch_wait,
        ] {
            m.registry.register(Box::new(h.clone()))?;
        }
        m.registry.register(Box::new(m.acks_all_wait.clone()))?;
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
            &m.replication_bytes_out,
        ] {
            m.registry.register(Box::new(c.clone()))?;
        }
        m.registry.register(Box::new(m.connections.clone()))?;
        Ok(m)
    }

    /// Registers more of the node's metrics (the partitions' log timings).
    pub fn register(&self, c: Box<dyn Collector>) -> Result<(), prometheus::Error> {
        self.registry.register(c)
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

    /// One counter with labels `names`, a sample per `(values, total)`.
    pub fn counters<'a>(
        &mut self,
        name: &str,
        help: &str,
        names: &[&str],
        samples: impl IntoIterator<Item = (Vec<&'a str>, u64)>,
    ) {
        match IntCounterVec::new(Opts::new(name, help), names) {
            Ok(c) => {
                for (values, total) in samples {
                    if let Ok(s) = c.get_metric_with_label_values(&values) {
                        s.inc_by(total);
                    }
                }
                self.families.extend(c.collect());
            }
            Err(e) => tracing::warn!(name, error = %e, "metric left out"),
        }
    }

    /// The text exposition of the families so far (for tests).
    #[cfg(test)]
    pub fn render_for_test(&self) -> String {
        let mut buf = Vec::new();
        let families: Vec<_> = self
            .families
            .iter()
            .filter(|f| !f.get_metric().is_empty())
            .cloned()
            .collect();
        TextEncoder::new()
            .encode(&families, &mut buf)
            .expect("encodes");
        String::from_utf8(buf).expect("utf-8")
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
                        // Computing the scrape reads every partition and group: off the
                        // reactor, with a large cluster it takes tens of milliseconds.
                        let render = move || {
                            let mut scraped = Scrape::default();
                            refresh(&mut scraped);
                            metrics.render(scraped)
                        };
                        match tokio::task::spawn_blocking(render).await {
                            Ok(body) => respond(StatusCode::OK, body),
                            Err(e) => respond(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                        }
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
