//! The UI's TLS listener: our SVID, the gRPC port's SPIFFE verification of
//! client certificates, HTTP/1.1. A client certificate is required unless
//! the dev login is on; then a connection without one is only ever a dev
//! login candidate (see [`super::human`]).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

use super::{UiError, UiSettings};
use crate::api::PeerIdentity;
use crate::api::listener::{Handshake, TlsListener, accept_tls};
use crate::identity::{ClientCertificate, Identity, IdentityWatch, listener_config};

/// A handshake not done in this time is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who is on the other end of a UI connection, from its handshake.
#[derive(Debug, Clone)]
pub struct UiPeer {
    /// The remote address.
    pub remote_addr: SocketAddr,
    /// The verified client SVID, checked again on every request (see
    /// [`PeerIdentity::recheck`]); `None` without a client certificate.
    pub svid: Option<PeerIdentity>,
}

/// Authenticated connections for `axum::serve`.
pub struct UiIncoming {
    local: SocketAddr,
    receiver: mpsc::Receiver<(TlsStream<TcpStream>, UiPeer)>,
}

impl axum::serve::Listener for UiIncoming {
    type Io = TlsStream<TcpStream>;
    type Addr = UiPeer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.receiver.recv().await {
            Some(accepted) => accepted,
            // The accept loop is gone (shutting down): accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(UiPeer {
            remote_addr: self.local,
            svid: None,
        })
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, UiIncoming>>
    for UiPeer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, UiIncoming>) -> Self {
        stream.remote_addr().clone()
    }
}

/// Starts accepting on `listener`; new handshakes use the newest identity.
pub fn accept(
    listener: TcpListener,
    identity: IdentityWatch,
    settings: &UiSettings,
) -> Result<(UiIncoming, tokio::task::JoinHandle<()>), UiError> {
    let local = listener.local_addr().map_err(|source| UiError::Bind {
        addr: settings.listen,
        source,
    })?;
    let client = if settings.dev_login {
        ClientCertificate::Optional
    } else {
        ClientCertificate::Required
    };
    let how = TlsListener {
        config_of: move |identity: &Identity| listener_config(identity, &[b"http/1.1"], client),
        admit: admit_ui,
        handshake_timeout: HANDSHAKE_TIMEOUT,
        metrics: None,
        backlog: 64,
    };
    let (receiver, task) = accept_tls(listener, identity, how)?;
    Ok((UiIncoming { local, receiver }, task))
}

/// A UI connection with the peer of its client certificate, if it
/// presented one; `None` when that certificate cannot be read.
fn admit_ui(handshake: Handshake) -> Option<(TlsStream<TcpStream>, UiPeer)> {
    let Handshake {
        tls,
        remote_addr,
        bundles,
    } = handshake;
    let svid = match tls.get_ref().1.peer_certificates() {
        None => None,
        Some(_) => Some(PeerIdentity::of_handshake(&tls, remote_addr, bundles)?),
    };
    Some((tls, UiPeer { remote_addr, svid }))
}
