//! `rawsend send` against `btrfs send`: the same snapshots and flags must
//! give byte-identical streams. Root tests on a loop-mounted btrfs; they fail
//! (never skip) when not root or when mounting fails.

use std::fs::{self, File};
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use rawsend_testutil::run;
use rawsend_testutil::snapshots::Snapshots;

/// The snapshots of `rawsend_testutil::snapshots`.
struct Fixture {
    snapshots: Snapshots,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture { snapshots: Snapshots::new() }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.snapshots.path(relative)
    }

    fn btrfs(&self, args: &[&str]) -> Output {
        run(Command::new("btrfs").args(args).current_dir(self.snapshots.root()))
    }

    /// Streams of `btrfs send ARGS -f X` and `rawsend send ARGS -f Y`.
    fn both(&self, args: &[&str]) -> (Vec<u8>, Vec<u8>) {
        let progs = self.path("../progs.stream");
        let ours = self.path("../rawsend.stream");
        let mut command = Command::new("btrfs");
        command.args(["-q", "send", "-f"]).arg(&progs).args(args);
        run(command.current_dir(self.snapshots.root()));
        run(rawsend(self.snapshots.root()).arg("-f").arg(&ours).args(args));
        (read(&progs), read(&ours))
    }

    fn assert_same(&self, args: &[&str]) {
        let (progs, ours) = self.both(args);
        assert!(!progs.is_empty(), "btrfs send wrote nothing for {args:?}");
        assert!(
            progs == ours,
            "streams differ for {args:?}: btrfs send {} bytes, rawsend {} bytes",
            progs.len(),
            ours.len()
        );
    }
}

fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
}

/// `rawsend send -q` run in `dir`.
fn rawsend(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rawsend"));
    command.args(["send", "-q"]).current_dir(dir);
    command
}

#[test]
fn full_sends_match_btrfs_send() {
    let fixture = Fixture::new();
    for args in
        [&["s1"][..], &["s2"], &["--proto", "1", "s2"], &["--proto", "2", "s2"], &["--proto", "0", "s2"]]
    {
        fixture.assert_same(args);
    }
}

#[test]
fn incremental_sends_match_btrfs_send() {
    let fixture = Fixture::new();
    for args in [
        &["-p", "s1", "s2"][..],
        &["-p", "s1", "-c", "s2", "s3"],
        &["-c", "s1", "s2"],
        &["-c", "s1", "-c", "s2", "s3"],
        &["--proto", "2", "-p", "s1", "s2"],
    ] {
        fixture.assert_same(args);
    }
}

#[test]
fn several_subvolumes_match_btrfs_send() {
    let fixture = Fixture::new();
    for args in [
        &["s1", "s2"][..],
        &["-e", "s1", "s2", "s3"],
        &["-c", "s1", "s2", "s3"],
        &["-e", "-p", "s1", "s2", "s3"],
        &["-e", "--compressed-data", "s1", "s2"],
    ] {
        fixture.assert_same(args);
    }
}

#[test]
fn compressed_and_metadata_only_sends_match_btrfs_send() {
    let fixture = Fixture::new();
    for args in [
        &["--compressed-data", "s2"][..],
        &["--compressed-data", "--proto", "0", "s2"],
        &["--compressed-data", "-p", "s1", "s2"],
        &["--no-data", "s2"],
        &["--no-data", "-p", "s1", "s2"],
        &["--no-data", "--proto", "2", "s3"],
    ] {
        fixture.assert_same(args);
    }
    let (progs, ours) = fixture.both(&["--compressed-data", "s2"]);
    let (plain, _) = fixture.both(&["--proto", "2", "s2"]);
    assert_eq!(progs, ours);
    assert!(ours.len() < plain.len() / 2, "compressed {} vs plain {}", ours.len(), plain.len());
}

#[test]
fn stdout_pipe_gets_the_same_stream() {
    let fixture = Fixture::new();
    let progs = run(Command::new("btrfs")
        .args(["-q", "send", "-p", "s1", "s2"])
        .current_dir(fixture.snapshots.root()));
    let ours = run(rawsend(fixture.snapshots.root()).args(["-p", "s1", "s2"]));
    assert!(progs.stdout == ours.stdout, "stdout streams differ");
    assert!(ours.stderr.is_empty(), "{}", String::from_utf8_lossy(&ours.stderr));
}

