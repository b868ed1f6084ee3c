//! rawsend-objstore against a real S3 server (`s3s-fs` on loopback, started here).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use rawsend_objstore::{Error, ObjectReader, Origin, Store, StreamInfo};
use rawsend_testutil::s3::S3Server;

/// `len` bytes that do not repeat within a part.
fn data(len: usize) -> Vec<u8> {
    rawsend_testutil::pseudo_random(len, 0x9e37_79b9_7f4a_7c15)
}

fn open(server: &S3Server, bucket: &str) -> Store {
    open_at(server, server.port(), bucket)
}

fn open_at(server: &S3Server, port: u16, bucket: &str) -> Store {
    let env = server.env_at(port);
    Store::open_with(bucket, |name| env.iter().find(|(key, _)| *key == name).map(|(_, value)| value.clone()))
        .expect("open store")
}

fn read_all(mut reader: ObjectReader) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    reader.read_to_end(&mut out)?;
    Ok(out)
}

fn keys(store: &Store) -> Vec<String> {
    store.list("").expect("list").into_iter().map(|(key, _)| key).collect()
}

#[test]
fn upload_is_visible_only_when_finished_and_reads_back_equal() {
    let server = S3Server::with_bucket("bkt");
    let store = open(&server, "bkt");
    let bytes = data(21 << 20);
    let mut writer = store.writer("dir/stream", None).expect("writer");
    writer.write_all(&bytes).expect("write");
    assert_eq!(keys(&store), Vec::<String>::new(), "a stream being uploaded is not visible");
    let uploaded = writer.finish().expect("finish");
    assert_eq!(uploaded.size, bytes.len() as u64);
    assert_eq!(keys(&store), ["dir/stream"]);
    let reader = store.reader("dir/stream").expect("reader");
    assert_eq!(reader.size(), bytes.len() as u64);
    assert!(!reader.is_checked(), "an object without metadata has nothing to be checked against");
    assert!(read_all(reader).expect("read") == bytes, "downloaded bytes differ");
}

#[test]
fn dropped_or_failed_upload_leaves_no_object() {
    let mut server = S3Server::with_bucket("bkt");
    let store = open(&server, "bkt");
    let mut dropped = store.writer("dropped", None).expect("writer");
    dropped.write_all(&data(9 << 20)).expect("write");
    drop(dropped);
    let mut failed = store.writer("failed", None).expect("writer");
    failed.write_all(&data(9 << 20)).expect("write");
    server.stop();
    let finished = failed.finish();
    assert!(finished.is_err(), "finish succeeded with the server stopped");
    server.restart();
    assert_eq!(keys(&store), Vec::<String>::new());
}

/// A TCP proxy to `upstream` that cuts each connection after `cut_every` bytes of the
/// server's replies, `cuts` times in all; returns its port and the cuts left.
fn cutting_proxy(upstream: u16, cut_every: usize, cuts: i64) -> (u16, Arc<AtomicI64>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
    let port = listener.local_addr().expect("proxy address").port();
    let left = Arc::new(AtomicI64::new(cuts));
    let cuts_left = Arc::clone(&left);
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let client = client.expect("accept");
            let server = TcpStream::connect(("127.0.0.1", upstream)).expect("connect upstream");
            let (mut to_server, mut from_client) =
                (server.try_clone().expect("clone"), client.try_clone().expect("clone"));
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut from_client, &mut to_server);
                let _ = to_server.shutdown(Shutdown::Write);
            });
            let cuts_left = Arc::clone(&cuts_left);
            std::thread::spawn(move || replies(server, client, cut_every, &cuts_left));
        }
    });
    (port, left)
}

/// Copies the server's replies to the client, cutting both connections after
/// `cut_every` bytes while cuts are left.
fn replies(mut server: TcpStream, mut client: TcpStream, cut_every: usize, cuts_left: &AtomicI64) {
    let mut buf = vec![0; 64 << 10];
    let mut budget = cut_every;
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if n >= budget && cuts_left.fetch_sub(1, Ordering::SeqCst) > 0 {
            let _ = client.write_all(&buf[..budget]);
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
            return;
        }
        budget = budget.saturating_sub(n).max(1);
        if client.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = client.shutdown(Shutdown::Write);
}

#[test]
fn download_continues_after_the_connection_is_cut() {
    let server = S3Server::with_bucket("bkt");
    let bytes = data(20 << 20);
    let mut writer = open(&server, "bkt").writer("s", None).expect("writer");
    writer.write_all(&bytes).expect("write");
    writer.finish().expect("finish");
    // Twelve cuts, 1 MiB apart: more than object_store's own retries of a body (5).
    let (proxy, left) = cutting_proxy(server.port(), 1 << 20, 12);
    let through_proxy = open_at(&server, proxy, "bkt");
    let read = read_all(through_proxy.reader("s").expect("reader")).expect("read through the cut");
    assert!(left.load(Ordering::SeqCst) <= 0, "the proxy did not cut the connection 12 times");
    assert!(read == bytes, "bytes differ after the cut");
}

fn message(err: &Error) -> String {
    err.to_string()
}

