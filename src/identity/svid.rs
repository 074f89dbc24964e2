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
            ParsedExtension::ParseError { error } => {
                return Err(IdentityError::Malformed(format!(
                    "extension {} cannot be parsed: {error}",
                    ext.oid
                )));
            }
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

/// The validity window of a certificate, as Unix seconds `(not_before,
/// not_after)`: what health and rotation are judged by.
pub fn validity_of(der: &[u8]) -> Result<(i64, i64), IdentityError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| IdentityError::Malformed(e.to_string()))?;
    let validity = cert.validity();
    Ok((
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose, SanType};

    use super::*;

    fn leaf(edit: impl FnOnce(&mut CertificateParams)) -> Vec<u8> {
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![SanType::URI(
            "spiffe://example.org/agents/a".try_into().unwrap(),
        )];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        edit(&mut params);
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn uri(s: &str) -> SanType {
        SanType::URI(s.try_into().unwrap())
    }

    #[test]
    fn a_good_leaf_yields_its_spiffe_id() {
        let id = spiffe_id_of_leaf(&leaf(|_| {})).unwrap();
        assert_eq!(id.to_string(), "spiffe://example.org/agents/a");
    }

    #[test]
    fn each_leaf_rule_is_enforced() {
        type Edit = Box<dyn FnOnce(&mut CertificateParams)>;
        type Expect = fn(&IdentityError) -> bool;
        let cases: Vec<(&str, Edit, Expect)> = vec![
            (
                "no URI SAN",
                Box::new(|p| {
                    p.subject_alt_names = vec![SanType::DnsName("a.example".try_into().unwrap())]
                }),
                |e| matches!(e, IdentityError::NoUriSan),
            ),
            (
                "two URI SANs",
                Box::new(|p| {
                    p.subject_alt_names
                        .push(uri("spiffe://example.org/agents/b"))
                }),
                |e| matches!(e, IdentityError::MultipleUriSans(2)),
            ),
            (
                "non-spiffe scheme",
                Box::new(|p| p.subject_alt_names = vec![uri("https://example.org/agents/a")]),
                |e| matches!(e, IdentityError::NotSpiffe { .. }),
            ),
            (
                "root path",
                Box::new(|p| p.subject_alt_names = vec![uri("spiffe://example.org")]),
                |e| matches!(e, IdentityError::RootPath(_)),
            ),
            (
                "CA as leaf",
                Box::new(|p| p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained)),
                |e| matches!(e, IdentityError::LeafIsCa),
            ),
            (
                "no digitalSignature",
                Box::new(|p| p.key_usages = vec![KeyUsagePurpose::KeyEncipherment]),
                |e| matches!(e, IdentityError::KeyUsage(_)),
            ),
            (
                "keyCertSign on a leaf",
                Box::new(|p| {
                    p.key_usages = vec![
                        KeyUsagePurpose::DigitalSignature,
                        KeyUsagePurpose::KeyCertSign,
                    ]
                }),
                |e| matches!(e, IdentityError::KeyUsage(_)),
            ),
            ("no key usage", Box::new(|p| p.key_usages = vec![]), |e| {
                matches!(e, IdentityError::KeyUsage(_))
            }),
        ];
        for (name, edit, expected) in cases {
            let err = spiffe_id_of_leaf(&leaf(edit)).unwrap_err();
            assert!(expected(&err), "{name}: got {err:?}");
        }
    }

    #[test]
    fn garbage_is_malformed() {
        assert!(matches!(
            spiffe_id_of_leaf(b"not a certificate"),
            Err(IdentityError::Malformed(_))
        ));
    }
}
