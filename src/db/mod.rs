//! Storage: one diesel `MultiConnection` over SQLite (embedded default) and PostgreSQL, r2d2 pools,
//! embedded per-backend migrations, and the bounded bridge from async handlers to blocking diesel.
//!
//! Rules the rest of the crate follows:
//! - repository functions (`db::repo::*`) take `&mut DbConnection` and never open transactions;
//!   services open them with [`Db::write`] so several repository calls commit together;
//! - no connection is held across an `.await` on a broker call: each [`Db::read`]/[`Db::write`]
//!   is one short blocking closure;
//! - one write path per backend, with the same acquire timeout as reads: on SQLite every write
//!   (requests, jobs, CLI commands) goes through the single group-commit writer thread
//!   ([`writer`]); on PostgreSQL a transaction on a pooled connection. Reads (authorization
//!   included) run on the read pool, never behind the writer.
//!
//! Closures own what they use (`move`): the request that queued one may be cancelled (its
//! client gone) while the closure still runs on another thread, so it cannot borrow from the
//! request. Errors are the caller's type `E` (anything a [`DbError`] converts into).

mod close;
mod connect;
mod error;
pub mod models;
pub mod repo;
pub mod schema;
pub mod time;
mod writer;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ManageConnection, Pool};
use diesel::{Connection, PgConnection, SqliteConnection};
use tokio::sync::Semaphore;

pub use connect::{
    configure_sqlite_library, run_migrations, ConnectionManager, DbUrl, POSTGRES_MIGRATIONS,
    SQLITE_MIGRATIONS,
};
pub use error::{as_unique_violation, is_unavailable, DbError, UniqueViolation};

/// Runs `$body` with `$c` bound to the concrete SQLite or PostgreSQL connection inside a
/// [`DbConnection`]; the body is compiled once per backend.
///
/// Why: a query run through the `MultiConnection` is wrapped so that it renders its SQL text
/// anew on every execution, even when the prepared statement is cached (diesel 2.3's
/// `SerializedQuery::walk_ast`); that was 19% of the server's CPU on a binding create (perf).
/// On the concrete connection a query with a static shape is looked up by type and its SQL is
/// built once. Used on the hot paths (binding create, get, list); boxed queries stay on the
/// multi-backend connection.
macro_rules! native {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::db::DbConnection::Sqlite($c) => $body,
            $crate::db::DbConnection::Pg($c) => $body,
        }
    };
}
pub(crate) use native;

#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl DbConnection {
    pub fn backend(&self) -> Backend {
        match self {
            DbConnection::Pg(_) => Backend::Postgres,
            DbConnection::Sqlite(_) => Backend::Sqlite,
        }
    }
}

#[derive(Debug, Clone)]
pub struct DbConfig {
    pub url: String,
    /// Connections for reads (SQLite) or for everything (PostgreSQL).
    pub pool_size: u32,
    /// How long a request may wait for a connection (or, on SQLite, for the writer) before it
    /// gets a 503.
    pub acquire_timeout: Duration,
    /// PostgreSQL: group-commit writer threads (0: each write a transaction of its own).
    pub pg_writers: usize,
}

impl DbConfig {
    pub fn new(url: impl Into<String>) -> Self {
        DbConfig {
            url: url.into(),
            pool_size: 8,
            acquire_timeout: Duration::from_secs(5),
            // Tests and tools follow the server's default unless told otherwise.
            pg_writers: std::env::var("TETHER_PG_WRITERS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(DEFAULT_PG_WRITERS),
        }
    }
}

/// PostgreSQL's group-commit writers by default (`--pg-writers`). Measured on 2 cores, creates at
/// c=64: 0 writers ~620 req/s, 2 ~870, 4 ~1,000, 8 ~1,050 (noisy; 4 has the better p99).
pub const DEFAULT_PG_WRITERS: usize = 4;

/// A pool and the permits that bound how many blocking threads wait on it.
struct Gate {
    /// `None` once closed.
    pool: std::sync::RwLock<Option<Pool<ConnectionManager>>>,
    permits: Arc<Semaphore>,
    /// The threads that open its connections (see [`close`]).
    threads: close::PoolThreads,
}

impl Gate {
    fn pool(&self) -> Result<Pool<ConnectionManager>, DbError> {
        let pool = match self.pool.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        pool.ok_or_else(|| DbError::Busy("the database connections are closed".into()))
    }

