//! A real S3 server for tests: `s3s-fs` (crates.io), serving a temporary
//! directory over the S3 API on a free loopback port.
//!
//! The binary is `$S3S_FS` or `s3s-fs` on `PATH` (scripts/test.sh installs
//! it). Starting fails the test, never skips it. Buckets are directories of
//! the served root. Dropping the server kills it and removes the directory.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Access key the server accepts.
pub const ACCESS_KEY: &str = "rawsend-test-key";
/// Secret key the server accepts.
pub const SECRET_KEY: &str = "rawsend-test-secret";

/// A running `s3s-fs` on 127.0.0.1.
pub struct S3Server {
    child: Option<Child>,
    root: TempDir,
    /// Where rawsend keeps its upload journals (`RAWSEND_STATE_DIR`), not in `$HOME`.
    state: TempDir,
    port: u16,
}

impl S3Server {
    /// Starts a server on a free port, with an empty root; panics if it does not answer.
    pub fn start() -> S3Server {
        let root = tempfile::tempdir().expect("cannot create the S3 server's root");
        let port =
            TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("no free port").port();
        let state = tempfile::tempdir().expect("cannot create rawsend's state directory");
        let mut server = S3Server { child: None, root, state, port };
        server.spawn();
        server
    }

    /// Starts a server (as [`S3Server::start`]) holding one empty bucket, `name`.
    pub fn with_bucket(name: &str) -> S3Server {
        let server = S3Server::start();
        std::fs::create_dir(server.root.path().join(name)).expect("cannot create the bucket's directory");
        server
    }

    fn spawn(&mut self) {
        let binary = std::env::var_os("S3S_FS").unwrap_or_else(|| "s3s-fs".into());
        let child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot start the S3 server {binary:?} (`cargo install s3s-fs --version 0.14.1 --locked --features binary`, or set S3S_FS): {err}")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the S3 server did not listen on port {} within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (its data stays).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The served directory (buckets are its subdirectories, objects files in them).
    pub fn root(&self) -> PathBuf {
        self.root.path().to_owned()
    }

    /// The environment that points rawsend at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        self.env_at(self.port)
    }

    /// The environment that points rawsend at `port` of 127.0.0.1 with this server's keys
    /// (and its upload journals at a temporary directory).
    pub fn env_at(&self, port: u16) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}")),
            ("RAWSEND_STATE_DIR", self.state.path().display().to_string()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
