//! One command of look-ahead: a create followed by a rename of what it created
//! becomes one create at the final name.
//!
//! The kernel sends every new inode as a create at an orphan name in the
//! subvolume's root (`o257-12-0`) followed by a RENAME to where it belongs
//! (PROTOCOL.md §3). Applied as sent, that is two directory updates more per
//! inode, and a rename between directories; creating the node at its final
//! name does the same work once. The engine holds back a create ([`Held`]),
//! and when the next command is a RENAME of exactly the created path it
//! creates at the rename's destination instead; when the destination exists
//! (a sender renaming over a name) it falls back to the two commands as sent,
//! so the result is always the one the stream describes. Anything else that
//! follows (another command, an error, the end of the input, an interruption)
//! first applies the held create on its own, or drops it where nothing after
//! it will be applied: a held create is not applied yet, and the resume
//! position does not count it.

use rawsend_stream::{Command, Frame, Location, Record};

use crate::error::Result;

/// A create held back one command (see the module docs): an owned copy of its record.
#[derive(Debug)]
pub(crate) struct Held {
    index: u64,
    offset: u64,
    version: u32,
    raw: Vec<u8>,
}

impl Held {
    /// Holds `record` if it is a create that a rename may follow.
    pub fn of(record: &Record<'_>) -> Option<Held> {
        is_create(&record.command).then(|| Held {
            index: record.index,
            offset: record.offset,
            version: record.version,
            raw: record.raw.to_vec(),
        })
    }

    /// The held record, decoded again from its bytes.
    pub fn record(&self) -> Result<Record<'_>> {
        let frame = Frame::parse(&self.raw, self.version)?;
        let command = Command::decode(&frame)?;
        Ok(Record { index: self.index, offset: self.offset, version: self.version, raw: &self.raw, command })
    }

    /// Where the held create is, for errors (its path is in the error's own text).
    pub fn location(&self) -> Location {
        let command = self.raw.get(4..6).map(|kind| u16::from_le_bytes([kind[0], kind[1]]));
        Location { index: Some(self.index), offset: self.offset, command, path: None }
    }
}

/// Whether `next` renames what the create `created` creates.
pub(crate) fn renames(created: &Command<'_>, next: &Command<'_>) -> bool {
    let Command::Rename { from, .. } = next else { return false };
    created.path().is_some_and(|path| path.as_bytes() == from.as_bytes())
}

/// Whether `command` creates a node.
pub(crate) fn is_create(command: &Command<'_>) -> bool {
    matches!(
        command,
        Command::Mkfile { .. }
            | Command::Mkdir { .. }
            | Command::Mknod { .. }
            | Command::Mkfifo { .. }
            | Command::Mksock { .. }
            | Command::Symlink { .. }
    )
}
