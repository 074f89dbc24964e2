//! Shared test fixtures: a test PKI built with rcgen (good and bad SVIDs)
//! and a Mandate server on 127.0.0.1:0 with the shipped policies.

#![allow(dead_code, reason = "each test binary uses a different part")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test fixtures"
)]

pub mod audit;
pub mod authzen;
pub mod cli;
pub mod party;
pub mod probe;
pub mod tls;
pub mod workload_api;

#[allow(unused_imports, reason = "each test binary uses a different part")]
pub use probe::{client_identity, readyz, try_call};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mandate::api::v1::authorization_service_client::AuthorizationServiceClient;
use mandate::app::{App, Seams};
use mandate::approval::ApprovalBook;
use mandate::clock::{Clock, ManualClock};
use mandate::config::Config;
use mandate::envoy::EnvoySettings;
use mandate::graph::TaskGraph;
use mandate::identity::{Identity, IdentityFeed, IdentityStatus, TrustBundles, TrustDomain};
use mandate::registry::Registry;
use mandate::server::RunningServer;
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;
use tonic::transport::Channel;

/// The trust domain of the shipped example entities.
pub const TRUST_DOMAIN: &str = "mandate.local";

/// Repository root, where `policies/`, `schemas/` and `examples/` live.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A copy of the shipped policies (not their tests) in a directory the test
/// may edit, plus `extra` files.
pub fn policies_with(extra: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo().join("policies")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    for (name, body) in extra {
        std::fs::write(dir.path().join(name), body).unwrap();
    }
    dir
}

/// One `Authorize` of `action` on the `Mandate::Resource` `resource`,
/// presenting `token` (none when empty).
pub async fn call(
    client: &mut AuthorizationServiceClient<Channel>,
    token: &str,
    action: &str,
    resource: &str,
) -> mandate::api::v1::AuthorizeResponse {
    client
        .authorize(mandate::api::v1::AuthorizeRequest {
            action: action.into(),
            resource: Some(mandate::api::v1::Resource {
                r#type: String::new(),
                id: resource.into(),
            }),
            token: token.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

/// A certificate authority for one trust domain.
pub struct TestCa {
    pub trust_domain: String,
    pub cert: CertificateDer<'static>,
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
    /// What `issuer` was made from, so the CA can be duplicated.
    params: CertificateParams,
    key_pem: String,
}

/// A leaf certificate and its key.
pub struct Leaf {
    pub cert: CertificateDer<'static>,
    pub cert_pem: String,
    pub key: PrivateKeyDer<'static>,
    pub key_pem: String,
}

impl Leaf {
    /// Writes `svid.pem` and `svid.key` under `dir`.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        std::fs::create_dir_all(dir).unwrap();
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }
}

/// How a leaf deviates from a good X.509-SVID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flaw {
    None,
    TwoUriSans,
    NonSpiffeUri,
    IsCa,
    Expired,
}

impl TestCa {
    pub fn new(trust_domain: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.subject_alt_names = vec![SanType::URI(
            format!("spiffe://{trust_domain}").try_into().unwrap(),
        )];
        let cert = params.self_signed(&key).unwrap();
        Self {
            trust_domain: trust_domain.to_owned(),
            cert: cert.der().clone(),
            pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params.clone(), key),
            params,
        }
    }

    /// The same CA (same certificate and key), for a second server.
    pub fn duplicate(&self) -> Self {
        Self {
            trust_domain: self.trust_domain.clone(),
            cert: self.cert.clone(),
            pem: self.pem.clone(),
            key_pem: self.key_pem.clone(),
            issuer: Issuer::new(
                self.params.clone(),
                KeyPair::from_pem(&self.key_pem).unwrap(),
            ),
            params: self.params.clone(),
        }
    }

    /// A good SVID for `spiffe://<trust domain><path>`.
    pub fn svid(&self, path: &str) -> Leaf {
        self.leaf(&format!("spiffe://{}{path}", self.trust_domain), Flaw::None)
    }

    /// A good SVID for `path` that expires `lifetime` from now.
    pub fn svid_for(&self, path: &str, lifetime: std::time::Duration) -> Leaf {
        let uri = format!("spiffe://{}{path}", self.trust_domain);
        self.leaf_until(
            &uri,
            Flaw::None,
            OffsetDateTime::now_utc() + time::Duration::try_from(lifetime).unwrap(),
        )
    }

    /// A leaf for `uri` with the given flaw.
    pub fn leaf(&self, uri: &str, flaw: Flaw) -> Leaf {
        self.leaf_until(
            uri,
            flaw,
            OffsetDateTime::now_utc() + time::Duration::days(1),
        )
    }

    fn leaf_until(&self, uri: &str, flaw: Flaw, not_after: OffsetDateTime) -> Leaf {
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![SanType::URI(uri.try_into().unwrap())];
        match flaw {
            Flaw::TwoUriSans => params
                .subject_alt_names
                .push(SanType::URI(format!("{uri}-twin").try_into().unwrap())),
            Flaw::NonSpiffeUri => {
                params.subject_alt_names = vec![SanType::URI(
                    "https://mandate.local/agents/x".try_into().unwrap(),
                )]
            }
            _ => {}
        }
        if flaw == Flaw::IsCa {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            // Only basic constraints make it a CA, so this case tests that
            // rule and not the key-usage one.
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        } else {
            params.is_ca = IsCa::ExplicitNoCa;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        }
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let now = OffsetDateTime::now_utc();
        if flaw == Flaw::Expired {
            params.not_before = now - time::Duration::days(2);
            params.not_after = now - time::Duration::days(1);
        } else {
            params.not_before = now - time::Duration::minutes(5);
            params.not_after = not_after;
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert: cert.der().clone(),
            cert_pem: cert.pem(),
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            key_pem: key.serialize_pem(),
        }
    }

    /// Trust bundles holding only this CA.
    pub fn bundles(&self) -> TrustBundles {
        let mut bundles = TrustBundles::default();
        bundles
            .add(self.td(), std::slice::from_ref(&self.cert))
            .unwrap();
        bundles
    }

    pub fn td(&self) -> TrustDomain {
        TrustDomain::new(&self.trust_domain).unwrap()
    }

    /// An identity presenting `leaf` and trusting this CA.
    pub fn identity(&self, leaf: &Leaf) -> Arc<Identity> {
        Arc::new(
            Identity::new(
                vec![leaf.cert.clone()],
                leaf.key.clone_key(),
                self.bundles(),
            )
            .unwrap(),
        )
    }
}

