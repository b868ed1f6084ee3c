//! Resumable receive with the real binary: a kernel stream (thousands of small
//! files, large zstd-compressed files, hard links, xattrs) and an incremental
//! on top (renames, a swap of two names, unlinks, clones, new and changed
//! files) are received onto btrfs and onto ext4 (dir target) and interrupted
//! at many points: SIGKILL at pseudo-random byte offsets of a pipe, SIGINT,
//! and a pipe cut with `head -c N`. Re-running `rawsend receive -f FILE DEST`
//! must then give exactly the tree an uninterrupted receive gives (content,
//! modes, owners, times, xattrs, hard links), marked received, with no resume
//! state left. A different stream or a changed prefix is refused and leaves
//! the partial subvolume as it was; `--abort` discards it; `--no-resume`
//! refuses it as btrfs-progs does.
//!
//! Every other interruption is continued as through a pipe instead: the
//! partial receive's token (`receive --resume-token`), then `rawsend send
//! --resume TOKEN` of the same snapshot piped into `rawsend receive`, which
//! must write only about what the receiver lacks. A token for another
//! subvolume is refused by the sender.
//!
//! Root tests on loop devices; they fail, never skip, when they cannot mount.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rawsend_testutil::tree::{CompareOptions, TreeSnapshot, diff_with};
use rawsend_testutil::{FsType, LoopFs, MIB, MemFs, received_state, require_root, run};

/// Small files in the full stream.
const FILES: usize = 2000;

/// The two kernel streams and what they must give.
struct Source {
    /// Full stream of snapshot `s1`, incremental `s2` on top, and a stream of another
    /// subvolume also named `s1`.
    full: PathBuf,
    incremental: PathBuf,
    impostor: PathBuf,
    /// The snapshots: `s1`, `s2`, and the impostor's `other/s1`.
    snapshots: [PathBuf; 3],
    _dir: tempfile::TempDir,
    /// Where the snapshots are, mounted for `send --resume`.
    _fs: LoopFs,
}

fn content(i: usize) -> Vec<u8> {
    let lines = if i % 10 == 0 { 1500 + i % 97 } else { 3 + i % 40 };
    let mut text = String::new();
    for line in 0..lines {
        let _ = writeln!(text, "file {i} line {line}: resumable receive {}", line % 5);
    }
    text.into_bytes()
}

fn btrfs_cmd(args: &[&str], paths: &[&Path]) {
    run(Command::new("btrfs").arg("-q").args(args).args(paths));
}

/// Builds `src`, snapshots `s1`, changes it, snapshots `s2`; sends both.
fn make_source() -> Source {
    let fs = LoopFs::builder(FsType::Btrfs, 1024 * MIB).mount_options("compress=zstd,noatime").build();
    let src = fs.path().join("src");
    btrfs_cmd(&["subvolume", "create"], &[&src]);
    for i in 0..FILES {
        let dir = src.join(format!("d{:02}", i / 100));
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("f{i:04}"));
        fs::write(&file, content(i)).unwrap();
        if i % 50 == 0 {
            fs::create_dir_all(src.join("links")).unwrap();
            fs::hard_link(&file, src.join(format!("links/l{i:04}"))).unwrap();
        }
        if i % 70 == 0 {
            rustix::fs::lsetxattr(
                &file,
                "user.note",
                format!("note {i}").as_bytes(),
                rustix::fs::XattrFlags::empty(),
            )
            .unwrap();
        }
    }
    for i in 0..4 {
        let big: Vec<u8> = (0..(3 * MIB as usize)).map(|n| b"abcdefgh"[(n / 4096 + i) % 8]).collect();
        fs::write(src.join(format!("big{i}")), big).unwrap();
    }
    run(Command::new("sync").arg("-f").arg(&src));
    let s1 = fs.path().join("s1");
    btrfs_cmd(&["subvolume", "snapshot", "-r"], &[&src, &s1]);
    change(&src);
    run(Command::new("sync").arg("-f").arg(&src));
    let s2 = fs.path().join("s2");
    btrfs_cmd(&["subvolume", "snapshot", "-r"], &[&src, &s2]);
    // Another subvolume whose snapshot is also called s1.
    let other = fs.path().join("other");
    fs::create_dir(&other).unwrap();
    btrfs_cmd(&["subvolume", "create"], &[&other.join("o")]);
    fs::write(other.join("o/file"), b"another subvolume").unwrap();
    btrfs_cmd(&["subvolume", "snapshot", "-r"], &[&other.join("o"), &other.join("s1")]);

    let dir = tempfile::Builder::new().prefix("rawsend-resume-").tempdir().unwrap();
    let send = |name: &str, args: &[&Path]| {
        let out = dir.path().join(name);
        run(Command::new("btrfs").args(["-q", "send", "--compressed-data", "-f"]).arg(&out).args(args));
        out
    };
    let full = send("full", &[&s1]);
    let incremental = send("incremental", &[Path::new("-p"), &s1, &s2]);
    let impostor = send("impostor", &[&other.join("s1")]);
    Source { full, incremental, impostor, snapshots: [s1, s2, other.join("s1")], _dir: dir, _fs: fs }
}

