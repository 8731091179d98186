//! Health endpoints for load balancers and orchestrators: `GET /healthz` (liveness: the
//! process answers) and `GET /readyz` (readiness: the database answers within a short timeout,
//! its migrations are applied, and the process is not shutting down). Both unauthenticated and
//! cheap; the access log records them at debug level only.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde_json::json;

use super::v2::State;

/// How long readiness waits for the database before it answers 503.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz));
}

/// The paths of the health endpoints (kept out of the info-level access log).
pub fn is_health_path(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz")
}

/// JSON, so that the error-body middleware leaves a 503 as it is.
fn answer(status: StatusCode, state: &str, reason: Option<&str>) -> HttpResponse {
    let mut body = json!({ "status": state });
    if let Some(reason) = reason {
        body["reason"] = json!(reason);
    }
    HttpResponse::build(status)
        .insert_header(("Cache-Control", "no-store"))
        .json(body)
}

async fn healthz() -> HttpResponse {
    answer(StatusCode::OK, "ok", None)
}

async fn readyz(state: State) -> HttpResponse {
    let unavailable =
        |reason: &str| answer(StatusCode::SERVICE_UNAVAILABLE, "unavailable", Some(reason));
    if state.lifecycle.is_stopping() {
        return unavailable("shutting down");
    }
    match tokio::time::timeout(READY_TIMEOUT, state.db.check_ready()).await {
        Ok(Ok(true)) if !state.lifecycle.is_stopping() => answer(StatusCode::OK, "ready", None),
        Ok(Ok(true)) => unavailable("shutting down"),
        Ok(Ok(false)) => unavailable("database migrations are pending"),
        Ok(Err(e)) => {
            // The cause stays in the log: this endpoint is unauthenticated.
            tracing::debug!(error = %e, "not ready");
            unavailable("the database does not answer")
        }
        Err(_) => unavailable("the database did not answer in time"),
    }
}
