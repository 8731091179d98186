//! `/v2/users` and the role associations of orgs and spaces.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::State;
use crate::api::query::ListParams;
use crate::api::render::{Metadata, Resource};
use crate::api::{json, json_object, page, Fields};
use crate::db::models::User;
use crate::db::repo;
use crate::db::DbConnection;
use crate::error::{ApiError, ApiResult};
use crate::service::{authz, roles, Caller};

#[derive(Serialize)]
pub struct UserEntity {
    pub admin: bool,
    pub active: bool,
    pub default_space_guid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    pub spaces_url: String,
    pub organizations_url: String,
    pub managed_organizations_url: String,
    pub billing_managed_organizations_url: String,
    pub audited_organizations_url: String,
    pub managed_spaces_url: String,
    pub audited_spaces_url: String,
}

pub fn render_user(u: &User) -> Resource<UserEntity> {
    let base = format!("/v2/users/{}", u.guid);
    let scopes: Vec<String> = serde_json::from_str(&u.scopes).unwrap_or_default();
    Resource {
        metadata: Metadata::new("users", &u.guid, u.created_at, u.updated_at),
        entity: UserEntity {
            admin: scopes.iter().any(|s| s == crate::auth::SCOPE_ADMIN),
            active: u.active,
            default_space_guid: None,
            username: u.username.clone(),
            spaces_url: format!("{base}/spaces"),
            organizations_url: format!("{base}/organizations"),
            managed_organizations_url: format!("{base}/managed_organizations"),
            billing_managed_organizations_url: format!("{base}/billing_managed_organizations"),
            audited_organizations_url: format!("{base}/audited_organizations"),
            managed_spaces_url: format!("{base}/managed_spaces"),
            audited_spaces_url: format!("{base}/audited_spaces"),
        },
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v2/users", web::get().to(list_users))
        .route("/v2/users", web::post().to(create_user))
        .route("/v2/users/{guid}", web::get().to(get_user))
        .route("/v2/spaces/{guid}/{role}", web::get().to(list_space_role))
        .route(
            "/v2/spaces/{guid}/{role}",
            web::put().to(put_space_role_by_name),
        )
        .route(
            "/v2/spaces/{guid}/{role}",
            web::delete().to(remove_space_role_by_name),
        )
        .route(
            "/v2/spaces/{guid}/{role}/remove",
            web::post().to(remove_space_role_by_name),
        )
        .route(
            "/v2/spaces/{guid}/{role}/{user}",
            web::put().to(put_space_role),
        )
        .route(
            "/v2/spaces/{guid}/{role}/{user}",
            web::delete().to(delete_space_role),
        )
        .route(
            "/v2/organizations/{guid}/{role}",
            web::get().to(list_org_role),
        )
        .route(
            "/v2/organizations/{guid}/{role}",
            web::put().to(put_org_role_by_name),
        )
        .route(
            "/v2/organizations/{guid}/{role}",
            web::delete().to(remove_org_role_by_name),
        )
        .route(
            "/v2/organizations/{guid}/{role}/remove",
            web::post().to(remove_org_role_by_name),
        )
        .route(
            "/v2/organizations/{guid}/{role}/{user}",
            web::put().to(put_org_role),
        )
        .route(
            "/v2/organizations/{guid}/{role}/{user}",
            web::delete().to(delete_org_role),
        );
}

async fn list_users(state: State, caller: Caller, req: HttpRequest) -> ApiResult<HttpResponse> {
    let params = ListParams::parse(req.query_string(), repo::roles::USER_FILTERS)?;
    authz::require_read_scope(&caller.actor)?;
    if !caller.actor.reads_everything() {
        return Err(ApiError::NotAuthorized);
    }
    let page_req = params.page_request(false)?;
    let filters = params.filters.clone();
    let loaded = state
        .db
        .read(move |conn| Ok(repo::roles::list_users(conn, &filters, None, &page_req)?))
        .await?;
    let items: Vec<_> = loaded.rows.iter().map(render_user).collect();
    Ok(page(&params, "/v2/users", loaded.total, items, &[]))
}

/// The body of `POST /v2/users`: the user's UAA id.
fn create_user_input(body: &[u8]) -> ApiResult<String> {
    let obj = json_object(body)?;
    Ok(Fields(&obj).required_str("guid")?.to_string())
}

/// The body of the role changes by name (`PUT`/`DELETE /v2/{spaces,organizations}/:guid/{role}`):
/// the user's name.
fn username_input(body: &[u8]) -> ApiResult<String> {
    let obj = json_object(body)?;
    Ok(Fields(&obj).required_str("username")?.to_string())
}

async fn create_user(state: State, caller: Caller, body: web::Bytes) -> ApiResult<HttpResponse> {
    let guid = create_user_input(&body)?;
    let user = roles::create_user(&state, &caller, guid).await?;
    let mut resp = json(StatusCode::CREATED, &render_user(&user));
    super::set_location(&mut resp, &format!("/v2/users/{}", user.guid));
    Ok(resp)
}

async fn get_user(
    state: State,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    authz::require_read_scope(&caller.actor)?;
    let g = path.into_inner();
    if !caller.actor.reads_everything() && caller.actor.user_id.as_deref() != Some(g.as_str()) {
        return Err(ApiError::NotAuthorized);
    }
    let user = state
        .db
        .read(move |conn| repo::roles::find_user(conn, &g)?.ok_or(ApiError::UserNotFound(g)))
        .await?;
    Ok(json(StatusCode::OK, &render_user(&user)))
}

fn space_role_or_404(role: &str) -> ApiResult<&'static str> {
    roles::space_role(role).ok_or(ApiError::NotFound)
}

