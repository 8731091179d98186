//! The durable job queue (table `jobs`): async-binding polls, orphan mitigation and async
//! deletes survive restarts and are shared by several server processes.
//!
//! Claiming: a due job (queued and `run_at` passed, or running with an expired lease) is taken by
//! setting `locked_by`/`locked_until` in one write transaction. On PostgreSQL the candidate rows
//! are selected `FOR UPDATE SKIP LOCKED`, so two processes never take the same job; on SQLite the
//! single writer serializes claims.

mod execute;
mod orphan;
pub mod runner;

pub use orphan::CleanupProgress;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::db::models::ServicePlan;
use crate::db::schema::jobs::dsl as j;
use crate::db::DbConnection;

pub use runner::{JobRunner, RunnerConfig};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = crate::db::schema::jobs)]
pub struct JobRow {
    #[diesel(skip_insertion)]
    pub id: i64,
    pub guid: String,
    pub kind: String,
    pub resource_guid: Option<String>,
    pub payload: String,
    pub state: String,
    pub attempts: i32,
    pub run_at: NaiveDateTime,
    pub locked_by: Option<String>,
    pub locked_until: Option<NaiveDateTime>,
    pub last_error: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

pub const QUEUED: &str = "queued";
pub const RUNNING: &str = "running";
pub const FINISHED: &str = "finished";
pub const FAILED: &str = "failed";

/// What a job does.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    /// Poll the broker's binding `last_operation` until it settles.
    PollBinding {
        binding_guid: String,
        /// `create` or `delete`.
        operation_type: String,
        /// Unix seconds when polling started (for the maximum polling duration).
        started_at: i64,
        /// The same in milliseconds (jobs stored before it existed use `started_at`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        started_at_ms: Option<i64>,
        /// The plan's `maximum_polling_duration`, seconds.
        plan_max_secs: Option<i64>,
    },
    /// Send the broker an unbind for a binding we do not keep (OSB orphan mitigation), and see
    /// it through (see [`orphan`]).
    OrphanUnbind {
        broker_guid: String,
        instance_guid: String,
        binding_guid: String,
        service_id: String,
        plan_id: String,
        #[serde(default, flatten)]
        progress: CleanupProgress,
    },
    /// `DELETE /v2/service_bindings/:guid?async=true`: the unbind runs here.
    DeleteBinding {
        binding_guid: String,
        user_id: Option<String>,
        request_id: Option<String>,
    },
    /// Poll the broker's instance `last_operation` (async provision/deprovision).
    PollInstance {
        instance_guid: String,
        operation_type: String,
        started_at: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        started_at_ms: Option<i64>,
        plan_max_secs: Option<i64>,
    },
    /// Send the broker a deprovision for an instance we do not keep, and see it through.
    OrphanDeprovision {
        broker_guid: String,
        instance_guid: String,
        service_id: String,
        plan_id: String,
        #[serde(default, flatten)]
        progress: CleanupProgress,
    },
}

impl Job {
    /// Orphan mitigation of a binding (or service key) the broker may hold.
    pub fn orphan_unbind(
        broker_guid: &str,
        instance_guid: &str,
        binding_guid: &str,
        ids: &crate::broker::CatalogIds,
    ) -> Job {
        Job::OrphanUnbind {
            broker_guid: broker_guid.to_string(),
            instance_guid: instance_guid.to_string(),
            binding_guid: binding_guid.to_string(),
            service_id: ids.service_id.clone(),
            plan_id: ids.plan_id.clone(),
            progress: CleanupProgress::default(),
        }
    }

    /// Orphan mitigation of an instance the broker may hold.
    pub fn orphan_deprovision(
        broker_guid: &str,
        instance_guid: &str,
        ids: &crate::broker::CatalogIds,
    ) -> Job {
        Job::OrphanDeprovision {
            broker_guid: broker_guid.to_string(),
            instance_guid: instance_guid.to_string(),
            service_id: ids.service_id.clone(),
            plan_id: ids.plan_id.clone(),
            progress: CleanupProgress::default(),
        }
    }

    /// The same cleanup job at another point of its progress.
    fn with(mut self, new: CleanupProgress) -> Job {
        if let Job::OrphanUnbind { progress, .. } | Job::OrphanDeprovision { progress, .. } =
            &mut self
        {
            *progress = new;
        }
        self
    }

