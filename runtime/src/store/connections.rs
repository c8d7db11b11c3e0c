//! OAuth connections: the tokens a person's consent produced for one credential of an
//! installation (for the tenant, or for one of its users), and the consents under way.
//!
//! A consent starts at a one-time link: its id is kept only as a SHA-256, and taking it removes
//! it. The browser that takes it gets a cookie nonce; the consent under way is then kept under
//! the SHA-256 of its `state` (the state itself is never stored), with its PKCE verifier sealed
//! and the nonce's SHA-256, until ten minutes after `connect`; taking it removes it, so a state
//! works once, and only with the cookie of the browser that started it.
//!
//! Connection tokens are sealed with the tenant's data key and bound to tenant, installation,
//! credential, user and purpose; so is the provider account the consent connected (customer
//! data: listed to the tenant, never in the trail). The status (connected, needs re-consent),
//! scopes, expiry and the token endpoint origin that issued the tokens are kept in clear;
//! tokens never leave the store except to the egress broker.
//!
//! End-user ids are personal data: a per-user connection is filed under the user's keyed
//! reference ([`Store::user_ref`]) and carries the id sealed; a consent offered or under way
//! carries it sealed too, bound to the record's id.

use airlock_host_api::credentials::vault::{ConnectionAad, DataKey, NameAad, Sealed};
use airlock_host_api::credentials::{ConnectionTokens, CredentialType, ProviderAccount, Secret};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use super::keys::DATA_KEY_VERSION;
use super::{Store, StoreError};
use crate::ids::{InstallationId, TenantId, UserId};

pub(super) const CONNECTIONS: &str = "oauth-connections";
pub(super) const PENDING: &str = "oauth-pending";
pub(super) const STARTS: &str = "oauth-starts";
const TOKENS: &str = "tokens";
const VERIFIER: &str = "pkce-verifier";
const ACCOUNT: &str = "provider-account";
/// The domains of sealed user ids: a connection's, a consent's under way, an offered one's.
const USER_KIND: &str = "oauth-user";
const CONSENT_USER_KIND: &str = "oauth-consent-user";
const OFFER_USER_KIND: &str = "oauth-offer-user";

/// Which connection: a credential of an installation, for the tenant or one user.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionKey<'a> {
    pub tenant: &'a TenantId,
    pub installation: &'a InstallationId,
    pub credential: &'a str,
    pub user: Option<&'a UserId>,
}

impl ConnectionKey<'_> {
    /// Where the connection is filed: a user only by their keyed reference.
    fn id(&self, data_key: &DataKey) -> Vec<u8> {
        format!(
            "{}\0{}\0{}\0{}",
            self.tenant,
            self.installation,
            self.credential,
            self.user
                .map_or_else(String::new, |u| user_ref(data_key, u))
        )
        .into_bytes()
    }

    /// The user id sealed for the record filed at [`Self::id`].
    fn seal_user(&self, data_key: &DataKey) -> Option<Sealed> {
        self.user.map(|user| {
            let index = user_ref(data_key, user);
            data_key.seal(
                &name_aad(USER_KIND, self.tenant, self.installation, &index),
                user.as_str().as_bytes(),
            )
        })
    }

    fn aad(&self, purpose: &'static str) -> ConnectionAad<'_> {
        ConnectionAad {
            tenant: self.tenant.as_str(),
            installation: self.installation.as_str(),
            credential: self.credential,
            user: self.user.map_or("", UserId::as_str),
            purpose,
            key_version: DATA_KEY_VERSION,
        }
    }
}

/// A connection's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectionStatus {
    Connected,
    /// The refresh token was refused: the person must connect again.
    NeedsReconsent,
}

#[derive(Serialize, Deserialize)]
struct Record {
    status: ConnectionStatus,
    scopes: Vec<String>,
    connected: u64,
    updated: u64,
    expires_at: Option<u64>,
    refreshable: bool,
    /// Random, new on every write: names the version a refresh replaces.
    revision: u64,
    sealed: Sealed,
    /// The token endpoint origin that issued the tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_origin: Option<String>,
    /// The provider account, sealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    account: Option<Sealed>,
    /// For a per-user connection, the user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<Sealed>,
}

/// The sealed part: the tokens.
#[derive(Serialize, Deserialize)]
struct Tokens {
    access: Option<Zeroizing<String>>,
    refresh: Option<Zeroizing<String>>,
}

/// A connection as listed: never a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionInfo {
    pub credential: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The user's reference, as the audit trail records them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_ref: Option<String>,
    pub status: ConnectionStatus,
    pub scopes: Vec<String>,
    pub connected: u64,
    pub updated: u64,
    /// When the current access token expires (unix seconds), if it does.
    pub expires_at: Option<u64>,
    /// Whether a refresh token is held (the connection renews itself).
    pub refreshable: bool,
    /// Whose account at the provider, where the code exchange named one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<ProviderAccount>,
}

/// A consent under way, between `connect` and the provider's callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingConsent {
    pub tenant: String,
    pub installation: String,
    pub credential: String,
    pub user: Option<String>,
    /// The scopes asked for.
    pub scopes: Vec<String>,
    pub redirect_uri: String,
    /// Unix seconds.
    pub expires: u64,
}

/// A consent under way as stored: its `user` is kept sealed beside it, never in it.
#[derive(Serialize, Deserialize)]
struct PendingRecord {
    consent: PendingConsent,
    verifier: Sealed,
    /// Hex SHA-256 of the cookie nonce of the browser that started the consent.
    #[serde(default)]
    browser: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<Sealed>,
}

