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

mod activity;
mod installations;
mod pages;
pub(crate) mod session;

use std::sync::Arc;

use axum::Form;
use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, COOKIE, LOCATION, ORIGIN,
    REFERRER_POLICY, SET_COOKIE, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::app::App;
use crate::auth::{Principal, route_of, verify};
use crate::client::Client;
use crate::error::ApiError;

/// The policy every console response carries: this origin's stylesheet, nothing else.
const POLICY: &str = "default-src 'self'; script-src 'none'; style-src 'self'; img-src 'self'; \
                      form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// The console's stylesheet, vendored: no build step, no third-party request.
const STYLE: &str = include_str!("style.css");

/// The console's routes, each response with [`POLICY`] and its companions.
pub(crate) fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/console", get(home))
        .route("/console/", get(home))
        .route("/console/style.css", get(style))
        .route("/console/sign-in", post(sign_in))
        .route("/console/sign-out", post(sign_out))
        .route("/console/tenants", get(installations::tenants))
        .route("/console/installations", get(installations::installations))
        .route(
            "/console/installations/{installation}",
            get(installations::installation),
        )
        .route(
            "/console/installations/{installation}/approve",
            post(installations::approve),
        )
        .route("/console/hooks", get(activity::hooks))
        .route(
            "/console/schedules/{schedule}/pause",
            post(activity::pause_schedule),
        )
        .route(
            "/console/schedules/{schedule}/resume",
            post(activity::resume_schedule),
        )
        .route("/console/events", get(activity::events))
        .route("/console/audit", get(activity::audit))
        .route("/console/audit/verify", post(activity::verify_audit))
        .route("/console/trust", get(installations::trust))
        .route("/console/metrics", get(activity::metrics))
        .route("/console/runs", get(activity::runs))
        .route("/console/runs/{run}/retry", post(activity::retry))
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
    pub(super) principal: Principal,
    token: String,
    pub(super) session: session::Session,
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
        let route = route_of(parts);
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

/// A page, or the refusal that stopped it.
pub(super) fn shown(page: Result<maud::Markup, ApiError>) -> Response {
    match page {
        Ok(page) => page.into_response(),
        Err(e) => pages::refusal(&e),
    }
}

/// After a change: on to the page `to` names, or the refusal that stopped it.
pub(super) fn done(to: Result<String, ApiError>) -> Response {
    match to {
        Ok(to) => see_other(&to),
        Err(e) => pages::refusal(&e),
    }
}

pub(super) fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, to.to_string())]).into_response()
}

/// A state-changing request refused before anything was done: why.
pub(super) struct Forged(&'static str);

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

/// A form that carries the session's anti-CSRF token.
pub(super) trait WithCsrf {
    fn csrf(&self) -> &str;
}

/// A state-changing request of a signed-in browser, accepted only from this server's own
/// pages (its `Origin`) with the session's anti-CSRF token in its form `F`; otherwise refused
/// before anything is read further or done.
pub(super) struct Posted<F> {
    pub(super) signed: Signed,
    pub(super) form: F,
}

impl<F: DeserializeOwned + WithCsrf + Send> FromRequest<Arc<App>> for Posted<F> {
    type Rejection = Response;

    async fn from_request(request: Request, app: &Arc<App>) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let signed = Signed::from_request_parts(&mut parts, app).await?;
        same_origin(app, &parts.headers).map_err(IntoResponse::into_response)?;
        let Form(form) = Form::<F>::from_request(Request::from_parts(parts, body), app)
            .await
            .map_err(IntoResponse::into_response)?;
        if !signed.session.csrf_matches(form.csrf()) {
            return Err(Forged(
                "This form carries no valid anti-forgery token (it may be stale: reload the \
                 page), so nothing was done.",
            )
            .into_response());
        }
        Ok(Self { signed, form })
    }
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
pub(super) struct Csrf {
    #[serde(default)]
    csrf: String,
}

impl WithCsrf for Csrf {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

async fn sign_out(State(app): State<Arc<App>>, posted: Posted<Csrf>) -> Response {
    app.sessions.end(&posted.signed.token);
    let mut response = see_other("/console/");
    if let Ok(cookie) = HeaderValue::from_str(&session::cookie(None, app.https())) {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response
}

#[derive(Deserialize)]
pub(super) struct Scoped {
    pub(super) tenant: Option<String>,
}
/// A form of the session that acts for a tenant: its anti-CSRF token and the tenant.
#[derive(Deserialize)]
pub(super) struct TenantForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    pub(super) tenant: String,
}

impl WithCsrf for TenantForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}
