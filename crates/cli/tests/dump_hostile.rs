//! `rawsend dump` of hostile streams: every command printed as `btrfs receive --dump` prints it,
//! the ones a receive refuses marked on stderr; framing and CRC errors still stop the dump.
//!
//! The streams come from `rawsend_testutil::hostile` (encoded by the real
//! encoder, paths as they are): every way a path is refused, in PATH,
//! PATH_TO, PATH_LINK and CLONE_PATH. Each is dumped by rawsend and by
//! btrfs-progs (`/usr/bin/btrfs receive --dump`, no root needed) and the
//! outputs are compared byte for byte.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rawsend_stream::{Attr, Item, StreamPath, StreamReader};
use rawsend_testutil::hostile::{Case, command_with, invalid_path_stream, stream_of};
use serde_json::{Value, json};
use tempfile::TempDir;

fn run(program: &str, args: &[&str], stream: &Path) -> Output {
    let mut command = Command::new(program);
    command.args(args).arg("-f").arg(stream).env("TZ", "UTC");
    command.output().unwrap_or_else(|err| panic!("cannot run {program}: {err}"))
}

fn rawsend(args: &[&str], stream: &Path) -> Output {
    run(env!("CARGO_BIN_EXE_rawsend"), args, stream)
}

fn btrfs_progs_dump(stream: &Path) -> Output {
    run("/usr/bin/btrfs", &["receive", "--dump"], stream)
}

