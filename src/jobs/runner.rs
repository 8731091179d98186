//! The job runner: claims due jobs in batches, runs them concurrently (they mostly wait on
//! brokers), settles them, and periodically sweeps operations abandoned by a crashed request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::execute::{execute, Outcome};
use super::{Job, JobRow, FAILED, FINISHED, QUEUED};
use crate::app::AppState;
use crate::db::Backend;

#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Jobs run at once by this process.
    pub concurrency: usize,
    /// Default wait between polls of a broker's last_operation (a `Retry-After` overrides it).
    pub poll_interval: Duration,
    /// Give up polling after this long (a plan's `maximum_polling_duration` may shorten it).
    pub max_poll_duration: Duration,
    /// How long a claim lasts; a job still claimed past it (crashed process) is taken over.
    pub lease: Duration,
    /// First retry delay of a failing job; doubles each attempt.
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Attempts before a failing (non-poll) job is marked failed.
    pub max_attempts: i32,
    /// How often the runner looks for due jobs when nobody wakes it.
    pub tick: Duration,
    /// A sync broker call cannot take longer than this; an operation older than it, with no job
    /// behind it, was abandoned by a crashed request.
    pub abandoned_after: Duration,
    /// How often abandoned operations are looked for (at most every `abandoned_after`).
    pub sweep_interval: Duration,
    /// How long settled jobs stay visible at `/v2/jobs/:guid`.
    pub keep_settled: Duration,
}

impl RunnerConfig {
    /// The wait before retry number `failures` (1, 2, …): `retry_base` doubling each time, at
    /// most `retry_max`.
    pub fn backoff(&self, failures: u32) -> Duration {
        let factor = 1u32 << (failures.clamp(1, 20) - 1);
        self.retry_base.saturating_mul(factor).min(self.retry_max)
    }

    pub fn for_broker_timeout(broker_timeout: Duration) -> Self {
        RunnerConfig {
            concurrency: 32,
            poll_interval: Duration::from_secs(10),
            max_poll_duration: Duration::from_secs(7 * 24 * 3600),
            lease: broker_timeout * 3 + Duration::from_secs(30),
            retry_base: Duration::from_secs(60),
            retry_max: Duration::from_secs(24 * 3600),
            max_attempts: 11,
            tick: Duration::from_secs(1),
            abandoned_after: broker_timeout * 2 + Duration::from_secs(30),
            sweep_interval: Duration::from_secs(15),
            keep_settled: Duration::from_secs(24 * 3600),
        }
    }
}

pub struct JobRunner {
    state: Arc<AppState>,
    config: Arc<RunnerConfig>,
    worker: String,
}

fn chrono_dur(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::days(365))
}

impl JobRunner {
    pub fn new(state: Arc<AppState>, config: RunnerConfig) -> Self {
        JobRunner {
            state,
            config: Arc::new(config),
            worker: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()),
        }
    }

    /// Runs forever on the current actix/tokio runtime.
    pub fn spawn(self) -> actix_web::rt::task::JoinHandle<()> {
        actix_web::rt::spawn(self.run())
    }

    async fn run(self) {
        if self.state.db.backend() == Backend::Sqlite {
            match self
                .state
                .db
                .write(|conn| Ok(super::release_stale_leases(conn)?))
                .await
            {
                Ok(n) if n > 0 => {
                    tracing::info!(jobs = n, "resumed jobs left running by a previous process")
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e.log_text(), "could not release stale job leases")
                }
            }
        }
        let permits = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let sweep_every = self.config.sweep_interval.min(self.config.abandoned_after);
        let mut last_sweep: Option<Instant> = None;
        loop {
            let free = permits.available_permits();
            let mut claimed_all = false;
            if free > 0 {
                match self.claim(free as i64).await {
                    Ok(jobs) => {
                        claimed_all = !jobs.is_empty() && jobs.len() == free;
                        for row in jobs {
                            let Ok(permit) = permits.clone().acquire_owned().await else {
                                return;
                            };
                            let state = self.state.clone();
                            let config = self.config.clone();
                            let worker = self.worker.clone();
                            actix_web::rt::spawn(async move {
                                run_one(&state, &config, &worker, row).await;
                                drop(permit);
                            });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e.log_text(), "claiming jobs failed"),
                }
            }
            if last_sweep.is_none_or(|t| t.elapsed() >= sweep_every) {
                last_sweep = Some(Instant::now());
                if let Err(e) = super::execute::sweep(&self.state, &self.config).await {
                    tracing::warn!(error = %e.log_text(), "sweeping abandoned operations failed");
                }
            }
            if claimed_all {
                // More may be due: wait only for a free slot.
                let _ = permits.clone().acquire_owned().await;
                continue;
            }
            tokio::select! {
                _ = self.state.jobs_wakeup.notified() => {}
                _ = tokio::time::sleep(self.config.tick) => {}
            }
        }
    }

    async fn claim(&self, limit: i64) -> crate::error::ApiResult<Vec<JobRow>> {
        let worker = self.worker.clone();
        let lease_until = crate::db::now() + chrono_dur(self.config.lease);
        self.state
            .db
            .write(move |conn| Ok(super::claim(conn, &worker, limit, lease_until)?))
            .await
    }
}

