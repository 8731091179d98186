//! `/v2/service_bindings` and the nested binding lists.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::openapi::{CfError, CreateServiceBinding, DeleteAccepted};
use super::State;
use crate::api::query::ListParams;
use crate::api::render::{raw_json, EmptyObject, Link, MetadataRef, Resource, Ts, REDACTED};
use crate::api::{flag, json, json_object, strict_flag, with_warnings, Fields};
use crate::db::repo;
use crate::db::repo::bindings::{BindingView, Scope};
use crate::db::repo::{Filter, FilterOp};
use crate::error::{ApiError, ApiResult};
use crate::operation::OperationState;
use crate::service::bindings::{self, CreateBinding, Deleted, Shown};
use crate::service::Caller;

#[derive(Serialize, utoipa::ToSchema)]
pub struct BindingEntity<'a> {
    pub app_guid: &'a str,
    pub service_instance_guid: &'a str,
    /// The broker's credentials, or `{"redacted_message": "[PRIVATE DATA HIDDEN]"}` for a
    /// caller who may not see them.
    #[schema(value_type = Object)]
    pub credentials: &'a RawValue,
    pub binding_options: EmptyObject,
    #[schema(schema_with = super::openapi::null)]
    pub gateway_data: Option<()>,
    pub gateway_name: &'static str,
    pub syslog_drain_url: Option<&'a str>,
    pub volume_mounts: VolumeMounts,
    pub name: Option<&'a str>,
    pub last_operation: BindingOperation<'a>,
    pub app_url: Link<'a>,
    pub service_instance_url: Link<'a>,
    pub service_binding_parameters_url: Link<'a>,
    // tether's Code Engine extensions, rendered only for bindings created with one of them, so
    // that CF clients see exactly CC's document otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_key_guid: Option<Option<&'a str>>,
    /// The binding whose credential this one reuses (Code Engine's "existing secret").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_binding_guid: Option<&'a str>,
    // `inline-relations-depth`: the app and instance, embedded (rendered once per page).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Resource<super::apps::AppEntity>)]
    pub app: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Resource<super::instances::InstanceEntity>)]
    pub service_instance: Option<&'a RawValue>,
}

/// A binding's `last_operation` (the same document as an instance's).
#[derive(Serialize, utoipa::ToSchema)]
pub struct BindingOperation<'a> {
    #[serde(rename = "type")]
    pub op_type: &'a str,
    pub state: &'a str,
    pub description: &'a str,
    pub updated_at: Ts,
    pub created_at: Ts,
}

/// `volume_mounts` as CC shows them.
pub enum VolumeMounts {
    None,
    Censored(Box<RawValue>),
}

impl Serialize for VolumeMounts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            VolumeMounts::None => s.collect_seq(std::iter::empty::<()>()),
            VolumeMounts::Censored(raw) => raw.serialize(s),
        }
    }
}

/// CC shows only `container_dir`, `mode` and `device_type` of each mount (the driver and
/// device config can hold secrets).
fn censor_volume_mounts(stored: &str) -> VolumeMounts {
    if stored == "[]" {
        return VolumeMounts::None;
    }
    let mounts: Vec<Value> = serde_json::from_str(stored).unwrap_or_default();
    if mounts.is_empty() {
        return VolumeMounts::None;
    }
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
    VolumeMounts::Censored(raw_json(&Value::Array(shown).to_string(), "[]"))
}

/// Stored JSON object text as a borrowed raw value (checked, not copied); `{}` if it is not
/// valid JSON, which it always is when tether stored it.
fn raw_object(text: &str) -> &RawValue {
    serde_json::from_str::<&RawValue>(text).unwrap_or_else(|_| empty_object())
}

fn empty_object() -> &'static RawValue {
    static EMPTY: std::sync::OnceLock<Box<RawValue>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| raw_json("{}", "{}"))
}

fn redacted() -> &'static RawValue {
    static SHOWN: std::sync::OnceLock<Box<RawValue>> = std::sync::OnceLock::new();
    SHOWN.get_or_init(|| raw_json(REDACTED, "{}"))
}

