//! Snapshots of a directory tree, to compare what two receivers produced.
//!
//! [`TreeSnapshot::capture`] walks a tree without following symlinks and
//! records, for every entry (the root itself included, as `.`), its file
//! type, permission bits, owner, size, mtime and atime in nanoseconds,
//! device number, symlink target, a content digest and all xattrs (read
//! with `llistxattr`/`lgetxattr`, so never through a symlink), plus the
//! hard-link groups (paths sharing an inode). [`diff`] lists every
//! difference as a readable line.
//!
//! Times: directory atimes are compared too. Both `btrfs receive` and
//! rawsend set them with UTIMES, but reading a directory (or a file) can
//! update its atime; callers must therefore capture trees on a filesystem
//! mounted with `noatime` (capturing itself reads every directory and file).
//!
//! Content digest: two SipHash-1-3 runs over the bytes with different
//! prefixes (128 bits from the standard library, no extra dependency). Its
//! values are only meaningful within one process, which is all a test
//! comparing two captures needs; collisions are not a concern for trees
//! written by two honest receivers. [`digest_bytes`] gives the same digest
//! for bytes held in memory, so a tree built without a filesystem (such as
//! the in-memory model of a receive) compares with a captured one.
//!
//! [`CompareOptions`] relaxes the comparison where a destination cannot
//! hold what btrfs holds (directory sizes, non-`user.*` xattrs, atimes,
//! ...); [`diff`] compares everything.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::{self, File};
use std::hash::{DefaultHasher, Hasher};
use std::io::{ErrorKind, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The type of a tree entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FileKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Named pipe.
    Fifo,
    /// Unix socket.
    Socket,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
}

/// A 128-bit content digest (see the module documentation).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Digest(pub [u64; 2]);

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}{:016x}", self.0[0], self.0[1])
    }
}

/// What [`TreeSnapshot::capture`] records for one path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// File type.
    pub kind: FileKind,
    /// Permission bits including suid/sgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// `st_size` (for directories this depends on the filesystem).
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Access time, nanoseconds since the epoch.
    pub atime_ns: i128,
    /// Device number (character and block devices only, else 0).
    pub rdev: u64,
    /// Symlink target (symlinks only).
    pub target: Option<Vec<u8>>,
    /// Content digest (regular files only).
    pub digest: Option<Digest>,
    /// All xattrs, name to value.
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// A captured tree: entries by relative path (the root is `.`) and hard-link groups.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TreeSnapshot {
    /// Entries by path relative to the captured root, as bytes.
    pub entries: BTreeMap<Vec<u8>, Entry>,
    /// Sets of two or more paths that share an inode.
    pub links: BTreeSet<BTreeSet<Vec<u8>>>,
}

/// What [`diff_with`] compares; [`CompareOptions::default`] compares everything.
#[derive(Clone, Copy, Debug)]
pub struct CompareOptions {
    /// Compare `st_size` of directories (filesystem-specific).
    pub dir_size: bool,
    /// Compare atimes.
    pub atime: bool,
    /// Compare only xattrs whose name starts with one of these prefixes; `None` compares all.
    pub xattr_prefixes: Option<&'static [&'static str]>,
    /// Compare the root entry's own attributes (`.`).
    pub root: bool,
    /// Times (ns since the epoch) at or after this instant on both sides count as equal.
    ///
    /// A receiver leaves a time at "now" where the stream does not set it after
    /// changing the inode (e.g. an incremental stream creates orphans in the
    /// root directory but sends no UTIMES for the unchanged root). Such wall-clock
    /// values cannot agree between two receives; with the start of the test here,
    /// they are accepted when both sides are wall-clock values, and a time the
    /// stream did set must still match exactly.
    pub fresh_since_ns: Option<i128>,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions { dir_size: true, atime: true, xattr_prefixes: None, root: true, fresh_since_ns: None }
    }
}

