//! Service bindings.

use diesel::prelude::*;
use diesel::QueryResult;

use super::{optional, DbConnection, Filter, Loaded, PageRequest};
use crate::db::models::ServiceBinding;
use crate::db::schema::service_bindings::dsl as sb;
use crate::db::schema::{apps, service_instances};
use crate::operation::{LastOperation, OperationState, OperationType};

/// A binding with what rendering needs from its neighbours: whether its instance is
/// user-provided (for `service_instance_url`) and its app's space (for credential redaction).
#[derive(Debug, Clone, Queryable)]
pub struct BindingView {
    pub binding: ServiceBinding,
    pub user_provided: bool,
    pub space_guid: String,
}

/// Bindings joined with what a [`BindingView`] needs: their instance and their app.
macro_rules! with_neighbours {
    () => {
        sb::service_bindings
            .inner_join(
                service_instances::table.on(service_instances::guid.eq(sb::service_instance_guid)),
            )
            .inner_join(apps::table.on(apps::guid.eq(sb::app_guid)))
    };
}

/// The columns of a [`BindingView`], selected from [`with_neighbours!`] (then any extra ones,
/// flat: diesel does not load a `SelectBy` nested in a tuple).
macro_rules! view_columns {
    ($($extra:expr),*) => {
        (
            ServiceBinding::as_select(),
            service_instances::is_user_provided,
            apps::space_guid,
            $($extra,)*
        )
    };
}

/// The `q=` keys of binding lists: CC's three, then [`STATE_FILTER`].
pub const FILTERS: &[&str] = &["app_guid", "name", "service_instance_guid", STATE_FILTER];

/// tether's extension (CC refuses the key): bindings whose last operation is in one of the
/// given states, as the entity shows it (`:` or `IN`; the values are checked by the API). It
/// is what a dashboard asks ("is anything stuck or failed") across every page. No index serves
/// it: the filtered list scans, and the unfiltered one is not touched.
pub const STATE_FILTER: &str = "last_operation_state";

