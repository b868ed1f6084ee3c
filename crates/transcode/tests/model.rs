//! Transcoded streams receive into exactly the trees their inputs give.
//!
//! Every fixture chain (v1, v2, v2c) is transcoded stream by stream with every
//! `--compress` choice and output version, applied to the in-memory model
//! target (`rawsend_receive::ModelTarget`: content, modes, owners, times,
//! xattrs, hard links, file attributes, received UUIDs) and compared with the
//! chain as it is. The transcoded streams are also checked for what the
//! choice promises: ENCODED_WRITE of the requested algorithm where data
//! compresses, none where it must not be, aligned extents. Synthetic streams
//! cover zero, random and text data, unaligned offsets and sizes, gaps, and
//! writes into files of unknown size; broken inputs give located errors.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use rawsend_codec::Compression;
use rawsend_receive::model::Inode;
use rawsend_receive::{ModelTarget, ReceiveOptions, Receiver};
use rawsend_stream::{
    Command, EncodedWrite, Item, ReaderOptions, StreamPath, StreamReader, StreamWriter, Uuid,
};
use rawsend_testutil::fixtures::chains;
use rawsend_transcode::{Compress, Error, Options, SECTOR, TranscodeReader, transcode};

/// Every data choice of `--compress`, and the output versions to try with each.
const CHOICES: &[(&str, &[Option<u32>])] = &[
    ("zstd", &[None, Some(3)]),
    ("zstd:-5", &[None]),
    ("zstd:15", &[None]),
    ("zlib", &[None]),
    ("zlib:9", &[None]),
    ("lzo", &[None]),
    ("keep", &[None, Some(1), Some(2)]),
    ("none", &[None, Some(1), Some(2)]),
];

fn options(choice: &str, version: Option<u32>) -> Options {
    let compress: Compress = choice.parse().expect("valid choice");
    Options { version, workers: 3, ..Options::new(compress) }
}

fn transcoded(stream: &[u8], opts: &Options) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    transcode(stream, &mut out, opts)?;
    Ok(out)
}

/// A received subvolume: its received UUID and transid, and its inodes by path.
type Tree = (Option<(Uuid, u64)>, BTreeMap<Vec<u8>, Inode>);

/// The streams applied in order to one model; its subvolumes, with FILEATTR
/// flags or without (v1 cannot carry them).
fn model_with(streams: &[Vec<u8>], with_flags: bool) -> Result<BTreeMap<Vec<u8>, Tree>, String> {
    let mut model = ModelTarget::new();
    for stream in streams {
        let receiver = Receiver::new(model, ReceiveOptions::default());
        let (_, target) = receiver.receive_into(&stream[..]).map_err(|failure| failure.to_string())?;
        model = target;
    }
    Ok(model
        .subvols
        .into_iter()
        .map(|(name, subvol)| (name, (subvol.received, subvol.by_path(with_flags))))
        .collect())
}

fn model(streams: &[Vec<u8>]) -> Result<BTreeMap<Vec<u8>, Tree>, String> {
    model_with(streams, true)
}

/// What a stream holds: stream versions, and per ENCODED_WRITE its compression,
/// offset and length; checks that every command decodes.
#[derive(Debug, Default)]
struct Shape {
    versions: Vec<u32>,
    encoded: Vec<(u32, u64, u64)>,
    writes: usize,
}

fn shape(stream: &[u8]) -> Shape {
    let mut reader = StreamReader::new(stream);
    let mut shape = Shape::default();
    while let Some(item) = reader.next().expect("transcoded stream decodes") {
        match item {
            Item::Header { version, .. } => shape.versions.push(version),
            Item::Command(record) => match record.command {
                Command::EncodedWrite(write) => shape.encoded.push((
                    write.compression.unwrap_or(0),
                    write.offset,
                    write.unencoded_file_len,
                )),
                Command::Write { .. } => shape.writes += 1,
                _ => {}
            },
            Item::Continue { .. } => panic!("no fixture is a continuation"),
        }
    }
    shape
}

fn read(path: &PathBuf) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
}

