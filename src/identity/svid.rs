//! The leaf rules of the X.509-SVID specification.

use spiffe::SpiffeId;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::IdentityError;

/// Reads the SPIFFE ID of a leaf X.509-SVID, enforcing the leaf rules:
/// exactly one URI SAN with scheme `spiffe` and a non-root path, not a CA,
/// `digitalSignature` set and neither `keyCertSign` nor `cRLSign`.
///
/// This does not verify the chain; [`super::TrustBundles::verify`] does both.
pub fn spiffe_id_of_leaf(der: &[u8]) -> Result<SpiffeId, IdentityError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| IdentityError::Malformed(e.to_string()))?;

    let mut uris = Vec::new();
    let mut key_usage = None;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                uris.extend(san.general_names.iter().filter_map(|name| match name {
                    GeneralName::URI(uri) => Some(*uri),
                    _ => None,
                }));
            }
            ParsedExtension::BasicConstraints(bc) if bc.ca => {
                return Err(IdentityError::LeafIsCa);
            }
            ParsedExtension::KeyUsage(ku) => key_usage = Some(*ku),
            _ => {}
        }
    }

    let uri = match uris.as_slice() {
        [] => return Err(IdentityError::NoUriSan),
        [uri] => *uri,
        many => return Err(IdentityError::MultipleUriSans(many.len())),
    };
    if !uri.starts_with("spiffe://") {
        return Err(IdentityError::NotSpiffe {
            uri: uri.to_owned(),
            reason: "scheme is not `spiffe`".to_owned(),
        });
    }
    let id = SpiffeId::new(uri).map_err(|e| IdentityError::NotSpiffe {
        uri: uri.to_owned(),
        reason: e.to_string(),
    })?;
    if id.path().is_empty() {
        return Err(IdentityError::RootPath(id.to_string()));
    }

    let ku = key_usage.ok_or(IdentityError::KeyUsage("key usage extension is missing"))?;
    if !ku.digital_signature() {
        return Err(IdentityError::KeyUsage("digitalSignature is not set"));
    }
    if ku.key_cert_sign() || ku.crl_sign() {
        return Err(IdentityError::KeyUsage(
            "a leaf must not set keyCertSign or cRLSign",
        ));
    }
    Ok(id)
}
