//! Uninstalling: an installation and everything it owns go, in an order that leaves nothing
//! usable behind if it stops part way: first what grants access (OAuth consents under way,
//! credentials, OAuth connections), then what it kept (kv), what could start it (webhook
//! endpoints, schedules, queued runs), and its record last, so an interrupted uninstall is
//! finished by running it again. A connection or a schedule made by a request that raced the
//! uninstall is swept once the record is gone (a consent finishing later finds no
//! installation). Each removal is audited; the audit records of the installation stay.

use airlock_host_api::audit::{
    AuditEvent, Change, ConnectionChange, InstallChange, InstallationData,
};
use airlock_runtime::ids::{EndpointId, InstallationId, TenantId, UserId};
use airlock_store::ConnectionKey;

use super::{InstallError, Installer};

/// What an uninstall removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uninstalled {
    pub credentials: usize,
    pub connections: usize,
    pub kv_entries: u64,
    pub webhooks: usize,
    pub schedules: usize,
    pub runs: u64,
}

impl Installer<'_> {
    /// Removes the installation and what it owns (module doc), recording each removal. A
    /// quarantined installation only the operator removes (`by`): a tenant's reinstall would
    /// come back without its quarantine.
    pub fn uninstall(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
        by: super::Approver,
    ) -> Result<Uninstalled, InstallError> {
        let record = self.get(tenant, installation)?;
        if by == super::Approver::Tenant {
            super::quarantine::refuse(&record)?;
        }
        let mut removed = Uninstalled::default();
        // First, so no consent under way completes into a connection from here on.
        self.store.delete_consents(tenant, installation)?;
        for credential in self.store.list_credentials(tenant, installation)? {
            if self.delete_credential(tenant, installation, &credential.name)? {
                removed.credentials += 1;
            }
        }
        removed.connections = self.disconnect_all(tenant, installation)?;
        removed.kv_entries = self.store.delete_kv(tenant, installation)?;
        self.record_data(
            tenant,
            installation,
            InstallationData::Kv,
            removed.kv_entries,
        )?;
        let now = airlock_runtime::clock::now_unix();
        for endpoint in self.store.webhooks_of(tenant, now)? {
            if endpoint.installation != installation.as_str() {
                continue;
            }
            let id: EndpointId = endpoint.id.parse().map_err(|_| {
                InstallError::Store(airlock_store::StoreError::Corrupt {
                    what: format!("webhook endpoint {}", endpoint.id),
                })
            })?;
            if self.store.delete_webhook(tenant, &id)? {
                removed.webhooks += 1;
                self.trail.append_blocking(AuditEvent::WebhookChanged {
                    tenant: tenant.to_string(),
                    installation: installation.to_string(),
                    endpoint: endpoint.id.clone(),
                    action: endpoint.action.clone(),
                    change: Change::Deleted,
                })?;
            }
        }
        removed.schedules = self.unschedule_all(tenant, installation)?;
        removed.runs = self.store.delete_runs(tenant, installation)?;
        self.record_data(tenant, installation, InstallationData::Runs, removed.runs)?;
        self.store.delete_installation(tenant, installation)?;
        // A consent whose exchange was under way may have connected meanwhile, and a schedule
        // being created may have been stored.
        removed.connections += self.disconnect_all(tenant, installation)?;
        removed.schedules += self.unschedule_all(tenant, installation)?;
        self.trail
            .append_blocking(AuditEvent::InstallationChanged {
                tenant: tenant.to_string(),
                installation: installation.to_string(),
                integration: record.integration,
                version: record.version,
                change: InstallChange::Uninstalled,
            })?;
        Ok(removed)
    }

    /// Removes the installation's schedules, each audited; how many.
    fn unschedule_all(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
    ) -> Result<usize, InstallError> {
        let mut removed = 0;
        for schedule in self.store.schedules(tenant, Some(installation))? {
            if self.store.delete_schedule(tenant, &schedule.id)? {
                removed += 1;
                self.record_schedule(&schedule, Change::Deleted)?;
            }
        }
        Ok(removed)
    }

    /// Removes the installation's OAuth connections, each audited; how many.
    fn disconnect_all(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
    ) -> Result<usize, InstallError> {
        let mut removed = 0;
        for connection in self.store.connections_of(tenant, installation)? {
            let user: Option<UserId> = connection
                .user
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|_| {
                    InstallError::Store(airlock_store::StoreError::Corrupt {
                        what: format!("a user of a connection of {installation}"),
                    })
                })?;
            let key = ConnectionKey {
                tenant,
                installation,
                credential: &connection.credential,
                user: user.as_ref(),
            };
            if self.store.delete_connection(key)? {
                removed += 1;
                self.trail.append_blocking(AuditEvent::ConnectionChanged {
                    tenant: tenant.to_string(),
                    installation: installation.to_string(),
                    credential: connection.credential.clone(),
                    user: connection.user_ref.clone(),
                    change: ConnectionChange::Disconnected,
                    scopes: Vec::new(),
                    widened: Vec::new(),
                })?;
            }
        }
        // No consent under way may complete into a connection once the installation is gone.
        self.store.delete_consents(tenant, installation)?;
        Ok(removed)
    }

    fn record_data(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
        data: InstallationData,
        count: u64,
    ) -> Result<(), InstallError> {
        self.trail
            .append_blocking(AuditEvent::InstallationDataDeleted {
                tenant: tenant.to_string(),
                installation: installation.to_string(),
                data,
                count,
            })?;
        Ok(())
    }
}
