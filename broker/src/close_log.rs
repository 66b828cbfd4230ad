//! A rate-limited log line for closed connections: a peer that speaks the wrong protocol, fails
//! its TLS handshake or its login gets one line at most every ten seconds per listener family,
//! the rest counted into the next line, so a port scanner or a misconfigured fleet cannot flood
//! the log. Used by the client listeners (`server::connection`) and the quorum's
//! (`quorum::rpc_server`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// At most one line per this long about peers closed for speaking the wrong protocol; the
/// others are counted into the next line. A port scanner or a misconfigured client fleet must
/// not flood the log.
pub const CLOSE_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The rate limit of the "wrong protocol" log lines, one per node.
#[derive(Debug, Default)]
pub struct CloseLog {
    /// When the last line was written. A plain mutex: held only to compare and set an instant,
    /// never across an await.
    last: parking_lot::Mutex<Option<Instant>>,
    /// Closes not logged since the last line.
    suppressed: AtomicU64,
}

impl CloseLog {
    /// Logs (at most once per [`CLOSE_LOG_INTERVAL`]) that `peer` on `listener` was closed
    /// because of `reason`.
    pub fn closed(&self, peer: SocketAddr, listener: &str, reason: &dyn std::fmt::Display) {
        let now = Instant::now();
        {
            let mut last = self.last.lock();
            if last.is_some_and(|t| now.duration_since(t) < CLOSE_LOG_INTERVAL) {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            *last = Some(now);
        }
        let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
        tracing::warn!(%peer, listener, suppressed, "closing connection: {reason}");
    }
}
