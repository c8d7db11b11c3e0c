//! The trail's index: which records are about which tenant, which are security events, and
//! which record each later millisecond starts at, so a read costs what it returns rather than
//! a walk of the whole chain (docs/audit.md, "Reading it").
//!
//! The index is kept beside the records in the [`AuditLog`](airlock_store::AuditLog), written
//! together with each record; it only points at records, so every record a read returns is still opened and checked
//! against its own hash, and a wrong entry cannot show a tenant another tenant's record.
//!
//! Keys (values are empty unless said):
//! - `t` len tenant seq: the records about `tenant` (len is one byte, the tenant's length);
//! - `s` len tenant seq: those that are security events;
//! - `S` seq: every security event;
//! - `m` ms → seq: the first record whose time passed `ms` (the highest time so far), so the
//!   first record at or after a time is one lookup even when the clock went back;
//! - `n` → how many records the index covers (older trails are indexed when opened).

use super::record::Envelope;

/// The most entries [`keys`] makes for one record.
pub(super) const MOST_KEYS: usize = 3;
/// How many records the index covers (u64 big-endian).
pub(super) const COVERED: &[u8] = b"n";

const TENANT: u8 = b't';
const TENANT_SECURITY: u8 = b's';
const SECURITY: u8 = b'S';
const TIME: u8 = b'm';

/// The entries of record `seq`, but its time mark.
pub(super) fn keys(seq: u64, envelope: &Envelope) -> Vec<Vec<u8>> {
    let mut keys = Vec::with_capacity(MOST_KEYS);
    if envelope.security {
        keys.push(key(&[SECURITY], seq));
    }
    if let Some(tenant) = envelope.event.tenant() {
        keys.push(key(&tenant_prefix(TENANT, tenant), seq));
        if envelope.security {
            keys.push(key(&tenant_prefix(TENANT_SECURITY, tenant), seq));
        }
    }
    keys
}

/// The time mark for `ms`.
pub(super) fn time_key(ms: u64) -> Vec<u8> {
    key(&[TIME], ms)
}

/// The prefix of the time marks.
pub(super) const TIME_PREFIX: &[u8] = &[TIME];

/// The prefix of the entries a query with these filters reads; `None` for the chain itself.
pub(super) fn prefix(tenant: Option<&str>, security: bool) -> Option<Vec<u8>> {
    match (tenant, security) {
        (None, false) => None,
        (None, true) => Some(vec![SECURITY]),
        (Some(tenant), false) => Some(tenant_prefix(TENANT, tenant)),
        (Some(tenant), true) => Some(tenant_prefix(TENANT_SECURITY, tenant)),
    }
}

/// `prefix` followed by `n` big-endian: an entry's key, or where a range starts.
pub(super) fn key(prefix: &[u8], n: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + 8);
    key.extend_from_slice(prefix);
    key.extend_from_slice(&n.to_be_bytes());
    key
}

/// The number ending an entry's key.
pub(super) fn number(key: &[u8]) -> Option<u64> {
    let tail = key.len().checked_sub(8).map(|at| &key[at..])?;
    Some(u64::from_be_bytes(tail.try_into().ok()?))
}

/// The length byte keeps one tenant's prefix from being the start of another's (`acme` and
/// `acme-eu`). Tenants are stored at most 128 bytes long (bounds::ID), so it always fits.
fn tenant_prefix(kind: u8, tenant: &str) -> Vec<u8> {
    let bytes = &tenant.as_bytes()[..tenant.len().min(usize::from(u8::MAX))];
    let mut prefix = Vec::with_capacity(bytes.len() + 2);
    prefix.push(kind);
    prefix.push(bytes.len() as u8);
    prefix.extend_from_slice(bytes);
    prefix
}
