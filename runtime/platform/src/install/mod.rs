//! Installing signed bundles for tenants (rule 5, least privilege): a grant no wider than the
//! manifest, upgrades that ask for more wait for approval, and no rollback unless asked for.
//!
//! Every install verifies the bundle against the trust store and loads it fully (compile,
//! import check, config schema) before anything is stored; every load of an installation
//! verifies the stored bundle again, so a revoked key stops it from running.
//!
//! # Layout
//! - [`grant`]: the grant format and the subset check.
//! - [`diff`]: what an upgrade asks for beyond the installed version.
//! - [`credentials`]: an installation's credentials, checked against what it declares.
//! - [`quarantine`]: suspending an installation, and lifting it.

pub mod credentials;
pub mod diff;
pub mod quarantine;
pub mod schedules;
pub mod uninstall;
pub mod webhooks;

use std::path::PathBuf;

use airlock_host_api::audit::{AuditEvent, AuditUnavailable, InstallChange};

pub use airlock_policy::grant::{Grant, GrantError, GrantedEgress};
pub use credentials::CredentialSetError;
pub use schedules::{ScheduleError, ScheduleRequest};
pub use webhooks::{CreatedWebhook, WebhookError};

use airlock_audit::AuditTrail;
use airlock_runtime::bundle::{
    OpenError, VerifiedBundle, load_installed, load_verified, verify_trusted,
};
use airlock_runtime::clock::now_unix;
use airlock_runtime::ids::{IdError, InstallationId, TenantId};
use airlock_runtime::loader::{ConfigError, Integration, bundle_manifest};
use airlock_runtime::manifest::LoadedManifest;
use airlock_runtime::runtime::Runtime;
use airlock_runtime::trust::TrustStore;
use airlock_store::installations::bundle_digest;
use airlock_store::{InstallationRecord, PendingUpgrade};
use airlock_store::{Storage, StoreError};

/// Why an install, an approval or a load of an installation was refused.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("tenant {0} does not exist (create it with `airlock tenant create {0}`)")]
    NoTenant(TenantId),
    #[error("installation {installation} of tenant {tenant} does not exist")]
    NoInstallation {
        tenant: TenantId,
        installation: InstallationId,
    },
    #[error("installation {installation} of tenant {tenant} has no upgrade waiting")]
    NoPending {
        tenant: TenantId,
        installation: InstallationId,
    },
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(transparent)]
    Grant(#[from] GrantError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("the integration id {0:?} makes no installation id; pass --installation")]
    InstallationId(String, #[source] IdError),
    #[error(
        "installation {installation} runs {installed}; a bundle of {offered} cannot replace it"
    )]
    OtherIntegration {
        installation: InstallationId,
        installed: String,
        offered: String,
    },
    #[error(
        "{id} {offered} is older than the installed {installed} (rollback); pass \
         --allow-downgrade to install it anyway"
    )]
    Rollback {
        id: String,
        offered: String,
        installed: String,
    },
    #[error(
        "{id} {version} is already installed with different contents: a changed bundle needs a \
         new version"
    )]
    SameVersion { id: String, version: String },
    #[error(
        "installation {installation}: {version} changes where a stored secret is sent ({}); only \
         the operator's admin key may approve that",
        items.join("; ")
    )]
    AdminOnly {
        installation: String,
        version: String,
        items: Vec<String>,
    },
    #[error(
        "installation {installation} of tenant {tenant} is quarantined (rule {rule}, since {since}): \
         nothing of it runs until the operator releases it"
    )]
    Quarantined {
        tenant: String,
        installation: String,
        rule: String,
        since: String,
    },
    #[error("the stored bundle of installation {0} is missing")]
    MissingBundle(InstallationId),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] AuditUnavailable),
}

impl InstallError {
    /// The trust failure's reason code (CLI exit code 6): the bundle's own, or `rollback`.
    pub fn trust_reason(&self) -> Option<&'static str> {
        match self {
            Self::Open(e) => e.trust_reason(),
            Self::Rollback { .. } => Some("rollback"),
            _ => None,
        }
    }
}

/// What to install.
pub struct InstallRequest {
    pub tenant: TenantId,
    /// Defaults to the last segment of the integration id (`acme/github-issues` →
    /// `github-issues`).
    pub installation: Option<InstallationId>,
    /// The bundle file's bytes, read once, and where they were read from.
    pub bundle: Vec<u8>,
    pub origin: PathBuf,
    /// The operator's approval; none grants no egress. Required in effect for an upgrade that
    /// asks for more: without one it waits.
    pub grant: Option<Grant>,
    pub config: Option<String>,
    pub allow_downgrade: bool,
    /// Who approves what the request grants.
    pub approver: Approver,
}

