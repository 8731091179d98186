//! Renaming and retagging a managed instance (no broker call needed for these).

use super::{check_instance_name, check_tags, name_unique, InstanceView};
use crate::app::AppState;
use crate::db::repo;
use crate::db::repo::instances::Kind;
use crate::error::{ApiError, ApiResult};
use crate::service::{authz, on_unique, Caller};

/// Renames / retags a managed instance (no broker call needed for these).
pub async fn update_managed(
    state: &AppState,
    caller: &Caller,
    guid: &str,
    name: Option<String>,
    tags: Option<Vec<String>>,
    wants_broker_update: bool,
) -> ApiResult<InstanceView> {
    authz::require_write_scope(&caller.actor)?;
    if wants_broker_update {
        return Err(ApiError::UnprocessableEntity(
            "Changing the plan or parameters of a service instance is not supported by this server."
                .into(),
        ));
    }
    let g = guid.to_string();
    let space = super::space_of(state, guid, Kind::Managed).await?;
    authz::require_space_writer(&state.db, &caller.actor, &space).await?;
    state
        .db
        .write(move |conn| {
            let mut instance = repo::instances::find(conn, &g)?
                .filter(|i| !i.is_user_provided)
                .ok_or_else(|| ApiError::ServiceInstanceNotFound(g.clone()))?;
            if instance.last_operation().in_progress() {
                return Err(ApiError::AsyncServiceInstanceOperationInProgress(
                    instance.name.clone(),
                ));
            }
            if let Some(n) = name {
                instance.name = check_instance_name(Some(&n))?;
            }
            if let Some(t) = tags {
                instance.tags = check_tags(&instance.name, &t)?;
            }
            let n = instance.name.clone();
            on_unique(repo::instances::update_fields(conn, &instance), |v| {
                name_unique(v, &n)
            })?;
            let service_guid = match &instance.service_plan_guid {
                Some(p) => repo::brokers::find_plan(conn, p)?.map(|p| p.service_guid),
                None => None,
            };
            let instance = repo::instances::find(conn, &g)?
                .ok_or_else(|| ApiError::ServiceInstanceNotFound(g.clone()))?;
            Ok(InstanceView {
                instance,
                service_guid,
                show_credentials: true,
            })
        })
        .await
}
