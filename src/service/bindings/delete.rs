//! Deleting bindings (CC `ServiceBindingDelete`, v2): a request's delete, the async-delete job's,
//! and Code Engine's unbind-all all end in [`unbind_claimed`], the one place that turns a
//! broker's unbind answer into what happens to the row.

use super::Shown;
use crate::app::AppState;
use crate::broker::{BrokerErrorKind, CallContext, UnbindOutcome};
use crate::db::models::{App, ServiceInstance};
use crate::db::repo;
use crate::db::repo::bindings::BindingView;
use crate::error::{ApiError, ApiResult};
use crate::jobs::{DeleteBinding, Job, JobRow};
use crate::operation::{LastOperation, OperationState, OperationType};
use crate::service::catalog::Catalog;
use crate::service::operations::{self, Subject};
use crate::service::{authz, Caller};

/// What a delete did.
pub enum Deleted {
    /// Gone (204).
    Gone { warnings: Vec<String> },
    /// The broker is unbinding asynchronously (202 with the binding).
    InProgress(Box<Shown>),
}

/// A binding whose delete this request (or job) now owns: its row says `delete / in progress`.
struct Claimed {
    view: BindingView,
    instance: ServiceInstance,
    app: App,
    /// `None`: nothing to unbind at a broker (user-provided instance, or a binding that reuses
    /// a service key's credential); the row is already gone.
    catalog: Option<Catalog>,
}

pub async fn delete(
    state: &AppState,
    caller: &Caller,
    guid: &str,
    accepts_incomplete: bool,
) -> ApiResult<Deleted> {
    authz::require_write_scope(&caller.actor)?;
    let loaded = load(state, guid).await?;
    let (actor, space) = (caller.actor.clone(), loaded.view.space_guid.clone());
    state
        .db
        .read(move |conn| authz::require_binding_writer(conn, &actor, &space))
        .await?;
    let claimed = claim(state, loaded).await?;
    unbind_claimed(state, claimed, accepts_incomplete, &caller.broker_ctx()).await
}

/// The async-delete job's delete: authorized when it was queued; the same claim and the same
/// outcome handling as a request's, with `accepts_incomplete=true`.
pub async fn delete_for_job(state: &AppState, guid: &str, ctx: &CallContext) -> ApiResult<Deleted> {
    let loaded = match load(state, guid).await {
        Ok(loaded) => loaded,
        Err(ApiError::ServiceBindingNotFound(_)) => return Ok(Deleted::Gone { warnings: vec![] }),
        Err(e) => return Err(e),
    };
    let claimed = claim(state, loaded).await?;
    unbind_claimed(state, claimed, true, ctx).await
}

/// The binding with its instance, catalog and app (reads, outside the writer).
async fn load(state: &AppState, guid: &str) -> ApiResult<Claimed> {
    let g = guid.to_string();
    state
        .db
        .read(move |conn| {
            let view = repo::bindings::find_view(conn, &g)?
                .ok_or_else(|| ApiError::ServiceBindingNotFound(g.clone()))?;
            let (instance, catalog) =
                repo::instances::find_with_catalog(conn, &view.binding.service_instance_guid)?
                    .ok_or_else(|| ApiError::internal("binding without instance"))?;
            let app = repo::apps::find(conn, &view.binding.app_guid)?
                .ok_or_else(|| ApiError::internal("binding without app"))?;
            Ok(Claimed {
                view,
                instance,
                app,
                catalog: Catalog::from_parts(catalog),
            })
        })
        .await
}

