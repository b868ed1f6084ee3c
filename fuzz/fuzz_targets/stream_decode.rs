//! Any bytes into the stream reader: it must end in `Ok(None)` or an error, never panic,
//! and every error must carry the offset of a position inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rawsend_stream::{Item, ReaderOptions, StreamReader};

fuzz_target!(|data: &[u8]| {
    for stop_at_end in [false, true] {
        let opts = ReaderOptions { stop_at_end, frame_cap: 256 * 1024, ..ReaderOptions::default() };
        let mut reader = StreamReader::with_options(data, opts);
        loop {
            match reader.next() {
                Ok(Some(Item::Command(record))) => assert!(record.offset as usize + record.raw.len() <= data.len()),
                Ok(Some(Item::Header { offset, .. })) => assert!(offset as usize + 17 <= data.len()),
                Ok(None) => break,
                Err(err) => {
                    assert!(err.location.offset as usize <= data.len());
                    break;
                }
            }
        }
    }
});
