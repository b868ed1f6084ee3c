//! The rawsend command-line tool.

fn main() {}
