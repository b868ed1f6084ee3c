//! The filesystem target skips a CHOWN that would change nothing (the kernel sends one
//! after every create, to the owner a receive by root gives the new inode anyway), and
//! only then: a chown to the same owner still clears set-id bits and file capabilities,
//! as it does in the kernel. Whether it would change anything is decided without asking
//! the kernel for nodes the target created itself, so the decision must follow every
//! change to them: through another hard link, a set-id CHMOD, an xattr, an earlier
//! CHOWN, a set-group-id parent or a `grpid` mount.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use rawsend_receive::fs::Kind;
use rawsend_receive::{FsTarget, NodeKind, SubvolStart, Target};
use rawsend_stream::{StreamPath, SymlinkTarget, Uuid, XattrName};
use rawsend_testutil::{FsType, LoopFs};

/// A dir target in a fresh directory, with subvolume `s` begun.
fn target(dest: &Path) -> FsTarget {
    let mut target = FsTarget::open(dest, Some(Kind::Dir)).unwrap();
    let start = SubvolStart { name: b"s", uuid: Uuid::default(), ctransid: 1, parent: None };
    target.begin_subvol(&start).unwrap();
    target
}

fn path(bytes: &[u8]) -> StreamPath<'_> {
    StreamPath::new(bytes).unwrap()
}

/// The uid and gid a new node gets here (this process's, no set-group-id directory).
fn own_ids(dest: &Path) -> (u32, u32) {
    let meta = std::fs::metadata(dest.join("s")).unwrap();
    (meta.uid(), meta.gid())
}

fn ctime(path: &Path) -> (i64, i64) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    (meta.ctime(), meta.ctime_nsec())
}

#[test]
fn a_chown_to_the_owner_a_new_file_or_directory_has_is_skipped() {
    let dest = tempfile::tempdir().unwrap();
    let mut target = target(dest.path());
    let (uid, gid) = own_ids(dest.path());
    let link = NodeKind::Symlink(SymlinkTarget(b"target"));
    for (name, kind) in
        [(&b"file"[..], NodeKind::File), (b"dir", NodeKind::Dir), (b"link", link), (b"fifo", NodeKind::Fifo)]
    {
        target.create(path(name), kind).unwrap();
        let on_disk = dest.path().join("s").join(std::str::from_utf8(name).unwrap());
        let before = ctime(&on_disk);
        // Past the timestamp granularity: a chown done would move the ctime.
        std::thread::sleep(Duration::from_millis(30));
        target.chown(path(name), uid, gid).unwrap();
        assert_eq!(ctime(&on_disk), before, "{}: the chown was done", on_disk.display());
    }
}

#[test]
fn a_chown_to_the_same_owner_still_clears_set_id_bits() {
    let dest = tempfile::tempdir().unwrap();
    let mut target = target(dest.path());
    let (uid, gid) = own_ids(dest.path());
    target.create(path(b"f"), NodeKind::File).unwrap();
    target.chmod(path(b"f"), 0o6755).unwrap();
    target.chown(path(b"f"), uid, gid).unwrap();
    let mode = std::fs::metadata(dest.path().join("s/f")).unwrap().mode() & 0o7777;
    assert_eq!(
        mode, 0o755,
        "the kernel's chown clears set-user-id and set-group-id of a group-executable file"
    );
}

#[test]
fn a_chown_to_the_same_owner_still_drops_file_capabilities() {
    rawsend_testutil::require_root(); // setting security.capability needs CAP_SETFCAP
    let dest = tempfile::tempdir().unwrap();
    let mut target = target(dest.path());
    let (uid, gid) = own_ids(dest.path());
    target.create(path(b"f"), NodeKind::File).unwrap();
    // VFS_CAP_REVISION_2 with CAP_NET_RAW (13) permitted.
    let mut caps = Vec::new();
    for word in [0x0200_0000u32, 1 << 13, 0, 0, 0] {
        caps.extend_from_slice(&word.to_le_bytes());
    }
    let name = XattrName::new(b"security.capability").unwrap();
    target.set_xattr(path(b"f"), name, &caps).unwrap();
    let file = dest.path().join("s/f");
    assert!(has_capability_xattr(&file), "the test's capability was not set");
    target.chown(path(b"f"), uid, gid).unwrap();
    assert!(!has_capability_xattr(&file), "the kernel's chown drops file capabilities");
}

/// The owner and mode of `file` in subvolume `s` of `dest`.
fn owner_and_mode(dest: &Path, file: &str) -> (u32, u32, u32) {
    let meta = std::fs::symlink_metadata(dest.join("s").join(file)).unwrap();
    (meta.uid(), meta.gid(), meta.mode() & 0o7777)
}

