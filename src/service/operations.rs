//! Asynchronous operations on bindings and service instances (OSB `last_operation`), in one
//! place for both: starting one (the row says `in progress` and a poll is queued, in one
//! transaction), polling the broker, and settling what the broker answered.
//!
//! ```text
//!              begin()                       poll(): broker says
//!   request ──────────────► in progress ──────────────────────────► succeeded
//!                              │   ▲     in progress (poll again)     (delete: row gone)
//!                              │   └──────────────────────────────
//!                              ├──────────────────────────────────► failed
//!                              │     failed, or no answer in time     (create of a binding:
//!                              │                                       orphan mitigation)
//!                              └── 410 Gone while deleting ───────► row gone
//! ```
//!
//! What differs between a binding and an instance is small and explicit ([`Subject`]): the
//! broker endpoint polled, what a successful binding create still needs (its credentials,
//! fetched), and that a failed binding create may leave an orphan at the broker.

mod sweep;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::catalog::Catalog;
use crate::app::AppState;
use crate::broker::{CallContext, LastOperationOutcome};
use crate::db::models::ServicePlan;
use crate::db::{repo, DbConnection};
use crate::error::{ApiError, ApiResult};
use crate::jobs::Job;
use crate::operation::{LastOperation, OperationState, OperationType};

/// What an operation is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Binding,
    Instance,
}

impl Subject {
    fn noun(self) -> &'static str {
        match self {
            Subject::Binding => "binding",
            Subject::Instance => "service instance",
        }
    }
}

pub use sweep::sweep_abandoned;

/// A poll in the job queue: which operation, since when, and for how long at most.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollProgress {
    /// `create`, `update` or `delete`.
    pub operation_type: OperationType,
    /// Unix seconds when polling started (for the maximum polling duration).
    pub started_at: i64,
    /// The same in milliseconds (jobs stored before it existed have only `started_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<i64>,
    /// The plan's `maximum_polling_duration`, seconds.
    pub plan_max_secs: Option<i64>,
    /// An update's new plan, applied when the broker says it succeeded (CC's
    /// `proposed_changes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposed_plan_guid: Option<String>,
}

impl PollProgress {
    fn starting(op: OperationType, plan: &ServicePlan, now_ms: i64) -> Self {
        PollProgress {
            operation_type: op,
            started_at: now_ms.div_euclid(1000),
            started_at_ms: Some(now_ms),
            plan_max_secs: plan.maximum_polling_duration,
            proposed_plan_guid: None,
        }
    }

    /// Time left before the operation counts as failed (zero: expired): the configured maximum,
    /// or the plan's `maximum_polling_duration` if smaller.
    fn remaining(&self, limits: &PollLimits, now_ms: i64) -> Duration {
        let mut max_ms = i64::try_from(limits.max_duration.as_millis()).unwrap_or(i64::MAX);
        if let Some(p) = self.plan_max_secs.filter(|p| *p > 0) {
            max_ms = max_ms.min(p.saturating_mul(1000));
        }
        let started = self
            .started_at_ms
            .unwrap_or(self.started_at.saturating_mul(1000));
        let elapsed = now_ms.saturating_sub(started);
        Duration::from_millis(max_ms.saturating_sub(elapsed).max(0) as u64)
    }
}

/// How polls are paced.
#[derive(Debug, Clone, Copy)]
pub struct PollLimits {
    /// Between polls, unless the broker's `Retry-After` asks for longer.
    pub interval: Duration,
    /// Polling gives up after this (a plan may say less).
    pub max_duration: Duration,
}

impl PollLimits {
    /// The wait before the next poll: the interval, or the broker's `Retry-After` if longer
    /// (CC: `max(default interval, Retry-After)`, at most 24 h), but never past the end of the
    /// window, so that an operation that runs out of time is marked failed on time.
    fn next_poll(&self, retry_after: Option<u64>, remaining: Duration) -> Duration {
        Duration::from_secs(retry_after.unwrap_or(0))
            .max(self.interval)
            .min(Duration::from_secs(24 * 3600))
            .min(remaining + Duration::from_millis(10))
    }
}

