//! SIGPIPE back to its default action, so that a writer dies of it as a C
//! program (and `btrfs send`) does.
//!
//! The Rust runtime ignores SIGPIPE, so a write into a pipe whose reader went
//! away fails with `EPIPE` instead. For a program that writes a stream into
//! a pipeline that is wrong twice over: the kernel's send ioctl writes the
//! pipe itself, and `cmd | head` under `set -o pipefail` must not look like
//! a complete stream. Changing a signal's action has no safe wrapper, so it
//! lives in this crate, the only one allowed `unsafe`.

/// Sets SIGPIPE to its default action (terminate), for the whole process.
///
/// Call it before any thread starts; a later write into a pipe without a
/// reader then kills the process with SIGPIPE (status 141 in a shell).
pub fn default_sigpipe() {
    // SAFETY: `signal` with `SIG_DFL` installs no handler, so no code runs in
    // signal context; it only changes this process's disposition of SIGPIPE,
    // which nothing else in rawsend relies on.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Blocks SIGPIPE on the calling thread only, so that its writes into a pipe
/// without a reader fail with `EPIPE` whatever the process's disposition.
///
/// A SIGPIPE the kernel raises for such a write is directed at the writing
/// thread; blocked, it stays pending there and is discarded when the thread
/// exits. For a thread that runs the send ioctl into a pipe read in-process.
pub(crate) fn block_sigpipe_on_this_thread() {
    // SAFETY: `sigemptyset`/`sigaddset` initialise a local set; `pthread_sigmask`
    // reads it and changes only this thread's mask (no handler, no old set kept).
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}
