//! Workload identity: who a caller is, proven by its X.509-SVID over mTLS.
//!
//! Every source of identity material (PEM files, a local dev trust domain,
//! later the SPIFFE Workload API) produces the same [`Identity`] snapshot and
//! publishes it through a [`tokio::sync::watch`] channel, so the TLS layer
//! never knows which source it is reading from.

mod bundles;
pub mod dev;
mod error;
mod files;
mod forwarded;
mod source;
mod svid;
mod tls;
mod verifier;

pub use bundles::{TrustBundles, Usage};
pub use error::IdentityError;
pub use files::{FilesSource, load_certs, load_private_key};
pub use forwarded::{ForwardedSubjects, VerifiedSubject};
pub use source::{Identity, IdentitySource, IdentityWatch};
pub use spiffe::{SpiffeId, TrustDomain};
pub use svid::spiffe_id_of_leaf;
pub use tls::{client_config, server_config};
pub use verifier::{SpiffeClientVerifier, SpiffeServerVerifier};
