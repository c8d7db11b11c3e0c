//! Hostile and internal stand-ins for end-to-end egress tests (security catalogue §7); the
//! test CA and the TLS upstream are `airlock_testkit`'s.
//!
//! * [`Tarpit`]: an HTTPS listener that completes TLS and then stalls (deadline and
//!   slow-loris tests).
//! * [`Victim`]: a plain TCP listener standing in for an internal service; SSRF tests assert its
//!   accept count stays 0.
//! * [`sockets_to`]: how many sockets this process holds open to a peer.
//!
//! Both listeners are `airlock_testkit::Listener`s: loopback only, served on the stand-ins'
//! own runtime, with accept counts exact at the moment they are read.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use airlock_testkit::{Listener, TestCa};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

// ---------------------------------------------------------------------------------------------
// Tarpit
// ---------------------------------------------------------------------------------------------

/// How a [`Tarpit`] wastes a client's time once the TLS handshake is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// Reads nothing and answers nothing: the client's writes fill the socket buffers.
    Silent,
    /// Reads and discards everything, never answers.
    Swallow,
    /// Reads the request head, then sends a response head one byte at a time, never ending it.
    DripHead,
    /// Reads the request head, answers `200` with a chunked body of one byte at a time, never
    /// ending it.
    DripBody,
    /// Accepts the TCP connection and never answers the TLS handshake.
    NoHandshake,
    /// Reads the request head, then sends a response head one byte a second.
    Trickle,
    /// Answers part of a `Content-Length` body, then resets the connection.
    ResetMidBody,
    /// Answers a chunked body as fast as the client reads, never ending it.
    EndlessBody,
    /// Answers more body bytes than its `Content-Length` says, then closes.
    LongerThanLength,
    /// Answers a chunked body whose chunk size is not hexadecimal.
    BadChunks,
    /// Answers a head of 10,000 header fields.
    ManyHeaders,
}

/// An HTTPS listener on loopback that completes TLS for `names` and then stalls each
/// connection as its [`Stall`] says, keeping it open until the client goes or the tarpit is
/// dropped.
pub struct Tarpit {
    listener: Listener,
}

/// How long a dripping tarpit waits between bytes.
const DRIP: Duration = Duration::from_millis(50);

impl Tarpit {
    /// Binds `ip:0` with a certificate from `ca` for `names`. Panics if `ip` is not loopback.
    pub fn start(ca: &TestCa, names: &[&str], ip: IpAddr, stall: Stall) -> Tarpit {
        let tls = ca.acceptor(names).unwrap_or_else(|e| panic!("tarpit: {e}"));
        let listener = Listener::start(ip, move |stream| {
            stall_connection(tls.clone(), stream, stall)
        })
        .unwrap_or_else(|e| panic!("tarpit: {e}"));
        Tarpit { listener }
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener.addr()
    }

    /// Connections accepted so far.
    pub fn accepts(&self) -> usize {
        self.listener.accepts()
    }
}

/// How many sockets this process holds open to `peer`, from `/proc/self/fd` and
/// `/proc/net/tcp`. A client that closed its end no longer holds one, even while the kernel
/// still tries to deliver what it wrote to a peer that never reads (so the peer cannot tell).
pub fn sockets_to(peer: SocketAddr) -> usize {
    let IpAddr::V4(ip) = peer.ip() else {
        panic!("IPv4 peers only, not {peer}");
    };
    let remote = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(ip.octets()),
        peer.port()
    );
    let table = std::fs::read_to_string("/proc/self/net/tcp").expect("read /proc/self/net/tcp");
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(2) == Some(&remote.as_str())).then(|| fields.get(9).map(|s| s.to_string()))
        })
        .flatten()
        .collect();
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| {
            let target = target.to_string_lossy();
            inodes
                .iter()
                .any(|inode| target == format!("socket:[{inode}]").as_str())
        })
        .count()
}

