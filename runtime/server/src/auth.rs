//! Who is calling: the API key in `Authorization: Bearer`, checked in constant time against its
//! stored hash, its tenant and scopes; failed attempts are limited ([`failures`](super::failures)).
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

use std::sync::Arc;

use airlock_host_api::audit::AuditEvent;
use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::app::App;
use super::client::Client;
use super::error::ApiError;
use super::failures::MAX_FAILURES;
use super::local;
use airlock_platform::api_keys::{self, KeyRefusal, Scope};
use airlock_policy::apikey::{self, ApiKeyRecord};
use airlock_runtime::clock::now_unix;
use airlock_runtime::ids::TenantId;

/// The key a request through the operator's socket is recorded under.
const OPERATOR_SOCKET: &str = "operator-socket";

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
        let route = route_of(parts);
        // The operator's socket: whoever reached it can read the data dir (super::local).
        if parts.extensions.get::<local::Operator>().is_some() {
            return Ok(Principal {
                key: OPERATOR_SOCKET.to_string(),
                tenant: None,
                scopes: Vec::new(),
                route,
                client,
            });
        }
        let presented = parts
            .headers
            .get(AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or_default());
        let token = presented.and_then(apikey::bearer);
        verify(app, client, route, presented, token).await
    }
}

impl Principal {
    /// The principal of a console session on key `id`, if the key is still usable: a key
    /// revoked, suspended or expired since sign-in ends its sessions.
    pub(crate) fn resumed(
        app: &App,
        id: &str,
        route: String,
        client: Client,
    ) -> Result<Option<Self>, ApiError> {
        let Some(record) = app.store.api_key(id)? else {
            return Ok(None);
        };
        if api_keys::usable(&record, now_unix()).is_err() {
            return Ok(None);
        }
        Ok(Some(Self::of(record, route, client)?))
    }

    /// The tenant a tenant key acts for; `None` for the admin key.
    pub(crate) fn own_tenant(&self) -> Option<&TenantId> {
        self.tenant.as_ref()
    }

    /// The id of the key the caller presented.
    pub(crate) fn key_id(&self) -> &str {
        &self.key
    }

    fn of(record: ApiKeyRecord, route: String, client: Client) -> Result<Self, ApiError> {
        Ok(Principal {
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
        })
    }
}

/// The method and route template a refusal is recorded under: never the concrete path, which
/// may carry what a caller typed (docs/audit.md).
pub(crate) fn route_of(parts: &Parts) -> String {
    format!(
        "{} {}",
        parts.method,
        parts
            .extensions
            .get::<MatchedPath>()
            .map_or("(unmatched)", |m| m.as_str())
    )
}

/// Checks `presented` (the `Authorization` value, or the key a console sign-in form carries)
/// whose key is `token`: the principal, or the refusal, recorded and counted against the
/// client and the key id it claims.
pub(crate) async fn verify(
    app: &App,
    client: Client,
    route: String,
    presented: Option<&str>,
    token: Option<&str>,
) -> Result<Principal, ApiError> {
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
        Ok(record) => return Principal::of(record, route, client),
        Err(refused) => refused,
    };
    // A malformed key counts against the client only; a well-formed one also against the
    // key id it claims, so guesses at one key from many clients are limited too.
    let claimed = token.and_then(api_keys::claimed_id);
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
        (Some(_), None, _) => "only Bearer API keys are accepted (Authorization: Bearer airlock_…)",
        (_, _, KeyRefusal::Expired) => "the API key has expired",
        (_, _, KeyRefusal::Revoked) => "the API key was revoked",
        (_, _, KeyRefusal::Suspended) => {
            "the API key is suspended (an alert rule or the operator); the operator lifts it"
        }
        (_, _, KeyRefusal::Invalid) => "the API key is not valid",
    }))
}
