//! The committed kernel-made stream fixtures of `testdata/`, for every crate's tests.

use std::fs;
use std::path::{Path, PathBuf};

/// `testdata/` at the top of the repository.
pub fn testdata_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata")
}

/// `testdata/streams/`.
pub fn streams_dir() -> PathBuf {
    testdata_dir().join("streams")
}

/// Every committed stream: `testdata/streams/*.stream` and the bundled sample, sorted.
pub fn stream_fixtures() -> Vec<PathBuf> {
    let mut streams: Vec<PathBuf> = fs::read_dir(streams_dir())
        .expect("testdata/streams exists")
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "stream"))
        .collect();
    streams.push(testdata_dir().join("sample.stream"));
    streams.sort();
    assert!(streams.len() > 10, "expected the committed fixtures, found {}", streams.len());
    streams
}

/// One line of `chains.txt`: streams to receive in order into one directory.
#[derive(Clone, Debug)]
pub struct Chain {
    /// Chain name, `<family>.<variant>` (e.g. `basic.v2c`).
    pub name: String,
    /// Its streams, full first.
    pub streams: Vec<PathBuf>,
}

impl Chain {
    /// The part of the name before the last `.`.
    pub fn family(&self) -> &str {
        self.name.rsplit_once('.').map_or(&self.name, |(family, _)| family)
    }

    /// The part of the name after the last `.` (`v1`, `v2`, `v2c`).
    pub fn variant(&self) -> &str {
        self.name.rsplit_once('.').map_or("", |(_, variant)| variant)
    }
}

/// Every chain of `testdata/streams/chains.txt`, in file order.
pub fn chains() -> Vec<Chain> {
    let text = fs::read_to_string(streams_dir().join("chains.txt")).expect("read chains.txt");
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next().expect("non-empty line").to_owned();
            Chain { name, streams: words.map(|stream| streams_dir().join(stream)).collect() }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_name_existing_streams() {
        let chains = chains();
        assert!(chains.len() >= 10);
        for chain in &chains {
            assert!(!chain.family().is_empty() && !chain.variant().is_empty(), "{}", chain.name);
            for stream in &chain.streams {
                assert!(stream.is_file(), "{}", stream.display());
            }
        }
    }
}
