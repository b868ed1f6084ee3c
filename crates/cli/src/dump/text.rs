//! `btrfs receive --dump` text, byte for byte as btrfs-progs 6.2 prints it.
//!
//! The quirks are deliberate, because scripts parse this output: paths are
//! C-escaped (`\ `, `\n`, `\NNN` octal for non-printable bytes) and padded to
//! 32 columns; the subvolume root prints as `./subvol/`; RENAME's destination
//! is prefixed with the subvolume path but LINK's is not; CLONE's source and
//! xattr names and values are printed raw (values up to their first NUL);
//! modes are octal; FILEATTR prints its decimal value behind `0x`; times are
//! `%FT%T%z` in local time without nanoseconds. Unlike btrfs-progs, the
//! caller may keep going through every joined stream.
//!
//! Paths are printed as the stream has them, also those a receive refuses
//! (`..`, absolute, empty components): btrfs-progs joins them to the
//! subvolume path just the same (`./vol/../x`, `./vol//etc`), cut at the
//! first NUL as its C strings are. It only fails on a joined path of 4096
//! bytes or more; rawsend prints that one too.

use std::io::{self, Write};

use chrono::{Datelike, Local, Offset, TimeZone, Timelike};
use rawsend_stream::resume::Position;
use rawsend_stream::{Command, RawPath, Timespec};

/// Formats commands as dump lines, tracking the current subvolume's path.
///
/// Each line is built in one reused buffer, fields written straight into it:
/// a dump formats hundreds of thousands of lines, and allocating per field
/// was most of its time.
pub struct TextDump {
    subvol_path: Vec<u8>,
    line: Vec<u8>,
    /// The last time formatted: its seconds and text (a UTIMES has three, often equal).
    last_time: Option<(i64, Vec<u8>)>,
}

/// A command that cannot be printed (a time out of range for the local calendar).
#[derive(Debug, thiserror::Error)]
#[error("failed to convert time {sec}.{nsec:09} to local time")]
pub struct TimeError {
    sec: i64,
    nsec: u32,
}

impl TextDump {
    /// A formatter at the start of input (no subvolume yet: paths print as `./path`).
    pub fn new() -> Self {
        TextDump { subvol_path: b".".to_vec(), line: Vec::with_capacity(512), last_time: None }
    }

    /// Writes the line for a continuation marker: `continue`, then the position the
    /// continuation starts after, in the layout of the other lines.
    pub fn write_continuation(&self, out: &mut impl Write, position: &Position) -> io::Result<()> {
        let Position { commands, offset, digest } = *position;
        let fields = format!("after_commands={commands} after_offset={offset} digest={:016x}", digest.0);
        writeln!(out, "{:<16}{:<32} {fields}", "continue", "")
    }

    /// Writes the line for `command` (nothing for END).
    pub fn write(&mut self, out: &mut impl Write, command: &Command<'_, RawPath<'_>>) -> io::Result<()> {
        self.line.clear();
        match self.format(command) {
            Ok(()) => out.write_all(&self.line),
            Err(err) => Err(io::Error::new(io::ErrorKind::InvalidData, err)),
        }
    }

