//! The job runner: claims due jobs in batches, runs them concurrently (they mostly wait on
//! brokers), settles them, and periodically sweeps operations abandoned by a crashed request.
//! Times come from the application's clock, so tests can move time instead of waiting.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::queue::{self, Settlement};
use super::{Job, JobContext, JobRow, JobState, Outcome};
use crate::app::AppState;
use crate::db::Backend;
use crate::metrics::JobMetrics;
use crate::service::operations::PollLimits;

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

    /// The settings `tether serve` was given (flags or environment), over the defaults for
    /// this broker timeout.
    pub fn from_args(args: &crate::config::JobArgs, broker_timeout: Duration) -> Self {
        let mut c = RunnerConfig::for_broker_timeout(broker_timeout);
        c.poll_interval = args.poll_interval_secs;
        c.max_poll_duration = args.max_poll_duration_secs;
        c.retry_base = args.job_retry_base_secs;
        c.tick = args.job_tick_secs;
        c.sweep_interval = args.job_sweep_secs;
        if let Some(lease) = args.job_lease_secs {
            c.lease = lease;
        }
        if let Some(after) = args.job_abandoned_after_secs {
            if after < c.abandoned_after {
                tracing::warn!(
                    abandoned_after_secs = after.as_secs_f64(),
                    default_secs = c.abandoned_after.as_secs_f64(),
                    "TETHER_JOB_ABANDONED_AFTER_SECS is below twice the broker timeout: a bind \
                     still waiting on its broker may be taken for abandoned and removed"
                );
            }
            c.abandoned_after = after;
        }
        c
    }

    /// The wait before retry number `failures` (1, 2, …): `retry_base` doubling each time, at
    /// most `retry_max`.
    pub fn backoff(&self, failures: u32) -> Duration {
        let factor = 1u32 << (failures.clamp(1, 20) - 1);
        self.retry_base.saturating_mul(factor).min(self.retry_max)
    }

    pub fn poll_limits(&self) -> PollLimits {
        PollLimits {
            interval: self.poll_interval,
            max_duration: self.max_poll_duration,
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

    /// Runs on the current actix/tokio runtime until shutdown begins (see [`JobRunner::stop`]).
    pub fn spawn(self) -> actix_web::rt::task::JoinHandle<()> {
        actix_web::rt::spawn(self.run())
    }

    async fn run(self) {
        if self.state.db.backend() == Backend::Sqlite {
            self.release_stale_leases().await;
        }
        let permits = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let sweep_every = self.config.sweep_interval.min(self.config.abandoned_after);
        let mut last_sweep: Option<Instant> = None;
        let mut running = JoinSet::new();
        let stopping = self.state.lifecycle.clone();
        while !stopping.is_stopping() {
            let claimed_all = self.start_due(&permits, &mut running).await;
            while running.try_join_next().is_some() {}
            if last_sweep.is_none_or(|t| t.elapsed() >= sweep_every) {
                last_sweep = Some(Instant::now());
                self.sweep().await;
            }
            if claimed_all {
                // More may be due: wait only for a free slot.
                tokio::select! {
                    _ = permits.clone().acquire_owned() => {}
                    _ = stopping.stopping() => {}
                }
                continue;
            }
            tokio::select! {
                _ = self.state.jobs_wakeup.notified() => {}
                _ = tokio::time::sleep(self.config.tick) => {}
                _ = stopping.stopping() => {}
            }
        }
        self.stop(running).await;
    }

    /// At shutdown: no new job is taken; the running ones get the grace period, then those
    /// still running are stopped and their leases released, so that another instance takes
    /// them at once instead of after the lease.
    async fn stop(&self, mut running: JoinSet<()>) {
        let grace = self.state.config.shutdown_grace;
        if !running.is_empty() {
            tracing::info!(
                jobs = running.len(),
                "job runner stopping: waiting for running jobs"
            );
        }
        let drained = tokio::time::timeout(grace, async {
            while running.join_next().await.is_some() {}
        })
        .await
        .is_ok();
        if !drained {
            tracing::info!(
                jobs = running.len(),
                "jobs still running at the end of the grace period: stopped, to be resumed elsewhere"
            );
            running.abort_all();
            while running.join_next().await.is_some() {}
        }
        let worker = self.worker.clone();
        match self
            .state
            .db
            .write(move |conn| Ok(queue::release_leases_of(conn, &worker)?))
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(jobs = n, "released the leases of unfinished jobs"),
            Err(e) => tracing::warn!(
                error = %e.log_text(),
                "could not release job leases: other instances take the jobs when they expire"
            ),
        }
        tracing::info!("job runner stopped");
    }

    /// Claims as many due jobs as there are free slots and starts each. True if every slot was
    /// filled (more may be due).
    async fn start_due(&self, permits: &Arc<Semaphore>, running: &mut JoinSet<()>) -> bool {
        let free = permits.available_permits();
        if free == 0 {
            return false;
        }
        let jobs = match self.claim(free as i64).await {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::warn!(error = %e.log_text(), "claiming jobs failed");
                return false;
            }
        };
        let claimed_all = !jobs.is_empty() && jobs.len() == free;
        for row in jobs {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return false;
            };
            let (state, config, worker) =
                (self.state.clone(), self.config.clone(), self.worker.clone());
            running.spawn_local(async move {
                run_one(&state, &config, &worker, row).await;
                drop(permit);
            });
        }
        claimed_all
    }

    /// Runs every job that is due now, one after the other, until none is: what a test calls
    /// instead of waiting for the background runner ("run pending jobs now"). Returns how many
    /// ran.
    pub async fn run_due_now(&self) -> usize {
        let mut ran = 0;
        loop {
            let jobs = match self.claim(16).await {
                Ok(jobs) if !jobs.is_empty() => jobs,
                _ => return ran,
            };
            for row in jobs {
                run_one(&self.state, &self.config, &self.worker, row).await;
                ran += 1;
            }
        }
    }

    /// Looks for operations abandoned by crashed requests (see `service::operations`).
    pub async fn sweep(&self) {
        let result = crate::service::operations::sweep_abandoned(
            &self.state,
            self.config.abandoned_after,
            self.config.keep_settled,
        )
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e.log_text(), "sweeping abandoned operations failed");
        }
        let compacted = self
            .state
            .db
            .write(|conn| Ok(crate::db::repo::bindings::compact_block_counts(conn)?))
            .await;
        if let Err(e) = compacted {
            tracing::warn!(error = %e.log_text(), "compacting the binding counts failed");
        }
    }

    async fn claim(&self, limit: i64) -> crate::error::ApiResult<Vec<JobRow>> {
        let worker = self.worker.clone();
        let now = self.state.clock.now();
        let lease_until = now + chrono_dur(self.config.lease);
        self.state
            .db
            .write(move |conn| Ok(queue::claim(conn, &worker, limit, now, lease_until)?))
            .await
    }

    async fn release_stale_leases(&self) {
        match self
            .state
            .db
            .write(|conn| Ok(queue::release_stale_leases(conn)?))
            .await
        {
            Ok(n) if n > 0 => {
                tracing::info!(jobs = n, "resumed jobs left running by a previous process")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e.log_text(), "could not release stale job leases"),
        }
    }
}