#[test]
fn every_fixture_chain_and_choice_receives_the_same_trees() {
    let mut failures = Vec::new();
    let mut compared = 0;
    for chain in chains() {
        let originals: Vec<Vec<u8>> = chain.streams.iter().map(read).collect();
        let expected = model(&originals).unwrap_or_else(|err| panic!("{}: original: {err}", chain.name));
        let expected_v1 = model_with(&originals, false).expect("original receives");
        for &(choice, versions) in CHOICES {
            for &version in versions {
                let opts = options(choice, version);
                let label = format!("{} --compress {choice} --proto {version:?}", chain.name);
                let outputs: Result<Vec<Vec<u8>>, Error> =
                    originals.iter().map(|s| transcoded(s, &opts)).collect();
                let outputs = match outputs {
                    Ok(outputs) => outputs,
                    Err(err) => {
                        failures.push(format!("{label}: transcode: {err}"));
                        continue;
                    }
                };
                check_shape(&label, &originals, &outputs, &opts, &mut failures);
                let (got, expected) = match version {
                    Some(1) => (model_with(&outputs, false), &expected_v1),
                    _ => (model(&outputs), &expected),
                };
                match got {
                    Ok(got) if got == *expected => compared += 1,
                    Ok(_) => failures.push(format!("{label}: received trees differ")),
                    Err(err) => failures.push(format!("{label}: receive: {err}")),
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    assert!(compared >= 18 * 12, "compared {compared}");
}

/// What each choice promises about the output's form.
fn check_shape(
    label: &str,
    originals: &[Vec<u8>],
    outputs: &[Vec<u8>],
    opts: &Options,
    failures: &mut Vec<String>,
) {
    for (original, output) in originals.iter().zip(outputs) {
        let (before, after) = (shape(original), shape(output));
        let expected_versions: Vec<u32> = before
            .versions
            .iter()
            .map(|&v| {
                opts.version.unwrap_or(if matches!(opts.compress, Compress::With(_)) { v.max(2) } else { v })
            })
            .collect();
        if after.versions != expected_versions {
            failures.push(format!("{label}: versions {:?}, expected {expected_versions:?}", after.versions));
        }
        let misaligned = after.encoded.iter().filter(|(_, offset, _)| offset % SECTOR != 0).count();
        if misaligned > 0 {
            failures.push(format!("{label}: {misaligned} ENCODED_WRITEs at unaligned offsets"));
        }
        match opts.compress {
            Compress::With(codec) => {
                let wrong = after.encoded.iter().filter(|(c, ..)| *c != codec.compression.as_raw()).count();
                if wrong > 0 {
                    failures.push(format!("{label}: {wrong} extents not in {}", codec.compression));
                }
                if before.writes + before.encoded.len() > 3 && after.encoded.is_empty() {
                    failures.push(format!("{label}: nothing compressed"));
                }
            }
            Compress::None if !after.encoded.is_empty() => {
                failures.push(format!("{label}: encoded data left"))
            }
            Compress::Keep if after.versions.iter().all(|&v| v >= 2) && after.encoded != before.encoded => {
                failures.push(format!("{label}: encoded extents changed"))
            }
            _ => {}
        }
        if opts.compress == Compress::Keep && opts.version.is_none() && output != original {
            failures.push(format!("{label}: keep with the input's version is not the identity"));
        }
    }
}

#[test]
fn v2c_to_v1_to_v2c_round_trip_receives_the_same_trees() {
    // v1 has no inode flags: those of FILEATTR are compared only where no v1 was between.
    for chain in chains().into_iter().filter(|chain| chain.variant() == "v2c") {
        let originals: Vec<Vec<u8>> = chain.streams.iter().map(read).collect();
        let v1 = originals.iter().map(|s| transcoded(s, &options("none", Some(1))).expect("to v1"));
        let back: Vec<Vec<u8>> = v1
            .map(|s| {
                assert!(shape(&s).versions.iter().all(|&v| v == 1));
                transcoded(&s, &options("zstd", None)).expect("back to v2")
            })
            .collect();
        assert_eq!(model_with(&back, false), model_with(&originals, false), "{}", chain.name);
    }
}

fn text(len: usize) -> Vec<u8> {
    b"the quick brown fox jumps over the lazy dog 0123456789\n".iter().copied().cycle().take(len).collect()
}

fn p(path: &str) -> StreamPath<'_> {
    StreamPath::new(path.as_bytes()).expect("valid path")
}

/// A full stream of one subvolume with the given files, each written from
/// offset 0 in `chunk`-byte WRITEs.
fn synthetic(files: &[(&str, Vec<u8>)], chunk: usize, version: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = StreamWriter::new(&mut out, version).expect("header");
    w.write(&Command::Subvol { path: p("vol"), uuid: Uuid([7; 16]), ctransid: 9 }).expect("subvol");
    for (ino, (name, data)) in (257..).zip(files) {
        let path = p(name);
        w.write(&Command::Mkfile { path, ino }).expect("mkfile");
        for (n, piece) in data.chunks(chunk).enumerate() {
            w.write(&Command::Write { path, offset: (n * chunk) as u64, data: piece }).expect("write");
        }
        w.write(&Command::Chmod { path, mode: 0o640 }).expect("chmod");
    }
    w.write(&Command::End).expect("end");
    w.finish().expect("flush");
    out
}

#[test]
fn zero_random_text_and_odd_sizes() {
    let files = vec![
        ("zeros", vec![0; 1 << 20]),
        ("random", rawsend_testutil::pseudo_random(300_000, 0x9e37_79b9_7f4a_7c15)),
        ("text-odd", text(200_001)),
        ("small", text(3000)),
        ("tiny-random", rawsend_testutil::pseudo_random(100, 5)),
        ("empty", Vec::new()),
    ];
    for (chunk, version) in [(48 * 1024, 1), (4000, 1), (131_072, 2)] {
        let original = synthetic(&files, chunk, version);
        let expected = model(std::slice::from_ref(&original)).expect("original receives");
        for choice in ["zstd", "zlib", "lzo"] {
            let output = transcoded(&original, &options(choice, None)).expect("transcode");
            assert_eq!(model(std::slice::from_ref(&output)), Ok(expected.clone()), "{choice} chunk {chunk}");
            let encoded = shape(&output).encoded;
            let covered = |name: &str| -> u64 {
                let index = files.iter().position(|(n, _)| *n == name).expect("file");
                encoded_per_file(&output)[index]
            };
            assert_eq!(covered("zeros"), 1 << 20, "{choice}: zeros compress whole");
            assert_eq!(covered("random"), 0, "{choice}: random data stays WRITE");
            assert_eq!(covered("text-odd"), 200_001, "{choice}: the unaligned tail ends the file");
            assert_eq!(covered("small"), 3000, "{choice}: a small file becomes an inline extent");
            assert!(encoded.iter().all(|(_, offset, len)| offset % SECTOR == 0 && *len <= 131_072));
        }
    }
}

/// Bytes of file covered by ENCODED_WRITE, per MKFILE in stream order.
fn encoded_per_file(stream: &[u8]) -> Vec<u64> {
    let mut reader = StreamReader::new(stream);
    let mut per_file: Vec<u64> = Vec::new();
    while let Some(item) = reader.next().expect("decodes") {
        if let Item::Command(record) = item {
            match record.command {
                Command::Mkfile { .. } => per_file.push(0),
                Command::EncodedWrite(EncodedWrite { unencoded_file_len, .. }) => {
                    *per_file.last_mut().expect("after mkfile") += unencoded_file_len
                }
                _ => {}
            }
        }
    }
    per_file
}

#[test]
fn writes_into_files_of_unknown_size_keep_their_unaligned_end_plain() {
    let mut out = Vec::new();
    let mut w = StreamWriter::new(&mut out, 1).expect("header");
    let data = text(20_000);
    w.write(&Command::Snapshot {
        path: p("snap"),
        uuid: Uuid([1; 16]),
        ctransid: 2,
        clone_uuid: Uuid([3; 16]),
        clone_ctransid: 4,
    })
    .expect("snapshot");
    // An unaligned start, a gap, and an unaligned end in a file of the parent.
    w.write(&Command::Write { path: p("old"), offset: 1000, data: &data }).expect("write");
    w.write(&Command::Write { path: p("old"), offset: 40_960, data: &data }).expect("write");
    w.write(&Command::End).expect("end");
    w.finish().expect("flush");
    let output = transcoded(&out, &options("zstd", None)).expect("transcode");
    let encoded = shape(&output).encoded;
    assert!(!encoded.is_empty());
    for (_, offset, len) in &encoded {
        assert_eq!((offset % SECTOR, (offset + len) % SECTOR), (0, 0), "{encoded:?}");
    }
    let mut reader = StreamReader::new(&output[..]);
    let mut written = vec![0u8; 70_000];
    let mut high = 0;
    while let Some(item) = reader.next().expect("decodes") {
        if let Item::Command(record) = item {
            let (offset, bytes) = match record.command {
                Command::Write { offset, data, .. } => (offset, data.to_vec()),
                Command::EncodedWrite(write) => {
                    let mut plain = vec![0; write.unencoded_len as usize];
                    let compression = Compression::from_raw(write.compression.expect("set")).expect("known");
                    rawsend_codec::decode(compression, write.data, &mut plain).expect("decodes");
                    (write.offset, plain)
                }
                _ => continue,
            };
            written[offset as usize..offset as usize + bytes.len()].copy_from_slice(&bytes);
            high = high.max(offset as usize + bytes.len());
        }
    }
    assert_eq!(high, 40_960 + 20_000);
    assert_eq!(&written[1000..21_000], &data[..]);
    assert_eq!(&written[40_960..60_960], &data[..]);
}

#[test]
fn broken_input_gives_a_located_error() {
    let original = synthetic(&[("f", text(100_000))], 48 * 1024, 1);
    let truncated = &original[..original.len() - 30_000];
    let err = transcoded(truncated, &options("zstd", None)).expect_err("truncated");
    assert!(err.to_string().contains("command #3 (write) at byte"), "{err}");
    let mut corrupt = original.clone();
    corrupt[200] ^= 0xff;
    let err = transcoded(&corrupt, &options("zstd", None)).expect_err("corrupt");
    assert!(err.to_string().contains("crc32c mismatch"), "{err}");
    assert!(err.to_string().contains("command #"), "{err}");
}

#[test]
fn corrupt_encoded_data_is_located_when_it_must_be_decoded() {
    let chain = chains().into_iter().find(|chain| chain.name == "basic.v2c").expect("basic.v2c");
    let original = read(&chain.streams[0]);
    let mut reader = StreamReader::new(&original[..]);
    let mut spot = None;
    while let Some(item) = reader.next().expect("decodes") {
        if let Item::Command(record) = item
            && let Command::EncodedWrite(write) = &record.command
        {
            let data_at = record.raw.len() - write.data.len();
            spot = Some((record.index, record.offset as usize, data_at, record.raw.len()));
            break;
        }
    }
    let (index, offset, data_at, len) = spot.expect("an ENCODED_WRITE");
    let mut corrupt = original.clone();
    corrupt[offset + data_at..offset + len].fill(0xAB);
    let crc = rawsend_stream::command_crc(&corrupt[offset..offset + len]);
    corrupt[offset + 6..offset + 10].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(transcoded(&corrupt, &options("keep", None)).map(|o| o == corrupt).ok(), Some(true));
    let verify_kept = Options { verify: true, recompress: false, ..options("zstd", None) };
    for opts in [
        options("none", None),
        options("zstd", None),
        verify_kept,
        Options { verify: true, ..options("keep", None) },
    ] {
        let err = transcoded(&corrupt, &opts).expect_err("decode fails");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("command #{index} (encoded_write) at byte {offset}, path ")),
            "{text}"
        );
        assert!(text.contains("encoded data"), "{text}");
    }
    let kept = Options { recompress: false, ..options("zstd", None) };
    assert!(transcoded(&corrupt, &kept).is_ok(), "not verified: passes as it is");
    let verified = transcoded(&original, &Options { verify: true, ..kept }).expect("decodes");
    assert_eq!(verified, transcoded(&original, &kept).expect("transcodes"), "verification changes nothing");
}

/// A v2 stream of one subvolume with one file and `command` on it.
fn stream_with(version: u32, command: Command<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = StreamWriter::new(&mut out, version).expect("header");
    w.write(&Command::Subvol { path: p("vol"), uuid: Uuid([7; 16]), ctransid: 9 }).expect("subvol");
    w.write(&Command::Mkfile { path: p("f"), ino: 257 }).expect("mkfile");
    w.write(&command).expect("command");
    w.write(&Command::End).expect("end");
    w.finish().expect("flush");
    out
}

#[test]
fn what_an_older_version_cannot_carry() {
    // v1 has no inode flags: FILEATTR is left out and counted, as a v1 send has none.
    let fileattr = stream_with(2, Command::Fileattr { path: p("f"), attr: 0x10 });
    let mut out = Vec::new();
    let summary = transcode(&fileattr[..], &mut out, &options("none", Some(1))).expect("transcodes");
    assert_eq!(summary.dropped_fileattrs, 1);
    assert!(!shape_kinds(&out).contains(&"fileattr"));
    // A preallocation cannot be expressed in v1; a punched hole becomes zeros.
    let prealloc = stream_with(2, Command::Fallocate { path: p("f"), mode: 0, offset: 0, len: 8192 });
    let err = transcoded(&prealloc, &options("none", Some(1))).expect_err("v1 has no FALLOCATE");
    assert!(err.to_string().starts_with("command #2 (fallocate) at byte "), "{err}");
    assert!(err.to_string().contains("protocol version 1 (needs 2)"), "{err}");
    let punch = stream_with(2, Command::Fallocate { path: p("f"), mode: 3, offset: 0, len: 300_000 });
    let v1 = transcoded(&punch, &options("none", Some(1))).expect("punch becomes zeros");
    assert_eq!(shape(&v1).writes, 0, "the file is empty: a keep-size hole past its end writes nothing");
    // fs-verity needs v3.
    let verity = stream_with(
        3,
        Command::EnableVerity { path: p("f"), algorithm: 1, block_size: 4096, salt: b"", sig: b"" },
    );
    let err = transcoded(&verity, &options("none", Some(2))).expect_err("v2 has no ENABLE_VERITY");
    assert!(err.to_string().contains("(enable_verity)"), "{err}");
    assert!(err.to_string().contains("protocol version 2 (needs 3)"), "{err}");
}

/// The command names of a stream.
fn shape_kinds(stream: &[u8]) -> Vec<&'static str> {
    let mut reader = StreamReader::new(stream);
    let mut kinds = Vec::new();
    while let Some(item) = reader.next().expect("decodes") {
        if let Item::Command(record) = item {
            kinds.push(record.command.kind().name());
        }
    }
    kinds
}

