//! [`Journals`]: the local record of each unfinished upload, so that an upload
//! cut by a crash, a signal or a lost network continues where it stopped.
//!
//! One JSON file per endpoint, bucket and key (named by a hash of the three)
//! holds the multipart upload's id, the part size and, for every part the
//! server acknowledged, its number, ETag, length and SHA-256. It is rewritten
//! atomically (temporary file, fsync, rename) after each stored part and
//! deleted once the upload completes. It never holds credentials.
//!
//! A continued upload regenerates the stream, and [`crate::ObjectWriter`]
//! uploads again only the parts whose bytes differ from the journal's hash.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::write::hex;

/// The directory of upload journals: `$RAWSEND_STATE_DIR`, else
/// `$XDG_STATE_HOME/rawsend/uploads`, else `$HOME/.local/state/rawsend/uploads`.
#[derive(Clone, Debug)]
pub struct Journals {
    dir: PathBuf,
}

impl Journals {
    /// Journals kept in `dir` (created with mode 0700 when first needed).
    pub fn at(dir: impl Into<PathBuf>) -> Journals {
        Journals { dir: dir.into() }
    }

    /// The directory the environment names; `None` without any of the three variables.
    pub fn from_env() -> Option<Journals> {
        Journals::from_env_with(|name| std::env::var_os(name))
    }

    fn from_env_with(env: impl Fn(&str) -> Option<std::ffi::OsString>) -> Option<Journals> {
        let get = |name| env(name).filter(|value| !value.is_empty()).map(PathBuf::from);
        let dir = get("RAWSEND_STATE_DIR")
            .or_else(|| get("XDG_STATE_HOME").map(|state| state.join("rawsend/uploads")))
            .or_else(|| get("HOME").map(|home| home.join(".local/state/rawsend/uploads")))?;
        Some(Journals::at(dir))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The journal file of `key` in `bucket` at `endpoint`.
    pub(crate) fn file(&self, endpoint: &str, bucket: &str, key: &str) -> PathBuf {
        let id = Sha256::digest(format!("{endpoint}\0{bucket}\0{key}"));
        self.dir.join(format!("{}.json", &hex(&id)[..32]))
    }
}

/// A part the server acknowledged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredPart {
    /// Part number, from 1.
    pub number: usize,
    /// The server's ETag of the part.
    pub etag: String,
    /// Length in bytes.
    pub len: u64,
    /// SHA-256 of its bytes, lowercase hex.
    pub sha256: String,
}

impl StoredPart {
    /// Part `number` with `etag`, made of `bytes`.
    pub fn of(number: usize, etag: String, bytes: &[u8]) -> StoredPart {
        StoredPart { number, etag, len: bytes.len() as u64, sha256: hex(&Sha256::digest(bytes)) }
    }
}

/// The record of one unfinished upload.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Journal {
    pub endpoint: String,
    pub bucket: String,
    pub key: String,
    pub upload_id: String,
    pub part_size: u64,
    /// Stored parts, by number.
    pub parts: Vec<StoredPart>,
    #[serde(skip)]
    pub file: PathBuf,
}

impl Journal {
    /// The journal in `file` if it is one for this upload and part size; an unreadable
    /// or foreign file counts as none (it is replaced).
    pub fn load(file: PathBuf, endpoint: &str, bucket: &str, key: &str, part_size: u64) -> Option<Journal> {
        let text = fs::read(&file).ok()?;
        let journal: Journal = serde_json::from_slice(&text).ok()?;
        let fits = journal.endpoint == endpoint
            && journal.bucket == bucket
            && journal.key == key
            && journal.part_size == part_size;
        fits.then_some(Journal { file, ..journal })
    }

    /// The stored part `number`.
    pub fn part(&self, number: usize) -> Option<&StoredPart> {
        self.parts.iter().find(|part| part.number == number)
    }

