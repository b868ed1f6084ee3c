//! Reading rawsend's journals of unfinished uploads (`rawsend_objstore::Journals`),
//! to see from outside how far an upload got.

use std::fs;
use std::path::Path;

/// The parts recorded in the one journal in `dir`; 0 without a journal (or a directory).
pub fn journal_parts(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    let paths = entries.map(|entry| entry.expect("journal directory entry").path());
    // Not the temporary files a journal is written to before it is renamed.
    let files: Vec<_> = paths.filter(|path| path.extension().is_some_and(|ext| ext == "json")).collect();
    assert!(files.len() <= 1, "one journal per upload: {files:?}");
    let Some(file) = files.first() else { return 0 };
    // Read while rawsend may be renaming a new version over it: both are whole.
    let text = fs::read(file).unwrap_or_default();
    let json: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
    json["parts"].as_array().map_or(0, Vec::len)
}
