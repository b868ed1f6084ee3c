//! `rawsend generate` (man pages, completions) and `rawsend --version`.
//!
//! The subcommands are read from `rawsend --help`, so a new subcommand must
//! get its page and its completions. Every page must render with `man -l`
//! without a warning; the completion scripts must pass their shells' syntax
//! check (`bash -n`, `zsh -n`, `fish -n`; scripts/test.sh installs man-db,
//! zsh and fish, and these tests fail without them).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn rawsend(args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_rawsend")).args(args).output().unwrap();
    assert!(output.status.success(), "rawsend {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output
}

/// The subcommands `rawsend --help` lists (without `help`).
fn subcommands() -> Vec<String> {
    let help = String::from_utf8(rawsend(&["--help"]).stdout).unwrap();
    let listed: Vec<String> = help
        .lines()
        .skip_while(|line| *line != "Commands:")
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .map(|line| line.split_whitespace().next().unwrap().to_owned())
        .filter(|name| name != "help")
        .collect();
    assert!(listed.len() >= 5 && listed.iter().any(|name| name == "generate"), "{help}");
    listed
}

fn render(page: &Path) -> Output {
    Command::new("man")
        .args(["--warnings", "-E", "UTF-8", "-l"])
        .arg(page)
        .env("MANWIDTH", "80")
        .output()
        .expect("man (man-db) is installed; scripts/test.sh installs it")
}

/// The pages a page refers to (`rawsend-send(1)`, ...), from its roff source.
fn references(roff: &str) -> Vec<String> {
    let text = roff.replace("\\-", "-");
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '(' || c == ')'))
        .filter_map(|word| word.strip_suffix("(1)"))
        .filter(|name| name.starts_with("rawsend"))
        .map(|name| format!("{name}.1"))
        .collect()
}

#[test]
fn man_dir_has_a_page_per_subcommand_and_each_renders_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    rawsend(&["generate", "man", "--dir", dir.path().to_str().unwrap()]);
    let written: Vec<String> =
        fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    let mut expected: Vec<String> = subcommands().iter().map(|sub| format!("rawsend-{sub}.1")).collect();
    expected.push("rawsend.1".to_owned());
    for name in &expected {
        assert!(written.contains(name), "{name} missing: {written:?}");
    }
    for name in &written {
        let roff = fs::read_to_string(dir.path().join(name)).unwrap();
        for referenced in references(&roff) {
            assert!(written.contains(&referenced), "{name} refers to {referenced}, which is not written");
        }
        let output = render(&dir.path().join(name));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success() && stderr.is_empty(), "{name}: {stderr}");
        let text = String::from_utf8_lossy(&output.stdout);
        let title = name.trim_end_matches(".1");
        assert!(text.contains(&format!("{title}(1)")) && text.contains("SYNOPSIS"), "{name}:\n{text}");
        let th = roff.lines().find(|line| line.starts_with(".TH ")).unwrap();
        assert!(th.contains(&format!("{title} {}", env!("CARGO_PKG_VERSION"))), "{name}: {th}");
    }
    let top = fs::read_to_string(dir.path().join("rawsend.1")).unwrap();
    assert!(
        references(&top).contains(&"rawsend-stats.1".to_owned()),
        "rawsend(1) lists the subcommands' pages"
    );
    assert!(
        written.contains(&"rawsend-generate-man.1".to_owned()),
        "nested subcommands get pages: {written:?}"
    );
}

#[test]
fn man_without_dir_prints_every_page_rawsend_first() {
    let pages = String::from_utf8(rawsend(&["generate", "man"]).stdout).unwrap();
    let titles: Vec<&str> = pages
        .lines()
        .filter_map(|line| line.strip_prefix(".TH "))
        .map(|th| th.split(' ').next().unwrap())
        .collect();
    let top: Vec<&str> = titles.iter().copied().filter(|title| title.matches('-').count() <= 1).collect();
    let mut expected = vec!["rawsend".to_owned()];
    expected.extend(subcommands().iter().map(|sub| format!("rawsend-{sub}")));
    assert_eq!(top, expected);
    for title in titles.iter().filter(|title| title.starts_with("rawsend-generate-")) {
        let sub = title.trim_start_matches("rawsend-generate-");
        assert!(["man", "complete-bash", "complete-zsh", "complete-fish"].contains(&sub), "{title}");
    }
}

/// Runs `shell -n` on `script`.
fn syntax_check(shell: &str, script: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("completion");
    fs::write(&path, script).unwrap();
    let output = Command::new(shell)
        .arg("-n")
        .arg(&path)
        .output()
        .unwrap_or_else(|err| panic!("{shell} is installed (scripts/test.sh installs it): {err}"));
    assert!(output.status.success(), "{shell} -n: {}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn completions_name_every_subcommand_and_pass_their_shells_syntax_check() {
    for (what, shell) in [("complete-bash", "bash"), ("complete-zsh", "zsh"), ("complete-fish", "fish")] {
        let script = rawsend(&["generate", what]).stdout;
        let text = String::from_utf8_lossy(&script);
        assert!(!text.is_empty(), "{what}");
        for sub in subcommands() {
            assert!(text.contains(&sub), "{what} does not name {sub}");
        }
        syntax_check(shell, &script);
    }
}

#[test]
fn version_lists_stream_versions_compressions_and_kernel_features() {
    let text = String::from_utf8(rawsend(&["--version"]).stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], format!("rawsend {}", env!("CARGO_PKG_VERSION")));
    for prefix in [
        "stream versions read: 1, 2, 3",
        "stream versions sent: ",
        "compression: zlib, zstd, lzo",
        "kernel: ",
        "encoded write: ",
        "fs-verity: ",
    ] {
        assert!(lines.iter().any(|line| line.starts_with(prefix)), "{prefix:?} missing:\n{text}");
    }
    let short = String::from_utf8(rawsend(&["-V"]).stdout).unwrap();
    assert_eq!(short, format!("rawsend {}\n", env!("CARGO_PKG_VERSION")));
}

/// As `nobody`, from a directory that is not on btrfs: the same lines.
#[test]
fn version_works_unprivileged() {
    rawsend_testutil::require_root();
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let binary = dir.path().join("rawsend");
    fs::copy(env!("CARGO_BIN_EXE_rawsend"), &binary).unwrap();
    let output = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(&binary)
        .arg("--version")
        .current_dir("/")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let root = rawsend(&["--version"]).stdout;
    assert_eq!(output.stdout, root);
}
