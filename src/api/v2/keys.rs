//! `/v2/service_keys` and `/v2/service_instances/:guid/service_keys`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::value::RawValue;

use super::State;
use crate::api::query::ListParams;
use crate::api::render::{raw_json, Metadata, Resource, REDACTED};
use crate::api::{json, json_object, page, Fields};
use crate::db::repo;
use crate::error::ApiResult;
use crate::service::keys::{self, KeyView};
use crate::service::Caller;

#[derive(Serialize)]
pub struct KeyEntity {
    pub name: String,
    pub service_instance_guid: String,
    pub credentials: Box<RawValue>,
    pub service_instance_url: String,
    pub service_key_parameters_url: String,
    /// Code Engine: the credential's IAM role (absent for keys made before roles).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

pub fn render_key(v: &KeyView) -> Resource<KeyEntity> {
    let k = &v.key;
    Resource {
        metadata: Metadata::new("service_keys", &k.guid, k.created_at, k.updated_at),
        entity: KeyEntity {
            name: k.name.clone(),
            service_instance_guid: k.service_instance_guid.clone(),
            credentials: if v.show_credentials {
                raw_json(&k.credentials, "{}")
            } else {
                raw_json(REDACTED, "{}")
            },
            service_instance_url: format!("/v2/service_instances/{}", k.service_instance_guid),
            service_key_parameters_url: format!("/v2/service_keys/{}/parameters", k.guid),
            role: k.role.clone(),
        },
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v2/service_keys", web::get().to(list))
        .route("/v2/service_keys", web::post().to(create))
        .route("/v2/service_keys/{guid}", web::get().to(get))
        .route("/v2/service_keys/{guid}", web::delete().to(delete))
        .route(
            "/v2/service_instances/{guid}/service_keys",
            web::get().to(list_for_instance),
        );
}

/// The body of `POST /v2/service_keys`.
fn create_input(body: &[u8]) -> ApiResult<keys::CreateKey> {
    let obj = json_object(body)?;
    let f = Fields(&obj);
    let instance = f.required_str("service_instance_guid")?.to_string();
    let name = f.required_str("name")?.to_string();
    let parameters = f.opt_object("parameters")?.cloned();
    Ok(keys::CreateKey {
        instance_guid: instance,
        name,
        parameters,
        role: f.opt_str("role")?.map(str::to_string),
    })
}

async fn create(state: State, caller: Caller, body: web::Bytes) -> ApiResult<HttpResponse> {
    let input = create_input(&body)?;
    let view = keys::create(&state, &caller, input).await?;
    let mut resp = json(StatusCode::CREATED, &render_key(&view));
    super::set_location(&mut resp, &format!("/v2/service_keys/{}", view.key.guid));
    Ok(resp)
}

async fn get(state: State, caller: Caller, path: web::Path<String>) -> ApiResult<HttpResponse> {
    let view = keys::get(&state, &caller, &path).await?;
    Ok(json(StatusCode::OK, &render_key(&view)))
}

async fn delete(state: State, caller: Caller, path: web::Path<String>) -> ApiResult<HttpResponse> {
    keys::delete(&state, &caller, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn list(state: State, caller: Caller, req: HttpRequest) -> ApiResult<HttpResponse> {
    let params = ListParams::parse(req.query_string(), repo::keys::FILTERS)?;
    let loaded = keys::list(&state, &caller, &params.query(false)?, None).await?;
    let items: Vec<_> = loaded.rows.iter().map(render_key).collect();
    Ok(page(&params, "/v2/service_keys", loaded.total, items, &[]))
}

async fn list_for_instance(
    state: State,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let params = ListParams::parse(req.query_string(), repo::keys::FILTERS)?;
    let loaded = keys::list(
        &state,
        &caller,
        &params.query(false)?,
        Some(path.to_string()),
    )
    .await?;
    let items: Vec<_> = loaded.rows.iter().map(render_key).collect();
    Ok(page(
        &params,
        &format!("/v2/service_instances/{path}/service_keys"),
        loaded.total,
        items,
        &[],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::body_properties::decoder_properties;
    use serde_json::{Map, Value};

    decoder_properties!(create_body {
        decode: create_input,
        fields: &[
            ("service_instance_guid", Kind::RequiredStr),
            ("name", Kind::RequiredStr),
            ("parameters", Kind::Object),
            ("role", Kind::Str),
        ],
        decoded_as: |k: &keys::CreateKey, _: &Map<String, Value>| {
            decoded([
                (
                    "service_instance_guid",
                    Some(Value::from(k.instance_guid.clone())),
                ),
                ("name", Some(Value::from(k.name.clone()))),
                ("parameters", k.parameters.clone().map(Value::Object)),
                ("role", k.role.clone().map(Value::from)),
            ])
        },
    });
}
