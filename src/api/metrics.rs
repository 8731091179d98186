//! `GET /metrics`: the Prometheus exposition (text format 0.0.4), unauthenticated like CC's
//! own metrics endpoint; served on the API's address, or with `--metrics-bind` only on that one
//! (so that it need not be public). With `--metrics off` there is none (404).

use actix_web::{web, HttpResponse};

use super::v2::State;

/// The API's route (absent when metrics have their own address or are off).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(api_metrics));
}

async fn api_metrics(state: State) -> HttpResponse {
    if !state.config.metrics || state.config.metrics_bind.is_some() {
        return actix_web::ResponseError::error_response(&crate::error::ApiError::NotFound);
    }
    exposition(&state).await
}

/// The metrics address's only route.
pub async fn metrics_only(state: State) -> HttpResponse {
    if !state.config.metrics {
        return HttpResponse::NotFound().finish();
    }
    exposition(&state).await
}

async fn exposition(state: &crate::app::AppState) -> HttpResponse {
    crate::service::telemetry::refresh(state).await;
    HttpResponse::Ok()
        .content_type(crate::metrics::CONTENT_TYPE)
        .insert_header(("Cache-Control", "no-store"))
        .body(state.metrics.encode())
}
