//! Resume on the in-memory model: for every fixture chain, each stream is cut
//! after every command and continued by receiving the whole stream again,
//! both after a clean stop (no replay) and as after a kill (the progress
//! record at the last namespace command, everything up to the cut applied,
//! replayed under the replay rules); the result must equal receiving the
//! stream in one go. A stream that is not the one the partial subvolume was
//! receiving, or whose prefix differs, or a forged state, is refused and the
//! partial subvolume is left as it was.
//!
//! Each cut is also continued the way a pipe is: from the token of the partial
//! subvolume's saved state, the sender's [`write_continuation`] of the whole
//! stream, received instead of the whole stream. A token from further than the
//! partial subvolume reached, or a continuation where there is nothing to
//! continue, is refused.

use std::path::PathBuf;

use rawsend_receive::resume::{Digest, Epoch, Position, Progress, Tail, Token};
use rawsend_receive::{ErrorKind, Failure, ModelTarget, ReceiveOptions, Receiver, Summary, Target};
use rawsend_stream::resume::write_continuation;
use rawsend_stream::{Command, Item, StreamReader};
use rawsend_testutil::fixtures::chains;

/// One command of a stream: where it ends, and whether it changes the namespace.
struct Cut {
    end: usize,
    namespace: bool,
    raw: Vec<u8>,
}

/// Most cut places per stream.
const CUTS: usize = 40;

/// The commands of a file holding one stream of one subvolume (`None` for others).
fn commands(stream: &[u8]) -> Option<Vec<Cut>> {
    let mut reader = StreamReader::new(stream);
    let mut cuts = Vec::new();
    while let Some(item) = reader.next().expect("a valid fixture") {
        if let Item::Header { offset, .. } = item {
            if offset != 0 {
                return None;
            }
        }
        if let Item::Command(record) = item {
            let starts = matches!(record.command, Command::Subvol { .. } | Command::Snapshot { .. });
            if starts && !cuts.is_empty() {
                return None;
            }
            cuts.push(Cut {
                end: (record.offset as usize) + record.raw.len(),
                namespace: rawsend_receive::resume::is_namespace(&record.command),
                raw: record.raw.to_vec(),
            });
        }
    }
    Some(cuts)
}

/// The position after the first `n` commands.
fn position(cuts: &[Cut], n: usize) -> Position {
    cuts[..n].iter().fold(Position::start(17), |position, cut| position.after(&cut.raw))
}

fn receive(model: ModelTarget, bytes: &[u8]) -> (Result<Summary, Failure>, ModelTarget) {
    Receiver::new(model, ReceiveOptions::default()).receive_keeping(bytes)
}

/// The model after receiving `streams` in one go.
fn in_one_go(streams: &[Vec<u8>]) -> ModelTarget {
    streams.iter().fold(ModelTarget::new(), |model, stream| {
        let (outcome, model) = receive(model, stream);
        outcome.expect("an uninterrupted receive");
        model
    })
}

fn assert_same(got: &ModelTarget, want: &ModelTarget, label: &str) {
    assert_eq!(got.subvols.keys().collect::<Vec<_>>(), want.subvols.keys().collect::<Vec<_>>(), "{label}");
    for (name, subvol) in &want.subvols {
        let other = &got.subvols[name];
        assert!(other.by_path(true) == subvol.by_path(true), "{label}: trees differ");
        assert_eq!(other.received, subvol.received, "{label}");
    }
    assert!(got.states.is_empty() && got.progress.is_empty(), "{label}: resume state left behind");
}

/// The epoch the engine writes into progress records on `model`.
fn epoch(model: &ModelTarget) -> Epoch {
    Epoch::current(model.mount).expect("this kernel has a boot id")
}