#[test]
fn a_set_id_chmod_through_another_hard_link_is_seen_by_the_next_chown() {
    let dest = tempfile::tempdir().unwrap();
    let mut target = target(dest.path());
    let (uid, gid) = own_ids(dest.path());
    target.create(path(b"f"), NodeKind::File).unwrap();
    target.link(path(b"g"), path(b"f")).unwrap();
    target.chmod(path(b"g"), 0o6755).unwrap();
    target.chown(path(b"f"), uid, gid).unwrap();
    assert_eq!(owner_and_mode(dest.path(), "f"), (uid, gid, 0o755), "the chown was skipped");
}

#[test]
fn a_chown_through_another_hard_link_is_seen_by_the_next_chown() {
    rawsend_testutil::require_root();
    let dest = tempfile::tempdir().unwrap();
    let mut target = target(dest.path());
    let (uid, gid) = own_ids(dest.path());
    for (name, kind) in [("f", NodeKind::File), ("l", NodeKind::Symlink(SymlinkTarget(b"target")))] {
        let other = format!("{name}2");
        target.create(path(name.as_bytes()), kind).unwrap();
        target.link(path(other.as_bytes()), path(name.as_bytes())).unwrap();
        target.chown(path(other.as_bytes()), 4242, 4343).unwrap();
        target.chown(path(name.as_bytes()), uid, gid).unwrap();
        let (file_uid, file_gid, _) = owner_and_mode(dest.path(), name);
        assert_eq!((file_uid, file_gid), (uid, gid), "{name}");
    }
}

#[test]
fn a_chown_back_to_the_creator_is_done() {
    rawsend_testutil::require_root();
    let dest = tempfile::tempdir().unwrap();
    let mut target = target(dest.path());
    let (uid, gid) = own_ids(dest.path());
    let link = NodeKind::Symlink(SymlinkTarget(b"target"));
    for (name, kind) in [(&b"file"[..], NodeKind::File), (b"dir", NodeKind::Dir), (b"link", link)] {
        target.create(path(name), kind).unwrap();
        target.chown(path(name), 4242, 4343).unwrap();
        target.chown(path(name), uid, gid).unwrap();
        let (owner_uid, owner_gid, _) = owner_and_mode(dest.path(), std::str::from_utf8(name).unwrap());
        assert_eq!((owner_uid, owner_gid), (uid, gid), "{}", String::from_utf8_lossy(name));
    }
}

#[test]
fn new_nodes_in_a_set_group_id_directory_take_its_group() {
    rawsend_testutil::require_root();
    let dest = tempfile::tempdir().unwrap();
    let mut target = target(dest.path());
    let (uid, gid) = dir_of_group_4343(&mut target, dest.path());
    target.chmod(path(b"d"), 0o2775).unwrap();
    for (name, kind) in [(&b"d/file"[..], NodeKind::File), (b"d/dir", NodeKind::Dir)] {
        target.create(path(name), kind).unwrap();
        let name = std::str::from_utf8(name).unwrap();
        assert_eq!(owner_and_mode(dest.path(), name).1, 4343, "{name}: not the directory's group");
        target.chown(path(name.as_bytes()), uid, gid).unwrap();
        assert_eq!(owner_and_mode(dest.path(), name).1, gid, "{name}: the chown was skipped");
    }
}

#[test]
fn new_files_in_a_directory_of_another_group_take_the_creators_group() {
    rawsend_testutil::require_root();
    let dest = tempfile::tempdir().unwrap();
    let mut target = target(dest.path());
    let (uid, gid) = dir_of_group_4343(&mut target, dest.path());
    target.create(path(b"d/f"), NodeKind::File).unwrap();
    assert_eq!(owner_and_mode(dest.path(), "d/f").1, gid, "a mount without grpid gives the creator's group");
    target.chown(path(b"d/f"), uid, 4343).unwrap();
    assert_eq!(owner_and_mode(dest.path(), "d/f").1, 4343, "the chown was skipped");
}

#[test]
fn new_files_on_a_grpid_mount_take_the_directorys_group() {
    rawsend_testutil::require_root();
    let fs = LoopFs::builder(FsType::Ext4, 64 << 20).mount_options("grpid").build();
    let mut target = target(fs.path());
    let (uid, gid) = dir_of_group_4343(&mut target, fs.path());
    target.create(path(b"d/f"), NodeKind::File).unwrap();
    assert_eq!(owner_and_mode(fs.path(), "d/f").1, 4343, "grpid gives the directory's group");
    target.chown(path(b"d/f"), uid, gid).unwrap();
    assert_eq!(owner_and_mode(fs.path(), "d/f").1, gid, "the chown was skipped");
}

/// Creates directory `d` owned by the receiver and group 4343; returns the receiver's ids.
fn dir_of_group_4343(target: &mut FsTarget, dest: &Path) -> (u32, u32) {
    let (uid, gid) = own_ids(dest);
    target.create(path(b"d"), NodeKind::Dir).unwrap();
    target.chown(path(b"d"), uid, 4343).unwrap();
    (uid, gid)
}

fn has_capability_xattr(file: &Path) -> bool {
    rustix::fs::lgetxattr(file, "security.capability", &mut [0u8; 64][..]).is_ok()
}
