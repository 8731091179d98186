//! The storage layer's errors: what went wrong in the database, kept with its cause, for the
//! use cases to turn into their own (`ApiError`).

/// A database operation that did not complete.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No connection (or writer slot) came free in time, or the database cannot be reached
    /// right now: the caller may retry.
    #[error("database busy: {0}")]
    Busy(String),
    /// A statement failed.
    #[error("query failed: {0}")]
    Query(#[from] diesel::result::Error),
    /// The closure running the statements panicked; its transaction was rolled back.
    #[error("a database closure panicked: {0}")]
    Panicked(String),
}

impl DbError {
    /// The database is away or busy, as opposed to a statement that is wrong.
    pub fn is_unavailable(&self) -> bool {
        match self {
            DbError::Busy(_) => true,
            DbError::Query(e) => is_unavailable(e),
            DbError::Panicked(_) => false,
        }
    }

    /// A panic's message, from `catch_unwind`'s payload.
    pub fn panicked(payload: Box<dyn std::any::Any + Send>) -> Self {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        DbError::Panicked(what)
    }
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