/// The incremental's changes: renames (a directory, and two files swapping names),
/// unlinks, clones, new files, a changed large file, a mode change.
fn change(src: &Path) {
    fs::rename(src.join("d03"), src.join("d03-renamed")).unwrap();
    let (a, b, tmp) = (src.join("d05/f0500"), src.join("d05/f0501"), src.join("d05/tmp"));
    fs::rename(&a, &tmp).unwrap();
    fs::rename(&b, &a).unwrap();
    fs::rename(&tmp, &b).unwrap();
    for i in (600..800).step_by(2) {
        fs::remove_file(src.join(format!("d{:02}/f{i:04}", i / 100))).unwrap();
    }
    run(Command::new("cp").arg("--reflink=always").arg(src.join("big0")).arg(src.join("d01/big0-clone")));
    for i in 0..300 {
        fs::write(src.join(format!("d10/new{i:03}")), content(i + 7)).unwrap();
    }
    let mut big1 = fs::OpenOptions::new().append(true).open(src.join("big1")).unwrap();
    big1.write_all(&content(3)).unwrap();
    fs::set_permissions(src.join("d02/f0200"), std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
}

fn rawsend() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rawsend"))
}

fn receive_file(stream: &Path, dest: &Path) -> Output {
    rawsend().args(["receive", "-f"]).arg(stream).arg(dest).output().unwrap()
}

fn assert_success(output: &Output, label: &str) {
    assert!(output.status.success(), "{label}: {}", String::from_utf8_lossy(&output.stderr));
}

/// What `rawsend send` sends stream `index` of the chain with (after `--compressed-data`).
fn send_args(source: &Source, index: usize) -> Vec<&Path> {
    let [s1, s2, _] = &source.snapshots;
    match index {
        0 => vec![s1.as_path()],
        _ => vec![Path::new("-p"), s1.as_path(), s2.as_path()],
    }
}

/// What `rawsend receive --resume-token partial` printed.
fn resume_token_output(partial: &Path) -> Output {
    rawsend().arg("receive").arg("--resume-token").arg(partial).output().unwrap()
}

/// The token of the partial receive `partial` (DEST/NAME).
fn resume_token(partial: &Path) -> String {
    let output = resume_token_output(partial);
    assert_success(&output, "resume token");
    let token = String::from_utf8(output.stdout).unwrap();
    let token = token.strip_suffix('\n').expect("one line").to_owned();
    assert!(!token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()), "{token:?}");
    token
}

