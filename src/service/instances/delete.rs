//! Deprovisioning: claim the delete (no bindings or keys may remain), deprovision at the broker
//! with no connection held, then remove the row, start polling, or record the failure.

use super::InstanceView;
use crate::app::AppState;
use crate::broker::UnbindOutcome;
use crate::db::models::ServiceInstance;
use crate::db::repo;
use crate::db::repo::instances::Kind;
use crate::error::{ApiError, ApiResult};
use crate::operation::{LastOperation, OperationState, OperationType};
use crate::service::catalog::Catalog;
use crate::service::operations::{self, Subject};
use crate::service::{authz, Caller};

pub enum InstanceDeleted {
    Gone,
    InProgress(Box<InstanceView>),
}

const DELETING: LastOperation =
    LastOperation::new(OperationType::Delete, OperationState::InProgress);

pub async fn delete(
    state: &AppState,
    caller: &Caller,
    guid: &str,
    kind: Kind,
    accepts_incomplete: bool,
) -> ApiResult<InstanceDeleted> {
    authz::require_write_scope(&caller.actor)?;
    let (instance, catalog) = load(state, caller, guid, kind).await?;
    claim(state, &instance, catalog.is_some()).await?;
    let Some(catalog) = catalog else {
        return Ok(InstanceDeleted::Gone);
    };
    let outcome = state
        .broker
        .deprovision(
            &catalog.target(),
            &instance.guid,
            &catalog.ids(),
            accepts_incomplete,
            &caller.broker_ctx(),
        )
        .await;
    match outcome {
        Ok(UnbindOutcome::Async { operation }) if accepts_incomplete => {
            operations::begin(
                state,
                Subject::Instance,
                guid,
                OperationType::Delete,
                operation.clone(),
                &catalog.plan,
            )
            .await?;
            let mut instance = instance;
            instance.set_last_operation(DELETING);
            instance.broker_operation = operation;
            instance.last_operation_updated_at = Some(crate::db::now());
            Ok(InstanceDeleted::InProgress(Box::new(InstanceView {
                instance,
                service_guid: Some(catalog.service.guid.clone()),
                show_credentials: true,
            })))
        }
        // Gone, or (a client that does not accept async) gone as far as CC is concerned.
        Ok(_) => {
            let g = guid.to_string();
            state
                .db
                .write(move |conn| Ok(repo::instances::delete(conn, &g)?))
                .await?;
            Ok(InstanceDeleted::Gone)
        }
        Err(e) => {
            let (g, d) = (guid.to_string(), e.description.clone());
            let failed = LastOperation::new(OperationType::Delete, OperationState::Failed);
            let _ = state
                .db
                .write(move |conn| {
                    Ok(repo::instances::set_operation(
                        conn,
                        &g,
                        failed,
                        Some(&d),
                        None,
                    )?)
                })
                .await;
            Err(ApiError::Broker(e))
        }
    }
}

/// The instance of the right kind, if the caller may delete it (reads, outside the writer).
async fn load(
    state: &AppState,
    caller: &Caller,
    guid: &str,
    kind: Kind,
) -> ApiResult<(ServiceInstance, Option<Catalog>)> {
    let g = guid.to_string();
    let actor = caller.actor.clone();
    state
        .db
        .read(move |conn| {
            let (instance, catalog) = repo::instances::find_with_catalog(conn, &g)?
                .filter(|(i, _)| kind.includes(i))
                .ok_or_else(|| super::not_found(kind, &g))?;
            if !authz::can_write_space(conn, &actor, &instance.space_guid)? {
                return Err(ApiError::NotAuthorized);
            }
            Ok((instance, Catalog::from_parts(catalog)))
        })
        .await
}

/// Takes the delete, in one write: no operation may be running and no binding or key may
/// remain; a user-provided instance is simply removed, a managed one marked
/// `delete / in progress` until its broker answers.
async fn claim(state: &AppState, instance: &ServiceInstance, brokered: bool) -> ApiResult<()> {
    let (g, name) = (instance.guid.clone(), instance.name.clone());
    let busy = instance.last_operation().in_progress();
    state
        .db
        .write(move |conn| {
            if busy {
                return Err(ApiError::AsyncServiceInstanceOperationInProgress(name));
            }
            if repo::bindings::count_for_instance(conn, &g)? > 0
                || repo::keys::count_for_instance(conn, &g)? > 0
            {
                return Err(ApiError::AssociationNotEmpty(
                    "service_bindings, service_keys, and routes".into(),
                    "service_instances".into(),
                ));
            }
            let changed = if brokered {
                repo::instances::claim_for(conn, &g, OperationType::Delete)?
            } else {
                repo::instances::delete(conn, &g)?
            };
            match changed {
                0 if brokered => Err(ApiError::AsyncServiceInstanceOperationInProgress(name)),
                0 => Err(ApiError::ServiceInstanceNotFound(g.clone())),
                _ => Ok(()),
            }
        })
        .await
}
