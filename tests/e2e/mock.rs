//! Loopback servers for end-to-end egress tests (security catalogue §7).
//!
//! * [`TestCa`]: a throwaway certificate authority; its PEM is the only extra root the host
//!   under test is told to trust, so a certificate it did not issue must fail (EG-23).
//! * [`MockUpstream`]: an HTTPS server on a loopback address (e.g. `127.0.0.2` for a "public"
//!   upstream) that records every request, including the TLS SNI, and answers from a closure.
//! * [`Victim`]: a plain TCP listener standing in for an internal service; SSRF tests assert its
//!   accept count stays 0.
//!
//! Test traffic goes to loopback only: every constructor refuses a non-loopback address.
//!
//! The servers run on a runtime of their own (one, shared, on background threads), not on the
//! test's runtime. That way a plain `#[test]` that runs the `airlock` binary with a blocking
//! `std::process::Command`, or a `#[tokio::test]` on a current-thread runtime that blocks, still
//! gets answered instead of deadlocking; and the constructors are plain functions usable from
//! both kinds of test.
//!
//! Accept counts are exact at the moment they are read: [`Victim::accepts`] and
//! [`MockUpstream::accepts`] first accept, synchronously, every connection already waiting in
//! the kernel's backlog. On loopback a `connect()` that returned has completed its handshake and
//! sits in that backlog, so "the host connected" can never be missed because the background
//! accept loop had not run yet (which would make an SSRF test pass falsely).

#![allow(dead_code, reason = "each test uses a different part of this helper")]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener as StdTcpListener, TcpStream as StdTcpStream};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::runtime::{Handle, Runtime};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

// ---------------------------------------------------------------------------------------------
// Certificate authority
// ---------------------------------------------------------------------------------------------

/// A throwaway certificate authority for one test; its PEM is what `--extra-root-ca` gets.
///
/// A fresh CA per test means no test can pass because another test's CA happened to be trusted.
/// Keys are ECDSA P-256 (rcgen's default, via `ring`); certificates use rcgen's default validity
/// (1975 to 4096), so a test never fails on the clock.
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    cert_pem: String,
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    pub fn new() -> Self {
        // A distinct name per CA: a verifier looks issuers up by name, so two CAs sharing one
        // would turn "unknown issuer" into a confusing "bad signature".
        static SERIAL: AtomicUsize = AtomicUsize::new(0);
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("Airlock test CA {} #{serial}", std::process::id()),
        );
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().expect("generate CA key");
        let issuer = rcgen::CertifiedIssuer::self_signed(params, key).expect("self-sign CA");
        let cert_pem = issuer.pem();
        Self { issuer, cert_pem }
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate in DER, for building a client root store directly.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// Writes the CA certificate to `dir/ca.pem` and returns the path.
    pub fn write_pem(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.cert_pem)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }

    /// A rustls client config that trusts this CA and nothing else (no web PKI roots), offering
    /// HTTP/1.1 by ALPN. For tests that talk to a mock directly rather than through the host.
    pub fn client_config(&self) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert_der()).expect("CA certificate parses");
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config
    }

    /// Issues a server certificate for `names`: each is a DNS name, or an IP address (which
    /// becomes an IP subject-alternative name). Returns the chain (leaf only) and its key.
    fn issue(&self, names: &[&str]) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        assert!(
            !names.is_empty(),
            "a server certificate needs at least one name"
        );
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = rcgen::CertificateParams::new(names.clone())
            .unwrap_or_else(|e| panic!("invalid certificate names {names:?}: {e}"));
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0].as_str());
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = rcgen::KeyPair::generate().expect("generate server key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("sign server certificate");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (vec![cert.der().clone()], key)
    }
}

// ---------------------------------------------------------------------------------------------
// What the mock saw, and how it answers
// ---------------------------------------------------------------------------------------------

/// What the mock saw: one entry per request, in order.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// As sent in the request line (origin form), e.g. `/v1/items?x=1`.
    pub path_and_query: String,
    /// Lowercase names, every value (repeated headers appear once per value), in the order
    /// hyper's `HeaderMap` keeps (first occurrence of each name). Non-UTF-8 bytes are replaced.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The server name the client sent in its TLS `ClientHello`; `None` if it sent none (rustls
    /// sends none when connecting to an IP address).
    pub sni: Option<String>,
}

