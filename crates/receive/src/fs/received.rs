//! The dir target's received-state records: which directories of DEST are
//! complete receives, of which sent subvolume.
//!
//! btrfs keeps a received UUID and send transid in the subvolume's root item;
//! a plain directory has nowhere to put them, so the dir target writes
//! `"<uuid> <transid>"` into the xattr `user.rawsend.received` of the
//! received directory, and only once the directory applied cleanly (the
//! same no-data-loss rule as btrfs: a partial receive carries no record).
//! Where the filesystem holds no user xattrs (`EOPNOTSUPP`), the record goes
//! to `DEST/.rawsend-received/records/<name>` instead.
//!
//! A directory received without privileges lacks the device nodes of the
//! stream; their paths are kept in `DEST/.rawsend-received/absent/<name>`,
//! so that an incremental receive on top knows them (a later stream may
//! rename or remove them) even though they are not there.
//!
//! Files under `.rawsend-received` start with the inode number of the
//! directory they describe, so a file left behind by a deleted directory
//! never vouches for a new one of the same name; they are also removed when
//! a directory of that name starts being received.
//!
//! Every record is durable before it counts: the received data is synced
//! first (the caller's `syncfs`), then the xattr's directory or the record
//! file and its directory are fsynced; a stale record's removal is fsynced
//! before a new directory of that name is filled.
//!
//! SNAPSHOT parents and CLONE sources are found among DEST's direct
//! children by these records, as btrfs-progs finds them by received UUID.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::str::FromStr;

use rawsend_stream::Uuid;
use rustix::fs::{AtFlags, Mode, OFlags, XattrFlags};
use rustix::io::Errno;

use super::fingerprint::Fingerprint;
use super::tree::{list, open_dir_beneath};
use crate::error::{ErrorKind, Result};
use crate::target::{Candidate, preferred};

/// The xattr holding a complete directory's received UUID and send transid.
pub const RECEIVED_XATTR: &str = "user.rawsend.received";
/// The directory in DEST holding what does not fit in xattrs.
pub const RECORDS_DIR: &str = ".rawsend-received";
/// Longest record read back from the xattr (a UUID, an integer and a fingerprint fit easily).
const RECORD_MAX: usize = 512;
/// Largest file read back from `RECORDS_DIR` (a list of absent paths).
const FILE_MAX: u64 = 64 << 20;

/// What a file under `RECORDS_DIR` holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Store {
    /// Received records where xattrs are unsupported.
    Records,
    /// Paths of device nodes not created.
    Absent,
}

impl Store {
    fn dir(self) -> &'static str {
        match self {
            Store::Records => "records",
            Store::Absent => "absent",
        }
    }
}

/// A received directory's record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// The sent subvolume's UUID.
    pub uuid: Uuid,
    /// Its ctransid when sent.
    pub transid: u64,
    /// What the directory looked like when recorded (`None`: recorded by an older rawsend).
    pub fingerprint: Option<Fingerprint>,
}

impl Record {
    fn text(&self) -> String {
        match &self.fingerprint {
            Some(fingerprint) => format!("{} {} {fingerprint}", self.uuid, self.transid),
            None => format!("{} {}", self.uuid, self.transid),
        }
    }

    /// Parses `"<uuid> <transid>"`, optionally followed by a fingerprint.
    fn parse(text: &[u8]) -> Option<Record> {
        let text = std::str::from_utf8(text).ok()?;
        let mut words = text.split_ascii_whitespace().peekable();
        let uuid = Uuid::from_str(words.next()?).ok()?;
        let transid = words.next()?.parse().ok()?;
        let fingerprint = match words.peek() {
            None => None,
            Some(_) => Some(Fingerprint::parse(words)?),
        };
        Some(Record { uuid, transid, fingerprint })
    }
}

/// A complete directory found by its record.
pub struct Found {
    /// Its name in the destination.
    pub name: Vec<u8>,
    /// The directory, open.
    pub dir: OwnedFd,
    /// What it looked like when recorded (`None`: recorded by an older rawsend).
    pub fingerprint: Option<Fingerprint>,
    /// Paths (relative to it) of device nodes it should have but lacks.
    pub absent: Vec<Vec<u8>>,
    /// Its recorded transid where it differs from the stream's (see `super::locate`).
    pub transid: Option<u64>,
}

