//! Storage: one diesel `MultiConnection` over SQLite (embedded default) and PostgreSQL, r2d2 pools,
//! embedded per-backend migrations, and the bounded bridge from async handlers to blocking diesel.
//!
//! Rules the rest of the crate follows:
//! - repository functions (`db::repo::*`) take `&mut DbConnection` and never open transactions;
//!   services open them with [`Db::write`] so several repository calls commit together;
//! - no connection is held across an `.await` on a broker call: each [`Db::read`]/[`Db::write`]
//!   is one short blocking closure.

pub mod models;
pub mod repo;
pub mod schema;
pub mod time;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{self, ManageConnection, Pool};
use diesel::{Connection, PgConnection, SqliteConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use tokio::sync::Semaphore;

use crate::error::{ApiError, ApiResult};

pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Arbitrary but fixed key for `pg_advisory_lock` around migrations, so that several tether
/// processes starting together migrate once.
const MIGRATION_LOCK_KEY: i64 = 0x7465_7468_6572; // "tether"

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

/// A database location, picked by URL scheme (never by trying backends in turn: a typo in a
/// PostgreSQL URL must not silently create an SQLite file of that name).
#[derive(Debug, Clone)]
pub enum DbUrl {
    Postgres(String),
    Sqlite(String),
}

impl DbUrl {
    /// `postgres://…`/`postgresql://…`, `sqlite://PATH`/`sqlite:PATH`, or a plain file path.
    /// Anything else that looks like a URL (`postgress://…`, `mysql://…`) is refused: taken as
    /// a path it would silently become an SQLite file named after the typo.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DbUrl::Postgres(url.to_string()));
        }
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            return Ok(DbUrl::Sqlite(path.to_string()));
        }
        if let Some((scheme, _)) = url.split_once("://") {
            anyhow::bail!(
                "unsupported database URL scheme '{scheme}://': use a postgres:// or postgresql:// \
                 URL, or an SQLite file path"
            );
        }
        if url.trim().is_empty() {
            anyhow::bail!(
                "the database URL is empty: use a postgres:// URL or an SQLite file path"
            );
        }
        Ok(DbUrl::Sqlite(url.to_string()))
    }

    pub fn backend(&self) -> Backend {
        match self {
            DbUrl::Postgres(_) => Backend::Postgres,
            DbUrl::Sqlite(_) => Backend::Sqlite,
        }
    }
}

/// r2d2 manager that builds the right variant and applies per-connection settings.
pub struct ConnectionManager {
    url: DbUrl,
}

impl ManageConnection for ConnectionManager {
    type Connection = DbConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConnection, r2d2::Error> {
        match &self.url {
            DbUrl::Postgres(url) => PgConnection::establish(url)
                .map(DbConnection::Pg)
                .map_err(r2d2::Error::ConnectionError),
            DbUrl::Sqlite(path) => {
                configure_sqlite_library();
                let mut conn =
                    SqliteConnection::establish(path).map_err(r2d2::Error::ConnectionError)?;
                // Per connection: wait on locks instead of failing, WAL-friendly durability,
                // and foreign keys (off by default in SQLite). The page cache stays at SQLite's
                // default 2 MB: each of the pool's connections has its own, and the kernel's
                // page cache already keeps the file's hot pages for all of them.
                conn.batch_execute(
                    "PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL; \
                     PRAGMA foreign_keys = ON; PRAGMA cache_size = -2000;",
                )
                .map_err(r2d2::Error::QueryError)?;
                Ok(DbConnection::Sqlite(conn))
            }
        }
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), r2d2::Error> {
        conn.batch_execute("SELECT 1")
            .map_err(r2d2::Error::QueryError)
    }

    /// A connection whose server went away (restart, failover) or that was left inside a
    /// transaction is dropped instead of going back into the pool; checked on return, so it
    /// costs no round trip (a ping on every checkout would).
    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        std::thread::panicking() || diesel::r2d2::R2D2Connection::is_broken(conn)
    }
}

