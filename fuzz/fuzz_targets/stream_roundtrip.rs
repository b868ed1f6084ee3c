//! Every command that decodes re-encodes to bytes that decode to the same command,
//! strictly and leniently (paths a receive refuses are kept byte for byte).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rawsend_stream::{Command, Frame, StreamHeader};

fuzz_target!(|data: &[u8]| {
    let Some((&version, frame_bytes)) = data.split_first() else { return };
    let version = u32::from(version % 3) + 1;
    let Ok(frame) = Frame::parse(frame_bytes, version) else { return };
    if let Ok(command) = Command::decode(&frame) {
        let mut encoded = Vec::new();
        if command.encode(version, &mut encoded).is_ok() {
            let again = Frame::parse(&encoded, version).expect("re-encoded frame parses");
            assert_eq!(Command::decode(&again).expect("re-encoded command decodes"), command);
        }
    }
    let Ok(command) = Command::decode_raw(&frame) else { return };
    let mut encoded = Vec::new();
    if command.encode(version, &mut encoded).is_err() {
        return;
    }
    let again = Frame::parse(&encoded, version).expect("re-encoded frame parses");
    assert_eq!(Command::decode_raw(&again).expect("re-encoded command decodes"), command);
    let _ = StreamHeader { version }.to_bytes();
});
