//! Keep-alive connections to upstreams, so a guest's second request to an API does not pay for
//! a new TCP and TLS handshake (docs/security-model.md, "Connection reuse").
//!
//! A connection is reused only under its whole [`PoolKey`]: the same tenant, installation and
//! end user, the same origin, and the same checked address, which the request's own resolution
//! and classification must have returned again. So reuse skips the handshake and nothing
//! else: each request is still judged against the policy, resolved, has its credential
//! injected and is recorded on its own. A connection goes back to the pool only after its
//! response body was read to its end without error; one whose body was cut off, over a limit
//! or abandoned closes. Each scope resumes TLS sessions from its own cache, never another's.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use hyper::client::conn::http1::SendRequest;
use tokio::task::AbortHandle;

/// Idle connections kept for one key: a guest's concurrent requests to one API.
const IDLE_PER_KEY: usize = 8;
/// Idle connections kept in all; past it the longest idle is closed.
const IDLE_TOTAL: usize = 512;
/// How long an idle connection is kept (most servers close theirs after 5 to 120 s).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Scopes whose TLS session caches are kept; past it one is dropped (its sessions resume no
/// more, nothing else changes).
const TLS_SCOPES: usize = 4096;
/// TLS sessions kept per scope.
const SESSIONS_PER_SCOPE: usize = 64;

/// Who a connection belongs to: one tenant's installation, for one end user (or none).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Scope(Arc<str>);

impl Scope {
    pub(crate) fn new(tenant: &str, installation: &str, user: Option<&str>) -> Self {
        // Quoted and escaped, so no choice of names makes two scopes spell the same key.
        Self(format!("{:?}", (tenant, installation, user)).into())
    }

    /// The key of this scope's connections to `host:port` dialed to `addr`.
    pub(crate) fn key(&self, host: &str, port: u16, addr: SocketAddr) -> PoolKey {
        PoolKey {
            scope: self.clone(),
            host: host.to_string(),
            port,
            addr,
        }
    }
}

/// What a pooled connection may be reused for: all of it must match.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PoolKey {
    pub scope: Scope,
    pub host: String,
    pub port: u16,
    /// The checked address the connection was dialed to.
    pub addr: SocketAddr,
}

/// An HTTP/1.1 connection sending request bodies of type `B`: the handle to send on, and the
/// task driving it, which stops when this is dropped.
pub(crate) struct Conn<B> {
    pub sender: SendRequest<B>,
    _driver: AbortOnDrop,
}

impl<B> Conn<B> {
    /// Drives `connection` on a task of its own for as long as the returned `Conn` lives.
    pub(crate) fn spawn<F>(sender: SendRequest<B>, connection: F) -> Self
    where
        F: Future<Output = Result<(), hyper::Error>> + Send + 'static,
    {
        let task = tokio::spawn(async move {
            let _ = connection.await;
        });
        Self {
            sender,
            _driver: AbortOnDrop(task.abort_handle()),
        }
    }

    fn usable(&self) -> bool {
        !self.sender.is_closed()
    }
}

struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A connection in use, and where it goes back to once its response ends cleanly.
pub(crate) struct Lease<B> {
    conn: Conn<B>,
    home: Option<(Weak<Idle<B>>, PoolKey)>,
}

impl<B: Send + 'static> Lease<B> {
    /// A connection nobody will reuse (the host's own requests).
    pub(crate) fn single(conn: Conn<B>) -> Self {
        Self { conn, home: None }
    }

    pub(crate) fn sender(&mut self) -> &mut SendRequest<B> {
        &mut self.conn.sender
    }

    /// The response was read to its end: the connection goes back to its pool once it can take
    /// another request. Dropping a lease instead closes the connection.
    pub(crate) fn release(self) {
        let Some((idle, key)) = self.home else {
            return;
        };
        let mut conn = self.conn;
        if conn.sender.is_ready() {
            if let Some(idle) = idle.upgrade() {
                idle.put(key, conn);
            }
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            // Ready as soon as its driver has seen the response end.
            let ready = tokio::time::timeout(Duration::from_secs(1), conn.sender.ready()).await;
            if let (Ok(Ok(())), Some(idle)) = (ready, idle.upgrade()) {
                idle.put(key, conn);
            }
        });
    }
}

