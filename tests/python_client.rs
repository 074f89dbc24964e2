//! The Python client (`clients/python`) against this build's `mandate`
//! binary: a virtualenv under the target dir, the pinned requirements
//! (`clients/python/requirements-test.txt`), the package built from
//! `proto/`, `mypy --strict` over it, then its pytest suite, which starts
//! its own `mandate serve`. Fails on any step that fails (no Python, no
//! network for pip, a type error, a failed or missing test); it never
//! passes without having run the suite.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

/// Fewer passed tests than this means part of the suite did not run.
const MIN_PASSED: u32 = 30;

fn run(what: &str, command: &mut Command) -> Output {
    let started = Instant::now();
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {command:?}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{what} failed ({}) after {:.1} s: {command:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status,
        started.elapsed().as_secs_f64(),
    );
    println!("{what}: ok in {:.1} s", started.elapsed().as_secs_f64());
    output
}

/// The count before `word` in pytest's closing line (`33 passed, 1 failed in 4.2s`).
fn count(summary: &str, word: &str) -> u32 {
    let words: Vec<&str> = summary
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .collect();
    words
        .windows(2)
        .find(|pair| pair[1] == word)
        .map_or(0, |pair| pair[0].parse().unwrap_or(0))
}

#[test]
fn the_python_client_passes_its_suite_against_a_real_server() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let client = repo.join("clients/python");
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_mandate"));
    // target/<profile>/mandate -> target/
    let target = binary
        .parent()
        .and_then(Path::parent)
        .expect("the binary lives in target/<profile>/");
    let venv = target.join("python-client-venv");
    let python = venv.join("bin/python");
    let system_python = std::env::var("MANDATE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());

    if !python.exists() {
        run(
            "python3 -m venv",
            Command::new(&system_python).args(["-m", "venv"]).arg(&venv),
        );
    }
    let pip = |what: &str, args: &[&str]| {
        run(
            what,
            Command::new(&python)
                .args(["-m", "pip", "--disable-pip-version-check", "--no-input"])
                .args(args)
                .current_dir(&client),
        )
    };
    pip(
        "pip install -r requirements-test.txt",
        &["install", "-r", "requirements-test.txt"],
    );
    // Everything is pinned above; the package itself adds nothing unpinned.
    pip(
        "pip install ./clients/python",
        &[
            "install",
            "--no-build-isolation",
            "--no-deps",
            "--force-reinstall",
            ".",
        ],
    );
    pip("pip check", &["check"]);
    run(
        "mypy --strict -p mandate",
        Command::new(&python)
            .args(["-m", "mypy", "--config-file"])
            .arg(client.join("pyproject.toml"))
            .args(["--cache-dir"])
            .arg(target.join("python-client-mypy-cache"))
            .args(["-p", "mandate"])
            .current_dir(target),
    );
    let output = run(
        "pytest",
        Command::new(&python)
            .args(["-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA"])
            .arg(client.join("tests"))
            .env("MANDATE_BIN", &binary)
            .current_dir(&client),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.contains(" passed") || l.contains(" failed") || l.contains(" error"))
        .unwrap_or_else(|| panic!("no pytest summary line in:\n{stdout}"));
    let passed = count(summary, "passed");
    assert_eq!(count(summary, "failed"), 0, "{stdout}");
    assert_eq!(count(summary, "error"), 0, "{stdout}");
    assert_eq!(count(summary, "errors"), 0, "{stdout}");
    assert_eq!(count(summary, "skipped"), 0, "{stdout}");
    assert!(
        passed >= MIN_PASSED,
        "only {passed} Python tests passed (at least {MIN_PASSED} expected):\n{stdout}"
    );
    println!("{summary}");
}

#[test]
fn the_summary_is_read_right() {
    let line = "===== 33 passed, 1 failed, 2 skipped in 39.61s =====";
    assert_eq!(count(line, "passed"), 33);
    assert_eq!(count(line, "failed"), 1);
    assert_eq!(count(line, "skipped"), 2);
    assert_eq!(count("5 errors in 1.0s", "errors"), 5);
    assert_eq!(count("1 passed in 0.1s", "failed"), 0);
}
