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
pub struct TextDump {
    subvol_path: Vec<u8>,
    line: Vec<u8>,
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
        TextDump { subvol_path: b".".to_vec(), line: Vec::with_capacity(512) }
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
        match *command {
            Command::Subvol { path, uuid, ctransid } => {
                self.subvol_path = join(b".", path.as_bytes());
                let fields = format!("uuid={uuid} transid={ctransid}");
                self.subvol_line(title, fields.as_bytes());
            }
            Command::Snapshot { path, uuid, ctransid, clone_uuid, clone_ctransid } => {
                self.subvol_path = join(b".", path.as_bytes());
                let fields = format!(
                    "uuid={uuid} transid={ctransid} parent_uuid={clone_uuid} parent_transid={clone_ctransid}"
                );
                self.subvol_line(title, fields.as_bytes());
            }
            Command::Mkfile { path, .. }
            | Command::Mkdir { path, .. }
            | Command::Mkfifo { path, .. }
            | Command::Mksock { path, .. }
            | Command::Unlink { path }
            | Command::Rmdir { path } => {
                self.title_and_path(title, path);
                self.line.push(b'\n');
            }
            Command::Mknod { path, rdev, mode, .. } => {
                self.fields_line(title, path, format!("mode={mode:o} dev={:#x}", rdev.0).as_bytes());
            }
            Command::Symlink { path, target, .. } => {
                self.escaped_dest_line(title, path, until_nul(target.as_bytes()));
            }
            Command::Rename { from, to } => {
                let dest = join(&self.subvol_path, to.as_bytes());
                self.escaped_dest_line(title, from, &dest);
            }
            Command::Link { path, target } => self.escaped_dest_line(title, path, target.as_bytes()),
            Command::SetXattr { path, name, data } => {
                let mut fields = b"name=".to_vec();
                fields.extend_from_slice(name.as_bytes());
                fields.extend_from_slice(b" data=");
                fields.extend_from_slice(until_nul(data));
                fields.extend_from_slice(format!(" len={}", data.len()).as_bytes());
                self.fields_line(title, path, &fields);
            }
            Command::RemoveXattr { path, name } => {
                self.fields_line(title, path, &[b"name=", name.as_bytes()].concat());
            }
            Command::Write { path, offset, data } => {
                self.fields_line(title, path, format!("offset={offset} len={}", data.len()).as_bytes());
            }
            Command::Clone { path, offset, len, clone_path, clone_offset, .. } => {
                let mut fields = format!("offset={offset} len={len} from=").into_bytes();
                fields.extend_from_slice(&join(&self.subvol_path, clone_path.as_bytes()));
                fields.extend_from_slice(format!(" clone_offset={clone_offset}").as_bytes());
                self.fields_line(title, path, &fields);
            }
            Command::Truncate { path, size } => {
                self.fields_line(title, path, format!("size={size}").as_bytes())
            }
            Command::Chmod { path, mode } => {
                self.fields_line(title, path, format!("mode={mode:o}").as_bytes())
            }
            Command::Chown { path, uid, gid } => {
                self.fields_line(title, path, format!("gid={gid} uid={uid}").as_bytes());
            }
            Command::Utimes { path, atime, mtime, ctime, .. } => {
                let fields = format!(
                    "atime={} mtime={} ctime={}",
                    local_time(atime)?,
                    local_time(mtime)?,
                    local_time(ctime)?
                );
                self.fields_line(title, path, fields.as_bytes());
            }
            Command::End => {}
            Command::UpdateExtent { path, offset, len } => {
                self.fields_line(title, path, format!("offset={offset} len={len}").as_bytes());
            }
            Command::Fallocate { path, mode, offset, len } => {
                let fields = format!("mode={} offset={offset} len={len}", mode as i32);
                self.fields_line(title, path, fields.as_bytes());
            }
            Command::Fileattr { path, attr } => {
                self.fields_line(title, path, format!("fileattr=0x{attr}").as_bytes())
            }
            Command::EncodedWrite(write) => {
                let fields = format!(
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
                self.fields_line(title, write.path, fields.as_bytes());
            }
            Command::EnableVerity { path, algorithm, block_size, salt, sig } => {
                let fields = format!(
                    "algorithm={algorithm} block_size={block_size} salt_len={} sig_len={}",
                    salt.len(),
                    sig.len()
                );
                self.fields_line(title, path, fields.as_bytes());
            }
            _ => {}
        }
        Ok(())
    }

