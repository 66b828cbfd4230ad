//! The operator's Prometheus metrics and the small HTTP endpoint serving them (`/metrics`,
//! `/healthz`). Labels come from bounded sets (resource kind, result, error category) and from
//! the names of the KafkaClusters that exist.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Every metric the operator exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Reconciles by resource kind and result (`ok`, `error`).
    pub reconciliations: IntCounterVec,
    /// Failed reconciles by resource kind and error category.
    pub failures: IntCounterVec,
    /// Reconcile duration by resource kind.
    pub duration: HistogramVec,
    /// KafkaClusters with a rolling restart under way.
    pub rolls_in_progress: IntGauge,
    /// Ready nodes by namespace and cluster.
    pub brokers_ready: IntGaugeVec,
    /// 1 while this replica holds the leader lease.
    pub leading: IntGauge,
    /// The KafkaClusters (`namespace`, `name`) whose roll is under way, which
    /// `rolls_in_progress` counts. Reconciles of different clusters run at once, hence the
    /// lock; it is held only to update the set and the gauge, never across an await.
    rolling: Arc<Mutex<BTreeSet<(String, String)>>>,
}

impl Metrics {
    /// Registers every metric in a registry of its own.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let reconciliations = IntCounterVec::new(
            Opts::new(
                "gregor_operator_reconciliations_total",
                "Reconciles by resource kind and result",
            ),
            &["resource", "result"],
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                "gregor_operator_reconcile_failures_total",
                "Failed reconciles by resource kind and error category",
            ),
            &["resource", "category"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "gregor_operator_reconcile_duration_seconds",
                "Reconcile duration by resource kind",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["resource"],
        )?;
        let rolls_in_progress = IntGauge::new(
            "gregor_operator_rolls_in_progress",
            "KafkaClusters with a rolling restart under way",
        )?;
        let brokers_ready = IntGaugeVec::new(
            Opts::new(
                "gregor_operator_brokers_ready",
                "Ready nodes by namespace and KafkaCluster",
            ),
            &["namespace", "cluster"],
        )?;
        let leading = IntGauge::new(
            "gregor_operator_leader",
            "1 while this replica holds the leader lease",
        )?;
        registry.register(Box::new(reconciliations.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(rolls_in_progress.clone()))?;
        registry.register(Box::new(brokers_ready.clone()))?;
        registry.register(Box::new(leading.clone()))?;
        Ok(Metrics {
            registry,
            reconciliations,
            failures,
            duration,
            rolls_in_progress,
            brokers_ready,
            leading,
            rolling: Arc::default(),
        })
    }

    /// Records what a reconcile of the KafkaCluster `namespace/name` found: `ready` nodes, and
    /// whether its roll is under way (some node does not run the current spec).
    pub fn cluster_observed(&self, namespace: &str, name: &str, ready: i32, rolling: bool) {
        self.brokers_ready
            .with_label_values(&[namespace, name])
            .set(i64::from(ready));
        let mut set = self.rolling.lock();
        let key = (namespace.to_string(), name.to_string());
        if rolling {
            set.insert(key);
        } else {
            set.remove(&key);
        }
        self.rolls_in_progress.set(set.len() as i64);
    }

    /// Forgets the KafkaCluster `namespace/name`, which is gone: its series is removed and its
    /// roll no longer counts.
    pub fn cluster_gone(&self, namespace: &str, name: &str) {
        // An error only says the series did not exist.
        let _ = self.brokers_ready.remove_label_values(&[namespace, name]);
        let mut set = self.rolling.lock();
        set.remove(&(namespace.to_string(), name.to_string()));
        self.rolls_in_progress.set(set.len() as i64);
    }

    /// Records one reconcile of `resource` that took `took` and failed with `category`, if any.
    pub fn reconciled(&self, resource: &str, took: Duration, failure: Option<&str>) {
        self.duration
            .with_label_values(&[resource])
            .observe(took.as_secs_f64());
        let result = if failure.is_some() { "error" } else { "ok" };
        self.reconciliations
            .with_label_values(&[resource, result])
            .inc();
        if let Some(category) = failure {
            self.failures.with_label_values(&[resource, category]).inc();
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

fn respond(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

/// Serves `/metrics` and `/healthz` on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => match a {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    continue;
                }
            },
        };
        let metrics = Arc::clone(&metrics);
        let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let metrics = Arc::clone(&metrics);
            async move {
                Ok::<_, Infallible>(match req.uri().path() {
                    "/metrics" => respond(StatusCode::OK, metrics.render()),
                    "/healthz" | "/readyz" => respond(StatusCode::OK, "ok\n".into()),
                    _ => respond(StatusCode::NOT_FOUND, "not found\n".into()),
                })
            }
        });
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = shutdown.cancelled() => {}
                r = conn => if let Err(e) = r { tracing::debug!(error = %e, "metrics connection"); },
            }
        });
    }
    connections.close();
    connections.wait().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciles_are_counted_by_kind_result_and_category() {
        let m = Metrics::new().unwrap();
        m.reconciled("KafkaCluster", Duration::from_millis(20), None);
        m.reconciled(
            "KafkaCluster",
            Duration::from_millis(20),
            Some("kubernetes"),
        );
        let text = m.render();
        assert!(text.contains(
            r#"gregor_operator_reconciliations_total{resource="KafkaCluster",result="ok"} 1"#
        ));
        assert!(text.contains(
            r#"gregor_operator_reconcile_failures_total{category="kubernetes",resource="KafkaCluster"} 1"#
        ));
        assert!(text.contains("gregor_operator_reconcile_duration_seconds_count"));
    }

    #[test]
    fn ready_nodes_and_rolls_follow_each_cluster_and_a_deleted_cluster_leaves_no_series() {
        let m = Metrics::new().unwrap();
        let ready = |ns: &str, name: &str| {
            format!(r#"gregor_operator_brokers_ready{{cluster="{name}",namespace="{ns}"}}"#)
        };
        m.cluster_observed("prod", "events", 3, false);
        m.cluster_observed("prod", "orders", 2, true);
        assert_eq!(m.rolls_in_progress.get(), 1);
        m.cluster_observed("test", "events", 1, true);
        m.cluster_observed("test", "events", 1, true);
        assert_eq!(m.rolls_in_progress.get(), 2, "a cluster counts once");
        let text = m.render();
        assert!(
            text.contains(&format!("{} 3\n", ready("prod", "events"))),
            "{text}"
        );
        assert!(
            text.contains(&format!("{} 2\n", ready("prod", "orders"))),
            "{text}"
        );

        m.cluster_observed("prod", "orders", 3, false);
        assert_eq!(m.rolls_in_progress.get(), 1, "its roll is over");
        m.cluster_gone("test", "events");
        assert_eq!(
            m.rolls_in_progress.get(),
            0,
            "a deleted cluster rolls no more"
        );
        let text = m.render();
        assert!(!text.contains(&ready("test", "events")), "{text}");
        assert!(
            text.contains(&format!("{} 3\n", ready("prod", "orders"))),
            "{text}"
        );
        m.cluster_gone("test", "events");
        assert_eq!(m.rolls_in_progress.get(), 0, "forgetting twice is harmless");
    }
}
