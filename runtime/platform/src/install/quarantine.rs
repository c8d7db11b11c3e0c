//! Quarantine (docs/operate.md, "Quarantine"): an installation an alert rule (or the operator)
//! suspended runs nothing, through any door (API, webhooks, queued runs, schedules, the CLI),
//! until the operator releases it. Both changes are recorded.

use airlock_host_api::audit::{AuditEvent, InstallChange};
use airlock_runtime::clock::now_unix;
use airlock_runtime::ids::{InstallationId, TenantId};
use airlock_store::InstallationRecord;
use airlock_store::records::Quarantine;

use super::{InstallError, Installer};

/// Who quarantines by hand, in place of a rule's name.
pub const OPERATOR: &str = "operator";

/// Refuses anything but the operator's release for a quarantined installation: running it,
/// changing it (a change would write over the quarantine) and uninstalling it (a reinstall
/// would come back without one).
pub(crate) fn refuse(record: &InstallationRecord) -> Result<(), InstallError> {
    match &record.quarantine {
        None => Ok(()),
        Some(quarantine) => Err(InstallError::Quarantined {
            tenant: record.tenant.clone(),
            installation: record.installation.clone(),
            rule: quarantine.rule.clone(),
            since: airlock_runtime::clock::rfc3339(quarantine.since),
        }),
    }
}

impl Installer<'_> {
    /// Quarantines the installation for `rule`. `false` if it already was (it keeps its first
    /// rule and time, and nothing is recorded again).
    pub fn quarantine(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
        rule: &str,
    ) -> Result<bool, InstallError> {
        self.set_quarantine(tenant, installation, Some(rule))
    }

    /// Lifts the installation's quarantine. `false` if it was not quarantined.
    pub fn release(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
    ) -> Result<bool, InstallError> {
        self.set_quarantine(tenant, installation, None)
    }

    fn set_quarantine(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
        rule: Option<&str>,
    ) -> Result<bool, InstallError> {
        let mut record = self.get(tenant, installation)?;
        if record.quarantine.is_some() == rule.is_some() {
            return Ok(false);
        }
        record.quarantine = rule.map(|rule| Quarantine {
            rule: rule.to_string(),
            since: now_unix(),
        });
        self.store.put_installation(&record)?;
        let change = match rule {
            Some(_) => InstallChange::Quarantined,
            None => InstallChange::Released,
        };
        self.trail
            .append_blocking(AuditEvent::InstallationChanged {
                tenant: record.tenant.clone(),
                installation: record.installation.clone(),
                integration: record.integration.clone(),
                version: record.version.clone(),
                change,
            })?;
        Ok(true)
    }
}
