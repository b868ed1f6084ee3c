//! The engine on the in-memory model: every fixture chain applies, and the v1,
//! v2 and v2 `--compressed-data` sends of the same snapshots give identical
//! trees (so decoded ENCODED_WRITEs, FALLOCATE hole punches and clone copies
//! agree with the kernel's plain WRITEs).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::rc::Rc;

use rawsend_receive::model::{Content, Inode};
use rawsend_receive::{Event, ModelTarget, ReceiveOptions, Receiver};
use rawsend_stream::{Command, EncodedWrite, StreamPath, StreamWriter, Timespec, Uuid};
use rawsend_testutil::fixtures::chains;

/// Receives streams one after the other into one model, as `btrfs receive` would into one directory.
fn receive_chain(streams: &[PathBuf]) -> ModelTarget {
    let mut model = ModelTarget::new();
    for stream in streams {
        let receiver = Receiver::new(model, ReceiveOptions::default());
        let (summary, target) = receiver
            .receive_into(File::open(stream).unwrap())
            .unwrap_or_else(|failure| panic!("{}: {failure}", stream.display()));
        assert!(!summary.subvolumes.is_empty(), "{}", stream.display());
        model = target;
    }
    model
}

#[test]
fn every_chain_applies_and_every_subvolume_is_marked_received() {
    let chains = chains();
    assert!(chains.len() >= 10);
    for chain in chains {
        let name = &chain.name;
        let model = receive_chain(&chain.streams);
        for (subvol_name, subvol) in &model.subvols {
            let subvol_name = String::from_utf8_lossy(subvol_name);
            assert_eq!(subvol.received, Some(subvol.sent_as), "{name}: {subvol_name} not marked received");
            assert!(subvol.inodes.len() > 1, "{name}: {subvol_name} is empty");
        }
    }
}

#[test]
fn v1_v2_and_compressed_sends_of_the_same_snapshots_agree() {
    let chains = chains();
    let families: Vec<&str> = chains.iter().filter(|c| c.variant() == "v1").map(|c| c.family()).collect();
    assert!(families.len() >= 3);
    for family in families {
        let model = |variant: &str| {
            let chain = chains.iter().find(|c| c.family() == family && c.variant() == variant).unwrap();
            receive_chain(&chain.streams).subvols
        };
        let v1 = model("v1");
        for variant in ["v2", "v2c"] {
            let other = model(variant);
            assert_eq!(v1.keys().collect::<Vec<_>>(), other.keys().collect::<Vec<_>>(), "{family}.{variant}");
            for (name, subvol) in &v1 {
                // FILEATTR exists only from v2 on, so inode flags are not compared.
                assert!(
                    subvol.by_path(false) == other[name].by_path(false),
                    "{family}: v1 and {variant} trees of {} differ",
                    String::from_utf8_lossy(name)
                );
            }
        }
    }
}

/// A v3 stream (v3 carries everything v2 does, plus ENABLE_VERITY).
fn stream_of(commands: &[Command<'_>]) -> Vec<u8> {
    let mut writer = StreamWriter::new(Vec::new(), 3).unwrap();
    for command in commands {
        writer.write(command).unwrap();
    }
    writer.finish().unwrap()
}

fn path(bytes: &[u8]) -> StreamPath<'_> {
    StreamPath::new(bytes).unwrap()
}

#[test]
fn a_failed_subvolume_is_never_marked_received() {
    let bytes = stream_of(&[
        Command::Subvol { path: path(b"vol"), uuid: Uuid([1; 16]), ctransid: 5 },
        Command::Mkfile { path: path(b"f"), ino: 257 },
        Command::Rmdir { path: path(b"missing") },
        Command::End,
    ]);
    let opts = ReceiveOptions { max_errors: 0, ..ReceiveOptions::default() };
    let failure = Receiver::new(ModelTarget::new(), opts).receive(&bytes[..]).unwrap_err();
    assert_eq!(failure.errors.len(), 1);
    assert!(failure.to_string().contains("command #2 (rmdir)"), "{failure}");
    assert_eq!(failure.unfinished, ["model subvolume vol is incomplete and was not marked as received"]);
}

