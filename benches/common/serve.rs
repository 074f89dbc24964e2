//! A real `mandate serve` process, for benches that must measure the server
//! apart from the load (its memory, its survival): the release binary
//! Cargo built next to the bench, started in a directory of the bench's
//! own, its gRPC address read from its JSON `serving` log line.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long the server may take to start serving.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `mandate serve`; killed when dropped.
pub struct ServeProcess {
    child: Child,
    /// Its gRPC address, `127.0.0.1:PORT`.
    pub addr: String,
    /// Its log (stderr, JSON lines).
    pub log: PathBuf,
}

impl ServeProcess {
    /// Starts `mandate serve` in `dir` on free loopback ports, with `args`
    /// after the listen flags and `RUST_LOG` set to `log_filter`.
    pub fn start(dir: &Path, args: &[&std::ffi::OsStr], log_filter: &str) -> Self {
        let log = dir.join("server.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_mandate"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
            .args(args)
            .args(["--log-format", "json"])
            .env("RUST_LOG", log_filter)
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
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut file = fs::File::create(&log).unwrap();
        let (tx, rx) = mpsc::channel();
        // Copies the log to its file and hands over the address the server
        // bound (port 0: no clash with anything else on the machine).
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(file, "{line}");
                if let Some(addr) = serving_addr(&line) {
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = rx
            .recv_timeout(START_TIMEOUT)
            .map_err(|_| {
                let _ = child.kill();
                format!(
                    "mandate serve did not start; its log:\n{}",
                    fs::read_to_string(&log).unwrap_or_default()
                )
            })
            .unwrap();
        Self { child, addr, log }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running (a crash ends a soak).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The gRPC address of the log line `serving`, when `line` is that one.
fn serving_addr(line: &str) -> Option<String> {
    let json: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = json.get("fields")?;
    (fields.get("message")?.as_str()? == "serving")
        .then(|| fields.get("grpc")?.as_str().map(str::to_owned))
        .flatten()
}

/// Resident set size of process `pid` in KiB (`VmRSS` of
/// `/proc/PID/status`); `None` once it is gone or off Linux.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Copies the `*.cedar` files of `from` into `to`.
pub fn copy_policies(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        if let Some(name) = path.file_name()
            && path.extension().is_some_and(|e| e == "cedar")
        {
            fs::copy(&path, to.join(name)).unwrap();
        }
    }
}
