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