    pub fn poll_binding(binding_guid: &str, plan: &ServicePlan, operation_type: &str) -> Job {
        let now = chrono::Utc::now();
        Job::PollBinding {
            binding_guid: binding_guid.to_string(),
            operation_type: operation_type.to_string(),
            started_at: now.timestamp(),
            started_at_ms: Some(now.timestamp_millis()),
            plan_max_secs: plan.maximum_polling_duration,
        }
    }

    pub fn poll_instance(instance_guid: &str, plan: &ServicePlan, operation_type: &str) -> Job {
        let now = chrono::Utc::now();
        Job::PollInstance {
            instance_guid: instance_guid.to_string(),
            operation_type: operation_type.to_string(),
            started_at: now.timestamp(),
            started_at_ms: Some(now.timestamp_millis()),
            plan_max_secs: plan.maximum_polling_duration,
        }
    }

    /// Polls go on until the broker settles the operation (or the maximum polling duration
    /// passes); they are not retried a fixed number of times.
    pub(crate) fn is_poll(&self) -> bool {
        matches!(self, Job::PollBinding { .. } | Job::PollInstance { .. })
    }

    fn kind(&self) -> &'static str {
        match self {
            Job::PollBinding { .. } => "poll_binding",
            Job::OrphanUnbind { .. } => "orphan_unbind",
            Job::DeleteBinding { .. } => "delete_binding",
            Job::PollInstance { .. } => "poll_instance",
            Job::OrphanDeprovision { .. } => "orphan_deprovision",
        }
    }

    fn resource(&self) -> &str {
        match self {
            Job::PollBinding { binding_guid, .. }
            | Job::OrphanUnbind { binding_guid, .. }
            | Job::DeleteBinding { binding_guid, .. } => binding_guid,
            Job::PollInstance { instance_guid, .. }
            | Job::OrphanDeprovision { instance_guid, .. } => instance_guid,
        }
    }
}

/// Adds a job, due now. Returns its guid.
pub fn enqueue(conn: &mut DbConnection, job: &Job) -> QueryResult<String> {
    enqueue_at(conn, job, crate::db::now())
}

pub fn enqueue_at(
    conn: &mut DbConnection,
    job: &Job,
    run_at: NaiveDateTime,
) -> QueryResult<String> {
    let now = crate::db::now();
    let guid = uuid::Uuid::new_v4().to_string();
    let row = JobRow {
        id: 0,
        guid: guid.clone(),
        kind: job.kind().to_string(),
        resource_guid: Some(job.resource().to_string()),
        payload: serde_json::to_string(job).unwrap_or_default(),
        state: QUEUED.into(),
        attempts: 0,
        run_at,
        locked_by: None,
        locked_until: None,
        last_error: None,
        created_at: now,
        updated_at: now,
    };
    diesel::insert_into(j::jobs).values(&row).execute(conn)?;
    Ok(guid)
}

pub fn find(conn: &mut DbConnection, guid: &str) -> QueryResult<Option<JobRow>> {
    j::jobs
        .filter(j::guid.eq(guid))
        .select(JobRow::as_select())
        .first(conn)
        .optional()
}

