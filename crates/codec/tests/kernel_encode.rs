//! Encode against the kernel (root): data encoded by this crate with every
//! algorithm and level is written with `BTRFS_IOC_ENCODED_WRITE` on a
//! loop-mounted btrfs, the page cache is dropped, and a plain read must give
//! back the original bytes. The extent must also still be compressed with
//! our algorithm, and reading it back encoded must decode to the same bytes
//! (the kernel pads regular extents to a sector, which the decoder must
//! accept).
//!
//! Cases: text, a binary from /usr/bin, zeros and random data; sizes from
//! 1 B to 128 KiB (small ones become inline extents); whole extents at
//! offset 0, extents written after a hole, and extents with a non-zero
//! `unencoded_offset`. Fails (does not skip) without root or loop mounts.

use std::fs::File;
use std::path::{Path, PathBuf};

use rawsend_btrfs::{EncodedWrite, encoded_read, encoded_write};
use rawsend_codec::{Compression, Decoder, Encoder, MAX_UNENCODED_LEN, levels};
use rawsend_testutil::{LoopFs, MIB, require_root, run_cmd};

const SIZES: [usize; 10] = [1, 100, 2000, 3000, 4095, 4096, 4097, 65_659, 131_071, 131_072];

/// Test inputs by name, each 128 KiB.
fn inputs() -> Vec<(&'static str, Vec<u8>)> {
    let mut random = vec![0u8; MAX_UNENCODED_LEN];
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for byte in &mut random {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = (state >> 24) as u8;
    }
    vec![
        ("text", text_sample()),
        ("binary", first_bytes(&binary_file())),
        ("zeros", vec![0; MAX_UNENCODED_LEN]),
        ("random", random),
    ]
}

fn first_bytes(path: &Path) -> Vec<u8> {
    let mut data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    data.truncate(MAX_UNENCODED_LEN);
    assert_eq!(data.len(), MAX_UNENCODED_LEN, "{} is too small", path.display());
    data
}

/// The first file of at least 128 KiB, in name order, among `candidates`.
fn first_large(candidates: impl IntoIterator<Item = PathBuf>) -> PathBuf {
    let mut files: Vec<_> = candidates
        .into_iter()
        .filter(|p| p.metadata().is_ok_and(|m| m.is_file() && m.len() >= MAX_UNENCODED_LEN as u64))
        .collect();
    files.sort();
    files.into_iter().next().expect("a file of at least 128 KiB")
}

fn binary_file() -> PathBuf {
    let dir = std::fs::read_dir("/usr/bin").expect("/usr/bin");
    first_large(dir.filter_map(|e| e.ok().map(|e| e.path())))
}

/// The first 128 KiB of the licence texts in /usr/share/common-licenses, joined in memory
/// (nothing is written outside the test's loop filesystem).
fn text_sample() -> Vec<u8> {
    let dir = std::fs::read_dir("/usr/share/common-licenses").expect("/usr/share/common-licenses");
    let mut files: Vec<_> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    let mut all: Vec<u8> = Vec::new();
    for file in &files {
        all.extend(std::fs::read(file).unwrap_or_default());
    }
    all.truncate(MAX_UNENCODED_LEN);
    assert_eq!(all.len(), MAX_UNENCODED_LEN, "the licence texts are less than 128 KiB");
    all
}

/// Every compressing value the filesystem accepts, with every level.
fn settings(sector: u64) -> Vec<(Compression, Option<i32>)> {
    let lzo = Compression::lzo_for_sector_size(u32::try_from(sector).unwrap()).expect("LZO sector size");
    let mut settings = vec![(lzo, None)];
    for c in [Compression::Zlib, Compression::Zstd] {
        let (range, _) = levels(c).expect("has levels");
        settings.extend(range.filter(|&l| l != 0).map(|l| (c, Some(l))));
    }
    settings
}

/// One encoded write and what the file must contain afterwards.
struct Case {
    name: String,
    compression: Compression,
    write: EncodedWrite,
    encoded: Vec<u8>,
    expected: Vec<u8>,
}