/// `rawsend send --resume TOKEN --compressed-data ARGS | rawsend receive DEST`: the
/// sender's and the receiver's outputs.
fn send_resumed(token: &str, args: &[&Path], dest: &Path) -> (Output, Output) {
    let mut sender = rawsend()
        .args(["send", "--progress=json", "--resume", token, "--compressed-data"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pipe = sender.stdout.take().unwrap();
    let received = rawsend().arg("receive").arg(dest).stdin(pipe).output().unwrap();
    (sender.wait_with_output().unwrap(), received)
}

/// Bytes the sender said it wrote, and the regenerated stream's size.
fn sent_bytes(sender: &Output) -> (u64, u64) {
    let stderr = String::from_utf8_lossy(&sender.stderr);
    let line = stderr.lines().find(|line| line.contains("wrote")).unwrap_or_else(|| panic!("{stderr}"));
    let numbers: Vec<u64> = line.split(' ').filter_map(|word| word.parse().ok()).collect();
    (numbers[numbers.len() - 2], numbers[numbers.len() - 1])
}

/// Continues the partial receive DEST/`name` of chain stream `index` through a pipe;
/// checks that the sender wrote about only what the receiver lacked.
fn resume_through_pipe(source: &Source, index: usize, dest: &Path, name: &str, label: &str) {
    let token = resume_token(&dest.join(name));
    let applied: u64 = token.split('.').nth(7).and_then(|offset| offset.parse().ok()).expect("offset");
    let (sender, receiver) = send_resumed(&token, &send_args(source, index), dest);
    assert_success(&sender, &format!("{label}: send --resume"));
    assert_success(&receiver, &format!("{label}: receiving the continuation"));
    let (written, total) = sent_bytes(&sender);
    // The header, the marker and the SUBVOL/SNAPSHOT again: well under a kilobyte.
    assert!(written <= total - applied + 1024, "{label}: wrote {written} of {total}, {applied} applied");
    // Progress counts the continuation against the continuation's estimated size.
    let last = String::from_utf8_lossy(&sender.stderr)
        .lines()
        .rev()
        .find(|line| line.starts_with('{'))
        .map(str::to_owned);
    let last: serde_json::Value = serde_json::from_str(&last.expect("JSON progress")).unwrap();
    let (counted, expected) = (last["bytes"].as_u64().unwrap(), last["total"].as_u64().unwrap());
    assert_eq!(counted, written, "{label}: {last}");
    assert!(expected <= written && written - expected < 256, "{label}: total {expected}, wrote {written}");
}

/// How a receive is interrupted.
#[derive(Clone, Copy, Debug)]
enum Cut {
    /// SIGKILL once this many bytes were written to its input and a moment passed.
    Kill(usize, u64),
    /// SIGINT once this many bytes were written.
    Interrupt(usize),
    /// `head -c N FILE | rawsend receive DEST`.
    Head(usize),
}

/// Runs a receive of `stream` into `dest` interrupted as `cut` says.
fn interrupted(stream: &Path, dest: &Path, cut: Cut) -> Output {
    let bytes = fs::read(stream).unwrap();
    let (n, signal, delay) = match cut {
        Cut::Head(n) => {
            let script = format!("head -c {n} \"$1\" | \"$2\" receive \"$3\"");
            let bin = env!("CARGO_BIN_EXE_rawsend");
            let mut sh = Command::new("sh");
            sh.args(["-c", &script, "sh"]).arg(stream).arg(bin).arg(dest);
            return sh.output().unwrap();
        }
        Cut::Kill(n, delay) => (n, rustix::process::Signal::KILL, delay),
        Cut::Interrupt(n) => (n, rustix::process::Signal::INT, 300),
    };
    let mut child = rawsend()
        .arg("receive")
        .arg(dest)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // The receiver may die first (a kill) or stop reading: a failed write ends feeding.
    let _ = stdin.write_all(&bytes[..n.min(bytes.len())]);
    std::thread::sleep(Duration::from_millis(delay));
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, signal).unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

/// What the test compares: everything but atimes, wall-clock times both sides left,
/// and on the dir target its own record (its fingerprint holds the root's ctime).
/// Directory sizes only on btrfs, where they follow from the entries: an ext4
/// directory keeps every block it ever grew to, so its size depends on the order
/// in which entries came and went, which an interrupted receive changes.
fn options(kind: FsType, since: i128) -> CompareOptions {
    let xattr_prefixes: Option<&'static [&'static str]> = match kind {
        FsType::Btrfs => None,
        _ => Some(&["user.note"]),
    };
    let dir_size = kind == FsType::Btrfs;
    CompareOptions { dir_size, atime: false, xattr_prefixes, root: true, fresh_since_ns: Some(since) }
}

fn now_ns() -> i128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as i128
}