async fn run_one(state: &AppState, config: &RunnerConfig, worker: &str, row: JobRow) {
    let job: Job = match serde_json::from_str(&row.payload) {
        Ok(j) => j,
        Err(e) => {
            tracing::error!(job = %row.guid, error = %e, "unreadable job payload");
            settle(
                state,
                row.id,
                worker,
                FAILED,
                None,
                Some("unreadable job payload".into()),
                None,
            )
            .await;
            return;
        }
    };
    let outcome = with_heartbeat(
        state,
        config,
        worker,
        row.id,
        execute(state, config, &job, row.attempts),
    )
    .await;
    tracing::debug!(job = %row.guid, kind = %row.kind, ?outcome, "job ran");
    let now = crate::db::now();
    match outcome {
        Outcome::Done => settle(state, row.id, worker, FINISHED, None, None, None).await,
        Outcome::Reschedule(after, payload) => {
            settle(
                state,
                row.id,
                worker,
                QUEUED,
                Some(now + chrono_dur(after)),
                None,
                payload,
            )
            .await
        }
        // A poll that hit a database error polls again; only the maximum polling duration ends
        // a poll (a poll job's attempts count its polls, not its failures).
        Outcome::Retry(error) if job.is_poll() => {
            settle(
                state,
                row.id,
                worker,
                QUEUED,
                Some(now + chrono_dur(config.poll_interval.max(config.retry_base))),
                Some(error),
                None,
            )
            .await
        }
        Outcome::Retry(error) => {
            if row.attempts >= config.max_attempts {
                tracing::warn!(job = %row.guid, kind = %row.kind, %error, "job failed for good");
                settle(state, row.id, worker, FAILED, None, Some(error), None).await;
            } else {
                let delay = config.backoff(row.attempts.max(1) as u32);
                settle(
                    state,
                    row.id,
                    worker,
                    QUEUED,
                    Some(now + chrono_dur(delay)),
                    Some(error),
                    None,
                )
                .await;
            }
        }
        Outcome::Fail(error) => {
            settle(state, row.id, worker, FAILED, None, Some(error), None).await
        }
    }
}

/// Runs a job while renewing its lease every third of the lease, so that however long it waits
/// (on a slow broker, on the broker-concurrency limit, on the database) no other process takes
/// it over while this one still runs it. Only a dead process stops renewing.
async fn with_heartbeat<F: std::future::Future<Output = Outcome>>(
    state: &AppState,
    config: &RunnerConfig,
    worker: &str,
    id: i64,
    job: F,
) -> Outcome {
    let every = (config.lease / 3).max(Duration::from_millis(50));
    let heartbeat = async {
        loop {
            tokio::time::sleep(every).await;
            let worker = worker.to_string();
            let until = crate::db::now() + chrono_dur(config.lease);
            match state
                .db
                .write(move |conn| Ok(super::extend_lease(conn, id, &worker, until)?))
                .await
            {
                Ok(0) => {
                    tracing::warn!(job = id, "lost the lease of a running job");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(job = id, error = %e.log_text(), "could not renew a job lease")
                }
            }
        }
    };
    tokio::pin!(job);
    tokio::select! {
        outcome = &mut job => outcome,
        _ = heartbeat => unreachable!("the heartbeat never ends"),
    }
}

async fn settle(
    state: &AppState,
    id: i64,
    worker: &str,
    to: &'static str,
    run_at: Option<chrono::NaiveDateTime>,
    error: Option<String>,
    payload: Option<String>,
) {
    let worker = worker.to_string();
    let result = state
        .db
        .write(move |conn| {
            Ok(super::settle(
                conn,
                id,
                &worker,
                to,
                run_at,
                error.as_deref(),
                payload.as_deref(),
            )?)
        })
        .await;
    if let Err(e) = result {
        // The lease will expire and the job will run again.
        tracing::warn!(job = id, error = %e.log_text(), "could not settle job");
    }
}
