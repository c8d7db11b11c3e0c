//! `GET /v1/audit` (`audit:read`): records, oldest first, in pages. A tenant key sees only
//! records about its own tenant; filters narrow that view and never widen it.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::apikey::Scope;
use crate::audit::record;
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
    let since = filter
        .since
        .as_deref()
        .map(|s| {
            clock::since(s).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "since {s:?}: expected an RFC 3339 UTC time or an age such as 15m or 7d"
                ))
            })
        })
        .transpose()?;
    let limit = filter.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let first = filter.after.map_or(0, |seq| seq.saturating_add(1));
    let mut records = Vec::new();
    let mut next = None;
    for line in app.trail.lines_from(first) {
        let (seq, line) = line.map_err(ApiError::internal)?;
        // A damaged record has no trustworthy tenant: only the operator sees it (as damage).
        let Ok(record) = record::open(&line) else {
            if tenant.is_none() {
                records.push(json!({"seq": seq, "damaged": true}));
            }
            continue;
        };
        let e = &record.envelope;
        let keep = (!filter.security || e.security)
            && since.as_ref().is_none_or(|t| e.time.as_str() >= t.as_str())
            && tenant
                .as_ref()
                .is_none_or(|t| e.event.tenant() == Some(t.as_str()));
        if !keep {
            continue;
        }
        if records.len() == limit {
            next = records.last().and_then(|r: &Value| r["seq"].as_u64());
            break;
        }
        records.push(serde_json::to_value(e).map_err(ApiError::internal)?);
    }
    Ok(Json(json!({ "records": records, "next": next })))
}
