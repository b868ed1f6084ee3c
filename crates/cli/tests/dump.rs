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
