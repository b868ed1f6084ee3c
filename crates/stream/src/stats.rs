//! What a stream holds, counted as it is read: [`Stats`], fed one [`Item`] at a time.
//!
//! For `rawsend stats` and any tool that wants the same numbers: commands
//! per kind, plain and encoded data bytes (encoded ones also by what they
//! decode to, per compression algorithm), clones, the subvolumes of every
//! joined stream and the files written furthest. Memory is bounded whatever
//! the input: counters, at most [`MAX_SUBVOLUMES`] subvolume records (the
//! rest are only counted) and the [`LARGEST_FILES`] largest files, kept
//! exactly in a fixed-size table (see [`Largest`]).

use crate::command::{Command, EncodedWrite};
use crate::kind::CommandKind;
use crate::path::PathAttr;
use crate::reader::{Item, Record};
use crate::uuid::Uuid;

/// How many subvolume records [`Stats`] keeps; later ones are only counted.
pub const MAX_SUBVOLUMES: usize = 1024;
/// How many of the largest files [`Stats`] keeps.
pub const LARGEST_FILES: usize = 10;

/// A compression algorithm of ENCODED_WRITE, by `BTRFS_ENCODED_IO_COMPRESSION_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// 0, or the attribute absent: not compressed.
    None,
    /// 1.
    Zlib,
    /// 2.
    Zstd,
    /// 3 to 7: LZO with 4 to 64 KiB sectors.
    Lzo,
    /// Any other value (a receive refuses it).
    Unknown,
}

impl Algorithm {
    /// Every algorithm, in declaration (= index) order.
    pub const ALL: [Algorithm; 5] =
        [Algorithm::None, Algorithm::Zlib, Algorithm::Zstd, Algorithm::Lzo, Algorithm::Unknown];

    /// The algorithm of a `compression` attribute.
    pub fn from_raw(compression: Option<u32>) -> Algorithm {
        match compression.unwrap_or(0) {
            0 => Algorithm::None,
            1 => Algorithm::Zlib,
            2 => Algorithm::Zstd,
            3..=7 => Algorithm::Lzo,
            _ => Algorithm::Unknown,
        }
    }

    /// Lower-case name: `none`, `zlib`, `zstd`, `lzo`, `unknown`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::None => "none",
            Algorithm::Zlib => "zlib",
            Algorithm::Zstd => "zstd",
            Algorithm::Lzo => "lzo",
            Algorithm::Unknown => "unknown",
        }
    }
}

/// ENCODED_WRITE totals of one algorithm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EncodedBytes {
    /// Commands.
    pub commands: u64,
    /// Bytes as sent (the DATA attributes).
    pub bytes: u64,
    /// What they decode to (the sum of `unencoded_len`).
    pub unencoded_len: u64,
    /// Bytes of file they cover (the sum of `unencoded_file_len`).
    pub file_len: u64,
}

/// One subvolume of the input: a SUBVOL or SNAPSHOT command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subvolume {
    /// Its name, as sent.
    pub name: Vec<u8>,
    /// Protocol version of its stream.
    pub version: u32,
    /// Sender's UUID.
    pub uuid: Uuid,
    /// Sender's ctransid.
    pub ctransid: u64,
    /// Parent's UUID and ctransid, for a snapshot (an incremental stream).
    pub parent: Option<(Uuid, u64)>,
}

/// A file and the highest offset + length written to it (WRITE, ENCODED_WRITE, CLONE).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileExtent {
    /// Index of its subvolume among every SUBVOL/SNAPSHOT of the input
    /// (0 also for commands before the first).
    pub subvolume: u64,
    /// Its path in that subvolume, as written to.
    pub path: Vec<u8>,
    /// Highest offset + length written.
    pub end: u64,
}

/// The files with the highest [`FileExtent::end`], at most [`LARGEST_FILES`].
///
/// Exact with a fixed-size table: a write updates its file's entry if it
/// has one, else replaces the smallest entry if it is larger. A file evicted
/// with end `e` had [`LARGEST_FILES`] others at least as large, and entries
/// only grow, so no later write that could rank it again is lost.
#[derive(Clone, Debug, Default)]
pub struct Largest {
    entries: Vec<FileExtent>,
}

impl Largest {
    /// Records that `path` of subvolume `subvolume` was written up to `end`.
    fn record(&mut self, subvolume: u64, path: &[u8], end: u64) {
        let full = self.entries.len() == LARGEST_FILES;
        // When full, an entry's end is at least the minimum, so nothing at or
        // below it can change the table: the common case costs one scan of ends.
        let min = self.entries.iter().enumerate().min_by_key(|(_, entry)| entry.end);
        if let Some((_, smallest)) = min.filter(|_| full) {
            if end <= smallest.end {
                return;
            }
        }
        let smallest_index = min.map(|(index, _)| index);
        if let Some(entry) = self.entries.iter_mut().find(|e| e.subvolume == subvolume && e.path == path) {
            entry.end = entry.end.max(end);
            return;
        }
        let entry = FileExtent { subvolume, path: path.to_vec(), end };
        match smallest_index.filter(|_| full) {
            Some(index) => self.entries[index] = entry,
            None => self.entries.push(entry),
        }
    }