/// A running server and the PKI it trusts.
pub struct TestServer {
    pub ca: TestCa,
    pub server: RunningServer,
    pub addr: String,
    /// The clock of tasks and tokens; starts at the real time.
    pub clock: Arc<ManualClock>,
    /// The server's task graph.
    pub graph: Arc<TaskGraph>,
    /// The server's registry.
    pub registry: Arc<Registry>,
    /// The server's approvals.
    pub approvals: Arc<ApprovalBook>,
    /// The server's durable writer.
    pub journal: Arc<mandate::journal::Journal>,
    /// Holds the signing keys, and the SQLite store when the setup named
    /// none.
    _data_dir: tempfile::TempDir,
}

/// Options for [`TestServer::start_with`].
pub struct Setup {
    pub policies: PathBuf,
    pub catalog: Option<PathBuf>,
    pub max_batch_size: usize,
    /// Extra trust domains and their CAs, besides the server's own.
    pub extra_bundles: Vec<(TrustDomain, CertificateDer<'static>)>,
    pub max_delegation_depth: u32,
    /// Watch the policy files this often (off by default in tests).
    pub policy_poll: Option<Duration>,
    /// Where decision records go, if anywhere.
    pub decision_log: Option<PathBuf>,
    /// Another schema file than the repository's.
    pub schema: Option<PathBuf>,
    /// How Envoy's `Check` reads requests.
    pub envoy: EnvoySettings,
    /// The route map of Envoy's `Check`, if any.
    pub route_map: Option<PathBuf>,
    /// An identity from a source (files, the workload API) and the CA the
    /// test's clients use, instead of a fresh CA handed over whole.
    pub identity: Option<(TestCa, IdentityFeed)>,
    /// Revoke a withdrawn trust domain's agents' tasks.
    pub revoke_on_trust_withdrawal: bool,
    /// Audit records waiting to be written at most.
    pub decision_log_capacity: usize,
    /// The rest of the audit pipeline (overflow, redaction, the index).
    pub audit: mandate::audit::AuditSettings,
    /// The store; a fresh SQLite file when `None`. Its state is loaded at
    /// start, as `mandate serve` does.
    pub store: Option<Arc<dyn mandate::store::Store>>,
    /// How the server follows the store.
    pub replica: mandate::journal::ReplicaSettings,
    /// Request and connection limits.
    pub limits: mandate::limits::Limits,
    /// A TLS handshake not done in this time is dropped.
    pub handshake_timeout: Duration,
    /// The browser pages, if on.
    pub ui: Option<mandate::ui::UiSettings>,
    /// How long ended tasks stay in memory; the server's default when
    /// `None`.
    pub task_retention: Option<mandate::graph::Retention>,
    /// The AuthZEN API, if on.
    pub authzen: Option<mandate::api::authzen::AuthzenSettings>,
    /// A Cedar entities file for a user schema's types.
    pub entities: Option<PathBuf>,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            policies: repo().join("policies"),
            catalog: Some(repo().join("examples/catalog.toml")),
            max_batch_size: 4,
            extra_bundles: Vec::new(),
            max_delegation_depth: mandate::graph::DEFAULT_MAX_DEPTH,
            policy_poll: None,
            decision_log: None,
            schema: None,
            envoy: EnvoySettings::default(),
            route_map: None,
            identity: None,
            revoke_on_trust_withdrawal: true,
            decision_log_capacity: 10_000,
            audit: mandate::audit::AuditSettings::default(),
            store: None,
            replica: mandate::journal::ReplicaSettings::default(),
            limits: mandate::limits::Limits::default(),
            handshake_timeout: Duration::from_secs(5),
            ui: None,
            task_retention: None,
            authzen: None,
            entities: None,
        }
    }
}