/// The idle connections of a runtime, and each scope's TLS client configuration.
pub(crate) struct ConnectionPool<B> {
    idle: Arc<Idle<B>>,
    tls: Mutex<HashMap<Scope, Arc<rustls::ClientConfig>>>,
}

/// Idle connections by key, each with when it went idle, the most recent last.
struct Idle<B>(Mutex<HashMap<PoolKey, Vec<Idled<B>>>>);

type Idled<B> = (Instant, Conn<B>);

impl<B: Send + 'static> ConnectionPool<B> {
    pub(crate) fn new() -> Self {
        Self {
            idle: Arc::new(Idle(Mutex::default())),
            tls: Mutex::default(),
        }
    }

    /// An idle connection for `key` that is still open, most recently used first.
    pub(crate) fn take(&self, key: &PoolKey) -> Option<Lease<B>> {
        let conn = self.idle.take(key)?;
        Some(self.lease(key.clone(), conn))
    }

    /// A new connection for `key`, which goes back to this pool when released.
    pub(crate) fn lease(&self, key: PoolKey, conn: Conn<B>) -> Lease<B> {
        Lease {
            conn,
            home: Some((Arc::downgrade(&self.idle), key)),
        }
    }

    /// The TLS configuration of `scope`: `base` with a session cache of the scope's own, so a
    /// resumed session never crosses tenants, installations or users.
    pub(crate) fn tls(
        &self,
        scope: &Scope,
        base: &Arc<rustls::ClientConfig>,
    ) -> Arc<rustls::ClientConfig> {
        let mut configs = self.tls.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(config) = configs.get(scope) {
            return config.clone();
        }
        if configs.len() >= TLS_SCOPES
            && let Some(dropped) = configs.keys().next().cloned()
        {
            configs.remove(&dropped);
        }
        let mut config = rustls::ClientConfig::clone(base);
        config.resumption = rustls::client::Resumption::in_memory_sessions(SESSIONS_PER_SCOPE);
        let config = Arc::new(config);
        configs.insert(scope.clone(), config.clone());
        config
    }
}

impl<B> Idle<B> {
    fn take(&self, key: &PoolKey) -> Option<Conn<B>> {
        let mut idle = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let conns = idle.get_mut(key)?;
        let now = Instant::now();
        let mut found = None;
        while let Some((since, conn)) = conns.pop() {
            if now.duration_since(since) < IDLE_TIMEOUT && conn.usable() {
                found = Some(conn);
                break;
            }
        }
        if conns.is_empty() {
            idle.remove(key);
        }
        found
    }

    fn put(&self, key: PoolKey, conn: Conn<B>) {
        let mut idle = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        // Sweep: connections past their idle time or closed by the server go now.
        idle.retain(|_, conns| {
            conns
                .retain(|(since, conn)| now.duration_since(*since) < IDLE_TIMEOUT && conn.usable());
            !conns.is_empty()
        });
        let total: usize = idle.values().map(Vec::len).sum();
        if total >= IDLE_TOTAL
            && let Some(oldest) = idle
                .iter()
                .filter_map(|(key, conns)| conns.first().map(|(since, _)| (*since, key.clone())))
                .min_by_key(|(since, _)| *since)
                .map(|(_, key)| key)
            && let Some(conns) = idle.get_mut(&oldest)
        {
            conns.remove(0);
            if conns.is_empty() {
                idle.remove(&oldest);
            }
        }
        let conns = idle.entry(key).or_default();
        if conns.len() >= IDLE_PER_KEY {
            conns.remove(0);
        }
        conns.push((now, conn));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_two_subjects_share_a_scope() {
        let scopes = [
            Scope::new("a", "b", None),
            Scope::new("a", "b:c", None),
            Scope::new("a:b", "c", None),
            Scope::new("a", "bc", None),
            Scope::new("ab", "c", None),
            Scope::new("a", "b", Some("c")),
            Scope::new("a", "b", Some("")),
            Scope::new("a", "b:1:c", None),
        ];
        for (i, one) in scopes.iter().enumerate() {
            for other in &scopes[i + 1..] {
                assert_ne!(one, other);
            }
        }
        assert_eq!(Scope::new("a", "b", None), Scope::new("a", "b", None));
    }
}
