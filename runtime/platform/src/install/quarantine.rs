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

/// Refuses running a quarantined installation, changing it, and its tenant's uninstalling it (a
/// reinstall would come back without its quarantine). The store keeps a quarantine through any
/// change written anyway ([`airlock_store::Installations::put_installation`]).
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
        let quarantine = rule.map(|rule| Quarantine {
            rule: rule.to_string(),
            since: now_unix(),
        });
        let (record, changed) = self
            .store
            .set_quarantine(tenant, installation, quarantine)?
            .ok_or_else(|| InstallError::NoInstallation {
                tenant: tenant.clone(),
                installation: installation.clone(),
            })?;
        if !changed {
            return Ok(false);
        }
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