impl Recorded {
    /// Every value of header `name` (matched case-insensitively), in order.
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// How the mock answers: status, headers, body.
///
/// Invalid statuses and header names or values panic where the response is built (in the
/// test's closure), so a typo fails loudly rather than as a dropped connection. Do not set
/// `content-length` or `transfer-encoding` yourself: hyper frames the body (see
/// [`MockResponse::chunked`]).
#[derive(Debug, Clone)]
pub struct MockResponse {
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
    /// How many times the body is sent (1 unless [`Self::repeated`]).
    copies: u64,
    chunked: bool,
    delay: Option<Duration>,
}

impl MockResponse {
    /// An empty body with `code`.
    pub fn status(code: u16) -> Self {
        Self {
            status: StatusCode::from_u16(code)
                .unwrap_or_else(|e| panic!("invalid status {code}: {e}")),
            headers: Vec::new(),
            body: Bytes::new(),
            copies: 1,
            chunked: false,
            delay: None,
        }
    }

    /// `value` serialised as the body, with `content-type: application/json`.
    pub fn json(code: u16, value: serde_json::Value) -> Self {
        Self::status(code)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&value).expect("JSON value serialises"))
    }

    /// A redirect (301, 302, 303, 307, 308) to `location`, taken verbatim (relative, absolute,
    /// or deliberately odd: redirect-to-internal tests need exactly what they wrote).
    pub fn redirect(code: u16, location: &str) -> Self {
        Self::status(code).header("location", location)
    }

    /// Raw bytes with `content-type: application/octet-stream`, framed with `content-length`
    /// and written as the client reads. For response-size limits; add [`Self::chunked`] so
    /// the size is not announced up front.
    pub fn bytes(code: u16, body: Vec<u8>) -> Self {
        Self::status(code)
            .header("content-type", "application/octet-stream")
            .body(body)
    }

    /// 200 with a JSON body echoing the request, for credential-redaction tests: shows exactly
    /// which headers (e.g. an injected `authorization`) reached the upstream.
    /// Shape: `{"method": "GET", "path": "/x?y", "headers": {"name": ["value", ...]}}`.
    pub fn echo_headers(request: &Recorded) -> Self {
        let mut headers: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (name, value) in &request.headers {
            headers.entry(name).or_default().push(value);
        }
        Self::json(
            200,
            serde_json::json!({
                "method": request.method,
                "path": request.path_and_query,
                "headers": headers,
            }),
        )
    }

    /// Adds a header (repeatable: each call adds one more value).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        let name = HeaderName::from_bytes(name.as_bytes())
            .unwrap_or_else(|e| panic!("invalid header name {name:?}: {e}"));
        let value = HeaderValue::from_str(value)
            .unwrap_or_else(|e| panic!("invalid header value {value:?}: {e}"));
        self.headers.push((name, value));
        self
    }

    /// Replaces the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Sends the body with `transfer-encoding: chunked` in 16 KiB chunks and no
    /// `content-length`, so a client can only enforce a size limit while reading.
    pub fn chunked(mut self) -> Self {
        self.chunked = true;
        self
    }

    /// Sends the body `copies` times over (the length announced is the total unless
    /// [`Self::chunked`]), made as it is written: a body of gigabytes costs the mock one copy.
    pub fn repeated(mut self, copies: u64) -> Self {
        self.copies = copies;
        self
    }

    /// Waits this long before sending the response head, for timeout tests. (The handler is a
    /// plain closure; sleeping inside it would stall the mock's runtime.)
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    fn into_response(self) -> Response<MockBody> {
        let mut response = Response::new(MockBody {
            data: self.body.clone(),
            copy: self.body,
            more: self.copies.saturating_sub(1),
            chunked: self.chunked,
        });
        *response.status_mut() = self.status;
        for (name, value) in self.headers {
            response.headers_mut().append(name, value);
        }
        response
    }
}