impl TreeSnapshot {
    /// Captures the tree at `root`; panics with the path on any I/O error.
    pub fn capture(root: impl AsRef<Path>) -> TreeSnapshot {
        let root = root.as_ref();
        let mut snapshot = TreeSnapshot::default();
        let mut inodes: BTreeMap<(u64, u64), BTreeSet<Vec<u8>>> = BTreeMap::new();
        let mut pending: Vec<(PathBuf, Vec<u8>)> = vec![(root.to_owned(), b".".to_vec())];
        while let Some((path, relative)) = pending.pop() {
            let meta = fs::symlink_metadata(&path)
                .unwrap_or_else(|err| panic!("cannot stat {}: {err}", path.display()));
            let kind = kind_of(&meta.file_type());
            if kind == FileKind::Dir {
                let children =
                    fs::read_dir(&path).unwrap_or_else(|err| panic!("cannot list {}: {err}", path.display()));
                for child in children {
                    let child = child.unwrap_or_else(|err| panic!("cannot list {}: {err}", path.display()));
                    let name = child.file_name();
                    let child_relative = if relative == b"." {
                        name.as_bytes().to_vec()
                    } else {
                        [&relative[..], b"/", name.as_bytes()].concat()
                    };
                    pending.push((child.path(), child_relative));
                }
            } else if meta.nlink() > 1 {
                inodes.entry((meta.dev(), meta.ino())).or_default().insert(relative.clone());
            }
            let entry = Entry {
                kind,
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                size: meta.size(),
                mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
                atime_ns: i128::from(meta.atime()) * 1_000_000_000 + i128::from(meta.atime_nsec()),
                rdev: if matches!(kind, FileKind::CharDevice | FileKind::BlockDevice) {
                    meta.rdev()
                } else {
                    0
                },
                target: (kind == FileKind::Symlink).then(|| {
                    fs::read_link(&path)
                        .unwrap_or_else(|err| panic!("cannot read link {}: {err}", path.display()))
                        .into_os_string()
                        .as_bytes()
                        .to_vec()
                }),
                digest: (kind == FileKind::File).then(|| digest_file(&path)),
                xattrs: xattrs(&path),
            };
            snapshot.entries.insert(relative, entry);
        }
        snapshot.links = inodes.into_values().filter(|paths| paths.len() > 1).collect();
        snapshot
    }
}

fn kind_of(file_type: &fs::FileType) -> FileKind {
    if file_type.is_dir() {
        FileKind::Dir
    } else if file_type.is_symlink() {
        FileKind::Symlink
    } else if file_type.is_fifo() {
        FileKind::Fifo
    } else if file_type.is_socket() {
        FileKind::Socket
    } else if file_type.is_char_device() {
        FileKind::CharDevice
    } else if file_type.is_block_device() {
        FileKind::BlockDevice
    } else {
        FileKind::File
    }
}

/// The content digest of `bytes`: what [`TreeSnapshot::capture`] records for a regular
/// file holding exactly these bytes, so a tree built in memory compares with a captured one.
pub fn digest_bytes(bytes: &[u8]) -> Digest {
    let mut digester = Digester::new();
    digester.update(bytes);
    digester.finish()
}

fn digest_file(path: &Path) -> Digest {
    let mut file = File::open(path).unwrap_or_else(|err| panic!("cannot open {}: {err}", path.display()));
    let mut digester = Digester::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => digester.update(&buf[..n]),
            Err(err) if err.kind() == ErrorKind::Interrupted => continue,
            Err(err) => panic!("cannot read {}: {err}", path.display()),
        }
    }
    digester.finish()
}

/// The content digest computed piece by piece (SipHash streams its input, so the pieces
/// do not matter): the one algorithm behind [`digest_bytes`] and file digests.
struct Digester {
    first: DefaultHasher,
    second: DefaultHasher,
    total: u64,
}

impl Digester {
    fn new() -> Self {
        let (mut first, mut second) = (DefaultHasher::new(), DefaultHasher::new());
        first.write_u8(1);
        second.write_u8(2);
        Digester { first, second, total: 0 }
    }

    fn update(&mut self, bytes: &[u8]) {
        self.first.write(bytes);
        self.second.write(bytes);
        self.total += bytes.len() as u64;
    }

    fn finish(mut self) -> Digest {
        self.first.write_u64(self.total);
        self.second.write_u64(self.total);
        Digest([self.first.finish(), self.second.finish()])
    }
}

/// All xattrs of `path` itself (never following a symlink); empty where unsupported.
fn xattrs(path: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut names = vec![0u8; 1 << 16];
    let len = match rustix::fs::llistxattr(path, &mut names[..]) {
        Ok(len) => len,
        Err(rustix::io::Errno::NOTSUP) => return BTreeMap::new(),
        Err(err) => panic!("cannot list xattrs of {}: {err}", path.display()),
    };
    let mut value = vec![0u8; 1 << 16];
    names[..len]
        .split(|&byte| byte == 0)
        .filter(|name| !name.is_empty())
        .map(|name| {
            let os_name = std::ffi::OsStr::from_bytes(name);
            let n = rustix::fs::lgetxattr(path, os_name, &mut value[..]).unwrap_or_else(|err| {
                panic!("cannot read xattr {} of {}: {err}", name.escape_ascii(), path.display())
            });
            (name.to_vec(), value[..n].to_vec())
        })
        .collect()
}

/// Every difference between `a` (left) and `b` (right), comparing everything.
pub fn diff(a: &TreeSnapshot, b: &TreeSnapshot) -> Vec<String> {
    diff_with(a, b, &CompareOptions::default())
}