/// Whether an unfinished job exists for a resource (a binding with a poll running is not
/// abandoned).
pub fn has_pending(conn: &mut DbConnection, resource: &str) -> QueryResult<bool> {
    let n: i64 = j::jobs
        .filter(j::resource_guid.eq(resource))
        .filter(j::state.eq_any([QUEUED, RUNNING]))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// Claims up to `limit` due jobs for `worker` until `lease_until`. Run inside a write
/// transaction.
pub fn claim(
    conn: &mut DbConnection,
    worker: &str,
    limit: i64,
    lease_until: NaiveDateTime,
) -> QueryResult<Vec<JobRow>> {
    let now = crate::db::now();
    let due = j::state
        .eq(QUEUED)
        .and(j::run_at.le(now))
        .or(j::state.eq(RUNNING).and(j::locked_until.lt(now)));
    let ids: Vec<i64> = match conn {
        DbConnection::Pg(pg) => j::jobs
            .filter(due)
            .order((j::run_at.asc(), j::id.asc()))
            .limit(limit)
            .select(j::id)
            .for_update()
            .skip_locked()
            .load(pg)?,
        DbConnection::Sqlite(lite) => j::jobs
            .filter(due)
            .order((j::run_at.asc(), j::id.asc()))
            .limit(limit)
            .select(j::id)
            .load(lite)?,
    };
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    diesel::update(j::jobs.filter(j::id.eq_any(&ids)))
        .set((
            j::state.eq(RUNNING),
            j::locked_by.eq(worker),
            j::locked_until.eq(lease_until),
            j::attempts.eq(j::attempts + 1),
            j::updated_at.eq(now),
        ))
        .execute(conn)?;
    j::jobs
        .filter(j::id.eq_any(&ids))
        .order(j::id.asc())
        .select(JobRow::as_select())
        .load(conn)
}

/// Ends a claimed job (only if `worker` still holds it: a job whose lease expired may have been
/// taken over, and the new holder's bookkeeping wins). A job settled for good (`finished`,
/// `failed`) keeps `locked_by`: who ran it last, for diagnostics.
pub fn settle(
    conn: &mut DbConnection,
    id: i64,
    worker: &str,
    state: &str,
    run_at: Option<NaiveDateTime>,
    error: Option<&str>,
    payload: Option<&str>,
) -> QueryResult<usize> {
    let now = crate::db::now();
    let target = j::jobs.filter(j::id.eq(id)).filter(j::locked_by.eq(worker));
    match (run_at, payload) {
        (Some(at), Some(p)) => diesel::update(target)
            .set((
                j::state.eq(state),
                j::run_at.eq(at),
                j::locked_by.eq(None::<String>),
                j::locked_until.eq(None::<NaiveDateTime>),
                j::last_error.eq(error),
                j::payload.eq(p),
                j::updated_at.eq(now),
            ))
            .execute(conn),
        (Some(at), None) => diesel::update(target)
            .set((
                j::state.eq(state),
                j::run_at.eq(at),
                j::locked_by.eq(None::<String>),
                j::locked_until.eq(None::<NaiveDateTime>),
                j::last_error.eq(error),
                j::updated_at.eq(now),
            ))
            .execute(conn),
        (None, _) => diesel::update(target)
            .set((
                j::state.eq(state),
                j::locked_until.eq(None::<NaiveDateTime>),
                j::last_error.eq(error),
                j::updated_at.eq(now),
            ))
            .execute(conn),
    }
}

/// Extends the lease of a job `worker` is still running (a heartbeat), so a job that waits long
/// (a slow broker, a full broker-concurrency limit) is never taken over while it runs. Returns
/// 0 if the job is no longer ours.
pub fn extend_lease(
    conn: &mut DbConnection,
    id: i64,
    worker: &str,
    lease_until: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(
        j::jobs
            .filter(j::id.eq(id))
            .filter(j::locked_by.eq(worker))
            .filter(j::state.eq(RUNNING)),
    )
    .set(j::locked_until.eq(lease_until))
    .execute(conn)
}

/// SQLite is used by one process at a time, so leases left by a killed process can be released
/// at start instead of waiting for them to expire.
pub fn release_stale_leases(conn: &mut DbConnection) -> QueryResult<usize> {
    diesel::update(j::jobs.filter(j::state.eq(RUNNING)))
        .set((
            j::state.eq(QUEUED),
            j::locked_by.eq(None::<String>),
            j::locked_until.eq(None::<NaiveDateTime>),
        ))
        .execute(conn)
}

/// Deletes settled jobs older than `before`.
pub fn prune(conn: &mut DbConnection, before: NaiveDateTime) -> QueryResult<usize> {
    diesel::delete(
        j::jobs
            .filter(j::state.eq_any([FINISHED, FAILED]))
            .filter(j::updated_at.lt(before)),
    )
    .execute(conn)
}

/// Jobs not yet settled (tests and diagnostics).
pub fn pending_count(conn: &mut DbConnection) -> QueryResult<i64> {
    j::jobs
        .filter(j::state.eq_any([QUEUED, RUNNING]))
        .count()
        .get_result(conn)
}
