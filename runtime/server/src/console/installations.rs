//! The console's pages of what is installed: tenants, installations (one with its pending
//! upgrade, approved from here) and the trusted publishers.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::Response;

use super::{Posted, Scoped, Signed, TenantForm, done, pages, shown};
use crate::app::App;
use crate::error::ApiError;
use airlock_platform::api_keys::Scope;
use airlock_runtime::ids::InstallationId;

pub(super) async fn installations(
    State(app): State<Arc<App>>,
    signed: Signed,
    Query(query): Query<Scoped>,
) -> Response {
    shown(
        async {
            let principal = &signed.principal;
            principal.require(&app, Scope::InstallationsRead).await?;
            let tenant = principal.tenant_filter(query.tenant.as_deref())?;
            let records = app.store.installations(tenant.as_ref())?;
            Ok(pages::installations(
                principal,
                &signed.session.csrf,
                &records,
            ))
        }
        .await,
    )
}

pub(super) async fn tenants(State(app): State<Arc<App>>, signed: Signed) -> Response {
    shown(
        async {
            signed.principal.require_admin(&app).await?;
            let tenants = app.store.tenants()?;
            Ok(pages::tenants(
                &signed.principal,
                &signed.session.csrf,
                &tenants,
            ))
        }
        .await,
    )
}

pub(super) async fn installation(
    State(app): State<Arc<App>>,
    signed: Signed,
    Path(installation): Path<String>,
    Query(query): Query<Scoped>,
) -> Response {
    shown(
        async {
            let principal = &signed.principal;
            principal.require(&app, Scope::InstallationsRead).await?;
            let tenant = principal.tenant(query.tenant.as_deref())?;
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
            let shown = pages::Installed {
                record: &record,
                manifest: &manifest,
                credentials: &credentials,
                connections: &connections,
            };
            Ok(pages::installation(principal, &signed.session.csrf, &shown))
        }
        .await,
    )
}

pub(super) async fn approve(
    State(app): State<Arc<App>>,
    Path(installation): Path<String>,
    Posted { signed, form }: Posted<TenantForm>,
) -> Response {
    done(
        async {
            let principal = &signed.principal;
            principal.require(&app, Scope::InstallationsWrite).await?;
            let tenant = principal.tenant(Some(&form.tenant))?;
            let installation: InstallationId = installation.parse().map_err(ApiError::invalid)?;
            let approver = crate::routes::installations::approver(principal);
            let (t, i) = (tenant.clone(), installation.clone());
            let outcome = app
                .installing(move |installer| installer.approve(&t, &i, None, approver))
                .await?;
            if let Err(e) = outcome {
                return Err(app.refused(format!("installation {installation}"), e).await);
            }
            Ok(format!(
                "/console/installations/{installation}?tenant={tenant}"
            ))
        }
        .await,
    )
}

pub(super) async fn trust(State(app): State<Arc<App>>, signed: Signed) -> Response {
    shown(
        async {
            signed.principal.require_admin(&app).await?;
            let keys = app.store.trusted_keys()?;
            Ok(pages::trust(&signed.principal, &signed.session.csrf, &keys))
        }
        .await,
    )
}