    /// Closes every connection and waits until the pool's threads are idle.
    fn close(&self) {
        let pool = match self.pool.write() {
            Ok(mut guard) => guard.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        drop(pool);
        if !self.threads.wait_idle(Duration::from_secs(30)) {
            tracing::warn!("the database pool's threads did not come to rest");
        }
    }
}

/// Where writes go.
enum Writes {
    /// The group-commit writers (SQLite: one thread; PostgreSQL: a few, on pooled connections).
    Batched(Arc<writer::Writer>),
    /// PostgreSQL: a transaction of its own on a connection of the (shared) pool.
    Pooled,
}

/// The shared database handle.
#[derive(Clone)]
pub struct Db {
    backend: Backend,
    read: Arc<Gate>,
    writes: Arc<Writes>,
    acquire_timeout: Duration,
    /// Waits, acquire timeouts and write batch sizes, for the metrics.
    stats: crate::metrics::DbStats,
}

impl Db {
    /// Opens the pools (and on SQLite the writer) and runs pending migrations.
    pub fn connect(config: &DbConfig) -> anyhow::Result<Db> {
        let url = DbUrl::parse(&config.url)?;
        let size = config.pool_size.max(1);
        if let DbUrl::Sqlite(path) = &url {
            connect::prepare_sqlite_file(path)?;
        }
        let manager = ConnectionManager::new(url.clone());
        let mut first = manager.connect()?;
        run_migrations(&mut first)?;
        let stats = crate::metrics::DbStats::default();
        let threads = close::PoolThreads::new();
        let pool = connect::build_pool(&url, size, config.acquire_timeout, &threads)?;
        let connections = match &url {
            // The migrated connection becomes the writer's.
            DbUrl::Sqlite(_) => Some(writer::WriteConnections::Owned(first)),
            // PostgreSQL's writer threads have a pool of their own (one connection each), so
            // that readers never wait behind them nor they behind readers.
            DbUrl::Postgres(_) if config.pg_writers > 0 => {
                let n = config.pg_writers;
                Some(writer::WriteConnections::Pooled {
                    pool: connect::build_pool(&url, n as u32, config.acquire_timeout, &threads)?,
                    threads: n,
                })
            }
            DbUrl::Postgres(_) => None,
        };
        let writes = match connections {
            Some(c) => Writes::Batched(Arc::new(writer::Writer::start(
                c,
                config.acquire_timeout,
                stats.clone(),
            )?)),
            None => Writes::Pooled,
        };
        Ok(Db {
            backend: url.backend(),
            read: Arc::new(Gate {
                pool: std::sync::RwLock::new(Some(pool)),
                permits: Arc::new(Semaphore::new(size as usize)),
                threads,
            }),
            writes: Arc::new(writes),
            acquire_timeout: config.acquire_timeout,
            stats,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn stats(&self) -> &crate::metrics::DbStats {
        &self.stats
    }

    /// The read pool's connections now (the writers' connections are not counted).
    pub fn pool_figures(&self) -> crate::metrics::PoolFigures {
        match self.read.pool() {
            Ok(pool) => {
                let state = pool.state();
                crate::metrics::PoolFigures {
                    connections: state.connections,
                    idle: state.idle_connections,
                    max: pool.max_size(),
                }
            }
            Err(_) => crate::metrics::PoolFigures {
                connections: 0,
                idle: 0,
                max: 0,
            },
        }
    }

    /// Readiness: a connection answers and every migration is applied (`Ok(false)`: some are
    /// pending).
    pub async fn check_ready(&self) -> Result<bool, DbError> {
        self.run(|conn| {
            conn.batch_execute("SELECT 1")?;
            connect::migrations_applied(conn)
        })
        .await
    }

    /// At shutdown: SQLite's writer finishes its queue and closes its connection (see
    /// [`writer::Writer::shutdown`]). Writes after this fail.
    pub fn shutdown(&self) {
        if let Writes::Batched(writer) = &*self.writes {
            writer.shutdown();
        }
    }

    /// Before the process exits: the SQLite writer drains ([`Db::shutdown`]), every pooled
    /// connection closes and the pool's threads are at rest (see [`close`]). Every use after
    /// this fails.
    pub fn close(&self) {
        self.shutdown();
        self.read.close();
    }

    /// Closes the database when the guard goes (a command's early error return included).
    pub fn close_on_drop(&self) -> CloseOnDrop {
        CloseOnDrop(self.clone())
    }

    /// Runs `f` on a pooled connection on the blocking pool, waiting at most the acquire
    /// timeout for a permit and a connection. A panic in `f` is an error like any other.
    async fn run<F, T, E>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let busy = || {
            E::from(DbError::Busy(
                "no database connection came free in time".into(),
            ))
        };
        let permit = match self.read.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                self.stats.waits.inc();
                let waited = tokio::time::timeout(
                    self.acquire_timeout,
                    self.read.permits.clone().acquire_owned(),
                )
                .await;
                if waited.is_err() {
                    self.stats.acquire_timeouts.inc();
                }
                waited.map_err(|_| busy())?.map_err(|_| busy())?
            }
        };
        let pool = self.read.pool().map_err(E::from)?;
        let timeouts = self.stats.acquire_timeouts.clone();
        actix_web::web::block(move || {
            let _permit = permit;
            let mut conn = pool.get().map_err(|e| {
                timeouts.inc();
                E::from(DbError::Busy(format!("no database connection: {e}")))
            })?;
            catch_unwind(AssertUnwindSafe(|| f(&mut conn)))
                .unwrap_or_else(|panic| Err(E::from(DbError::panicked(panic))))
        })
        .await
        .map_err(|_| busy())?
    }

