//! Validated byte strings from the stream: paths, symlink targets, xattr names.
//!
//! Stream paths are untrusted. A [`StreamPath`] is relative, has no `.`, `..`
//! or empty components, no NUL, no component over 255 bytes and at most 4095
//! bytes in all; the empty path names the subvolume root. Receivers can join
//! it beneath a directory without it ever naming anything outside. Symlink
//! targets are opaque link contents and deliberately *not* validated: they are
//! stored, never followed.
//!
//! Inspection wants the opposite: a dump must show the very paths a receive
//! refuses. A [`RawPath`] keeps a path attribute's bytes as they are, with the
//! verdict [`StreamPath::new`] gives them. The two are the only [`PathAttr`]
//! types, the parameter of [`crate::Command`]: the one command decoder builds
//! either, so a `Command<'_, StreamPath>` (the default, all the receiver ever
//! gets) can only hold validated paths, and unvalidated bytes exist only in
//! a `Command<'_, RawPath>` ([`crate::StreamReader::next_lenient`],
//! [`crate::Command::decode_raw`]). The type, not a reader flag, keeps a
//! lenient path out of a receive. Returning the validation error next to an
//! ordinary command was the alternative; it would have needed a `StreamPath`
//! holding unvalidated bytes, and no `StreamPath` could be trusted any more.

use std::fmt;

use thiserror::Error;

/// Longest path, in bytes, without the terminating NUL (`PATH_MAX - 1`).
pub const PATH_MAX: usize = 4095;
/// Longest name component, in bytes (`NAME_MAX`).
pub const NAME_MAX: usize = 255;

/// Why a path attribute was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub enum PathError {
    /// The path starts with `/`.
    #[error("absolute path")]
    Absolute,
    /// A component is `.` or `..`.
    #[error("path has a `.` or `..` component")]
    DotComponent,
    /// Two slashes in a row, or a trailing slash.
    #[error("path has an empty component")]
    EmptyComponent,
    /// An embedded NUL byte.
    #[error("path contains a NUL byte")]
    Nul,
    /// A component longer than [`NAME_MAX`].
    #[error("path component longer than {NAME_MAX} bytes")]
    ComponentTooLong,
    /// The whole path is longer than [`PATH_MAX`].
    #[error("path longer than {PATH_MAX} bytes")]
    TooLong,
    /// An xattr name that is empty or too long.
    #[error("xattr name empty or longer than {NAME_MAX} bytes")]
    BadXattrName,
}

/// A relative path inside the subvolume being received, validated at parse time.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamPath<'a>(&'a [u8]);

impl<'a> StreamPath<'a> {
    /// The subvolume root (`""`).
    pub const ROOT: StreamPath<'static> = StreamPath(b"");

    /// Validates raw bytes as a stream path.
    pub fn new(bytes: &'a [u8]) -> Result<Self, PathError> {
        if bytes.is_empty() {
            return Ok(StreamPath(bytes));
        }
        if bytes.len() > PATH_MAX {
            return Err(PathError::TooLong);
        }
        if bytes[0] == b'/' {
            return Err(PathError::Absolute);
        }
        if bytes.contains(&0) {
            return Err(PathError::Nul);
        }
        for component in bytes.split(|&b| b == b'/') {
            check_component(component)?;
        }
        Ok(StreamPath(bytes))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }

    /// Whether this is the subvolume root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The components, none empty, `.` or `..` (none at all for the root).
    pub fn components(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let bytes = self.0;
        bytes.split(|&b| b == b'/').filter(move |_| !bytes.is_empty())
    }

    /// Splits off the last component: (parent, name). `None` for the root.
    pub fn split_last(&self) -> Option<(StreamPath<'a>, &'a [u8])> {
        if self.is_root() {
            return None;
        }
        Some(match self.0.iter().rposition(|&b| b == b'/') {
            Some(slash) => (StreamPath(&self.0[..slash]), &self.0[slash + 1..]),
            None => (StreamPath::ROOT, self.0),
        })
    }

    /// Whether the path is a single component (a subvolume name must be).
    pub fn is_single_component(&self) -> bool {
        !self.is_root() && !self.0.contains(&b'/')
    }
}

fn check_component(component: &[u8]) -> Result<(), PathError> {
    match component {
        b"" => Err(PathError::EmptyComponent),
        b"." | b".." => Err(PathError::DotComponent),
        c if c.len() > NAME_MAX => Err(PathError::ComponentTooLong),
        _ => Ok(()),
    }
}

impl fmt::Debug for StreamPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.0))
    }
}

impl fmt::Display for StreamPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.0))
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::StreamPath<'_> {}
    impl Sealed for super::RawPath<'_> {}
}

/// What a path attribute decodes to: [`StreamPath`] (validated) or [`RawPath`] (as is).
///
/// Sealed: these two are the only implementations.
pub trait PathAttr<'a>: sealed::Sealed + Copy + fmt::Debug + Eq {
    /// Builds the value from the attribute's bytes; an error refuses the command.
    fn from_attr(bytes: &'a [u8]) -> Result<Self, PathError>;

    /// The raw bytes.
    fn bytes(&self) -> &'a [u8];
}

