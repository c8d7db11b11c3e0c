//! [`OAuthTokens`]: the access tokens a runtime holds, one slot per (tenant, installation,
//! user, credential), refreshed shortly before expiry, one token call at a time per slot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use zeroize::Zeroizing;

use super::client::{OAuthClient, OAuthGrant, OAuthSpec, check_bound, stored_client, token_origin};
use super::connection::ConnectionTokens;
use super::endpoint::{self, Issued, TokenForm};
use crate::credentials::{CredentialError, CredentialScope, CredentialType, Secret, SecretSource};
use crate::egress::EgressSettings;

/// Refresh this long before the token expires (or at half its life, if shorter).
const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// Lifetime assumed when the server gives no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// Credentials (per tenant, installation and user) whose tokens are held at most.
pub const MAX_SLOTS: usize = 10_000;

/// A token cache key: never shared across tenants or installations.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    scope: CredentialScope,
    credential: String,
}

/// What the host holds for one credential.
#[derive(Default)]
struct TokenState {
    /// The access token and when to refresh it.
    access: Option<(Secret, Instant)>,
    /// A rotated refresh token, newer than the stored one.
    refresh: Option<Zeroizing<String>>,
    /// The refresh token was refused: no more calls until the credential is set again.
    needs_reauth: bool,
}

impl Issued {
    /// When to ask again: a margin before expiry (at most half the token's life).
    fn refresh_at(&self) -> Instant {
        refresh_at(self.lifetime.map_or(DEFAULT_LIFETIME, Duration::from_secs))
    }
}

