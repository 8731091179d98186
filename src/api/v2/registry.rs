//! Registry access secrets: `/v2/spaces/:guid/registry_secrets`, `/v2/registry_secrets/:guid`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::State;
use crate::api::query::ListParams;
use crate::api::render::{Metadata, Resource};
use crate::api::{json, json_object, page, Fields};
use crate::db::models::RegistrySecret;
use crate::db::repo;
use crate::error::ApiResult;
use crate::service::registry::{self, RegistryInput};
use crate::service::Caller;

/// The password is write-only: it has no field here.
#[derive(Serialize)]
pub struct RegistryEntity {
    pub name: String,
    pub space_guid: String,
    pub server: String,
    pub username: String,
    pub email: Option<String>,
    pub space_url: String,
}

pub fn render_registry(s: &RegistrySecret) -> Resource<RegistryEntity> {
    Resource {
        metadata: Metadata::new("registry_secrets", &s.guid, s.created_at, s.updated_at),
        entity: RegistryEntity {
            name: s.name.clone(),
            space_guid: s.space_guid.clone(),
            server: s.server.clone(),
            username: s.username.clone(),
            email: s.email.clone(),
            space_url: format!("/v2/spaces/{}", s.space_guid),
        },
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v2/spaces/{guid}/registry_secrets", web::get().to(list))
        .route("/v2/spaces/{guid}/registry_secrets", web::post().to(create))
        .route("/v2/registry_secrets/{guid}", web::get().to(get))
        .route("/v2/registry_secrets/{guid}", web::put().to(update))
        .route("/v2/registry_secrets/{guid}", web::delete().to(delete));
}

/// The body of `POST /v2/spaces/:guid/registry_secrets` and `PUT /v2/registry_secrets/:guid`.
fn input(body: &[u8]) -> ApiResult<RegistryInput> {
    let obj = json_object(body)?;
    let f = Fields(&obj);
    Ok(RegistryInput {
        name: f.opt_str("name")?.map(str::to_string),
        server: f.opt_str("server")?.map(str::to_string),
        username: f.opt_str("username")?.map(str::to_string),
        password: f.opt_str("password")?.map(str::to_string),
        email: f.opt_str("email")?.map(str::to_string),
    })
}

async fn create(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let secret = registry::create(&state, &caller, &path, input(&body)?).await?;
    let mut resp = json(StatusCode::CREATED, &render_registry(&secret));
    super::set_location(&mut resp, &format!("/v2/registry_secrets/{}", secret.guid));
    Ok(resp)
}

async fn list(
    state: State,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let params = ListParams::parse(req.query_string(), repo::registry::FILTERS)?;
    let loaded = registry::list(&state, &caller, &path, &params.query(true)?).await?;
    let items: Vec<_> = loaded.rows.iter().map(render_registry).collect();
    Ok(page(
        &params,
        &format!("/v2/spaces/{path}/registry_secrets"),
        loaded.total,
        items,
        &[],
    ))
}

async fn get(state: State, caller: Caller, path: web::Path<String>) -> ApiResult<HttpResponse> {
    let secret = registry::get(&state, &caller, &path).await?;
    Ok(json(StatusCode::OK, &render_registry(&secret)))
}

async fn update(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let secret = registry::update(&state, &caller, &path, input(&body)?).await?;
    Ok(json(StatusCode::CREATED, &render_registry(&secret)))
}

async fn delete(state: State, caller: Caller, path: web::Path<String>) -> ApiResult<HttpResponse> {
    registry::delete(&state, &caller, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::body_properties::decoder_properties;
    use serde_json::{Map, Value};

    decoder_properties!(secret_body {
        decode: input,
        fields: &[
            ("name", Kind::Str),
            ("server", Kind::Str),
            ("username", Kind::Str),
            ("password", Kind::Str),
            ("email", Kind::Str),
        ],
        decoded_as: |i: &RegistryInput, _: &Map<String, Value>| {
            decoded([
                ("name", i.name.clone().map(Value::from)),
                ("server", i.server.clone().map(Value::from)),
                ("username", i.username.clone().map(Value::from)),
                ("password", i.password.clone().map(Value::from)),
                ("email", i.email.clone().map(Value::from)),
            ])
        },
    });
}
