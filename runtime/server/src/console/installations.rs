//! The console's pages of what is installed: tenants, installations (one with its pending
//! upgrade, approved from here) and the trusted publishers.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};

use super::{Posted, Scoped, Signed, TenantForm, pages, see_other};
use crate::app::App;
use crate::error::ApiError;
use airlock_platform::api_keys::Scope;
use airlock_runtime::ids::InstallationId;

pub(super) async fn installations(
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

pub(super) async fn tenants(State(app): State<Arc<App>>, signed: Signed) -> Response {
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

pub(super) async fn installation(
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

pub(super) async fn approve(
    State(app): State<Arc<App>>,
    Path(installation): Path<String>,
    Posted { signed, form }: Posted<TenantForm>,
) -> Response {
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

pub(super) async fn trust(State(app): State<Arc<App>>, signed: Signed) -> Response {
    let listed = async {
        signed.principal.require_admin(&app).await?;
        Ok::<_, ApiError>(app.store.trusted_keys()?)
    };
    match listed.await {
        Ok(keys) => pages::trust(&signed.principal, &signed.session.csrf, &keys).into_response(),
        Err(e) => pages::refusal(&e),
    }
}
