//! ENABLE_VERITY (send protocol v3) through `rawsend receive` (root: loop-mounted btrfs and ext4).
//!
//! No kernel emits v3 streams yet, so the stream is built with `StreamWriter`.
//! Whether fs-verity works depends on the kernel (`CONFIG_FS_VERITY`): the
//! test first asks the kernel directly with `FS_IOC_ENABLE_VERITY` on a
//! scratch file, then requires the receive to match. With fs-verity the file
//! must come out sealed (`STATX_ATTR_VERITY`) and the subvolume received;
//! without it the btrfs receive must fail naming the command and leave the
//! subvolume unmarked, while the dir target skips with one warning (or fails
//! with `--strict`).

use std::fs::File;
use std::path::Path;
use std::process::{Command, Output};

use rawsend_btrfs::{Errno, Verity};
use rawsend_stream::{Command as StreamCommand, StreamPath, StreamWriter, Uuid};
use rawsend_testutil::{LoopFs, MIB, require_root};
use rustix::fs::{AtFlags, StatxAttributes, StatxFlags};

const DATA: &[u8] = b"sealed by fs-verity\n";

fn verity_stream(dir: &Path) -> std::path::PathBuf {
    let path = |p: &'static [u8]| StreamPath::new(p).expect("valid path");
    let commands = [
        StreamCommand::Subvol { path: path(b"vol"), uuid: Uuid([7; 16]), ctransid: 9 },
        StreamCommand::Mkfile { path: path(b"f"), ino: 257 },
        StreamCommand::Write { path: path(b"f"), offset: 0, data: DATA },
        StreamCommand::EnableVerity { path: path(b"f"), algorithm: 1, block_size: 4096, salt: b"", sig: b"" },
        StreamCommand::End,
    ];
    let mut writer = StreamWriter::new(Vec::new(), 3).expect("header");
    for command in &commands {
        writer.write(command).expect("encode");
    }
    let file = dir.join("verity.stream");
    std::fs::write(&file, writer.finish().expect("finish")).expect("write stream");
    file
}

/// Whether the kernel can enable fs-verity on a file in `dir`.
fn kernel_has_verity(dir: &Path) -> bool {
    let scratch = dir.join("verity-probe");
    std::fs::write(&scratch, DATA).expect("write probe");
    let verity = Verity { hash_algorithm: 1, block_size: 4096, salt: b"", signature: b"" };
    let result = rawsend_btrfs::enable_verity(File::open(&scratch).expect("open probe"), &verity);
    match result {
        Ok(()) => true,
        Err(err) if matches!(err.errno(), Some(Errno::NOTTY | Errno::OPNOTSUPP)) => false,
        Err(err) => panic!("probing fs-verity: {err}"),
    }
}

fn has_verity(file: &Path) -> bool {
    let statx = rustix::fs::statx(rustix::fs::CWD, file, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::BASIC_STATS)
        .expect("statx");
    statx.stx_attributes.contains(StatxAttributes::VERITY)
}

fn receive(stream: &Path, dest: &Path, extra: &[&str]) -> Output {
    std::fs::create_dir_all(dest).expect("mkdir dest");
    Command::new(env!("CARGO_BIN_EXE_rawsend"))
        .arg("receive")
        .args(extra)
        .arg("-f")
        .arg(stream)
        .arg(dest)
        .output()
        .expect("run rawsend")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn enable_verity_on_btrfs_seals_the_file_or_fails_unmarked() {
    require_root();
    let fs = LoopFs::btrfs(256 * MIB);
    let stream = verity_stream(fs.path());
    let dest = fs.path().join("dest");
    let output = receive(&stream, &dest, &[]);
    let received = rawsend_btrfs::subvolume_info(File::open(dest.join("vol")).expect("open vol"))
        .expect("subvolume info")
        .root
        .received_uuid;
    if kernel_has_verity(fs.path()) {
        assert!(output.status.success(), "{}", stderr(&output));
        assert!(has_verity(&dest.join("vol/f")));
        assert_eq!(std::fs::read(dest.join("vol/f")).expect("read"), DATA);
        assert_eq!(received.map(|uuid| uuid.0), Some([7; 16]));
    } else {
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        let text = stderr(&output);
        assert!(text.contains("command #3 (enable_verity)") && text.contains("path \"f\""), "{text}");
        assert!(text.contains("FS_IOC_ENABLE_VERITY") && text.contains("not marked"), "{text}");
        assert_eq!(received, None, "a failed subvolume must not be marked received");
    }
}

#[test]
fn enable_verity_on_the_dir_target_seals_or_skips_with_a_warning() {
    require_root();
    let fs = LoopFs::ext4(64 * MIB);
    let stream = verity_stream(fs.path());
    // ext4 needs the `verity` feature (not set by default), so here fs-verity is unavailable.
    assert!(!kernel_has_verity(fs.path()));
    let output = receive(&stream, &fs.path().join("plain"), &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("fs-verity (not supported by the destination)"), "{}", stderr(&output));
    assert_eq!(std::fs::read(fs.path().join("plain/vol/f")).expect("read"), DATA);
    let strict = receive(&stream, &fs.path().join("strict"), &["--strict"]);
    assert_eq!(strict.status.code(), Some(1), "{}", stderr(&strict));
    assert!(stderr(&strict).contains("command #3 (enable_verity)"), "{}", stderr(&strict));
}
