//! The sliver of v3 the cf CLI's `cf login` needs: `/v3`, `/v3/organizations`, `/v3/spaces`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use crate::api::v2::State;
use crate::api::{base_url, json};
use crate::db::repo;
use crate::error::{ApiError, ApiResult};
use crate::service::{authz, Caller};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v3", web::get().to(root))
        .route("/v3/organizations", web::get().to(organizations))
        .route("/v3/spaces", web::get().to(spaces));
}

async fn root(state: State, req: HttpRequest) -> HttpResponse {
    let base = base_url(&req, state.config.external_url.as_deref());
    let link = |p: &str| json!({ "href": format!("{base}/v3{p}") });
    json(
        StatusCode::OK,
        &json!({ "links": {
            "self": link(""),
            "organizations": link("/organizations"),
            "spaces": link("/spaces"),
            "apps": link("/apps"),
            "service_instances": link("/service_instances"),
            "service_credential_bindings": link("/service_credential_bindings"),
        }}),
    )
}

/// v3 list parameters: comma-separated `names`, `organization_guids`, `guids`.
fn list_param(req: &HttpRequest, key: &str) -> Option<Vec<String>> {
    form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.split(',').map(str::to_string).collect())
}

fn filter(key: &str, values: Vec<String>) -> repo::Filter {
    repo::Filter {
        key: key.into(),
        op: repo::FilterOp::In,
        values,
    }
}

fn v3_page(base: &str, path: &str, resources: Vec<Value>) -> Value {
    let n = resources.len();
    json!({
        "pagination": {
            "total_results": n, "total_pages": 1,
            "first": { "href": format!("{base}{path}?page=1&per_page=5000") },
            "last": { "href": format!("{base}{path}?page=1&per_page=5000") },
            "next": null, "previous": null,
        },
        "resources": resources,
    })
}

const ALL: repo::PageRequest = repo::PageRequest {
    page: 1,
    per_page: 5000,
    descending: false,
    order: repo::OrderBy::Name,
};

async fn organizations(state: State, caller: Caller, req: HttpRequest) -> ApiResult<HttpResponse> {
    authz::require_read_scope(&caller.actor)?;
    let mut filters = Vec::new();
    if let Some(n) = list_param(&req, "names") {
        filters.push(filter("name", n));
    }
    if let Some(g) = list_param(&req, "guids") {
        filters.push(filter("guid", g));
    }
    let actor = caller.actor.clone();
    let orgs = state
        .db
        .read(move |conn| {
            let visible = authz::visible_orgs(conn, &actor)?;
            Ok(repo::orgs::list(conn, &filters, visible.as_deref(), &ALL)?.rows)
        })
        .await?;
    let base = base_url(&req, state.config.external_url.as_deref());
    let resources = orgs
        .iter()
        .map(|o| {
            json!({
                "guid": o.guid, "name": o.name,
                "created_at": crate::api::render::format_ts(&o.created_at),
                "updated_at": crate::api::render::format_ts(&o.updated_at),
                "suspended": o.status == "suspended",
                "relationships": { "quota": { "data": null } },
                "metadata": { "labels": {}, "annotations": {} },
                "links": { "self": { "href": format!("{base}/v3/organizations/{}", o.guid) } },
            })
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &v3_page(&base, "/v3/organizations", resources),
    ))
}

async fn spaces(state: State, caller: Caller, req: HttpRequest) -> ApiResult<HttpResponse> {
    authz::require_read_scope(&caller.actor)?;
    let mut filters = Vec::new();
    if let Some(n) = list_param(&req, "names") {
        filters.push(filter("name", n));
    }
    if let Some(o) = list_param(&req, "organization_guids") {
        filters.push(filter("organization_guid", o));
    }
    if let Some(g) = list_param(&req, "guids") {
        filters.push(filter("guid", g));
    }
    let actor = caller.actor.clone();
    let spaces = state
        .db
        .read(move |conn| {
            let visible = authz::visible_spaces(conn, &actor)?;
            Ok(repo::spaces::list(conn, &filters, None, visible.as_deref(), &ALL)?.rows)
        })
        .await
        .map_err(|e| match e {
            ApiError::BadQueryParameter(_) => e,
            other => other,
        })?;
    let base = base_url(&req, state.config.external_url.as_deref());
    let resources = spaces
        .iter()
        .map(|s| {
            json!({
                "guid": s.guid, "name": s.name,
                "created_at": crate::api::render::format_ts(&s.created_at),
                "updated_at": crate::api::render::format_ts(&s.updated_at),
                "relationships": {
                    "organization": { "data": { "guid": s.organization_guid } },
                    "quota": { "data": null },
                },
                "metadata": { "labels": {}, "annotations": {} },
                "links": {
                    "self": { "href": format!("{base}/v3/spaces/{}", s.guid) },
                    "organization": { "href": format!("{base}/v3/organizations/{}", s.organization_guid) },
                },
            })
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &v3_page(&base, "/v3/spaces", resources),
    ))
}
