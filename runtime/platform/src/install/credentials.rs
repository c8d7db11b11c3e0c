//! An installation's credentials (rule 3): stored only under a name the installed version
//! declares, checked against its declared type, and bound to the origins its egress rules send
//! it to. The CLI and the server both set credentials through here.

use airlock_host_api::audit::{AuditEvent, Change};
use airlock_host_api::credentials::{CredentialType, Secret, SecretError};
use zeroize::Zeroizing;

use super::{InstallError, Installer};
use airlock_runtime::ids::{InstallationId, TenantId};
use airlock_runtime::loader::credential_spec;
use airlock_store::SetOutcome;

/// Why a credential was not stored.
#[derive(Debug, thiserror::Error)]
pub enum CredentialSetError {
    #[error(transparent)]
    Install(#[from] InstallError),
    #[error("{integration} declares no credential `{name}`; it declares: {declared}")]
    Undeclared {
        integration: String,
        name: String,
        declared: String,
    },
    #[error("credential `{name}` is not a valid {kind} value: {source}")]
    Invalid {
        name: String,
        kind: &'static str,
        source: SecretError,
    },
}

impl From<airlock_store::StoreError> for CredentialSetError {
    fn from(e: airlock_store::StoreError) -> Self {
        Self::Install(e.into())
    }
}

impl Installer<'_> {
    /// Seals `value` (one line; a trailing newline is dropped) as credential `name` of the
    /// installation, for the origins the installed version sends it to, and records the change.
    /// Returns whether it was new or rotated, and its declared type.
    pub fn set_credential(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
        name: &str,
        value: Zeroizing<String>,
    ) -> Result<(SetOutcome, CredentialType), CredentialSetError> {
        let record = self.get(tenant, installation)?;
        let loaded = self.installed_manifest(&record)?;
        let manifest = &loaded.manifest;
        let Some(decl) = manifest
            .credentials
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, d)| d.get_ref())
        else {
            let known: Vec<&str> = manifest.credentials.keys().map(|k| k.as_str()).collect();
            return Err(CredentialSetError::Undeclared {
                integration: record.integration,
                name: name.to_string(),
                declared: if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                },
            });
        };
        let kind = credential_spec(decl).credential_type();
        let secret = Secret::from_line(kind, value.to_string()).map_err(|source| {
            CredentialSetError::Invalid {
                name: name.to_string(),
                kind: kind.as_str(),
                source,
            }
        })?;
        let outcome = self.store.set_credential(
            tenant,
            installation,
            name,
            manifest.credential_origins(name),
            &secret,
            kind,
        )?;
        self.record_credential(tenant, installation, name, Change::Set)?;
        Ok((outcome, kind))
    }

    /// Deletes credential `name` of the installation; false if it had none by that name.
    pub fn delete_credential(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
        name: &str,
    ) -> Result<bool, InstallError> {
        if !self.store.delete_credential(tenant, installation, name)? {
            return Ok(false);
        }
        self.record_credential(tenant, installation, name, Change::Deleted)?;
        Ok(true)
    }

    /// The security event for a change to `name` (its name, never its value).
    fn record_credential(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
        name: &str,
        change: Change,
    ) -> Result<(), InstallError> {
        self.trail.append_blocking(AuditEvent::CredentialChanged {
            tenant: tenant.to_string(),
            installation: installation.to_string(),
            credential: name.to_string(),
            change,
        })?;
        Ok(())
    }
}