    /// Runs `f` on a read connection (no transaction).
    pub async fn read<F, T, E>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        self.run(f).await
    }

    /// Runs `f` on a read connection inside a read-only transaction, so that all of its queries
    /// see one snapshot (a page and its total count agree under concurrent writes).
    pub async fn read_snapshot<F, T, E>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        self.run(move |conn| snapshot(conn, f)).await
    }

    /// Runs `f` as one write transaction: all of its writes commit, or none do.
    ///
    /// SQLite: on the group-commit writer thread, inside a savepoint of a batch transaction
    /// taken with `BEGIN IMMEDIATE` (the write lock up front, so a read-then-write cannot
    /// deadlock with another process); the result comes back after the batch commits.
    /// PostgreSQL: the same group commit on one of the `--pg-writers` threads (each with a
    /// connection of its own), or with `--pg-writers 0` a transaction on a pooled connection.
    pub async fn write<F, T, E>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        match &*self.writes {
            Writes::Batched(writer) => writer.write(f).await,
            Writes::Pooled => self.run(move |conn| pg_transaction(conn, f)).await,
        }
    }

    /// [`Db::write`] for a closure that makes exactly one write statement (atomic on its own):
    /// on PostgreSQL without group commit it runs in autocommit, saving the `BEGIN` and
    /// `COMMIT` round trips of a transaction; elsewhere it is [`Db::write`].
    pub async fn write_single<F, T, E>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        match &*self.writes {
            Writes::Batched(writer) => writer.write(f).await,
            Writes::Pooled => self.run(f).await,
        }
    }

    /// [`Db::write`] for CLI commands and start-up (not for request handlers: it blocks).
    pub fn write_blocking<F, T, E>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        match &*self.writes {
            Writes::Batched(writer) => writer.write_blocking(f),
            Writes::Pooled => {
                let mut conn =
                    self.read.pool()?.get().map_err(|e| {
                        E::from(DbError::Busy(format!("no database connection: {e}")))
                    })?;
                pg_transaction(&mut conn, f)
            }
        }
    }

    /// Blocking read for CLI commands.
    pub fn read_blocking<F, T, E>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E>,
        E: From<DbError>,
    {
        let mut conn = self
            .read
            .pool()?
            .get()
            .map_err(|e| E::from(DbError::Busy(format!("no database connection: {e}"))))?;
        f(&mut conn)
    }
}