fn write_stream(dir: &TempDir, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join("hostile.stream");
    fs::write(&path, bytes).unwrap();
    path
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Byte offset of every command, by index.
fn offsets(bytes: &[u8]) -> Vec<u64> {
    let mut reader = StreamReader::new(bytes);
    let mut offsets = Vec::new();
    while let Some(item) = reader.next_lenient().unwrap() {
        if let Item::Command(record) = item {
            offsets.push(record.offset);
        }
    }
    offsets
}

/// The warning `rawsend dump` prints for `case`.
fn warning(case: &Case, offset: u64) -> String {
    let command = match case.attr {
        Attr::PathTo => "rename",
        Attr::PathLink => "link",
        Attr::ClonePath => "clone",
        _ => "mkfile",
    };
    let reason = StreamPath::new(case.bytes).unwrap_err();
    format!(
        "rawsend: warning: command #{} ({command}) at byte {offset}, {} {:?}: receive would refuse it: {reason}",
        case.index,
        case.attr,
        String::from_utf8_lossy(case.bytes)
    )
}

#[test]
fn dump_prints_every_invalid_path_as_btrfs_progs_does() {
    let dir = TempDir::new().unwrap();
    for version in [1, 2] {
        let (bytes, cases) = invalid_path_stream(version);
        let stream = write_stream(&dir, &bytes);
        let progs = btrfs_progs_dump(&stream);
        assert!(progs.status.success(), "btrfs receive --dump: {}", text(&progs.stderr));
        assert_eq!(text(&progs.stdout).lines().count(), cases.len() + 2, "{}", text(&progs.stdout));
        for args in [&["dump"][..], &["receive", "--dump"]] {
            let ours = rawsend(args, &stream);
            assert_eq!(ours.status.code(), Some(0), "{args:?}: {}", text(&ours.stderr));
            assert_eq!(text(&ours.stdout), text(&progs.stdout), "{args:?}, v{version}");
            assert_eq!(ours.stdout, progs.stdout, "{args:?}, v{version}");
        }
    }
}

#[test]
fn stderr_marks_each_invalid_path_and_counts_the_commands() {
    let dir = TempDir::new().unwrap();
    let (bytes, cases) = invalid_path_stream(2);
    let offsets = offsets(&bytes);
    let output = rawsend(&["dump"], &write_stream(&dir, &bytes));
    assert_eq!(output.status.code(), Some(0));
    let stderr = text(&output.stderr);
    let mut want: Vec<String> =
        cases.iter().map(|case| warning(case, offsets[case.index as usize])).collect();
    want.push(format!("rawsend: warning: {} commands have paths that receive would refuse", cases.len()));
    assert_eq!(stderr.lines().collect::<Vec<_>>(), want);
}

#[test]
fn a_command_with_two_invalid_paths_is_marked_twice_and_counted_once() {
    let dir = TempDir::new().unwrap();
    let rename = rawsend_stream::Command::Rename {
        from: rawsend_stream::RawPath::new(b"/from"),
        to: rawsend_stream::RawPath::new(b"../to"),
    };
    let bytes = stream_of(1, &[rename]);
    let output = rawsend(&["dump"], &write_stream(&dir, &bytes));
    assert_eq!(output.status.code(), Some(0));
    let stderr = text(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(lines[0].contains("command #2 (rename)") && lines[0].contains(r#"path "/from""#), "{stderr}");
    assert!(lines[1].contains("command #2 (rename)") && lines[1].contains(r#"path_to "../to""#), "{stderr}");
    assert_eq!(lines[2], "rawsend: warning: 1 command has a path that receive would refuse");
}

#[test]
fn json_names_the_invalid_attributes_and_keeps_the_paths() {
    let dir = TempDir::new().unwrap();
    let (bytes, cases) = invalid_path_stream(2);
    let output = rawsend(&["dump", "--json"], &write_stream(&dir, &bytes));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let objects: Vec<Value> = output
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(objects.len(), cases.len() + 3);
    for case in &cases {
        let object = &objects[case.index as usize];
        let reason = StreamPath::new(case.bytes).unwrap_err().to_string();
        assert_eq!(
            object["invalid"],
            json!([{ "attribute": case.attr.name(), "reason": reason }]),
            "{case:?}"
        );
        let path = std::str::from_utf8(case.bytes).unwrap();
        assert_eq!(object[case.attr.name()], path, "{case:?}");
    }
    for valid in [&objects[0], &objects[1], objects.last().unwrap()] {
        assert!(valid.get("invalid").is_none(), "{valid}");
    }
}

#[test]
fn a_path_over_path_max_is_printed_where_btrfs_progs_stops() {
    let dir = TempDir::new().unwrap();
    let long = b"abc/".repeat(1024);
    let bytes = stream_of(1, &[command_with(Attr::Path, &long), command_with(Attr::Path, b"after")]);
    let stream = write_stream(&dir, &bytes);
    let progs = btrfs_progs_dump(&stream);
    assert_eq!(progs.status.code(), Some(1), "btrfs-progs fails on a joined path of 4096 bytes or more");
    let ours = rawsend(&["dump"], &stream);
    assert_eq!(ours.status.code(), Some(0), "{}", text(&ours.stderr));
    assert!(ours.stdout.starts_with(&progs.stdout));
    let lines: Vec<String> = text(&ours.stdout).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 4, "subvol, mkfile file, the long one, mkfile after");
    assert_eq!(lines[2].len(), "mkfile          ./vol/".len() + long.len() - 1);
    assert_eq!(lines[3], "mkfile          ./vol/after");
    assert!(text(&ours.stderr).contains("path longer than 4095 bytes"));
}

#[test]
fn a_crc_error_still_stops_the_dump() {
    let dir = TempDir::new().unwrap();
    let (mut bytes, cases) = invalid_path_stream(1);
    let offsets = offsets(&bytes);
    let bad = &cases[3];
    // Inside the value of its first attribute: only the CRC is wrong.
    bytes[offsets[bad.index as usize] as usize + 14] ^= 0x20;
    let stream = write_stream(&dir, &bytes);
    for args in [&["dump"][..], &["dump", "--json"], &["receive", "--dump"]] {
        let output = rawsend(args, &stream);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let stdout_lines = text(&output.stdout).lines().count();
        assert_eq!(stdout_lines as u64, bad.index, "{args:?}: nothing printed from the bad command on");
        let stderr = text(&output.stderr);
        let want = format!("command #{} (mkfile) at byte {}", bad.index, offsets[bad.index as usize]);
        let last = stderr.lines().last().unwrap();
        assert!(last.contains(&want) && last.contains("crc32c mismatch"), "{args:?}: {stderr}");
        let marked = stderr.lines().filter(|l| l.contains("receive would refuse it")).count();
        assert_eq!(marked as u64, bad.index - 2, "{args:?}: the invalid commands before it are marked");
    }
}
