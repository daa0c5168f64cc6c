//! The 64-byte request/response test's two ends, run as subcommands of the bench binary inside
//! the pods: `echo-server` (a thread per connection echoing 64-byte messages) and `rr-client`
//! (one connection, a bounded number of timed round trips, prints p50/p99 as JSON).
//!
//! Blocking std sockets with TCP_NODELAY keep the measuring ends cheap, so the numbers show
//! the path, not the tool.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

pub(crate) const MSG: usize = 64;
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves forever (the pod's container); each connection echoes until EOF or 10 s of silence.
pub(crate) fn echo_server(port: u16) -> Result<()> {
    let listener = TcpListener::bind(("0.0.0.0", port)).with_context(|| format!("bind :{port}"))?;
    for conn in listener.incoming() {
        let Ok(mut s) = conn else { continue };
        std::thread::spawn(move || {
            let _ = s.set_nodelay(true);
            let _ = s.set_read_timeout(Some(IO_TIMEOUT));
            let mut buf = [0u8; MSG];
            while s.read_exact(&mut buf).is_ok() {
                if s.write_all(&buf).is_err() {
                    break;
                }
            }
        });
    }
    Ok(())
}

/// Result of one RR run, in microseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Latency {
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
}

/// `count` timed round trips (after `count / 10` untimed warm-up ones) on one connection.
pub(crate) fn rr_client(addr: SocketAddr, count: usize) -> Result<()> {
    let mut s =
        TcpStream::connect_timeout(&addr, IO_TIMEOUT).with_context(|| format!("connect {addr}"))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    let msg = [0x42u8; MSG];
    let mut back = [0u8; MSG];
    let mut samples = Vec::with_capacity(count);
    for i in 0..count + count / 10 {
        let t = Instant::now();
        s.write_all(&msg)?;
        s.read_exact(&mut back)?;
        if i >= count / 10 {
            samples.push(t.elapsed());
        }
    }
    if back != msg {
        bail!("echo returned other bytes");
    }
    samples.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "{{\"count\":{count},\"p50_us\":{:.2},\"p99_us\":{:.2}}}",
        us(samples[samples.len() / 2]),
        us(samples[samples.len() * 99 / 100])
    );
    Ok(())
}

/// Parses `rr-client`'s output line.
pub(crate) fn parse(stdout: &str) -> Result<Latency> {
    let v: Value = serde_json::from_str(stdout.trim()).context("rr-client output")?;
    Ok(Latency {
        p50_us: v["p50_us"].as_f64().context("p50_us")?,
        p99_us: v["p99_us"].as_f64().context("p99_us")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_client_output() {
        let l = parse("{\"count\":10,\"p50_us\":12.5,\"p99_us\":40.25}\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((l.p50_us, l.p99_us), (12.5, 40.25));
        assert!(parse("not json").is_err());
    }
}
