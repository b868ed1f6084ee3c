//! `rawsend stats`: what a stream holds, without touching any filesystem.
//!
//! Reads the input as `rawsend dump` does (every joined stream, leniently,
//! with the same error locations: [`crate::dump::for_each_item`]) and
//! counts it with [`rawsend_stream::stats::Stats`]; only the summary is
//! printed, as text for people or as one JSON object (`--json`). Command
//! names are those `dump` prints.

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use rawsend_stream::stats::{Algorithm, EncodedBytes, FileExtent, Stats, Subvolume};
use rawsend_stream::{CommandKind, ReaderOptions};
use serde_json::{Map, Value, json};

use crate::dump::{for_each_item, json::bytes_value, open_input};

/// Arguments of `rawsend stats`.
#[derive(Args)]
pub struct StatsArgs {
    /// Read the stream from FILE (a path, file://PATH or s3://BUCKET/KEY) instead of standard input.
    #[arg(short = 'f', value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `rawsend stats`.
pub fn run(args: &StatsArgs) -> Result<()> {
    let mut stats = Stats::default();
    let input = open_input(args.file.as_ref())?;
    for_each_item(input, ReaderOptions::default(), None, 1, "failed to read the send stream", |item| {
        stats.add(item);
        Ok(())
    })?;
    let mut out = io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &to_json(&stats))?;
        writeln!(out)?;
    } else {
        write_text(&mut out, &stats)?;
    }
    Ok(out.flush()?)
}

/// The whole summary as one JSON object.
fn to_json(stats: &Stats) -> Value {
    let commands: Map<String, Value> =
        stats.commands().map(|(kind, count)| (kind.name().to_owned(), count.into())).collect();
    let encoded: Map<String, Value> = used_algorithms(stats)
        .map(|(algorithm, totals)| (algorithm.name().to_owned(), encoded_json(totals)))
        .collect();
    let created = stats.created();
    json!({
        "streams": stats.streams,
        "continuations": stats.continuations,
        "total_commands": stats.total_commands(),
        "commands": commands,
        "write_bytes": stats.write_bytes,
        "encoded": encoded_json(stats.encoded_total()),
        "encoded_by_compression": encoded,
        "clones": { "count": stats.count(CommandKind::Clone), "bytes": stats.clone_bytes },
        "created": {
            "files": created.files,
            "directories": created.directories,
            "symlinks": created.symlinks,
            "special": created.special,
            "links": created.links,
        },
        "largest_files": stats.largest.sorted().into_iter().map(|file| {
            json!({
                "subvolume": subvolume_of(stats, file).map(|s| bytes_value(&s.name)),
                "path": bytes_value(&file.path),
                "end": file.end,
            })
        }).collect::<Vec<_>>(),
        "subvolume_count": stats.subvolume_count,
        "subvolumes": stats.subvolumes.iter().map(subvolume_json).collect::<Vec<_>>(),
    })
}

fn encoded_json(totals: EncodedBytes) -> Value {
    json!({
        "commands": totals.commands,
        "bytes": totals.bytes,
        "unencoded_len": totals.unencoded_len,
        "file_len": totals.file_len,
    })
}

fn subvolume_json(subvolume: &Subvolume) -> Value {
    let (parent_uuid, parent_ctransid) = match subvolume.parent {
        Some((uuid, ctransid)) => (Value::from(uuid.to_string()), Value::from(ctransid)),
        None => (Value::Null, Value::Null),
    };
    json!({
        "name": bytes_value(&subvolume.name),
        "version": subvolume.version,
        "uuid": subvolume.uuid.to_string(),
        "ctransid": subvolume.ctransid,
        "parent_uuid": parent_uuid,
        "parent_ctransid": parent_ctransid,
    })
}

/// The algorithms that ENCODED_WRITE commands used, with their totals.
fn used_algorithms(stats: &Stats) -> impl Iterator<Item = (Algorithm, EncodedBytes)> + '_ {
    Algorithm::ALL.into_iter().map(|a| (a, stats.encoded(a))).filter(|(_, totals)| totals.commands > 0)
}

