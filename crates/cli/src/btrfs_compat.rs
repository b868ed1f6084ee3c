//! rawsend as `btrfs`: invoked under the file name `btrfs` (a symlink, hard
//! link or copy put first in PATH), rawsend handles `btrfs send` and `btrfs
//! receive` with btrfs-progs' syntax and executes the real `btrfs` for
//! everything else, so scripts and test suites written for btrfs-progs run
//! rawsend unchanged.
//!
//! Like btrfs-progs, the global options `-q|--quiet` and `-v|--verbose` may
//! precede the subcommand, and a subcommand may be abbreviated to any prefix
//! that names only it (`se`, `rec`). Any other global option (`--help`,
//! `--version`, `--format`, `--log`), a missing subcommand and every other
//! subcommand go to the real `btrfs`: the one named by `RAWSEND_REAL_BTRFS`,
//! else the next `btrfs` in PATH that is not rawsend itself (compared by
//! canonical path and by device and inode). The process is replaced by it
//! (`exec`), so argv (argv\[0\] as given) and the exit status pass through.
//! `RAWSEND_BTRFS_EXEC` marks a process that rawsend executed as the real
//! btrfs: when that process is rawsend again (an unrecognised copy), it
//! fails instead of executing in a loop.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, FromArgMatches};

use crate::meter::When;
use crate::receive::ReceiveArgs;
use crate::send::SendArgs;
use crate::verbosity::Verbosity;

/// Names the real `btrfs` to execute for everything rawsend does not handle.
pub const REAL_BTRFS_VAR: &str = "RAWSEND_REAL_BTRFS";
/// Set in the environment of the real `btrfs` that rawsend executes.
const EXEC_MARKER_VAR: &str = "RAWSEND_BTRFS_EXEC";

/// Whether rawsend was invoked under the file name `btrfs`.
pub fn invoked_as_btrfs(argv0: Option<&OsString>) -> bool {
    argv0.and_then(|arg| Path::new(arg).file_name()) == Some(OsStr::new("btrfs"))
}

/// A `btrfs` subcommand that rawsend implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sub {
    Send,
    Receive,
}

/// What a `btrfs` command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Plan<'a> {
    /// Run our `send` or `receive` on the arguments after the subcommand.
    Run { sub: Sub, global: Verbosity, rest: &'a [OsString] },
    /// Hand the whole command line to the real btrfs.
    Real,
}

/// Runs the `btrfs` command line `argv` (argv\[0\] included).
pub fn run(argv: &[OsString]) -> Result<()> {
    match plan(argv) {
        Plan::Run { sub: Sub::Send, global, rest } => {
            let mut args: SendArgs = parse("btrfs send", "Send subvolumes (btrfs send, by rawsend)", rest);
            args.verbosity = args.verbosity.with_global(global);
            args.progress.progress = When::Never;
            crate::send::run(&args)
        }
        Plan::Run { sub: Sub::Receive, global, rest } => {
            let mut args: ReceiveArgs =
                parse("btrfs receive", "Receive subvolumes from a stream (btrfs receive, by rawsend)", rest);
            args.verbosity = args.verbosity.with_global(global);
            args.progress.when.progress = When::Never;
            crate::receive::run(&args)
        }
        Plan::Real => exec_real(argv),
    }
}

/// Reads btrfs' global options and the subcommand, as btrfs-progs' `main` does.
fn plan(argv: &[OsString]) -> Plan<'_> {
    let mut global = Verbosity::default();
    for (index, arg) in argv.iter().enumerate().skip(1) {
        let Some(arg) = arg.to_str() else { return Plan::Real };
        if !arg.starts_with('-') {
            return match subcommand(arg) {
                Some(sub) => Plan::Run { sub, global, rest: &argv[index + 1..] },
                None => Plan::Real,
            };
        }
        if !global_option(arg, &mut global) {
            return Plan::Real;
        }
    }
    Plan::Real
}

/// Applies one global option; false for any rawsend leaves to the real btrfs.
/// btrfs-progs 6.2 counts a global `--verbose` twice (once in its option
/// loop, once more in `handle_special_globals`), and so does rawsend.
fn global_option(arg: &str, global: &mut Verbosity) -> bool {
    let flags = match arg {
        "--verbose" => "vv",
        "--quiet" => "q",
        _ if !arg.starts_with("--") && arg.len() > 1 => &arg[1..],
        _ => return false,
    };
    for flag in flags.chars() {
        match flag {
            'v' => global.verbose = global.verbose.saturating_add(1),
            'q' => global.quiet = true,
            _ => return false,
        }
    }
    true
}

/// The subcommand `token` names: the full name or a prefix that names only it
/// among btrfs-progs' commands (`se` for send; `rec` for receive, as `re`
/// also starts replace, rescue and restore).
fn subcommand(token: &str) -> Option<Sub> {
    if token.len() >= 2 && "send".starts_with(token) {
        Some(Sub::Send)
    } else if token.len() >= 3 && "receive".starts_with(token) {
        Some(Sub::Receive)
    } else {
        None
    }
}