/// What a poll came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polled {
    /// The operation is over (or was settled by someone else): no more polls.
    Settled,
    /// Poll again after this long.
    Again(Duration),
}

/// Starts an asynchronous operation the broker accepted (202): the row says `in progress` with
/// the broker's operation id, and its poll is queued, in one transaction; the job runner is
/// woken so the first poll does not wait for its tick.
pub async fn begin(
    state: &AppState,
    subject: Subject,
    guid: &str,
    op: OperationType,
    broker_operation: Option<String>,
    plan: &ServicePlan,
) -> ApiResult<()> {
    let progress = PollProgress::starting(op, plan, state.clock.now_ms());
    begin_polling(state, subject, guid, broker_operation, progress, |_| Ok(())).await
}

/// [`begin`] for an instance update the broker accepted: on success the instance moves to
/// `proposed_plan` (if the update changes its plan). Returns the instance as it stood when the
/// operation began (what CC answers with its 202), not as the first poll may already have left it.
pub async fn begin_update(
    state: &AppState,
    guid: &str,
    broker_operation: Option<String>,
    plan: &ServicePlan,
    proposed_plan: Option<String>,
) -> ApiResult<crate::db::models::ServiceInstance> {
    let mut progress = PollProgress::starting(OperationType::Update, plan, state.clock.now_ms());
    progress.proposed_plan_guid = proposed_plan;
    let g = guid.to_string();
    begin_polling(
        state,
        Subject::Instance,
        guid,
        broker_operation,
        progress,
        move |conn| repo::instances::find(conn, &g)?.ok_or(ApiError::ServiceInstanceNotFound(g)),
    )
    .await
}

/// Marks the row in progress and queues its poll in one transaction, then reads what the caller
/// answers with (`then`) in that same transaction.
async fn begin_polling<T: Send + 'static>(
    state: &AppState,
    subject: Subject,
    guid: &str,
    broker_operation: Option<String>,
    progress: PollProgress,
    then: impl FnOnce(&mut DbConnection) -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    let op = progress.operation_type;
    let job = poll_job(subject, guid, progress);
    let g = guid.to_string();
    let shown = state
        .db
        .write(move |conn| {
            let running = LastOperation::new(op, OperationState::InProgress);
            set_operation(
                conn,
                subject,
                &g,
                running,
                None,
                broker_operation.as_deref(),
            )?;
            crate::jobs::enqueue(conn, &job)?;
            then(conn)
        })
        .await?;
    state.jobs_wakeup.notify_one();
    Ok(shown)
}

fn poll_job(subject: Subject, guid: &str, progress: PollProgress) -> Job {
    match subject {
        Subject::Binding => Job::PollBinding(crate::jobs::PollBinding {
            binding_guid: guid.to_string(),
            progress,
        }),
        Subject::Instance => Job::PollInstance(crate::jobs::PollInstance {
            instance_guid: guid.to_string(),
            progress,
        }),
    }
}

/// What a poll needs to know about the operation's subject.
struct Current {
    subject: Subject,
    guid: String,
    /// The instance (the subject itself, or the binding's).
    instance_guid: String,
    catalog: Catalog,
    last: LastOperation,
    description: Option<String>,
    broker_operation: Option<String>,
}