/// A response body that either announces its exact length (hyper sends `content-length`) or
/// hides it and yields 16 KiB frames (hyper sends chunked encoding).
struct MockBody {
    data: Bytes,
    /// The whole body, and how many more times it follows `data`.
    copy: Bytes,
    more: u64,
    chunked: bool,
}

const CHUNK: usize = 16 * 1024;

impl Body for MockBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.data.is_empty() {
            if self.more == 0 || self.copy.is_empty() {
                return Poll::Ready(None);
            }
            self.more -= 1;
            self.data = self.copy.clone();
        }
        let take = if self.chunked {
            self.data.len().min(CHUNK)
        } else {
            self.data.len()
        };
        let frame = self.data.split_to(take);
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty() && (self.more == 0 || self.copy.is_empty())
    }

    fn size_hint(&self) -> SizeHint {
        if self.chunked {
            SizeHint::default()
        } else {
            let rest = (self.copy.len() as u64).saturating_mul(self.more);
            SizeHint::with_exact(self.data.len() as u64 + rest)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Listeners
// ---------------------------------------------------------------------------------------------

/// The runtime every mock runs on, separate from the test's own (see the module docs).
fn mock_runtime() -> &'static Handle {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("airlock-test-mock")
                .enable_all()
                .build()
                .expect("mock runtime starts")
        })
        .handle()
}

fn bind_loopback(ip: IpAddr) -> StdTcpListener {
    assert!(
        ip.is_loopback(),
        "test servers bind loopback only (127.0.0.0/8 or ::1), not {ip}"
    );
    let listener =
        StdTcpListener::bind((ip, 0)).unwrap_or_else(|e| panic!("cannot bind {ip}:0: {e}"));
    listener
        .set_nonblocking(true)
        .expect("listener set non-blocking");
    listener
}

type OnAccept = dyn Fn(StdTcpStream) + Send + Sync;

/// A listening socket whose connections are counted and handed to `on_accept`, both by a
/// background task and by [`Acceptor::drain`] (called when a test reads the count).
///
/// The task accepts through a tokio listener; `drain` through a duplicate of the same socket
/// in non-blocking mode, so it never touches the task's waker (which polling the tokio
/// listener from outside would replace). Both hold `sync`'s lock across the `accept` call and
/// the count, so a connection the kernel has handed out is always counted by the time the lock
/// is free: no window in which `drain` finds the backlog empty but the count not yet raised.
struct Acceptor {
    sync: Mutex<StdTcpListener>,
    addr: SocketAddr,
    accepts: AtomicUsize,
    on_accept: Box<OnAccept>,
}

impl Acceptor {
    /// Binds `ip:0` and starts the accept loop; it stops when `shutdown`'s sender is dropped.
    fn start(ip: IpAddr, on_accept: Box<OnAccept>, shutdown: watch::Receiver<()>) -> Arc<Self> {
        let sync = bind_loopback(ip);
        let addr = sync.local_addr().expect("listener address");
        let handle = mock_runtime();
        let listener = {
            // Registering with the reactor needs the runtime's context.
            let _guard = handle.enter();
            tokio::net::TcpListener::from_std(sync.try_clone().expect("duplicate listener"))
                .expect("register listener")
        };
        let acceptor = Arc::new(Self {
            sync: Mutex::new(sync),
            addr,
            accepts: AtomicUsize::new(0),
            on_accept,
        });
        handle.spawn(Arc::clone(&acceptor).run(listener, shutdown));
        acceptor
    }