/// Where a record was stored, for the user.
pub fn describe(stored_in_xattr: bool, name: &[u8]) -> String {
    if stored_in_xattr {
        format!("xattr {RECEIVED_XATTR}")
    } else {
        format!("{RECORDS_DIR}/{}/{}", Store::Records.dir(), String::from_utf8_lossy(name))
    }
}

/// Records `root` (the directory `name` in `dest`) as complete, lacking the
/// device nodes `absent`; returns whether the xattr held the record (false:
/// the fallback file did).
pub fn write(
    dest: BorrowedFd<'_>,
    name: &[u8],
    root: BorrowedFd<'_>,
    record: &Record,
    absent: &[&[u8]],
) -> Result<bool> {
    if !absent.is_empty() {
        store(dest, Store::Absent, name, root, &absent.join(&0u8))?;
    }
    let text = record.text();
    match rustix::fs::fsetxattr(root, RECEIVED_XATTR, text.as_bytes(), XattrFlags::empty()) {
        Ok(()) => {
            rustix::fs::fsync(root).map(|()| true).map_err(|e| ErrorKind::io("sync a received record", e))
        }
        Err(Errno::OPNOTSUPP) => store(dest, Store::Records, name, root, text.as_bytes()).map(|()| false),
        Err(e) => Err(ErrorKind::io("record received state", e)),
    }
}

/// Forgets what `RECORDS_DIR` says of `name` (a new directory of that name is starting).
pub fn clear(dest: BorrowedFd<'_>, name: &[u8]) -> Result<()> {
    for store in [Store::Records, Store::Absent] {
        let Some(dir) = open_store(dest, store)? else { continue };
        match rustix::fs::unlinkat(&dir, name, AtFlags::empty()) {
            // Durably gone: a stale record must not come back after a crash to vouch
            // for the partial directory that replaces it.
            Ok(()) => sync_dir(dir.as_fd())?,
            Err(Errno::NOENT) => {}
            Err(e) => return Err(ErrorKind::io("remove a stale received record", e)),
        }
    }
    Ok(())
}

/// Opens the complete directory of DEST received from `uuid`, checking its transid.
pub fn find(dest: BorrowedFd<'_>, uuid: Uuid, transid: u64) -> Result<Found> {
    let not_found = ErrorKind::SubvolumeNotFound { uuid, ctransid: transid };
    let found = preferred(find_records(dest, uuid)?, transid).into_iter().next().ok_or(not_found)?;
    let (name, dir, record) = found.id;
    let absent = load(dest, Store::Absent, &name, dir.as_fd())?.unwrap_or_default();
    let absent = absent.split(|&byte| byte == 0).filter(|p| !p.is_empty()).map(<[u8]>::to_vec).collect();
    let transid = (record.transid != transid).then_some(record.transid);
    Ok(Found { name, dir, fingerprint: record.fingerprint, absent, transid })
}

/// A directory of DEST with its record: name, open directory, record.
type Recorded = (Vec<u8>, OwnedFd, Record);

/// The directories of DEST whose record names `uuid`, in listing order.
fn find_records(dest: BorrowedFd<'_>, uuid: Uuid) -> Result<Vec<Candidate<Recorded>>> {
    let mut found = Vec::new();
    for name in list(dest)? {
        let name = name.into_bytes();
        if name == RECORDS_DIR.as_bytes() {
            continue;
        }
        let Ok(dir) = open_dir_beneath(dest, &name) else { continue };
        let record = read(dest, &name, dir.as_fd())?;
        if let Some(record) = record.filter(|record| record.uuid == uuid) {
            found.push(Candidate { transid: record.transid, id: (name, dir, record) });
        }
    }
    Ok(found)
}

/// The record of `dir` (DEST's directory `name`), if it is complete.
pub fn read(dest: BorrowedFd<'_>, name: &[u8], dir: BorrowedFd<'_>) -> Result<Option<Record>> {
    let mut buf = [0u8; RECORD_MAX];
    Ok(match rustix::fs::fgetxattr(dir, RECEIVED_XATTR, &mut buf) {
        Ok(len) => Record::parse(&buf[..len]),
        Err(Errno::OPNOTSUPP) => load(dest, Store::Records, name, dir)?.and_then(|text| Record::parse(&text)),
        Err(_) => None,
    })
}

