//! `/v2/organizations`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::openapi::CfError;
use super::State;
use crate::api::query::ListParams;
use crate::api::render::{Metadata, Resource};
use crate::api::{json, json_object, page, Fields};
use crate::db::models::{OrgStatus, Organization};
use crate::db::repo;
use crate::error::{ApiError, ApiResult};
use crate::service::{resources, Caller};

#[derive(Serialize, utoipa::ToSchema)]
pub struct OrgEntity {
    pub name: String,
    pub billing_enabled: bool,
    pub quota_definition_guid: Option<String>,
    pub status: String,
    pub default_isolation_segment_guid: Option<String>,
    pub spaces_url: String,
    pub users_url: String,
    pub managers_url: String,
    pub billing_managers_url: String,
    pub auditors_url: String,
}

pub fn render_org(o: &Organization) -> Resource<OrgEntity> {
    let base = format!("/v2/organizations/{}", o.guid);
    Resource {
        metadata: Metadata::new("organizations", &o.guid, o.created_at, o.updated_at),
        entity: OrgEntity {
            name: o.name.clone(),
            billing_enabled: false,
            quota_definition_guid: None,
            status: o.status.clone(),
            default_isolation_segment_guid: None,
            spaces_url: format!("{base}/spaces"),
            users_url: format!("{base}/users"),
            managers_url: format!("{base}/managers"),
            billing_managers_url: format!("{base}/billing_managers"),
            auditors_url: format!("{base}/auditors"),
        },
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v2/organizations", web::get().to(list))
        .route("/v2/organizations", web::post().to(create))
        .route("/v2/organizations/{guid}", web::get().to(get))
        .route("/v2/organizations/{guid}", web::put().to(update))
        .route("/v2/organizations/{guid}", web::delete().to(delete));
}

#[utoipa::path(
    get,
    path = "/v2/organizations",
    tag = "organizations",
    operation_id = "listOrganizations",
    summary = "List organizations",
    params(
        super::openapi::OrgsQuery,
    ),
    responses(
        (status = 200, description = "A page of organizations", body = crate::api::render::PageDoc<Resource<OrgEntity>>),
        (status = 400, description = "A bad list parameter (`CF-BadQueryParameter`)", body = CfError),
    )
)]
async fn list(state: State, caller: Caller, req: HttpRequest) -> ApiResult<HttpResponse> {
    let params = ListParams::parse(req.query_string(), repo::orgs::FILTERS)?;
    let loaded = resources::list_orgs(&state, &caller, &params.query(true)?).await?;
    let items: Vec<_> = loaded.rows.iter().map(render_org).collect();
    Ok(page(&params, "/v2/organizations", loaded.total, items, &[]))
}

/// The body of `POST /v2/organizations`: the organization's name.
fn create_input(body: &[u8]) -> ApiResult<String> {
    let obj = json_object(body)?;
    Ok(Fields(&obj).required_str("name")?.to_string())
}

/// What `PUT /v2/organizations/:guid` changes.
struct OrgUpdate {
    name: Option<String>,
    status: Option<OrgStatus>,
}

/// The body of `PUT /v2/organizations/:guid`; a status other than CC's two is CC's
/// `OrganizationInvalid`.
fn update_input(body: &[u8]) -> ApiResult<OrgUpdate> {
    let obj = json_object(body)?;
    let f = Fields(&obj);
    let name = f.opt_str("name")?.map(str::to_string);
    let status = match f.opt_str("status")? {
        Some(s) => Some(OrgStatus::parse(s).ok_or_else(|| {
            ApiError::OrganizationInvalid(
                r#"status is not in range or set: ["active", "suspended"]"#.into(),
            )
        })?),
        None => None,
    };
    Ok(OrgUpdate { name, status })
}

async fn create(state: State, caller: Caller, body: web::Bytes) -> ApiResult<HttpResponse> {
    let name = create_input(&body)?;
    let org = resources::create_org(&state, &caller, name, None).await?;
    let mut resp = json(StatusCode::CREATED, &render_org(&org));
    crate::api::v2::set_location(&mut resp, &format!("/v2/organizations/{}", org.guid));
    Ok(resp)
}

#[utoipa::path(
    get,
    path = "/v2/organizations/{guid}",
    tag = "organizations",
    operation_id = "getOrganization",
    summary = "Get an organization",
    params(
        ("guid" = String, Path, description = "The organization's guid"),
    ),
    responses(
        (status = 200, description = "The organization", body = Resource<OrgEntity>),
        (status = 404, description = "No such organization (`CF-OrganizationNotFound`)", body = CfError),
    )
)]
async fn get(state: State, caller: Caller, path: web::Path<String>) -> ApiResult<HttpResponse> {
    let org = resources::get_org(&state, &caller, &path).await?;
    Ok(json(StatusCode::OK, &render_org(&org)))
}

async fn update(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let OrgUpdate { name, status } = update_input(&body)?;
    let org = if name.is_none() && status.is_none() {
        resources::get_org(&state, &caller, &path).await?
    } else {
        resources::update_org(&state, &caller, &path, name, status).await?
    };
    Ok(json(StatusCode::CREATED, &render_org(&org)))
}

async fn delete(state: State, caller: Caller, path: web::Path<String>) -> ApiResult<HttpResponse> {
    resources::delete_org(&state, &caller, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::body_properties::{self as props, decoder_properties, text};
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    decoder_properties!(create_body {
        decode: create_input,
        fields: &[("name", Kind::RequiredStr)],
        decoded_as: |name: &String, _: &Map<String, Value>| {
            decoded([("name", Some(Value::from(name.clone())))])
        },
    });

    decoder_properties!(update_body {
        decode: update_input,
        fields: &[
            ("name", Kind::Str),
            ("status", Kind::OneOf(&["active", "suspended"])),
        ],
        also_refused_with: &[30001],
        decoded_as: |u: &OrgUpdate, _: &Map<String, Value>| {
            decoded([
                ("name", u.name.clone().map(Value::from)),
                ("status", u.status.map(|s| Value::from(s.as_str()))),
            ])
        },
    });

    proptest! {
        #![proptest_config(props::config())]

        /// A status that is a string but not one of CC's two is `OrganizationInvalid`.
        #[test]
        fn another_status_is_organization_invalid(status in text()) {
            prop_assume!(status != "active" && status != "suspended");
            let body = serde_json::to_vec(&serde_json::json!({"status": status})).unwrap();
            let e = update_input(&body).err();
            prop_assert!(matches!(e, Some(ApiError::OrganizationInvalid(_))), "{:?}", e);
        }
    }
}
