//! Bearer-token authentication (UAA-style JWTs) and the caller identity handlers work with.

pub mod password;
pub mod token;

use std::future::{ready, Ready};

use actix_web::{FromRequest, HttpMessage, HttpRequest};

use crate::error::ApiError;

pub use token::{Claims, TokenIssuer, TokenVerifier};

pub const SCOPE_ADMIN: &str = "cloud_controller.admin";
pub const SCOPE_ADMIN_READ_ONLY: &str = "cloud_controller.admin_read_only";
pub const SCOPE_GLOBAL_AUDITOR: &str = "cloud_controller.global_auditor";
pub const SCOPE_READ: &str = "cloud_controller.read";
pub const SCOPE_WRITE: &str = "cloud_controller.write";

/// Who is calling, from a verified token.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The UAA user id (`user_id`, else `sub` of a user token); None for client tokens.
    pub user_id: Option<String>,
    pub user_name: Option<String>,
    pub client_id: Option<String>,
    pub scopes: Vec<String>,
}

impl Actor {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    pub fn is_admin(&self) -> bool {
        self.has_scope(SCOPE_ADMIN)
    }

    pub fn is_admin_read_only(&self) -> bool {
        self.has_scope(SCOPE_ADMIN_READ_ONLY)
    }

    pub fn is_global_auditor(&self) -> bool {
        self.has_scope(SCOPE_GLOBAL_AUDITOR)
    }

    /// Sees every resource (lists are not filtered by role).
    pub fn reads_everything(&self) -> bool {
        self.is_admin() || self.is_admin_read_only() || self.is_global_auditor()
    }

    /// Sees every credential.
    pub fn reads_all_secrets(&self) -> bool {
        self.is_admin() || self.is_admin_read_only()
    }

    /// May call read endpoints at all.
    pub fn can_read(&self) -> bool {
        self.reads_everything() || self.has_scope(SCOPE_READ)
    }

    /// May call write endpoints at all (roles decide where).
    pub fn can_write(&self) -> bool {
        self.is_admin() || self.has_scope(SCOPE_WRITE)
    }
}

/// The request id, echoed from `X-Vcap-Request-Id` or generated; stored in request extensions
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
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::internal("application state missing"))?;
            state.verifier.verify(&token?).await
        })
    }
}