/// A consent offered (`connect` returned its start link) as stored: its `user` sealed beside
/// it, as in a [`PendingRecord`].
#[derive(Serialize, Deserialize)]
struct OfferRecord {
    consent: PendingConsent,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<Sealed>,
}

/// What a state found when it was taken.
pub enum TakenState {
    /// Unknown, or already used.
    Unknown,
    Expired(PendingConsent),
    /// The browser coming back does not hold the cookie of the one that started the consent.
    OtherBrowser(PendingConsent),
    Valid(PendingConsent, Zeroizing<String>),
}

/// The key of a state or start id: its SHA-256, so the value itself is never stored.
fn state_key(state: &str) -> Vec<u8> {
    Sha256::digest(state.as_bytes()).to_vec()
}

/// Hex SHA-256 of a browser's cookie nonce.
fn browser_hash(nonce: &str) -> String {
    hex::encode(Sha256::digest(nonce.as_bytes()))
}

/// The keyed reference that stands for `user` (a hash under the tenant's data key): the same
/// for every record of the tenant, and unlinkable to the id once the key is destroyed.
fn user_ref(data_key: &DataKey, user: &UserId) -> String {
    let index = data_key.index(USER_KIND, &[user.as_str()], DATA_KEY_VERSION);
    format!("u-{}", hex::encode(&index[..16]))
}

fn name_aad<'a>(
    kind: &'a str,
    tenant: &'a TenantId,
    installation: &'a InstallationId,
    index: &'a str,
) -> NameAad<'a> {
    NameAad {
        kind,
        tenant: tenant.as_str(),
        installation: installation.as_str(),
        index,
        key_version: DATA_KEY_VERSION,
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt {
        what: what.to_string(),
    }
}

impl Store {
    /// The reference that stands for `user` of `tenant` where a user id must not be stored in
    /// clear (the connections' keys, the audit trail): a keyed hash under the tenant's data key
    /// (`u-` and 32 hex digits), the same while that key lives, meaningless once it is destroyed.
    pub fn user_ref(&self, tenant: &TenantId, user: &UserId) -> Result<String, StoreError> {
        let data_key = self
            .tenant_key(tenant, true)?
            .ok_or_else(|| corrupt("tenant data key"))?;
        Ok(user_ref(&data_key, user))
    }

    /// Files format-1 connections (keyed by the user id in clear) under the user's reference,
    /// with the id sealed, into this store. Their tokens and provider account keep their seal
    /// (bound to the id).
    pub(super) fn migrate_connections(&self, old: &sled::Tree) -> Result<(), StoreError> {
        let tree = self.tree(CONNECTIONS)?;
        let mut keys = super::keys::KeyCache::new(self);
        for entry in old.iter() {
            let (id, bytes) = entry?;
            let id = std::str::from_utf8(&id).map_err(|_| corrupt("OAuth connection"))?;
            let parts: Vec<&str> = id.splitn(4, '\0').collect();
            let [tenant, installation, credential, user] = parts[..] else {
                return Err(corrupt("OAuth connection"));
            };
            let bad = |_| corrupt("OAuth connection");
            let (tenant, installation): (TenantId, InstallationId) = (
                tenant.parse().map_err(bad)?,
                installation.parse().map_err(bad)?,
            );
            let user: Option<UserId> = match user {
                "" => None,
                user => Some(user.parse().map_err(|_| corrupt("OAuth connection"))?),
            };
            let key = ConnectionKey {
                tenant: &tenant,
                installation: &installation,
                credential,
                user: user.as_ref(),
            };
            let data_key = keys.get(&tenant)?;
            let record = Record {
                user: key.seal_user(data_key),
                ..decode(&bytes)?
            };
            let bytes = serde_json::to_vec(&record).map_err(|_| corrupt("OAuth connection"))?;
            tree.insert(key.id(data_key), bytes)?;
        }
        Ok(())
    }

    /// Seals the user of format-1 consents under way (kept in clear) into this store.
    pub(super) fn migrate_consents(&self, old: &sled::Tree) -> Result<(), StoreError> {
        let tree = self.tree(PENDING)?;
        let mut keys = super::keys::KeyCache::new(self);
        for entry in old.iter() {
            let (id, bytes) = entry?;
            let mut record: PendingRecord =
                serde_json::from_slice(&bytes).map_err(|_| corrupt("OAuth consent"))?;
            let (tenant, ..) = parse_ids(&record.consent)?;
            record.user =
                seal_user_of(keys.get(&tenant)?, CONSENT_USER_KIND, &record.consent, &id)?;
            record.consent.user = None;
            let bytes = serde_json::to_vec(&record).map_err(|_| corrupt("OAuth consent"))?;
            tree.insert(id, bytes)?;
        }
        Ok(())
    }

    /// Seals the user of format-1 offered consents (kept whole, in clear) into this store.
    pub(super) fn migrate_offers(&self, old: &sled::Tree) -> Result<(), StoreError> {
        let tree = self.tree(STARTS)?;
        let mut keys = super::keys::KeyCache::new(self);
        for entry in old.iter() {
            let (id, bytes) = entry?;
            let consent: PendingConsent =
                serde_json::from_slice(&bytes).map_err(|_| corrupt("OAuth consent"))?;
            let (tenant, ..) = parse_ids(&consent)?;
            let record = OfferRecord {
                user: seal_user_of(keys.get(&tenant)?, OFFER_USER_KIND, &consent, &id)?,
                consent: PendingConsent {
                    user: None,
                    ..consent
                },
            };
            let bytes = serde_json::to_vec(&record).map_err(|_| corrupt("OAuth consent"))?;
            tree.insert(id, bytes)?;
        }
        Ok(())
    }

