//! `rawsend dump --json`: one JSON object per command (JSON Lines).
//!
//! Every object has `index` (0-based across the input), `offset` (byte
//! offset of the command), `version` (of its stream) and `command` (the
//! lower-case name `btrfs receive --dump` uses), then one key per attribute,
//! named as the attribute (`path`, `path_to`, `file_offset`, ...).
//!
//! Byte strings (paths, link targets, xattr names and values) are JSON
//! strings when they are valid UTF-8, and otherwise `{"hex": "…"}` objects
//! holding every byte, so any name round-trips losslessly and the two forms
//! can never be confused. DATA is given as `data_len`, not its bytes; times
//! as `{"sec": …, "nsec": …}`; UUIDs as 8-4-4-4-12 strings.
//!
//! A command with path attributes that a receive would refuse (`..`,
//! absolute, ...) gets a last key, `invalid`: a list of
//! `{"attribute": "path_to", "reason": "…"}`, one per such attribute. The
//! paths themselves are printed as they are, like every other.

use std::io::{self, Write};

use rawsend_stream::resume::Position;
use rawsend_stream::{Command, RawPath, Record, Timespec};
use serde_json::{Map, Value, json};

/// A byte string as JSON: a string if UTF-8, else `{"hex": ...}`.
pub fn bytes_value(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => Value::String(text.to_owned()),
        Err(_) => json!({ "hex": bytes.iter().map(|b| format!("{b:02x}")).collect::<String>() }),
    }
}

fn time_value(ts: Timespec) -> Value {
    json!({ "sec": ts.sec, "nsec": ts.nsec })
}

/// Writes one record as a JSON line.
pub fn write_record(out: &mut impl Write, record: &Record<'_, RawPath<'_>>) -> io::Result<()> {
    let mut object = Map::new();
    object.insert("index".into(), record.index.into());
    object.insert("offset".into(), record.offset.into());
    object.insert("version".into(), record.version.into());
    object.insert("command".into(), record.command.kind().name().into());
    for (key, value) in attributes(&record.command) {
        object.insert(key.into(), value);
    }
    let invalid: Vec<Value> = record
        .command
        .invalid_paths()
        .map(|bad| json!({ "attribute": bad.attr.name(), "reason": bad.reason.to_string() }))
        .collect();
    if !invalid.is_empty() {
        object.insert("invalid".into(), invalid.into());
    }
    serde_json::to_writer(&mut *out, &Value::Object(object))?;
    out.write_all(b"\n")
}

/// Writes a continuation marker as one JSON object: `"command": "continue"` and the
/// position the continuation starts after.
pub fn write_continuation(
    out: &mut impl Write,
    index: u64,
    offset: u64,
    position: &Position,
) -> io::Result<()> {
    let object = json!({
        "index": index,
        "offset": offset,
        "command": "continue",
        "after_commands": position.commands,
        "after_offset": position.offset,
        "digest": format!("{:016x}", position.digest.0),
    });
    serde_json::to_writer(&mut *out, &object)?;
    out.write_all(b"\n")
}

