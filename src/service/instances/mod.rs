//! Service instances: managed ones are provisioned through their broker ([`create`]: reserve
//! the name, call the broker with no connection held, then complete or discard) and deleted
//! through it ([`delete`]); user-provided ones are local ([`user_provided`]).

mod create;
mod delete;
mod purge;
mod update;
mod user_provided;

pub use create::{create_managed, CreateInstance};
pub use delete::{delete, InstanceDeleted};
pub use purge::{delete_associations, purge};
pub use update::{update_managed, UpdateInstance};
pub use user_provided::{create_upsi, update_upsi, UpsiInput};

use super::{authz, Caller};
use crate::app::AppState;
use crate::auth::Actor;
use crate::db::models::ServiceInstance;
use crate::db::repo::instances::Kind;
use crate::db::repo::ListQuery;
use crate::db::repo::{self, Loaded};
use crate::db::DbConnection;
use crate::error::{ApiError, ApiResult};

/// An instance and, for managed ones, the guid of its service (rendered as `service_guid`).
pub struct InstanceView {
    pub instance: ServiceInstance,
    pub service_guid: Option<String>,
    pub show_credentials: bool,
}

pub(super) fn check_instance_name(name: Option<&str>) -> ApiResult<String> {
    let name = name.unwrap_or_default();
    if name.trim().is_empty() {
        return Err(ApiError::ServiceInstanceNameEmpty);
    }
    if name.chars().count() > 255 {
        return Err(ApiError::ServiceInstanceNameTooLong);
    }
    Ok(name.to_string())
}

pub(super) fn check_tags(name: &str, tags: &[String]) -> ApiResult<String> {
    if tags.iter().map(|t| t.len()).sum::<usize>() > 2048 {
        return Err(ApiError::ServiceInstanceTagsTooLong(name.to_string()));
    }
    Ok(serde_json::to_string(tags).unwrap_or_else(|_| "[]".into()))
}

pub(super) fn name_unique(v: &crate::db::UniqueViolation, name: &str) -> Option<ApiError> {
    if v.is(
        "service_instances_space_name_key",
        "service_instances",
        &["space_guid", "name"],
    ) {
        Some(ApiError::ServiceInstanceNameTaken(name.to_string()))
    } else {
        None
    }
}

/// The not-found error of the endpoint family (`/v2/user_provided_service_instances` has its
/// own).
fn not_found(kind: Kind, guid: &str) -> ApiError {
    match kind {
        Kind::UserProvided => ApiError::UserProvidedServiceInstanceNotFound(guid.to_string()),
        _ => ApiError::ServiceInstanceNotFound(guid.to_string()),
    }
}

/// The space an instance of this kind is in (a read, before authorizing a write).
async fn space_of(state: &AppState, guid: &str, kind: Kind) -> ApiResult<String> {
    let g = guid.to_string();
    state
        .db
        .read(move |conn| {
            repo::instances::find(conn, &g)?
                .filter(|i| kind.includes(i))
                .map(|i| i.space_guid)
                .ok_or_else(|| not_found(kind, &g))
        })
        .await
}

/// Loads an instance the caller may see. `kind` guards the endpoint family (a UPSI through
/// `/v2/service_instances/:guid` is CC's UserProvidedServiceInstanceHandlerNeeded... for writes;
/// reads of either kind are allowed there, as in CC).
pub async fn get(
    state: &AppState,
    caller: &Caller,
    guid: &str,
    kind: Kind,
) -> ApiResult<InstanceView> {
    authz::require_read_scope(&caller.actor)?;
    let g = guid.to_string();
    let actor = caller.actor.clone();
    state
        .db
        .read(move |conn| {
            let instance = repo::instances::find(conn, &g)?;
            let instance = match (instance, kind) {
                (Some(i), Kind::UserProvided) if !i.is_user_provided => None,
                (Some(i), Kind::Managed) if i.is_user_provided => None,
                (i, _) => i,
            };
            let instance = instance.ok_or_else(|| match kind {
                Kind::UserProvided => ApiError::UserProvidedServiceInstanceNotFound(g.clone()),
                _ => ApiError::ServiceInstanceNotFound(g.clone()),
            })?;
            let roles = if actor.reads_everything() {
                None
            } else {
                Some(authz::load_roles(conn, &actor)?)
            };
            if let Some(r) = &roles {
                if !r.can_read_space(&instance.space_guid) {
                    return Err(ApiError::NotAuthorized);
                }
            }
            let show_credentials =
                authz::can_see_secrets_in(roles.as_ref(), &actor, &instance.space_guid);
            let service_guid = match &instance.service_plan_guid {
                Some(p) => repo::brokers::find_plan(conn, p)?.map(|p| p.service_guid),
                None => None,
            };
            Ok(InstanceView {
                instance,
                service_guid,
                show_credentials,
            })
        })
        .await
        .and_then(|v| open_view(state, v))
}

/// Opens a user-provided instance's credentials if the caller may see them.
pub fn open_view(state: &AppState, mut v: InstanceView) -> ApiResult<InstanceView> {
    if v.show_credentials {
        if let Some(c) = &v.instance.credentials {
            v.instance.credentials = Some(state.crypto_open(c)?);
        }
    }
    Ok(v)
}

pub async fn list(
    state: &AppState,
    caller: &Caller,
    query: &ListQuery,
    kind: Kind,
    space: Option<String>,
) -> ApiResult<Loaded<InstanceView>> {
    authz::require_read_scope(&caller.actor)?;
    let page = query.page;
    let filters = query.filters.clone();
    let actor = caller.actor.clone();
    state
        .db
        .read(move |conn| {
            if let Some(s) = &space {
                crate::service::resources::find_space(conn, s)?;
            }
            let roles = if actor.reads_everything() {
                None
            } else {
                Some(authz::load_roles(conn, &actor)?)
            };
            let visible = roles.as_ref().map(|r| r.readable_spaces.clone());
            let loaded = repo::instances::list(
                conn,
                &filters,
                kind,
                space.as_deref(),
                visible.as_deref(),
                &page,
            )?;
            Ok(views_of(conn, loaded, roles.as_ref(), &actor)?)
        })
        .await
        .and_then(|l| {
            let rows = l
                .rows
                .into_iter()
                .map(|v| open_view(state, v))
                .collect::<ApiResult<Vec<_>>>()?;
            Ok(Loaded {
                total: l.total,
                rows,
            })
        })
}

/// The listed instances with their services' guids and whether the caller sees their
/// credentials (still sealed: `open_view` opens them).
fn views_of(
    conn: &mut DbConnection,
    loaded: Loaded<ServiceInstance>,
    roles: Option<&authz::Roles>,
    actor: &Actor,
) -> diesel::QueryResult<Loaded<InstanceView>> {
    let plan_guids: Vec<String> = loaded
        .rows
        .iter()
        .filter_map(|i| i.service_plan_guid.clone())
        .collect();
    let plans = if plan_guids.is_empty() {
        Vec::new()
    } else {
        repo::instances::plans_and_services(conn, &plan_guids)?
    };
    let rows = loaded
        .rows
        .into_iter()
        .map(|instance| {
            let service_guid = instance.service_plan_guid.as_ref().and_then(|pg| {
                plans
                    .iter()
                    .find(|(p, _)| &p.guid == pg)
                    .map(|(_, s)| s.guid.clone())
            });
            let show_credentials = authz::can_see_secrets_in(roles, actor, &instance.space_guid);
            InstanceView {
                instance,
                service_guid,
                show_credentials,
            }
        })
        .collect();
    Ok(Loaded {
        total: loaded.total,
        rows,
    })
}
