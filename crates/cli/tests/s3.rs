//! `-f s3://`, `rawsend ls` and `rawsend restore` against a real S3 server
//! (`s3s-fs` on loopback, started here), with snapshots of a loop-mounted btrfs.
//! Root tests: they fail (never skip) when not root or when mounting fails.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use rawsend_testutil::proxy::CountingProxy;
use rawsend_testutil::s3::S3Server;
use rawsend_testutil::snapshots::Snapshots;
use rawsend_testutil::tree::{CompareOptions, TreeSnapshot, diff_with};
use rawsend_testutil::{output_text, pseudo_random, received_state, run_cmd};

/// The snapshots of `rawsend_testutil::snapshots`, and an S3 server with a bucket `bkt`.
struct Fixture {
    snapshots: Snapshots,
    server: S3Server,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture { snapshots: Snapshots::new(), server: S3Server::with_bucket("bkt") }
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

/// The entry of `key` in the output of `ls --json`.
fn listed<'a>(streams: &'a serde_json::Value, key: &str) -> &'a serde_json::Value {
    let found = streams.as_array().expect("an array").iter().find(|stream| stream["key"] == key);
    found.unwrap_or_else(|| panic!("{key} is not listed: {streams:#}"))
}

#[test]
fn metadata_names_clone_sources_and_flags() {
    let fixture = Fixture::new();
    fixture.ok(&["send", "-f", "s3://bkt/m/1", "s1"]);
    fixture.ok(&["send", "--compressed-data", "-c", "s1", "-f", "s3://bkt/m/2", "s2"]);
    fixture.ok(&["transcode", "-f", "s3://bkt/m/2", "-o", "s3://bkt/m/2-zlib", "--compress", "zlib"]);
    let json = fixture.ok(&["ls", "--json", "s3://bkt/m/"]);
    let streams: serde_json::Value = serde_json::from_slice(&json.stdout).expect("ls --json is JSON");
    let full = listed(&streams, "m/1");
    assert_eq!(full["clone_sources"], serde_json::json!([]));
    assert_eq!(full["flags"], serde_json::json!([]));
    let s1 = serde_json::json!([{"uuid": full["uuid"], "ctransid": full["ctransid"]}]);
    let incremental = listed(&streams, "m/2");
    assert_eq!(incremental["parent_uuid"], full["uuid"], "-c alone picks s1 as the parent");
    assert_eq!(incremental["clone_sources"], s1);
    assert_eq!(incremental["flags"], serde_json::json!(["compressed-data"]));
    let transcoded = listed(&streams, "m/2-zlib");
    assert_eq!(transcoded["clone_sources"], s1, "a transcode keeps its input's clone sources");
    assert_eq!(transcoded["flags"], serde_json::json!(["transcoded", "compress=zlib"]));
    let text = String::from_utf8(fixture.ok(&["ls", "s3://bkt/m/"]).stdout).expect("utf-8");
    let clones = format!(
        "  clone sources {} ({})  flags compressed-data\n",
        s1[0]["uuid"].as_str().unwrap(),
        s1[0]["ctransid"]
    );
    assert!(text.contains(&clones), "{text}");
    assert!(text.contains("  clone sources none\n"), "{text}");
}

