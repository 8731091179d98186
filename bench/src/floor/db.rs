//! The floor's storage: tether's connection manager and schema, static diesel queries on the
//! concrete connection (as tether's hot paths run them), run on actix's blocking pool.

use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::connection::SimpleConnection;
use diesel::dsl::sql;
use diesel::r2d2::{ManageConnection, Pool};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::BigInt;
use diesel::{ExpressionMethods, OptionalExtension, QueryDsl, QueryResult, Queryable, RunQueryDsl};
use tether::db::schema::service_binding_blocks;
use tether::db::schema::service_bindings::dsl as sb;
use tether::db::{ConnectionManager, DbConnection, DbUrl};

/// The columns a rendered binding needs, in [`Row`]'s order.
macro_rules! columns {
    () => {
        (
            sb::id,
            sb::guid,
            sb::app_guid,
            sb::service_instance_guid,
            sb::credentials,
            sb::syslog_drain_url,
            sb::volume_mounts,
            sb::name,
            sb::last_operation_type,
            sb::last_operation_state,
            sb::last_operation_description,
            sb::last_operation_created_at,
            sb::last_operation_updated_at,
            sb::created_at,
            sb::updated_at,
        )
    };
}

#[derive(Queryable, Debug, Clone)]
pub struct Row {
    pub id: i64,
    pub guid: String,
    pub app_guid: String,
    pub service_instance_guid: String,
    pub credentials: String,
    pub syslog_drain_url: Option<String>,
    pub volume_mounts: String,
    pub name: Option<String>,
    pub last_operation_type: Option<String>,
    pub last_operation_state: Option<String>,
    pub last_operation_description: Option<String>,
    pub last_operation_created_at: Option<NaiveDateTime>,
    pub last_operation_updated_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl Row {
    /// A create in progress (not stored yet).
    pub fn new(guid: &str, app_guid: String, service_instance_guid: String) -> Row {
        let now = tether::db::now();
        Row {
            id: 0,
            guid: guid.to_string(),
            app_guid,
            service_instance_guid,
            credentials: "{}".into(),
            syslog_drain_url: None,
            volume_mounts: "[]".into(),
            name: None,
            last_operation_type: Some("create".into()),
            last_operation_state: Some("in progress".into()),
            last_operation_description: None,
            last_operation_created_at: Some(now),
            last_operation_updated_at: Some(now),
            created_at: now,
            updated_at: now,
        }
    }

    fn finish(&mut self, credentials: String) {
        let now = tether::db::now();
        self.credentials = credentials;
        self.last_operation_state = Some("succeeded".into());
        self.last_operation_updated_at = Some(now);
        self.updated_at = now;
    }
}

pub enum WriteError {
    /// A unique index refused the row (the app is already bound to the instance).
    Taken,
    Other(String),
}

impl From<String> for WriteError {
    fn from(e: String) -> Self {
        WriteError::Other(e)
    }
}

impl From<DieselError> for WriteError {
    fn from(e: DieselError) -> Self {
        match e {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => WriteError::Taken,
            other => WriteError::Other(other.to_string()),
        }
    }
}

type DbPool = Pool<ConnectionManager>;

pub struct FloorDb {
    reads: DbPool,
    /// SQLite: its own pool of one connection (one writer); PostgreSQL: the same pool.
    writes: DbPool,
    sqlite: bool,
}

fn build_pool(url: &DbUrl, size: u32) -> anyhow::Result<DbPool> {
    Ok(Pool::builder()
        .max_size(size)
        .min_idle(Some(1))
        .connection_timeout(Duration::from_secs(5))
        .test_on_check_out(false)
        .build(ConnectionManager::new(url.clone()))?)
}

impl FloorDb {
    /// Opens the pools with tether's connection settings, after tether's migrations (a no-op
    /// on a database tether has migrated) and, on SQLite, WAL mode.
    pub fn open(url: &str, size: u32) -> anyhow::Result<FloorDb> {
        let url = DbUrl::parse(url)?;
        let sqlite = matches!(url, DbUrl::Sqlite(_));
        let mut first = ConnectionManager::new(url.clone()).connect()?;
        if sqlite {
            first.batch_execute("PRAGMA journal_mode = WAL")?;
        }
        tether::db::run_migrations(&mut first)?;
        drop(first);
        let reads = build_pool(&url, size.max(1))?;
        let writes = if sqlite {
            build_pool(&url, 1)?
        } else {
            reads.clone()
        };
        Ok(FloorDb {
            reads,
            writes,
            sqlite,
        })
    }

    async fn run<T, E, F>(pool: &DbPool, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<String> + Send + 'static,
    {
        let pool = pool.clone();
        actix_web::web::block(move || {
            let mut conn = pool.get().map_err(|e| E::from(e.to_string()))?;
            f(&mut conn)
        })
        .await
        .map_err(|e| E::from(e.to_string()))?
    }

    /// One write: on SQLite in a `BEGIN IMMEDIATE` transaction on the writer connection, on
    /// PostgreSQL one autocommit statement.
    async fn write<T, F>(&self, f: F) -> Result<T, WriteError>
    where
        F: FnOnce(&mut DbConnection) -> QueryResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let sqlite = self.sqlite;
        Self::run(&self.writes, move |conn| {
            if !sqlite {
                return f(conn).map_err(WriteError::from);
            }
            conn.batch_execute("BEGIN IMMEDIATE")?;
            match f(conn) {
                Ok(v) => {
                    conn.batch_execute("COMMIT")?;
                    Ok(v)
                }
                Err(e) => {
                    let _ = conn.batch_execute("ROLLBACK");
                    Err(e.into())
                }
            }
        })
        .await
    }

