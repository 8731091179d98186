//! `GET /v2/apps/:guid/env` (VCAP_SERVICES, plus Code Engine's variables), the Code Engine
//! binding table of an app, and unbind-all.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::{json, Value};

use super::openapi::CfError;
use super::State;
use crate::api::{base_url, flag, json};
use crate::error::ApiResult;
use crate::service::{bindings, env, keys, Caller};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v2/apps/{guid}/env", web::get().to(app_env))
        .route(
            "/v2/apps/{guid}/service_binding_table",
            web::get().to(binding_table),
        )
        .route(
            "/v2/apps/{guid}/service_bindings",
            web::delete().to(unbind_all),
        )
        .route(
            "/v2/apps/{guid}/unused_credentials",
            web::get().to(unused_credentials),
        );
}

/// A credential an app could bind with (Code Engine's "Existing secret" list).
#[derive(Serialize, utoipa::ToSchema)]
pub struct UnusedCredential {
    pub guid: String,
    pub name: String,
    /// `service_key` (bind with `service_key_guid`) or `service_binding` (another app's
    /// binding: bind with `credential_binding_guid`).
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub service_instance_guid: String,
    pub role: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UnusedCredentials {
    pub resources: Vec<UnusedCredential>,
}

#[utoipa::path(
    get,
    path = "/v2/apps/{guid}/unused_credentials",
    tag = "service_bindings",
    operation_id = "listAppUnusedCredentials",
    summary = "Credentials the app does not use yet (Code Engine)",
    description = "The service keys of the instances in the app's space (or of one instance) that no binding of the app uses, then the credentials other apps' bindings got from the broker: what the app can bind with (`service_key_guid`, `credential_binding_guid`). Credentials themselves are not shown.",
    params(
        ("guid" = String, Path, description = "The app's guid"),
        ("service_instance_guid" = Option<String>, Query, description = "Only this instance's credentials"),
    ),
    responses(
        (status = 200, description = "The credentials, oldest first", body = UnusedCredentials),
        (status = 404, description = "No such app (`CF-AppNotFound`) or instance (`CF-ServiceInstanceNotFound`)", body = CfError),
    )
)]
async fn unused_credentials(
    state: State,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let instance = form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "service_instance_guid")
        .map(|(_, v)| v.into_owned());
    let offered = keys::unused_by_app(&state, &caller, &path, instance.as_deref()).await?;
    let resources = offered
        .into_iter()
        .map(|o| UnusedCredential {
            guid: o.guid,
            name: o.name,
            kind: o.kind.as_str(),
            service_instance_guid: o.service_instance_guid,
            role: o.role,
        })
        .collect();
    Ok(json(StatusCode::OK, &UnusedCredentials { resources }))
}

async fn app_env(
    state: State,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let ab = env::load(&state, &caller, &path, true).await?;
    let environment: Value =
        serde_json::from_str(&ab.app.environment_json).unwrap_or_else(|_| json!({}));
    let api = base_url(&req, state.config.external_url.as_deref());
    Ok(json(
        StatusCode::OK,
        &json!({
            "staging_env_json": {},
            "running_env_json": {},
            "environment_json": environment,
            "system_env_json": { "VCAP_SERVICES": env::vcap_services(&ab) },
            "application_env_json": { "VCAP_APPLICATION": env::vcap_application(&ab, &api) },
            "code_engine_env_json": env::code_engine_env(&ab),
        }),
    ))
}

/// A row of Code Engine's "Service Bindings" table (seed 000).
#[derive(Serialize)]
pub struct TableRow {
    pub name: Option<String>,
    pub guid: String,
    pub service_instance: String,
    pub service_instance_guid: String,
    pub service_type: String,
    /// The role, or the name of the existing credential the binding uses.
    pub role_or_credential: Option<String>,
    /// The role of the credential (also of an existing credential the binding reuses).
    pub role: Option<String>,
    pub prefix: Option<String>,
    pub state: String,
}

pub fn table_rows(ab: &env::AppBindings) -> Vec<TableRow> {
    ab.entries
        .iter()
        .map(|e| TableRow {
            name: e.binding.name.clone(),
            guid: e.binding.guid.clone(),
            service_instance: e.instance.name.clone(),
            service_instance_guid: e.instance.guid.clone(),
            service_type: e.label(),
            role_or_credential: e.key_name.clone().or_else(|| e.binding.role.clone()),
            role: e.role().map(str::to_string),
            prefix: e.binding.prefix.clone(),
            state: format!(
                "{} {}",
                e.binding.last_operation_type.as_deref().unwrap_or("create"),
                e.binding
                    .last_operation_state
                    .as_deref()
                    .unwrap_or("succeeded")
            ),
        })
        .collect()
}

async fn binding_table(
    state: State,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let ab = env::load(&state, &caller, &path, false).await?;
    Ok(json(
        StatusCode::OK,
        &json!({ "app_guid": ab.app.guid, "app_name": ab.app.name, "resources": table_rows(&ab) }),
    ))
}

/// `DELETE /v2/apps/:guid/service_bindings`: unbind all (200 when every binding is gone or
/// going, 207 with per-binding errors otherwise).
async fn unbind_all(
    state: State,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let results =
        bindings::unbind_all(&state, &caller, &path, flag(&req, "accepts_incomplete")).await?;
    let failed = results.iter().filter(|r| r.state == "failed").count();
    let status = if failed == 0 {
        StatusCode::OK
    } else {
        StatusCode::MULTI_STATUS
    };
    Ok(json(
        status,
        &json!({
            "total": results.len(),
            "deleted": results.iter().filter(|r| r.state == "deleted").count(),
            "in_progress": results.iter().filter(|r| r.state == "in progress").count(),
            "failed": failed,
            "resources": results,
        }),
    ))
}
