//! The operator's Prometheus metrics and the small HTTP endpoint serving them (`/metrics`,
//! `/healthz`). Labels come from bounded sets (resource kind, result, error category, CA) and
//! from the names of the KafkaClusters, KafkaTopics and KafkaUsers that exist; a resource's
//! series go when it is deleted.

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

use crate::reconcile::ReconcileError;

/// The `ca` label values of [`Metrics::certificate_expiry`]: a KafkaCluster's two CAs.
pub const CA_LABELS: [&str; 2] = ["cluster", "clients"];

/// The `resource` label values of the reconcile counters: the kinds the operator reconciles.
pub const RESOURCES: [&str; 3] = ["KafkaCluster", "KafkaTopic", "KafkaUser"];

/// The `result` label values of `gregor_operator_reconciliations_total`.
pub const RESULTS: [&str; 2] = ["ok", "error"];

/// What one reconcile of a KafkaCluster found, for [`Metrics::cluster_observed`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterObservation {
    /// Ready nodes, every pool.
    pub ready: i32,
    /// Nodes the spec asks for, every pool (a scale step under way may not be there yet).
    pub desired: i32,
    /// Whether a rolling restart is under way: some node does not run the current spec.
    pub rolling: bool,
    /// Whether a broker scale step is under way: reassigning, draining, removing brokers, or
    /// blocked (what `status.scaling` records).
    pub scaling: bool,
    /// Under-replicated partitions, when this reconcile asked the brokers (it does so only
    /// while a roll may restart a ready pod); `None` keeps the count of the last time it did.
    pub under_replicated: Option<usize>,
}

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
    /// `gregor_operator_brokers_ready{namespace,cluster}`: ready nodes of each KafkaCluster,
    /// every pool.
    pub brokers_ready: IntGaugeVec,
    /// `gregor_operator_brokers_desired{namespace,cluster}`: the nodes each KafkaCluster's
    /// spec asks for, every pool.
    pub brokers_desired: IntGaugeVec,
    /// `gregor_operator_under_replicated_partitions{namespace,cluster}`: under-replicated
    /// partitions (ISR smaller than the replica set) the operator saw at its last health
    /// check of each KafkaCluster. It asks the brokers only while a roll may restart a ready
    /// pod, so the series appears with a cluster's first roll and keeps that check's count.
    pub under_replicated: IntGaugeVec,
    /// `gregor_operator_roll_in_progress{namespace,cluster}`: 1 while a KafkaCluster's rolling
    /// restart is under way (some node does not run the current spec), else 0.
    pub roll_in_progress: IntGaugeVec,
    /// `gregor_operator_scale_in_progress{namespace,cluster}`: 1 while a KafkaCluster's broker
    /// scale step is under way (`status.scaling`: reassigning, draining, removing brokers, or
    /// blocked), else 0.
    pub scale_in_progress: IntGaugeVec,
    /// `gregor_operator_last_successful_reconcile_timestamp_seconds{namespace,cluster}`: unix
    /// time at which a reconcile of each KafkaCluster last ran to its end and wrote the
    /// status. An invalid spec, or a reconcile that fails, leaves it where it was.
    pub last_success: IntGaugeVec,
    /// `gregor_operator_resource_ready{kind,namespace,name}`: 1 while the Ready condition the
    /// operator last wrote on a KafkaCluster, KafkaTopic or KafkaUser (`kind`) is True, else 0.
    pub resource_ready: IntGaugeVec,
    /// `gregor_operator_certificate_expiry_timestamp_seconds{namespace,cluster,ca}`: the
    /// notAfter (unix seconds) of each KafkaCluster's current CA certificates, `ca` one of
    /// [`CA_LABELS`], as the operator last made, renewed or read them.
    pub certificate_expiry: IntGaugeVec,
    /// 1 while this replica holds the leader lease.
    pub leading: IntGauge,
    /// The KafkaClusters (`namespace`, `name`) whose roll is under way, which
    /// `rolls_in_progress` counts. Reconciles of different clusters run at once, hence the
    /// lock; it is held only to update the set and the gauge, never across an await.
    rolling: Arc<Mutex<BTreeSet<(String, String)>>>,
}

/// A gauge by `labels`, registered in `registry`.
fn gauges(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntGaugeVec, prometheus::Error> {
    let vec = IntGaugeVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(vec.clone()))?;
    Ok(vec)
}

