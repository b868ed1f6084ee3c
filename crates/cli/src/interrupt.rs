//! Stopping a receive cleanly on SIGINT, SIGTERM or SIGHUP.
//!
//! The first such signal only sets a flag: the engine stops at the next
//! command boundary, leaves the open subvolume unmarked with its resume
//! state saved (a clean stop: running the same receive again continues
//! exactly there), and the CLI says which subvolume is incomplete, that the
//! same command continues it and that `--abort` discards it, then exits with
//! 128 + the signal's number, as a shell reports a process killed by it. A receive
//! waiting for input on a pipe would not reach a boundary, so its input is
//! read through [`Guarded`], which polls and gives up once the flag is set. A
//! second signal kills at once (its default action), for a user who will not
//! wait for a slow `syncfs`: even then nothing incomplete is ever marked
//! received, since marking is the last step.

use std::io::{self, Read};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::io::Errno;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// How long a read waits for input before it looks at the flag again.
const POLL_INTERVAL: Timespec = Timespec { tv_sec: 0, tv_nsec: 200_000_000 };

/// The signals that stop a receive.
const SIGNALS: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

/// Which stop signal arrived, if any.
pub struct Interrupt {
    flag: Arc<AtomicUsize>,
}

impl Interrupt {
    /// Installs the handlers.
    pub fn watch() -> io::Result<Interrupt> {
        let flag = Arc::new(AtomicUsize::new(0));
        let armed = Arc::new(AtomicBool::new(false));
        for signal in SIGNALS {
            // Order matters: the second signal finds `armed` set and kills.
            signal_hook::flag::register_conditional_default(signal, Arc::clone(&armed))?;
            signal_hook::flag::register(signal, Arc::clone(&armed))?;
            signal_hook::flag::register_usize(signal, Arc::clone(&flag), signal as usize)?;
        }
        Ok(Interrupt { flag })
    }

    /// The flag the engine watches: the signal's number once one arrived.
    pub fn flag(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.flag)
    }

    /// The signal that arrived, if one did.
    pub fn signal(&self) -> Option<Stopped> {
        match self.flag.load(Ordering::SeqCst) {
            0 => None,
            signal => Some(Stopped { signal: signal as i32 }),
        }
    }

    /// `input`, read so that a signal ends a wait for data.
    pub fn guard<R: Read + AsFd>(&self, input: R) -> Guarded<R> {
        Guarded { input, flag: self.flag() }
    }
}

/// A stop signal that arrived.
#[derive(Clone, Copy, Debug)]
pub struct Stopped {
    signal: i32,
}

impl Stopped {
    /// The exit status a shell shows for a process killed by this signal.
    pub fn exit_status(self) -> u8 {
        128 + self.signal as u8
    }

    /// `SIGINT`, `SIGTERM` or `SIGHUP`.
    pub fn name(self) -> &'static str {
        signal_hook::low_level::signal_name(self.signal).unwrap_or("a signal")
    }
}

/// A receive stopped by a signal; `main` exits with the signal's status.
#[derive(Debug, thiserror::Error)]
#[error("stopped by {}: {detail}", stopped.name())]
pub struct Interrupted {
    /// The signal.
    pub stopped: Stopped,
    /// Where the receive stopped and what it left incomplete.
    pub detail: String,
}

/// Input that stops waiting once a stop signal arrived.
pub struct Guarded<R> {
    input: R,
    flag: Arc<AtomicUsize>,
}

impl<R: Read + AsFd> Read for Guarded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.flag.load(Ordering::SeqCst) != 0 {
                // Not `ErrorKind::Interrupted`: readers retry that.
                return Err(io::Error::other("stopped by a signal"));
            }
            let mut fds = [PollFd::new(&self.input, PollFlags::IN)];
            match poll(&mut fds, Some(&POLL_INTERVAL)) {
                Ok(0) | Err(Errno::INTR) => continue,
                Ok(_) => return self.input.read(buf),
                Err(err) => return Err(err.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiting_read_gives_up_once_the_flag_is_set() {
        let (reader, mut writer) = io::pipe().expect("pipe");
        let flag = Arc::new(AtomicUsize::new(0));
        let mut guarded = Guarded { input: reader, flag: Arc::clone(&flag) };
        io::Write::write_all(&mut writer, b"abc").expect("write");
        let mut buf = [0u8; 8];
        assert_eq!(guarded.read(&mut buf).expect("data is there"), 3);
        let setter = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            flag.store(SIGTERM as usize, Ordering::SeqCst);
        });
        let err = guarded.read(&mut buf).expect_err("no data: waits until the flag is set");
        assert_ne!(err.kind(), io::ErrorKind::Interrupted);
        setter.join().expect("setter");
        drop(writer);
    }

    #[test]
    fn exit_status_and_name() {
        let stopped = Stopped { signal: SIGINT };
        assert_eq!((stopped.exit_status(), stopped.name()), (130, "SIGINT"));
        assert_eq!(Stopped { signal: SIGTERM }.exit_status(), 143);
    }
}
