//! `--progress` of `dump` and `receive --target dir` (no root needed): JSON
//! lines that parse, grow and end at the stream's size; `always` draws lines
//! when stderr is not a terminal; the default (`auto`) draws a bar on a
//! terminal (run under `script`) unless `-q`, and off a terminal it and
//! `never` leave stdout and stderr byte for byte as they were.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use rawsend_testutil::fixtures::testdata_dir;
use rawsend_testutil::output_text;
use serde_json::Value;

const RAWSEND: &str = env!("CARGO_BIN_EXE_rawsend");

fn sample() -> PathBuf {
    testdata_dir().join("sample.stream")
}

fn rawsend(args: &[&str], cwd: &Path) -> Output {
    let output = Command::new(RAWSEND).args(args).current_dir(cwd).env("TZ", "UTC").output().unwrap();
    assert!(output.status.success(), "rawsend {args:?}: {}", output_text(&output));
    output
}

/// The JSON objects of `--progress=json` on `stderr`, checked: every field there,
/// bytes, commands and elapsed never going back, only the last one final.
fn json_lines(stderr: &[u8]) -> Vec<Value> {
    let lines: Vec<Value> = String::from_utf8_lossy(stderr)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{line:?}: {err}")))
        .collect();
    assert!(!lines.is_empty(), "no progress lines");
    for line in &lines {
        for field in ["bytes", "total", "commands", "rate", "subvolume", "path", "elapsed", "final"] {
            assert!(line.get(field).is_some(), "{field} missing in {line}");
        }
    }
    for pair in lines.windows(2) {
        for field in ["bytes", "commands", "elapsed"] {
            assert!(pair[0][field].as_f64() <= pair[1][field].as_f64(), "{field} went back: {pair:?}");
        }
    }
    let finals: Vec<bool> = lines.iter().map(|line| line["final"].as_bool().unwrap()).collect();
    assert_eq!(finals.iter().filter(|&&last| last).count(), 1, "{lines:?}");
    assert!(finals[finals.len() - 1], "the last line is not final: {lines:?}");
    lines
}

#[test]
fn json_progress_of_a_piped_dump_grows_to_the_stream_size() {
    let stream = std::fs::read(sample()).unwrap();
    let mut child = Command::new(RAWSEND)
        .args(["dump", "--progress=json", "--size", "32K"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Four pieces, 1.2 s apart: the dump is seen half way, several times.
    let mut stdin = child.stdin.take().unwrap();
    for piece in stream.chunks(stream.len().div_ceil(4)) {
        stdin.write_all(piece).unwrap();
        stdin.flush().unwrap();
        std::thread::sleep(Duration::from_millis(1200));
    }
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", output_text(&output));
    let lines = json_lines(&output.stderr);
    assert!(lines.len() >= 4, "{lines:?}");
    let partial = &lines[0];
    assert!(partial["bytes"].as_u64().unwrap() < stream.len() as u64, "{partial}");
    let last = lines.last().unwrap();
    assert_eq!(last["bytes"], stream.len() as u64);
    assert_eq!(last["total"], 32 * 1024);
    assert_eq!(last["commands"], 65);
    assert_eq!(last["subvolume"], "sample");
    assert!(last["elapsed"].as_f64().unwrap() >= 3.6, "{last}");
    assert!(last["rate"].as_u64().unwrap() > 0, "{last}");
}

#[test]
fn json_progress_of_a_file_has_its_size_as_total() {
    let dir = tempfile::tempdir().unwrap();
    let sample = sample();
    let output = rawsend(&["dump", "--progress=json", "-f", sample.to_str().unwrap()], dir.path());
    let size = std::fs::metadata(&sample).unwrap().len();
    let lines = json_lines(&output.stderr);
    assert_eq!(
        (&lines.last().unwrap()["bytes"], &lines.last().unwrap()["total"]),
        (&size.into(), &size.into())
    );
    let without = rawsend(&["dump", "--progress=never", "-f", sample.to_str().unwrap()], dir.path());
    assert_eq!(output.stdout, without.stdout, "progress changed the dump");
}

#[test]
fn json_progress_of_a_transcode_counts_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let sample = sample();
    let (sample, out) = (sample.to_str().unwrap(), dir.path().join("out"));
    let args = ["transcode", "--progress=json", "-f", sample, "-o", out.to_str().unwrap()];
    let output = rawsend(&args, dir.path());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let size = std::fs::metadata(sample).unwrap().len();
    let lines = json_lines(&output.stderr);
    let last = lines.last().unwrap();
    assert_eq!(
        (&last["bytes"], &last["total"], &last["subvolume"]),
        (&size.into(), &size.into(), &"sample".into())
    );
    let quiet = dir.path().join("quiet");
    let args = ["transcode", "--progress=never", "-f", sample, "-o", quiet.to_str().unwrap()];
    assert!(rawsend(&args, dir.path()).stderr.is_empty());
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&quiet).unwrap(), "progress changed the output");
}