/// Who is approving an install or upgrade: an addition that changes where a stored secret is
/// sent needs the operator ([`diff::Addition::admin`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approver {
    /// The operator: the CLI on the data dir, or the API's admin key.
    Admin,
    /// A tenant's API key.
    Tenant,
}

/// What an install did.
#[derive(Debug)]
pub enum Outcome {
    Installed(InstallationRecord),
    /// Replaced an older (or, with `allow_downgrade`, newer) version.
    Replaced {
        from: String,
        record: InstallationRecord,
    },
    /// The new version asks for more than the installed one; it waits for approval.
    Pending(InstallationRecord),
    /// The same bundle, with a new grant or config.
    Reconfigured(InstallationRecord),
    /// The same bundle was already installed, with the same grant and config.
    Unchanged(InstallationRecord),
}

/// How a replacement is approved.
enum Approval {
    /// Nothing said: an upgrade that asks for more waits.
    None,
    /// This grant, checked against the new manifest.
    Grant(Grant),
    /// The installed grant, cut to what the new manifest still declares.
    CarryOver,
}

/// Installs, upgrades and loads installations: the one code path for the CLI and the server.
pub struct Installer<'a> {
    pub runtime: &'a Runtime,
    pub store: &'a dyn Storage,
    pub trail: &'a AuditTrail,
}