#[test]
fn the_reader_gives_the_same_bytes_as_transcode_and_its_errors() {
    use std::io::Read;
    for chain in chains().into_iter().filter(|chain| chain.family() == "basic") {
        for stream in &chain.streams {
            let original = read(stream);
            let opts = options("zlib", None);
            let mut via_reader = Vec::new();
            let input = std::io::Cursor::new(original.clone());
            let mut reader = TranscodeReader::new(input, opts, ReaderOptions::default()).expect("starts");
            reader.read_to_end(&mut via_reader).expect("reads");
            assert_eq!(via_reader, transcoded(&original, &opts).expect("transcodes"), "{}", stream.display());
        }
    }
    let original = synthetic(&[("f", text(100_000))], 48 * 1024, 1);
    let truncated = std::io::Cursor::new(original[..original.len() - 30_000].to_vec());
    let mut reader =
        TranscodeReader::new(truncated, options("zstd", None), ReaderOptions::default()).expect("starts");
    let err = reader.read_to_end(&mut Vec::new()).expect_err("truncated");
    assert!(err.to_string().contains("command #3 (write) at byte"), "{err}");
}

#[test]
fn a_continuation_stream_is_refused_with_its_location() {
    let full = synthetic(&[("f", text(10_000))], 48 * 1024, 2);
    let position = rawsend_stream::resume::Position::start(17).after(&full[17..]);
    let marker = rawsend_stream::resume::continuation_marker(&position);
    let mut continued = full[..17].to_vec();
    continued.extend_from_slice(&marker);
    continued.extend_from_slice(&full[17..]);
    let err = transcoded(&continued, &options("zstd", None)).expect_err("continuation");
    assert!(
        err.to_string().starts_with("command #0 at byte 17: a continuation of an interrupted receive"),
        "{err}"
    );
}
