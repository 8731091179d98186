//! Counts for the metrics, read on scrape.

use diesel::prelude::*;

use crate::db::schema::service_bindings::dsl as b;
use crate::db::DbConnection;

/// (last operation type, last operation state, how many bindings).
pub type LastOperationCount = (Option<String>, Option<String>, i64);

/// Bindings by last operation type and state (`None` where a binding has none): one grouped
/// scan of the bindings table, a handful of rows back.
pub fn bindings_by_last_operation(conn: &mut DbConnection) -> QueryResult<Vec<LastOperationCount>> {
    b::service_bindings
        .group_by((b::last_operation_type, b::last_operation_state))
        .select((
            b::last_operation_type,
            b::last_operation_state,
            diesel::dsl::count_star(),
        ))
        .load(conn)
}