#[test]
fn every_cut_of_every_chain_resumes_to_the_same_tree() {
    let chains = chains();
    assert!(chains.len() >= 10);
    let mut resumed = 0;
    for chain in chains.iter().filter(|chain| chain.variant() != "v1") {
        let streams: Vec<Vec<u8>> = chain.streams.iter().map(|path| std::fs::read(path).unwrap()).collect();
        let want = in_one_go(&streams);
        for (index, stream) in streams.iter().enumerate() {
            let before = in_one_go(&streams[..index]);
            let Some(cuts) = commands(stream) else { continue };
            let name = subvolume_name(&chain.streams[index]);
            // Cut after the SUBVOL/SNAPSHOT and after later commands but END, at most
            // CUTS places spread over the stream (each is received about four times).
            let step = cuts.len().div_ceil(CUTS);
            for applied in (1..cuts.len()).filter(|n| n % step == 1 % step) {
                let label = format!("{} stream {index} cut after {applied} commands", chain.name);
                let (outcome, partial) = receive(before.clone(), &stream[..cuts[applied - 1].end]);
                let failure = outcome.expect_err("a cut stream fails");
                let state =
                    partial.states.get(&name).unwrap_or_else(|| panic!("{label}: no state: {failure}"));
                assert_eq!(state.tail, Tail::Clean, "{label}");
                let rest = streams[index + 1..].to_vec();
                let all = [vec![stream.clone()], rest.clone()].concat();
                assert_same(&in_one_go_from(partial.clone(), &all), &want, &format!("{label}, clean"));
                let continued = |model: ModelTarget, label: &str| {
                    let all = [vec![continuation(&model, &name, stream)], rest.clone()].concat();
                    assert_same(&in_one_go_from(model, &all), &want, label);
                };
                continued(partial.clone(), &format!("{label}, clean, continued"));
                // What the engine applied: up to the cut, less a create it held back
                // (see `lookahead`) when the cut came between it and its rename.
                let done = usize::try_from(state.position.commands).unwrap();
                assert!(done == applied || done + 1 == applied, "{label}: {done} applied");
                for noted in killed_progress(&cuts, done) {
                    let crashed = as_after_a_kill(partial.clone(), &name, &cuts, noted);
                    let label = format!("{label}, killed with progress at {noted}");
                    assert_same(&in_one_go_from(crashed.clone(), &all), &want, &label);
                    continued(crashed, &format!("{label}, continued"));
                    // Verdicts out since the SUBVOL: the continuation repeats all of it.
                    let behind = as_after_a_kill_checked(partial.clone(), &name, &cuts, noted, Some(1));
                    continued(behind, &format!("{label}, continued from the SUBVOL"));
                }
                resumed += 1;
            }
        }
    }
    assert!(resumed > 400, "only {resumed} cuts");
}

/// The token of the partial subvolume `name` of `model`.
fn token(model: &ModelTarget, name: &[u8]) -> Token {
    let saved = model.clone().saved_resume(name).expect("model").expect("a partial subvolume");
    saved.token(Some(&epoch(model))).expect("a token")
}

/// The continuation of `stream` the sender writes for the partial subvolume `name`.
fn continuation(model: &ModelTarget, name: &[u8], stream: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_continuation(stream, &mut out, &token(model, name)).expect("a continuation");
    out
}

/// Where the progress record may be after a kill with `applied` commands done: before
/// the last namespace command applied, or before the next one if it was about to start.
/// (A create merged with its rename notes progress once, before the create; a record
/// at the rename with the create applied is what a receive without that look-ahead
/// leaves, and must resume too.)
fn killed_progress(cuts: &[Cut], applied: usize) -> Vec<usize> {
    let last = (1..applied).rev().find(|&n| cuts[n].namespace).unwrap_or(1);
    let mut noted = vec![last];
    if cuts.get(applied).is_some_and(|cut| cut.namespace) {
        noted.push(applied);
    }
    noted
}

/// The model as a kill would leave it: the saved state an older periodic checkpoint
/// (after the SUBVOL), the progress record before command `noted` of `cuts`, every
/// extent before it checked.
fn as_after_a_kill(model: ModelTarget, name: &[u8], cuts: &[Cut], noted: usize) -> ModelTarget {
    as_after_a_kill_checked(model, name, cuts, noted, Some(noted))
}

/// [`as_after_a_kill`] with the verdicts of the extents from command `checked` on cut
/// off (`None`: a record of the first format, which does not say).
fn as_after_a_kill_checked(
    mut model: ModelTarget,
    name: &[u8],
    cuts: &[Cut],
    noted: usize,
    checked: Option<usize>,
) -> ModelTarget {
    let state = model.states.get_mut(name).expect("saved state");
    state.tail = Tail::Unknown;
    state.position = position(cuts, 1);
    let (position, checked) = (position(cuts, noted), checked.map(|n| position(cuts, n)));
    let epoch = epoch(&model);
    model.progress.insert(name.to_vec(), Progress { epoch, position, checked });
    model
}

