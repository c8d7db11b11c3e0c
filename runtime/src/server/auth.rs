//! Who is calling: the API key in `Authorization: Bearer`, checked in constant time against its
//! stored hash, its tenant and scopes; and limits on failed attempts.
//!
//! A key that verifies is never refused for failures, its own or anyone's: the server runs
//! behind a proxy, where every client shares one peer address, and a limit that refused valid
//! keys would let anyone lock out every tenant and the admin. Failures count against the
//! client (its address, from the trusted proxy's header if there is one: [`Client`]) and, for
//! a well-formed key, against the key id it claims; once either is over the limit, further
//! failures are answered `429` without being recorded. A limited client's keys are still
//! verified: the check is cheap (one store read, a SHA-256 and a constant-time compare, the
//! same bounded work as for any request), and skipping it would refuse the valid keys of
//! everyone behind the same proxy or NAT.
//!
//! Every refusal is a security event in the audit trail, except those answered `429`, which
//! are counted (one record when a client or key crosses the limit), so a flood of bad keys
//! cannot flood the trail.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use airlock_host_api::audit::AuditEvent;
use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::app::App;
use super::client::Client;
use super::error::ApiError;
use crate::apikey::{self, KeyRefusal, Scope};
use crate::clock::now_unix;
use crate::ids::TenantId;
use airlock_store::ApiKeys;

/// Failed attempts one client (or key id, or webhook endpoint) may make per window…
pub(crate) const MAX_FAILURES: u32 = 10;
/// …and the window.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Keys tracked at most; the oldest windows are dropped first.
const MAX_TRACKED: usize = 10_000;

/// Failures by key (a client's address, a key id, an endpoint), in fixed windows.
pub struct FailureLimiter<K = IpAddr> {
    keys: Mutex<HashMap<K, (Instant, u32)>>,
}

impl<K> Default for FailureLimiter<K> {
    fn default() -> Self {
        Self {
            keys: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone> FailureLimiter<K> {
    /// Seconds until `key` may try again, if it is over the limit.
    pub(crate) fn blocked<Q>(&self, key: &Q) -> Option<u64>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let (start, failures) = keys.get(key)?;
        let left = FAILURE_WINDOW.checked_sub(start.elapsed())?;
        (*failures >= MAX_FAILURES).then(|| left.as_secs().max(1))
    }

    /// Counts a failure; true if it is the one that crosses the limit.
    pub(crate) fn fail(&self, key: &K) -> bool {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if keys.len() >= MAX_TRACKED && !keys.contains_key(key) {
            keys.retain(|_, (start, _)| start.elapsed() < FAILURE_WINDOW);
            if keys.len() >= MAX_TRACKED
                && let Some(oldest) = keys
                    .iter()
                    .min_by_key(|(_, (s, _))| *s)
                    .map(|(k, _)| k.clone())
            {
                keys.remove(&oldest);
            }
        }
        let entry = keys.entry(key.clone()).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= FAILURE_WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
        entry.1 == MAX_FAILURES
    }
}

/// Failed API-key attempts, per client and per claimed key id, on limiters of their own so a
/// flood of made-up key ids cannot push clients out of the table (or the reverse).
#[derive(Default)]
pub struct KeyFailures {
    clients: FailureLimiter<IpAddr>,
    keys: FailureLimiter<String>,
}

impl KeyFailures {
    /// Seconds until failures of `client`, or on key id `claimed`, are answered again, if
    /// either is over its limit.
    fn blocked(&self, client: Client, claimed: Option<&str>) -> Option<u64> {
        let by_client = self.clients.blocked(&client.bucket());
        let by_key = claimed.and_then(|id| self.keys.blocked(id));
        by_client.max(by_key)
    }

    /// Counts a failure against `client` and `claimed`; names what crossed its limit with it.
    fn fail(&self, client: Client, claimed: Option<&str>) -> Option<&'static str> {
        let client_crossed = self.clients.fail(&client.bucket());
        let key_crossed = claimed.is_some_and(|id| self.keys.fail(&id.to_string()));
        match (client_crossed, key_crossed) {
            (true, true) => Some("client and key"),
            (true, false) => Some("client"),
            (false, true) => Some("key"),
            (false, false) => None,
        }
    }
}

/// The caller, as its key says: the only source of tenant and scope a handler may use.
pub struct Principal {
    key: String,
    tenant: Option<TenantId>,
    scopes: Vec<Scope>,
    route: String,
    client: Client,
}

impl Principal {
    /// Refuses (`403`, recorded) unless the key has `scope`; the admin key has every scope.
    pub async fn require(&self, app: &App, scope: Scope) -> Result<(), ApiError> {
        if self.tenant.is_none() || self.scopes.contains(&scope) {
            return Ok(());
        }
        self.refuse(app, &format!("missing-scope:{scope}")).await;
        Err(ApiError::forbidden(format!(
            "this key lacks the `{scope}` scope"
        )))
    }

