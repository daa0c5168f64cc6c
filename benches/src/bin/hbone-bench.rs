//! Loopback benchmark: one stream's throughput and 64-byte request/response latency over
//! plain TCP (direct and through a TCP proxy), TLS through a terminating proxy, and HBONE
//! (mTLS + HTTP/2 CONNECT), all in one run. See `benches/README.md` for the byte paths.
//!
//! Bounded: `--mib` MiB per throughput run (default 256), `--pings` round trips per latency
//! run (default 5000), `--runs` repetitions (default 1). Everything listens on 127.0.0.1.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hbone::Identity;
use hbone::ca::BoxFuture;
use hbone::client::{ClientConfig, ConnectRequest, Pool, PoolKey, TcpDialer};
use hbone::headers::Authority;
use hbone::server::{Accepted, InboundHandler, InboundRequest, Rejected, Server, ServerConfig};
use hbone::test_util::TestCa;
use hbone::tls::{KeyExchange, WorkloadCertificate, client_config, server_config};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MSG: usize = 64;
const CHUNK: usize = 256 << 10;

struct Args {
    mib: usize,
    pings: usize,
    runs: usize,
}

fn args() -> Result<Args> {
    let mut a = Args {
        mib: 256,
        pings: 5000,
        runs: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v: usize = it.next().context("flag needs a value")?.parse()?;
        match flag.as_str() {
            "--mib" => a.mib = v.clamp(1, 4096),
            "--pings" => a.pings = v.clamp(10, 1_000_000),
            "--runs" => a.runs = v.clamp(1, 20),
            other => bail!("unknown flag {other} (use --mib N --pings N --runs N)"),
        }
    }
    Ok(a)
}

/// Backend on 127.0.0.1: the first byte picks sink (`S`: read to EOF, answer the count) or
/// echo (`E`: copy back).
async fn backend() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let mut mode = [0u8; 1];
                if tcp.read_exact(&mut mode).await.is_err() {
                    return;
                }
                let mut buf = vec![0u8; CHUNK];
                if mode[0] == b'S' {
                    let mut total = 0u64;
                    while let Ok(n) = tcp.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        total += n as u64;
                    }
                    let _ = tcp.write_all(&total.to_be_bytes()).await;
                } else {
                    let (mut r, mut w) = tcp.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                }
            });
        }
    });
    Ok(addr)
}

/// A forwarding proxy on 127.0.0.1 that optionally terminates TLS.
async fn proxy(target: SocketAddr, tls: Option<Arc<rustls::ServerConfig>>) -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tls = tls.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let Ok(mut up) = TcpStream::connect(target).await else {
                    return;
                };
                let _ = up.set_nodelay(true);
                match tls {
                    None => {
                        let mut tcp = tcp;
                        let _ = tokio::io::copy_bidirectional_with_sizes(
                            &mut tcp, &mut up, CHUNK, CHUNK,
                        )
                        .await;
                    }
                    Some(cfg) => {
                        let Ok(mut s) = tokio_rustls::TlsAcceptor::from(cfg).accept(tcp).await
                        else {
                            return;
                        };
                        let _ =
                            tokio::io::copy_bidirectional_with_sizes(&mut s, &mut up, CHUNK, CHUNK)
                                .await;
                    }
                }
            });
        }
    });
    Ok(addr)
}

struct Forward;