fn in_one_go_from(model: ModelTarget, streams: &[Vec<u8>]) -> ModelTarget {
    streams.iter().fold(model, |model, stream| {
        let (outcome, model) = receive(model, stream);
        outcome.unwrap_or_else(|failure| panic!("resuming: {failure}"));
        model
    })
}

/// The SUBVOL or SNAPSHOT name of a fixture stream.
fn subvolume_name(stream: &PathBuf) -> Vec<u8> {
    let bytes = std::fs::read(stream).unwrap();
    let mut reader = StreamReader::new(&bytes[..]);
    loop {
        if let Some(Item::Command(record)) = reader.next().unwrap() {
            return record.command.path().expect("SUBVOL or SNAPSHOT has a path").as_bytes().to_vec();
        }
    }
}

/// A partial subvolume of the first full fixture, cut after `applied` commands.
fn partial_full(applied: usize) -> (Vec<u8>, ModelTarget, Vec<u8>) {
    let chain = chains().into_iter().find(|chain| chain.variant() == "v2").expect("a v2 chain");
    let stream = std::fs::read(&chain.streams[0]).unwrap();
    let cuts = commands(&stream).expect("one stream");
    let (_, partial) = receive(ModelTarget::new(), &stream[..cuts[applied - 1].end]);
    (stream, partial, subvolume_name(&chain.streams[0]))
}

/// The error of a receive expected to be refused.
fn refusal(model: ModelTarget, stream: &[u8]) -> (String, ModelTarget) {
    let (outcome, model) = receive(model, stream);
    let failure = outcome.expect_err("refused");
    assert!(failure.errors.iter().any(|err| matches!(err.kind, ErrorKind::ResumeRefused(_))), "{failure}");
    (failure.to_string(), model)
}

#[test]
fn a_changed_prefix_is_refused_and_the_partial_subvolume_left_alone() {
    let (stream, partial, name) = partial_full(40);
    let cuts = commands(&stream).expect("one stream");
    // Other data in the prefix (the largest command's last byte, data): same identity,
    // a valid CRC, a different digest.
    let index = (1..40).max_by_key(|&i| cuts[i].raw.len()).unwrap();
    let mut changed = stream.clone();
    changed[cuts[index].end - 1] ^= 0xff;
    let (message, after) = refusal(partial.clone(), &fix_crc(&changed, &cuts, index));
    assert!(message.contains("first 40 commands differ"), "{message}");
    assert_eq!(after.subvols[&name], partial.subvols[&name]);
    assert_eq!(after.states, partial.states);
    // The state still works with the right stream.
    let (outcome, done) = receive(after, &stream);
    outcome.expect("the right stream resumes");
    assert!(done.subvols[&name].received.is_some());
}

/// `stream` with command `index`'s CRC recomputed, so that only its content differs.
fn fix_crc(stream: &[u8], cuts: &[Cut], index: usize) -> Vec<u8> {
    let start = cuts[index].end - cuts[index].raw.len();
    let mut out = stream.to_vec();
    let frame = &mut out[start..cuts[index].end];
    let crc = rawsend_stream::command_crc(frame);
    frame[6..10].copy_from_slice(&crc.to_le_bytes());
    out
}

#[test]
fn another_streams_subvolume_of_that_name_is_refused() {
    let (stream, partial, name) = partial_full(40);
    let mut forged = partial.clone();
    forged.states.get_mut(&name).unwrap().identity.ctransid += 1;
    let (message, after) = refusal(forged.clone(), &stream);
    assert!(message.contains("another stream"), "{message}");
    assert_eq!(after.subvols[&name], partial.subvols[&name]);
    assert_eq!(after.states, forged.states);
}

