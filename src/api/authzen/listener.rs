//! The AuthZEN listener's TLS: our SVID, the gRPC port's SPIFFE
//! verification of client certificates (required, or optional when API
//! keys are configured; one presented is verified in full either way),
//! HTTP/2 and HTTP/1.1 by ALPN.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

use super::{AuthzenError, AuthzenParts};
use crate::api::PeerIdentity;
use crate::api::listener::{Handshake, TlsListener, accept_tls};
use crate::identity::{ClientCertificate, Identity, listener_config};

/// Who is on the other end of a connection, from its handshake.
#[derive(Debug, Clone)]
pub struct AuthzenPeer {
    /// The remote address.
    pub remote_addr: SocketAddr,
    /// The verified client SVID, checked again on every request; `None`
    /// without a client certificate.
    pub svid: Option<PeerIdentity>,
}

/// Authenticated connections for `axum::serve`.
pub struct Incoming {
    local: SocketAddr,
    receiver: mpsc::Receiver<(TlsStream<TcpStream>, AuthzenPeer)>,
}

impl axum::serve::Listener for Incoming {
    type Io = TlsStream<TcpStream>;
    type Addr = AuthzenPeer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.receiver.recv().await {
            Some(accepted) => accepted,
            // The accept loop is gone (shutting down): accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(AuthzenPeer {
            remote_addr: self.local,
            svid: None,
        })
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Incoming>>
    for AuthzenPeer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, Incoming>) -> Self {
        stream.remote_addr().clone()
    }
}

/// Starts accepting on `listener`; new handshakes use the newest identity.
pub fn accept(
    listener: TcpListener,
    parts: &AuthzenParts,
    client: ClientCertificate,
) -> Result<(Incoming, tokio::task::JoinHandle<()>), AuthzenError> {
    let local = listener.local_addr().map_err(|source| AuthzenError::Bind {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    let how = TlsListener {
        config_of: move |identity: &Identity| {
            listener_config(identity, &[b"h2", b"http/1.1"], client)
        },
        admit,
        handshake_timeout: parts.handshake_timeout,
        metrics: parts.metrics.clone(),
        backlog: 128,
    };
    let (receiver, task) = accept_tls(listener, parts.identity.clone(), how)?;
    Ok((Incoming { local, receiver }, task))
}

/// A connection with the peer of its client certificate, if it presented
/// one; `None` when that certificate cannot be read.
fn admit(handshake: Handshake) -> Option<(TlsStream<TcpStream>, AuthzenPeer)> {
    let Handshake {
        tls,
        remote_addr,
        bundles,
    } = handshake;
    let svid = match tls.get_ref().1.peer_certificates() {
        None => None,
        Some(_) => Some(PeerIdentity::of_handshake(&tls, remote_addr, bundles)?),
    };
    Some((tls, AuthzenPeer { remote_addr, svid }))
}
