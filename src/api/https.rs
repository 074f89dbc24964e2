//! The HTTPS listener of the doors served by axum (AuthZEN, the UI): our
//! SVID, the gRPC port's SPIFFE verification of client certificates
//! (required, or optional where a door has another way in; one presented
//! is verified in full either way), handshakes off the accept loop (see
//! [`accept_tls`]), and for each connection the peer handlers read.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

use super::PeerIdentity;
use super::listener::{Handshake, TlsListener, accept_tls};
use crate::identity::{ClientCertificate, Identity, IdentityError, IdentityWatch, listener_config};

/// Who is on the other end of a connection, from its handshake.
#[derive(Debug, Clone)]
pub struct HttpsPeer {
    /// The remote address.
    pub remote_addr: SocketAddr,
    /// The verified client SVID, checked again on every request (see
    /// [`PeerIdentity::recheck`]); `None` without a client certificate.
    pub svid: Option<PeerIdentity>,
}

/// How a door's listener is set up.
#[derive(Debug, Clone)]
pub struct Https {
    /// The protocols offered by ALPN, preferred first.
    pub alpn: &'static [&'static [u8]],
    /// Whether a client certificate is required.
    pub client: ClientCertificate,
    /// A handshake not done in this time is dropped.
    pub handshake_timeout: Duration,
    /// Counts failed handshakes, when given.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    /// How many admitted connections may wait for the server.
    pub backlog: usize,
}

/// Authenticated connections for `axum::serve`.
pub struct HttpsIncoming {
    local: SocketAddr,
    receiver: mpsc::Receiver<(TlsStream<TcpStream>, HttpsPeer)>,
}

impl axum::serve::Listener for HttpsIncoming {
    type Io = TlsStream<TcpStream>;
    type Addr = HttpsPeer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.receiver.recv().await {
            Some(accepted) => accepted,
            // The accept loop is gone (shutting down): accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(HttpsPeer {
            remote_addr: self.local,
            svid: None,
        })
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, HttpsIncoming>>
    for HttpsPeer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, HttpsIncoming>) -> Self {
        stream.remote_addr().clone()
    }
}

/// Starts accepting on `listener`, bound at `local`; new handshakes use
/// the newest identity.
pub fn accept_https(
    listener: TcpListener,
    local: SocketAddr,
    identity: IdentityWatch,
    how: Https,
) -> Result<(HttpsIncoming, tokio::task::JoinHandle<()>), IdentityError> {
    let Https {
        alpn,
        client,
        handshake_timeout,
        metrics,
        backlog,
    } = how;
    let how = TlsListener {
        config_of: move |identity: &Identity| listener_config(identity, alpn, client),
        admit,
        handshake_timeout,
        metrics,
        backlog,
    };
    let (receiver, task) = accept_tls(listener, identity, how)?;
    Ok((HttpsIncoming { local, receiver }, task))
}

/// A connection with the peer of its client certificate, if it presented
/// one; `None` when that certificate cannot be read.
fn admit(handshake: Handshake) -> Option<(TlsStream<TcpStream>, HttpsPeer)> {
    let Handshake {
        tls,
        remote_addr,
        bundles,
    } = handshake;
    let svid = match tls.get_ref().1.peer_certificates() {
        None => None,
        Some(_) => Some(PeerIdentity::of_handshake(&tls, remote_addr, bundles)?),
    };
    Some((tls, HttpsPeer { remote_addr, svid }))
}
