//! `airlock serve`: the operator's HTTP API over the same store, trust store, installer and
//! runtime the CLI uses.
//!
//! Every request is authorized from its API key alone (`Authorization: Bearer`): the key's
//! tenant is the only tenant it can name, and its scopes are the only operations it can run.
//! Invocations are admitted per tenant and globally, with bounded queues (`429` beyond them),
//! and guests yield their thread every few milliseconds, so one tenant's busy loops cannot hold
//! another tenant's invocation.
//!
//! # Layout
//! - [`app`]: the shared state: store, trail, trust store, loaded installations, metrics.
//! - [`alerting`]: what an alert rule that trips does: a record, a quarantine, notifications.
//! - [`admission`]: per-tenant and global concurrency caps with bounded queues.
//! - [`auth`]: API keys from the `Authorization` header, scopes.
//! - [`failures`]: limits on failed attempts (keys, OAuth links, webhook signatures).
//! - [`local`]: the operator's socket in the data dir, for the CLI while the server runs.
//! - [`client`]: the client's address, from a trusted proxy's forwarding header or the peer.
//! - [`deadline`]: what a slow client may hold: bodies by a deadline, responses taken.
//! - [`error`]: one JSON error shape, with the status each failure maps to.
//! - [`routes`]: the `/v1` API, `/healthz` and `/metrics`, one file per resource, and the
//!   OpenAPI document generated from them (`GET /v1/openapi.json`).
//! - [`telemetry`]: Airlock's spans as OpenTelemetry traces, exported over OTLP/HTTP.
//! - [`wire`]: the API's JSON for records other modules own, so the document describes
//!   exactly what is sent.
//!
//! # Must never depend on
//! clap. Nor does it name a sled type: every change a route makes is a call to an
//! `airlock-platform` service (which writes its audit record); routes read through the storage
//! traits. What stays here is the door's own: authentication, failure limits, admission, and
//! the records of refusals at the edge.

pub mod admission;
pub mod alerting;
pub mod app;
mod auth;
mod client;
mod console;
mod deadline;
mod error;
mod failures;
pub mod local;
pub mod members;
mod queue;
mod retries;
mod routes;
mod scheduler;
pub mod telemetry;
mod wire;
mod worker;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

pub use admission::AdmissionLimits;
pub use app::{App, ServeLimits};

/// How long a client may take to send a request's headers (slow-loris defence), and so also
/// how long a kept-alive connection may sit idle: hyper starts this clock as soon as it waits
/// for the next request's head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a due audit checkpoint is signed.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(15);
/// How many housekeeping rounds between purges of webhook delivery ids past their retention
/// and OAuth consents past their ten minutes (each purge scans its whole tree): every 60 s.
const PURGE_ROUNDS: u32 = 4;

/// Serves `app` on `listener`, and to the operator on `local` ([`local`]) if given, until
/// `shutdown` resolves; then stops accepting, lets in-flight requests (and their invocations)
/// finish, and signs a final audit checkpoint.
///
/// At most `max_connections` connections are open at once: the next is accepted when one
/// closes, and until then waits in the listen backlog. Slow clients cannot hold a connection
/// for long: headers (and the idle time before them) within [`HEADER_READ_TIMEOUT`], bodies
/// within their deadline, responses taken ([`deadline`]).
pub async fn serve(
    listener: TcpListener,
    local: Option<UnixListener>,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let doors = Doors {
        router: routes::router(app.clone()),
        graceful: GracefulShutdown::new(),
        slots: Arc::new(Semaphore::new(
            app.limits.max_connections.min(Semaphore::MAX_PERMITS),
        )),
    };
    // This node's share of the caps before its first request.
    beat(&app).await;
    let heartbeat = tokio::spawn(heartbeat(app.clone()));
    let housekeeping = tokio::spawn(housekeeping(app.clone()));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    if app.limits.workers > 0 {
        // Runs queued through other nodes wake this node's workers (weakly held: the store
        // lives inside the app).
        let app_ref = Arc::downgrade(&app);
        app.store.watch_runs(Arc::new(move || {
            if let Some(app) = app_ref.upgrade() {
                app.runs_queued.notify_one();
            }
        }));
    }
    let workers: Vec<_> = (0..app.limits.workers)
        .map(|_| tokio::spawn(worker::work(app.clone(), stopped.clone())))
        .collect();
    let scheduler = tokio::spawn(scheduler::fire(app.clone(), stopped.clone()));
    let operator = async {
        if let Some(local) = local {
            doors.accept(local, stopped.clone()).await;
        }
    };
    let network = doors.accept(listener, stopped.clone());
    let signal = async {
        shutdown.await;
        stop.send_replace(true);
    };
    tokio::join!(network, operator, signal);
    doors.graceful.shutdown().await;
    // The runs under way finish and are recorded; queued ones wait for the next start.
    for worker in workers {
        let _ = worker.await;
    }
    let _ = scheduler.await;
    housekeeping.abort();
    heartbeat.abort();
    app.close();
    Ok(())
}

