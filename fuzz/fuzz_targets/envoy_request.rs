//! An Envoy `CheckRequest` (protobuf, after a settings byte) through the
//! mapping, over the example route map.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use mandate::fuzzing::EnvoyHarness;

static HARNESS: LazyLock<EnvoyHarness> = LazyLock::new(|| {
    EnvoyHarness::new(include_str!("../../examples/envoy/routes.toml")).expect("example route map")
});

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = HARNESS.check(data) {
        panic!("{violation}");
    }
});
