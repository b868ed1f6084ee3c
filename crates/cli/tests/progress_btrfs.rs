//! Progress and estimates on a loop-mounted btrfs (root): `receive
//! --progress=json` ends at the stream's size, `send --estimate` is within
//! 1% of the real stream (full and incremental, v1, v2 and compressed), and
//! `send --progress=json` counts the stream it sends, unchanged, out of the
//! estimate. Rawsend invoked as `btrfs` never shows progress. These tests
//! fail (never skip) when not root or when mounting fails.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use rawsend_testutil::fixtures::testdata_dir;
use rawsend_testutil::{FsType, LoopFs, MIB, output_text, require_root, run};
use serde_json::Value;

const RAWSEND: &str = env!("CARGO_BIN_EXE_rawsend");
/// Largest error of `send --estimate` accepted (measured: exact on this tree).
const ESTIMATE_TOLERANCE: f64 = 0.01;

fn rawsend(cwd: &Path, args: &[&str]) -> Output {
    let output = Command::new(RAWSEND).args(args).current_dir(cwd).output().unwrap();
    assert!(output.status.success(), "rawsend {args:?}: {}", output_text(&output));
    output
}

fn last_json(stderr: &[u8]) -> Value {
    let text = String::from_utf8_lossy(stderr);
    let last = text.lines().last().unwrap_or_else(|| panic!("no progress lines"));
    let value: Value = serde_json::from_str(last).unwrap_or_else(|err| panic!("{last:?}: {err}"));
    assert_eq!(value["final"], true, "{text}");
    value
}

#[test]
fn receive_json_progress_ends_at_the_stream_size() {
    require_root();
    let fs = LoopFs::btrfs(256 * MIB);
    let sample = testdata_dir().join("sample.stream");
    let size = fs::metadata(&sample).unwrap().len();
    fs::create_dir(fs.path().join("file")).unwrap();
    let output = rawsend(fs.path(), &["receive", "--progress=json", "-f", sample.to_str().unwrap(), "file"]);
    let last = last_json(&output.stderr);
    assert_eq!(
        (&last["bytes"], &last["total"], &last["subvolume"]),
        (&size.into(), &size.into(), &"sample".into())
    );
    assert!(fs.path().join("file/sample").is_dir());

    fs::create_dir(fs.path().join("piped")).unwrap();
    let output = Command::new(RAWSEND)
        .args(["receive", "--progress=json", "piped"])
        .current_dir(fs.path())
        .stdin(fs::File::open(&sample).unwrap())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", output_text(&output));
    let last = last_json(&output.stderr);
    assert_eq!((&last["bytes"], last["total"].is_null()), (&size.into(), true));
}

