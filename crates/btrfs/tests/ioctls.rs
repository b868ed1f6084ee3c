//! Root integration tests: every wrapper against a real loop-mounted btrfs,
//! and the ENOTTY answer off btrfs.
//!
//! These tests fail (never skip) when not run as root or when the machine
//! cannot mount: CI runs them as root.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::path::Path;
use std::process::Command;

use rawsend_btrfs::{
    COMPRESSION_ZSTD, EncodedWrite, EncodedWriteError, Errno, Error, SendFlags, SendOptions, Uuid,
};
use rawsend_testutil::{LoopFs, MIB, require_root, run};

fn btrfs() -> LoopFs {
    require_root();
    LoopFs::btrfs(256 * MIB)
}

fn open(path: &Path) -> File {
    File::open(path).unwrap_or_else(|err| panic!("open {}: {err}", path.display()))
}

/// Creates subvolume `name` under the mount with one file in it.
fn subvolume_with_file(fs: &LoopFs, name: &str) -> File {
    rawsend_btrfs::create_subvolume(open(fs.path()), OsStr::new(name)).expect("create subvolume");
    fs::write(fs.path().join(name).join("file"), b"hello").expect("write file");
    open(&fs.path().join(name))
}

/// The value of `key:` in `btrfs subvolume show PATH`.
fn show_field(path: &Path, key: &str) -> String {
    let output = run(Command::new("btrfs").args(["subvolume", "show"]).arg(path));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.lines()
        .find_map(|line| line.trim().strip_prefix(key).map(|value| value.trim().to_owned()))
        .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
}

#[test]
fn subvolume_snapshot_info_and_lookups() {
    let fs = btrfs();
    let subvol = subvolume_with_file(&fs, "vol");
    let top = open(fs.path());
    rawsend_btrfs::snapshot(&subvol, &top, OsStr::new("snap"), true).expect("snapshot");
    let snap_path = fs.path().join("snap");
    let snap = open(&snap_path);

    let snap_info = rawsend_btrfs::subvolume_info(&snap).expect("subvolume info");
    assert_eq!(snap_info.name, "snap");
    let info = snap_info.root;
    let vol_info = rawsend_btrfs::subvolume_info(&subvol).expect("subvolume info").root;
    assert!(info.read_only);
    assert_eq!(info.parent_uuid, Some(vol_info.uuid));
    assert_eq!(info.uuid.to_string(), show_field(&snap_path, "UUID:"));
    assert_eq!(info.id.to_string(), show_field(&snap_path, "Subvolume ID:"));
    assert_eq!(rawsend_btrfs::root_id(&snap).expect("root id"), info.id);
    assert_eq!(rawsend_btrfs::root_id(open(&snap_path.join("file"))).expect("root id"), info.id);

    assert_eq!(rawsend_btrfs::subvolume_id_by_uuid(&top, &info.uuid).expect("uuid lookup"), Some(info.id));
    assert_eq!(rawsend_btrfs::subvolume_id_by_uuid(&top, &Uuid([7; 16])).expect("uuid lookup"), None);
    let root = rawsend_btrfs::root_info(&top, info.id).expect("root item").expect("root exists");
    assert_eq!(root, info, "the root item and GET_SUBVOL_INFO agree");
    assert_eq!(rawsend_btrfs::root_info(&top, 999_999).expect("root item"), None);
}

#[test]
fn subvolume_roots_and_paths() {
    let fs = btrfs();
    let subvol = subvolume_with_file(&fs, "vol");
    fs::create_dir(fs.path().join("vol/dir")).expect("mkdir");
    rawsend_btrfs::create_subvolume(open(&fs.path().join("vol/dir")), OsStr::new("inner")).expect("nested");

    assert!(rawsend_btrfs::is_subvolume_root(&subvol).expect("is root"));
    assert!(rawsend_btrfs::is_subvolume_root(open(fs.path())).expect("is root"));
    assert!(!rawsend_btrfs::is_subvolume_root(open(&fs.path().join("vol/dir"))).expect("is root"));
    assert!(!rawsend_btrfs::is_subvolume_root(open(&fs.path().join("vol/file"))).expect("is root"));

    let inner = rawsend_btrfs::root_id(open(&fs.path().join("vol/dir/inner"))).expect("root id");
    let path = rawsend_btrfs::subvolume_path(&subvol, inner).expect("resolve").expect("exists");
    assert_eq!(path, Path::new("vol/dir/inner"));
    assert_eq!(rawsend_btrfs::subvolume_path(&subvol, 999_999).expect("resolve"), None);
}

