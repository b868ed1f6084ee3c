//! `BTRFS_IOC_SEND`: the kernel generates a send stream and writes it
//! straight into a file descriptor (PROTOCOL.md §6).

use core::ops::BitOr;
use std::fs::File;
use std::io::ErrorKind;

use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::FileType;
use rustix::pipe::SpliceFlags;

use crate::error::{Error, Op, Result, failed};
use crate::ioctl::call;
use crate::raw;

/// Flags of a send (`BTRFS_SEND_FLAG_*`); combine them with `|`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendFlags(u64);

impl SendFlags {
    /// No flags: a complete stream with header, data and END.
    pub const NONE: SendFlags = SendFlags(0);
    /// `NO_FILE_DATA`: UPDATE_EXTENT instead of WRITE and CLONE (metadata only).
    pub const NO_FILE_DATA: SendFlags = SendFlags(raw::BTRFS_SEND_FLAG_NO_FILE_DATA);
    /// `OMIT_STREAM_HEADER`: no 17-byte header, to append to another stream.
    pub const OMIT_STREAM_HEADER: SendFlags = SendFlags(raw::BTRFS_SEND_FLAG_OMIT_STREAM_HEADER);
    /// `OMIT_END_CMD`: no END command, so another stream can follow.
    pub const OMIT_END_CMD: SendFlags = SendFlags(raw::BTRFS_SEND_FLAG_OMIT_END_CMD);
    /// `COMPRESSED`: compressed extents as ENCODED_WRITE; needs protocol ≥ 2.
    pub const COMPRESSED: SendFlags = SendFlags(raw::BTRFS_SEND_FLAG_COMPRESSED);

    /// The raw flag bits.
    pub fn bits(self) -> u64 {
        self.0
    }

    /// Whether every flag of `other` is set.
    pub fn contains(self, other: SendFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for SendFlags {
    type Output = SendFlags;

    fn bitor(self, rhs: SendFlags) -> SendFlags {
        SendFlags(self.0 | rhs.0)
    }
}

/// What to send (the subvolume aside).
#[derive(Clone, Copy, Debug)]
pub struct SendOptions<'a> {
    /// Root id of the parent for an incremental send; `None` for a full send.
    pub parent_root: Option<u64>,
    /// Root ids of read-only subvolumes CLONE commands may refer to. The
    /// kernel does not add the parent by itself; pass it here too.
    pub clone_sources: &'a [u64],
    /// Send flags.
    pub flags: SendFlags,
    /// Protocol version (0 = highest); `None` sends v1 without asking.
    pub version: Option<u32>,
}

/// Sends the read-only subvolume open at `subvol_fd` as a send stream into
/// `out_fd`, a file or pipe open for writing.
///
/// The kernel writes the stream itself, and it can write directly only into
/// a pipe or a socket. It writes a regular file (or block device) at its own
/// offset starting from 0, ignoring and not moving the file position, so two
/// sends into one file would overwrite each other; and it refuses outright
/// files it cannot `kernel_write` (character devices such as `/dev/null`:
/// "kernel write not supported"). For every output but a pipe or socket the
/// kernel therefore writes into a pipe, as btrfs-progs always does, and a
/// helper thread moves the pages from it into the output with `splice(2)` at
/// the file position, or, where the output takes no splice (`EINVAL`: a
/// device without splice support, a file opened `O_APPEND`), copies them
/// with `read(2)` and `write(2)`.
///
/// # Errors
///
/// `EPERM` without `CAP_SYS_ADMIN` or when the subvolume, parent or a clone
/// source is not read-only, `EPROTO` for an unsupported version, `EINVAL`
/// for COMPRESSED below protocol 2 or too many clone sources, `ENOENT` for an
/// unknown root id, `EAGAIN` while dedupe runs, `EBADF` if `out_fd` is not
/// writable, `EPIPE` if the reader went away, `ENOTTY` off btrfs; write
/// errors of the output (`ENOSPC`, ...) when relaying.
#[doc(alias = "BTRFS_IOC_SEND")]
pub fn send(subvol_fd: impl AsFd, out_fd: impl AsFd, options: &SendOptions<'_>) -> Result<()> {
    let out_fd = out_fd.as_fd();
    let stat = rustix::fs::fstat(out_fd).map_err(failed(Op::Fstat))?;
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::Fifo | FileType::Socket => send_direct(subvol_fd.as_fd(), out_fd, options),
        _ => {
            let (relayed, sent) = send_to_reader(subvol_fd, options, |pipe| relay(pipe.into(), out_fd))?;
            relayed.and(sent)
        }
    }
}