#[test]
fn faults_are_named() {
    let server = S3Server::with_bucket("bkt");
    let err = open(&server, "nobucket").reader("k").err().expect("missing bucket");
    assert!(matches!(err, Error::BucketMissing { .. }), "{err:?}");
    assert!(message(&err).contains("bucket 'nobucket' does not exist"), "{err}");
    let err = open(&server, "bkt").reader("nokey").err().expect("missing object");
    assert!(matches!(err, Error::ObjectMissing { .. }), "{err:?}");
    assert_eq!(message(&err), "object s3://bkt/nokey does not exist");
    let env = server.env();
    let wrong = |name: &str| match name {
        "AWS_SECRET_ACCESS_KEY" => Some("wrong".to_owned()),
        _ => env.iter().find(|(key, _)| *key == name).map(|(_, value)| value.clone()),
    };
    let err = Store::open_with("bkt", wrong).expect("open").reader("k").err().expect("wrong credentials");
    assert!(matches!(err, Error::WrongCredentials { .. }), "{err:?}");
    let err = Store::open_with("bkt", |_| None).err().expect("no credentials");
    assert!(matches!(err, Error::NoCredentials), "{err:?}");
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let err = open_at(&server, closed, "bkt").reader("k").err().expect("unreachable");
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    assert!(message(&err).starts_with("cannot reach the object storage server"), "{err}");
}

#[test]
fn credentials_and_endpoint_from_the_aws_files() {
    let server = S3Server::with_bucket("bkt");
    let dir = tempfile::tempdir().expect("tempdir");
    let (credentials, config) = (dir.path().join("credentials"), dir.path().join("config"));
    let profiles = format!(
        "[default]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n\n[test]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
        rawsend_testutil::s3::ACCESS_KEY,
        rawsend_testutil::s3::SECRET_KEY
    );
    std::fs::write(&credentials, profiles).expect("write credentials");
    let endpoint =
        format!("[profile test]\nregion = us-east-1\nendpoint_url = http://127.0.0.1:{}\n", server.port());
    std::fs::write(&config, endpoint).expect("write config");
    let env = [
        ("AWS_PROFILE", "test".to_owned()),
        ("AWS_SHARED_CREDENTIALS_FILE", credentials.display().to_string()),
        ("AWS_CONFIG_FILE", config.display().to_string()),
    ];
    let lookup = |name: &str| env.iter().find(|(key, _)| *key == name).map(|(_, value)| value.clone());
    let store = Store::open_with("bkt", lookup).expect("open with the files' settings");
    store.put_small("k", b"from the files".to_vec()).expect("put with the files' credentials");
    assert_eq!(store.get_small("k").expect("get"), b"from the files");
    assert_eq!(keys(&store), ["k"]);
}

/// Uploads `recorded` as `key` with its metadata, then replaces the object (not the
/// metadata) with `stored`.
fn store_changed(store: &Store, key: &str, recorded: &[u8], stored: &[u8]) {
    let upload = |bytes: &[u8]| {
        let mut writer = store.writer(key, None).expect("writer");
        writer.write_all(bytes).expect("write");
        writer.finish().expect("finish")
    };
    let uploaded = upload(recorded);
    let info = StreamInfo {
        key: key.to_owned(),
        name: "vol".to_owned(),
        uuid: "00000000-0000-0000-0000-000000000001".to_owned(),
        ctransid: 7,
        parent_uuid: None,
        parent_ctransid: None,
        version: 2,
        size: uploaded.size,
        sha256: uploaded.sha256,
        origin: Origin::default(),
    };
    store.put_info(&info).expect("put metadata");
    upload(stored);
}

/// Reads `reader` to its end or first error: the bytes it gave, and the error.
fn read_until_error(mut reader: ObjectReader) -> (usize, Option<std::io::Error>) {
    let mut buf = vec![0; 1 << 20];
    let mut total = 0;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return (total, None),
            Ok(n) => total += n,
            Err(err) => return (total, Some(err)),
        }
    }
}

#[test]
fn download_is_checked_against_the_metadata_before_its_end() {
    let server = S3Server::with_bucket("bkt");
    let store = open(&server, "bkt");
    let bytes = data(20 << 20);
    store_changed(&store, "same", &bytes, &bytes);
    let reader = store.reader("same").expect("reader");
    assert!(reader.is_checked());
    assert!(read_all(reader).expect("an unchanged object reads") == bytes);

    let mut changed = bytes.clone();
    changed[1 << 20] ^= 1;
    store_changed(&store, "changed", &bytes, &changed);
    let (given, err) = read_until_error(store.reader("changed").expect("reader"));
    let err = err.expect("a changed object fails its check");
    let text = err.to_string();
    assert!(text.starts_with("checksum mismatch: s3://bkt/changed has SHA-256 "), "{text}");
    assert!(given > 0 && given < bytes.len(), "{given} of {} bytes given before the error", bytes.len());
    let again = store.reader("changed").expect("reader");
    let (_, err) = read_until_error(again);
    assert!(err.is_some(), "the check fails every time");
}

#[test]
fn download_rejects_metadata_of_another_size() {
    let server = S3Server::with_bucket("bkt");
    let store = open(&server, "bkt");
    let bytes = data(1 << 20);
    store_changed(&store, "shorter", &bytes, &bytes[..1000]);
    let err = store.reader("shorter").err().expect("the sizes differ");
    assert!(matches!(err, Error::SizeMismatch { expected: 1_048_576, actual: 1000, .. }), "{err:?}");
    assert!(err.to_string().starts_with("size mismatch: s3://bkt/shorter is 1000 bytes"), "{err}");
}