    fn format(&mut self, command: &Command<'_, RawPath<'_>>) -> Result<(), TimeError> {
        let title = command.kind().name();
        // Writing into a Vec cannot fail: the results of `write!` below are ignored.
        match *command {
            Command::Subvol { path, uuid, ctransid } => {
                self.subvol_path = join(b".", path.as_bytes());
                self.subvol_head(title);
                let _ = write!(self.line, "uuid={uuid} transid={ctransid}");
            }
            Command::Snapshot { path, uuid, ctransid, clone_uuid, clone_ctransid } => {
                self.subvol_path = join(b".", path.as_bytes());
                self.subvol_head(title);
                let _ = write!(
                    self.line,
                    "uuid={uuid} transid={ctransid} parent_uuid={clone_uuid} parent_transid={clone_ctransid}"
                );
            }
            Command::Mkfile { path, .. }
            | Command::Mkdir { path, .. }
            | Command::Mkfifo { path, .. }
            | Command::Mksock { path, .. }
            | Command::Unlink { path }
            | Command::Rmdir { path } => {
                self.title_and_path(title, path);
            }
            Command::Mknod { path, rdev, mode, .. } => {
                self.head(title, path);
                let _ = write!(self.line, "mode={mode:o} dev={:#x}", rdev.0);
            }
            Command::Symlink { path, target, .. } => {
                self.head(title, path);
                self.line.extend_from_slice(b"dest=");
                escape_into(&mut self.line, target.as_bytes());
            }
            Command::Rename { from, to } => {
                self.head(title, from);
                self.line.extend_from_slice(b"dest=");
                escape_joined(&mut self.line, &self.subvol_path, to.as_bytes());
            }
            Command::Link { path, target } => {
                self.head(title, path);
                self.line.extend_from_slice(b"dest=");
                escape_into(&mut self.line, target.as_bytes());
            }
            Command::SetXattr { path, name, data } => {
                self.head(title, path);
                self.line.extend_from_slice(b"name=");
                self.line.extend_from_slice(name.as_bytes());
                self.line.extend_from_slice(b" data=");
                self.line.extend_from_slice(until_nul(data));
                let _ = write!(self.line, " len={}", data.len());
            }
            Command::RemoveXattr { path, name } => {
                self.head(title, path);
                self.line.extend_from_slice(b"name=");
                self.line.extend_from_slice(name.as_bytes());
            }
            Command::Write { path, offset, data } => {
                self.head(title, path);
                let _ = write!(self.line, "offset={offset} len={}", data.len());
            }
            Command::Clone { path, offset, len, clone_path, clone_offset, .. } => {
                self.head(title, path);
                let _ = write!(self.line, "offset={offset} len={len} from=");
                push_joined(&mut self.line, &self.subvol_path, clone_path.as_bytes());
                let _ = write!(self.line, " clone_offset={clone_offset}");
            }
            Command::Truncate { path, size } => {
                self.head(title, path);
                let _ = write!(self.line, "size={size}");
            }
            Command::Chmod { path, mode } => {
                self.head(title, path);
                let _ = write!(self.line, "mode={mode:o}");
            }
            Command::Chown { path, uid, gid } => {
                self.head(title, path);
                let _ = write!(self.line, "gid={gid} uid={uid}");
            }
            Command::Utimes { path, atime, mtime, ctime, .. } => {
                self.head(title, path);
                for (name, time) in [("atime=", atime), ("mtime=", mtime), ("ctime=", ctime)] {
                    if name != "atime=" {
                        self.line.push(b' ');
                    }
                    self.line.extend_from_slice(name.as_bytes());
                    self.push_local_time(time)?;
                }
            }
            Command::End => return Ok(()),
            Command::UpdateExtent { path, offset, len } => {
                self.head(title, path);
                let _ = write!(self.line, "offset={offset} len={len}");
            }
            Command::Fallocate { path, mode, offset, len } => {
                self.head(title, path);
                let _ = write!(self.line, "mode={} offset={offset} len={len}", mode as i32);
            }
            Command::Fileattr { path, attr } => {
                self.head(title, path);
                let _ = write!(self.line, "fileattr=0x{attr}");
            }
            Command::EncodedWrite(write) => {
                self.head(title, write.path);
                let _ = write!(
                    self.line,
                    "offset={} len={}, unencoded_file_len={}, unencoded_len={}, unencoded_offset={}, \
                     compression={}, encryption={}",
                    write.offset,
                    write.data.len(),
                    write.unencoded_file_len,
                    write.unencoded_len,
                    write.unencoded_offset,
                    write.compression.unwrap_or(0),
                    write.encryption.unwrap_or(0),
                );
            }
            Command::EnableVerity { path, algorithm, block_size, salt, sig } => {
                self.head(title, path);
                let _ = write!(
                    self.line,
                    "algorithm={algorithm} block_size={block_size} salt_len={} sig_len={}",
                    salt.len(),
                    sig.len()
                );
            }
            _ => return Ok(()),
        }
        self.line.push(b'\n');
        Ok(())
    }

