//! Cerbos, the PDP issue 20 measures Mandate's AuthZEN door against: its
//! release binary from npm at [`CERBOS_VERSION`], installed under the
//! target directory the first time a bench needs it, and run as a child
//! process on free loopback ports with a policy equivalent to the one
//! Mandate decides in the load bench's `authzen` mode.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Cerbos release the comparison is pinned to.
pub const CERBOS_VERSION: &str = "0.55.0";

/// The patcher may `read` a repo: the same decision as Mandate's for
/// `repo:acme/payments`, written as attribute conditions. Cerbos does
/// strictly less work for it: it checks no task token (the scope comes in
/// the request as plain principal attributes), no delegation chain, no
/// task state and no SPIFFE ID binding, and the caller brings the
/// resource's parent and sensitivity where Mandate looks them up in its
/// registry.
const POLICY: &str = r#"apiVersion: api.cerbos.dev/v1
resourcePolicy:
  version: default
  resource: repo
  rules:
    - actions: ["read"]
      effect: EFFECT_ALLOW
      roles: ["agent"]
      condition:
        match:
          all:
            of:
              - expr: P.id.startsWith("spiffe://mandate.local/agents/")
              - expr: '"read" in P.attr.scope.actions'
              - expr: R.attr.parent in P.attr.scope.resources
              - expr: R.attr.sensitivity <= P.attr.scope.max_sensitivity
"#;

/// The AuthZEN evaluation the policy allows: Cerbos maps `subject.id` to
/// the principal, `subject.properties["cerbos.roles"]` to its roles and the
/// other properties to its attributes, `resource.type` to the resource
/// kind and `resource.properties` to its attributes.
pub fn evaluation(agent: &str) -> String {
    serde_json::json!({
        "subject": {
            "type": "agent",
            "id": agent,
            "properties": {
                "cerbos.roles": ["agent"],
                "scope": {"actions": ["read"], "resources": ["repos"], "max_sensitivity": 1},
            },
        },
        "action": {"name": "read"},
        "resource": {
            "type": "repo",
            "id": "repo:acme/payments",
            "properties": {"parent": "repos", "sensitivity": 1},
        },
    })
    .to_string()
}

/// A running `cerbos server`; killed when dropped.
pub struct CerbosProcess {
    child: Child,
    /// Its HTTPS base URL, `https://localhost:PORT`.
    pub url: String,
    log: PathBuf,
}

/// The files Cerbos serves TLS with.
pub struct Tls<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
    /// Client certificates, when given, must chain to this CA.
    pub client_ca: &'a Path,
}

impl CerbosProcess {
    /// Starts Cerbos in `dir` (its config, policy and log), installing it
    /// when missing.
    pub fn start(dir: &Path, tls: &Tls<'_>) -> Self {
        let binary = binary();
        let policies = dir.join("cerbos-policies");
        fs::create_dir_all(&policies).unwrap();
        fs::write(policies.join("repo.yaml"), POLICY).unwrap();
        let http = free_port();
        // JSON is YAML, and serde_json quotes the paths.
        let config = serde_json::json!({
            "server": {
                "httpListenAddr": format!("127.0.0.1:{http}"),
                "grpcListenAddr": format!("127.0.0.1:{}", free_port()),
                "tls": {"cert": tls.cert, "key": tls.key, "caCert": tls.client_ca},
            },
            "storage": {"driver": "disk", "disk": {"directory": policies, "watchForChanges": false}},
            "audit": {"enabled": false},
            "telemetry": {"disabled": true},
        });
        let config_file = dir.join("cerbos.yaml");
        fs::write(&config_file, config.to_string()).unwrap();
        let log = dir.join("cerbos.log");
        let file = fs::File::create(&log).unwrap();
        let child = Command::new(binary)
            .arg("server")
            .arg(format!("--config={}", config_file.display()))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Self {
            child,
            url: format!("https://localhost:{http}"),
            log,
        }
    }

    /// Waits until `/_cerbos/health` answers through `client`.
    pub async fn ready(&mut self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let health = format!("{}/_cerbos/health", self.url);
        loop {
            if let Ok(r) = client.get(&health).send().await
                && r.status().is_success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)),
                "cerbos did not start; its log:\n{}",
                fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for CerbosProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port free a moment ago (Cerbos needs it in its config).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The Cerbos binary, installed when missing: `npm install
/// @cerbos/cerbos-linux-x64@CERBOS_VERSION` into `target/cerbos-VERSION`.
/// Fails the caller, with npm's output, when that cannot be done.
fn binary() -> PathBuf {
    // `target/release/mandate` is two levels below the target directory.
    let target = Path::new(env!("CARGO_BIN_EXE_mandate"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_owned();
    let prefix = target.join(format!("cerbos-{CERBOS_VERSION}"));
    let binary = prefix.join("node_modules/@cerbos/cerbos-linux-x64/cerbos-linux-x64");
    if version(&binary).as_deref() == Some(CERBOS_VERSION) {
        return binary;
    }
    let out = Command::new("npm")
        .args([
            "install",
            "--no-save",
            "--no-audit",
            "--no-fund",
            "--prefix",
        ])
        .arg(&prefix)
        .arg(format!("@cerbos/cerbos-linux-x64@{CERBOS_VERSION}"))
        .output()
        .map_err(|e| format!("cannot run npm: {e}"))
        .unwrap();
    assert!(
        out.status.success(),
        "npm install failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        version(&binary).as_deref(),
        Some(CERBOS_VERSION),
        "`{}` after npm install",
        binary.display()
    );
    binary
}

/// `0.55.0`, the first line of `cerbos --version`.
fn version(binary: &Path) -> Option<String> {
    let out = Command::new(binary).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Some(text.lines().next()?.trim().to_owned())
}