const CLUSTER_LABELS: [&str; 2] = ["namespace", "cluster"];

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
        let leading = IntGauge::new(
            "gregor_operator_leader",
            "1 while this replica holds the leader lease",
        )?;
        registry.register(Box::new(reconciliations.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(rolls_in_progress.clone()))?;
        registry.register(Box::new(leading.clone()))?;
        // Every series of a bounded label set starts at 0, so a rate has data (and an alert on
        // it a value) before the first reconcile, or the first failure, of its kind.
        for resource in RESOURCES {
            duration.with_label_values(&[resource]);
            for result in RESULTS {
                reconciliations.with_label_values(&[resource, result]);
            }
            for category in ReconcileError::CATEGORIES {
                failures.with_label_values(&[resource, category]);
            }
        }
        let per_cluster = |name: &str, help: &str| gauges(&registry, name, help, &CLUSTER_LABELS);
        Ok(Metrics {
            brokers_ready: per_cluster(
                "gregor_operator_brokers_ready",
                "Ready nodes by namespace and KafkaCluster",
            )?,
            brokers_desired: per_cluster(
                "gregor_operator_brokers_desired",
                "Nodes the KafkaCluster's spec asks for, every pool",
            )?,
            under_replicated: per_cluster(
                "gregor_operator_under_replicated_partitions",
                "Under-replicated partitions at the operator's last health check of the KafkaCluster",
            )?,
            roll_in_progress: per_cluster(
                "gregor_operator_roll_in_progress",
                "1 while the KafkaCluster's rolling restart is under way",
            )?,
            scale_in_progress: per_cluster(
                "gregor_operator_scale_in_progress",
                "1 while the KafkaCluster's broker scale step is under way",
            )?,
            last_success: per_cluster(
                "gregor_operator_last_successful_reconcile_timestamp_seconds",
                "Unix time of the KafkaCluster's last successful reconcile",
            )?,
            resource_ready: gauges(
                &registry,
                "gregor_operator_resource_ready",
                "1 while the resource's Ready condition is True",
                &["kind", "namespace", "name"],
            )?,
            certificate_expiry: gauges(
                &registry,
                "gregor_operator_certificate_expiry_timestamp_seconds",
                "NotAfter (unix seconds) of the KafkaCluster's CA certificate",
                &["namespace", "cluster", "ca"],
            )?,
            registry,
            reconciliations,
            failures,
            duration,
            rolls_in_progress,
            leading,
            rolling: Arc::default(),
        })
    }

    /// Records what a reconcile of the KafkaCluster `namespace/name` found (see
    /// [`ClusterObservation`]).
    pub fn cluster_observed(&self, namespace: &str, name: &str, seen: &ClusterObservation) {
        let labels = [namespace, name];
        let set = |gauge: &IntGaugeVec, value: i64| gauge.with_label_values(&labels).set(value);
        set(&self.brokers_ready, i64::from(seen.ready));
        set(&self.brokers_desired, i64::from(seen.desired));
        set(&self.roll_in_progress, i64::from(seen.rolling));
        set(&self.scale_in_progress, i64::from(seen.scaling));
        if let Some(n) = seen.under_replicated {
            set(&self.under_replicated, i64::try_from(n).unwrap_or(i64::MAX));
        }
        let mut rolling = self.rolling.lock();
        let key = (namespace.to_string(), name.to_string());
        if seen.rolling {
            rolling.insert(key);
        } else {
            rolling.remove(&key);
        }
        self.rolls_in_progress.set(rolling.len() as i64);
    }

    /// Records that a reconcile of the KafkaCluster `namespace/name` ran to its end at `at`
    /// (unix seconds).
    pub fn cluster_reconciled(&self, namespace: &str, name: &str, at: i64) {
        self.last_success
            .with_label_values(&[namespace, name])
            .set(at);
    }

    /// Records the notAfter (unix seconds) of the `ca` CA's certificate of the KafkaCluster
    /// `namespace/cluster`; `None` when it has none (a user-supplied CA missing or broken).
    pub fn certificate_expiry(
        &self,
        namespace: &str,
        cluster: &str,
        ca: &str,
        not_after: Option<i64>,
    ) {
        let labels = [namespace, cluster, ca];
        match not_after {
            Some(at) => self.certificate_expiry.with_label_values(&labels).set(at),
            None => {
                // An error only says the series did not exist.
                let _ = self.certificate_expiry.remove_label_values(&labels);
            }
        }
    }

    /// Records whether the Ready condition just written on the `kind` resource
    /// `namespace/name` is True.
    pub fn resource_ready(&self, kind: &str, namespace: &str, name: &str, ready: bool) {
        self.resource_ready
            .with_label_values(&[kind, namespace, name])
            .set(i64::from(ready));
    }

    /// Forgets the `kind` resource `namespace/name`, which is gone.
    pub fn resource_gone(&self, kind: &str, namespace: &str, name: &str) {
        // An error only says the series did not exist.
        let _ = self
            .resource_ready
            .remove_label_values(&[kind, namespace, name]);
    }

    /// Forgets the KafkaCluster `namespace/name`, which is gone: every series of it is removed
    /// and its roll no longer counts.
    pub fn cluster_gone(&self, namespace: &str, name: &str) {
        for gauge in [
            &self.brokers_ready,
            &self.brokers_desired,
            &self.under_replicated,
            &self.roll_in_progress,
            &self.scale_in_progress,
            &self.last_success,
        ] {
            // An error only says the series did not exist.
            let _ = gauge.remove_label_values(&[namespace, name]);
        }
        for ca in CA_LABELS {
            self.certificate_expiry(namespace, name, ca, None);
        }
        self.resource_gone("KafkaCluster", namespace, name);
        let mut rolling = self.rolling.lock();
        rolling.remove(&(namespace.to_string(), name.to_string()));
        self.rolls_in_progress.set(rolling.len() as i64);
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
            r#"gregor_operator_reconciliations_total{resource="KafkaCluster",result="error"} 1"#
        ));
        assert!(text.contains(
            r#"gregor_operator_reconcile_failures_total{category="kubernetes",resource="KafkaCluster"} 1"#
        ));
        assert!(text.contains("gregor_operator_reconcile_duration_seconds_count"));
    }

    #[test]
    fn the_resource_labels_are_the_kinds_reconciled() {
        use crate::crd::{KafkaCluster, KafkaTopic, KafkaUser};
        use kube::Resource;
        assert_eq!(
            RESOURCES.map(String::from),
            [
                KafkaCluster::kind(&()).to_string(),
                KafkaTopic::kind(&()).to_string(),
                KafkaUser::kind(&()).to_string()
            ]
        );
    }

    #[test]
    fn every_bounded_reconcile_series_starts_at_zero() {
        let text = Metrics::new().unwrap().render();
        for resource in RESOURCES {
            for result in RESULTS {
                assert!(text.contains(&format!(
                    r#"gregor_operator_reconciliations_total{{resource="{resource}",result="{result}"}} 0"#
                )));
            }
            for category in ReconcileError::CATEGORIES {
                assert!(text.contains(&format!(
                    r#"gregor_operator_reconcile_failures_total{{category="{category}",resource="{resource}"}} 0"#
                )));
            }
            assert!(text.contains(&format!(
                r#"gregor_operator_reconcile_duration_seconds_count{{resource="{resource}"}} 0"#
            )));
        }
    }

    /// What a reconcile found: `ready` nodes of 3, rolling or not, nothing else under way.
    fn seen(ready: i32, rolling: bool) -> ClusterObservation {
        ClusterObservation {
            ready,
            desired: 3,
            rolling,
            ..Default::default()
        }
    }

    /// The sample line of `metric` for the KafkaCluster `ns/name`.
    fn of_cluster(metric: &str, ns: &str, name: &str) -> String {
        format!(r#"gregor_operator_{metric}{{cluster="{name}",namespace="{ns}"}}"#)
    }

    #[test]
    fn ready_nodes_and_rolls_follow_each_cluster_and_a_deleted_cluster_leaves_no_series() {
        let m = Metrics::new().unwrap();
        let ready = |ns: &str, name: &str| of_cluster("brokers_ready", ns, name);
        m.cluster_observed("prod", "events", &seen(3, false));
        m.cluster_observed("prod", "orders", &seen(2, true));
        assert_eq!(m.rolls_in_progress.get(), 1);
        m.cluster_observed("test", "events", &seen(1, true));
        m.cluster_observed("test", "events", &seen(1, true));
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

        m.cluster_observed("prod", "orders", &seen(3, false));
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

    #[test]
    fn a_cluster_shows_its_desired_nodes_its_roll_and_scale_step_and_its_last_health_check() {
        let m = Metrics::new().unwrap();
        let line = |metric: &str, value: i64| {
            format!("{} {value}\n", of_cluster(metric, "prod", "events"))
        };
        m.cluster_observed(
            "prod",
            "events",
            &ClusterObservation {
                ready: 2,
                desired: 5,
                rolling: true,
                scaling: true,
                under_replicated: Some(4),
            },
        );
        let text = m.render();
        for expected in [
            line("brokers_ready", 2),
            line("brokers_desired", 5),
            line("roll_in_progress", 1),
            line("scale_in_progress", 1),
            line("under_replicated_partitions", 4),
        ] {
            assert!(text.contains(&expected), "{expected}in\n{text}");
        }

        // The next reconcile does not ask the brokers: the last health check's count stays.
        m.cluster_observed("prod", "events", &seen(3, false));
        let text = m.render();
        for expected in [
            line("brokers_desired", 3),
            line("roll_in_progress", 0),
            line("scale_in_progress", 0),
            line("under_replicated_partitions", 4),
        ] {
            assert!(text.contains(&expected), "{expected}in\n{text}");
        }
        m.cluster_observed(
            "prod",
            "events",
            &ClusterObservation {
                under_replicated: Some(0),
                ..seen(3, true)
            },
        );
        assert!(m.render().contains(&line("under_replicated_partitions", 0)));
    }

    #[test]
    fn a_cluster_that_has_not_reconciled_to_the_end_has_no_timestamp_and_then_its_last() {
        let m = Metrics::new().unwrap();
        let series = of_cluster(
            "last_successful_reconcile_timestamp_seconds",
            "prod",
            "events",
        );
        m.cluster_observed("prod", "events", &seen(3, false));
        assert!(!m.render().contains(&series));
        m.cluster_reconciled("prod", "events", 1_700_000_000);
        m.cluster_reconciled("prod", "events", 1_700_000_300);
        let text = m.render();
        assert!(text.contains(&format!("{series} 1700000300\n")), "{text}");
    }

    #[test]
    fn each_ca_shows_its_expiry_until_it_is_gone() {
        let m = Metrics::new().unwrap();
        let expiry = |ca: &str| {
            format!(
                r#"gregor_operator_certificate_expiry_timestamp_seconds{{ca="{ca}",cluster="events",namespace="prod"}}"#
            )
        };
        m.certificate_expiry("prod", "events", "cluster", Some(1_800_000_000));
        m.certificate_expiry("prod", "events", "clients", Some(1_800_000_100));
        let text = m.render();
        assert!(
            text.contains(&format!("{} 1800000000\n", expiry("cluster"))),
            "{text}"
        );
        assert!(
            text.contains(&format!("{} 1800000100\n", expiry("clients"))),
            "{text}"
        );

        // Renewed, then (user-supplied) removed from its Secret.
        m.certificate_expiry("prod", "events", "clients", Some(1_900_000_000));
        assert!(m
            .render()
            .contains(&format!("{} 1900000000\n", expiry("clients"))));
        m.certificate_expiry("prod", "events", "clients", None);
        let text = m.render();
        assert!(!text.contains(&expiry("clients")), "{text}");
        assert!(text.contains(&expiry("cluster")), "{text}");
        m.certificate_expiry("prod", "events", "clients", None);
    }

    #[test]
    fn readiness_follows_each_resource_and_a_deleted_resource_leaves_no_series() {
        let m = Metrics::new().unwrap();
        let ready = |kind: &str, name: &str| {
            format!(
                r#"gregor_operator_resource_ready{{kind="{kind}",name="{name}",namespace="prod"}}"#
            )
        };
        m.resource_ready("KafkaTopic", "prod", "orders", false);
        m.resource_ready("KafkaUser", "prod", "orders", true);
        let text = m.render();
        assert!(
            text.contains(&format!("{} 0\n", ready("KafkaTopic", "orders"))),
            "{text}"
        );
        assert!(
            text.contains(&format!("{} 1\n", ready("KafkaUser", "orders"))),
            "{text}"
        );
        m.resource_ready("KafkaTopic", "prod", "orders", true);
        assert!(m
            .render()
            .contains(&format!("{} 1\n", ready("KafkaTopic", "orders"))));

        m.resource_gone("KafkaTopic", "prod", "orders");
        let text = m.render();
        assert!(!text.contains(&ready("KafkaTopic", "orders")), "{text}");
        assert!(
            text.contains(&ready("KafkaUser", "orders")),
            "the user of the same name stays"
        );
        m.resource_gone("KafkaTopic", "prod", "orders");
    }

    #[test]
    fn a_deleted_cluster_leaves_none_of_its_series_and_the_others_keep_theirs() {
        let m = Metrics::new().unwrap();
        for name in ["events", "orders"] {
            m.cluster_observed(
                "prod",
                name,
                &ClusterObservation {
                    ready: 3,
                    desired: 3,
                    rolling: true,
                    scaling: true,
                    under_replicated: Some(1),
                },
            );
            m.cluster_reconciled("prod", name, 1_700_000_000);
            for ca in CA_LABELS {
                m.certificate_expiry("prod", name, ca, Some(1_800_000_000));
            }
            m.resource_ready("KafkaCluster", "prod", name, true);
        }
        // Series of every per-cluster metric but the cluster-wide count.
        let per_cluster = m.render().matches(r#"cluster="events""#).count();
        assert_eq!(per_cluster, 6 + CA_LABELS.len());

        m.cluster_gone("prod", "events");
        let text = m.render();
        assert!(!text.contains(r#"cluster="events""#), "{text}");
        assert!(!text.contains(r#"name="events""#), "{text}");
        assert_eq!(text.matches(r#"cluster="orders""#).count(), per_cluster);
        assert!(
            text.contains(r#"kind="KafkaCluster",name="orders""#),
            "{text}"
        );
        assert_eq!(m.rolls_in_progress.get(), 1);
    }
}