/// See [`Db::close_on_drop`].
pub struct CloseOnDrop(Db);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// One PostgreSQL transaction around `f` (diesel's: commit on `Ok`, roll back on `Err`).
fn pg_transaction<F, T, E>(conn: &mut DbConnection, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConnection) -> Result<T, E>,
    E: From<DbError>,
{
    let mut result = None;
    let outcome = conn.transaction::<(), diesel::result::Error, _>(|conn| match f(conn) {
        Ok(v) => {
            result = Some(Ok(v));
            Ok(())
        }
        Err(e) => {
            result = Some(Err(e));
            Err(diesel::result::Error::RollbackTransaction)
        }
    });
    match (outcome, result) {
        (Ok(()), Some(r)) | (Err(diesel::result::Error::RollbackTransaction), Some(r)) => r,
        (Err(e), _) => Err(E::from(DbError::Query(e))),
        (Ok(()), None) => Err(E::from(DbError::Panicked(
            "transaction without a result".into(),
        ))),
    }
}

/// Runs `f` in a read-only transaction (one snapshot on either backend). Begun and ended through
/// diesel's transaction manager, so a transaction that failed to end marks the connection
/// broken and the pool drops it instead of lending it out mid-transaction.
fn snapshot<F, T, E>(conn: &mut DbConnection, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConnection) -> Result<T, E>,
    E: From<DbError>,
{
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    let begun = match conn {
        DbConnection::Pg(pg) => AnsiTransactionManager::begin_transaction_sql(
            pg,
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        ),
        // A deferred transaction takes its snapshot at its first read and never blocks the
        // writer (WAL).
        DbConnection::Sqlite(lite) => {
            AnsiTransactionManager::begin_transaction_sql(lite, "BEGIN DEFERRED")
        }
    };
    begun.map_err(|e| E::from(DbError::Query(e)))?;
    let result = f(conn);
    // Nothing was written: ending it either way only releases the snapshot.
    let ended = match (conn, result.is_ok()) {
        (DbConnection::Pg(pg), true) => AnsiTransactionManager::commit_transaction(pg),
        (DbConnection::Pg(pg), false) => AnsiTransactionManager::rollback_transaction(pg),
        (DbConnection::Sqlite(lite), true) => AnsiTransactionManager::commit_transaction(lite),
        (DbConnection::Sqlite(lite), false) => AnsiTransactionManager::rollback_transaction(lite),
    };
    if let Err(e) = ended {
        tracing::warn!(error = %e, "could not end a read transaction");
    }
    result
}

/// Runs `f` inside a savepoint of the transaction `conn` is in: if it fails, only what it did
/// is undone and the transaction goes on (PostgreSQL would otherwise abort the whole
/// transaction after the first failed statement).
pub fn savepoint<F, T, E>(conn: &mut DbConnection, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConnection) -> Result<T, E>,
    E: From<DbError>,
{
    let sql = |conn: &mut DbConnection, s: &str| {
        conn.batch_execute(s)
            .map_err(|e| E::from(DbError::Query(e)))
    };
    sql(conn, "SAVEPOINT tether_inner")?;
    match f(conn) {
        Ok(v) => {
            sql(conn, "RELEASE SAVEPOINT tether_inner")?;
            Ok(v)
        }
        Err(e) => {
            sql(
                conn,
                "ROLLBACK TO SAVEPOINT tether_inner; RELEASE SAVEPOINT tether_inner",
            )?;
            Err(e)
        }
    }
}

/// Now, as stored: naive UTC, microsecond precision (PostgreSQL's), so that a value read back
/// equals the value written on both backends.
pub fn now() -> chrono::NaiveDateTime {
    let t = chrono::Utc::now().naive_utc();
    use chrono::Timelike;
    t.with_nanosecond(t.nanosecond() / 1000 * 1000).unwrap_or(t)
}