/// Checks that `got` (DEST/NAME) is received and equal to `want`.
fn assert_received_like(got: &Path, want: &TreeSnapshot, kind: FsType, since: i128, label: &str) {
    let problems = diff_with(want, &TreeSnapshot::capture(got), &options(kind, since));
    assert!(
        problems.is_empty(),
        "{label}: {} differences, e.g.:\n{}",
        problems.len(),
        problems[..problems.len().min(20)].join("\n")
    );
    match kind {
        FsType::Btrfs => assert!(received_state(got).is_received(), "{label}: not marked received"),
        _ => assert!(xattr(got, "user.rawsend.received").is_some(), "{label}: no received record"),
    }
    let dest = got.parent().unwrap();
    let name = got.file_name().unwrap();
    for store in ["resume", "progress"] {
        let state = dest.join(".rawsend-received").join(store).join(name);
        assert!(!state.exists(), "{label}: {} left behind", state.display());
    }
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 1024];
    rustix::fs::lgetxattr(path, name, &mut buf).ok().map(|len| buf[..len].to_vec())
}

/// A partial receive must not look complete.
fn assert_partial(path: &Path, kind: FsType, label: &str) {
    assert!(path.is_dir(), "{label}: nothing left at {}", path.display());
    match kind {
        FsType::Btrfs => assert!(!received_state(path).is_received(), "{label}: partial marked received"),
        _ => assert!(xattr(path, "user.rawsend.received").is_none(), "{label}: partial has a record"),
    }
}

/// Whether a kill left DEST/`name` without resume state: it came between creating the
/// subvolume (or directory) and saving its first state (README, "Resumable receive").
fn killed_before_first_checkpoint(dest: &Path, name: &str) -> bool {
    dest.join(name).exists() && !dest.join(".rawsend-received/resume").join(name).exists()
}

/// What the README says to do with a partial left without resume state: the re-run
/// refuses it with the remedy, the user removes it and receives again.
fn start_over_by_hand(stream: &Path, dest: &Path, name: &str, kind: FsType, label: &str) {
    let rerun = receive_file(stream, dest);
    let stderr = String::from_utf8_lossy(&rerun.stderr);
    assert!(!rerun.status.success(), "{label}: a partial without state was received into");
    assert!(stderr.contains("is left over from an incomplete receive"), "{label}: {stderr}");
    let partial = dest.join(name);
    match kind {
        FsType::Btrfs => {
            run(Command::new("btrfs").args(["subvolume", "delete"]).arg(&partial));
        }
        _ => fs::remove_dir_all(&partial).unwrap(),
    }
    assert_success(&receive_file(stream, dest), &format!("{label}: receiving again"));
}

/// Deterministic pseudo-random numbers (xorshift), so that a failure can be rerun.
struct Xorshift(u64);

impl Xorshift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Cuts at pseudo-random places of a stream of `len` bytes.
fn cuts(len: usize, seed: u64, kills: usize) -> Vec<Cut> {
    let mut random = Xorshift(seed);
    let mut at = || 1000 + random.below(len as u64 - 2000) as usize;
    let mut cuts: Vec<Cut> = (0..kills).map(|_| Cut::Kill(at(), 0)).collect();
    for cut in &mut cuts {
        if let Cut::Kill(n, _) = cut {
            *cut = Cut::Kill(*n, (*n as u64) % 400);
        }
    }
    cuts.push(Cut::Interrupt(at()));
    cuts.push(Cut::Head(at()));
    cuts
}

