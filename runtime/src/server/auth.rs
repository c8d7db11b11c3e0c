//! Who is calling: the API key in `Authorization: Bearer`, checked in constant time against its
//! stored hash, its tenant and scopes; and a limit on failed attempts per peer address.
//!
//! Every refusal is a security event in the audit trail, except those refused for exceeding the
//! failure limit, which are counted (one record when a peer crosses the limit), so a flood of
//! bad keys cannot flood the trail.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use airlock_host_api::audit::AuditEvent;
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::app::App;
use super::error::ApiError;
use crate::apikey::{self, KeyRefusal, Scope};
use crate::clock::now_unix;
use crate::ids::TenantId;

/// Failed attempts one peer address (or one webhook endpoint) may make per window…
pub(crate) const MAX_FAILURES: u32 = 10;
/// …and the window.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Keys tracked at most; the oldest windows are dropped first.
const MAX_TRACKED: usize = 10_000;

/// Failures by key (a peer address, an endpoint), in fixed windows.
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
    pub(crate) fn blocked(&self, key: &K) -> Option<u64> {
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

/// The caller, as its key says: the only source of tenant and scope a handler may use.
pub struct Principal {
    key: String,
    tenant: Option<TenantId>,
    scopes: Vec<Scope>,
    route: String,
    peer: IpAddr,
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
                peer: self.peer.to_string(),
            })
            .await;
    }
}

impl FromRequestParts<Arc<App>> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
        let route = format!(
            "{} {}",
            parts.method,
            parts
                .extensions
                .get::<MatchedPath>()
                .map_or("(unmatched)", |m| m.as_str())
        );
        if let Some(retry) = app.failures.blocked(&peer) {
            return Err(ApiError::too_many_failures(retry));
        }
        let presented = parts
            .headers
            .get(AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or_default());
        let checked = match presented {
            None => Err(("no-key", KeyRefusal::Invalid)),
            Some(value) => match bearer(value) {
                Some(key) => match app.store.authenticate(key, now_unix())? {
                    Ok(record) => Ok(record),
                    Err(refusal) => Err((refusal.code(), refusal)),
                },
                None => Err(("not-bearer", KeyRefusal::Invalid)),
            },
        };
        match checked {
            Ok(record) => Ok(Principal {
                tenant: record
                    .tenant
                    .as_deref()
                    .map(str::parse)
                    .transpose()
                    .map_err(|_| ApiError::internal("a stored key names an invalid tenant"))?,
                key: record.id,
                scopes: record.scopes,
                route,
                peer,
            }),
            Err((reason, refusal)) => {
                let crossed = app.failures.fail(&peer);
                let reason = if crossed {
                    format!("{reason}; peer reached {MAX_FAILURES} failures, now limited")
                } else {
                    reason.to_string()
                };
                let _ = app
                    .trail
                    .append(AuditEvent::AccessRefused {
                        key: presented
                            .and_then(bearer)
                            .and_then(apikey::claimed_id)
                            .map(str::to_string),
                        tenant: None,
                        reason,
                        route,
                        peer: peer.to_string(),
                    })
                    .await;
                Err(ApiError::unauthorized(match (presented, refusal) {
                    (None, _) => "send an API key: Authorization: Bearer airlock_…",
                    (Some(v), _) if bearer(v).is_none() => {
                        "only Bearer API keys are accepted (Authorization: Bearer airlock_…)"
                    }
                    (_, KeyRefusal::Expired) => "the API key has expired",
                    (_, KeyRefusal::Revoked) => "the API key was revoked",
                    (_, KeyRefusal::Invalid) => "the API key is not valid",
                }))
            }
        }
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
}
