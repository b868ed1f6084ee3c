//! `rawsend stats` counts what `rawsend dump` prints: for every committed
//! fixture, the counts are computed again here from the dump's lines (one
//! line per command but END; `len=` and `unencoded_len=` fields; `./` names)
//! and compared with `stats --json`. Hostile input fails or warns exactly
//! where and as the dump does.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use rawsend_testutil::fixtures::{stream_fixtures, testdata_dir};
use rawsend_testutil::hostile::invalid_path_stream;
use serde_json::Value;

fn rawsend(args: &[&str], stream: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rawsend")).args(args).arg("-f").arg(stream).output().unwrap()
}

fn stats_json(stream: &Path) -> Value {
    let output = rawsend(&["stats", "--json"], stream);
    assert!(output.status.success(), "{}: {}", stream.display(), String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// `key=value` of a dump line, the value up to a comma or space.
fn field(line: &str, key: &str) -> Option<u64> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    line[start..].split([',', ' ']).next()?.parse().ok()
}

/// What the test counts from a dump, independently of rawsend's `Stats`.
#[derive(Default)]
struct FromDump {
    commands: BTreeMap<String, u64>,
    write_bytes: u64,
    /// compression name -> (commands, bytes, unencoded_len)
    encoded: BTreeMap<&'static str, (u64, u64, u64)>,
    clone_bytes: u64,
    /// (name, uuid, transid, parent uuid) of each subvol/snapshot line.
    subvolumes: Vec<(String, String, u64, Option<String>)>,
    /// "./subvol/path" -> highest offset + length written.
    ends: HashMap<String, u64>,
}

fn compression_name(raw: u64) -> &'static str {
    match raw {
        0 => "none",
        1 => "zlib",
        2 => "zstd",
        3..=7 => "lzo",
        _ => "unknown",
    }
}

fn word(line: &str, index: usize) -> &str {
    line.split_whitespace().nth(index).unwrap()
}

fn text_field<'l>(line: &'l str, key: &str) -> Option<&'l str> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    line[start..].split([',', ' ']).next()
}

/// Whether a dump line starts a command: its name, padding, then a `./` path (an
/// xattr value with newlines continues over lines that do not).
fn is_command_line(line: &str) -> bool {
    let name_len = line.bytes().take_while(|b| b.is_ascii_lowercase() || *b == b'_').count();
    name_len > 0
        && line[name_len..].trim_start_matches(' ').starts_with("./")
        && line.as_bytes()[name_len] == b' '
}

fn count_dump(dump: &str) -> FromDump {
    let mut counted = FromDump::default();
    for line in dump.lines().filter(|line| is_command_line(line)) {
        let command = word(line, 0);
        *counted.commands.entry(command.to_owned()).or_default() += 1;
        let len = field(line, "len");
        let mut written = |end: u64| {
            let entry = counted.ends.entry(word(line, 1).to_owned()).or_default();
            *entry = (*entry).max(end);
        };
        match command {
            "write" => {
                counted.write_bytes += len.unwrap();
                written(field(line, "offset").unwrap() + len.unwrap());
            }
            "clone" => {
                counted.clone_bytes += len.unwrap();
                written(field(line, "offset").unwrap() + len.unwrap());
            }
            "encoded_write" => {
                let totals =
                    counted.encoded.entry(compression_name(field(line, "compression").unwrap())).or_default();
                *totals =
                    (totals.0 + 1, totals.1 + len.unwrap(), totals.2 + field(line, "unencoded_len").unwrap());
                written(field(line, "offset").unwrap() + field(line, "unencoded_file_len").unwrap());
            }
            "subvol" | "snapshot" => counted.subvolumes.push((
                word(line, 1).trim_start_matches("./").to_owned(),
                text_field(line, "uuid").unwrap().to_owned(),
                field(line, "transid").unwrap(),
                text_field(line, "parent_uuid").map(str::to_owned),
            )),
            _ => {}
        }
    }
    counted
}

fn check_fixture(stream: &Path) {
    let name = stream.display();
    let dump = rawsend(&["dump"], stream);
    assert!(dump.status.success(), "{name}");
    let expected = count_dump(&String::from_utf8(dump.stdout).unwrap());
    let stats = stats_json(stream);

    for (kind, count) in stats["commands"].as_object().unwrap() {
        let want = if kind == "end" {
            stats["streams"].as_u64().unwrap()
        } else {
            expected.commands.get(kind).copied().unwrap_or(0)
        };
        assert_eq!(count.as_u64(), Some(want), "{name}: {kind}");
    }
    for kind in expected.commands.keys() {
        assert!(stats["commands"].get(kind).is_some(), "{name}: dump prints {kind}, stats does not name it");
    }
    assert_eq!(stats["write_bytes"].as_u64(), Some(expected.write_bytes), "{name}");
    assert_eq!(stats["clones"]["bytes"].as_u64(), Some(expected.clone_bytes), "{name}");
    assert_eq!(
        stats["clones"]["count"].as_u64(),
        expected.commands.get("clone").copied().or(Some(0)),
        "{name}"
    );
    let encoded: BTreeMap<&str, (u64, u64, u64)> = stats["encoded_by_compression"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(algorithm, t)| {
            let n = |key: &str| t[key].as_u64().unwrap();
            (algorithm.as_str(), (n("commands"), n("bytes"), n("unencoded_len")))
        })
        .collect();
    assert_eq!(encoded, expected.encoded, "{name}");
    let created = &stats["created"];
    let count = |kind: &str| expected.commands.get(kind).copied().unwrap_or(0);
    assert_eq!(created["files"].as_u64(), Some(count("mkfile")), "{name}");
    assert_eq!(created["directories"].as_u64(), Some(count("mkdir")), "{name}");
    assert_eq!(created["symlinks"].as_u64(), Some(count("symlink")), "{name}");
    assert_eq!(
        created["special"].as_u64(),
        Some(count("mknod") + count("mkfifo") + count("mksock")),
        "{name}"
    );
    assert_eq!(created["links"].as_u64(), Some(count("link")), "{name}");

    let subvolumes: Vec<(String, String, u64, Option<String>)> = stats["subvolumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let text = |key: &str| s[key].as_str().map(str::to_owned);
            (
                text("name").unwrap(),
                text("uuid").unwrap(),
                s["ctransid"].as_u64().unwrap(),
                text("parent_uuid"),
            )
        })
        .collect();
    assert_eq!(subvolumes, expected.subvolumes, "{name}");

    check_largest(&stats, &expected, &name.to_string());
}