pub fn render_binding(
    view: &BindingView,
    show_credentials: bool,
) -> Resource<BindingEntity<'_>, MetadataRef<'_>> {
    let b = &view.binding;
    let op_created = b.last_operation_created_at.unwrap_or(b.created_at);
    let op_updated = b.last_operation_updated_at.unwrap_or(b.updated_at);
    Resource {
        metadata: MetadataRef {
            guid: &b.guid,
            url: Link("/v2/service_bindings/", &b.guid, ""),
            created_at: Ts(b.created_at),
            updated_at: Ts(b.updated_at),
        },
        entity: BindingEntity {
            app_guid: &b.app_guid,
            service_instance_guid: &b.service_instance_guid,
            credentials: if show_credentials {
                raw_object(&b.credentials)
            } else {
                redacted()
            },
            binding_options: EmptyObject,
            gateway_data: None,
            gateway_name: "",
            syslog_drain_url: b.syslog_drain_url.as_deref(),
            volume_mounts: censor_volume_mounts(&b.volume_mounts),
            name: b.shown_name(),
            last_operation: BindingOperation {
                op_type: b.last_operation_type.as_deref().unwrap_or("create"),
                state: b.last_operation_state.as_deref().unwrap_or("succeeded"),
                description: b.last_operation_description.as_deref().unwrap_or_default(),
                updated_at: Ts(op_updated),
                created_at: Ts(op_created),
            },
            app_url: Link("/v2/apps/", &b.app_guid, ""),
            service_instance_url: if view.user_provided {
                Link(
                    "/v2/user_provided_service_instances/",
                    &b.service_instance_guid,
                    "",
                )
            } else {
                Link("/v2/service_instances/", &b.service_instance_guid, "")
            },
            service_binding_parameters_url: Link("/v2/service_bindings/", &b.guid, "/parameters"),
            role: b.extended.then_some(b.role.as_deref()),
            prefix: b.extended.then_some(b.prefix.as_deref()),
            service_key_guid: b.extended.then_some(b.service_key_guid.as_deref()),
            credential_binding_guid: b.credential_binding_guid.as_deref(),
            app: None,
            service_instance: None,
        },
    }
}

fn render_shown(shown: &Shown) -> Resource<BindingEntity<'_>, MetadataRef<'_>> {
    render_binding(&shown.view, shown.show_credentials)
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    // A scope: its prefix is compared as a string, and only the rest of the path (`/{guid}`,
    // 37 bytes instead of 57) goes through the router's regex, the largest part of a
    // binding get's routing cost (perf: the regex ~4% of a get's samples). Paths under the
    // prefix that match no route here fall through to the application's 404, as before.
    cfg.service(
        web::scope("/v2/service_bindings")
            .route("", web::get().to(list))
            .route("", web::post().to(create))
            .route("/{guid}", web::get().to(get))
            .route("/{guid}", web::delete().to(delete))
            .route("/{guid}/parameters", web::get().to(parameters)),
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

/// The body of `POST /v2/service_bindings` (`accepts_incomplete`, from the query, is left
/// `false`). Like CC's `CreateMessage`, decoded before anything else is looked at.
fn create_input(body: &[u8]) -> ApiResult<CreateBinding> {
    let obj = json_object(body)?;
    let f = Fields(&obj);
    let input = CreateBinding {
        app_guid: f.required_str("app_guid")?.to_string(),
        service_instance_guid: f.required_str("service_instance_guid")?.to_string(),
        name: f.opt_str("name")?.map(str::to_string),
        parameters: f.opt_object("parameters")?.cloned(),
        accepts_incomplete: false,
        role: f.opt_str("role")?.map(str::to_string),
        prefix: f.opt_str("prefix")?.map(str::to_string),
        credential_binding: f.opt_str("credential_binding_guid")?.map(str::to_string),
        service_key: match (f.opt_str("service_key_guid")?, f.opt_str("service_key_name")?) {
            (Some(_), Some(_)) => {
                return Err(ApiError::MessageParseError(
                    "Field: service_key_guid, Error: give service_key_guid or service_key_name, not both".into(),
                ))
            }
            (g, n) => g.or(n).map(str::to_string),
        },
    };
    if input.credential_binding.is_some() && input.service_key.is_some() {
        return Err(ApiError::MessageParseError(
            "Field: credential_binding_guid, Error: give a service key or a binding's credential, not both".into(),
        ));
    }
    Ok(input)
}

#[utoipa::path(
    post,
    path = "/v2/service_bindings",
    tag = "service_bindings",
    operation_id = "createServiceBinding",
    summary = "Bind a service instance to an app",
    request_body(content = CreateServiceBinding, content_type = "application/json"),
    params(
        ("accepts_incomplete" = Option<bool>, Query, description = "Whether the broker may bind asynchronously (then the answer is 202 and `last_operation` tells when it is done)"),
    ),
    responses(
        (status = 201, description = "Bound", body = Resource<BindingEntity, MetadataRef>, headers(("Location" = String, description = "The binding's path"), ("X-Cf-Warnings" = String, description = "URL-encoded warnings, comma-separated"))),
        (status = 202, description = "The broker is binding (`accepts_incomplete=true`)", body = Resource<BindingEntity, MetadataRef>, headers(("Location" = String, description = "The binding's path"))),
        (status = 400, description = "Invalid request (also an `accepts_incomplete` that is neither `true` nor `false`), unbindable instance, or the app is already bound to it", body = CfError),
        (status = 409, description = "An operation on the instance is in progress", body = CfError),
        (status = 502, description = "The broker failed (with `http`)", body = CfError),
    )
)]
async fn create(
    state: State,
    caller: Caller,
    req: HttpRequest,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let mut input = create_input(&body)?;
    input.accepts_incomplete = strict_flag(&req, "accepts_incomplete")?;
    let shown = bindings::create(&state, &caller, input).await?;
    let status = if shown.view.binding.last_operation().in_progress() {
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

#[utoipa::path(
    get,
    path = "/v2/service_bindings/{guid}",
    tag = "service_bindings",
    operation_id = "getServiceBinding",
    summary = "Get a service binding",
    params(
        ("guid" = String, Path, description = "The binding's guid"),
        ("inline-relations-depth" = Option<u8>, Query, maximum = 2, description = "Embeds the app and the service instance (and at depth 2 their spaces and the plan)"),
    ),
    responses(
        (status = 200, description = "The binding", body = Resource<BindingEntity, MetadataRef>),
        (status = 404, description = "No such binding (`CF-ServiceBindingNotFound`)", body = CfError),
    )
)]
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
    let rows = [(shown.view, shown.show_credentials)];
    let related = super::inline::Embedded::load(&state, &rows, depth).await?;
    Ok(json(
        StatusCode::OK,
        &related.binding(&rows[0].0, rows[0].1),
    ))
}

