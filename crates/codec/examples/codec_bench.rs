//! Codec throughput on real data, one 128 KiB extent at a time.
//!
//! ```text
//! cargo run --release -p rawsend-codec --example codec_bench -- [MIB] [CORPUS_OUT]
//! ```
//!
//! Reads regular files under /usr/share (name order) until MIB mebibytes
//! (default 32), cuts them into 128 KiB extents, then for each algorithm
//! and a spread of levels encodes every extent and decodes every extent that
//! compressed, single-threaded, and prints one table row: ratio (input
//! bytes / stored bytes, incompressible extents counted as stored plain),
//! encode MB/s (of input) and decode MB/s (of output). With CORPUS_OUT the
//! corpus is also written there, so `bench/codec.sh` can run the reference
//! CLI tools on the same bytes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rawsend_codec::{Compression, Decoder, Encoder, MAX_UNENCODED_LEN};

const SETTINGS: [(Compression, Option<i32>); 13] = [
    (Compression::Zlib, Some(1)),
    (Compression::Zlib, Some(3)),
    (Compression::Zlib, Some(6)),
    (Compression::Zlib, Some(9)),
    (Compression::Zstd, Some(-15)),
    (Compression::Zstd, Some(-5)),
    (Compression::Zstd, Some(-1)),
    (Compression::Zstd, Some(1)),
    (Compression::Zstd, Some(3)),
    (Compression::Zstd, Some(9)),
    (Compression::Zstd, Some(15)),
    (Compression::Lzo4K, None),
    (Compression::Lzo64K, None),
];

/// Regular files below `dir`, depth first in name order, not following links.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        match path.symlink_metadata() {
            Ok(meta) if meta.is_dir() => files(&path, out),
            Ok(meta) if meta.is_file() => out.push(path),
            _ => {}
        }
    }
}

fn corpus(limit: usize) -> Vec<u8> {
    let mut paths = Vec::new();
    files(Path::new("/usr/share"), &mut paths);
    let mut data = Vec::with_capacity(limit);
    for path in paths {
        if data.len() >= limit {
            break;
        }
        data.extend(std::fs::read(&path).unwrap_or_default());
    }
    data.truncate(limit);
    data
}

struct Row {
    stored: usize,
    encode: Duration,
    decode: Duration,
    decoded: usize,
}

fn measure(setting: (Compression, Option<i32>), extents: &[&[u8]]) -> Row {
    let (compression, level) = setting;
    let mut encoder = Encoder::new();
    let start = Instant::now();
    let encoded: Vec<_> =
        extents.iter().map(|e| encoder.encode(compression, level, e).expect("valid setting")).collect();
    let encode = start.elapsed();
    let stored = encoded.iter().zip(extents).map(|(enc, e)| enc.as_ref().map_or(e.len(), Vec::len)).sum();
    let mut decoder = Decoder::new();
    let mut out = vec![0; MAX_UNENCODED_LEN];
    let mut decoded = 0;
    let start = Instant::now();
    for (enc, extent) in encoded.iter().zip(extents) {
        if let Some(enc) = enc {
            let out = &mut out[..extent.len()];
            decoded += decoder.decode(compression, enc, out).expect("own output decodes");
        }
    }
    Row { stored, encode, decode: start.elapsed(), decoded }
}

fn mb_per_s(bytes: usize, time: Duration) -> f64 {
    bytes as f64 / 1e6 / time.as_secs_f64().max(1e-9)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().map_or(32, |a| a.parse().expect("MIB must be a number"));
    let data = corpus(mib << 20);
    if let Some(out) = args.next() {
        std::fs::write(&out, &data).unwrap_or_else(|e| panic!("{out}: {e}"));
    }
    let extents: Vec<&[u8]> = data.chunks(MAX_UNENCODED_LEN).collect();
    println!("corpus: {} bytes of /usr/share in {} extents of 128 KiB", data.len(), extents.len());
    println!("{:<8} {:>6} {:>7} {:>12} {:>12}", "algo", "level", "ratio", "encode MB/s", "decode MB/s");
    for setting in SETTINGS {
        let row = measure(setting, &extents);
        let level = setting.1.map_or_else(
            || format!("{}K", setting.0.lzo_sector_size().unwrap_or(0) >> 10),
            |l| l.to_string(),
        );
        println!(
            "{:<8} {:>6} {:>7.3} {:>12.1} {:>12.1}",
            setting.0.name(),
            level,
            data.len() as f64 / row.stored as f64,
            mb_per_s(data.len(), row.encode),
            mb_per_s(row.decoded, row.decode),
        );
    }
}
