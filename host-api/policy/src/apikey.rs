//! API keys for Airlock's own API (rule 1): one per tenant (or the operator's admin key), with
//! scopes, optional expiry, and only a hash stored.
//!
//! A key is `airlock_<id>_<secret>`: a 16-hex id that names its record, and 32 random bytes
//! (base64url). The store keeps SHA-256 of the secret — a 256-bit random secret needs no slow
//! hash — and compares it in constant time. The `airlock_` prefix lets secret scanners find
//! leaked keys.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

const PREFIX: &str = "airlock_";
const SECRET_BYTES: usize = 32;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scope {
    #[serde(rename = "invoke")]
    Invoke,
    #[serde(rename = "credentials:write")]
    CredentialsWrite,
    #[serde(rename = "installations:read")]
    InstallationsRead,
    #[serde(rename = "installations:write")]
    InstallationsWrite,
    #[serde(rename = "audit:read")]
    AuditRead,
}

impl Scope {
    pub const ALL: [Scope; 5] = [
        Self::Invoke,
        Self::CredentialsWrite,
        Self::InstallationsRead,
        Self::InstallationsWrite,
        Self::AuditRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invoke => "invoke",
            Self::CredentialsWrite => "credentials:write",
            Self::InstallationsRead => "installations:read",
            Self::InstallationsWrite => "installations:write",
            Self::AuditRead => "audit:read",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = Self::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown scope {s:?}; scopes are: {}", known.join(", "))
            })
    }
}

/// A key's stored record: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub id: String,
    /// The tenant the key acts for; `None` for the operator's admin key.
    pub tenant: Option<String>,
    pub scopes: Vec<Scope>,
    pub created: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<u64>,
    /// Set while an alert rule (or the operator) has the key suspended: it is refused until
    /// the operator lifts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended: Option<Suspension>,
    /// Hex SHA-256 of the secret part.
    pub hash: String,
}

/// Why and since when a key is suspended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspension {
    /// The alert rule that tripped, or `operator`.
    pub rule: String,
    /// Unix seconds.
    pub since: u64,
}

/// A freshly made key: shown once, then only its record remains.
pub struct NewKey {
    pub key: Zeroizing<String>,
    pub record: ApiKeyRecord,
}

/// Why a presented key was refused. Deliberately coarse for callers: an unknown id and a wrong
/// secret are one answer, so a caller cannot probe which ids exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyRefusal {
    #[error("the API key is not valid")]
    Invalid,
    #[error("the API key has expired")]
    Expired,
    #[error("the API key was revoked")]
    Revoked,
    #[error("the API key is suspended until the operator lifts it")]
    Suspended,
}

impl KeyRefusal {
    /// A reason code for the audit trail.
    pub fn code(self) -> &'static str {
        match self {
            Self::Invalid => "invalid-key",
            Self::Expired => "expired-key",
            Self::Revoked => "revoked-key",
            Self::Suspended => "suspended-key",
        }
    }
}

/// Makes a key for `tenant` (or the admin key) with `scopes`, expiring at `expires`.
pub fn generate(
    tenant: Option<String>,
    scopes: Vec<Scope>,
    now: u64,
    expires: Option<u64>,
) -> NewKey {
    let id = hex::encode(rand::random::<[u8; 8]>());
    let secret = Zeroizing::new(rand::random::<[u8; SECRET_BYTES]>());
    let encoded = Zeroizing::new(URL_SAFE_NO_PAD.encode(secret.as_slice()));
    let mut key = Zeroizing::new(String::with_capacity(PREFIX.len() + id.len() + 1 + 43));
    key.push_str(PREFIX);
    key.push_str(&id);
    key.push('_');
    key.push_str(&encoded);
    NewKey {
        record: ApiKeyRecord {
            id,
            tenant,
            scopes,
            created: now,
            expires,
            last_used: None,
            revoked: None,
            suspended: None,
            hash: hash(encoded.as_bytes()),
        },
        key,
    }
}

/// The token of an `Authorization: Bearer` value (scheme case-insensitive, RFC 6750).
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The id a presented key claims, if it has the shape of a key.
pub fn claimed_id(presented: &str) -> Option<&str> {
    let rest = presented.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let shaped = id.len() == 16
        && id.bytes().all(|b| b.is_ascii_hexdigit())
        && secret.len() == 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    shaped.then_some(id)
}

/// Checks `presented` against `record` (found by its claimed id) at time `now`.
pub fn check(presented: &str, record: &ApiKeyRecord, now: u64) -> Result<(), KeyRefusal> {
    let secret = presented
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.split_once('_'))
        .filter(|(id, _)| *id == record.id)
        .map(|(_, secret)| secret)
        .ok_or(KeyRefusal::Invalid)?;
    let matches: bool = hash(secret.as_bytes())
        .as_bytes()
        .ct_eq(record.hash.as_bytes())
        .into();
    if !matches {
        return Err(KeyRefusal::Invalid);
    }
    usable(record, now)
}

/// Whether the key of `record` may act at `now`: not revoked, suspended or expired. Every
/// use of a key passes here, its first (with its secret, [`check`]) and a console session's.
pub fn usable(record: &ApiKeyRecord, now: u64) -> Result<(), KeyRefusal> {
    if record.revoked.is_some() {
        return Err(KeyRefusal::Revoked);
    }
    if record.suspended.is_some() {
        return Err(KeyRefusal::Suspended);
    }
    if record.expires.is_some_and(|at| now >= at) {
        return Err(KeyRefusal::Expired);
    }
    Ok(())
}

fn hash(secret: &[u8]) -> String {
    hex::encode(Sha256::digest(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bearer_tokens_are_taken() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic YWxhZGRpbjpvcGVuc2VzYW1l"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("abc"), None);
    }

    fn key(expires: Option<u64>) -> NewKey {
        generate(Some("acme".into()), vec![Scope::Invoke], 1_000, expires)
    }

    #[test]
    fn a_fresh_key_checks_against_its_record_only() {
        let a = key(None);
        let b = key(None);
        assert_eq!(claimed_id(&a.key), Some(a.record.id.as_str()));
        assert_eq!(check(&a.key, &a.record, 2_000), Ok(()));
        assert_eq!(check(&a.key, &b.record, 2_000), Err(KeyRefusal::Invalid));
        assert!(
            !serde_json::to_string(&a.record)
                .expect("json")
                .contains(&a.key[25..])
        );
    }

    #[test]
    fn a_changed_secret_expired_or_revoked_key_is_refused() {
        let k = key(Some(5_000));
        let mut wrong = k.key.to_string();
        let last = wrong.pop().expect("non-empty");
        wrong.push(if last == 'A' { 'B' } else { 'A' });
        assert_eq!(check(&wrong, &k.record, 2_000), Err(KeyRefusal::Invalid));
        assert_eq!(check(&k.key, &k.record, 5_000), Err(KeyRefusal::Expired));
        let mut revoked = k.record.clone();
        revoked.revoked = Some(3_000);
        assert_eq!(check(&k.key, &revoked, 4_000), Err(KeyRefusal::Revoked));
    }

    #[test]
    fn malformed_keys_claim_nothing() {
        for bad in [
            "",
            "airlock_",
            "Bearer airlock_0123456789abcdef_x",
            "airlock_0123456789abcdef_short",
            "airlock_0123456789abcdeg_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "airlock_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ] {
            assert_eq!(claimed_id(bad), None, "{bad}");
        }
        assert!(Scope::from_str("admin").is_err());
        assert_eq!(Scope::from_str("audit:read"), Ok(Scope::AuditRead));
    }
}