    /// The first write of a create: the row, `in progress`, under the unique indexes.
    pub async fn reserve(
        &self,
        guid: String,
        app_guid: String,
        instance_guid: String,
    ) -> Result<Row, WriteError> {
        let mut row = Row::new(&guid, app_guid, instance_guid);
        self.write(move |conn| {
            row.id = insert(conn, &row)?;
            Ok(row)
        })
        .await
    }

    /// The second write: the broker's credentials, and the create succeeded.
    pub async fn complete(&self, mut row: Row, credentials: String) -> Result<Row, WriteError> {
        row.finish(credentials);
        self.write(move |conn| {
            native!(conn, |c| diesel::update(
                sb::service_bindings.filter(sb::id.eq(row.id))
            )
            .set((
                sb::credentials.eq(&row.credentials),
                sb::last_operation_state.eq(&row.last_operation_state),
                sb::last_operation_updated_at.eq(row.last_operation_updated_at),
                sb::updated_at.eq(row.updated_at),
            ))
            .execute(c))?;
            Ok(row)
        })
        .await
    }

    /// The one-write create: the finished row.
    pub async fn insert_finished(
        &self,
        mut row: Row,
        credentials: String,
    ) -> Result<Row, WriteError> {
        row.finish(credentials);
        self.write(move |conn| {
            row.id = insert(conn, &row)?;
            Ok(row)
        })
        .await
    }

    /// Undoes a reservation whose broker call failed.
    pub async fn remove(&self, id: i64) -> Result<(), WriteError> {
        self.write(move |conn| {
            native!(conn, |c| diesel::delete(
                sb::service_bindings.filter(sb::id.eq(id))
            )
            .execute(c))
            .map(drop)
        })
        .await
    }

    pub async fn get(&self, guid: String) -> Result<Option<Row>, String> {
        Self::run(&self.reads, move |conn| {
            native!(conn, |c| sb::service_bindings
                .filter(sb::guid.eq(&guid))
                .select(columns!())
                .first::<Row>(c)
                .optional())
            .map_err(|e| e.to_string())
        })
        .await
    }

    /// Page `page` of `per_page` bindings by id (of one app's, with `app`) and the total, in
    /// one read snapshot.
    pub async fn page(
        &self,
        app: Option<String>,
        page: i64,
        per_page: i64,
    ) -> Result<(i64, Vec<Row>), String> {
        let begin = if self.sqlite {
            "BEGIN DEFERRED"
        } else {
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
        };
        Self::run(&self.reads, move |conn| {
            conn.batch_execute(begin).map_err(|e| e.to_string())?;
            let result = count_and_rows(conn, app.as_deref(), (page - 1) * per_page, per_page);
            let _ = conn.batch_execute(if result.is_ok() { "COMMIT" } else { "ROLLBACK" });
            result.map_err(|e| e.to_string())
        })
        .await
    }
}

fn insert(conn: &mut DbConnection, row: &Row) -> QueryResult<i64> {
    native!(conn, |c| diesel::insert_into(sb::service_bindings)
        .values((
            sb::guid.eq(&row.guid),
            sb::app_guid.eq(&row.app_guid),
            sb::service_instance_guid.eq(&row.service_instance_guid),
            sb::credentials.eq(&row.credentials),
            sb::volume_mounts.eq(&row.volume_mounts),
            sb::last_operation_type.eq(&row.last_operation_type),
            sb::last_operation_state.eq(&row.last_operation_state),
            sb::last_operation_created_at.eq(row.last_operation_created_at),
            sb::last_operation_updated_at.eq(row.last_operation_updated_at),
            sb::created_at.eq(row.created_at),
            sb::updated_at.eq(row.updated_at),
        ))
        .returning(sb::id)
        .get_result(c))
}

fn count_and_rows(
    conn: &mut DbConnection,
    app: Option<&str>,
    offset: i64,
    limit: i64,
) -> QueryResult<(i64, Vec<Row>)> {
    native!(conn, |c| match app {
        Some(app) => Ok((
            sb::service_bindings
                .filter(sb::app_guid.eq(app))
                .count()
                .get_result(c)?,
            sb::service_bindings
                .filter(sb::app_guid.eq(app))
                .order(sb::id)
                .limit(limit)
                .offset(offset)
                .select(columns!())
                .load::<Row>(c)?,
        )),
        // The total from the per-block counts tether's triggers keep (the inserts pay for them).
        None => Ok((
            service_binding_blocks::table
                .select(sql::<BigInt>("CAST(COALESCE(SUM(n), 0) AS BIGINT)"))
                .get_result(c)?,
            sb::service_bindings
                .order(sb::id)
                .limit(limit)
                .offset(offset)
                .select(columns!())
                .load::<Row>(c)?,
        )),
    })
}
