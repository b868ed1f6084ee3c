//! rawsend prints what btrfs-progs 6.2 prints, on the same stream, at every
//! verbosity: `receive` of a full and an incremental fixture and `send` of
//! a full and an incremental snapshot, with -q, without, with -v and -vv,
//! given after the subcommand (`rawsend receive -v`) and before it through
//! the `btrfs` entry point (`btrfs -v receive`). rawsend's own extra lines
//! (all starting `rawsend:`, on stderr) are set aside and must be absent
//! at the default verbosity and with -q. Root tests on loop-mounted btrfs;
//! they fail (never skip) when not root or when mounting fails.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use rawsend_testutil::{FsType, LoopFs, MIB, fixtures, require_root, run};

const PROGS: &str = "/usr/bin/btrfs";

/// Verbosity options, given before the subcommand (global) and after it.
const CASES: [(&[&str], &[&str]); 8] = [
    (&[], &[]),
    (&[], &["-q"]),
    (&[], &["-v"]),
    (&[], &["-vv"]),
    (&["-q"], &[]),
    (&["-v"], &[]),
    (&["--verbose"], &["-v"]),
    (&["-vv"], &["-vv"]),
];

/// What a command printed: stdout, stderr without rawsend's own lines, and those lines.
#[derive(Debug, PartialEq, Eq)]
struct Printed {
    stdout: String,
    stderr: String,
    extra: Vec<String>,
}

fn printed(command: &mut Command) -> Printed {
    let output = run(command);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let (extra, progs): (Vec<&str>, Vec<&str>) =
        stderr.lines().partition(|line| line.starts_with("rawsend:"));
    Printed {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: progs.iter().map(|line| format!("{line}\n")).collect(),
        extra: extra.into_iter().map(str::to_owned).collect(),
    }
}

/// `DIR/btrfs`, a symlink to rawsend: the `btrfs` entry point.
fn entry_point(dir: &Path) -> PathBuf {
    let link = dir.join("btrfs");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_rawsend"), &link).expect("symlink btrfs");
    link
}

/// `PROGRAM GLOBAL... SUB LOCAL...` for btrfs-progs or the entry point, or
/// `rawsend SUB LOCAL...` when there are no global options.
fn command(program: &OsStr, rawsend: bool, sub: &str, (global, local): (&[&str], &[&str])) -> Command {
    let mut command = if rawsend && global.is_empty() {
        Command::new(env!("CARGO_BIN_EXE_rawsend"))
    } else {
        let mut command = Command::new(program);
        command.args(global);
        command
    };
    command.arg(sub).args(local);
    command
}

/// Asserts that rawsend printed what progs printed, and nothing of its own where it must not.
fn assert_same(what: &str, (global, local): (&[&str], &[&str]), progs: &Printed, ours: &Printed) {
    assert!(progs.extra.is_empty());
    assert_eq!(ours.stdout, progs.stdout, "{what} {global:?} {local:?}: stdout");
    assert_eq!(ours.stderr, progs.stderr, "{what} {global:?} {local:?}: stderr");
    let verbose = global.iter().chain(local).any(|arg| arg.starts_with("-v") || *arg == "--verbose");
    assert!(verbose || ours.extra.is_empty(), "{what} {global:?} {local:?}: extra lines {:?}", ours.extra);
}

#[test]
fn receive_prints_what_btrfs_receive_prints() {
    require_root();
    let progs_fs = LoopFs::btrfs(256 * MIB);
    let ours_fs = LoopFs::btrfs(256 * MIB);
    let links = tempfile::tempdir().expect("tempdir");
    let link = entry_point(links.path());
    let streams = ["basic-full.v2c", "basic-incr1.v2c"]
        .map(|name| fixtures::streams_dir().join(format!("{name}.stream")));
    let mut heard = [false; 2];
    for (index, case) in CASES.into_iter().enumerate() {
        let dest = format!("case{index}");
        for fs in [&progs_fs, &ours_fs] {
            std::fs::create_dir(fs.path().join(&dest)).expect("mkdir");
        }
        for stream in &streams {
            let receive = |fs: &LoopFs, program: &OsStr, rawsend: bool| {
                printed(
                    command(program, rawsend, "receive", case)
                        .arg("-f")
                        .arg(stream)
                        .arg(fs.path().join(&dest)),
                )
            };
            let progs = receive(&progs_fs, OsStr::new(PROGS), false);
            let ours = receive(&ours_fs, link.as_os_str(), true);
            assert_same(&format!("receive {}", stream.display()), case, &progs, &ours);
            heard[0] |= progs.stdout.starts_with("At snapshot ");
            heard[1] |= progs.stderr.starts_with("At subvol ");
        }
        // Each case's received subvolumes go, so the next incremental finds one parent.
        for fs in [&progs_fs, &ours_fs] {
            let dir = fs.path().join(&dest);
            for entry in std::fs::read_dir(&dir).expect("read dest") {
                run(Command::new(PROGS)
                    .args(["-q", "subvolume", "delete"])
                    .arg(entry.expect("entry").path()));
            }
        }
    }
    assert_eq!(
        heard,
        [true, true],
        "btrfs receive printed neither At snapshot on stdout nor At subvol on stderr"
    );
}

#[test]
fn send_prints_what_btrfs_send_prints() {
    require_root();
    let fs = LoopFs::builder(FsType::Btrfs, 256 * MIB).mount_options("compress=zstd").build();
    let links = tempfile::tempdir().expect("tempdir");
    let link = entry_point(links.path());
    let btrfs = |args: &[&str]| run(Command::new(PROGS).args(args).current_dir(fs.path()));
    btrfs(&["-q", "subvolume", "create", "vol"]);
    std::fs::write(fs.path().join("vol/file"), vec![b'x'; 300_000]).expect("write file");
    btrfs(&["-q", "subvolume", "snapshot", "-r", "vol", "s1"]);
    std::fs::write(fs.path().join("vol/other"), b"other\n").expect("write other");
    btrfs(&["-q", "subvolume", "snapshot", "-r", "vol", "s2"]);
    for subvols in [&["s1"][..], &["-p", "s1", "s2"], &["--no-data", "s1", "s2"]] {
        for case in CASES {
            let send = |program: &OsStr, rawsend: bool, out: &str| {
                printed(
                    command(program, rawsend, "send", case)
                        .args(["-f", out])
                        .args(subvols)
                        .current_dir(fs.path()),
                )
            };
            let progs = send(OsStr::new(PROGS), false, "../progs.stream");
            let ours = send(link.as_os_str(), true, "../rawsend.stream");
            assert_same(&format!("send {subvols:?}"), case, &progs, &ours);
            let streams = ["progs.stream", "rawsend.stream"]
                .map(|name| std::fs::read(fs.path().join("..").join(name)).expect("read stream"));
            assert!(streams[0] == streams[1], "send {subvols:?} {case:?}: streams differ");
        }
    }
}