/// The attributes of a command as (key, value) pairs, in kernel order.
fn attributes(command: &Command<'_, RawPath<'_>>) -> Vec<(&'static str, Value)> {
    let path = |p: RawPath<'_>| bytes_value(p.as_bytes());
    let opt = |v: Option<u64>| v.map_or(Value::Null, Value::from);
    match *command {
        Command::Subvol { path: p, uuid, ctransid } => {
            vec![("path", path(p)), ("uuid", uuid.to_string().into()), ("ctransid", ctransid.into())]
        }
        Command::Snapshot { path: p, uuid, ctransid, clone_uuid, clone_ctransid } => vec![
            ("path", path(p)),
            ("uuid", uuid.to_string().into()),
            ("ctransid", ctransid.into()),
            ("clone_uuid", clone_uuid.to_string().into()),
            ("clone_ctransid", clone_ctransid.into()),
        ],
        Command::Mkfile { path: p, ino } | Command::Mkdir { path: p, ino } => {
            vec![("path", path(p)), ("ino", ino.into())]
        }
        Command::Mknod { path: p, ino, rdev, mode } => {
            vec![("path", path(p)), ("ino", ino.into()), ("rdev", rdev.0.into()), ("mode", mode.into())]
        }
        Command::Mkfifo { path: p, ino, rdev, mode } | Command::Mksock { path: p, ino, rdev, mode } => vec![
            ("path", path(p)),
            ("ino", ino.into()),
            ("rdev", opt(rdev.map(|r| r.0))),
            ("mode", opt(mode)),
        ],
        Command::Symlink { path: p, ino, target } => {
            vec![("path", path(p)), ("ino", ino.into()), ("path_link", bytes_value(target.as_bytes()))]
        }
        Command::Rename { from, to } => vec![("path", path(from)), ("path_to", path(to))],
        Command::Link { path: p, target } => vec![("path", path(p)), ("path_link", path(target))],
        Command::Unlink { path: p } | Command::Rmdir { path: p } => vec![("path", path(p))],
        Command::SetXattr { path: p, name, data } => vec![
            ("path", path(p)),
            ("xattr_name", bytes_value(name.as_bytes())),
            ("xattr_data", bytes_value(data)),
            ("xattr_data_len", data.len().into()),
        ],
        Command::RemoveXattr { path: p, name } => {
            vec![("path", path(p)), ("xattr_name", bytes_value(name.as_bytes()))]
        }
        Command::Write { path: p, offset, data } => {
            vec![("path", path(p)), ("file_offset", offset.into()), ("data_len", data.len().into())]
        }
        Command::Clone { path: p, offset, len, clone_uuid, clone_ctransid, clone_path, clone_offset } => {
            vec![
                ("file_offset", offset.into()),
                ("clone_len", len.into()),
                ("path", path(p)),
                ("clone_uuid", clone_uuid.to_string().into()),
                ("clone_ctransid", clone_ctransid.into()),
                ("clone_path", path(clone_path)),
                ("clone_offset", clone_offset.into()),
            ]
        }
        Command::Truncate { path: p, size } => vec![("path", path(p)), ("size", size.into())],
        Command::Chmod { path: p, mode } => vec![("path", path(p)), ("mode", mode.into())],
        Command::Chown { path: p, uid, gid } => {
            vec![("path", path(p)), ("uid", uid.into()), ("gid", gid.into())]
        }
        Command::Utimes { path: p, atime, mtime, ctime, otime } => vec![
            ("path", path(p)),
            ("atime", time_value(atime)),
            ("mtime", time_value(mtime)),
            ("ctime", time_value(ctime)),
            ("otime", otime.map_or(Value::Null, time_value)),
        ],
        Command::UpdateExtent { path: p, offset, len } => {
            vec![("path", path(p)), ("file_offset", offset.into()), ("size", len.into())]
        }
        Command::Fallocate { path: p, mode, offset, len } => vec![
            ("path", path(p)),
            ("fallocate_mode", mode.into()),
            ("file_offset", offset.into()),
            ("size", len.into()),
        ],
        Command::Fileattr { path: p, attr } => vec![("path", path(p)), ("fileattr", attr.into())],
        Command::EncodedWrite(write) => vec![
            ("path", path(write.path)),
            ("file_offset", write.offset.into()),
            ("unencoded_file_len", write.unencoded_file_len.into()),
            ("unencoded_len", write.unencoded_len.into()),
            ("unencoded_offset", write.unencoded_offset.into()),
            ("compression", opt(write.compression.map(u64::from))),
            ("encryption", opt(write.encryption.map(u64::from))),
            ("data_len", write.data.len().into()),
        ],
        Command::EnableVerity { path: p, algorithm, block_size, salt, sig } => vec![
            ("path", path(p)),
            ("verity_algorithm", algorithm.into()),
            ("verity_block_size", block_size.into()),
            ("verity_salt_data", bytes_value(salt)),
            ("verity_sig_data", bytes_value(sig)),
        ],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_utf8_bytes_become_hex_objects() {
        assert_eq!(bytes_value(b"caf\xc3\xa9"), json!("café"));
        assert_eq!(bytes_value(b"a\xff"), json!({"hex": "61ff"}));
    }
}