/// Sends like [`send`], handing the stream to `consume`, which reads it from
/// the read end of a pipe (its argument) while the kernel writes into the
/// other end: for a caller that processes the stream before it goes out.
///
/// Returns what `consume` returned and the result of the send (those of
/// [`send`], except the output's). `consume` must read until EOF, or drop the
/// pipe when it stops early: the kernel then fails with `EPIPE` instead of
/// blocking.
///
/// # Errors
///
/// `Err` only if no pipe could be made (`consume` is then not called).
pub fn send_to_reader<T>(
    subvol_fd: impl AsFd,
    options: &SendOptions<'_>,
    consume: impl FnOnce(File) -> T,
) -> Result<(T, Result<()>)> {
    let (reader, writer) = rustix::pipe::pipe().map_err(failed(Op::Pipe))?;
    // A bigger pipe only saves context switches; the default size works too.
    let _ = rustix::pipe::fcntl_setpipe_size(&writer, PIPE_SIZE);
    let subvol_fd = subvol_fd.as_fd();
    std::thread::scope(|scope| {
        // The kernel writes on a thread of its own with SIGPIPE blocked, so that a
        // consumer stopping early makes the send fail with EPIPE, never kills us.
        let sender = scope.spawn(move || {
            crate::signal::block_sigpipe_on_this_thread();
            send_direct(subvol_fd, writer.as_fd(), options)
        });
        // The consumer owns the read end: when it stops, the kernel's next
        // write fails instead of blocking forever.
        let consumed = consume(File::from(reader));
        let sent = sender.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        Ok((consumed, sent))
    })
}

/// Runs the send ioctl with the kernel writing into `out_fd`.
fn send_direct(subvol_fd: BorrowedFd<'_>, out_fd: BorrowedFd<'_>, options: &SendOptions<'_>) -> Result<()> {
    let mut flags = options.flags.bits();
    if options.version.is_some() {
        flags |= raw::BTRFS_SEND_FLAG_VERSION;
    }
    let mut args = raw::btrfs_ioctl_send_args {
        send_fd: i64::from(out_fd.as_raw_fd()),
        clone_sources_count: options.clone_sources.len() as u64,
        clone_sources: options.clone_sources.as_ptr(),
        parent_root: options.parent_root.unwrap_or(0),
        flags,
        version: options.version.unwrap_or(0),
        reserved: [0; 28],
    };
    // SAFETY: SEND takes a `btrfs_ioctl_send_args`; `clone_sources` points
    // at `clone_sources_count` u64s of a slice borrowed for the call, which
    // the kernel only reads, and `send_fd` is a live borrowed descriptor.
    unsafe { call::<{ raw::BTRFS_IOC_SEND }, _>(Op::Send, subvol_fd, &mut args)? };
    Ok(())
}

/// Pipe size btrfs-progs asks for: one v2 command (16 KiB + 128 KiB data).
const PIPE_SIZE: usize = (16 + 128) * 1024;

/// Moves everything from `pipe` into `out` at its file position, until EOF:
/// spliced, or copied once the output refuses splicing.
fn relay(pipe: OwnedFd, out: BorrowedFd<'_>) -> Result<()> {
    loop {
        match rustix::pipe::splice(&pipe, None, out, None, PIPE_SIZE, SpliceFlags::MORE) {
            Ok(0) => return Ok(()),
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            // A refused splice moved nothing: the data is still in the pipe.
            Err(rustix::io::Errno::INVAL) => return copy(&pipe, out),
            Err(errno) => return Err(failed(Op::Splice)(errno)),
        }
    }
}

/// Copies everything from `pipe` into `out` through a buffer, until EOF.
fn copy(pipe: &OwnedFd, out: BorrowedFd<'_>) -> Result<()> {
    let mut buffer = vec![0u8; PIPE_SIZE];
    loop {
        let read = retry_interrupted(|| rustix::io::read(pipe, &mut buffer[..])).map_err(failed(Op::Read))?;
        if read == 0 {
            return Ok(());
        }
        let mut pending = &buffer[..read];
        while !pending.is_empty() {
            let written = retry_interrupted(|| rustix::io::write(out, pending)).map_err(failed(Op::Write))?;
            pending = &pending[written..];
        }
    }
}

/// Runs `call` again while it fails with `EINTR`.
fn retry_interrupted<T>(mut call: impl FnMut() -> rustix::io::Result<T>) -> rustix::io::Result<T> {
    loop {
        match call() {
            Err(rustix::io::Errno::INTR) => {}
            other => return other,
        }
    }
}

const SEND_STREAM_VERSION_FILE: &str = "/sys/fs/btrfs/features/send_stream_version";

/// The highest send protocol version the running kernel supports, read from
/// `/sys/fs/btrfs/features/send_stream_version`; 1 when that file is missing
/// (kernels before 5.16), as btrfs-progs does.
///
/// # Errors
///
/// [`Error::Sysfs`] if the file exists but cannot be read or parsed.
pub fn max_send_stream_version() -> Result<u32> {
    match std::fs::read_to_string(SEND_STREAM_VERSION_FILE) {
        Ok(text) => {
            text.trim().parse().map_err(|err| Error::Sysfs(std::io::Error::new(ErrorKind::InvalidData, err)))
        }
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(1),
        Err(err) => Err(Error::Sysfs(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_combine() {
        let flags = SendFlags::NO_FILE_DATA | SendFlags::COMPRESSED;
        assert_eq!(flags.bits(), 0x11);
        assert!(flags.contains(SendFlags::COMPRESSED));
        assert!(!flags.contains(SendFlags::OMIT_END_CMD));
    }
}