    /// The files, largest first (ties in path order).
    pub fn sorted(&self) -> Vec<&FileExtent> {
        let mut files: Vec<&FileExtent> = self.entries.iter().collect();
        files.sort_by(|a, b| {
            b.end.cmp(&a.end).then_with(|| (a.subvolume, &a.path).cmp(&(b.subvolume, &b.path)))
        });
        files
    }
}

/// Counts of everything in a stream. Feed it every item with [`Stats::add`].
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Stream headers: how many streams the input joins.
    pub streams: u64,
    /// Continuation markers (`rawsend send --resume`; see [`crate::resume`]).
    pub continuations: u64,
    commands: [u64; CommandKind::ALL.len()],
    /// Bytes of WRITE data.
    pub write_bytes: u64,
    encoded: [EncodedBytes; Algorithm::ALL.len()],
    /// Bytes cloned (the sum of CLONE lengths).
    pub clone_bytes: u64,
    /// SUBVOL and SNAPSHOT commands seen.
    pub subvolume_count: u64,
    /// The first [`MAX_SUBVOLUMES`] of them.
    pub subvolumes: Vec<Subvolume>,
    /// The files written furthest.
    pub largest: Largest,
}

impl Stats {
    /// Counts one item of the input.
    pub fn add<'a, P: PathAttr<'a>>(&mut self, item: &Item<'a, P>) {
        match item {
            Item::Header { .. } => self.streams += 1,
            Item::Command(record) => self.add_record(record),
            Item::Continue { .. } => self.continuations += 1,
        }
    }

    fn add_record<'a, P: PathAttr<'a>>(&mut self, record: &Record<'a, P>) {
        let kind = record.command.kind();
        self.commands[usize::from(kind.raw() - 1)] += 1;
        let subvolume = self.subvolume_count.saturating_sub(1);
        match record.command {
            Command::Subvol { path, uuid, ctransid } => {
                self.add_subvolume(record.version, path, uuid, ctransid, None)
            }
            Command::Snapshot { path, uuid, ctransid, clone_uuid, clone_ctransid } => {
                self.add_subvolume(record.version, path, uuid, ctransid, Some((clone_uuid, clone_ctransid)));
            }
            Command::Write { path, offset, data } => {
                self.write_bytes += data.len() as u64;
                self.largest.record(subvolume, path.bytes(), offset.saturating_add(data.len() as u64));
            }
            Command::EncodedWrite(ref write) => self.add_encoded(subvolume, write),
            Command::Clone { path, offset, len, .. } => {
                self.clone_bytes = self.clone_bytes.saturating_add(len);
                self.largest.record(subvolume, path.bytes(), offset.saturating_add(len));
            }
            _ => {}
        }
    }

    fn add_subvolume<'a, P: PathAttr<'a>>(
        &mut self,
        version: u32,
        path: P,
        uuid: Uuid,
        ctransid: u64,
        parent: Option<(Uuid, u64)>,
    ) {
        self.subvolume_count += 1;
        if self.subvolumes.len() < MAX_SUBVOLUMES {
            self.subvolumes.push(Subvolume { name: path.bytes().to_vec(), version, uuid, ctransid, parent });
        }
    }

    fn add_encoded<'a, P: PathAttr<'a>>(&mut self, subvolume: u64, write: &EncodedWrite<'a, P>) {
        let algorithm = Algorithm::from_raw(write.compression);
        let totals = &mut self.encoded[algorithm as usize];
        totals.commands += 1;
        totals.bytes += write.data.len() as u64;
        totals.unencoded_len = totals.unencoded_len.saturating_add(write.unencoded_len);
        totals.file_len = totals.file_len.saturating_add(write.unencoded_file_len);
        self.largest.record(
            subvolume,
            write.path.bytes(),
            write.offset.saturating_add(write.unencoded_file_len),
        );
    }

    /// How many commands of `kind` were read.
    pub fn count(&self, kind: CommandKind) -> u64 {
        self.commands[usize::from(kind.raw() - 1)]
    }

