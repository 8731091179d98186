//! CC API v2 routes.

mod apps;
mod bindings;
mod brokers;
mod env;
mod info;
mod inline;
mod instances;
mod jobs;
mod keys;
mod openapi;
mod orgs;
mod registry;
mod spaces;
mod summary;
mod users;

use actix_web::{web, HttpRequest, HttpResponse};

use crate::error::ApiError;
use crate::service::Caller;

pub use bindings::render_binding;
pub use env::table_rows;

pub fn configure(cfg: &mut web::ServiceConfig) {
    // Binding routes first: actix tries resources in registration order and matches each
    // pattern with a parameter by regex, so every route registered earlier costs each request
    // one regex match (with bindings last: ~4% of a binding list's CPU). No route of another
    // module matches a binding path, so the order changes nothing else.
    bindings::configure(cfg);
    info::configure(cfg);
    openapi::configure(cfg);
    orgs::configure(cfg);
    spaces::configure(cfg);
    apps::configure(cfg);
    brokers::configure(cfg);
    summary::configure(cfg);
    instances::configure(cfg);
    keys::configure(cfg);
    env::configure(cfg);
    registry::configure(cfg);
    jobs::configure(cfg);
    users::configure(cfg);
}

/// Unknown routes get CC's JSON 404 (`CF-NotFound`), so clients can parse it.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

pub type State = web::Data<crate::app::AppState>;

/// Which related resources to embed.
#[derive(Clone, Copy)]
pub enum Inline {
    App,
    Instance,
}

/// `inline-relations-depth` of a single-resource request (validated like a list's).
pub fn depth_of(req: &HttpRequest) -> Result<u8, ApiError> {
    Ok(
        crate::api::query::ListParams::parse(req.query_string(), &[])?
            .inline_depth
            .unwrap_or(0),
    )
}

/// Embeds related resources into a rendered resource when a depth was asked for.
pub async fn with_relations<T: serde::Serialize>(
    state: &crate::app::AppState,
    caller: &Caller,
    resource: &T,
    kind: Inline,
    depth: u8,
) -> Result<serde_json::Value, ApiError> {
    let mut v = serde_json::to_value(resource).map_err(ApiError::internal)?;
    if depth > 0 {
        match kind {
            Inline::App => inline::app(state, caller, &mut v, depth).await?,
            Inline::Instance => inline::instance_relations(state, caller, &mut v, depth).await?,
        }
    }
    Ok(v)
}

/// A list page, embedding relations into each resource when asked.
#[allow(clippy::too_many_arguments)] // the page's parts, as `api::page` takes them, plus what to inline
pub async fn page_with_relations<T: serde::Serialize>(
    state: &crate::app::AppState,
    caller: &Caller,
    params: &crate::api::query::ListParams,
    path: &str,
    total: i64,
    items: Vec<T>,
    preserve: &[&str],
    kind: Inline,
) -> Result<HttpResponse, ApiError> {
    let depth = params.inline_depth.unwrap_or(0);
    if depth == 0 {
        return Ok(crate::api::page(params, path, total, items, preserve));
    }
    let mut values = Vec::with_capacity(items.len());
    for item in &items {
        values.push(with_relations(state, caller, item, kind, depth).await?);
    }
    Ok(crate::api::page(params, path, total, values, preserve))
}

/// Sets `Location` on a create response.
pub fn set_location(resp: &mut HttpResponse, path: &str) {
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(path) {
        resp.headers_mut()
            .insert(actix_web::http::header::LOCATION, v);
    }
}
