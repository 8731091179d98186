//! Group commit: writer threads run queued write closures in batches, each closure in its own
//! savepoint, the batch in one transaction. On SQLite one thread owns the write connection; on
//! PostgreSQL a few threads share the queue, each taking a pooled connection per batch.
//!
//! Why: SQLite admits one writer at a time, so writes were already serialized on a single
//! connection; what each one paid on top of its own statements was a thread hand-off, `BEGIN
//! IMMEDIATE`, and a `COMMIT` that appends to the WAL (and now and then checkpoints). Under
//! load those dominated a binding create (two write transactions per create). With a batch, the
//! writer wakes once for whatever has queued up and commits once for all of it.
//!
//! PostgreSQL takes concurrent writers, but each transaction still costs its `BEGIN` and
//! `COMMIT` round trips and a WAL flush that its caller waits for; measured, those (not the
//! statements) were most of a create's database time. A handful of threads, each committing
//! whatever queued while the previous batch ran, keep the flushes few and the server busy.
//!
//! Semantics are those of one transaction per closure: a closure that returns an error (or
//! panics) is rolled back to its savepoint and the others are unaffected; a caller hears its
//! result only after the batch committed (as durable as any commit under `synchronous =
//! NORMAL`), and if that commit fails every closure in the batch gets an error (none of their
//! writes happened).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use diesel::connection::SimpleConnection;
use tokio::sync::oneshot;

use std::time::{Duration, Instant};

use super::connect::ConnectionManager;
use super::{DbConnection, DbError};

/// Most closures one transaction takes; bounds how long the first in a batch waits for the rest.
const MAX_BATCH: usize = 128;

/// Queued writes beyond which callers get a 503 at once instead of waiting (the pool-exhausted
/// rule of the read side).
const QUEUE_CAPACITY: usize = 4096;

/// A queued write, type-erased.
trait Job: Send {
    /// Runs the closure on `conn` (inside its savepoint); says whether it succeeded, and keeps
    /// the result for [`Completion::finish`].
    fn run(self: Box<Self>, conn: &mut DbConnection) -> (bool, Box<dyn Completion>);

    /// Answers the caller with an error without running the closure.
    fn abandon(self: Box<Self>, cause: DbError);

    /// When the caller stops waiting for the writer to start on it.
    fn deadline(&self) -> Instant;
}

/// The result of a job that ran, waiting for its batch's commit.
trait Completion: Send {
    /// `None`: the batch committed; `Some(cause)`: it did not, and nothing of it was kept.
    fn finish(self: Box<Self>, failed_commit: Option<&str>);
}

struct Queued<F, T, E> {
    f: F,
    reply: oneshot::Sender<Result<T, E>>,
    deadline: Instant,
}

struct Ran<T, E> {
    result: Result<T, E>,
    reply: oneshot::Sender<Result<T, E>>,
}

