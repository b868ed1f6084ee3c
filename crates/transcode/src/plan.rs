//! The planner: decides, command by command and in stream order, what the
//! output carries, and hands data work to the workers as [`Job`]s.
//!
//! - With a codec, consecutive WRITEs of one file at contiguous offsets are
//!   gathered into extents of [`MAX_UNENCODED_LEN`] starting at sector
//!   boundaries (a head before the first boundary stays a WRITE); any other
//!   command, another file or a gap ends the extent. An extent whose end is
//!   not sector-aligned is encoded whole only where it ends the file (see
//!   `sizes`); otherwise its last partial sector stays a WRITE.
//! - ENCODED_WRITE passes as it is (test-decoded by a worker first with
//!   [`Options::verify`]), or becomes a job that decodes it (and recompresses
//!   it where asked).
//! - Every other command is copied byte for byte when the output version is
//!   the input's, and re-encoded for the output version otherwise; a v1
//!   output gets a punched hole as WRITEs of zeros and no FILEATTR (v1 has
//!   no inode flags), as the kernel sends v1.

use rawsend_codec::MAX_UNENCODED_LEN;
use rawsend_stream::{Command, CommandKind, EncodedWrite, Location, Record, StreamHeader, StreamPath};

use crate::SECTOR;

/// `FALLOC_FL_PUNCH_HOLE`.
const PUNCH_HOLE: u32 = 2;
use crate::error::{CommandError, Error};
use crate::options::{Codec, Compress, Options};
use crate::sizes::Sizes;
use crate::work::{Extent, Job, Source, write_plain};

/// Where the planner puts its output, in order.
pub(crate) trait Sink {
    /// Output ready now: append to it.
    fn bytes(&mut self) -> &mut Vec<u8>;
    /// Output a worker makes, in this place of the stream.
    fn job(&mut self, job: Job) -> Result<(), Error>;
    /// Called after each input item: a chance to pass output on.
    fn step(&mut self) -> Result<(), Error>;
}

/// WRITE data gathered into an extent.
struct Group {
    location: Location,
    path: Vec<u8>,
    start: u64,
    data: Vec<u8>,
}

impl Group {
    fn end(&self) -> u64 {
        self.start + self.data.len() as u64
    }
}

/// What every job of the current stream is made for.
#[derive(Clone, Copy)]
struct Output {
    /// Output version of the stream being read.
    version: u32,
    codec: Option<Codec>,
}

impl Output {
    fn job(self, location: Location, path: Vec<u8>, offset: u64, source: Source, unaligned_end: bool) -> Job {
        let whole_file = offset == 0 && unaligned_end;
        let Output { version, codec } = self;
        Job { location, path, offset, source, version, codec, unaligned_end, whole_file, verified: None }
    }
}

/// See the module docs.
pub(crate) struct Planner {
    opts: Options,
    out: Output,
    group: Option<Group>,
    sizes: Sizes,
    /// FILEATTR commands left out of v1 output.
    pub(crate) dropped_fileattrs: u64,
}

impl Planner {
    pub(crate) fn new(opts: Options) -> Planner {
        Planner {
            opts,
            out: Output { version: 0, codec: opts.codec() },
            group: None,
            sizes: Sizes::default(),
            dropped_fileattrs: 0,
        }
    }

    /// A stream header of `version` starts a stream.
    pub(crate) fn header(&mut self, version: u32, sink: &mut impl Sink) -> Result<(), Error> {
        self.flush(sink)?;
        self.out.version = self.opts.output_version(version)?;
        sink.bytes().extend_from_slice(&StreamHeader { version: self.out.version }.to_bytes());
        Ok(())
    }

    /// One command of the input.
    pub(crate) fn command(&mut self, record: &Record<'_>, sink: &mut impl Sink) -> Result<(), Error> {
        if let (Command::Write { path, offset, data }, Some(_)) = (&record.command, self.opts.codec()) {
            return self.gather(record, *path, *offset, data, sink);
        }
        self.flush(sink)?;
        self.sizes.track(&record.command);
        match &record.command {
            Command::EncodedWrite(write) => self.encoded(record, write, sink),
            _ => self.convert(record, sink),
        }
    }

    /// Ends the input: what is gathered goes out.
    pub(crate) fn finish(&mut self, sink: &mut impl Sink) -> Result<(), Error> {
        self.flush(sink)
    }

    /// Adds a WRITE to the extent being gathered; full extents go to the workers.
    fn gather(
        &mut self,
        record: &Record<'_>,
        path: StreamPath<'_>,
        offset: u64,
        mut data: &[u8],
        sink: &mut impl Sink,
    ) -> Result<(), Error> {
        let continues = self.group.as_ref().is_some_and(|g| g.path == path.as_bytes() && g.end() == offset);
        if !continues {
            self.flush(sink)?;
        }
        self.sizes.track(&record.command);
        let out = self.out;
        let mut offset = offset;
        if self.group.is_none() && offset % SECTOR != 0 {
            let head = data.len().min((SECTOR - offset % SECTOR) as usize);
            write_plain(
                &location(record),
                path.as_bytes(),
                offset,
                &data[..head],
                self.out.version,
                sink.bytes(),
            )?;
            (offset, data) = (offset + head as u64, &data[head..]);
        }
        let group = self.group.get_or_insert_with(|| Group {
            location: location(record),
            path: path.as_bytes().to_vec(),
            start: offset,
            data: Vec::with_capacity(MAX_UNENCODED_LEN),
        });
        while !data.is_empty() {
            let take = data.len().min(MAX_UNENCODED_LEN - group.data.len());
            group.data.extend_from_slice(&data[..take]);
            data = &data[take..];
            if group.data.len() == MAX_UNENCODED_LEN {
                let next = Group {
                    location: location(record),
                    path: group.path.clone(),
                    start: group.end(),
                    data: Vec::with_capacity(MAX_UNENCODED_LEN),
                };
                let full = std::mem::replace(group, next);
                sink.job(out.job(full.location, full.path, full.start, Source::Plain(full.data), false))?;
            }
        }
        Ok(())
    }