fn refresh_at(lifetime: Duration) -> Instant {
    Instant::now() + lifetime - REFRESH_MARGIN.min(lifetime / 2)
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

type Slot = Arc<tokio::sync::Mutex<TokenState>>;

/// The cache: each credential's slot and when it was last used (a counter).
#[derive(Default)]
struct Slots {
    map: HashMap<TokenKey, (Slot, u64)>,
    clock: u64,
}

/// Access tokens held by the host, shared by a runtime's invocations.
pub struct OAuthTokens {
    settings: Arc<EgressSettings>,
    slots: Mutex<Slots>,
    /// Slots held at most, except those in use when a new one is needed.
    capacity: usize,
}

impl OAuthTokens {
    pub fn new(settings: Arc<EgressSettings>) -> Self {
        Self {
            settings,
            slots: Mutex::default(),
            capacity: MAX_SLOTS,
        }
    }

    /// The slot of `credential` of `scope`. A new one, when the cache is full, takes the place
    /// of the least recently used slot nobody holds (its token is simply asked for again).
    fn slot(&self, scope: &CredentialScope, credential: &str) -> Slot {
        let key = TokenKey {
            scope: scope.clone(),
            credential: credential.to_string(),
        };
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.clock += 1;
        let now = slots.clock;
        if let Some((slot, used)) = slots.map.get_mut(&key) {
            *used = now;
            return slot.clone();
        }
        if slots.map.len() >= self.capacity {
            let idle = slots
                .map
                .iter()
                .filter(|(_, (slot, _))| Arc::strong_count(slot) == 1)
                .min_by_key(|(_, (_, used))| *used)
                .map(|(key, _)| key.clone());
            if let Some(idle) = idle {
                slots.map.remove(&idle);
            }
        }
        let slot = Slot::default();
        slots.map.insert(key, (slot.clone(), now));
        slot
    }

    /// A current access token for `credential` of `scope`: the cached one unless it is due for
    /// refresh, else one new token call (which concurrent callers wait for and share).
    /// `source` is read only when a call is needed, and written when the server rotates the
    /// refresh token (the old one may already be dead: CR-11).
    pub async fn access_token(
        &self,
        scope: &CredentialScope,
        credential: &str,
        spec: &OAuthSpec,
        source: &dyn SecretSource,
    ) -> Result<Secret, CredentialError> {
        // Before the cache: a held token is bound like the client it came from.
        check_bound(credential, spec, source)?;
        let slot = self.slot(scope, credential);
        let mut state = slot.lock().await;
        if let Some((token, refresh_at)) = &state.access
            && Instant::now() < *refresh_at
        {
            return Ok(token.clone());
        }
        if state.needs_reauth {
            return Err(CredentialError::NeedsReauth(credential.to_string()));
        }
        let user = scope.user.as_deref();
        let client = stored_client(credential, source)?;
        // Taken before the connection is read: a node that waited finds the tokens the node
        // before it stored, and uses them.
        let _turn = match spec.grant {
            OAuthGrant::ClientCredentials => None,
            OAuthGrant::AuthorizationCode => source.refresh_turn(credential, user)?,
        };
        let connection = match spec.grant {
            OAuthGrant::ClientCredentials => None,
            OAuthGrant::AuthorizationCode => source.connection(credential, user)?,
        };
        if let Some(connection) = &connection {
            // Tokens another token endpoint issued are not refreshed at this one.
            let origin = token_origin(credential, spec)?;
            if connection.token_origin.as_ref() != Some(&origin) {
                return Err(CredentialError::Unbound {
                    name: credential.to_string(),
                    origin,
                });
            }
            if connection.needs_reauth {
                state.needs_reauth = true;
                return Err(CredentialError::NeedsReauth(credential.to_string()));
            }
            // A stored access token still good for longer than the margin is used as it is.
            if let Some(access) = &connection.access {
                let left = connection
                    .expires_at
                    .map(|at| Duration::from_secs(at.saturating_sub(unix_now())));
                if left.is_none_or(|left| left > REFRESH_MARGIN) {
                    let refresh_at = refresh_at(left.unwrap_or(DEFAULT_LIFETIME));
                    state.access = Some((access.clone(), refresh_at));
                    return Ok(access.clone());
                }
            }
        }
        let refresh = match spec.grant {
            OAuthGrant::ClientCredentials => None,
            OAuthGrant::AuthorizationCode => {
                // A refresh token stored with the client is the installation's, never a user's.
                let installation_wide = client.refresh_token.clone().filter(|_| user.is_none());
                let held = state
                    .refresh
                    .clone()
                    .or_else(|| connection.as_ref().and_then(|c| c.refresh.clone()))
                    .or(installation_wide);
                if held.is_none() {
                    // Expired, and nothing to renew it with: only the person can.
                    if let Some(connection) = &connection {
                        state.needs_reauth = true;
                        source.mark_needs_reauth(credential, user, connection.revision)?;
                    }
                    return Err(CredentialError::NeedsReauth(credential.to_string()));
                }
                held
            }
        };
        let form = match &refresh {
            None => TokenForm::ClientCredentials,
            Some(token) => TokenForm::Refresh(token),
        };
        let issued = match endpoint::request(&self.settings, credential, spec, &client, form).await
        {
            Ok(issued) => issued,
            Err(e) => {
                if matches!(e, CredentialError::NeedsReauth(_)) {
                    state.needs_reauth = true;
                    if let Some(connection) = &connection {
                        source.mark_needs_reauth(credential, user, connection.revision)?;
                    }
                }
                return Err(e);
            }
        };
        state.access = Some((issued.access.clone(), issued.refresh_at()));
        if let Some(rotated) = &issued.refresh {
            state.refresh = Some(rotated.clone());
        }
        // Kept in memory first: if storing fails, this process still holds the live token.
        if let Some(connection) = connection {
            let tokens = ConnectionTokens {
                access: Some(issued.access.clone()),
                expires_at: issued.lifetime.map(|l| unix_now() + l),
                refresh: issued.refresh.clone().or(connection.refresh),
                scopes: issued.scopes.clone().unwrap_or(connection.scopes),
                needs_reauth: false,
                revision: 0,
                token_origin: connection.token_origin,
                account: connection.account,
            };
            if !source.update_connection(credential, user, connection.revision, &tokens)? {
                *state = TokenState::default();
                return Err(CredentialError::Changed(credential.to_string()));
            }
        } else if let Some(rotated) = issued.refresh.clone() {
            let value = serde_json::to_string(&client.with_refresh_token(rotated))
                .map_err(|e| CredentialError::Store {
                    name: credential.to_string(),
                    reason: e.to_string(),
                })
                .and_then(|json| {
                    Secret::new(CredentialType::OAuth2, json)
                        .map_err(|e| CredentialError::Malformed(credential.to_string(), e))
                })?;
            source.replace(credential, &value)?;
        }
        Ok(issued.access)
    }

    /// Exchanges an authorization `code` (with its PKCE `verifier`) for the tokens of a new
    /// connection, with the provider account the response names. Nothing is cached or stored:
    /// the caller stores them, then [`Self::forget`]s what was held. `client` comes from
    /// [`registered_client`], bound to this token endpoint.
    pub async fn exchange_code(
        &self,
        credential: &str,
        spec: &OAuthSpec,
        client: &OAuthClient,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<ConnectionTokens, CredentialError> {
        let form = TokenForm::Code {
            code,
            verifier,
            redirect_uri,
        };
        let token_origin = token_origin(credential, spec)?;
        let issued = endpoint::request(&self.settings, credential, spec, client, form).await?;
        Ok(ConnectionTokens {
            expires_at: issued.lifetime.map(|l| unix_now() + l),
            scopes: issued.scopes.clone().unwrap_or_else(|| spec.scopes.clone()),
            access: Some(issued.access),
            refresh: issued.refresh,
            needs_reauth: false,
            revision: 0,
            token_origin: Some(token_origin),
            account: issued.account,
        })
    }

    /// Forgets what is held for `credential` of `scope` (a new connection was just made, or
    /// the old one removed): the next request reads the store afresh.
    pub async fn forget(&self, scope: &CredentialScope, credential: &str) {
        self.forget_where(|s, c| s == scope && c == credential)
            .await;
    }

    /// Forgets what is held for every credential `matches` selects (its client was set or
    /// deleted, its tenant deleted, a user disconnected), so a tenant, installation or user
    /// made again under the same name never inherits a token: the entries leave the cache, and
    /// a token call in flight on one is waited for, then its result dropped.
    pub async fn forget_where(&self, matches: impl Fn(&CredentialScope, &str) -> bool) {
        let slots: Vec<Slot> = {
            let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
            let keys: Vec<TokenKey> = slots
                .map
                .keys()
                .filter(|key| matches(&key.scope, &key.credential))
                .cloned()
                .collect();
            keys.iter()
                .filter_map(|key| slots.map.remove(key))
                .map(|(slot, _)| slot)
                .collect()
        };
        for slot in slots {
            *slot.lock().await = TokenState::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(capacity: usize) -> OAuthTokens {
        OAuthTokens {
            capacity,
            ..OAuthTokens::new(Arc::new(EgressSettings::default()))
        }
    }

    fn user(name: &str) -> CredentialScope {
        CredentialScope {
            user: Some(name.to_string()),
            ..CredentialScope::new("acme", "slack")
        }
    }

    fn held(tokens: &OAuthTokens) -> Vec<String> {
        let slots = tokens.slots.lock().expect("slots");
        let mut users: Vec<String> = slots
            .map
            .keys()
            .filter_map(|k| k.scope.user.clone())
            .collect();
        users.sort();
        users
    }

    #[tokio::test]
    async fn the_cache_is_bounded_and_forgets_a_disconnected_user() {
        let tokens = tokens(3);
        // A slot in use is never dropped to make room.
        let busy = tokens.slot(&user("busy"), "slack");
        for n in 0..1000 {
            tokens.slot(&user(&format!("flood-{n}")), "slack");
        }
        assert_eq!(held(&tokens), ["busy", "flood-998", "flood-999"]);
        drop(busy);
        // The least recently used goes first: flood-998 is used again, so flood-999 and
        // busy make room.
        tokens.slot(&user("flood-998"), "slack");
        tokens.slot(&user("a"), "slack");
        tokens.slot(&user("b"), "slack");
        assert_eq!(held(&tokens), ["a", "b", "flood-998"]);
        // Disconnecting a user removes their entry; others stay.
        tokens.forget(&user("a"), "slack").await;
        assert_eq!(held(&tokens), ["b", "flood-998"]);
        tokens.forget_where(|scope, _| scope.tenant == "acme").await;
        assert!(held(&tokens).is_empty());
    }
}
