//! `receive`'s progress messages, as btrfs-progs 6.2 prints them (`cmds/receive.c`).
//!
//! Level 1 (the default): `At subvol NAME` on stderr when a full stream
//! starts a subvolume, `At snapshot NAME` on stdout (flushed at once) when
//! an incremental one does. Level 2 (`-v`): also `receiving subvol|snapshot
//! ...`, each WRITE and CLONE, and `BTRFS_IOC_SET_RECEIVED_SUBVOL ...` when
//! a subvolume is marked received. Level 3 (`-vv`): a line for every other
//! command. Each is printed when the engine is about to do the work, like
//! btrfs-progs, so a wrapper watching the output sees where the receive is.
//! Paths that are not UTF-8 are printed lossily.

use std::io::Write;

use rawsend_receive::Event;
use rawsend_stream::Command;

use crate::meter::Suspender;

/// Which stream a message goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Prints the messages for `event` at verbosity `level`, with a progress bar out of the way.
pub fn print(level: u8, event: Event<'_>, bar: &Suspender) {
    let lines = messages(level, event);
    if lines.is_empty() {
        return;
    }
    bar.run(|| {
        for (stream, line) in lines {
            // Like btrfs-progs' fprintf: a message that cannot be written is not an error.
            let _ = match stream {
                Stream::Stdout => {
                    writeln!(std::io::stdout(), "{line}").and_then(|()| std::io::stdout().flush())
                }
                Stream::Stderr => writeln!(std::io::stderr(), "{line}"),
            };
        }
    });
}

/// The messages btrfs-progs prints for `event` at verbosity `level`, in order.
pub fn messages(level: u8, event: Event<'_>) -> Vec<(Stream, String)> {
    let command = match event {
        Event::Finishing { uuid, ctransid } if level >= 2 => {
            return vec![(
                Stream::Stderr,
                format!("BTRFS_IOC_SET_RECEIVED_SUBVOL uuid={uuid}, stransid={ctransid}"),
            )];
        }
        Event::Finishing { .. } => return Vec::new(),
        Event::AlreadyReceived { name, uuid, .. } if level >= 1 => {
            let name = String::from_utf8_lossy(name);
            return vec![(
                Stream::Stderr,
                format!(
                    "rawsend: {name} is already received (received UUID {uuid}): left as it is, its commands passed over"
                ),
            )];
        }
        Event::AlreadyReceived { .. } => return Vec::new(),
        Event::Checkpoint { .. } | Event::Resuming { .. } => {
            return resume_message(event)
                .filter(|_| level >= 2)
                .map(|line| (Stream::Stderr, line))
                .into_iter()
                .collect();
        }
        Event::Command(command) => command,
    };
    let mut lines = Vec::new();
    match *command {
        Command::Subvol { path, uuid, ctransid } => {
            if level >= 1 {
                lines.push((Stream::Stderr, format!("At subvol {path}")));
            }
            if level >= 2 {
                lines.push((
                    Stream::Stderr,
                    format!("receiving subvol {path} uuid={uuid}, stransid={ctransid}"),
                ));
            }
        }
        Command::Snapshot { path, uuid, ctransid, clone_uuid, clone_ctransid } => {
            if level >= 1 {
                lines.push((Stream::Stdout, format!("At snapshot {path}")));
            }
            if level >= 2 {
                lines.push((
                    Stream::Stderr,
                    format!(
                        "receiving snapshot {path} uuid={uuid}, ctransid={ctransid} \
                         parent_uuid={clone_uuid}, parent_ctransid={clone_ctransid}"
                    ),
                ));
            }
        }
        _ => lines.extend(detail(level, command).map(|line| (Stream::Stderr, line))),
    }
    lines
}

/// rawsend's own `-v` line for a checkpoint or a resume.
fn resume_message(event: Event<'_>) -> Option<String> {
    Some(match event {
        Event::Checkpoint { position, tail } => format!(
            "rawsend: checkpoint after command {}, byte {} of this subvolume's stream ({tail:?}): resume state saved once synced",
            position.commands, position.offset
        ),
        Event::Resuming { position, replay } => format!(
            "rawsend: resuming after command {} (byte {} of this subvolume's stream): the prefix is verified{}",
            position.commands,
            position.offset,
            if replay { "; replaying what a crash may have left half done" } else { "" }
        ),
        _ => return None,
    })
}

