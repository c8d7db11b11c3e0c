//! The browser's half of a consent: the start link opened, and the provider's callback. Neither
//! carries an API key: the one-time link, then the single-use state and the browser-binding
//! nonce, stand for it (docs/api.md, "OAuth connections").

use airlock_host_api::audit::{AuditEvent, ConnectionChange};
use airlock_host_api::credentials::{CredentialScope, CredentialSpec};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use super::{Connector, ConsentError, Refusal, authorization_code, random_token};
use airlock_runtime::clock::now_unix;
use airlock_runtime::ids::{InstallationId, TenantId, UserId};
use airlock_runtime::loader::Integration;
use airlock_store::{ConnectionKey, PendingConsent, TakenState};

/// Longest start id or state looked up (those issued are 43 characters).
const MAX_ID: usize = 256;
/// Longest authorization code taken from a callback.
const MAX_CODE: usize = 2048;
/// What a query component leaves as it is: RFC 3986's unreserved characters.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Whether `id` (a start id or a state) is worth looking up: not empty, and no longer than any
/// issued could be.
pub fn plausible(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID
}

/// A start link taken and not expired: whose consent it offered. The caller loads the
/// installation ([`OpenedLink::tenant`], [`OpenedLink::installation`]), then
/// [`Connector::start`]s it.
pub struct OpenedLink {
    consent: PendingConsent,
    tenant: TenantId,
    installation: InstallationId,
    user: Option<UserId>,
    /// When it was taken: the nonce lives from then until the consent expires.
    now: u64,
}

impl OpenedLink {
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    pub fn installation(&self) -> &InstallationId {
        &self.installation
    }
}

/// A consent under way: where to send the browser, and what it must bring back.
pub struct Started {
    /// The provider's authorization URL with the client id, redirect URI, scopes, state and
    /// PKCE challenge.
    pub authorize_url: String,
    /// Single use; the provider sends it back to the callback.
    pub state: String,
    /// The browser-binding secret: the caller keeps it in the browser (only its hash is bound
    /// to the state) and passes it back with the callback.
    pub nonce: String,
    /// Seconds the nonce is needed for: until the consent expires.
    pub max_age: u64,
}

/// What the provider sent back to the callback: `state` with `code`, or with `error`.
#[derive(Clone, Copy, Default)]
pub struct Reply<'a> {
    pub state: Option<&'a str>,
    pub code: Option<&'a str>,
    /// The provider's RFC 6749 error code, if consent was not given.
    pub error: Option<&'a str>,
}

/// A state taken by the browser that started its consent, with a code to exchange. The caller
/// loads the installation ([`Granted::tenant`], [`Granted::installation`]), then
/// [`Connector::complete`]s it.
pub struct Granted {
    consent: PendingConsent,
    verifier: Zeroizing<String>,
    code: Zeroizing<String>,
    tenant: TenantId,
    installation: InstallationId,
    user: Option<UserId>,
}

impl Granted {
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    pub fn installation(&self) -> &InstallationId {
        &self.installation
    }
}

/// The connection a consent made.
pub struct Connected {
    pub installation: String,
    pub credential: String,
    /// For a per-user credential: whose connection.
    pub user: Option<String>,
    /// The scopes the provider says it granted.
    pub scopes: Vec<String>,
    /// Scopes granted beyond those asked for (recorded).
    pub widened: Vec<String>,
    /// When the access token expires (unix seconds), if it does.
    pub expires_at: Option<u64>,
}