/// The directory of `store`, if it exists.
fn open_store(dest: BorrowedFd<'_>, store: Store) -> Result<Option<OwnedFd>> {
    let path = format!("{RECORDS_DIR}/{}", store.dir());
    match open_dir_beneath(dest, path.as_bytes()) {
        Err(e) if e.errno() == Some(Errno::NOENT.raw_os_error()) => Ok(None),
        dir => dir.map(Some),
    }
}

/// Writes `content` about directory `root` (named `name`) into `store`, atomically.
fn store(
    dest: BorrowedFd<'_>,
    store: Store,
    name: &[u8],
    root: BorrowedFd<'_>,
    content: &[u8],
) -> Result<()> {
    let io = |op| move |e: Errno| ErrorKind::io(op, e);
    let mut dir = dest.try_clone_to_owned().map_err(|e| ErrorKind::io("open the destination", e))?;
    for part in [RECORDS_DIR, store.dir()] {
        match rustix::fs::mkdirat(&dir, part, Mode::from_raw_mode(0o755)) {
            Ok(()) => sync_dir(dir.as_fd())?,
            Err(Errno::EXIST) => {}
            Err(e) => return Err(io("create the records directory")(e)),
        }
        dir = open_dir_beneath(dir.as_fd(), part.as_bytes())?;
    }
    let ino = rustix::fs::fstat(root).map_err(io("stat"))?.st_ino;
    let content = [format!("{ino}\n").as_bytes(), content].concat();
    let temporary = [b".tmp.", name].concat();
    // Whatever is there (a leftover, or a FIFO someone planted) goes; O_EXCL then
    // guarantees a fresh regular file, so nothing can make this open block.
    match rustix::fs::unlinkat(&dir, &temporary[..], AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => {}
        Err(e) => return Err(io("write a received record")(e)),
    }
    let flags = OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let file = rustix::fs::openat(&dir, &temporary[..], flags, Mode::from_raw_mode(0o644))
        .map_err(io("write a received record"))?;
    super::pwrite_all(file.as_fd(), &content, 0)?;
    rustix::fs::fsync(&file).map_err(io("sync a received record"))?;
    rustix::fs::renameat(&dir, &temporary[..], &dir, name).map_err(io("write a received record"))?;
    sync_dir(dir.as_fd())
}

/// Makes a directory's entries durable (after a create, rename or unlink in it).
fn sync_dir(dir: BorrowedFd<'_>) -> Result<()> {
    rustix::fs::fsync(dir).map_err(|e| ErrorKind::io("sync a received record", e))
}