#[utoipa::path(
    delete,
    path = "/v2/service_bindings/{guid}",
    tag = "service_bindings",
    operation_id = "deleteServiceBinding",
    summary = "Unbind",
    params(
        ("guid" = String, Path, description = "The binding's guid"),
        ("accepts_incomplete" = Option<bool>, Query, description = "Whether the broker may unbind asynchronously (then the answer is 202 with the binding)"),
        ("async" = Option<bool>, Query, description = "Unbind in a job (202 with the job) unless `accepts_incomplete` is given"),
    ),
    responses(
        (status = 204, description = "Unbound"),
        (status = 202, description = "Unbinding: the binding (broker still unbinding) or the job (`async=true`)", body = DeleteAccepted),
        (status = 400, description = "`accepts_incomplete` is neither `true` nor `false` (`CF-InvalidRequest`)", body = CfError),
        (status = 404, description = "No such binding (`CF-ServiceBindingNotFound`)", body = CfError),
        (status = 409, description = "An operation on the binding is in progress", body = CfError),
        (status = 502, description = "The broker failed (with `http`)", body = CfError),
    )
)]
async fn delete(
    state: State,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let accepts_incomplete = match strict_flag(&req, "accepts_incomplete") {
        Ok(v) => v,
        Err(invalid) => {
            // CC finds the binding (404, 403) before it reads the flag.
            bindings::get(&state, &caller, &path).await?;
            return Err(invalid);
        }
    };
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
#[utoipa::path(
    delete,
    path = "/v2/apps/{guid}/service_bindings/{binding}",
    tag = "service_bindings",
    operation_id = "deleteAppServiceBinding",
    summary = "Unbind (through the app; deprecated)",
    params(
        ("guid" = String, Path, description = "The app's guid"),
        ("binding" = String, Path, description = "The binding's guid"),
    ),
    responses(
        (status = 204, description = "Unbound"),
        (status = 202, description = "The broker is unbinding", body = Resource<BindingEntity, MetadataRef>),
        (status = 404, description = "No such binding of this app (`CF-ServiceBindingNotFound`)", body = CfError),
        (status = 502, description = "The broker failed (with `http`)", body = CfError),
    )
)]
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