/// Takes the delete: a binding with nothing at a broker is simply removed; otherwise its row
/// is marked `delete / in progress`, unless a delete already runs (CC's in-progress error). A
/// create in progress may be deleted: OSB says the broker must stop the creation.
async fn claim(state: &AppState, mut loaded: Claimed) -> ApiResult<Claimed> {
    let in_progress = ApiError::AsyncServiceBindingOperationInProgress(
        loaded.app.name.clone(),
        loaded.instance.name.clone(),
    );
    let last = loaded.view.binding.last_operation();
    if last.in_progress() && last.op_type != OperationType::Create {
        return Err(in_progress);
    }
    // User-provided instances and bindings that reuse a service key hold no broker credential
    // of their own: nothing to unbind at the broker. Nor while another binding still uses the
    // broker binding this one's credential comes from (decided in the writer, with the delete).
    if loaded.view.binding.service_key_guid.is_some() {
        loaded.catalog = None;
    }
    let has_broker = loaded.catalog.is_some();
    let g = loaded.view.binding.guid.clone();
    let root = loaded.view.binding.broker_binding_id().to_string();
    let (changed, local_only) = state
        .db
        .write(move |conn| {
            let shared =
                has_broker && repo::bindings::count_sharing_credential(conn, &root, &g)? > 0;
            Ok(if !has_broker || shared {
                (repo::bindings::delete(conn, &g)?, true)
            } else {
                (repo::bindings::claim_for_delete(conn, &g)?, false)
            })
        })
        .await?;
    if local_only {
        loaded.catalog = None;
    }
    match (changed, local_only) {
        (0, true) => Err(ApiError::ServiceBindingNotFound(
            loaded.view.binding.guid.clone(),
        )),
        (0, false) => Err(in_progress),
        _ => Ok(loaded),
    }
}

/// Sends the unbind for a claimed binding and settles the row by the broker's answer.
async fn unbind_claimed(
    state: &AppState,
    claimed: Claimed,
    accepts_incomplete: bool,
    ctx: &CallContext,
) -> ApiResult<Deleted> {
    let Some(catalog) = &claimed.catalog else {
        return Ok(Deleted::Gone { warnings: vec![] });
    };
    let guid = claimed.view.binding.guid.clone();
    // The last user of another binding's credential unbinds that broker binding, synchronously
    // (its operation would be polled under another binding's id).
    let reused = claimed.view.binding.credential_binding_guid.is_some();
    let accepts_incomplete = accepts_incomplete && !reused;
    let outcome = state
        .broker
        .unbind(
            &catalog.target(),
            &claimed.instance.guid,
            claimed.view.binding.broker_binding_id(),
            &catalog.ids(),
            accepts_incomplete,
            ctx,
        )
        .await;
    match outcome {
        Ok(UnbindOutcome::Deleted) => {
            remove(state, &guid).await?;
            Ok(Deleted::Gone { warnings: vec![] })
        }
        Ok(UnbindOutcome::Async { operation }) if accepts_incomplete => {
            operations::begin(
                state,
                Subject::Binding,
                &guid,
                OperationType::Delete,
                operation.clone(),
                &catalog.plan,
            )
            .await?;
            Ok(Deleted::InProgress(Box::new(deleting(
                state, claimed, operation,
            )?)))
        }
        Ok(UnbindOutcome::Async { .. }) => {
            // The client did not accept async; CC deletes the row and warns.
            remove(state, &guid).await?;
            Ok(Deleted::Gone {
                warnings: vec!["The service broker responded asynchronously to the unbind request, but the accepts_incomplete query parameter was false or not given. The service binding may not have been successfully deleted on the service broker.".to_string()],
            })
        }
        Err(e) => Err(unbind_failed(state, &claimed, e).await),
    }
}

/// The binding as the answer to an accepted async delete shows it.
fn deleting(state: &AppState, claimed: Claimed, operation: Option<String>) -> ApiResult<Shown> {
    let mut view = claimed.view;
    let now = crate::db::now();
    view.binding.set_last_operation(LastOperation::new(
        OperationType::Delete,
        OperationState::InProgress,
    ));
    view.binding.last_operation_description = None;
    view.binding.broker_operation = operation;
    view.binding.last_operation_created_at = Some(now);
    view.binding.last_operation_updated_at = Some(now);
    view.binding.credentials = state.crypto_open(&view.binding.credentials)?;
    Ok(Shown {
        view,
        show_credentials: true,
        warnings: vec![],
    })
}

