//! `rawsend send --estimate`: the expected size of a send stream, without sending it.
//!
//! Like `zfs send -nv`. The kernel sends each subvolume once more with
//! `NO_FILE_DATA` (the same commands, but each extent's data as an
//! UPDATE_EXTENT, so no file data is read) into a pipe that rawsend reads;
//! [`Estimate`] counts every command as it is and each UPDATE_EXTENT as the
//! WRITEs the real stream would carry. With `--compressed-data` each
//! UPDATE_EXTENT's file extent item is looked up in the subvolume's tree
//! (the file's inode by its path in the snapshot, the item by its offset),
//! and a compressed extent the kernel would send as it is counts as one
//! ENCODED_WRITE of its on-disk size. A path that names no file in the
//! snapshot (an incremental stream's temporary orphan name) counts as plain
//! data. `send` also uses the estimate as its progress total.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;

use anyhow::{Context, Result, bail};
use rawsend_btrfs::{ExtentStorage, SendFlags, SendOptions};
use rawsend_stream::{Command, Estimate, ExtentForm, Item, StreamReader};
use serde_json::json;

use crate::send::{Job, Plan, Subvolume};

/// The estimate of one subvolume's stream.
pub struct SubvolumeEstimate {
    /// The subvolume as given on the command line.
    pub path: String,
    /// What its stream would hold.
    pub estimate: Estimate,
}

/// Estimates the stream `plan` would send, per subvolume.
pub fn estimate(plan: Plan) -> Result<Vec<SubvolumeEstimate>> {
    let mut estimates = Vec::new();
    plan.metadata_only().each(|job| {
        let estimate = estimate_one(&job)
            .with_context(|| format!("cannot estimate the stream of {}", job.subvolume.path.display()))?;
        estimates.push(SubvolumeEstimate { path: job.subvolume.path.display().to_string(), estimate });
        Ok(())
    })?;
    Ok(estimates)
}

/// The sum of `estimates`.
pub fn total(estimates: &[SubvolumeEstimate]) -> u64 {
    estimates.iter().map(|one| one.estimate.bytes).sum()
}

/// Prints `estimates`: a line per subvolume (not with `quiet`) and the total alone
/// on the last line, or one JSON object.
pub fn print(estimates: &[SubvolumeEstimate], as_json: bool, quiet: bool) -> Result<()> {
    let total = total(estimates);
    if as_json {
        let subvolumes: Vec<_> = estimates
            .iter()
            .map(|one| {
                json!({
                    "path": one.path,
                    "bytes": one.estimate.bytes,
                    "data_bytes": one.estimate.data_bytes,
                    "metadata_bytes": one.estimate.metadata_bytes,
                })
            })
            .collect();
        println!("{}", json!({ "bytes": total, "subvolumes": subvolumes }));
        return Ok(());
    }
    if !quiet {
        for one in estimates {
            println!("estimated stream size of {}: {} bytes", one.path, one.estimate.bytes);
        }
    }
    println!("{total}");
    Ok(())
}

/// Sends `job` without data and estimates from what the kernel writes (read from a
/// pipe: `rawsend_btrfs::send_to_reader`). The pass sends a whole stream (header and
/// END) for the reader; what `-e` leaves out is taken off after.
fn estimate_one(job: &Job<'_>) -> Result<Estimate> {
    let flags = job.options.flags;
    let compressed = flags.contains(SendFlags::COMPRESSED);
    let whole = SendOptions {
        flags: if compressed {
            SendFlags::NO_FILE_DATA | SendFlags::COMPRESSED
        } else {
            SendFlags::NO_FILE_DATA
        },
        ..job.options
    };
    let (counted, sent) = rawsend_btrfs::send_to_reader(&job.subvolume.file, &whole, |mut pipe| {
        let counted = count(&mut pipe, job.subvolume, compressed);
        // Whatever happened, read the rest, so that the kernel finishes.
        let _ = std::io::copy(&mut pipe, &mut std::io::sink());
        counted
    })?;
    let mut estimate = sent.map_err(anyhow::Error::from).and(counted)?;
    estimate.omit(flags.contains(SendFlags::OMIT_STREAM_HEADER), flags.contains(SendFlags::OMIT_END_CMD));
    Ok(estimate)
}

/// Counts the metadata-only stream read from `input`.
fn count(input: impl Read, subvolume: &Subvolume, compressed: bool) -> Result<Estimate> {
    let mut reader = StreamReader::new(input);
    let mut estimate = Estimate::default();
    let mut version = 1;
    let mut inodes = InodeCache::default();
    while let Some(item) = reader.next()? {
        let record = match item {
            Item::Header { version: found, .. } => {
                version = found;
                estimate.add_header();
                continue;
            }
            Item::Command(record) => record,
            // Only rawsend writes continuation markers, never the kernel.
            Item::Continue { .. } => bail!("a continuation marker in the kernel's stream"),
        };
        estimate.add_command(version, &record.command, record.raw.len(), || match record.command {
            Command::UpdateExtent { path, offset, len } if compressed => {
                extent_form(subvolume, &mut inodes, path.as_bytes(), offset, len)
            }
            _ => ExtentForm::Plain,
        });
    }
    if estimate.metadata_bytes == 0 {
        bail!("the kernel sent nothing");
    }
    Ok(estimate)
}

/// The inode of the last path looked up (a file's extents come one after another).
#[derive(Default)]
struct InodeCache {
    path: Vec<u8>,
    ino: Option<u64>,
}

impl InodeCache {
    fn lookup(&mut self, subvolume: &Subvolume, path: &[u8]) -> Option<u64> {
        if self.path != path {
            self.path = path.to_vec();
            let path = <OsStr as OsStrExt>::from_bytes(path);
            self.ino = rustix::fs::statat(&subvolume.file, path, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                .ok()
                .map(|stat| stat.st_ino);
        }
        self.ino
    }
}

/// How the real `--compressed-data` send carries the extent at `offset` of `path`,
/// `len` bytes of which are sent: as the kernel decides in `send_extent_data`, one
/// ENCODED_WRITE of the stored bytes if the extent is compressed and they are no more
/// than `len`, else WRITEs.
fn extent_form(
    subvolume: &Subvolume,
    inodes: &mut InodeCache,
    path: &[u8],
    offset: u64,
    len: u64,
) -> ExtentForm {
    let Some(ino) = inodes.lookup(subvolume, path) else { return ExtentForm::Plain };
    let extent = rawsend_btrfs::file_extent(&subvolume.file, subvolume.id, ino, offset).ok().flatten();
    match extent {
        Some(extent) if extent.compression != 0 => match extent.storage {
            ExtentStorage::Inline { len: stored } if stored <= len => {
                ExtentForm::Encoded { data_len: stored, inline: true }
            }
            ExtentStorage::Regular { disk_num_bytes } if disk_num_bytes <= len => {
                ExtentForm::Encoded { data_len: disk_num_bytes, inline: false }
            }
            _ => ExtentForm::Plain,
        },
        _ => ExtentForm::Plain,
    }
}
