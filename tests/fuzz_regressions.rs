//! The fuzz targets' inputs as tests: every seed (`fuzz/seeds/<target>/`)
//! and every input that once found a bug (`fuzz/regressions/<target>/`)
//! runs through the same entry points as the fuzz targets
//! (`mandate::fuzzing`), which check the invariants: no panic, no
//! acceptance of forged or invalid input, a refusal that says why. A file
//! named `accept-*` must be accepted, every other one refused, so a check
//! that starts refusing everything fails here too.
//!
//! `cargo run --example fuzz_seeds` writes the fixtures (only when missing:
//! findings are signed by their key) and the seeds again.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::path::{Path, PathBuf};

use mandate::fuzzing::{
    EnvoyHarness, Outcome, SvidHarness, TokenHarness, check_authzen_request, check_config,
    check_route_map, fuzz_dir,
};
use mandate::policy::PolicyEngine;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fuzz_dir().join("fixtures").join(name)).unwrap()
}

/// Every seed and regression input of `target`, by path.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for kind in ["seeds", "regressions"] {
        let dir = fuzz_dir().join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            files.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    files.sort();
    assert!(!files.is_empty(), "no inputs for `{target}`");
    files
}

/// Runs `check` over every input of `target`; checks the invariants and
/// that `accept-*` files, and only they, are accepted.
fn run(target: &str, check: impl Fn(&[u8]) -> Result<Outcome, String>) {
    let mut accepted = 0;
    for (path, data) in inputs(target) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let outcome =
            check(&data).unwrap_or_else(|violation| panic!("{}: {violation}", path.display()));
        match outcome {
            Outcome::Accepted => {
                assert!(name.starts_with("accept-"), "{}: accepted", path.display());
                accepted += 1;
            }
            Outcome::Refused(error) => {
                assert!(
                    !name.starts_with("accept-"),
                    "{}: refused: {error}",
                    path.display()
                );
            }
        }
    }
    assert!(
        accepted > 0,
        "`{target}` has no input that must be accepted"
    );
}

#[test]
fn token_inputs_hold() {
    let harness = TokenHarness::from_fixtures().unwrap();
    run("token", |data| harness.check_bytes(data));
}

#[test]
fn envoy_request_inputs_hold() {
    let routes = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/envoy/routes.toml"),
    )
    .unwrap();
    let harness = EnvoyHarness::new(&routes).unwrap();
    run("envoy_request", |data| harness.check(data));
}

#[test]
fn route_map_inputs_hold() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let engine = PolicyEngine::load(
        &repo.join("policies"),
        &repo.join("schemas/mandate.cedarschema"),
    )
    .unwrap();
    run("route_map", |data| check_route_map(data, Some(&engine)));
}

#[test]
fn config_inputs_hold() {
    // Relative paths in a config resolve against the working directory,
    // which `cargo test` sets to the repository root, as the fuzzer's
    // `fuzz/` holds no `policies/`: a seed that must be accepted names
    // its paths from the repository root.
    run("config", check_config);
}

#[test]
fn authzen_request_inputs_hold() {
    run("authzen_request", check_authzen_request);
}

#[test]
fn svid_der_inputs_hold() {
    let harness = SvidHarness::new(&fixture("ca.der"), vec![fixture("svid.der")]).unwrap();
    run("svid_der", |data| harness.check(data));
}
