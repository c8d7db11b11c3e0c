//! Issuing, revoking and suspending API keys, each change recorded in the audit trail. The CLI and the
//! server issue and revoke keys only here; the key format and its check are
//! `airlock_policy::apikey`.

use airlock_host_api::audit::{AuditEvent, AuditUnavailable, Change};

pub use airlock_policy::apikey::*;

use airlock_audit::AuditTrail;
use airlock_runtime::clock::now_unix;
use airlock_runtime::ids::TenantId;
use airlock_store::{Storage, StoreError};

/// Why a key was not issued or revoked.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("tenant {0} does not exist")]
    NoTenant(TenantId),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] AuditUnavailable),
}

/// Makes a key for `tenant` (or the admin key, with no scopes: it has them all), stores its
/// hash and records the change. The CLI and the server issue keys only here.
pub fn issue(
    store: &dyn Storage,
    trail: &AuditTrail,
    tenant: Option<&TenantId>,
    mut scopes: Vec<Scope>,
    expires: Option<u64>,
) -> Result<NewKey, IssueError> {
    if let Some(tenant) = tenant
        && !store.tenant_exists(tenant)?
    {
        return Err(IssueError::NoTenant(tenant.clone()));
    }
    scopes.sort();
    scopes.dedup();
    let new = generate(tenant.map(|t| t.to_string()), scopes, now_unix(), expires);
    store.put_api_key(&new.record)?;
    trail.append_blocking(AuditEvent::ApiKeyChanged {
        key: new.record.id.clone(),
        tenant: new.record.tenant.clone(),
        change: Change::Set,
    })?;
    Ok(new)
}

/// Revokes key `id` and records it; `None` if there is no such key.
pub fn revoke(
    store: &dyn Storage,
    trail: &AuditTrail,
    id: &str,
) -> Result<Option<ApiKeyRecord>, IssueError> {
    let Some(record) = store.api_key(id)? else {
        return Ok(None);
    };
    store.revoke_api_key(id, now_unix())?;
    trail.append_blocking(AuditEvent::ApiKeyChanged {
        key: id.to_string(),
        tenant: record.tenant.clone(),
        change: Change::Revoked,
    })?;
    Ok(Some(record))
}

/// Suspends key `id` for `rule` (an alert rule's name, or `operator`), or lifts its suspension
/// (`rule` `None`), and records the change: `None` if there is no such key, else its record as
/// it is now and whether this call changed it. Suspending a suspended key, or lifting a key
/// that is not, changes nothing.
pub fn suspend(
    store: &dyn Storage,
    trail: &AuditTrail,
    id: &str,
    rule: Option<&str>,
) -> Result<Option<(ApiKeyRecord, bool)>, IssueError> {
    let suspension = rule.map(|rule| Suspension {
        rule: rule.to_string(),
        since: now_unix(),
    });
    let Some(changed) = store.suspend_api_key(id, suspension)? else {
        return Ok(None);
    };
    let Some(record) = store.api_key(id)? else {
        return Ok(None);
    };
    if changed {
        trail.append_blocking(AuditEvent::ApiKeyChanged {
            key: id.to_string(),
            tenant: record.tenant.clone(),
            change: match rule {
                Some(_) => Change::Suspended,
                None => Change::Resumed,
            },
        })?;
    }
    Ok(Some((record, changed)))
}