#[test]
fn encoded_writes_with_impossible_bounds_are_refused() {
    let cases: [(u64, u64, u64, u32, &[u8]); 5] = [
        (8192, 4096, 0, 2, b"x"),       // unencoded_file_len > unencoded_len
        (4096, 8192, 8192, 2, b"x"),    // unencoded_offset + len past unencoded_len
        (4096, 256 * 1024, 0, 2, b"x"), // unencoded_len above 128 KiB
        (4096, 4096, 0, 2, b""),        // no data
        (4096, 4096, 0, 9, b"x"),       // unknown compression
    ];
    for (len, unencoded_len, unencoded_offset, compression, data) in cases {
        let bytes = stream_of(&[
            Command::Subvol { path: path(b"vol"), uuid: Uuid([1; 16]), ctransid: 5 },
            Command::Mkfile { path: path(b"f"), ino: 257 },
            Command::EncodedWrite(EncodedWrite {
                path: path(b"f"),
                offset: 0,
                unencoded_file_len: len,
                unencoded_len,
                unencoded_offset,
                compression: Some(compression),
                encryption: Some(0),
                data,
            }),
            Command::End,
        ]);
        let failure =
            Receiver::new(ModelTarget::new(), ReceiveOptions::default()).receive(&bytes[..]).unwrap_err();
        let text = failure.to_string();
        assert!(text.contains("command #2 (encoded_write)") && text.contains("invalid command"), "{text}");
    }
}

#[test]
fn garbage_compressed_data_is_an_error_when_decoded() {
    let bytes = stream_of(&[
        Command::Subvol { path: path(b"vol"), uuid: Uuid([1; 16]), ctransid: 5 },
        Command::Mkfile { path: path(b"f"), ino: 257 },
        Command::EncodedWrite(EncodedWrite {
            path: path(b"f"),
            offset: 0,
            unencoded_file_len: 4096,
            unencoded_len: 4096,
            unencoded_offset: 0,
            compression: Some(1),
            encryption: None,
            data: b"definitely not zlib",
        }),
        Command::End,
    ]);
    let failure =
        Receiver::new(ModelTarget::new(), ReceiveOptions::default()).receive(&bytes[..]).unwrap_err();
    assert!(failure.to_string().contains("encoded data: zlib"), "{failure}");
}

#[test]
fn disallowed_fallocate_modes_and_device_types_are_refused() {
    let bytes = stream_of(&[
        Command::Subvol { path: path(b"vol"), uuid: Uuid([1; 16]), ctransid: 5 },
        Command::Mkfile { path: path(b"f"), ino: 257 },
        Command::Fallocate { path: path(b"f"), mode: 0x8, offset: 0, len: 4096 },
        Command::Mknod { path: path(b"n"), ino: 258, rdev: Default::default(), mode: 0o100644 },
        Command::End,
    ]);
    let opts = ReceiveOptions { max_errors: 0, ..ReceiveOptions::default() };
    let failure = Receiver::new(ModelTarget::new(), opts).receive(&bytes[..]).unwrap_err();
    let texts: Vec<String> = failure.errors.iter().map(ToString::to_string).collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(texts[0].contains("fallocate mode not allowed"), "{texts:?}");
    assert!(texts[1].contains("not a character or block device"), "{texts:?}");
}

#[test]
fn commands_before_any_subvolume_are_refused() {
    let bytes = stream_of(&[Command::Mkfile { path: path(b"f"), ino: 257 }, Command::End]);
    let failure =
        Receiver::new(ModelTarget::new(), ReceiveOptions::default()).receive(&bytes[..]).unwrap_err();
    assert!(failure.to_string().contains("outside a subvolume"), "{failure}");
}

fn verity<'a>(path: StreamPath<'a>, algorithm: u8, block_size: u32, salt: &'a [u8]) -> Command<'a> {
    Command::EnableVerity { path, algorithm, block_size, salt, sig: b"" }
}

#[test]
fn enable_verity_seals_the_file_in_the_model() {
    let bytes = stream_of(&[
        Command::Subvol { path: path(b"vol"), uuid: Uuid([1; 16]), ctransid: 5 },
        Command::Mkfile { path: path(b"f"), ino: 257 },
        Command::Write { path: path(b"f"), offset: 0, data: b"sealed" },
        verity(path(b"f"), 1, 4096, b"salt"),
        Command::End,
    ]);
    let (summary, model) = Receiver::new(ModelTarget::new(), ReceiveOptions::default())
        .receive_into(&bytes[..])
        .unwrap_or_else(|failure| panic!("{failure}"));
    assert_eq!(summary.subvolumes.len(), 1);
    let files = model.subvols[&b"vol"[..]].by_path(true);
    assert!(files[&b"f"[..]].verity);
}