impl Installer<'_> {
    /// The trusted keys as stored now: every verification reads them again, so a key revoked
    /// through any node is refused at once.
    pub fn trust(&self) -> Result<TrustStore, StoreError> {
        Ok(TrustStore::from_keys(self.store.trusted_keys()?))
    }

    /// Verifies, loads and installs `request`.
    pub fn install(&self, request: InstallRequest) -> Result<Outcome, InstallError> {
        let tenant = &request.tenant;
        if !self.store.tenant_exists(tenant)? {
            return Err(InstallError::NoTenant(tenant.clone()));
        }
        let (integration, verified) = load_verified(
            self.runtime,
            &request.origin,
            &request.bundle,
            &self.trust()?,
        )?;
        integration.validate_config(request.config.as_deref())?;
        let installation = match &request.installation {
            Some(id) => id.clone(),
            None => default_installation(&verified.id)?,
        };
        let declared = integration.manifest().manifest.egress_policy();
        let Some(installed) = self.store.installation(tenant, &installation)? else {
            let grant = request.grant.clone().unwrap_or_default();
            grant.apply(declared.rules())?;
            let now = now_unix();
            let record = InstallationRecord {
                tenant: tenant.to_string(),
                installation: installation.to_string(),
                integration: verified.id.clone(),
                version: verified.version.clone(),
                bundle: bundle_digest(&request.bundle),
                key: verified.key_id.clone(),
                grant,
                config: request.config.clone(),
                created: now,
                updated: now,
                pending: None,
                quarantine: None,
            };
            self.commit(&record, InstallChange::Installed, &request.bundle)?;
            return Ok(Outcome::Installed(record));
        };
        let approval = request
            .grant
            .clone()
            .map_or(Approval::None, Approval::Grant);
        self.replace(request, approval, installed, &integration, &verified)
    }

    /// Installs over an existing installation: same integration, newer version (or
    /// `allow_downgrade`), and either nothing new asked for, a grant given, or it waits.
    fn replace(
        &self,
        request: InstallRequest,
        approval: Approval,
        installed: InstallationRecord,
        integration: &Integration,
        verified: &VerifiedBundle,
    ) -> Result<Outcome, InstallError> {
        if installed.integration != verified.id {
            return Err(InstallError::OtherIntegration {
                installation: installed
                    .installation
                    .parse()
                    .map_err(|e| InstallError::InstallationId(installed.installation.clone(), e))?,
                installed: installed.integration,
                offered: verified.id.clone(),
            });
        }
        let offered = semver::Version::parse(&verified.version);
        let current = semver::Version::parse(&installed.version);
        let older = matches!((&offered, &current), (Ok(o), Ok(c)) if o < c);
        // Nothing is stored until the install is accepted.
        let digest = bundle_digest(&request.bundle);
        if verified.version == installed.version {
            if digest != installed.bundle {
                return Err(InstallError::SameVersion {
                    id: installed.integration,
                    version: installed.version,
                });
            }
            return self.reconfigure(request, approval, installed, integration);
        }
        if older && !request.allow_downgrade {
            return Err(InstallError::Rollback {
                id: installed.integration,
                offered: verified.version.clone(),
                installed: installed.version,
            });
        }
        let old = self.installed_manifest(&installed)?;
        let additions = diff::additions(&old.manifest, &integration.manifest().manifest);
        let admin_only: Vec<String> = additions
            .iter()
            .filter(|a| a.admin)
            .map(|a| a.item.clone())
            .collect();
        if !matches!(approval, Approval::None)
            && !admin_only.is_empty()
            && request.approver != Approver::Admin
        {
            return Err(InstallError::AdminOnly {
                installation: installed.installation,
                version: verified.version.clone(),
                items: admin_only,
            });
        }
        let declared = integration.manifest().manifest.egress_policy();
        let grant = match approval {
            Approval::Grant(grant) => grant,
            Approval::CarryOver => installed.grant.carried_to(declared.rules()),
            Approval::None if additions.is_empty() => installed.grant.carried_to(declared.rules()),
            Approval::None => {
                let record = InstallationRecord {
                    pending: Some(PendingUpgrade {
                        version: verified.version.clone(),
                        bundle: digest,
                        key: verified.key_id.clone(),
                        additions: additions.into_iter().map(|a| a.item).collect(),
                        admin_only,
                        requested: now_unix(),
                    }),
                    ..installed
                };
                self.commit(&record, InstallChange::Pending, &request.bundle)?;
                return Ok(Outcome::Pending(record));
            }
        };
        grant.apply(declared.rules())?;
        let from = installed.version.clone();
        let record = InstallationRecord {
            version: verified.version.clone(),
            bundle: digest,
            key: verified.key_id.clone(),
            grant,
            config: request.config.or(installed.config),
            updated: now_unix(),
            pending: None,
            ..installed
        };
        let change = if older {
            InstallChange::Downgraded
        } else {
            InstallChange::Upgraded
        };
        self.commit(&record, change, &request.bundle)?;
        Ok(Outcome::Replaced { from, record })
    }

    /// The same bundle again: a new grant or config replaces the installed one.
    fn reconfigure(
        &self,
        request: InstallRequest,
        approval: Approval,
        installed: InstallationRecord,
        integration: &Integration,
    ) -> Result<Outcome, InstallError> {
        let grant = match approval {
            Approval::Grant(grant) => grant,
            Approval::None | Approval::CarryOver => installed.grant.clone(),
        };
        let config = request.config.or_else(|| installed.config.clone());
        if grant == installed.grant && config == installed.config {
            return Ok(Outcome::Unchanged(installed));
        }
        grant.apply(integration.manifest().manifest.egress_policy().rules())?;
        let record = InstallationRecord {
            grant,
            config,
            updated: now_unix(),
            ..installed
        };
        self.commit(&record, InstallChange::Reconfigured, &request.bundle)?;
        Ok(Outcome::Reconfigured(record))
    }

    /// Approves, as `approver`, the upgrade waiting on an installation, with `grant` (or the
    /// installed grant, carried over, when none is given: then the additions stay ungranted).
    pub fn approve(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
        grant: Option<Grant>,
        approver: Approver,
    ) -> Result<Outcome, InstallError> {
        let installed = self.get(tenant, installation)?;
        let Some(pending) = installed.pending.clone() else {
            return Err(InstallError::NoPending {
                tenant: tenant.clone(),
                installation: installation.clone(),
            });
        };
        let (mut request, integration, verified) =
            self.reinstall(tenant, installation, &pending.bundle, None)?;
        request.approver = approver;
        let approval = grant.map_or(Approval::CarryOver, Approval::Grant);
        self.replace(request, approval, installed, &integration, &verified)
    }

    /// Gives an installation a new grant or config (or both), keeping its version.
    pub fn update(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
        grant: Option<Grant>,
        config: Option<String>,
    ) -> Result<Outcome, InstallError> {
        let installed = self.get(tenant, installation)?;
        let (request, integration, _) =
            self.reinstall(tenant, installation, &installed.bundle, config)?;
        integration.validate_config(request.config.as_deref())?;
        let approval = grant.map_or(Approval::None, Approval::Grant);
        self.reconfigure(request, approval, installed, &integration)
    }

    /// The installation's stored bundle `digest`, verified and loaded again, as a request to
    /// install it over the installation (with `config`).
    fn reinstall(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
        digest: &str,
        config: Option<String>,
    ) -> Result<(InstallRequest, Integration, VerifiedBundle), InstallError> {
        let (origin, bundle) = self.stored_bundle(installation.as_str(), digest)?;
        let (integration, verified) =
            load_verified(self.runtime, &origin, &bundle, &self.trust()?)?;
        let request = InstallRequest {
            tenant: tenant.clone(),
            installation: Some(installation.clone()),
            bundle,
            origin,
            grant: None,
            config,
            allow_downgrade: false,
            approver: Approver::Tenant,
        };
        Ok((request, integration, verified))
    }

    /// The installation's record.
    pub fn get(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
    ) -> Result<InstallationRecord, InstallError> {
        self.store
            .installation(tenant, installation)?
            .ok_or_else(|| InstallError::NoInstallation {
                tenant: tenant.clone(),
                installation: installation.clone(),
            })
    }

    /// [`Self::load`] for running it: a quarantined installation is refused.
    pub fn load_runnable(&self, record: &InstallationRecord) -> Result<Integration, InstallError> {
        quarantine::refuse(record)?;
        self.load(record)
    }

    /// Loads what an installation runs: its stored bundle, verified again against the trust
    /// store, with egress cut down to its grant.
    pub fn load(&self, record: &InstallationRecord) -> Result<Integration, InstallError> {
        let (path, bundle) = self.stored_bundle(&record.installation, &record.bundle)?;
        let mut integration = load_installed(self.runtime, &path, &bundle, &self.trust()?)?;
        integration.restrict_egress(&record.grant)?;
        Ok(integration)
    }

    /// What the installed version declares (for the upgrade diff and the privileges report):
    /// its stored bundle verified again, its manifest parsed, nothing compiled.
    pub fn installed_manifest(
        &self,
        record: &InstallationRecord,
    ) -> Result<LoadedManifest, InstallError> {
        let (path, bundle) = self.stored_bundle(&record.installation, &record.bundle)?;
        let verified = verify_trusted(&path, &bundle, &self.trust()?)?;
        Ok(bundle_manifest(&path, &verified.files).map_err(OpenError::from)?)
    }

    /// The stored bundle with hex SHA-256 `digest`, read once, and where it is kept.
    fn stored_bundle(
        &self,
        installation: &str,
        digest: &str,
    ) -> Result<(PathBuf, Vec<u8>), InstallError> {
        match self.store.bundle(digest)? {
            Some(bytes) => Ok((self.store.bundle_origin(digest), bytes)),
            None => {
                let id = installation
                    .parse()
                    .map_err(|id| InstallError::InstallationId(installation.to_string(), id))?;
                Err(InstallError::MissingBundle(id))
            }
        }
    }

    /// Stores `bundle` and `record` and records the change, in that order: an audit failure after the store
    /// write is reported, and the next command sees the installation as stored.
    fn commit(
        &self,
        record: &InstallationRecord,
        change: InstallChange,
        bundle: &[u8],
    ) -> Result<(), InstallError> {
        // Read again just before the write: a quarantine that landed while this change was
        // verified and compiled is not overwritten; the change is refused instead.
        if let Some(current) = self.store.installation(
            &record.tenant.parse().map_err(|_| self.corrupt(record))?,
            &record
                .installation
                .parse()
                .map_err(|_| self.corrupt(record))?,
        )? {
            quarantine::refuse(&current)?;
        }
        self.store.put_bundle(bundle)?;
        self.store.put_installation(record)?;
        let version = match (&record.pending, change) {
            (Some(pending), InstallChange::Pending) => pending.version.clone(),
            _ => record.version.clone(),
        };
        self.trail
            .append_blocking(AuditEvent::InstallationChanged {
                tenant: record.tenant.clone(),
                installation: record.installation.clone(),
                integration: record.integration.clone(),
                version,
                change,
            })?;
        Ok(())
    }
}

impl Installer<'_> {
    fn corrupt(&self, record: &InstallationRecord) -> InstallError {
        InstallError::Store(StoreError::Corrupt {
            what: format!("installation {}/{}", record.tenant, record.installation),
        })
    }
}

/// `acme/github-issues` → `github-issues`.
fn default_installation(integration_id: &str) -> Result<InstallationId, InstallError> {
    let name = integration_id.rsplit('/').next().unwrap_or(integration_id);
    name.parse()
        .map_err(|e| InstallError::InstallationId(integration_id.to_string(), e))
}
