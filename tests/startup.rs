//! `mandate serve` as a user runs it: refuses bad policies and bad
//! configuration with exit code 2 and a message naming the problem, and
//! stops cleanly on SIGTERM.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn mandate() -> Command {
    let mut command = common::cli::mandate();
    command.env("RUST_LOG", "info");
    command
}

/// A working directory with the shipped schema and the given policy files.
fn workdir(policies: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("schemas")).unwrap();
    std::fs::copy(
        common::repo().join("schemas/mandate.cedarschema"),
        dir.path().join("schemas/mandate.cedarschema"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    for (name, text) in policies {
        std::fs::write(dir.path().join("policies").join(name), text).unwrap();
    }
    dir
}

/// Runs `mandate serve` in `dir` and expects it to exit by itself.
fn serve_exits(dir: &Path, args: &[&str]) -> (i32, String) {
    let mut command = mandate();
    command.arg("serve");
    for flag in ["--listen", "--http-listen"] {
        if !args.contains(&flag) {
            command.args([flag, "127.0.0.1:0"]);
        }
    }
    let mut child = command
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
            return (status.code().unwrap_or(-1), stderr);
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("`mandate serve` kept running; it should have refused to start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

const GOOD: &str = r#"@id("ok")
permit (principal, action == Mandate::Action::"read", resource);
"#;

#[test]
fn a_policy_with_a_syntax_error_refuses_start_and_names_file_and_line() {
    let dir = workdir(&[
        ("good.cedar", GOOD),
        (
            "broken.cedar",
            "// a comment\n@id(\"broken\")\npermit (principal, action, resource\nwhen { true };\n",
        ),
    ]);
    let (code, stderr) = serve_exits(dir.path(), &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("broken.cedar:4:"), "{stderr}");
    assert!(!stderr.contains("serving"), "{stderr}");
}

#[test]
fn a_policy_that_fails_validation_refuses_start_and_names_file_and_line() {
    let dir = workdir(&[
        ("good.cedar", GOOD),
        (
            "typo.cedar",
            "@id(\"typo\")\npermit (principal, action == Mandate::Action::\"read\", resource is Mandate::Resource)\nwhen { resource.colour == \"red\" };\n",
        ),
    ]);
    let (code, stderr) = serve_exits(dir.path(), &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("typo.cedar:3:"), "{stderr}");
    assert!(stderr.contains("colour"), "{stderr}");
}

#[test]
fn bad_configuration_reports_every_problem_with_exit_code_2() {
    let dir = workdir(&[("good.cedar", GOOD)]);
    let (code, stderr) = serve_exits(
        dir.path(),
        &[
            "--listen",
            "nowhere",
            "--max-batch-size",
            "0",
            "--svid-cert",
            "missing.pem",
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    let errors: Vec<_> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert!(errors.len() >= 3, "{stderr}");
    assert!(stderr.contains("`server.listen` `nowhere`"), "{stderr}");
    assert!(stderr.contains("`server.max_batch_size` `0`"), "{stderr}");
    assert!(stderr.contains("identity.svid_key"), "{stderr}");
}

#[test]
fn an_unknown_key_in_mandate_toml_is_refused() {
    let dir = workdir(&[("good.cedar", GOOD)]);
    std::fs::write(dir.path().join("mandate.toml"), "listn = \"127.0.0.1:1\"\n").unwrap();
    let (code, stderr) = serve_exits(dir.path(), &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("mandate.toml"), "{stderr}");
    assert!(stderr.contains("unknown key `listn`"), "{stderr}");
}

#[test]
fn a_file_in_the_old_flat_layout_is_refused_with_the_new_key_names() {
    let dir = workdir(&[("good.cedar", GOOD)]);
    std::fs::write(
        dir.path().join("mandate.toml"),
        "policy_poll_ms = 0\n[server]\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let (code, stderr) = serve_exits(dir.path(), &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(
            "`policy_poll_ms` is a key of the old flat layout; it is now `policies.poll_ms`"
        ),
        "{stderr}"
    );
}

#[test]
fn config_print_default_prints_the_shipped_example() {
    let output = mandate()
        .args(["config", "print-default"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let example = std::fs::read_to_string(common::repo().join("mandate.toml.example")).unwrap();
    assert_eq!(String::from_utf8(output.stdout).unwrap(), example);
}

#[test]
fn audit_and_telemetry_keys_that_cannot_be_honoured_refuse_start() {
    let dir = workdir(&[("good.cedar", GOOD)]);
    std::fs::write(
        dir.path().join("mandate.toml"),
        "[audit]\nstore_retention_days = 7\n[telemetry]\notlp_endpoint = \"http://127.0.0.1:4317\"\n",
    )
    .unwrap();
    let (code, stderr) = serve_exits(dir.path(), &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("`audit.store_retention_days` is set but the store sink is off"),
        "{stderr}"
    );
    // Asked for in the configuration, OTLP export is never silently off.
    if !cfg!(feature = "otel") {
        assert!(stderr.contains("--features otel"), "{stderr}");
    }
}

#[test]
fn a_bad_catalog_refuses_start_and_names_every_entry_at_fault() {
    let dir = workdir(&[("good.cedar", GOOD)]);
    std::fs::write(
        dir.path().join("catalog.toml"),
        "[[agents]]\nspiffe_id = \"spiffe://mandate.local/agents/a\"\ngroups = [\"ghosts\"]\n\n[[resources]]\nid = \"r\"\nsensitivity = \"secret\"\n",
    )
    .unwrap();
    let (code, stderr) = serve_exits(dir.path(), &["--catalog", "catalog.toml"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(!stderr.contains("serving"), "{stderr}");
    let errors: Vec<_> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 2, "{stderr}");
    assert!(
        stderr.contains("catalog `catalog.toml`: agent `spiffe://mandate.local/agents/a`: group `ghosts` is not registered"),
        "{stderr}"
    );
    assert!(stderr.contains("resource `r`"), "{stderr}");
    assert!(stderr.contains("`secret` is not on the scale"), "{stderr}");
}

#[test]
fn a_bad_route_map_refuses_start_and_names_the_rules() {
    let dir = workdir(&[("good.cedar", GOOD)]);
    std::fs::write(
        dir.path().join("routes.toml"),
        "[[route]]\nname = \"repos\"\npath = \"/repos/{owner\"\naction = \"read\"\nresource = \"repo:{owner}\"\n\n[[route]]\nname = \"typo\"\npath = \"/x\"\naction = \"raed\"\nresource = \"x\"\n",
    )
    .unwrap();
    let (code, stderr) = serve_exits(dir.path(), &["--route-map", "routes.toml"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(!stderr.contains("serving"), "{stderr}");
    assert!(
        stderr.contains("route map `routes.toml`: route 1 (`repos`): path `/repos/{owner`"),
        "{stderr}"
    );
    // The syntax error stops validation before names are checked; fixed,
    // the unknown action is named.
    std::fs::write(
        dir.path().join("routes.toml"),
        "[[route]]\nname = \"typo\"\npath = \"/x\"\naction = \"raed\"\nresource = \"x\"\n",
    )
    .unwrap();
    let (code, stderr) = serve_exits(dir.path(), &["--route-map", "routes.toml"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(
            "route map `routes.toml`: route `typo`: action `raed` is not declared in the schema"
        ),
        "{stderr}"
    );
    let (code, stderr) = serve_exits(dir.path(), &["--route-map", "missing.toml"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("`envoy.route_map` `missing.toml` does not exist"),
        "{stderr}"
    );
}

#[test]
fn a_catalog_beside_the_config_file_is_loaded_and_its_syntax_checked() {
    let dir = workdir(&[("good.cedar", GOOD)]);
    std::fs::write(dir.path().join("mandate.toml"), "# defaults\n").unwrap();
    std::fs::write(
        dir.path().join("catalog.toml"),
        "[[groups]]\nid = \"ops\"\n\n[[resources]\nid = \"x\"\n",
    )
    .unwrap();
    let (code, stderr) = serve_exits(dir.path(), &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("catalog.toml"), "{stderr}");
    assert!(stderr.contains("line 4"), "{stderr}");
}

#[test]
fn a_bad_sensitivity_scale_is_refused() {
    let dir = workdir(&[("good.cedar", GOOD)]);
    std::fs::write(
        dir.path().join("mandate.toml"),
        "[policies]\nsensitivity_levels = [\"low\", \"low\"]\n",
    )
    .unwrap();
    let (code, stderr) = serve_exits(dir.path(), &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("listed twice"), "{stderr}");
}

/// `mandate serve` running in a work directory, its stderr followed line by
/// line.
struct Served {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Served {
    fn start(dir: &Path) -> Self {
        Self::start_with(dir, &[], &[])
    }

    /// `mandate serve` with more flags and environment variables.
    fn start_with(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut child = mandate()
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
            ])
            .args(args)
            .envs(envs.iter().copied())
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        let mut served = Self {
            child,
            lines,
            seen: Vec::new(),
        };
        served.wait_for("serving");
        served
    }

    /// Waits (at most 30 s) until a line containing `text` was logged.
    fn wait_for(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.seen.iter().any(|l| l.contains(text)) {
            let line = self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("never logged `{text}`: {:?}", self.seen));
            self.seen.push(line);
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGTERM, then the exit code.
    fn stop(mut self) -> Option<i32> {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn serves_with_a_dev_trust_domain_and_exits_0_on_sigterm() {
    let dir = workdir(&[("good.cedar", GOOD)]);
    let served = Served::start(dir.path());
    assert!(dir.path().join("data/dev/bundle.pem").is_file());
    assert!(
        dir.path()
            .join("data/dev/agents/patcher/svid.pem")
            .is_file()
    );
    assert!(
        served.seen.iter().any(|l| l.contains("mandate authorize")),
        "{:?}",
        served.seen
    );
    assert_eq!(served.stop(), Some(0));
}

#[test]
fn sighup_reloads_the_policies_and_a_broken_set_is_refused() {
    let dir = workdir(&[("good.cedar", GOOD)]);
    // No file watch: only the signal reloads.
    std::fs::write(dir.path().join("mandate.toml"), "[policies]\npoll_ms = 0\n").unwrap();
    let mut served = Served::start(dir.path());

    std::fs::write(
        dir.path().join("policies/more.cedar"),
        "@id(\"more\")\npermit (principal, action == Mandate::Action::\"write\", resource);\n",
    )
    .unwrap();
    served.signal("HUP");
    served.wait_for("policies reloaded");
    assert!(
        served
            .seen
            .iter()
            .any(|l| l.contains("policies reloaded") && l.contains("SIGHUP")),
        "{:?}",
        served.seen
    );

    std::fs::write(
        dir.path().join("policies/broken.cedar"),
        "permit (principal,\n",
    )
    .unwrap();
    served.signal("HUP");
    served.wait_for("policy reload refused");
    assert!(
        served.seen.iter().any(|l| l.contains("broken.cedar")),
        "{:?}",
        served.seen
    );
    // Still serving: a refused reload keeps the previous set.
    assert!(served.child.try_wait().unwrap().is_none());
    assert_eq!(served.stop(), Some(0));
}

#[test]
fn serves_from_a_spire_agent_named_by_spiffe_endpoint_socket_and_follows_rotations() {
    use common::workload_api::{TestAgent, svid_response};
    let dir = workdir(&[("good.cedar", GOOD)]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ca = common::TestCa::new(common::TRUST_DOMAIN);
    let id = "spiffe://mandate.local/mandate";
    let socket = dir.path().join("agent.sock");
    let agent = runtime.block_on(TestAgent::start(
        &socket,
        svid_response(id, &ca.svid("/mandate"), &[&ca], &[]),
    ));
    let mut served = Served::start_with(
        dir.path(),
        &["--identity", "workload-api"],
        &[("SPIFFE_ENDPOINT_SOCKET", &agent.endpoint())],
    );
    assert!(
        served
            .seen
            .iter()
            .any(|l| l.contains("identity ready") && l.contains("workload-api") && l.contains(id)),
        "{:?}",
        served.seen
    );
    agent.push(svid_response(id, &ca.svid("/mandate"), &[&ca], &[]));
    served.wait_for("identity rotated");
    assert_eq!(served.stop(), Some(0));
    drop(agent);
}

#[test]
fn an_unreachable_spire_agent_fails_start_after_the_timeout() {
    let dir = workdir(&[("good.cedar", GOOD)]);
    std::fs::write(
        dir.path().join("mandate.toml"),
        "[identity]\nsource = \"workload-api\"\nworkload_api_socket = \"unix:///nonexistent/agent.sock\"\nworkload_api_timeout_secs = 1\n",
    )
    .unwrap();
    let started = Instant::now();
    let (code, stderr) = serve_exits(dir.path(), &[]);
    assert!(started.elapsed() >= Duration::from_secs(1), "{stderr}");
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("workload API"), "{stderr}");
    assert!(stderr.contains("/nonexistent/agent.sock"), "{stderr}");
    assert!(!stderr.contains("serving"), "{stderr}");
}

#[test]
fn a_first_svid_that_cannot_be_served_is_waited_on_until_the_timeout() {
    use common::workload_api::{TestAgent, svid_response};
    let dir = workdir(&[("good.cedar", GOOD)]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ca = common::TestCa::new(common::TRUST_DOMAIN);
    let stranger = common::TestCa::new(common::TRUST_DOMAIN);
    // Signed by a CA our own bundle does not hold: refused, never served.
    let agent = runtime.block_on(TestAgent::start(
        &dir.path().join("agent.sock"),
        svid_response(
            "spiffe://mandate.local/mandate",
            &stranger.svid("/mandate"),
            &[&ca],
            &[],
        ),
    ));
    std::fs::write(
        dir.path().join("mandate.toml"),
        format!(
            "[identity]\nsource = \"workload-api\"\nworkload_api_socket = \"{}\"\nworkload_api_timeout_secs = 2\n",
            agent.endpoint()
        ),
    )
    .unwrap();
    let started = Instant::now();
    let (code, stderr) = serve_exits(dir.path(), &[]);
    assert!(started.elapsed() >= Duration::from_secs(2), "{stderr}");
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("does not verify against our own bundle"),
        "{stderr}"
    );
    assert!(!stderr.contains("serving"), "{stderr}");
    drop(agent);
}

#[test]
fn the_spire_example_serves_against_an_agent_for_its_trust_domain() {
    use common::workload_api::{TestAgent, svid_response};
    let dir = workdir(&[("good.cedar", GOOD)]);
    for file in ["mandate.toml", "catalog.toml"] {
        std::fs::copy(
            common::repo().join("examples/spire").join(file),
            dir.path().join(file),
        )
        .unwrap();
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let acme = common::TestCa::new("acme.org");
    let partner = common::TestCa::new("partner.example");
    let id = "spiffe://acme.org/mandate";
    let agent = runtime.block_on(TestAgent::start(
        &dir.path().join("agent.sock"),
        svid_response(id, &acme.svid("/mandate"), &[&acme], &[&partner]),
    ));
    let mut served = Served::start_with(
        dir.path(),
        &["--workload-api-socket", &agent.endpoint()],
        &[],
    );
    served.wait_for("catalog loaded");
    assert!(
        served.seen.iter().any(|l| l.contains("identity ready")
            && l.contains(id)
            && l.contains("partner.example")),
        "{:?}",
        served.seen
    );
    assert_eq!(served.stop(), Some(0));
    drop(agent);
}

#[test]
fn log_format_json_writes_one_json_object_a_line() {
    let dir = workdir(&[("good.cedar", GOOD)]);
    let served = Served::start_with(dir.path(), &["--log-format", "json"], &[]);
    let serving = served
        .seen
        .iter()
        .find(|l| l.contains("serving"))
        .cloned()
        .unwrap();
    let line: serde_json::Value = serde_json::from_str(&serving).unwrap();
    assert_eq!(line["fields"]["message"], "serving", "{serving}");
    assert_eq!(line["level"], "INFO", "{serving}");
    assert_eq!(served.stop(), Some(0));
}

#[test]
fn every_log_line_of_a_decision_carries_its_decision_id() {
    let dir = workdir(&[("good.cedar", GOOD)]);
    let mut served = Served::start_with(dir.path(), &["--log-format", "json"], &[]);
    let serving: serde_json::Value = served
        .seen
        .iter()
        .find_map(|l| {
            serde_json::from_str(l)
                .ok()
                .filter(|v: &serde_json::Value| v["fields"]["message"] == "serving")
        })
        .unwrap();
    let grpc = serving["fields"]["grpc"].as_str().unwrap().to_owned();
    let dev = dir.path().join("data/dev");
    let out = mandate()
        .args([
            "authorize",
            "--server",
            &grpc,
            "--action",
            "read",
            "--resource",
            "handbook",
            "--json",
        ])
        .arg("--cert")
        .arg(dev.join("agents/patcher/svid.pem"))
        .arg("--key")
        .arg(dev.join("agents/patcher/svid.key"))
        .arg("--ca")
        .arg(dev.join("bundle.pem"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let decision_id = answer["decision_id"].as_str().unwrap().to_owned();
    served.wait_for(&format!("\"decision_id\":\"{decision_id}\""));
    let logged: serde_json::Value = served
        .seen
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == "decision")
        .unwrap();
    assert_eq!(logged["span"]["name"], "decision", "{logged}");
    assert_eq!(
        logged["span"]["decision_id"],
        decision_id.as_str(),
        "{logged}"
    );
    assert_eq!(served.stop(), Some(0));
}
