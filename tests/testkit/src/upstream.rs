//! [`Upstream`]: an HTTPS server on a loopback address that records every request and answers
//! from a closure.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::ca::TestCa;
use crate::error::LoopbackError;
use crate::listener::Listener;
use crate::recorded::{Arrival, Recorded};
use crate::reply::{Reply, ReplyBody};

/// Answers one request: given both the request as hyper parsed it and as recorded.
type Respond = dyn Fn(&Request<Bytes>, &Recorded) -> Reply + Send + Sync;

struct State {
    tls: TlsAcceptor,
    /// TLS connections established so far.
    handshakes: AtomicUsize,
    respond: Box<Respond>,
    requests: Mutex<Vec<Recorded>>,
}

/// An HTTPS server on a loopback address with a certificate for `names`. Stops its accept
/// loop and open connections when dropped.
pub struct Upstream {
    listener: Listener,
    state: Arc<State>,
}

impl Upstream {
    /// Binds `ip:0` (so tests can use 127.0.0.2 etc. for "public" upstreams), serves TLS with a
    /// certificate from `ca` for `names` (DNS names or IP addresses) whatever SNI the client
    /// sends, speaks HTTP/1.1 (the only protocol it offers by ALPN; a client offering no ALPN
    /// gets HTTP/1.1 too), records every request, and answers with `respond`.
    ///
    /// Not `async`: it only binds a socket, and a plain `#[test]` driving the `airlock` binary
    /// can call it too. Refuses an `ip` that is not loopback.
    pub fn start(
        ca: &TestCa,
        names: &[&str],
        ip: IpAddr,
        respond: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
    ) -> Result<Self, LoopbackError> {
        Self::serve(
            ca,
            names,
            ip,
            Box::new(move |_, recorded| respond(recorded)),
        )
    }

    /// As [`Upstream::start`], answering with a handler over `http` types, for stand-ins
    /// written as ordinary request handlers (the demo's, the fixture server).
    pub fn start_http(
        ca: &TestCa,
        names: &[&str],
        ip: IpAddr,
        handler: impl Fn(&Request<Bytes>) -> Response<Bytes> + Send + Sync + 'static,
    ) -> Result<Self, LoopbackError> {
        Self::serve(
            ca,
            names,
            ip,
            Box::new(move |request, _| handler(request).into()),
        )
    }

    fn serve(
        ca: &TestCa,
        names: &[&str],
        ip: IpAddr,
        respond: Box<Respond>,
    ) -> Result<Self, LoopbackError> {
        let state = Arc::new(State {
            tls: ca.acceptor(names)?,
            handshakes: AtomicUsize::new(0),
            respond,
            requests: Mutex::new(Vec::new()),
        });
        let serving = Arc::clone(&state);
        let listener = Listener::start(ip, move |stream| connection(Arc::clone(&serving), stream))?;
        Ok(Self { listener, state })
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener.addr()
    }

    /// Every request answered or being answered so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// TCP connections accepted so far (including ones whose TLS handshake failed), counting
    /// every connection the kernel has completed by now.
    pub fn accepts(&self) -> usize {
        self.listener.accepts()
    }
}

/// One connection: TLS handshake (failures just close it), then HTTP/1.1 with keep-alive.
async fn connection(state: Arc<State>, stream: TcpStream) {
    let Ok(tls) = state.tls.accept(stream).await else {
        return;
    };
    let session = tls.get_ref().1;
    let arrival = Arrival {
        sni: session.server_name().map(str::to_owned),
        connection: state.handshakes.fetch_add(1, Ordering::Relaxed) + 1,
        resumed: session.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
    };
    let service = hyper::service::service_fn(move |request| {
        let state = Arc::clone(&state);
        let arrival = arrival.clone();
        async move { Ok::<_, Infallible>(answer(&state, request, arrival).await) }
    });
    // No `Date`: an answer is exactly what the handler made, so fixture runs see the same
    // bytes every time.
    let _ = hyper::server::conn::http1::Builder::new()
        .auto_date_header(false)
        .serve_connection(TokioIo::new(tls), service)
        .await;
}

async fn answer(
    state: &State,
    request: Request<Incoming>,
    arrival: Arrival,
) -> Response<ReplyBody> {
    let (parts, body) = request.into_parts();
    // A body the client aborted is recorded as what arrived: nothing.
    let body = body
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    let recorded = Recorded::of(&parts, &body, arrival);
    state
        .requests
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(recorded.clone());
    let reply = (state.respond)(&Request::from_parts(parts, body), &recorded);
    if let Some(delay) = reply.delay {
        tokio::time::sleep(delay).await;
    }
    reply.into_response()
}
