//! Entry points shared by the fuzz targets (`fuzz/`) and their regression
//! test (`tests/fuzz_regressions.rs`): each runs arbitrary input through the
//! code a request takes and checks the invariants, so an input that once
//! broke one fails `cargo test` as well as the fuzzer.
//!
//! `Err` names a broken invariant (the fuzz target panics on it, the test
//! fails); a refusal of bad input is an ordinary [`Outcome::Refused`].
//! Not an API: hidden from the docs, and free to change with the targets.

mod authzen;
mod config;
mod envoy;
mod svid;
mod token;

pub use authzen::check_authzen_request;
pub use config::{check_config, check_route_map};
pub use envoy::EnvoyHarness;
pub use svid::SvidHarness;
pub use token::TokenHarness;

/// The trust domain of the fixtures (`fuzz/fixtures/`).
pub const TRUST_DOMAIN: &str = "mandate.local";
/// The SPIFFE ID the fixture SVID names and tokens are issued to.
pub const SUBJECT: &str = "spiffe://mandate.local/agents/patcher";
/// `iss` and `aud` of the fixture tokens: the server's SPIFFE ID.
pub const ISSUER: &str = "spiffe://mandate.local/mandate";
/// The fixed time the harnesses run at (2026-05-28), inside the fixtures'
/// validity, so a seed stays valid whenever the fuzzer runs.
pub const NOW: i64 = 1_780_000_000;

/// The fuzz workspace in this checkout (`fuzz/`): its fixtures, seeds and
/// regressions, for the regression test and the seed writer.
pub fn fuzz_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

impl TokenHarness {
    /// The harness of the `token` target, from `fuzz/fixtures/` as the
    /// target embeds them.
    pub fn from_fixtures() -> Result<Self, String> {
        let fixtures = fuzz_dir().join("fixtures");
        let read = |name: &str| {
            std::fs::read(fixtures.join(name)).map_err(|e| format!("fuzz/fixtures/{name}: {e}"))
        };
        Self::new(&read("token-key.pk8")?, &read("svid.der")?)
    }
}

/// What the code under test made of an input that broke no invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted (a token verified, a request mapped, a file parsed).
    Accepted,
    /// Refused, with the error a caller or operator would see.
    Refused(String),
}

impl Outcome {
    /// A refusal, whose message must say something.
    fn refused(message: impl Into<String>) -> Result<Self, String> {
        let message = message.into();
        if message.trim().is_empty() {
            return Err("refused with an empty error message".to_owned());
        }
        Ok(Self::Refused(message))
    }
}

/// `Err(violation)` unless `holds`.
fn ensure(holds: bool, violation: impl FnOnce() -> String) -> Result<(), String> {
    if holds { Ok(()) } else { Err(violation()) }
}