/// Where a list is rooted: everything, one app, or one instance (nested routes).
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    All,
    App(&'a str),
    Instance(&'a str),
}

macro_rules! apply_filters {
    ($q:expr, $filters:expr, $scope:expr) => {{
        let mut q = $q;
        for f in $filters {
            q = match f.key.as_str() {
                "app_guid" => crate::filter_text!(q, sb::app_guid, f),
                "name" => crate::filter_text!(q, sb::name, f),
                "service_instance_guid" => crate::filter_text!(q, sb::service_instance_guid, f),
                STATE_FILTER => {
                    // A row without a state is shown as `succeeded` (see the rendering).
                    let succeeded = OperationState::Succeeded.as_str();
                    if f.values.iter().any(|v| v == succeeded) {
                        q.filter(
                            sb::last_operation_state
                                .eq_any(f.values.clone())
                                .or(sb::last_operation_state.is_null()),
                        )
                    } else {
                        q.filter(sb::last_operation_state.eq_any(f.values.clone()))
                    }
                }
                _ => q,
            };
        }
        match $scope {
            Scope::All => q,
            Scope::App(app) => q.filter(sb::app_guid.eq(app)),
            Scope::Instance(si) => q.filter(sb::service_instance_guid.eq(si)),
        }
    }};
}

pub fn insert(conn: &mut DbConnection, binding: &ServiceBinding) -> QueryResult<()> {
    crate::db::native!(conn, |c| diesel::insert_into(sb::service_bindings)
        .values(binding)
        .execute(c))
    .map(|_| ())
}

/// Inserts the row unless a unique index already holds one of its keys; says whether it did.
/// One statement, no savepoint: the common case of a create, which callers follow up with
/// [`insert`] (to learn which rule refused it) only when this returns false.
pub fn insert_unless_taken(conn: &mut DbConnection, binding: &ServiceBinding) -> QueryResult<bool> {
    crate::db::native!(conn, |c| diesel::insert_into(sb::service_bindings)
        .values(binding)
        .on_conflict_do_nothing()
        .execute(c))
    .map(|inserted| inserted == 1)
}

/// Which of `candidates` the app's bindings already use as env-var prefixes (one probe of the
/// (app_guid, prefix) index for all of them).
pub fn taken_prefixes(
    conn: &mut DbConnection,
    app: &str,
    candidates: &[String],
) -> QueryResult<Vec<String>> {
    let taken: Vec<Option<String>> = crate::db::native!(conn, |c| sb::service_bindings
        .filter(sb::app_guid.eq(app))
        .filter(sb::prefix.eq_any(candidates))
        .select(sb::prefix)
        .load(c))?;
    Ok(taken.into_iter().flatten().collect())
}

pub fn find(conn: &mut DbConnection, guid: &str) -> QueryResult<Option<ServiceBinding>> {
    optional(crate::db::native!(conn, |c| sb::service_bindings
        .filter(sb::guid.eq(guid))
        .select(ServiceBinding::as_select())
        .first(c)))
}

pub fn find_by_app_and_instance(
    conn: &mut DbConnection,
    app: &str,
    instance: &str,
) -> QueryResult<Option<ServiceBinding>> {
    optional(crate::db::native!(conn, |c| sb::service_bindings
        .filter(sb::app_guid.eq(app))
        .filter(sb::service_instance_guid.eq(instance))
        .select(ServiceBinding::as_select())
        .first(c)))
}

pub fn find_by_app_and_name(
    conn: &mut DbConnection,
    app: &str,
    name: &str,
) -> QueryResult<Option<ServiceBinding>> {
    optional(crate::db::native!(conn, |c| sb::service_bindings
        .filter(sb::app_guid.eq(app))
        .filter(sb::name.eq(name))
        .select(ServiceBinding::as_select())
        .first(c)))
}

pub fn find_view(conn: &mut DbConnection, guid: &str) -> QueryResult<Option<BindingView>> {
    optional(crate::db::native!(conn, |c| with_neighbours!()
        .filter(sb::guid.eq(guid))
        .select(view_columns!())
        .first(c)))
}

/// Ids per block of `service_binding_blocks` (`id >> 12`).
const BLOCK_SHIFT: u32 = 12;

/// Where an unfiltered page starts, found from the block counts instead of a scan: the total,
/// and the id of the page's first row (`None`: the page is past the end).
fn locate_unfiltered_page(
    conn: &mut DbConnection,
    page: &PageRequest,
) -> QueryResult<(i64, Option<i64>)> {
    let counts = block_counts(conn)?;
    let total: i64 = counts.iter().map(|(_, n)| n).sum();
    let offset = page.offset();
    if offset >= total {
        return Ok((total, None));
    }
    // Descending order: the k-th row from the end is the (total - 1 - k)-th from the start.
    let rank = if page.descending {
        total - 1 - offset
    } else {
        offset
    };
    let mut before = 0i64;
    for (block, n) in counts {
        if rank < before + n {
            let first_id = block << BLOCK_SHIFT;
            let start: Option<i64> = optional(crate::db::native!(conn, |c| sb::service_bindings
                .filter(sb::id.ge(first_id))
                .order(sb::id.asc())
                .select(sb::id)
                .offset(rank - before)
                .first(c)))?;
            return Ok((total, start));
        }
        before += n;
    }
    Ok((total, None))
}

/// The non-empty blocks and their counts, in block order (each the sum of its shards).
fn block_counts(conn: &mut DbConnection) -> QueryResult<Vec<(i64, i64)>> {
    use crate::db::schema::service_binding_blocks::dsl as blocks;
    use diesel::dsl::sql;
    use diesel::sql_types::BigInt;
    let sums: Vec<(i64, i64)> = crate::db::native!(conn, |c| blocks::service_binding_blocks
        .group_by(blocks::block)
        .order(blocks::block.asc())
        .select((blocks::block, sql::<BigInt>("CAST(SUM(n) AS BIGINT)")))
        .load(c))?;
    Ok(sums.into_iter().filter(|(_, n)| *n > 0).collect())
}

/// Folds each block's shards into shard 0, so that readers sum about one row per block
/// (PostgreSQL; SQLite counts in shard 0 only). One statement: the moved counts and the shard
/// rows they leave commit together.
pub fn compact_block_counts(conn: &mut DbConnection) -> QueryResult<usize> {
    match conn {
        DbConnection::Pg(c) => diesel::sql_query(
            "WITH moved AS (DELETE FROM service_binding_blocks WHERE shard <> 0 \
               RETURNING block, n) \
             INSERT INTO service_binding_blocks (block, shard, n) \
               SELECT block, 0, SUM(n)::BIGINT FROM moved GROUP BY block \
             ON CONFLICT (block, shard) DO UPDATE \
               SET n = service_binding_blocks.n + EXCLUDED.n",
        )
        .execute(c),
        DbConnection::Sqlite(_) => Ok(0),
    }
}

/// Whether [`list`] answers this request with one statement (so it needs no read transaction
/// for its total and page to agree): on PostgreSQL, the first page of the whole table for a
/// caller who sees every binding (the page the cf CLI and dashboards ask for). It saves four
/// round trips (BEGIN, the block counts, the page start, COMMIT); on SQLite, where a round trip
/// is a function call, the statement (its total a SQL literal, which diesel does not cache as
/// a prepared statement) measured slower than the two it replaces, so SQLite keeps them.
pub fn lists_in_one_statement(
    backend: crate::db::Backend,
    filters: &[Filter],
    scope: Scope<'_>,
    sees_everything: bool,
    page: &PageRequest,
) -> bool {
    backend == crate::db::Backend::Postgres
        && filters.is_empty()
        && matches!(scope, Scope::All)
        && sees_everything
        && page.offset() == 0
}

pub fn list(
    conn: &mut DbConnection,
    filters: &[Filter],
    scope: Scope<'_>,
    visible_spaces: Option<&[String]>,
    page: &PageRequest,
) -> QueryResult<Loaded<BindingView>> {
    if lists_in_one_statement(
        conn.backend(),
        filters,
        scope,
        visible_spaces.is_none(),
        page,
    ) {
        return first_page_of_all(conn, page);
    }
    if filters.is_empty() && matches!(scope, Scope::All) && visible_spaces.is_none() {
        return list_unfiltered(conn, page);
    }
    // Boxed for the concrete backend (see `db::native!`): the body is compiled per backend.
    crate::db::native!(conn, |c| {
        let mut count_q = apply_filters!(sb::service_bindings.into_boxed(), filters, scope);
        if let Some(v) = visible_spaces {
            let visible_apps = apps::table
                .filter(apps::space_guid.eq_any(v))
                .select(apps::guid);
            count_q = count_q.filter(sb::app_guid.eq_any(visible_apps));
        }
        let total: i64 = count_q.count().get_result(c)?;
        if total == 0 || page.offset() >= total {
            return Ok(Loaded {
                total,
                rows: Vec::new(),
            });
        }
        let mut q = apply_filters!(with_neighbours!().into_boxed(), filters, scope);
        if let Some(v) = visible_spaces {
            q = q.filter(apps::space_guid.eq_any(v));
        }
        let q = if page.descending {
            q.order(sb::id.desc())
        } else {
            q.order(sb::id.asc())
        };
        let rows = q
            .limit(page.per_page)
            .offset(page.offset())
            .select(view_columns!())
            .load(c)?;
        Ok(Loaded { total, rows })
    })
}

/// The first page of the whole table and its total (the sum of the block counts, as a scalar
/// subquery) in one statement: one round trip, one snapshot, no transaction around it. No row
/// means an empty table, so a total of 0.
fn first_page_of_all(
    conn: &mut DbConnection,
    page: &PageRequest,
) -> QueryResult<Loaded<BindingView>> {
    use diesel::dsl::sql;
    use diesel::sql_types::BigInt;
    // `block >= 0` holds for every row (ids are positive); it lets the planner read the
    // counts through the primary key. Without it the sum scans the table, which a burst of
    // inserts in one transaction leaves full of dead versions of the shard rows: at 1M
    // bindings seeded 10,000 per transaction, 3,446 pages for 245 live rows, 11-16 ms per
    // page; through the key 15 pages, 0.19 ms (EXPLAIN ANALYZE, bench/RESULTS.md).
    const TOTAL: &str = "(SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) \
                         FROM service_binding_blocks WHERE block >= 0)";
    macro_rules! rows {
        ($c:ident, $order:expr) => {
            with_neighbours!()
                .order($order)
                .limit(page.per_page)
                .select(view_columns!(sql::<BigInt>(TOTAL)))
                .load::<(ServiceBinding, bool, String, i64)>($c)
        };
    }
    let loaded = if page.descending {
        crate::db::native!(conn, |c| rows!(c, sb::id.desc()))?
    } else {
        crate::db::native!(conn, |c| rows!(c, sb::id.asc()))?
    };
    let total = loaded.first().map_or(0, |(.., total)| *total);
    Ok(Loaded {
        total,
        rows: loaded
            .into_iter()
            .map(|(binding, user_provided, space_guid, _)| BindingView {
                binding,
                user_provided,
                space_guid,
            })
            .collect(),
    })
}

/// The whole table (an admin's plain list): total and page start from the block counts, then
/// an index range from the start id, so page 20,000 costs what page 1 does.
fn list_unfiltered(
    conn: &mut DbConnection,
    page: &PageRequest,
) -> QueryResult<Loaded<BindingView>> {
    let (total, start) = locate_unfiltered_page(conn, page)?;
    let Some(start) = start else {
        return Ok(Loaded {
            total,
            rows: Vec::new(),
        });
    };
    // Not boxed: a static query shape runs on the concrete connection (see `db::native!`).
    macro_rules! rows {
        ($c:ident, $from:expr, $order:expr) => {
            with_neighbours!()
                .filter($from)
                .order($order)
                .limit(page.per_page)
                .select(view_columns!())
                .load($c)
        };
    }
    let rows = if page.descending {
        crate::db::native!(conn, |c| rows!(c, sb::id.le(start), sb::id.desc()))?
    } else {
        crate::db::native!(conn, |c| rows!(c, sb::id.ge(start), sb::id.asc()))?
    };
    Ok(Loaded { total, rows })
}

/// All bindings of an app (for VCAP_SERVICES and unbind-all).
pub fn for_app(conn: &mut DbConnection, app: &str) -> QueryResult<Vec<ServiceBinding>> {
    sb::service_bindings
        .filter(sb::app_guid.eq(app))
        .order(sb::id.asc())
        .select(ServiceBinding::as_select())
        .load(conn)
}

/// Whether one of the app's bindings uses `prefix` (a probe of the unique index on
/// (app_guid, prefix); the app's other bindings are not read).
pub fn prefix_taken(conn: &mut DbConnection, app: &str, prefix: &str) -> QueryResult<bool> {
    crate::db::native!(conn, |c| diesel::select(diesel::dsl::exists(
        sb::service_bindings
            .filter(sb::app_guid.eq(app))
            .filter(sb::prefix.eq(prefix)),
    ))
    .get_result(c))
}

pub fn count_for_instance(conn: &mut DbConnection, instance: &str) -> QueryResult<i64> {
    sb::service_bindings
        .filter(sb::service_instance_guid.eq(instance))
        .count()
        .get_result(conn)
}

pub fn count_using_key(conn: &mut DbConnection, key: &str) -> QueryResult<i64> {
    sb::service_bindings
        .filter(sb::service_key_guid.eq(key))
        .count()
        .get_result(conn)
}

/// Bindings other than `except` that use the broker binding `root`'s credential (`root` itself
/// included while it exists).
pub fn count_sharing_credential(
    conn: &mut DbConnection,
    root: &str,
    except: &str,
) -> QueryResult<i64> {
    sb::service_bindings
        .filter(sb::guid.eq(root).or(sb::credential_binding_guid.eq(root)))
        .filter(sb::guid.ne(except))
        .count()
        .get_result(conn)
}

/// The bindings of `space`'s managed instances whose credential (their own, from the broker)
/// an app other than `app` created and `app` does not use: Code Engine's "existing secret"
/// choice.
pub fn credentials_offered_to(
    conn: &mut DbConnection,
    app: &str,
    space: &str,
) -> QueryResult<Vec<ServiceBinding>> {
    // Loaded first: diesel does not nest a query of a table inside a query of the same table.
    let used: Vec<String> = sb::service_bindings
        .filter(sb::app_guid.eq(app))
        .filter(sb::credential_binding_guid.is_not_null())
        .select(sb::credential_binding_guid.assume_not_null())
        .load(conn)?;
    let managed_in_space = service_instances::table
        .filter(service_instances::space_guid.eq(space))
        .filter(service_instances::is_user_provided.eq(false))
        .select(service_instances::guid);
    sb::service_bindings
        .filter(sb::service_instance_guid.eq_any(managed_in_space))
        .filter(sb::app_guid.ne(app))
        .filter(sb::service_key_guid.is_null())
        .filter(sb::credential_binding_guid.is_null())
        .filter(sb::last_operation_type.eq("create"))
        .filter(sb::last_operation_state.eq("succeeded"))
        .filter(sb::guid.ne_all(used))
        .order(sb::id.asc())
        .select(ServiceBinding::as_select())
        .load(conn)
}

pub fn count_for_app(conn: &mut DbConnection, app: &str) -> QueryResult<i64> {
    sb::service_bindings
        .filter(sb::app_guid.eq(app))
        .count()
        .get_result(conn)
}

/// Stores what the broker returned and marks the create (or fetch) succeeded.
pub fn complete_create(
    conn: &mut DbConnection,
    guid: &str,
    credentials: &str,
    syslog_drain_url: Option<&str>,
    volume_mounts: &str,
    description: Option<&str>,
) -> QueryResult<usize> {
    let now = crate::db::now();
    crate::db::native!(conn, |c| diesel::update(
        sb::service_bindings.filter(sb::guid.eq(guid))
    )
    .set((
        sb::credentials.eq(credentials),
        sb::syslog_drain_url.eq(syslog_drain_url),
        sb::volume_mounts.eq(volume_mounts),
        sb::last_operation_type.eq(OperationType::Create.as_str()),
        sb::last_operation_state.eq(OperationState::Succeeded.as_str()),
        sb::last_operation_description.eq(description),
        sb::broker_operation.eq(None::<String>),
        sb::last_operation_updated_at.eq(now),
        sb::updated_at.eq(now),
    ))
    .execute(c))
}

/// Records a new operation on a binding (type and state, description, broker operation id).
pub fn set_operation(
    conn: &mut DbConnection,
    guid: &str,
    op: LastOperation,
    description: Option<&str>,
    broker_operation: Option<&str>,
) -> QueryResult<usize> {
    let now = crate::db::now();
    diesel::update(sb::service_bindings.filter(sb::guid.eq(guid)))
        .set((
            sb::last_operation_type.eq(op.op_type.as_str()),
            sb::last_operation_state.eq(op.state.as_str()),
            sb::last_operation_description.eq(description),
            sb::broker_operation.eq(broker_operation),
            sb::last_operation_created_at.eq(now),
            sb::last_operation_updated_at.eq(now),
            sb::updated_at.eq(now),
        ))
        .execute(conn)
}

/// Starts a delete unless another delete is already running. Returns rows changed (0: busy).
pub fn claim_for_delete(conn: &mut DbConnection, guid: &str) -> QueryResult<usize> {
    let now = crate::db::now();
    crate::db::native!(conn, |c| diesel::update(
        sb::service_bindings.filter(sb::guid.eq(guid)).filter(
            sb::last_operation_type
                .ne(OperationType::Delete.as_str())
                .or(sb::last_operation_state.ne(OperationState::InProgress.as_str()))
                .or(sb::last_operation_type.is_null())
                .or(sb::last_operation_state.is_null()),
        ),
    )
    .set((
        sb::last_operation_type.eq(OperationType::Delete.as_str()),
        sb::last_operation_state.eq(OperationState::InProgress.as_str()),
        sb::last_operation_description.eq(None::<String>),
        sb::broker_operation.eq(None::<String>),
        sb::last_operation_created_at.eq(now),
        sb::last_operation_updated_at.eq(now),
        sb::updated_at.eq(now),
    ))
    .execute(c))
}

/// Updates only the description of the running operation (polling progress).
pub fn set_operation_description(
    conn: &mut DbConnection,
    guid: &str,
    description: Option<&str>,
) -> QueryResult<usize> {
    let now = crate::db::now();
    diesel::update(sb::service_bindings.filter(sb::guid.eq(guid)))
        .set((
            sb::last_operation_description.eq(description),
            sb::last_operation_updated_at.eq(now),
        ))
        .execute(conn)
}

/// Bindings whose operation has been `in progress` since before `cutoff` (at most `limit`).
pub fn stale_in_progress(
    conn: &mut DbConnection,
    cutoff: chrono::NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<ServiceBinding>> {
    sb::service_bindings
        .filter(sb::last_operation_state.eq(OperationState::InProgress.as_str()))
        .filter(sb::last_operation_updated_at.lt(cutoff))
        .select(ServiceBinding::as_select())
        .limit(limit)
        .load(conn)
}

pub fn delete(conn: &mut DbConnection, guid: &str) -> QueryResult<usize> {
    crate::db::native!(conn, |c| diesel::delete(
        sb::service_bindings.filter(sb::guid.eq(guid))
    )
    .execute(c))
}