#[test]
fn verity_files_cannot_change_and_bad_verity_parameters_are_refused() {
    let bytes = stream_of(&[
        Command::Subvol { path: path(b"vol"), uuid: Uuid([1; 16]), ctransid: 5 },
        Command::Mkfile { path: path(b"f"), ino: 257 },
        verity(path(b"f"), 1, 4096, b""),
        Command::Write { path: path(b"f"), offset: 0, data: b"late" },
        verity(path(b"f"), 3, 4096, b""),
        verity(path(b"f"), 1, 3000, b""),
        verity(path(b"f"), 1, 4096, &[0; 33]),
        verity(path(b""), 1, 4096, b""),
        Command::End,
    ]);
    let opts = ReceiveOptions { max_errors: 0, ..ReceiveOptions::default() };
    let failure = Receiver::new(ModelTarget::new(), opts).receive(&bytes[..]).unwrap_err();
    let texts: Vec<String> = failure.errors.iter().map(ToString::to_string).collect();
    let expected = [
        ("(write)", "with fs-verity"),
        ("(enable_verity)", "unknown fs-verity hash algorithm"),
        ("(enable_verity)", "not a power of two"),
        ("(enable_verity)", "salt or signature too long"),
        ("(enable_verity)", "not a regular file"),
    ];
    assert_eq!(texts.len(), expected.len(), "{texts:?}");
    for (text, (command, reason)) in texts.iter().zip(expected) {
        assert!(text.contains(command) && text.contains(reason), "{text}");
    }
}