#[test]
fn reports_progress_unless_quiet() {
    let fixture = Fixture::new();
    let output = run(Command::new(env!("CARGO_BIN_EXE_rawsend"))
        .args(["send", "-f", "../out", "s1", "s2"])
        .current_dir(fixture.snapshots.root()));
    assert_eq!(String::from_utf8_lossy(&output.stderr), "At subvol s1\nAt subvol s2\n");
}

/// Runs `rawsend send ARGS` expecting failure; returns stderr.
fn failure(fixture: &Fixture, args: &[&str]) -> String {
    let output =
        rawsend(fixture.snapshots.root()).args(["-f", "../out"]).args(args).output().expect("run rawsend");
    assert_eq!(output.status.code(), Some(1), "rawsend send {args:?} should fail");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn errors_name_the_subvolume_and_the_fix() {
    let fixture = Fixture::new();
    fs::create_dir(fixture.path("plain-dir")).expect("mkdir");

    let stderr = failure(&fixture, &["vol"]);
    assert!(stderr.contains("subvolume vol is not read-only"), "{stderr}");
    assert!(stderr.contains("`btrfs subvolume snapshot -r vol SNAP`"), "{stderr}");
    assert!(!stderr.contains("property set"), "never advise flipping a live subvolume read-only: {stderr}");
    let stderr = failure(&fixture, &["plain-dir"]);
    assert!(stderr.contains("plain-dir is not a btrfs subvolume"), "{stderr}");
    let stderr = failure(&fixture, &["-p", "vol", "s2"]);
    assert!(stderr.contains("parent subvolume vol is not read-only"), "{stderr}");
    assert!(stderr.contains("read-only snapshots that were sent before"), "{stderr}");
    let stderr = failure(&fixture, &["-c", "missing", "s2"]);
    assert!(stderr.contains("cannot open clone source missing"), "{stderr}");
    let stderr = failure(&fixture, &["--compressed-data", "--proto", "1", "s2"]);
    assert!(stderr.contains("--compressed-data requires protocol version >= 2"), "{stderr}");
    fixture.btrfs(&["subvolume", "create", "lone"]);
    fixture.btrfs(&["property", "set", "-ts", "lone", "ro", "true"]);
    let stderr = failure(&fixture, &["-c", "s1", "lone"]);
    assert!(stderr.contains("cannot determine a parent for lone"), "{stderr}");
}

/// Runs `rawsend send -p s1 s2` with `stdout` as its standard output, expecting success.
fn send_into(fixture: &Fixture, stdout: impl Into<Stdio>) {
    let output = rawsend(fixture.snapshots.root())
        .args(["-p", "s1", "s2"])
        .stdout(stdout)
        .output()
        .expect("run rawsend");
    assert!(output.status.success(), "rawsend send failed: {}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn character_devices_sockets_and_appended_files_get_the_stream() {
    let fixture = Fixture::new();
    let (progs, _) = fixture.both(&["-p", "s1", "s2"]);

    // The kernel refuses to write into /dev/null itself ("kernel write not supported").
    run(rawsend(fixture.snapshots.root()).args(["-f", "/dev/null", "-p", "s1", "s2"]));
    send_into(&fixture, File::options().write(true).open("/dev/null").expect("open /dev/null"));

    let (ours, theirs) = UnixStream::pair().expect("socketpair");
    let reader = std::thread::spawn(move || {
        let mut received = Vec::new();
        (&theirs).read_to_end(&mut received).map(|_| received)
    });
    send_into(&fixture, OwnedFd::from(ours));
    let received = reader.join().expect("socket reader").expect("read the socket");
    assert!(received == progs, "socket stream differs: {} bytes, btrfs send {}", received.len(), progs.len());

    // O_APPEND refuses splice: the stream is copied after what the file held.
    let appended = fixture.path("../appended");
    fs::write(&appended, b"before\n").expect("write appended");
    send_into(&fixture, File::options().append(true).open(&appended).expect("open appended"));
    let mut expected = b"before\n".to_vec();
    expected.extend_from_slice(&progs);
    assert!(read(&appended) == expected, "appended stream differs");
}
