//! `/v2/service_bindings` and the nested binding lists.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::instances::LastOperation;
use super::State;
use crate::api::query::ListParams;
use crate::api::render::{raw_json, EmptyObject, Metadata, Resource, Ts, REDACTED};
use crate::api::{flag, json, json_object, with_warnings, Fields};
use crate::db::repo;
use crate::db::repo::bindings::{BindingView, Scope};
use crate::error::{ApiError, ApiResult};
use crate::service::bindings::{self, CreateBinding, Deleted, Shown};
use crate::service::Caller;

#[derive(Serialize)]
pub struct BindingEntity {
    pub app_guid: String,
    pub service_instance_guid: String,
    pub credentials: Box<RawValue>,
    pub binding_options: EmptyObject,
    pub gateway_data: Option<()>,
    pub gateway_name: &'static str,
    pub syslog_drain_url: Option<String>,
    pub volume_mounts: Box<RawValue>,
    pub name: Option<String>,
    pub last_operation: LastOperation,
    pub app_url: String,
    pub service_instance_url: String,
    pub service_binding_parameters_url: String,
    // tether's Code Engine extensions, rendered only for bindings created with one of them, so
    // that CF clients see exactly CC's document otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_key_guid: Option<Option<String>>,
}

/// CC shows only `container_dir`, `mode` and `device_type` of each mount (the driver and
/// device config can hold secrets).
fn censor_volume_mounts(stored: &str) -> Box<RawValue> {
    if stored == "[]" {
        return raw_json("[]", "[]");
    }
    let mounts: Vec<Value> = serde_json::from_str(stored).unwrap_or_default();
    let shown: Vec<Value> = mounts
        .into_iter()
        .map(|m| {
            let mut out = serde_json::Map::new();
            for key in ["container_dir", "mode", "device_type"] {
                if let Some(v) = m.get(key) {
                    out.insert(key.to_string(), v.clone());
                }
            }
            Value::Object(out)
        })
        .collect();
    raw_json(&Value::Array(shown).to_string(), "[]")
}

pub fn render_binding(view: &BindingView, show_credentials: bool) -> Resource<BindingEntity> {
    let b = &view.binding;
    let op_created = b.last_operation_created_at.unwrap_or(b.created_at);
    let op_updated = b.last_operation_updated_at.unwrap_or(b.updated_at);
    Resource {
        metadata: Metadata::new("service_bindings", &b.guid, b.created_at, b.updated_at),
        entity: BindingEntity {
            app_guid: b.app_guid.clone(),
            service_instance_guid: b.service_instance_guid.clone(),
            credentials: if show_credentials {
                raw_json(&b.credentials, "{}")
            } else {
                raw_json(REDACTED, "{}")
            },
            binding_options: EmptyObject,
            gateway_data: None,
            gateway_name: "",
            syslog_drain_url: b.syslog_drain_url.clone(),
            volume_mounts: censor_volume_mounts(&b.volume_mounts),
            name: b.name.clone(),
            last_operation: LastOperation {
                op_type: b
                    .last_operation_type
                    .clone()
                    .unwrap_or_else(|| "create".into()),
                state: b
                    .last_operation_state
                    .clone()
                    .unwrap_or_else(|| "succeeded".into()),
                description: b.last_operation_description.clone().unwrap_or_default(),
                updated_at: Ts(op_updated),
                created_at: Ts(op_created),
            },
            app_url: format!("/v2/apps/{}", b.app_guid),
            service_instance_url: if view.user_provided {
                format!(
                    "/v2/user_provided_service_instances/{}",
                    b.service_instance_guid
                )
            } else {
                format!("/v2/service_instances/{}", b.service_instance_guid)
            },
            service_binding_parameters_url: format!("/v2/service_bindings/{}/parameters", b.guid),
            role: b.extended.then(|| b.role.clone()),
            prefix: b.extended.then(|| b.prefix.clone()),
            service_key_guid: b.extended.then(|| b.service_key_guid.clone()),
        },
    }
}

fn render_shown(shown: &Shown) -> Resource<BindingEntity> {
    render_binding(&shown.view, shown.show_credentials)
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v2/service_bindings", web::get().to(list))
        .route("/v2/service_bindings", web::post().to(create))
        .route("/v2/service_bindings/{guid}", web::get().to(get))
        .route("/v2/service_bindings/{guid}", web::delete().to(delete))
        .route(
            "/v2/service_bindings/{guid}/parameters",
            web::get().to(parameters),
        )
        .route(
            "/v2/apps/{guid}/service_bindings",
            web::get().to(list_for_app),
        )
        .route(
            "/v2/apps/{guid}/service_bindings/{binding}",
            web::delete().to(delete_from_app),
        )
        .route(
            "/v2/service_instances/{guid}/service_bindings",
            web::get().to(list_for_instance),
        )
        .route(
            "/v2/user_provided_service_instances/{guid}/service_bindings",
            web::get().to(list_for_upsi),
        );
}

