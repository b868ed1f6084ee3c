//! btrbk, the most used btrfs backup tool, backing up through rawsend's
//! `btrfs` entry point: a full backup and several incrementals of a
//! loop-mounted btrfs subvolume, each checked (btrbk's exit status, the
//! received tree against its snapshot, received UUIDs, incremental parents).
//!
//! btrbk runs `btrfs send ... | btrfs receive ...` by the name `btrfs` from
//! PATH; the test puts a symlink named `btrfs` to rawsend first in PATH, as
//! the README's recipe does. To prove that rawsend, not btrfs-progs, sent and
//! received, btrbk runs in a private mount namespace where btrfs-progs'
//! binary is covered by a wrapper that logs each call before executing the
//! real one (kept as a copy): any `btrfs send` or `btrfs receive` that
//! reached btrfs-progs, by PATH, by absolute path or handed on by rawsend,
//! would be in that log. The log must hold btrbk's other calls (`subvolume
//! show`, ...), so the wrapper was in the way, and no send or receive.
//!
//! scripts/test.sh installs btrbk (Debian package); this test installs
//! nothing and fails without it.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use rawsend_testutil::tree::{TreeSnapshot, diff};
use rawsend_testutil::{LoopFs, MIB, output_text, received_state, require_root, run, run_cmd};

/// The btrfs-progs binary that PATH finds, resolved.
fn btrfs_progs() -> PathBuf {
    let output = run(Command::new("sh").args(["-c", "command -v btrfs"]));
    let path = PathBuf::from(String::from_utf8(output.stdout).unwrap().trim());
    fs::canonicalize(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// The test's helpers: the `btrfs` symlink, the wrapper and its log, the btrbk config.
struct Setup {
    dir: tempfile::TempDir,
    progs: PathBuf,
}

impl Setup {
    fn new(mnt: &Path) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let progs = btrfs_progs();
        let bin = dir.path().join("bin");
        fs::create_dir(&bin).unwrap();
        symlink(env!("CARGO_BIN_EXE_rawsend"), bin.join("btrfs")).unwrap();
        fs::copy(&progs, dir.path().join("btrfs-progs")).unwrap();
        let wrapper = dir.path().join("logging-btrfs");
        let script = format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{log}'\nexec '{real}' \"$@\"\n",
            log = dir.path().join("progs.log").display(),
            real = dir.path().join("btrfs-progs").display()
        );
        fs::write(&wrapper, script).unwrap();
        fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
        let config = format!(
            "snapshot_preserve_min all\ntarget_preserve_min all\nsnapshot_dir snapshots\n\
             volume {mnt}\n  subvolume src\n    target {mnt}/backup\n",
            mnt = mnt.display()
        );
        fs::write(dir.path().join("btrbk.conf"), config).unwrap();
        Setup { dir, progs }
    }

    /// `btrbk run` with rawsend first in PATH, btrfs-progs covered by the logging wrapper.
    fn btrbk_run(&self) {
        let path = format!("{}:{}", self.dir.path().join("bin").display(), std::env::var("PATH").unwrap());
        let script = "mount --bind \"$1\" \"$2\" && exec btrbk --config \"$3\" run";
        let output = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", script, "sh"])
            .arg(self.dir.path().join("logging-btrfs"))
            .arg(&self.progs)
            .arg(self.dir.path().join("btrbk.conf"))
            .env("PATH", path)
            .env("RAWSEND_REAL_BTRFS", &self.progs)
            .output()
            .expect("unshare and btrbk are installed (scripts/test.sh installs btrbk)");
        assert!(output.status.success(), "btrbk run failed: {}", output_text(&output));
    }

    /// The command lines that reached btrfs-progs.
    fn progs_calls(&self) -> Vec<String> {
        let log = fs::read_to_string(self.dir.path().join("progs.log")).unwrap_or_default();
        log.lines().map(str::to_owned).collect()
    }
}

/// A field of `btrfs subvolume show`.
fn show(subvol: &Path, name: &str) -> String {
    let output = run_cmd("btrfs", ["subvolume".as_ref(), "show".as_ref(), subvol.as_os_str()]);
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.lines()
        .find_map(|line| line.trim().strip_prefix(name).map(|rest| rest.trim().to_owned()))
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

/// The subvolumes in `dir`, sorted (btrbk's names sort by time).
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

/// Changes the source between backups: new, grown, rewritten, renamed, linked, removed files.
fn change(src: &Path, round: usize) {
    fs::write(src.join(format!("new-{round}")), vec![round as u8; 70_000 * round]).unwrap();
    fs::write(src.join("grows"), "x".repeat(10_000 * (round + 1))).unwrap();
    fs::create_dir_all(src.join(format!("dir/{round}"))).unwrap();
    fs::rename(src.join(format!("new-{}", round - 1)), src.join(format!("dir/{round}/moved"))).unwrap();
    fs::hard_link(src.join("grows"), src.join(format!("dir/{round}/link"))).unwrap();
    if round == 2 {
        fs::remove_dir_all(src.join("dir/1")).unwrap();
    }
}

#[test]
fn btrbk_backs_up_through_rawsend_full_then_incremental() {
    require_root();
    let fs_ = LoopFs::btrfs(512 * MIB);
    let mnt = fs_.path();
    run_cmd("btrfs", ["subvolume".as_ref(), "create".as_ref(), mnt.join("src").as_os_str()]);
    fs::create_dir(mnt.join("snapshots")).unwrap();
    fs::create_dir(mnt.join("backup")).unwrap();
    fs::write(mnt.join("src/new-0"), b"first").unwrap();
    fs::write(mnt.join("src/grows"), b"x").unwrap();
    let setup = Setup::new(mnt);

    let mut previous_backup: Option<PathBuf> = None;
    for round in 0..4 {
        if round > 0 {
            change(&mnt.join("src"), round);
        }
        setup.btrbk_run();
        let snapshots = listing(&mnt.join("snapshots"));
        let backups = listing(&mnt.join("backup"));
        assert_eq!(backups, snapshots, "round {round}: one backup per snapshot");
        assert_eq!(backups.len(), round + 1, "round {round}: {backups:?}");
        let name = backups.last().unwrap();
        let snapshot = mnt.join("snapshots").join(name);
        let backup = mnt.join("backup").join(name);

        let differences = diff(&TreeSnapshot::capture(&snapshot), &TreeSnapshot::capture(&backup));
        assert!(differences.is_empty(), "round {round}: {differences:#?}");
        let state = received_state(&backup);
        assert!(state.is_received(), "round {round}: {state:?}");
        assert_eq!(state.received_uuid, show(&snapshot, "UUID:"), "round {round}");
        // An incremental receive snapshots the previous backup (its Parent UUID); a full one has none.
        let parent = show(&backup, "Parent UUID:");
        match &previous_backup {
            None => assert_eq!(parent, "-", "round {round}: the first backup is full"),
            Some(previous) => assert_eq!(parent, show(previous, "UUID:"), "round {round}: incremental"),
        }
        previous_backup = Some(backup);
    }

    let calls = setup.progs_calls();
    assert!(
        calls.iter().any(|call| call.starts_with("subvolume")),
        "btrbk's calls passed the wrapper: {calls:?}"
    );
    let sends_or_receives: Vec<&String> = calls
        .iter()
        .filter(|call| call.split_whitespace().any(|word| word == "send" || word == "receive"))
        .collect();
    assert!(sends_or_receives.is_empty(), "btrfs-progs sent or received: {sends_or_receives:?}");
}
