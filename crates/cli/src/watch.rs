//! `send --progress`: the kernel's stream read by rawsend on its way to the output.
//!
//! Without progress the kernel writes the stream into the output itself
//! (rawsend-btrfs `send`). With it, the kernel writes into a pipe, and a
//! thread reads the pipe with a [`StreamReader`] that publishes its counters
//! (bytes, commands, subvolume, path) into the meter's [`ReadProgress`]
//! while every byte it reads is written unchanged into the output. All
//! subvolumes go through one pipe, so `-e` (one stream without inner headers
//! and ENDs) reads as one stream. The reader only watches: if it cannot make
//! sense of the bytes, they are still copied through; if the output fails,
//! the rest of the pipe is read and discarded so that the kernel finishes
//! (a pipe without a reader would kill rawsend with SIGPIPE), and the
//! output's error is reported.

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use anyhow::{Context, Result};
use rawsend_stream::{ReadProgress, StreamReader};

/// Runs `send` with a pipe to write the stream into, and copies what comes out of
/// the pipe into `out`, publishing progress into `progress`.
pub fn through(
    out: BorrowedFd<'_>,
    progress: Arc<ReadProgress>,
    send: impl FnOnce(BorrowedFd<'_>) -> Result<()>,
) -> Result<()> {
    let (pipe, writer) = rustix::pipe::pipe().context("cannot create a pipe")?;
    std::thread::scope(|scope| {
        let relay = scope.spawn(move || relay(pipe, out, progress));
        let sent = send(writer.as_fd());
        drop(writer);
        let relayed = relay.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        sent.and(relayed.context("cannot write the send stream"))
    })
}

/// Reads `pipe` to its end through a watching reader, copying everything into `out`.
fn relay(pipe: OwnedFd, out: BorrowedFd<'_>, progress: Arc<ReadProgress>) -> io::Result<()> {
    let mut tee = Tee { pipe, out, failed: None };
    let mut reader = StreamReader::new(&mut tee).with_progress(progress);
    // A stream error only ends the watching; the copy goes on below.
    while let Ok(Some(_)) = reader.next() {}
    drop(reader);
    io::copy(&mut tee, &mut io::sink())?;
    tee.failed.map_or(Ok(()), Err)
}

/// Reads the pipe and writes what it read into the output; after a failed write
/// it only reads (and remembers the failure).
struct Tee<'a> {
    pipe: OwnedFd,
    out: BorrowedFd<'a>,
    failed: Option<io::Error>,
}

impl Read for Tee<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = retry(|| rustix::io::read(&self.pipe, &mut *buf))?;
        if self.failed.is_none() {
            if let Err(err) = write_all(self.out, &buf[..read]) {
                self.failed = Some(err);
            }
        }
        Ok(read)
    }
}

fn write_all(out: BorrowedFd<'_>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        let written = retry(|| rustix::io::write(out, bytes))?;
        bytes = &bytes[written..];
    }
    Ok(())
}

/// Runs `call` again while it fails with `EINTR`.
fn retry<T>(mut call: impl FnMut() -> rustix::io::Result<T>) -> io::Result<T> {
    loop {
        match call() {
            Err(rustix::io::Errno::INTR) => {}
            other => return other.map_err(io::Error::from),
        }
    }
}