/// The subvolume a file belongs to, if its record was kept.
fn subvolume_of<'s>(stats: &'s Stats, file: &FileExtent) -> Option<&'s Subvolume> {
    usize::try_from(file.subvolume).ok().and_then(|index| stats.subvolumes.get(index))
}

/// The summary as text for people.
fn write_text(out: &mut impl Write, stats: &Stats) -> io::Result<()> {
    writeln!(out, "streams: {}, subvolumes: {}", stats.streams, stats.subvolume_count)?;
    if stats.continuations > 0 {
        writeln!(out, "continuation markers: {} (a `rawsend send --resume` stream)", stats.continuations)?;
    }
    for subvolume in &stats.subvolumes {
        writeln!(out, "  {}", subvolume_line(subvolume))?;
    }
    if stats.subvolume_count > stats.subvolumes.len() as u64 {
        writeln!(out, "  ... and {} more", stats.subvolume_count - stats.subvolumes.len() as u64)?;
    }
    writeln!(out, "commands: {}", stats.total_commands())?;
    for (kind, count) in stats.commands().filter(|&(_, count)| count > 0) {
        writeln!(out, "  {:<14} {count:>12}", kind.name())?;
    }
    writeln!(out, "data:")?;
    writeln!(out, "  write          {}", size(stats.write_bytes))?;
    let total = stats.encoded_total();
    writeln!(out, "  encoded_write  {} sent, decoding to {}", size(total.bytes), size(total.unencoded_len))?;
    for (algorithm, totals) in used_algorithms(stats) {
        writeln!(
            out,
            "    {:<12} {} commands, {} sent, decoding to {}",
            algorithm.name(),
            totals.commands,
            size(totals.bytes),
            size(totals.unencoded_len)
        )?;
    }
    let clones = stats.count(CommandKind::Clone);
    writeln!(out, "  clone          {clones} commands, {}", size(stats.clone_bytes))?;
    let created = stats.created();
    writeln!(
        out,
        "created: {} files, {} directories, {} symlinks, {} special files, {} hard links",
        created.files, created.directories, created.symlinks, created.special, created.links
    )?;
    write_largest(out, stats)
}

fn write_largest(out: &mut impl Write, stats: &Stats) -> io::Result<()> {
    let files = stats.largest.sorted();
    if files.is_empty() {
        return Ok(());
    }
    writeln!(out, "largest files (highest offset + length written):")?;
    for file in files {
        let subvolume = subvolume_of(stats, file).map_or_else(String::new, |s| lossy(&s.name) + "/");
        writeln!(out, "  {:>14}  {subvolume}{}", file.end, lossy(&file.path))?;
    }
    Ok(())
}

fn subvolume_line(subvolume: &Subvolume) -> String {
    let name = lossy(&subvolume.name);
    let (uuid, ctransid, version) = (subvolume.uuid, subvolume.ctransid, subvolume.version);
    match subvolume.parent {
        None => format!("subvol {name} uuid={uuid} ctransid={ctransid} (protocol {version}, full)"),
        Some((parent, parent_ctransid)) => format!(
            "snapshot {name} uuid={uuid} ctransid={ctransid} parent_uuid={parent} \
             parent_ctransid={parent_ctransid} (protocol {version}, incremental)"
        ),
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `bytes` exactly, and in binary units when that is shorter to read.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = None;
    for name in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = Some(name);
    }
    match unit {
        Some(unit) => format!("{bytes} bytes ({value:.1} {unit})"),
        None => format!("{bytes} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::size;

    #[test]
    fn sizes_are_exact_then_readable() {
        assert_eq!(size(0), "0 bytes");
        assert_eq!(size(1023), "1023 bytes");
        assert_eq!(size(1536), "1536 bytes (1.5 KiB)");
        assert_eq!(size(5 << 30), "5368709120 bytes (5.0 GiB)");
    }
}
