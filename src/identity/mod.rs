//! Workload identity: who a caller is, proven by its X.509-SVID over mTLS.
//!
//! Every source of identity material (PEM files, a local dev trust domain,
//! the SPIFFE Workload API of a SPIRE agent) produces the same [`Identity`]
//! snapshot and publishes it through a [`tokio::sync::watch`] channel, so
//! the TLS layer never knows which source it is reading from. Every
//! snapshot passes the [`TrustPolicy`] and validation in one place before
//! it is published.

mod bundles;
pub mod dev;
mod error;
mod files;
mod forwarded;
mod publish;
mod source;
mod status;
mod svid;
mod tls;
mod trust;
mod verifier;
mod workload_api;

pub use bundles::{TrustBundles, Usage};
pub use error::IdentityError;
pub use files::{FilesSource, load_certs, load_private_key};
pub use forwarded::{ForwardedSubjects, VerifiedSubject};
pub use source::{
    DEFAULT_WITHDRAWAL_GRACE, FollowOptions, Identity, IdentityFeed, IdentitySource, IdentityWatch,
};
pub use spiffe::{SpiffeId, TrustDomain};
pub use status::{
    AgentReport, IdentityReport, IdentityStatus, LastError, Withdrawal, WithdrawalEvents,
};
pub use svid::{spiffe_id_of_leaf, validity_of};
pub use tls::{ClientCertificate, client_config, listener_config, server_config};
pub use trust::TrustPolicy;
pub use verifier::{SpiffeClientVerifier, SpiffeServerVerifier};
pub use workload_api::{DEFAULT_STARTUP_TIMEOUT, WorkloadApiSource};
