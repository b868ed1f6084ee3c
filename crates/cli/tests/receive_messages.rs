//! What `rawsend receive` tells the user when it cannot or should not do what
//! was asked: re-running a receive that is complete or was left incomplete,
//! an unprivileged receive onto btrfs (`--target auto` falls back to
//! `--target dir`), and OS errors (each cause printed once).
//!
//! The tests on loop-mounted filesystems need root; they fail (never skip)
//! when not root or when mounting fails.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rawsend_testutil::tree::{TreeSnapshot, diff};
use rawsend_testutil::{FsType, LoopFs, MIB, fixtures, require_root, run};

/// The fixture received throughout: a v2 `--compressed-data` full send named `basic-full`.
const STREAM: &str = "basic-full.v2c";
/// The inode number of a btrfs subvolume's root directory.
const SUBVOLUME_ROOT_INO: u64 = 256;

fn stream() -> PathBuf {
    fixtures::streams_dir().join(format!("{STREAM}.stream"))
}

/// The UUID of the fixture's subvolume, from the `btrfs receive --dump` text next to it.
fn stream_uuid() -> String {
    let dump = fs::read_to_string(fixtures::streams_dir().join(format!("{STREAM}.dump"))).expect("read dump");
    let first = dump.lines().next().expect("dump has a subvol line");
    let uuid = first.split_whitespace().find_map(|word| word.strip_prefix("uuid=")).expect("uuid= in subvol");
    uuid.to_owned()
}

