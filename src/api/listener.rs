//! Accepts TCP connections and completes SPIFFE mTLS handshakes off the
//! accept loop, handing only authenticated streams to the gRPC server.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use super::{MtlsStream, PeerIdentity};
use crate::identity::{IdentityWatch, TrustBundles, spiffe_id_of_leaf, validity_of};

/// Authenticated connections, ready for `serve_with_incoming`.
pub type Incoming = tokio_stream::wrappers::ReceiverStream<Result<MtlsStream, std::io::Error>>;

/// Starts accepting on `listener`. New handshakes use the newest identity
/// snapshot; a snapshot that fails to build keeps the previous one.
pub fn accept(
    listener: TcpListener,
    mut identity: IdentityWatch,
    handshake_timeout: Duration,
    metrics: Option<Arc<crate::metrics::Metrics>>,
) -> Result<(Incoming, tokio::task::JoinHandle<()>), crate::identity::IdentityError> {
    // The bundles each acceptor's verifier checks client chains against.
    let (mut acceptor, mut bundles) = {
        let current = identity.borrow_and_update();
        (
            TlsAcceptor::from(current.server_config()?),
            current.bundles.clone(),
        )
    };
    let (sender, receiver) = mpsc::channel(128);
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
                match current.server_config() {
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
            let bundles: Arc<TrustBundles> = bundles.clone();
            let sender = sender.clone();
            let metrics = metrics.clone();
            let failed = move |reason: &'static str| {
                if let Some(metrics) = &metrics {
                    metrics.handshake_failed(reason);
                }
            };
            tokio::spawn(async move {
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
                let certificates: Vec<_> = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .map(|certs| certs.iter().map(|c| c.clone().into_owned()).collect())
                    .unwrap_or_default();
                // INVARIANT: the verifier accepted this chain during the
                // handshake; the SPIFFE ID is read from that same leaf.
                let leaf = certificates.first().map(|leaf| {
                    Ok::<_, crate::identity::IdentityError>((
                        spiffe_id_of_leaf(leaf)?,
                        validity_of(leaf)?,
                    ))
                });
                let (spiffe_id, (_, not_after)) = match leaf {
                    Some(Ok(read)) => read,
                    _ => {
                        tracing::warn!(%remote_addr, "handshake completed without a client SVID");
                        failed("no_svid");
                        return;
                    }
                };
                let peer = PeerIdentity {
                    spiffe_id,
                    certificates: Arc::new(certificates),
                    remote_addr,
                    not_after,
                    verified_against: Arc::new(ArcSwap::new(bundles)),
                };
                let _ = sender.send(Ok(MtlsStream::new(tls, peer))).await;
            });
        }
    });
    Ok((tokio_stream::wrappers::ReceiverStream::new(receiver), task))
}
