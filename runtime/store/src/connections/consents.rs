//! Consents under way: a start link offered by `connect`, then the state a browser carries to
//! the provider and back. Each is taken once; see the parent module for what is sealed.
//! The records, and how they are made and opened, are shared with the PostgreSQL store.

use crate::records::*;
use crate::traits::*;
use airlock_host_api::credentials::vault::{DataKey, Sealed};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use super::*;

/// A consent under way as stored: its `user` is kept sealed beside it, never in it.
#[derive(Serialize, Deserialize)]
pub(super) struct PendingRecord {
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
pub(super) struct OfferRecord {
    consent: PendingConsent,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<Sealed>,
}

/// The key of a state or start id: its SHA-256, so the value itself is never stored.
/// Whether `consent` is for the installation.
pub(crate) fn is_of(
    consent: &PendingConsent,
    tenant: &TenantId,
    installation: &InstallationId,
) -> bool {
    consent.tenant == tenant.as_str() && consent.installation == installation.as_str()
}

/// The consent a stored record (offered, or under way) holds, its user still sealed; `None`
/// if unreadable.
pub(crate) fn consent_of(bytes: &[u8], offered: bool) -> Option<PendingConsent> {
    if offered {
        serde_json::from_slice::<OfferRecord>(bytes)
            .ok()
            .map(|r| r.consent)
    } else {
        serde_json::from_slice::<PendingRecord>(bytes)
            .ok()
            .map(|r| r.consent)
    }
}

pub(crate) fn state_key(state: &str) -> Vec<u8> {
    Sha256::digest(state.as_bytes()).to_vec()
}

/// Hex SHA-256 of a browser's cookie nonce.
pub(super) fn browser_hash(nonce: &str) -> String {
    hex::encode(Sha256::digest(nonce.as_bytes()))
}

impl Store {
    /// Seals the user of format-1 consents under way (kept in clear) into this store.
    pub(crate) fn migrate_consents(&self, old: &sled::Tree) -> Result<(), StoreError> {
        let tree = self.tree(PENDING)?;
        let mut keys = crate::keys::KeyCache::new(self);
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
    pub(crate) fn migrate_offers(&self, old: &sled::Tree) -> Result<(), StoreError> {
        let tree = self.tree(STARTS)?;
        let mut keys = crate::keys::KeyCache::new(self);
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

    /// Removes the consents, offered or under way, that `remove` selects (`None`: unreadable);
    /// returns how many. Their users stay sealed: only tenant and expiry are looked at.
    pub(super) fn remove_consents(
        &self,
        remove: impl Fn(Option<&PendingConsent>) -> bool,
    ) -> Result<usize, StoreError> {
        let mut removed = 0;
        for (name, offered) in [(PENDING, false), (STARTS, true)] {
            let tree = self.tree(name)?;
            for entry in tree.iter() {
                let (key, bytes) = entry?;
                let consent = consent_of(&bytes, offered);
                if remove(consent.as_ref()) && tree.remove(key)?.is_some() {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

impl Consents for Store {
    fn offer_consent(&self, id: &str, consent: &PendingConsent) -> Result<(), StoreError> {
        let _pass = self.writing();
        let id = state_key(id);
        let bytes = offer_record(self, &id, consent)?;
        self.tree(STARTS)?.insert(id, bytes)?;
        self.db()?.flush()?;
        Ok(())
    }

    fn take_offered_consent(&self, id: &str) -> Result<Option<PendingConsent>, StoreError> {
        let _pass = self.writing();
        let id = state_key(id);
        let Some(bytes) = self.tree(STARTS)?.remove(&id)? else {
            return Ok(None);
        };
        self.db()?.flush()?;
        open_offer(self, &id, &bytes).map(Some)
    }

    fn begin_consent(
        &self,
        key: ConnectionKey<'_>,
        consent: PendingConsent,
        state: &str,
        verifier: &str,
        nonce: &str,
    ) -> Result<(), StoreError> {
        let _pass = self.writing();
        let id = state_key(state);
        let bytes = pending_record(self, key, consent, &id, verifier, nonce)?;
        self.tree(PENDING)?.insert(id, bytes)?;
        self.db()?.flush()?;
        Ok(())
    }

    fn take_consent(
        &self,
        state: &str,
        cookie: Option<&str>,
        now: u64,
    ) -> Result<TakenState, StoreError> {
        let _pass = self.writing();
        let id = state_key(state);
        let Some(bytes) = self.tree(PENDING)?.remove(&id)? else {
            return Ok(TakenState::Unknown);
        };
        self.db()?.flush()?;
        open_pending(self, &id, &bytes, cookie, now)
    }

    fn purge_consents(&self, now: u64) -> Result<usize, StoreError> {
        let _pass = self.writing();
        self.remove_consents(|consent| consent.is_none_or(|c| c.expires <= now))
    }

    fn delete_consents(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
    ) -> Result<usize, StoreError> {
        let _pass = self.writing();
        self.remove_consents(|consent| consent.is_some_and(|c| is_of(c, tenant, installation)))
    }
}

/// `consent`, offered under the start link whose [`state_key`] is `id`, as stored: its user
/// sealed.
pub(crate) fn offer_record(
    keys: &impl TenantKeys,
    id: &[u8],
    consent: &PendingConsent,
) -> Result<Vec<u8>, StoreError> {
    let (tenant, ..) = parse_ids(consent)?;
    let data_key = keys.sealing_key(&tenant)?;
    let record = OfferRecord {
        user: seal_user_of(&data_key, OFFER_USER_KIND, consent, id)?,
        consent: PendingConsent {
            user: None,
            ..consent.clone()
        },
    };
    serde_json::to_vec(&record).map_err(|_| corrupt("OAuth consent"))
}

/// The consent offered at `id`, from the record just taken, its user opened.
pub(crate) fn open_offer(
    keys: &impl TenantKeys,
    id: &[u8],
    bytes: &[u8],
) -> Result<PendingConsent, StoreError> {
    let record: OfferRecord =
        serde_json::from_slice(bytes).map_err(|_| corrupt("OAuth consent"))?;
    let (tenant, ..) = parse_ids(&record.consent)?;
    let data_key = keys
        .tenant_key(&tenant, false)?
        .ok_or_else(|| corrupt("tenant data key"))?;
    open_user_of(
        &data_key,
        OFFER_USER_KIND,
        record.consent,
        id,
        record.user.as_ref(),
    )
}

/// `consent` under way for the state whose [`state_key`] is `id`, as stored: its user and
/// the PKCE `verifier` sealed, the cookie `nonce` hashed.
pub(crate) fn pending_record(
    keys: &impl TenantKeys,
    key: ConnectionKey<'_>,
    consent: PendingConsent,
    id: &[u8],
    verifier: &str,
    nonce: &str,
) -> Result<Vec<u8>, StoreError> {
    let data_key = keys.sealing_key(key.tenant)?;
    let record = PendingRecord {
        verifier: data_key.seal(&key.aad(VERIFIER), verifier.as_bytes()),
        browser: browser_hash(nonce),
        user: seal_user_of(&data_key, CONSENT_USER_KIND, &consent, id)?,
        consent: PendingConsent {
            user: None,
            ..consent
        },
    };
    serde_json::to_vec(&record).map_err(|_| corrupt("OAuth consent"))
}

/// What the record just taken for the state at `id` holds for the browser that came back
/// with `cookie` at `now`: the consent whole whatever it found, the verifier only if valid.
pub(crate) fn open_pending(
    keys: &impl TenantKeys,
    id: &[u8],
    bytes: &[u8],
    cookie: Option<&str>,
    now: u64,
) -> Result<TakenState, StoreError> {
    let record: PendingRecord =
        serde_json::from_slice(bytes).map_err(|_| corrupt("OAuth consent"))?;
    let (tenant, ..) = parse_ids(&record.consent)?;
    let data_key = keys
        .tenant_key(&tenant, false)?
        .ok_or_else(|| corrupt("tenant data key"))?;
    let consent = open_user_of(
        &data_key,
        CONSENT_USER_KIND,
        record.consent,
        id,
        record.user.as_ref(),
    )?;
    if now >= consent.expires {
        return Ok(TakenState::Expired(consent));
    }
    let same_browser = cookie.is_some_and(|nonce| {
        let hash = browser_hash(nonce);
        !record.browser.is_empty() && bool::from(hash.as_bytes().ct_eq(record.browser.as_bytes()))
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
    let verifier = String::from_utf8(verifier.to_vec()).map_err(|_| corrupt("PKCE verifier"))?;
    Ok(TakenState::Valid(consent, Zeroizing::new(verifier)))
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
