//! File sizes the transcoder can know from the stream itself.
//!
//! `BTRFS_IOC_ENCODED_WRITE` accepts an extent whose end is not
//! sector-aligned only when it reaches the file's current size (a tail);
//! one ending mid-file is refused. A stream does not say a file's size, but
//! for a file created in it (MKFILE) or truncated by it, every later change
//! of the size is a command the transcoder sees. Anything else (a file of
//! the parent snapshot, a name reached through a hard link) is unknown, and
//! an unaligned extent end into it stays a plain WRITE.
//!
//! Bounded: past [`MAX_TRACKED`] names everything is forgotten (unknown).

use std::collections::BTreeMap;

use rawsend_stream::{Command, StreamPath};

/// Names remembered at most.
const MAX_TRACKED: usize = 1 << 16;
/// `FALLOC_FL_KEEP_SIZE`.
const KEEP_SIZE: u32 = 1;

/// Known sizes by path, for the subvolume being sent.
#[derive(Debug, Default)]
pub(crate) struct Sizes {
    known: BTreeMap<Vec<u8>, u64>,
}

impl Sizes {
    /// The size of the file at `path` as the receiver will have it, if known.
    pub(crate) fn get(&self, path: &[u8]) -> Option<u64> {
        self.known.get(path).copied()
    }

    /// Follows what `command` does to sizes and names.
    pub(crate) fn track(&mut self, command: &Command<'_>) {
        match *command {
            Command::Mkfile { path, .. } => self.set(bytes(path), 0),
            Command::Truncate { path, size } => self.set(bytes(path), size),
            Command::Write { path, offset, data } => self.grow(bytes(path), offset, data.len() as u64),
            Command::EncodedWrite(write) => {
                self.grow(bytes(write.path), write.offset, write.unencoded_file_len)
            }
            Command::Clone { path, offset, len, .. } => self.grow(bytes(path), offset, len),
            Command::Fallocate { path, mode, offset, len } if mode & KEEP_SIZE == 0 => {
                self.grow(bytes(path), offset, len)
            }
            Command::Rename { from, to } => {
                let size = self.forget(bytes(from));
                self.forget(bytes(to));
                if let Some(size) = size {
                    self.set(bytes(to), size);
                }
            }
            Command::Link { path, target } => {
                self.forget(bytes(path));
                self.forget(bytes(target));
            }
            Command::Unlink { path } | Command::Rmdir { path } => {
                self.forget(bytes(path));
            }
            Command::Subvol { .. } | Command::Snapshot { .. } | Command::End => self.known.clear(),
            _ => {}
        }
    }

    fn set(&mut self, path: &[u8], size: u64) {
        if self.known.len() >= MAX_TRACKED {
            self.known.clear();
        }
        self.known.insert(path.to_vec(), size);
    }

    fn grow(&mut self, path: &[u8], offset: u64, len: u64) {
        if let Some(size) = self.known.get_mut(path) {
            *size = (*size).max(offset.saturating_add(len));
        }
    }

    /// Forgets `path` and everything beneath it; returns what was known of `path`.
    fn forget(&mut self, path: &[u8]) -> Option<u64> {
        let size = self.known.remove(path);
        let mut prefix = path.to_vec();
        prefix.push(b'/');
        let beneath: Vec<Vec<u8>> = self
            .known
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for key in beneath {
            self.known.remove(&key);
        }
        size
    }
}

fn bytes(path: StreamPath<'_>) -> &[u8] {
    path.as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(bytes: &[u8]) -> StreamPath<'_> {
        StreamPath::new(bytes).expect("valid path")
    }

    #[test]
    fn follows_creation_writes_truncates_and_renames() {
        let mut sizes = Sizes::default();
        sizes.track(&Command::Mkfile { path: p(b"d/f"), ino: 257 });
        sizes.track(&Command::Write { path: p(b"d/f"), offset: 4096, data: &[1; 100] });
        assert_eq!(sizes.get(b"d/f"), Some(4196));
        sizes.track(&Command::Write { path: p(b"other"), offset: 0, data: &[1; 100] });
        assert_eq!(sizes.get(b"other"), None);
        sizes.track(&Command::Rename { from: p(b"d"), to: p(b"e") });
        assert_eq!(sizes.get(b"d/f"), None, "a renamed directory's files are unknown");
        sizes.track(&Command::Truncate { path: p(b"e/f"), size: 10 });
        sizes.track(&Command::Rename { from: p(b"e/f"), to: p(b"g") });
        assert_eq!(sizes.get(b"g"), Some(10));
        sizes.track(&Command::Link { path: p(b"h"), target: p(b"g") });
        assert_eq!(sizes.get(b"g"), None, "a hard link can change the size behind the name");
    }
}
