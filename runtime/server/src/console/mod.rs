//! The operator console at `/console`: pages rendered on the server (maud, every value
//! escaped) over the same services and the same authorization as the API, for the admin key
//! and for tenants' keys.
//!
//! Safe by construction: every response carries a Content-Security-Policy that allows only
//! this origin's stylesheet (no script at all, no inline style), refuses framing and sends no
//! referrer; every state-changing request is a `POST` whose `Origin` must be the server's own
//! and whose form must carry the session's anti-CSRF token (sign-in, which has no session
//! yet, needs the `Origin`). Sign-in goes through the API's key check, failure limits and
//! audit ([`crate::auth::verify`]); sessions are [`session`]'s.

mod pages;
pub(crate) mod session;

use std::sync::Arc;

use axum::Form;
use axum::Router;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, COOKIE, LOCATION, ORIGIN,
    REFERRER_POLICY, SET_COOKIE, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::app::App;
use crate::auth::{Principal, verify};
use crate::client::Client;
use crate::error::ApiError;
use airlock_platform::api_keys::Scope;
use airlock_runtime::ids::InstallationId;
use airlock_store::runs::{RunQuery, RunStatus};

/// The policy every console response carries: this origin's stylesheet, nothing else.
const POLICY: &str = "default-src 'self'; script-src 'none'; style-src 'self'; img-src 'self'; \
                      form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// The console's stylesheet, vendored: no build step, no third-party request.
const STYLE: &str = include_str!("style.css");
/// Most runs one page shows.
const RUNS_SHOWN: usize = 100;

/// The console's routes, each response with [`POLICY`] and its companions.
pub(crate) fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/console", get(home))
        .route("/console/", get(home))
        .route("/console/style.css", get(style))
        .route("/console/sign-in", post(sign_in))
        .route("/console/sign-out", post(sign_out))
        .route("/console/tenants", get(tenants))
        .route("/console/installations", get(installations))
        .route("/console/installations/{installation}", get(installation))
        .route(
            "/console/installations/{installation}/approve",
            post(approve),
        )
        .route("/console/hooks", get(hooks))
        .route("/console/schedules/{schedule}/pause", post(pause_schedule))
        .route(
            "/console/schedules/{schedule}/resume",
            post(resume_schedule),
        )
        .route("/console/events", get(events))
        .route("/console/audit", get(audit))
        .route("/console/audit/verify", post(verify_audit))
        .route("/console/trust", get(trust))
        .route("/console/metrics", get(metrics))
        .route("/console/runs", get(runs))
        .route("/console/runs/{run}/retry", post(retry))
        .layer(axum::middleware::map_response(harden))
}

