//! Creating and deleting tenants, each change recorded in the audit trail. The CLI and the
//! server change tenants only here.

use airlock_audit::AuditTrail;
use airlock_host_api::audit::{AuditEvent, AuditUnavailable, Change};
use airlock_runtime::ids::TenantId;
use airlock_store::TenantInfo;
use airlock_store::{Storage, StoreError};

/// Why a tenant was not created or deleted.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("tenant {0} already exists")]
    Exists(TenantId),
    #[error("tenant {0} does not exist")]
    Unknown(TenantId),
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Audit(#[from] AuditUnavailable),
}

/// Creates `tenant` and records it.
pub fn create(
    store: &dyn Storage,
    trail: &AuditTrail,
    tenant: &TenantId,
) -> Result<TenantInfo, TenantError> {
    let info = store.create_tenant(tenant).map_err(|e| match e {
        StoreError::Exists { .. } => TenantError::Exists(tenant.clone()),
        other => TenantError::Store(other),
    })?;
    record(trail, tenant, Change::Set)?;
    Ok(info)
}

/// Deletes `tenant` (its data key first, so its secrets are unreadable at once, then
/// everything it owns) and records it.
pub fn delete(
    store: &dyn Storage,
    trail: &AuditTrail,
    tenant: &TenantId,
) -> Result<(), TenantError> {
    if !store.delete_tenant(tenant).map_err(TenantError::Store)? {
        return Err(TenantError::Unknown(tenant.clone()));
    }
    record(trail, tenant, Change::Deleted)?;
    Ok(())
}

fn record(trail: &AuditTrail, tenant: &TenantId, change: Change) -> Result<u64, AuditUnavailable> {
    trail.append_blocking(AuditEvent::TenantChanged {
        tenant: tenant.to_string(),
        change,
    })
}
