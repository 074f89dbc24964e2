//! A gRPC client of Mandate over SPIFFE mTLS, used by the CLI, the tests and
//! the benchmarks.

use std::sync::Arc;

use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use spiffe::SpiffeId;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::identity::{Identity, client_config};
use crate::proto::v1::authorization_service_client::AuthorizationServiceClient;

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ClientError {
    /// Our identity material is unusable.
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    /// The address is not `host:port`.
    #[error("invalid server address `{0}`: {1}")]
    Address(String, String),
    /// Nobody answered, or the connection broke.
    #[error("cannot connect to `{0}`: {1}")]
    Connect(String, String),
    /// The TLS handshake failed: the server is not who we pinned, or our
    /// own SVID was refused. Asking again will not help.
    #[error("cannot connect to `{0}`: the TLS handshake failed: {1}")]
    Handshake(String, String),
}

/// Opens an HTTP/2 channel to `addr` (`host:port`), presenting our SVID and
/// accepting the server by its SVID (pinned to `server_id` when given).
pub async fn channel(
    addr: &str,
    identity: &Identity,
    server_id: Option<SpiffeId>,
) -> Result<Channel, ClientError> {
    channel_with_config(addr, client_config(identity, server_id)?).await
}

/// Like [`channel`], with a TLS configuration built by the caller.
pub async fn channel_with_config(
    addr: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<Channel, ClientError> {
    let connector = TlsConnector::from(config);
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| ClientError::Address(addr.to_owned(), e.to_string()))?;
    let connect = tower::service_fn(move |uri: Uri| {
        let connector = connector.clone();
        async move {
            let host = uri
                .host()
                .unwrap_or("localhost")
                .trim_matches(['[', ']'])
                .to_owned();
            let port = uri.port_u16().unwrap_or(7443);
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            // The server is verified by its SPIFFE ID, not this name; it only
            // feeds SNI (and is omitted for IP addresses).
            let name = ServerName::try_from(host)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let tls = connector.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    endpoint.connect_with_connector(connect).await.map_err(|e| {
        if failed_handshake(&e) {
            ClientError::Handshake(addr.to_owned(), error_chain(&e))
        } else {
            ClientError::Connect(addr.to_owned(), error_chain(&e))
        }
    })
}

/// Whether `error` comes from TLS refusing the peer (rustls reports it as
/// an I/O error of kind `InvalidData`), not from the network.
fn failed_handshake(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData)
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// An `AuthorizationService` client over [`channel`].
pub async fn connect(
    addr: &str,
    identity: &Identity,
    server_id: Option<SpiffeId>,
) -> Result<AuthorizationServiceClient<Channel>, ClientError> {
    Ok(AuthorizationServiceClient::new(
        channel(addr, identity, server_id).await?,
    ))
}

/// An error with its sources, for messages a human can act on.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Some errors repeat their source in their own message.
        if !message.contains(&cause_text) {
            message.push_str(": ");
            message.push_str(&cause_text);
        }
        source = cause.source();
    }
    message
}

/// Loads a client identity from PEM files: our SVID chain and key, and a CA
/// bundle trusted for `bundle_trust_domain` (our own when `None`).
pub fn identity_from_files(
    cert: &std::path::Path,
    key: &std::path::Path,
    ca: &std::path::Path,
    bundle_trust_domain: Option<spiffe::TrustDomain>,
) -> Result<Arc<Identity>, ClientError> {
    use crate::identity::{TrustBundles, load_certs, load_private_key, spiffe_id_of_leaf};
    let chain = load_certs(cert)?;
    let own = spiffe_id_of_leaf(
        chain
            .first()
            .ok_or(crate::identity::IdentityError::NoCertificate)?,
    )?;
    let trust_domain = bundle_trust_domain.unwrap_or_else(|| own.trust_domain().clone());
    let mut bundles = TrustBundles::default();
    bundles.add(trust_domain, &load_certs(ca)?)?;
    Ok(Arc::new(Identity::new(
        chain,
        load_private_key(key)?,
        bundles,
    )?))
}