#[test]
fn transcode_a_local_stream_to_s3() {
    let server = S3Server::with_bucket("bkt");
    let dir = tempfile::tempdir().expect("tempdir");
    let sample = rawsend_testutil::fixtures::testdata_dir().join("sample.stream");
    let local = dir.path().join("local.stream");
    let rawsend = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_rawsend")).args(args).envs(server.env()).output();
        let output = output.expect("run rawsend");
        assert!(output.status.success(), "rawsend {args:?}: {}", output_text(&output));
        output
    };
    let sample = sample.to_str().expect("utf-8");
    rawsend(&["transcode", "-f", sample, "-o", "s3://bkt/t/sample"]);
    rawsend(&["transcode", "-f", sample, "-o", &format!("file://{}", local.display())]);
    let remote = rawsend(&["dump", "-f", "s3://bkt/t/sample"]);
    let dumped = rawsend(&["dump", "-f", local.to_str().expect("utf-8")]);
    assert!(!dumped.stdout.is_empty());
    assert_eq!(String::from_utf8_lossy(&remote.stdout), String::from_utf8_lossy(&dumped.stdout));
    let bytes = fs::read(&local).expect("local transcode");
    assert!(fs::read(server.root().join("bkt/t/sample")).expect("stored object") == bytes);
    let sha256 = Command::new("sha256sum").arg(&local).output().expect("sha256sum");
    let sha256 = String::from_utf8_lossy(&sha256.stdout).split(' ').next().expect("a sum").to_owned();
    let json = rawsend(&["ls", "--json", "s3://bkt/t"]);
    let streams: serde_json::Value = serde_json::from_slice(&json.stdout).expect("ls --json is JSON");
    let info = listed(&streams, "t/sample");
    assert_eq!(
        (info["size"].as_u64(), info["sha256"].as_str()),
        (Some(bytes.len() as u64), Some(sha256.as_str()))
    );
    assert_eq!((info["version"].as_u64(), &info["clone_sources"]), (Some(2), &serde_json::Value::Null));
    assert_eq!(info["flags"], serde_json::json!(["transcoded", "compress=zstd:3"]));
}

#[test]
fn restore_warns_of_clone_sources_outside_the_chain() {
    let fixture = Fixture::new();
    let btrfs = |args: &[&str]| {
        rawsend_testutil::run(Command::new("btrfs").args(args).current_dir(fixture.snapshots.root()))
    };
    btrfs(&["subvolume", "create", "other"]);
    fs::write(fixture.path("other/unrelated"), b"shares no extent with s2\n").expect("write");
    btrfs(&["subvolume", "snapshot", "-r", "other", "other-ro"]);
    fixture.ok(&["send", "-f", "s3://bkt/w/1", "s1"]);
    fixture.ok(&["send", "-p", "s1", "-c", "other-ro", "-f", "s3://bkt/w/2", "s2"]);
    let json = fixture.ok(&["ls", "--json", "s3://bkt/w/"]);
    let streams: serde_json::Value = serde_json::from_slice(&json.stdout).expect("ls --json is JSON");
    let sources = listed(&streams, "w/2")["clone_sources"].as_array().expect("clone sources").clone();
    assert_eq!(sources.len(), 2, "other-ro and s1: {sources:?}");
    assert_eq!(sources[1]["uuid"], listed(&streams, "w/1")["uuid"]);
    let dest = tempfile::tempdir().expect("tempdir");
    let restored = fixture.ok(&[
        "restore",
        "s3://bkt/w/",
        "s2",
        dest.path().to_str().expect("utf-8"),
        "--",
        "--target",
        "dir",
    ]);
    let stderr = String::from_utf8_lossy(&restored.stderr);
    let warning = format!(
        "rawsend: warning: s3://bkt/w/2 may clone from subvolume {} (ctransid {}), which no stream of the chain makes",
        sources[0]["uuid"].as_str().expect("a uuid"),
        sources[0]["ctransid"]
    );
    assert!(stderr.contains(&warning), "{stderr}");
    assert_eq!(stderr.matches("may clone from").count(), 1, "s1 is in the chain: {stderr}");
    same_tree(&fixture.path("s2"), &dest.path().join("s2"));
}

impl Fixture {
    /// A read-only subvolume `name` holding a 20 MiB file `bytes` (several download
    /// chunks, so a receive is well under way before the last one).
    fn subvolume_with(&self, name: &str, bytes: &[u8]) {
        let work = self.path(&format!("{name}.rw"));
        run_cmd("btrfs", ["subvolume".as_ref(), "create".as_ref(), work.as_os_str()]);
        fs::write(work.join("bytes"), bytes).expect("write bytes");
        run_cmd("sync", [] as [&str; 0]);
        run_cmd(
            "btrfs",
            [
                "subvolume".as_ref(),
                "snapshot".as_ref(),
                "-r".as_ref(),
                work.as_os_str(),
                self.path(name).as_os_str(),
            ],
        );
    }

