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
//!
//! The records, their sealing and opening and what is listed from them are shared with the
//! PostgreSQL store, which keeps the same records under the same keys (as columns).

use airlock_host_api::credentials::vault::{ConnectionAad, DataKey, NameAad, Sealed};
use airlock_host_api::credentials::{ConnectionTokens, CredentialType, ProviderAccount, Secret};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::keys::{DATA_KEY_VERSION, TenantKeys};
use crate::{Store, StoreError};

pub(crate) mod consents;
#[cfg(test)]
mod tests;

use crate::records::*;
use crate::traits::*;
use airlock_runtime::ids::{InstallationId, TenantId, UserId};

pub(crate) const CONNECTIONS: &str = "oauth-connections";
pub(crate) const PENDING: &str = "oauth-pending";
pub(crate) const STARTS: &str = "oauth-starts";
const TOKENS: &str = "tokens";
const VERIFIER: &str = "pkce-verifier";
const ACCOUNT: &str = "provider-account";
/// The domains of sealed user ids: a connection's, a consent's under way, an offered one's.
const USER_KIND: &str = "oauth-user";
const CONSENT_USER_KIND: &str = "oauth-consent-user";
const OFFER_USER_KIND: &str = "oauth-offer-user";

impl ConnectionKey<'_> {
    /// Where the connection is filed: a user only by their keyed reference.
    pub(crate) fn id(&self, data_key: &DataKey) -> Vec<u8> {
        format!(
            "{}\0{}\0{}\0{}",
            self.tenant,
            self.installation,
            self.credential,
            self.filed_user(data_key)
        )
        .into_bytes()
    }

    /// The user part of where the connection is filed: the user's keyed reference, empty for
    /// the tenant's own connection.
    pub(crate) fn filed_user(&self, data_key: &DataKey) -> String {
        self.user
            .map_or_else(String::new, |u| user_ref(data_key, u))
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

/// A connection as stored, by either backend.
#[derive(Serialize, Deserialize)]
pub(crate) struct Record {
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

impl Record {
    /// Names this version: a refresh replaces only the revision it read.
    pub(crate) fn revision(&self) -> u64 {
        self.revision
    }
}

/// The sealed part: the tokens.
#[derive(Serialize, Deserialize)]
struct Tokens {
    access: Option<Zeroizing<String>>,
    refresh: Option<Zeroizing<String>>,
}

/// The keyed reference that stands for `user` (a hash under the tenant's data key): the same
/// for every record of the tenant, and unlinkable to the id once the key is destroyed.
pub(crate) fn user_ref(data_key: &DataKey, user: &UserId) -> String {
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
    /// Files format-1 connections (keyed by the user id in clear) under the user's reference,
    /// with the id sealed, into this store. Their tokens and provider account keep their seal
    /// (bound to the id).
    pub(crate) fn migrate_connections(&self, old: &sled::Tree) -> Result<(), StoreError> {
        let tree = self.tree(CONNECTIONS)?;
        let mut keys = crate::keys::KeyCache::new(self);
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
            tree.insert(key.id(data_key), encode(&record)?)?;
        }
        Ok(())
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
            if tree
                .compare_and_swap(id, current, Some(encode(&next)?))?
                .is_ok()
            {
                self.db()?.flush()?;
                return Ok(true);
            }
        }
    }

    /// Deletes every connection and consent under way of `tenant`.
    pub(crate) fn delete_connections_of(&self, tenant: &TenantId) -> Result<(), StoreError> {
        let connections = self.tree(CONNECTIONS)?;
        for key in connections.scan_prefix(format!("{tenant}\0")).keys() {
            connections.remove(key?)?;
        }
        self.remove_consents(|consent| consent.is_none_or(|c| c.tenant == tenant.as_str()))?;
        Ok(())
    }
}

impl Connections for Store {
    fn user_ref(&self, tenant: &TenantId, user: &UserId) -> Result<String, StoreError> {
        let _pass = self.writing();
        Ok(user_ref(&self.sealing_key(tenant)?, user))
    }

    fn put_connection(
        &self,
        key: ConnectionKey<'_>,
        tokens: &ConnectionTokens,
        now: u64,
    ) -> Result<(), StoreError> {
        let _pass = self.writing();
        let data_key = self.sealing_key(key.tenant)?;
        let seal = sealer(key, &data_key, tokens)?;
        self.update_record(&key.id(&data_key), |previous| {
            Ok(Some(seal(previous, now)?))
        })?;
        Ok(())
    }

    fn replace_connection(
        &self,
        key: ConnectionKey<'_>,
        replaces: u64,
        tokens: &ConnectionTokens,
        now: u64,
    ) -> Result<bool, StoreError> {
        let _pass = self.writing();
        let data_key = self.sealing_key(key.tenant)?;
        let seal = sealer(key, &data_key, tokens)?;
        self.update_record(&key.id(&data_key), |previous| {
            replacing(previous, replaces, &seal, now)
        })
    }

