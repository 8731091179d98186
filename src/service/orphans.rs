//! Orphan mitigation (OSB A.10), the request side: when a broker may hold a binding or instance
//! that we will not keep, its row goes and a durable cleanup job (see `jobs::orphan`) is queued,
//! in one transaction. A crash can thus keep both (the row stays `in progress`, and the sweep of
//! abandoned operations removes it and queues the cleanup later) or do both, never drop the row
//! and forget the broker's copy. If even that transaction cannot commit (the database is what
//! failed), one immediate best-effort delete is sent.

use crate::app::AppState;
use crate::broker::{BrokerTarget, CallContext, CatalogIds};
use crate::db::{repo, DbConnection};
use crate::jobs::Job;

/// Something the broker may hold.
pub enum Orphan {
    Binding {
        target: BrokerTarget,
        broker_guid: String,
        instance_guid: String,
        binding_guid: String,
        ids: CatalogIds,
    },
    Instance {
        target: BrokerTarget,
        broker_guid: String,
        instance_guid: String,
        ids: CatalogIds,
    },
}

/// The row of ours that goes with it.
#[derive(Debug, Clone)]
pub enum Reservation {
    Binding(String),
    Key(String),
    Instance(String),
    /// Already gone (deleted while the broker was working).
    Gone,
}

impl Orphan {
    fn job(&self) -> Job {
        match self {
            Orphan::Binding {
                broker_guid,
                instance_guid,
                binding_guid,
                ids,
                ..
            } => Job::OrphanUnbind(crate::jobs::OrphanUnbind::new(
                broker_guid,
                instance_guid,
                binding_guid,
                ids,
            )),
            Orphan::Instance {
                broker_guid,
                instance_guid,
                ids,
                ..
            } => Job::OrphanDeprovision(crate::jobs::OrphanDeprovision::new(
                broker_guid,
                instance_guid,
                ids,
            )),
        }
    }

    /// The last resort when no job could be stored: one delete, now, errors only logged.
    fn attempt_now(self, state: &AppState) {
        let broker = state.broker.clone();
        actix_web::rt::spawn(async move {
            let ctx = CallContext::default();
            let result = match &self {
                Orphan::Binding {
                    target,
                    instance_guid,
                    binding_guid,
                    ids,
                    ..
                } => broker
                    .unbind(target, instance_guid, binding_guid, ids, true, &ctx)
                    .await
                    .map(|_| ()),
                Orphan::Instance {
                    target,
                    instance_guid,
                    ids,
                    ..
                } => broker
                    .deprovision(target, instance_guid, ids, true, &ctx)
                    .await
                    .map(|_| ()),
            };
            if let Err(e) = result {
                tracing::error!(error = %e, "immediate orphan cleanup failed");
            }
        });
    }
}

impl Reservation {
    fn remove(&self, conn: &mut DbConnection) -> diesel::QueryResult<usize> {
        match self {
            Reservation::Binding(guid) => repo::bindings::delete(conn, guid),
            Reservation::Key(guid) => repo::keys::delete(conn, guid),
            Reservation::Instance(guid) => repo::instances::delete(conn, guid),
            Reservation::Gone => Ok(0),
        }
    }
}

/// Removes `reservation` and, if the broker may hold something for it, queues its cleanup: one
/// transaction.
pub async fn discard(state: &AppState, reservation: Reservation, orphan: Option<Orphan>) {
    let job = orphan.as_ref().map(Orphan::job);
    let what = reservation.clone();
    let stored = state
        .db
        .write(move |conn| {
            what.remove(conn)?;
            crate::faults::crash_point("discard:after-remove");
            if let Some(job) = &job {
                crate::jobs::enqueue(conn, job)?;
            }
            Ok(())
        })
        .await;
    match (stored, orphan) {
        (Ok(()), Some(_)) => {
            tracing::info!(?reservation, "orphan mitigation queued");
            state.jobs_wakeup.notify_one();
        }
        (Ok(()), None) => {}
        (Err(e), orphan) => {
            tracing::error!(?reservation, error = %e.log_text(), "could not discard a failed reservation");
            if let Some(orphan) = orphan {
                orphan.attempt_now(state);
            }
        }
    }
}