/// Parses `rest` as the options of `btrfs NAME`; prints the help and exits 0,
/// or prints the usage error and exits 1, as btrfs-progs does (clap's own is 2).
fn parse<A: Args + FromArgMatches>(name: &'static str, about: &'static str, rest: &[OsString]) -> A {
    let command = A::augment_args(clap::Command::new(name).about(about).no_binary_name(true));
    let parsed = command.try_get_matches_from(rest).and_then(|matches| A::from_arg_matches(&matches));
    parsed.unwrap_or_else(|err| {
        let _ = err.print();
        std::process::exit(if err.use_stderr() { USAGE_STATUS } else { 0 })
    })
}

/// btrfs-progs' exit status for a usage error.
const USAGE_STATUS: i32 = 1;

/// Replaces this process with the real btrfs, run with `argv` as it came.
fn exec_real(argv: &[OsString]) -> Result<()> {
    let real = real_btrfs()?;
    let err =
        std::process::Command::new(&real).arg0(&argv[0]).args(&argv[1..]).env(EXEC_MARKER_VAR, &real).exec();
    Err(err).with_context(|| format!("cannot execute the real btrfs, {}", real.display()))
}

/// The real btrfs: `RAWSEND_REAL_BTRFS`, else the first `btrfs` in PATH that is not rawsend.
fn real_btrfs() -> Result<PathBuf> {
    if let Some(executed) = std::env::var_os(EXEC_MARKER_VAR) {
        bail!(
            "{} is rawsend, not the real btrfs (executed as btrfs by rawsend itself); \
             set {REAL_BTRFS_VAR} to the real btrfs",
            Path::new(&executed).display()
        );
    }
    let this = Identity::of(Path::new("/proc/self/exe")).context("cannot identify the rawsend executable")?;
    if let Some(named) = std::env::var_os(REAL_BTRFS_VAR).filter(|value| !value.is_empty()) {
        let named = PathBuf::from(named);
        if Identity::of(&named).is_some_and(|other| other.same_as(&this)) {
            bail!("{REAL_BTRFS_VAR}={} is rawsend itself, not the real btrfs", named.display());
        }
        return Ok(named);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("btrfs"))
        .find(|candidate| {
            Identity::of(candidate).is_some_and(|other| other.executable && !other.same_as(&this))
        })
        .with_context(|| format!("no btrfs in PATH other than rawsend itself; set {REAL_BTRFS_VAR}"))
}

/// An executable file as the kernel sees it, through every symlink.
struct Identity {
    canonical: PathBuf,
    dev: u64,
    ino: u64,
    executable: bool,
}

impl Identity {
    fn of(path: &Path) -> Option<Identity> {
        let metadata = std::fs::metadata(path).ok()?;
        Some(Identity {
            canonical: std::fs::canonicalize(path).ok()?,
            dev: metadata.dev(),
            ino: metadata.ino(),
            executable: metadata.is_file() && metadata.mode() & 0o111 != 0,
        })
    }

    fn same_as(&self, other: &Identity) -> bool {
        self.canonical == other.canonical || (self.dev, self.ino) == (other.dev, other.ino)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn global_options_and_abbreviations_reach_send_and_receive() {
        let line = argv(&["btrfs", "-q", "--verbose", "-vv", "rec", "-f", "x", "dest"]);
        let global = Verbosity { quiet: true, verbose: 4 };
        assert_eq!(plan(&line), Plan::Run { sub: Sub::Receive, global, rest: &line[5..] });
        let line = argv(&["/sbin/btrfs", "se", "snap"]);
        assert_eq!(plan(&line), Plan::Run { sub: Sub::Send, global: Verbosity::default(), rest: &line[2..] });
        let line = argv(&["btrfs", "receive"]);
        assert!(matches!(plan(&line), Plan::Run { sub: Sub::Receive, .. }));
    }

    #[test]
    fn everything_else_goes_to_the_real_btrfs() {
        for line in [
            &["btrfs"][..],
            &["btrfs", "subvolume", "list", "/"],
            &["btrfs", "re", "x"],
            &["btrfs", "s", "x"],
            &["btrfs", "sendx"],
            &["btrfs", "--help"],
            &["btrfs", "--version"],
            &["btrfs", "--log=info", "send", "x"],
            &["btrfs", "--format", "json", "send", "x"],
            &["btrfs", "-x", "send"],
            &["btrfs", "-", "send"],
            &["btrfs", "-v"],
        ] {
            assert_eq!(plan(&argv(line)), Plan::Real, "{line:?}");
        }
    }

    #[test]
    fn only_the_file_name_btrfs_is_the_entry_point() {
        assert!(invoked_as_btrfs(Some(&OsString::from("/usr/local/bin/btrfs"))));
        assert!(invoked_as_btrfs(Some(&OsString::from("btrfs"))));
        assert!(!invoked_as_btrfs(Some(&OsString::from("rawsend"))));
        assert!(!invoked_as_btrfs(Some(&OsString::from("btrfs-send"))));
        assert!(!invoked_as_btrfs(None));
    }
}
