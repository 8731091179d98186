//! Use cases. Each function validates, authorizes against stored roles, talks to brokers with no
//! database connection held, and persists in short transactions.

pub mod authz;
pub mod bindings;
pub mod brokers;
pub mod catalog;
pub mod code_engine;
pub mod demo;
pub mod env;
pub mod instances;
pub mod keys;
pub mod operations;
pub mod orphans;
pub mod registry;
pub mod resources;
pub mod roles;
pub mod rotation;
pub mod scim;
pub mod telemetry;
pub mod uaa;

use crate::auth::Actor;
use crate::broker::CallContext;
use crate::db::{as_unique_violation, UniqueViolation};
use crate::error::ApiError;

/// CC's answer to a body naming a space that does not exist.
pub fn no_such_space(guid: &str) -> ApiError {
    ApiError::InvalidRelation(format!(
        "Could not find VCAP::CloudController::Space with guid: {guid}"
    ))
}

/// Who is asking, and the request id to trace broker calls with.
#[derive(Debug, Clone)]
pub struct Caller {
    pub actor: Actor,
    pub request_id: String,
}

impl Caller {
    pub fn broker_ctx(&self) -> CallContext {
        CallContext {
            request_id: Some(self.request_id.clone()),
            user_id: self.actor.user_id.clone(),
        }
    }
}

/// Runs a write and turns a unique-index violation into the caller's error.
pub fn on_unique<T>(
    result: diesel::QueryResult<T>,
    map: impl FnOnce(&UniqueViolation) -> Option<ApiError>,
) -> Result<T, ApiError> {
    match result {
        Ok(v) => Ok(v),
        Err(e) => {
            if let Some(v) = as_unique_violation(&e) {
                if let Some(api) = map(&v) {
                    return Err(api);
                }
            }
            Err(e.into())
        }
    }
}

pub fn new_guid() -> String {
    uuid::Uuid::new_v4().to_string()
}
