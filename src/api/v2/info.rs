//! Discovery: `GET /` (root links) and `GET /v2/info`, both without auth.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::State;
use crate::api::{base_url, json};

/// What we report as CC's API version: a full semver (the cf CLI needs X.Y.Z) at or above
/// 2.128.0, the CLI's minimum.
pub const API_VERSION: &str = "2.164.0";
pub const V3_VERSION: &str = "3.99.0";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(root))
        .route("/v2/info", web::get().to(info));
}

async fn root(state: State, req: HttpRequest) -> HttpResponse {
    let base = base_url(&req, state.config.external_url.as_deref());
    let uaa = state.config.uaa_url.clone().unwrap_or_else(|| base.clone());
    json(
        StatusCode::OK,
        &json!({
            "links": {
                "self": { "href": base },
                "cloud_controller_v2": { "href": format!("{base}/v2"), "meta": { "version": API_VERSION } },
                "cloud_controller_v3": { "href": format!("{base}/v3"), "meta": { "version": V3_VERSION } },
                "network_policy_v0": null,
                "network_policy_v1": null,
                "login": { "href": uaa },
                "uaa": { "href": uaa },
                "credhub": null,
                "routing": null,
                "logging": null,
                "log_cache": null,
                "log_stream": null,
                "app_ssh": null
            }
        }),
    )
}

async fn info(state: State, req: HttpRequest) -> HttpResponse {
    let base = base_url(&req, state.config.external_url.as_deref());
    let uaa = state.config.uaa_url.clone().unwrap_or_else(|| base.clone());
    json(
        StatusCode::OK,
        &json!({
            "name": "tether",
            "build": env!("CARGO_PKG_VERSION"),
            "support": "",
            "version": 0,
            "description": "tether: a Cloud Controller v2 for service bindings",
            "authorization_endpoint": uaa,
            "token_endpoint": uaa,
            "min_cli_version": null,
            "min_recommended_cli_version": null,
            "app_ssh_endpoint": null,
            "app_ssh_host_key_fingerprint": null,
            "app_ssh_oauth_client": null,
            "doppler_logging_endpoint": null,
            "api_version": API_VERSION,
            "osbapi_version": state.config.broker_api_version,
        }),
    )
}
