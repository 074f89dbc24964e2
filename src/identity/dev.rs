//! A local development trust domain: a CA and SVIDs for Mandate and a few
//! sample workloads, so the quick start needs no SPIRE.
//!
//! Layout under the directory:
//! `bundle.pem` (the CA certificate), `ca.key`, `server/svid.pem` and
//! `server/svid.key`, and `agents/NAME/` or `workloads/NAME/` for each sample.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use spiffe::{SpiffeId, TrustDomain};
use time::{Duration, OffsetDateTime};

use super::{FilesSource, IdentityError, load_certs, spiffe_id_of_leaf};

/// Sample agents created when none are named.
pub const DEFAULT_AGENTS: &[&str] = &["patcher", "reviewer"];
/// Sample non-agent workloads: an enforcement point, an admin tool and a
/// front end that starts tasks for its users.
pub const DEFAULT_WORKLOADS: &[&str] = &["envoy", "admin", "frontend"];

/// The host name of the sample tool API behind the dev Envoy
/// (`examples/envoy/`): the Envoy SVID serves it, so clients calling the tool
/// API through Envoy can check Envoy's certificate.
pub const ENVOY_SAMPLE_HOST: &str = "tools.acme.internal";

const CA_LIFETIME: Duration = Duration::days(3650);
const SVID_LIFETIME: Duration = Duration::days(365);

/// Where one SVID and its key are.
#[derive(Debug, Clone)]
pub struct SvidFiles {
    /// The SPIFFE ID in the certificate.
    pub spiffe_id: String,
    /// Certificate (PEM).
    pub cert: PathBuf,
    /// Private key (PEM, PKCS#8).
    pub key: PathBuf,
}

/// A dev trust domain on disk.
#[derive(Debug, Clone)]
pub struct DevTrustDomain {
    /// The directory.
    pub dir: PathBuf,
    /// The trust domain.
    pub trust_domain: TrustDomain,
    /// The CA certificate, which is the trust bundle.
    pub bundle: PathBuf,
    /// Mandate's own SVID.
    pub server: SvidFiles,
    /// Sample agent and workload SVIDs.
    pub samples: Vec<SvidFiles>,
}

impl DevTrustDomain {
    /// Uses the dev trust domain in `dir`, creating it when `dir` has none.
    /// An existing one must be for the same trust domain.
    pub fn open_or_init(dir: &Path, trust_domain: &TrustDomain) -> Result<Self, IdentityError> {
        if !dir.join("bundle.pem").exists() {
            return Self::init(dir, trust_domain, &[]);
        }
        let layout = Self::layout(dir, trust_domain, &list_samples(dir));
        let server = load_certs(&layout.server.cert)?;
        let existing = spiffe_id_of_leaf(server.first().ok_or(IdentityError::NoCertificate)?)?;
        if existing.trust_domain() != trust_domain {
            return Err(IdentityError::Pem {
                path: layout.server.cert.clone(),
                what: format!(
                    "this dev trust domain is `{}`, not `{}`; remove `{}` or configure `{}`",
                    existing.trust_domain_name(),
                    trust_domain.as_str(),
                    dir.display(),
                    existing.trust_domain_name()
                ),
            });
        }
        Ok(layout)
    }

    /// Creates a fresh CA, server SVID and sample SVIDs in `dir`, replacing
    /// any there. `agents` empty means [`DEFAULT_AGENTS`].
    pub fn init(
        dir: &Path,
        trust_domain: &TrustDomain,
        agents: &[String],
    ) -> Result<Self, IdentityError> {
        let agents: Vec<String> = if agents.is_empty() {
            DEFAULT_AGENTS.iter().map(|a| (*a).to_owned()).collect()
        } else {
            agents.to_vec()
        };
        let mut samples: Vec<String> = agents.iter().map(|a| format!("agents/{a}")).collect();
        samples.extend(DEFAULT_WORKLOADS.iter().map(|w| format!("workloads/{w}")));
        let layout = Self::layout(dir, trust_domain, &samples);

        let ca_key = KeyPair::generate().map_err(generate_error)?;
        let ca_params = ca_params(trust_domain)?;
        let ca_cert = ca_params.self_signed(&ca_key).map_err(generate_error)?;
        write(&layout.bundle, ca_cert.pem().as_bytes(), false)?;
        write(&dir.join("ca.key"), ca_key.serialize_pem().as_bytes(), true)?;
        let issuer = Issuer::new(ca_params, ca_key);

        issue(&issuer, &layout.server, Serves::Mandate)?;
        for sample in &layout.samples {
            let serves = if sample.spiffe_id == layout.envoy_spiffe_id() {
                Serves::ToolApi
            } else {
                Serves::Nothing
            };
            issue(&issuer, sample, serves)?;
        }
        Ok(layout)
    }

