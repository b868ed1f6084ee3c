//! How far a [`StreamReader`](crate::StreamReader) has read, for another thread to show.
//!
//! A tool that shows progress (a bar, JSON lines for an orchestrator) wants
//! the bytes and commands read, the subvolume being read and the path of
//! the last command, a few times a second, without slowing the reader down.
//! So the reader publishes into a shared [`ReadProgress`] as it goes: two relaxed
//! atomic stores per command (no syscall, no lock, no allocation), the
//! subvolume name under a lock only at SUBVOL and SNAPSHOT (a few per
//! stream), and the last path only when a viewer asked for it since the last
//! time ([`ReadProgress::snapshot`] raises a flag that the next command answers),
//! so the reader copies a path a few times a second, not once per command.
//!
//! Counting in the reader, not in what consumes its commands, means every
//! consumer (dump, receive, a receive skipping an already applied prefix)
//! counts the same way, and the final byte count is the stream's size.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Counters a reader publishes and a viewer reads. See the module docs.
#[derive(Debug)]
pub struct ReadProgress {
    bytes: AtomicU64,
    commands: AtomicU64,
    want_path: AtomicBool,
    path: Mutex<Vec<u8>>,
    subvolume: Mutex<Vec<u8>>,
}

/// What a [`ReadProgress`] held when it was read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgressSnapshot {
    /// Bytes of input consumed (headers and whole commands).
    pub bytes: u64,
    /// Commands read.
    pub commands: u64,
    /// Name of the subvolume of the last SUBVOL or SNAPSHOT command (lossy UTF-8).
    pub subvolume: String,
    /// PATH of a recent command (lossy UTF-8): the first one with a PATH after the
    /// previous snapshot.
    pub path: String,
}

impl Default for ReadProgress {
    /// Counters at zero, the first path wanted.
    fn default() -> Self {
        ReadProgress {
            bytes: AtomicU64::new(0),
            commands: AtomicU64::new(0),
            want_path: AtomicBool::new(true),
            path: Mutex::default(),
            subvolume: Mutex::default(),
        }
    }
}

impl ReadProgress {
    /// Counters at zero, the first path wanted.
    pub fn new() -> Self {
        ReadProgress::default()
    }

    /// Notes that `bytes` of input are consumed in all.
    pub fn set_bytes(&self, bytes: u64) {
        self.bytes.store(bytes, Ordering::Relaxed);
    }

    /// Notes that `commands` commands are read in all, the last with PATH `path`
    /// (a command without one leaves the path shown as it was).
    pub fn set_commands(&self, commands: u64, path: Option<&[u8]>) {
        self.commands.store(commands, Ordering::Relaxed);
        if let (Some(path), true) = (path, self.want_path.load(Ordering::Relaxed)) {
            self.want_path.store(false, Ordering::Relaxed);
            replace(&self.path, path);
        }
    }

    /// Notes that a subvolume named `name` starts.
    pub fn set_subvolume(&self, name: &[u8]) {
        replace(&self.subvolume, name);
    }

    /// The counters now, and asks the reader for a fresh path for the next snapshot.
    pub fn snapshot(&self) -> ProgressSnapshot {
        self.want_path.store(true, Ordering::Relaxed);
        ProgressSnapshot {
            bytes: self.bytes.load(Ordering::Relaxed),
            commands: self.commands.load(Ordering::Relaxed),
            subvolume: lossy(&self.subvolume),
            path: lossy(&self.path),
        }
    }
}

fn replace(slot: &Mutex<Vec<u8>>, bytes: &[u8]) {
    let mut held = slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    held.clear();
    held.extend_from_slice(bytes);
}

fn lossy(slot: &Mutex<Vec<u8>>) -> String {
    String::from_utf8_lossy(&slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner)).into_owned()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{Command, Item, StreamPath, StreamReader, StreamWriter, Uuid};

    #[test]
    fn a_reader_publishes_what_it_read() {
        let mut bytes = Vec::new();
        let mut writer = StreamWriter::new(&mut bytes, 2).unwrap();
        let path = |name: &'static [u8]| StreamPath::new(name).unwrap();
        writer.write(&Command::Subvol { path: path(b"vol"), uuid: Uuid::NIL, ctransid: 7 }).unwrap();
        writer.write(&Command::Truncate { path: path(b"f"), size: 1 }).unwrap();
        writer.write(&Command::End).unwrap();
        writer.finish().unwrap();
        let progress = Arc::new(ReadProgress::new());
        progress.snapshot();
        let mut reader = StreamReader::new(&bytes[..]).with_progress(Arc::clone(&progress));
        let mut seen = Vec::new();
        while let Some(item) = reader.next().unwrap() {
            if let Item::Command(record) = item {
                seen.push((record.offset + record.raw.len() as u64, progress.snapshot()));
            }
        }
        let (end, last) = seen.last().unwrap();
        assert_eq!((*end, last.bytes, last.commands), (bytes.len() as u64, bytes.len() as u64, 3));
        assert!(seen.iter().all(|(end, snapshot)| snapshot.bytes == *end && snapshot.subvolume == "vol"));
        assert_eq!((seen[1].1.path.as_str(), seen[2].1.path.as_str()), ("f", "f"));
    }

    #[test]
    fn the_path_is_copied_only_when_asked_for() {
        let progress = ReadProgress::new();
        progress.set_subvolume(b"vol");
        progress.set_commands(1, Some(b"a"));
        progress.set_bytes(100);
        let first = progress.snapshot();
        assert_eq!(
            (first.bytes, first.commands, first.subvolume.as_str(), first.path.as_str()),
            (100, 1, "vol", "a")
        );
        progress.set_commands(2, Some(b"b"));
        progress.set_commands(3, Some(b"c"));
        assert_eq!(progress.snapshot().path, "b");
        progress.set_commands(4, None);
        progress.set_commands(5, Some(b"e"));
        assert_eq!(
            progress.snapshot(),
            ProgressSnapshot { bytes: 100, commands: 5, subvolume: "vol".to_owned(), path: "e".to_owned() }
        );
    }
}
