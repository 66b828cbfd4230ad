//! Early fencing of brokers whose process is gone. The active controller probes a broker that
//! has missed a heartbeat with a TCP connection to its advertised listener. A refusal means
//! nothing listens there any more: the process died, or stopped without a controlled shutdown.
//! Such a broker is fenced at once instead of after `broker.session.timeout.ms`, so its
//! partitions get new leaders within a heartbeat or two.
//!
//! A probe that is answered changes nothing, and neither does one that gets no answer (a network
//! partition, an overloaded host). Those brokers keep the session timeout, as in Kafka. A broker
//! that heartbeats while it is probed stays alive, and a fenced broker is unfenced by its next
//! heartbeat, so a wrong refusal costs one leader move at most.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::cluster::image::MetadataImage;
use crate::quorum::liveness::Liveness;

/// What a connection attempt to a broker's listener found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The connection was accepted.
    Answered,
    /// Refused: nothing listens on that address.
    Refused,
    /// No answer in time, or another error: inconclusive.
    NoAnswer,
}

/// Tries one TCP connection to `host:port` within `timeout`.
pub async fn probe(host: &str, port: u16, timeout: Duration) -> Probe {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port))).await {
        Ok(Ok(_)) => Probe::Answered,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Probe::Refused,
        Ok(Err(_)) | Err(_) => Probe::NoAnswer,
    }
}

/// A broker that missed a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspect {
    /// Broker id.
    pub broker: i32,
    /// Its advertised host.
    pub host: String,
    /// Its advertised port.
    pub port: u16,
    /// Its last heartbeat (or the liveness table's start).
    pub silent_since: Instant,
}

/// The unfenced brokers of `image` that have been silent for longer than `after` at `now`.
pub fn overdue(
    image: &MetadataImage,
    liveness: &Liveness,
    now: Instant,
    after: Duration,
) -> Vec<Suspect> {
    image
        .brokers
        .iter()
        .filter(|(_, b)| !b.fenced)
        .filter_map(|(id, b)| {
            let since = liveness.silent_since(*id)?;
            (now.saturating_duration_since(since) > after).then(|| Suspect {
                broker: *id,
                host: b.host.clone(),
                port: b.port,
                silent_since: since,
            })
        })
        .collect()
}

/// Probes overdue brokers in the background, one probe per broker at a time, and marks those
/// that refuse as departed in the liveness table.
#[derive(Debug)]
pub struct Prober {
    liveness: Arc<Liveness>,
    in_flight: Arc<Mutex<BTreeSet<i32>>>,
    /// Woken when a probe departed a broker, so the controller decides without waiting a tick.
    pub departed: Arc<Notify>,
    /// A broker is probed once it has been silent this long.
    after: Duration,
    timeout: Duration,
}

impl Prober {
    /// A prober for brokers that heartbeat every `heartbeat_interval`.
    pub fn new(liveness: Arc<Liveness>, heartbeat_interval: Duration) -> Prober {
        Prober {
            liveness,
            in_flight: Arc::default(),
            departed: Arc::default(),
            // One missed heartbeat, with a margin for a beat that is merely late.
            after: heartbeat_interval + heartbeat_interval / 8,
            timeout: heartbeat_interval.min(Duration::from_secs(1)),
        }
    }

    /// Starts a probe of every overdue broker of `image` not already being probed.
    pub fn check(&self, image: &MetadataImage, now: Instant) {
        for suspect in overdue(image, &self.liveness, now, self.after) {
            if !self.in_flight.lock().insert(suspect.broker) {
                continue;
            }
            let (liveness, in_flight, departed, timeout) = (
                Arc::clone(&self.liveness),
                Arc::clone(&self.in_flight),
                Arc::clone(&self.departed),
                self.timeout,
            );
            tokio::spawn(async move {
                let found = probe(&suspect.host, suspect.port, timeout).await;
                if found == Probe::Refused
                    && liveness.depart_if_silent_since(suspect.broker, suspect.silent_since)
                {
                    tracing::info!(
                        broker = suspect.broker,
                        address = %format!("{}:{}", suspect.host, suspect.port),
                        silent_ms = suspect.silent_since.elapsed().as_millis() as u64,
                        "broker missed a heartbeat and its listener refuses connections: fencing it now"
                    );
                    departed.notify_one();
                }
                in_flight.lock().remove(&suspect.broker);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::image::BrokerImage;

    fn image_with(brokers: &[(i32, u16, bool)]) -> MetadataImage {
        let mut image = MetadataImage::default();
        for (id, port, fenced) in brokers {
            image.brokers.insert(
                *id,
                BrokerImage {
                    host: "127.0.0.1".into(),
                    port: *port,
                    endpoints: Vec::new(),
                    rack: None,
                    fenced: *fenced,
                },
            );
        }
        image
    }

    /// A loopback port nothing listens on: bound, then closed.
    async fn closed_port() -> u16 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn a_probe_tells_a_listener_from_a_closed_port() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = l.local_addr().unwrap().port();
        let t = Duration::from_secs(2);
        assert_eq!(probe("127.0.0.1", open, t).await, Probe::Answered);
        assert_eq!(
            probe("127.0.0.1", closed_port().await, t).await,
            Probe::Refused
        );
    }

    #[test]
    fn only_unfenced_brokers_silent_past_the_threshold_are_overdue() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let liveness = Liveness::new(t0);
        let image = image_with(&[(1, 1, false), (2, 2, false), (3, 3, true), (4, 4, false)]);
        liveness.heard_from(1, at(100));
        liveness.heard_from(2, at(900));
        liveness.heard_from(3, at(0));
        liveness.depart(4);
        let late = overdue(&image, &liveness, at(1_000), Duration::from_millis(500));
        assert_eq!(
            late.iter().map(|s| s.broker).collect::<Vec<_>>(),
            vec![1],
            "2 beat recently, 3 is fenced already, 4 departed"
        );
        assert_eq!(late[0].silent_since, at(100));
    }

    #[tokio::test]
    async fn a_refusing_broker_is_departed_and_a_listening_one_is_not() {
        let liveness = Arc::new(Liveness::new(Instant::now()));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = l.local_addr().unwrap().port();
        let image = image_with(&[(1, closed_port().await, false), (2, open, false)]);
        let prober = Prober::new(Arc::clone(&liveness), Duration::from_millis(10));
        let departed = Arc::clone(&prober.departed);
        let session = Duration::from_secs(60);
        // A second on, both have missed their first heartbeat (never heard from); only 1
        // refuses.
        prober.check(&image, Instant::now() + Duration::from_secs(1));
        tokio::time::timeout(Duration::from_secs(10), departed.notified())
            .await
            .expect("the refusing broker is departed");
        assert!(!liveness.is_alive(1, session, Instant::now()));
        // The listening broker's probe ran alongside; wait until no probe is in flight.
        while !prober.in_flight.lock().is_empty() {
            tokio::task::yield_now().await;
        }
        assert!(liveness.is_alive(2, session, Instant::now()));
    }
}
