//! Decode against the kernel: every `ENCODED_WRITE` of every real
//! `--compressed-data` fixture (`testdata/streams/*.v2c.stream`) must decode
//! to the bytes the plain v1 send of the same snapshot writes for that file
//! range.
//!
//! The v1 stream is replayed into a sparse image per file (WRITE, CLONE
//! within the same subvolume, TRUNCATE), following renames, links and
//! unlinks so files are identified by their path at the end of their
//! subvolume; the v2c stream's namespace commands are the same, so the same
//! replay names its files identically.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use rawsend_codec::{Compression, Decoder};
use rawsend_stream::{Command, EncodedWrite, Item, StreamReader, Uuid};

const BLOCK: u64 = 4096;

/// Known bytes of one file; `None` where the stream did not say.
#[derive(Default, Clone)]
struct Image {
    blocks: HashMap<u64, Vec<Option<u8>>>,
}

impl Image {
    fn get(&self, offset: u64) -> Option<u8> {
        self.blocks.get(&(offset / BLOCK)).and_then(|b| b[(offset % BLOCK) as usize])
    }

    fn set(&mut self, offset: u64, byte: Option<u8>) {
        let block = self.blocks.entry(offset / BLOCK).or_insert_with(|| vec![None; BLOCK as usize]);
        block[(offset % BLOCK) as usize] = byte;
    }

    fn write(&mut self, offset: u64, data: impl IntoIterator<Item = Option<u8>>) {
        for (i, byte) in (offset..).zip(data) {
            self.set(i, byte);
        }
    }

    fn truncate(&mut self, size: u64) {
        self.blocks.retain(|&block, _| block * BLOCK < size);
        if let Some(last) = self.blocks.get_mut(&(size / BLOCK)) {
            last[(size % BLOCK) as usize..].fill(None);
        }
    }
}

/// One file's data as decoded from an ENCODED_WRITE.
struct EncodedRange {
    file: usize,
    offset: u64,
    data: Vec<u8>,
    compression: Compression,
}

/// Replay state of one subvolume: names → file ids, file images.
#[derive(Default)]
struct Subvolume {
    uuid: Uuid,
    names: BTreeMap<Vec<u8>, usize>,
    images: Vec<Image>,
    encoded: Vec<EncodedRange>,
}

impl Subvolume {
    fn file(&mut self, path: &[u8]) -> usize {
        if let Some(&id) = self.names.get(path) {
            return id;
        }
        self.images.push(Image::default());
        self.names.insert(path.to_vec(), self.images.len() - 1);
        self.images.len() - 1
    }

    /// Moves `from` and everything beneath it to `to`.
    fn rename(&mut self, from: &[u8], to: &[u8]) {
        let beneath =
            |name: &[u8]| name == from || (name.starts_with(from) && name.get(from.len()) == Some(&b'/'));
        let moved: Vec<_> = self.names.keys().filter(|n| beneath(n)).cloned().collect();
        for old in moved {
            let id = self.names.remove(&old).expect("listed");
            self.names.insert([to, &old[from.len()..]].concat(), id);
        }
    }

    fn clone_range(&mut self, dst: usize, offset: u64, len: u64, src: Option<usize>, src_offset: u64) {
        let bytes: Vec<_> = match src {
            Some(src) => (src_offset..src_offset + len).map(|o| self.images[src].get(o)).collect(),
            None => vec![None; len as usize],
        };
        self.images[dst].write(offset, bytes);
    }

    /// Final path of every file still linked, by id.
    fn final_paths(&self) -> HashMap<usize, &[u8]> {
        self.names.iter().map(|(name, &id)| (id, name.as_slice())).collect()
    }
}

/// Replays every subvolume of a stream file.
fn replay(path: &Path, decoder: &mut Decoder) -> Vec<Subvolume> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = StreamReader::new(&bytes[..]);
    let mut subvolumes: Vec<Subvolume> = Vec::new();
    while let Some(item) = reader.next().unwrap_or_else(|e| panic!("{}: {e}", path.display())) {
        let Item::Command(record) = item else { continue };
        match record.command {
            Command::Subvol { uuid, .. } | Command::Snapshot { uuid, .. } => {
                subvolumes.push(Subvolume { uuid, ..Subvolume::default() })
            }
            command => apply(subvolumes.last_mut().expect("command before subvolume"), command, decoder),
        }
    }
    subvolumes
}

