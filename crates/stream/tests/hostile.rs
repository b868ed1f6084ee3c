//! Malformed input: every byte sequence ends in `Ok` or a located error, never a panic or hang.

use proptest::prelude::*;
use rawsend_stream::stats::Stats;
use rawsend_stream::{
    Command, ErrorKind, Item, ReaderOptions, StreamPath, StreamReader, StreamWriter, Uuid, command_crc,
};

/// Reads everything, returning the commands seen and the error that stopped it.
/// Every item is also counted by [`Stats`], which must agree on the number of commands.
fn drain(bytes: &[u8], opts: ReaderOptions) -> (usize, Option<rawsend_stream::Error>) {
    let mut reader = StreamReader::with_options(bytes, opts);
    let mut stats = Stats::default();
    let mut commands = 0;
    let mut steps = 0;
    let error = loop {
        steps += 1;
        assert!(steps < 1_000_000, "reader does not make progress");
        match reader.next() {
            Ok(Some(item)) => {
                commands += usize::from(matches!(item, Item::Command(_)));
                stats.add(&item);
            }
            Ok(None) => break None,
            Err(err) => break Some(err),
        }
    };
    assert_eq!(stats.total_commands(), commands as u64);
    (commands, error)
}

fn sample_stream(version: u32) -> Vec<u8> {
    let mut writer = StreamWriter::new(Vec::new(), version).unwrap();
    let vol = StreamPath::new(b"vol").unwrap();
    let file = StreamPath::new(b"dir/file").unwrap();
    writer.write(&Command::Subvol { path: vol, uuid: Uuid([7; 16]), ctransid: 9 }).unwrap();
    writer.write(&Command::Mkfile { path: file, ino: 257 }).unwrap();
    writer.write(&Command::Write { path: file, offset: 0, data: &[0xab; 3000] }).unwrap();
    writer.write(&Command::Truncate { path: file, size: 3000 }).unwrap();
    writer.write(&Command::End).unwrap();
    writer.finish().unwrap()
}

fn first_error(bytes: &[u8]) -> rawsend_stream::Error {
    drain(bytes, ReaderOptions::default()).1.expect("an error")
}

#[test]
fn empty_and_short_headers() {
    assert_eq!(first_error(b"").kind, ErrorKind::EmptyStream);
    assert_eq!(first_error(b"btrfs-str").kind, ErrorKind::TruncatedHeader);
    assert_eq!(first_error(b"not-a-stream-at-all").kind, ErrorKind::BadMagic);
}

#[test]
fn truncation_at_every_length_is_an_error() {
    let stream = sample_stream(2);
    for len in 0..stream.len() {
        let err = first_error(&stream[..len]);
        assert!(
            matches!(
                err.kind,
                ErrorKind::EmptyStream
                    | ErrorKind::TruncatedHeader
                    | ErrorKind::TruncatedCommand
                    | ErrorKind::MissingEnd
            ),
            "len {len}: {err}"
        );
    }
    assert!(drain(&stream, ReaderOptions::default()).1.is_none());
}

#[test]
fn crc_mismatch_names_index_offset_command_and_path() {
    let mut stream = sample_stream(2);
    let last = stream.len() - 14; // inside the TRUNCATE size value, just before END
    stream[last] ^= 0x40;
    let err = first_error(&stream);
    assert!(matches!(err.kind, ErrorKind::CrcMismatch { .. }), "{err}");
    assert_eq!(err.location.index, Some(3));
    let text = err.to_string();
    assert!(text.contains("command #3 (truncate)") && text.contains("dir/file"), "{text}");
}

#[test]
fn huge_length_is_refused_before_allocation() {
    let mut stream = sample_stream(1);
    let at = 17; // first command header
    stream[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let err = first_error(&stream);
    assert!(matches!(err.kind, ErrorKind::CommandTooLarge { .. }), "{err}");
}

#[test]
fn hostile_paths_are_refused() {
    for bad in [&b"../escape"[..], b"/etc/passwd", b"a//b", b"a/./b"] {
        let mut frame = Vec::new();
        let payload = [&15u16.to_le_bytes()[..], &(bad.len() as u16).to_le_bytes(), bad].concat();
        frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        frame.extend_from_slice(&11u16.to_le_bytes());
        frame.extend_from_slice(&[0; 4]);
        frame.extend_from_slice(&payload);
        let crc = command_crc(&frame);
        frame[6..10].copy_from_slice(&crc.to_le_bytes());
        let stream = [&rawsend_stream::StreamHeader { version: 1 }.to_bytes()[..], &frame].concat();
        let err = first_error(&stream);
        assert!(matches!(err.kind, ErrorKind::BadPath { .. }), "{bad:?}: {err}");
    }
}

#[test]
fn stop_at_end_ignores_what_follows() {
    let stream = [sample_stream(2), b"garbage that is not a header".to_vec()].concat();
    let opts = ReaderOptions { stop_at_end: true, ..ReaderOptions::default() };
    assert_eq!(drain(&stream, opts), (5, None));
    assert_eq!(first_error(&stream).kind, ErrorKind::BadMagic);
}

#[test]
fn joined_streams_are_all_read() {
    let stream = [sample_stream(1), sample_stream(2)].concat();
    assert_eq!(drain(&stream, ReaderOptions::default()), (10, None));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        drain(&bytes, ReaderOptions::default());
        let with_header = [&rawsend_stream::StreamHeader { version: 2 }.to_bytes()[..], &bytes].concat();
        drain(&with_header, ReaderOptions::default());
    }

    #[test]
    fn mutated_streams_never_panic(
        version in 1u32..=3,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut stream = sample_stream(version);
        for (at, value) in flips {
            let i = at.index(stream.len());
            stream[i] = value;
        }
        let len = cut.index(stream.len() + 1);
        drain(&stream[..len], ReaderOptions::default());
    }
}

/// A continuation marker whose payload is not one, or whose CRC is wrong, is a located
/// error naming the marker; a well-formed one reads as `Item::Continue`.
#[test]
fn malformed_continuation_markers_are_located_errors() {
    use rawsend_stream::resume::{CONTINUE_COMMAND, Digest, Position, continuation_marker};

    let stream = sample_stream(2);
    let marker = continuation_marker(&Position { commands: 2, offset: 99, digest: Digest(5) });
    let with = |marker: &[u8]| [&stream[..17], marker, &stream[17..]].concat();
    let good = with(&marker);
    let mut reader = StreamReader::new(&good[..]);
    assert!(matches!(reader.next(), Ok(Some(Item::Header { .. }))));
    assert!(matches!(reader.next(), Ok(Some(Item::Continue { index: 0, offset: 17, .. }))));

    // Another payload with a valid CRC: one byte shorter.
    let mut short = marker[..marker.len() - 1].to_vec();
    let payload = short.len() as u32 - 10;
    short[..4].copy_from_slice(&payload.to_le_bytes());
    let crc = rawsend_stream::command_crc(&short);
    short[6..10].copy_from_slice(&crc.to_le_bytes());
    let mut bad_crc = marker.clone();
    bad_crc[20] ^= 1;
    for (bytes, kind) in [(short, "malformed continuation marker"), (bad_crc, "crc32c mismatch")] {
        let err = first_error(&with(&bytes));
        assert_eq!((err.location.index, err.location.offset), (Some(0), 17), "{err}");
        assert_eq!(err.location.command, Some(CONTINUE_COMMAND));
        let text = err.to_string();
        assert!(text.contains("(continuation marker)") && text.contains(kind), "{text}");
    }
}