/// What both listeners share: the routes, the connection slots and the graceful shutdown.
struct Doors {
    router: axum::Router,
    graceful: GracefulShutdown,
    slots: Arc<Semaphore>,
}

impl Doors {
    /// Accepts connections on `listener` until `stopped` turns true, each served under a slot.
    async fn accept<L: Listener>(
        &self,
        listener: L,
        mut stopped: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            let slot = tokio::select! {
                slot = self.slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => break,
                },
                () = until_stopped(&mut stopped) => break,
            };
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: back off rather than spin.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = until_stopped(&mut stopped) => break,
            };
            let service =
                self.router
                    .clone()
                    .map_request(move |mut request: axum::extract::Request<_>| {
                        request.extensions_mut().insert(ConnectInfo(peer));
                        if L::OPERATOR {
                            request.extensions_mut().insert(local::Operator);
                        }
                        request
                    });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(
                    TokioIo::new(deadline::Taken::new(stream)),
                    TowerToHyperService::new(service),
                );
            let connection = self.graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                }
                drop(slot);
            });
        }
    }
}

/// Resolves once the server is told to stop (or whoever tells it is gone).
async fn until_stopped(stopped: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// A listening socket the server accepts connections on.
trait Listener {
    type Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static;
    /// Whether whoever connects is the operator ([`local`]).
    const OPERATOR: bool;
    fn accept(&self) -> impl Future<Output = std::io::Result<(Self::Stream, SocketAddr)>> + Send;
}

impl Listener for TcpListener {
    type Stream = tokio::net::TcpStream;
    const OPERATOR: bool = false;
    async fn accept(&self) -> std::io::Result<(Self::Stream, SocketAddr)> {
        TcpListener::accept(self).await
    }
}

impl Listener for UnixListener {
    type Stream = tokio::net::UnixStream;
    const OPERATOR: bool = true;
    /// The peer is this host: failure limits and the trail name it as loopback.
    async fn accept(&self) -> std::io::Result<(Self::Stream, SocketAddr)> {
        let (stream, _) = UnixListener::accept(self).await?;
        Ok((stream, SocketAddr::from(([127, 0, 0, 1], 0))))
    }
}

/// Every [`HOUSEKEEPING_EVERY`]: signs the audit checkpoint a quiet trail is due (appends
/// only checkpoint when they happen); every [`PURGE_ROUNDS`] rounds, also drops webhook
/// delivery ids past their retention and OAuth consents never completed.
/// Marks this node alive every `Membership::every` and follows its share of the caps.
async fn heartbeat(app: Arc<App>) {
    let mut every = tokio::time::interval(app.members.every);
    every.tick().await;
    loop {
        every.tick().await;
        beat(&app).await;
    }
}

async fn beat(app: &Arc<App>) {
    let app = app.clone();
    if let Err(e) =
        tokio::task::spawn_blocking(move || app.members.beat(&*app.store, &app.admission)).await
    {
        tracing::warn!(error = %e, "heartbeat failed");
    }
}

async fn housekeeping(app: Arc<App>) {
    let mut every = tokio::time::interval(HOUSEKEEPING_EVERY);
    for round in 0u32.. {
        every.tick().await;
        let app = app.clone();
        let purge = round % PURGE_ROUNDS == 0;
        let done = tokio::task::spawn_blocking(move || {
            if let Err(e) = app.trail.checkpoint_if_due() {
                tracing::error!(error = %e, "cannot sign the audit checkpoint");
            }
            if app.limits.console
                && let Err(e) = app.sample()
            {
                tracing::warn!(error = ?e.code(), "cannot sample the trail's counts");
            }
            if !purge {
                return;
            }
            let now = airlock_runtime::clock::now_unix();
            let retention = u64::try_from(app.limits.dead_input_retention.as_millis())
                .unwrap_or(u64::MAX);
            let purged = app
                .store
                .purge_deliveries(now)
                .and_then(|_| app.store.purge_consents(now))
                .and_then(|_| {
                    app.store
                        .purge_run_inputs(airlock_runtime::clock::now_unix_ms().saturating_sub(retention))
                });
            if let Err(e) = purged {
                tracing::warn!(error = %e, "cannot purge expired delivery ids, consents or dead runs' inputs");
            }
        })
        .await;
        if let Err(e) = done {
            tracing::warn!(error = %e, "housekeeping failed");
        }
    }
}
