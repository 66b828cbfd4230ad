//! TLS material that follows its files: each SSL listener's key store and trust store are
//! re-read when their content changes (checked every `ssl.reload.interval.ms`), without a
//! restart and without touching established connections: new handshakes use the new
//! certificates. Material that does not load (a half-written file, a key that does not match
//! its certificate) is refused with a warning and the listener keeps serving the old one.
//!
//! A listener's material may also be replaced through AlterConfigs of its
//! `listener.name.<l>.ssl.*` keys on this broker, as Kafka allows: [`ReloadingAcceptor::validate`]
//! checks the new material as Kafka's SslFactory does, [`ReloadingAcceptor::reconfigure`] puts
//! it in use.

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
    /// The settings in use: the static ones, or those dynamic configs replaced them with.
    ssl: parking_lot::RwLock<SslConfig>,
    current: parking_lot::RwLock<TlsAcceptor>,
    /// The certificate served (DER), which a dynamic update is compared with.
    served: parking_lot::Mutex<Vec<u8>>,
    /// The checksum of every watched file's content (`None`: unreadable) at the last load.
    seen: parking_lot::Mutex<Vec<Option<u32>>>,
    /// Held while material is loaded and put in use, so a file reload and a dynamic update
    /// cannot interleave (and leave the older material serving).
    loading: parking_lot::Mutex<()>,
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

/// The checksum of each file's content (`None`: unreadable), to tell when one changed.
pub fn checksums(files: &[PathBuf]) -> Vec<Option<u32>> {
    files
        .iter()
        .map(|f| std::fs::read(f).ok().map(|bytes| crc32c::crc32c(&bytes)))
        .collect()
}

impl ReloadingAcceptor {
    /// Loads listener `listener`'s material (blocking: reads files).
    pub fn load(listener: &str, ssl: &SslConfig) -> Result<ReloadingAcceptor, String> {
        let seen = checksums(&watched_files(ssl));
        let (server, leaf) = super::tls::server_material(ssl)?;
        Ok(ReloadingAcceptor {
            listener: listener.to_string(),
            ssl: parking_lot::RwLock::new(ssl.clone()),
            current: parking_lot::RwLock::new(TlsAcceptor::from(Arc::new(server))),
            served: parking_lot::Mutex::new(leaf),
            seen: parking_lot::Mutex::new(seen),
            loading: parking_lot::Mutex::new(()),
        })
    }

    /// The acceptor new connections use.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.current.read().clone()
    }

    /// Re-reads the material if a file changed (blocking). `Ok(true)`: reloaded; `Err`: the
    /// new material does not load, and the old stays in use (asked again at the next change).
    pub fn check(&self) -> Result<bool, String> {
        let _loading = self.loading.lock();
        let ssl = self.ssl.read().clone();
        let now = checksums(&watched_files(&ssl));
        {
            let mut seen = self.seen.lock();
            if *seen == now {
                return Ok(false);
            }
            *seen = now;
        }
        let (server, leaf) = super::tls::server_material(&ssl)?;
        self.install(server, leaf);
        Ok(true)
    }

    /// Checks `next` as this listener's settings (blocking: reads files), as Kafka's SslFactory
    /// checks a dynamic update, with its messages: the material loads, and its certificate
    /// names the subject of the one served now (the DN, ignoring case) and at least its
    /// SubjectAltNames, unless `ssl.allow.dn.changes` / `ssl.allow.san.changes` allow
    /// otherwise. Settings equal to those in use pass as they are when their files have not
    /// changed.
    pub fn validate(&self, next: &SslConfig) -> Result<(), String> {
        // The same settings pass as they are, unless their files changed in place: Kafka
        // checks a key store re-read from the same path too.
        if *self.ssl.read() == *next && checksums(&watched_files(next)) == *self.seen.lock() {
            return Ok(());
        }
        let failed =
            |e: String| format!("Validation of dynamic config update of SSLFactory failed: {e}");
        let (_, leaf) = super::tls::server_material(next).map_err(failed)?;
        let (old_dn, old_sans) = super::tls::certificate_names(&self.served.lock())?;
        let (new_dn, new_sans) = super::tls::certificate_names(&leaf).map_err(failed)?;
        if !next.allow_dn_changes && !old_dn.eq_ignore_ascii_case(&new_dn) {
            return Err(failed(format!(
                "Keystore DistinguishedName does not match:  existing={{DN={old_dn}}}, \
                 new={{DN={new_dn}}}"
            )));
        }
        if !next.allow_san_changes && !new_sans.is_superset(&old_sans) {
            let list = |s: &std::collections::BTreeSet<String>| {
                s.iter().cloned().collect::<Vec<_>>().join(", ")
            };
            return Err(failed(format!(
                "Keystore SubjectAltNames do not match:  existing={{DN={old_dn}, SAN=[{}]}}, \
                 new={{DN={new_dn}, SAN=[{}]}}",
                list(&old_sans),
                list(&new_sans)
            )));
        }
        Ok(())
    }

    /// Serves `next` from now on (blocking: reads files); `Ok(false)` when those are the
    /// settings in use already. On an error the listener keeps its material.
    pub fn reconfigure(&self, next: &SslConfig) -> Result<bool, String> {
        let _loading = self.loading.lock();
        if *self.ssl.read() == *next {
            return Ok(false);
        }
        let seen = checksums(&watched_files(next));
        let (server, leaf) = super::tls::server_material(next)?;
        *self.ssl.write() = next.clone();
        *self.seen.lock() = seen;
        self.install(server, leaf);
        Ok(true)
    }

    fn install(&self, server: rustls::ServerConfig, leaf: Vec<u8>) {
        *self.current.write() = TlsAcceptor::from(Arc::new(server));
        *self.served.lock() = leaf;
    }

    /// Whether `ssl` are the settings in use.
    pub fn serves(&self, ssl: &SslConfig) -> bool {
        *self.ssl.read() == *ssl
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
            report(&metrics, a.listener(), "changed files", outcome);
        }
    }
}

/// Logs and counts (`gregor_tls_reloads_total{result}`) the outcome of re-reading a listener's
/// material for `cause`: `Ok(false)` is nothing to do; an error leaves the previous material
/// serving.
pub fn report(metrics: &Metrics, listener: &str, cause: &str, outcome: Result<bool, String>) {
    match outcome {
        Ok(false) => {}
        Ok(true) => {
            tracing::info!(listener, cause, "TLS material reloaded");
            metrics.tls_reloads.with_label_values(&["success"]).inc();
        }
        Err(reason) => {
            tracing::warn!(
                listener,
                cause,
                "changed TLS material not loaded, still serving the previous: {reason}"
            );
            metrics.tls_reloads.with_label_values(&["failure"]).inc();
        }
    }
}
