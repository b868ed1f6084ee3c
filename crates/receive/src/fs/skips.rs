//! Operations the dir target may skip, counted by kind for one warning each.
//!
//! Without privileges a plain-directory receive cannot change owners, create
//! device nodes or set `trusted.`/`security.` xattrs, and some filesystems
//! hold no xattrs at all. The dir target skips such an operation, counts it
//! under a human-readable kind, and the CLI prints one warning per kind.
//! With `--strict`, or on btrfs (where btrfs-progs would fail too), nothing
//! is skipped and the refusal is an error.

use std::collections::BTreeMap;

use rustix::io::Errno;

use crate::error::{ErrorKind, Result};

/// Kind of skip: owner changes.
pub const CHOWN: &str = "chown (changing owners needs privileges)";
/// Kind of skip: device nodes.
pub const DEVICES: &str = "device nodes (creating devices needs privileges)";
/// Kind of skip: set-id bits of files whose owner could not be set (see [`super::setid`]).
pub const SETID: &str = "files' set-id bits (cleared: their owner could not be set, as cp -p does)";
/// Kind of skip: checking a SNAPSHOT parent for later changes (see [`super::fingerprint`]).
pub const UNCHECKED_PARENT: &str = "parent checks for changes since its receive (parent recorded by an older rawsend; a full receive avoids this)";
/// Kind of skip: fs-verity.
pub const VERITY: &str = "fs-verity (not supported by the destination)";

/// Kind of skip: inode flags only btrfs has.
pub const BTRFS_FLAGS: &str = "btrfs-only file attributes (nocow, compression)";
/// Kind of skip: inode flags the destination refuses.
pub const FLAGS: &str = "file attributes (chattr flags the destination refuses or that need privileges)";
/// Errnos with which a destination refuses inode flags.
pub const FLAGS_REFUSALS: [Errno; 4] = [Errno::OPNOTSUPP, Errno::NOTTY, Errno::INVAL, Errno::PERM];

/// Kind of skip for setting the xattr `name`.
pub fn xattr(name: &[u8]) -> &'static str {
    match name {
        n if n.starts_with(b"btrfs.") => "btrfs.* xattrs (btrfs properties, e.g. compression)",
        n if n.starts_with(b"user.") => "user.* xattrs (not supported by the destination)",
        _ => "trusted.*/security.*/system.* xattrs (need privileges or support the destination lacks)",
    }
}

/// Errnos with which a destination refuses an xattr it may not or cannot hold.
pub const XATTR_REFUSALS: [Errno; 2] = [Errno::OPNOTSUPP, Errno::PERM];
/// Errnos with which a destination refuses to remove an xattr: also `ENODATA`, for one
/// that was never set because it was skipped (only for namespaces other than `user.`,
/// where a missing xattr would be a real divergence).
pub fn remove_xattr_refusals(name: &[u8]) -> &'static [Errno] {
    if name.starts_with(b"user.") { &XATTR_REFUSALS } else { &[Errno::OPNOTSUPP, Errno::PERM, Errno::NODATA] }
}

/// Whether refusals may be skipped, and how many were.
#[derive(Debug, Default)]
pub struct Skips {
    allowed: bool,
    counts: BTreeMap<&'static str, u64>,
}

impl Skips {
    /// `allowed`: refusals are counted and skipped instead of failing.
    pub fn new(allowed: bool) -> Self {
        Skips { allowed, counts: BTreeMap::new() }
    }

    /// Passes `result` through, except that a refusal listed in `refusals` is
    /// counted under `what` and skipped when skipping is allowed. `op` names
    /// the operation in the error otherwise.
    pub fn check(
        &mut self,
        result: rustix::io::Result<()>,
        refusals: &[Errno],
        what: &'static str,
        op: &'static str,
    ) -> Result<()> {
        match result {
            Err(errno) if refusals.contains(&errno) && self.skip(what) => Ok(()),
            other => other.map_err(|e| ErrorKind::io(op, e)),
        }
    }

    /// Counts a skip of kind `what` and returns true, or returns false when skipping is not allowed.
    pub fn skip(&mut self, what: &'static str) -> bool {
        if self.allowed {
            *self.counts.entry(what).or_default() += 1;
        }
        self.allowed
    }

    /// Like [`Skips::check`], returning whether the operation was done (`false`: skipped).
    pub fn done(
        &mut self,
        result: rustix::io::Result<()>,
        refusals: &[Errno],
        what: &'static str,
        op: &'static str,
    ) -> Result<bool> {
        let failed = result.is_err();
        self.check(result, refusals, what, op).map(|()| !failed)
    }

    /// Counts by kind.
    pub fn counts(&self) -> &BTreeMap<&'static str, u64> {
        &self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_only_listed_refusals_when_allowed() {
        let mut skips = Skips::new(true);
        assert!(skips.check(Err(Errno::PERM), &[Errno::PERM], "chown", "chown").is_ok());
        assert!(!skips.done(Err(Errno::PERM), &[Errno::PERM], "chown", "chown").unwrap());
        assert!(skips.done(Ok(()), &[Errno::PERM], "chown", "chown").unwrap());
        assert!(skips.check(Err(Errno::IO), &[Errno::PERM], "chown", "chown").is_err());
        assert_eq!(skips.counts().get("chown"), Some(&2));
        let mut strict = Skips::new(false);
        assert!(strict.check(Err(Errno::PERM), &[Errno::PERM], "chown", "chown").is_err());
        assert!(strict.counts().is_empty());
    }
}
