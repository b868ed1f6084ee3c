//! Safe wrappers for the btrfs ioctls rawsend needs.
