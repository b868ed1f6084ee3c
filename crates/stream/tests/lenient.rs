//! Lenient reading (`StreamReader::next_lenient`): paths that `next` refuses are
//! kept and named, everything else is decoded and refused exactly as by `next`.

use proptest::prelude::*;
use rawsend_stream::{Attr, Command, Error, ErrorKind, InvalidPath, Item, RawPath, StreamPath, StreamReader};
use rawsend_testutil::hostile::{PATH_ATTRS, command_with, invalid_path_stream, stream_of};

/// What one read gave, comparable across the two modes.
#[derive(Debug, PartialEq)]
enum Seen {
    Header(u32),
    Continue(u64),
    /// Index, offset, raw bytes, path attributes (bytes) and the invalid ones.
    Command(u64, u64, Vec<u8>, Vec<(Attr, Vec<u8>)>, Vec<(Attr, Vec<u8>)>),
    Error(Error),
}

fn strict(bytes: &[u8]) -> Vec<Seen> {
    let mut reader = StreamReader::new(bytes);
    drain(|| match reader.next() {
        Ok(Some(Item::Header { version, .. })) => Some(Seen::Header(version)),
        Ok(Some(Item::Continue { index, .. })) => Some(Seen::Continue(index)),
        Ok(Some(Item::Command(r))) => {
            let paths = r.command.path_attrs().map(|(a, p)| (a, p.as_bytes().to_vec())).collect();
            Some(Seen::Command(r.index, r.offset, r.raw.to_vec(), paths, Vec::new()))
        }
        Ok(None) => None,
        Err(err) => Some(Seen::Error(err)),
    })
}

fn lenient(bytes: &[u8]) -> Vec<Seen> {
    let mut reader = StreamReader::new(bytes);
    drain(|| match reader.next_lenient() {
        Ok(Some(Item::Header { version, .. })) => Some(Seen::Header(version)),
        Ok(Some(Item::Continue { index, .. })) => Some(Seen::Continue(index)),
        Ok(Some(Item::Command(r))) => {
            let paths = r.command.path_attrs().map(|(a, p)| (a, p.as_bytes().to_vec())).collect();
            let invalid = r.command.invalid_paths().map(|bad| (bad.attr, bad.bytes.to_vec())).collect();
            Some(Seen::Command(r.index, r.offset, r.raw.to_vec(), paths, invalid))
        }
        Ok(None) => None,
        Err(err) => Some(Seen::Error(err)),
    })
}

/// Calls `next` until it returns `None` or, after an error, the reader stops making progress.
fn drain(mut next: impl FnMut() -> Option<Seen>) -> Vec<Seen> {
    let mut seen = Vec::new();
    while let Some(item) = next() {
        assert!(seen.len() < 100_000, "reader does not make progress");
        let stop = matches!(&item, Seen::Error(err) if is_final(err));
        seen.push(item);
        if stop {
            break;
        }
    }
    seen
}

/// Errors after which the reader returns `Ok(None)` (framing), as opposed to frame-local ones.
fn is_final(err: &Error) -> bool {
    !matches!(
        err.kind,
        ErrorKind::CrcMismatch { .. }
            | ErrorKind::InvalidAttr(_)
            | ErrorKind::AttrOverrun { .. }
            | ErrorKind::DuplicateAttr(_)
            | ErrorKind::MissingAttr(_)
            | ErrorKind::AttrSize { .. }
            | ErrorKind::BadPath { .. }
            | ErrorKind::UnknownCommand(_)
    )
}

/// Each item of the lenient read agrees with the strict one: a command with
/// invalid paths is, strictly, the error for the first of them; anything else is the same.
fn assert_modes_agree(bytes: &[u8]) {
    let (strict, lenient) = (strict(bytes), lenient(bytes));
    assert_eq!(strict.len(), lenient.len(), "{strict:?}\n{lenient:?}");
    for (s, l) in strict.iter().zip(&lenient) {
        match (s, l) {
            (Seen::Error(err), Seen::Command(index, offset, _, _, invalid)) => {
                let (attr, bytes) = invalid.first().expect("lenient Ok where strict failed: an invalid path");
                assert_eq!(err.location.index, Some(*index));
                assert_eq!(err.location.offset, *offset);
                let reason = StreamPath::new(bytes).unwrap_err();
                assert_eq!(err.kind, ErrorKind::BadPath { attr: *attr, reason });
            }
            (Seen::Error(strict_err), Seen::Error(lenient_err))
                if matches!(strict_err.kind, ErrorKind::BadPath { .. })
                    && !matches!(lenient_err.kind, ErrorKind::BadPath { .. }) =>
            {
                // The strict decoder stopped at the path before reaching the other error.
                assert_eq!(strict_err.location, lenient_err.location);
            }
            _ => assert_eq!(s, l),
        }
    }
}