fn apply(sv: &mut Subvolume, command: Command<'_>, decoder: &mut Decoder) {
    match command {
        Command::Mkfile { path, .. } => {
            sv.names.remove(path.as_bytes());
            sv.file(path.as_bytes());
        }
        Command::Rename { from, to } => sv.rename(from.as_bytes(), to.as_bytes()),
        Command::Link { path, target } => {
            let id = sv.file(target.as_bytes());
            sv.names.insert(path.as_bytes().to_vec(), id);
        }
        Command::Unlink { path } => {
            sv.names.remove(path.as_bytes());
        }
        Command::Write { path, offset, data } => {
            let id = sv.file(path.as_bytes());
            sv.images[id].write(offset, data.iter().copied().map(Some));
        }
        Command::Truncate { path, size } => {
            let id = sv.file(path.as_bytes());
            sv.images[id].truncate(size);
        }
        Command::Clone { path, offset, len, clone_uuid, clone_path, clone_offset, .. } => {
            let dst = sv.file(path.as_bytes());
            let src = (clone_uuid == sv.uuid).then(|| sv.names.get(clone_path.as_bytes()).copied()).flatten();
            sv.clone_range(dst, offset, len, src, clone_offset);
        }
        Command::EncodedWrite(write) => {
            let range = decode_encoded_write(sv, &write, decoder);
            sv.encoded.push(range);
        }
        _ => {}
    }
}

/// Decodes an ENCODED_WRITE to the file range it covers.
fn decode_encoded_write(sv: &mut Subvolume, write: &EncodedWrite<'_>, decoder: &mut Decoder) -> EncodedRange {
    let EncodedWrite {
        path,
        offset,
        unencoded_file_len,
        unencoded_len,
        unencoded_offset,
        compression,
        encryption,
        data,
    } = *write;
    assert_eq!(encryption.unwrap_or(0), 0);
    let compression = Compression::from_raw(compression.unwrap_or(0)).expect("known compression");
    let mut out = vec![0; usize::try_from(unencoded_len).unwrap()];
    decoder.decode(compression, data, &mut out).unwrap_or_else(|e| {
        panic!("{}: {compression:?} at {offset}: {e}", String::from_utf8_lossy(path.as_bytes()))
    });
    let start = usize::try_from(unencoded_offset).unwrap();
    let end = start + usize::try_from(unencoded_file_len).unwrap();
    EncodedRange { file: sv.file(path.as_bytes()), offset, data: out[start..end].to_vec(), compression }
}

/// v2c fixtures that have a v1 twin.
fn fixture_pairs() -> Vec<(PathBuf, PathBuf)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/streams");
    let mut pairs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("dir entry").path())
        .filter_map(|v2c| {
            let name = v2c.file_name()?.to_str()?.strip_suffix(".v2c.stream")?.to_owned();
            let v1 = dir.join(format!("{name}.v1.stream"));
            v1.exists().then_some((v2c, v1))
        })
        .collect();
    pairs.sort();
    pairs
}

/// Tallies over all fixtures.
#[derive(Default, Debug)]
struct Tally {
    ranges: usize,
    bytes: usize,
    unlinked: usize,
    by_algorithm: BTreeMap<&'static str, usize>,
}

fn compare(v2c: &Path, v1: &Path, decoder: &mut Decoder, tally: &mut Tally) {
    let compressed = replay(v2c, decoder);
    let plain = replay(v1, decoder);
    assert_eq!(compressed.len(), plain.len(), "{}: subvolume count", v2c.display());
    for (sv, reference) in compressed.iter().zip(&plain) {
        let reference_ids: HashMap<&[u8], usize> =
            reference.names.iter().map(|(n, &id)| (n.as_slice(), id)).collect();
        let names = sv.final_paths();
        for range in &sv.encoded {
            let Some(&name) = names.get(&range.file) else {
                tally.unlinked += 1;
                continue;
            };
            let image = &reference.images[reference_ids[name]];
            for (offset, &byte) in (range.offset..).zip(&range.data) {
                let expected = image.get(offset);
                assert_eq!(
                    expected,
                    Some(byte),
                    "{}: {} at {offset} ({:?})",
                    v2c.display(),
                    String::from_utf8_lossy(name),
                    range.compression
                );
            }
            tally.ranges += 1;
            tally.bytes += range.data.len();
            *tally.by_algorithm.entry(range.compression.name()).or_default() += 1;
        }
    }
}

#[test]
fn encoded_writes_decode_to_the_v1_data() {
    let pairs = fixture_pairs();
    assert!(!pairs.is_empty(), "no v2c fixtures with a v1 twin");
    let mut decoder = Decoder::new();
    let mut tally = Tally::default();
    for (v2c, v1) in &pairs {
        compare(v2c, v1, &mut decoder, &mut tally);
    }
    eprintln!("{} fixtures: {tally:?}", pairs.len());
    for algorithm in ["zlib", "zstd", "lzo"] {
        assert!(tally.by_algorithm.contains_key(algorithm), "no {algorithm} extent in the fixtures");
    }
}
