//! OAuth connections (docs/api.md, "OAuth connections"): a tenant, or one of its users,
//! consents at the provider and the host keeps the tokens. Authorization code with PKCE (S256),
//! a single-use state, and a consent bound to the browser that started it. The server's routes
//! are adapters over this module; it records every connection made, removed or refused.
//!
//! - [`Connector::offer`]: a one-time start link for an authorization-code credential whose
//!   OAuth client the operator stored, with the declared scopes or a subset of them.
//! - [`Connector::open_link`] then [`Connector::start`]: the person's browser opens the link;
//!   a state, a PKCE verifier and a browser-binding nonce are made, and the provider's
//!   authorization URL returned.
//! - [`Connector::take_state`] then [`Connector::complete`]: the provider sends the browser
//!   back; the state is taken for that browser's nonce, the code exchanged, the tokens stored.
//! - [`Connector::disconnect`]: a connection removed (its tokens deleted, not revoked).
//!
//! Each browser step is two calls so that the caller loads the installation (through its own
//! cache) between them: the link or state is taken and checked first, so nothing is loaded
//! for a forged one. A link or state nobody offered comes back as [`ConsentError::Unknown`],
//! not yet recorded, so the caller can limit such refusals per client before it records one
//! with [`Connector::refuse`]: forgeries cannot flood the trail.

mod browser;
#[cfg(test)]
mod tests;

pub use browser::{Connected, Granted, OpenedLink, Reply, Started, plausible};

use airlock_audit::AuditTrail;
use airlock_host_api::audit::{AuditEvent, AuditUnavailable, ConnectionChange};
use airlock_host_api::credentials::{
    CredentialError, CredentialScope, CredentialSpec, OAuthClient, OAuthGrant, OAuthSpec,
    OAuthTokens,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand_core::{OsRng, RngCore};

use airlock_runtime::clock::now_unix;
use airlock_runtime::ids::{IdError, InstallationId, TenantId, UserId, UserIdError};
use airlock_runtime::loader::Integration;
use airlock_runtime::manifest::CredentialDecl;
use airlock_store::{ConnectionKey, PendingConsent, Storage, StoreError};

/// How long a consent may take, from the offer to the callback.
pub const CONSENT_TTL: u64 = 600;

/// Why a consent step or a disconnect was refused, or failed.
#[derive(Debug, thiserror::Error)]
pub enum ConsentError {
    /// A start link or state nobody offered (forged, used, or never issued): not recorded yet.
    #[error("{0}")]
    Unknown(Refusal),
    /// A browser's step refused, and recorded with its reason.
    #[error("{0}")]
    Refused(Refusal),
    /// The installed version declares no such credential.
    #[error("credential {0} not found")]
    NoCredential(String),
    #[error(
        "credential `{0}` is not an oauth2 authorization-code credential: there is no consent to \
         give"
    )]
    NotAuthorizationCode(String),
    /// A manifest the loader accepted without an authorize URL: a bug, not a refusal.
    #[error("credential `{0}` is an authorization-code credential without an authorize URL")]
    NoAuthorizeUrl(String),
    #[error("credential `{0}` is per user: name the user")]
    NoUser(String),
    #[error("credential `{0}` is the installation's, not per user: name no user")]
    NotPerUser(String),
    #[error("scope {scope:?} is not declared for `{credential}`; it declares: {}", declared.join(" "))]
    UndeclaredScope {
        credential: String,
        scope: String,
        declared: Vec<String>,
    },
    /// The operator has not stored the OAuth client (id and secret) as the credential's value.
    #[error("no OAuth client is stored as credential `{0}`")]
    NoClient(String),
    /// The stored client is bound to another token endpoint: its secret is not sent to this one.
    #[error(
        "credential `{name}` was stored for another token endpoint than {origin}, which the \
         installed version declares"
    )]
    Unbound { name: String, origin: String },
    /// The stored client cannot be used for another reason.
    #[error(transparent)]
    Client(CredentialError),
    #[error("no such connection")]
    NoConnection,
    #[error(transparent)]
    Id(#[from] IdError),
    #[error(transparent)]
    User(#[from] UserIdError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] AuditUnavailable),
}

/// Why a browser's step (the start link or the callback) was refused: the message for the
/// person, and the reason the trail records ([`Refusal::reason`]).
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("this consent link is unknown or was already used: start again with connect")]
    UnknownStart,
    #[error("the consent link is more than ten minutes old: start again with connect")]
    StartExpired,
    #[error("the callback carries no state")]
    MissingState,
    #[error("this state is unknown or was already used: start again with connect")]
    UnknownState,
    #[error("the consent took more than ten minutes: start again with connect")]
    StateExpired,
    /// The browser coming back does not hold the nonce of the one that started the consent, so
    /// a forwarded authorization URL connects nobody's account under another's name.
    #[error(
        "this consent was started in another browser (its cookie is missing): start again with \
         connect, in the browser that completes it"
    )]
    OtherBrowser,
    /// The provider's RFC 6749 error code (`access_denied`, …), or `error` if it does not look
    /// like one.
    #[error("the provider did not grant consent ({0})")]
    Provider(String),
    #[error("the callback carries no code")]
    MissingCode,
    #[error("the credential is no longer declared")]
    CredentialGone,
    /// Uninstalled while the person consented: no connection outlives its installation.
    #[error("the installation was removed")]
    InstallationGone,
    #[error("the code exchange failed: {0}")]
    ExchangeFailed(CredentialError),
}

