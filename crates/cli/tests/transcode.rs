//! `rawsend transcode` and `rawsend receive --compress` on real filesystems.
//!
//! Every fixture chain (v1, v2, v2c) is transcoded with each data choice and
//! received by `btrfs receive` and by `rawsend receive` onto loop-mounted
//! btrfs; both must give exactly the tree that `btrfs receive` of the
//! original chain gives (content, modes, owners, times in ns, xattrs, links;
//! `rawsend_testutil::tree`), and compsize must show only the requested
//! algorithm (or none). `receive --compress` must give the same trees with its
//! data compressed, and is refused on the dir target. A large stream is
//! transcoded within a fixed memory bound.
//!
//! Root tests (loop mounts); they fail, never skip, when they cannot mount.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rawsend_stream::{Command as StreamCommand, StreamPath, StreamWriter, Uuid};
use rawsend_testutil::tree::{CompareOptions, TreeSnapshot, diff_with};
use rawsend_testutil::{FsType, LoopFs, MIB, fixtures, output_text, require_root, run};

/// The transcode choices checked on btrfs, and the compression compsize must show
/// (beside `none` for data that does not compress). Plain WRITEs (`none`) are
/// compressed by the receiving kernel where the fixtures set the `btrfs.compression`
/// property, so compsize says nothing about those choices.
const CHOICES: &[(&[&str], Option<&str>)] = &[
    (&["--compress", "zstd"], Some("zstd")),
    (&["--compress", "zlib:9"], Some("zlib")),
    (&["--compress", "lzo"], Some("lzo")),
    (&["--compress", "none"], None),
    (&["--proto", "1"], None),
];

fn rawsend() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rawsend"))
}

fn btrfs_fs() -> LoopFs {
    LoopFs::builder(FsType::Btrfs, 1024 * MIB).mount_options("noatime").build()
}

fn now_ns() -> i128 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970");
    i128::try_from(now.as_nanos()).expect("time fits") - 1_000_000_000
}

/// `rawsend transcode ARGS -f input -o output`.
fn transcode(input: &Path, output: &Path, args: &[&str]) {
    run(rawsend().arg("transcode").args(args).arg("-f").arg(input).arg("-o").arg(output));
}

/// Receives `streams` in order into `dest` with `receiver` (`btrfs` or `rawsend`) and its `args`.
fn receive(receiver: &str, args: &[&str], streams: &[PathBuf], dest: &Path) -> Result<(), String> {
    fs::create_dir_all(dest).expect("create destination");
    for stream in streams {
        let mut command = if receiver == "btrfs" { Command::new("btrfs") } else { rawsend() };
        let output =
            command.arg("receive").args(args).arg("-f").arg(stream).arg(dest).output().expect("start");
        if !output.status.success() {
            return Err(format!(
                "{receiver} receive {args:?} of {}: {}",
                stream.display(),
                output_text(&output)
            ));
        }
    }
    Ok(())
}

/// Differences between the subvolumes under `expected` and `got`.
fn compare(label: &str, expected: &Path, got: &Path, since: i128, problems: &mut Vec<String>) {
    let names = |dir: &Path| -> BTreeSet<_> {
        fs::read_dir(dir).expect("list").map(|e| e.expect("entry").file_name()).collect()
    };
    let (want, have) = (names(expected), names(got));
    if want != have {
        problems.push(format!("{label}: subvolumes {have:?}, expected {want:?}"));
        return;
    }
    let options = CompareOptions { fresh_since_ns: Some(since), ..CompareOptions::default() };
    for name in want {
        let (left, right) =
            (TreeSnapshot::capture(expected.join(&name)), TreeSnapshot::capture(got.join(&name)));
        assert!(left.entries.len() > 1, "{label}: empty subvolume {name:?}");
        for line in diff_with(&left, &right, &options) {
            problems.push(format!("{label}: {name:?}: {line}"));
        }
    }
}

