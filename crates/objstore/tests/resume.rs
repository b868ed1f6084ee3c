//! Resumable uploads against a real S3 server (`s3s-fs` on loopback), through a
//! proxy that counts what the client sends.

use std::fs;
use std::io::Write;
use std::time::{Duration, Instant};

use rawsend_objstore::{Error, Journals, ObjectWriter, Store};
use rawsend_testutil::journal::journal_parts;
use rawsend_testutil::proxy::CountingProxy;
use rawsend_testutil::s3::S3Server;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

const MIB: usize = 1 << 20;
const PART: usize = 8 * MIB;

/// A server with bucket `bkt`, a proxy to it, and a journal directory.
struct Fixture {
    server: S3Server,
    proxy: CountingProxy,
    state: TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let server = S3Server::with_bucket("bkt");
        let proxy = CountingProxy::start(server.port());
        Fixture { server, proxy, state: tempfile::tempdir().expect("tempdir") }
    }

    fn store(&self) -> Store {
        let env = self.server.env_at(self.proxy.port());
        Store::open_with("bkt", |name| {
            env.iter().find(|(key, _)| *key == name).map(|(_, value)| value.clone())
        })
        .expect("open store")
    }

    fn journals(&self) -> Journals {
        Journals::at(self.state.path().join("uploads"))
    }

    fn writer(&self) -> ObjectWriter {
        self.store().writer("k", Some(&self.journals())).expect("writer")
    }

    /// The parts recorded in the journal of the upload (none without a journal).
    fn journal_parts(&self) -> usize {
        journal_parts(self.journals().dir())
    }

    fn visible(&self) -> Vec<String> {
        self.store().list("").expect("list").into_iter().map(|(key, _)| key).collect()
    }

    /// Files of unfinished uploads in the server's root (s3s-fs keeps them there).
    fn server_uploads(&self) -> Vec<String> {
        let entries = fs::read_dir(self.server.root()).expect("server root");
        let names = entries.map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned());
        names.filter(|name| name.starts_with(".upload")).collect()
    }
}

fn data(len: usize, seed: u64) -> Vec<u8> {
    rawsend_testutil::pseudo_random(len, seed)
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The object store error inside `err`.
fn store_error(err: &std::io::Error) -> &Error {
    err.get_ref().and_then(|inner| inner.downcast_ref::<Error>()).expect("an object storage error")
}

#[test]
fn an_interrupted_upload_continues_without_sending_stored_parts_again() {
    let fixture = Fixture::new();
    let bytes = data(3 * PART + MIB, 1);
    let mut first = fixture.writer();
    assert_eq!(first.continued(), None);
    first.write_all(&bytes[..2 * PART + 4 * MIB]).expect("write");
    // A crash: no abort, no completion (a drop keeps the upload and its journal).
    drop(first);
    assert_eq!(fixture.journal_parts(), 2);
    assert_eq!(fixture.visible(), Vec::<String>::new(), "nothing visible before completion");
    let before = fixture.proxy.sent();
    let mut second = fixture.writer();
    assert_eq!(second.continued(), Some(2 * PART as u64));
    second.write_all(&bytes).expect("write again");
    let uploaded = second.finish().expect("finish");
    let sent = (fixture.proxy.sent() - before) as usize;
    let rest = bytes.len() - 2 * PART;
    assert!(sent >= rest && sent < rest + MIB / 4, "sent {sent} bytes for the {rest} not stored");
    assert_eq!(uploaded.reused, 2 * PART as u64);
    assert_eq!((uploaded.size, uploaded.sha256), (bytes.len() as u64, sha256(&bytes)));
    assert_eq!(fixture.visible(), ["k"]);
    assert!(fs::read(fixture.server.root().join("bkt/k")).expect("object") == bytes, "object differs");
    assert_eq!(fixture.journal_parts(), 0, "the journal is deleted once complete");
}

#[test]
fn a_stream_that_differs_discards_the_unfinished_upload() {
    let fixture = Fixture::new();
    let mut first = fixture.writer();
    first.write_all(&data(2 * PART, 1)).expect("write");
    drop(first);
    assert_eq!(fixture.journal_parts(), 2);
    let other = data(2 * PART + MIB, 2);
    let mut second = fixture.writer();
    let err = second.write_all(&other).expect_err("a different stream is refused");
    assert!(matches!(store_error(&err), Error::Discarded { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("the unfinished upload to s3://bkt/k was discarded: part 1 of the stream differs"),
        "{err}"
    );
    drop(second);
    assert_eq!(fixture.journal_parts(), 0, "the journal is deleted");
    assert_eq!(fixture.server_uploads(), Vec::<String>::new(), "the old upload is aborted");
    let mut third = fixture.writer();
    assert_eq!(third.continued(), None, "a fresh upload");
    third.write_all(&other).expect("write");
    assert_eq!(third.finish().expect("finish").reused, 0);
    assert!(fs::read(fixture.server.root().join("bkt/k")).expect("object") == other, "object differs");
}

#[test]
fn an_upload_the_server_forgot_is_discarded() {
    let fixture = Fixture::new();
    let bytes = data(2 * PART + MIB, 3);
    let mut first = fixture.writer();
    first.write_all(&bytes).expect("write");
    drop(first);
    // What an expired upload looks like to s3s-fs: its record is gone.
    for name in fixture.server_uploads().iter().filter(|name| name.ends_with(".json")) {
        fs::remove_file(fixture.server.root().join(name)).expect("forget the upload");
    }
    let mut second = fixture.writer();
    assert!(second.continued().is_some());
    second.write_all(&bytes).expect("the stored parts match");
    let err = second.finish().expect_err("the server does not know the upload");
    assert!(matches!(store_error(&err), Error::Discarded { .. }), "{err:?}");
    assert!(err.to_string().contains("the server no longer knows it"), "{err}");
    assert_eq!(fixture.journal_parts(), 0);
}

#[test]
fn an_upload_cut_by_a_stopped_server_continues_after_its_restart() {
    let mut fixture = Fixture::new();
    let bytes = data(3 * PART, 4);
    let mut first = fixture.writer();
    first.write_all(&bytes[..2 * PART + MIB]).expect("write");
    // The upload tasks record stored parts in the journal themselves.
    let deadline = Instant::now() + Duration::from_secs(30);
    while fixture.journal_parts() < 2 {
        assert!(Instant::now() < deadline, "two parts not recorded within 30 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    fixture.server.stop();
    let err = first.write_all(&bytes[2 * PART + MIB..]).and_then(|()| first.finish().map(drop));
    let err = err.expect_err("the server is stopped");
    let Error::Interrupted { stored, endpoint, .. } = store_error(&err) else { panic!("{err:?}") };
    assert_eq!(*stored, 2 * PART as u64);
    assert_eq!(endpoint, &format!("http://127.0.0.1:{}", fixture.proxy.port()));
    assert!(err.to_string().contains("running the same command again continues it"), "{err}");
    assert_eq!(fixture.journal_parts(), 2);
    fixture.server.restart();
    assert_eq!(fixture.visible(), Vec::<String>::new(), "nothing visible");
    let before = fixture.proxy.sent();
    let mut second = fixture.writer();
    second.write_all(&bytes).expect("write again");
    assert_eq!(second.finish().expect("finish").reused, 2 * PART as u64);
    assert!(((fixture.proxy.sent() - before) as usize) < PART + MIB / 4, "stored parts were sent again");
    assert!(fs::read(fixture.server.root().join("bkt/k")).expect("object") == bytes, "object differs");
}