#[test]
fn read_only_flag_and_received_uuid() {
    let fs = btrfs();
    let subvol = subvolume_with_file(&fs, "vol");
    assert!(!rawsend_btrfs::is_read_only(&subvol).expect("flags"));

    let sender = Uuid([0x5a; 16]);
    let rtransid = rawsend_btrfs::set_received_subvol(&subvol, &sender, 1234).expect("set received");
    assert!(rtransid > 0);
    let info = rawsend_btrfs::subvolume_info(&subvol).expect("info").root;
    assert_eq!((info.received_uuid, info.stransid, info.rtransid), (Some(sender), 1234, rtransid));
    let found = rawsend_btrfs::subvolume_ids_by_received_uuid(&subvol, &sender).expect("lookup");
    assert_eq!(found, [info.id]);
    // A second copy received from the same sender: both are listed.
    let copy = subvolume_with_file(&fs, "copy");
    rawsend_btrfs::set_received_subvol(&copy, &sender, 99).expect("set received");
    let copy_id = rawsend_btrfs::subvolume_info(&copy).expect("info").root.id;
    let mut found = rawsend_btrfs::subvolume_ids_by_received_uuid(&subvol, &sender).expect("lookup");
    found.sort_unstable();
    assert_eq!(found, [info.id, copy_id]);

    rawsend_btrfs::set_read_only(&subvol, true).expect("set ro");
    assert!(rawsend_btrfs::is_read_only(&subvol).expect("flags"));
    let err = rawsend_btrfs::set_received_subvol(&subvol, &sender, 1).expect_err("read-only");
    assert_eq!(err.errno(), Some(Errno::ROFS));
    assert!(err.to_string().contains("BTRFS_IOC_SET_RECEIVED_SUBVOL"), "{err}");
    rawsend_btrfs::set_read_only(&subvol, false).expect("set rw");
    assert!(!rawsend_btrfs::is_read_only(&subvol).expect("flags"));
}

#[test]
fn encoded_read_then_write_round_trips() {
    require_root();
    let fs =
        LoopFs::builder(rawsend_testutil::FsType::Btrfs, 256 * MIB).mount_options("compress=zstd").build();
    let content: Vec<u8> = (0..128 * 1024).map(|index| b"rawsend "[index % 8]).collect();
    let source = fs.path().join("source");
    fs::write(&source, &content).expect("write source");
    run(&mut Command::new("sync"));

    let mut buf = vec![0u8; rawsend_btrfs::MAX_ENCODED_LEN as usize];
    let read = rawsend_btrfs::encoded_read(open(&source), 0, &mut buf).expect("encoded read");
    assert_eq!(read.compression, COMPRESSION_ZSTD);
    assert_eq!((read.len, read.unencoded_len, read.unencoded_offset), (128 * 1024, 128 * 1024, 0));
    assert!(read.bytes > 0 && read.bytes < content.len());
    let at_eof = rawsend_btrfs::encoded_read(open(&source), 1 << 20, &mut buf).expect("read at EOF");
    assert_eq!(at_eof.len, 0);

    let target_path = fs.path().join("target");
    let target = OpenOptions::new().write(true).create_new(true).open(&target_path).expect("create");
    let write = EncodedWrite {
        offset: 0,
        len: read.len,
        unencoded_len: read.unencoded_len,
        unencoded_offset: read.unencoded_offset,
        compression: read.compression,
        encryption: read.encryption,
    };
    let sector = rawsend_btrfs::sector_size(&target).expect("sector size");
    write.validate(read.bytes, sector, Some(0)).expect("valid write");
    let written = rawsend_btrfs::encoded_write(&target, &write, &buf[..read.bytes]).expect("encoded write");
    assert_eq!(written, read.bytes);
    assert_eq!(fs::read(&target_path).expect("read back"), content);

    let err = rawsend_btrfs::encoded_write(&target, &write, &[]).expect_err("empty data");
    assert!(matches!(err, Error::InvalidEncodedWrite(EncodedWriteError::EmptyData)), "{err}");
    let unaligned = EncodedWrite { offset: 100, ..write };
    let err = rawsend_btrfs::encoded_write(&target, &unaligned, &buf[..read.bytes]).expect_err("unaligned");
    assert_eq!(err.errno(), Some(Errno::INVAL));
}