/// Reads what `store` says of directory `root` (named `name`), if it is about that directory.
fn load(dest: BorrowedFd<'_>, store: Store, name: &[u8], root: BorrowedFd<'_>) -> Result<Option<Vec<u8>>> {
    let Some(dir) = open_store(dest, store)? else { return Ok(None) };
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let file = match rustix::fs::openat(&dir, name, flags, Mode::empty()) {
        Err(Errno::NOENT) => return Ok(None),
        file => file.map_err(|e| ErrorKind::io("open a received record", e))?,
    };
    let stat = rustix::fs::fstat(&file).map_err(|e| ErrorKind::io("stat", e))?;
    if !rustix::fs::FileType::from_raw_mode(stat.st_mode).is_file() || stat.st_size as u64 > FILE_MAX {
        return Ok(None);
    }
    let mut content = Vec::new();
    std::io::Read::read_to_end(&mut std::fs::File::from(file), &mut content)
        .map_err(|e| ErrorKind::io("read a received record", e))?;
    let ino = rustix::fs::fstat(root).map_err(|e| ErrorKind::io("stat", e))?.st_ino;
    let Some(newline) = content.iter().position(|&byte| byte == b'\n') else { return Ok(None) };
    let about_root = std::str::from_utf8(&content[..newline]).ok().and_then(|s| s.parse().ok()) == Some(ino);
    Ok(about_root.then(|| content.split_off(newline + 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(path: &std::path::Path) -> OwnedFd {
        rustix::fs::open(path, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).unwrap()
    }

    #[test]
    fn records_parse_back() {
        let old = Record { uuid: Uuid([0xab; 16]), transid: 42, fingerprint: None };
        let tmp = tempfile::tempdir().unwrap();
        let fingerprint = Some(super::super::fingerprint::take(open(tmp.path()).as_fd(), false).unwrap());
        let new = Record { fingerprint, ..old };
        for record in [old, new] {
            assert_eq!(Record::parse(record.text().as_bytes()), Some(record));
            assert_eq!(Record::parse(format!("{}\n", record.text()).as_bytes()), Some(record));
            assert_eq!(Record::parse(format!("{} 3", record.text()).as_bytes()), None);
        }
        for bad in [&b""[..], b"nonsense 1", b"abababab-abab-abab-abab-abababababab", b"\xff"] {
            assert_eq!(Record::parse(bad), None);
        }
        assert!(new.text().len() < RECORD_MAX);
    }

    #[test]
    fn find_prefers_the_copy_with_the_streams_transid() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = open(tmp.path());
        for (name, transid) in [("a", 5), ("b", 6)] {
            std::fs::create_dir(tmp.path().join(name)).unwrap();
            let dir = open(&tmp.path().join(name));
            let record = Record { uuid: Uuid([1; 16]), transid, fingerprint: None };
            write(dest.as_fd(), name.as_bytes(), dir.as_fd(), &record, &[]).unwrap();
        }
        for (wanted, name) in [(5, &b"a"[..]), (6, b"b")] {
            let found = find(dest.as_fd(), Uuid([1; 16]), wanted).unwrap();
            assert_eq!((found.name.as_slice(), found.transid), (name, None));
        }
        assert!(find(dest.as_fd(), Uuid([1; 16]), 7).unwrap().transid.is_some());
    }

    #[test]
    fn find_checks_uuid_and_transid_and_reads_absent_nodes() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = open(tmp.path());
        std::fs::create_dir(tmp.path().join("a")).unwrap();
        let a = open(&tmp.path().join("a"));
        let record = Record { uuid: Uuid([1; 16]), transid: 5, fingerprint: None };
        let absent: [&[u8]; 2] = [b"dev/null", b"dev/with\nnewline"];
        assert!(write(dest.as_fd(), b"a", a.as_fd(), &record, &absent).unwrap(), "user xattrs expected");
        let found = find(dest.as_fd(), Uuid([1; 16]), 5).unwrap();
        assert_eq!(found.absent, absent.map(<[u8]>::to_vec));
        assert_eq!(found.transid, None, "the transid matches");
        // Another transid (a stream relayed from a received copy): still found, and said.
        assert_eq!(find(dest.as_fd(), Uuid([1; 16]), 6).unwrap().transid, Some(5));
        assert!(matches!(find(dest.as_fd(), Uuid([2; 16]), 5), Err(ErrorKind::SubvolumeNotFound { .. })));
        clear(dest.as_fd(), b"a").unwrap();
        assert!(find(dest.as_fd(), Uuid([1; 16]), 5).unwrap().absent.is_empty());
    }

    #[test]
    fn stored_files_about_another_directory_are_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = open(tmp.path());
        for name in ["b", "c"] {
            std::fs::create_dir(tmp.path().join(name)).unwrap();
        }
        let (b, c) = (open(&tmp.path().join("b")), open(&tmp.path().join("c")));
        store(dest.as_fd(), Store::Records, b"b", c.as_fd(), b"about c").unwrap();
        assert_eq!(load(dest.as_fd(), Store::Records, b"b", b.as_fd()).unwrap(), None);
        store(dest.as_fd(), Store::Records, b"b", b.as_fd(), b"about b").unwrap();
        assert_eq!(load(dest.as_fd(), Store::Records, b"b", b.as_fd()).unwrap(), Some(b"about b".to_vec()));
    }

    #[test]
    fn a_fifo_at_the_temporary_name_cannot_block_a_record() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = open(tmp.path());
        std::fs::create_dir_all(tmp.path().join(".rawsend-received/absent")).unwrap();
        std::fs::create_dir(tmp.path().join("d")).unwrap();
        let fifo = tmp.path().join(".rawsend-received/absent/.tmp.d");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let d = open(&tmp.path().join("d"));
        store(dest.as_fd(), Store::Absent, b"d", d.as_fd(), b"dev/null").unwrap();
        assert_eq!(load(dest.as_fd(), Store::Absent, b"d", d.as_fd()).unwrap(), Some(b"dev/null".to_vec()));
    }
}
