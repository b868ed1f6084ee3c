//! Any bytes into the stream reader, strict and lenient: it must end in `Ok(None)` or an
//! error, never panic, and every error must carry the offset of a position inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rawsend_stream::{Item, ReaderOptions, StreamReader};

/// Checks one item or error against the input; `false` when reading is over.
fn check<P>(data: &[u8], next: Result<Option<Item<'_, P>>, rawsend_stream::Error>) -> bool {
    match next {
        Ok(Some(Item::Command(record))) => assert!(record.offset as usize + record.raw.len() <= data.len()),
        Ok(Some(Item::Header { offset, .. })) => assert!(offset as usize + 17 <= data.len()),
        Ok(None) => return false,
        Err(err) => {
            assert!(err.location.offset as usize <= data.len());
            return false;
        }
    }
    true
}

fuzz_target!(|data: &[u8]| {
    for stop_at_end in [false, true] {
        let opts = ReaderOptions { stop_at_end, frame_cap: 256 * 1024, ..ReaderOptions::default() };
        let mut reader = StreamReader::with_options(data, opts);
        while check(data, reader.next()) {}
        let mut reader = StreamReader::with_options(data, opts);
        while check(data, reader.next_lenient()) {}
    }
});
