//! Loopback stand-ins for what Airlock talks to: one throwaway certificate authority and one
//! TLS upstream, used by the end-to-end tests, the benchmarks, `airlock test` (the fixture
//! server) and `airlock demo` (stand-ins for api.github.com and slack.com); and a strict
//! reader of the metrics text Airlock writes, for the tests of both metrics outputs.
//!
//! Everything listens on loopback only (127.0.0.0/8 or ::1): a constructor given any other
//! address refuses. Servers run on a runtime of their own, never the caller's (see
//! [`Listener`]), and stop when dropped.
//!
//! # Layout
//! - [`error`]: [`LoopbackError`], why a stand-in could not start.
//! - [`ca`]: [`TestCa`], a fresh CA whose PEM is the only extra root a host under test trusts.
//! - [`listener`]: [`Listener`], a loopback socket whose accept count is exact when read.
//! - [`upstream`]: [`Upstream`], HTTPS on a [`Listener`] that records every request and
//!   answers from a closure.
//! - [`recorded`]: [`Recorded`], one request as the upstream saw it, with its TLS SNI.
//! - [`reply`]: [`Reply`], how the upstream answers (status, headers, body, framing, delay).
//! - [`openmetrics`]: a strict reader of the metrics text `airlock metrics` and `/metrics` write.
//!
//! Must never depend on Airlock's own crates: they depend on this one.

pub mod ca;
pub mod error;
pub mod listener;
pub mod openmetrics;
pub mod recorded;
pub mod reply;
pub mod upstream;

pub use ca::TestCa;
pub use error::LoopbackError;
pub use listener::Listener;
pub use recorded::Recorded;
pub use reply::Reply;
pub use upstream::Upstream;
