//! Writes send streams: a header, then commands encoded in the kernel's attribute order.

use std::io::{self, Write};

use crate::command::Command;
use crate::error::EncodeError;
use crate::header::StreamHeader;
use crate::path::{PathAttr, RawPath};

/// Encodes commands into a [`Write`], reusing one buffer.
pub struct StreamWriter<W> {
    out: W,
    version: u32,
    buf: Vec<u8>,
}

/// A write failure: the command could not be encoded, or the output failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The command does not fit the format.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The output failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl<W: Write> StreamWriter<W> {
    /// Writes the stream header and returns the writer.
    pub fn new(mut out: W, version: u32) -> io::Result<Self> {
        out.write_all(&StreamHeader { version }.to_bytes())?;
        Ok(StreamWriter { out, version, buf: Vec::new() })
    }

    /// Encodes and writes one command.
    pub fn write(&mut self, command: &Command<'_>) -> Result<(), WriteError> {
        self.write_any(command)
    }

    /// Encodes and writes one command with its paths as they are, also those
    /// a receive refuses: how tests build hostile streams.
    pub fn write_raw(&mut self, command: &Command<'_, RawPath<'_>>) -> Result<(), WriteError> {
        self.write_any(command)
    }

    fn write_any<'c, P: PathAttr<'c>>(&mut self, command: &Command<'c, P>) -> Result<(), WriteError> {
        self.buf.clear();
        command.encode(self.version, &mut self.buf)?;
        self.out.write_all(&self.buf)?;
        Ok(())
    }

    /// Flushes and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}
