//! Name resolution for egress: the [`Resolver`] asked once per request, and the
//! `--resolve HOST=IP[:PORT]` pins (as in curl) that let tests and local runs point an allowed
//! name at a mock without touching DNS.
//!
//! Whoever answers, every address is classified before it is dialed and only the checked answer
//! is dialed (docs/security-model.md): a resolver decides where a name points, never what may be
//! reached.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;

/// The answer to one lookup: every address of `host` on `port`, in the resolver's order.
pub type Lookup<'a> = Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>>;

/// A source of answers for host names. The system resolver unless an embedder supplies another
/// (the end-to-end tests script rebinding, mixed and failing answers through it: security
/// catalogue §7). The broker asks it exactly once per request, under the DNS timeout.
pub trait Resolve: Send + Sync {
    fn lookup<'a>(&'a self, host: &'a str, port: u16) -> Lookup<'a>;
}

/// The resolver of a runtime's egress.
#[derive(Clone)]
pub struct Resolver(Arc<dyn Resolve>);

impl Resolver {
    /// The operating system's resolver (`getaddrinfo` on a blocking thread). A lookup abandoned
    /// at the DNS timeout returns at once, but its thread stays until the system gives up.
    pub fn system() -> Self {
        Self(Arc::new(SystemResolver))
    }

    /// A resolver of the embedder's own.
    pub fn new(resolve: impl Resolve + 'static) -> Self {
        Self(Arc::new(resolve))
    }

    pub(crate) fn lookup<'a>(&'a self, host: &'a str, port: u16) -> Lookup<'a> {
        self.0.lookup(host, port)
    }
}

impl Default for Resolver {
    fn default() -> Self {
        Self::system()
    }
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Resolver(..)")
    }
}

struct SystemResolver;

impl Resolve for SystemResolver {
    fn lookup<'a>(&'a self, host: &'a str, port: u16) -> Lookup<'a> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

/// One pin: requests for `host` dial `addr` (on `port`, or the URL's port when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveOverride {
    host: String,
    addr: IpAddr,
    port: Option<u16>,
}

/// A `--resolve` value that is not `HOST=IP`, `HOST=IP:PORT` or `HOST=[IPv6]:PORT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--resolve {input:?}: {reason}")]
pub struct ResolveOverrideError {
    input: String,
    reason: &'static str,
}

/// The host of a pin that applies to every name.
const EVERY_HOST: &str = "*";

impl ResolveOverride {
    /// A pin for every host name, to `addr`: what `airlock test` uses so that no request of a
    /// fixture run leaves the machine, whatever name it asks for. Never parsed from a flag.
    pub fn every_host(addr: SocketAddr) -> Self {
        Self {
            host: EVERY_HOST.to_string(),
            addr: addr.ip(),
            port: Some(addr.port()),
        }
    }

    /// The pinned host name (lowercase, without a trailing dot), or `*` for every name.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Whether this pin applies to a canonical host name.
    pub fn matches(&self, host: &str) -> bool {
        self.host == host || self.host == EVERY_HOST
    }

    /// The address to dial for a request to this host on `url_port`.
    pub fn socket_addr(&self, url_port: u16) -> SocketAddr {
        SocketAddr::new(self.addr, self.port.unwrap_or(url_port))
    }
}

impl FromStr for ResolveOverride {
    type Err = ResolveOverrideError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let error = |reason| ResolveOverrideError {
            input: input.to_string(),
            reason,
        };
        let (host, target) = input
            .split_once('=')
            .ok_or_else(|| error("expected HOST=IP or HOST=IP:PORT"))?;
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        let valid_host = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
        if !valid_host {
            return Err(error("the host must be a DNS name"));
        }
        let (addr, port) = if let Ok(addr) = target.parse::<IpAddr>() {
            (addr, None)
        } else if let Ok(socket) = target.parse::<SocketAddr>() {
            (socket.ip(), Some(socket.port()))
        } else {
            return Err(error("the target must be IP, IP:PORT or [IPv6]:PORT"));
        };
        if port == Some(0) {
            return Err(error("port 0 cannot be dialed"));
        }
        Ok(Self { host, addr, port })
    }
}

impl fmt::Display for ResolveOverride {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}={}", self.host, SocketAddr::new(self.addr, port)),
            None => write!(f, "{}={}", self.host, self.addr),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_parse_like_curl_resolve() {
        /// Ok((host, address dialed for port 443)) or Err(a fragment of the message).
        type Expected = Result<(&'static str, &'static str), &'static str>;
        let cases: &[(&str, Expected)] = &[
            (
                "api.example.com=10.0.0.5",
                Ok(("api.example.com", "10.0.0.5:443")),
            ),
            (
                "API.Example.com.=127.0.0.1:8443",
                Ok(("api.example.com", "127.0.0.1:8443")),
            ),
            (
                "api.example.com=[::1]:9000",
                Ok(("api.example.com", "[::1]:9000")),
            ),
            ("api.example.com=::1", Ok(("api.example.com", "[::1]:443"))),
            ("api.example.com", Err("expected HOST=IP")),
            ("=10.0.0.1", Err("DNS name")),
            ("a b=10.0.0.1", Err("DNS name")),
            ("api.example.com=localhost", Err("IP, IP:PORT")),
            ("api.example.com=10.0.0.1:0", Err("port 0")),
            ("api.example.com=10.0.0.1:70000", Err("IP, IP:PORT")),
        ];
        for (input, expected) in cases {
            let got = input.parse::<ResolveOverride>();
            match (expected, got) {
                (Ok((host, addr)), Ok(pin)) => {
                    assert_eq!(pin.host(), *host, "{input}");
                    assert_eq!(pin.socket_addr(443).to_string(), *addr, "{input}");
                    assert_eq!(pin.to_string().parse::<ResolveOverride>(), Ok(pin));
                }
                (Err(fragment), Err(e)) => {
                    assert!(e.to_string().contains(fragment), "{input}: {e}")
                }
                (expected, got) => panic!("{input}: expected {expected:?}, got {got:?}"),
            }
        }
        // `*` is only ever built in code: as a flag it is not a DNS name.
        assert!("*=127.0.0.1".parse::<ResolveOverride>().is_err());
    }

    #[test]
    fn an_every_host_pin_matches_every_name_on_its_own_port() {
        let pin = ResolveOverride::every_host("127.0.0.1:4443".parse().expect("address"));
        for host in ["api.github.com", "slack.com", "x.y.example"] {
            assert!(pin.matches(host));
        }
        assert_eq!(pin.socket_addr(443).to_string(), "127.0.0.1:4443");
    }
}