    /// Bytes stored in all parts.
    pub fn stored(&self) -> u64 {
        self.parts.iter().map(|part| part.len).sum()
    }

    /// Records `part` (replacing one of the same number) and saves.
    pub fn record(&mut self, part: StoredPart) -> io::Result<()> {
        self.parts.retain(|old| old.number != part.number);
        self.parts.push(part);
        self.parts.sort_by_key(|part| part.number);
        self.save()
    }

    /// Writes the journal atomically: a temporary file, fsync, rename, fsync of the directory.
    pub fn save(&self) -> io::Result<()> {
        let dir = self.file.parent().expect("a journal file is in a directory");
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        let temp = self.temp_file();
        let json = serde_json::to_vec_pretty(self).expect("Journal serializes");
        let written = (|| {
            let mut out =
                OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&temp)?;
            out.write_all(&json)?;
            out.sync_all()?;
            fs::rename(&temp, &self.file)?;
            File::open(dir)?.sync_all()
        })();
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written
    }

    /// Where the next version is written before it is renamed over the journal (one
    /// name, so that a process killed while writing leaves one file, removed with it).
    fn temp_file(&self) -> PathBuf {
        self.file.with_extension("tmp")
    }

    /// Deletes the journal file (and a temporary one a killed process left).
    pub fn remove(&self) -> io::Result<()> {
        for file in [self.temp_file(), self.file.clone()] {
            match fs::remove_file(&file) {
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                other => other?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_directory_follows_the_environment() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| vars.iter().find(|(key, _)| *key == name).map(|(_, value)| (*value).into())
        };
        let dir = |vars| Journals::from_env_with(env(vars)).map(|journals| journals.dir);
        let all = &[("RAWSEND_STATE_DIR", "/s"), ("XDG_STATE_HOME", "/x"), ("HOME", "/h")];
        assert_eq!(dir(all), Some(PathBuf::from("/s")));
        assert_eq!(dir(&all[1..]), Some(PathBuf::from("/x/rawsend/uploads")));
        assert_eq!(dir(&all[2..]), Some(PathBuf::from("/h/.local/state/rawsend/uploads")));
        assert_eq!(
            dir(&[("RAWSEND_STATE_DIR", ""), ("HOME", "/h")]),
            Some(PathBuf::from("/h/.local/state/rawsend/uploads"))
        );
        assert_eq!(dir(&[]), None);
    }

    #[test]
    fn a_journal_is_saved_atomically_and_loaded_only_for_its_upload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journals = Journals::at(dir.path().join("uploads"));
        let file = journals.file("http://e", "b", "k");
        assert_ne!(file, journals.file("http://e", "b", "k2"));
        let mut journal = Journal {
            endpoint: "http://e".into(),
            bucket: "b".into(),
            key: "k".into(),
            upload_id: "u".into(),
            part_size: 8,
            parts: Vec::new(),
            file: file.clone(),
        };
        let part = |number| StoredPart { number, etag: format!("e{number}"), len: 8, sha256: "s".into() };
        journal.record(part(2)).expect("record");
        journal.record(part(1)).expect("record");
        let loaded = Journal::load(file.clone(), "http://e", "b", "k", 8).expect("load");
        assert_eq!(loaded.parts, [part(1), part(2)]);
        assert_eq!(loaded.stored(), 16);
        assert!(Journal::load(file.clone(), "http://e", "b", "k", 16).is_none(), "another part size");
        assert!(Journal::load(file.clone(), "http://other", "b", "k", 8).is_none(), "another endpoint");
        let names: Vec<_> = fs::read_dir(journals.dir())
            .expect("dir")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
        fs::write(file.with_extension("tmp"), b"{").expect("a temporary file left by a kill");
        journal.remove().expect("remove");
        assert_eq!(fs::read_dir(journals.dir()).expect("dir").count(), 0, "both files removed");
        assert!(Journal::load(file, "http://e", "b", "k", 8).is_none());
    }
}
