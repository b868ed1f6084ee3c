//! The first bytes of a file mapped shared, for records that must outlive the
//! process without costing a system call each time they change.
//!
//! A store into a `MAP_SHARED` mapping lands in the page cache at once: it is
//! what any reader of the file sees, and it survives the process being
//! killed (not a power cut: nothing is synced). rawsend's receive uses it for
//! its progress record, rewritten before every namespace command, where a
//! `pwrite` per command cost about a tenth of the receive time on btrfs.
//!
//! A store is not atomic with respect to a kill: a record rewritten in place
//! may be left torn, so callers keep their own check (rawsend alternates two
//! checksummed slots). The file must stay at least as long as the mapping:
//! truncating it under a live mapping makes the next store fault (SIGBUS).

use core::ptr::NonNull;

use rustix::fd::AsFd;
use rustix::mm::{MapFlags, ProtFlags};

use crate::error::{Error, Op, Result};

/// A shared, writable mapping of a file's first `len` bytes. See the module docs.
#[derive(Debug)]
pub struct SharedMap {
    ptr: NonNull<u8>,
    len: usize,
}

impl SharedMap {
    /// Maps the first `len` (> 0) bytes of `file`, which must be open for reading and
    /// writing and at least `len` bytes long.
    pub fn new(file: impl AsFd, len: usize) -> Result<SharedMap> {
        let size = rustix::fs::fstat(&file).map_err(|errno| Error::Ioctl { op: Op::Mmap, errno })?.st_size;
        if len == 0 || (size as u64) < len as u64 {
            return Err(Error::Ioctl { op: Op::Mmap, errno: rustix::io::Errno::INVAL });
        }
        // SAFETY: a fresh mapping chosen by the kernel (no address hint), so it aliases no
        // Rust object; `len` bytes of the file exist (checked above); the mapping is only
        // accessed through `write`, within `len`, and unmapped once in `drop`.
        let ptr = unsafe {
            rustix::mm::mmap(
                core::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                file,
                0,
            )
        }
        .map_err(|errno| Error::Ioctl { op: Op::Mmap, errno })?;
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or(Error::Ioctl { op: Op::Mmap, errno: rustix::io::Errno::INVAL })?;
        Ok(SharedMap { ptr, len })
    }

    /// Copies `bytes` into the file at `offset`; `false` (and nothing written) when it
    /// does not fit in the mapping.
    pub fn write(&mut self, offset: usize, bytes: &[u8]) -> bool {
        if offset.checked_add(bytes.len()).is_none_or(|end| end > self.len) {
            return false;
        }
        // SAFETY: `offset + bytes.len() <= len` (checked), the mapping is live and
        // writable for `len` bytes, and `bytes` cannot overlap it (it is only reachable
        // through `&mut self`).
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.as_ptr().add(offset), bytes.len()) };
        true
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `len` are exactly what `mmap` returned and was given; nothing
        // uses the mapping after this.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_reach_the_file_and_bounds_are_checked() {
        let file = rustix::fs::memfd_create("shared-map", rustix::fs::MemfdFlags::CLOEXEC).expect("memfd");
        rustix::fs::ftruncate(&file, 64).expect("size");
        let mut map = SharedMap::new(&file, 64).expect("map");
        assert!(map.write(60, b"abcd"));
        assert!(!map.write(61, b"abcd"), "past the end");
        assert!(!map.write(usize::MAX, b"a"), "overflowing offset");
        let mut back = [0u8; 4];
        rustix::io::pread(&file, &mut back, 60).expect("read back");
        assert_eq!(&back, b"abcd");
        assert!(SharedMap::new(&file, 65).is_err(), "longer than the file");
        assert!(SharedMap::new(&file, 0).is_err(), "empty");
    }
}
