//! The two deletes of an instance that go past its associations (CC `DELETE
//! /v2/service_instances/:guid` with `purge=true` or `recursive=true`).

use crate::app::AppState;
use crate::db::repo;
use crate::error::{ApiError, ApiResult};
use crate::service::bindings::{self, Deleted};
use crate::service::{authz, keys, Caller};

/// `purge=true`: forgets the instance with its bindings and keys, telling no broker (CC's
/// `ServiceInstancePurger`). Admins may; so may a space developer when the instance's broker
/// is scoped to a space (CC `ServiceInstanceAccess#purge?`).
pub async fn purge(state: &AppState, caller: &Caller, guid: &str) -> ApiResult<()> {
    let (g, actor) = (guid.to_string(), caller.actor.clone());
    state
        .db
        .read(move |conn| {
            let (instance, catalog) = repo::instances::find_with_catalog(conn, &g)?
                .ok_or_else(|| ApiError::ServiceInstanceNotFound(g.clone()))?;
            if actor.is_admin() {
                return Ok(());
            }
            let space_scoped = catalog.is_some_and(|(_, _, broker)| broker.space_guid.is_some());
            if space_scoped && authz::can_write_space(conn, &actor, &instance.space_guid)? {
                return Ok(());
            }
            Err(ApiError::NotAuthorized)
        })
        .await?;
    let g = guid.to_string();
    let removed = state
        .db
        .write(move |conn| Ok(repo::instances::purge(conn, &g)?))
        .await?;
    if removed == 0 {
        return Err(ApiError::ServiceInstanceNotFound(guid.to_string()));
    }
    tracing::info!(instance = %guid, "purged a service instance");
    Ok(())
}

/// `recursive=true`, before the instance's own delete: unbinds every binding and deletes every
/// key, each through its broker. What could not be deleted fails the whole request with CC's
/// `ServiceInstanceRecursiveDeleteFailed`, listing each cause.
pub async fn delete_associations(
    state: &AppState,
    caller: &Caller,
    guid: &str,
    accepts_incomplete: bool,
) -> ApiResult<()> {
    authz::require_write_scope(&caller.actor)?;
    let (g, actor) = (guid.to_string(), caller.actor.clone());
    let (name, binding_guids, key_guids) = state
        .db
        .read(move |conn| {
            let instance = repo::instances::find(conn, &g)?
                .ok_or_else(|| ApiError::ServiceInstanceNotFound(g.clone()))?;
            if !authz::can_write_space(conn, &actor, &instance.space_guid)? {
                return Err(ApiError::NotAuthorized);
            }
            let (b, k) = repo::instances::associations(conn, &g)?;
            Ok((instance.name, b, k))
        })
        .await?;
    let mut errors = Vec::new();
    for b in &binding_guids {
        match bindings::delete(state, caller, b, accepts_incomplete).await {
            Ok(Deleted::Gone { .. }) | Err(ApiError::ServiceBindingNotFound(_)) => {}
            Ok(Deleted::InProgress(shown)) => {
                let app = app_name(state, &shown.view.binding.app_guid).await?;
                errors.push(ApiError::AsyncServiceBindingOperationInProgress(
                    app,
                    name.clone(),
                ));
            }
            Err(e) => errors.push(e),
        }
    }
    for k in &key_guids {
        match keys::delete(state, caller, k).await {
            Ok(()) | Err(ApiError::ServiceKeyNotFound(_)) => {}
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        return Ok(());
    }
    let causes = errors
        .iter()
        .map(|e| format!("\t{e}"))
        .collect::<Vec<_>>()
        .join("\n\n");
    Err(ApiError::ServiceInstanceRecursiveDeleteFailed(name, causes))
}

async fn app_name(state: &AppState, guid: &str) -> ApiResult<String> {
    let g = guid.to_string();
    state
        .db
        .read(move |conn| Ok(repo::apps::find(conn, &g)?.map(|a| a.name).unwrap_or(g)))
        .await
}
