//! `/v2/service_instances`, `/v2/user_provided_service_instances`,
//! `/v2/spaces/:guid/service_instances`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::value::RawValue;

use super::openapi::{CfError, CreateServiceInstance};
use super::State;
use crate::api::query::ListParams;
use crate::api::render::{raw_json, EmptyObject, Metadata, Resource, Ts, REDACTED};
use crate::api::{flag, json, json_object, page, Fields};
use crate::app::AppState;
use crate::db::repo;
use crate::db::repo::instances::Kind;
use crate::error::{ApiError, ApiResult};
use crate::service::instances::{
    self, CreateInstance, InstanceDeleted, InstanceView, UpdateInstance, UpsiInput,
};
use crate::service::Caller;

#[derive(Serialize, utoipa::ToSchema)]
pub struct LastOperation {
    #[serde(rename = "type")]
    pub op_type: String,
    pub state: String,
    pub description: String,
    pub updated_at: Ts,
    pub created_at: Ts,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ManagedEntity {
    pub name: String,
    pub credentials: EmptyObject,
    pub service_plan_guid: Option<String>,
    pub space_guid: String,
    #[schema(schema_with = super::openapi::null)]
    pub gateway_data: Option<()>,
    pub dashboard_url: Option<String>,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub last_operation: LastOperation,
    #[schema(value_type = Vec<String>)]
    pub tags: Box<RawValue>,
    pub maintenance_info: EmptyObject,
    pub service_guid: Option<String>,
    pub space_url: String,
    pub service_plan_url: Option<String>,
    pub service_bindings_url: String,
    pub service_keys_url: String,
    pub routes_url: String,
    pub shared_from_url: String,
    pub shared_to_url: String,
    pub service_instance_parameters_url: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UserProvidedEntity {
    pub name: String,
    #[schema(value_type = Object)]
    pub credentials: Box<RawValue>,
    pub space_guid: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub syslog_drain_url: String,
    pub route_service_url: String,
    #[schema(value_type = Vec<String>)]
    pub tags: Box<RawValue>,
    pub space_url: String,
    pub service_bindings_url: String,
    pub routes_url: String,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum InstanceEntity {
    Managed(Box<ManagedEntity>),
    UserProvided(Box<UserProvidedEntity>),
}

pub fn render_instance(v: &InstanceView) -> Resource<InstanceEntity> {
    let i = &v.instance;
    if i.is_user_provided {
        let base = format!("/v2/user_provided_service_instances/{}", i.guid);
        return Resource {
            metadata: Metadata::new(
                "user_provided_service_instances",
                &i.guid,
                i.created_at,
                i.updated_at,
            ),
            entity: InstanceEntity::UserProvided(Box::new(UserProvidedEntity {
                name: i.name.clone(),
                credentials: if v.show_credentials {
                    raw_json(i.credentials.as_deref().unwrap_or("{}"), "{}")
                } else {
                    raw_json(REDACTED, "{}")
                },
                space_guid: i.space_guid.clone(),
                kind: "user_provided_service_instance",
                syslog_drain_url: i.syslog_drain_url.clone().unwrap_or_default(),
                route_service_url: i.route_service_url.clone().unwrap_or_default(),
                tags: raw_json(&i.tags, "[]"),
                space_url: format!("/v2/spaces/{}", i.space_guid),
                service_bindings_url: format!("{base}/service_bindings"),
                routes_url: format!("{base}/routes"),
            })),
        };
    }
    let base = format!("/v2/service_instances/{}", i.guid);
    let op_time = i.last_operation_updated_at.unwrap_or(i.updated_at);
    Resource {
        metadata: Metadata::new("service_instances", &i.guid, i.created_at, i.updated_at),
        entity: InstanceEntity::Managed(Box::new(ManagedEntity {
            name: i.name.clone(),
            credentials: EmptyObject,
            service_plan_guid: i.service_plan_guid.clone(),
            space_guid: i.space_guid.clone(),
            gateway_data: None,
            dashboard_url: i.dashboard_url.clone(),
            kind: "managed_service_instance",
            last_operation: LastOperation {
                op_type: i
                    .last_operation_type
                    .clone()
                    .unwrap_or_else(|| "create".into()),
                state: i
                    .last_operation_state
                    .clone()
                    .unwrap_or_else(|| "succeeded".into()),
                description: i.last_operation_description.clone().unwrap_or_default(),
                updated_at: Ts(op_time),
                created_at: Ts(op_time),
            },
            tags: raw_json(&i.tags, "[]"),
            maintenance_info: EmptyObject,
            service_guid: v.service_guid.clone(),
            space_url: format!("/v2/spaces/{}", i.space_guid),
            service_plan_url: i
                .service_plan_guid
                .as_ref()
                .map(|p| format!("/v2/service_plans/{p}")),
            service_bindings_url: format!("{base}/service_bindings"),
            service_keys_url: format!("{base}/service_keys"),
            routes_url: format!("{base}/routes"),
            shared_from_url: format!("{base}/shared_from"),
            shared_to_url: format!("{base}/shared_to"),
            service_instance_parameters_url: format!("{base}/parameters"),
        })),
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v2/service_instances", web::get().to(list))
        .route("/v2/service_instances", web::post().to(create))
        .route("/v2/service_instances/{guid}", web::get().to(get))
        .route("/v2/service_instances/{guid}", web::put().to(update))
        .route("/v2/service_instances/{guid}", web::delete().to(delete))
        .route(
            "/v2/spaces/{guid}/service_instances",
            web::get().to(list_in_space),
        )
        .route(
            "/v2/user_provided_service_instances",
            web::get().to(list_upsi),
        )
        .route(
            "/v2/user_provided_service_instances",
            web::post().to(create_upsi),
        )
        .route(
            "/v2/user_provided_service_instances/{guid}",
            web::get().to(get_upsi),
        )
        .route(
            "/v2/user_provided_service_instances/{guid}",
            web::put().to(update_upsi),
        )
        .route(
            "/v2/user_provided_service_instances/{guid}",
            web::delete().to(delete_upsi),
        );
}

fn kind_for(params: &ListParams) -> Kind {
    if params.extra("return_user_provided_service_instances") == Some("true") {
        Kind::Both
    } else {
        Kind::Managed
    }
}

const PRESERVE: &[&str] = &["return_user_provided_service_instances"];

#[utoipa::path(
    get,
    path = "/v2/service_instances",
    tag = "service_instances",
    operation_id = "listServiceInstances",
    summary = "List managed service instances",
    params(
        super::openapi::InstancesQuery,
        ("return_user_provided_service_instances" = Option<bool>, Query, description = "Also list user-provided instances"),
    ),
    responses(
        (status = 200, description = "A page of instances", body = crate::api::render::PageDoc<Resource<InstanceEntity>>),
        (status = 400, description = "A bad list parameter (`CF-BadQueryParameter`)", body = CfError),
    )
)]
async fn list(state: State, caller: Caller, req: HttpRequest) -> ApiResult<HttpResponse> {
    instances_page(&state, &caller, &req, None, "/v2/service_instances").await
}

#[utoipa::path(
    get,
    path = "/v2/spaces/{guid}/service_instances",
    tag = "spaces",
    operation_id = "listSpaceServiceInstances",
    summary = "List a space's service instances",
    params(
        ("guid" = String, Path, description = "The space's guid"),
        super::openapi::InstancesQuery,
        ("return_user_provided_service_instances" = Option<bool>, Query, description = "Also list user-provided instances"),
    ),
    responses(
        (status = 200, description = "A page of instances", body = crate::api::render::PageDoc<Resource<InstanceEntity>>),
        (status = 400, description = "A bad list parameter (`CF-BadQueryParameter`)", body = CfError),
        (status = 404, description = "No such space (`CF-SpaceNotFound`)", body = CfError),
    )
)]
async fn list_in_space(
    state: State,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let at = format!("/v2/spaces/{path}/service_instances");
    instances_page(&state, &caller, &req, Some(path.into_inner()), &at).await
}

