//! The figures the metrics read from the database on each scrape: bindings by last operation
//! (at most every 10 s), the job queue, and the pool.

use crate::app::AppState;
use crate::db::repo;
use crate::error::ApiResult;
use crate::jobs::queue;
use crate::metrics::DatabaseFigures;

/// Refreshes the scrape-time metrics. A database that does not answer leaves the last figures
/// and counts a scrape error: the metrics of a struggling server are still served.
pub async fn refresh(state: &AppState) {
    let metrics = &state.metrics;
    metrics.set_pool(state.db.pool_figures());
    let count_bindings = metrics.bindings_due();
    let now = state.clock.now();
    let read = state
        .db
        .read(move |conn| -> ApiResult<DatabaseFigures> {
            let bindings = if count_bindings {
                repo::stats::bindings_by_last_operation(conn)?
            } else {
                Vec::new()
            };
            let (jobs_queued, jobs_running) = queue::count_by_state(conn)?;
            let oldest_due = queue::next_due(conn)?
                .filter(|due| *due <= now)
                .and_then(|due| (now - due).to_std().ok())
                .unwrap_or_default();
            Ok(DatabaseFigures {
                bindings,
                jobs_queued,
                jobs_running,
                oldest_due,
            })
        })
        .await;
    match read {
        Ok(figures) => metrics.set_database(&figures, count_bindings),
        Err(e) => {
            tracing::debug!(error = %e.log_text(), "metrics: the database figures could not be read");
            metrics.scrape_failed();
        }
    }
}
