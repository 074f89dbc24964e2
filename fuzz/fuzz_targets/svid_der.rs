//! Arbitrary DER as a caller's X.509-SVID, against the fixture CA.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use mandate::fuzzing::SvidHarness;

static HARNESS: LazyLock<SvidHarness> = LazyLock::new(|| {
    SvidHarness::new(
        include_bytes!("../fixtures/ca.der"),
        vec![include_bytes!("../fixtures/svid.der").to_vec()],
    )
    .expect("fuzz/fixtures")
});

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = HARNESS.check(data) {
        panic!("{violation}");
    }
});
