//! Resumable `rawsend send -f s3://` and `transcode -o s3://`: killed, cut by a
//! stopped server, or continued with another stream, against a real S3 server
//! (`s3s-fs` on loopback) behind a proxy that counts (and slows) what rawsend
//! sends. Root tests: they fail (never skip) when not root or when mounting fails.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rawsend_testutil::journal::journal_parts;
use rawsend_testutil::proxy::CountingProxy;
use rawsend_testutil::s3::S3Server;
use rawsend_testutil::snapshots::Snapshots;
use rawsend_testutil::{output_text, run};
use tempfile::TempDir;

/// Size of the incompressible file of snapshot `big`: six 8 MiB parts and more.
const BIG: usize = 50 << 20;

/// The snapshots of `rawsend_testutil::snapshots` and `big` (`vol` with a [`BIG`] file),
/// an S3 server with a bucket `bkt`, a proxy to it and a journal directory.
struct Fixture {
    snapshots: Snapshots,
    server: S3Server,
    proxy: CountingProxy,
    state: TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let snapshots = Snapshots::new();
        let big = rawsend_testutil::pseudo_random(BIG, 0x5eed);
        fs::write(snapshots.path("vol/big"), big).expect("write big");
        snapshots.snapshot("big");
        let server = S3Server::with_bucket("bkt");
        let proxy = CountingProxy::start(server.port());
        Fixture { snapshots, server, proxy, state: tempfile::tempdir().expect("tempdir") }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.snapshots.path(relative)
    }

    /// `rawsend ARGS` through the proxy, with the journals in the fixture's directory.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rawsend"));
        command.args(args).envs(self.server.env_at(self.proxy.port())).current_dir(self.snapshots.root());
        command.env("RAWSEND_STATE_DIR", self.state.path());
        command
    }

    fn ok(&self, args: &[&str]) -> Output {
        let output = self.command(args).output().expect("run rawsend");
        assert!(output.status.success(), "rawsend {args:?}: {}", output_text(&output));
        output
    }

    /// Starts `rawsend ARGS` (an upload) slowed down (until [`Fixture::full_speed`]),
    /// and returns it once its journal records a stored part.
    fn upload_until_a_part_is_stored(&self, args: &[&str]) -> Child {
        self.proxy.pause_per_mib(100);
        let mut child =
            self.command(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn rawsend");
        let deadline = Instant::now() + Duration::from_secs(60);
        while journal_parts(self.state.path()) == 0 {
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!("rawsend ended ({status}) before a part was stored");
            }
            assert!(Instant::now() < deadline, "no part stored within 60 s");
            std::thread::sleep(Duration::from_millis(10));
        }
        child
    }

    fn full_speed(&self) {
        self.proxy.pause_per_mib(0);
    }

    /// Runs `rawsend ARGS` (an upload) and kills it (SIGKILL) once a part is stored.
    fn kill_upload(&self, args: &[&str]) {
        let mut child = self.upload_until_a_part_is_stored(args);
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");
        self.full_speed();
    }

    /// The stream `rawsend send -f local.stream ARGS` writes.
    fn local_stream(&self, args: &[&str]) -> Vec<u8> {
        self.ok(&[&["send", "-q", "-f", "local.stream"][..], args].concat());
        fs::read(self.path("local.stream")).expect("local stream")
    }

    fn object(&self, key: &str) -> Option<Vec<u8>> {
        fs::read(self.server.root().join("bkt").join(key)).ok()
    }

    /// The `sha256` of the sidecar of `key`.
    fn sidecar_sha256(&self, key: &str) -> String {
        let sidecar = fs::read(self.server.root().join(format!("bkt/{key}.rawsend.json"))).expect("sidecar");
        let json: serde_json::Value = serde_json::from_slice(&sidecar).expect("sidecar JSON");
        json["sha256"].as_str().expect("sha256").to_owned()
    }

    /// Files of unfinished uploads in the server's root (s3s-fs keeps them there).
    fn server_uploads(&self) -> usize {
        let entries = fs::read_dir(self.server.root()).expect("server root");
        entries
            .filter(|entry| {
                entry.as_ref().expect("entry").file_name().to_string_lossy().starts_with(".upload")
            })
            .count()
    }
}

fn sha256(file: &std::path::Path) -> String {
    let output = run(Command::new("sha256sum").arg(file));
    String::from_utf8_lossy(&output.stdout).split_whitespace().next().expect("a hash").to_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The number in "continuing the unfinished upload to URL: N bytes already stored".
fn stored_bytes(stderr: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|line| line.contains("continuing the unfinished upload"))
        .expect("a continuation");
    let number = line.rsplit(": ").next().and_then(|end| end.split(' ').next()).expect("a number");
    number.parse().expect("bytes stored")
}