impl<F, T, E> Job for Queued<F, T, E>
where
    F: FnOnce(&mut DbConnection) -> Result<T, E> + Send,
    T: Send + 'static,
    E: From<DbError> + Send + 'static,
{
    fn run(self: Box<Self>, conn: &mut DbConnection) -> (bool, Box<dyn Completion>) {
        let Queued { f, reply, .. } = *self;
        let result = catch_unwind(AssertUnwindSafe(|| f(conn)))
            .unwrap_or_else(|panic| Err(E::from(DbError::panicked(panic))));
        (result.is_ok(), Box::new(Ran { result, reply }))
    }

    fn abandon(self: Box<Self>, cause: DbError) {
        let _ = self.reply.send(Err(E::from(cause)));
    }

    fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl<T: Send, E: From<DbError> + Send> Completion for Ran<T, E> {
    fn finish(self: Box<Self>, failed_commit: Option<&str>) {
        let result = match (failed_commit, self.result) {
            (Some(cause), Ok(_)) => Err(E::from(DbError::Busy(format!(
                "the write transaction did not commit: {cause}"
            )))),
            (_, result) => result,
        };
        // The caller may have gone (request cancelled); its write stands either way.
        let _ = self.reply.send(result);
    }
}

/// Where the writer threads get their connection.
pub enum WriteConnections {
    /// SQLite: the one write connection, owned by the one writer thread.
    Owned(DbConnection),
    /// PostgreSQL: `threads` writers, each taking a connection of the pool for a batch (so a
    /// connection lost to a server restart is replaced the way the pool replaces any).
    Pooled {
        pool: diesel::r2d2::Pool<ConnectionManager>,
        threads: usize,
    },
}

/// Handle to the writer threads; cloning is not needed (the `Db` shares it in an `Arc`).
pub struct Writer {
    queue: SyncSender<Msg>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// How long a write may wait for a writer to start on it (the pool's acquire timeout).
    acquire_timeout: Duration,
}

enum Msg {
    Write(Box<dyn Job>),
    /// Finish what is queued before this, close the connection, end the thread (one per thread).
    Stop,
}

impl Writer {
    /// Starts the writer threads. They run until [`Writer::shutdown`] (or the handle's drop).
    pub fn start(
        connections: WriteConnections,
        acquire_timeout: Duration,
        stats: crate::metrics::DbStats,
    ) -> std::io::Result<Writer> {
        let (queue, jobs) = mpsc::sync_channel(QUEUE_CAPACITY);
        let jobs = Arc::new(Mutex::new(jobs));
        let mut threads = Vec::new();
        let spawn = |name: String, source: Source| {
            let (jobs, stats) = (jobs.clone(), stats.clone());
            std::thread::Builder::new()
                .name(name)
                .spawn(move || writer_loop(source, &jobs, &stats))
        };
        match connections {
            WriteConnections::Owned(conn) => {
                threads.push(spawn("tether-sqlite-writer".into(), Source::Owned(conn))?);
            }
            WriteConnections::Pooled { pool, threads: n } => {
                for i in 0..n.max(1) {
                    let source = Source::Pooled(pool.clone());
                    threads.push(spawn(format!("tether-pg-writer-{i}"), source)?);
                }
            }
        }
        Ok(Writer {
            queue,
            threads: Mutex::new(threads),
            acquire_timeout,
        })
    }

    /// Runs what is queued, closes the write connections and waits for the threads to end.
    /// Later writes fail. Why wait: the connection must be closed before the process exits,
    /// or SQLite cannot checkpoint and remove the WAL, and the next start has to replay it
    /// (measured: 0.6 s to first 200 after a million-binding load, instead of 30 ms).
    pub fn shutdown(&self) {
        let threads = match self.threads.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        // A write closure may hold the last handle: a writer cannot wait for itself (nor for
        // room in its own queue).
        let me = std::thread::current().id();
        if threads.iter().any(|t| t.thread().id() == me) {
            for _ in &threads {
                let _ = self.queue.try_send(Msg::Stop);
            }
            return;
        }
        for _ in &threads {
            let _ = self.queue.send(Msg::Stop);
        }
        for thread in threads {
            if thread.join().is_err() {
                tracing::error!("a database writer thread panicked");
            }
        }
    }

    /// Queues `f` and waits for the commit of its batch.
    pub async fn write<F, T, E>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        self.enqueue(f)?
            .await
            .map_err(|_| E::from(DbError::Busy("the database writer dropped a write".into())))?
    }

    /// [`Writer::write`] for callers outside the async runtime (CLI commands).
    pub fn write_blocking<F, T, E>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        self.enqueue(f)?
            .blocking_recv()
            .map_err(|_| E::from(DbError::Busy("the database writer dropped a write".into())))?
    }

    fn enqueue<F, T, E>(&self, f: F) -> Result<oneshot::Receiver<Result<T, E>>, E>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Queued {
            f,
            reply,
            deadline: Instant::now() + self.acquire_timeout,
        };
        match self.queue.try_send(Msg::Write(Box::new(job))) {
            Ok(()) => Ok(answer),
            Err(TrySendError::Full(_)) => Err(E::from(DbError::Busy(
                "the database write queue is full".into(),
            ))),
            Err(TrySendError::Disconnected(_)) => {
                Err(E::from(DbError::Busy("the database writer is gone".into())))
            }
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A writer thread's connection: its own (SQLite) or one of the pool's per batch (PostgreSQL).
enum Source {
    Owned(DbConnection),
    Pooled(diesel::r2d2::Pool<ConnectionManager>),
}

fn writer_loop(mut source: Source, jobs: &Mutex<Receiver<Msg>>, stats: &crate::metrics::DbStats) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    let mut ran: Vec<Box<dyn Completion>> = Vec::with_capacity(MAX_BATCH);
    let mut stopping = false;
    while !stopping {
        stopping = next_batch(jobs, &mut batch);
        if batch.is_empty() {
            continue;
        }
        stats.batch_sizes.observe(batch.len() as f64);
        let failure = match &mut source {
            Source::Owned(conn) => run_batch(conn, &mut batch, &mut ran, stats).err(),
            Source::Pooled(pool) => match pool.get() {
                Ok(mut conn) => run_batch(&mut conn, &mut batch, &mut ran, stats).err(),
                Err(e) => {
                    stats.acquire_timeouts.inc();
                    ran.extend(batch.drain(..).map(|job| Box::new(NotRun(job)) as _));
                    Some(format!("no database connection: {e}"))
                }
            },
        };
        if let Some(cause) = &failure {
            tracing::error!(error = %cause, writes = ran.len(), "a write batch failed");
        }
        for done in ran.drain(..) {
            done.finish(failure.as_deref());
        }
    }
}