/// A page of the instances the caller sees (user-provided ones too when asked), in one space
/// if named, linked as `path`.
async fn instances_page(
    state: &AppState,
    caller: &Caller,
    req: &HttpRequest,
    space: Option<String>,
    path: &str,
) -> ApiResult<HttpResponse> {
    let params = ListParams::parse(req.query_string(), repo::instances::FILTERS)?;
    let kind = kind_for(&params);
    let loaded = instances::list(state, caller, &params.query(true)?, kind, space).await?;
    let items: Vec<_> = loaded.rows.iter().map(render_instance).collect();
    super::page_with_relations(
        state,
        caller,
        &params,
        path,
        loaded.total,
        items,
        PRESERVE,
        super::Inline::Instance,
    )
    .await
}

#[utoipa::path(
    post,
    path = "/v2/service_instances",
    tag = "service_instances",
    operation_id = "createServiceInstance",
    summary = "Create a managed service instance",
    request_body(content = CreateServiceInstance, content_type = "application/json"),
    params(
        ("accepts_incomplete" = Option<bool>, Query, description = "Whether the broker may provision asynchronously (then the answer is 202)"),
    ),
    responses(
        (status = 201, description = "Created", body = Resource<InstanceEntity>, headers(("Location" = String, description = "The instance's path"))),
        (status = 202, description = "The broker is provisioning (`accepts_incomplete=true`)", body = Resource<InstanceEntity>, headers(("Location" = String, description = "The instance's path"))),
        (status = 400, description = "Invalid request, name taken, or no such space or plan", body = CfError),
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
    input.accepts_incomplete = flag(&req, "accepts_incomplete");
    let view = instances::create_managed(&state, &caller, input).await?;
    let status = if view.instance.last_operation().in_progress() {
        StatusCode::ACCEPTED
    } else {
        StatusCode::CREATED
    };
    let mut resp = json(status, &render_instance(&view));
    super::set_location(
        &mut resp,
        &format!("/v2/service_instances/{}", view.instance.guid),
    );
    Ok(resp)
}