async fn create(
    state: State,
    caller: Caller,
    req: HttpRequest,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let obj = json_object(&body)?;
    let f = Fields(&obj);
    let input = CreateBinding {
        app_guid: f.required_str("app_guid")?.to_string(),
        service_instance_guid: f.required_str("service_instance_guid")?.to_string(),
        name: f.opt_str("name")?.map(str::to_string),
        parameters: f.opt_object("parameters")?.cloned(),
        accepts_incomplete: flag(&req, "accepts_incomplete"),
        role: f.opt_str("role")?.map(str::to_string),
        prefix: f.opt_str("prefix")?.map(str::to_string),
        service_key: match (f.opt_str("service_key_guid")?, f.opt_str("service_key_name")?) {
            (Some(_), Some(_)) => {
                return Err(ApiError::MessageParseError(
                    "Field: service_key_guid, Error: give service_key_guid or service_key_name, not both".into(),
                ))
            }
            (g, n) => g.or(n).map(str::to_string),
        },
    };
    let shown = bindings::create(&state, &caller, input).await?;
    let status = if shown.view.binding.operation_in_progress() {
        StatusCode::ACCEPTED
    } else {
        StatusCode::CREATED
    };
    let mut resp = json(status, &render_shown(&shown));
    super::set_location(
        &mut resp,
        &format!("/v2/service_bindings/{}", shown.view.binding.guid),
    );
    Ok(with_warnings(resp, &shown.warnings))
}

async fn get(
    state: State,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let depth = super::depth_of(&req)?;
    let shown = bindings::get(&state, &caller, &path).await?;
    if depth == 0 {
        return Ok(json(StatusCode::OK, &render_shown(&shown)));
    }
    let v = super::with_relations(
        &state,
        &caller,
        &render_shown(&shown),
        super::Inline::Binding,
        depth,
    )
    .await?;
    Ok(json(StatusCode::OK, &v))
}

async fn delete(
    state: State,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let accepts_incomplete = flag(&req, "accepts_incomplete");
    if flag(&req, "async") && !accepts_incomplete {
        let job = bindings::delete_as_job(&state, &caller, &path).await?;
        return Ok(json(StatusCode::ACCEPTED, &super::jobs::render_job(&job)));
    }
    match bindings::delete(&state, &caller, &path, accepts_incomplete).await? {
        Deleted::Gone { warnings } => {
            Ok(with_warnings(HttpResponse::NoContent().finish(), &warnings))
        }
        Deleted::InProgress(shown) => {
            let mut resp = json(StatusCode::ACCEPTED, &render_shown(&shown));
            super::set_location(
                &mut resp,
                &format!("/v2/service_bindings/{}", shown.view.binding.guid),
            );
            Ok(resp)
        }
    }
}

/// The deprecated `DELETE /v2/apps/:app/service_bindings/:binding` (cf-client still uses it).
async fn delete_from_app(
    state: State,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (app, binding) = path.into_inner();
    let shown = bindings::get(&state, &caller, &binding).await?;
    if shown.view.binding.app_guid != app {
        return Err(ApiError::ServiceBindingNotFound(binding));
    }
    match bindings::delete(&state, &caller, &binding, false).await? {
        Deleted::Gone { warnings } => {
            Ok(with_warnings(HttpResponse::NoContent().finish(), &warnings))
        }
        Deleted::InProgress(shown) => Ok(json(StatusCode::ACCEPTED, &render_shown(&shown))),
    }
}

async fn parameters(
    state: State,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let params = bindings::parameters(&state, &caller, &path).await?;
    Ok(json(StatusCode::OK, &params))
}

async fn list_scoped(
    state: &State,
    caller: &Caller,
    req: &HttpRequest,
    scope: Scope<'_>,
    path: &str,
) -> ApiResult<HttpResponse> {
    let params = ListParams::parse(req.query_string(), repo::bindings::FILTERS)?;
    let loaded = bindings::list(state, caller, &params, scope).await?;
    let items: Vec<_> = loaded
        .rows
        .iter()
        .map(|(view, show)| render_binding(view, *show))
        .collect();
    super::page_with_relations(
        state,
        caller,
        &params,
        path,
        loaded.total,
        items,
        &[],
        super::Inline::Binding,
    )
    .await
}

async fn list(state: State, caller: Caller, req: HttpRequest) -> ApiResult<HttpResponse> {
    list_scoped(&state, &caller, &req, Scope::All, "/v2/service_bindings").await
}

async fn list_for_app(
    state: State,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    bindings::require_app(&state, &caller, &path).await?;
    list_scoped(
        &state,
        &caller,
        &req,
        Scope::App(&path),
        &format!("/v2/apps/{path}/service_bindings"),
    )
    .await
}

async fn list_for_instance(
    state: State,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    bindings::require_instance(&state, &caller, &path, false).await?;
    list_scoped(
        &state,
        &caller,
        &req,
        Scope::Instance(&path),
        &format!("/v2/service_instances/{path}/service_bindings"),
    )
    .await
}

async fn list_for_upsi(
    state: State,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    bindings::require_instance(&state, &caller, &path, true).await?;
    list_scoped(
        &state,
        &caller,
        &req,
        Scope::Instance(&path),
        &format!("/v2/user_provided_service_instances/{path}/service_bindings"),
    )
    .await
}
