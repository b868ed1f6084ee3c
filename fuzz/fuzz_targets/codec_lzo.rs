//! Hostile data into the lzo decoder: no panic, no write outside the output.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rawsend_codec::Compression;

fuzz_target!(|data: &[u8]| rawsend_fuzz::codec::fuzz_decode(Compression::Lzo4K, data));
