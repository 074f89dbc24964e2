//! The `files` identity source: PEM files as written by spiffe-helper or
//! cert-manager's csi-driver-spiffe.

use std::path::{Path, PathBuf};

use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use spiffe::TrustDomain;

use super::{Identity, IdentityError, TrustBundles};

/// Paths of our SVID, its key and the bundle of each trusted trust domain.
#[derive(Debug, Clone)]
pub struct FilesSource {
    /// Our SVID chain, leaf first (PEM).
    pub svid_cert: PathBuf,
    /// The key of our SVID (PEM, PKCS#8, SEC1 or PKCS#1).
    pub svid_key: PathBuf,
    /// One CA bundle (PEM) per trusted trust domain.
    pub bundles: Vec<(TrustDomain, PathBuf)>,
}

impl FilesSource {
    /// Reads and checks every file.
    pub fn load(&self) -> Result<Identity, IdentityError> {
        let chain = load_certs(&self.svid_cert)?;
        let key = load_private_key(&self.svid_key)?;
        let mut bundles = TrustBundles::default();
        for (trust_domain, path) in &self.bundles {
            bundles.add(trust_domain.clone(), &load_certs(path)?)?;
        }
        Identity::new(chain, key, bundles)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, IdentityError> {
    std::fs::read(path).map_err(|source| IdentityError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Reads every certificate of a PEM file; an empty file is an error.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
    let pem = read(path)?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| IdentityError::Pem {
            path: path.to_owned(),
            what: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(IdentityError::Pem {
            path: path.to_owned(),
            what: "no certificate found".to_owned(),
        });
    }
    Ok(certs)
}

/// Reads the first private key of a PEM file.
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, IdentityError> {
    let pem = read(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| IdentityError::Pem {
            path: path.to_owned(),
            what: e.to_string(),
        })?
        .ok_or_else(|| IdentityError::Pem {
            path: path.to_owned(),
            what: "no private key found".to_owned(),
        })
}
