//! Accepts TCP connections and completes SPIFFE mTLS handshakes off the
//! accept loop, handing only authenticated streams on: to the gRPC server
//! here, to the HTTPS doors through [`super::https`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::{MtlsStream, PeerIdentity};
use crate::identity::{Identity, IdentityError, IdentityWatch, TrustBundles};

/// Authenticated connections, ready for `serve_with_incoming`.
pub type Incoming = tokio_stream::wrappers::ReceiverStream<Result<MtlsStream, std::io::Error>>;

/// A completed handshake, for a listener to admit or drop.
pub struct Handshake {
    /// The TLS stream; its client certificate, if any, passed the verifier.
    pub tls: TlsStream<TcpStream>,
    /// The remote address.
    pub remote_addr: SocketAddr,
    /// The bundles the client's chain was verified against.
    pub bundles: Arc<TrustBundles>,
}

/// How one of our listeners builds its TLS configuration from an identity
/// snapshot, and what it makes of a handshake.
pub struct TlsListener<C, A> {
    /// The TLS configuration for a snapshot.
    pub config_of: C,
    /// Makes a handshake into what the server takes; `None` drops it.
    pub admit: A,
    /// A handshake not done in this time is dropped.
    pub handshake_timeout: Duration,
    /// Counts failed handshakes by reason, when given.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    /// How many admitted connections may wait for the server.
    pub backlog: usize,
}

/// Starts accepting on `listener`. New handshakes use the newest identity
/// snapshot; a snapshot that fails to build keeps the previous one.
pub fn accept_tls<T, C, A>(
    listener: TcpListener,
    mut identity: IdentityWatch,
    how: TlsListener<C, A>,
) -> Result<(mpsc::Receiver<T>, tokio::task::JoinHandle<()>), IdentityError>
where
    T: Send + 'static,
    C: Fn(&Identity) -> Result<Arc<ServerConfig>, IdentityError> + Send + 'static,
    A: Fn(Handshake) -> Option<T> + Clone + Send + 'static,
{
    let TlsListener {
        config_of,
        admit,
        handshake_timeout,
        metrics,
        backlog,
    } = how;
    // The bundles each acceptor's verifier checks client chains against.
    let (mut acceptor, mut bundles) = {
        let current = identity.borrow_and_update();
        (
            TlsAcceptor::from(config_of(&current)?),
            current.bundles.clone(),
        )
    };
    let (sender, receiver) = mpsc::channel(backlog);
    let task = tokio::spawn(async move {
        loop {
            let (tcp, remote_addr) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Typically out of file descriptors: back off, keep serving.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if identity.has_changed().unwrap_or(false) {
                let current = identity.borrow_and_update().clone();
                match config_of(&current) {
                    Ok(config) => {
                        acceptor = TlsAcceptor::from(config);
                        bundles = current.bundles.clone();
                    }
                    Err(error) => {
                        tracing::error!(%error, "new identity refused; keeping the previous one")
                    }
                }
            }
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let bundles = bundles.clone();
            let sender = sender.clone();
            let metrics = metrics.clone();
            let admit = admit.clone();
            tokio::spawn(async move {
                let failed = |reason: &'static str| {
                    if let Some(metrics) = &metrics {
                        metrics.handshake_failed(reason);
                    }
                };
                let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(error)) => {
                        tracing::info!(%remote_addr, %error, "TLS handshake failed");
                        failed(crate::metrics::handshake_reason(&error));
                        return;
                    }
                    Err(_) => {
                        tracing::info!(%remote_addr, "TLS handshake timed out");
                        failed("timeout");
                        return;
                    }
                };
                let handshake = Handshake {
                    tls,
                    remote_addr,
                    bundles,
                };
                match admit(handshake) {
                    Some(admitted) => {
                        let _ = sender.send(admitted).await;
                    }
                    None => {
                        tracing::warn!(%remote_addr, "handshake completed without a readable client SVID");
                        failed("no_svid");
                    }
                }
            });
        }
    });
    Ok((receiver, task))
}

/// The gRPC port: a client SVID is required, and every stream carries its
/// verified peer.
pub fn accept(
    listener: TcpListener,
    identity: IdentityWatch,
    handshake_timeout: Duration,
    metrics: Option<Arc<crate::metrics::Metrics>>,
) -> Result<(Incoming, tokio::task::JoinHandle<()>), IdentityError> {
    let how = TlsListener {
        config_of: Identity::server_config,
        admit: admit_grpc,
        handshake_timeout,
        metrics,
        backlog: 128,
    };
    let (receiver, task) = accept_tls(listener, identity, how)?;
    Ok((tokio_stream::wrappers::ReceiverStream::new(receiver), task))
}

/// A gRPC connection with its verified peer; `None` without a client SVID.
fn admit_grpc(handshake: Handshake) -> Option<Result<MtlsStream, std::io::Error>> {
    let peer =
        PeerIdentity::of_handshake(&handshake.tls, handshake.remote_addr, handshake.bundles)?;
    Some(Ok(MtlsStream::new(handshake.tls, peer)))
}
