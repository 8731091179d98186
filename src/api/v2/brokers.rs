//! `/v2/service_brokers`, `/v2/services`, `/v2/service_plans`, `/v2/service_plan_visibilities`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::value::RawValue;

use super::openapi::CfError;
use super::State;
use crate::api::extract::MaybeCaller;
use crate::api::query::ListParams;
use crate::api::render::{raw_json, Metadata, Resource};
use crate::api::{json, json_object, page, Fields};
use crate::db::models::{ServiceBroker, ServicePlan, ServicePlanVisibility};
use crate::db::repo::{self, Filter};
use crate::error::{ApiError, ApiResult};
use crate::service::brokers::{self, BrokerInput, ServiceView};
use crate::service::Caller;

#[derive(Serialize)]
pub struct BrokerEntity {
    pub name: String,
    pub broker_url: String,
    pub auth_username: String,
    pub space_guid: Option<String>,
}

pub fn render_broker(b: &ServiceBroker) -> Resource<BrokerEntity> {
    Resource {
        metadata: Metadata::new("service_brokers", &b.guid, b.created_at, b.updated_at),
        entity: BrokerEntity {
            name: b.name.clone(),
            broker_url: b.broker_url.clone(),
            auth_username: b.auth_username.clone(),
            space_guid: b.space_guid.clone(),
        },
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ServiceEntity {
    pub label: String,
    pub provider: Option<String>,
    pub url: Option<String>,
    pub description: String,
    pub long_description: Option<String>,
    pub version: Option<String>,
    pub info_url: Option<String>,
    pub active: bool,
    pub bindable: bool,
    pub unique_id: String,
    /// CC sends the catalog metadata as a JSON-encoded string (the cf CLI decodes it so).
    pub extra: Option<String>,
    #[schema(value_type = Vec<String>)]
    pub tags: Box<RawValue>,
    #[schema(value_type = Vec<String>)]
    pub requires: Box<RawValue>,
    pub documentation_url: Option<String>,
    pub service_broker_guid: String,
    pub service_broker_name: String,
    pub plan_updateable: bool,
    pub bindings_retrievable: bool,
    pub instances_retrievable: bool,
    pub allow_context_updates: bool,
    pub service_plans_url: String,
}

pub fn render_service(v: &ServiceView) -> Resource<ServiceEntity> {
    let s = &v.service;
    Resource {
        metadata: Metadata::new("services", &s.guid, s.created_at, s.updated_at),
        entity: ServiceEntity {
            label: s.label.clone(),
            provider: None,
            url: None,
            description: s.description.clone(),
            long_description: None,
            version: None,
            info_url: None,
            active: s.active,
            bindable: s.bindable,
            unique_id: s.unique_id.clone(),
            extra: s.extra.clone(),
            tags: raw_json(&s.tags, "[]"),
            requires: raw_json(&s.requires, "[]"),
            documentation_url: None,
            service_broker_guid: s.service_broker_guid.clone(),
            service_broker_name: v.broker_name.clone(),
            plan_updateable: s.plan_updateable,
            bindings_retrievable: s.bindings_retrievable,
            instances_retrievable: s.instances_retrievable,
            allow_context_updates: false,
            service_plans_url: format!("/v2/services/{}/service_plans", s.guid),
        },
    }
}

#[derive(Serialize)]
pub struct PlanEntity {
    pub name: String,
    pub free: bool,
    pub description: String,
    pub service_guid: String,
    pub extra: Option<String>,
    pub unique_id: String,
    pub public: bool,
    pub bindable: bool,
    pub plan_updateable: bool,
    pub active: bool,
    pub maximum_polling_duration: Option<i64>,
    pub maintenance_info: Box<RawValue>,
    pub schemas: Box<RawValue>,
    pub service_url: String,
    pub service_instances_url: String,
}

const DEFAULT_SCHEMAS: &str = r#"{"service_instance":{"create":{"parameters":{}},"update":{"parameters":{}}},"service_binding":{"create":{"parameters":{}}}}"#;

pub fn render_plan(p: &ServicePlan) -> Resource<PlanEntity> {
    Resource {
        metadata: Metadata::new("service_plans", &p.guid, p.created_at, p.updated_at),
        entity: PlanEntity {
            name: p.name.clone(),
            free: p.free,
            description: p.description.clone(),
            service_guid: p.service_guid.clone(),
            extra: p.extra.clone(),
            unique_id: p.unique_id.clone(),
            public: p.public,
            bindable: p.bindable.unwrap_or(true),
            plan_updateable: p.plan_updateable.unwrap_or(false),
            active: p.active,
            maximum_polling_duration: p.maximum_polling_duration,
            maintenance_info: raw_json(p.maintenance_info.as_deref().unwrap_or("{}"), "{}"),
            schemas: raw_json(
                p.schemas.as_deref().unwrap_or(DEFAULT_SCHEMAS),
                DEFAULT_SCHEMAS,
            ),
            service_url: format!("/v2/services/{}", p.service_guid),
            service_instances_url: format!("/v2/service_plans/{}/service_instances", p.guid),
        },
    }
}

#[derive(Serialize)]
pub struct VisibilityEntity {
    pub service_plan_guid: String,
    pub organization_guid: String,
    pub service_plan_url: String,
    pub organization_url: String,
}

pub fn render_visibility(v: &ServicePlanVisibility) -> Resource<VisibilityEntity> {
    Resource {
        metadata: Metadata::new(
            "service_plan_visibilities",
            &v.guid,
            v.created_at,
            v.updated_at,
        ),
        entity: VisibilityEntity {
            service_plan_guid: v.service_plan_guid.clone(),
            organization_guid: v.organization_guid.clone(),
            service_plan_url: format!("/v2/service_plans/{}", v.service_plan_guid),
            organization_url: format!("/v2/organizations/{}", v.organization_guid),
        },
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v2/service_brokers", web::get().to(list_brokers))
        .route("/v2/service_brokers", web::post().to(create_broker))
        .route("/v2/service_brokers/{guid}", web::get().to(get_broker))
        .route("/v2/service_brokers/{guid}", web::put().to(update_broker))
        .route(
            "/v2/service_brokers/{guid}",
            web::delete().to(delete_broker),
        )
        .route("/v2/services", web::get().to(list_services))
        .route("/v2/services/{guid}", web::get().to(get_service))
        .route(
            "/v2/spaces/{guid}/services",
            web::get().to(list_space_services),
        )
        .route(
            "/v2/services/{guid}/service_plans",
            web::get().to(list_service_plans),
        )
        .route("/v2/service_plans", web::get().to(list_plans))
        .route("/v2/service_plans/{guid}", web::get().to(get_plan))
        .route("/v2/service_plans/{guid}", web::put().to(update_plan))
        .route(
            "/v2/service_plan_visibilities",
            web::get().to(list_visibilities),
        )
        .route(
            "/v2/service_plan_visibilities",
            web::post().to(create_visibility),
        )
        .route(
            "/v2/service_plan_visibilities/{guid}",
            web::get().to(get_visibility),
        )
        .route(
            "/v2/service_plan_visibilities/{guid}",
            web::delete().to(delete_visibility),
        );
}

/// The body of `POST /v2/service_brokers` and `PUT /v2/service_brokers/:guid`.
fn broker_input(body: &[u8]) -> ApiResult<BrokerInput> {
    let obj = json_object(body)?;
    let f = Fields(&obj);
    Ok(BrokerInput {
        name: f.opt_str("name")?.map(str::to_string),
        broker_url: f.opt_str("broker_url")?.map(str::to_string),
        auth_username: f.opt_str("auth_username")?.map(str::to_string),
        auth_password: f.opt_str("auth_password")?.map(str::to_string),
        space_guid: f.opt_str("space_guid")?.map(str::to_string),
    })
}

/// The body of `PUT /v2/service_plans/:guid`: whether the plan is public, if it says.
fn plan_update_input(body: &[u8]) -> ApiResult<Option<bool>> {
    let obj = json_object(body)?;
    Fields(&obj).opt_bool("public")
}

/// The body of `POST /v2/service_plan_visibilities`: the plan and the organization.
fn visibility_input(body: &[u8]) -> ApiResult<(String, String)> {
    let obj = json_object(body)?;
    let f = Fields(&obj);
    let plan = f.required_str("service_plan_guid")?.to_string();
    let org = f.required_str("organization_guid")?.to_string();
    Ok((plan, org))
}

async fn list_brokers(state: State, caller: Caller, req: HttpRequest) -> ApiResult<HttpResponse> {
    let params = ListParams::parse(req.query_string(), repo::brokers::BROKER_FILTERS)?;
    let loaded = brokers::list(&state, &caller, &params.query(true)?).await?;
    let items: Vec<_> = loaded.rows.iter().map(render_broker).collect();
    Ok(page(
        &params,
        "/v2/service_brokers",
        loaded.total,
        items,
        &[],
    ))
}

async fn create_broker(state: State, caller: Caller, body: web::Bytes) -> ApiResult<HttpResponse> {
    let input = broker_input(&body)?;
    let broker = brokers::register(&state, &caller, input).await?;
    let mut resp = json(StatusCode::CREATED, &render_broker(&broker));
    super::set_location(&mut resp, &format!("/v2/service_brokers/{}", broker.guid));
    Ok(resp)
}

async fn get_broker(
    state: State,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let broker = brokers::get(&state, &caller, &path).await?;
    Ok(json(StatusCode::OK, &render_broker(&broker)))
}

async fn update_broker(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let input = broker_input(&body)?;
    let broker = brokers::update(&state, &caller, &path, input).await?;
    Ok(json(StatusCode::OK, &render_broker(&broker)))
}

async fn delete_broker(
    state: State,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    brokers::delete(&state, &caller, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// CC serves the marketplace lists to callers without a token too (services_controller.rb and
/// service_plans_controller.rb, `allow_unauthenticated_access only: :enumerate`), unless the
/// feature flag `hide_marketplace_from_unauthenticated_users` is on.
fn marketplace_viewer(caller: MaybeCaller) -> ApiResult<Option<Caller>> {
    match caller.0 {
        Some(caller) => Ok(Some(caller)),
        None if super::summary::feature_flag_enabled(HIDE_MARKETPLACE_FLAG) => {
            Err(ApiError::NotAuthenticated)
        }
        None => Ok(None),
    }
}

const HIDE_MARKETPLACE_FLAG: &str = "hide_marketplace_from_unauthenticated_users";

async fn list_services(
    state: State,
    caller: MaybeCaller,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let viewer = marketplace_viewer(caller)?;
    let mut params = ListParams::parse(req.query_string(), repo::brokers::SERVICE_FILTERS)?;
    if viewer.is_none() {
        // CC drops `inline-relations-depth` for callers without a token.
        params.inline_depth = None;
    }
    let loaded = brokers::list_services(&state, viewer.as_ref(), &params.query(true)?).await?;
    let items: Vec<_> = loaded.rows.iter().map(render_service).collect();
    Ok(page(&params, "/v2/services", loaded.total, items, &[]))
}

#[utoipa::path(
    get,
    path = "/v2/spaces/{guid}/services",
    tag = "spaces",
    operation_id = "listSpaceServices",
    summary = "List the services that may be provisioned in a space (its marketplace)",
    params(
        ("guid" = String, Path, description = "The space's guid"),
        super::openapi::ServicesQuery,
    ),
    responses(
        (status = 200, description = "A page of services", body = crate::api::render::PageDoc<Resource<ServiceEntity>>),
        (status = 400, description = "A bad list parameter (`CF-BadQueryParameter`)", body = CfError),
        (status = 403, description = "The caller may not read the space (`CF-NotAuthorized`)", body = CfError),
        (status = 404, description = "No such space (`CF-SpaceNotFound`)", body = CfError),
    )
)]
pub(super) async fn list_space_services(
    state: State,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let params = ListParams::parse(req.query_string(), repo::brokers::SERVICE_FILTERS)?;
    let loaded =
        brokers::list_services_in_space(&state, &caller, &path, &params.query(true)?).await?;
    let items: Vec<_> = loaded.rows.iter().map(render_service).collect();
    Ok(page(
        &params,
        &format!("/v2/spaces/{path}/services"),
        loaded.total,
        items,
        &[],
    ))
}

async fn get_service(
    state: State,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let service = brokers::get_service(&state, &caller, &path).await?;
    Ok(json(StatusCode::OK, &render_service(&service)))
}

async fn list_service_plans(
    state: State,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let params = ListParams::parse(req.query_string(), repo::brokers::PLAN_FILTERS)?;
    let loaded = brokers::list_plans(
        &state,
        Some(&caller),
        &params.query(true)?,
        Some(path.to_string()),
    )
    .await?;
    let items: Vec<_> = loaded.rows.iter().map(render_plan).collect();
    Ok(page(
        &params,
        &format!("/v2/services/{path}/service_plans"),
        loaded.total,
        items,
        &[],
    ))
}

async fn list_plans(
    state: State,
    caller: MaybeCaller,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let viewer = marketplace_viewer(caller)?;
    let params = match viewer {
        Some(_) => ListParams::parse(req.query_string(), repo::brokers::PLAN_FILTERS)?,
        None => anonymous_plan_params(req.query_string())?,
    };
    let loaded = brokers::list_plans(&state, viewer.as_ref(), &params.query(true)?, None).await?;
    let items: Vec<_> = loaded.rows.iter().map(render_plan).collect();
    Ok(page(&params, "/v2/service_plans", loaded.total, items, &[]))
}

/// The list parameters of `GET /v2/service_plans` without a token, as CC reads them
/// (service_plans_controller.rb `enumerate`): of the `q` filters only the first counts, and
/// only when it starts with `service_guid` (its value is what follows the first `:`); the
/// others are neither applied nor refused, but stay in the page links. No
/// `inline-relations-depth`.
fn anonymous_plan_params(query: &str) -> ApiResult<ListParams> {
    let (filters, rest): (Vec<_>, Vec<_>) =
        form_urlencoded::parse(query.as_bytes()).partition(|(key, _)| key == "q");
    let rest = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(rest)
        .finish();
    let mut params = ListParams::parse(&rest, &[])?;
    params.inline_depth = None;
    params.raw_q = filters.into_iter().map(|(_, v)| v.into_owned()).collect();
    let service = params
        .raw_q
        .first()
        .filter(|q| q.starts_with("service_guid"))
        .and_then(|q| q.split(':').nth(1))
        .filter(|guid| !guid.is_empty());
    params.filters = service
        .map(|guid| vec![Filter::eq("service_guid", guid)])
        .unwrap_or_default();
    Ok(params)
}

async fn get_plan(
    state: State,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let plan = brokers::get_plan(&state, &caller, &path).await?;
    Ok(json(StatusCode::OK, &render_plan(&plan)))
}

async fn update_plan(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let plan = match plan_update_input(&body)? {
        Some(public) => brokers::set_plan_public(&state, &caller, &path, public).await?,
        None => brokers::get_plan(&state, &caller, &path).await?,
    };
    Ok(json(StatusCode::CREATED, &render_plan(&plan)))
}

async fn list_visibilities(
    state: State,
    caller: Caller,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let params = ListParams::parse(req.query_string(), repo::brokers::VISIBILITY_FILTERS)?;
    let loaded = brokers::list_visibilities(&state, &caller, &params.query(false)?).await?;
    let items: Vec<_> = loaded.rows.iter().map(render_visibility).collect();
    Ok(page(
        &params,
        "/v2/service_plan_visibilities",
        loaded.total,
        items,
        &[],
    ))
}

async fn create_visibility(
    state: State,
    caller: Caller,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let (plan, org) = visibility_input(&body)?;
    let vis = brokers::create_visibility(&state, &caller, plan, org).await?;
    let mut resp = json(StatusCode::CREATED, &render_visibility(&vis));
    super::set_location(
        &mut resp,
        &format!("/v2/service_plan_visibilities/{}", vis.guid),
    );
    Ok(resp)
}

async fn get_visibility(
    state: State,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let vis = brokers::get_visibility(&state, &caller, &path).await?;
    Ok(json(StatusCode::OK, &render_visibility(&vis)))
}

async fn delete_visibility(
    state: State,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    brokers::delete_visibility(&state, &caller, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::body_properties::decoder_properties;
    use serde_json::{Map, Value};

    decoder_properties!(broker_body {
        decode: broker_input,
        fields: &[
            ("name", Kind::Str),
            ("broker_url", Kind::Str),
            ("auth_username", Kind::Str),
            ("auth_password", Kind::Str),
            ("space_guid", Kind::Str),
        ],
        decoded_as: |b: &BrokerInput, _: &Map<String, Value>| {
            decoded([
                ("name", b.name.clone().map(Value::from)),
                ("broker_url", b.broker_url.clone().map(Value::from)),
                ("auth_username", b.auth_username.clone().map(Value::from)),
                ("auth_password", b.auth_password.clone().map(Value::from)),
                ("space_guid", b.space_guid.clone().map(Value::from)),
            ])
        },
    });

    decoder_properties!(plan_update_body {
        decode: plan_update_input,
        fields: &[("public", Kind::Bool)],
        decoded_as: |public: &Option<bool>, _: &Map<String, Value>| {
            decoded([("public", public.map(Value::from))])
        },
    });

    decoder_properties!(visibility_body {
        decode: visibility_input,
        fields: &[
            ("service_plan_guid", Kind::RequiredStr),
            ("organization_guid", Kind::RequiredStr),
        ],
        decoded_as: |(plan, org): &(String, String), _: &Map<String, Value>| {
            decoded([
                ("service_plan_guid", Some(Value::from(plan.clone()))),
                ("organization_guid", Some(Value::from(org.clone()))),
            ])
        },
    });
}
