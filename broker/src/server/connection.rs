//! One client connection: read size-prefixed frames, answer each request in order. Like
//! Kafka, a connection handles one request at a time, so responses go out in request order.
//! Only framing errors, unknown API keys and undecodable headers close the connection. The
//! stream is a plain TCP socket or a TLS session over one (`server::tls`): both are served the
//! same way. A peer that speaks the wrong protocol (garbage, or TLS on a PLAINTEXT listener) is
//! closed with one rate-limited log line ([`CloseLog`]).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::dispatch::{self, Outcome};
use super::session::Session;
use super::{Broker, ListenerInfo};
use crate::protocol::frame::{self, FrameCheck};

pub use crate::close_log::CloseLog;

/// Whether a connection's first bytes are a TLS handshake record (content type 22, version
/// 3.x): a TLS client on a PLAINTEXT listener. As a size prefix they read as 350+ MB.
fn looks_like_tls(buf: &[u8]) -> bool {
    buf.len() >= 3 && buf[0] == 0x16 && buf[1] == 0x03 && buf[2] <= 0x04
}

/// Logs (rate-limited) and counts a connection closed for what it sent instead of a frame.
fn refuse_frame(broker: &Broker, peer: SocketAddr, listener: &str, reason: &dyn std::fmt::Display) {
    broker.close_log.closed(peer, listener, reason);
    broker
        .metrics
        .request_errors
        .with_label_values(&["frame"])
        .inc();
}

/// Serves one connection, accepted on the listener called `listener`, until the peer closes
/// it, a fatal error, or shutdown. `stream` is a TCP socket or a TLS session.
pub async fn serve<S>(
    broker: Arc<Broker>,
    mut stream: S,
    peer: SocketAddr,
    info: ListenerInfo,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let listener = info.name;
    let span = tracing::debug_span!("connection", %peer, listener = &*listener);
    // Who the requests are authorized as: ANONYMOUS until SASL authenticates the client. A
    // plain mutex: locked only between awaits.
    let session = parking_lot::Mutex::new(Session::new(info.sasl, info.principal));
    let groups = Arc::clone(&broker.groups);
    async move {
        let request_max = broker.cluster.config.socket_request_max_bytes;
        // Buffers start empty: an idle connection holds only the 4 KiB reserved for its next read.
        let mut buf = BytesMut::new();
        let mut out = BytesMut::new();
        let mut first = true;
        loop {
            if first && buf.len() >= 3 {
                first = false;
                if looks_like_tls(&buf) {
                    let reason = "a TLS handshake on a PLAINTEXT listener";
                    refuse_frame(&broker, peer, &listener, &reason);
                    return;
                }
            }
            let max = session.lock().frame_limit(request_max);
            let size = match frame::check(&buf, max) {
                Ok(FrameCheck::Ready(size)) => size,
                Ok(FrameCheck::Incomplete(want)) => {
                    if let Some(want) = want {
                        // Grow toward the declared size, never more than it (it is capped).
                        buf.reserve((want + 4).saturating_sub(buf.len()).min(1 << 20));
                    } else {
                        buf.reserve(4096);
                    }
                    let read = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        r = stream.read_buf(&mut buf) => r,
                    };
                    match read {
                        Ok(0) => return,
                        Ok(_) => continue,
                        Err(e) => {
                            tracing::debug!(error = %e, "read failed");
                            return;
                        }
                    }
                }
                Err(e) => {
                    refuse_frame(&broker, peer, &listener, &e);
                    return;
                }
            };
            let body = frame::take(&mut buf, size).freeze();
            broker.metrics.bytes_in.inc_by(size as u64 + 4);
            out.clear();
            match dispatch::handle(&broker, body, peer, &listener, &session, &mut out).await {
                Outcome::Respond => {
                    broker.metrics.bytes_out.inc_by(out.len() as u64);
                    // A TLS session buffers what it encrypts: flush it out with every response.
                    let written = match stream.write_all(&out).await {
                        Ok(()) => stream.flush().await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = written {
                        tracing::debug!(error = %e, "write failed");
                        return;
                    }
                }
                Outcome::NoResponse => {}
                Outcome::Close(reason) => {
                    tracing::info!(%reason, "closing connection");
                    return;
                }
            }
            if session.lock().closing() {
                return;
            }
            // A client over its quota: read nothing more until its throttle time is over.
            let muted = session.lock().take_mute();
            if let Some(until) = muted {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep_until(until.into()) => {}
                }
            }
            if buf.capacity() > (4 << 20) && buf.is_empty() {
                // Do not keep a large buffer alive for an idle connection.
                buf = BytesMut::new();
            }
            if out.capacity() > (4 << 20) {
                out = BytesMut::new();
            }
        }
    }
    .instrument(span)
    .await;
    // As in Kafka, the share sessions opened on this connection end with it: what their
    // members hold goes back to be delivered again at once, not after the lock runs out.
    groups.share_connection_closed(peer);
}