/// Receives `chain` in one go into `reference/`, then for each stream and each cut:
/// a fresh directory with the earlier streams received, the stream interrupted,
/// then received again from the file; the result must equal the reference.
fn resume_everywhere(kind: FsType, seed: u64) {
    require_root();
    let source = make_source();
    let dest_fs = LoopFs::builder(kind, 2048 * MIB).mount_options("noatime").build();
    let since = now_ns();
    let chain = [(&source.full, "s1"), (&source.incremental, "s2")];
    let reference = dest_fs.path().join("reference");
    fs::create_dir(&reference).unwrap();
    for (stream, _) in chain {
        assert_success(&receive_file(stream, &reference), "uninterrupted receive");
    }
    let want: Vec<TreeSnapshot> =
        chain.iter().map(|(_, name)| TreeSnapshot::capture(reference.join(name))).collect();
    let mut case = 0;
    for (index, (stream, name)) in chain.iter().enumerate() {
        let len = fs::metadata(stream).unwrap().len() as usize;
        for cut in cuts(len, seed + index as u64, if index == 0 { 3 } else { 2 }) {
            case += 1;
            let label = format!("{kind:?} {name} {cut:?}");
            let dest = dest_fs.path().join(format!("case{case}"));
            fs::create_dir(&dest).unwrap();
            for (earlier, _) in &chain[..index] {
                assert_success(&receive_file(earlier, &dest), "an earlier stream");
            }
            let stopped = interrupted(stream, &dest, cut);
            if stopped.status.success() {
                // The whole stream went through before the signal: nothing to resume.
                assert_received_like(&dest.join(name), &want[index], kind, since, &label);
                continue;
            }
            if matches!(cut, Cut::Kill(..)) && killed_before_first_checkpoint(&dest, name) {
                start_over_by_hand(stream, &dest, name, kind, &label);
                assert_received_like(&dest.join(name), &want[index], kind, since, &label);
                continue;
            }
            if matches!(cut, Cut::Kill(..)) && !dest.join(name).exists() {
                // Killed before the subvolume was made (the read-ahead thread takes the
                // bytes fed long before the apply thread gets to them), or while the dir
                // target copied the parent aside: nothing to resume, the re-run starts over.
                assert!(
                    !dest.join(".rawsend-received/resume").join(name).exists(),
                    "{label}: state of nothing"
                );
            } else {
                assert_partial(&dest.join(name), kind, &label);
            }
            let stderr = String::from_utf8_lossy(&stopped.stderr);
            if !matches!(cut, Cut::Kill(..)) {
                assert!(stderr.contains("run the same receive again"), "{label}: {stderr}");
            }
            if case % 2 == 0 && dest.join(name).exists() {
                resume_through_pipe(&source, index, &dest, name, &label);
            } else {
                assert_success(&receive_file(stream, &dest), &format!("{label}: resuming"));
            }
            assert_received_like(&dest.join(name), &want[index], kind, since, &label);
        }
    }
}

#[test]
fn btrfs_interrupted_anywhere_resumes_to_the_same_subvolumes() {
    resume_everywhere(FsType::Btrfs, 0x9e37_79b9_7f4a_7c15);
}

#[test]
fn ext4_dir_target_interrupted_anywhere_resumes_to_the_same_directories() {
    resume_everywhere(FsType::Ext4, 0x2545_f491_4f6c_dd1d);
}

/// A partial `s1` in a fresh directory of a new btrfs, cut by `head -c`.
fn partial_s1(source: &Source) -> (LoopFs, PathBuf) {
    let fs = LoopFs::builder(FsType::Btrfs, 1024 * MIB).mount_options("noatime").build();
    let cut = fs::metadata(&source.full).unwrap().len() as usize / 2;
    let stopped = interrupted(&source.full, fs.path(), Cut::Head(cut));
    assert!(!stopped.status.success());
    let partial = fs.path().join("s1");
    assert_partial(&partial, FsType::Btrfs, "half of s1");
    (fs, partial)
}

/// What must not change when a resume is refused: the tree and the saved state.
fn unchanged_evidence(partial: &Path) -> (TreeSnapshot, Vec<u8>) {
    let state = partial.parent().unwrap().join(".rawsend-received/resume/s1");
    (TreeSnapshot::capture(partial), fs::read(state).unwrap())
}

