//! A TCP proxy on loopback that counts the bytes clients send to a server and
//! can slow them, or the server's replies, down: tests measure what an upload
//! re-sent, and give themselves time to interrupt an upload or a download. A connection whose server is down is
//! closed at once, as a stopped server would. It can also go down itself after the
//! server replied so many bytes ([`CountingProxy::fail_after_replies`]): a server
//! stopped mid-download at a known point, whatever the timing and the socket buffers.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// A running proxy (its threads live as long as the test process).
pub struct CountingProxy {
    port: u16,
    sent: Arc<AtomicU64>,
    pause_per_mib: Arc<AtomicU64>,
    reply_pause_per_mib: Arc<AtomicU64>,
    outage: Arc<Outage>,
}

/// When the proxy goes down: after `budget` reply bytes (all connections together).
struct Outage {
    budget: AtomicU64,
    replied: AtomicU64,
    down: AtomicBool,
}

impl Outage {
    /// Counts `n` more reply bytes; whether they are still within the budget (else the
    /// proxy is down from now on).
    fn allows(&self, n: usize) -> bool {
        let replied = self.replied.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
        if replied > self.budget.load(Ordering::SeqCst) {
            self.down.store(true, Ordering::SeqCst);
        }
        !self.down.load(Ordering::SeqCst)
    }
}

impl CountingProxy {
    /// Starts a proxy to port `upstream` of 127.0.0.1.
    pub fn start(upstream: u16) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let proxy = CountingProxy {
            port,
            sent: Arc::new(AtomicU64::new(0)),
            pause_per_mib: Arc::new(AtomicU64::new(0)),
            reply_pause_per_mib: Arc::new(AtomicU64::new(0)),
            outage: Arc::new(Outage {
                budget: AtomicU64::new(u64::MAX),
                replied: AtomicU64::new(0),
                down: AtomicBool::new(false),
            }),
        };
        let sent = Arc::clone(&proxy.sent);
        let pauses = (Arc::clone(&proxy.pause_per_mib), Arc::clone(&proxy.reply_pause_per_mib));
        let outage = Arc::clone(&proxy.outage);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if outage.down.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                let pauses = (Arc::clone(&pauses.0), Arc::clone(&pauses.1));
                forward(client, server, Arc::clone(&sent), pauses, Arc::clone(&outage));
            }
        });
        proxy
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Bytes clients sent through it so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    /// Bytes clients sent, once nothing more arrived for 300 ms: what a killed client
    /// had left in its socket still passes through the proxy after its death.
    pub fn settled(&self) -> u64 {
        let mut last = self.sent();
        loop {
            std::thread::sleep(Duration::from_millis(300));
            let now = self.sent();
            if now == last {
                return now;
            }
            last = now;
        }
    }

    /// Pauses `millis` milliseconds per MiB clients send from now on (0: full speed).
    pub fn pause_per_mib(&self, millis: u64) {
        self.pause_per_mib.store(millis, Ordering::SeqCst);
    }

    /// Pauses `millis` milliseconds per MiB the server replies from now on (0: full speed).
    pub fn pause_replies_per_mib(&self, millis: u64) {
        self.reply_pause_per_mib.store(millis, Ordering::SeqCst);
    }

    /// Goes down once the server replied `bytes` through it: every connection is cut,
    /// and later ones are closed at once.
    pub fn fail_after_replies(&self, bytes: u64) {
        self.outage.budget.store(bytes, Ordering::SeqCst);
    }
}

/// Copies both ways between `client` and `server`, counting what the client sends and
/// pacing each direction by its pause (what the client sends, what the server replies).
fn forward(
    client: TcpStream,
    server: TcpStream,
    sent: Arc<AtomicU64>,
    pauses: (Arc<AtomicU64>, Arc<AtomicU64>),
    outage: Arc<Outage>,
) {
    let (to_server, from_client) = (server.try_clone().expect("clone"), client.try_clone().expect("clone"));
    let (sent_pause, reply_pause) = pauses;
    std::thread::spawn(move || {
        paced_copy(from_client, &to_server, &sent_pause, Some(&sent), None);
        let _ = to_server.shutdown(Shutdown::Write);
    });
    std::thread::spawn(move || {
        paced_copy(server.try_clone().expect("clone"), &client, &reply_pause, None, Some(&outage));
        let _ = client.shutdown(Shutdown::Both);
        if outage.down.load(Ordering::SeqCst) {
            let _ = server.shutdown(Shutdown::Both);
        }
    });
}

/// Copies `from` into `to` until either ends or `outage` goes down, sleeping `pause`
/// milliseconds per MiB and adding what was copied to `count`.
fn paced_copy(
    mut from: TcpStream,
    mut to: &TcpStream,
    pause: &AtomicU64,
    count: Option<&AtomicU64>,
    outage: Option<&Outage>,
) {
    let mut buf = vec![0; 64 << 10];
    while let Ok(n @ 1..) = from.read(&mut buf) {
        let millis = pause.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_micros(millis * 1000 * n as u64 / (1 << 20)));
        if outage.is_some_and(|outage| !outage.allows(n)) || to.write_all(&buf[..n]).is_err() {
            break;
        }
        if let Some(count) = count {
            count.fetch_add(n as u64, Ordering::SeqCst);
        }
    }
}
