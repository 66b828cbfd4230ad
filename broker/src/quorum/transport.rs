//! How the quorum's connections are opened and accepted. [`Plaintext`] is plain TCP; a node
//! whose controller listener uses TLS or SASL gives the quorum `crate::peer`'s transport
//! instead. The RPCs run over whatever stream the transport hands them, and the server side
//! learns who the peer authenticated as.

use std::net::SocketAddr;

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A byte stream a quorum connection runs over.
pub trait PeerStream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> PeerStream for T {}

/// An open quorum connection.
pub type BoxStream = Box<dyn PeerStream>;

/// The principal of a peer that did not authenticate (PLAINTEXT, or TLS without a client
/// certificate), as Kafka names it.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// An accepted connection: its stream and the principal the peer authenticated as.
pub struct Accepted {
    /// The stream, past any TLS handshake and SASL exchange.
    pub stream: BoxStream,
    /// `User:<name>`, or [`ANONYMOUS`].
    pub principal: String,
}

/// Opens and accepts the quorum's connections.
pub trait Transport: Send + Sync + std::fmt::Debug {
    /// Connects to the member at `addr` (`host:port`), secured as the transport says.
    fn connect<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, std::io::Result<BoxStream>>;

    /// Secures a connection accepted from `peer`; an error (a failed handshake or login) says
    /// why, and the connection is dropped.
    fn accept(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> BoxFuture<'_, Result<Accepted, String>>;
}

/// Plain TCP, every peer anonymous.
#[derive(Debug, Default, Clone, Copy)]
pub struct Plaintext;

impl Transport for Plaintext {
    fn connect<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, std::io::Result<BoxStream>> {
        Box::pin(async move {
            let s = TcpStream::connect(addr).await?;
            let _ = s.set_nodelay(true);
            Ok(Box::new(s) as BoxStream)
        })
    }

    fn accept(&self, stream: TcpStream, _: SocketAddr) -> BoxFuture<'_, Result<Accepted, String>> {
        Box::pin(async move {
            Ok(Accepted {
                stream: Box::new(stream),
                principal: ANONYMOUS.to_string(),
            })
        })
    }
}
