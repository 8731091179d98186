//! Orphan mitigation (OSB A.10): the broker may hold a binding or an instance we will not keep
//! (a bind that failed or timed out, a create that was abandoned), and must be told to delete it.
//!
//! The delete goes out with `accepts_incomplete=true`, as CC's `DeleteOrphanedBinding` sends it.
//! CC then counts a `202` as done; tether sees the cleanup through instead: an accepted delete is
//! polled (the broker's `last_operation`) until the broker says the resource is gone, and a
//! delete the broker refused, or reported `failed`, is sent again with exponential backoff.
//! Failures are counted in the job's own payload (polls are not failures), and after
//! `max_attempts` of them the job fails for good, as CC's does after its 11 attempts.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::runner::RunnerConfig;
use super::{Job, JobContext, Outcome};
use crate::app::AppState;
use crate::broker::{
    BrokerError, BrokerTarget, CallContext, CatalogIds, LastOperationOutcome, OperationState,
    UnbindOutcome,
};
use crate::db::repo;
use crate::error::ApiResult;

/// Unbind a binding (or service key) the broker may hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrphanUnbind {
    pub broker_guid: String,
    pub instance_guid: String,
    pub binding_guid: String,
    pub service_id: String,
    pub plan_id: String,
    #[serde(default, flatten)]
    pub progress: CleanupProgress,
}

/// Deprovision an instance the broker may hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrphanDeprovision {
    pub broker_guid: String,
    pub instance_guid: String,
    pub service_id: String,
    pub plan_id: String,
    #[serde(default, flatten)]
    pub progress: CleanupProgress,
}

impl OrphanUnbind {
    pub fn new(
        broker_guid: &str,
        instance_guid: &str,
        binding_guid: &str,
        ids: &CatalogIds,
    ) -> Self {
        OrphanUnbind {
            broker_guid: broker_guid.to_string(),
            instance_guid: instance_guid.to_string(),
            binding_guid: binding_guid.to_string(),
            service_id: ids.service_id.clone(),
            plan_id: ids.plan_id.clone(),
            progress: CleanupProgress::default(),
        }
    }

    pub(super) async fn run(&self, ctx: &JobContext<'_>) -> ApiResult<Outcome> {
        let what = Orphaned::Binding {
            instance: &self.instance_guid,
            binding: &self.binding_guid,
        };
        clean_up(
            ctx,
            &self.broker_guid,
            what,
            &self.ids(),
            &self.progress,
            |progress| {
                Job::OrphanUnbind(OrphanUnbind {
                    progress,
                    ..self.clone()
                })
            },
        )
        .await
    }

    fn ids(&self) -> CatalogIds {
        CatalogIds {
            service_id: self.service_id.clone(),
            plan_id: self.plan_id.clone(),
        }
    }
}

impl OrphanDeprovision {
    pub fn new(broker_guid: &str, instance_guid: &str, ids: &CatalogIds) -> Self {
        OrphanDeprovision {
            broker_guid: broker_guid.to_string(),
            instance_guid: instance_guid.to_string(),
            service_id: ids.service_id.clone(),
            plan_id: ids.plan_id.clone(),
            progress: CleanupProgress::default(),
        }
    }

    pub(super) async fn run(&self, ctx: &JobContext<'_>) -> ApiResult<Outcome> {
        let what = Orphaned::Instance {
            instance: &self.instance_guid,
        };
        let ids = CatalogIds {
            service_id: self.service_id.clone(),
            plan_id: self.plan_id.clone(),
        };
        clean_up(
            ctx,
            &self.broker_guid,
            what,
            &ids,
            &self.progress,
            |progress| {
                Job::OrphanDeprovision(OrphanDeprovision {
                    progress,
                    ..self.clone()
                })
            },
        )
        .await
    }
}

/// How far a cleanup has got; stored in the job's payload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupProgress {
    /// The broker accepted the delete (202): poll its `last_operation`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub polling: bool,
    /// The operation id the broker gave with its 202.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// When polling began (Unix ms), for the maximum polling duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polling_since_ms: Option<i64>,
    /// Deletes refused or reported failed, and polls that got no answer, so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failures: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What the broker may be holding.
#[derive(Debug, Clone, Copy)]
enum Orphaned<'a> {
    Binding { instance: &'a str, binding: &'a str },
    Instance { instance: &'a str },
}

/// One step of a cleanup: send the delete, or poll the delete the broker accepted.
async fn clean_up(
    ctx: &JobContext<'_>,
    broker_guid: &str,
    what: Orphaned<'_>,
    ids: &CatalogIds,
    progress: &CleanupProgress,
    job_with: impl Fn(CleanupProgress) -> Job,
) -> ApiResult<Outcome> {
    let state = ctx.state;
    let Some(target) = broker_target(state, broker_guid).await? else {
        // The broker was removed from tether: there is no one left to tell.
        return Ok(Outcome::Done);
    };
    let step = Step {
        config: ctx.config,
        progress,
        job_with: &job_with,
        now_ms: state.clock.now_ms(),
    };
    Ok(if progress.polling {
        let polled = poll_delete(state, &target, what, ids, progress).await;
        step.after_poll(what, polled)
    } else {
        match send_delete(state, &target, what, ids).await {
            Ok(UnbindOutcome::Deleted) => {
                tracing::info!(?what, "orphan mitigation: the broker deleted it");
                Outcome::Done
            }
            Ok(UnbindOutcome::Async { operation }) => step.accepted(operation),
            Err(e) => step.failed(e.to_string(), false),
        }
    })
}

