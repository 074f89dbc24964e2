//! A `mandate.toml`, parsed and resolved as `mandate serve` does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mandate::fuzzing::check_config;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = check_config(data) {
        panic!("{violation}");
    }
});