#[test]
fn a_forged_state_cannot_make_it_skip_unverified_commands() {
    let (stream, partial, name) = partial_full(40);
    let cuts = commands(&stream).expect("one stream");
    // Claims more commands than were applied, with a made-up digest.
    let mut forged = partial.clone();
    let state = forged.states.get_mut(&name).unwrap();
    state.position = Position { commands: 300, offset: cuts[299].end as u64, digest: Digest(12345) };
    let (message, after) = refusal(forged, &stream);
    assert!(message.contains("first 300 commands differ"), "{message}");
    assert_eq!(after.subvols[&name], partial.subvols[&name]);
    // Past the end of the stream.
    let mut forged = partial.clone();
    forged.states.get_mut(&name).unwrap().position.commands = 1_000_000;
    let (message, _) = refusal(forged, &stream);
    assert!(message.contains("ends before"), "{message}");
}

#[test]
fn after_a_restart_or_a_remount_a_crash_past_the_checkpoint_is_refused() {
    let (stream, mut partial, name) = partial_full(40);
    partial.mount = Some(1);
    let crashed = as_after_a_kill(partial, &name, &commands(&stream).unwrap(), 30);
    let mut rebooted = crashed.clone();
    rebooted.progress.get_mut(&name).unwrap().epoch.boot = "00000000-0000-0000-0000-000000000000".into();
    // Mounted again (after an I/O error, say): the record may be on disk ahead of data.
    let mut remounted = crashed.clone();
    remounted.mount = Some(2);
    for crashed in [rebooted, remounted] {
        let (message, after) = refusal(crashed.clone(), &stream);
        assert!(message.contains("cannot be known exactly"), "{message}");
        assert_eq!(after.subvols, crashed.subvols);
    }
    // On the same mount it continues.
    let (outcome, _) = receive(crashed, &stream);
    outcome.expect("continues on the same mount");
}

#[test]
fn without_resume_a_partial_subvolume_is_an_error_and_no_state_is_kept() {
    let (stream, partial, name) = partial_full(40);
    let opts = ReceiveOptions { resume: false, ..ReceiveOptions::default() };
    let (outcome, after) = Receiver::new(partial.clone(), opts).receive_keeping(&stream[..]);
    let failure = outcome.expect_err("the name is taken");
    assert_eq!(after.subvols[&name], partial.subvols[&name], "{failure}");
    let cuts = commands(&stream).expect("one stream");
    let (_, fresh) = Receiver::new(ModelTarget::new(), opts).receive_keeping(&stream[..cuts[39].end]);
    assert!(fresh.states.is_empty() && fresh.progress.is_empty());
}

#[test]
fn checkpoints_come_every_so_many_bytes_and_at_the_start() {
    use std::cell::RefCell;
    use std::rc::Rc;

    use rawsend_receive::Event;
    use rawsend_receive::resume::Checkpoints;

    let chain = chains().into_iter().find(|chain| chain.variant() == "v2").expect("a v2 chain");
    let stream = std::fs::read(&chain.streams[0]).unwrap();
    let every = 8192;
    let checkpoints = Checkpoints { bytes: every, interval: std::time::Duration::from_secs(3600) };
    let opts = ReceiveOptions { checkpoints, ..ReceiveOptions::default() };
    let heard = Rc::new(RefCell::new(Vec::new()));
    let log = Rc::clone(&heard);
    let observe = move |event: Event<'_>| {
        if let Event::Checkpoint { position, tail } = event {
            log.borrow_mut().push((position.offset, tail));
        }
    };
    let (outcome, model) =
        Receiver::new(ModelTarget::new(), opts).observe(observe).receive_keeping(&stream[..]);
    outcome.expect("receives");
    let offsets: Vec<u64> = heard.borrow().iter().map(|&(offset, _)| offset).collect();
    assert!(heard.borrow().iter().all(|&(_, tail)| tail == Tail::Unknown));
    assert!(offsets[0] < 200, "the first checkpoint follows the SUBVOL: {offsets:?}");
    for pair in offsets.windows(2) {
        assert!(pair[1] - pair[0] >= every, "{offsets:?}");
    }
    // Each at the first command boundary once `every` bytes were applied since the last.
    let largest =
        commands(&stream).expect("one stream").iter().map(|cut| cut.raw.len() as u64).max().unwrap();
    for pair in offsets.windows(2) {
        assert!(pair[1] - pair[0] < every + largest, "{offsets:?}");
    }
    assert!(stream.len() as u64 - offsets.last().unwrap() < every + largest, "{offsets:?}");
    assert!(model.states.is_empty(), "the state is removed once the subvolume is complete");
}

