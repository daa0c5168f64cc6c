//! The sockets a pod's proxies use, all created inside the pod netns with `SO_MARK` (so the
//! in-pod rules never recapture them) and, for listeners, `SO_REUSEPORT` (so an old and a new
//! tunnel can overlap during a restart). Spec §7.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use super::netns::Netns;

/// Socket options shared by every pod socket.
#[derive(Debug, Clone, Copy)]
pub struct PodSocketOptions {
    pub mark: u32,
    pub reuse_port: bool,
}

fn new_socket(addr: &SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(*addr),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_nonblocking(true)?;
    socket.set_cloexec(true)?;
    Ok(socket)
}

/// A TCP listener on `addr` inside `netns`.
pub fn listen(netns: &Netns, addr: SocketAddr, opts: PodSocketOptions) -> io::Result<TcpListener> {
    let std_listener = netns.run(|| {
        let socket = new_socket(&addr)?;
        socket.set_mark(opts.mark)?;
        socket.set_reuse_address(true)?;
        if opts.reuse_port {
            socket.set_reuse_port(true)?;
        }
        socket.bind(&SockAddr::from(addr))?;
        socket.listen(1024)?;
        Ok(std::net::TcpListener::from(socket))
    })?;
    TcpListener::from_std(std_listener)
}

/// Connects to `dst` from inside `netns`, marked. With `spoof_src`, the socket is transparent
/// and bound to that address first so the peer sees the original client IP (spec §3.2 step 5).
pub async fn connect(
    netns: &Netns,
    dst: SocketAddr,
    spoof_src: Option<SocketAddr>,
    mark: u32,
) -> io::Result<TcpStream> {
    let socket = netns.run(|| {
        let socket = new_socket(&dst)?;
        socket.set_mark(mark)?;
        socket.set_tcp_nodelay(true)?;
        if let Some(src) = spoof_src {
            if dst.is_ipv4() {
                socket.set_ip_transparent_v4(true)?;
            } else {
                socket.set_ip_transparent_v6(true)?;
            }
            socket.set_reuse_address(true)?;
            socket.bind(&SockAddr::from(SocketAddr::new(src.ip(), 0)))?;
        }
        Ok(TcpSocket::from_std_stream(std::net::TcpStream::from(
            socket,
        )))
    })?;
    socket.connect(dst).await
}

/// The address the kernel redirected this connection from (`SO_ORIGINAL_DST`).
pub fn original_dst(stream: &TcpStream) -> io::Result<SocketAddr> {
    let local = stream.local_addr()?;
    let sock = socket2::SockRef::from(stream);
    let addr = if local.is_ipv4() {
        sock.original_dst_v4()?
    } else {
        sock.original_dst_v6()?
    };
    addr.as_socket()
        .ok_or_else(|| io::Error::other("SO_ORIGINAL_DST returned a non-IP address"))
}
