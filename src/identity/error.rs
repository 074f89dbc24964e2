//! Errors of the identity boundary: loading SVIDs and bundles, verifying peers.

use std::path::PathBuf;

/// Why identity material could not be loaded or a peer certificate was refused.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum IdentityError {
    /// A file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write `{path}`: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A PEM file held nothing usable.
    #[error("`{path}`: {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        what: String,
    },
    /// The peer presented no certificate.
    #[error("no certificate presented")]
    NoCertificate,
    /// The certificate is not valid DER X.509.
    #[error("certificate cannot be parsed: {0}")]
    Malformed(String),
    /// An X.509-SVID has exactly one URI SAN; this one has none.
    #[error("certificate has no URI SAN, so it is not an X.509-SVID")]
    NoUriSan,
    /// An X.509-SVID has exactly one URI SAN; this one has several.
    #[error("certificate has {0} URI SANs; an X.509-SVID has exactly one")]
    MultipleUriSans(usize),
    /// The URI SAN is not a valid SPIFFE ID.
    #[error("URI SAN `{uri}` is not a SPIFFE ID: {reason}")]
    NotSpiffe {
        /// The URI SAN found.
        uri: String,
        /// Why it is not a SPIFFE ID.
        reason: String,
    },
    /// A leaf SVID names a workload, never a whole trust domain.
    #[error("SPIFFE ID `{0}` has no path; a leaf SVID must name a workload")]
    RootPath(String),
    /// A CA certificate was presented as a leaf.
    #[error("certificate is a CA certificate and cannot be used as a leaf SVID")]
    LeafIsCa,
    /// Leaf SVIDs must be usable for signatures and must not sign certificates.
    #[error("leaf SVID key usage is invalid: {0}")]
    KeyUsage(&'static str),
    /// The SPIFFE ID names a trust domain we hold no bundle for.
    #[error("trust domain `{0}` is not trusted")]
    UntrustedTrustDomain(String),
    /// The chain does not verify against the bundle of its trust domain.
    #[error("certificate chain for `{id}` does not verify against its trust bundle: {reason}")]
    Chain {
        /// The SPIFFE ID the leaf claims.
        id: String,
        /// What the verifier said.
        reason: String,
    },
    /// A presented SPIFFE ID is not the expected one.
    #[error("peer is `{actual}`, expected `{expected}`")]
    UnexpectedPeer {
        /// The SPIFFE ID that was expected.
        expected: String,
        /// The SPIFFE ID that was presented.
        actual: String,
    },
    /// Certificate generation failed (dev trust domain).
    #[error("cannot generate certificates: {0}")]
    Generate(String),
    /// Our own SVID is outside its validity window.
    #[error("SVID `{id}` is not valid now: valid from {not_before} to {not_after} (Unix seconds)")]
    NotValidNow {
        /// Our SPIFFE ID.
        id: String,
        /// Start of validity, Unix seconds.
        not_before: i64,
        /// End of validity, Unix seconds.
        not_after: i64,
    },
    /// A candidate snapshot holds no bundle for our own trust domain, so our
    /// own SVID cannot be checked (an agent update that dropped it).
    #[error("no bundle for our own trust domain `{0}`, so our SVID cannot be checked")]
    NoOwnBundle(String),
    /// Our own SVID does not verify against our own trust domain's bundle.
    #[error("our SVID `{id}` does not verify against our own bundle: {reason}")]
    OwnSvidUntrusted {
        /// Our SPIFFE ID.
        id: String,
        /// What the verifier said.
        reason: String,
    },
    /// A candidate names another SPIFFE ID than the one we started with:
    /// task tokens name our ID as issuer and audience, and clients pin it.
    #[error(
        "our SPIFFE ID would change from `{current}` to `{offered}`; restart Mandate to take a new identity"
    )]
    SpiffeIdChanged {
        /// The SPIFFE ID in use.
        current: String,
        /// The SPIFFE ID offered.
        offered: String,
    },
    /// A Workload API endpoint Mandate does not accept.
    #[error("workload API endpoint `{endpoint}` is refused: {reason}")]
    Endpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it is refused.
        reason: String,
    },
    /// The SPIFFE Workload API (a SPIRE agent) failed or sent unusable material.
    #[error("workload API: {0}")]
    WorkloadApi(String),
    /// A reload task ended without an answer.
    #[error("reload failed: {0}")]
    Reload(String),
    /// Our private key is not the key of our certificate.
    #[error("the private key does not match the SVID's certificate")]
    KeyMismatch,
    /// The TLS library refused the material.
    #[error("TLS configuration: {0}")]
    Tls(String),
}
