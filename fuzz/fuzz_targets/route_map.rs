//! A route map file (then `METHOD HOST /PATH` lines after a NUL), checked
//! against the shipped schema.
#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use mandate::fuzzing::check_route_map;
use mandate::policy::PolicyEngine;

static ENGINE: LazyLock<PolicyEngine> = LazyLock::new(|| {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    PolicyEngine::load(
        &repo.join("policies"),
        &repo.join("schemas/mandate.cedarschema"),
    )
    .expect("the shipped policies")
});

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = check_route_map(data, Some(&ENGINE)) {
        panic!("{violation}");
    }
});