#[utoipa::path(
    get,
    path = "/v2/service_instances/{guid}",
    tag = "service_instances",
    operation_id = "getServiceInstance",
    summary = "Get a service instance (managed or user-provided)",
    params(
        ("guid" = String, Path, description = "The service instance's guid"),
        ("inline-relations-depth" = Option<u8>, Query, maximum = 2, description = "Embeds the space, the plan, the bindings and the service keys (and at depth 2 the organization and the service)"),
    ),
    responses(
        (status = 200, description = "The instance", body = Resource<InstanceEntity>),
        (status = 404, description = "No such service instance (`CF-ServiceInstanceNotFound`)", body = CfError),
    )
)]
async fn get(
    state: State,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let depth = super::depth_of(&req)?;
    let view = instances::get(&state, &caller, &path, Kind::Both).await?;
    let v = super::with_relations(
        &state,
        &caller,
        &render_instance(&view),
        super::Inline::Instance,
        depth,
    )
    .await?;
    Ok(json(StatusCode::OK, &v))
}

#[utoipa::path(
    put,
    path = "/v2/service_instances/{guid}",
    tag = "service_instances",
    operation_id = "updateServiceInstance",
    summary = "Update a managed service instance (name, tags; plan and parameters through the broker)",
    request_body(content = super::openapi::UpdateServiceInstance, content_type = "application/json"),
    params(
        ("guid" = String, Path, description = "The service instance's guid"),
        ("accepts_incomplete" = Option<bool>, Query, description = "Whether the broker may update asynchronously (then the answer is 202)"),
    ),
    responses(
        (status = 201, description = "Updated", body = Resource<InstanceEntity>),
        (status = 202, description = "The broker is updating (`accepts_incomplete=true`)", body = Resource<InstanceEntity>, headers(("Location" = String, description = "The instance's path"))),
        (status = 400, description = "Invalid request, plan not updateable (`CF-ServicePlanNotUpdateable`), a plan of another service (`CF-InvalidRelation`), or a user-provided instance (`CF-UserProvidedServiceInstanceHandlerNeeded`)", body = CfError),
        (status = 403, description = "The caller may not update it (`CF-NotAuthorized`)", body = CfError),
        (status = 404, description = "No such service instance (`CF-ServiceInstanceNotFound`)", body = CfError),
        (status = 409, description = "An operation on the instance is in progress", body = CfError),
        (status = 502, description = "The broker failed (with `http`)", body = CfError),
    )
)]
async fn update(
    state: State,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let mut input = update_input(&body)?;
    input.accepts_incomplete = flag(&req, "accepts_incomplete");
    let view = instances::update_managed(&state, &caller, &path, input).await?;
    if view.instance.last_operation().in_progress() {
        let mut resp = json(StatusCode::ACCEPTED, &render_instance(&view));
        super::set_location(&mut resp, &format!("/v2/service_instances/{path}"));
        return Ok(resp);
    }
    Ok(json(StatusCode::CREATED, &render_instance(&view)))
}

