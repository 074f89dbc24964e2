//! A test SPIRE agent: the SPIFFE Workload API (`FetchX509SVID` and
//! `FetchX509Bundles`, streaming) over a real gRPC server on a Unix socket.
//!
//! Like SPIRE's agent it refuses calls without the `workload.spiffe.io: true`
//! metadata header. The test decides what it serves: [`TestAgent::push`]
//! sends a new response on every open stream (a rotation, a federated
//! bundle appearing or withdrawn), [`TestAgent::deny`] answers
//! `PermissionDenied` as SPIRE does once a workload's entry is deleted,
//! [`TestAgent::stop`] closes the streams and removes the socket,
//! [`TestAgent::restart`] serves again on the same path.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tonic::{Request, Response, Status};

use mandate::identity::{
    FollowOptions, IdentityFeed, IdentitySource, TrustPolicy, WorkloadApiSource,
};

use super::{Leaf, Setup, TestCa, TestServer};

/// Generated from `proto/spiffe/workload.proto` by build.rs.
pub mod pb {
    #![allow(clippy::all, missing_docs, reason = "generated")]
    tonic::include_proto!("spiffe_workload/_");
}

use pb::spiffe_workload_api_server::{SpiffeWorkloadApi, SpiffeWorkloadApiServer};
use pb::{
    JwtBundlesRequest, JwtBundlesResponse, JwtsvidRequest, JwtsvidResponse, ValidateJwtsvidRequest,
    ValidateJwtsvidResponse, X509BundlesRequest, X509BundlesResponse, X509svid, X509svidRequest,
    X509svidResponse,
};

/// The header every Workload API call must carry (SPIFFE Workload API §5).
pub const SECURITY_HEADER: &str = "workload.spiffe.io";

/// One `FetchX509SVID` response: our SVID with its trust domain's bundle
/// (`bundle`, concatenated DER) and the federated bundles.
pub fn svid_response(
    spiffe_id: &str,
    svid: &Leaf,
    bundle: &[&TestCa],
    federated: &[&TestCa],
) -> X509svidResponse {
    X509svidResponse {
        svids: vec![X509svid {
            spiffe_id: spiffe_id.to_owned(),
            x509_svid: svid.cert.to_vec(),
            x509_svid_key: svid.key.secret_der().to_vec(),
            bundle: der_bundle(bundle),
            hint: String::new(),
        }],
        crl: Vec::new(),
        federated_bundles: federated
            .iter()
            .map(|ca| (format!("spiffe://{}", ca.trust_domain), der_bundle(&[ca])))
            .collect(),
    }
}

fn der_bundle(cas: &[&TestCa]) -> Vec<u8> {
    cas.iter().flat_map(|ca| ca.cert.to_vec()).collect()
}

/// What the agent answers: a response, or `None` for `PermissionDenied`.
type Answer = Option<X509svidResponse>;

/// SPIRE's answer to a workload it has no entry for.
fn denied() -> Status {
    Status::permission_denied("no identity issued")
}

/// Calls received, by whether they carried the security header.
#[derive(Default)]
struct Calls {
    with_header: AtomicUsize,
    without_header: AtomicUsize,
}

/// The agent's service: streams the current response and every later one.
#[derive(Clone)]
struct Agent {
    responses: watch::Receiver<Answer>,
    /// Set when the agent stops: open streams end.
    stopping: watch::Receiver<bool>,
    calls: Arc<Calls>,
}

impl Agent {
    fn check_header<T>(&self, request: &Request<T>) -> Result<(), Status> {
        match request.metadata().get(SECURITY_HEADER) {
            Some(value) if value == "true" => {
                self.calls.with_header.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
            // SPIRE's own answer.
            _ => {
                self.calls.without_header.fetch_add(1, Ordering::SeqCst);
                Err(Status::invalid_argument(
                    "security header missing from request",
                ))
            }
        }
    }

    /// A stream of `map(response)` for the current response and each new
    /// one, until the client goes or the agent stops.
    fn stream<T: Send + 'static>(
        &self,
        map: fn(X509svidResponse) -> T,
    ) -> ReceiverStream<Result<T, Status>> {
        let (sender, receiver) = mpsc::channel(4);
        let mut responses = self.responses.clone();
        let mut stopping = self.stopping.clone();
        tokio::spawn(async move {
            loop {
                let answer = responses.borrow_and_update().clone();
                let Some(response) = answer else {
                    // Ends the stream with the error, as SPIRE does.
                    let _ = sender.send(Err(denied())).await;
                    return;
                };
                if sender.send(Ok(map(response))).await.is_err() {
                    return;
                }
                tokio::select! {
                    changed = responses.changed() => if changed.is_err() { return },
                    _ = stopping.wait_for(|stop| *stop) => return,
                }
            }
        });
        ReceiverStream::new(receiver)
    }
}

#[tonic::async_trait]
impl SpiffeWorkloadApi for Agent {
    type FetchX509SVIDStream = ReceiverStream<Result<X509svidResponse, Status>>;
    type FetchX509BundlesStream = ReceiverStream<Result<X509BundlesResponse, Status>>;
    type FetchJWTBundlesStream = ReceiverStream<Result<JwtBundlesResponse, Status>>;

    async fn fetch_x509svid(
        &self,
        request: Request<X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        self.check_header(&request)?;
        if self.responses.borrow().is_none() {
            return Err(denied());
        }
        Ok(Response::new(self.stream(|r| r)))
    }