/// Waits for a write, then takes what else is queued (up to [`MAX_BATCH`]). Says whether this
/// thread is to stop after the batch. The queue is locked meanwhile, so the other writers wait
/// for the next batch rather than take half of this one.
fn next_batch(jobs: &Mutex<Receiver<Msg>>, batch: &mut Vec<Box<dyn Job>>) -> bool {
    let jobs = match jobs.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    match jobs.recv() {
        Ok(Msg::Write(first)) => batch.push(first),
        Ok(Msg::Stop) | Err(_) => return true,
    }
    while batch.len() < MAX_BATCH {
        match jobs.try_recv() {
            Ok(Msg::Write(job)) => batch.push(job),
            Ok(Msg::Stop) => return true,
            Err(_) => break,
        }
    }
    false
}

/// Runs the batch in one transaction. `Err` means nothing of it was committed.
///
/// The transaction and savepoint statements between two closures go in one `batch_execute`
/// (`RELEASE …; SAVEPOINT …`): on PostgreSQL each call is a round trip, and a create's two
/// writes would otherwise pay four of them on top of their own statements.
fn run_batch(
    conn: &mut DbConnection,
    batch: &mut Vec<Box<dyn Job>>,
    ran: &mut Vec<Box<dyn Completion>>,
    stats: &crate::metrics::DbStats,
) -> Result<(), String> {
    // SQLite: the write lock up front, so a read-then-write cannot deadlock with another process.
    let mut pending = match conn {
        DbConnection::Sqlite(_) => "BEGIN IMMEDIATE;",
        DbConnection::Pg(_) => "BEGIN;",
    };
    let mut broken = None;
    let now = Instant::now();
    for job in batch.drain(..) {
        if job.deadline() < now {
            // Its caller's acquire timeout passed while it queued: a 503, as on the read side.
            stats.acquire_timeouts.inc();
            job.abandon(DbError::Busy(
                "no database writer got to this write in time".into(),
            ));
            continue;
        }
        if broken.is_some() {
            ran.push(Box::new(NotRun(job)));
            continue;
        }
        if let Err(e) = conn.batch_execute(&format!("{pending} SAVEPOINT tether_write")) {
            broken = Some(e.to_string());
            ran.push(Box::new(NotRun(job)));
            continue;
        }
        let (ok, done) = job.run(conn);
        ran.push(done);
        pending = if ok {
            "RELEASE tether_write;"
        } else {
            "ROLLBACK TO tether_write; RELEASE tether_write;"
        };
    }
    let outcome = match broken {
        Some(cause) => Err(cause),
        // Every write expired before it ran: no transaction was begun.
        None if ran.is_empty() => Ok(()),
        None => conn
            .batch_execute(&format!("{pending} COMMIT"))
            .map_err(|e| e.to_string()),
    };
    if outcome.is_err() {
        // Best effort: if the transaction is already gone (or never began) the database says
        // so, and that is fine.
        let _ = conn.batch_execute("ROLLBACK");
    }
    outcome
}

/// A job the batch never got to run (the transaction could not start or broke before it).
struct NotRun(Box<dyn Job>);