#[utoipa::path(
    get,
    path = "/v2/service_bindings/{guid}/parameters",
    tag = "service_bindings",
    operation_id = "getServiceBindingParameters",
    summary = "Get a binding's parameters from the broker",
    params(
        ("guid" = String, Path, description = "The binding's guid"),
    ),
    responses(
        (status = 200, description = "The parameters the broker reports", body = Object),
        (status = 400, description = "The service does not support fetching them (`CF-ServiceFetchBindingParametersNotSupported`)", body = CfError),
        (status = 404, description = "No such binding (`CF-ServiceBindingNotFound`)", body = CfError),
        (status = 502, description = "The broker failed (with `http`)", body = CfError),
    )
)]
async fn parameters(
    state: State,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let params = bindings::parameters(&state, &caller, &path).await?;
    Ok(json(StatusCode::OK, &params))
}

/// The values `q=last_operation_state` takes: the states a binding's `last_operation` shows.
pub const OPERATION_STATES: [&str; 3] = [
    OperationState::InProgress.as_str(),
    OperationState::Succeeded.as_str(),
    OperationState::Failed.as_str(),
];

/// `q=last_operation_state` (tether's extension, see [`repo::bindings::STATE_FILTER`]) with `:`
/// or ` IN ` and states only: a misspelt state must be refused, not answered with an empty
/// list that reads as "nothing failed". Worded as CC words its other list-parameter errors.
fn check_state_filters(filters: &[Filter]) -> ApiResult<()> {
    let key = repo::bindings::STATE_FILTER;
    for filter in filters.iter().filter(|f| f.key == key) {
        if !matches!(filter.op, FilterOp::Eq | FilterOp::In) {
            return Err(ApiError::BadQueryParameter(format!(
                "{key} must be filtered with ':' or ' IN '"
            )));
        }
        if let Some(bad) = filter
            .values
            .iter()
            .find(|v| OperationState::parse(v).is_none())
        {
            return Err(ApiError::BadQueryParameter(format!(
                "{key} must be 'in progress', 'succeeded' or 'failed' but was '{bad}'"
            )));
        }
    }
    Ok(())
}

async fn list_scoped(
    state: &State,
    caller: &Caller,
    req: &HttpRequest,
    scope: Scope<'_>,
    path: &str,
) -> ApiResult<HttpResponse> {
    let params = ListParams::parse(req.query_string(), repo::bindings::FILTERS)?;
    check_state_filters(&params.filters)?;
    let loaded = bindings::list(state, caller, &params.query(false)?, scope).await?;
    let depth = params.inline_depth.unwrap_or(0);
    if depth == 0 {
        let items: Vec<_> = loaded
            .rows
            .iter()
            .map(|(view, show)| render_binding(view, *show))
            .collect();
        return Ok(crate::api::page(&params, path, loaded.total, items, &[]));
    }
    let related = super::inline::Embedded::load(state, &loaded.rows, depth).await?;
    let items: Vec<_> = loaded
        .rows
        .iter()
        .map(|(view, show)| related.binding(view, *show))
        .collect();
    Ok(crate::api::page(&params, path, loaded.total, items, &[]))
}

#[utoipa::path(
    get,
    path = "/v2/service_bindings",
    tag = "service_bindings",
    operation_id = "listServiceBindings",
    summary = "List service bindings",
    params(
        super::openapi::BindingsQuery,
    ),
    responses(
        (status = 200, description = "A page of bindings", body = crate::api::render::PageDoc<Resource<BindingEntity, MetadataRef>>),
        (status = 400, description = "A bad list parameter (`CF-BadQueryParameter`)", body = CfError),
    )
)]
async fn list(state: State, caller: Caller, req: HttpRequest) -> ApiResult<HttpResponse> {
    list_scoped(&state, &caller, &req, Scope::All, "/v2/service_bindings").await
}

#[utoipa::path(
    get,
    path = "/v2/apps/{guid}/service_bindings",
    tag = "service_bindings",
    operation_id = "listAppServiceBindings",
    summary = "List an app's service bindings",
    params(
        ("guid" = String, Path, description = "The app's guid"),
        super::openapi::BindingsQuery,
    ),
    responses(
        (status = 200, description = "A page of the app's bindings", body = crate::api::render::PageDoc<Resource<BindingEntity, MetadataRef>>),
        (status = 400, description = "A bad list parameter (`CF-BadQueryParameter`)", body = CfError),
        (status = 404, description = "No such app (`CF-AppNotFound`)", body = CfError),
    )
)]
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

