//! Where a [`StreamReader`](crate::StreamReader) gets its bytes, and the buffer it keeps them in.
//!
//! From any [`Read`], the reader asks for as much as its buffer holds. From a
//! [`ReadAhead`](crate::ReadAhead), whose thread has already copied the input
//! into blocks, copying each block again into the reader's buffer would cost
//! as much as the `read` the thread took over; instead the reader takes the
//! block itself as its buffer, moving only the unread tail of the old one (at
//! most part of one command) into the room left before the block's data.

use std::io::{self, Read};

use crate::precheck::CrcHints;

/// Bytes asked of a [`Read`] input per read, once the input has shown it is large.
const READ_BLOCK: usize = 1024 * 1024;
/// The buffer's first size when reading a [`Read`]; it doubles up to [`READ_BLOCK`].
const FIRST_BLOCK: usize = 64 * 1024;

/// The reader's buffer: `bytes[start..end]` is read and not yet consumed.
/// Opaque outside this crate.
#[derive(Default)]
pub struct ReadBuffer {
    pub(crate) bytes: Vec<u8>,
    pub(crate) start: usize,
    pub(crate) end: usize,
    /// The input has ended (or failed): nothing more comes.
    pub(crate) eof: bool,
}

/// What a [`StreamReader`](crate::StreamReader) reads: every [`Read`], and a
/// [`ReadAhead`](crate::ReadAhead) (whose blocks it takes without copying).
pub trait Source {
    /// Ensures `want` bytes are buffered in `buffer` if the input has them;
    /// returns how many are.
    fn fill(&mut self, buffer: &mut ReadBuffer, want: usize) -> io::Result<usize>;

    /// The CRCs checked ahead for a reader that starts reading here, if this
    /// source checks them and nothing has been read from it yet: hints are
    /// keyed by offsets from the source's first byte. A reader takes them once,
    /// when it is made.
    fn take_crc_hints(&mut self) -> Option<CrcHints> {
        None
    }
}

impl<R: Read> Source for R {
    fn fill(&mut self, buffer: &mut ReadBuffer, want: usize) -> io::Result<usize> {
        if buffer.available() >= want || buffer.eof {
            return Ok(buffer.available());
        }
        buffer.make_room(want);
        while buffer.available() < want {
            match self.read(&mut buffer.bytes[buffer.end..]) {
                Ok(0) => {
                    buffer.eof = true;
                    break;
                }
                Ok(n) => buffer.end += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        Ok(buffer.available())
    }
}

impl ReadBuffer {
    /// Bytes buffered and not consumed.
    pub(crate) fn available(&self) -> usize {
        self.end - self.start
    }

    /// The unconsumed bytes.
    pub(crate) fn unread(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }

    /// Makes room after the unconsumed bytes for `want` of them in all: moves them to
    /// the front and grows the buffer (doubling, at least to `want`) if need be.
    fn make_room(&mut self, want: usize) {
        if self.bytes.len() - self.start >= want {
            return;
        }
        self.bytes.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        let grown = (self.bytes.len() * 2).clamp(FIRST_BLOCK, READ_BLOCK).max(want);
        if self.bytes.len() < grown {
            self.bytes.resize(grown, 0);
        }
    }

    /// Appends `more` after the unconsumed bytes.
    pub(crate) fn append(&mut self, more: &[u8]) {
        self.make_room(self.available() + more.len());
        self.bytes[self.end..self.end + more.len()].copy_from_slice(more);
        self.end += more.len();
    }

    /// Takes `block` as the buffer if the unconsumed bytes fit in the `room` bytes
    /// before its `len` bytes of data, moving them there; else appends the data.
    /// Returns the buffer no longer used (the old one, or `block`).
    pub(crate) fn take_block(&mut self, mut block: Vec<u8>, room: usize, len: usize) -> Vec<u8> {
        let left = self.available();
        if left > room {
            self.append(&block[room..room + len]);
            return block;
        }
        block[room - left..room].copy_from_slice(self.unread());
        let old = std::mem::replace(&mut self.bytes, block);
        (self.start, self.end) = (room - left, room + len);
        old
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_becomes_the_buffer_with_the_unread_bytes_before_its_data() {
        let mut buffer = ReadBuffer::default();
        buffer.append(b"0123456789");
        buffer.start = 7;
        let block = [&[0; 4][..], b"abc", &[0; 5]].concat();
        let old = buffer.take_block(block, 4, 3);
        assert_eq!(buffer.unread(), b"789abc");
        assert_eq!(&old[..10], b"0123456789");
        // Too much unread for the room: the data is appended, the block handed back.
        let block = [&[0; 2][..], b"xy"].concat();
        let back = buffer.take_block(block.clone(), 2, 2);
        assert_eq!(buffer.unread(), b"789abcxy");
        assert_eq!(back, block);
    }
}