/// One poll of the broker's `last_operation`, and what follows from its answer.
pub async fn poll(
    state: &AppState,
    limits: &PollLimits,
    subject: Subject,
    guid: &str,
    progress: &PollProgress,
) -> ApiResult<Polled> {
    let op = progress.operation_type;
    let Some(current) = load(state, subject, guid).await? else {
        return Ok(Polled::Settled);
    };
    if !current.last.is_running(op) {
        // Settled meanwhile by someone else (a delete during a create, say).
        return Ok(Polled::Settled);
    }
    let remaining = progress.remaining(limits, state.clock.now_ms());
    if remaining.is_zero() {
        let description = format!(
            "Service Broker failed to {op} {} within the required time.",
            subject.noun()
        );
        settle_failed(state, &current, op, Some(description)).await?;
        return Ok(Polled::Settled);
    }
    let answer = ask_broker(state, &current).await;
    match answer {
        // Network errors, 5xx, garbage: poll again (OSB D.8).
        Err(e) => {
            tracing::info!(%guid, error = %e, "last_operation poll failed; will retry");
            Ok(Polled::Again(limits.next_poll(None, remaining)))
        }
        Ok(LastOperationOutcome::Gone) if op == OperationType::Delete => {
            remove(state, subject, guid).await?;
            Ok(Polled::Settled)
        }
        // 410 while creating or updating means nothing: keep polling.
        Ok(LastOperationOutcome::Gone) => Ok(Polled::Again(limits.next_poll(None, remaining))),
        Ok(LastOperationOutcome::State {
            state: OperationState::InProgress,
            description,
            retry_after,
        }) => {
            record_progress(state, &current, description).await?;
            Ok(Polled::Again(limits.next_poll(retry_after, remaining)))
        }
        Ok(LastOperationOutcome::State {
            state: OperationState::Succeeded,
            description,
            ..
        }) => {
            let proposed = progress.proposed_plan_guid.as_deref();
            settle_succeeded(state, &current, op, description, proposed).await?;
            Ok(Polled::Settled)
        }
        Ok(LastOperationOutcome::State {
            state: OperationState::Failed,
            description,
            ..
        }) => {
            settle_failed(state, &current, op, description).await?;
            Ok(Polled::Settled)
        }
    }
}

async fn load(state: &AppState, subject: Subject, guid: &str) -> ApiResult<Option<Current>> {
    let g = guid.to_string();
    state
        .db
        .read(move |conn| {
            let (instance_guid, last, description, broker_operation) = match subject {
                Subject::Binding => {
                    let Some(b) = repo::bindings::find(conn, &g)? else {
                        return Ok(None);
                    };
                    let last = b.last_operation();
                    (
                        b.service_instance_guid,
                        last,
                        b.last_operation_description,
                        b.broker_operation,
                    )
                }
                Subject::Instance => {
                    let Some(i) = repo::instances::find(conn, &g)? else {
                        return Ok(None);
                    };
                    let last = i.last_operation();
                    (
                        i.guid,
                        last,
                        i.last_operation_description,
                        i.broker_operation,
                    )
                }
            };
            let Some((_, Some((plan, service, broker)))) =
                repo::instances::find_with_catalog(conn, &instance_guid)?
            else {
                return Ok(None);
            };
            Ok(Some(Current {
                subject,
                guid: g,
                instance_guid,
                catalog: Catalog {
                    plan,
                    service,
                    broker,
                },
                last,
                description,
                broker_operation,
            }))
        })
        .await
}

async fn ask_broker(
    state: &AppState,
    current: &Current,
) -> Result<LastOperationOutcome, crate::broker::BrokerError> {
    // Platform-initiated: no originating identity (OSB D.3).
    let ctx = CallContext::default();
    let target = current.catalog.target();
    let ids = current.catalog.ids();
    let op = current.broker_operation.as_deref();
    match current.subject {
        Subject::Binding => {
            state
                .broker
                .binding_last_operation(
                    &target,
                    &current.instance_guid,
                    &current.guid,
                    &ids,
                    op,
                    &ctx,
                )
                .await
        }
        Subject::Instance => {
            state
                .broker
                .instance_last_operation(&target, &current.guid, &ids, op, &ctx)
                .await
        }
    }
}

/// The broker's progress note, stored when it changed.
async fn record_progress(
    state: &AppState,
    current: &Current,
    description: Option<String>,
) -> ApiResult<()> {
    if description == current.description {
        return Ok(());
    }
    let (subject, g) = (current.subject, current.guid.clone());
    state
        .db
        .write(move |conn| {
            match subject {
                Subject::Binding => {
                    repo::bindings::set_operation_description(conn, &g, description.as_deref())?
                }
                Subject::Instance => {
                    repo::instances::set_operation_description(conn, &g, description.as_deref())?
                }
            };
            Ok(())
        })
        .await
}