/// Sends the unbind or deprovision. Platform-initiated: no originating identity (OSB D.3).
async fn send_delete(
    state: &AppState,
    target: &BrokerTarget,
    what: Orphaned<'_>,
    ids: &CatalogIds,
) -> Result<UnbindOutcome, BrokerError> {
    let call = CallContext::default();
    match what {
        Orphaned::Binding { instance, binding } => {
            state
                .broker
                .unbind(target, instance, binding, ids, true, &call)
                .await
        }
        Orphaned::Instance { instance } => {
            state
                .broker
                .deprovision(target, instance, ids, true, &call)
                .await
        }
    }
}

/// Asks the broker how the delete it accepted is going.
async fn poll_delete(
    state: &AppState,
    target: &BrokerTarget,
    what: Orphaned<'_>,
    ids: &CatalogIds,
    progress: &CleanupProgress,
) -> Result<LastOperationOutcome, BrokerError> {
    let call = CallContext::default();
    let op = progress.operation.as_deref();
    match what {
        Orphaned::Binding { instance, binding } => {
            state
                .broker
                .binding_last_operation(target, instance, binding, ids, op, &call)
                .await
        }
        Orphaned::Instance { instance } => {
            state
                .broker
                .instance_last_operation(target, instance, ids, op, &call)
                .await
        }
    }
}

/// The next state of a cleanup, as the job's outcome.
struct Step<'a, F: Fn(CleanupProgress) -> Job> {
    config: &'a RunnerConfig,
    progress: &'a CleanupProgress,
    job_with: &'a F,
    /// Now, by the application's clock.
    now_ms: i64,
}

impl<F: Fn(CleanupProgress) -> Job> Step<'_, F> {
    /// What a poll of the accepted delete came to.
    fn after_poll(
        &self,
        what: Orphaned<'_>,
        polled: Result<LastOperationOutcome, BrokerError>,
    ) -> Outcome {
        match polled {
            Ok(LastOperationOutcome::Gone)
            | Ok(LastOperationOutcome::State {
                state: OperationState::Succeeded,
                ..
            }) => {
                tracing::info!(?what, "orphan mitigation: the broker finished deleting it");
                Outcome::Done
            }
            Ok(LastOperationOutcome::State {
                state: OperationState::InProgress,
                retry_after,
                ..
            }) => self.still_running(retry_after),
            Ok(LastOperationOutcome::State {
                state: OperationState::Failed,
                description,
                ..
            }) => self.failed(
                description.unwrap_or_else(|| "the broker's delete failed".into()),
                true,
            ),
            Err(e) => self.failed(e.to_string(), false),
        }
    }

    fn again(&self, after: Duration, progress: CleanupProgress) -> Outcome {
        Outcome::Reschedule(after, Some((self.job_with)(progress)))
    }

    /// The broker accepted the delete: poll it.
    fn accepted(&self, operation: Option<String>) -> Outcome {
        self.again(
            self.config.poll_interval,
            CleanupProgress {
                polling: true,
                operation,
                polling_since_ms: Some(self.now_ms),
                failures: self.progress.failures,
            },
        )
    }

    /// The broker is still deleting: poll again (its `Retry-After` if longer), unless the
    /// maximum polling duration has passed, which counts as a failed delete.
    fn still_running(&self, retry_after: Option<u64>) -> Outcome {
        let since = self.progress.polling_since_ms.unwrap_or(i64::MAX);
        let elapsed = self.now_ms.saturating_sub(since);
        if elapsed > self.config.max_poll_duration.as_millis() as i64 {
            return self.failed("the broker did not finish deleting in time".into(), true);
        }
        let wait = Duration::from_secs(retry_after.unwrap_or(0)).max(self.config.poll_interval);
        self.again(wait, self.progress.clone())
    }

    /// Something went wrong; `resend`: the delete itself failed and is sent again, else the
    /// same step is retried. Either way after a backoff, until the failures run out.
    fn failed(&self, reason: String, resend: bool) -> Outcome {
        let failures = self.progress.failures + 1;
        if failures >= self.config.max_attempts.max(1) as u32 {
            tracing::warn!(%reason, failures, "orphan mitigation gave up");
            return Outcome::Fail(reason);
        }
        tracing::info!(%reason, failures, "orphan mitigation will try again");
        let progress = if resend {
            CleanupProgress {
                failures,
                ..CleanupProgress::default()
            }
        } else {
            CleanupProgress {
                failures,
                ..self.progress.clone()
            }
        };
        self.again(self.config.backoff(failures), progress)
    }
}

async fn broker_target(state: &AppState, broker_guid: &str) -> ApiResult<Option<BrokerTarget>> {
    let g = broker_guid.to_string();
    let broker = state
        .db
        .read(move |conn| Ok(repo::brokers::find_broker(conn, &g)?))
        .await?;
    Ok(broker.map(|b| BrokerTarget {
        name: b.name,
        url: b.broker_url,
        username: b.auth_username,
        password: b.auth_password,
    }))
}
