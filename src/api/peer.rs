//! The verified identity of the peer on a connection.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use rustls_pki_types::{CertificateDer, UnixTime};
use spiffe::SpiffeId;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;

use crate::identity::{TrustBundles, Usage, spiffe_id_of_leaf, validity_of};

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

impl PeerIdentity {
    /// The peer of a completed handshake whose client chain the verifier
    /// accepted against `bundles`; `None` when it presented no readable SVID.
    pub fn of_handshake(
        tls: &TlsStream<TcpStream>,
        remote_addr: SocketAddr,
        bundles: Arc<TrustBundles>,
    ) -> Option<Self> {
        let certificates: Vec<CertificateDer<'static>> = tls
            .get_ref()
            .1
            .peer_certificates()?
            .iter()
            .map(|c| c.clone().into_owned())
            .collect();
        // INVARIANT: the verifier accepted this chain during the handshake;
        // the SPIFFE ID is read from that same leaf.
        let leaf = certificates.first()?;
        let spiffe_id = spiffe_id_of_leaf(leaf).ok()?;
        let (_, not_after) = validity_of(leaf).ok()?;
        Some(Self {
            spiffe_id,
            certificates: Arc::new(certificates),
            remote_addr,
            not_after,
            verified_against: Arc::new(ArcSwap::new(bundles)),
        })
    }

    /// Whether this peer is still to be believed at `now`, with `bundles`
    /// the newest set: its SVID has not expired, its trust domain still has
    /// a bundle, and its chain still verifies against it. The chain is
    /// verified again only when the bundle set has changed since the last
    /// time. The message says which check failed.
    pub fn recheck(&self, bundles: &Arc<TrustBundles>, now: i64) -> Result<(), String> {
        if now >= self.not_after {
            return Err(format!(
                "the SVID of `{}` expired at `{}` (Unix seconds)",
                self.spiffe_id, self.not_after
            ));
        }
        if !bundles.trusts(self.spiffe_id.trust_domain()) {
            return Err(format!(
                "trust domain `{}` is no longer trusted",
                self.spiffe_id.trust_domain_name()
            ));
        }
        if Arc::ptr_eq(&self.verified_against.load(), bundles) {
            return Ok(());
        }
        let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            u64::try_from(now).unwrap_or_default(),
        ));
        bundles
            .verify(&self.certificates, at, Usage::Client)
            .map_err(|e| format!("the SVID of `{}` no longer verifies: {e}", self.spiffe_id))?;
        self.verified_against.store(bundles.clone());
        Ok(())
    }
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
