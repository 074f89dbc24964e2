//! The UI's TLS listener: our SVID, the gRPC port's SPIFFE verification of
//! client certificates, HTTP/1.1. A client certificate is required unless
//! the dev login is on; then a connection without one is only ever a dev
//! login candidate (see [`super::human`]).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::DistinguishedName;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, ServerConfig, SignatureScheme};
use spiffe::SpiffeId;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::{UiError, UiSettings};
use crate::identity::{
    Identity, IdentityError, IdentityWatch, SpiffeClientVerifier, spiffe_id_of_leaf, validity_of,
};

/// A handshake not done in this time is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who is on the other end of a UI connection, from its handshake.
#[derive(Debug, Clone)]
pub struct UiPeer {
    /// The remote address.
    pub remote_addr: SocketAddr,
    /// The verified client SVID's SPIFFE ID and the end of its validity
    /// (Unix seconds); `None` without a client certificate.
    pub svid: Option<(SpiffeId, i64)>,
}

/// A TLS stream and its peer.
pub struct UiStream {
    inner: TlsStream<TcpStream>,
}

/// Authenticated connections for `axum::serve`.
pub struct UiIncoming {
    local: SocketAddr,
    receiver: mpsc::Receiver<(UiStream, UiPeer)>,
}

impl axum::serve::Listener for UiIncoming {
    type Io = UiStream;
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

/// The TLS configuration of the UI for `identity`.
fn tls_config(identity: &Identity, dev_login: bool) -> Result<Arc<ServerConfig>, IdentityError> {
    let spiffe: Arc<dyn ClientCertVerifier> =
        Arc::new(SpiffeClientVerifier::new(identity.bundles.clone()));
    let verifier = if dev_login {
        Arc::new(Optional(spiffe))
    } else {
        spiffe
    };
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| IdentityError::Tls(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(identity.chain.clone(), identity.key.clone_key())
            .map_err(|e| IdentityError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // INVARIANT: as on the gRPC port, every connection runs the full
    // client-certificate check; no session resumption.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// Starts accepting on `listener`; new handshakes use the newest identity.
pub fn accept(
    listener: TcpListener,
    mut identity: IdentityWatch,
    settings: &UiSettings,
) -> Result<(UiIncoming, tokio::task::JoinHandle<()>), UiError> {
    let dev_login = settings.dev_login;
    let local = listener.local_addr().map_err(|source| UiError::Bind {
        addr: settings.listen,
        source,
    })?;
    let mut acceptor = TlsAcceptor::from(tls_config(&identity.borrow_and_update(), dev_login)?);
    let (sender, receiver) = mpsc::channel(64);
    let task = tokio::spawn(async move {
        loop {
            let (tcp, remote_addr) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "ui accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if identity.has_changed().unwrap_or(false) {
                match tls_config(&identity.borrow_and_update(), dev_login) {
                    Ok(config) => acceptor = TlsAcceptor::from(config),
                    Err(error) => {
                        tracing::error!(%error, "new identity refused by the ui; keeping the previous one")
                    }
                }
            }
            let acceptor = acceptor.clone();
            let sender = sender.clone();
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(error)) => {
                        tracing::info!(%remote_addr, %error, "ui TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
                // INVARIANT: the verifier accepted this leaf during the
                // handshake; the SPIFFE ID is read from that same leaf.
                let svid = match tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
                    None => None,
                    Some(leaf) => match (spiffe_id_of_leaf(leaf), validity_of(leaf)) {
                        (Ok(id), Ok((_, not_after))) => Some((id, not_after)),
                        _ => return,
                    },
                };
                let peer = UiPeer { remote_addr, svid };
                let _ = sender.send((UiStream { inner: tls }, peer)).await;
            });
        }
    });
    Ok((UiIncoming { local, receiver }, task))
}

/// The SPIFFE verifier with the client certificate made optional: a
/// certificate that is presented is still verified in full.
#[derive(Debug)]
struct Optional(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for Optional {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0.verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

impl AsyncRead for UiStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for UiStream {
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
}
