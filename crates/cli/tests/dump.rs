//! `rawsend dump` and `rawsend receive --dump` print exactly what `btrfs receive --dump` printed.
//!
//! The expected `.dump` files beside each fixture were made by btrfs-progs
//! 6.2 with `TZ=UTC` (see `testdata/README.md`); for joined streams they are
//! the concatenated dumps of every part, since btrfs-progs stops at the
//! first END and rawsend does not.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use rawsend_testutil::fixtures::{stream_fixtures as fixtures, testdata_dir as testdata};

fn rawsend(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rawsend")).args(args).env("TZ", "UTC").output().unwrap()
}

fn assert_dump_matches(args: &[&str], stream: &Path) {
    let expected = fs::read(stream.with_extension("dump")).unwrap();
    let mut full_args = args.to_vec();
    full_args.extend(["-f", stream.to_str().unwrap()]);
    let output = rawsend(&full_args);
    assert!(output.status.success(), "{}: {}", stream.display(), String::from_utf8_lossy(&output.stderr));
    if output.stdout != expected {
        let ours = String::from_utf8_lossy(&output.stdout);
        let theirs = String::from_utf8_lossy(&expected);
        let diff = ours.lines().zip(theirs.lines()).find(|(a, b)| a != b);
        panic!("{}: dump differs; first differing line (ours, progs): {diff:?}", stream.display());
    }
}

#[test]
fn dump_matches_btrfs_progs_for_every_fixture() {
    for stream in fixtures() {
        assert_dump_matches(&["dump"], &stream);
    }
}

#[test]
fn receive_dump_matches_btrfs_progs_for_every_fixture() {
    for stream in fixtures() {
        assert_dump_matches(&["receive", "--dump"], &stream);
    }
}

#[test]
fn json_has_one_object_per_command_with_location() {
    let stream = testdata().join("sample.stream");
    let output = rawsend(&["dump", "--json", "-f", stream.to_str().unwrap()]);
    assert!(output.status.success());
    let lines: Vec<serde_json::Value> = output
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    let text_lines = fs::read_to_string(stream.with_extension("dump")).unwrap().lines().count();
    assert_eq!(lines.len(), text_lines + 1, "every command plus END");
    assert_eq!(lines[0]["command"], "subvol");
    assert_eq!(lines[0]["offset"], 17);
    assert_eq!(lines.last().unwrap()["command"], "end");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["index"], i);
    }
}

#[test]
fn corrupt_stream_fails_with_location() {
    let mut bytes = fs::read(testdata().join("sample.stream")).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.stream");
    fs::write(&path, &bytes).unwrap();
    let output = rawsend(&["dump", "-f", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("command #") && stderr.contains("at byte"), "{stderr}");
}

/// A continuation (`rawsend send --resume`) dumps as a `continue` line naming where it
/// starts, then exactly the lines of the commands it carries; `--json` has the same.
#[test]
fn a_continuation_dumps_its_marker_then_its_commands() {
    use rawsend_stream::resume::{Identity, Position, Token, write_continuation};
    use rawsend_stream::{Item, StreamReader};

    let stream = testdata().join("streams/basic-full.v2c.stream");
    let bytes = fs::read(&stream).unwrap();
    let mut reader = StreamReader::new(&bytes[..]);
    let (mut position, mut identity) = (None, None);
    while let Some(item) = reader.next().unwrap() {
        match item {
            Item::Header { version, .. } => position = Some((Position::start(reader.offset()), version)),
            Item::Command(record) => {
                let (at, version) = position.unwrap();
                identity = identity.or_else(|| Identity::of(&record.command, version));
                position = Some((at.after(record.raw), version));
                if at.commands + 1 == 5 {
                    break;
                }
            }
            Item::Continue { .. } => unreachable!("a kernel stream"),
        }
    }
    let token = Token { identity: identity.unwrap(), position: position.unwrap().0 };
    let mut continuation = Vec::new();
    write_continuation(&bytes[..], &mut continuation, &token).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("continuation");
    fs::write(&path, &continuation).unwrap();

    let full = String::from_utf8(fs::read(stream.with_extension("dump")).unwrap()).unwrap();
    let full: Vec<&str> = full.lines().collect();
    let output = rawsend(&["dump", "-f", path.to_str().unwrap()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let Position { commands, offset, digest } = token.position;
    assert!(lines[0].starts_with("continue "), "{}", lines[0]);
    let fields = format!("after_commands={commands} after_offset={offset} digest={:016x}", digest.0);
    assert!(lines[0].ends_with(&fields), "{}", lines[0]);
    assert_eq!(lines[1], full[0], "the SUBVOL line");
    assert_eq!(lines[2..], full[5..], "the commands after the fifth");

    let output = rawsend(&["dump", "--json", "-f", path.to_str().unwrap()]);
    let first: serde_json::Value =
        serde_json::from_slice(output.stdout.split(|&b| b == b'\n').next().unwrap()).unwrap();
    assert_eq!(first["command"], "continue");
    assert_eq!(first["after_commands"], commands);
    assert_eq!(first["after_offset"], offset);
}