/// The ten highest ends, and each file reported with its own end.
fn check_largest(stats: &Value, expected: &FromDump, name: &str) {
    let largest = stats["largest_files"].as_array().unwrap();
    let mut ends: Vec<u64> = expected.ends.values().copied().collect();
    ends.sort_unstable_by(|a, b| b.cmp(a));
    ends.truncate(10);
    let reported: Vec<u64> = largest.iter().map(|file| file["end"].as_u64().unwrap()).collect();
    assert_eq!(reported, ends, "{name}");
    for file in largest {
        let path = format!("./{}/{}", file["subvolume"].as_str().unwrap(), file["path"].as_str().unwrap());
        // The dump escapes some bytes (a space is "\ "); compare the names it prints as they are.
        if let Some(end) = expected.ends.get(&path) {
            assert_eq!(file["end"].as_u64(), Some(*end), "{name}: {path}");
        } else {
            assert!(path.contains(' '), "{name}: {path} is not among the dump's files");
        }
    }
}

#[test]
fn counts_match_the_dump_of_every_fixture() {
    for stream in stream_fixtures() {
        check_fixture(&stream);
    }
}

#[test]
fn joined_streams_list_every_subvolume() {
    let stream = testdata_dir().join("streams/multi-joined.v2.stream");
    let stats = stats_json(&stream);
    assert!(stats["streams"].as_u64().unwrap() > 1, "{stats}");
    assert_eq!(stats["subvolume_count"], stats["streams"]);
    assert_eq!(stats["subvolumes"].as_array().unwrap().len() as u64, stats["streams"].as_u64().unwrap());
}

#[test]
fn text_output_names_subvolumes_commands_and_data() {
    let stream = testdata_dir().join("sample.stream");
    let output = rawsend(&["stats"], &stream);
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.starts_with("streams: 1, subvolumes: 1\n  subvol sample uuid="), "{text}");
    for line in ["  encoded_write             4\n", "  write          12006 bytes (11.7 KiB)\n", "    zstd "]
    {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    assert!(
        text.contains(
            "largest files (highest offset + length written):\n          150000  sample/docs/readme.txt\n"
        ),
        "{text}"
    );
}

/// The error line of a failed run, without the prefix that names the subcommand's job.
fn error_location(output: &Output, prefix: &str) -> String {
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    stderr
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{stderr:?} does not start with {prefix:?}"))
        .to_owned()
}

#[test]
fn broken_streams_fail_where_the_dump_fails() {
    let dir = tempfile::tempdir().unwrap();
    let sample = fs::read(testdata_dir().join("sample.stream")).unwrap();
    let mut corrupt = sample.clone();
    corrupt[2000] ^= 0xff;
    let broken: [(&str, &[u8]); 3] = [("truncated", &sample[..3000]), ("corrupt", &corrupt), ("empty", &[])];
    for (what, bytes) in broken {
        let path = dir.path().join(what);
        fs::write(&path, bytes).unwrap();
        let dumped =
            error_location(&rawsend(&["dump"], &path), "rawsend: error: failed to dump the send stream: ");
        let counted =
            error_location(&rawsend(&["stats"], &path), "rawsend: error: failed to read the send stream: ");
        assert_eq!(counted, dumped, "{what}");
    }
}

#[test]
fn paths_a_receive_refuses_are_counted_and_marked_as_the_dump_marks_them() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, cases) = invalid_path_stream(2);
    let path = dir.path().join("hostile.stream");
    fs::write(&path, bytes).unwrap();
    let dumped = rawsend(&["dump"], &path);
    let counted = rawsend(&["stats", "--json"], &path);
    assert!(counted.status.success(), "{}", String::from_utf8_lossy(&counted.stderr));
    assert_eq!(counted.stderr, dumped.stderr);
    let stats: Value = serde_json::from_slice(&counted.stdout).unwrap();
    // SUBVOL, MKFILE, one command per case, END.
    assert_eq!(stats["total_commands"].as_u64(), Some(cases.len() as u64 + 3));
}

#[test]
fn standard_input_gives_the_same_counts_as_a_file() {
    let stream = testdata_dir().join("streams/basic-incr1.v2c.stream");
    let piped = Command::new(env!("CARGO_BIN_EXE_rawsend"))
        .args(["stats", "--json"])
        .stdin(fs::File::open(&stream).unwrap())
        .output()
        .unwrap();
    assert!(piped.status.success(), "{}", String::from_utf8_lossy(&piped.stderr));
    assert_eq!(serde_json::from_slice::<Value>(&piped.stdout).unwrap(), stats_json(&stream));
}