async fn harden(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (CONTENT_SECURITY_POLICY, POLICY),
        (X_FRAME_OPTIONS, "DENY"),
        (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // `no-referrer` would make browsers send `Origin: null` with the forms.
        (REFERRER_POLICY, "same-origin"),
        (CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn style() -> Response {
    ([(CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

/// A signed-in browser: its session and the principal its key is now.
pub(crate) struct Signed {
    principal: Principal,
    token: String,
    session: session::Session,
}

impl FromRequestParts<Arc<App>> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Response> {
        let Ok(client) = Client::from_request_parts(parts, app).await;
        let token = parts
            .headers
            .get(COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(session::token_of)
            .map(str::to_string);
        let Some((token, session)) =
            token.and_then(|t| app.sessions.get(&t).map(|session| (t, session)))
        else {
            return Err(see_other("/console/"));
        };
        let route = format!("{} {}", parts.method, parts.uri.path());
        match Principal::resumed(app, &session.key, route, client) {
            Ok(Some(principal)) => Ok(Self {
                principal,
                token,
                session,
            }),
            Ok(None) => {
                app.sessions.end(&token);
                Err(see_other("/console/"))
            }
            Err(e) => Err(e.into_response()),
        }
    }
}

fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, to.to_string())]).into_response()
}

/// A state-changing request refused before anything was done: why.
struct Forged(&'static str);

impl IntoResponse for Forged {
    fn into_response(self) -> Response {
        pages::refused(StatusCode::FORBIDDEN, self.0)
    }
}

/// Refuses a state-changing request from anywhere but this server's own pages.
fn same_origin(app: &App, headers: &HeaderMap) -> Result<(), Forged> {
    let origin = headers.get(ORIGIN).and_then(|v| v.to_str().ok());
    if origin == Some(app.public_origin()) {
        return Ok(());
    }
    Err(Forged(
        "This form was not sent from this console's own page (its Origin does not match), so \
         nothing was done.",
    ))
}

/// Refuses a state-changing request without the session's anti-CSRF token.
fn with_token(
    app: &App,
    headers: &HeaderMap,
    signed: &Signed,
    offered: &str,
) -> Result<(), Forged> {
    same_origin(app, headers)?;
    if signed.session.csrf_matches(offered) {
        return Ok(());
    }
    Err(Forged(
        "This form carries no valid anti-forgery token (it may be stale: reload the page), so \
         nothing was done.",
    ))
}

async fn home(signed: Result<Signed, Response>) -> Response {
    match signed {
        Ok(signed) => pages::overview(&signed.principal, &signed.session.csrf).into_response(),
        Err(_) => pages::sign_in(None).into_response(),
    }
}

#[derive(Deserialize)]
struct SignIn {
    key: String,
}

async fn sign_in(
    State(app): State<Arc<App>>,
    client: Client,
    headers: HeaderMap,
    Form(form): Form<SignIn>,
) -> Response {
    if let Err(refused) = same_origin(&app, &headers) {
        return refused.into_response();
    }
    let key = form.key.trim();
    let route = "POST /console/sign-in".to_string();
    let principal = match verify(&app, client, route, Some(key), Some(key)).await {
        Ok(principal) => principal,
        Err(e) => return (e.status(), pages::sign_in(Some(&e.message()))).into_response(),
    };
    let Some(token) = app.sessions.start(principal.key_id()) else {
        return pages::refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "This server holds as many console sessions as it may; try again later.",
        );
    };
    let mut response = see_other("/console/");
    if let Ok(cookie) = HeaderValue::from_str(&session::cookie(Some(&token), app.https())) {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response
}

/// A form's anti-CSRF token (missing counts as wrong).
#[derive(Deserialize)]
struct Csrf {
    #[serde(default)]
    csrf: String,
}

async fn sign_out(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    signed: Signed,
    Form(form): Form<Csrf>,
) -> Response {
    if let Err(refused) = with_token(&app, &headers, &signed, &form.csrf) {
        return refused.into_response();
    }
    app.sessions.end(&signed.token);
    let mut response = see_other("/console/");
    if let Ok(cookie) = HeaderValue::from_str(&session::cookie(None, app.https())) {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response
}

#[derive(Deserialize)]
struct Scoped {
    tenant: Option<String>,
}

async fn installations(
    State(app): State<Arc<App>>,
    signed: Signed,
    Query(query): Query<Scoped>,
) -> Response {
    let listed = async {
        signed
            .principal
            .require(&app, Scope::InstallationsRead)
            .await?;
        let tenant = signed.principal.tenant_filter(query.tenant.as_deref())?;
        Ok::<_, ApiError>(app.store.installations(tenant.as_ref())?)
    };
    match listed.await {
        Ok(records) => {
            pages::installations(&signed.principal, &signed.session.csrf, &records).into_response()
        }
        Err(e) => pages::refusal(&e),
    }
}

#[derive(Deserialize)]
struct RunsFilter {
    tenant: Option<String>,
    installation: Option<String>,
    status: Option<String>,
}

async fn runs(
    State(app): State<Arc<App>>,
    signed: Signed,
    Query(filter): Query<RunsFilter>,
) -> Response {
    let listed = async {
        signed
            .principal
            .require(&app, Scope::InstallationsRead)
            .await?;
        let tenant = signed.principal.tenant(filter.tenant.as_deref())?;
        let status = filter
            .status
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(str::parse::<RunStatus>)
            .transpose()
            .map_err(ApiError::invalid)?;
        let query = RunQuery {
            installation: filter.installation.clone().filter(|i| !i.is_empty()),
            status,
            limit: RUNS_SHOWN,
            ..RunQuery::default()
        };
        Ok::<_, ApiError>((tenant.clone(), app.store.runs(&tenant, &query)?))
    };
    match listed.await {
        Ok((tenant, runs)) => pages::runs(
            &signed.principal,
            &signed.session.csrf,
            &tenant,
            &filter.installation.unwrap_or_default(),
            &filter.status.unwrap_or_default(),
            &runs,
        )
        .into_response(),
        Err(e) => pages::refusal(&e),
    }
}

#[derive(Deserialize)]
struct RetryForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    tenant: String,
}

async fn retry(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    signed: Signed,
    Path(run): Path<String>,
    Form(form): Form<RetryForm>,
) -> Response {
    if let Err(refused) = with_token(&app, &headers, &signed, &form.csrf) {
        return refused.into_response();
    }
    let retried = async {
        signed.principal.require(&app, Scope::Invoke).await?;
        let tenant = signed.principal.tenant(Some(&form.tenant))?;
        crate::routes::runs::requeue(&app, &tenant, &run)?;
        Ok::<_, ApiError>(tenant)
    };
    match retried.await {
        Ok(tenant) => see_other(&format!("/console/runs?tenant={tenant}")),
        Err(e) => pages::refusal(&e),
    }
}

async fn tenants(State(app): State<Arc<App>>, signed: Signed) -> Response {
    let listed = async {
        signed.principal.require_admin(&app).await?;
        Ok::<_, ApiError>(app.store.tenants()?)
    };
    match listed.await {
        Ok(tenants) => {
            pages::tenants(&signed.principal, &signed.session.csrf, &tenants).into_response()
        }
        Err(e) => pages::refusal(&e),
    }
}

async fn installation(
    State(app): State<Arc<App>>,
    signed: Signed,
    Path(installation): Path<String>,
    Query(query): Query<Scoped>,
) -> Response {
    let shown = async {
        signed
            .principal
            .require(&app, Scope::InstallationsRead)
            .await?;
        let tenant = signed.principal.tenant(query.tenant.as_deref())?;
        let installation: InstallationId = installation.parse().map_err(ApiError::invalid)?;
        let record = app
            .store
            .installation(&tenant, &installation)?
            .ok_or_else(|| ApiError::not_found(format!("installation {installation}")))?;
        let credentials = app.store.list_credentials(&tenant, &installation)?;
        let connections = app.store.connections_of(&tenant, &installation)?;
        // What the installed version says of itself, from its bundle verified again.
        let installed = record.clone();
        let manifest = app
            .installing(move |i| i.installed_manifest(&installed))
            .await?
            .map_err(ApiError::from)?
            .manifest;
        Ok::<_, ApiError>((record, manifest, credentials, connections))
    };
    match shown.await {
        Ok((record, manifest, credentials, connections)) => pages::installation(
            &signed.principal,
            &signed.session.csrf,
            &pages::Installed {
                record: &record,
                manifest: &manifest,
                credentials: &credentials,
                connections: &connections,
            },
        )
        .into_response(),
        Err(e) => pages::refusal(&e),
    }
}

async fn approve(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    signed: Signed,
    Path(installation): Path<String>,
    Form(form): Form<RetryForm>,
) -> Response {
    if let Err(refused) = with_token(&app, &headers, &signed, &form.csrf) {
        return refused.into_response();
    }
    let approved = async {
        signed
            .principal
            .require(&app, Scope::InstallationsWrite)
            .await?;
        let tenant = signed.principal.tenant(Some(&form.tenant))?;
        let installation: InstallationId = installation.parse().map_err(ApiError::invalid)?;
        let approver = crate::routes::installations::approver(&signed.principal);
        let (t, i) = (tenant.clone(), installation.clone());
        let outcome = app
            .installing(move |installer| installer.approve(&t, &i, None, approver))
            .await?;
        if let Err(e) = outcome {
            return Err(app.refused(format!("installation {installation}"), e).await);
        }
        Ok((tenant, installation))
    };
    match approved.await {
        Ok((tenant, installation)) => see_other(&format!(
            "/console/installations/{installation}?tenant={tenant}"
        )),
        Err(e) => pages::refusal(&e),
    }
}

/// How far back the events page looks, and the most records it reads.
const EVENTS_SINCE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
const EVENTS_READ: usize = 1_000;

async fn events(
    State(app): State<Arc<App>>,
    signed: Signed,
    Query(query): Query<Scoped>,
) -> Response {
    let read = async {
        signed.principal.require(&app, Scope::AuditRead).await?;
        let tenant = signed.principal.tenant_filter(query.tenant.as_deref())?;
        let now = airlock_runtime::clock::now_unix_ms();
        let since = now.saturating_sub(u64::try_from(EVENTS_SINCE.as_millis()).unwrap_or(0));
        let query = airlock_audit::Query {
            tenant: tenant.map(|t| t.to_string()),
            security: true,
            since_ms: Some(since),
            after: None,
        };
        let trail = app.trail.clone();
        let page = tokio::task::spawn_blocking(move || trail.page(&query, EVENTS_READ))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
        let events: Vec<pages::Event> = page
            .entries
            .into_iter()
            .filter_map(|entry| match entry {
                airlock_audit::query::Entry::Record { record, .. } => {
                    Some(pages::Event::of(&record.envelope))
                }
                airlock_audit::query::Entry::Damaged { .. } => None,
            })
            .collect();
        Ok::<_, ApiError>((events, since, now))
    };
    match read.await {
        Ok((events, since, now)) => {
            pages::events(&signed.principal, &signed.session.csrf, &events, since, now)
                .into_response()
        }
        Err(e) => pages::refusal(&e),
    }
}

async fn trust(State(app): State<Arc<App>>, signed: Signed) -> Response {
    let listed = async {
        signed.principal.require_admin(&app).await?;
        Ok::<_, ApiError>(app.store.trusted_keys()?)
    };
    match listed.await {
        Ok(keys) => pages::trust(&signed.principal, &signed.session.csrf, &keys).into_response(),
        Err(e) => pages::refusal(&e),
    }
}

async fn hooks(
    State(app): State<Arc<App>>,
    signed: Signed,
    Query(query): Query<Scoped>,
) -> Response {
    let listed = async {
        signed
            .principal
            .require(&app, Scope::InstallationsRead)
            .await?;
        let tenant = signed.principal.tenant(query.tenant.as_deref())?;
        let webhooks = app
            .store
            .webhooks_of(&tenant, airlock_runtime::clock::now_unix())?;
        let schedules = app.store.schedules(&tenant, None)?;
        Ok::<_, ApiError>((tenant, webhooks, schedules))
    };
    match listed.await {
        Ok((tenant, webhooks, schedules)) => pages::hooks(
            &signed.principal,
            &signed.session.csrf,
            &tenant,
            &webhooks,
            &schedules,
        )
        .into_response(),
        Err(e) => pages::refusal(&e),
    }
}

async fn pause_schedule(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    signed: Signed,
    Path(schedule): Path<String>,
    Form(form): Form<RetryForm>,
) -> Response {
    set_paused(app, headers, signed, schedule, form, true).await
}

async fn resume_schedule(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    signed: Signed,
    Path(schedule): Path<String>,
    Form(form): Form<RetryForm>,
) -> Response {
    set_paused(app, headers, signed, schedule, form, false).await
}

/// Pauses or resumes a schedule, as `POST /v1/schedules/{id}/pause|resume` does.
async fn set_paused(
    app: Arc<App>,
    headers: HeaderMap,
    signed: Signed,
    schedule: String,
    form: RetryForm,
    paused: bool,
) -> Response {
    if let Err(refused) = with_token(&app, &headers, &signed, &form.csrf) {
        return refused.into_response();
    }
    let changed = async {
        signed
            .principal
            .require(&app, Scope::InstallationsWrite)
            .await?;
        signed.principal.require(&app, Scope::Invoke).await?;
        let tenant = signed.principal.tenant(Some(&form.tenant))?;
        let t = tenant.clone();
        app.installing(move |i| i.pause_schedule(&t, &schedule, paused))
            .await??;
        app.schedules_changed.notify_one();
        Ok::<_, ApiError>(tenant)
    };
    match changed.await {
        Ok(tenant) => see_other(&format!("/console/hooks?tenant={tenant}")),
        Err(e) => pages::refusal(&e),
    }
}

async fn audit(State(app): State<Arc<App>>, signed: Signed) -> Response {
    let read = async {
        signed.principal.require_admin(&app).await?;
        let trail = app.trail.clone();
        tokio::task::spawn_blocking(move || {
            let newest = trail
                .dir()
                .checkpoints(trail.chain())?
                .into_iter()
                .filter_map(Result::ok)
                .next_back();
            Ok::<_, airlock_audit::AuditError>((trail.chain().to_string(), newest))
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
    };
    match read.await {
        Ok((chain, newest)) => pages::audit(
            &signed.principal,
            &signed.session.csrf,
            &chain,
            newest.as_ref(),
            None,
        )
        .into_response(),
        Err(e) => pages::refusal(&e),
    }
}

async fn verify_audit(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    signed: Signed,
    Form(form): Form<Csrf>,
) -> Response {
    if let Err(refused) = with_token(&app, &headers, &signed, &form.csrf) {
        return refused.into_response();
    }
    let verified = async {
        signed.principal.require_admin(&app).await?;
        let trail = app.trail.clone();
        tokio::task::spawn_blocking(move || {
            let key = trail.dir().public_key()?;
            let lines: Vec<(u64, Vec<u8>)> = trail.lines().collect::<Result<_, _>>()?;
            let checkpoints = trail.dir().checkpoints(trail.chain())?;
            let newest = checkpoints
                .iter()
                .filter_map(|c| c.as_ref().ok())
                .next_back()
                .cloned();
            let report =
                airlock_audit::verify::verify(&lines, &checkpoints, &key, trail.checkpointed());
            Ok::<_, airlock_audit::AuditError>((trail.chain().to_string(), newest, report))
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
    };
    match verified.await {
        Ok((chain, newest, report)) => pages::audit(
            &signed.principal,
            &signed.session.csrf,
            &chain,
            newest.as_ref(),
            Some(&report),
        )
        .into_response(),
        Err(e) => pages::refusal(&e),
    }
}

async fn metrics(State(app): State<Arc<App>>, signed: Signed) -> Response {
    if let Err(e) = signed.principal.require_admin(&app).await {
        return pages::refusal(&e);
    }
    pages::metrics(&signed.principal, &signed.session.csrf, &app.history()).into_response()
}