#[test]
fn a_killed_upload_is_continued_by_the_same_command() {
    let fixture = Fixture::new();
    let local = fixture.local_stream(&["big"]);
    fixture.kill_upload(&["send", "-f", "s3://bkt/big", "big"]);
    assert_eq!(fixture.object("big"), None, "a killed upload is not visible");
    let before = fixture.proxy.settled();
    let output = fixture.ok(&["send", "-f", "s3://bkt/big", "big"]);
    let sent = fixture.proxy.sent() - before;
    let text = stderr(&output);
    let stored = stored_bytes(&text);
    assert!(stored >= 8 << 20, "{text}");
    assert!(
        text.contains(&format!("{stored} of the stream's {} bytes were already stored", local.len())),
        "{text}"
    );
    assert!(
        sent < local.len() as u64 - stored + (1 << 20),
        "sent {sent} bytes, {stored} of {} were stored",
        local.len()
    );
    assert!(fixture.object("big") == Some(local), "the object differs from the local stream");
    assert_eq!(fixture.sidecar_sha256("big"), sha256(&fixture.path("local.stream")));
    assert_eq!(fs::read_dir(fixture.state.path()).expect("state dir").count(), 0, "the journal is deleted");
    assert_eq!(fixture.server_uploads(), 0);
}

#[test]
fn a_stopped_server_is_named_and_the_upload_continues_after_its_restart() {
    let mut fixture = Fixture::new();
    let local = fixture.local_stream(&["big"]);
    let child = fixture.upload_until_a_part_is_stored(&["send", "-f", "s3://bkt/big", "big"]);
    fixture.server.stop();
    let output = child.wait_with_output().expect("wait");
    fixture.full_speed();
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    let server = format!("(server http://127.0.0.1:{})", fixture.proxy.port());
    assert!(text.contains(&format!("the upload to s3://bkt/big {server} stopped with")), "{text}");
    assert!(text.contains("running the same command again continues it"), "{text}");
    fixture.server.restart();
    assert_eq!(fixture.object("big"), None, "an interrupted upload is not visible");
    let output = fixture.ok(&["send", "-f", "s3://bkt/big", "big"]);
    assert!(stored_bytes(&stderr(&output)) >= 8 << 20, "{}", stderr(&output));
    assert!(fixture.object("big") == Some(local), "the object differs from the local stream");
    assert_eq!(fixture.sidecar_sha256("big"), sha256(&fixture.path("local.stream")));
}

#[test]
fn another_stream_or_no_resume_starts_a_fresh_upload() {
    let fixture = Fixture::new();
    fixture.kill_upload(&["send", "-f", "s3://bkt/s", "big"]);
    // An incremental stream of the same snapshot: from its first command on, its parts
    // differ from every part of the full stream the journal recorded.
    let output = fixture.ok(&["send", "-p", "s1", "-f", "s3://bkt/s", "big"]);
    let text = stderr(&output);
    assert!(text.contains("the unfinished upload to s3://bkt/s was discarded: part "), "{text}");
    assert!(text.contains(" of the stream differs from the one stored"), "{text}");
    assert!(text.contains("sending again from the start"), "{text}");
    let incremental = fixture.local_stream(&["-p", "s1", "big"]);
    assert!(fixture.object("s") == Some(incremental), "the object is not the incremental stream");
    fixture.kill_upload(&["send", "-f", "s3://bkt/s", "big"]);
    let output = fixture.ok(&["send", "--no-resume", "-f", "s3://bkt/s", "big"]);
    let text = stderr(&output);
    assert!(text.contains("discarded the unfinished upload to s3://bkt/s"), "{text}");
    assert!(!text.contains("continuing"), "{text}");
    assert!(fixture.object("s") == Some(fixture.local_stream(&["big"])), "the object is not big's stream");
    assert_eq!(fs::read_dir(fixture.state.path()).expect("state dir").count(), 0, "no journal kept");
    assert_eq!(fixture.server_uploads(), 0, "the discarded uploads are aborted");
}

#[test]
fn a_killed_transcode_upload_is_continued_by_the_same_command() {
    let fixture = Fixture::new();
    fixture.local_stream(&["big"]);
    let transcode = ["transcode", "--compress", "keep", "-f", "local.stream", "-o", "s3://bkt/t"];
    fixture.kill_upload(&transcode);
    assert_eq!(fixture.object("t"), None, "a killed upload is not visible");
    let output = fixture.ok(&transcode);
    assert!(stored_bytes(&stderr(&output)) >= 8 << 20, "{}", stderr(&output));
    fixture.ok(&["transcode", "--compress", "keep", "-f", "local.stream", "-o", "local.transcoded"]);
    let local = fs::read(fixture.path("local.transcoded")).expect("local transcode");
    assert!(fixture.object("t") == Some(local), "the object differs from the local transcode");
}
