//! The audit trail: metadata-only, hash-chained records, anchored by checkpoints signed with a
//! key kept outside the data dir (catalogue 2.4, AL-01…10).
//!
//! # Layout
//! - [`record`]: one record's line format and hash.
//! - [`node`]: the name of the process that writes records, which each record carries.
//! - [`trail`]: [`AuditTrail`], appends (durable before acknowledged, fail closed) and
//!   checkpoints.
//! - `index`: the per-tenant, security and time index, written with each record.
//! - [`query`]: pages of records for `audit list` and `GET /v1/audit`, read through the index.
//! - [`checkpoint`]: the audit dir, its signing key and signed checkpoints.
//! - [`verify`]: the chain walk behind `airlock audit verify` (and a restore's).
//! - [`seal`]: the audit key's signature on a backup, which says where a restored trail ends.
//! - [`metrics`]: Prometheus counters derived from records.
//!
//! The runtime writes through [`airlock_host_api::audit::AuditSink`], which [`AuditTrail`]
//! implements, so the engine never depends on this crate.
//!
//! # Depends on
//! `airlock-store`'s [`AuditLog`](airlock_store::AuditLog) trait for every byte it keeps
//! (records, index, chain id, checkpoint count), and on nothing of the backend: the trail runs
//! on any store that passes that crate's conformance suite. The record format, the chain, the
//! index's keys and the checkpoints are this crate's.
//!
//! # Must never depend on
//! axum or clap: the server and the CLI read the trail through this crate's API and write it
//! through `airlock-platform`'s services.

pub mod checkpoint;
mod index;
pub mod keychain;
pub mod metrics;
pub mod node;
pub mod query;
pub mod record;
pub mod seal;
pub mod trail;
pub mod verify;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use checkpoint::{AuditDir, Checkpoint};
pub use keychain::KeyChain;
pub use node::Node;
pub use query::{Entry, Page, Query};
pub use trail::{AuditTrail, Observer};

use airlock_bundle::keys::KeyError;

/// The audit trail or its anchors could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the audit dir {} is inside the data dir; the checkpoint key must live apart from the \
         records it protects (pass --audit-dir or AIRLOCK_AUDIT_DIR)",
        dir.display()
    )]
    InsideDataDir { dir: PathBuf },
    #[error("audit checkpoint key: {0}")]
    Key(#[from] KeyError),
    #[error("audit database: {0}")]
    Store(#[from] airlock_store::StoreError),
    #[error("the audit trail's metadata is damaged")]
    Meta,
    #[error("the audit target key {} is damaged: it must hold 32 bytes", path.display())]
    TargetKey { path: PathBuf },
    #[error("other nodes took the audit chain's next sequence number {attempts} times in a row")]
    Contended { attempts: u32 },
}