fn utimes(path: StreamPath<'_>, sec: i64) -> Command<'_> {
    let time = Timespec { sec, nsec: 7 };
    Command::Utimes { path, atime: time, mtime: time, ctime: time, otime: Some(time) }
}

/// What the model holds after `commands` in a new subvolume `vol`, by path.
fn received(commands: &[Command<'_>]) -> BTreeMap<Vec<u8>, Inode> {
    let head = Command::Subvol { path: path(b"vol"), uuid: Uuid([1; 16]), ctransid: 5 };
    let all: Vec<Command<'_>> =
        [head].into_iter().chain(commands.iter().cloned()).chain([Command::End]).collect();
    let (_, model) = Receiver::new(ModelTarget::new(), ReceiveOptions::default())
        .receive_into(&stream_of(&all)[..])
        .unwrap_or_else(|failure| panic!("{failure}"));
    model.subvols[&b"vol"[..]].by_path(false)
}

#[test]
fn times_are_the_receivers_clock_until_utimes() {
    let set = Some(Timespec { sec: 100, nsec: 7 });
    let files = received(&[
        Command::Mkdir { path: path(b"d"), ino: 257 },
        Command::Mkfile { path: path(b"d/f"), ino: 258 },
        Command::Mkfile { path: path(b"g"), ino: 259 },
        utimes(path(b"d/f"), 100),
        utimes(path(b"d"), 100),
        utimes(path(b"g"), 100),
        utimes(path(b""), 100),
        Command::Write { path: path(b"d/f"), offset: 0, data: b"changed" },
        Command::Rename { from: path(b"g"), to: path(b"d/g") },
    ]);
    let times = |name: &[u8]| (files[name].atime, files[name].mtime);
    // A data command and a changed directory leave the mtime at the clock; renaming g
    // changes both directories but not g itself.
    assert_eq!(times(b"d/f"), (set, None));
    assert_eq!(times(b"d"), (set, None));
    assert_eq!(times(b""), (set, None));
    assert_eq!(times(b"d/g"), (set, set));
    let new = received(&[Command::Mkfile { path: path(b"f"), ino: 257 }]);
    assert_eq!((new[&b"f"[..]].atime, new[&b"f"[..]].mtime), (None, None));
}

#[test]
fn renaming_onto_a_link_of_the_same_inode_does_nothing() {
    let files = received(&[
        Command::Mkfile { path: path(b"a"), ino: 257 },
        Command::Link { path: path(b"b"), target: path(b"a") },
        Command::Rename { from: path(b"a"), to: path(b"b") },
    ]);
    assert!(files.contains_key(&b"a"[..]) && files.contains_key(&b"b"[..]), "{:?}", files.keys());
}

#[test]
fn a_link_onto_an_existing_name_fails_and_keeps_the_name() {
    let bytes = stream_of(&[
        Command::Subvol { path: path(b"vol"), uuid: Uuid([1; 16]), ctransid: 5 },
        Command::Mkfile { path: path(b"a"), ino: 257 },
        Command::Mkdir { path: path(b"b"), ino: 258 },
        Command::Link { path: path(b"b"), target: path(b"a") },
        Command::Mkfile { path: path(b"b/still-a-dir"), ino: 259 },
        Command::End,
    ]);
    let opts = ReceiveOptions { max_errors: 0, ..ReceiveOptions::default() };
    let failure = Receiver::new(ModelTarget::new(), opts).receive(&bytes[..]).unwrap_err();
    let texts: Vec<String> = failure.errors.iter().map(ToString::to_string).collect();
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(texts[0].contains("(link)"), "{texts:?}");
}

#[test]
fn the_observer_hears_each_command_before_it_applies_and_each_completion_before_the_mark() {
    let mut bytes = stream_of(&[
        Command::Subvol { path: path(b"a"), uuid: Uuid([1; 16]), ctransid: 5 },
        Command::Mkfile { path: path(b"f"), ino: 257 },
        Command::End,
    ]);
    bytes.extend(stream_of(&[
        Command::Subvol { path: path(b"b"), uuid: Uuid([2; 16]), ctransid: 6 },
        Command::Rmdir { path: path(b"missing") },
        Command::End,
    ]));
    let heard = Rc::new(RefCell::new(Vec::new()));
    let log = Rc::clone(&heard);
    let observe = move |event: Event<'_>| {
        log.borrow_mut().push(match event {
            Event::Command(command) => command.kind().name().to_owned(),
            Event::Finishing { uuid, ctransid } => format!("finishing {uuid} {ctransid}"),
            Event::Checkpoint { position, .. } => format!("checkpoint {}", position.commands),
            Event::Resuming { position, .. } => format!("resuming {}", position.commands),
            Event::AlreadyReceived { uuid, .. } => format!("already received {uuid}"),
        });
    };
    let opts = ReceiveOptions { max_errors: 0, ..ReceiveOptions::default() };
    let failure = Receiver::new(ModelTarget::new(), opts).observe(observe).receive(&bytes[..]).unwrap_err();
    assert_eq!(failure.errors.len(), 1);
    // The failed subvolume b is not finished, so it is not reported as finishing; each
    // subvolume's resume state is first saved once its SUBVOL applied.
    assert_eq!(
        *heard.borrow(),
        [
            "subvol",
            "checkpoint 1",
            "mkfile",
            "finishing 01010101-0101-0101-0101-010101010101 5",
            "subvol",
            "checkpoint 1",
            "rmdir"
        ]
    );
}

/// Creates merged with their renames (`lookahead`) give what the commands as sent give:
/// a create renamed at once, one with data before its rename, one renamed over an
/// existing name (which falls back to the two commands), a directory and a symlink.
#[test]
fn creates_renamed_at_once_land_where_the_commands_as_sent_put_them() {
    let files = received(&[
        Command::Mkfile { path: path(b"o1"), ino: 257 },
        Command::Rename { from: path(b"o1"), to: path(b"a") },
        Command::Write { path: path(b"a"), offset: 0, data: b"first a" },
        Command::Mkfile { path: path(b"o2"), ino: 258 },
        Command::Write { path: path(b"o2"), offset: 0, data: b"b data" },
        Command::Rename { from: path(b"o2"), to: path(b"b") },
        Command::Mkfile { path: path(b"o3"), ino: 259 },
        Command::Rename { from: path(b"o3"), to: path(b"a") },
        Command::Write { path: path(b"a"), offset: 0, data: b"new" },
        Command::Mkdir { path: path(b"o4"), ino: 260 },
        Command::Rename { from: path(b"o4"), to: path(b"d") },
        Command::Symlink { path: path(b"o5"), ino: 261, target: rawsend_stream::SymlinkTarget(b"../a") },
        Command::Rename { from: path(b"o5"), to: path(b"d/l") },
        Command::Mkfile { path: path(b"o6"), ino: 262 },
    ]);
    let names: Vec<&[u8]> = files.keys().map(Vec::as_slice).collect();
    assert_eq!(names, [&b""[..], b"a", b"b", b"d", b"d/l", b"o6"]);
    let content = |name: &[u8]| files[name].content.clone();
    assert_eq!(content(b"a"), Content::File(b"new".to_vec()), "the second a replaced the first");
    assert_eq!(content(b"b"), Content::File(b"b data".to_vec()));
    assert_eq!(content(b"d/l"), Content::Symlink(b"../a".to_vec()));
    assert_eq!(content(b"o6"), Content::File(Vec::new()), "a create before END is applied");
}