/// Sends `snap` with the given flags into a file and returns the stream.
fn send_to_vec(fs: &LoopFs, snap: &File, flags: SendFlags, version: Option<u32>) -> Vec<u8> {
    let out_path = fs.path().join("..").join("stream");
    let out = File::create(&out_path).expect("create stream file");
    let options = SendOptions { parent_root: None, clone_sources: &[], flags, version };
    rawsend_btrfs::send(snap, &out, &options).expect("send");
    fs::read(&out_path).expect("read stream")
}

#[test]
fn send_matches_btrfs_send_and_needs_read_only() {
    let fs = btrfs();
    let subvol = subvolume_with_file(&fs, "vol");
    rawsend_btrfs::snapshot(&subvol, open(fs.path()), OsStr::new("snap"), true).expect("snapshot");
    let snap = open(&fs.path().join("snap"));

    let ours = send_to_vec(&fs, &snap, SendFlags::NONE, Some(1));
    let progs = fs.path().join("../progs-stream");
    run(Command::new("btrfs").args(["-q", "send", "-f"]).arg(&progs).arg(fs.path().join("snap")));
    assert_eq!(ours, fs::read(&progs).expect("read progs stream"));
    assert!(ours.starts_with(b"btrfs-stream\0"));

    let bare = send_to_vec(&fs, &snap, SendFlags::OMIT_STREAM_HEADER | SendFlags::OMIT_END_CMD, Some(2));
    assert!(!bare.starts_with(b"btrfs-stream\0"));

    let max = rawsend_btrfs::max_send_stream_version().expect("sysfs");
    assert!(max >= 1);
    let out = File::create(fs.path().join("../unused")).expect("create");
    let options =
        SendOptions { parent_root: None, clone_sources: &[], flags: SendFlags::NONE, version: None };
    let err = rawsend_btrfs::send(&subvol, &out, &options).expect_err("writable subvolume");
    assert_eq!(err.errno(), Some(Errno::PERM));
    assert!(err.to_string().contains("read-only"), "{err}");
}

#[test]
fn clone_range_and_whole_file() {
    let fs = btrfs();
    let data: Vec<u8> = (0..3 * 4096).map(|index| (index / 4096) as u8 + b'a').collect();
    let source_path = fs.path().join("source");
    fs::write(&source_path, &data).expect("write");
    let source = open(&source_path);

    let whole_path = fs.path().join("whole");
    let whole = File::create(&whole_path).expect("create");
    rawsend_btrfs::clone_file(&source, &whole).expect("FICLONE");
    assert_eq!(fs::read(&whole_path).expect("read"), data);

    let part_path = fs.path().join("part");
    let part = File::create(&part_path).expect("create");
    rawsend_btrfs::clone_range(&source, 4096, 4096, &part, 0).expect("FICLONERANGE");
    assert_eq!(fs::read(&part_path).expect("read"), &data[4096..8192]);

    let err = rawsend_btrfs::clone_range(&source, 1, 4096, &part, 0).expect_err("unaligned");
    assert_eq!(err.errno(), Some(Errno::INVAL));
}