    /// `title` padded to 16 columns, then the escaped full path; returns its printed width.
    fn title_and_path(&mut self, title: &str, path: RawPath<'_>) -> usize {
        self.title(title);
        escape_joined(&mut self.line, &self.subvol_path, path.as_bytes())
    }

    /// `title` padded to 16 columns.
    fn title(&mut self, title: &str) {
        self.line.extend_from_slice(title.as_bytes());
        let spaces = 16usize.saturating_sub(title.len());
        self.line.resize(self.line.len() + spaces, b' ');
    }

    /// Title and path padded to where the fields start (32 columns, at least one space).
    fn head(&mut self, title: &str, path: RawPath<'_>) {
        let width = self.title_and_path(title, path);
        self.pad(width);
    }

    /// Title and the subvolume's own path, padded like [`TextDump::head`].
    fn subvol_head(&mut self, title: &str) {
        self.title(title);
        let width = escape_into(&mut self.line, &self.subvol_path);
        self.pad(width);
    }

    /// Pads a path of printed width `width` to 32 columns, with at least one space.
    fn pad(&mut self, width: usize) {
        let spaces = 32usize.saturating_sub(width).max(1);
        self.line.resize(self.line.len() + spaces, b' ');
    }

    /// Appends `ts` as [`write_local_time`] formats it, copying the last one when the
    /// second is the same.
    fn push_local_time(&mut self, ts: Timespec) -> Result<(), TimeError> {
        match &mut self.last_time {
            Some((sec, text)) if *sec == ts.sec => self.line.extend_from_slice(text),
            last => {
                let start = self.line.len();
                write_local_time(&mut self.line, ts)?;
                let text = last.get_or_insert_with(|| (ts.sec, Vec::new()));
                text.0 = ts.sec;
                text.1.clear();
                text.1.extend_from_slice(&self.line[start..]);
            }
        }
        Ok(())
    }
}

/// btrfs-progs' `path_cat` of two C strings: each cut at its first NUL, one
/// trailing `/` dropped from each side, joined by `/`.
fn join(base: &[u8], path: &[u8]) -> Vec<u8> {
    let mut joined = Vec::with_capacity(base.len() + path.len() + 1);
    push_joined(&mut joined, base, path);
    joined
}

/// The two halves of [`join`]`(base, path)`.
fn join_parts<'a>(base: &'a [u8], path: &'a [u8]) -> (&'a [u8], &'a [u8]) {
    let (base, path) = (until_nul(base), until_nul(path));
    (base.strip_suffix(b"/").unwrap_or(base), path.strip_suffix(b"/").unwrap_or(path))
}

/// Appends [`join`]`(base, path)` as it is.
fn push_joined(out: &mut Vec<u8>, base: &[u8], path: &[u8]) {
    let (base, path) = join_parts(base, path);
    out.extend_from_slice(base);
    out.push(b'/');
    out.extend_from_slice(path);
}

/// Appends [`join`]`(base, path)` escaped (escaping is byte by byte, so the halves
/// are escaped apart); returns the printed width.
fn escape_joined(out: &mut Vec<u8>, base: &[u8], path: &[u8]) -> usize {
    let (base, path) = join_parts(base, path);
    let width = escape_into(out, base);
    out.push(b'/');
    width + 1 + escape_into(out, path)
}

/// A C string's view of bytes: everything before the first NUL.
fn until_nul(bytes: &[u8]) -> &[u8] {
    bytes.split(|&b| b == 0).next().unwrap_or(bytes)
}

/// Whether `byte` prints as itself in [`escape_into`].
fn is_plain(byte: u8) -> bool {
    byte > b' ' && byte < 0x7f && byte != b'\\'
}