    /// Whether this is the operator's admin key.
    pub fn is_admin(&self) -> bool {
        self.tenant.is_none()
    }

    /// Refuses (`403`, recorded) unless this is the operator's admin key.
    pub async fn require_admin(&self, app: &App) -> Result<(), ApiError> {
        if self.tenant.is_none() {
            return Ok(());
        }
        self.refuse(app, "admin-only").await;
        Err(ApiError::forbidden(
            "this operation needs the operator's admin key".to_string(),
        ))
    }

    /// The tenant a request acts for: a tenant key's own (naming another is refused), or the
    /// one an admin names with `?tenant=`.
    pub fn tenant(&self, named: Option<&str>) -> Result<TenantId, ApiError> {
        match (&self.tenant, named) {
            (Some(own), None) => Ok(own.clone()),
            (Some(own), Some(named)) if named == own.as_str() => Ok(own.clone()),
            (Some(own), Some(_)) => Err(ApiError::forbidden(format!(
                "this key acts for tenant {own} only"
            ))),
            (None, Some(named)) => named.parse().map_err(ApiError::invalid),
            (None, None) => Err(ApiError::bad_request(
                "the admin key must name the tenant: add ?tenant=ID".to_string(),
            )),
        }
    }

    /// The tenant filter for listings: a tenant key's own, an admin's choice (or none: all).
    pub fn tenant_filter(&self, named: Option<&str>) -> Result<Option<TenantId>, ApiError> {
        match (&self.tenant, named) {
            (None, None) => Ok(None),
            _ => self.tenant(named).map(Some),
        }
    }