/// The `-v` (WRITE, CLONE) and `-vv` lines of the commands inside a subvolume.
fn detail(level: u8, command: &Command<'_>) -> Option<String> {
    let line = match *command {
        Command::Write { path, offset, data } => {
            return (level >= 2).then(|| format!("write {path} - offset={offset} length={}", data.len()));
        }
        Command::Clone { path, offset, len, clone_path, clone_offset, .. } => {
            return (level >= 2).then(|| {
                format!(
                    "clone {path} - source={clone_path} source offset={clone_offset} offset={offset} length={len}"
                )
            });
        }
        _ if level < 3 => return None,
        Command::Mkfile { path, .. } => format!("mkfile {path}"),
        Command::Mkdir { path, .. } => format!("mkdir {path}"),
        Command::Mknod { path, mode, rdev, .. } => format!("mknod {path} mode={mode}, dev={}", rdev.0),
        Command::Mkfifo { path, .. } => format!("mkfifo {path}"),
        Command::Mksock { path, .. } => format!("mksock {path}"),
        Command::Symlink { path, target, .. } => {
            format!("symlink {path} -> {}", String::from_utf8_lossy(target.as_bytes()))
        }
        Command::Rename { from, to } => format!("rename {from} -> {to}"),
        Command::Link { path, target } => format!("link {path} -> {target}"),
        Command::Unlink { path } => format!("unlink {path}"),
        Command::Rmdir { path } => format!("rmdir {path}"),
        Command::SetXattr { path, name, data } => {
            // printf's "%.*s": the data up to its first NUL.
            let shown = data.split(|&byte| byte == 0).next().unwrap_or_default();
            format!(
                "set_xattr {path} - name={} data_len={} data={}",
                String::from_utf8_lossy(name.as_bytes()),
                data.len(),
                String::from_utf8_lossy(shown)
            )
        }
        Command::RemoveXattr { path, name } => {
            format!("remove_xattr {path} - name={}", String::from_utf8_lossy(name.as_bytes()))
        }
        Command::Truncate { path, size } => format!("truncate {path} size={size}"),
        Command::Chmod { path, mode } => format!("chmod {path} - mode=0{mode:o}"),
        Command::Chown { path, uid, gid } => format!("chown {path} - uid={uid}, gid={gid}"),
        Command::Utimes { path, .. } => format!("utimes {path}"),
        Command::UpdateExtent { path, offset, len } => {
            format!("update_extent {path}: offset={offset}, len={len}")
        }
        Command::EncodedWrite(write) => format!(
            "encoded_write {} - offset={}, len={}, unencoded_offset={}, unencoded_file_len={}, \
             unencoded_len={}, compression={}, encryption={}",
            write.path,
            write.offset,
            write.data.len(),
            write.unencoded_offset,
            write.unencoded_file_len,
            write.unencoded_len,
            write.compression.unwrap_or(0),
            write.encryption.unwrap_or(0)
        ),
        Command::Fallocate { path, mode, offset, len } => {
            format!("fallocate {path} - offset={offset}, len={len}, mode={mode}")
        }
        _ => return None,
    };
    Some(line)
}

#[cfg(test)]
mod tests {
    use rawsend_stream::{StreamPath, Uuid};

    use super::*;

    fn path(bytes: &[u8]) -> StreamPath<'_> {
        StreamPath::new(bytes).unwrap()
    }

    #[test]
    fn levels_and_streams_follow_btrfs_progs() {
        let snapshot = Command::Snapshot {
            path: path(b"snap"),
            uuid: Uuid([1; 16]),
            ctransid: 7,
            clone_uuid: Uuid([2; 16]),
            clone_ctransid: 5,
        };
        assert!(messages(0, Event::Command(&snapshot)).is_empty());
        assert_eq!(messages(1, Event::Command(&snapshot)), [(Stream::Stdout, "At snapshot snap".to_owned())]);
        let verbose = messages(2, Event::Command(&snapshot));
        assert_eq!(verbose[1].0, Stream::Stderr);
        assert!(
            verbose[1]
                .1
                .ends_with("ctransid=7 parent_uuid=02020202-0202-0202-0202-020202020202, parent_ctransid=5")
        );

        let write = Command::Write { path: path(b"d/f"), offset: 4096, data: b"abc" };
        assert!(messages(1, Event::Command(&write)).is_empty());
        assert_eq!(messages(2, Event::Command(&write))[0].1, "write d/f - offset=4096 length=3");
        let chmod = Command::Chmod { path: path(b"f"), mode: 0o644 };
        assert!(messages(2, Event::Command(&chmod)).is_empty());
        assert_eq!(messages(3, Event::Command(&chmod))[0].1, "chmod f - mode=0644");
        let xattr = Command::SetXattr {
            path: path(b"f"),
            name: rawsend_stream::XattrName::new(b"user.a").unwrap(),
            data: b"ab\0c",
        };
        assert_eq!(messages(3, Event::Command(&xattr))[0].1, "set_xattr f - name=user.a data_len=4 data=ab");
        let finishing = Event::Finishing { uuid: Uuid([1; 16]), ctransid: 7 };
        assert!(messages(1, finishing).is_empty());
        assert_eq!(
            messages(2, finishing)[0].1,
            "BTRFS_IOC_SET_RECEIVED_SUBVOL uuid=01010101-0101-0101-0101-010101010101, stransid=7"
        );
    }
}
