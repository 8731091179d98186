//! `inline-relations-depth`: CC embeds related resources beside their `*_url` (to-one relations as
//! objects, to-many as arrays). Only built when asked for, so plain requests keep the typed,
//! allocation-light rendering.
//!
//! Supported: bindings → `app`, `service_instance`; apps → `space`, `service_bindings`;
//! service instances → `space`, `service_plan`, `service_bindings`; at depth 2 also
//! space → `organization` and service plan → `service`.

use serde::Serialize;
use serde_json::{json, Value};

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

/// Inlines a binding's app and service instance.
pub async fn binding(
    state: &AppState,
    caller: &Caller,
    resource: &mut Value,
    depth: u8,
) -> ApiResult<()> {
    let entity = &resource["entity"];
    let app_guid = entity["app_guid"].as_str().unwrap_or_default().to_string();
    let si_guid = entity["service_instance_guid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let app = crate::service::resources::get_app(state, caller, &app_guid)
        .await
        .ok();
    let mut app_v = app
        .map(|a| to_value(&super::apps::render_app(&a)))
        .unwrap_or(Value::Null);
    if depth > 1 && !app_v.is_null() {
        let space = app_v["entity"]["space_guid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let sv = space_value(state, &space, depth - 1).await?;
        set(&mut app_v, "space", sv);
    }
    set(resource, "app", app_v);
    let si = crate::service::instances::get(state, caller, &si_guid, repo::instances::Kind::Both)
        .await
        .ok();
    let mut si_v = si
        .map(|v| to_value(&super::instances::render_instance(&v)))
        .unwrap_or(Value::Null);
    if depth > 1 && !si_v.is_null() {
        instance_relations(state, caller, &mut si_v, depth - 1).await?;
    }
    set(resource, "service_instance", si_v);
    Ok(())
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
    let params = crate::api::query::ListParams::parse("", &[])?;
    let bindings =
        crate::service::bindings::list(state, caller, &params, repo::bindings::Scope::App(&guid))
            .await?;
    let list: Vec<Value> = bindings
        .rows
        .iter()
        .map(|(v, show)| to_value(&super::bindings::render_binding(v, *show)))
        .collect();
    set(resource, "service_bindings", Value::Array(list));
    Ok(())
}

/// Inlines a service instance's space, plan and bindings.
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
    let params = crate::api::query::ListParams::parse("", &[])?;
    let bindings = crate::service::bindings::list(
        state,
        caller,
        &params,
        repo::bindings::Scope::Instance(&guid),
    )
    .await?;
    let list: Vec<Value> = bindings
        .rows
        .iter()
        .map(|(v, show)| to_value(&super::bindings::render_binding(v, *show)))
        .collect();
    set(resource, "service_bindings", json!(list));
    Ok(())
}
