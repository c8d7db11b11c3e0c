//! [`Listener`]: a loopback socket whose connections are counted exactly and served on the
//! stand-ins' own runtime.
//!
//! The stand-ins run on a runtime of their own (one, shared, on background threads), not on
//! the caller's. That way a plain `#[test]` that runs the `airlock` binary with a blocking
//! `std::process::Command`, or a current-thread runtime that blocks, still gets answered
//! instead of deadlocking; and the constructors are plain functions usable from both.
//!
//! Accept counts are exact at the moment they are read: [`Listener::accepts`] first accepts,
//! synchronously, every connection already waiting in the kernel's backlog. On loopback a
//! `connect()` that returned has completed its handshake and sits in that backlog, so "the host
//! connected" can never be missed because the background accept loop had not run yet (which
//! would make an SSRF test pass falsely).

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener as StdTcpListener, TcpStream as StdTcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::Poll;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::runtime::{Handle, Runtime};
use tokio::sync::watch;

use crate::error::LoopbackError;

/// The runtime every stand-in runs on, separate from the caller's (see the module docs).
pub(crate) fn background() -> Result<&'static Handle, LoopbackError> {
    static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("airlock-loopback")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map(Runtime::handle)
        .map_err(|e| LoopbackError::Runtime(e.clone()))
}

type OnAccept = dyn Fn(StdTcpStream) + Send + Sync;

/// A listening socket on loopback: each connection is counted, then served by the function
/// given to [`Listener::start`] until it returns or the listener is dropped.
pub struct Listener {
    accepts: Arc<Accepts>,
    /// Dropping it stops the accept loop and every connection being served.
    _shutdown: watch::Sender<()>,
}

/// The socket and its count, shared by the background accept loop and [`Accepts::drain`]
/// (called when the count is read).
///
/// The loop accepts through a tokio listener; `drain` through a duplicate of the same socket
/// in non-blocking mode, so it never touches the loop's waker (which polling the tokio
/// listener from outside would replace). Both hold `sync`'s lock across the `accept` call and
/// the count, so a connection the kernel has handed out is always counted by the time the lock
/// is free: no window in which `drain` finds the backlog empty but the count not yet raised.
struct Accepts {
    sync: Mutex<StdTcpListener>,
    addr: SocketAddr,
    count: AtomicUsize,
    on_accept: Box<OnAccept>,
}

impl Listener {
    /// Binds `ip:0` and serves each connection with `serve` on the stand-ins' runtime. Not
    /// `async`: it only binds a socket. Refuses an `ip` that is not loopback.
    pub fn start<F, Fut>(ip: IpAddr, serve: F) -> Result<Self, LoopbackError>
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        if !ip.is_loopback() {
            return Err(LoopbackError::NotLoopback(ip));
        }
        let handle = background()?;
        let listen = |source| LoopbackError::Listen { ip, source };
        let sync = StdTcpListener::bind((ip, 0)).map_err(listen)?;
        sync.set_nonblocking(true).map_err(listen)?;
        let addr = sync.local_addr().map_err(listen)?;
        let listener = {
            // Registering with the reactor needs the runtime's context.
            let _guard = handle.enter();
            tokio::net::TcpListener::from_std(sync.try_clone().map_err(listen)?).map_err(listen)?
        };
        let (shutdown, stopped) = watch::channel(());
        let serve = Arc::new(serve);
        let on_accept = {
            let stopped = stopped.clone();
            Box::new(move |stream: StdTcpStream| {
                let (serve, mut stopped) = (Arc::clone(&serve), stopped.clone());
                handle.spawn(async move {
                    // Accepted sockets do not inherit the listener's non-blocking flag on Linux.
                    if stream.set_nonblocking(true).is_err() {
                        return;
                    }
                    let Ok(stream) = TcpStream::from_std(stream) else {
                        return;
                    };
                    tokio::select! {
                        _ = stopped.changed() => {}
                        _ = serve(stream) => {}
                    }
                });
            })
        };
        let accepts = Arc::new(Accepts {
            sync: Mutex::new(sync),
            addr,
            count: AtomicUsize::new(0),
            on_accept,
        });
        handle.spawn(Arc::clone(&accepts).run(listener, stopped));
        Ok(Self {
            accepts,
            _shutdown: shutdown,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.accepts.addr
    }

    /// TCP connections accepted so far (including ones whose TLS handshake failed), counting
    /// every connection the kernel has completed by now.
    pub fn accepts(&self) -> usize {
        self.accepts.drain();
        self.accepts.count.load(Ordering::SeqCst)
    }
}

impl Accepts {
    async fn run(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        mut stopped: watch::Receiver<()>,
    ) {
        let accept = || {
            std::future::poll_fn(|cx| {
                // Held only inside this synchronous poll, never across an await.
                let _lock = self.sync.lock().unwrap_or_else(PoisonError::into_inner);
                let polled = listener.poll_accept(cx);
                if let Poll::Ready(Ok(_)) = polled {
                    self.count.fetch_add(1, Ordering::SeqCst);
                }
                polled
            })
        };
        loop {
            tokio::select! {
                _ = stopped.changed() => return,
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
            let listener = self.sync.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                match listener.accept() {
                    Ok((stream, _)) => {
                        self.count.fetch_add(1, Ordering::SeqCst);
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
}
