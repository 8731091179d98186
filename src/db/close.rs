//! Closing the pool before the process exits.
//!
//! Why: r2d2 opens connections on its own threads (to keep `min_idle` connections, and for
//! every new one), and such a thread holds the pool while it works. When the process exited
//! with one of them still opening or closing a PostgreSQL connection, OpenSSL's exit-time
//! cleanup ran under it: `tether migrate` on PostgreSQL segfaulted (exit 139) in 3 of 10 runs.
//! So the pool's threads are ours ([`PoolThreads`]), and closing waits until every one of them
//! is idle, which means the pool and its connections are gone.

use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use scheduled_thread_pool::ScheduledThreadPool;

/// Threads that open (and retire) the pool's connections.
pub(super) const POOL_THREADS: usize = 2;

/// The pool's worker threads, kept so that closing can wait for them.
pub(super) struct PoolThreads {
    pub(super) pool: Arc<ScheduledThreadPool>,
}

impl PoolThreads {
    pub(super) fn new() -> Self {
        PoolThreads {
            pool: Arc::new(
                ScheduledThreadPool::builder()
                    .num_threads(POOL_THREADS)
                    .thread_name_pattern("tether-db-pool-{}")
                    .build(),
            ),
        }
    }

    /// Waits (at most `limit`) until every thread has finished what it was doing: each is sent
    /// a job that reports and then holds its thread, so that all reports mean no thread is
    /// still at work. True if they all reported.
    pub(super) fn wait_idle(&self, limit: Duration) -> bool {
        let (report, reports) = mpsc::channel();
        let hold = Arc::new((Mutex::new(true), Condvar::new()));
        for _ in 0..POOL_THREADS {
            let (report, hold) = (report.clone(), hold.clone());
            self.pool.execute(move || {
                let _ = report.send(());
                let (held, released) = &*hold;
                let mut held = held.lock().unwrap_or_else(|p| p.into_inner());
                while *held {
                    held = released.wait(held).unwrap_or_else(|p| p.into_inner());
                }
            });
        }
        let deadline = Instant::now() + limit;
        let mut idle = 0;
        while idle < POOL_THREADS {
            let left = deadline.saturating_duration_since(Instant::now());
            if reports.recv_timeout(left).is_err() {
                break;
            }
            idle += 1;
        }
        let (held, released) = &*hold;
        *held.lock().unwrap_or_else(|p| p.into_inner()) = false;
        released.notify_all();
        idle == POOL_THREADS
    }
}
