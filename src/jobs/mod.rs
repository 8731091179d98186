//! The durable job queue: polls of asynchronous broker operations, orphan mitigation and async
//! deletes survive restarts and are shared by several server processes.
//!
//! Each kind of job is a small typed unit (its payload, stored as JSON in the row, and what it
//! does); the runner claims due rows, dispatches each to its kind, and settles the row by the
//! [`Outcome`]. The work itself lives in the use cases (`service::operations` for polls,
//! `service::bindings` for deletes); `orphan` is the one kind whose work is all here.

mod delete_binding;
mod orphan;
mod poll;
pub mod queue;
pub mod runner;

use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

pub use delete_binding::DeleteBinding;
pub use orphan::{CleanupProgress, OrphanDeprovision, OrphanUnbind};
pub use poll::{PollBinding, PollInstance};
pub use queue::{enqueue, find, pending_count};
pub use runner::{JobRunner, RunnerConfig};

use crate::app::AppState;

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

impl JobRow {
    pub fn job_state(&self) -> JobState {
        JobState::parse(&self.state).unwrap_or(JobState::Failed)
    }
}

/// Where a job row is in its life (stored as these strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Queued,
    Running,
    Finished,
    Failed,
}

impl JobState {
    pub const fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Finished => "finished",
            JobState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "finished" => JobState::Finished,
            "failed" => JobState::Failed,
            _ => return None,
        })
    }
}

/// What a job does: one variant per kind, each a typed payload (`kind` names it in the row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    PollBinding(PollBinding),
    OrphanUnbind(OrphanUnbind),
    DeleteBinding(DeleteBinding),
    PollInstance(PollInstance),
    OrphanDeprovision(OrphanDeprovision),
}

/// How a run of a job ended.
#[derive(Debug)]
pub enum Outcome {
    /// Finished.
    Done,
    /// Run again after the delay (a poll that goes on); optionally with a new payload.
    Reschedule(Duration, Option<Job>),
    /// Failed this time; retry with backoff until the attempts run out.
    Retry(String),
    /// Failed for good.
    Fail(String),
}

/// What a job runs with.
pub struct JobContext<'a> {
    pub state: &'a AppState,
    pub config: &'a RunnerConfig,
}

impl Job {
    fn kind(&self) -> &'static str {
        match self {
            Job::PollBinding(_) => "poll_binding",
            Job::OrphanUnbind(_) => "orphan_unbind",
            Job::DeleteBinding(_) => "delete_binding",
            Job::PollInstance(_) => "poll_instance",
            Job::OrphanDeprovision(_) => "orphan_deprovision",
        }
    }

    fn resource(&self) -> &str {
        match self {
            Job::PollBinding(j) => &j.binding_guid,
            Job::OrphanUnbind(j) => &j.binding_guid,
            Job::DeleteBinding(j) => &j.binding_guid,
            Job::PollInstance(j) => &j.instance_guid,
            Job::OrphanDeprovision(j) => &j.instance_guid,
        }
    }

    /// Polls go on until the broker settles the operation (or the maximum polling duration
    /// passes); they are not retried a fixed number of times.
    fn is_poll(&self) -> bool {
        matches!(self, Job::PollBinding(_) | Job::PollInstance(_))
    }

    /// Runs the job once. A database error is retried later.
    async fn run(&self, ctx: &JobContext<'_>) -> Outcome {
        let result = match self {
            Job::PollBinding(j) => j.run(ctx).await,
            Job::PollInstance(j) => j.run(ctx).await,
            Job::OrphanUnbind(j) => j.run(ctx).await,
            Job::OrphanDeprovision(j) => j.run(ctx).await,
            Job::DeleteBinding(j) => j.run(ctx).await,
        };
        result.unwrap_or_else(|e| Outcome::Retry(e.log_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows queued by earlier versions still read: the payloads keep their shape.
    #[test]
    fn stored_payloads_read_back() {
        let stored = [
            r#"{"kind":"poll_binding","binding_guid":"b","operation_type":"create","started_at":1,"plan_max_secs":null}"#,
            r#"{"kind":"poll_instance","instance_guid":"i","operation_type":"delete","started_at":1,"started_at_ms":1000,"plan_max_secs":60}"#,
            r#"{"kind":"orphan_unbind","broker_guid":"k","instance_guid":"i","binding_guid":"b","service_id":"s","plan_id":"p"}"#,
            r#"{"kind":"orphan_deprovision","broker_guid":"k","instance_guid":"i","service_id":"s","plan_id":"p","polling":true,"failures":2}"#,
            r#"{"kind":"delete_binding","binding_guid":"b","user_id":null,"request_id":"r"}"#,
        ];
        for text in stored {
            let job: Job = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let again: Job = serde_json::from_str(&serde_json::to_string(&job).unwrap()).unwrap();
            assert_eq!(job, again);
        }
    }
}