    async fn run(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        mut shutdown: watch::Receiver<()>,
    ) {
        let accept = || {
            std::future::poll_fn(|cx| {
                // Held only inside this synchronous poll, never across an await.
                let _lock = self.sync.lock().expect("listener lock not poisoned");
                let polled = listener.poll_accept(cx);
                if let Poll::Ready(Ok(_)) = polled {
                    self.accepts.fetch_add(1, Ordering::SeqCst);
                }
                polled
            })
        };
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                accepted = accept() => match accepted.and_then(|(stream, _)| stream.into_std()) {
                    Ok(stream) => (self.on_accept)(stream),
                    // e.g. out of file descriptors: back off rather than spin.
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                },
            }
        }
    }

    /// Accepts every connection already waiting in the backlog.
    fn drain(&self) {
        let mut accepted = Vec::new();
        {
            let listener = self.sync.lock().expect("listener lock not poisoned");
            loop {
                match listener.accept() {
                    Ok((stream, _)) => {
                        self.accepts.fetch_add(1, Ordering::SeqCst);
                        accepted.push(stream);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
        for stream in accepted {
            (self.on_accept)(stream);
        }
    }

    fn accepts(&self) -> usize {
        self.drain();
        self.accepts.load(Ordering::SeqCst)
    }
}

// ---------------------------------------------------------------------------------------------
// Upstream
// ---------------------------------------------------------------------------------------------

type Respond = dyn Fn(&Recorded) -> MockResponse + Send + Sync;

struct UpstreamState {
    tls: TlsAcceptor,
    respond: Box<Respond>,
    requests: Mutex<Vec<Recorded>>,
}

/// An HTTPS server on a loopback address with a certificate for `names`, answering with
/// `respond`. Stops its tasks (accept loop and open connections) when dropped.
pub struct MockUpstream {
    acceptor: Arc<Acceptor>,
    state: Arc<UpstreamState>,
    _shutdown: watch::Sender<()>,
}

impl MockUpstream {
    /// Binds `ip:0` (so tests can use 127.0.0.2 etc. for "public" upstreams), serves TLS with a
    /// certificate from `ca` for `names` (DNS names or IP addresses) whatever SNI the client
    /// sends, speaks HTTP/1.1 (the only protocol it offers by ALPN; a client offering no ALPN
    /// gets HTTP/1.1 too), records every request, and answers with `respond`.
    ///
    /// Not `async`: it only binds a socket, and a plain `#[test]` driving the `airlock` binary
    /// can call it too. Panics if `ip` is not loopback.
    pub fn start(
        ca: &TestCa,
        names: &[&str],
        ip: IpAddr,
        respond: impl Fn(&Recorded) -> MockResponse + Send + Sync + 'static,
    ) -> MockUpstream {
        let state = Arc::new(UpstreamState {
            tls: server_tls(ca, names),
            respond: Box::new(respond),
            requests: Mutex::new(Vec::new()),
        });
        let (shutdown, shutdown_rx) = watch::channel(());
        let on_accept = {
            let state = Arc::clone(&state);
            let shutdown = shutdown_rx.clone();
            Box::new(move |stream: StdTcpStream| {
                let state = Arc::clone(&state);
                let mut shutdown = shutdown.clone();
                mock_runtime().spawn(async move {
                    tokio::select! {
                        _ = shutdown.changed() => {}
                        _ = serve(state, stream) => {}
                    }
                });
            })
        };
        let acceptor = Acceptor::start(ip, on_accept, shutdown_rx);
        MockUpstream {
            acceptor,
            state,
            _shutdown: shutdown,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.acceptor.addr
    }

    /// Every request answered or being answered so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state
            .requests
            .lock()
            .expect("requests lock not poisoned")
            .clone()
    }

    /// TCP connections accepted so far (including ones whose TLS handshake failed), counting
    /// every connection the kernel has completed by now.
    pub fn accepts(&self) -> usize {
        self.acceptor.accepts()
    }
}

/// A TLS acceptor with a certificate from `ca` for `names`, offering HTTP/1.1 only.
fn server_tls(ca: &TestCa, names: &[&str]) -> TlsAcceptor {
    let (chain, key) = ca.issue(names);
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default TLS versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("server certificate and key match");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsAcceptor::from(Arc::new(config))
}

/// One connection: TLS handshake (failures just close it), then HTTP/1.1 with keep-alive.
async fn serve(state: Arc<UpstreamState>, stream: StdTcpStream) {
    // Accepted sockets do not inherit the listener's non-blocking flag on Linux.
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let Ok(stream) = tokio::net::TcpStream::from_std(stream) else {
        return;
    };
    let Ok(tls) = state.tls.accept(stream).await else {
        return;
    };
    let sni = tls.get_ref().1.server_name().map(str::to_owned);
    let service = hyper::service::service_fn(move |request| {
        let state = Arc::clone(&state);
        let sni = sni.clone();
        async move { Ok::<_, Infallible>(answer(&state, request, sni).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tls), service)
        .await;
}

async fn answer(
    state: &UpstreamState,
    request: Request<Incoming>,
    sni: Option<String>,
) -> Response<MockBody> {
    let (parts, body) = request.into_parts();
    // A body the client aborted is recorded as what arrived: nothing.
    let body = body
        .collect()
        .await
        .map(|collected| collected.to_bytes().to_vec())
        .unwrap_or_default();
    let recorded = Recorded {
        method: parts.method.as_str().to_owned(),
        path_and_query: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned()),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
        sni,
    };
    state
        .requests
        .lock()
        .expect("requests lock not poisoned")
        .push(recorded.clone());
    let response = (state.respond)(&recorded);
    if let Some(delay) = response.delay {
        tokio::time::sleep(delay).await;
    }
    response.into_response()
}

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
}

/// An HTTPS listener on loopback that completes TLS for `names` and then stalls each
/// connection as its [`Stall`] says, keeping it open until the client goes or the tarpit is
/// dropped.
pub struct Tarpit {
    acceptor: Arc<Acceptor>,
    _shutdown: watch::Sender<()>,
}

/// How long a dripping tarpit waits between bytes.
const DRIP: Duration = Duration::from_millis(50);

impl Tarpit {
    pub fn start(ca: &TestCa, names: &[&str], ip: IpAddr, stall: Stall) -> Tarpit {
        let tls = server_tls(ca, names);
        let (shutdown, shutdown_rx) = watch::channel(());
        let on_accept = Box::new(move |stream: StdTcpStream| {
            let tls = tls.clone();
            let mut shutdown = shutdown_rx.clone();
            mock_runtime().spawn(async move {
                tokio::select! {
                    _ = shutdown.changed() => {}
                    _ = stall_connection(tls, stream, stall) => {}
                }
            });
        });
        let acceptor = Acceptor::start(ip, on_accept, shutdown.subscribe());
        Tarpit {
            acceptor,
            _shutdown: shutdown,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.acceptor.addr
    }

    /// Connections accepted so far.
    pub fn accepts(&self) -> usize {
        self.acceptor.accepts()
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

async fn stall_connection(tls: TlsAcceptor, stream: StdTcpStream, stall: Stall) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let Ok(stream) = tokio::net::TcpStream::from_std(stream) else {
        return;
    };
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
    match stall {
        Stall::Silent => {}
        Stall::Swallow => loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        },
        Stall::DripHead => {
            for byte in b"HTTP/1.1 200 OK\r\nx-drip: "
                .iter()
                .chain(std::iter::repeat(&b'x'))
            {
                if tls.write_all(&[*byte]).await.is_err() || tls.flush().await.is_err() {
                    return;
                }
                tokio::time::sleep(DRIP).await;
            }
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
    acceptor: Arc<Acceptor>,
    _shutdown: watch::Sender<()>,
}

impl Victim {
    /// Binds `ip:0`. Not `async`, like [`MockUpstream::start`]. Panics if `ip` is not loopback.
    pub fn start(ip: IpAddr) -> Victim {
        let (shutdown, shutdown_rx) = watch::channel(());
        let acceptor = Acceptor::start(ip, Box::new(drop), shutdown_rx);
        Victim {
            acceptor,
            _shutdown: shutdown,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.acceptor.addr
    }

    /// TCP connections accepted so far, counting every connection the kernel has completed by
    /// now (so a connection made just before this call is never missed).
    pub fn accepts(&self) -> usize {
        self.acceptor.accepts()
    }
}

// ---------------------------------------------------------------------------------------------
// Self-tests: a plain rustls/hyper client against the mocks (fast: no guests, no binary).
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod self_tests {
    use std::io::{Read as _, Write as _};
    use std::net::Ipv4Addr;

    use http_body_util::Full;
    use rustls::pki_types::ServerName;

    use super::*;

    const PUBLIC: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    const INTERNAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    type Error = Box<dyn std::error::Error + Send + Sync>;

    /// One request over a fresh TLS connection with `server_name` as SNI and verified name.
    async fn send(
        config: rustls::ClientConfig,
        addr: SocketAddr,
        server_name: &str,
        request: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, hyper::HeaderMap, Bytes), Error> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let name = ServerName::try_from(server_name.to_owned())?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await?;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(connection);
        let response = sender.send_request(request).await?;
        let (parts, body) = response.into_parts();
        Ok((
            parts.status,
            parts.headers,
            body.collect().await?.to_bytes(),
        ))
    }

    fn get(path: &str, host: &str) -> Request<Full<Bytes>> {
        Request::get(path)
            .header("host", host)
            .body(Full::default())
            .expect("request builds")
    }

    #[tokio::test]
    async fn mock_self_test_records_request_and_sni_on_127_0_0_2() {
        let ca = TestCa::new();
        let upstream = MockUpstream::start(&ca, &["api.allowed.test"], PUBLIC, |_| {
            MockResponse::json(201, serde_json::json!({"ok": true})).header("x-mock", "1")
        });
        assert_eq!(upstream.addr().ip(), PUBLIC);
        let request = Request::post("/v1/items?limit=2")
            .header("host", "api.allowed.test")
            .header("authorization", "Bearer canary")
            .header("X-Multi", "a")
            .header("x-multi", "b")
            .body(Full::new(Bytes::from_static(b"{\"n\":1}")))
            .expect("request builds");
        let (status, headers, body) = send(
            ca.client_config(),
            upstream.addr(),
            "api.allowed.test",
            request,
        )
        .await
        .expect("trusted client gets an answer");
        assert_eq!(status, 201);
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers["x-mock"], "1");
        assert_eq!(headers["content-length"], body.len().to_string().as_str());
        let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON body");
        assert_eq!(json, serde_json::json!({"ok": true}));

        let requests = upstream.requests();
        assert_eq!(requests.len(), 1);
        let seen = &requests[0];
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.path_and_query, "/v1/items?limit=2");
        assert_eq!(seen.header("Authorization"), ["Bearer canary"]);
        assert_eq!(seen.header("x-multi"), ["a", "b"]);
        assert_eq!(seen.header("host"), ["api.allowed.test"]);
        assert!(seen.headers.iter().all(|(n, _)| *n == n.to_lowercase()));
        assert_eq!(seen.body, b"{\"n\":1}");
        assert_eq!(seen.sni.as_deref(), Some("api.allowed.test"));
        assert_eq!(upstream.accepts(), 1);
    }

    #[tokio::test]
    async fn mock_self_test_untrusted_or_misnamed_handshake_fails_but_is_counted() {
        let ca = TestCa::new();
        let upstream = MockUpstream::start(&ca, &["api.allowed.test"], PUBLIC, |_| {
            MockResponse::status(204)
        });
        // A client trusting a different CA.
        let stranger = TestCa::new();
        let error = send(
            stranger.client_config(),
            upstream.addr(),
            "api.allowed.test",
            get("/", "api.allowed.test"),
        )
        .await
        .expect_err("a certificate from an untrusted CA must fail");
        assert!(
            error.to_string().contains("UnknownIssuer"),
            "unexpected error: {error}"
        );
        // The right CA, but a name the certificate does not cover.
        let error = send(
            ca.client_config(),
            upstream.addr(),
            "evil.test",
            get("/", "evil.test"),
        )
        .await
        .expect_err("a certificate for another name must fail");
        assert!(
            error.to_string().contains("not valid for name"),
            "unexpected error: {error}"
        );
        assert_eq!(upstream.accepts(), 2);
        assert!(upstream.requests().is_empty());
    }

    #[tokio::test]
    async fn mock_self_test_echo_chunked_redirect_and_ip_names() {
        let ca = TestCa::new();
        let upstream = MockUpstream::start(&ca, &["127.0.0.2"], PUBLIC, |request| {
            match request.path_and_query.as_str() {
                "/echo" => MockResponse::echo_headers(request),
                "/big" => MockResponse::bytes(200, vec![7; 1 << 20]).chunked(),
                _ => MockResponse::redirect(302, "http://127.0.0.1:1/latest/meta-data"),
            }
        });
        // An IP-address certificate name: rustls verifies the IP SAN and sends no SNI.
        let request = Request::get("/echo")
            .header("host", "127.0.0.2")
            .header("x-api-key", "canary-1")
            .body(Full::default())
            .expect("request builds");
        let (status, _, body) = send(ca.client_config(), upstream.addr(), "127.0.0.2", request)
            .await
            .expect("echo answers");
        assert_eq!(status, 200);
        let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON body");
        assert_eq!(json["method"], "GET");
        assert_eq!(json["path"], "/echo");
        assert_eq!(
            json["headers"]["x-api-key"],
            serde_json::json!(["canary-1"])
        );

        let (status, headers, body) = send(
            ca.client_config(),
            upstream.addr(),
            "127.0.0.2",
            get("/big", "127.0.0.2"),
        )
        .await
        .expect("big body answers");
        assert_eq!(status, 200);
        assert!(headers.get("content-length").is_none());
        assert_eq!(headers["transfer-encoding"], "chunked");
        assert_eq!(body.len(), 1 << 20);

        let (status, headers, _) = send(
            ca.client_config(),
            upstream.addr(),
            "127.0.0.2",
            get("/go", "127.0.0.2"),
        )
        .await
        .expect("redirect answers");
        assert_eq!(status, 302);
        assert_eq!(headers["location"], "http://127.0.0.1:1/latest/meta-data");
        assert!(upstream.requests().iter().all(|r| r.sni.is_none()));
    }

    /// A plain `#[test]` with blocking I/O, as a CLI test running the binary would be: the mock
    /// answers from its own runtime.
    #[test]
    fn mock_self_test_victim_counts_and_blocking_client_works() {
        let victim = Victim::start(INTERNAL);
        assert_eq!(victim.accepts(), 0);
        let mut stream = StdTcpStream::connect(victim.addr()).expect("victim listens");
        // Counted as soon as connect() returned: no sleeping, no polling.
        assert_eq!(victim.accepts(), 1);
        let mut rest = Vec::new();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("set timeout");
        assert_eq!(stream.read_to_end(&mut rest).expect("victim closes"), 0);

        let ca = TestCa::new();
        let upstream = MockUpstream::start(&ca, &["api.allowed.test"], PUBLIC, |_| {
            MockResponse::status(200).body("hello")
        });
        let name = ServerName::try_from("api.allowed.test").expect("valid name");
        let connection = rustls::ClientConnection::new(Arc::new(ca.client_config()), name)
            .expect("client connection");
        let tcp = StdTcpStream::connect(upstream.addr()).expect("upstream listens");
        let mut tls = rustls::StreamOwned::new(connection, tcp);
        tls.write_all(b"GET / HTTP/1.1\r\nhost: api.allowed.test\r\nconnection: close\r\n\r\n")
            .expect("request sent");
        let mut response = String::new();
        tls.read_to_string(&mut response).expect("response read");
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response.ends_with("\r\n\r\nhello"), "{response}");

        let victim_addr = victim.addr();
        let upstream_addr = upstream.addr();
        drop(victim);
        drop(upstream);
        // The listeners close once their accept loops see the shutdown.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        for addr in [victim_addr, upstream_addr] {
            while StdTcpStream::connect(addr).is_ok() {
                assert!(std::time::Instant::now() < deadline, "{addr} still open");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    #[test]
    #[should_panic(expected = "loopback only")]
    fn mock_self_test_refuses_non_loopback() {
        Victim::start(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    }

    #[test]
    fn mock_self_test_write_pem() {
        let ca = TestCa::new();
        let dir = tempfile::TempDir::new().expect("temp dir");
        let path = ca.write_pem(dir.path());
        assert_eq!(path, dir.path().join("ca.pem"));
        let written = std::fs::read_to_string(&path).expect("PEM written");
        assert!(written.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(written, ca.cert_pem());
    }
}