    fn connection(&self, key: ConnectionKey<'_>) -> Result<Option<ConnectionTokens>, StoreError> {
        let Some(data_key) = self.tenant_key(key.tenant, false)? else {
            return Ok(None);
        };
        let Some(bytes) = self.tree(CONNECTIONS)?.get(key.id(&data_key))? else {
            return Ok(None);
        };
        open_tokens(&data_key, key, decode(&bytes)?).map(Some)
    }

    fn mark_needs_reconsent(
        &self,
        key: ConnectionKey<'_>,
        replaces: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        let _pass = self.writing();
        let Some(data_key) = self.tenant_key(key.tenant, false)? else {
            return Ok(false);
        };
        self.update_record(&key.id(&data_key), |previous| {
            Ok(needing_reconsent(previous, replaces, now))
        })
    }

    fn connections_of(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
    ) -> Result<Vec<ConnectionInfo>, StoreError> {
        let prefix = format!("{tenant}\0{installation}\0").into_bytes();
        let Some(data_key) = self.tenant_key(tenant, false)? else {
            return Ok(Vec::new());
        };
        let rows = self.tree(CONNECTIONS)?.scan_prefix(&prefix).map(|entry| {
            let (key, bytes) = entry?;
            let rest = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            let (credential, user_ref) = rest.split_once('\0').unwrap_or((&rest, ""));
            Ok((
                credential.to_string(),
                user_ref.to_string(),
                decode(&bytes)?,
            ))
        });
        listing(&data_key, tenant, installation, rows)
    }

    fn delete_connection(&self, key: ConnectionKey<'_>) -> Result<bool, StoreError> {
        let _pass = self.writing();
        let Some(data_key) = self.tenant_key(key.tenant, false)? else {
            return Ok(false);
        };
        let removed = self.tree(CONNECTIONS)?.remove(key.id(&data_key))?.is_some();
        self.db()?.flush()?;
        Ok(removed)
    }
}

/// A function sealing `tokens` into the record that follows `previous`.
pub(crate) fn sealer<'a>(
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

/// What a replacement of revision `replaces` makes of `previous`: `None` (nothing written)
/// when the connection is gone or was replaced meanwhile.
pub(crate) fn replacing(
    previous: Option<Record>,
    replaces: u64,
    seal: impl Fn(Option<Record>, u64) -> Result<Record, StoreError>,
    now: u64,
) -> Result<Option<Record>, StoreError> {
    match previous {
        Some(p) if p.revision == replaces => Ok(Some(seal(Some(p), now)?)),
        _ => Ok(None),
    }
}

/// `previous` marked as needing re-consent if it is still revision `replaces`.
pub(crate) fn needing_reconsent(
    previous: Option<Record>,
    replaces: u64,
    now: u64,
) -> Option<Record> {
    previous.filter(|p| p.revision == replaces).map(|p| Record {
        status: ConnectionStatus::NeedsReconsent,
        updated: now,
        revision: rand::random(),
        ..p
    })
}

/// The tokens and status of the connection `key`, opened from its record.
pub(crate) fn open_tokens(
    data_key: &DataKey,
    key: ConnectionKey<'_>,
    record: Record,
) -> Result<ConnectionTokens, StoreError> {
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
    Ok(ConnectionTokens {
        access,
        expires_at: record.expires_at,
        refresh: tokens.refresh,
        account: open_account(data_key, key, record.account.as_ref())?,
        scopes: record.scopes,
        needs_reauth: record.status == ConnectionStatus::NeedsReconsent,
        revision: record.revision,
        token_origin: record.token_origin,
    })
}

/// The installation's connections as listed, from its records with the credential and filed
/// user ([`ConnectionKey::filed_user`]) each is stored under: users opened, by credential and
/// user.
pub(crate) fn listing(
    data_key: &DataKey,
    tenant: &TenantId,
    installation: &InstallationId,
    rows: impl Iterator<Item = Result<(String, String, Record), StoreError>>,
) -> Result<Vec<ConnectionInfo>, StoreError> {
    let mut listed = rows
        .map(|row| {
            let (credential, user_ref, record) = row?;
            let user: Option<UserId> = match &record.user {
                None if user_ref.is_empty() => None,
                None => return Err(corrupt("OAuth connection")),
                Some(sealed) => {
                    let aad = name_aad(USER_KIND, tenant, installation, &user_ref);
                    let plain = data_key
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
                credential: &credential,
                user: user.as_ref(),
            };
            let account = open_account(data_key, key, record.account.as_ref())?;
            Ok(ConnectionInfo {
                user_ref: user.as_ref().map(|_| user_ref.clone()),
                user: user.map(|u| u.to_string()),
                credential,
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

pub(crate) fn decode(bytes: &[u8]) -> Result<Record, StoreError> {
    serde_json::from_slice(bytes).map_err(|_| corrupt("OAuth connection"))
}

pub(crate) fn encode(record: &Record) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(record).map_err(|_| corrupt("OAuth connection"))
}
