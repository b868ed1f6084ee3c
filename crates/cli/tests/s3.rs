//! `-f s3://`, `rawsend ls` and `rawsend restore` against a real S3 server
//! (`s3s-fs` on loopback, started here), with snapshots of a loop-mounted btrfs.
//! Root tests: they fail (never skip) when not root or when mounting fails.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rawsend_testutil::output_text;
use rawsend_testutil::s3::S3Server;
use rawsend_testutil::snapshots::Snapshots;
use rawsend_testutil::tree::{CompareOptions, TreeSnapshot, diff_with};

/// The snapshots of `rawsend_testutil::snapshots`, and an S3 server with a bucket `bkt`.
struct Fixture {
    snapshots: Snapshots,
    server: S3Server,
}

impl Fixture {
    fn new() -> Fixture {
        let fixture = Fixture { snapshots: Snapshots::new(), server: S3Server::start() };
        fixture.server.bucket("bkt");
        fixture
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.snapshots.path(relative)
    }

    /// `rawsend ARGS` with the server's environment.
    fn rawsend(&self, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rawsend"));
        command.args(args).envs(self.server.env()).current_dir(self.snapshots.root());
        command.output().expect("run rawsend")
    }

    fn ok(&self, args: &[&str]) -> Output {
        let output = self.rawsend(args);
        assert!(output.status.success(), "rawsend {args:?}: {}", output_text(&output));
        output
    }
}

/// Whether `a` and `b` hold the same tree; `user.` xattrs are not compared (the dir
/// target keeps its `user.rawsend.received` record there, and the fixture sets none).
fn same_tree(a: &Path, b: &Path) {
    let options = CompareOptions {
        atime: false,
        dir_size: false,
        xattr_prefixes: Some(&["security.", "system.", "trusted."]),
        ..CompareOptions::default()
    };
    let differences = diff_with(&TreeSnapshot::capture(a), &TreeSnapshot::capture(b), &options);
    assert!(differences.is_empty(), "{} and {} differ: {differences:#?}", a.display(), b.display());
}

#[test]
fn send_to_s3_then_receive_and_dump_from_it() {
    let fixture = Fixture::new();
    fixture.ok(&["send", "-f", "s3://bkt/streams/s1", "s1"]);
    fixture.ok(&["send", "-f", "file://local.stream", "s1"]);
    fs::create_dir(fixture.path("dest")).expect("mkdir dest");
    fixture.ok(&["receive", "-f", "s3://bkt/streams/s1", "dest"]);
    same_tree(&fixture.path("s1"), &fixture.path("dest/s1"));
    let remote = fixture.ok(&["dump", "-f", "s3://bkt/streams/s1"]);
    let local = fixture.ok(&["dump", "-f", "local.stream"]);
    assert!(!local.stdout.is_empty());
    assert_eq!(String::from_utf8_lossy(&remote.stdout), String::from_utf8_lossy(&local.stdout));
    let stored = fs::read(fixture.server.root().join("bkt/streams/s1")).expect("stored object");
    assert_eq!(stored, fs::read(fixture.path("local.stream")).expect("local stream"));
}

#[test]
fn ls_and_restore_a_chain_of_three() {
    let fixture = Fixture::new();
    fixture.ok(&["send", "-f", "s3://bkt/host/1-full", "s1"]);
    fixture.ok(&["send", "-p", "s1", "-f", "s3://bkt/host/2-incr", "s2"]);
    fixture.ok(&["send", "-p", "s2", "-f", "s3://bkt/host/3-incr", "s3"]);
    let listed = fixture.ok(&["ls", "--json", "s3://bkt/host/"]);
    let json: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("ls --json is JSON");
    let streams = json.as_array().expect("an array");
    let field = |index: usize, name: &str| streams[index][name].clone();
    let keys: Vec<_> = (0..streams.len()).map(|index| field(index, "key")).collect();
    assert_eq!(keys, ["host/1-full", "host/2-incr", "host/3-incr"]);
    assert_eq!(field(0, "name"), "s1");
    assert!(field(0, "parent_uuid").is_null());
    assert_eq!(field(1, "parent_uuid"), field(0, "uuid"));
    assert_eq!(field(2, "parent_uuid"), field(1, "uuid"));
    let size = fs::metadata(fixture.server.root().join("bkt/host/3-incr")).expect("stored").len();
    assert_eq!(field(2, "size"), size);
    let dest = tempfile::tempdir().expect("tempdir");
    fixture.ok(&[
        "restore",
        "s3://bkt/host/",
        "s3",
        dest.path().to_str().expect("utf-8"),
        "--",
        "--target",
        "dir",
    ]);
    same_tree(&fixture.path("s3"), &dest.path().join("s3"));
    assert!(dest.path().join("s2").exists() && dest.path().join("s1").exists());
}

#[test]
fn missing_object_is_a_clear_error() {
    let fixture = Fixture::new();
    let output = fixture.rawsend(&["dump", "-f", "s3://bkt/none"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("object s3://bkt/none does not exist"), "{}", output_text(&output));
}