    fn layout(dir: &Path, trust_domain: &TrustDomain, samples: &[String]) -> Self {
        let files = |rel: &str, path: &str| SvidFiles {
            spiffe_id: format!("spiffe://{}/{path}", trust_domain.as_str()),
            cert: dir.join(rel).join("svid.pem"),
            key: dir.join(rel).join("svid.key"),
        };
        Self {
            dir: dir.to_owned(),
            trust_domain: trust_domain.clone(),
            bundle: dir.join("bundle.pem"),
            server: files("server", "mandate"),
            samples: samples.iter().map(|s| files(s, s)).collect(),
        }
    }

    /// The sample enforcement point's SPIFFE ID (`workloads/envoy`).
    fn envoy_spiffe_id(&self) -> String {
        format!("spiffe://{}/workloads/envoy", self.trust_domain.as_str())
    }

    /// The same material as a `files` identity source.
    pub fn files_source(&self) -> FilesSource {
        FilesSource {
            svid_cert: self.server.cert.clone(),
            svid_key: self.server.key.clone(),
            bundles: vec![(self.trust_domain.clone(), self.bundle.clone())],
        }
    }
}

/// Sample directories already on disk, as `agents/NAME` and `workloads/NAME`.
fn list_samples(dir: &Path) -> Vec<String> {
    let mut samples = Vec::new();
    for kind in ["agents", "workloads"] {
        if let Ok(entries) = fs::read_dir(dir.join(kind)) {
            for entry in entries.flatten() {
                samples.push(format!("{kind}/{}", entry.file_name().to_string_lossy()));
            }
        }
    }
    samples.sort();
    samples
}

fn generate_error(e: rcgen::Error) -> IdentityError {
    IdentityError::Generate(e.to_string())
}

fn uri_san(uri: &str) -> Result<SanType, IdentityError> {
    Ok(SanType::URI(uri.try_into().map_err(generate_error)?))
}

fn ca_params(trust_domain: &TrustDomain) -> Result<CertificateParams, IdentityError> {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(
        DnType::CommonName,
        format!("Mandate dev CA for {}", trust_domain.as_str()),
    );
    params.distinguished_name = name;
    params.subject_alt_names = vec![uri_san(&trust_domain.id_string())?];
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + CA_LIFETIME;
    Ok(params)
}

/// What an SVID may serve as a TLS server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Serves {
    /// Mandate's API, on loopback.
    Mandate,
    /// The sample tool API, as the Envoy in front of it.
    ToolApi,
    /// Nothing: a client-only SVID.
    Nothing,
}

fn issue(
    issuer: &Issuer<'_, KeyPair>,
    files: &SvidFiles,
    serves: Serves,
) -> Result<(), IdentityError> {
    let id = SpiffeId::new(&files.spiffe_id).map_err(|e| IdentityError::NotSpiffe {
        uri: files.spiffe_id.clone(),
        reason: e.to_string(),
    })?;
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![uri_san(&id.to_string())?];
    match serves {
        Serves::Mandate => {
            // Extra SANs let clients that check DNS names (grpcurl, other
            // languages' default TLS) reach the dev server on loopback.
            params.subject_alt_names.push(SanType::DnsName(
                "localhost".try_into().map_err(generate_error)?,
            ));
            params
                .subject_alt_names
                .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        }
        // The sample host only, never `localhost`: a client that checks
        // host names and does not pin Mandate's SPIFFE ID still cannot take
        // Envoy for the dev server.
        Serves::ToolApi => params.subject_alt_names.push(SanType::DnsName(
            ENVOY_SAMPLE_HOST.try_into().map_err(generate_error)?,
        )),
        Serves::Nothing => {}
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // Only Mandate's SVID and the sample Envoy's (which terminates the
    // agents' mTLS) may serve, so another sample workload cannot pose as a
    // server to a client that does not pin the server's SPIFFE ID.
    params.extended_key_usages = if serves == Serves::Nothing {
        vec![ExtendedKeyUsagePurpose::ClientAuth]
    } else {
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ]
    };
    params.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + SVID_LIFETIME;
    let key = KeyPair::generate().map_err(generate_error)?;
    let cert = params.signed_by(&key, issuer).map_err(generate_error)?;
    write(&files.cert, cert.pem().as_bytes(), false)?;
    write(&files.key, key.serialize_pem().as_bytes(), true)
}