    /// Keeps `consent` to be started once, by the browser that opens the link with `id`.
    pub fn offer_consent(&self, id: &str, consent: &PendingConsent) -> Result<(), StoreError> {
        let (tenant, ..) = parse_ids(consent)?;
        let data_key = self
            .tenant_key(&tenant, true)?
            .ok_or_else(|| corrupt("tenant data key"))?;
        let id = state_key(id);
        let record = OfferRecord {
            user: seal_user_of(&data_key, OFFER_USER_KIND, consent, &id)?,
            consent: PendingConsent {
                user: None,
                ..consent.clone()
            },
        };
        let bytes = serde_json::to_vec(&record).map_err(|_| corrupt("OAuth consent"))?;
        self.tree(STARTS)?.insert(id, bytes)?;
        self.db.flush()?;
        Ok(())
    }

    /// Takes the consent offered under `id`, removed whatever it holds; `None` if unknown or
    /// already taken. The caller checks its expiry.
    pub fn take_offered_consent(&self, id: &str) -> Result<Option<PendingConsent>, StoreError> {
        let id = state_key(id);
        let Some(bytes) = self.tree(STARTS)?.remove(&id)? else {
            return Ok(None);
        };
        self.db.flush()?;
        let record: OfferRecord =
            serde_json::from_slice(&bytes).map_err(|_| corrupt("OAuth consent"))?;
        let (tenant, ..) = parse_ids(&record.consent)?;
        let data_key = self
            .tenant_key(&tenant, false)?
            .ok_or_else(|| corrupt("tenant data key"))?;
        let consent = open_user_of(
            &data_key,
            OFFER_USER_KIND,
            record.consent,
            &id,
            record.user.as_ref(),
        )?;
        Ok(Some(consent))
    }

    /// Keeps a consent under way under `state`, its PKCE `verifier` sealed, for the browser
    /// holding the cookie `nonce`.
    pub fn begin_consent(
        &self,
        key: ConnectionKey<'_>,
        consent: PendingConsent,
        state: &str,
        verifier: &str,
        nonce: &str,
    ) -> Result<(), StoreError> {
        let data_key = self
            .tenant_key(key.tenant, true)?
            .ok_or_else(|| corrupt("tenant data key"))?;
        let id = state_key(state);
        let record = PendingRecord {
            verifier: data_key.seal(&key.aad(VERIFIER), verifier.as_bytes()),
            browser: browser_hash(nonce),
            user: seal_user_of(&data_key, CONSENT_USER_KIND, &consent, &id)?,
            consent: PendingConsent {
                user: None,
                ..consent
            },
        };
        let bytes = serde_json::to_vec(&record).map_err(|_| corrupt("OAuth consent"))?;
        self.tree(PENDING)?.insert(id, bytes)?;
        self.db.flush()?;
        Ok(())
    }

    /// Takes the consent under way for `state`, for the browser that came back with `cookie`
    /// (its nonce): removed whatever it holds, so no state is used twice, not even after a
    /// refusal. Whatever it found, the consent comes back whole (its user opened).
    pub fn take_consent(
        &self,
        state: &str,
        cookie: Option<&str>,
        now: u64,
    ) -> Result<TakenState, StoreError> {
        let id = state_key(state);
        let Some(bytes) = self.tree(PENDING)?.remove(&id)? else {
            return Ok(TakenState::Unknown);
        };
        self.db.flush()?;
        let record: PendingRecord =
            serde_json::from_slice(&bytes).map_err(|_| corrupt("OAuth consent"))?;
        let (tenant, ..) = parse_ids(&record.consent)?;
        let data_key = self
            .tenant_key(&tenant, false)?
            .ok_or_else(|| corrupt("tenant data key"))?;
        let consent = open_user_of(
            &data_key,
            CONSENT_USER_KIND,
            record.consent,
            &id,
            record.user.as_ref(),
        )?;
        if now >= consent.expires {
            return Ok(TakenState::Expired(consent));
        }
        let same_browser = cookie.is_some_and(|nonce| {
            let hash = browser_hash(nonce);
            !record.browser.is_empty()
                && bool::from(hash.as_bytes().ct_eq(record.browser.as_bytes()))
        });
        if !same_browser {
            return Ok(TakenState::OtherBrowser(consent));
        }
        let (tenant, installation, user) = parse_ids(&consent)?;
        let key = ConnectionKey {
            tenant: &tenant,
            installation: &installation,
            credential: &consent.credential,
            user: user.as_ref(),
        };
        let verifier = data_key
            .open(&key.aad(VERIFIER), &record.verifier)
            .map_err(|_| StoreError::Decrypt {
                what: "PKCE verifier".into(),
            })?;
        let verifier =
            String::from_utf8(verifier.to_vec()).map_err(|_| corrupt("PKCE verifier"))?;
        Ok(TakenState::Valid(consent, Zeroizing::new(verifier)))
    }

    /// Stores the tokens of a new connection (a consent just made), connected as of `now`.
    pub fn put_connection(
        &self,
        key: ConnectionKey<'_>,
        tokens: &ConnectionTokens,
        now: u64,
    ) -> Result<(), StoreError> {
        let data_key = self
            .tenant_key(key.tenant, true)?
            .ok_or_else(|| corrupt("tenant data key"))?;
        let seal = sealer(key, &data_key, tokens)?;
        self.update_record(&key.id(&data_key), |previous| {
            Ok(Some(seal(previous, now)?))
        })?;
        Ok(())
    }

