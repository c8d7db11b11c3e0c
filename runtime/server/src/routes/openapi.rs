//! `GET /v1/openapi.json` (no key: it describes the API and holds no tenant's data): the
//! OpenAPI document generated from the handlers' operations and wire types, rendered once per
//! router. `docs/openapi.json` is this document, checked by `routes::tests`.

use axum::Extension;
use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi as _, ToSchema};

use crate::error::ErrorBody;

/// The document's frame: what the routes' operations are added to.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Airlock operator API",
        version = "1",
        description = "The HTTP API of `airlock serve`. Every request except those marked \
            otherwise carries an API key (`Authorization: Bearer airlock_…`). A tenant key acts \
            for its own tenant only; the operator's admin key acts for any tenant it names with \
            `?tenant=`. Errors are `{\"error\": {\"code\", \"message\"}}` with the status the \
            failure maps to. See docs/api.md.",
    ),
    security(("bearer" = [])),
    components(schemas(ErrorBody)),
    modifiers(&BearerKeys),
    tags(
        (name = "operations", description = "Health, metrics and this document"),
        (name = "tenants", description = "Tenants (admin key)"),
        (name = "api-keys", description = "API keys: issued once, stored as a hash (admin key)"),
        (name = "trust", description = "The publisher keys bundles must be signed with (admin key)"),
        (name = "bundles", description = "Signed bundles, verified and compiled on upload (admin key)"),
        (name = "installations", description = "A tenant's installations of uploaded bundles, their grants, upgrades and config"),
        (name = "credentials", description = "Write-only credential values of an installation"),
        (name = "oauth", description = "OAuth connections made by consent (authorization code with PKCE)"),
        (name = "invocations", description = "Running an installation's actions"),
        (name = "webhooks", description = "Webhook endpoints and their signed deliveries"),
        (name = "audit", description = "The hash-chained audit trail, scoped to the caller's tenant"),
    )
)]
struct Frame;

/// The frame of the document.
pub(super) fn base() -> OpenApi {
    Frame::openapi()
}

/// The `bearer` scheme every operation needs unless it says otherwise.
struct BearerKeys;

impl Modify for BearerKeys {
    fn modify(&self, api: &mut OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "An Airlock API key: `airlock_<16 hex id>_<43 base64url>`",
            ))
            .build();
        api.components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The OpenAPI document as JSON, pretty-printed, with a trailing newline.
#[derive(Clone)]
pub(super) struct Document(Bytes);

impl Document {
    /// Renders `api`, the routes' operations in the [`base`] frame. Every operation that needs a
    /// key gets the answers the key check gives (`Principal`, in `server::auth`): 401 for no
    /// valid key, 403 for a key without the scope, 429 after too many failures.
    pub(super) fn new(mut api: OpenApi) -> Self {
        let refusals = [
            (
                "401",
                "Unauthorized",
                "No valid key: missing, not Bearer, invalid, expired or revoked (`unauthorized`, `WWW-Authenticate: Bearer`)",
            ),
            (
                "403",
                "Forbidden",
                "The key lacks the scope, is not the admin key, or names another tenant (`forbidden`)",
            ),
            (
                "429",
                "TooManyFailures",
                "Too many failed attempts from this client or on this key id (`too-many-failures`, `Retry-After`); a valid key is never refused for them",
            ),
        ];
        for item in api.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                if operation.security.is_some() {
                    continue;
                }
                for (status, name, _) in refusals {
                    operation
                        .responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
                }
            }
        }
        let components = api.components.get_or_insert_with(Default::default);
        for (_, name, description) in refusals {
            components
                .responses
                .insert(name.to_string(), RefOr::T(error_response(description)));
        }
        let mut text = api
            .to_pretty_json()
            .unwrap_or_else(|e| unreachable!("an OpenAPI document always serializes: {e}"));
        text.push('\n');
        Self(Bytes::from(text))
    }

    /// The document's text.
    #[cfg(test)]
    pub(super) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

/// A response with the error body.
fn error_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ErrorBody::name())))
                .build(),
        )
        .build()
}

/// The OpenAPI document
///
/// Of this API, as this server routes it.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "operations",
    operation_id = "openapi",
    security(),
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json")),
)]
pub(super) async fn document(Extension(document): Extension<Document>) -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], document.0)
}