impl InboundHandler for Forward {
    fn handle(&self, request: InboundRequest) -> BoxFuture<'_, Result<Accepted, Rejected>> {
        Box::pin(async move {
            let Authority::Addr(target) = request.authority else {
                return Err(Rejected::BadRequest("bench wants ip:port".into()));
            };
            let up = TcpStream::connect(target)
                .await
                .map_err(|e| Rejected::Unavailable(e.to_string()))?;
            let _ = up.set_nodelay(true);
            Ok(Accepted {
                upstream: Box::new(up),
                response_headers: http::HeaderMap::new(),
            })
        })
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Setup {
    backend: SocketAddr,
    tcp_proxy: SocketAddr,
    tls_proxy: SocketAddr,
    hbone: SocketAddr,
    client_tls: Arc<rustls::ClientConfig>,
    pool: Pool,
    key: PoolKey,
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    TcpDirect,
    TcpProxy,
    TlsProxy,
    Hbone,
}

impl Setup {
    async fn open(&self, mode: Mode) -> Result<Box<dyn Io>> {
        Ok(match mode {
            Mode::TcpDirect | Mode::TcpProxy => {
                let to = if matches!(mode, Mode::TcpDirect) {
                    self.backend
                } else {
                    self.tcp_proxy
                };
                let s = TcpStream::connect(to).await?;
                s.set_nodelay(true)?;
                Box::new(s)
            }
            Mode::TlsProxy => {
                let s = TcpStream::connect(self.tls_proxy).await?;
                s.set_nodelay(true)?;
                let name = ServerName::IpAddress(self.tls_proxy.ip().into());
                Box::new(
                    tokio_rustls::TlsConnector::from(self.client_tls.clone())
                        .connect(name, s)
                        .await?,
                )
            }
            Mode::Hbone => {
                let req = ConnectRequest::new(Authority::Addr(self.backend));
                Box::new(self.pool.connect(&self.key, &req).await?)
            }
        })
    }
}

/// MiB/s for one stream carrying `mib` MiB into the sink.
async fn throughput(setup: &Setup, mode: Mode, mib: usize) -> Result<f64> {
    let mut s = setup.open(mode).await?;
    let chunk = vec![0x5au8; CHUNK];
    let start = Instant::now();
    s.write_all(b"S").await?;
    for _ in 0..(mib << 20) / CHUNK {
        s.write_all(&chunk).await?;
    }
    s.shutdown().await?;
    let mut count = [0u8; 8];
    s.read_exact(&mut count).await?;
    let secs = start.elapsed().as_secs_f64();
    if u64::from_be_bytes(count) != (mib << 20) as u64 {
        bail!("{mode:?}: sink counted {} bytes", u64::from_be_bytes(count));
    }
    Ok(mib as f64 / secs)
}

/// (p50, p99) of `pings` 64-byte round trips on one stream.
async fn latency(setup: &Setup, mode: Mode, pings: usize) -> Result<(Duration, Duration)> {
    let mut s = setup.open(mode).await?;
    s.write_all(b"E").await?;
    let msg = [0x42u8; MSG];
    let mut back = [0u8; MSG];
    let mut samples = Vec::with_capacity(pings);
    for i in 0..pings + pings / 10 {
        let t = Instant::now();
        s.write_all(&msg).await?;
        s.read_exact(&mut back).await?;
        if i >= pings / 10 {
            samples.push(t.elapsed());
        }
    }
    samples.sort();
    Ok((
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
    ))
}

async fn setup() -> Result<Setup> {
    let ca = TestCa::new(Duration::from_secs(3600));
    let client_id: Identity = "spiffe://cluster.local/ns/bench/sa/client".parse()?;
    let server_id: Identity = "spiffe://cluster.local/ns/bench/sa/server".parse()?;
    let client_cert = Arc::new(ca.issue(&client_id, Duration::from_secs(3600)));
    let server_cert: Arc<WorkloadCertificate> =
        Arc::new(ca.issue(&server_id, Duration::from_secs(3600)));
    let backend = backend().await?;
    let tcp_proxy = proxy(backend, None).await?;
    let tls_proxy = proxy(
        backend,
        Some(server_config(&server_cert, KeyExchange::Default)?),
    )
    .await?;
    let server = Server::bind(
        "127.0.0.1:0".parse()?,
        ServerConfig::default(),
        Arc::new(server_cert),
        Arc::new(Forward),
    )
    .await?;
    let hbone = server.local_addr()?;
    let (_drain_tx, drain_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _keep = _drain_tx;
        server.run(drain_rx).await;
    });
    let client_tls = client_config(&client_cert, vec![server_id.clone()], KeyExchange::Default)?;
    let pool = Pool::new(
        ClientConfig::default(),
        Arc::new(client_cert),
        Arc::new(TcpDialer),
    );
    let key = PoolKey::new(client_id, vec![server_id], None, hbone);
    Ok(Setup {
        backend,
        tcp_proxy,
        tls_proxy,
        hbone,
        client_tls,
        pool,
        key,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = args()?;
    let setup = setup().await?;
    println!(
        "# hbone-bench: {} MiB per throughput run, {} x {MSG}-byte round trips, {} run(s); HBONE server {}",
        args.mib, args.pings, args.runs, setup.hbone
    );
    println!(
        "{:<6} {:<11} {:>12} {:>12} {:>12}",
        "run", "mode", "MiB/s", "p50 us", "p99 us"
    );
    for run in 1..=args.runs {
        for mode in [Mode::TcpDirect, Mode::TcpProxy, Mode::TlsProxy, Mode::Hbone] {
            let tput = throughput(&setup, mode, args.mib).await?;
            let (p50, p99) = latency(&setup, mode, args.pings).await?;
            println!(
                "{:<6} {:<11} {:>12.0} {:>12.1} {:>12.1}",
                run,
                format!("{mode:?}"),
                tput,
                p50.as_secs_f64() * 1e6,
                p99.as_secs_f64() * 1e6
            );
        }
    }
    Ok(())
}