impl<'a> PathAttr<'a> for StreamPath<'a> {
    fn from_attr(bytes: &'a [u8]) -> Result<Self, PathError> {
        StreamPath::new(bytes)
    }

    fn bytes(&self) -> &'a [u8] {
        self.0
    }
}

/// A path attribute's bytes, unvalidated, with the reason [`StreamPath::new`] refuses them.
///
/// Only for inspecting a stream (`dump`); see the module docs.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RawPath<'a> {
    bytes: &'a [u8],
    problem: Option<PathError>,
}

impl<'a> RawPath<'a> {
    /// Keeps `bytes` as they are and records whether they are a valid [`StreamPath`].
    pub fn new(bytes: &'a [u8]) -> Self {
        RawPath { bytes, problem: StreamPath::new(bytes).err() }
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Why a receive would refuse this path, or `None` if it is a valid [`StreamPath`].
    pub fn problem(&self) -> Option<PathError> {
        self.problem
    }
}

impl<'a> PathAttr<'a> for RawPath<'a> {
    fn from_attr(bytes: &'a [u8]) -> Result<Self, PathError> {
        Ok(RawPath::new(bytes))
    }

    fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

impl fmt::Debug for RawPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.bytes))
    }
}

/// The content of a symbolic link: opaque bytes, stored verbatim and never followed.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SymlinkTarget<'a>(pub &'a [u8]);

impl<'a> SymlinkTarget<'a> {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }
}

impl fmt::Debug for SymlinkTarget<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.0))
    }
}

/// An extended-attribute name with its namespace prefix, e.g. `user.comment`.
///
/// Non-empty, at most 255 bytes, no NUL.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct XattrName<'a>(&'a [u8]);

impl<'a> XattrName<'a> {
    /// Validates raw bytes as an xattr name.
    pub fn new(bytes: &'a [u8]) -> Result<Self, PathError> {
        if bytes.contains(&0) {
            return Err(PathError::Nul);
        }
        if bytes.is_empty() || bytes.len() > NAME_MAX {
            return Err(PathError::BadXattrName);
        }
        Ok(XattrName(bytes))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }
}

impl fmt::Debug for XattrName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_paths_and_root() {
        for ok in [&b""[..], b"a", b"a/b/c", b"o257-8-0", b"sp ace/\xff\xfe", b"..a/a.."] {
            assert!(StreamPath::new(ok).is_ok(), "{ok:?}");
        }
        let name = [b'x'; NAME_MAX];
        assert!(StreamPath::new(&name).is_ok());
    }

    #[test]
    fn rejects_every_escape() {
        let cases: &[(&[u8], PathError)] = &[
            (b"/etc/passwd", PathError::Absolute),
            (b"..", PathError::DotComponent),
            (b"a/../../b", PathError::DotComponent),
            (b"./a", PathError::DotComponent),
            (b"a/.", PathError::DotComponent),
            (b"a//b", PathError::EmptyComponent),
            (b"a/", PathError::EmptyComponent),
            (b"a\0b", PathError::Nul),
        ];
        for (bytes, want) in cases {
            assert_eq!(StreamPath::new(bytes), Err(*want), "{bytes:?}");
        }
        assert_eq!(StreamPath::new(&[b'x'; NAME_MAX + 1]), Err(PathError::ComponentTooLong));
        let long: Vec<u8> = b"abc/".repeat(1024);
        assert_eq!(StreamPath::new(&long[..4096]), Err(PathError::TooLong));
    }

    #[test]
    fn split_last_and_components() {
        let path = StreamPath::new(b"a/b/c").unwrap();
        let (parent, name) = path.split_last().unwrap();
        assert_eq!((parent.as_bytes(), name), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(path.components().count(), 3);
        assert_eq!(StreamPath::ROOT.components().count(), 0);
        assert!(StreamPath::ROOT.split_last().is_none());
        assert!(StreamPath::new(b"top").unwrap().is_single_component());
    }

    #[test]
    fn raw_paths_keep_their_bytes_and_the_strict_verdict() {
        for bytes in [&b"a/b"[..], b"", b"../x", b"/etc", b"a//b", b"a\0b"] {
            let raw = RawPath::new(bytes);
            assert_eq!(raw.as_bytes(), bytes);
            assert_eq!(raw.problem(), StreamPath::new(bytes).err(), "{bytes:?}");
            assert_eq!(<RawPath<'_> as PathAttr<'_>>::from_attr(bytes), Ok(raw));
        }
        assert_eq!(RawPath::new(b"../x").problem(), Some(PathError::DotComponent));
    }

    #[test]
    fn xattr_names() {
        assert!(XattrName::new(b"user.x").is_ok());
        assert_eq!(XattrName::new(b""), Err(PathError::BadXattrName));
        assert_eq!(XattrName::new(b"user.\0"), Err(PathError::Nul));
    }
}