/// Every difference between `a` (left) and `b` (right) that `options` asks about.
pub fn diff_with(a: &TreeSnapshot, b: &TreeSnapshot, options: &CompareOptions) -> Vec<String> {
    let mut out = Vec::new();
    let paths: BTreeSet<&Vec<u8>> = a.entries.keys().chain(b.entries.keys()).collect();
    for path in paths {
        let shown = path.escape_ascii();
        match (a.entries.get(path), b.entries.get(path)) {
            (Some(_), None) => out.push(format!("{shown}: only on the left")),
            (None, Some(_)) => out.push(format!("{shown}: only on the right")),
            (Some(left), Some(right)) => {
                if path == b"." && !options.root {
                    continue;
                }
                diff_entry(&shown.to_string(), left, right, options, &mut out);
            }
            (None, None) => unreachable!(),
        }
    }
    let show = |group: &BTreeSet<Vec<u8>>| {
        let names: Vec<String> = group.iter().map(|p| p.escape_ascii().to_string()).collect();
        format!("{{{}}}", names.join(", "))
    };
    for group in a.links.difference(&b.links) {
        out.push(format!("hard-link group {} only on the left", show(group)));
    }
    for group in b.links.difference(&a.links) {
        out.push(format!("hard-link group {} only on the right", show(group)));
    }
    out
}

