//! Operations a request left `in progress` when it died mid-call: settled by the sweep.

use std::time::Duration;

use super::{set_operation, Subject};
use crate::app::AppState;
use crate::db::{repo, DbConnection};
use crate::error::ApiResult;
use crate::jobs::Job;
use crate::operation::{LastOperation, OperationState, OperationType};
use crate::service::catalog::Catalog;

/// Settles operations left `in progress` by a request that died mid-call (no job behind them,
/// older than any broker call can take): an abandoned create is removed and the broker told to
/// unbind or deprovision (it may have acted), in one transaction; an abandoned update or delete
/// is marked failed so the user can retry it. Also prunes settled jobs past `keep_settled`.
pub async fn sweep_abandoned(
    state: &AppState,
    abandoned_after: Duration,
    keep_settled: Duration,
) -> ApiResult<()> {
    let now = state.clock.now();
    let cutoff =
        now - chrono::Duration::from_std(abandoned_after).unwrap_or(chrono::Duration::hours(1));
    let prune_before =
        now - chrono::Duration::from_std(keep_settled).unwrap_or(chrono::Duration::days(1));
    state
        .db
        .write(move |conn| {
            crate::jobs::queue::prune(conn, prune_before)?;
            for b in repo::bindings::stale_in_progress(conn, cutoff, 100)? {
                let last = b.last_operation();
                settle_abandoned(
                    conn,
                    Subject::Binding,
                    &b.guid,
                    &b.service_instance_guid,
                    last,
                )?;
            }
            for i in repo::instances::stale_in_progress(conn, cutoff, 100)? {
                let last = i.last_operation();
                settle_abandoned(conn, Subject::Instance, &i.guid, &i.guid, last)?;
            }
            Ok(())
        })
        .await
}

fn settle_abandoned(
    conn: &mut DbConnection,
    subject: Subject,
    guid: &str,
    instance_guid: &str,
    last: LastOperation,
) -> ApiResult<()> {
    if crate::jobs::queue::has_pending(conn, guid)? {
        return Ok(()); // a poll or cleanup is behind it
    }
    if last.op_type != OperationType::Create {
        let failed = LastOperation::new(last.op_type, OperationState::Failed);
        let why = "The operation was interrupted. Please try again.";
        set_operation(conn, subject, guid, failed, Some(why), None)?;
        return Ok(());
    }
    let catalog = repo::instances::find_with_catalog(conn, instance_guid)?
        .and_then(|(_, c)| c)
        .map(|(plan, service, broker)| Catalog {
            plan,
            service,
            broker,
        });
    let removed = match subject {
        Subject::Binding => repo::bindings::delete(conn, guid)?,
        Subject::Instance => repo::instances::delete(conn, guid)?,
    };
    // Another process sweeping at the same time may have removed it first: then that process
    // also queued the cleanup.
    if removed == 0 {
        return Ok(());
    }
    if let Some(c) = catalog {
        let job = match subject {
            Subject::Binding => Job::OrphanUnbind(crate::jobs::OrphanUnbind::new(
                &c.broker.guid,
                instance_guid,
                guid,
                &c.ids(),
            )),
            Subject::Instance => Job::OrphanDeprovision(crate::jobs::OrphanDeprovision::new(
                &c.broker.guid,
                guid,
                &c.ids(),
            )),
        };
        crate::jobs::enqueue(conn, &job)?;
    }
    tracing::warn!(%guid, subject = subject.noun(), "removed a resource whose create was abandoned; cleaning up at the broker");
    Ok(())
}
