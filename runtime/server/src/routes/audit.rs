//! `GET /v1/audit` (`audit:read`): records, oldest first, in pages. A tenant key sees only
//! records about its own tenant; filters narrow that view and never widen it.
//!
//! A page is read through the trail's index (audit::query), so it costs what it returns, and
//! on the blocking pool, so a read never holds a request worker. The response says how many
//! stored records the page `examined`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::app::App;
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use airlock_audit::Entry;
use airlock_audit::record::Envelope;
use airlock_platform::api_keys::Scope;
use airlock_runtime::clock;

/// Records per page unless `limit` says fewer; never more.
const MAX_PAGE: usize = 1_000;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct Filter {
    /// Admin key: only records about this tenant. A tenant key sees only its own.
    tenant: Option<String>,
    /// RFC 3339 UTC time or an age (`15m`, `7d`).
    since: Option<String>,
    /// Only security events.
    #[serde(default)]
    security: bool,
    /// Start after this sequence number (the previous page's `next`).
    after: Option<u64>,
    /// Records per page (default 100, at most 1,000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// A page of records, oldest first.
#[derive(Serialize, ToSchema)]
pub(super) struct AuditPage {
    records: Vec<AuditEntry>,
    /// Where the next page starts (pass it as `after`), when there are more.
    next: Option<u64>,
    /// Stored records this page read and checked: through the trail's index, only records the
    /// query can return.
    examined: u64,
}

/// A record, or one that does not open (shown only to the admin key, without a tenant filter).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
enum AuditEntry {
    Record(AuditRecord),
    Damaged { seq: u64, damaged: bool },
}

/// One record of the hash-chained trail: `seq`, `time`, `prev`, `security` and the event's
/// fields (docs/audit.md).
#[derive(Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = Object)]
struct AuditRecord(Box<Envelope>);

/// Audit records
///
/// Oldest first, in pages, about the caller's tenant only (the admin key: every tenant, or the
/// one it names). Filters narrow that view and never widen it.
#[utoipa::path(
    get,
    path = "/v1/audit",
    tag = "audit",
    operation_id = "list_audit_records",
    extensions(("x-airlock-scope" = json!("audit:read"))),
    params(Filter),
    responses(
        (status = 200, description = "A page of records", body = AuditPage),
        (status = 400, description = "`since` is neither a time nor an age (`bad-request`)", body = ErrorBody),
    ),
)]
pub(super) async fn list(
    State(app): State<Arc<App>>,
    principal: Principal,
    Query(filter): Query<Filter>,
) -> Result<Json<AuditPage>, ApiError> {
    principal.require(&app, Scope::AuditRead).await?;
    let tenant = principal.tenant_filter(filter.tenant.as_deref())?;
    let since_ms = filter
        .since
        .as_deref()
        .map(|s| {
            clock::since_ms(s).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "since {s:?}: expected an RFC 3339 UTC time or an age such as 15m or 7d"
                ))
            })
        })
        .transpose()?;
    let query = airlock_audit::Query {
        tenant: tenant.map(|t| t.as_str().to_string()),
        security: filter.security,
        since_ms,
        after: filter.after,
    };
    let limit = filter.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let trail = app.trail.clone();
    let page = tokio::task::spawn_blocking(move || trail.page(&query, limit))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let records = page
        .entries
        .into_iter()
        .map(|entry| match entry {
            Entry::Record { record, .. } => {
                AuditEntry::Record(AuditRecord(Box::new(record.envelope)))
            }
            Entry::Damaged { seq } => AuditEntry::Damaged { seq, damaged: true },
        })
        .collect();
    Ok(Json(AuditPage {
        records,
        next: page.next,
        examined: page.examined,
    }))
}
