//! The one generic ioctl call every wrapper goes through.
//!
//! rustix's ready-made patterns (`Setter`, `Updater`) discard the ioctl's
//! return value, but `BTRFS_IOC_ENCODED_READ/WRITE` return a byte count, so
//! this module has a single pointer pattern that keeps it.

use core::ffi::{c_int, c_void};
use core::marker::PhantomData;

use rustix::fd::AsFd;
use rustix::ioctl::{Ioctl, IoctlOutput, Opcode};

use crate::error::{Op, Result, failed};

/// An ioctl taking a pointer to a `T` that the kernel may read and write.
struct PtrArg<'a, const OPCODE: Opcode, T> {
    arg: *mut T,
    _borrow: PhantomData<&'a mut T>,
}

// SAFETY: `PtrArg` is only built by `call`, whose contract makes `OPCODE`
// an ioctl that takes a pointer to a `T`. `IS_MUTATING` is true, so the
// kernel may write through the pointer, which borrows `T` mutably for the
// call. The output is the plain return value, read from no pointer.
unsafe impl<const OPCODE: Opcode, T> Ioctl for PtrArg<'_, OPCODE, T> {
    type Output = c_int;

    const IS_MUTATING: bool = true;

    fn opcode(&self) -> Opcode {
        OPCODE
    }

    fn as_ptr(&mut self) -> *mut c_void {
        self.arg.cast()
    }

    unsafe fn output_from_ptr(out: IoctlOutput, _: *mut c_void) -> rustix::io::Result<c_int> {
        Ok(out)
    }
}

/// Issues ioctl `OPCODE` on `fd` with a pointer to `arg`; errors name `op`.
///
/// # Safety
///
/// `OPCODE` must be an ioctl whose argument is a pointer to a `T` with
/// exactly the kernel's layout, and every pointer inside `arg` must be valid
/// for what the kernel does with it (read or write, for the length given)
/// for the duration of the call.
pub(crate) unsafe fn call<const OPCODE: Opcode, T>(op: Op, fd: impl AsFd, arg: &mut T) -> Result<c_int> {
    let ctl = PtrArg::<OPCODE, T> { arg, _borrow: PhantomData };
    // SAFETY: the caller guarantees that `OPCODE` takes a pointer to `T` and
    // that the pointers inside `arg` are valid; `arg` itself is a live
    // mutable borrow for the whole call.
    unsafe { rustix::ioctl::ioctl(fd, ctl) }.map_err(failed(op))
}