    /// Stores refreshed tokens in place of revision `replaces`; false (nothing written) when
    /// the connection was removed or replaced meanwhile, so a refresh that was in flight never
    /// resurrects a removed connection or overwrites a newer consent.
    pub fn replace_connection(
        &self,
        key: ConnectionKey<'_>,
        replaces: u64,
        tokens: &ConnectionTokens,
        now: u64,
    ) -> Result<bool, StoreError> {
        let data_key = self
            .tenant_key(key.tenant, true)?
            .ok_or_else(|| corrupt("tenant data key"))?;
        let seal = sealer(key, &data_key, tokens)?;
        self.update_record(&key.id(&data_key), |previous| match previous {
            Some(p) if p.revision == replaces => Ok(Some(seal(Some(p), now)?)),
            _ => Ok(None),
        })
    }

    /// Writes what `change` makes of the current record; `None` writes nothing (false). The
    /// write is a compare-and-swap, retried when another write came between.
    fn update_record(
        &self,
        id: &[u8],
        change: impl Fn(Option<Record>) -> Result<Option<Record>, StoreError>,
    ) -> Result<bool, StoreError> {
        let tree = self.tree(CONNECTIONS)?;
        loop {
            let current = tree.get(id)?;
            let Some(next) = change(current.as_deref().map(decode).transpose()?)? else {
                return Ok(false);
            };
            let bytes = serde_json::to_vec(&next).map_err(|_| corrupt("OAuth connection"))?;
            if tree.compare_and_swap(id, current, Some(bytes))?.is_ok() {
                self.db.flush()?;
                return Ok(true);
            }
        }
    }

    /// The connection's tokens and status, opened; `None` if there is none.
    pub fn connection(
        &self,
        key: ConnectionKey<'_>,
    ) -> Result<Option<ConnectionTokens>, StoreError> {
        let Some(data_key) = self.tenant_key(key.tenant, false)? else {
            return Ok(None);
        };
        let Some(bytes) = self.tree(CONNECTIONS)?.get(key.id(&data_key))? else {
            return Ok(None);
        };
        let record = decode(&bytes)?;
        let plain = data_key
            .open(&key.aad(TOKENS), &record.sealed)
            .map_err(|_| StoreError::Decrypt {
                what: format!("OAuth connection of credential `{}`", key.credential),
            })?;
        let tokens: Tokens = serde_json::from_slice(&plain).map_err(|_| corrupt("tokens"))?;
        let access = tokens
            .access
            .map(|a| Secret::new(CredentialType::Bearer, a.to_string()))
            .transpose()
            .map_err(|_| corrupt("stored access token"))?;
        Ok(Some(ConnectionTokens {
            access,
            expires_at: record.expires_at,
            refresh: tokens.refresh,
            account: open_account(&data_key, key, record.account.as_ref())?,
            scopes: record.scopes,
            needs_reauth: record.status == ConnectionStatus::NeedsReconsent,
            revision: record.revision,
            token_origin: record.token_origin,
        }))
    }

    /// Marks revision `replaces` of the connection as needing re-consent; false if the
    /// connection is gone or was replaced meanwhile (a new consent is not marked for the old
    /// one's refused token).
    pub fn mark_needs_reconsent(
        &self,
        key: ConnectionKey<'_>,
        replaces: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        let Some(data_key) = self.tenant_key(key.tenant, false)? else {
            return Ok(false);
        };
        self.update_record(&key.id(&data_key), |previous| {
            Ok(previous.filter(|p| p.revision == replaces).map(|p| Record {
                status: ConnectionStatus::NeedsReconsent,
                updated: now,
                revision: rand::random(),
                ..p
            }))
        })
    }