fn write(path: &Path, contents: &[u8], secret: bool) -> Result<(), IdentityError> {
    let fail = |source| IdentityError::Write {
        path: path.to_owned(),
        source,
    };
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(fail)?;
    }
    let mode = if secret { 0o600 } else { 0o644 };
    // Keys are created private, never readable by others even briefly.
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(fail)?;
    // `mode` applies only at creation; tighten a file that already existed.
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(fail)?;
    file.write_all(contents).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dev_trust_domain_is_reused_only_for_the_same_trust_domain() {
        let dir = tempfile::tempdir().unwrap();
        let ours = TrustDomain::new("example.org").unwrap();
        let created = DevTrustDomain::init(dir.path(), &ours, &["scout".to_owned()]).unwrap();
        assert!(created.files_source().load().is_ok());
        let reopened = DevTrustDomain::open_or_init(dir.path(), &ours).unwrap();
        let samples: Vec<_> = reopened
            .samples
            .iter()
            .map(|s| s.spiffe_id.as_str())
            .collect();
        assert!(
            samples.contains(&"spiffe://example.org/agents/scout"),
            "{samples:?}"
        );
        let other = TrustDomain::new("other.org").unwrap();
        let err = DevTrustDomain::open_or_init(dir.path(), &other).unwrap_err();
        assert!(
            err.to_string().contains("`example.org`, not `other.org`"),
            "{err}"
        );
    }

    #[test]
    fn only_mandate_and_the_sample_envoy_may_serve_and_envoy_names_the_tool_host() {
        use super::super::{TrustBundles, Usage};
        let dir = tempfile::tempdir().unwrap();
        let td = TrustDomain::new("example.org").unwrap();
        let dev = DevTrustDomain::init(dir.path(), &td, &[]).unwrap();
        let mut bundles = TrustBundles::default();
        bundles.add(td, &load_certs(&dev.bundle).unwrap()).unwrap();
        let now = rustls_pki_types::UnixTime::now();
        let leaf = |spiffe_id: &str| {
            let files = if spiffe_id == dev.server.spiffe_id {
                &dev.server
            } else {
                dev.samples
                    .iter()
                    .find(|s| s.spiffe_id == spiffe_id)
                    .unwrap()
            };
            load_certs(&files.cert).unwrap()
        };
        let envoy = leaf("spiffe://example.org/workloads/envoy");
        assert!(bundles.verify(&envoy, now, Usage::Server).is_ok());
        assert!(bundles.verify(&envoy, now, Usage::Client).is_ok());
        let cert = webpki::EndEntityCert::try_from(&envoy[0]).unwrap();
        let host = rustls_pki_types::ServerName::try_from(ENVOY_SAMPLE_HOST).unwrap();
        assert!(cert.verify_is_valid_for_subject_name(&host).is_ok());
        // Not `localhost`: Envoy's SVID cannot stand in for the dev server's.
        let localhost = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        assert!(cert.verify_is_valid_for_subject_name(&localhost).is_err());
        let server = leaf(&dev.server.spiffe_id);
        assert!(bundles.verify(&server, now, Usage::Server).is_ok());
        for client_only in [
            "spiffe://example.org/agents/patcher",
            "spiffe://example.org/workloads/frontend",
            "spiffe://example.org/workloads/admin",
        ] {
            let chain = leaf(client_only);
            assert!(bundles.verify(&chain, now, Usage::Client).is_ok());
            assert!(
                bundles.verify(&chain, now, Usage::Server).is_err(),
                "{client_only} may not serve"
            );
        }
    }

    #[test]
    fn keys_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let dev = DevTrustDomain::init(dir.path(), &TrustDomain::new("example.org").unwrap(), &[])
            .unwrap();
        for key in [dir.path().join("ca.key"), dev.server.key.clone()] {
            let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
    }
}