async fn run_one(state: &AppState, config: &RunnerConfig, worker: &str, row: JobRow) {
    let job: Job = match serde_json::from_str(&row.payload) {
        Ok(j) => j,
        Err(e) => {
            tracing::error!(job = %row.guid, error = %e, "unreadable job payload");
            let failed = finished(JobState::Failed, Some("unreadable job payload".into()));
            return settle(state, row.id, worker, failed).await;
        }
    };
    let ctx = JobContext { state, config };
    let counters = &state.metrics.jobs;
    JobMetrics::count(&counters.started, &row.kind);
    let outcome = with_heartbeat(state, config, worker, row.id, job.run(&ctx)).await;
    tracing::debug!(job = %row.guid, kind = %row.kind, ?outcome, "job ran");
    let settlement = match outcome {
        Outcome::Done => {
            JobMetrics::count(&counters.succeeded, &row.kind);
            finished(JobState::Finished, None)
        }
        Outcome::Reschedule(after, next) => {
            JobMetrics::count(&counters.rescheduled, &row.kind);
            Settlement {
                state: JobState::Queued,
                run_at: Some(state.clock.now() + chrono_dur(after)),
                error: None,
                payload: next.and_then(|j| serde_json::to_string(&j).ok()),
            }
        }
        Outcome::Retry(error) => retry(state, config, &row, &job, error),
        Outcome::Fail(error) => {
            JobMetrics::count(&counters.failed, &row.kind);
            finished(JobState::Failed, Some(error))
        }
    };
    settle(state, row.id, worker, settlement).await;
}

/// A job settled for good.
fn finished(state: JobState, error: Option<String>) -> Settlement {
    Settlement {
        state,
        run_at: None,
        error,
        payload: None,
    }
}

/// A run that failed (a database error, a broker that refused): polls poll again, other jobs
/// are retried with backoff until their attempts run out.
fn retry(
    state: &AppState,
    config: &RunnerConfig,
    row: &JobRow,
    job: &Job,
    error: String,
) -> Settlement {
    let delay = if job.is_poll() {
        // Only the maximum polling duration ends a poll (a poll job's attempts count its
        // polls, not its failures).
        config.poll_interval.max(config.retry_base)
    } else if row.attempts >= config.max_attempts {
        tracing::warn!(job = %row.guid, kind = %row.kind, %error, "job failed for good");
        JobMetrics::count(&state.metrics.jobs.failed, &row.kind);
        return finished(JobState::Failed, Some(error));
    } else {
        config.backoff(row.attempts.max(1) as u32)
    };
    JobMetrics::count(&state.metrics.jobs.retried, &row.kind);
    Settlement {
        state: JobState::Queued,
        run_at: Some(state.clock.now() + chrono_dur(delay)),
        error: Some(error),
        payload: None,
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
            let until = state.clock.now() + chrono_dur(config.lease);
            match state
                .db
                .write(move |conn| Ok(queue::extend_lease(conn, id, &worker, until)?))
                .await
            {
                Ok(0) => tracing::warn!(job = id, "lost the lease of a running job"),
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

/// Writes how a run ended. Retried briefly when the database is away (a restart): a settled
/// job that is not recorded would run again only after its lease expires.
async fn settle(state: &AppState, id: i64, worker: &str, how: Settlement) {
    let mut wait = Duration::from_millis(100);
    for attempt in 0..6 {
        let (worker, now, how) = (worker.to_string(), state.clock.now(), how.clone());
        let result = state
            .db
            .write(move |conn| Ok(queue::settle(conn, id, &worker, &how, now)?))
            .await;
        match result {
            Ok(_) => return,
            Err(e) if attempt == 5 => {
                // The lease will expire and the job will run again.
                tracing::warn!(job = id, error = %e.log_text(), "could not settle job");
            }
            Err(_) => {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
    }
}
