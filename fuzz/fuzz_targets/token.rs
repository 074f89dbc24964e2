//! A task token from arbitrary bytes, verified against the fixture key.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use mandate::fuzzing::TokenHarness;

static HARNESS: LazyLock<TokenHarness> = LazyLock::new(|| {
    TokenHarness::new(
        include_bytes!("../fixtures/token-key.pk8"),
        include_bytes!("../fixtures/svid.der"),
    )
    .expect("fuzz/fixtures")
});

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = HARNESS.check_bytes(data) {
        panic!("{violation}");
    }
});