    /// Asserts that `rawsend ARGS` fails with the checksum error of `url`.
    fn fails_checksum(&self, args: &[&str], url: &str) {
        let output = self.rawsend(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "rawsend {args:?} succeeded: {}", output_text(&output));
        assert!(
            stderr.contains(&format!("checksum mismatch: {url} has SHA-256 ")),
            "{}",
            output_text(&output)
        );
    }
}

#[test]
fn a_replaced_stream_fails_its_checksum_and_nothing_is_marked_received() {
    let fixture = Fixture::new();
    let bytes = pseudo_random(20 << 20, 16);
    let mut other = bytes.clone();
    other[10 << 20] ^= 1;
    fixture.subvolume_with("c1", &bytes);
    fixture.subvolume_with("c2", &other);
    fixture.ok(&["send", "-f", "s3://bkt/c", "c1"]);
    fixture.ok(&["send", "-f", "c2.stream", "c2"]);
    // A valid stream of the same size (every command's CRC passes) under the old metadata.
    let object = fixture.server.root().join("bkt/c");
    let replacement = fs::read(fixture.path("c2.stream")).expect("c2 stream");
    assert_eq!(fs::metadata(&object).expect("object").len(), replacement.len() as u64);
    fs::write(&object, &replacement).expect("replace the object");

    fs::create_dir(fixture.path("dest")).expect("mkdir dest");
    fixture.fails_checksum(&["receive", "-f", "s3://bkt/c", "dest"], "s3://bkt/c");
    let state = received_state(&fixture.path("dest/c2"));
    assert!(!state.is_received() && state.received_uuid == "-", "marked received: {state:?}");

    let dir = tempfile::tempdir().expect("tempdir");
    let dir_dest = dir.path().to_str().expect("utf-8");
    fixture.fails_checksum(&["receive", "--target", "dir", "-f", "s3://bkt/c", dir_dest], "s3://bkt/c");
    let root = TreeSnapshot::capture(dir.path().join("c2")).entries.remove(&b"."[..]).expect("root entry");
    assert!(!root.xattrs.contains_key(&b"user.rawsend.received"[..]), "directory marked received");
    assert!(!dir.path().join(".rawsend-received/records/c2").exists(), "record of a failed receive");

    fixture.fails_checksum(&["dump", "-f", "s3://bkt/c"], "s3://bkt/c");
    fixture.fails_checksum(&["stats", "-f", "s3://bkt/c"], "s3://bkt/c");
}

#[test]
fn server_stopped_mid_download_is_a_clear_error_and_a_rerun_continues() {
    let fixture = Fixture::new();
    fixture.subvolume_with("d1", &pseudo_random(48 << 20, 17));
    fixture.ok(&["send", "-f", "s3://bkt/d", "d1"]);
    // The server, as the receive sees it, stops after 30 of the 48 MiB: past the first
    // chunk (the reader downloads three at once), so the receive is under way. Stopping
    // the real one at a moment could come after the socket buffers held the rest.
    let proxy = CountingProxy::start(fixture.server.port());
    proxy.fail_after_replies(30 << 20);
    fs::create_dir(fixture.path("dest")).expect("mkdir dest");
    let receive = Command::new(env!("CARGO_BIN_EXE_rawsend"))
        .args(["receive", "-f", "s3://bkt/d", "dest"])
        .envs(fixture.server.env_at(proxy.port()))
        .current_dir(fixture.snapshots.root())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rawsend receive");
    let output = receive.wait_with_output().expect("wait for rawsend receive");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the receive succeeded without its server: {stderr}");
    assert!(stderr.contains("object storage") && stderr.contains("s3://bkt/d"), "{stderr}");
    assert!(stderr.contains("was not marked as received"), "{stderr}");
    let state = received_state(&fixture.path("dest/d1"));
    assert!(!state.is_received() && state.received_uuid == "-", "marked received: {state:?}");

    fixture.ok(&["receive", "-f", "s3://bkt/d", "dest"]);
    assert!(received_state(&fixture.path("dest/d1")).is_received());
    same_tree(&fixture.path("d1"), &fixture.path("dest/d1"));
}
