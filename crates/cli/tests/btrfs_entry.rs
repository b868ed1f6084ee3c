//! rawsend invoked as `btrfs` (crates/cli/src/btrfs_compat.rs): which
//! `btrfs` it executes for what it does not handle, with argv and exit
//! status passed through, never itself in a loop; and that `btrfs send
//! --help` / `btrfs receive --help` name every option btrfs-progs' help
//! names. The help comparison needs btrfs-progs at /usr/bin/btrfs.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rawsend_testutil::run;

const RAWSEND: &str = env!("CARGO_BIN_EXE_rawsend");
const PROGS: &str = "/usr/bin/btrfs";

/// A directory beside the rawsend binary (same filesystem, for hard links).
fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir")
}

/// `DIR/btrfs`, a symlink to rawsend.
fn symlink_in(dir: &Path) -> PathBuf {
    let link = dir.join("btrfs");
    std::os::unix::fs::symlink(RAWSEND, &link).expect("symlink btrfs");
    link
}

/// A PATH with `dirs` first, then the system's.
fn path_with(dirs: &[&Path]) -> OsString {
    let system = [Path::new("/usr/sbin"), Path::new("/usr/bin"), Path::new("/sbin"), Path::new("/bin")];
    std::env::join_paths(dirs.iter().copied().chain(system)).expect("join PATH")
}

/// Runs `btrfs ARGS` (as found in `path`) with that PATH and no RAWSEND_* variables.
fn btrfs(path: &OsString, args: &[&str]) -> Output {
    Command::new("btrfs")
        .args(args)
        .env("PATH", path)
        .env_remove("RAWSEND_REAL_BTRFS")
        .env_remove("RAWSEND_BTRFS_EXEC")
        .output()
        .expect("run btrfs")
}

#[test]
fn other_subcommands_run_the_next_btrfs_in_path() {
    let dir = scratch();
    symlink_in(dir.path());
    let path = path_with(&[dir.path()]);
    let progs_version = run(Command::new(PROGS).arg("--version"));
    for args in [&["--version"][..], &["-q", "--version"]] {
        let output = btrfs(&path, args);
        assert_eq!(output.status.code(), Some(0), "{args:?}");
        assert_eq!(output.stdout, progs_version.stdout, "{args:?}");
    }
    let progs_failure =
        Command::new(PROGS).args(["subvolume", "show", "/nonexistent"]).output().expect("btrfs");
    let output = btrfs(&path, &["subvolume", "show", "/nonexistent"]);
    assert_ne!(progs_failure.status.code(), Some(0));
    assert_eq!(output.status.code(), progs_failure.status.code());
    assert_eq!(output.stderr, progs_failure.stderr);
}

#[test]
fn argv_and_exit_status_pass_through_to_the_named_btrfs() {
    let dir = scratch();
    let link = symlink_in(dir.path());
    // `bash -c CMD` has its argv[0] as $0: the real btrfs sees the name rawsend was invoked by.
    let output = Command::new(&link)
        .args(["-c", "echo \"$0|$RAWSEND_BTRFS_EXEC\"; exit 7"])
        .env("RAWSEND_REAL_BTRFS", "/bin/bash")
        .env_remove("RAWSEND_BTRFS_EXEC")
        .output()
        .expect("run btrfs");
    assert_eq!(output.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&output.stdout), format!("{}|/bin/bash\n", link.display()));
}

#[test]
fn rawsend_never_executes_itself() {
    // A hard link named btrfs is rawsend by inode: skipped in PATH.
    let dir = scratch();
    std::fs::hard_link(RAWSEND, dir.path().join("btrfs")).expect("hard link");
    let output = btrfs(&path_with(&[dir.path()]), &["--version"]);
    assert_eq!(output.stdout, run(Command::new(PROGS).arg("--version")).stdout);

    // A copy is not recognised, but the copy sees that rawsend executed it and stops.
    let first = scratch();
    let copy_dir = scratch();
    symlink_in(first.path());
    run(Command::new("cp").arg(RAWSEND).arg(copy_dir.path().join("btrfs")));
    let output = btrfs(&path_with(&[first.path(), copy_dir.path()]), &["subvolume", "list", "/"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("is rawsend, not the real btrfs") && stderr.contains("RAWSEND_REAL_BTRFS"),
        "{stderr}"
    );

    // Named by the variable: refused when it is rawsend.
    let named = scratch();
    let link = symlink_in(named.path());
    let output = Command::new(&link)
        .arg("--version")
        .env("RAWSEND_REAL_BTRFS", &link)
        .env_remove("RAWSEND_BTRFS_EXEC")
        .output()
        .expect("run btrfs");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("is rawsend itself"));
}

#[test]
fn usage_errors_exit_as_btrfs_progs_does() {
    let dir = scratch();
    let link = symlink_in(dir.path());
    for args in [&["send", "--bogus", "x"][..], &["receive"], &["receive", "a", "b"]] {
        let progs = Command::new(PROGS).args(args).output().expect("run btrfs-progs");
        let ours = Command::new(&link).args(args).output().expect("run btrfs entry point");
        assert_eq!(progs.status.code(), Some(1), "{args:?}");
        assert_eq!(ours.status.code(), progs.status.code(), "{args:?}");
        assert!(!ours.stderr.is_empty(), "{args:?}");
    }
    assert_eq!(Command::new(&link).args(["send", "--help"]).output().expect("help").status.code(), Some(0));
}

/// Every option a help text shows: `--long` words, and `-x` for each letter of `-xy`
/// (clap's `--verbose...` counts as `--verbose`, as `grep -- --verbose` finds it).
fn options_in(help: &str) -> BTreeSet<String> {
    let mut options = BTreeSet::new();
    for word in help.split(|c: char| c.is_whitespace() || "|[],=".contains(c)) {
        let word = word.trim_end_matches('.');
        if let Some(long) = word.strip_prefix("--").filter(|long| is_option_name(long)) {
            options.insert(format!("--{long}"));
        } else if let Some(short) = word.strip_prefix('-').filter(|short| is_option_name(short)) {
            options.extend(short.chars().map(|letter| format!("-{letter}")));
        }
    }
    options
}

fn is_option_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

#[test]
fn help_names_every_option_of_btrfs_progs() {
    let dir = scratch();
    let link = symlink_in(dir.path());
    for sub in ["send", "receive"] {
        let progs =
            options_in(&String::from_utf8_lossy(&run(Command::new(PROGS).args([sub, "--help"])).stdout));
        assert!(progs.contains("-f") && progs.contains("--quiet"), "{sub}: {progs:?}");
        for help in [
            run(Command::new(RAWSEND).args([sub, "--help"])).stdout,
            run(Command::new(&link).args([sub, "--help"])).stdout,
        ] {
            let ours = options_in(&String::from_utf8_lossy(&help));
            let missing: Vec<_> = progs.difference(&ours).collect();
            assert!(missing.is_empty(), "{sub} --help lacks {missing:?}");
        }
    }
}
