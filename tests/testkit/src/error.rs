//! [`LoopbackError`]: why a stand-in could not start.

use std::net::IpAddr;

/// A stand-in could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoopbackError {
    #[error("cannot make a certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("cannot configure TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("test servers bind loopback only (127.0.0.0/8 or ::1), not {0}")]
    NotLoopback(IpAddr),
    #[error("cannot listen on {ip}: {source}")]
    Listen { ip: IpAddr, source: std::io::Error },
    #[error("cannot start the loopback servers' runtime: {0}")]
    Runtime(String),
}