/// The compression types compsize reports under `dir` (`none`, `zstd`, ...).
fn compsize_types(dir: &Path) -> BTreeSet<String> {
    run(&mut Command::new("sync"));
    let output = Command::new("compsize").arg(dir).output().expect("start compsize");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .skip_while(|line| !line.starts_with("Type"))
        .skip(1)
        .filter(|line| !line.starts_with("TOTAL"))
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn transcoded_chains_receive_like_the_originals_with_both_receivers() {
    require_root();
    let since = now_ns();
    let work = tempfile::tempdir().expect("tempdir");
    let reference = btrfs_fs();
    let mut problems = Vec::new();
    let chains = fixtures::chains();
    for chain in &chains {
        receive("btrfs", &[], &chain.streams, &reference.path().join(&chain.name)).expect("fixture receives");
    }
    for (args, shown) in CHOICES {
        let fs = btrfs_fs();
        let mut seen = BTreeSet::new();
        for chain in &chains {
            let label = format!("{} transcoded {}", chain.name, args.join(" "));
            let streams: Vec<PathBuf> = chain
                .streams
                .iter()
                .map(|stream| {
                    let out = work.path().join(stream.file_name().expect("name"));
                    transcode(stream, &out, args);
                    out
                })
                .collect();
            for receiver in ["btrfs", "rawsend"] {
                let dest = fs.path().join(receiver).join(&chain.name);
                match receive(receiver, &[], &streams, &dest) {
                    Ok(()) => compare(
                        &format!("{label}, {receiver} receive"),
                        &reference.path().join(&chain.name),
                        &dest,
                        since,
                        &mut problems,
                    ),
                    Err(err) => problems.push(format!("{label}: {err}")),
                }
                seen.extend(compsize_types(&dest));
            }
        }
        if let Some(shown) = shown
            && seen != BTreeSet::from([shown.to_string(), "none".to_owned()])
        {
            problems.push(format!("{}: compsize shows {seen:?}, expected {shown} and none", args.join(" ")));
        }
        eprintln!("{}: compsize types {seen:?}", args.join(" "));
    }
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
}

#[test]
fn receive_compress_stores_compressed_extents_and_the_same_trees() {
    require_root();
    let since = now_ns();
    let reference = btrfs_fs();
    let fs = btrfs_fs();
    let mut problems = Vec::new();
    for chain in fixtures::chains() {
        let expected = reference.path().join(&chain.name);
        receive("btrfs", &[], &chain.streams, &expected).expect("fixture receives");
        for codec in ["zstd:3", "lzo"] {
            let dest = fs.path().join(codec).join(&chain.name);
            match receive("rawsend", &["--compress", codec], &chain.streams, &dest) {
                Ok(()) => compare(
                    &format!("{} receive --compress {codec}", chain.name),
                    &expected,
                    &dest,
                    since,
                    &mut problems,
                ),
                Err(err) => problems.push(err),
            }
            let types = compsize_types(&dest);
            let algorithm = &codec[..codec.find(':').unwrap_or(codec.len())];
            if chain.family() == "basic" && !types.contains(algorithm) {
                problems.push(format!("{} receive --compress {codec}: compsize shows {types:?}", chain.name));
            }
            // The kernel's own extents of a --compressed-data stream are stored as they are.
            if chain.name == "basic.v2c" && !(types.contains("zlib") && types.contains("lzo")) {
                problems.push(format!(
                    "basic.v2c receive --compress {codec}: kernel extents not kept: {types:?}"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
}

#[test]
fn receive_compress_is_refused_on_the_dir_target() {
    let dest = tempfile::tempdir().expect("tempdir");
    let sample = fixtures::testdata_dir().join("sample.stream");
    let output = rawsend()
        .args(["receive", "--target", "dir", "--compress", "zstd", "-f"])
        .arg(&sample)
        .arg(dest.path())
        .output()
        .expect("start rawsend");
    assert_eq!(output.status.code(), Some(1), "{}", output_text(&output));
    let text = output_text(&output);
    assert!(text.contains("--compress stores compressed extents, which only btrfs can hold"), "{text}");
    assert_eq!(fs::read_dir(dest.path()).expect("list").count(), 0, "nothing received");
}

/// Writes a v1 stream of `files` files of `file_mib` MiB each (48 KiB WRITEs of
/// half-compressible data) into `out`.
fn large_v1_stream(out: impl Write, files: u64, file_mib: u64) {
    let mut w = StreamWriter::new(out, 1).expect("header");
    w.write(&StreamCommand::Subvol {
        path: StreamPath::new(b"big").expect("path"),
        uuid: Uuid([9; 16]),
        ctransid: 1,
    })
    .expect("subvol");
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut block = vec![0u8; 48 * 1024];
    for n in 0..files {
        let name = format!("f{n}");
        let path = StreamPath::new(name.as_bytes()).expect("path");
        w.write(&StreamCommand::Mkfile { path, ino: 257 + n }).expect("mkfile");
        for offset in (0..file_mib * MIB).step_by(block.len()) {
            for (i, byte) in block.iter_mut().enumerate() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *byte = if i % 2 == 0 { state as u8 & 0x0f } else { b'a' };
            }
            w.write(&StreamCommand::Write { path, offset, data: &block }).expect("write");
        }
    }
    w.write(&StreamCommand::End).expect("end");
    w.finish().expect("flush");
}

#[test]
fn transcoding_a_large_stream_stays_within_a_fixed_memory_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rss_file = dir.path().join("rss");
    let mut child = Command::new("/usr/bin/time")
        .args(["-f", "%M", "-o"])
        .arg(&rss_file)
        .arg(env!("CARGO_BIN_EXE_rawsend"))
        .args(["transcode", "--compress", "zstd:1", "-o", "/dev/null"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("start /usr/bin/time rawsend transcode");
    let stdin = child.stdin.take().expect("stdin");
    large_v1_stream(std::io::BufWriter::new(stdin), 32, 8);
    let status = child.wait().expect("wait");
    assert!(status.success(), "transcode failed: {status}");
    let rss_kib: u64 = fs::read_to_string(&rss_file).expect("rss").trim().parse().expect("a number");
    eprintln!("peak RSS transcoding a 256 MiB stream: {} KiB", rss_kib);
    assert!(rss_kib < 48 * 1024, "peak RSS {rss_kib} KiB for a 256 MiB stream");
}

/// Counts ENCODED_WRITEs per compression value in `stream` (`rawsend dump --json`).
fn encoded_writes(stream: &Path) -> std::collections::BTreeMap<u64, usize> {
    let output = rawsend().args(["dump", "--json", "-f"]).arg(stream).output().expect("start rawsend dump");
    assert!(output.status.success(), "{}", output_text(&output));
    let mut counts = std::collections::BTreeMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let value: serde_json::Value = serde_json::from_str(line).expect("json");
        if value["command"] == "encoded_write" {
            *counts.entry(value["compression"].as_u64().expect("compression")).or_default() += 1;
        }
    }
    counts
}

#[test]
fn send_compress_compresses_what_the_kernel_stored_plain_and_keeps_its_extents() {
    require_root();
    let since = now_ns();
    let source = btrfs_fs();
    let vol = source.path().join("vol");
    run(Command::new("btrfs").args(["subvolume", "create"]).arg(&vol));
    let text: Vec<u8> =
        b"plain text the kernel stored uncompressed\n".iter().copied().cycle().take(1_000_000).collect();
    fs::write(vol.join("plain.txt"), &text).expect("write plain");
    fs::write(vol.join("small"), &text[..3000]).expect("write small");
    run(&mut Command::new("sync"));
    run(Command::new("mount").args(["-o", "remount,compress=lzo"]).arg(source.path()));
    fs::write(vol.join("lzo.txt"), &text).expect("write lzo");
    run(&mut Command::new("sync"));
    let snap = source.path().join("snap");
    run(Command::new("btrfs").args(["subvolume", "snapshot", "-r"]).arg(&vol).arg(&snap));
    let work = tempfile::tempdir().expect("tempdir");
    let stream = work.path().join("s");
    run(rawsend()
        .args(["send", "-q", "--compressed-data", "--compress", "zstd", "-f"])
        .arg(&stream)
        .arg(&snap));
    let counts = encoded_writes(&stream);
    assert!(counts.get(&2).is_some_and(|&n| n >= 8), "zstd extents for the plain file: {counts:?}");
    assert!(counts.get(&3).is_some_and(|&n| n >= 8), "the kernel's LZO extents as they are: {counts:?}");
    let dest = btrfs_fs();
    let mut problems = Vec::new();
    for receiver in ["btrfs", "rawsend"] {
        let into = dest.path().join(receiver);
        receive(receiver, &[], std::slice::from_ref(&stream), &into).expect("receives");
        let (want, got) = (TreeSnapshot::capture(&snap), TreeSnapshot::capture(into.join("snap")));
        let options =
            CompareOptions { fresh_since_ns: Some(since), root: false, ..CompareOptions::default() };
        problems
            .extend(diff_with(&want, &got, &options).into_iter().map(|line| format!("{receiver}: {line}")));
        let types = compsize_types(&into);
        if !(types.contains("zstd") && types.contains("lzo")) {
            problems.push(format!("{receiver}: compsize shows {types:?}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let refused =
        rawsend().args(["send", "--proto", "1", "--compress", "zstd", "-f"]).arg(&stream).arg(&snap).output();
    let refused = refused.expect("start rawsend");
    assert!(!refused.status.success());
    assert!(
        output_text(&refused).contains("--compress makes a protocol 2 stream"),
        "{}",
        output_text(&refused)
    );
}

/// Stream versions in `stream` (`rawsend dump --json` gives each command's).
fn versions(stream: &Path) -> BTreeSet<u64> {
    let output = rawsend().args(["dump", "--json", "-f"]).arg(stream).output().expect("start rawsend dump");
    assert!(output.status.success(), "{}", output_text(&output));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).expect("json")["version"]
                .as_u64()
                .expect("version")
        })
        .collect()
}

#[test]
fn transcode_defaults_and_what_v1_leaves_out() {
    let work = tempfile::tempdir().expect("tempdir");
    let out = work.path().join("out");
    let streams = fixtures::streams_dir();
    // No options: v2 with zstd extents.
    transcode(&streams.join("basic-full.v1.stream"), &out, &[]);
    assert_eq!(versions(&out), BTreeSet::from([2]));
    let counts = encoded_writes(&out);
    assert!(counts.keys().eq([&2]) && counts[&2] > 5, "{counts:?}");
    // --proto 1 alone decodes everything.
    transcode(&streams.join("basic-full.v2c.stream"), &out, &["--proto", "1"]);
    assert_eq!((versions(&out), encoded_writes(&out).len()), (BTreeSet::from([1]), 0));
    // FILEATTR has no v1 form: left out, with a warning that counts them.
    let output = rawsend()
        .args(["transcode", "--proto", "1", "-f"])
        .arg(streams.join("basic-incr1.v2.stream"))
        .arg("-o")
        .arg(&out)
        .output()
        .expect("start rawsend");
    assert!(output.status.success(), "{}", output_text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("warning: left out 4 FILEATTR commands (file attributes)"), "{stderr}");
    // A compressed v1 is a contradiction.
    let output = rawsend().args(["transcode", "--proto", "1", "--compress", "zstd", "-o"]).arg(&out).output();
    let output = output.expect("start rawsend");
    assert_eq!(output.status.code(), Some(1));
    assert!(output_text(&output).contains("compressed output needs protocol version 2 or 3, not 1"));
}
