//! An AuthZEN request body, parsed as the evaluation and evaluations
//! endpoints parse it, and each evaluation mapped as the door maps it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mandate::fuzzing::check_authzen_request;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = check_authzen_request(data) {
        panic!("{violation}");
    }
});