#[derive(Debug, Clone)]
pub struct DbConfig {
    pub url: String,
    /// Connections for reads (SQLite) or for everything (PostgreSQL).
    pub pool_size: u32,
    /// How long a request may wait for a connection before it gets a 503.
    pub acquire_timeout: Duration,
}

impl DbConfig {
    pub fn new(url: impl Into<String>) -> Self {
        DbConfig {
            url: url.into(),
            pool_size: 8,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

struct Gate {
    pool: Pool<ConnectionManager>,
    permits: Arc<Semaphore>,
}

/// The shared database handle.
#[derive(Clone)]
pub struct Db {
    backend: Backend,
    read: Arc<Gate>,
    /// On SQLite a single write connection for the blocking (CLI, start-up) paths; request
    /// writes go to `sqlite_writer`. On PostgreSQL, the same gate as `read`.
    write: Arc<Gate>,
    /// SQLite only: the group-commit writer thread (see [`writer`]).
    sqlite_writer: Option<Arc<writer::SqliteWriter>>,
    acquire_timeout: Duration,
}

/// Process-wide SQLite settings, applied once before the first connection: multi-thread mode
/// (see inside), and SQLite's query-planner stability guarantee (`SQLITE_DBCONFIG_ENABLE_QPSG`)
/// for every connection this process opens, through an auto-extension (diesel does not expose
/// the raw handle).
///
/// Why: without it, a statement whose plan may depend on a bound value (diesel binds `LIMIT ?`
/// and `OFFSET ?`, so every `.first()`; and any value compared with an analyzed index under
/// STAT4) is marked expired each time a new value is bound, and the next step parses and plans
/// it again. Diesel's prepared-statement cache was thus defeated on nearly every query: a
/// quarter of the server's CPU on a create went to SQLite's parser. With QPSG a statement keeps
/// its plan, so cached statements are really reused.
pub fn configure_sqlite_library() {
    use std::sync::Once;
    static ONCE: Once = Once::new();
    unsafe extern "C" fn on_open(
        db: *mut libsqlite3_sys::sqlite3,
        _err: *mut *mut std::ffi::c_char,
        _api: *const libsqlite3_sys::sqlite3_api_routines,
    ) -> std::ffi::c_int {
        // SAFETY: SQLite calls this with the connection it is opening; the variadic arguments
        // for this option are (int on, int *previous), previous may be null.
        unsafe {
            libsqlite3_sys::sqlite3_db_config(
                db,
                libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
                1 as std::ffi::c_int,
                std::ptr::null_mut::<std::ffi::c_int>(),
            );
        }
        libsqlite3_sys::SQLITE_OK
    }
    ONCE.call_once(|| {
        // Multi-thread mode instead of serialized: no mutex around every call on a connection
        // or statement (~4% of a list's CPU). Sound here because diesel's connections need
        // `&mut` for every use, so no two threads ever touch one connection at once. It must
        // come before SQLite initializes (the auto-extension below initializes it); if SQLite
        // is already initialized the call fails harmlessly and the library stays serialized.
        // SAFETY: a configuration call with no pointer arguments.
        let rc =
            unsafe { libsqlite3_sys::sqlite3_config(libsqlite3_sys::SQLITE_CONFIG_MULTITHREAD) };
        if rc != libsqlite3_sys::SQLITE_OK {
            tracing::debug!(rc, "SQLite stays in serialized mode (already initialized)");
        }
        // SAFETY: registers a process-wide callback with the signature SQLite expects; it is
        // never unregistered and touches only the connection it is given.
        let rc = unsafe { libsqlite3_sys::sqlite3_auto_extension(Some(on_open)) };
        if rc != libsqlite3_sys::SQLITE_OK {
            tracing::warn!(rc, "could not enable SQLite's query-planner stability");
        }
    });
}

/// The database holds password hashes, role data and sealed credentials: its file is the
/// owner's alone (0600), created so or tightened if it was not. SQLite creates the `-wal` and
/// `-shm` files with the database file's permissions.
fn restrict_to_owner(path: &std::path::Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        if path.as_os_str().is_empty() || path.to_string_lossy().starts_with(':') {
            return Ok(()); // in-memory
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))?;
            tracing::info!(path = %path.display(), "database file was readable by others; now 0600");
        }
        for suffix in ["-wal", "-shm"] {
            let side = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
            if let Ok(meta) = std::fs::metadata(&side) {
                let mode = meta.permissions().mode();
                if mode & 0o077 != 0 {
                    std::fs::set_permissions(&side, std::fs::Permissions::from_mode(mode & 0o700))?;
                }
            }
        }
    }
    Ok(())
}

