//! CRCs checked on the read-ahead thread change nothing the reader reports: on every
//! fixture, on corrupted copies and on random mutations, a reader over a checking
//! [`ReadAhead`] gives the same items and errors, at the same offsets, as a plain one.

use std::fs;
use std::io::{self, Read};

use proptest::prelude::*;
use rawsend_stream::{CheckAhead, Item, ReadAhead, ReaderOptions, Source, StreamReader, V1_FRAME_CAP};
use rawsend_testutil::fixtures::stream_fixtures;

/// An input that returns its bytes in reads of the given sizes, in turn, so that
/// headers and commands straddle the read-ahead's blocks.
struct Trickle {
    bytes: Vec<u8>,
    at: usize,
    sizes: Vec<usize>,
    turn: usize,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let size = self.sizes[self.turn % self.sizes.len()].max(1);
        self.turn += 1;
        let n = size.min(buf.len()).min(self.bytes.len() - self.at);
        buf[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// What one call of `next` (or `next_lenient`) gave, as text: the item or the error.
fn next_text<R: Source>(reader: &mut StreamReader<R>, lenient: bool) -> Option<String> {
    let item = if lenient {
        reader.next_lenient().map(|item| item.map(|item| format!("{item:?}")))
    } else {
        reader.next().map(|item| item.map(|item| format!("{item:?}")))
    };
    match item {
        Ok(item) => item,
        Err(err) => Some(format!("error: {err} / {err:?}")),
    }
}

/// Reads `bytes` plainly and through a checking read-ahead fed in reads of `sizes`,
/// asserting both give the same items and errors; returns how many CRCs were skipped.
fn same_with_and_without_hints(
    bytes: &[u8],
    sizes: &[usize],
    checker: ReaderOptions,
    when: CheckAhead,
    opts: ReaderOptions,
    lenient: bool,
) -> u64 {
    let mut plain = StreamReader::with_options(bytes, opts);
    let input = Trickle { bytes: bytes.to_vec(), at: 0, sizes: sizes.to_vec(), turn: 0 };
    let ahead = ReadAhead::checking_crcs(input, checker, when).unwrap();
    let mut hinted = StreamReader::with_options(ahead, opts);
    for step in 0.. {
        assert!(step < 10_000_000, "the reader does not make progress");
        let want = next_text(&mut plain, lenient);
        let got = next_text(&mut hinted, lenient);
        assert!(got == want, "item {step} differs:\n plain: {want:.300?}\nhinted: {got:.300?}");
        assert_eq!((hinted.offset(), hinted.commands_read()), (plain.offset(), plain.commands_read()));
        if want.is_none() {
            break;
        }
    }
    hinted.prechecked_crcs()
}

/// Both ways with default options, both reading methods, in large reads checked
/// always and small reads checked when the reader is behind.
fn same_both_ways(bytes: &[u8]) -> u64 {
    let opts = ReaderOptions::default();
    let mut skipped = 0;
    let small = &[1, 9, 4093, 65_536, 17][..];
    for (sizes, when, lenient) in
        [(&[1 << 20][..], CheckAhead::Always, false), (small, CheckAhead::WhenBehind, true)]
    {
        skipped += same_with_and_without_hints(bytes, sizes, opts, when, opts, lenient);
    }
    skipped
}

/// (offset, length) of every command of a stream that reads cleanly.
fn commands(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut reader = StreamReader::new(bytes);
    let mut frames = Vec::new();
    while let Some(item) = reader.next().unwrap() {
        if let Item::Command(record) = item {
            frames.push((record.offset as usize, record.raw.len()));
        }
    }
    frames
}

/// Copies of `bytes` each with one fault: a byte flipped in the largest command's
/// payload, in its length, command number and crc fields, in the stream header;
/// cut in the middle of that command; garbage after it, instead of it, between
/// two copies; two copies joined.
fn corrupted(bytes: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let (offset, len) = commands(bytes).into_iter().max_by_key(|&(_, len)| len).unwrap();
    let flipped = |at: usize| {
        let mut copy = bytes.to_vec();
        copy[at] ^= 0x20;
        copy
    };
    let garbage: Vec<u8> = (0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    vec![
        ("payload", flipped(offset + len - 1)),
        ("length", flipped(offset + 1)),
        ("command", flipped(offset + 4)),
        ("crc", flipped(offset + 7)),
        ("magic", flipped(3)),
        ("version", flipped(13)),
        ("truncated", bytes[..offset + len / 2].to_vec()),
        ("garbage after", [bytes, &garbage].concat()),
        ("garbage", garbage.clone()),
        ("garbage between", [bytes, &garbage, bytes].concat()),
        ("joined", [bytes, bytes].concat()),
    ]
}

#[test]
fn every_fixture_and_corrupted_copies_read_the_same_with_hints() {
    let mut skipped = 0;
    for path in stream_fixtures() {
        let bytes = fs::read(&path).unwrap();
        skipped += same_both_ways(&bytes);
        for (fault, copy) in corrupted(&bytes) {
            eprintln!("{} ({fault})", path.display());
            same_both_ways(&copy);
        }
    }
    assert!(skipped > 0, "no CRC was checked ahead: the test compares nothing");
}

#[test]
fn every_command_of_a_fixture_is_checked_ahead() {
    let path = stream_fixtures().into_iter().find(|path| path.ends_with("basic-full.v1.stream")).unwrap();
    let bytes = fs::read(path).unwrap();
    let opts = ReaderOptions::default();
    let count = commands(&bytes).len() as u64;
    let always = CheckAhead::Always;
    assert_eq!(same_with_and_without_hints(&bytes, &[1 << 20], opts, always, opts, false), count);
    assert_eq!(
        same_with_and_without_hints(&bytes, &[1, 9, 4093, 65_536, 17], opts, always, opts, true),
        count
    );
}

/// One change to a stream.
#[derive(Clone, Debug)]
enum Mutation {
    Flip { at: usize, bits: u8 },
    Insert { at: usize, byte: u8 },
    Delete { at: usize, len: usize },
    Truncate { at: usize },
    Repeat { from: usize, len: usize },
}

impl Mutation {
    fn apply(&self, bytes: &mut Vec<u8>) {
        let bound = |at: usize, len: usize| if len == 0 { 0 } else { at % len };
        match *self {
            Mutation::Flip { at, bits } if !bytes.is_empty() => {
                let at = bound(at, bytes.len());
                bytes[at] ^= bits.max(1);
            }
            Mutation::Flip { .. } => {}
            Mutation::Insert { at, byte } => bytes.insert(bound(at, bytes.len() + 1), byte),
            Mutation::Delete { at, len } => {
                let at = bound(at, bytes.len() + 1);
                bytes.drain(at..(at + len).min(bytes.len()));
            }
            Mutation::Truncate { at } => bytes.truncate(bound(at, bytes.len() + 1)),
            Mutation::Repeat { from, len } => {
                let from = bound(from, bytes.len() + 1);
                let copy = bytes[from..(from + len).min(bytes.len())].to_vec();
                bytes.extend_from_slice(&copy);
            }
        }
    }
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(at, bits)| Mutation::Flip { at, bits }),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        1 => (any::<usize>(), 1..40usize).prop_map(|(at, len)| Mutation::Delete { at, len }),
        1 => any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        1 => (any::<usize>(), 1..200_000usize).prop_map(|(from, len)| Mutation::Repeat { from, len }),
    ]
}

fn options() -> impl Strategy<Value = ReaderOptions> {
    (any::<bool>(), prop_oneof![Just(V1_FRAME_CAP), Just(600usize), Just(4 << 20)]).prop_map(
        |(stop_at_end, frame_cap)| ReaderOptions { stop_at_end, frame_cap, ..ReaderOptions::default() },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Random mutations of random fixtures, random read sizes, and reader options
    /// that may differ from the checker's: the same items and errors either way.
    #[test]
    fn mutated_streams_read_the_same_with_hints(
        fixture in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..6),
        sizes in prop::collection::vec(1..200_000usize, 1..5),
        checker in options(),
        always in any::<bool>(),
        opts in options(),
        lenient in any::<bool>(),
    ) {
        let fixtures = stream_fixtures();
        let mut bytes = fs::read(fixture.get(&fixtures)).unwrap();
        for mutation in &mutations {
            mutation.apply(&mut bytes);
        }
        let when = if always { CheckAhead::Always } else { CheckAhead::WhenBehind };
        same_with_and_without_hints(&bytes, &sizes, checker, when, opts, lenient);
    }
}