    /// Sends the gathered extent out: its last partial sector as a WRITE unless it ends the file.
    fn flush(&mut self, sink: &mut impl Sink) -> Result<(), Error> {
        let Some(mut group) = self.group.take() else { return Ok(()) };
        let end = group.end();
        let tail_ok = self.ends_file(&group.path, end);
        let tail = if tail_ok { 0 } else { (end % SECTOR) as usize };
        let tail_data = group.data.split_off(group.data.len() - tail);
        if !group.data.is_empty() {
            let job = self.out.job(
                group.location.clone(),
                group.path.clone(),
                group.start,
                Source::Plain(group.data),
                tail_ok,
            );
            sink.job(job)?;
        }
        write_plain(
            &group.location,
            &group.path,
            end - tail as u64,
            &tail_data,
            self.out.version,
            sink.bytes(),
        )
    }

    /// Whether `end` is at or past the end of the file at `path`, as far as known.
    fn ends_file(&self, path: &[u8], end: u64) -> bool {
        self.sizes.get(path).is_some_and(|size| end >= size)
    }

    /// An ENCODED_WRITE: as it is, or decoded (and perhaps recompressed) by a worker.
    fn encoded(
        &mut self,
        record: &Record<'_>,
        write: &EncodedWrite<'_>,
        sink: &mut impl Sink,
    ) -> Result<(), Error> {
        let keep = match self.opts.compress {
            Compress::Keep => true,
            Compress::None => false,
            Compress::With(_) => !self.opts.recompress,
        };
        // v2 and v3 encode ENCODED_WRITE alike.
        let keep = keep && self.out.version >= 2;
        if keep && !self.opts.verify {
            sink.bytes().extend_from_slice(record.raw);
            return Ok(());
        }
        let extent = Extent::check(write).map_err(|err| Error::at(&location(record), err))?;
        if keep {
            let mut job =
                self.out.job(location(record), Vec::new(), write.offset, Source::Encoded(extent), true);
            job.verified = Some(record.raw.to_vec());
            return sink.job(job);
        }
        let end = write.offset + write.unencoded_file_len;
        // The input extent was accepted as it is, so its end may stay where it is.
        let mut job = self.out.job(
            location(record),
            write.path.as_bytes().to_vec(),
            write.offset,
            Source::Encoded(extent),
            true,
        );
        job.whole_file = write.offset == 0 && self.sizes.get(write.path.as_bytes()) == Some(end);
        job.codec = job.codec.filter(|_| self.out.version >= 2);
        sink.job(job)
    }

    /// Any other command: its bytes, or re-encoded for another version.
    fn convert(&mut self, record: &Record<'_>, sink: &mut impl Sink) -> Result<(), Error> {
        let version = self.out.version;
        if record.version == version {
            sink.bytes().extend_from_slice(record.raw);
            return Ok(());
        }
        let located = |kind: CommandError| Error::at(&location(record), kind);
        if let Command::Fallocate { path, mode, offset, len } = record.command
            && version < 2
            && mode & PUNCH_HOLE != 0
        {
            return self.zeros(record, path.as_bytes(), offset, len, sink);
        }
        let needed = match record.command.kind() {
            CommandKind::Fallocate | CommandKind::Fileattr => 2,
            CommandKind::EnableVerity => 3,
            _ => 1,
        };
        if let (Command::Fileattr { .. }, 1) = (&record.command, version) {
            self.dropped_fileattrs += 1;
            return Ok(());
        }
        if version < needed {
            return Err(located(CommandError::NeedsVersion { version, needed }));
        }
        match record.command {
            Command::Write { path, offset, data } => {
                write_plain(&location(record), path.as_bytes(), offset, data, version, sink.bytes())
            }
            // v1 has no OTIME (and no receiver can set it).
            Command::Utimes { path, atime, mtime, ctime, otime: _ } if version < 2 => {
                let command = Command::Utimes { path, atime, mtime, ctime, otime: None };
                command.encode(version, sink.bytes()).map_err(|err| located(err.into()))
            }
            ref command => command.encode(version, sink.bytes()).map_err(|err| located(err.into())),
        }
    }
}

impl Planner {
    /// A punched hole for v1, which has no FALLOCATE: WRITEs of zeros, as the kernel
    /// sends holes in v1, up to the file's end where it is known. Made by the workers
    /// in extents, so a large hole is never held at once.
    fn zeros(
        &self,
        record: &Record<'_>,
        path: &[u8],
        offset: u64,
        len: u64,
        sink: &mut impl Sink,
    ) -> Result<(), Error> {
        let end = offset.saturating_add(len);
        let end = self.sizes.get(path).map_or(end, |size| end.min(size));
        let mut at = offset;
        while at < end {
            let n = (end - at).min(MAX_UNENCODED_LEN as u64);
            sink.job(self.out.job(
                location(record),
                path.to_vec(),
                at,
                Source::Plain(vec![0; n as usize]),
                false,
            ))?;
            at += n;
        }
        Ok(())
    }
}

/// Where `record` is, for errors.
fn location(record: &Record<'_>) -> Location {
    Location {
        index: Some(record.index),
        offset: record.offset,
        command: Some(record.command.kind().raw()),
        path: record.command.path().map(|path| path.as_bytes().to_vec()),
    }
}