/// The ways a piece of data is placed: whole at 0, after a 1 MiB hole,
/// and (for large inputs) starting inside the extent.
fn placements(data: &[u8], sector: usize) -> Vec<(&'static str, u64, usize, usize)> {
    let mut out = vec![("whole", 0, 0, data.len()), ("after-hole", MIB, 0, data.len())];
    if data.len() > 3 * sector {
        out.push(("inner", 0, sector, data.len() - 2 * sector));
        out.push(("tail", 8 * sector as u64, 2 * sector, data.len() - 2 * sector));
    }
    out
}

fn cases(sector: u64) -> Vec<Case> {
    let mut encoder = Encoder::new();
    let mut cases = Vec::new();
    for (kind, input) in inputs() {
        for size in SIZES {
            let data = &input[..size];
            for (compression, level) in settings(sector) {
                let encoded = encoder.encode(compression, level, data).expect("valid request");
                let Some(encoded) = encoded else {
                    let expected = kind == "random" || size < 4096;
                    assert!(expected, "{kind} {size} {compression:?} {level:?} did not compress");
                    continue;
                };
                for (place, offset, start, len) in placements(data, sector as usize) {
                    cases.push(Case {
                        name: format!("{kind}-{size}-{compression}-{level:?}-{place}"),
                        compression,
                        write: EncodedWrite {
                            offset,
                            len: len as u64,
                            unencoded_len: size as u64,
                            unencoded_offset: start as u64,
                            compression: compression.as_raw(),
                            encryption: 0,
                        },
                        encoded: encoded.clone(),
                        expected: [vec![0; offset as usize], data[start..start + len].to_vec()].concat(),
                    });
                }
            }
        }
    }
    cases
}

fn drop_caches() {
    run_cmd("sync", [""; 0]);
    std::fs::write("/proc/sys/vm/drop_caches", "3").expect("drop caches");
}

fn check_extent(case: &Case, file: &File, decoder: &mut Decoder) {
    let mut buf = vec![0; MAX_UNENCODED_LEN];
    let read = encoded_read(file, case.write.offset, &mut buf).expect("encoded read");
    assert_eq!(read.compression, case.compression.as_raw(), "{}: not stored compressed", case.name);
    assert_eq!(read.unencoded_offset, case.write.unencoded_offset, "{}", case.name);
    let mut out = vec![0; usize::try_from(read.unencoded_len).unwrap()];
    decoder
        .decode(case.compression, &buf[..read.bytes], &mut out)
        .unwrap_or_else(|e| panic!("{}: decoding what the kernel stored: {e}", case.name));
    let start = usize::try_from(read.unencoded_offset).unwrap();
    let len = usize::try_from(read.len).unwrap();
    let offset = usize::try_from(case.write.offset).unwrap();
    assert!(out[start..start + len] == case.expected[offset..offset + len], "{}: encoded read", case.name);
}

#[test]
fn kernel_reads_back_what_we_encode() {
    require_root();
    let fs = LoopFs::btrfs(512 * MIB);
    let sector = rawsend_btrfs::sector_size(File::open(fs.path()).expect("open mount")).expect("sector size");
    let cases = cases(sector);
    for (i, case) in cases.iter().enumerate() {
        let file = File::create(fs.path().join(i.to_string())).expect("create");
        let written = encoded_write(&file, &case.write, &case.encoded)
            .unwrap_or_else(|e| panic!("{}: encoded write: {e}", case.name));
        assert_eq!(written, case.encoded.len(), "{}", case.name);
    }
    drop_caches();
    let mut decoder = Decoder::new();
    let mut by_algorithm = std::collections::BTreeMap::<&str, usize>::new();
    for (i, case) in cases.iter().enumerate() {
        let path = fs.path().join(i.to_string());
        let content = std::fs::read(&path).expect("read back");
        assert!(content == case.expected, "{}: read back differs ({} bytes)", case.name, content.len());
        check_extent(case, &File::open(&path).expect("open"), &mut decoder);
        *by_algorithm.entry(case.compression.name()).or_default() += 1;
    }
    eprintln!("{} encoded writes read back: {by_algorithm:?}", cases.len());
}
