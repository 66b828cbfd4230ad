//! TLS material that follows its files: each SSL listener's key store and trust store are
//! re-read when their content changes (checked every `ssl.reload.interval.ms`), without a
//! restart and without touching established connections: new handshakes use the new
//! certificates. Material that does not load (a half-written file, a key that does not match
//! its certificate) is refused with a warning and the listener keeps serving the old one.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::config::ssl::{KeyStore, PemSource, SslConfig};
use crate::metrics::Metrics;

/// One listener's acceptor, replaced when its files change.
pub struct ReloadingAcceptor {
    listener: String,
    ssl: SslConfig,
    current: parking_lot::RwLock<TlsAcceptor>,
    /// The checksum of every watched file's content (`None`: unreadable) at the last load.
    seen: parking_lot::Mutex<Vec<Option<u32>>>,
}

impl std::fmt::Debug for ReloadingAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingAcceptor")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

/// The files a listener's TLS material comes from.
fn watched_files(ssl: &SslConfig) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let KeyStore::File { path, .. } = &ssl.keystore {
        files.push(path.clone());
    }
    if let Some(PemSource::File(path)) = ssl.truststore.as_ref().map(|t| &t.source) {
        files.push(path.clone());
    }
    files
}

fn checksums(files: &[PathBuf]) -> Vec<Option<u32>> {
    files
        .iter()
        .map(|f| std::fs::read(f).ok().map(|bytes| crc32c::crc32c(&bytes)))
        .collect()
}

impl ReloadingAcceptor {
    /// Loads listener `listener`'s material (blocking: reads files).
    pub fn load(listener: &str, ssl: &SslConfig) -> Result<ReloadingAcceptor, String> {
        let seen = checksums(&watched_files(ssl));
        let server = super::tls::server_config(ssl)?;
        Ok(ReloadingAcceptor {
            listener: listener.to_string(),
            ssl: ssl.clone(),
            current: parking_lot::RwLock::new(TlsAcceptor::from(Arc::new(server))),
            seen: parking_lot::Mutex::new(seen),
        })
    }

    /// The acceptor new connections use.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.current.read().clone()
    }

    /// Re-reads the material if a file changed (blocking). `Ok(true)`: reloaded; `Err`: the
    /// new material does not load, and the old stays in use (asked again at the next change).
    pub fn check(&self) -> Result<bool, String> {
        let now = checksums(&watched_files(&self.ssl));
        {
            let mut seen = self.seen.lock();
            if *seen == now {
                return Ok(false);
            }
            *seen = now;
        }
        let server = super::tls::server_config(&self.ssl)?;
        *self.current.write() = TlsAcceptor::from(Arc::new(server));
        Ok(true)
    }

    /// The listener's name.
    pub fn listener(&self) -> &str {
        &self.listener
    }
}

/// Checks `acceptors` every `interval` until `shutdown`, logging and counting each reload.
pub async fn watch(
    acceptors: Vec<Arc<ReloadingAcceptor>>,
    interval: Duration,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        for a in &acceptors {
            let checked = Arc::clone(a);
            let Ok(outcome) = tokio::task::spawn_blocking(move || checked.check()).await else {
                continue;
            };
            match outcome {
                Ok(false) => {}
                Ok(true) => {
                    tracing::info!(listener = a.listener(), "TLS material reloaded");
                    metrics.tls_reloads.with_label_values(&["success"]).inc();
                }
                Err(reason) => {
                    tracing::warn!(
                        listener = a.listener(),
                        "changed TLS material not loaded, still serving the previous: {reason}"
                    );
                    metrics.tls_reloads.with_label_values(&["failure"]).inc();
                }
            }
        }
    }
}
