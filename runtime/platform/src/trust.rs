//! Trusting and revoking publisher keys, each change recorded in the audit trail, and the
//! record of code refused on trust grounds. The CLI and the server change the trusted keys, and
//! record such refusals, only here.

use airlock_audit::AuditTrail;
use airlock_host_api::audit::{AuditEvent, AuditUnavailable, Change};
use airlock_runtime::bundle::PublicKey;
use airlock_runtime::clock::now_unix;
use airlock_runtime::trust::{TrustError, TrustedKey};
use airlock_store::{StoreError, Trust};

/// Why a trust change was refused or not recorded.
#[derive(Debug, thiserror::Error)]
pub enum TrustChangeError {
    #[error(transparent)]
    Trust(#[from] TrustError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] AuditUnavailable),
}

/// Trusts `key` for bundles of `publisher` and records it.
pub fn add(
    store: &dyn Trust,
    trail: &AuditTrail,
    key: &PublicKey,
    publisher: &str,
) -> Result<TrustedKey, TrustChangeError> {
    let added = store.add_trusted_key(key, publisher, now_unix())??;
    trail.append_blocking(AuditEvent::TrustChanged {
        key: added.key_id.clone(),
        publisher: added.publisher.clone(),
        change: Change::Set,
    })?;
    Ok(added)
}

/// Revokes key `key_id`, so bundles it signed no longer run, and records it; returns the
/// publisher it signed for.
pub fn revoke(
    store: &dyn Trust,
    trail: &AuditTrail,
    key_id: &str,
) -> Result<String, TrustChangeError> {
    let revoked = store.revoke_trusted_key(key_id, now_unix())??;
    trail.append_blocking(AuditEvent::TrustChanged {
        key: key_id.to_string(),
        publisher: revoked.publisher.clone(),
        change: Change::Revoked,
    })?;
    Ok(revoked.publisher)
}

/// Records that `artifact` (a bundle's file name, or an installation) was refused on trust
/// grounds: `reason` is the refusal's code (unsigned, unknown key, revoked, tampered, …).
pub fn record_refusal(
    trail: &AuditTrail,
    artifact: &str,
    reason: &str,
) -> Result<u64, AuditUnavailable> {
    trail.append_blocking(AuditEvent::TrustRefused {
        artifact: artifact.to_string(),
        reason: reason.to_string(),
    })
}
