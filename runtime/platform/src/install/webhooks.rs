//! An installation's webhook endpoints: created for an action its installed version declares,
//! with a secret shown once; rotated with an overlap; deleted. Every change is a security event.
//! The CLI and the server both manage endpoints through here.

use std::time::Duration;

use airlock_host_api::audit::{AuditEvent, Change};
use zeroize::Zeroizing;

use super::{InstallError, Installer};
use airlock_policy::webhook::{Scheme, SecretRefused, WebhookSecret};
use airlock_runtime::clock::now_unix;
use airlock_runtime::ids::{EndpointId, InstallationId, TenantId};
use airlock_store::StoreError;
use airlock_store::{EndpointInfo, NewEndpoint};

/// The longest a rotated-out secret keeps verifying.
pub const MAX_OVERLAP: Duration = Duration::from_secs(7 * 24 * 3600);

/// Why an endpoint was not created or changed.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(transparent)]
    Install(#[from] InstallError),
    #[error("{integration} declares no action `{action}`; it declares: {declared}")]
    NoAction {
        integration: String,
        action: String,
        declared: String,
    },
    #[error(transparent)]
    Secret(#[from] SecretRefused),
    #[error("webhook endpoint {0} does not exist")]
    NotFound(EndpointId),
    #[error("the overlap is {0} s; a rotated-out secret may verify for at most 7 days")]
    Overlap(u64),
}

impl From<StoreError> for WebhookError {
    fn from(e: StoreError) -> Self {
        Self::Install(e.into())
    }
}

/// A new endpoint and its secret, which is never shown again.
pub struct CreatedWebhook {
    pub endpoint: EndpointInfo,
    pub secret: WebhookSecret,
}

impl Installer<'_> {
    /// Creates an endpoint that runs `action` of the installation, signed under `scheme`.
    pub fn create_webhook(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
        action: &str,
        scheme: Scheme,
        offered: Option<Zeroizing<String>>,
    ) -> Result<CreatedWebhook, WebhookError> {
        let record = self.get(tenant, installation)?;
        let manifest = self.installed_manifest(&record)?.manifest;
        if !manifest.actions.keys().any(|a| a.as_str() == action) {
            let declared: Vec<&str> = manifest.actions.keys().map(|a| a.as_str()).collect();
            return Err(WebhookError::NoAction {
                integration: record.integration,
                action: action.to_string(),
                declared: declared.join(", "),
            });
        }
        let secret = self.fresh_secret(tenant, scheme, offered)?;
        let id = EndpointId::generate();
        let new = NewEndpoint {
            id: &id,
            tenant,
            installation,
            action,
            scheme,
        };
        let endpoint = self.store.create_webhook(new, &secret, now_unix())?;
        self.record_webhook(&endpoint, Change::Set)?;
        Ok(CreatedWebhook { endpoint, secret })
    }

    /// Gives the endpoint a new secret; the previous one verifies for `overlap` more.
    pub fn rotate_webhook(
        &self,
        tenant: &TenantId,
        id: &EndpointId,
        overlap: Duration,
        offered: Option<Zeroizing<String>>,
    ) -> Result<CreatedWebhook, WebhookError> {
        if overlap > MAX_OVERLAP {
            return Err(WebhookError::Overlap(overlap.as_secs()));
        }
        let now = now_unix();
        let scheme = self
            .store
            .webhook(tenant, id, now)?
            .ok_or_else(|| WebhookError::NotFound(id.clone()))?
            .scheme;
        let secret = self.fresh_secret(tenant, scheme, offered)?;
        let endpoint = self
            .store
            .rotate_webhook(tenant, id, &secret, overlap.as_secs(), now)?
            .ok_or_else(|| WebhookError::NotFound(id.clone()))?;
        self.record_webhook(&endpoint, Change::Rotated)?;
        Ok(CreatedWebhook { endpoint, secret })
    }

    /// Deletes the endpoint; its deliveries are refused from now on.
    pub fn delete_webhook(&self, tenant: &TenantId, id: &EndpointId) -> Result<(), WebhookError> {
        let endpoint = self
            .store
            .webhook(tenant, id, now_unix())?
            .ok_or_else(|| WebhookError::NotFound(id.clone()))?;
        if !self.store.delete_webhook(tenant, id)? {
            return Err(WebhookError::NotFound(id.clone()));
        }
        self.record_webhook(&endpoint, Change::Deleted)
    }

    /// A generated secret, or the offered one if the scheme imports it and no other endpoint
    /// of the tenant uses it.
    fn fresh_secret(
        &self,
        tenant: &TenantId,
        scheme: Scheme,
        offered: Option<Zeroizing<String>>,
    ) -> Result<WebhookSecret, WebhookError> {
        let secret = WebhookSecret::for_scheme(scheme, offered)?;
        if scheme.imports_secret()
            && self
                .store
                .webhook_secret_in_use(tenant, &secret, now_unix())?
        {
            return Err(SecretRefused::InUse.into());
        }
        Ok(secret)
    }

    fn record_webhook(&self, endpoint: &EndpointInfo, change: Change) -> Result<(), WebhookError> {
        self.trail
            .append_blocking(AuditEvent::WebhookChanged {
                tenant: endpoint.tenant.clone(),
                installation: endpoint.installation.clone(),
                endpoint: endpoint.id.clone(),
                action: endpoint.action.clone(),
                change,
            })
            .map_err(InstallError::from)?;
        Ok(())
    }
}
