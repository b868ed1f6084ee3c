//! One unit of data work, done on a worker thread: decode an extent if it is
//! encoded, compress it if asked and worth it, and encode the commands that
//! carry it (one ENCODED_WRITE, or WRITEs).

use rawsend_codec::{Compression, Decoder, Encoder, ExtentFields, MAX_UNENCODED_LEN};
use rawsend_stream::{Command, EncodedWrite, Location, RawPath};

use crate::SECTOR;
use crate::error::{CommandError, Error};
use crate::options::Codec;

/// Largest WRITE of a v1 stream: the kernel's (its 64 KiB buffer less 16 KiB).
const V1_MAX_WRITE: usize = 48 * 1024;
/// The `max_inline` mount option's default: an extent covering a whole file of at
/// most this many (encoded) bytes is stored inline, in the metadata.
const MAX_INLINE: usize = 2048;

/// File data to carry: plain, or an ENCODED_WRITE's extent.
pub(crate) enum Source {
    /// Plain bytes.
    Plain(Vec<u8>),
    /// An encoded extent, checked (see [`Extent::check`]).
    Encoded(Extent),
}

/// An ENCODED_WRITE's extent, owned and with bounds checked.
pub(crate) struct Extent {
    compression: Compression,
    unencoded_len: usize,
    unencoded_offset: usize,
    len: usize,
    data: Vec<u8>,
}

impl Extent {
    /// Checks the fields no receiver accepts wrong and copies the data.
    pub(crate) fn check(write: &EncodedWrite<'_>) -> Result<Extent, CommandError> {
        let fields = ExtentFields {
            offset: write.offset,
            len: write.unencoded_file_len,
            unencoded_len: write.unencoded_len,
            unencoded_offset: write.unencoded_offset,
            compression: write.compression.unwrap_or(0),
            data_len: write.data.len(),
        };
        let compression = fields.check().map_err(CommandError::BadExtent)?;
        if write.encryption.unwrap_or(0) != 0 {
            return Err(CommandError::BadExtent("encrypted"));
        }
        Ok(Extent {
            compression,
            unencoded_len: write.unencoded_len as usize,
            unencoded_offset: write.unencoded_offset as usize,
            len: write.unencoded_file_len as usize,
            data: write.data.to_vec(),
        })
    }
}

/// Data for one extent (at most 128 KiB of file) and how to carry it.
pub(crate) struct Job {
    /// The input command it comes from (the first, for grouped WRITEs).
    pub location: Location,
    /// The file.
    pub path: Vec<u8>,
    /// File offset.
    pub offset: u64,
    /// The data.
    pub source: Source,
    /// Output protocol version.
    pub version: u32,
    /// Compress with this where it saves space.
    pub codec: Option<Codec>,
    /// The receiver accepts an extent end that is not sector-aligned here (the
    /// file's end), so the whole range may be encoded.
    pub unaligned_end: bool,
    /// The range is the whole file: it may be stored inline.
    pub whole_file: bool,
    /// Only check that the encoded source decodes, then output this (its command as it was).
    pub verified: Option<Vec<u8>>,
}

/// A worker's reusable codec state.
#[derive(Default)]
pub(crate) struct Worker {
    encoder: Encoder,
    decoder: Decoder,
    scratch: Vec<u8>,
}

impl Worker {
    /// Appends the commands carrying `job` to `out`.
    pub(crate) fn run(&mut self, job: &Job, out: &mut Vec<u8>) -> Result<(), Error> {
        let Worker { encoder, decoder, scratch } = self;
        let plain: &[u8] = match &job.source {
            Source::Plain(data) => data,
            Source::Encoded(extent) => {
                scratch.resize(extent.unencoded_len, 0);
                decoder
                    .decode(extent.compression, &extent.data, scratch)
                    .map_err(|err| Error::at(&job.location, err))?;
                &scratch[extent.unencoded_offset..extent.unencoded_offset + extent.len]
            }
        };
        if let Some(raw) = &job.verified {
            out.extend_from_slice(raw);
            return Ok(());
        }
        if let Some(codec) = job.codec.filter(|_| encodable(job, plain.len())) {
            let encoded = encoder
                .encode(codec.compression, codec.level, plain)
                .map_err(|err| Error::at(&job.location, err))?;
            if let Some(encoded) = encoded.filter(|e| saves(e.len(), plain.len(), job.whole_file)) {
                return encoded_write(job, codec.compression, plain.len(), &encoded, out);
            }
        }
        write_plain(&job.location, &job.path, job.offset, plain, job.version, out)
    }
}

/// Whether the kernel accepts `len` bytes at the job's offset as an encoded extent.
fn encodable(job: &Job, len: usize) -> bool {
    let end = job.offset + len as u64;
    len > 0 && job.offset % SECTOR == 0 && (end % SECTOR == 0 || job.unaligned_end)
}

/// Whether `encoded` bytes instead of `plain` save space on disk: at least one
/// sector, or, for a whole small file, an inline extent instead of a full sector.
fn saves(encoded: usize, plain: usize, whole_file: bool) -> bool {
    let sectors = |n: usize| n.div_ceil(SECTOR as usize);
    sectors(encoded) < sectors(plain) || (whole_file && encoded <= MAX_INLINE && encoded < plain)
}

fn encoded_write(
    job: &Job,
    compression: Compression,
    len: usize,
    encoded: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let len = len as u64;
    let command = Command::EncodedWrite(EncodedWrite {
        path: RawPath::new(&job.path),
        offset: job.offset,
        unencoded_file_len: len,
        unencoded_len: len,
        unencoded_offset: 0,
        compression: Some(compression.as_raw()),
        encryption: Some(0),
        data: encoded,
    });
    command.encode(job.version, out).map_err(|err| Error::at(&job.location, err))
}

/// Appends WRITEs of `data` at `offset`, each as large as the kernel sends in `version`.
pub(crate) fn write_plain(
    location: &Location,
    path: &[u8],
    offset: u64,
    data: &[u8],
    version: u32,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let chunk = if version < 2 { V1_MAX_WRITE } else { MAX_UNENCODED_LEN };
    let mut at = offset;
    for piece in data.chunks(chunk) {
        let command = Command::Write { path: RawPath::new(path), offset: at, data: piece };
        command.encode(version, out).map_err(|err| Error::at(location, err))?;
        at += piece.len() as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saving_rules() {
        assert!(saves(4096, 8192, false));
        assert!(!saves(4097, 8192, false), "the same number of sectors");
        assert!(!saves(100, 3000, false), "one sector either way");
        assert!(saves(100, 3000, true), "inline instead of a sector");
        assert!(!saves(2049, 3000, true), "above max_inline");
    }
}