#[test]
fn non_btrfs_files_answer_enotty() {
    require_root();
    let fs = LoopFs::ext4(32 * MIB);
    let path = fs.path().join("file");
    fs::write(&path, b"data").expect("write");
    let file = OpenOptions::new().read(true).write(true).open(&path).expect("open");

    assert!(!rawsend_btrfs::is_btrfs(&file).expect("statfs"));
    assert!(!rawsend_btrfs::is_subvolume_root(open(fs.path())).expect("statfs"));
    let err = rawsend_btrfs::encoded_read(&file, 0, &mut [0u8; 4096]).expect_err("ext4");
    assert_eq!(err.errno(), Some(Errno::NOTTY));
    assert!(err.to_string().contains("not on btrfs"), "{err}");
    let err = rawsend_btrfs::subvolume_info(&file).expect_err("ext4");
    assert_eq!(err.errno(), Some(Errno::NOTTY));
    let err = rawsend_btrfs::root_id(&file).expect_err("ext4");
    assert!(err.to_string().starts_with("BTRFS_IOC_INO_LOOKUP failed"), "{err}");
}

#[test]
fn send_appends_at_the_file_position_and_writes_pipes_directly() {
    let fs = btrfs();
    let subvol = subvolume_with_file(&fs, "vol");
    rawsend_btrfs::snapshot(&subvol, open(fs.path()), OsStr::new("snap"), true).expect("snapshot");
    let snap = open(&fs.path().join("snap"));
    let single = send_to_vec(&fs, &snap, SendFlags::NONE, None);

    let out_path = fs.path().join("../twice");
    let mut out = File::create(&out_path).expect("create");
    std::io::Write::write_all(&mut out, b"PREFIX").expect("write prefix");
    let options =
        SendOptions { parent_root: None, clone_sources: &[], flags: SendFlags::NONE, version: None };
    rawsend_btrfs::send(&snap, &out, &options).expect("first send");
    rawsend_btrfs::send(&snap, &out, &options).expect("second send");
    let expected = [b"PREFIX".as_slice(), &single, &single].concat();
    assert_eq!(fs::read(&out_path).expect("read"), expected);

    let mut child = Command::new("cat")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn cat");
    let stdin = child.stdin.take().expect("piped stdin");
    rawsend_btrfs::send(&snap, &stdin, &options).expect("send into a pipe");
    drop(stdin);
    let output = child.wait_with_output().expect("cat output");
    assert_eq!(output.stdout, single);

    let (read, sent) = rawsend_btrfs::send_to_reader(&snap, &options, |mut pipe| {
        let mut stream = Vec::new();
        std::io::Read::read_to_end(&mut pipe, &mut stream).map(|_| stream)
    })
    .expect("pipe");
    sent.expect("send to a reader");
    assert_eq!(read.expect("read the pipe"), single);
}

#[test]
fn send_to_a_reader_that_stops_fails_with_epipe() {
    let fs = btrfs();
    let subvol = subvolume_with_file(&fs, "vol");
    // Far more than any pipe buffer holds, so the kernel is still writing
    // when the reader is gone, however the threads are scheduled.
    fs::write(fs.path().join("vol/big"), vec![7u8; 8 * MIB as usize]).expect("write big file");
    rawsend_btrfs::snapshot(&subvol, open(fs.path()), OsStr::new("snap"), true).expect("snapshot");
    let snap = open(&fs.path().join("snap"));
    let options =
        SendOptions { parent_root: None, clone_sources: &[], flags: SendFlags::NONE, version: None };
    let (_, sent) = rawsend_btrfs::send_to_reader(&snap, &options, drop).expect("pipe");
    assert_eq!(sent.expect_err("reader gone").errno(), Some(Errno::PIPE));
}

#[test]
fn delete_subvolume_removes_it_and_refuses_directories() {
    let fs = btrfs();
    drop(subvolume_with_file(&fs, "vol"));
    fs::create_dir(fs.path().join("plain")).expect("mkdir");
    let top = open(fs.path());
    let err = rawsend_btrfs::delete_subvolume(&top, OsStr::new("plain")).expect_err("not a subvolume");
    assert!(err.errno().is_some(), "{err}");
    assert!(fs.path().join("plain").is_dir());
    rawsend_btrfs::delete_subvolume(&top, OsStr::new("vol")).expect("delete subvolume");
    assert!(!fs.path().join("vol").exists());
    assert!(rawsend_btrfs::delete_subvolume(&top, OsStr::new("..")).is_err());
}