async fn settle_succeeded(
    state: &AppState,
    current: &Current,
    op: OperationType,
    description: Option<String>,
    proposed_plan: Option<&str>,
) -> ApiResult<()> {
    match (current.subject, op) {
        (subject, OperationType::Delete) => remove(state, subject, &current.guid).await,
        (Subject::Binding, OperationType::Create) => {
            complete_binding_create(state, current, description).await
        }
        (subject, op) => {
            let g = current.guid.clone();
            let done = LastOperation::new(op, OperationState::Succeeded);
            let plan = proposed_plan.filter(|_| subject == Subject::Instance);
            let plan = plan.map(str::to_string);
            state
                .db
                .write(move |conn| {
                    set_operation(conn, subject, &g, done, description.as_deref(), None)?;
                    if let Some(p) = &plan {
                        repo::instances::set_plan(conn, &g, p)?;
                    }
                    Ok(())
                })
                .await
        }
    }
}

/// A binding the broker created asynchronously: its credentials come from a fetch (CC:
/// `ServiceBindingStateFetch`), stored sealed as on the synchronous path. A binding that cannot
/// be fetched is failed and unbound at the broker.
async fn complete_binding_create(
    state: &AppState,
    current: &Current,
    description: Option<String>,
) -> ApiResult<()> {
    let fetched = state
        .broker
        .fetch_binding(
            &current.catalog.target(),
            &current.instance_guid,
            &current.guid,
            &current.catalog.ids(),
            &current.catalog.service.requires_list(),
            &CallContext::default(),
        )
        .await;
    let data = match fetched {
        Ok(data) => data,
        Err(e) => {
            tracing::warn!(binding = %current.guid, error = %e, "fetching an async binding failed");
            let why = "A valid binding could not be fetched from the service broker.";
            return settle_failed(state, current, OperationType::Create, Some(why.into())).await;
        }
    };
    let sealed = state.crypto_seal(&data.credentials);
    let g = current.guid.clone();
    state
        .db
        .write(move |conn| {
            repo::bindings::complete_create(
                conn,
                &g,
                &sealed,
                data.syslog_drain_url.as_deref(),
                &data.volume_mounts,
                description.as_deref(),
            )?;
            Ok(())
        })
        .await
}

/// The operation failed (the broker said so, or it ran out of time): the row keeps it, with the
/// broker's description. A binding whose create failed may exist at the broker anyway (OSB
/// A.10): its unbind is queued with the change.
async fn settle_failed(
    state: &AppState,
    current: &Current,
    op: OperationType,
    description: Option<String>,
) -> ApiResult<()> {
    let (subject, g) = (current.subject, current.guid.clone());
    let orphan = (subject == Subject::Binding && op == OperationType::Create).then(|| {
        Job::OrphanUnbind(crate::jobs::OrphanUnbind::new(
            &current.catalog.broker.guid,
            &current.instance_guid,
            &current.guid,
            &current.catalog.ids(),
        ))
    });
    let failed = LastOperation::new(op, OperationState::Failed);
    let cleanup = orphan.is_some();
    state
        .db
        .write(move |conn| {
            set_operation(conn, subject, &g, failed, description.as_deref(), None)?;
            if let Some(job) = &orphan {
                crate::jobs::enqueue(conn, job)?;
            }
            Ok(())
        })
        .await?;
    if cleanup {
        state.jobs_wakeup.notify_one();
    }
    Ok(())
}

async fn remove(state: &AppState, subject: Subject, guid: &str) -> ApiResult<()> {
    let g = guid.to_string();
    state
        .db
        .write(move |conn| {
            match subject {
                Subject::Binding => repo::bindings::delete(conn, &g)?,
                Subject::Instance => repo::instances::delete(conn, &g)?,
            };
            Ok(())
        })
        .await
}

/// Records an operation's state on its row.
pub fn set_operation(
    conn: &mut DbConnection,
    subject: Subject,
    guid: &str,
    op: LastOperation,
    description: Option<&str>,
    broker_operation: Option<&str>,
) -> Result<usize, ApiError> {
    Ok(match subject {
        Subject::Binding => {
            repo::bindings::set_operation(conn, guid, op, description, broker_operation)?
        }
        Subject::Instance => {
            repo::instances::set_operation(conn, guid, op, description, broker_operation)?
        }
    })
}