fn build_pool(
    url: &DbUrl,
    size: u32,
    timeout: Duration,
) -> anyhow::Result<Pool<ConnectionManager>> {
    Ok(Pool::builder()
        .max_size(size)
        .min_idle(Some(1))
        .connection_timeout(timeout)
        .test_on_check_out(false)
        .build(ConnectionManager { url: url.clone() })?)
}

impl Db {
    /// Opens the pools and runs pending migrations.
    pub fn connect(config: &DbConfig) -> anyhow::Result<Db> {
        let url = DbUrl::parse(&config.url)?;
        let db = match &url {
            DbUrl::Sqlite(path) => {
                // Before the first connection of this process: library-wide settings.
                configure_sqlite_library();
                if let Some(parent) = std::path::Path::new(path).parent() {
                    if !parent.as_os_str().is_empty() {
                        std::fs::create_dir_all(parent)?;
                    }
                }
                restrict_to_owner(std::path::Path::new(path))?;
                // WAL is a property of the database file; set it once before the pools open.
                let mut conn = SqliteConnection::establish(path)?;
                conn.batch_execute("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000;")?;
                drop(conn);
                let write = build_pool(&url, 1, config.acquire_timeout)?;
                let read = build_pool(&url, config.pool_size.max(1), config.acquire_timeout)?;
                let writer_conn = ConnectionManager { url: url.clone() }.connect()?;
                Db {
                    sqlite_writer: Some(Arc::new(writer::SqliteWriter::start(writer_conn)?)),
                    backend: Backend::Sqlite,
                    read: Arc::new(Gate {
                        permits: Arc::new(Semaphore::new(config.pool_size.max(1) as usize)),
                        pool: read,
                    }),
                    write: Arc::new(Gate {
                        permits: Arc::new(Semaphore::new(1)),
                        pool: write,
                    }),
                    acquire_timeout: config.acquire_timeout,
                }
            }
            DbUrl::Postgres(_) => {
                let pool = build_pool(&url, config.pool_size.max(1), config.acquire_timeout)?;
                let gate = Arc::new(Gate {
                    permits: Arc::new(Semaphore::new(config.pool_size.max(1) as usize)),
                    pool,
                });
                Db {
                    sqlite_writer: None,
                    backend: Backend::Postgres,
                    read: gate.clone(),
                    write: gate,
                    acquire_timeout: config.acquire_timeout,
                }
            }
        };
        let mut conn = db.write.pool.get()?;
        run_migrations(&mut conn)?;
        Ok(db)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// At shutdown: SQLite's writer finishes its queue and closes its connection (see
    /// [`writer::SqliteWriter::shutdown`]). Writes after this fail.
    pub fn shutdown(&self) {
        if let Some(writer) = &self.sqlite_writer {
            writer.shutdown();
        }
    }

    async fn run<F, T>(&self, gate: &Arc<Gate>, f: F) -> ApiResult<T>
    where
        F: FnOnce(&mut DbConnection) -> ApiResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let permit =
            tokio::time::timeout(self.acquire_timeout, gate.permits.clone().acquire_owned())
                .await
                .map_err(|_| ApiError::Busy)?
                .map_err(|_| ApiError::Busy)?;
        let pool = gate.pool.clone();
        actix_web::web::block(move || {
            let _permit = permit;
            let mut conn = pool.get().map_err(|e| {
                tracing::warn!(error = %e, "database connection unavailable");
                ApiError::Busy
            })?;
            f(&mut conn)
        })
        .await?
    }

