//! Running the `mandate` binary the way an operator does: with none of the
//! caller's `MANDATE_*` environment, and as a client of a test server with
//! its SVID in files.

use std::process::{Command, Output};

use super::TestServer;

/// The variables `mandate` reads from the environment; a test that wants
/// one sets it on the command.
const ENVIRONMENT: [&str; 4] = [
    "MANDATE_CONFIG",
    "MANDATE_STORE",
    "MANDATE_STORE_KEY",
    "MANDATE_LOG_FORMAT",
];

/// The `mandate` binary, run from the repository root, without the
/// `MANDATE_*` variables of whoever runs the tests.
pub fn mandate() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mandate"));
    command.current_dir(super::repo());
    for name in ENVIRONMENT {
        command.env_remove(name);
    }
    command
}

/// `mandate ARGS`, finished.
pub fn run(args: &[&str]) -> Output {
    mandate().args(args).output().unwrap()
}

/// `command`, finished, off the async runtime (the server under test runs
/// on it).
pub async fn run_blocking(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

/// What the command printed on standard output.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What the command printed on standard error.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Everything the command printed, standard output first.
pub fn text(out: &Output) -> String {
    stdout(out) + &stderr(out)
}

/// The exit code; -1 when a signal ended the command.
pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// The exit code and standard error, where the store commands report.
pub fn code_and_stderr(out: &Output) -> (i32, String) {
    (code(out), stderr(out))
}

/// Asserts the exit code (showing both streams when it differs); returns
/// standard output.
#[track_caller]
pub fn expect(out: &Output, code: i32) -> String {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

/// A client's SVID and the server's CA bundle, written to files for the
/// `--cert`, `--key` and `--ca` flags.
pub struct ClientFiles {
    _dir: tempfile::TempDir,
    pub cert: String,
    pub key: String,
    pub ca: String,
}

impl ClientFiles {
    /// A fresh SVID for `spiffe://<trust domain><path>` from `server`'s CA.
    pub fn new(server: &TestServer, path: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = server.ca.svid(path).write(dir.path(), "svid");
        let ca = dir.path().join("bundle.pem");
        std::fs::write(&ca, &server.ca.pem).unwrap();
        Self {
            cert: cert.display().to_string(),
            key: key.display().to_string(),
            ca: ca.display().to_string(),
            _dir: dir,
        }
    }
}

/// `mandate ARGS` as a client of the server at `addr`, presenting `files`.
pub async fn run_as(files: &ClientFiles, addr: &str, args: &[&str]) -> Output {
    let mut command = mandate();
    command.args(args).args([
        "--server",
        addr,
        "--cert",
        &files.cert,
        "--key",
        &files.key,
        "--ca",
        &files.ca,
    ]);
    run_blocking(command).await
}