/// The broker refused: the binding stays, its delete failed (with the broker's description);
/// the client gets CC's unbind error.
async fn unbind_failed(
    state: &AppState,
    claimed: &Claimed,
    e: crate::broker::BrokerError,
) -> ApiError {
    let (g, description) = (claimed.view.binding.guid.clone(), e.description.clone());
    let failed = LastOperation::new(OperationType::Delete, OperationState::Failed);
    let _ = state
        .db
        .write(move |conn| {
            Ok(repo::bindings::set_operation(
                conn,
                &g,
                failed,
                Some(&description),
                None,
            )?)
        })
        .await;
    let (app, instance) = (claimed.app.name.clone(), claimed.instance.name.clone());
    if e.kind == BrokerErrorKind::ConcurrencyError {
        return ApiError::AsyncServiceBindingOperationInProgress(app, instance);
    }
    let prefix = format!(
        "An unbind operation for the service binding between app {app} and service instance {instance} failed: "
    );
    ApiError::Broker(e.wrap_description(&prefix))
}

async fn remove(state: &AppState, guid: &str) -> ApiResult<()> {
    let g = guid.to_string();
    state
        .db
        .write(move |conn| Ok(repo::bindings::delete(conn, &g)?))
        .await?;
    Ok(())
}

/// `DELETE /v2/service_bindings/:guid?async=true`: the unbind runs as a job.
pub async fn delete_as_job(state: &AppState, caller: &Caller, guid: &str) -> ApiResult<JobRow> {
    authz::require_write_scope(&caller.actor)?;
    let loaded = load(state, guid).await?;
    let (actor, space) = (caller.actor.clone(), loaded.view.space_guid.clone());
    state
        .db
        .read(move |conn| authz::require_binding_writer(conn, &actor, &space))
        .await?;
    if loaded.view.binding.last_operation().in_progress() {
        return Err(ApiError::AsyncServiceBindingOperationInProgress(
            loaded.app.name,
            loaded.instance.name,
        ));
    }
    let job = Job::DeleteBinding(DeleteBinding {
        binding_guid: guid.to_string(),
        user_id: caller.actor.user_id.clone(),
        request_id: Some(caller.request_id.clone()),
    });
    let row = state
        .db
        .write(move |conn| {
            let job_guid = crate::jobs::enqueue(conn, &job)?;
            crate::jobs::find(conn, &job_guid)?.ok_or_else(|| ApiError::internal("job vanished"))
        })
        .await?;
    state.jobs_wakeup.notify_one();
    Ok(row)
}

/// One binding's outcome in an unbind-all.
#[derive(Debug, serde::Serialize)]
pub struct UnbindResult {
    pub guid: String,
    pub name: Option<String>,
    pub service_instance_guid: String,
    /// `deleted`, `in progress` (the broker unbinds asynchronously) or `failed`.
    pub state: &'static str,
    pub error: Option<serde_json::Value>,
}

/// Code Engine's `unbind --all`: removes every binding of the app, each through its broker.
/// A failure is reported per binding and stops nothing; a binding whose broker refused stays,
/// with its last operation failed.
pub async fn unbind_all(
    state: &AppState,
    caller: &Caller,
    app_guid: &str,
    accepts_incomplete: bool,
) -> ApiResult<Vec<UnbindResult>> {
    authz::require_write_scope(&caller.actor)?;
    let g = app_guid.to_string();
    let actor = caller.actor.clone();
    let bindings = state
        .db
        .read(move |conn| {
            let app =
                repo::apps::find(conn, &g)?.ok_or_else(|| ApiError::AppNotFound(g.clone()))?;
            authz::require_binding_writer(conn, &actor, &app.space_guid)?;
            Ok(repo::bindings::for_app(conn, &g)?)
        })
        .await?;
    let mut results = Vec::with_capacity(bindings.len());
    for b in bindings {
        let outcome = delete(state, caller, &b.guid, accepts_incomplete).await;
        let (state_name, error) = match outcome {
            Ok(Deleted::Gone { .. }) | Err(ApiError::ServiceBindingNotFound(_)) => {
                ("deleted", None)
            }
            Ok(Deleted::InProgress(_)) => (OperationState::InProgress.as_str(), None),
            Err(e) => {
                let body: serde_json::Value =
                    serde_json::from_slice(&e.body()).unwrap_or(serde_json::Value::Null);
                (OperationState::Failed.as_str(), Some(body))
            }
        };
        results.push(UnbindResult {
            guid: b.guid,
            name: b.name,
            service_instance_guid: b.service_instance_guid,
            state: state_name,
            error,
        });
    }
    Ok(results)
}