    /// `title` padded to 16 columns, then the escaped full path; returns its printed width.
    fn title_and_path(&mut self, title: &str, path: RawPath<'_>) -> usize {
        let full = join(&self.subvol_path, path.as_bytes());
        self.title_and_full_path(title, &full)
    }

    fn title_and_full_path(&mut self, title: &str, full: &[u8]) -> usize {
        self.line.extend_from_slice(format!("{title:<16}").as_bytes());
        escape_into(&mut self.line, full)
    }

    /// Pads a path of printed width `width` to 32 columns, with at least one space.
    fn pad(&mut self, width: usize) {
        let spaces = 32usize.saturating_sub(width).max(1);
        self.line.resize(self.line.len() + spaces, b' ');
    }

    fn fields_line(&mut self, title: &str, path: RawPath<'_>, fields: &[u8]) {
        let width = self.title_and_path(title, path);
        self.finish_line(width, fields);
    }

    fn subvol_line(&mut self, title: &str, fields: &[u8]) {
        let full = self.subvol_path.clone();
        let width = self.title_and_full_path(title, &full);
        self.finish_line(width, fields);
    }

    fn finish_line(&mut self, width: usize, fields: &[u8]) {
        self.pad(width);
        self.line.extend_from_slice(fields);
        self.line.push(b'\n');
    }

    fn escaped_dest_line(&mut self, title: &str, path: RawPath<'_>, dest: &[u8]) {
        let width = self.title_and_path(title, path);
        self.pad(width);
        self.line.extend_from_slice(b"dest=");
        escape_into(&mut self.line, dest);
        self.line.push(b'\n');
    }
}

/// btrfs-progs' `path_cat` of two C strings: each cut at its first NUL, one
/// trailing `/` dropped from each side, joined by `/`.
fn join(base: &[u8], path: &[u8]) -> Vec<u8> {
    let (base, path) = (until_nul(base), until_nul(path));
    let base = base.strip_suffix(b"/").unwrap_or(base);
    let path = path.strip_suffix(b"/").unwrap_or(path);
    [base, b"/", path].concat()
}

/// A C string's view of bytes: everything before the first NUL.
fn until_nul(bytes: &[u8]) -> &[u8] {
    bytes.split(|&b| b == 0).next().unwrap_or(bytes)
}

/// Appends `bytes` escaped as btrfs-progs' `print_path_escaped`; returns the printed width.
pub fn escape_into(out: &mut Vec<u8>, bytes: &[u8]) -> usize {
    let before = out.len();
    for &byte in until_nul(bytes) {
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
            None if (0x20..0x7f).contains(&byte) => out.push(byte),
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

/// `strftime("%FT%T%z")` of `localtime_r(sec)`.
fn local_time(ts: Timespec) -> Result<String, TimeError> {
    let err = TimeError { sec: ts.sec, nsec: ts.nsec };
    let time = Local.timestamp_opt(ts.sec, 0).single().ok_or(err)?;
    let offset = time.offset().fix().local_minus_utc();
    let sign = if offset < 0 { '-' } else { '+' };
    let offset = offset.unsigned_abs() / 60;
    Ok(format!(
        "{}-{:02}-{:02}T{:02}:{:02}:{:02}{sign}{:02}{:02}",
        glibc_year(time.year()),
        time.month(),
        time.day(),
        time.hour(),
        time.minute(),
        time.second(),
        offset / 60,
        offset % 60
    ))
}

/// glibc's `%Y`: at least four digits, a minus sign for years before 0.
fn glibc_year(year: i32) -> String {
    if year < 0 { format!("-{:03}", year.unsigned_abs()) } else { format!("{year:04}") }
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
    fn glibc_year_format() {
        assert_eq!(glibc_year(1970), "1970");
        assert_eq!(glibc_year(999), "0999");
        assert_eq!(glibc_year(12345), "12345");
    }
}