#[test]
fn another_stream_or_a_changed_prefix_is_refused_and_changes_nothing() {
    require_root();
    let source = make_source();
    let (fs_guard, partial) = partial_s1(&source);
    let before = unchanged_evidence(&partial);
    let refused = receive_file(&source.impostor, fs_guard.path());
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("cannot resume") && stderr.contains("another stream"), "{stderr}");
    assert!(unchanged_evidence(&partial) == before, "the impostor changed the partial subvolume");

    // The same stream with one WRITE's data changed early on (its CRC recomputed).
    let mut changed = fs::read(&source.full).unwrap();
    change_first_write(&mut changed);
    let changed_path = fs_guard.path().join("changed.stream");
    fs::write(&changed_path, &changed).unwrap();
    let refused = receive_file(&changed_path, fs_guard.path());
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("commands differ from those it applied"), "{stderr}");
    assert!(unchanged_evidence(&partial) == before, "the changed stream changed the partial subvolume");

    // A continuation of another subvolume is refused by the sender, which writes nothing.
    let token = resume_token(&partial);
    let impostor = [source.snapshots[2].as_path()];
    let (sender, receiver) = send_resumed(&token, &impostor, fs_guard.path());
    let stderr = String::from_utf8_lossy(&sender.stderr);
    assert!(!sender.status.success() && stderr.contains("the token is for"), "{stderr}");
    assert!(!receiver.status.success(), "an empty stream is not received");
    // A forged token is refused before anything is sent.
    let forged = token.replace("rawsend1", "rawsend9");
    let (sender, _) = send_resumed(&forged, &send_args(&source, 0), fs_guard.path());
    let stderr = String::from_utf8_lossy(&sender.stderr);
    assert!(!sender.status.success() && stderr.contains("not a rawsend resume token"), "{stderr}");
    assert!(unchanged_evidence(&partial) == before, "a refused continuation changed the partial subvolume");

    // The right stream still resumes.
    assert_success(&receive_file(&source.full, fs_guard.path()), "resume after refusals");
    assert!(received_state(&partial).is_received());
}

/// Flips a data byte of the first WRITE or ENCODED_WRITE and fixes its CRC.
fn change_first_write(stream: &mut [u8]) {
    let mut at = 17;
    loop {
        let len = u32::from_le_bytes(stream[at..at + 4].try_into().unwrap()) as usize;
        let cmd = u16::from_le_bytes(stream[at + 4..at + 6].try_into().unwrap());
        let end = at + 10 + len;
        // 15: WRITE, 25: ENCODED_WRITE (data is the last attribute).
        if cmd == 15 || cmd == 25 {
            stream[end - 1] ^= 0x55;
            stream[at + 6..at + 10].fill(0);
            let crc = rawsend_stream::command_crc(&stream[at..end]);
            stream[at + 6..at + 10].copy_from_slice(&crc.to_le_bytes());
            return;
        }
        at = end;
    }
}

/// Progress noted without syncing is exact while the kernel keeps what it accepted.
/// Once the filesystem is mounted again that is unknown (an I/O error may have aborted
/// it, and its disk may hold the note but not the data before it): the re-run refuses
/// the partial receive, and `--abort` then starts over.
#[test]
fn a_kill_then_a_remount_refuses_to_trust_the_progress_noted_before() {
    require_root();
    let source = make_source();
    let mut fs_guard = LoopFs::builder(FsType::Btrfs, 1024 * MIB).mount_options("noatime").build();
    let len = fs::metadata(&source.full).unwrap().len() as usize;
    let killed = interrupted(&source.full, fs_guard.path(), Cut::Kill(len / 2, 500));
    assert_eq!(killed.status.signal(), Some(9), "{}", String::from_utf8_lossy(&killed.stderr));
    let partial = fs_guard.path().join("s1");
    assert_partial(&partial, FsType::Btrfs, "killed");
    assert!(!killed_before_first_checkpoint(fs_guard.path(), "s1"), "no checkpoint before the kill");
    fs_guard.mount_again(FsType::Btrfs, Some("noatime"));
    let before = unchanged_evidence(&partial);
    for refused in [receive_file(&source.full, fs_guard.path()), resume_token_output(&partial)] {
        assert_eq!(refused.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("the filesystem was mounted again"), "{stderr}");
        assert!(stderr.contains("--abort"), "{stderr}");
    }
    assert!(unchanged_evidence(&partial) == before, "a refused re-run changed the partial subvolume");
    assert_partial(&partial, FsType::Btrfs, "refused");
    let aborted = rawsend().args(["receive", "--abort"]).arg(&partial).output().unwrap();
    assert_success(&aborted, "--abort");
    assert_success(&receive_file(&source.full, fs_guard.path()), "receive after --abort");
    assert!(received_state(&partial).is_received());
}

