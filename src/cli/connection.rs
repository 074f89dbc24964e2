//! The flags every client command shares: where the server is and which
//! SVID we present.

use std::path::PathBuf;

use clap::Args;
use spiffe::{SpiffeId, TrustDomain};
use tonic::transport::Channel;

use super::failure::Failure;
use crate::client::{ClientError, channel, identity_from_files};
use crate::config::LISTEN;

#[derive(Debug, Args)]
pub(super) struct ConnectArgs {
    /// Server address, `host:port`.
    #[arg(long, value_name = "ADDR", default_value = LISTEN)]
    server: String,
    /// Our X.509-SVID chain (PEM).
    #[arg(long, value_name = "FILE")]
    cert: PathBuf,
    /// Our SVID's private key (PEM).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// CA bundle that verifies the server's SVID (PEM); `TRUST_DOMAIN=FILE`
    /// when the server is in another trust domain than ours.
    #[arg(long, value_name = "FILE")]
    ca: String,
    /// The server's SPIFFE ID [default: `spiffe://TD/mandate`, TD being
    /// the trust domain of `--ca`].
    #[arg(long, value_name = "SPIFFE_ID")]
    server_id: Option<String>,
}

impl ConnectArgs {
    /// Opens the mTLS channel: bad arguments or identity files are a usage
    /// error, a server that does not answer a failure.
    pub(super) async fn channel(&self) -> Result<Channel, Failure> {
        self.open().await.map_err(|e| match e {
            ChannelError::Usage(message) => Failure::Usage(message),
            ChannelError::Client(e @ ClientError::Connect(..)) => {
                Failure::Unavailable(e.to_string())
            }
            ChannelError::Client(e) => Failure::Usage(e.to_string()),
        })
    }

    async fn open(&self) -> Result<Channel, ChannelError> {
        let server_id = self
            .server_id
            .as_deref()
            .map(SpiffeId::new)
            .transpose()
            .map_err(|e| ChannelError::Usage(format!("`--server-id`: {e}")))?;
        let (ca_domain, ca_file) = match self.ca.split_once('=') {
            Some((td, file)) => (
                Some(
                    TrustDomain::new(td)
                        .map_err(|e| ChannelError::Usage(format!("`--ca {}`: {e}", self.ca)))?,
                ),
                PathBuf::from(file),
            ),
            None => (None, PathBuf::from(&self.ca)),
        };
        let identity = identity_from_files(&self.cert, &self.key, &ca_file, ca_domain.clone())
            .map_err(|e| ChannelError::Usage(e.to_string()))?;
        // Pin the server by default: no other SVID of the trust domain (an
        // agent, say) may answer as Mandate.
        let server_id = match server_id {
            Some(id) => id,
            None => {
                let td = ca_domain.unwrap_or_else(|| identity.spiffe_id.trust_domain().clone());
                SpiffeId::new(format!("{}/mandate", td.id_string()))
                    .map_err(|e| ChannelError::Usage(format!("default `--server-id`: {e}")))?
            }
        };
        channel(&self.server, &identity, Some(server_id))
            .await
            .map_err(ChannelError::Client)
    }
}

/// Why a channel did not open.
enum ChannelError {
    Usage(String),
    Client(ClientError),
}