#[utoipa::path(
    delete,
    path = "/v2/service_instances/{guid}",
    tag = "service_instances",
    operation_id = "deleteServiceInstance",
    summary = "Delete a service instance (managed or user-provided)",
    params(
        ("guid" = String, Path, description = "The service instance's guid"),
        ("accepts_incomplete" = Option<bool>, Query, description = "Whether the broker may deprovision asynchronously (then the answer is 202 with the instance)"),
        ("recursive" = Option<bool>, Query, description = "Delete the instance's bindings and service keys first, each through its broker"),
        ("purge" = Option<bool>, Query, description = "Forget the instance, its bindings and keys without calling the broker (admin only)"),
    ),
    responses(
        (status = 204, description = "Deleted (or purged)"),
        (status = 202, description = "The broker is deprovisioning (`accepts_incomplete=true`)", body = Resource<InstanceEntity>),
        (status = 400, description = "Bindings or keys remain (`CF-AssociationNotEmpty`)", body = CfError),
        (status = 403, description = "The caller may not delete (or purge) it (`CF-NotAuthorized`)", body = CfError),
        (status = 404, description = "No such service instance (`CF-ServiceInstanceNotFound`)", body = CfError),
        (status = 409, description = "An operation on the instance is in progress", body = CfError),
        (status = 502, description = "The broker failed (with `http`), or an association could not be deleted (`CF-ServiceInstanceRecursiveDeleteFailed`)", body = CfError),
    )
)]
async fn delete(
    state: State,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    // CC handles `purge` first, whatever else the query says.
    if flag(&req, "purge") {
        instances::purge(&state, &caller, &path).await?;
        return Ok(HttpResponse::NoContent().finish());
    }
    let accepts_incomplete = flag(&req, "accepts_incomplete");
    if flag(&req, "recursive") {
        instances::delete_associations(&state, &caller, &path, accepts_incomplete).await?;
    }
    // This route deletes either kind (the cf CLI deletes user-provided instances here too).
    match instances::delete(&state, &caller, &path, Kind::Both, accepts_incomplete).await? {
        InstanceDeleted::Gone => Ok(HttpResponse::NoContent().finish()),
        InstanceDeleted::InProgress(view) => {
            let mut resp = json(StatusCode::ACCEPTED, &render_instance(&view));
            super::set_location(
                &mut resp,
                &format!("/v2/service_instances/{}", view.instance.guid),
            );
            Ok(resp)
        }
    }
}

/// The body of `POST /v2/service_instances` (`accepts_incomplete`, from the query, is left
/// `false`).
fn create_input(body: &[u8]) -> ApiResult<CreateInstance> {
    let obj = json_object(body)?;
    let f = Fields(&obj);
    Ok(CreateInstance {
        name: f.opt_str("name")?.map(str::to_string),
        space_guid: f.opt_str("space_guid")?.map(str::to_string),
        service_plan_guid: f.opt_str("service_plan_guid")?.map(str::to_string),
        parameters: f.opt_object("parameters")?.cloned(),
        tags: f.opt_string_list("tags")?,
        accepts_incomplete: false,
    })
}

/// The body of `PUT /v2/service_instances/:guid` (`accepts_incomplete` left `false`).
fn update_input(body: &[u8]) -> ApiResult<UpdateInstance> {
    let obj = json_object(body)?;
    let f = Fields(&obj);
    Ok(UpdateInstance {
        name: f.opt_str("name")?.map(str::to_string),
        tags: f.opt_string_list("tags")?,
        service_plan_guid: f.opt_str("service_plan_guid")?.map(str::to_string),
        parameters: f.opt_object("parameters")?.cloned(),
        accepts_incomplete: false,
    })
}

/// The body of `POST /v2/user_provided_service_instances` and of its `PUT`.
fn upsi_input(body: &[u8]) -> ApiResult<UpsiInput> {
    let obj = json_object(body)?;
    let f = Fields(&obj);
    Ok(UpsiInput {
        guid: None,
        name: f.opt_str("name")?.map(str::to_string),
        space_guid: f.opt_str("space_guid")?.map(str::to_string),
        credentials: f.opt_object("credentials")?.cloned(),
        syslog_drain_url: f.opt_str("syslog_drain_url")?.map(str::to_string),
        route_service_url: f.opt_str("route_service_url")?.map(str::to_string),
        tags: f.opt_string_list("tags")?,
    })
}

#[utoipa::path(
    get,
    path = "/v2/user_provided_service_instances",
    tag = "service_instances",
    operation_id = "listUserProvidedServiceInstances",
    summary = "List user-provided service instances",
    params(
        super::openapi::UpsiQuery,
    ),
    responses(
        (status = 200, description = "A page of instances", body = crate::api::render::PageDoc<Resource<InstanceEntity>>),
        (status = 400, description = "A bad list parameter (`CF-BadQueryParameter`)", body = CfError),
    )
)]
async fn list_upsi(state: State, caller: Caller, req: HttpRequest) -> ApiResult<HttpResponse> {
    let params = ListParams::parse(req.query_string(), repo::instances::UPSI_FILTERS)?;
    let loaded = instances::list(
        &state,
        &caller,
        &params.query(true)?,
        Kind::UserProvided,
        None,
    )
    .await?;
    let items: Vec<_> = loaded.rows.iter().map(render_instance).collect();
    Ok(page(
        &params,
        "/v2/user_provided_service_instances",
        loaded.total,
        items,
        &[],
    ))
}