#[test]
fn abort_discards_a_partial_receive_and_refuses_anything_else() {
    require_root();
    let source = make_source();
    let (fs_guard, partial) = partial_s1(&source);
    let no_resume = rawsend()
        .args(["receive", "--no-resume", "-f"])
        .arg(&source.full)
        .arg(fs_guard.path())
        .output()
        .unwrap();
    assert_eq!(no_resume.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&no_resume.stderr);
    assert!(
        stderr.contains("left over from an incomplete receive") && stderr.contains("--abort"),
        "{stderr}"
    );
    assert_partial(&partial, FsType::Btrfs, "after --no-resume");

    let aborted = rawsend().args(["receive", "--abort"]).arg(&partial).output().unwrap();
    assert_success(&aborted, "--abort");
    assert!(!partial.exists(), "--abort left the subvolume");
    assert!(!fs_guard.path().join(".rawsend-received/resume/s1").exists());
    // Now a complete receive, which --abort must refuse to touch.
    assert_success(&receive_file(&source.full, fs_guard.path()), "receive after --abort");
    let refused = rawsend().args(["receive", "--abort"]).arg(&partial).output().unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not a partial receive"));
    assert!(received_state(&partial).is_received());
    let plain = fs_guard.path().join("plain");
    fs::create_dir(&plain).unwrap();
    let refused = rawsend().args(["receive", "--abort"]).arg(&plain).output().unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(plain.is_dir());
}

#[test]
fn abort_removes_a_partial_directory_without_following_symlinks() {
    require_root();
    let source = make_source();
    let fs_guard = LoopFs::ext4(512 * MIB);
    let cut = fs::metadata(&source.full).unwrap().len() as usize / 3;
    let stopped = interrupted(&source.full, fs_guard.path(), Cut::Head(cut));
    assert!(!stopped.status.success());
    let outside = fs_guard.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("keep"), b"keep").unwrap();
    std::os::unix::fs::symlink(&outside, fs_guard.path().join("s1/escape")).unwrap();
    let aborted = rawsend().args(["receive", "--abort"]).arg(fs_guard.path().join("s1")).output().unwrap();
    assert_success(&aborted, "--abort of a directory");
    assert!(!fs_guard.path().join("s1").exists());
    assert_eq!(fs::read(outside.join("keep")).unwrap(), b"keep");
}

#[test]
fn enospc_then_space_freed_resumes_on_ext4() {
    enospc_then_space_freed_resumes(FsType::Ext4);
}

/// On btrfs every rewrite of a page already written back needs new space: a progress
/// record stored through a shared mapping then killed the receive with SIGBUS.
#[test]
fn enospc_then_space_freed_resumes_on_btrfs() {
    enospc_then_space_freed_resumes(FsType::Btrfs);
}

/// A receive that runs out of space says so and keeps its resume state; after space is
/// freed, the same receive completes it.
fn enospc_then_space_freed_resumes(fs_type: FsType) {
    require_root();
    let source = make_source();
    let mount = |size| LoopFs::builder(fs_type, size).mount_options("noatime").build();
    let since = now_ns();
    let reference = mount(256 * MIB);
    let before = available(reference.path());
    assert_success(&receive_file(&source.full, reference.path()), "uninterrupted receive");
    run(&mut Command::new("sync"));
    let used = before - available(reference.path());
    let want = TreeSnapshot::capture(reference.path().join("s1"));
    // Leave room for about half of what the receive writes.
    let fs_guard = mount(256 * MIB);
    let filler = fs_guard.path().join("filler");
    fs::File::create(&filler).unwrap().set_len(0).unwrap();
    run(Command::new("fallocate")
        .arg("-l")
        .arg((available(fs_guard.path()) - used / 2).to_string())
        .arg(&filler));
    let dest = fs_guard.path().join("dest");
    fs::create_dir(&dest).unwrap();
    let full = receive_file(&source.full, &dest);
    let stderr = String::from_utf8_lossy(&full.stderr);
    assert_eq!(full.status.signal(), None, "killed by a signal: {stderr}");
    assert!(!full.status.success() && stderr.contains("No space left on device"), "{stderr}");
    assert!(stderr.contains("run the same receive again"), "{stderr}");
    assert_partial(&dest.join("s1"), fs_type, "after ENOSPC");
    fs::remove_file(&filler).unwrap();
    assert_success(&receive_file(&source.full, &dest), "resuming after space was freed");
    assert_received_like(&dest.join("s1"), &want, fs_type, since, "ENOSPC then space freed");
}