#[test]
fn always_draws_lines_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let sample = sample();
    let sample = sample.to_str().unwrap();
    for always in [&["--progress"][..], &["--progress=always"]] {
        let output = rawsend(&[&["dump", "-f", sample][..], always].concat(), dir.path());
        let text = String::from_utf8_lossy(&output.stderr);
        let last = text.lines().last().unwrap_or_default();
        assert!(last.starts_with("rawsend: progress: 32.08 KiB of 32.08 KiB (100%)"), "{text}");
        assert!(last.contains("65 commands, sample: "), "{text}");
    }
}

#[test]
fn auto_and_never_leave_the_output_as_it_was() {
    // Dumps, and a dir-target receive that reports on stderr.
    let sample = sample();
    let sample = sample.to_str().unwrap();
    let runs = [
        vec!["dump", "-f", sample],
        vec!["receive", "--dump", "-f", sample],
        vec!["receive", "--target", "dir", "-f", sample, "dest"],
    ];
    for args in runs {
        let mut outputs = Vec::new();
        for progress in [None, Some("--progress=never"), Some("--progress=auto")] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("dest")).unwrap();
            let args: Vec<&str> = args.iter().copied().chain(progress).collect();
            let output = rawsend(&args, dir.path());
            outputs.push((output.stdout, output.stderr));
        }
        assert!(outputs.iter().all(|output| *output == outputs[0]), "{args:?}: outputs differ");
    }
}

#[test]
fn size_takes_binary_suffixes_and_refuses_others() {
    let dir = tempfile::tempdir().unwrap();
    let sample = sample();
    let sample = sample.to_str().unwrap();
    let output = rawsend(&["dump", "-f", sample, "--progress=json", "--size", "1M"], dir.path());
    assert_eq!(json_lines(&output.stderr).last().unwrap()["total"], 1 << 20);
    let refused = Command::new(RAWSEND).args(["dump", "-f", sample, "--size", "1X"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", output_text(&refused));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unknown suffix"), "{}", output_text(&refused));
}

/// What `command` (a shell command line) writes on a terminal, run under `script`.
fn on_a_terminal(command: &str) -> String {
    let output = Command::new("script").args(["-qec", command, "/dev/null"]).output().unwrap();
    assert!(output.status.success(), "{}", output_text(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn auto_draws_a_bar_on_a_terminal_unless_quiet() {
    let sample = sample();
    let line = |args: &str| format!("{RAWSEND} {args} -f {} >/dev/null", sample.display());
    let bar = on_a_terminal(&line("dump"));
    assert!(bar.contains("[========================] 32.08 KiB/32.08 KiB (100%)"), "{bar:?}");
    assert!(bar.contains("65 commands, sample: "), "{bar:?}");
    assert!(on_a_terminal(&line("receive --dump")).contains("(100%)"));
    assert_eq!(on_a_terminal(&line("receive -q --dump")), "");
    assert_eq!(on_a_terminal(&line("dump --progress=never")), "");
}
