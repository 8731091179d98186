//! An app's environment (`GET /v2/apps/:guid/env`): CC's `VCAP_SERVICES` and `VCAP_APPLICATION`,
//! plus Code Engine's per-binding `PREFIX_KEY` variables and `CE_SERVICES`.

use serde_json::{json, Map, Value};

use super::{authz, Caller};
use crate::app::AppState;
use crate::db::models::{
    App, Organization, Service, ServiceBinding, ServiceInstance, ServicePlan, Space,
};
use crate::db::repo;
use crate::error::{ApiError, ApiResult};

/// Everything the env document is built from.
pub struct AppBindings {
    pub app: App,
    pub space: Space,
    pub org: Organization,
    pub entries: Vec<Entry>,
}

pub struct Entry {
    pub binding: ServiceBinding,
    pub instance: ServiceInstance,
    pub plan: Option<ServicePlan>,
    pub service: Option<Service>,
    /// The name of the service key the binding uses, if any.
    pub key_name: Option<String>,
    /// That key's role.
    pub key_role: Option<String>,
}

impl Entry {
    /// The role of the credential the binding uses: its key's, else its own.
    pub fn role(&self) -> Option<&str> {
        match &self.binding.service_key_guid {
            Some(_) => self.key_role.as_deref(),
            None => self.binding.role.as_deref(),
        }
    }
}

impl Entry {
    pub fn label(&self) -> String {
        self.service
            .as_ref()
            .map(|s| s.label.clone())
            .unwrap_or_else(|| "user-provided".to_string())
    }