impl Completion for NotRun {
    fn finish(self: Box<Self>, failed_commit: Option<&str>) {
        let cause = failed_commit.unwrap_or("the batch was aborted");
        self.0.abandon(DbError::Busy(format!(
            "the write transaction could not run: {cause}"
        )));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::prelude::*;
    use diesel::sql_types::BigInt;

    #[derive(QueryableByName)]
    struct X {
        #[diesel(sql_type = BigInt)]
        x: i64,
    }

    use crate::error::{ApiError, ApiResult};

    fn insert(conn: &mut DbConnection, x: i64) -> ApiResult<()> {
        diesel::sql_query(format!("INSERT INTO t (x) VALUES ({x})")).execute(conn)?;
        Ok(())
    }

    /// Concurrent writes land in shared transactions, yet each keeps its own outcome: a closure
    /// that fails or panics leaves nothing behind and does not disturb the others, and the
    /// writer goes on serving afterwards.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_write_commits_or_rolls_back_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let mut conn = diesel::SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        conn.batch_execute("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER NOT NULL UNIQUE)")
            .unwrap();
        let writer = std::sync::Arc::new(
            Writer::start(
                WriteConnections::Owned(DbConnection::Sqlite(conn)),
                Duration::from_secs(5),
                Default::default(),
            )
            .unwrap(),
        );

        let mut tasks = Vec::new();
        for i in 0..40i64 {
            let w = writer.clone();
            tasks.push(tokio::spawn(async move {
                w.write(move |conn| {
                    insert(conn, i)?;
                    match i {
                        7 => Err(ApiError::NotFound),
                        9 => panic!("a write that panics"),
                        // A second row for x = 3: the unique index refuses it, and the closure's
                        // earlier inserts (x = 13, x = 1003) must go with it.
                        13 => {
                            insert(conn, 1003)?;
                            insert(conn, 3)
                        }
                        _ => Ok(()),
                    }
                })
                .await
            }));
        }
        let mut failed = Vec::new();
        for (i, t) in tasks.into_iter().enumerate() {
            if t.await.unwrap().is_err() {
                failed.push(i);
            }
        }
        assert_eq!(failed, vec![7, 9, 13]);

        let rows: Vec<X> = writer
            .write(|conn| -> ApiResult<_> {
                Ok(diesel::sql_query("SELECT x FROM t ORDER BY x").load(conn)?)
            })
            .await
            .unwrap();
        let xs: Vec<i64> = rows.into_iter().map(|r| r.x).collect();
        let expected: Vec<i64> = (0..40).filter(|i| ![7, 9, 13].contains(i)).collect();
        assert_eq!(xs, expected);

        // Committed for other connections too, not only visible inside the writer's transaction.
        let mut reader = diesel::SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        let n: Vec<X> = diesel::sql_query("SELECT COUNT(*) AS x FROM t")
            .load(&mut reader)
            .unwrap();
        assert_eq!(n[0].x, 37);

        // Shutting down closes the connection: SQLite checkpoints and removes the WAL, so the
        // next start has nothing to replay. Writes after that fail cleanly.
        drop(reader);
        writer.shutdown();
        let wal = dir.path().join("w.db-wal");
        assert!(!wal.exists(), "the WAL outlived the writer");
        assert!(writer.write(|conn| insert(conn, 100)).await.is_err());
    }

    /// A write that waited in the queue longer than the acquire timeout is refused with Busy
    /// (a 503), as a read that waits too long for a connection is, instead of waiting forever
    /// behind a slow batch.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_that_waits_too_long_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let mut conn = diesel::SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        conn.batch_execute("CREATE TABLE t (x INTEGER NOT NULL UNIQUE)")
            .unwrap();
        let writer = std::sync::Arc::new(
            Writer::start(
                WriteConnections::Owned(DbConnection::Sqlite(conn)),
                Duration::from_millis(50),
                Default::default(),
            )
            .unwrap(),
        );
        let w = writer.clone();
        let slow = tokio::spawn(async move {
            w.write(|conn| {
                std::thread::sleep(Duration::from_millis(300));
                insert(conn, 1)
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let queued = writer.write(|conn| insert(conn, 2)).await;
        assert!(matches!(queued, Err(ApiError::Busy)), "{queued:?}");
        assert!(slow.await.unwrap().is_ok());
        // The writer goes on serving.
        assert!(writer.write(|conn| insert(conn, 3)).await.is_ok());
    }

    /// A panicking write is an internal error (a 500), as it is on PostgreSQL.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_write_is_an_internal_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let conn = diesel::SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        let writer = Writer::start(
            WriteConnections::Owned(DbConnection::Sqlite(conn)),
            Duration::from_secs(5),
            Default::default(),
        )
        .unwrap();
        let r: ApiResult<()> = writer.write(|_| panic!("a bug")).await;
        match r {
            Err(ApiError::Internal(internal)) => {
                assert!(internal.to_string().contains("a bug"), "{internal}")
            }
            other => panic!("{other:?}"),
        }
    }
}
