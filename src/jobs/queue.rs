//! The queue's storage (table `jobs`): adding, claiming, settling and pruning job rows. Pure
//! repository functions over a caller's connection; the runner owns the transactions.
//!
//! Claiming: a due job (queued and `run_at` passed, or running with an expired lease) is taken
//! by setting `locked_by`/`locked_until` in one write transaction. On PostgreSQL the candidate
//! rows are selected `FOR UPDATE SKIP LOCKED`, so two processes never take the same job; on
//! SQLite the single writer serializes claims.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::{Job, JobRow, JobState};
use crate::db::schema::jobs::dsl as j;
use crate::db::DbConnection;

const QUEUED: &str = JobState::Queued.as_str();
const RUNNING: &str = JobState::Running.as_str();

/// Adds a job, due now. Returns its guid.
pub fn enqueue(conn: &mut DbConnection, job: &Job) -> QueryResult<String> {
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
        run_at: now,
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

/// Claims up to `limit` jobs due at `now` for `worker` until `lease_until`. Run inside a write
/// transaction.
pub fn claim(
    conn: &mut DbConnection,
    worker: &str,
    limit: i64,
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
) -> QueryResult<Vec<JobRow>> {
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

/// How a claimed job ends this run.
#[derive(Debug, Clone)]
pub struct Settlement {
    pub state: JobState,
    /// When to run again (a job put back in the queue).
    pub run_at: Option<NaiveDateTime>,
    pub error: Option<String>,
    /// A new payload (a job that keeps its progress in it).
    pub payload: Option<String>,
}

/// Ends a claimed job (only if `worker` still holds it: a job whose lease expired may have been
/// taken over, and the new holder's bookkeeping wins). A job settled for good keeps
/// `locked_by`: who ran it last, for diagnostics; one put back in the queue is unlocked.
pub fn settle(
    conn: &mut DbConnection,
    id: i64,
    worker: &str,
    how: &Settlement,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    let target = j::jobs.filter(j::id.eq(id)).filter(j::locked_by.eq(worker));
    let state = how.state.as_str();
    match (how.run_at, &how.payload) {
        (Some(at), payload) => {
            let unlocked = (
                j::state.eq(state),
                j::run_at.eq(at),
                j::locked_by.eq(None::<String>),
                j::locked_until.eq(None::<NaiveDateTime>),
                j::last_error.eq(how.error.as_deref()),
                j::updated_at.eq(now),
            );
            match payload.as_deref() {
                Some(p) => diesel::update(target)
                    .set((unlocked, j::payload.eq(p)))
                    .execute(conn),
                None => diesel::update(target).set(unlocked).execute(conn),
            }
        }
        (None, _) => diesel::update(target)
            .set((
                j::state.eq(state),
                j::locked_until.eq(None::<NaiveDateTime>),
                j::last_error.eq(how.error.as_deref()),
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

/// Puts the jobs `worker` holds back in the queue, due at once: at a graceful stop, so that
/// another process takes them now instead of after their leases expire.
pub fn release_leases_of(conn: &mut DbConnection, worker: &str) -> QueryResult<usize> {
    diesel::update(
        j::jobs
            .filter(j::state.eq(RUNNING))
            .filter(j::locked_by.eq(worker)),
    )
    .set((
        j::state.eq(QUEUED),
        j::locked_by.eq(None::<String>),
        j::locked_until.eq(None::<NaiveDateTime>),
    ))
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
            .filter(j::state.eq_any([JobState::Finished.as_str(), JobState::Failed.as_str()]))
            .filter(j::updated_at.lt(before)),
    )
    .execute(conn)
}

/// Jobs not yet settled.
pub fn pending_count(conn: &mut DbConnection) -> QueryResult<i64> {
    j::jobs
        .filter(j::state.eq_any([QUEUED, RUNNING]))
        .count()
        .get_result(conn)
}

/// Jobs not yet settled, (queued, running).
pub fn count_by_state(conn: &mut DbConnection) -> QueryResult<(i64, i64)> {
    let rows: Vec<(String, i64)> = j::jobs
        .filter(j::state.eq_any([QUEUED, RUNNING]))
        .group_by(j::state)
        .select((j::state, diesel::dsl::count_star()))
        .load(conn)?;
    let of = |state: &str| rows.iter().find(|(s, _)| s == state).map_or(0, |(_, n)| *n);
    Ok((of(QUEUED), of(RUNNING)))
}

/// When the next queued job is due (tests drive the queue by this).
pub fn next_due(conn: &mut DbConnection) -> QueryResult<Option<NaiveDateTime>> {
    j::jobs
        .filter(j::state.eq(QUEUED))
        .select(diesel::dsl::min(j::run_at))
        .first(conn)
}