#[utoipa::path(
    get,
    path = "/v2/service_instances/{guid}/service_bindings",
    tag = "service_bindings",
    operation_id = "listServiceInstanceServiceBindings",
    summary = "List a service instance's bindings",
    params(
        ("guid" = String, Path, description = "The service instance's guid"),
        super::openapi::BindingsQuery,
    ),
    responses(
        (status = 200, description = "A page of the instance's bindings", body = crate::api::render::PageDoc<Resource<BindingEntity, MetadataRef>>),
        (status = 400, description = "A bad list parameter (`CF-BadQueryParameter`)", body = CfError),
        (status = 404, description = "No such service instance (`CF-ServiceInstanceNotFound`)", body = CfError),
    )
)]
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

#[utoipa::path(
    get,
    path = "/v2/user_provided_service_instances/{guid}/service_bindings",
    tag = "service_bindings",
    operation_id = "listUserProvidedServiceInstanceServiceBindings",
    summary = "List a user-provided service instance's bindings",
    params(
        ("guid" = String, Path, description = "The user-provided service instance's guid"),
        super::openapi::BindingsQuery,
    ),
    responses(
        (status = 200, description = "A page of the instance's bindings", body = crate::api::render::PageDoc<Resource<BindingEntity, MetadataRef>>),
        (status = 400, description = "A bad list parameter (`CF-BadQueryParameter`)", body = CfError),
        (status = 404, description = "No such user-provided service instance (`CF-UserProvidedServiceInstanceNotFound`)", body = CfError),
    )
)]
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::body_properties::decoder_properties;
    use serde_json::Map;

    decoder_properties!(create_body {
        decode: create_input,
        fields: &[
            ("app_guid", Kind::RequiredStr),
            ("service_instance_guid", Kind::RequiredStr),
            ("name", Kind::Str),
            ("parameters", Kind::Object),
            ("role", Kind::Str),
            ("prefix", Kind::Str),
            ("credential_binding_guid", Kind::Str),
            ("service_key_guid", Kind::Str),
            ("service_key_name", Kind::Str),
        ],
        at_most_one_of: &[&[
            "service_key_guid",
            "service_key_name",
            "credential_binding_guid"
        ]],
        decoded_as: |i: &CreateBinding, sent: &Map<String, Value>| {
            // The key is one field, whichever of the two named it.
            let key_field = ["service_key_guid", "service_key_name"]
                .into_iter()
                .find(|k| sent.get(*k).is_some_and(|v| !v.is_null()))
                .unwrap_or("service_key_guid");
            assert!(
                !i.accepts_incomplete,
                "the body never says accepts_incomplete"
            );
            decoded([
                ("app_guid", Some(Value::from(i.app_guid.clone()))),
                (
                    "service_instance_guid",
                    Some(Value::from(i.service_instance_guid.clone())),
                ),
                ("name", i.name.clone().map(Value::from)),
                ("parameters", i.parameters.clone().map(Value::Object)),
                ("role", i.role.clone().map(Value::from)),
                ("prefix", i.prefix.clone().map(Value::from)),
                (
                    "credential_binding_guid",
                    i.credential_binding.clone().map(Value::from),
                ),
                (key_field, i.service_key.clone().map(Value::from)),
            ])
        },
    });

    mod create_body_credentials {
        use super::*;
        use crate::api::body_properties::{self as props, text};
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(props::config())]

            /// Two credentials named at once (a key by guid and by name, or a key and another
            /// binding's credential) are a parse error naming the field, whatever the values.
            #[test]
            fn two_credentials_are_a_parse_error(
                a in text(),
                b in text(),
                pair in prop::sample::select(vec![
                    ("service_key_guid", "service_key_name", "service_key_guid"),
                    ("credential_binding_guid", "service_key_guid", "credential_binding_guid"),
                    ("credential_binding_guid", "service_key_name", "credential_binding_guid"),
                ]),
            ) {
                let (first, second, named) = pair;
                let body = serde_json::json!({
                    "app_guid": "app",
                    "service_instance_guid": "si",
                    first: a,
                    second: b,
                });
                let body = serde_json::to_vec(&body).unwrap();
                props::check_parse_error(&create_input(&body), Some(named))?;
            }
        }
    }
}
