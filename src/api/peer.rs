//! The verified identity of the peer on a connection.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use rustls_pki_types::CertificateDer;
use spiffe::SpiffeId;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;

use crate::identity::TrustBundles;

/// Who is on the other end of an mTLS connection, established once at the
/// handshake and attached to every request on it.
///
/// A connection outlives the checks of its handshake (an HTTP/2 connection
/// from Envoy stays open for hours), so every call checks the peer again:
/// its SVID's expiry, and its chain against the bundles in use now.
#[derive(Debug, Clone)]
pub struct PeerIdentity {
    /// SPIFFE ID from the verified client SVID.
    pub spiffe_id: SpiffeId,
    /// The client's certificate chain, leaf first.
    pub certificates: Arc<Vec<CertificateDer<'static>>>,
    /// Remote socket address.
    pub remote_addr: SocketAddr,
    /// End of the client leaf's validity, Unix seconds: calls from then on
    /// are refused.
    pub not_after: i64,
    /// The bundle set the chain was last verified against; shared by every
    /// request of the connection, so a new set is verified against once.
    pub verified_against: Arc<ArcSwap<TrustBundles>>,
}

/// A server-side TLS stream whose peer has been authenticated.
pub struct MtlsStream {
    inner: TlsStream<TcpStream>,
    peer: PeerIdentity,
}

impl MtlsStream {
    /// Wraps an established stream. The caller must have verified `peer`
    /// from this stream's handshake.
    pub fn new(inner: TlsStream<TcpStream>, peer: PeerIdentity) -> Self {
        Self { inner, peer }
    }
}

impl Connected for MtlsStream {
    type ConnectInfo = PeerIdentity;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.peer.clone()
    }
}

impl AsyncRead for MtlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for MtlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