/// Appends `bytes` escaped as btrfs-progs' `print_path_escaped`; returns the printed width.
pub fn escape_into(out: &mut Vec<u8>, bytes: &[u8]) -> usize {
    let before = out.len();
    let mut rest = until_nul(bytes);
    while !rest.is_empty() {
        let plain = rest.iter().position(|&byte| !is_plain(byte)).unwrap_or(rest.len());
        out.extend_from_slice(&rest[..plain]);
        let Some((&byte, tail)) = rest[plain..].split_first() else { break };
        rest = tail;
        let short = match byte {
            0x07 => Some(b'a'),
            0x08 => Some(b'b'),
            0x1b => Some(b'e'),
            0x0c => Some(b'f'),
            b'\n' => Some(b'n'),
            b'\r' => Some(b'r'),
            b'\t' => Some(b't'),
            0x0b => Some(b'v'),
            b' ' => Some(b' '),
            b'\\' => Some(b'\\'),
            _ => None,
        };
        match short {
            Some(c) => out.extend_from_slice(&[b'\\', c]),
            None => out.extend_from_slice(&[
                b'\\',
                b'0' + (byte >> 6),
                b'0' + ((byte >> 3) & 7),
                b'0' + (byte & 7),
            ]),
        }
    }
    out.len() - before
}

/// Appends `strftime("%FT%T%z")` of `localtime_r(sec)`.
fn write_local_time(out: &mut Vec<u8>, ts: Timespec) -> Result<(), TimeError> {
    let err = TimeError { sec: ts.sec, nsec: ts.nsec };
    let time = Local.timestamp_opt(ts.sec, 0).single().ok_or(err)?;
    let offset = time.offset().fix().local_minus_utc();
    let sign = if offset < 0 { '-' } else { '+' };
    let offset = offset.unsigned_abs() / 60;
    // glibc's `%Y`: at least four digits, a minus sign for years before 0.
    let year = time.year();
    let (minus, year) = if year < 0 { ("-", year.unsigned_abs()) } else { ("", year.unsigned_abs()) };
    let width = if minus.is_empty() { 4 } else { 3 };
    let _ = write!(
        out,
        "{minus}{year:0width$}-{:02}-{:02}T{:02}:{:02}:{:02}{sign}{:02}{:02}",
        time.month(),
        time.day(),
        time.hour(),
        time.minute(),
        time.second(),
        offset / 60,
        offset % 60
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_print_path_escaped() {
        let mut out = Vec::new();
        let width = escape_into(&mut out, b"a b\n\t\\\xff\x7f\x01z");
        assert_eq!(out, b"a\\ b\\n\\t\\\\\\377\\177\\001z");
        assert_eq!(width, out.len());
    }

    #[test]
    fn joins_like_path_cat() {
        assert_eq!(join(b".", b"vol"), b"./vol");
        assert_eq!(join(b"./vol", b""), b"./vol/");
        assert_eq!(join(b"./vol/", b"a/"), b"./vol/a");
        assert_eq!(join(b"./vol", b"a/\0b"), b"./vol/a");
        assert_eq!(join(b"./vol", b"/etc"), b"./vol//etc");
    }

    #[test]
    fn pads_short_paths_to_32_columns_and_long_ones_by_one_space() {
        let mut dump = TextDump::new();
        let mut out = Vec::new();
        let vol = RawPath::new(b"v");
        dump.write(&mut out, &Command::Subvol { path: vol, uuid: Default::default(), ctransid: 5 }).unwrap();
        let long = RawPath::new(&[b'x'; 40]);
        dump.write(&mut out, &Command::Truncate { path: long, size: 1 }).unwrap();
        dump.write(&mut out, &Command::Unlink { path: vol }).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(
            lines[0],
            format!(
                "subvol          ./v{}uuid=00000000-0000-0000-0000-000000000000 transid=5",
                " ".repeat(29)
            )
        );
        assert_eq!(lines[1], format!("truncate        ./v/{} size=1", "x".repeat(40)));
        assert_eq!(lines[2], "unlink          ./v/v");
    }

    #[test]
    fn years_print_as_glibc_prints_them() {
        let year = |sec| {
            let mut out = Vec::new();
            write_local_time(&mut out, Timespec { sec, nsec: 0 }).unwrap();
            String::from_utf8(out).unwrap().split('-').next().unwrap().to_owned()
        };
        // Mid-year instants, so that no time zone moves them into another year.
        assert_eq!(year(15_638_400), "1970");
        assert_eq!(year(-30_610_224_000 - 86_400 * 180), "0999");
        assert_eq!(year(327_403_728_000), "12345");
    }
}
