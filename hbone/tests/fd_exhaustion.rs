//! Out of file descriptors, the HBONE server's accept loop backs off instead of spinning, logs at most once a
//! second (counting what it did not log), and serves again once descriptors are free. Its own test binary:
//! it lowers this process's descriptor limit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hbone::client::ClientConfig;
use hbone::server::ServerConfig;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};

/// Counts "accept failed" events and the failures they say were not logged.
#[derive(Clone, Default)]
struct AcceptFailures {
    logged: Arc<AtomicU64>,
    suppressed: Arc<AtomicU64>,
}

struct Fields {
    accept_failed: bool,
    suppressed: u64,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" && format!("{value:?}") == "accept failed" {
            self.accept_failed = true;
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "suppressed" {
            self.suppressed = value;
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for AcceptFailures {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut f = Fields {
            accept_failed: false,
            suppressed: 0,
        };
        event.record(&mut f);
        if f.accept_failed {
            self.logged.fetch_add(1, Ordering::Relaxed);
            self.suppressed.fetch_add(f.suppressed, Ordering::Relaxed);
        }
    }
}

fn nofile() -> (u64, u64) {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap()
}

fn set_nofile(soft: u64, hard: u64) {
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, soft, hard).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_the_accept_loop_backs_off_and_then_serves_again() {
    let failures = AcceptFailures::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(failures.clone()))
        .unwrap();
    let backend = echo_backend().await;
    let Tunnel { server, pool, .. } =
        tunnel(ServerConfig::default(), ClientConfig::default()).await;

    // A limit a little above what is open now; then hold connections until no descriptor is left. The kernel
    // completes the handshakes the server cannot accept, so they wait in its backlog: every accept fails.
    let (soft, hard) = nofile();
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    set_nofile(open + 24, hard);
    let mut held = Vec::new();
    while held.len() < 200 {
        match tokio::net::TcpStream::connect(server.addr).await {
            Ok(s) => held.push(s),
            Err(_) => break,
        }
    }
    assert!(held.len() < 200, "the descriptor limit was never reached");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let logged = failures.logged.load(Ordering::Relaxed);
    let suppressed = failures.suppressed.load(Ordering::Relaxed);
    // Backing off from 10 ms up to 1 s, 2.5 s hold about ten failed accepts (a spinning loop: millions),
    // logged at most once a second.
    assert!((1..=4).contains(&logged), "logged {logged} accept failures");
    assert!(
        logged + suppressed < 60,
        "{logged} logged + {suppressed} suppressed accept failures"
    );

    // Descriptors back: the server accepts what waited and serves new tunnels.
    held.clear();
    set_nofile(soft, hard);
    let served = tokio::time::timeout(Duration::from_secs(10), async {
        let mut stream = pool
            .connect(&key(server.addr, &[SERVER]), &request_to(backend))
            .await
            .unwrap();
        stream.write_all(b"again").await.unwrap();
        stream.shutdown().await.unwrap();
        let mut back = Vec::new();
        stream.read_to_end(&mut back).await.unwrap();
        back
    })
    .await
    .expect("a tunnel within 10 s once descriptors are free");
    assert_eq!(served, b"again");
}