#[test]
fn a_token_ahead_of_the_partial_subvolume_is_refused_and_an_older_one_continues_it() {
    let (stream, partial, name) = partial_full(40);
    let (_, earlier, _) = partial_full(20);
    let want = in_one_go(std::slice::from_ref(&stream));
    let ahead = continuation(&partial, &name, &stream);
    let (message, after) = refusal(earlier.clone(), &ahead);
    assert!(message.contains("get a new token"), "{message}");
    assert_eq!(after.subvols[&name], earlier.subvols[&name]);
    assert_eq!(after.states, earlier.states);
    let (outcome, done) = receive(after, &continuation(&earlier, &name, &stream));
    outcome.expect("a fresh token continues it");
    assert_same(&done, &want, "fresh token");
    // An older token: the continuation repeats commands 20 to 40, which are skipped.
    let (outcome, done) = receive(partial, &continuation(&earlier, &name, &stream));
    outcome.expect("an older token continues it");
    assert_same(&done, &want, "older token");
}

#[test]
fn a_continuation_needs_a_partial_subvolume_to_continue() {
    let (stream, partial, name) = partial_full(40);
    let cont = continuation(&partial, &name, &stream);
    for resume in [true, false] {
        let opts = ReceiveOptions { resume, ..ReceiveOptions::default() };
        let (outcome, after) = Receiver::new(ModelTarget::new(), opts).receive_keeping(&cont[..]);
        let failure = outcome.expect_err("nothing to continue");
        let nothing = |err: &rawsend_receive::Error| matches!(err.kind, ErrorKind::NothingToContinue { .. });
        assert!(nothing(&failure.errors[0]), "{failure}");
        assert!(after.subvols.is_empty(), "nothing is created: {failure}");
    }
    let opts = ReceiveOptions { resume: false, ..ReceiveOptions::default() };
    let (outcome, after) = Receiver::new(partial.clone(), opts).receive_keeping(&cont[..]);
    assert!(outcome.is_err());
    assert_eq!(after.subvols[&name], partial.subvols[&name]);
}

#[test]
fn a_marker_must_come_right_before_the_subvolume() {
    let (stream, partial, name) = partial_full(40);
    let cont = continuation(&partial, &name, &stream);
    // Header, marker (42 bytes), then the marker again instead of the SUBVOL.
    let doubled = [&cont[..17 + 42], &cont[17..]].concat();
    let (outcome, after) = receive(partial.clone(), &doubled);
    let failure = outcome.expect_err("two markers");
    assert!(failure.to_string().contains("two continuation markers"), "{failure}");
    assert_eq!(after.subvols[&name], partial.subvols[&name]);
}

#[test]
fn a_rerun_of_several_subvolumes_passes_over_those_already_received() {
    let chain = chains().into_iter().find(|chain| chain.variant() == "v2" && chain.streams.len() > 1);
    let chain = chain.expect("a v2 chain with an incremental");
    let streams: Vec<Vec<u8>> = chain.streams.iter().map(|path| std::fs::read(path).unwrap()).collect();
    let want = in_one_go(&streams);
    let joined = streams.concat();
    let last = streams.last().unwrap();
    let cuts = commands(last).expect("one stream");
    let before_last = joined.len() - last.len();
    for applied in [1, cuts.len() / 2, cuts.len() - 1] {
        let label = format!("{} joined, cut after {applied} commands of the last stream", chain.name);
        let (outcome, partial) = receive(ModelTarget::new(), &joined[..before_last + cuts[applied - 1].end]);
        outcome.expect_err("a cut stream fails");
        let resumed = in_one_go_from(partial, std::slice::from_ref(&joined));
        assert_same(&resumed, &want, &label);
    }
    // A re-run with nothing left to receive fails: the first subvolume is already received.
    let (outcome, after) = receive(want.clone(), &joined);
    let failure = outcome.expect_err("everything is already received");
    assert!(matches!(failure.errors[..], [rawsend_receive::Error { kind: ErrorKind::NameTaken { .. }, .. }]));
    assert_same(&after, &want, "a re-run of a complete receive changes nothing");
    // Without resume, a received subvolume of that name is an error, as with btrfs-progs.
    let opts = ReceiveOptions { resume: false, ..ReceiveOptions::default() };
    let (outcome, _) = Receiver::new(want.clone(), opts).receive_keeping(&joined[..]);
    assert!(outcome.is_err(), "--no-resume receives nothing twice");
    // Another stream's subvolume of the same name is never passed over.
    let mut other = want.clone();
    let first = subvolume_name(&chain.streams[0]);
    other.subvols.get_mut(&first).unwrap().received.as_mut().unwrap().1 += 1;
    let (outcome, _) = receive(other, &joined);
    assert!(outcome.is_err(), "a subvolume received from another ctransid is not this one");
}