    /// Runs `f` on a read connection (no transaction).
    pub async fn read<F, T>(&self, f: F) -> ApiResult<T>
    where
        F: FnOnce(&mut DbConnection) -> ApiResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let gate = self.read.clone();
        self.run(&gate, f).await
    }

    /// Runs `f` on a read connection inside a read-only transaction, so that all of its queries
    /// see one snapshot (a page and its total count agree under concurrent writes).
    pub async fn read_snapshot<F, T>(&self, f: F) -> ApiResult<T>
    where
        F: FnOnce(&mut DbConnection) -> ApiResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.read(move |conn| snapshot(conn, f)).await
    }

    /// Runs `f` as one write transaction: all of its writes commit, or none do.
    ///
    /// SQLite: on the group-commit writer thread, inside a savepoint of a batch transaction
    /// taken with `BEGIN IMMEDIATE` (the write lock up front, so a read-then-write cannot
    /// deadlock with another process); the result comes back after the batch commits.
    /// PostgreSQL: a transaction on a pooled connection.
    pub async fn write<F, T>(&self, f: F) -> ApiResult<T>
    where
        F: FnOnce(&mut DbConnection) -> ApiResult<T> + Send + 'static,
        T: Send + 'static,
    {
        if let Some(writer) = &self.sqlite_writer {
            return writer.write(f).await;
        }
        let gate = self.write.clone();
        self.run(&gate, move |conn| write_transaction(conn, f))
            .await
    }

    /// Blocking variant for CLI commands and start-up (not for request handlers).
    pub fn write_blocking<F, T>(&self, f: F) -> ApiResult<T>
    where
        F: FnOnce(&mut DbConnection) -> ApiResult<T>,
    {
        let mut conn = self.write.pool.get().map_err(|_| ApiError::Busy)?;
        write_transaction(&mut conn, f)
    }

    /// Blocking read for CLI commands.
    pub fn read_blocking<F, T>(&self, f: F) -> ApiResult<T>
    where
        F: FnOnce(&mut DbConnection) -> ApiResult<T>,
    {
        let mut conn = self.read.pool.get().map_err(|_| ApiError::Busy)?;
        f(&mut conn)
    }
}

fn write_transaction<F, T>(conn: &mut DbConnection, f: F) -> ApiResult<T>
where
    F: FnOnce(&mut DbConnection) -> ApiResult<T>,
{
    match conn {
        DbConnection::Sqlite(_) => {
            conn.batch_execute("BEGIN IMMEDIATE")?;
            match f(conn) {
                Ok(v) => match conn.batch_execute("COMMIT") {
                    Ok(()) => Ok(v),
                    Err(e) => {
                        let _ = conn.batch_execute("ROLLBACK");
                        Err(e.into())
                    }
                },
                Err(e) => {
                    let _ = conn.batch_execute("ROLLBACK");
                    Err(e)
                }
            }
        }
        DbConnection::Pg(_) => conn.transaction(f),
    }
}