impl Refusal {
    /// The provider's error code, kept only if it looks like an RFC 6749 one (it is recorded).
    pub fn provider(error: &str) -> Self {
        let code =
            if error.len() <= 40 && error.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                error
            } else {
                "error"
            };
        Self::Provider(code.to_string())
    }

    /// The reason code, as the trail records it and the API reports it.
    pub fn reason(&self) -> String {
        match self {
            Self::UnknownStart => "unknown-start".into(),
            Self::StartExpired => "start-expired".into(),
            Self::MissingState => "missing-state".into(),
            Self::UnknownState => "unknown-state".into(),
            Self::StateExpired => "state-expired".into(),
            Self::OtherBrowser => "browser-mismatch".into(),
            Self::Provider(code) => format!("provider-{}", code.replace('_', "-")),
            Self::MissingCode => "missing-code".into(),
            Self::CredentialGone => "credential-gone".into(),
            Self::InstallationGone => "installation-gone".into(),
            Self::ExchangeFailed(_) => "exchange-failed".into(),
        }
    }
}

/// A consent to offer: whose, for which credential, and where the provider sends the browser
/// back.
pub struct OfferRequest<'a> {
    pub tenant: &'a TenantId,
    pub installation: &'a InstallationId,
    pub credential: &'a str,
    /// For a per-user credential (and only for one): whose account.
    pub user: Option<&'a str>,
    /// A subset of the declared scopes; `None` asks for all of them.
    pub scopes: Option<Vec<String>>,
    /// The redirect URI registered with the provider (the server's callback).
    pub redirect_uri: String,
}

/// A consent offered: the one-time id of its start link, until when it works, and what it asks.
pub struct Offer {
    pub id: String,
    /// Unix seconds.
    pub expires: u64,
    pub scopes: Vec<String>,
    pub user: Option<UserId>,
}

/// OAuth consents and connections over one store, trail and token cache: the one code path
/// for every connection made or removed.
pub struct Connector<'a> {
    pub store: &'a dyn Storage,
    pub trail: &'a AuditTrail,
    /// The runtime's token cache: code exchanges go through its checked transport, and what a
    /// replaced or removed connection held is forgotten there.
    pub tokens: &'a OAuthTokens,
}