fn org_role_or_404(role: &str) -> ApiResult<&'static str> {
    roles::org_role(role).ok_or(ApiError::NotFound)
}

async fn user_guid_by_name(state: &State, body: &[u8]) -> ApiResult<String> {
    let username = username_input(body)?;
    state
        .db
        .read(move |conn| {
            repo::roles::find_user_by_name_ci(conn, &username)?
                .map(|u| u.guid)
                .ok_or(ApiError::UserNotFound(username))
        })
        .await
}

async fn list_space_role(
    state: State,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (space, role) = path.into_inner();
    let role = space_role_or_404(&role)?;
    let params = ListParams::parse(req.query_string(), repo::roles::USER_FILTERS)?;
    crate::service::resources::get_space(&state, &caller, &space).await?;
    let holders = repo::roles::space_role_holders;
    role_holders_page(&state, &req, &params, holders, space, role).await
}

async fn put_space_role(
    state: State,
    caller: Caller,
    path: web::Path<(String, String, String)>,
) -> ApiResult<HttpResponse> {
    let (space, role, user) = path.into_inner();
    let role = space_role_or_404(&role)?;
    let sp = roles::set_space_role(&state, &caller, &space, role, &user, true).await?;
    Ok(json(StatusCode::CREATED, &super::spaces::render_space(&sp)))
}

async fn put_space_role_by_name(
    state: State,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let (space, role) = path.into_inner();
    let role = space_role_or_404(&role)?;
    let user = user_guid_by_name(&state, &body).await?;
    let sp = roles::set_space_role(&state, &caller, &space, role, &user, true).await?;
    Ok(json(StatusCode::CREATED, &super::spaces::render_space(&sp)))
}

async fn remove_space_role_by_name(
    state: State,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let (space, role) = path.into_inner();
    let role = space_role_or_404(&role)?;
    let user = user_guid_by_name(&state, &body).await?;
    let sp = roles::set_space_role(&state, &caller, &space, role, &user, false).await?;
    // CC answers this one (unlike the removal by user id) with the space.
    Ok(json(StatusCode::OK, &super::spaces::render_space(&sp)))
}

async fn delete_space_role(
    state: State,
    caller: Caller,
    path: web::Path<(String, String, String)>,
) -> ApiResult<HttpResponse> {
    let (space, role, user) = path.into_inner();
    let role = space_role_or_404(&role)?;
    roles::set_space_role(&state, &caller, &space, role, &user, false).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn list_org_role(
    state: State,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (org, role) = path.into_inner();
    let role = org_role_or_404(&role)?;
    let params = ListParams::parse(req.query_string(), repo::roles::USER_FILTERS)?;
    crate::service::resources::get_org(&state, &caller, &org).await?;
    let holders = repo::roles::org_role_holders;
    role_holders_page(&state, &req, &params, holders, org, role).await
}

/// Finds who holds a role in one org or space: `(conn, org or space guid, role)`.
type RoleHolders = fn(&mut DbConnection, &str, &str) -> diesel::QueryResult<Vec<String>>;

/// The page of users who hold `role` in the org or space `guid`.
async fn role_holders_page(
    state: &State,
    req: &HttpRequest,
    params: &ListParams,
    holders: RoleHolders,
    guid: String,
    role: &'static str,
) -> ApiResult<HttpResponse> {
    let page_req = params.page_request(false)?;
    let filters = params.filters.clone();
    let loaded = state
        .db
        .read(move |conn| {
            let only = holders(conn, &guid, role)?;
            Ok(repo::roles::list_users(
                conn,
                &filters,
                Some(only),
                &page_req,
            )?)
        })
        .await?;
    let items: Vec<_> = loaded.rows.iter().map(render_user).collect();
    Ok(page(params, req.path(), loaded.total, items, &[]))
}

async fn put_org_role(
    state: State,
    caller: Caller,
    path: web::Path<(String, String, String)>,
) -> ApiResult<HttpResponse> {
    let (org, role, user) = path.into_inner();
    let role = org_role_or_404(&role)?;
    let o = roles::set_org_role(&state, &caller, &org, role, &user, true).await?;
    Ok(json(StatusCode::CREATED, &super::orgs::render_org(&o)))
}

async fn put_org_role_by_name(
    state: State,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let (org, role) = path.into_inner();
    let role = org_role_or_404(&role)?;
    let user = user_guid_by_name(&state, &body).await?;
    let o = roles::set_org_role(&state, &caller, &org, role, &user, true).await?;
    Ok(json(StatusCode::CREATED, &super::orgs::render_org(&o)))
}

async fn remove_org_role_by_name(
    state: State,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let (org, role) = path.into_inner();
    let role = org_role_or_404(&role)?;
    let user = user_guid_by_name(&state, &body).await?;
    roles::set_org_role(&state, &caller, &org, role, &user, false).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn delete_org_role(
    state: State,
    caller: Caller,
    path: web::Path<(String, String, String)>,
) -> ApiResult<HttpResponse> {
    let (org, role, user) = path.into_inner();
    let role = org_role_or_404(&role)?;
    roles::set_org_role(&state, &caller, &org, role, &user, false).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::body_properties::decoder_properties;
    use serde_json::{Map, Value};

    decoder_properties!(create_user_body {
        decode: create_user_input,
        fields: &[("guid", Kind::RequiredStr)],
        decoded_as: |guid: &String, _: &Map<String, Value>| {
            decoded([("guid", Some(Value::from(guid.clone())))])
        },
    });

    decoder_properties!(role_by_username_body {
        decode: username_input,
        fields: &[("username", Kind::RequiredStr)],
        decoded_as: |name: &String, _: &Map<String, Value>| {
            decoded([("username", Some(Value::from(name.clone())))])
        },
    });
}