async fn stall_connection(tls: TlsAcceptor, stream: TcpStream, stall: Stall) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    if stall == Stall::NoHandshake {
        let _held = stream;
        return std::future::pending().await;
    }
    let Ok(mut tls) = tls.accept(stream).await else {
        return;
    };
    let mut buf = vec![0u8; 16 * 1024];
    if stall == Stall::Silent {
        // Hold the connection, reading nothing, until the tarpit is dropped.
        return std::future::pending().await;
    }
    // Read up to the end of the request head.
    let mut head = Vec::new();
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tls.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if stall == Stall::Swallow {
            break;
        }
    }
    let answered = match stall {
        Stall::ResetMidBody => {
            let mut reply = b"HTTP/1.1 200 OK\r\ncontent-length: 65536\r\n\r\n".to_vec();
            reply.extend(std::iter::repeat_n(b'x', 1000));
            reply
        }
        Stall::LongerThanLength => {
            let mut reply = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n".to_vec();
            reply.extend(std::iter::repeat_n(b'x', 10_000));
            reply
        }
        Stall::BadChunks => {
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\nabcd\r\nzz\r\nxx\r\n"
                .to_vec()
        }
        Stall::ManyHeaders => {
            let mut reply = b"HTTP/1.1 200 OK\r\n".to_vec();
            for i in 0..10_000 {
                reply.extend(format!("x-h{i}: v\r\n").bytes());
            }
            reply.extend(b"content-length: 0\r\n\r\n");
            reply
        }
        _ => Vec::new(),
    };
    if !answered.is_empty() {
        if tls.write_all(&answered).await.is_err() || tls.flush().await.is_err() {
            return;
        }
        if stall == Stall::ResetMidBody {
            // Once the client has read what came (a reset discards what it has not), close with
            // SO_LINGER 0: an RST, not a FIN.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let _ = tls.get_ref().0.set_zero_linger();
            return;
        }
        // Close the write side and hold the connection until the client goes.
        let _ = tls.shutdown().await;
        while matches!(tls.read(&mut buf).await, Ok(n) if n > 0) {}
        return;
    }
    match stall {
        Stall::Silent
        | Stall::NoHandshake
        | Stall::ResetMidBody
        | Stall::LongerThanLength
        | Stall::BadChunks
        | Stall::ManyHeaders => {}
        Stall::Swallow => loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        },
        Stall::DripHead | Stall::Trickle => {
            let every = if stall == Stall::Trickle {
                Duration::from_secs(1)
            } else {
                DRIP
            };
            for byte in b"HTTP/1.1 200 OK\r\nx-drip: "
                .iter()
                .chain(std::iter::repeat(&b'x'))
            {
                if tls.write_all(&[*byte]).await.is_err() || tls.flush().await.is_err() {
                    return;
                }
                tokio::time::sleep(every).await;
            }
        }
        Stall::EndlessBody => {
            let head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
            if tls.write_all(head).await.is_err() {
                return;
            }
            let mut chunk = b"10000\r\n".to_vec();
            chunk.extend(std::iter::repeat_n(b'x', 0x10000));
            chunk.extend(b"\r\n");
            while tls.write_all(&chunk).await.is_ok() {}
        }
        Stall::DripBody => {
            let head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
            if tls.write_all(head).await.is_err() {
                return;
            }
            loop {
                if tls.write_all(b"1\r\nx\r\n").await.is_err() || tls.flush().await.is_err() {
                    return;
                }
                tokio::time::sleep(DRIP).await;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Victim
// ---------------------------------------------------------------------------------------------

/// A plain TCP listener standing in for an internal service (metadata, admin port): it counts
/// accepts and closes each connection at once. SSRF tests assert `accepts() == 0`.
pub struct Victim {
    listener: Listener,
}

impl Victim {
    /// Binds `ip:0`. Not `async`, like [`airlock_testkit::Upstream::start`]. Panics if `ip` is
    /// not loopback.
    pub fn start(ip: IpAddr) -> Victim {
        let listener = Listener::start(ip, |stream| async move { drop(stream) })
            .unwrap_or_else(|e| panic!("victim: {e}"));
        Victim { listener }
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener.addr()
    }

    /// TCP connections accepted so far, counting every connection the kernel has completed by
    /// now (so a connection made just before this call is never missed).
    pub fn accepts(&self) -> usize {
        self.listener.accepts()
    }
}

#[cfg(test)]
mod self_tests {
    use std::io::Read as _;
    use std::net::{Ipv4Addr, TcpStream as StdTcpStream};

    use super::*;

    /// The victim counts a connection as soon as `connect()` returned, and closes it.
    #[test]
    fn mock_self_test_victim_counts_and_closes() {
        let victim = Victim::start(IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(victim.accepts(), 0);
        let mut stream = StdTcpStream::connect(victim.addr()).expect("victim listens");
        // Counted as soon as connect() returned: no sleeping, no polling.
        assert_eq!(victim.accepts(), 1);
        let mut rest = Vec::new();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("set timeout");
        assert_eq!(stream.read_to_end(&mut rest).expect("victim closes"), 0);

        let addr = victim.addr();
        drop(victim);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while StdTcpStream::connect(addr).is_ok() {
            assert!(std::time::Instant::now() < deadline, "{addr} still open");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    #[should_panic(expected = "loopback only")]
    fn mock_self_test_refuses_non_loopback() {
        Victim::start(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    }
}
