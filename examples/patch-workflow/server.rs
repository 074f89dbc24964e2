//! The Mandate server of the story: a `mandate serve` process in a fresh
//! directory, with a dev trust domain holding an SVID for each agent, the
//! shipped policies plus the workflow's own, and the workflow's catalog.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use mandate::identity::dev::DevTrustDomain;

use crate::TRUST_DOMAIN;
use crate::agent::ROLES;

/// The repository root, for the shipped policies and schema.
const REPO_ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// How long the server may take to start serving.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running server process; killed when dropped.
pub struct Server {
    child: Child,
    /// Its gRPC address, `127.0.0.1:PORT`.
    pub addr: String,
    /// Its log (stderr).
    pub log: PathBuf,
    /// The approvals pages, `127.0.0.1:PORT`, when asked for.
    pub ui: Option<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The example's own directory.
pub fn example_dir() -> PathBuf {
    Path::new(REPO_ROOT).join("examples").join("patch-workflow")
}

/// Lays out `dir` (dev trust domain, policies) and starts the server there;
/// with `ui`, also the approvals pages with the dev login.
pub fn start(dir: &Path, ui: bool) -> Result<Server, String> {
    DevTrustDomain::init(
        &dir.join("data").join("dev"),
        &spiffe::TrustDomain::new(TRUST_DOMAIN).map_err(|e| e.to_string())?,
        &ROLES.map(|r| r.name.to_owned()),
    )
    .map_err(|e| format!("cannot create the dev trust domain: {e}"))?;
    let policies = dir.join("policies");
    copy_policies(
        &Path::new(REPO_ROOT).join("policies"),
        &policies.join("shipped"),
    )?;
    copy_policies(&example_dir().join("policies"), &policies.join("workflow"))?;

    // The pages on a free loopback port, with the dev login: alice signs in
    // by typing her name (the dev trust domain has no identity provider).
    let config = dir.join("mandate.toml");
    let ui_table = if ui {
        "[ui]\nlisten = \"127.0.0.1:0\"\ndev_login = true\n"
    } else {
        ""
    };
    fs::write(&config, ui_table).map_err(|e| e.to_string())?;
    let log = dir.join("server.log");
    let mut child = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .args(["--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--policies")
        .arg(&policies)
        .arg("--schema")
        .arg(
            Path::new(REPO_ROOT)
                .join("schemas")
                .join("mandate.cedarschema"),
        )
        .arg("--catalog")
        .arg(example_dir().join("catalog.toml"))
        .args(["--log-format", "json"])
        // Only what the driver waits for, and what goes wrong.
        .env("RUST_LOG", "warn,mandate::server=info,mandate::ui=info")
        // Nothing of the caller's own Mandate set-up may leak in.
        .env_remove("MANDATE_CONFIG")
        .env_remove("MANDATE_STORE")
        .env_remove("MANDATE_STORE_KEY")
        .env_remove("MANDATE_LOG_FORMAT")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the server: {e}"))?;
    let stderr = child.stderr.take().ok_or("the server has no stderr")?;
    let mut file = fs::File::create(&log).map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::channel();
    // Copies the log to its file, and hands over the gRPC address the
    // server bound (port 0: no clash with anything else on the machine).
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = writeln!(file, "{line}");
            if let Some(addr) = logged_addr(&line, "serving the ui", "ui") {
                let _ = tx.send((true, addr));
            } else if let Some(addr) = logged_addr(&line, "serving", "grpc") {
                let _ = tx.send((false, addr));
            }
        }
    });
    let mut server = Server {
        child,
        addr: String::new(),
        log,
        ui: None,
    };
    // The pages are bound before the gRPC port says it is serving.
    while server.addr.is_empty() {
        let (is_ui, addr) = rx.recv_timeout(START_TIMEOUT).map_err(|_| {
            format!(
                "the server did not start; its log:\n{}",
                fs::read_to_string(&server.log).unwrap_or_default()
            )
        })?;
        if is_ui {
            server.ui = Some(addr);
        } else {
            server.addr = addr;
        }
    }
    Ok(server)
}

/// The address in field `field` of the log line `message`, when `line` is
/// that one.
fn logged_addr(line: &str, message: &str, field: &str) -> Option<String> {
    let json: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = json.get("fields")?;
    (fields.get("message")?.as_str()? == message)
        .then(|| fields.get(field)?.as_str().map(str::to_owned))
        .flatten()
}

/// Copies the `*.cedar` files of `from` into `to`.
fn copy_policies(from: &Path, to: &Path) -> Result<(), String> {
    fs::create_dir_all(to).map_err(|e| e.to_string())?;
    let entries = fs::read_dir(from).map_err(|e| format!("`{}`: {e}", from.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if let Some(name) = path.file_name()
            && path.extension().is_some_and(|e| e == "cedar")
        {
            fs::copy(&path, to.join(name))
                .map_err(|e| format!("cannot copy `{}`: {e}", path.display()))?;
        }
    }
    Ok(())
}