/// A v2 stream: subvolume `vol`, file `f` with one encoded extent of `data` (zstd), then
/// files `g` and `h` (namespace commands after the extent); and where each command ends.
fn stream_with_extent(data: &[u8]) -> (Vec<u8>, Vec<Cut>) {
    use rawsend_stream::{EncodedWrite, StreamHeader, StreamPath, Uuid};
    let path = |name: &'static [u8]| StreamPath::new(name).unwrap();
    let write = EncodedWrite {
        path: path(b"f"),
        offset: 0,
        unencoded_file_len: 4096,
        unencoded_len: 4096,
        unencoded_offset: 0,
        compression: Some(2),
        encryption: None,
        data,
    };
    let sent = [
        Command::Subvol { path: path(b"vol"), uuid: Uuid::NIL, ctransid: 7 },
        Command::Mkfile { path: path(b"f"), ino: 257 },
        Command::EncodedWrite(write),
        Command::Mkfile { path: path(b"g"), ino: 258 },
        Command::Mkfile { path: path(b"h"), ino: 259 },
        Command::End,
    ];
    let mut bytes = StreamHeader { version: 2 }.to_bytes().to_vec();
    for command in &sent {
        command.encode(2, &mut bytes).unwrap();
    }
    let cuts = commands(&bytes).expect("one subvolume");
    (bytes, cuts)
}

/// A model that stores encoded extents unchecked, as btrfs does.
fn storing_encoded() -> ModelTarget {
    let mut model = ModelTarget::new();
    model.stores_encoded = true;
    model
}

/// A corrupt extent (the kernel would store it; only the engine's test-decode sees it)
/// makes its subvolume unresumable: running the same stream again must not skip the
/// extent and mark the subvolume received.
#[test]
fn a_corrupt_extent_is_never_resumed_past() {
    let (stream, _) = stream_with_extent(b"not zstd at all");
    let target = storing_encoded();
    let (outcome, model) = receive(target, &stream);
    let failure = outcome.expect_err("a corrupt extent fails the receive");
    assert!(failure.to_string().contains("encoded data"), "{failure}");
    assert!(!model.progress.contains_key(&b"vol"[..]), "no progress past the extent is left");
    let (outcome, model) = receive(model, &stream);
    assert!(outcome.is_err(), "the same stream again is refused or fails");
    assert!(model.subvols[&b"vol"[..]].received.is_none(), "never marked received");
}

/// After a kill, progress may have been noted past an extent whose verdict never came:
/// a re-run that skips to that progress test-decodes the extents it skips after the
/// saved state, and fails on a corrupt one rather than completing the subvolume.
#[test]
fn extents_skipped_past_the_saved_state_are_test_decoded() {
    let plain = [7u8; 4096];
    let good = rawsend_codec::encode(rawsend_codec::Compression::Zstd, None, &plain).unwrap().unwrap();
    let mut corrupt = good.clone();
    corrupt.truncate(good.len() / 2);
    for (data, completes) in [(&good, true), (&corrupt, false)] {
        let (stream, cuts) = stream_with_extent(data);
        // As a kill would leave it: everything but END applied, its last progress
        // record at MKFILE h, the saved state the start.
        let cut = cuts.len() - 1;
        let target = storing_encoded();
        let (_, model) = receive(target, &stream[..cuts[cut - 1].end]);
        let model = as_after_a_kill(model, b"vol", &cuts, cut - 1);
        let (outcome, model) = receive(model, &stream);
        assert_eq!(outcome.is_ok(), completes, "{outcome:?}");
        assert_eq!(model.subvols[&b"vol"[..]].received.is_some(), completes);
    }
}

