//! Arbitrary data through encode→decode with every algorithm and level.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rawsend_fuzz::codec::fuzz_round_trip(data));
