//! `/v2/apps` and `/v2/spaces/:guid/apps` (metadata only: nothing runs).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::value::RawValue;

use super::openapi::CfError;
use super::State;
use crate::api::query::ListParams;
use crate::api::render::{raw_json, Metadata, Resource};
use crate::api::{json, json_object, Fields};
use crate::app::AppState;
use crate::db::models::App;
use crate::db::repo;
use crate::error::{ApiError, ApiResult};
use crate::service::resources::{self, AppInput};
use crate::service::Caller;

#[derive(Serialize, utoipa::ToSchema)]
pub struct DockerCredentials {
    pub username: Option<String>,
    pub password: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AppEntity {
    pub name: String,
    pub production: bool,
    pub space_guid: String,
    pub stack_guid: Option<String>,
    pub buildpack: Option<String>,
    pub detected_buildpack: Option<String>,
    pub detected_buildpack_guid: Option<String>,
    #[schema(value_type = Object)]
    pub environment_json: Box<RawValue>,
    pub memory: i64,
    pub instances: i32,
    pub disk_quota: i64,
    pub state: String,
    pub version: String,
    pub command: Option<String>,
    pub console: bool,
    pub debug: Option<String>,
    pub staging_task_id: Option<String>,
    pub package_state: &'static str,
    pub health_check_type: &'static str,
    pub health_check_timeout: Option<u64>,
    pub health_check_http_endpoint: Option<String>,
    pub staging_failed_reason: Option<String>,
    pub staging_failed_description: Option<String>,
    pub diego: bool,
    pub docker_image: Option<String>,
    pub docker_credentials: DockerCredentials,
    pub package_updated_at: Option<String>,
    pub detected_start_command: &'static str,
    pub enable_ssh: bool,
    pub ports: Option<Vec<u32>>,
    pub space_url: String,
    pub service_bindings_url: String,
}

pub fn render_app(a: &App) -> Resource<AppEntity> {
    Resource {
        metadata: Metadata::new("apps", &a.guid, a.created_at, a.updated_at),
        entity: AppEntity {
            name: a.name.clone(),
            production: false,
            space_guid: a.space_guid.clone(),
            stack_guid: None,
            buildpack: None,
            detected_buildpack: None,
            detected_buildpack_guid: None,
            environment_json: raw_json(&a.environment_json, "{}"),
            memory: a.memory,
            instances: a.instances,
            disk_quota: a.disk_quota,
            state: a.state.clone(),
            version: a.guid.clone(),
            command: None,
            console: false,
            debug: None,
            staging_task_id: None,
            package_state: "PENDING",
            health_check_type: "port",
            health_check_timeout: None,
            health_check_http_endpoint: None,
            staging_failed_reason: None,
            staging_failed_description: None,
            diego: true,
            docker_image: None,
            docker_credentials: DockerCredentials {
                username: None,
                password: None,
            },
            package_updated_at: None,
            detected_start_command: "",
            enable_ssh: true,
            ports: None,
            space_url: format!("/v2/spaces/{}", a.space_guid),
            service_bindings_url: format!("/v2/apps/{}/service_bindings", a.guid),
        },
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v2/apps", web::get().to(list))
        .route("/v2/apps", web::post().to(create))
        .route("/v2/apps/{guid}", web::get().to(get))
        .route("/v2/apps/{guid}", web::put().to(update))
        .route("/v2/apps/{guid}", web::delete().to(delete))
        .route("/v2/spaces/{guid}/apps", web::get().to(list_in_space));
}

/// The body of `PUT /v2/apps/:guid` (and of a create, see [`create_input`]).
fn app_input(body: &[u8]) -> ApiResult<AppInput> {
    let obj = json_object(body)?;
    let f = Fields(&obj);
    let environment_json = f
        .opt_object("environment_json")?
        .map(|m| serde_json::Value::Object(m.clone()).to_string());
    Ok(AppInput {
        guid: None,
        name: f.opt_str("name")?.map(str::to_string),
        space_guid: f.opt_str("space_guid")?.map(str::to_string),
        state: f.opt_str("state")?.map(str::to_string),
        memory: f.opt_i64("memory")?,
        instances: f.opt_i64("instances")?,
        disk_quota: f.opt_i64("disk_quota")?,
        environment_json,
    })
}

/// The body of `POST /v2/apps`: [`app_input`] with a name and a space.
fn create_input(body: &[u8]) -> ApiResult<AppInput> {
    let input = app_input(body)?;
    if input.name.is_none() {
        return Err(ApiError::MessageParseError(
            "Field: name, Error: Missing field name".into(),
        ));
    }
    if input.space_guid.is_none() {
        return Err(ApiError::MessageParseError(
            "Field: space_guid, Error: Missing field space_guid".into(),
        ));
    }
    Ok(input)
}

#[utoipa::path(
    get,
    path = "/v2/apps",
    tag = "apps",
    operation_id = "listApps",
    summary = "List apps",
    params(
        super::openapi::AppsQuery,
    ),
    responses(
        (status = 200, description = "A page of apps", body = crate::api::render::PageDoc<Resource<AppEntity>>),
        (status = 400, description = "A bad list parameter (`CF-BadQueryParameter`)", body = CfError),
    )
)]
async fn list(state: State, caller: Caller, req: HttpRequest) -> ApiResult<HttpResponse> {
    apps_page(&state, &caller, &req, None, "/v2/apps").await
}