    /// Service tags, then the instance's own (CC's `merged_tags`).
    pub fn tags(&self) -> Vec<String> {
        let mut tags = self
            .service
            .as_ref()
            .map(|s| s.tags_list())
            .unwrap_or_default();
        let own: Vec<String> = serde_json::from_str(&self.instance.tags).unwrap_or_default();
        for t in own {
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        tags
    }
}

/// Loads an app with its bindings and their instances, plans and services.
pub async fn load(
    state: &AppState,
    caller: &Caller,
    app_guid: &str,
    need_secrets: bool,
) -> ApiResult<AppBindings> {
    authz::require_read_scope(&caller.actor)?;
    let g = app_guid.to_string();
    let actor = caller.actor.clone();
    let mut loaded = state
        .db
        .read(move |conn| {
            let app =
                repo::apps::find(conn, &g)?.ok_or_else(|| ApiError::AppNotFound(g.clone()))?;
            let allowed = if need_secrets {
                // CC: reading an app's environment needs admin, read-only admin, or developer.
                actor.reads_all_secrets()
                    || authz::load_roles(conn, &actor)?.is_developer(&app.space_guid)
            } else {
                actor.reads_everything()
                    || authz::load_roles(conn, &actor)?.can_read_space(&app.space_guid)
            };
            if !allowed {
                return Err(ApiError::NotAuthorized);
            }
            let (space, org) = repo::spaces::find_with_org(conn, &app.space_guid)?
                .ok_or_else(|| ApiError::internal("app without space"))?;
            let mut entries = Vec::new();
            for binding in repo::bindings::for_app(conn, &app.guid)? {
                let Some((instance, catalog)) =
                    repo::instances::find_with_catalog(conn, &binding.service_instance_guid)?
                else {
                    continue;
                };
                let key = match &binding.service_key_guid {
                    Some(k) => repo::keys::find(conn, k)?,
                    None => None,
                };
                let (key_name, key_role) = match key {
                    Some(k) => (Some(k.name), k.role),
                    None => (None, None),
                };
                let (plan, service) = match catalog {
                    Some((p, s, _)) => (Some(p), Some(s)),
                    None => (None, None),
                };
                entries.push(Entry {
                    binding,
                    instance,
                    plan,
                    service,
                    key_name,
                    key_role,
                });
            }
            Ok(AppBindings {
                app,
                space,
                org,
                entries,
            })
        })
        .await?;
    if need_secrets {
        for e in &mut loaded.entries {
            e.binding.credentials = state.crypto_open(&e.binding.credentials)?;
        }
    }
    Ok(loaded)
}

fn censor_mounts(stored: &str) -> Value {
    let mounts: Vec<Value> = serde_json::from_str(stored).unwrap_or_default();
    Value::Array(
        mounts
            .into_iter()
            .map(|m| {
                let mut out = Map::new();
                for k in ["container_dir", "mode", "device_type"] {
                    if let Some(v) = m.get(k) {
                        out.insert(k.to_string(), v.clone());
                    }
                }
                Value::Object(out)
            })
            .collect(),
    )
}

/// `VCAP_SERVICES`, as CC's SystemEnvPresenter builds it: keyed by service label
/// (`user-provided` for user-provided instances), only bindings whose create succeeded.
pub fn vcap_services(ab: &AppBindings) -> Value {
    let mut out: Map<String, Value> = Map::new();
    for e in ab.entries.iter().filter(|e| create_succeeded(&e.binding)) {
        let b = &e.binding;
        let mut entry = Map::new();
        entry.insert("label".into(), json!(e.label()));
        if let (Some(plan), Some(_)) = (&e.plan, &e.service) {
            entry.insert("provider".into(), Value::Null);
            entry.insert("plan".into(), json!(plan.name));
        }
        entry.insert(
            "name".into(),
            json!(b.client_name().unwrap_or(&e.instance.name)),
        );
        entry.insert("tags".into(), json!(e.tags()));
        entry.insert("instance_guid".into(), json!(e.instance.guid));
        entry.insert("instance_name".into(), json!(e.instance.name));
        entry.insert("binding_guid".into(), json!(b.guid));
        entry.insert("binding_name".into(), json!(b.client_name()));
        entry.insert(
            "credentials".into(),
            serde_json::from_str(&b.credentials).unwrap_or_else(|_| json!({})),
        );
        entry.insert("syslog_drain_url".into(), json!(b.syslog_drain_url));
        entry.insert("volume_mounts".into(), censor_mounts(&b.volume_mounts));
        if let Value::Array(list) = out.entry(e.label()).or_insert_with(|| json!([])) {
            list.push(Value::Object(entry));
        }
    }
    Value::Object(out)
}

/// CC's `is_created?` for environment purposes: the create finished successfully.
fn create_succeeded(b: &ServiceBinding) -> bool {
    match (
        b.last_operation_type.as_deref(),
        b.last_operation_state.as_deref(),
    ) {
        (Some("create"), Some(s)) => s == "succeeded",
        _ => true,
    }
}

/// Code Engine's environment: `CE_SERVICES` (by service type, with role and prefix) and the
/// flattened `PREFIX_KEY` variables of every binding.
pub fn code_engine_env(ab: &AppBindings) -> Map<String, Value> {
    let mut vars = Map::new();
    let mut ce: Map<String, Value> = Map::new();
    for e in ab.entries.iter().filter(|e| create_succeeded(&e.binding)) {
        let b = &e.binding;
        let credentials: Value = serde_json::from_str(&b.credentials).unwrap_or_else(|_| json!({}));
        let prefix = b
            .prefix
            .clone()
            .unwrap_or_else(|| super::code_engine::upper_snake(&e.label()));
        for (k, v) in super::code_engine::flatten_credentials(&prefix, &credentials) {
            vars.insert(k, json!(v));
        }
        let entry = json!({
            "name": b.client_name().unwrap_or(&e.instance.name),
            "binding_guid": b.guid,
            "instance_guid": e.instance.guid,
            "instance_name": e.instance.name,
            "label": e.label(),
            "plan": e.plan.as_ref().map(|p| p.name.clone()),
            "role": e.role(),
            "service_key": e.key_name,
            "prefix": prefix,
            "credentials": credentials,
        });
        if let Value::Array(list) = ce.entry(e.label()).or_insert_with(|| json!([])) {
            list.push(entry);
        }
    }
    let mut out = Map::new();
    out.insert("CE_SERVICES".into(), Value::Object(ce));
    out.extend(vars);
    out
}

/// `VCAP_APPLICATION`.
pub fn vcap_application(ab: &AppBindings, api_url: &str) -> Value {
    let a = &ab.app;
    json!({
        "cf_api": api_url,
        "limits": { "fds": 16384, "mem": a.memory, "disk": a.disk_quota },
        "application_name": a.name,
        "application_uris": [],
        "name": a.name,
        "space_name": ab.space.name,
        "space_id": ab.space.guid,
        "organization_id": ab.org.guid,
        "organization_name": ab.org.name,
        "uris": [],
        "users": null,
        "application_id": a.guid,
        "version": a.guid,
        "application_version": a.guid,
    })
}