fn receive(args: &[&str], stream: &Path, dest: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rawsend"))
        .arg("receive")
        .args(args)
        .arg("-f")
        .arg(stream)
        .arg(dest)
        .output()
        .expect("run rawsend")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `rawsend receive` expecting exit status 1; returns stderr.
fn refused(args: &[&str], stream: &Path, dest: &Path) -> String {
    let output = receive(args, stream, dest);
    assert_eq!(output.status.code(), Some(1), "expected a refusal:\n{}", stderr(&output));
    stderr(&output)
}

/// The first half of the fixture: the receive fails halfway, leaving `basic-full` incomplete.
fn truncated_stream(dir: &Path) -> PathBuf {
    let bytes = fs::read(stream()).expect("read fixture");
    let path = dir.join("truncated.stream");
    fs::write(&path, &bytes[..bytes.len() / 2]).expect("write truncated stream");
    path
}

/// A filesystem of `fstype` with an empty `dest` directory; the second path is a scratch
/// directory outside it.
fn destination(fstype: FsType) -> (LoopFs, PathBuf, PathBuf) {
    require_root();
    // noatime: capturing a tree before and after must not itself change it.
    let fs = LoopFs::builder(fstype, 512 * MIB).mount_options("noatime").build();
    let dest = fs.path().join("dest");
    let scratch = fs.path().join("scratch");
    for dir in [&dest, &scratch] {
        fs::create_dir(dir).expect("mkdir");
    }
    (fs, dest, scratch)
}

/// Receiving the same stream twice: the second run says the subvolume is already received
/// (with its received UUID) and changes nothing.
fn rerun_of_a_complete_receive(fstype: FsType, target: &str) {
    let (_fs, dest, _) = destination(fstype);
    run(Command::new(env!("CARGO_BIN_EXE_rawsend"))
        .args(["receive", "--target", target, "-f"])
        .arg(stream())
        .arg(&dest));
    let before = TreeSnapshot::capture(&dest);
    let message = refused(&["--target", target], &stream(), &dest);
    let expected =
        format!("{}/basic-full is already received (received UUID {})", dest.display(), stream_uuid());
    assert_eq!(message.matches(&expected).count(), 1, "{message}");
    assert!(!message.contains("File exists"), "{message}");
    let changes = diff(&before, &TreeSnapshot::capture(&dest));
    assert!(changes.is_empty(), "the refused receive changed the destination: {changes:?}");
}

/// A receive with `--no-resume` (which keeps no resume state, as btrfs-progs) that failed
/// halfway, then run again: the message says the subvolume is left over and gives the
/// command that removes it; after that command the receive succeeds.
fn rerun_over_an_incomplete_receive(fstype: FsType, target: &str, remove: &str) {
    let (_fs, dest, scratch) = destination(fstype);
    let failed = refused(&["--target", target, "--no-resume"], &truncated_stream(&scratch), &dest);
    assert!(failed.contains("truncated"), "{failed}");
    assert!(!dest.join(".rawsend-received/resume").exists(), "--no-resume kept resume state");
    let message = refused(&["--target", target], &stream(), &dest);
    let path = dest.join("basic-full");
    let command = format!("{remove} {}", path.display());
    let expected = format!(
        "{} is left over from an incomplete receive (it is not marked received); remove it with `{command}`",
        path.display()
    );
    assert!(message.contains(&expected), "{message}");
    let words: Vec<&str> = command.split(' ').collect();
    run(Command::new(words[0]).args(&words[1..]));
    let output = receive(&["--target", target], &stream(), &dest);
    assert!(output.status.success(), "receive after removing the leftover failed:\n{}", stderr(&output));
}

#[test]
fn btrfs_rerun_of_a_complete_receive_says_already_received() {
    rerun_of_a_complete_receive(FsType::Btrfs, "btrfs");
}

#[test]
fn dir_rerun_of_a_complete_receive_says_already_received() {
    rerun_of_a_complete_receive(FsType::Ext4, "dir");
}

#[test]
fn btrfs_rerun_over_an_incomplete_receive_says_how_to_remove_it() {
    rerun_over_an_incomplete_receive(FsType::Btrfs, "btrfs", "btrfs subvolume delete");
}

#[test]
fn dir_rerun_over_an_incomplete_receive_says_how_to_remove_it() {
    rerun_over_an_incomplete_receive(FsType::Ext4, "dir", "rm -rf");
}

/// DEST given with a trailing slash (as shell completion writes it): the messages name
/// the subvolume with one slash, so the commands they suggest can be pasted as they are.
#[test]
fn a_destination_with_a_trailing_slash_is_named_with_one_slash() {
    let (_fs, dest, scratch) = destination(FsType::Btrfs);
    let slashed = PathBuf::from(format!("{}/", dest.display()));
    let failed = refused(&[], &truncated_stream(&scratch), &slashed);
    let named = format!("subvolume {}/basic-full is incomplete", dest.display());
    assert!(failed.contains(&named), "{failed}");
    assert!(!failed.contains("//"), "{failed}");
}

/// A name taken by something no receive made: a plain directory on btrfs, a read-only
/// subvolume that was never received, a file on ext4.
#[test]
fn a_name_taken_by_something_else_is_named_as_such() {
    let foreign = "basic-full exists and is not from rawsend/btrfs receive";
    let (_btrfs, dest, _) = destination(FsType::Btrfs);
    fs::create_dir(dest.join("basic-full")).expect("mkdir");
    assert!(refused(&[], &stream(), &dest).contains(foreign));
    fs::remove_dir(dest.join("basic-full")).expect("rmdir");
    run(Command::new("btrfs").args(["subvolume", "create"]).arg(dest.join("basic-full")));
    run(Command::new("btrfs")
        .args(["property", "set", "-ts"])
        .arg(dest.join("basic-full"))
        .args(["ro", "true"]));
    assert!(refused(&[], &stream(), &dest).contains(foreign));
    let (_ext4, dest, _) = destination(FsType::Ext4);
    fs::write(dest.join("basic-full"), b"not a directory").expect("write");
    assert!(refused(&[], &stream(), &dest).contains(foreign));
}

/// `nobody` receiving into its own directory on btrfs: `--target auto` picks the dir
/// target (saying why, once), the receive succeeds and no subvolume is made; an explicit
/// `--target btrfs` fails before writing anything.
#[test]
fn unprivileged_auto_target_on_btrfs_is_the_dir_target() {
    let (fs, dest, scratch) = destination(FsType::Btrfs);
    let binary = scratch.join("rawsend");
    fs::copy(env!("CARGO_BIN_EXE_rawsend"), &binary).expect("copy rawsend");
    let copy = scratch.join("sample.stream");
    fs::copy(fixtures::testdata_dir().join("sample.stream"), &copy).expect("copy stream");
    run(Command::new("chown").args(["-R", "nobody:nogroup"]).arg(&dest).arg(&scratch));
    let as_nobody = |target: &str| {
        Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(&binary)
            .args(["receive", "--target", target, "-f"])
            .arg(&copy)
            .arg(&dest)
            .output()
            .expect("run setpriv")
    };

    let explicit = as_nobody("btrfs");
    assert_eq!(explicit.status.code(), Some(1), "{}", stderr(&explicit));
    assert!(stderr(&explicit).contains("--target btrfs without CAP_SYS_ADMIN"), "{}", stderr(&explicit));
    assert_eq!(fs::read_dir(&dest).expect("list dest").count(), 0, "--target btrfs wrote something");

    let auto = as_nobody("auto");
    let text = stderr(&auto);
    assert!(auto.status.success(), "{text}");
    let why = "rawsend: receiving into plain directories (--target dir): \
               no CAP_SYS_ADMIN to mark btrfs subvolumes received\n";
    assert_eq!(text.matches(why).count(), 1, "{text}");
    let received: Vec<_> =
        fs::read_dir(&dest).expect("list dest").map(|entry| entry.expect("entry").path()).collect();
    assert_eq!(received.len(), 1, "{received:?}");
    let root = fs::metadata(&received[0]).expect("stat received directory");
    assert_ne!(root.ino(), SUBVOLUME_ROOT_INO, "a btrfs subvolume was made: {}", received[0].display());
    assert!(text.contains("recorded in xattr user.rawsend.received"), "{text}");
    drop(fs);
}

/// OS errors appear once in the message, not once per level of the error chain.
#[test]
fn os_errors_are_printed_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let enoent = "No such file or directory (os error 2)";
    let missing_stream = refused(&[], &tmp.path().join("no-such.stream"), tmp.path());
    assert_eq!(missing_stream.matches(enoent).count(), 1, "{missing_stream}");
    let sample = fixtures::testdata_dir().join("sample.stream");
    let missing_dest = refused(&[], &sample, &tmp.path().join("no-such-dest"));
    assert_eq!(missing_dest.matches(enoent).count(), 1, "{missing_dest}");
    assert!(missing_dest.contains("open destination"), "{missing_dest}");
}

/// Asking for btrfs where there is none names the flag to use.
#[test]
fn target_btrfs_off_btrfs_names_the_dir_flag() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let sample = fixtures::testdata_dir().join("sample.stream");
    let message = refused(&["--target", "btrfs"], &sample, tmp.path());
    assert!(message.contains("the destination is not on btrfs (use --target dir)"), "{message}");
}

/// The help names the flag (`--target dir`), not an internal term.
#[test]
fn help_names_the_target_flag() {
    let output =
        Command::new(env!("CARGO_BIN_EXE_rawsend")).args(["receive", "--help"]).output().expect("run");
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(!help.contains("the dir target"), "{help}");
    assert!(help.contains("With --target dir, fail instead of skipping"), "{help}");
}
