//! Every kernel-made fixture decodes with valid CRCs and re-encodes to identical bytes.

use std::fs;

use rawsend_stream::{Command, Item, StreamHeader, StreamReader};
use rawsend_testutil::fixtures::stream_fixtures as fixtures;

/// Decodes a whole file and re-encodes every item, returning the bytes and the command count.
fn reencode(bytes: &[u8]) -> (Vec<u8>, usize) {
    let mut reader = StreamReader::new(bytes);
    let mut out = Vec::with_capacity(bytes.len());
    let mut commands = 0;
    let mut version = 0;
    while let Some(item) = reader.next().unwrap_or_else(|err| panic!("{err}")) {
        match item {
            Item::Header { version: v, .. } => {
                version = v;
                out.extend_from_slice(&StreamHeader { version }.to_bytes());
            }
            Item::Command(record) => {
                let start = out.len();
                record.command.encode(version, &mut out).unwrap();
                assert_eq!(&out[start..], record.raw, "command #{} re-encodes differently", record.index);
                commands += 1;
            }
            Item::Continue { .. } => panic!("a continuation marker in a kernel stream"),
        }
    }
    (out, commands)
}

#[test]
fn every_fixture_decodes_and_reencodes_identically() {
    for path in fixtures() {
        let bytes = fs::read(&path).unwrap();
        let (out, commands) = reencode(&bytes);
        assert!(commands > 1, "{}: no commands", path.display());
        assert!(out == bytes, "{}: re-encoded stream differs", path.display());
    }
}

#[test]
fn every_stream_in_a_fixture_ends_with_end() {
    for path in fixtures() {
        let bytes = fs::read(&path).unwrap();
        let mut reader = StreamReader::new(&bytes[..]);
        let mut last_was_end = false;
        let mut headers = 0;
        while let Some(item) = reader.next().unwrap() {
            match item {
                Item::Header { .. } => {
                    assert!(headers == 0 || last_was_end, "{}: header before END", path.display());
                    headers += 1;
                }
                Item::Command(record) => last_was_end = matches!(record.command, Command::End),
                Item::Continue { .. } => panic!("{}: a continuation marker", path.display()),
            }
        }
        assert!(last_was_end && headers >= 1, "{}", path.display());
        assert_eq!(reader.offset(), bytes.len() as u64);
    }
}
