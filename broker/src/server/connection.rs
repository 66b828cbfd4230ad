//! One client connection: read size-prefixed frames, answer each request in order. Requests
//! are handled one at a time, in order (so a producer's appends land in the order it sent
//! them), but an acks=all produce waiting for its in-sync replicas does not hold up the
//! requests behind it: they are served meanwhile and their answers queued behind its, so
//! responses still go out strictly in request order. Only framing errors, unknown API keys
//! and undecodable headers close the connection. The
//! stream is a plain TCP socket or a TLS session over one (`server::tls`): both are served the
//! same way. A peer that speaks the wrong protocol (garbage, or TLS on a PLAINTEXT listener) is
//! closed with one rate-limited log line ([`CloseLog`]).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use futures::stream::{FuturesOrdered, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::dispatch::{self, Outcome, PendingResponse};
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

/// The most answers a connection holds back before it stops reading: requests behind an acks=all
/// produce waiting for its ISR are served meanwhile (Kafka clients send at most five at a time
/// by default), their answers queued in request order.
const MAX_PENDING: usize = 32;

/// How long a connection closing for shutdown may spend sending the answers it holds back.
const SHUTDOWN_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// The most bytes of finished answers a connection holds back behind a pending one before it
/// stops reading (a fetch answer can be as large as the client asks).
const MAX_HELD_BYTES: usize = 16 << 20;

/// Writes one response frame (flushed: a TLS session buffers what it encrypts); false when
/// the connection is gone.
async fn send<S: AsyncWrite + Unpin>(broker: &Broker, stream: &mut S, frame: &[u8]) -> bool {
    broker.metrics.bytes_out.inc_by(frame.len() as u64);
    let written = match stream.write_all(frame).await {
        Ok(()) => stream.flush().await,
        Err(e) => Err(e),
    };
    if let Err(e) = &written {
        tracing::debug!(error = %e, "write failed");
    }
    written.is_ok()
}

/// Sends every pending answer, in order, before the connection closes; stops at shutdown.
async fn drain<S: AsyncWrite + Unpin>(
    broker: &Broker,
    stream: &mut S,
    pending: &mut FuturesOrdered<PendingResponse>,
    shutdown: &CancellationToken,
) {
    loop {
        let answer = tokio::select! {
            _ = shutdown.cancelled() => return,
            answer = pending.next() => answer,
        };
        let Some(Ok(frame)) = answer else {
            return;
        };
        if !send(broker, stream, &frame).await {
            return;
        }
    }
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
        // Answers still being made (acks=all produces waiting for their ISR), oldest first, with
        // the answers of the requests served behind them: sent strictly in request order.
        let mut pending: FuturesOrdered<PendingResponse> = FuturesOrdered::new();
        // A client over its quota: nothing more is read until then (answers still go out).
        let mut muted: Option<tokio::time::Instant> = None;
        // Bytes of finished answers queued behind a pending one.
        let mut held = 0usize;
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
            let reading = muted.is_none() && pending.len() < MAX_PENDING && held < MAX_HELD_BYTES;
            if reading {
                let max = session.lock().frame_limit(request_max);
                match frame::check(&buf, max) {
                    Ok(FrameCheck::Ready(size)) => {
                        let body = frame::take(&mut buf, size).freeze();
                        broker.metrics.bytes_in.inc_by(size as u64 + 4);
                        out.clear();
                        // The answers before this request go out as they finish, even while it
                        // waits (a long-polling fetch behind an acks=all produce).
                        let outcome = {
                            let handling = dispatch::handle(
                                &broker, body, peer, &listener, &session, &mut out,
                            );
                            tokio::pin!(handling);
                            loop {
                                tokio::select! {
                                    outcome = &mut handling => break outcome,
                                    Some(answer) = pending.next(), if !pending.is_empty() => {
                                        let frame = match answer {
                                            Ok(frame) => frame,
                                            Err(reason) => {
                                                tracing::info!(%reason, "closing connection");
                                                return;
                                            }
                                        };
                                        held = held.saturating_sub(frame.len());
                                        if !send(&broker, &mut stream, &frame).await {
                                            return;
                                        }
                                    }
                                }
                            }
                        };
                        let answer = match outcome {
                            Outcome::Respond if pending.is_empty() => {
                                if !send(&broker, &mut stream, &out).await {
                                    return;
                                }
                                None
                            }
                            Outcome::Respond => {
                                held += out.len();
                                Some(Box::pin(std::future::ready(Ok(out.split()))) as _)
                            }
                            Outcome::Pending(answer) => Some(answer),
                            Outcome::NoResponse => None,
                            Outcome::Close(reason) => {
                                tracing::info!(%reason, "closing connection");
                                drain(&broker, &mut stream, &mut pending, &shutdown).await;
                                return;
                            }
                        };
                        if let Some(answer) = answer {
                            pending.push_back(answer);
                        }
                        if session.lock().closing() {
                            drain(&broker, &mut stream, &mut pending, &shutdown).await;
                            return;
                        }
                        muted = session.lock().take_mute().map(Into::into);
                        if buf.capacity() > (4 << 20) && buf.is_empty() {
                            // Do not keep a large buffer alive for an idle connection.
                            buf = BytesMut::new();
                        }
                        if out.capacity() > (4 << 20) {
                            out = BytesMut::new();
                        }
                        continue;
                    }
                    Ok(FrameCheck::Incomplete(want)) => {
                        if let Some(want) = want {
                            // Grow toward the declared size, never more than it (it is capped).
                            buf.reserve((want + 4).saturating_sub(buf.len()).min(1 << 20));
                        } else {
                            buf.reserve(4096);
                        }
                    }
                    Err(e) => {
                        // The requests before it were served: their answers still go out.
                        drain(&broker, &mut stream, &mut pending, &shutdown).await;
                        refuse_frame(&broker, peer, &listener, &e);
                        return;
                    }
                }
            }
            // No whole request to serve: wait for more bytes, the oldest pending answer, or the
            // end of a mute.
            tokio::select! {
                _ = shutdown.cancelled() => {
                    // Answers already being made still go out, for a little while.
                    let live = CancellationToken::new();
                    let draining = drain(&broker, &mut stream, &mut pending, &live);
                    let _ = tokio::time::timeout(SHUTDOWN_DRAIN, draining).await;
                    return;
                }
                Some(answer) = pending.next(), if !pending.is_empty() => {
                    match answer {
                        Ok(frame) => {
                            held = held.saturating_sub(frame.len());
                            if !send(&broker, &mut stream, &frame).await {
                                return;
                            }
                        }
                        Err(reason) => {
                            tracing::info!(%reason, "closing connection");
                            return;
                        }
                    }
                }
                _ = tokio::time::sleep_until(muted.unwrap_or_else(tokio::time::Instant::now)),
                    if muted.is_some() => muted = None,
                read = stream.read_buf(&mut buf), if reading => match read {
                    Ok(0) => {
                        // The client sent all it will: its pending answers still go out.
                        drain(&broker, &mut stream, &mut pending, &shutdown).await;
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "read failed");
                        return;
                    }
                },
            }
        }
    }
    .instrument(span)
    .await;
    // As in Kafka, the share sessions opened on this connection end with it: what their
    // members hold goes back to be delivered again at once, not after the lock runs out.
    groups.share_connection_closed(peer);
}