#[utoipa::path(
    get,
    path = "/v2/spaces/{guid}/apps",
    tag = "spaces",
    operation_id = "listSpaceApps",
    summary = "List a space's apps",
    params(
        ("guid" = String, Path, description = "The space's guid"),
        super::openapi::AppsQuery,
    ),
    responses(
        (status = 200, description = "A page of apps", body = crate::api::render::PageDoc<Resource<AppEntity>>),
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
    let at = format!("/v2/spaces/{path}/apps");
    apps_page(&state, &caller, &req, Some(path.into_inner()), &at).await
}

/// A page of the apps the caller sees, in one space if named, linked as `path`.
async fn apps_page(
    state: &AppState,
    caller: &Caller,
    req: &HttpRequest,
    space: Option<String>,
    path: &str,
) -> ApiResult<HttpResponse> {
    let params = ListParams::parse(req.query_string(), repo::apps::FILTERS)?;
    let loaded = resources::list_apps(state, caller, &params.query(true)?, space).await?;
    let items: Vec<_> = loaded.rows.iter().map(render_app).collect();
    super::page_with_relations(
        state,
        caller,
        &params,
        path,
        loaded.total,
        items,
        &[],
        super::Inline::App,
    )
    .await
}

async fn create(state: State, caller: Caller, body: web::Bytes) -> ApiResult<HttpResponse> {
    let input = create_input(&body)?;
    let app = resources::create_app(&state, &caller, input).await?;
    let mut resp = json(StatusCode::CREATED, &render_app(&app));
    super::set_location(&mut resp, &format!("/v2/apps/{}", app.guid));
    Ok(resp)
}

#[utoipa::path(
    get,
    path = "/v2/apps/{guid}",
    tag = "apps",
    operation_id = "getApp",
    summary = "Get an app",
    params(
        ("guid" = String, Path, description = "The app's guid"),
        ("inline-relations-depth" = Option<u8>, Query, maximum = 2, description = "Embeds the space and the bindings (and at depth 2 the organization)"),
    ),
    responses(
        (status = 200, description = "The app", body = Resource<AppEntity>),
        (status = 404, description = "No such app (`CF-AppNotFound`)", body = CfError),
    )
)]
async fn get(
    state: State,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let depth = super::depth_of(&req)?;
    let app = resources::get_app(&state, &caller, &path).await?;
    let v = super::with_relations(
        &state,
        &caller,
        &render_app(&app),
        super::Inline::App,
        depth,
    )
    .await?;
    Ok(json(StatusCode::OK, &v))
}

async fn update(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let input = app_input(&body)?;
    let app = resources::update_app(&state, &caller, &path, input).await?;
    Ok(json(StatusCode::CREATED, &render_app(&app)))
}

async fn delete(state: State, caller: Caller, path: web::Path<String>) -> ApiResult<HttpResponse> {
    resources::delete_app(&state, &caller, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::body_properties::decoder_properties;
    use serde_json::{Map, Value};

    fn decoded_app(i: &AppInput, _: &Map<String, Value>) -> Map<String, Value> {
        assert!(i.guid.is_none(), "a client never names the guid");
        let env = i.environment_json.as_deref().map(|text| {
            serde_json::from_str::<Value>(text).expect("environment_json is stored as JSON")
        });
        crate::api::body_properties::decoded([
            ("name", i.name.clone().map(Value::from)),
            ("space_guid", i.space_guid.clone().map(Value::from)),
            ("state", i.state.clone().map(Value::from)),
            ("memory", i.memory.map(Value::from)),
            ("instances", i.instances.map(Value::from)),
            ("disk_quota", i.disk_quota.map(Value::from)),
            ("environment_json", env),
        ])
    }

    decoder_properties!(update_body {
        decode: app_input,
        fields: &[
            ("name", Kind::Str),
            ("space_guid", Kind::Str),
            ("state", Kind::Str),
            ("memory", Kind::Int),
            ("instances", Kind::Int),
            ("disk_quota", Kind::Int),
            ("environment_json", Kind::Object),
        ],
        decoded_as: decoded_app,
    });

    decoder_properties!(create_body {
        decode: create_input,
        fields: &[
            ("name", Kind::RequiredStr),
            ("space_guid", Kind::RequiredStr),
            ("state", Kind::Str),
            ("memory", Kind::Int),
            ("instances", Kind::Int),
            ("disk_quota", Kind::Int),
            ("environment_json", Kind::Object),
        ],
        decoded_as: decoded_app,
    });
}