impl Connector<'_> {
    /// Offers a consent for credential `request.credential` of the installation, which loaded
    /// as `integration`: stores it under a random id (only its hash is kept) for ten minutes.
    /// Refused now rather than in the person's browser if no OAuth client is stored, or the
    /// stored one is bound elsewhere.
    pub fn offer(
        &self,
        request: OfferRequest<'_>,
        integration: &Integration,
    ) -> Result<Offer, ConsentError> {
        let name = request.credential;
        let (_, spec) = authorization_code(integration, name)?;
        let user = user_for(spec, request.user, name)?;
        let scopes = match request.scopes {
            None => spec.scopes.clone(),
            Some(asked) => {
                if let Some(extra) = asked.iter().find(|s| !spec.scopes.contains(s)) {
                    return Err(ConsentError::UndeclaredScope {
                        credential: name.to_string(),
                        scope: extra.clone(),
                        declared: spec.scopes.clone(),
                    });
                }
                asked
            }
        };
        self.registered_client(request.tenant, request.installation, name, spec)?;
        let id = random_token();
        let expires = now_unix() + CONSENT_TTL;
        let consent = PendingConsent {
            tenant: request.tenant.to_string(),
            installation: request.installation.to_string(),
            credential: name.to_string(),
            user: user.as_ref().map(ToString::to_string),
            scopes: scopes.clone(),
            redirect_uri: request.redirect_uri,
            expires,
        };
        self.store.offer_consent(&id, &consent)?;
        Ok(Offer {
            id,
            expires,
            scopes,
            user,
        })
    }

    /// Removes the connection of `credential` (the tenant's, or `user`'s), forgets its cached
    /// token and records it. Its tokens are deleted, not revoked at the provider.
    pub async fn disconnect(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
        credential: &str,
        user: Option<&UserId>,
    ) -> Result<(), ConsentError> {
        let key = ConnectionKey {
            tenant,
            installation,
            credential,
            user,
        };
        if !self.store.delete_connection(key)? {
            return Err(ConsentError::NoConnection);
        }
        let mut scope = CredentialScope::new(tenant.to_string(), installation.to_string());
        scope.user = user.map(ToString::to_string);
        self.tokens.forget(&scope, credential).await;
        self.trail
            .append(AuditEvent::ConnectionChanged {
                tenant: tenant.to_string(),
                installation: installation.to_string(),
                credential: credential.to_string(),
                user: self.user_ref(tenant, user)?,
                change: ConnectionChange::Disconnected,
                scopes: Vec::new(),
                widened: Vec::new(),
            })
            .await?;
        Ok(())
    }

    /// Records `refusal` of a browser's step from `peer` (for `tenant`, once the consent is
    /// known) and returns the error to report: [`ConsentError::Refused`], or the trail's failure.
    pub async fn refuse(&self, tenant: Option<&str>, refusal: Refusal, peer: &str) -> ConsentError {
        let recorded = self
            .trail
            .append(AuditEvent::ConnectionRefused {
                tenant: tenant.map(str::to_string),
                reason: refusal.reason(),
                peer: peer.to_string(),
            })
            .await;
        match recorded {
            Ok(_) => ConsentError::Refused(refusal),
            Err(e) => e.into(),
        }
    }

    /// The OAuth client the operator stored as credential `name`'s value, bound to the token
    /// endpoint `spec` declares.
    fn registered_client(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
        name: &str,
        spec: &OAuthSpec,
    ) -> Result<OAuthClient, ConsentError> {
        let source = self.store.secrets(tenant, installation);
        airlock_host_api::credentials::registered_client(name, spec, source.as_ref()).map_err(|e| {
            match e {
                CredentialError::Missing(_) => ConsentError::NoClient(name.to_string()),
                CredentialError::Unbound { origin, .. } => ConsentError::Unbound {
                    name: name.to_string(),
                    origin,
                },
                other => ConsentError::Client(other),
            }
        })
    }

    /// How the trail names `user`: by reference, never the id (docs/security-model.md).
    fn user_ref(
        &self,
        tenant: &TenantId,
        user: Option<&UserId>,
    ) -> Result<Option<String>, StoreError> {
        user.map(|u| self.store.user_ref(tenant, u)).transpose()
    }
}

/// The authorize URL and OAuth parameters `integration` declares for `name`, if it is an
/// authorization-code credential.
fn authorization_code<'a>(
    integration: &'a Integration,
    name: &str,
) -> Result<(String, &'a OAuthSpec), ConsentError> {
    let decl = integration
        .manifest()
        .manifest
        .credentials
        .iter()
        .find(|(n, _)| n.as_str() == name)
        .map(|(_, d)| d.get_ref());
    match (decl, integration.credentials().get(name)) {
        (Some(CredentialDecl::Oauth2(decl)), Some(CredentialSpec::OAuth2(spec)))
            if spec.grant == OAuthGrant::AuthorizationCode =>
        {
            let url = decl
                .authorize_url
                .as_ref()
                .map(ToString::to_string)
                .ok_or_else(|| ConsentError::NoAuthorizeUrl(name.to_string()))?;
            Ok((url, spec))
        }
        (None, _) => Err(ConsentError::NoCredential(name.to_string())),
        _ => Err(ConsentError::NotAuthorizationCode(name.to_string())),
    }
}

/// Whose connection: `user` must be given exactly for a per-user credential.
fn user_for(
    spec: &OAuthSpec,
    user: Option<&str>,
    name: &str,
) -> Result<Option<UserId>, ConsentError> {
    match (spec.per_user, user) {
        (true, None) => Err(ConsentError::NoUser(name.to_string())),
        (false, Some(_)) => Err(ConsentError::NotPerUser(name.to_string())),
        (_, user) => Ok(user.map(str::parse).transpose()?),
    }
}

/// 32 bytes from the OS CSPRNG, base64url: a start id, a state, a nonce or a PKCE verifier
/// (43 characters).
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}
