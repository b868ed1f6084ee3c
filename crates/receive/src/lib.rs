//! Receive engine and targets for btrfs send streams.
