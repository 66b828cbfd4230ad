//! One client connection: read size-prefixed frames, answer each request in order. Like
//! Kafka, a connection handles one request at a time, so responses go out in request order.
//! Only framing errors, unknown API keys and undecodable headers close the connection.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::dispatch::{self, Outcome};
use super::Broker;
use crate::protocol::frame::{self, FrameCheck};

/// Serves one connection, accepted on the listener called `listener`, until the peer closes
/// it, a fatal error, or shutdown.
pub async fn serve(
    broker: Arc<Broker>,
    mut stream: TcpStream,
    peer: SocketAddr,
    listener: Arc<str>,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let span = tracing::debug_span!("connection", %peer, listener = &*listener);
    // The connection's principal, which every request is authorized as: ANONYMOUS until TLS
    // or SASL authenticates the client.
    let principal: &str = crate::authz::ANONYMOUS;
    async move {
        let max = broker.cluster.config.socket_request_max_bytes;
        // Buffers start empty: an idle connection holds only the 4 KiB reserved for its next read.
        let mut buf = BytesMut::new();
        let mut out = BytesMut::new();
        loop {
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
                    tracing::info!(error = %e, "closing connection");
                    broker
                        .metrics
                        .request_errors
                        .with_label_values(&["frame"])
                        .inc();
                    return;
                }
            };
            let body = frame::take(&mut buf, size).freeze();
            broker.metrics.bytes_in.inc_by(size as u64 + 4);
            out.clear();
            match dispatch::handle(&broker, body, peer, &listener, principal, &mut out).await {
                Outcome::Respond => {
                    broker.metrics.bytes_out.inc_by(out.len() as u64);
                    if let Err(e) = stream.write_all(&out).await {
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
    .await
}