    async fn refuse(&self, app: &App, reason: &str) {
        let _ = app
            .trail
            .append(AuditEvent::AccessRefused {
                key: Some(self.key.clone()),
                tenant: self.tenant.as_ref().map(ToString::to_string),
                reason: reason.to_string(),
                route: self.route.clone(),
                peer: self.client.to_string(),
            })
            .await;
    }
}

impl FromRequestParts<Arc<App>> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let Ok(client) = Client::from_request_parts(parts, app).await;
        let route = format!(
            "{} {}",
            parts.method,
            parts
                .extensions
                .get::<MatchedPath>()
                .map_or("(unmatched)", |m| m.as_str())
        );
        let presented = parts
            .headers
            .get(AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or_default());
        let token = presented.and_then(bearer);
        // The key first: one that verifies passes whatever the failure limits say.
        let checked = match (presented, token) {
            (None, _) => Err(("no-key", KeyRefusal::Invalid)),
            (Some(_), None) => Err(("not-bearer", KeyRefusal::Invalid)),
            (Some(_), Some(key)) => match app.store.authenticate(key, now_unix())? {
                Ok(record) => Ok(record),
                Err(refusal) => Err((refusal.code(), refusal)),
            },
        };
        let (reason, refusal) = match checked {
            Ok(record) => {
                return Ok(Principal {
                    tenant: record
                        .tenant
                        .as_deref()
                        .map(str::parse)
                        .transpose()
                        .map_err(|_| ApiError::internal("a stored key names an invalid tenant"))?,
                    key: record.id,
                    scopes: record.scopes,
                    route,
                    client,
                });
            }
            Err(refused) => refused,
        };
        // A malformed key counts against the client only; a well-formed one also against the
        // key id it claims, so guesses at one key from many clients are limited too.
        let claimed = token.and_then(apikey::claimed_id);
        if let Some(retry) = app.failures.blocked(client, claimed) {
            return Err(ApiError::too_many_failures(retry));
        }
        let reason = match app.failures.fail(client, claimed) {
            Some(what) => format!("{reason}; {what} reached {MAX_FAILURES} failures, now limited"),
            None => reason.to_string(),
        };
        let _ = app
            .trail
            .append(AuditEvent::AccessRefused {
                key: claimed.map(str::to_string),
                tenant: None,
                reason,
                route,
                peer: client.to_string(),
            })
            .await;
        Err(ApiError::unauthorized(match (presented, token, refusal) {
            (None, ..) => "send an API key: Authorization: Bearer airlock_…",
            (Some(_), None, _) => {
                "only Bearer API keys are accepted (Authorization: Bearer airlock_…)"
            }
            (_, _, KeyRefusal::Expired) => "the API key has expired",
            (_, _, KeyRefusal::Revoked) => "the API key was revoked",
            (_, _, KeyRefusal::Invalid) => "the API key is not valid",
        }))
    }
}

/// The token of a `Bearer` authorization value (scheme case-insensitive, RFC 6750).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
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

    #[test]
    fn a_peer_is_limited_after_its_failures_until_the_window_ends() {
        let limiter: FailureLimiter = FailureLimiter::default();
        let peer: IpAddr = "192.0.2.1".parse().expect("ip");
        let other: IpAddr = "192.0.2.2".parse().expect("ip");
        for i in 1..MAX_FAILURES {
            assert!(!limiter.fail(&peer), "failure {i}");
            assert_eq!(limiter.blocked(&peer), None);
        }
        assert!(limiter.fail(&peer), "the limit is crossed once");
        assert!(limiter.blocked(&peer).is_some_and(|s| s <= 60));
        assert_eq!(limiter.blocked(&other), None);
        assert!(!limiter.fail(&peer), "crossing is reported once");
    }

    #[test]
    fn failures_count_against_the_client_and_the_claimed_key_apart() {
        let failures = KeyFailures::default();
        let client = |ip: &str| Client(ip.parse().expect("ip"));
        // Ten guesses at one key id from ten clients: the key id is limited, no client is.
        for i in 1..=MAX_FAILURES {
            let crossed = failures.fail(client(&format!("192.0.2.{i}")), Some("00ff00ff00ff00ff"));
            assert_eq!(crossed, (i == MAX_FAILURES).then_some("key"), "failure {i}");
        }
        assert!(
            failures
                .blocked(client("198.51.100.1"), Some("00ff00ff00ff00ff"))
                .is_some()
        );
        assert_eq!(failures.blocked(client("192.0.2.1"), None), None);
        assert_eq!(
            failures.blocked(client("192.0.2.1"), Some("11ee11ee11ee11ee")),
            None
        );
        // Malformed keys from one client: that client only, and the whole of its IPv6 /64.
        for i in 1..=MAX_FAILURES {
            let crossed = failures.fail(client(&format!("2001:db8::{i}")), None);
            assert_eq!(
                crossed,
                (i == MAX_FAILURES).then_some("client"),
                "failure {i}"
            );
        }
        assert!(failures.blocked(client("2001:db8::ffff"), None).is_some());
        assert!(
            failures
                .blocked(client("2001:db8::1"), Some("11ee11ee11ee11ee"))
                .is_some()
        );
        assert_eq!(failures.blocked(client("2001:db8:0:1::1"), None), None);
    }
}
