//! Hostile send streams built with the real encoder: paths a receive must refuse.
//!
//! `StreamWriter::write_raw` writes a `Command<'_, RawPath>` as it is, so these streams
//! are encoded exactly as a sender would encode them (valid CRCs, kernel
//! attribute order), only their paths are bad. Shared by the stream crate's
//! tests of lenient decoding and the CLI's tests of `rawsend dump`.
//!
//! A path over 4095 bytes is not in [`INVALID_PATHS`]: btrfs-progs' dump
//! fails on it, so the tests that compare with btrfs-progs add it apart.

use rawsend_stream::{Attr, Command, RawPath, StreamPath, StreamWriter, Uuid};

/// A refused path component: one byte over `NAME_MAX`.
const LONG_COMPONENT: &[u8] = &[b'x'; 256];

/// Every rule of `StreamPath::new`, one or more ways: `(what it tries, the path)`.
pub const INVALID_PATHS: &[(&str, &[u8])] = &[
    ("dot-dot", b".."),
    ("dot-dot escape", b"../escape"),
    ("dot-dot inside", b"dir/../../escape"),
    ("absolute", b"/etc/passwd"),
    ("empty component", b"a//b"),
    ("trailing slash", b"a/"),
    ("dot", b"."),
    ("dot inside", b"a/./b"),
    ("NUL", b"a\0b"),
    ("NUL after a slash", b"a/\0b"),
    ("component over 255 bytes", LONG_COMPONENT),
];

/// The path attributes that are validated, each in the command that carries it.
pub const PATH_ATTRS: [Attr; 4] = [Attr::Path, Attr::PathTo, Attr::PathLink, Attr::ClonePath];

/// The UUID of the subvolume the streams send (and clone from).
pub const VOL_UUID: Uuid = Uuid(*b"rawsend-hostile!");

/// One command of [`invalid_path_stream`] that holds an invalid path.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    /// Its 0-based command index in the stream.
    pub index: u64,
    /// The attribute holding the invalid path.
    pub attr: Attr,
    /// What the path tries (from [`INVALID_PATHS`]).
    pub what: &'static str,
    /// The path.
    pub bytes: &'static [u8],
}

/// A command whose `attr` is `bad` and whose other path, if any, is a valid one.
pub fn command_with<'a>(attr: Attr, bad: &'a [u8]) -> Command<'a, RawPath<'a>> {
    let (bad, file) = (RawPath::new(bad), RawPath::new(b"file"));
    match attr {
        Attr::PathTo => Command::Rename { from: file, to: bad },
        Attr::PathLink => Command::Link { path: file, target: bad },
        Attr::ClonePath => Command::Clone {
            path: file,
            offset: 0,
            len: 4096,
            clone_uuid: VOL_UUID,
            clone_ctransid: 7,
            clone_path: bad,
            clone_offset: 0,
        },
        _ => Command::Mkfile { path: bad, ino: 258 },
    }
}

/// Encodes `commands` as one stream of `version`, after SUBVOL `vol` and MKFILE
/// `file` (indices 0 and 1), ending with END.
pub fn stream_of(version: u32, commands: &[Command<'_, RawPath<'_>>]) -> Vec<u8> {
    let mut writer = StreamWriter::new(Vec::new(), version).expect("writing to a Vec");
    let vol = StreamPath::new(b"vol").expect("valid");
    writer.write(&Command::Subvol { path: vol, uuid: VOL_UUID, ctransid: 7 }).expect("encodable");
    writer
        .write(&Command::Mkfile { path: StreamPath::new(b"file").expect("valid"), ino: 257 })
        .expect("encodable");
    for command in commands {
        writer.write_raw(command).expect("encodable");
    }
    writer.write(&Command::End).expect("encodable");
    writer.finish().expect("writing to a Vec")
}

/// Every invalid path in every path attribute, one command each, and the cases in command order.
pub fn invalid_path_stream(version: u32) -> (Vec<u8>, Vec<Case>) {
    let cases: Vec<Case> = PATH_ATTRS
        .iter()
        .flat_map(|&attr| INVALID_PATHS.iter().map(move |&(what, bytes)| (attr, what, bytes)))
        .zip(2..)
        .map(|((attr, what, bytes), index)| Case { index, attr, what, bytes })
        .collect();
    let commands: Vec<_> = cases.iter().map(|case| command_with(case.attr, case.bytes)).collect();
    (stream_of(version, &commands), cases)
}
