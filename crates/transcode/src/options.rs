//! What a transcode does: the data policy ([`Compress`]) and the output version.

use std::fmt;
use std::str::FromStr;

use rawsend_codec::{Compression, levels};
use rawsend_stream::MAX_VERSION;

use crate::error::Error;

/// An algorithm and level to compress extents with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Codec {
    /// zlib, zstd or LZO (4 KiB sectors).
    pub compression: Compression,
    /// The level (zlib 1–9, zstd −15…15 but not 0); `None`: the kernel's default (3).
    pub level: Option<i32>,
}

/// What becomes of file data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compress {
    /// WRITE stays WRITE and ENCODED_WRITE stays as it is, except that a v1 output
    /// gets encoded data decoded (v1 has no ENCODED_WRITE).
    Keep,
    /// Every ENCODED_WRITE is decoded into WRITEs.
    None,
    /// WRITE data is compressed into ENCODED_WRITE where that saves a sector; encoded
    /// data is recompressed with this codec if [`Options::recompress`].
    With(Codec),
}

/// How to transcode.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Output protocol version. `None`: with [`Compress::With`] the input's version
    /// but at least 2 (ENCODED_WRITE needs it), otherwise the input's version.
    pub version: Option<u32>,
    /// What becomes of file data.
    pub compress: Compress,
    /// With [`Compress::With`]: decode and recompress ENCODED_WRITE data too. When
    /// false, encoded extents pass as they are (`send --compress` keeps the kernel's).
    pub recompress: bool,
    /// Test-decode the ENCODED_WRITEs that pass as they are, on the workers, and fail
    /// at the first that does not decode (the kernel stores corrupt extents unchecked;
    /// `receive --compress` checks here instead of in the engine, which would also
    /// re-decode the extents compressed here).
    pub verify: bool,
    /// Compression worker threads (at least one is used).
    pub workers: usize,
}

impl Options {
    /// `compress` with the version chosen automatically, recompression on, no
    /// verification, and one worker per core.
    pub fn new(compress: Compress) -> Options {
        let workers = std::thread::available_parallelism().map_or(1, usize::from);
        Options { version: None, compress, recompress: true, verify: false, workers }
    }

    /// The codec to compress with, if any.
    pub(crate) fn codec(&self) -> Option<Codec> {
        match self.compress {
            Compress::With(codec) => Some(codec),
            Compress::Keep | Compress::None => None,
        }
    }

    /// Checks the explicit version against the data policy.
    pub(crate) fn check(&self) -> Result<(), Error> {
        match self.version {
            Some(version) => self.output_version(version).map(drop),
            None => Ok(()),
        }
    }

    /// The output version for an input stream of `input` version.
    pub(crate) fn output_version(&self, input: u32) -> Result<u32, Error> {
        let auto = if self.codec().is_some() { input.max(2) } else { input };
        let version = self.version.unwrap_or(auto);
        if !(1..=MAX_VERSION).contains(&version) {
            return Err(Error::UnsupportedVersion(version));
        }
        if version < 2 && self.codec().is_some() {
            return Err(Error::CompressNeedsV2(version));
        }
        Ok(version)
    }
}

/// A `--compress` value that is not `keep`, `none`, `zstd[:LEVEL]`, `zlib[:LEVEL]` or `lzo`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid compression {given:?}: {reason}")]
pub struct ParseCompressError {
    given: String,
    reason: String,
}

impl FromStr for Codec {
    type Err = ParseCompressError;

    /// `zstd`, `zstd:LEVEL`, `zlib`, `zlib:LEVEL` or `lzo`.
    fn from_str(s: &str) -> Result<Codec, ParseCompressError> {
        let fail = |reason: String| ParseCompressError { given: s.to_owned(), reason };
        let (name, level) = match s.split_once(':') {
            Some((name, level)) => (
                name,
                Some(level.parse::<i32>().map_err(|_| fail(format!("level {level:?} is not a number")))?),
            ),
            None => (s, None),
        };
        let compression = match name {
            "zstd" => Compression::Zstd,
            "zlib" => Compression::Zlib,
            "lzo" => Compression::Lzo4K,
            _ => return Err(fail("expected zstd[:LEVEL], zlib[:LEVEL] or lzo".to_owned())),
        };
        match (levels(compression), level) {
            (None, Some(_)) => Err(fail(format!("{name} has no levels"))),
            (Some((range, _)), Some(level)) if level == 0 || !range.contains(&level) => {
                Err(fail(format!("{name} levels are {}..={} without 0", range.start(), range.end())))
            }
            _ => Ok(Codec { compression, level }),
        }
    }
}

impl FromStr for Compress {
    type Err = ParseCompressError;

    /// `keep`, `none`, or a [`Codec`].
    fn from_str(s: &str) -> Result<Compress, ParseCompressError> {
        match s {
            "keep" => Ok(Compress::Keep),
            "none" => Ok(Compress::None),
            codec => codec.parse().map(Compress::With),
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.compression.name())?;
        match self.level {
            Some(level) => write!(f, ":{level}"),
            None => Ok(()),
        }
    }
}

impl fmt::Display for Compress {
    /// As parsed: `keep`, `none`, or the codec.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compress::Keep => f.write_str("keep"),
            Compress::None => f.write_str("none"),
            Compress::With(codec) => codec.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_and_refuses_the_rest() {
        let codec = |compression, level| Ok(Compress::With(Codec { compression, level }));
        assert_eq!("zstd".parse(), codec(Compression::Zstd, None));
        assert_eq!("zstd:-5".parse(), codec(Compression::Zstd, Some(-5)));
        assert_eq!("zlib:9".parse(), codec(Compression::Zlib, Some(9)));
        assert_eq!("lzo".parse(), codec(Compression::Lzo4K, None));
        assert_eq!("keep".parse(), Ok(Compress::Keep));
        assert_eq!("none".parse(), Ok(Compress::None));
        for bad in ["zstd:0", "zstd:16", "zlib:10", "lzo:1", "gzip", "zstd:x", ""] {
            assert!(bad.parse::<Compress>().is_err(), "{bad}");
        }
        assert_eq!("zstd:7".parse::<Codec>().map(|c| c.to_string()), Ok("zstd:7".to_owned()));
        for text in ["keep", "none", "zlib:9", "lzo"] {
            assert_eq!(text.parse::<Compress>().map(|c| c.to_string()).as_deref(), Ok(text));
        }
    }

    #[test]
    fn output_version_follows_the_policy() {
        let zstd = Options::new("zstd".parse().expect("valid"));
        assert_eq!(zstd.output_version(1).ok(), Some(2));
        assert_eq!(zstd.output_version(3).ok(), Some(3));
        let keep = Options::new(Compress::Keep);
        assert_eq!(keep.output_version(1).ok(), Some(1));
        let v1_zstd = Options { version: Some(1), ..zstd };
        assert!(matches!(v1_zstd.check(), Err(Error::CompressNeedsV2(1))));
        let v4 = Options { version: Some(4), ..keep };
        assert!(matches!(v4.check(), Err(Error::UnsupportedVersion(4))));
    }
}