#[test]
fn every_invalid_path_in_every_attribute_is_kept_and_named() {
    for version in 1..=3 {
        let (stream, cases) = invalid_path_stream(version);
        let seen = lenient(&stream);
        // Header, SUBVOL, MKFILE, the cases, END.
        assert_eq!(seen.len(), cases.len() + 4, "{seen:?}");
        assert!(matches!(seen.last(), Some(Seen::Command(_, _, _, _, invalid)) if invalid.is_empty()));
        for case in &cases {
            let Seen::Command(index, _, _, paths, invalid) = &seen[case.index as usize + 1] else {
                panic!("{case:?}: {:?}", seen[case.index as usize + 1]);
            };
            assert_eq!(*index, case.index);
            assert!(paths.contains(&(case.attr, case.bytes.to_vec())), "{case:?}: {paths:?}");
            assert_eq!(invalid, &[(case.attr, case.bytes.to_vec())], "{case:?}");
        }
        assert_modes_agree(&stream);
    }
}

#[test]
fn strict_reading_still_refuses_every_invalid_path() {
    let (stream, cases) = invalid_path_stream(2);
    let errors: Vec<Error> = strict(&stream)
        .into_iter()
        .filter_map(|seen| match seen {
            Seen::Error(err) => Some(err),
            _ => None,
        })
        .collect();
    assert_eq!(errors.len(), cases.len());
    for (err, case) in errors.iter().zip(&cases) {
        assert_eq!(err.location.index, Some(case.index));
        assert!(matches!(err.kind, ErrorKind::BadPath { attr, .. } if attr == case.attr), "{case:?}: {err}");
    }
}

#[test]
fn invalid_paths_reports_attribute_bytes_and_reason() {
    let command = command_with(Attr::ClonePath, b"../src");
    let invalid: Vec<InvalidPath<'_>> = command.invalid_paths().collect();
    let reason = StreamPath::new(b"../src").unwrap_err();
    assert_eq!(invalid, [InvalidPath { attr: Attr::ClonePath, bytes: b"../src", reason }]);
    let both = Command::Rename { from: RawPath::new(b"/a"), to: RawPath::new(b"b//c") };
    let attrs: Vec<Attr> = both.invalid_paths().map(|bad| bad.attr).collect();
    assert_eq!(attrs, [Attr::Path, Attr::PathTo]);
    assert_eq!(Command::Mkfile { path: RawPath::new(b"ok/x"), ino: 1 }.invalid_paths().count(), 0);
}

#[test]
fn a_path_over_path_max_is_kept_too() {
    let long = b"abc/".repeat(1024);
    let stream = stream_of(1, &[command_with(Attr::Path, &long)]);
    let seen = lenient(&stream);
    assert!(
        matches!(&seen[3], Seen::Command(2, _, _, _, invalid) if invalid == &[(Attr::Path, long.clone())])
    );
    assert_modes_agree(&stream);
}

#[test]
fn crc_and_framing_errors_are_still_errors() {
    let (stream, cases) = invalid_path_stream(1);
    let mut bad_crc = stream.clone();
    let second_case = cases[1].index;
    // Flip a byte of the first case's path: its CRC no longer matches.
    let Seen::Command(_, offset, ..) = &lenient(&stream)[cases[0].index as usize + 1] else { unreachable!() };
    bad_crc[*offset as usize + 14] ^= 0x20;
    let seen = lenient(&bad_crc);
    let Seen::Error(err) = &seen[cases[0].index as usize + 1] else { panic!("{seen:?}") };
    assert!(matches!(err.kind, ErrorKind::CrcMismatch { .. }), "{err}");
    assert!(matches!(&seen[second_case as usize + 1], Seen::Command(i, ..) if *i == second_case));
    let truncated = &stream[..stream.len() - 3];
    let Some(Seen::Error(err)) = lenient(truncated).pop() else { panic!() };
    assert_eq!(err.kind, ErrorKind::TruncatedCommand);
}

/// A path made of the bytes that matter to validation.
fn any_path() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(prop::sample::select(&b"a/.\0"[..]), 0..10)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn lenient_reading_never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        lenient(&bytes);
        let with_header = [&rawsend_stream::StreamHeader { version: 2 }.to_bytes()[..], &bytes].concat();
        lenient(&with_header);
    }

    #[test]
    fn modes_agree_on_any_paths_in_any_attribute(
        version in 1u32..=3,
        paths in proptest::collection::vec((0..PATH_ATTRS.len(), any_path()), 1..6),
        flip in proptest::option::of((any::<prop::sample::Index>(), any::<u8>())),
    ) {
        let commands: Vec<_> = paths.iter().map(|(attr, bytes)| command_with(PATH_ATTRS[*attr], bytes)).collect();
        let mut stream = stream_of(version, &commands);
        if let Some((at, value)) = flip {
            let i = at.index(stream.len());
            stream[i] = value;
        }
        assert_modes_agree(&stream);
    }
}
