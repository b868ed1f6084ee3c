//! `-q` / `-v` of `send` and `receive`, with btrfs-progs' levels.
//!
//! btrfs-progs counts one verbosity for the whole command: 1 by default
//! (the historical `At subvol` lines), 0 with `-q`, one more per `-v`, given
//! before the subcommand (`btrfs -v send`) or after it (`btrfs send -v`).
//! Both places end up here, so the two commands print at the same levels.

use clap::Args;

/// How much `send` or `receive` prints.
#[derive(Args, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Verbosity {
    /// Print only errors (also `btrfs -q` before the subcommand).
    #[arg(short, long)]
    pub quiet: bool,
    /// Print more; repeat for more still (also `btrfs -v|--verbose` before the subcommand).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl Verbosity {
    /// btrfs-progs' level: 0 with -q, else 1 + the number of -v.
    pub fn level(self) -> u8 {
        if self.quiet { 0 } else { self.verbose.saturating_add(1) }
    }

    /// These options combined with `btrfs`'s global ones given before the subcommand.
    pub fn with_global(self, global: Verbosity) -> Verbosity {
        Verbosity { quiet: self.quiet || global.quiet, verbose: self.verbose.saturating_add(global.verbose) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_btrfs_progs() {
        let default = Verbosity::default();
        assert_eq!(default.level(), 1);
        assert_eq!(Verbosity { quiet: false, verbose: 2 }.level(), 3);
        assert_eq!(Verbosity { quiet: true, verbose: 2 }.level(), 0);
        let global = Verbosity { quiet: false, verbose: 1 };
        assert_eq!(Verbosity { quiet: false, verbose: 1 }.with_global(global).level(), 3);
        assert_eq!(default.with_global(Verbosity { quiet: true, verbose: 0 }).level(), 0);
    }
}
