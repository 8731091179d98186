//! Opening the database: picking the backend by URL, the per-connection settings, the r2d2
//! pools, the SQLite file's permissions, and the embedded migrations.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{self, ManageConnection, Pool};
use diesel::{Connection, PgConnection, SqliteConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::{Backend, DbConnection};

pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Arbitrary but fixed key for `pg_advisory_lock` around migrations, so that several tether
/// processes starting together migrate once.
const MIGRATION_LOCK_KEY: i64 = 0x7465_7468_6572; // "tether"

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

impl ConnectionManager {
    pub fn new(url: DbUrl) -> Self {
        ConnectionManager { url }
    }
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

pub(super) fn build_pool(
    url: &DbUrl,
    size: u32,
    timeout: Duration,
    threads: &super::close::PoolThreads,
) -> anyhow::Result<Pool<ConnectionManager>> {
    Ok(Pool::builder()
        .max_size(size)
        // No connection is kept open in the background: r2d2 replenishes a minimum on its own
        // threads, and a one-shot CLI process exiting while such a connect to PostgreSQL is
        // under way crashes (SIGSEGV in the C libraries' exit handlers, ~1 run in 20).
        // Connections are still reused; migrations at start still fail fast on a bad URL.
        .min_idle(Some(0))
        .connection_timeout(timeout)
        .test_on_check_out(false)
        .thread_pool(threads.pool.clone())
        .build(ConnectionManager { url: url.clone() })?)
}

/// SQLite: the file (created 0600) in WAL mode, set once before any pool opens.
pub(super) fn prepare_sqlite_file(path: &str) -> anyhow::Result<()> {
    configure_sqlite_library();
    if let Some(parent) = std::path::Path::new(path).parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)?;
        }
    }
    restrict_to_owner(std::path::Path::new(path))?;
    let mut conn = SqliteConnection::establish(path)?;
    conn.batch_execute("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000;")?;
    Ok(())
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

/// Whether every embedded migration of the connection's backend has been applied (readiness:
/// a server must not serve a database an older binary left behind, or one being migrated).
pub fn migrations_applied(conn: &mut DbConnection) -> Result<bool, super::DbError> {
    let pending = match conn {
        DbConnection::Sqlite(c) => c.has_pending_migration(SQLITE_MIGRATIONS),
        DbConnection::Pg(c) => c.has_pending_migration(POSTGRES_MIGRATIONS),
    };
    pending
        .map(|p| !p)
        .map_err(|e| super::DbError::Busy(format!("cannot read the migrations table: {e}")))
}
