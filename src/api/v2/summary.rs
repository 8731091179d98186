//! What the cf CLI's `services` and `service` commands read besides bindings:
//! `GET /v2/spaces/:guid/summary`, `GET /v2/config/feature_flags`,
//! `GET /v2/service_instances/:guid/shared_to`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::State;
use crate::api::query::ListParams;
use crate::api::{json, page};
use crate::db::repo;
use crate::error::{ApiError, ApiResult};
use crate::service::{authz, Caller};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v2/spaces/{guid}/summary", web::get().to(space_summary))
        .route("/v2/config/feature_flags", web::get().to(feature_flags))
        .route(
            "/v2/config/feature_flags/{name}",
            web::get().to(feature_flag),
        )
        .route(
            "/v2/service_instances/{guid}/shared_to",
            web::get().to(shared_to),
        );
}

async fn space_summary(
    state: State,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let space = crate::service::resources::get_space(&state, &caller, &path).await?;
    let sg = space.guid.clone();
    let doc = state
        .db
        .read(move |conn| {
            let all = repo::PageRequest { page: 1, per_page: 10_000, descending: false, order: repo::OrderBy::Name };
            let apps = repo::apps::list(conn, &[], Some(&sg), None, &all)?.rows;
            let instances =
                repo::instances::list(conn, &[], repo::instances::Kind::Both, Some(&sg), None, &all)?.rows;
            let mut app_docs = Vec::new();
            for a in &apps {
                let bindings = repo::bindings::for_app(conn, &a.guid)?;
                let names: Vec<String> = bindings
                    .iter()
                    .filter_map(|b| instances.iter().find(|i| i.guid == b.service_instance_guid).map(|i| i.name.clone()))
                    .collect();
                app_docs.push(json!({
                    "guid": a.guid, "name": a.name, "space_guid": a.space_guid,
                    "service_count": names.len(), "service_names": names,
                    "running_instances": 0, "instances": a.instances, "memory": a.memory,
                    "disk_quota": a.disk_quota, "state": a.state, "urls": [], "routes": [],
                }));
            }
            let mut service_docs = Vec::new();
            for i in &instances {
                let bound = repo::bindings::count_for_instance(conn, &i.guid)?;
                let plan = match &i.service_plan_guid {
                    Some(p) => repo::brokers::find_plan_full(conn, p)?,
                    None => None,
                };
                let op_time = crate::api::render::format_ts(&i.last_operation_updated_at.unwrap_or(i.updated_at));
                let mut doc = json!({
                    "guid": i.guid, "name": i.name, "bound_app_count": bound,
                    "type": if i.is_user_provided { "user_provided_service_instance" } else { "managed_service_instance" },
                });
                if let Some((p, s, b)) = plan {
                    doc["dashboard_url"] = json!(i.dashboard_url);
                    doc["maintenance_info"] = json!({});
                    doc["last_operation"] = json!({
                        "type": i.last_operation_type.clone().unwrap_or_else(|| "create".into()),
                        "state": i.last_operation_state.clone().unwrap_or_else(|| "succeeded".into()),
                        "description": i.last_operation_description.clone().unwrap_or_default(),
                        "updated_at": op_time, "created_at": op_time,
                    });
                    doc["service_broker_name"] = json!(b.name);
                    doc["service_plan"] = json!({
                        "guid": p.guid, "name": p.name, "maintenance_info": {},
                        "service": { "guid": s.guid, "label": s.label, "provider": null, "version": null },
                    });
                }
                service_docs.push(doc);
            }
            Ok(json!({ "guid": space.guid, "name": space.name, "apps": app_docs, "services": service_docs }))
        })
        .await?;
    Ok(json(StatusCode::OK, &doc))
}

/// CC's feature flags and their defaults (tether does not enforce them; clients read them).
const FLAGS: &[(&str, bool)] = &[
    ("user_org_creation", false),
    ("private_domain_creation", true),
    ("app_bits_upload", true),
    ("app_scaling", true),
    ("route_creation", true),
    ("service_instance_creation", true),
    ("diego_docker", false),
    ("diego_cnb", false),
    ("set_roles_by_username", true),
    ("unset_roles_by_username", true),
    ("task_creation", true),
    ("env_var_visibility", true),
    ("space_scoped_private_broker_creation", true),
    ("space_developer_env_var_visibility", true),
    ("service_instance_sharing", false),
    ("hide_marketplace_from_unauthenticated_users", false),
    ("resource_matching", true),
    ("route_sharing", false),
    ("hash_based_routing", false),
];

/// Whether a feature flag is on (its fixed default here); an unknown name is off.
pub(crate) fn feature_flag_enabled(name: &str) -> bool {
    FLAGS
        .iter()
        .any(|(flag, enabled)| *flag == name && *enabled)
}

/// CC's `FeatureFlagPresenter`: a bare object, not a v2 resource.
fn flag_doc(name: &str, enabled: bool) -> Value {
    json!({ "name": name, "enabled": enabled, "error_message": null, "url": format!("/v2/config/feature_flags/{name}") })
}

async fn feature_flags(caller: Caller) -> ApiResult<HttpResponse> {
    authz::require_read_scope(&caller.actor)?;
    let flags: Vec<Value> = FLAGS
        .iter()
        .map(|(name, enabled)| flag_doc(name, *enabled))
        .collect();
    Ok(json(StatusCode::OK, &flags))
}

#[utoipa::path(
    get,
    path = "/v2/config/feature_flags/{name}",
    tag = "feature_flags",
    operation_id = "getFeatureFlag",
    summary = "Get a feature flag (the cf CLI reads `set_roles_by_username` before assigning roles)",
    params(
        ("name" = String, Path, description = "The flag's name"),
    ),
    responses(
        (status = 200, description = "The flag: `{name, enabled, error_message, url}`", body = Object),
        (status = 404, description = "No such flag (`CF-FeatureFlagNotFound`)", body = super::openapi::CfError),
    )
)]
pub(super) async fn feature_flag(
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    authz::require_read_scope(&caller.actor)?;
    let (name, enabled) = FLAGS
        .iter()
        .find(|(name, _)| *name == path.as_str())
        .ok_or_else(|| ApiError::FeatureFlagNotFound(path.to_string()))?;
    Ok(json(StatusCode::OK, &flag_doc(name, *enabled)))
}

/// Instances are never shared here: an empty list (for an instance that exists).
async fn shared_to(
    state: State,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let params = ListParams::parse(req.query_string(), &[])?;
    let view =
        crate::service::instances::get(&state, &caller, &path, repo::instances::Kind::Managed)
            .await;
    match view {
        Ok(_) => Ok(page::<Value>(
            &params,
            &format!("/v2/service_instances/{path}/shared_to"),
            0,
            vec![],
            &[],
        )),
        Err(e @ ApiError::ServiceInstanceNotFound(_)) => Err(e),
        Err(e) => Err(e),
    }
}