    async fn fetch_x509_bundles(
        &self,
        request: Request<X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        self.check_header(&request)?;
        Ok(Response::new(self.stream(|r| {
            let own = r.svids.first().map(|svid| {
                let td = svid
                    .spiffe_id
                    .trim_start_matches("spiffe://")
                    .split('/')
                    .next()
                    .unwrap_or_default();
                (format!("spiffe://{td}"), svid.bundle.clone())
            });
            X509BundlesResponse {
                crl: r.crl,
                bundles: r.federated_bundles.into_iter().chain(own).collect(),
            }
        })))
    }

    async fn fetch_jwtsvid(
        &self,
        request: Request<JwtsvidRequest>,
    ) -> Result<Response<JwtsvidResponse>, Status> {
        self.check_header(&request)?;
        Err(Status::unimplemented("the test agent serves X.509 only"))
    }

    async fn fetch_jwt_bundles(
        &self,
        request: Request<JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        self.check_header(&request)?;
        Err(Status::unimplemented("the test agent serves X.509 only"))
    }

    async fn validate_jwtsvid(
        &self,
        request: Request<ValidateJwtsvidRequest>,
    ) -> Result<Response<ValidateJwtsvidResponse>, Status> {
        self.check_header(&request)?;
        Err(Status::unimplemented("the test agent serves X.509 only"))
    }
}

/// A running (or stopped) test agent on one socket path.
pub struct TestAgent {
    path: PathBuf,
    responses: watch::Sender<Answer>,
    calls: Arc<Calls>,
    running: Option<Running>,
}

struct Running {
    stopping: watch::Sender<bool>,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl TestAgent {
    /// Serves `first` on a socket at `path`.
    pub async fn start(path: &Path, first: X509svidResponse) -> Self {
        let (responses, _) = watch::channel(Some(first));
        let mut agent = Self {
            path: path.to_owned(),
            responses,
            calls: Arc::default(),
            running: None,
        };
        agent.restart().await;
        agent
    }

    /// The endpoint, as `SPIFFE_ENDPOINT_SOCKET` would name it.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Workload API calls received with the security header.
    pub fn calls(&self) -> usize {
        self.calls.with_header.load(Ordering::SeqCst)
    }

    /// Workload API calls received without the security header (refused).
    pub fn calls_without_header(&self) -> usize {
        self.calls.without_header.load(Ordering::SeqCst)
    }

    /// Sends `response` on every open stream, and to later ones.
    pub fn push(&self, response: X509svidResponse) {
        self.responses.send_replace(Some(response));
    }

    /// Answers `PermissionDenied` from now on, ending open streams with it,
    /// as SPIRE does once the caller's registration entry is deleted;
    /// [`TestAgent::push`] issues again.
    pub fn deny(&self) {
        self.responses.send_replace(None);
    }

    /// Serves again on the same path (after [`TestAgent::stop`]).
    pub async fn restart(&mut self) {
        assert!(self.running.is_none(), "the agent is already running");
        let _ = std::fs::remove_file(&self.path);
        let listener = tokio::net::UnixListener::bind(&self.path).unwrap();
        let (stopping, stopping_rx) = watch::channel(false);
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let agent = Agent {
            responses: self.responses.subscribe(),
            stopping: stopping_rx,
            calls: self.calls.clone(),
        };
        let task = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(SpiffeWorkloadApiServer::new(agent))
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
                    let _ = shutdown_rx.await;
                }),
        );
        self.running = Some(Running {
            stopping,
            shutdown,
            task,
        });
    }

    /// Stops serving: no new connections, open streams end, the socket
    /// file is removed (as when the agent's pod goes away).
    pub async fn stop(&mut self) {
        let Some(running) = self.running.take() else {
            return;
        };
        // Shutdown first, so a client reconnecting as its stream ends
        // finds no server rather than a new stream.
        let _ = running.shutdown.send(());
        let _ = running.stopping.send(true);
        tokio::time::timeout(Duration::from_secs(10), running.task)
            .await
            .expect("the test agent did not stop")
            .unwrap()
            .unwrap();
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.stopping.send(true);
            let _ = running.shutdown.send(());
            running.task.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A Workload API client over the agent's socket, with or without the
/// security header, for the protocol's own tests.
pub async fn raw_client(
    path: &Path,
) -> pb::spiffe_workload_api_client::SpiffeWorkloadApiClient<tonic::transport::Channel> {
    let path = path.to_owned();
    let channel = tonic::transport::Endpoint::from_static("http://agent.invalid")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }))
        .await
        .unwrap();
    pb::spiffe_workload_api_client::SpiffeWorkloadApiClient::new(channel)
}

/// Mandate's identity from `agent`, reconnecting quickly; a withdrawn
/// trust domain's tasks are revoked at once.
pub async fn follow(agent: &TestAgent, trust: TrustPolicy) -> IdentityFeed {
    follow_with(
        agent,
        FollowOptions {
            trust,
            withdrawal_grace: Duration::ZERO,
            ..FollowOptions::default()
        },
    )
    .await
}

/// Mandate's identity from `agent` with these options, reconnecting quickly.
pub async fn follow_with(agent: &TestAgent, options: FollowOptions) -> IdentityFeed {
    IdentitySource::WorkloadApi(WorkloadApiSource {
        startup_timeout: Duration::from_secs(10),
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        ..WorkloadApiSource::new(agent.endpoint())
    })
    .follow(&options)
    .await
    .unwrap()
}

/// Mandate serving from `agent`'s identity, with `ca`'s clients.
pub async fn start(
    agent: &TestAgent,
    ca: TestCa,
    trust: TrustPolicy,
) -> (TestServer, IdentityFeed) {
    let feed = follow(agent, trust).await;
    let server = TestServer::start_with(Setup {
        identity: Some((ca, feed.clone())),
        ..Setup::default()
    })
    .await;
    (server, feed)
}

/// The agent's socket path under `dir`.
pub fn socket(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("agent.sock")
}
