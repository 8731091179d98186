//! CC API v2 routes.

mod apps;
mod bindings;
mod brokers;
mod info;
mod instances;
mod jobs;
mod orgs;
mod spaces;
mod users;

use actix_web::{web, FromRequest, HttpMessage, HttpRequest, HttpResponse};

use crate::auth::{Actor, RequestId};
use crate::error::ApiError;
use crate::service::Caller;

pub use bindings::render_binding;

pub fn configure(cfg: &mut web::ServiceConfig) {
    info::configure(cfg);
    orgs::configure(cfg);
    spaces::configure(cfg);
    apps::configure(cfg);
    brokers::configure(cfg);
    instances::configure(cfg);
    bindings::configure(cfg);
    jobs::configure(cfg);
    users::configure(cfg);
}

/// Unknown routes get CC's JSON 404 (`CF-NotFound`), so clients can parse it.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let actor = Actor::from_request(req, payload);
        let request_id = req
            .extensions()
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        Box::pin(async move {
            Ok(Caller {
                actor: actor.await?,
                request_id,
            })
        })
    }
}

pub type State = web::Data<crate::app::AppState>;

/// Sets `Location` on a create response.
pub fn set_location(resp: &mut HttpResponse, path: &str) {
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(path) {
        resp.headers_mut()
            .insert(actix_web::http::header::LOCATION, v);
    }
}
