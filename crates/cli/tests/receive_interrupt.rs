//! A receive stopped by SIGINT, SIGTERM or SIGHUP: it stops at a command
//! boundary (also while waiting for input on a pipe), leaves the subvolume
//! it was receiving unmarked with its resume state saved, says which one and
//! how to continue or discard it, and exits with 128 + the signal's number,
//! as a shell reports a killed process. Running the same receive again on
//! the whole stream then completes it.
//!
//! Root tests on loop devices (btrfs, and ext4 or XFS for the dir target); they
//! fail, never skip, when they cannot mount.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rawsend_testutil::tree::TreeSnapshot;
use rawsend_testutil::{FsType, LoopFs, MIB, fixtures, received_state, require_root};
use rustix::process::{Pid, Signal, kill_process};

/// The fixture streamed, and the subvolume it makes.
const STREAM: &str = "basic-full.v2c.stream";
const SUBVOL: &str = "basic-full";

/// Feeds all but the end of the stream through a pipe that stays open, sends
/// `signal` once the receive is waiting for more, and returns the exit code and stderr.
fn interrupted_receive(dest: &Path, signal: Signal) -> (Option<i32>, String) {
    let stream = std::fs::read(fixtures::streams_dir().join(STREAM)).expect("read the fixture");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rawsend"))
        .arg("receive")
        .arg(dest)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rawsend");
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(&stream[..stream.len() / 2]).expect("feed half the stream");
    // The receive applies what it got, then waits on the open pipe.
    std::thread::sleep(Duration::from_millis(1500));
    let pid = Pid::from_child(&child);
    kill_process(pid, signal).expect("send the signal");
    let output = child.wait_with_output().expect("wait for rawsend");
    drop(stdin);
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

fn assert_reported(stderr: &str, signal: &str, what: &str) {
    let resume = "its resume state is saved: run the same receive again to continue where it stopped";
    for needle in
        [signal, what, "is incomplete and was not marked as received", resume, "rawsend receive --abort"]
    {
        assert!(stderr.contains(needle), "stderr lacks {needle:?}:\n{stderr}");
    }
}

/// Receives the whole fixture again into `dest`: the partial subvolume is continued.
fn resume(dest: &Path) {
    let output = Command::new(env!("CARGO_BIN_EXE_rawsend"))
        .args(["receive", "-f"])
        .arg(fixtures::streams_dir().join(STREAM))
        .arg(dest)
        .output()
        .expect("run rawsend");
    assert!(output.status.success(), "resuming failed: {}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn sigterm_on_btrfs_leaves_the_subvolume_unmarked() {
    require_root();
    let fs = LoopFs::btrfs(512 * MIB);
    let (code, stderr) = interrupted_receive(fs.path(), Signal::TERM);
    assert_eq!(code, Some(143), "{stderr}");
    assert_reported(&stderr, "stopped by SIGTERM", "subvolume");
    let state = received_state(&fs.path().join(SUBVOL));
    assert!(!state.is_received() && state.received_uuid == "-", "marked despite the signal: {state:?}");
    resume(fs.path());
    assert!(received_state(&fs.path().join(SUBVOL)).is_received());
}

#[test]
fn sigint_on_the_dir_target_leaves_the_directory_unmarked() {
    require_root();
    // XFS: the fixture's xattrs do not all fit in an ext4 inode and its xattr block.
    let fs = LoopFs::builder(FsType::Xfs, 512 * MIB).build();
    let (code, stderr) = interrupted_receive(fs.path(), Signal::INT);
    assert_eq!(code, Some(130), "{stderr}");
    assert_reported(&stderr, "stopped by SIGINT", "directory");
    let root = TreeSnapshot::capture(fs.path().join(SUBVOL)).entries.remove(&b"."[..]).expect("root entry");
    assert!(!root.xattrs.contains_key(&b"user.rawsend.received"[..]), "marked despite the signal");
    assert!(!fs.path().join(".rawsend-received/records").join(SUBVOL).exists(), "record despite the signal");
    resume(fs.path());
    let root = TreeSnapshot::capture(fs.path().join(SUBVOL)).entries.remove(&b"."[..]).expect("root entry");
    assert!(root.xattrs.contains_key(&b"user.rawsend.received"[..]), "not marked after resuming");
}

#[test]
fn sighup_exits_129() {
    require_root();
    let fs = LoopFs::ext4(256 * MIB);
    let (code, stderr) = interrupted_receive(fs.path(), Signal::HUP);
    assert_eq!(code, Some(129), "{stderr}");
    assert_reported(&stderr, "stopped by SIGHUP", "directory");
}