impl TestServer {
    /// The shipped policies, schema and example entities.
    pub async fn start() -> Self {
        Self::start_with(Setup::default()).await
    }

    /// A server built by the same composition root as `mandate serve`
    /// ([`App::build`]), with the test CA's identity and a manual clock.
    pub async fn start_with(mut setup: Setup) -> Self {
        let (ca, feed) = match setup.identity.take() {
            Some(given) => given,
            None => {
                let ca = TestCa::new(TRUST_DOMAIN);
                let leaf = ca.svid("/mandate");
                let mut bundles = ca.bundles();
                for (td, cert) in &setup.extra_bundles {
                    bundles.add(td.clone(), std::slice::from_ref(cert)).unwrap();
                }
                let identity =
                    Identity::new(vec![leaf.cert.clone()], leaf.key.clone_key(), bundles).unwrap();
                let (_tx, watch) = tokio::sync::watch::channel(Arc::new(identity));
                let feed = IdentityFeed {
                    watch,
                    status: IdentityStatus::default(),
                };
                (ca, feed)
            }
        };
        let data_dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.server.listen = "127.0.0.1:0".to_owned();
        config.server.http_listen = "127.0.0.1:0".to_owned();
        config.server.data_dir = data_dir.path().to_owned();
        config.policies.dir = setup.policies.clone();
        config.policies.schema = setup
            .schema
            .clone()
            .unwrap_or_else(|| repo().join("schemas/mandate.cedarschema"));
        config.policies.catalog = setup.catalog.clone();
        config.policies.entities = setup.entities.clone();
        let mut settings = config.validate_with_env(None).unwrap();
        settings.max_batch_size = setup.max_batch_size;
        settings.max_delegation_depth = setup.max_delegation_depth;
        settings.policy_poll = setup.policy_poll;
        settings.decision_log = setup.decision_log.clone();
        settings.decision_log_capacity = setup.decision_log_capacity;
        settings.audit = setup.audit.clone();
        settings.envoy = EnvoySettings {
            route_map: setup.route_map.clone().or(setup.envoy.route_map.clone()),
            ..setup.envoy.clone()
        };
        settings.revoke_on_trust_withdrawal = setup.revoke_on_trust_withdrawal;
        settings.replica = setup.replica;
        settings.limits = setup.limits;
        settings.handshake_timeout = setup.handshake_timeout;
        settings.shutdown_grace = Duration::from_secs(5);
        settings.ui = setup.ui.clone();
        if let Some(retention) = setup.task_retention {
            settings.task_retention = retention;
        }
        settings.authzen = setup.authzen.clone();
        let clock = Arc::new(ManualClock::new(mandate::clock::SystemClock.now()));
        let app = App::build(
            settings,
            Seams {
                clock: clock.clone(),
                identity: Some(feed),
                store: setup.store.take(),
            },
        )
        .await
        .unwrap();
        let (graph, registry) = (app.graph().clone(), app.registry().clone());
        let (approvals, journal) = (app.approvals().clone(), app.journal().clone());
        let server = app.start().await.unwrap();
        let addr = server.grpc_addr().to_string();
        Self {
            ca,
            server,
            addr,
            clock,
            graph,
            registry,
            approvals,
            journal,
            _data_dir: data_dir,
        }
    }

    /// A channel presenting one fresh SVID for `path`; clients made from
    /// it share the certificate, as a task token's binding needs.
    pub async fn channel(&self, path: &str) -> Channel {
        self.channel_for(&self.ca.svid(path)).await
    }

    /// A channel presenting `leaf`.
    pub async fn channel_for(&self, leaf: &Leaf) -> Channel {
        let identity = self.ca.identity(leaf);
        mandate::client::channel(&self.addr, &identity, None)
            .await
            .unwrap()
    }

    /// A client presenting a fresh good SVID for `path`.
    pub async fn client(&self, path: &str) -> AuthorizationServiceClient<Channel> {
        let identity = self.ca.identity(&self.ca.svid(path));
        mandate::client::connect(&self.addr, &identity, None)
            .await
            .unwrap()
    }

    /// A raw channel presenting `chain` and `key`, with no local checks of
    /// our own certificate, so bad SVIDs reach the server.
    pub async fn raw_channel(
        &self,
        client_auth: Option<tls::ClientAuth>,
    ) -> Result<Channel, mandate::client::ClientError> {
        let config = tls::config(self, None, client_auth, &[b"h2"]);
        mandate::client::channel_with_config(&self.addr, Arc::new(config)).await
    }
}

/// The reason of a refused call, from its `google.rpc.ErrorInfo` (domain
/// `mandate`): what clients match on, never the message.
pub fn error_reason(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    let info = status
        .get_details_error_info()
        .expect("every refusal carries an ErrorInfo");
    assert_eq!(info.domain, "mandate", "{status:?}");
    info.reason
}
