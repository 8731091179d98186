//! `/v2/spaces` and `/v2/organizations/:guid/spaces`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::openapi::CfError;
use super::State;
use crate::api::query::ListParams;
use crate::api::render::{Metadata, Resource};
use crate::api::{json, json_object, page, Fields};
use crate::db::models::Space;
use crate::db::repo;
use crate::error::ApiResult;
use crate::service::{resources, Caller};

#[derive(Serialize, utoipa::ToSchema)]
pub struct SpaceEntity {
    pub name: String,
    pub organization_guid: String,
    pub space_quota_definition_guid: Option<String>,
    pub isolation_segment_guid: Option<String>,
    pub allow_ssh: bool,
    pub organization_url: String,
    pub developers_url: String,
    pub managers_url: String,
    pub auditors_url: String,
    pub apps_url: String,
    pub service_instances_url: String,
}

pub fn render_space(s: &Space) -> Resource<SpaceEntity> {
    let base = format!("/v2/spaces/{}", s.guid);
    Resource {
        metadata: Metadata::new("spaces", &s.guid, s.created_at, s.updated_at),
        entity: SpaceEntity {
            name: s.name.clone(),
            organization_guid: s.organization_guid.clone(),
            space_quota_definition_guid: None,
            isolation_segment_guid: None,
            allow_ssh: true,
            organization_url: format!("/v2/organizations/{}", s.organization_guid),
            developers_url: format!("{base}/developers"),
            managers_url: format!("{base}/managers"),
            auditors_url: format!("{base}/auditors"),
            apps_url: format!("{base}/apps"),
            service_instances_url: format!("{base}/service_instances"),
        },
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v2/spaces", web::get().to(list))
        .route("/v2/spaces", web::post().to(create))
        .route("/v2/spaces/{guid}", web::get().to(get))
        .route("/v2/spaces/{guid}", web::put().to(update))
        .route("/v2/spaces/{guid}", web::delete().to(delete))
        .route(
            "/v2/organizations/{guid}/spaces",
            web::get().to(list_in_org),
        );
}

#[utoipa::path(
    get,
    path = "/v2/spaces",
    tag = "spaces",
    operation_id = "listSpaces",
    summary = "List spaces",
    params(
        super::openapi::SpacesQuery,
    ),
    responses(
        (status = 200, description = "A page of spaces", body = crate::api::render::PageDoc<Resource<SpaceEntity>>),
        (status = 400, description = "A bad list parameter (`CF-BadQueryParameter`)", body = CfError),
    )
)]
async fn list(state: State, caller: Caller, req: HttpRequest) -> ApiResult<HttpResponse> {
    let params = ListParams::parse(req.query_string(), repo::spaces::FILTERS)?;
    let loaded = resources::list_spaces(&state, &caller, &params.query(true)?, None).await?;
    let items: Vec<_> = loaded.rows.iter().map(render_space).collect();
    Ok(page(&params, "/v2/spaces", loaded.total, items, &[]))
}

#[utoipa::path(
    get,
    path = "/v2/organizations/{guid}/spaces",
    tag = "organizations",
    operation_id = "listOrganizationSpaces",
    summary = "List an organization's spaces",
    params(
        ("guid" = String, Path, description = "The organization's guid"),
        super::openapi::SpacesQuery,
    ),
    responses(
        (status = 200, description = "A page of spaces", body = crate::api::render::PageDoc<Resource<SpaceEntity>>),
        (status = 400, description = "A bad list parameter (`CF-BadQueryParameter`)", body = CfError),
        (status = 404, description = "No such organization (`CF-OrganizationNotFound`)", body = CfError),
    )
)]
async fn list_in_org(
    state: State,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let params = ListParams::parse(req.query_string(), repo::spaces::FILTERS)?;
    let loaded = resources::list_spaces(
        &state,
        &caller,
        &params.query(true)?,
        Some(path.to_string()),
    )
    .await?;
    let items: Vec<_> = loaded.rows.iter().map(render_space).collect();
    Ok(page(
        &params,
        &format!("/v2/organizations/{path}/spaces"),
        loaded.total,
        items,
        &[],
    ))
}

/// The body of `POST /v2/spaces`: the space's name and its organization.
fn create_input(body: &[u8]) -> ApiResult<(String, String)> {
    let obj = json_object(body)?;
    let f = Fields(&obj);
    let name = f.required_str("name")?.to_string();
    let org = f.required_str("organization_guid")?.to_string();
    Ok((name, org))
}

/// The body of `PUT /v2/spaces/:guid`: a new name, if any.
fn update_input(body: &[u8]) -> ApiResult<Option<String>> {
    let obj = json_object(body)?;
    Ok(Fields(&obj).opt_str("name")?.map(str::to_string))
}

async fn create(state: State, caller: Caller, body: web::Bytes) -> ApiResult<HttpResponse> {
    let (name, org) = create_input(&body)?;
    let space = resources::create_space(&state, &caller, name, org, None).await?;
    let mut resp = json(StatusCode::CREATED, &render_space(&space));
    super::set_location(&mut resp, &format!("/v2/spaces/{}", space.guid));
    Ok(resp)
}

#[utoipa::path(
    get,
    path = "/v2/spaces/{guid}",
    tag = "spaces",
    operation_id = "getSpace",
    summary = "Get a space",
    params(
        ("guid" = String, Path, description = "The space's guid"),
    ),
    responses(
        (status = 200, description = "The space", body = Resource<SpaceEntity>),
        (status = 404, description = "No such space (`CF-SpaceNotFound`)", body = CfError),
    )
)]
async fn get(state: State, caller: Caller, path: web::Path<String>) -> ApiResult<HttpResponse> {
    let space = resources::get_space(&state, &caller, &path).await?;
    Ok(json(StatusCode::OK, &render_space(&space)))
}

async fn update(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let space = match update_input(&body)? {
        Some(n) => resources::rename_space(&state, &caller, &path, n).await?,
        None => resources::get_space(&state, &caller, &path).await?,
    };
    Ok(json(StatusCode::CREATED, &render_space(&space)))
}

async fn delete(state: State, caller: Caller, path: web::Path<String>) -> ApiResult<HttpResponse> {
    resources::delete_space(&state, &caller, &path).await?;
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
            ("name", Kind::RequiredStr),
            ("organization_guid", Kind::RequiredStr)
        ],
        decoded_as: |(name, org): &(String, String), _: &Map<String, Value>| {
            decoded([
                ("name", Some(Value::from(name.clone()))),
                ("organization_guid", Some(Value::from(org.clone()))),
            ])
        },
    });

    decoder_properties!(update_body {
        decode: update_input,
        fields: &[("name", Kind::Str)],
        decoded_as: |name: &Option<String>, _: &Map<String, Value>| {
            decoded([("name", name.clone().map(Value::from))])
        },
    });
}
