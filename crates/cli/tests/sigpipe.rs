//! A closed pipe kills rawsend with SIGPIPE, as it kills `btrfs send` and
//! `btrfs receive --dump`: under `set -o pipefail` a truncated stream must
//! not look complete (`send | head` exits 141, not 0), and `dump | head`
//! ends without a word on stderr.
//!
//! The send test needs root and a loop-mounted btrfs; it fails (never
//! skips) when not root or when mounting fails.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use rawsend_testutil::{LoopFs, MIB, fixtures, require_root, run};

/// The status a shell reports for a process killed by SIGPIPE (128 + 13).
const SIGPIPE_STATUS: i32 = 141;

/// Runs `PRODUCER | CONSUMER` in `bash -o pipefail`; `$0` and `$1` in `pipeline` are
/// `arg0` and `arg1`.
fn pipeline(pipeline: &str, arg0: &Path, arg1: &Path) -> Output {
    Command::new("bash")
        .args(["-o", "pipefail", "-c", pipeline])
        .arg(arg0)
        .arg(arg1)
        .output()
        .expect("run bash")
}

#[test]
fn send_into_a_closed_pipe_dies_of_sigpipe() {
    require_root();
    let btrfs = LoopFs::btrfs(256 * MIB);
    let vol = btrfs.path().join("vol");
    let snap = btrfs.path().join("snap");
    run(Command::new("btrfs").args(["subvolume", "create"]).arg(&vol));
    let data: Vec<u8> = (0..1_000_000u32).flat_map(|n| format!("{n:07}\n").into_bytes()).collect();
    fs::write(vol.join("data"), &data).expect("write data");
    run(Command::new("btrfs").args(["subvolume", "snapshot", "-r"]).arg(&vol).arg(&snap));

    let output = pipeline(
        r#""$0" send -q "$1" | head -c 1000 >/dev/null"#,
        Path::new(env!("CARGO_BIN_EXE_rawsend")),
        &snap,
    );
    assert_eq!(
        output.status.code(),
        Some(SIGPIPE_STATUS),
        "send into a closed pipe must die of SIGPIPE; stderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn dump_into_head_stops_quietly() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Ten joined copies: far more text than a pipe holds, so the dump must outlive `head`.
    let stream = fs::read(fixtures::streams_dir().join("basic-full.v2c.stream")).expect("read fixture");
    let joined = tmp.path().join("joined.stream");
    fs::write(&joined, stream.repeat(10)).expect("write joined stream");
    let dump = fs::read_to_string(fixtures::streams_dir().join("basic-full.v2c.dump")).expect("read dump");
    let first_line = dump.lines().next().expect("dump has lines");

    let output = pipeline(
        r#"TZ=UTC "$0" dump -f "$1" | head -n 1"#,
        Path::new(env!("CARGO_BIN_EXE_rawsend")),
        &joined,
    );
    assert_eq!(String::from_utf8_lossy(&output.stderr), "", "dump | head must not print errors");
    assert_eq!(String::from_utf8_lossy(&output.stdout), format!("{first_line}\n"));
    assert_eq!(
        output.status.code(),
        Some(SIGPIPE_STATUS),
        "dump ends like `btrfs receive --dump`: by SIGPIPE"
    );
}