async fn create_upsi(state: State, caller: Caller, body: web::Bytes) -> ApiResult<HttpResponse> {
    let input = upsi_input(&body)?;
    if input.name.is_none() {
        return Err(ApiError::ServiceInstanceNameEmpty);
    }
    let view = instances::create_upsi(&state, &caller, input).await?;
    let mut resp = json(StatusCode::CREATED, &render_instance(&view));
    super::set_location(
        &mut resp,
        &format!("/v2/user_provided_service_instances/{}", view.instance.guid),
    );
    Ok(resp)
}

#[utoipa::path(
    get,
    path = "/v2/user_provided_service_instances/{guid}",
    tag = "service_instances",
    operation_id = "getUserProvidedServiceInstance",
    summary = "Get a user-provided service instance",
    params(
        ("guid" = String, Path, description = "The user-provided service instance's guid"),
    ),
    responses(
        (status = 200, description = "The instance", body = Resource<InstanceEntity>),
        (status = 404, description = "No such user-provided service instance (`CF-UserProvidedServiceInstanceNotFound`)", body = CfError),
    )
)]
async fn get_upsi(
    state: State,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let view = instances::get(&state, &caller, &path, Kind::UserProvided).await?;
    Ok(json(StatusCode::OK, &render_instance(&view)))
}

async fn update_upsi(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let input = upsi_input(&body)?;
    let view = instances::update_upsi(&state, &caller, &path, input).await?;
    Ok(json(StatusCode::CREATED, &render_instance(&view)))
}

async fn delete_upsi(
    state: State,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    instances::delete(&state, &caller, &path, Kind::UserProvided, false).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::body_properties::decoder_properties;
    use serde_json::{Map, Value};

    decoder_properties!(create_body {
        decode: create_input,
        fields: &[
            ("name", Kind::Str),
            ("space_guid", Kind::Str),
            ("service_plan_guid", Kind::Str),
            ("parameters", Kind::Object),
            ("tags", Kind::StrList),
        ],
        decoded_as: |i: &CreateInstance, _: &Map<String, Value>| {
            assert!(
                !i.accepts_incomplete,
                "the body never says accepts_incomplete"
            );
            decoded([
                ("name", i.name.clone().map(Value::from)),
                ("space_guid", i.space_guid.clone().map(Value::from)),
                (
                    "service_plan_guid",
                    i.service_plan_guid.clone().map(Value::from),
                ),
                ("parameters", i.parameters.clone().map(Value::Object)),
                ("tags", i.tags.clone().map(Value::from)),
            ])
        },
    });

    decoder_properties!(update_body {
        decode: update_input,
        fields: &[
            ("name", Kind::Str),
            ("tags", Kind::StrList),
            ("service_plan_guid", Kind::Str),
            ("parameters", Kind::Object),
        ],
        decoded_as: |i: &UpdateInstance, _: &Map<String, Value>| {
            assert!(
                !i.accepts_incomplete,
                "the body never says accepts_incomplete"
            );
            decoded([
                ("name", i.name.clone().map(Value::from)),
                ("tags", i.tags.clone().map(Value::from)),
                (
                    "service_plan_guid",
                    i.service_plan_guid.clone().map(Value::from),
                ),
                ("parameters", i.parameters.clone().map(Value::Object)),
            ])
        },
    });

    decoder_properties!(user_provided_body {
        decode: upsi_input,
        fields: &[
            ("name", Kind::Str),
            ("space_guid", Kind::Str),
            ("credentials", Kind::Object),
            ("syslog_drain_url", Kind::Str),
            ("route_service_url", Kind::Str),
            ("tags", Kind::StrList),
        ],
        decoded_as: |i: &UpsiInput, _: &Map<String, Value>| {
            assert!(i.guid.is_none(), "a client never names the guid");
            decoded([
                ("name", i.name.clone().map(Value::from)),
                ("space_guid", i.space_guid.clone().map(Value::from)),
                ("credentials", i.credentials.clone().map(Value::Object)),
                (
                    "syslog_drain_url",
                    i.syslog_drain_url.clone().map(Value::from),
                ),
                (
                    "route_service_url",
                    i.route_service_url.clone().map(Value::from),
                ),
                ("tags", i.tags.clone().map(Value::from)),
            ])
        },
    });
}
