//! `inline-relations-depth`: CC embeds related resources beside their `*_url` (to-one relations as
//! objects, to-many as arrays). Only built when asked for, so plain requests keep the typed,
//! allocation-light rendering.
//!
//! Supported: bindings → `app`, `service_instance`; apps → `space`, `service_bindings`;
//! service instances → `space`, `service_plan`, `service_bindings`, `service_keys`; at depth 2 also
//! space → `organization` and service plan → `service`.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::bindings::BindingEntity;
use crate::api::render::{MetadataRef, Resource};
use crate::db::repo::bindings::BindingView;

use crate::app::AppState;
use crate::db::repo;
use crate::error::ApiResult;
use crate::service::Caller;

fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn set(resource: &mut Value, key: &str, value: Value) {
    if let Some(entity) = resource.get_mut("entity").and_then(Value::as_object_mut) {
        entity.insert(key.to_string(), value);
    }
}

async fn space_value(state: &AppState, guid: &str, depth: u8) -> ApiResult<Value> {
    let g = guid.to_string();
    let found = state
        .db
        .read(move |conn| Ok(repo::spaces::find_with_org(conn, &g)?))
        .await?;
    Ok(match found {
        Some((space, org)) => {
            let mut v = to_value(&super::spaces::render_space(&space));
            if depth > 1 {
                set(
                    &mut v,
                    "organization",
                    to_value(&super::orgs::render_org(&org)),
                );
            }
            v
        }
        None => Value::Null,
    })
}

async fn plan_value(state: &AppState, guid: &str, depth: u8) -> ApiResult<Value> {
    let g = guid.to_string();
    let found = state
        .db
        .read(move |conn| Ok(repo::brokers::find_plan_full(conn, &g)?))
        .await?;
    Ok(match found {
        Some((plan, service, broker)) => {
            let mut v = to_value(&super::brokers::render_plan(&plan));
            if depth > 1 {
                let view = crate::service::brokers::ServiceView {
                    service,
                    broker_name: broker.name,
                };
                set(
                    &mut v,
                    "service",
                    to_value(&super::brokers::render_service(&view)),
                );
            }
            v
        }
        None => Value::Null,
    })
}

/// A page of bindings with their relations embedded (see [`service::bindings::Related`]): each
/// related app and instance is rendered once, and every binding that names it borrows it.
pub struct Embedded {
    apps: HashMap<String, Box<RawValue>>,
    instances: HashMap<String, Box<RawValue>>,
}

impl Embedded {
    pub async fn load(
        state: &AppState,
        rows: &[(BindingView, bool)],
        depth: u8,
    ) -> ApiResult<Embedded> {
        let related = crate::service::bindings::related(state, rows, depth).await?;
        let space = |guid: &str| {
            related
                .spaces
                .get(guid)
                .map(|s| to_value(&super::spaces::render_space(s)))
        };
        let mut apps = HashMap::new();
        for (guid, app) in &related.apps {
            let mut v = to_value(&super::apps::render_app(app));
            if let Some(s) = space(&app.space_guid) {
                set(&mut v, "space", s);
            }
            apps.insert(guid.clone(), raw(&v));
        }
        let mut instances = HashMap::new();
        for (guid, view) in &related.instances {
            let mut v = to_value(&super::instances::render_instance(view));
            if let Some(s) = space(&view.instance.space_guid) {
                set(&mut v, "space", s);
            }
            let plan = view
                .instance
                .service_plan_guid
                .as_ref()
                .and_then(|p| related.plans.get(p));
            if let Some(p) = plan {
                set(
                    &mut v,
                    "service_plan",
                    to_value(&super::brokers::render_plan(p)),
                );
            }
            instances.insert(guid.clone(), raw(&v));
        }
        Ok(Embedded { apps, instances })
    }

    /// The binding's document with its app and instance embedded (omitted if gone, as CC does).
    pub fn binding<'a>(
        &'a self,
        view: &'a BindingView,
        show_credentials: bool,
    ) -> Resource<BindingEntity<'a>, MetadataRef<'a>> {
        let mut r = super::bindings::render_binding(view, show_credentials);
        r.entity.app = self.apps.get(&view.binding.app_guid).map(|b| &**b);
        r.entity.service_instance = self
            .instances
            .get(&view.binding.service_instance_guid)
            .map(|b| &**b);
        r
    }
}

/// CC embeds a to-many relation only when it has at most this many members; past that, only
/// its `*_url` is shown (`RelationsPresenter::MAX_INLINE_DEFAULT`).
const MAX_INLINE: i64 = 50;

fn embed_bindings(resource: &mut Value, bindings: &repo::Loaded<(BindingView, bool)>) {
    if bindings.total > MAX_INLINE {
        return;
    }
    let list: Vec<Value> = bindings
        .rows
        .iter()
        .map(|(v, show)| to_value(&super::bindings::render_binding(v, *show)))
        .collect();
    set(resource, "service_bindings", Value::Array(list));
}

fn embed_keys(resource: &mut Value, keys: &repo::Loaded<crate::service::keys::KeyView>) {
    if keys.total > MAX_INLINE {
        return;
    }
    let list: Vec<Value> = keys
        .rows
        .iter()
        .map(|k| to_value(&super::keys::render_key(k)))
        .collect();
    set(resource, "service_keys", Value::Array(list));
}

fn raw(v: &Value) -> Box<RawValue> {
    crate::api::render::raw_json(&v.to_string(), "null")
}

/// Inlines an app's space and bindings.
pub async fn app(
    state: &AppState,
    caller: &Caller,
    resource: &mut Value,
    depth: u8,
) -> ApiResult<()> {
    let space = resource["entity"]["space_guid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let guid = resource["metadata"]["guid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let sv = space_value(state, &space, depth).await?;
    set(resource, "space", sv);
    let bindings = crate::service::bindings::list(
        state,
        caller,
        &repo::ListQuery::first_page(),
        repo::bindings::Scope::App(&guid),
    )
    .await?;
    embed_bindings(resource, &bindings);
    Ok(())
}

/// Inlines a service instance's space, plan, bindings and service keys (the cf CLI's
/// `delete-service` counts the last two before it deletes).
pub async fn instance_relations(
    state: &AppState,
    caller: &Caller,
    resource: &mut Value,
    depth: u8,
) -> ApiResult<()> {
    let entity = resource["entity"].clone();
    let guid = resource["metadata"]["guid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let space = entity["space_guid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let sv = space_value(state, &space, depth).await?;
    set(resource, "space", sv);
    if let Some(plan) = entity["service_plan_guid"].as_str() {
        let pv = plan_value(state, plan, depth).await?;
        set(resource, "service_plan", pv);
    }
    let bindings = crate::service::bindings::list(
        state,
        caller,
        &repo::ListQuery::first_page(),
        repo::bindings::Scope::Instance(&guid),
    )
    .await?;
    embed_bindings(resource, &bindings);
    let keys =
        crate::service::keys::list(state, caller, &repo::ListQuery::first_page(), Some(guid))
            .await?;
    embed_keys(resource, &keys);
    Ok(())
}