/// A continuation after a kill starts where the verdicts the kill cut off begin, not
/// where the receive continues: the extents between come again, are test-decoded as
/// they are skipped, and a corrupt one fails the subvolume. A record of the first
/// format does not say where: the continuation starts at the saved state.
#[test]
fn a_continuation_after_a_kill_brings_the_extents_not_yet_checked() {
    let plain = [7u8; 4096];
    let good = rawsend_codec::encode(rawsend_codec::Compression::Zstd, None, &plain).unwrap().unwrap();
    let corrupt = &good[..good.len() / 2];
    for (data, completes) in [(&good[..], true), (corrupt, false)] {
        let (stream, cuts) = stream_with_extent(data);
        let cut = cuts.len() - 1;
        let (_, model) = receive(storing_encoded(), &stream[..cuts[cut - 1].end]);
        let noted = cut - 1;
        for (checked, from) in [(Some(2), 2), (None, 1)] {
            let model = as_after_a_kill_checked(model.clone(), b"vol", &cuts, noted, checked);
            assert_eq!(token(&model, b"vol").position, position(&cuts, from));
            let sent = continuation(&model, b"vol", &stream);
            let (outcome, model) = receive(model, &sent);
            assert_eq!(outcome.is_ok(), completes, "{checked:?}: {outcome:?}");
            assert_eq!(model.subvols[&b"vol"[..]].received.is_some(), completes);
        }
        // A continuation from where the receive continues (an old token, a sender that
        // ignores it) would leave the extent unchecked: refused.
        let kill = as_after_a_kill_checked(model.clone(), b"vol", &cuts, noted, Some(2));
        let identity = token(&kill, b"vol").identity;
        let late = Token { identity, position: position(&cuts, noted) };
        let mut sent = Vec::new();
        write_continuation(&stream[..], &mut sent, &late).expect("a continuation");
        let (message, after) = refusal(kill.clone(), &sent);
        assert!(message.contains("needs the commands after command 2"), "{message}");
        assert_eq!(after.subvols, kill.subvols);
        // With every verdict in, the token is where the receive continues.
        let model = as_after_a_kill(model, b"vol", &cuts, noted);
        assert_eq!(token(&model, b"vol").position, position(&cuts, noted));
    }
}

/// The engine notes where the extents whose verdict is still out begin: one extent
/// never fills a batch, so the creates after it are noted with the extent's position.
#[test]
fn progress_notes_say_where_the_unchecked_extents_begin() {
    let plain = [7u8; 4096];
    let good = rawsend_codec::encode(rawsend_codec::Compression::Zstd, None, &plain).unwrap().unwrap();
    let (stream, cuts) = stream_with_extent(&good);
    let (outcome, model) = receive(storing_encoded(), &stream);
    outcome.expect("receives");
    let noted: Vec<(u64, Option<u64>)> =
        model.noted.iter().map(|p| (p.position.commands, p.checked.map(|c| c.commands))).collect();
    // Notes before MKFILE f (the first checkpoint's, then the create's), MKFILE g and
    // MKFILE h; the extent is command 2.
    assert_eq!(noted, [(1, Some(1)), (1, Some(1)), (3, Some(2)), (4, Some(2))], "{noted:?}");
    assert_eq!(model.noted[2].checked, Some(position(&cuts, 2)));
}

/// A continuation marker must not claim a position past the saved one in any field:
/// a forged byte offset is refused, not overflowed.
#[test]
fn a_forged_marker_offset_is_refused() {
    let (stream, partial, name) = partial_full(40);
    let cuts = commands(&stream).expect("one stream");
    let saved = partial.states[&name].position;
    let forged = Position { offset: u64::MAX - 8, ..position(&cuts, 10) };
    let mut sent = stream[..17].to_vec();
    sent.extend(rawsend_stream::resume::continuation_marker(&forged));
    sent.extend(&cuts[0].raw);
    for cut in &cuts[10..] {
        sent.extend(&cut.raw);
    }
    let (message, after) = refusal(partial.clone(), &sent);
    assert!(message.contains(&format!("needs the commands after {saved}")), "{message}");
    assert_eq!(after.subvols[&name], partial.subvols[&name]);
}