    /// The installation's connections, for every credential and user, by credential and user.
    pub fn connections_of(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
    ) -> Result<Vec<ConnectionInfo>, StoreError> {
        let prefix = format!("{tenant}\0{installation}\0").into_bytes();
        let Some(data_key) = self.tenant_key(tenant, false)? else {
            return Ok(Vec::new());
        };
        let mut listed = self
            .tree(CONNECTIONS)?
            .scan_prefix(&prefix)
            .map(|entry| {
                let (key, bytes) = entry?;
                let rest = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                let (credential, user_ref) = rest.split_once('\0').unwrap_or((&rest, ""));
                let record = decode(&bytes)?;
                let user: Option<UserId> = match &record.user {
                    None if user_ref.is_empty() => None,
                    None => return Err(corrupt("OAuth connection")),
                    Some(sealed) => {
                        let aad = name_aad(USER_KIND, tenant, installation, user_ref);
                        let plain =
                            data_key
                                .open(&aad, sealed)
                                .map_err(|_| StoreError::Decrypt {
                                    what: format!("user of a connection of `{credential}`"),
                                })?;
                        let user = std::str::from_utf8(&plain)
                            .ok()
                            .and_then(|u| u.parse().ok())
                            .ok_or_else(|| corrupt("user"))?;
                        Some(user)
                    }
                };
                let key = ConnectionKey {
                    tenant,
                    installation,
                    credential,
                    user: user.as_ref(),
                };
                let account = open_account(&data_key, key, record.account.as_ref())?;
                Ok(ConnectionInfo {
                    credential: credential.to_string(),
                    user_ref: user.as_ref().map(|_| user_ref.to_string()),
                    user: user.map(|u| u.to_string()),
                    status: record.status,
                    scopes: record.scopes,
                    connected: record.connected,
                    updated: record.updated,
                    expires_at: record.expires_at,
                    refreshable: record.refreshable,
                    account,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        // Filed by the users' references, which sort by nothing anyone can read.
        listed.sort_by(|a, b| (&a.credential, &a.user).cmp(&(&b.credential, &b.user)));
        Ok(listed)
    }

    /// Removes the connection; false if there was none.
    pub fn delete_connection(&self, key: ConnectionKey<'_>) -> Result<bool, StoreError> {
        let Some(data_key) = self.tenant_key(key.tenant, false)? else {
            return Ok(false);
        };
        let removed = self.tree(CONNECTIONS)?.remove(key.id(&data_key))?.is_some();
        self.db.flush()?;
        Ok(removed)
    }

    /// Deletes every connection and consent under way of `tenant`.
    pub(super) fn delete_connections_of(&self, tenant: &TenantId) -> Result<(), StoreError> {
        let connections = self.tree(CONNECTIONS)?;
        for key in connections.scan_prefix(format!("{tenant}\0")).keys() {
            connections.remove(key?)?;
        }
        self.remove_consents(|consent| consent.is_none_or(|c| c.tenant == tenant.as_str()))?;
        Ok(())
    }

    /// Drops consents (offered or under way) whose ten minutes are over; returns how many.
    pub fn purge_consents(&self, now: u64) -> Result<usize, StoreError> {
        self.remove_consents(|consent| consent.is_none_or(|c| c.expires <= now))
    }

    /// Removes the consents, offered or under way, that `remove` selects (`None`: unreadable);
    /// returns how many. Their users stay sealed: only tenant and expiry are looked at.
    fn remove_consents(
        &self,
        remove: impl Fn(Option<&PendingConsent>) -> bool,
    ) -> Result<usize, StoreError> {
        let mut removed = 0;
        for (name, offered) in [(PENDING, false), (STARTS, true)] {
            let tree = self.tree(name)?;
            for entry in tree.iter() {
                let (key, bytes) = entry?;
                let consent = match offered {
                    true => serde_json::from_slice::<OfferRecord>(&bytes)
                        .ok()
                        .map(|r| r.consent),
                    false => serde_json::from_slice::<PendingRecord>(&bytes)
                        .ok()
                        .map(|r| r.consent),
                };
                if remove(consent.as_ref()) && tree.remove(key)?.is_some() {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

/// A function sealing `tokens` into the record that follows `previous`.
fn sealer<'a>(
    key: ConnectionKey<'a>,
    data_key: &'a DataKey,
    tokens: &'a ConnectionTokens,
) -> Result<impl Fn(Option<Record>, u64) -> Result<Record, StoreError> + 'a, StoreError> {
    let sealed = Tokens {
        access: tokens
            .access
            .as_ref()
            .map(|a| Zeroizing::new(a.expose().to_string())),
        refresh: tokens.refresh.clone(),
    };
    let plain = Zeroizing::new(serde_json::to_vec(&sealed).map_err(|_| corrupt("tokens"))?);
    let account = tokens
        .account
        .as_ref()
        .map(|a| serde_json::to_vec(a).map_err(|_| corrupt("provider account")))
        .transpose()?
        .map(|a| data_key.seal(&key.aad(ACCOUNT), &a));
    Ok(move |previous: Option<Record>, now: u64| {
        let connected = match &previous {
            Some(p) if !tokens.needs_reauth && p.status == ConnectionStatus::Connected => {
                p.connected
            }
            _ => now,
        };
        Ok(Record {
            status: if tokens.needs_reauth {
                ConnectionStatus::NeedsReconsent
            } else {
                ConnectionStatus::Connected
            },
            scopes: tokens.scopes.clone(),
            connected,
            updated: now,
            expires_at: tokens.expires_at,
            refreshable: tokens.refresh.is_some(),
            revision: rand::random(),
            sealed: data_key.seal(&key.aad(TOKENS), &plain),
            token_origin: tokens.token_origin.clone(),
            account: account.clone(),
            user: key.seal_user(data_key),
        })
    })
}

/// The provider account sealed in a connection record, opened.
fn open_account(
    data_key: &DataKey,
    key: ConnectionKey<'_>,
    sealed: Option<&Sealed>,
) -> Result<Option<ProviderAccount>, StoreError> {
    let Some(sealed) = sealed else {
        return Ok(None);
    };
    let plain = data_key
        .open(&key.aad(ACCOUNT), sealed)
        .map_err(|_| StoreError::Decrypt {
            what: format!("provider account of credential `{}`", key.credential),
        })?;
    serde_json::from_slice(&plain)
        .map(Some)
        .map_err(|_| corrupt("provider account"))
}

/// The typed ids a stored consent names.
fn parse_ids(
    consent: &PendingConsent,
) -> Result<(TenantId, InstallationId, Option<UserId>), StoreError> {
    let bad = |_| corrupt("OAuth consent");
    Ok((
        consent.tenant.parse().map_err(bad)?,
        consent.installation.parse().map_err(bad)?,
        consent
            .user
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|_| corrupt("OAuth consent"))?,
    ))
}

/// The user of `consent`, sealed for the record filed at `id` in the domain `kind` (a consent
/// offered or under way).
fn seal_user_of(
    data_key: &DataKey,
    kind: &str,
    consent: &PendingConsent,
    id: &[u8],
) -> Result<Option<Sealed>, StoreError> {
    let (tenant, installation, user) = parse_ids(consent)?;
    let Some(user) = user else {
        return Ok(None);
    };
    let index = hex::encode(id);
    let aad = name_aad(kind, &tenant, &installation, &index);
    Ok(Some(data_key.seal(&aad, user.as_str().as_bytes())))
}

/// `consent` as stored at `id` in the domain `kind`, with its user opened from `sealed`.
fn open_user_of(
    data_key: &DataKey,
    kind: &str,
    mut consent: PendingConsent,
    id: &[u8],
    sealed: Option<&Sealed>,
) -> Result<PendingConsent, StoreError> {
    // A user in clear is no consent this store wrote.
    if consent.user.is_some() {
        return Err(corrupt("OAuth consent"));
    }
    let Some(sealed) = sealed else {
        return Ok(consent);
    };
    let (tenant, installation, _) = parse_ids(&consent)?;
    let index = hex::encode(id);
    let aad = name_aad(kind, &tenant, &installation, &index);
    let plain = data_key
        .open(&aad, sealed)
        .map_err(|_| StoreError::Decrypt {
            what: "user of an OAuth consent".into(),
        })?;
    let user: UserId = std::str::from_utf8(&plain)
        .ok()
        .and_then(|u| u.parse().ok())
        .ok_or_else(|| corrupt("OAuth consent"))?;
    consent.user = Some(user.to_string());
    Ok(consent)
}

fn decode(bytes: &[u8]) -> Result<Record, StoreError> {
    serde_json::from_slice(bytes).map_err(|_| corrupt("OAuth connection"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::{holds, raw_bytes};

    /// Where `key`'s connection is filed.
    fn id(store: &Store, key: ConnectionKey<'_>) -> Vec<u8> {
        key.id(&store
            .tenant_key(key.tenant, true)
            .expect("key")
            .expect("created"))
    }

    #[test]
    fn user_ids_are_sealed_and_listed_with_their_reference() {
        const CANARY: &str = "jane.canary-5c2e@acme.example";
        let dir = tempfile::TempDir::new().expect("temp");
        let store = Store::open(dir.path(), None).expect("store");
        let tenant: TenantId = "acme".parse().expect("tenant");
        store.create_tenant(&tenant).expect("tenant");
        let installation: InstallationId = "slack".parse().expect("installation");
        let jane: UserId = CANARY.parse().expect("user");
        let key = ConnectionKey {
            tenant: &tenant,
            installation: &installation,
            credential: "slack",
            user: Some(&jane),
        };
        let consent = PendingConsent {
            tenant: "acme".into(),
            installation: "slack".into(),
            credential: "slack".into(),
            user: Some(CANARY.into()),
            scopes: vec![],
            redirect_uri: "https://airlock.example/v1/oauth/callback".into(),
            expires: 700,
        };
        store
            .begin_consent(key, consent.clone(), "state-1", "verifier-1", "nonce-1")
            .expect("begin");
        store
            .begin_consent(key, consent.clone(), "state-2", "verifier-2", "nonce-2")
            .expect("begin");
        store.offer_consent("start-1", &consent).expect("offer");
        store.offer_consent("start-2", &consent).expect("offer");
        let tokens = ConnectionTokens {
            access: Some(Secret::new(CredentialType::Bearer, "xoxb-jane".into()).expect("token")),
            ..ConnectionTokens::default()
        };
        store.put_connection(key, &tokens, 100).expect("put");
        store.db().flush().expect("flush");
        let raw = raw_bytes(dir.path());
        assert!(!holds(&raw, CANARY.as_bytes()), "the user id is on disk");

        // Listing opens the id and gives its reference, the one the audit trail records.
        let listed = store.connections_of(&tenant, &installation).expect("list");
        assert_eq!(listed[0].user.as_deref(), Some(CANARY));
        let reference = store.user_ref(&tenant, &jane).expect("reference");
        assert!(
            reference.starts_with("u-") && reference.len() == 34,
            "{reference}"
        );
        assert_eq!(listed[0].user_ref.as_deref(), Some(reference.as_str()));
        assert_ne!(
            store
                .user_ref(&tenant, &"bob".parse().expect("user"))
                .expect("reference"),
            reference
        );
        // A consent comes back whole, offered or under way, whatever its state found.
        assert_eq!(
            store.take_offered_consent("start-1").expect("take"),
            Some(consent.clone())
        );
        match store
            .take_consent("state-1", Some("nonce-1"), 100)
            .expect("take")
        {
            TakenState::Valid(taken, _) => assert_eq!(taken, consent),
            _ => panic!("state-1 is valid"),
        }
        for (state, cookie, now) in [("state-4", "someone-elses", 100), ("state-5", "nonce", 700)] {
            store
                .begin_consent(key, consent.clone(), state, "v", "nonce")
                .expect("begin");
            match store.take_consent(state, Some(cookie), now).expect("take") {
                TakenState::OtherBrowser(taken) | TakenState::Expired(taken) => {
                    assert_eq!(taken, consent);
                }
                _ => panic!("{state} is refused"),
            }
        }
        // An offered consent's sealed user moved to another offer does not open there.
        store.offer_consent("start-3", &consent).expect("offer");
        let starts = store.tree(STARTS).expect("tree");
        let mut third: serde_json::Value = serde_json::from_slice(
            &starts
                .get(state_key("start-3"))
                .expect("get")
                .expect("offered"),
        )
        .expect("json");
        let second: serde_json::Value = serde_json::from_slice(
            &starts
                .get(state_key("start-2"))
                .expect("get")
                .expect("offered"),
        )
        .expect("json");
        third["user"] = second["user"].clone();
        starts
            .insert(
                state_key("start-3"),
                serde_json::to_vec(&third).expect("json"),
            )
            .expect("swap");
        assert!(matches!(
            store.take_offered_consent("start-3"),
            Err(StoreError::Decrypt { .. })
        ));
        // A consent's sealed user moved to another consent does not open there.
        let pending = store.tree(PENDING).expect("tree");
        let mut other: serde_json::Value = serde_json::from_slice(
            &pending
                .get(state_key("state-2"))
                .expect("get")
                .expect("pending"),
        )
        .expect("json");
        store
            .begin_consent(key, consent.clone(), "state-3", "verifier-3", "nonce-3")
            .expect("begin");
        let third: serde_json::Value = serde_json::from_slice(
            &pending
                .get(state_key("state-3"))
                .expect("get")
                .expect("pending"),
        )
        .expect("json");
        other["verifier"] = third["verifier"].clone();
        other["browser"] = third["browser"].clone();
        pending
            .insert(
                state_key("state-3"),
                serde_json::to_vec(&other).expect("json"),
            )
            .expect("swap");
        assert!(matches!(
            store.take_consent("state-3", Some("nonce-3"), 100),
            Err(StoreError::Decrypt { .. })
        ));
        // Nor does a connection's sealed user under another user's reference.
        let bob: UserId = "bob".parse().expect("user");
        let bobs = ConnectionKey {
            user: Some(&bob),
            ..key
        };
        store.put_connection(bobs, &tokens, 100).expect("put");
        let tree = store.tree(CONNECTIONS).expect("tree");
        let mut record =
            decode(&tree.get(id(&store, bobs)).expect("get").expect("bob's")).expect("record");
        record.user = decode(&tree.get(id(&store, key)).expect("get").expect("jane's"))
            .expect("record")
            .user;
        tree.insert(id(&store, bobs), serde_json::to_vec(&record).expect("json"))
            .expect("swap");
        assert!(matches!(
            store.connections_of(&tenant, &installation),
            Err(StoreError::Decrypt { .. })
        ));
    }

    #[test]
    fn a_consent_is_taken_once_expires_and_its_tokens_open_only_in_place() {
        let dir = tempfile::TempDir::new().expect("temp");
        let store = Store::open(dir.path(), None).expect("store");
        let tenant: TenantId = "acme".parse().expect("tenant");
        store.create_tenant(&tenant).expect("tenant");
        let installation: InstallationId = "slack".parse().expect("installation");
        let alice: UserId = "alice".parse().expect("user");
        let key = ConnectionKey {
            tenant: &tenant,
            installation: &installation,
            credential: "slack",
            user: Some(&alice),
        };
        let consent = |expires| PendingConsent {
            tenant: "acme".into(),
            installation: "slack".into(),
            credential: "slack".into(),
            user: Some("alice".into()),
            scopes: vec!["chat:write".into()],
            redirect_uri: "https://airlock.example/v1/oauth/callback".into(),
            expires,
        };
        store
            .begin_consent(key, consent(700), "state-1", "verifier-1", "nonce-1")
            .expect("begin");
        store
            .begin_consent(key, consent(700), "state-2", "verifier-2", "nonce-2")
            .expect("begin");
        match store
            .take_consent("state-1", Some("nonce-1"), 100)
            .expect("take")
        {
            TakenState::Valid(c, verifier) => {
                assert_eq!(c, consent(700));
                assert_eq!(verifier.as_str(), "verifier-1");
            }
            _ => panic!("state-1 is valid"),
        }
        assert!(matches!(
            store.take_consent("state-1", Some("nonce-1"), 100),
            Ok(TakenState::Unknown)
        ));
        assert!(matches!(
            store.take_consent("state-2", Some("nonce-2"), 700),
            Ok(TakenState::Expired(_))
        ));
        store
            .begin_consent(key, consent(50), "state-3", "v", "n")
            .expect("begin");
        assert_eq!(store.purge_consents(100).expect("purge"), 1);
        // The state itself is not stored, only its hash (nor the nonce).
        let raw: Vec<u8> = store
            .tree(PENDING)
            .expect("tree")
            .iter()
            .flat_map(|e| {
                let (k, v) = e.expect("entry");
                [k.to_vec(), v.to_vec()].concat()
            })
            .collect();
        assert!(!String::from_utf8_lossy(&raw).contains("state-"));
        assert!(!String::from_utf8_lossy(&raw).contains("nonce-"));

        let tokens = ConnectionTokens {
            access: Some(Secret::new(CredentialType::Bearer, "xoxb-alice".into()).expect("token")),
            refresh: Some(Zeroizing::new("xoxe-alice".into())),
            expires_at: Some(1000),
            scopes: vec!["chat:write".into()],
            needs_reauth: false,
            revision: 0,
            token_origin: Some("https://slack.com".into()),
            account: None,
        };
        store.put_connection(key, &tokens, 100).expect("put");
        let read = store.connection(key).expect("read").expect("connected");
        assert_eq!(
            read.access.map(|a| a.expose().to_string()).as_deref(),
            Some("xoxb-alice")
        );
        // Bob has none, and Alice's record copied under Bob's name does not open.
        let bob: UserId = "bob".parse().expect("user");
        let bobs = ConnectionKey {
            user: Some(&bob),
            ..key
        };
        assert!(store.connection(bobs).expect("read").is_none());
        let tree = store.tree(CONNECTIONS).expect("tree");
        let bytes = tree.get(id(&store, key)).expect("get").expect("record");
        tree.insert(id(&store, bobs), bytes).expect("copy");
        assert!(matches!(
            store.connection(bobs),
            Err(StoreError::Decrypt { .. })
        ));
        tree.remove(id(&store, bobs)).expect("remove");

        let revision = store.connection(key).expect("read").expect("kept").revision;
        assert!(
            !store
                .mark_needs_reconsent(key, revision ^ 1, 200)
                .expect("stale")
        );
        assert!(
            store
                .mark_needs_reconsent(key, revision, 200)
                .expect("mark")
        );
        let listed = store.connections_of(&tenant, &installation).expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].status, ConnectionStatus::NeedsReconsent);
        assert_eq!(listed[0].user.as_deref(), Some("alice"));
        assert!(store.delete_tenant(&tenant).expect("deleted"));
        assert!(store.tree(CONNECTIONS).expect("tree").is_empty());
    }

    #[test]
    fn a_consent_starts_once_and_comes_back_only_to_the_browser_that_started_it() {
        let dir = tempfile::TempDir::new().expect("temp");
        let store = Store::open(dir.path(), None).expect("store");
        let tenant: TenantId = "acme".parse().expect("tenant");
        store.create_tenant(&tenant).expect("tenant");
        let installation: InstallationId = "slack".parse().expect("installation");
        let key = ConnectionKey {
            tenant: &tenant,
            installation: &installation,
            credential: "slack",
            user: None,
        };
        let consent = PendingConsent {
            tenant: "acme".into(),
            installation: "slack".into(),
            credential: "slack".into(),
            user: None,
            scopes: vec!["chat:write".into()],
            redirect_uri: "https://airlock.example/v1/oauth/callback".into(),
            expires: 700,
        };
        // The link works once, and its id is not stored.
        store.offer_consent("start-1", &consent).expect("offer");
        let raw: Vec<u8> = store
            .tree(STARTS)
            .expect("tree")
            .iter()
            .flat_map(|e| e.expect("entry").0.to_vec())
            .collect();
        assert!(!String::from_utf8_lossy(&raw).contains("start-1"));
        assert_eq!(
            store.take_offered_consent("start-1").expect("take"),
            Some(consent.clone())
        );
        assert_eq!(store.take_offered_consent("start-1").expect("take"), None);
        // Without the starting browser's cookie, or with another one: refused, and the state
        // is spent all the same.
        for (n, cookie) in [None, Some("someone-elses"), Some("")]
            .into_iter()
            .enumerate()
        {
            let state = format!("state-{n}");
            store
                .begin_consent(key, consent.clone(), &state, "v", "nonce")
                .expect("begin");
            assert!(matches!(
                store.take_consent(&state, cookie, 100),
                Ok(TakenState::OtherBrowser(_))
            ));
            assert!(matches!(
                store.take_consent(&state, Some("nonce"), 100),
                Ok(TakenState::Unknown)
            ));
        }
        // Offered and started consents go with their tenant.
        store.offer_consent("start-2", &consent).expect("offer");
        store
            .begin_consent(key, consent.clone(), "state-9", "v", "nonce")
            .expect("begin");
        assert_eq!(store.purge_consents(100).expect("purge"), 0);
        assert_eq!(store.purge_consents(700).expect("purge"), 2);

        // The provider account is sealed in place and listed.
        let account = ProviderAccount {
            id: "U024BE7LH".into(),
            workspace: Some("T9TK3CUKW".into()),
            source: airlock_host_api::credentials::AccountSource::TokenResponse,
        };
        let tokens = ConnectionTokens {
            access: Some(Secret::new(CredentialType::Bearer, "xoxb-1".into()).expect("token")),
            account: Some(account.clone()),
            token_origin: Some("https://slack.com".into()),
            ..ConnectionTokens::default()
        };
        store.put_connection(key, &tokens, 100).expect("put");
        let raw = store
            .tree(CONNECTIONS)
            .expect("tree")
            .get(id(&store, key))
            .expect("get")
            .expect("record");
        assert!(!String::from_utf8_lossy(&raw).contains("U024BE7LH"));
        let listed = store.connections_of(&tenant, &installation).expect("list");
        assert_eq!(listed[0].account.as_ref(), Some(&account));
        let read = store.connection(key).expect("read").expect("connected");
        assert_eq!(read.token_origin.as_deref(), Some("https://slack.com"));
        // A refresh keeps the account it read.
        assert!(
            store
                .replace_connection(key, read.revision, &read, 200)
                .expect("refresh")
        );
        let listed = store.connections_of(&tenant, &installation).expect("list");
        assert_eq!(listed[0].account.as_ref(), Some(&account));
    }

    #[test]
    fn a_refresh_replaces_only_the_connection_it_read() {
        let dir = tempfile::TempDir::new().expect("temp");
        let store = Store::open(dir.path(), None).expect("store");
        let tenant: TenantId = "acme".parse().expect("tenant");
        store.create_tenant(&tenant).expect("tenant");
        let installation: InstallationId = "slack".parse().expect("installation");
        let key = ConnectionKey {
            tenant: &tenant,
            installation: &installation,
            credential: "slack",
            user: None,
        };
        let tokens = |access: &str| ConnectionTokens {
            access: Some(Secret::new(CredentialType::Bearer, access.into()).expect("token")),
            refresh: Some(Zeroizing::new(format!("refresh-{access}"))),
            ..ConnectionTokens::default()
        };
        let access = |store: &Store| {
            store
                .connection(key)
                .expect("read")
                .and_then(|t| t.access)
                .map(|a| a.expose().to_string())
        };
        store
            .put_connection(key, &tokens("first"), 10)
            .expect("put");
        let read = store.connection(key).expect("read").expect("connected");
        assert!(
            store
                .replace_connection(key, read.revision, &tokens("refreshed"), 20)
                .expect("refresh")
        );
        assert_eq!(access(&store).as_deref(), Some("refreshed"));
        // A second refresh from the same read lost the race: the first one's tokens stay.
        assert!(
            !store
                .replace_connection(key, read.revision, &tokens("stale"), 30)
                .expect("refresh")
        );
        assert_eq!(access(&store).as_deref(), Some("refreshed"));
        // A refresh in flight while the connection is removed does not bring it back.
        let read = store.connection(key).expect("read").expect("connected");
        assert!(store.delete_connection(key).expect("delete"));
        assert!(
            !store
                .replace_connection(key, read.revision, &tokens("zombie"), 40)
                .expect("refresh")
        );
        assert!(
            !store
                .mark_needs_reconsent(key, read.revision, 40)
                .expect("mark")
        );
        assert_eq!(access(&store), None);
    }
}