/// Runs `f` in a read-only transaction (one snapshot on either backend). Begun and ended through
/// diesel's transaction manager, so a transaction that failed to end marks the connection
/// broken and the pool drops it instead of lending it out mid-transaction.
fn snapshot<F, T>(conn: &mut DbConnection, f: F) -> ApiResult<T>
where
    F: FnOnce(&mut DbConnection) -> ApiResult<T>,
{
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    match conn {
        DbConnection::Pg(pg) => AnsiTransactionManager::begin_transaction_sql(
            pg,
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        )?,
        // A deferred transaction takes its snapshot at its first read and never blocks the
        // writer (WAL).
        DbConnection::Sqlite(lite) => {
            AnsiTransactionManager::begin_transaction_sql(lite, "BEGIN DEFERRED")?
        }
    }
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
pub fn savepoint<F, T>(conn: &mut DbConnection, f: F) -> ApiResult<T>
where
    F: FnOnce(&mut DbConnection) -> ApiResult<T>,
{
    conn.batch_execute("SAVEPOINT tether_inner")?;
    match f(conn) {
        Ok(v) => {
            conn.batch_execute("RELEASE SAVEPOINT tether_inner")?;
            Ok(v)
        }
        Err(e) => {
            conn.batch_execute(
                "ROLLBACK TO SAVEPOINT tether_inner; RELEASE SAVEPOINT tether_inner",
            )?;
            Err(e)
        }
    }
}

/// Applies pending migrations; on PostgreSQL under an advisory lock so concurrent starts are safe.
pub fn run_migrations(conn: &mut DbConnection) -> anyhow::Result<()> {
    match conn {
        DbConnection::Sqlite(c) => {
            c.run_pending_migrations(SQLITE_MIGRATIONS)
                .map_err(|e| anyhow::anyhow!("migrations failed: {e}"))?;
        }
        DbConnection::Pg(c) => {
            c.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))?;
            let result = c
                .run_pending_migrations(POSTGRES_MIGRATIONS)
                .map(|_| ())
                .map_err(|e| anyhow::anyhow!("migrations failed: {e}"));
            c.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))?;
            result?;
        }
    }
    Ok(())
}

/// Now, as stored: naive UTC, microsecond precision (PostgreSQL's), so that a value read back
/// equals the value written on both backends.
pub fn now() -> chrono::NaiveDateTime {
    let t = chrono::Utc::now().naive_utc();
    use chrono::Timelike;
    t.with_nanosecond(t.nanosecond() / 1000 * 1000).unwrap_or(t)
}

/// Whether an error means the database cannot be reached or used right now (as opposed to a
/// query that is wrong): the connection was closed (server restart, failover, network), the
/// server is starting or stopping, or SQLite's lock wait ran out. Requests that meet one get a
/// 503; the pool drops the connection (see `has_broken`).
pub fn is_unavailable(err: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    const SIGNS: &[&str] = &[
        "terminating connection",
        "server closed the connection",
        "no connection to the server",
        "could not receive data from server",
        "could not send data to server",
        "connection to server",
        "the database system is",
        "SSL connection has been closed",
        "database is locked",
    ];
    match err {
        Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => true,
        Error::DatabaseError(_, info) => SIGNS.iter().any(|s| info.message().contains(s)),
        Error::BrokenTransactionManager => true,
        _ => false,
    }
}

/// A unique-index violation, as reported by either backend.
#[derive(Debug, Clone)]
pub struct UniqueViolation {
    pub constraint: Option<String>,
    pub message: String,
}

impl UniqueViolation {
    /// True if this violation is on `index` (PostgreSQL) / on exactly `columns` of `table` (SQLite).
    pub fn is(&self, index: &str, table: &str, columns: &[&str]) -> bool {
        if let Some(c) = &self.constraint {
            return c == index;
        }
        let expected = columns
            .iter()
            .map(|c| format!("{table}.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        self.message
            .strip_prefix("UNIQUE constraint failed: ")
            .is_some_and(|cols| cols == expected)
    }
}

/// Inspects a diesel error for a unique violation.
pub fn as_unique_violation(err: &diesel::result::Error) -> Option<UniqueViolation> {
    use diesel::result::{DatabaseErrorKind, Error};
    match err {
        Error::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => Some(UniqueViolation {
            constraint: info.constraint_name().map(str::to_string),
            message: info.message().to_string(),
        }),
        _ => None,
    }
}
