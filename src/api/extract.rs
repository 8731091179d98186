//! Extractors: who is calling (the bearer token, verified), the request id, and the two
//! together as the use cases' [`Caller`].

use std::future::{ready, Ready};

use actix_web::{FromRequest, HttpMessage, HttpRequest};

use crate::auth::Actor;
use crate::error::ApiError;
use crate::service::Caller;

/// The request id (see `middleware::request_id`: the client's, sanitised, plus a fresh UUID); stored in request extensions
/// by the middleware and forwarded to brokers.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl FromRequest for RequestId {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let id = req
            .extensions()
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(|| RequestId(uuid::Uuid::new_v4().to_string()));
        ready(Ok(id))
    }
}

/// Parses `Authorization: bearer <jwt>` (scheme case-insensitive, as the cf CLI sends
/// lowercase and the Python client capitalised).
pub fn bearer_token(req: &HttpRequest) -> Result<&str, ApiError> {
    let Some(value) = req.headers().get(actix_web::http::header::AUTHORIZATION) else {
        return Err(ApiError::NotAuthenticated);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::InvalidAuthToken)?
        .trim();
    if value.is_empty() {
        return Err(ApiError::NotAuthenticated);
    }
    let (scheme, token) = value.split_once(' ').ok_or(ApiError::InvalidAuthToken)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::InvalidAuthToken);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(ApiError::InvalidAuthToken);
    }
    Ok(token)
}

impl FromRequest for Actor {
    type Error = ApiError;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let state = req
            .app_data::<actix_web::web::Data<crate::app::AppState>>()
            .cloned();
        let token = bearer_token(req).map(str::to_string);
        let req = req.clone();
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::internal("application state missing"))?;
            let actor = state.verifier.verify(&token?).await?;
            // For the access log: who, never the token.
            let who = match (&actor.user_id, &actor.client_id) {
                (Some(user), _) => Some(user.clone()),
                (None, Some(client)) => Some(format!("client:{client}")),
                (None, None) => None,
            };
            if let Some(who) = who {
                req.extensions_mut()
                    .insert(crate::api::access_log::AuthenticatedUser(who));
            }
            Ok(actor)
        })
    }
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