fn diff_entry(path: &str, a: &Entry, b: &Entry, options: &CompareOptions, out: &mut Vec<String>) {
    let mut field = |name: &str, left: String, right: String| {
        if left != right {
            out.push(format!("{path}: {name}: left={left} right={right}"));
        }
    };
    field("type", format!("{:?}", a.kind), format!("{:?}", b.kind));
    if a.kind != b.kind {
        return;
    }
    field("mode", format!("{:o}", a.mode), format!("{:o}", b.mode));
    field("uid", a.uid.to_string(), b.uid.to_string());
    field("gid", a.gid.to_string(), b.gid.to_string());
    if a.kind != FileKind::Dir || options.dir_size {
        field("size", a.size.to_string(), b.size.to_string());
    }
    let both_fresh =
        |left: i128, right: i128| options.fresh_since_ns.is_some_and(|since| left >= since && right >= since);
    if !both_fresh(a.mtime_ns, b.mtime_ns) {
        field("mtime_ns", a.mtime_ns.to_string(), b.mtime_ns.to_string());
    }
    if options.atime && !both_fresh(a.atime_ns, b.atime_ns) {
        field("atime_ns", a.atime_ns.to_string(), b.atime_ns.to_string());
    }
    field("rdev", format!("{:#x}", a.rdev), format!("{:#x}", b.rdev));
    let show_bytes = |bytes: &Option<Vec<u8>>| match bytes {
        Some(bytes) => format!("\"{}\"", bytes.escape_ascii()),
        None => "none".to_owned(),
    };
    field("symlink target", show_bytes(&a.target), show_bytes(&b.target));
    field("content", format!("{:?}", a.digest), format!("{:?}", b.digest));
    let wanted = |name: &Vec<u8>| match options.xattr_prefixes {
        None => true,
        Some(prefixes) => prefixes.iter().any(|prefix| name.starts_with(prefix.as_bytes())),
    };
    let names: BTreeSet<&Vec<u8>> =
        a.xattrs.keys().chain(b.xattrs.keys()).filter(|name| wanted(name)).collect();
    for name in names {
        let left = a.xattrs.get(name).cloned();
        let right = b.xattrs.get(name).cloned();
        field(&format!("xattr {}", name.escape_ascii()), show_bytes(&left), show_bytes(&right));
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;
    use std::process::Command;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::run;

    fn set_times(path: &Path, secs: u64, nanos: u32) {
        let time = SystemTime::UNIX_EPOCH + Duration::new(secs, nanos);
        let file = File::options().write(true).open(path).expect("open for times");
        file.set_times(fs::FileTimes::new().set_accessed(time).set_modified(time)).expect("set times");
    }

    /// Two identical trees with a file, a dir, a symlink, a hard link and an xattr.
    fn pair() -> (tempfile::TempDir, tempfile::TempDir) {
        let make = || {
            let dir = tempfile::tempdir().expect("tempdir");
            fs::create_dir(dir.path().join("d")).expect("mkdir");
            fs::write(dir.path().join("d/f"), b"hello").expect("write");
            fs::hard_link(dir.path().join("d/f"), dir.path().join("link")).expect("link");
            symlink("d/f", dir.path().join("sym")).expect("symlink");
            set_times(&dir.path().join("d/f"), 1_000_000, 123_456_789);
            for path in ["sym", "d", "."] {
                run(Command::new("touch").args(["-h", "-d", "@1000000.5"]).arg(dir.path().join(path)));
            }
            dir
        };
        (make(), make())
    }

    #[test]
    fn identical_trees_have_no_diff() {
        let (a, b) = pair();
        let (a, b) = (TreeSnapshot::capture(a.path()), TreeSnapshot::capture(b.path()));
        // Capturing reads files and directories, which updates atimes on a tempdir
        // (relatime): only the atimes may differ.
        let options = CompareOptions { atime: false, ..CompareOptions::default() };
        assert_eq!(diff_with(&a, &b, &options), Vec::<String>::new());
        assert_eq!(a.links.len(), 1, "{:?}", a.links);
        assert!(a.links.iter().next().expect("one group").contains(&b"link".to_vec()));
        assert_eq!(a.entries[&b"sym".to_vec()].target.as_deref(), Some(&b"d/f"[..]));
        assert_eq!(a.entries[&b"d/f".to_vec()].mtime_ns, 1_000_000_123_456_789);
    }

    #[test]
    fn every_kind_of_difference_is_reported() {
        let (a, b) = pair();
        let (pa, pb) = (a.path(), b.path());
        fs::write(pb.join("d/f"), b"hellO").expect("rewrite");
        set_times(&pb.join("d/f"), 1_000_000, 123_456_788);
        fs::set_permissions(pb.join("d/f"), std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
        fs::remove_file(pb.join("sym")).expect("rm sym");
        symlink("d/g", pb.join("sym")).expect("symlink");
        fs::write(pa.join("only-left"), b"").expect("write");
        fs::remove_file(pb.join("link")).expect("unlink");
        fs::write(pb.join("link"), b"hello").expect("write");
        let xattr = |path: &Path, value: &str| {
            run(Command::new("python3").args([
                "-c",
                "import os,sys; os.setxattr(sys.argv[1], 'user.t', sys.argv[2].encode(), follow_symlinks=False)",
            ])
            .arg(path)
            .arg(value));
        };
        xattr(&pa.join("d"), "one");
        xattr(&pb.join("d"), "two");
        let options = CompareOptions { root: false, atime: false, ..CompareOptions::default() };
        let differences = diff_with(&TreeSnapshot::capture(pa), &TreeSnapshot::capture(pb), &options);
        let text = differences.join("\n");
        for expected in [
            "d/f: content: left=",
            "d/f: mtime_ns: left=1000000123456789 right=1000000123456788",
            "d/f: mode: left=644 right=600",
            "sym: symlink target: left=\"d/f\" right=\"d/g\"",
            "only-left: only on the left",
            "d: xattr user.t: left=\"one\" right=\"two\"",
            "hard-link group {d/f, link} only on the left",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        // The xattr filter hides what it is not asked about.
        let options = CompareOptions { xattr_prefixes: Some(&["trusted."]), ..options };
        let filtered = diff_with(&TreeSnapshot::capture(pa), &TreeSnapshot::capture(pb), &options).join("\n");
        assert!(!filtered.contains("xattr"), "{filtered}");
        // Fresh times: both at or after the instant count as equal, one before does not.
        let options = CompareOptions { fresh_since_ns: Some(1_000_000_123_456_788), ..options };
        let fresh = diff_with(&TreeSnapshot::capture(pa), &TreeSnapshot::capture(pb), &options).join("\n");
        assert!(!fresh.contains("d/f: mtime_ns"), "{fresh}");
        let options = CompareOptions { fresh_since_ns: Some(1_000_000_123_456_789), ..options };
        let exact = diff_with(&TreeSnapshot::capture(pa), &TreeSnapshot::capture(pb), &options).join("\n");
        assert!(exact.contains("d/f: mtime_ns"), "{exact}");
    }

    /// Bytes digest like a file holding them, also when the file is read in several pieces.
    #[test]
    fn bytes_digest_like_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big: Vec<u8> = (0..(3 << 20) + 17).map(|i: u32| (i % 251) as u8).collect();
        for (name, bytes) in [("empty", &b""[..]), ("small", b"hello"), ("big", &big)] {
            fs::write(dir.path().join(name), bytes).expect("write");
        }
        let tree = TreeSnapshot::capture(dir.path());
        for (name, bytes) in [("empty", &b""[..]), ("small", b"hello"), ("big", &big)] {
            assert_eq!(tree.entries[name.as_bytes()].digest, Some(digest_bytes(bytes)), "{name}");
        }
        assert_ne!(digest_bytes(b""), digest_bytes(b"\0"));
    }

    #[test]
    fn types_and_missing_entries() {
        let (a, b) = pair();
        fs::remove_file(b.path().join("sym")).expect("rm");
        fs::create_dir(b.path().join("sym")).expect("mkdir");
        fs::remove_file(b.path().join("d/f")).expect("rm");
        let differences = diff(&TreeSnapshot::capture(a.path()), &TreeSnapshot::capture(b.path()));
        let text = differences.join("\n");
        assert!(text.contains("sym: type: left=Symlink right=Dir"), "{text}");
        assert!(text.contains("d/f: only on the left"), "{text}");
    }
}
