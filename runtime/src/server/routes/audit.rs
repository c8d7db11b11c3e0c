//! `GET /v1/audit` (`audit:read`): records, oldest first, in pages. A tenant key sees only
//! records about its own tenant; filters narrow that view and never widen it.
//!
//! A page is read through the trail's index (audit::query), so it costs what it returns, and
//! on the blocking pool, so a read never holds a request worker. The response says how many
//! stored records the page `examined`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::apikey::Scope;
use crate::audit::{self, Entry};
use crate::clock;
use crate::server::app::App;
use crate::server::auth::Principal;
use crate::server::error::ApiError;

/// Records per page unless `limit` says fewer; never more.
const MAX_PAGE: usize = 1_000;

#[derive(Deserialize)]
pub(super) struct Filter {
    tenant: Option<String>,
    /// RFC 3339 UTC time or an age (`15m`, `7d`).
    since: Option<String>,
    /// Only security events.
    #[serde(default)]
    security: bool,
    /// Start after this sequence number (the previous page's `next`).
    after: Option<u64>,
    limit: Option<usize>,
}

pub(super) async fn list(
    State(app): State<Arc<App>>,
    principal: Principal,
    Query(filter): Query<Filter>,
) -> Result<Json<Value>, ApiError> {
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
    let query = audit::Query {
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
        .iter()
        .map(|entry| match entry {
            Entry::Record { record, .. } => serde_json::to_value(&record.envelope),
            Entry::Damaged { seq } => Ok(json!({"seq": seq, "damaged": true})),
        })
        .collect::<Result<Vec<Value>, _>>()
        .map_err(ApiError::internal)?;
    Ok(Json(
        json!({ "records": records, "next": page.next, "examined": page.examined }),
    ))
}