    /// Every command kind with its count, in numeric order (zeros included).
    pub fn commands(&self) -> impl Iterator<Item = (CommandKind, u64)> + '_ {
        CommandKind::ALL.iter().map(|&kind| (kind, self.count(kind)))
    }

    /// Commands read in all.
    pub fn total_commands(&self) -> u64 {
        self.commands.iter().sum()
    }

    /// ENCODED_WRITE totals of `algorithm`.
    pub fn encoded(&self, algorithm: Algorithm) -> EncodedBytes {
        self.encoded[algorithm as usize]
    }

    /// ENCODED_WRITE totals over every algorithm.
    pub fn encoded_total(&self) -> EncodedBytes {
        self.encoded.iter().fold(EncodedBytes::default(), |sum, e| EncodedBytes {
            commands: sum.commands + e.commands,
            bytes: sum.bytes + e.bytes,
            unencoded_len: sum.unencoded_len.saturating_add(e.unencoded_len),
            file_len: sum.file_len.saturating_add(e.file_len),
        })
    }

    /// Regular files, directories, symlinks, special files (devices, FIFOs,
    /// sockets) and hard links created.
    pub fn created(&self) -> Created {
        Created {
            files: self.count(CommandKind::Mkfile),
            directories: self.count(CommandKind::Mkdir),
            symlinks: self.count(CommandKind::Symlink),
            special: self.count(CommandKind::Mknod)
                + self.count(CommandKind::Mkfifo)
                + self.count(CommandKind::Mksock),
            links: self.count(CommandKind::Link),
        }
    }
}

/// What a stream creates, from its command counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Created {
    /// MKFILE.
    pub files: u64,
    /// MKDIR.
    pub directories: u64,
    /// SYMLINK.
    pub symlinks: u64,
    /// MKNOD, MKFIFO and MKSOCK.
    pub special: u64,
    /// LINK (hard links).
    pub links: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::StreamPath;

    fn record<'a>(command: Command<'a>) -> Item<'a> {
        Item::Command(Record { index: 0, offset: 0, version: 2, raw: &[], command })
    }

    fn write<'a>(path: &'a [u8], offset: u64, data: &'a [u8]) -> Item<'a> {
        record(Command::Write { path: StreamPath::new(path).unwrap(), offset, data })
    }

    #[test]
    fn largest_files_are_exact_with_a_small_table() {
        let mut stats = Stats::default();
        let names: Vec<Vec<u8>> = (0..30u8).map(|i| vec![b'a' + i % 26, b'0' + i / 26]).collect();
        // Each file is written twice, far apart in the stream; the second
        // write of the even files goes further than the first.
        for (i, name) in names.iter().enumerate() {
            stats.add(&write(name, i as u64 * 10, b"x"));
        }
        for (i, name) in names.iter().enumerate() {
            let offset = if i % 2 == 0 { 1000 + i as u64 } else { 0 };
            stats.add(&write(name, offset, b"x"));
        }
        let ends: Vec<u64> = stats.largest.sorted().iter().map(|f| f.end).collect();
        let mut expected: Vec<u64> =
            (0..30u64).map(|i| if i % 2 == 0 { 1001 + i } else { i * 10 + 1 }).collect();
        expected.sort_unstable_by(|a, b| b.cmp(a));
        expected.truncate(LARGEST_FILES);
        assert_eq!(ends, expected);
    }

    #[test]
    fn encoded_bytes_are_counted_per_algorithm() {
        let mut stats = Stats::default();
        for compression in [None, Some(1), Some(3), Some(7), Some(99)] {
            let encoded = EncodedWrite {
                path: StreamPath::new(b"f").unwrap(),
                offset: 0,
                unencoded_file_len: 8192,
                unencoded_len: 16384,
                unencoded_offset: 0,
                compression,
                encryption: None,
                data: b"12345",
            };
            stats.add(&record(Command::EncodedWrite(encoded)));
        }
        let lzo = stats.encoded(Algorithm::Lzo);
        assert_eq!((lzo.commands, lzo.bytes, lzo.unencoded_len, lzo.file_len), (2, 10, 32768, 16384));
        assert_eq!(stats.encoded(Algorithm::Zlib).commands, 1);
        assert_eq!(stats.encoded(Algorithm::None).commands, 1);
        assert_eq!(stats.encoded(Algorithm::Unknown).commands, 1);
        assert_eq!(stats.encoded(Algorithm::Zstd).commands, 0);
        assert_eq!(stats.encoded_total().bytes, 25);
        assert_eq!(stats.count(CommandKind::EncodedWrite), 5);
        assert_eq!(stats.largest.sorted()[0].end, 8192);
    }

    #[test]
    fn subvolume_records_are_bounded() {
        let mut stats = Stats::default();
        let name = StreamPath::new(b"vol").unwrap();
        for ctransid in 0..MAX_SUBVOLUMES as u64 + 5 {
            stats.add::<StreamPath<'_>>(&Item::Header { version: 1, offset: 0 });
            stats.add(&record(Command::Subvol { path: name, uuid: Uuid::NIL, ctransid }));
        }
        assert_eq!(stats.subvolumes.len(), MAX_SUBVOLUMES);
        assert_eq!(stats.subvolume_count, MAX_SUBVOLUMES as u64 + 5);
        assert_eq!(stats.streams, MAX_SUBVOLUMES as u64 + 5);
    }
}
