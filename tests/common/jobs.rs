//! Driving the job queue from a test, in virtual time: the server runs without its background
//! runner (`TestApp::manual`), and the test runs the jobs that are due and moves the server's
//! clock to the next due one. Nothing waits on the wall clock, so polling intervals, Retry-After,
//! backoff and maximum polling durations are asserted exactly, not with timing margins.

use std::time::Duration;

use tether::jobs::JobRunner;

use super::{Backend, Options, Response, TestApp};

/// How many jobs a test may run before a driver gives up (a job that never settles).
const MAX_JOB_RUNS: usize = 10_000;

impl TestApp {
    /// A server whose jobs run only when the test says so (`run_jobs`, `drive_until`, ...).
    pub async fn manual(backend: Backend) -> TestApp {
        Self::manual_with(backend, Options::default()).await
    }

    pub async fn manual_with(backend: Backend, opts: Options) -> TestApp {
        Self::start_with(
            backend,
            Options {
                runner: false,
                ..opts
            },
        )
        .await
    }

    fn runner(&self) -> JobRunner {
        JobRunner::new(self.state.clone(), self.runner_config.clone())
    }

    /// Runs every job due now (and what those make due now). Returns how many ran.
    pub async fn run_jobs(&self) -> usize {
        self.runner().run_due_now().await
    }

    /// Moves the server's clock forward, then runs what is due.
    pub async fn advance(&self, by: Duration) -> usize {
        self.state.clock.advance(by);
        self.run_jobs().await
    }

    /// Looks for abandoned operations as the background runner does every so often.
    pub async fn sweep(&self) {
        self.runner().sweep().await
    }

    /// Jobs not settled yet (queued or running).
    pub async fn pending_jobs(&self) -> i64 {
        self.state
            .db
            .read(|conn| Ok(tether::jobs::pending_count(conn)?))
            .await
            .expect("pending jobs")
    }

    /// One step of virtual time: runs the due jobs, or, when none is due, moves the clock to the
    /// next queued job and runs it. False when no job is queued at all.
    pub async fn step_jobs(&self) -> bool {
        if self.run_jobs().await > 0 {
            return true;
        }
        let next = self
            .state
            .db
            .read(|conn| Ok(tether::jobs::queue::next_due(conn)?))
            .await
            .expect("next due job");
        let Some(due) = next else { return false };
        // The clock moves in whole milliseconds: round up, or the job stays just out of reach.
        let wait = (due - self.state.clock.now()).to_std().unwrap_or_default();
        let wait_ms = wait.as_micros().div_ceil(1000);
        self.advance(Duration::from_millis(
            u64::try_from(wait_ms).unwrap_or(u64::MAX),
        ))
        .await;
        true
    }

    /// Steps through virtual time until every job has settled.
    pub async fn settle_jobs(&self) {
        for _ in 0..MAX_JOB_RUNS {
            if !self.step_jobs().await {
                return;
            }
        }
        panic!("jobs did not settle after {MAX_JOB_RUNS} steps");
    }

    /// Steps through virtual time until `check` holds for `GET path` (checked before each
    /// step). Panics if the jobs settle without it.
    pub async fn drive_until<F: Fn(&Response) -> bool>(&self, path: &str, check: F) -> Response {
        for _ in 0..MAX_JOB_RUNS {
            let r = self.get(path).await;
            if check(&r) {
                return r;
            }
            if !self.step_jobs().await {
                panic!("no job left, and {path} is still: {} {}", r.status, r.text);
            }
        }
        panic!("{path} not reached after {MAX_JOB_RUNS} steps");
    }

    /// Steps through virtual time until `check` holds (checked before each step).
    pub async fn drive_until_true(&self, what: &str, check: impl Fn() -> bool) {
        for _ in 0..MAX_JOB_RUNS {
            if check() {
                return;
            }
            if !self.step_jobs().await {
                assert!(check(), "no job left, and still not: {what}");
                return;
            }
        }
        panic!("{what}: not after {MAX_JOB_RUNS} steps");
    }
}