#[test]
fn the_btrfs_entry_point_never_shows_progress() {
    require_root();
    let fs = LoopFs::btrfs(256 * MIB);
    let bin = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(RAWSEND, bin.path().join("btrfs")).unwrap();
    let sample = testdata_dir().join("sample.stream");
    let output = Command::new(bin.path().join("btrfs"))
        .args(["receive", "--progress=json", "-f", sample.to_str().unwrap(), "."])
        .current_dir(fs.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", output_text(&output));
    assert_eq!(String::from_utf8_lossy(&output.stderr), "At subvol sample\n");
}

/// A compressed btrfs with read-only snapshots `s1` and, after changes, `s2`.
fn tree() -> LoopFs {
    require_root();
    let fs = LoopFs::builder(FsType::Btrfs, 512 * MIB).mount_options("compress=zstd").build();
    let path = |relative: &str| fs.path().join(relative);
    let btrfs = |args: &[&str]| run(Command::new("btrfs").args(args).current_dir(fs.path()));
    btrfs(&["subvolume", "create", "vol"]);
    let text: Vec<u8> = (0..400_000u32).flat_map(|n| format!("line {n}\n").into_bytes()).collect();
    let noise: Vec<u8> =
        (0..3_000_000u64).map(|n| (n.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8).collect();
    fs::create_dir(path("vol/dir")).unwrap();
    for n in 0..200 {
        fs::write(path(&format!("vol/dir/small{n}")), &text[..(n * 37) % 5000]).unwrap();
    }
    fs::write(path("vol/text"), &text).unwrap();
    fs::write(path("vol/noise"), &noise).unwrap();
    let sparse = fs::File::create(path("vol/sparse")).unwrap();
    sparse.set_len(50 * MIB).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&sparse, &text[..300_000], 20 * MIB).unwrap();
    run(&mut Command::new("sync"));
    btrfs(&["subvolume", "snapshot", "-r", "vol", "s1"]);
    fs::write(path("vol/added"), &text[..1_000_000]).unwrap();
    fs::rename(path("vol/dir"), path("vol/moved")).unwrap();
    fs::remove_file(path("vol/moved/small7")).unwrap();
    std::os::unix::fs::FileExt::write_all_at(
        &fs::File::options().write(true).open(path("vol/text")).unwrap(),
        b"changed",
        100_000,
    )
    .unwrap();
    run(Command::new("cp").args(["--reflink=always", "vol/noise", "vol/noise-copy"]).current_dir(fs.path()));
    run(&mut Command::new("sync"));
    btrfs(&["subvolume", "snapshot", "-r", "vol", "s2"]);
    fs
}

fn stream_len(cwd: &Path, args: &[&str]) -> u64 {
    rawsend(cwd, &[&["send", "-q"][..], args].concat()).stdout.len() as u64
}

#[test]
fn the_estimate_is_within_one_percent_of_the_stream() {
    let fs = tree();
    for args in [
        &["s1"][..],
        &["--proto", "2", "s1"],
        &["--compressed-data", "s1"],
        &["-p", "s1", "s2"],
        &["--proto", "2", "-p", "s1", "s2"],
        &["--compressed-data", "-p", "s1", "s2"],
        &["-e", "--compressed-data", "s1", "s2"],
    ] {
        let real = stream_len(fs.path(), args);
        let output = rawsend(fs.path(), &[&["send", "--estimate"][..], args].concat());
        let text = String::from_utf8_lossy(&output.stdout);
        let estimate: u64 =
            text.lines().last().unwrap().parse().unwrap_or_else(|err| panic!("{text:?}: {err}"));
        let error = (estimate as f64 - real as f64).abs() / real as f64;
        assert!(error <= ESTIMATE_TOLERANCE, "{args:?}: estimated {estimate}, sent {real}");
        let json = rawsend(fs.path(), &[&["send", "--estimate", "--json"][..], args].concat());
        let json: Value = serde_json::from_slice(&json.stdout).unwrap();
        assert_eq!(json["bytes"], estimate);
        let subvolumes = json["subvolumes"].as_array().unwrap();
        let sum: u64 = subvolumes.iter().map(|one| one["bytes"].as_u64().unwrap()).sum();
        assert_eq!(sum, estimate, "{json}");
    }
    // The compressed stream is estimated smaller: the extents' stored sizes count.
    assert!(
        stream_len(fs.path(), &["--compressed-data", "s1"]) < stream_len(fs.path(), &["--proto", "2", "s1"])
    );
}

#[test]
fn send_json_progress_counts_the_unchanged_stream_out_of_the_estimate() {
    let fs = tree();
    let quiet = fs.path().join("../quiet.stream");
    let watched = fs.path().join("../watched.stream");
    for args in [&["--compressed-data", "-p", "s1", "s2"][..], &["s1", "s2"]] {
        let path = |file: &PathBuf| file.to_str().unwrap().to_owned();
        rawsend(fs.path(), &[&["send", "-q", "-f", &path(&quiet)][..], args].concat());
        let output = Command::new(RAWSEND)
            .args([&["send", "--progress=json"][..], args].concat())
            .current_dir(fs.path())
            .stdout(Stdio::from(fs::File::create(&watched).unwrap()))
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", output_text(&output));
        let (expected, sent) = (fs::read(&quiet).unwrap(), fs::read(&watched).unwrap());
        assert!(
            expected == sent,
            "{args:?}: the stream changed ({} and {} bytes)",
            expected.len(),
            sent.len()
        );
        let last = last_json(&output.stderr);
        assert_eq!(last["bytes"], sent.len() as u64, "{args:?}");
        let estimate = rawsend(fs.path(), &[&["send", "--estimate", "-q"][..], args].concat()).stdout;
        let estimate: u64 = String::from_utf8_lossy(&estimate).trim().parse().unwrap();
        assert_eq!(last["total"], estimate);
        assert_eq!(last["subvolume"], *args.last().unwrap());
        let text = String::from_utf8_lossy(&output.stderr);
        assert!(text.starts_with("At subvol "), "{text}");
    }
}