/// A receive onto a filesystem with no room even for its resume state fails without
/// claiming a state it could not save: the report says to remove the partial, as the
/// re-run does.
#[test]
fn a_full_filesystem_gets_no_claim_of_a_saved_state() {
    require_root();
    let source = make_source();
    let full = MemFs::new("tmpfs", "size=1m");
    let filler = full.path().join("filler");
    let written = fs::write(&filler, vec![0u8; 2 * MIB as usize]);
    assert!(written.is_err(), "the filler did not fill the filesystem");
    let output = rawsend()
        .args(["receive", "--target", "dir", "-f"])
        .arg(&source.full)
        .arg(full.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("No space left on device"), "{stderr}");
    assert!(!stderr.contains("resume state is saved"), "{stderr}");
    assert!(stderr.contains("to start over, remove it"), "{stderr}");
    let token = rawsend().args(["receive", "--resume-token"]).arg(full.path().join("s1")).output().unwrap();
    assert!(!token.status.success(), "a resume token for a partial with no state");
}

/// Bytes of the filesystem holding `dir` available to an unprivileged user.
fn available(dir: &Path) -> u64 {
    let stat = rustix::fs::statvfs(dir).unwrap();
    stat.f_bavail * stat.f_frsize
}

#[test]
fn a_state_left_by_a_deleted_partial_never_vouches_for_a_new_subvolume() {
    require_root();
    let source = make_source();
    let (fs_guard, partial) = partial_s1(&source);
    btrfs_cmd(&["subvolume", "delete"], &[&partial]);
    btrfs_cmd(&["subvolume", "create"], &[&partial]);
    assert!(fs_guard.path().join(".rawsend-received/resume/s1").exists(), "the stale state is still there");
    let output = receive_file(&source.full, fs_guard.path());
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("left over from an incomplete receive") && !stderr.contains("cannot resume"),
        "{stderr}"
    );
    assert!(fs::read_dir(&partial).unwrap().next().is_none(), "the new subvolume was written to");
}

#[test]
fn a_rerun_of_a_file_of_several_subvolumes_passes_over_the_received_ones() {
    require_root();
    let source = make_source();
    let joined = source._dir.path().join("joined");
    let full = fs::read(&source.full).unwrap();
    fs::write(&joined, [full.clone(), fs::read(&source.incremental).unwrap()].concat()).unwrap();
    for kind in [FsType::Btrfs, FsType::Ext4] {
        let dest = LoopFs::builder(kind, 1024 * MIB).mount_options("noatime").build();
        let since = now_ns();
        let reference = dest.path().join("reference");
        fs::create_dir(&reference).unwrap();
        assert_success(&receive_file(&joined, &reference), "uninterrupted");
        let into = dest.path().join("into");
        fs::create_dir(&into).unwrap();
        let cut = full.len() + 40_000;
        let stopped = interrupted(&joined, &into, Cut::Head(cut));
        assert!(!stopped.status.success(), "{kind:?}: the cut receive failed");
        assert!(kind != FsType::Btrfs || received_state(&into.join("s1")).is_received());
        let resumed = receive_file(&joined, &into);
        assert_success(&resumed, &format!("{kind:?}: re-run"));
        let stderr = String::from_utf8_lossy(&resumed.stderr);
        assert!(stderr.contains("s1 is already received"), "{kind:?}: {stderr}");
        for name in ["s1", "s2"] {
            let want = TreeSnapshot::capture(reference.join(name));
            assert_received_like(&into.join(name), &want, kind, since, &format!("{kind:?} {name}"));
        }
    }
}