impl Connector<'_> {
    /// Takes the start link `id` opened from `peer` (it works once, expired or not). An unknown
    /// one is [`ConsentError::Unknown`]; an expired one is refused and recorded.
    pub async fn open_link(&self, id: &str, peer: &str) -> Result<OpenedLink, ConsentError> {
        let offered = if plausible(id) {
            self.store.take_offered_consent(id)?
        } else {
            None
        };
        let Some(consent) = offered else {
            return Err(ConsentError::Unknown(Refusal::UnknownStart));
        };
        let now = now_unix();
        if now >= consent.expires {
            let tenant = Some(consent.tenant.as_str());
            return Err(self.refuse(tenant, Refusal::StartExpired, peer).await);
        }
        Ok(OpenedLink {
            tenant: consent.tenant.parse()?,
            installation: consent.installation.parse()?,
            user: consent.user.as_deref().map(str::parse).transpose()?,
            consent,
            now,
        })
    }

    /// Starts the consent `link` offered, for its installation loaded as `integration`: a state
    /// bound to the connection, a PKCE verifier (sealed) and the hash of a browser nonce are
    /// stored, and the provider's authorization URL made. The credential must still be an
    /// authorization-code credential with a stored OAuth client.
    pub fn start(
        &self,
        link: OpenedLink,
        integration: &Integration,
    ) -> Result<Started, ConsentError> {
        let OpenedLink {
            consent,
            tenant,
            installation,
            user,
            now,
        } = link;
        let credential = &consent.credential;
        let (authorize_url, spec) = authorization_code(integration, credential)?;
        let registered = self.registered_client(&tenant, &installation, credential, spec)?;
        let state = random_token();
        let verifier = random_token();
        let nonce = random_token();
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let encode = |s: &str| utf8_percent_encode(s, QUERY).to_string();
        let separator = if authorize_url.contains('?') {
            '&'
        } else {
            '?'
        };
        let authorize_url = format!(
            "{authorize_url}{separator}response_type=code&client_id={}&redirect_uri={}&scope={}&state={}&code_challenge={challenge}&code_challenge_method=S256",
            encode(registered.client_id()),
            encode(&consent.redirect_uri),
            encode(&consent.scopes.join(" ")),
            encode(&state),
        );
        let max_age = consent.expires - now;
        let key = ConnectionKey {
            tenant: &tenant,
            installation: &installation,
            credential,
            user: user.as_ref(),
        };
        self.store
            .begin_consent(key, consent.clone(), &state, &verifier, &nonce)?;
        Ok(Started {
            authorize_url,
            state,
            nonce,
            max_age,
        })
    }

    /// Takes the state `reply` carries (so it works once, whatever follows) for the browser
    /// that brought `nonce` back, from `peer`. An unknown state (or none) is
    /// [`ConsentError::Unknown`]; an expired one, one from another browser, the provider's
    /// refusal or a missing code is refused and recorded.
    pub async fn take_state(
        &self,
        reply: Reply<'_>,
        nonce: Option<&str>,
        peer: &str,
    ) -> Result<Granted, ConsentError> {
        let Some(state) = reply.state.filter(|s| plausible(s)) else {
            return Err(ConsentError::Unknown(Refusal::MissingState));
        };
        let (consent, verifier) = match self.store.take_consent(state, nonce, now_unix())? {
            TakenState::Unknown => return Err(ConsentError::Unknown(Refusal::UnknownState)),
            TakenState::Expired(consent) => {
                let tenant = Some(consent.tenant.as_str());
                return Err(self.refuse(tenant, Refusal::StateExpired, peer).await);
            }
            TakenState::OtherBrowser(consent) => {
                let tenant = Some(consent.tenant.as_str());
                return Err(self.refuse(tenant, Refusal::OtherBrowser, peer).await);
            }
            TakenState::Valid(consent, verifier) => (consent, verifier),
        };
        let tenant = Some(consent.tenant.as_str());
        if let Some(error) = reply.error {
            return Err(self.refuse(tenant, Refusal::provider(error), peer).await);
        }
        let Some(code) = reply.code.filter(|c| !c.is_empty() && c.len() <= MAX_CODE) else {
            return Err(self.refuse(tenant, Refusal::MissingCode, peer).await);
        };
        Ok(Granted {
            tenant: consent.tenant.parse()?,
            installation: consent.installation.parse()?,
            user: consent.user.as_deref().map(str::parse).transpose()?,
            code: Zeroizing::new(code.to_string()),
            consent,
            verifier,
        })
    }

    /// Completes the consent `granted` carries, for its installation loaded as `integration`:
    /// the code is exchanged with the PKCE verifier through the token cache's checked
    /// transport, the tokens stored (sealed, with the provider account the response names),
    /// the cached token forgotten and the connection recorded, scopes granted beyond those
    /// asked for as widened. A failed exchange is refused and recorded from `peer`.
    pub async fn complete(
        &self,
        granted: Granted,
        integration: &Integration,
        peer: &str,
    ) -> Result<Connected, ConsentError> {
        let Granted {
            consent,
            verifier,
            code,
            tenant: tenant_id,
            installation,
            user,
        } = granted;
        let tenant = Some(consent.tenant.as_str());
        let Some(CredentialSpec::OAuth2(spec)) = integration.credentials().get(&consent.credential)
        else {
            return Err(self.refuse(tenant, Refusal::CredentialGone, peer).await);
        };
        let registered =
            self.registered_client(&tenant_id, &installation, &consent.credential, spec)?;
        let exchanged = self
            .tokens
            .exchange_code(
                &consent.credential,
                spec,
                &registered,
                &code,
                &verifier,
                &consent.redirect_uri,
            )
            .await;
        let exchanged = match exchanged {
            Ok(exchanged) => exchanged,
            Err(e) => return Err(self.refuse(tenant, Refusal::ExchangeFailed(e), peer).await),
        };
        let widened: Vec<String> = exchanged
            .scopes
            .iter()
            .filter(|s| !consent.scopes.contains(s))
            .cloned()
            .collect();
        let key = ConnectionKey {
            tenant: &tenant_id,
            installation: &installation,
            credential: &consent.credential,
            user: user.as_ref(),
        };
        // The exchange took a while: an uninstall meanwhile (which also sweeps connections
        // once its record is gone) leaves nothing to connect.
        if self
            .store
            .installation(&tenant_id, &installation)?
            .is_none()
        {
            return Err(self.refuse(tenant, Refusal::InstallationGone, peer).await);
        }
        self.store.put_connection(key, &exchanged, now_unix())?;
        let mut scope = CredentialScope::new(consent.tenant.clone(), consent.installation.clone());
        scope.user = consent.user.clone();
        self.tokens.forget(&scope, &consent.credential).await;
        // The provider account stays out of the trail: it identifies a third party's account.
        self.trail
            .append(AuditEvent::ConnectionChanged {
                tenant: consent.tenant.clone(),
                installation: consent.installation.clone(),
                credential: consent.credential.clone(),
                user: self.user_ref(&tenant_id, user.as_ref())?,
                change: ConnectionChange::Connected,
                scopes: exchanged.scopes.clone(),
                widened: widened.clone(),
            })
            .await?;
        Ok(Connected {
            installation: consent.installation,
            credential: consent.credential,
            user: consent.user,
            scopes: exchanged.scopes,
            widened,
            expires_at: exchanged.expires_at,
        })
    }
}
