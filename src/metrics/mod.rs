//! Prometheus metrics (`GET /metrics`, text exposition format 0.0.4), with the
//! `prometheus-client` crate: the Prometheus project's own Rust client, a registry per
//! application state (no process-wide recorder, so tests can run several servers in one process
//! and read each one's numbers), typed label sets, and an encoder of the classic text format
//! that `promtool check metrics` and every Prometheus version read.
//!
//! What each part records and where it is recorded:
//! - HTTP requests by route template, method and status, and their latency (the access-log
//!   middleware, `api::access_log`);
//! - broker requests by broker, operation and outcome, and their latency (the broker client);
//! - job runs (the job runner); the database pool and the SQLite writer (`db`);
//! - on each scrape: bindings by last operation, the job queue, the pool's connections and the
//!   process (RSS, CPU, open fds, start time; [`process`]).

mod histogram;
mod process;

pub use histogram::AtomicHistogram;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Latency buckets of API requests, seconds (1 ms … 10 s).
const HTTP_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Latency buckets of broker requests, seconds (5 ms … 60 s, CC's broker timeout).
const BROKER_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0,
];

/// Writes per SQLite write transaction (1 … the writer's maximum batch, 128).
const BATCH_BUCKETS: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

/// Bindings by last operation are counted at most this often (a scrape in between reuses the
/// last count): the count reads the whole bindings table.
const BINDINGS_REFRESH: Duration = Duration::from_secs(10);

fn http_histogram() -> AtomicHistogram {
    AtomicHistogram::new(&HTTP_BUCKETS)
}

fn broker_histogram() -> AtomicHistogram {
    AtomicHistogram::new(&BROKER_BUCKETS)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The route template (`/v2/service_bindings/{guid}`), `unmatched` for unknown paths.
    pub route: String,
    pub method: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BrokerLabels {
    pub broker: String,
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BrokerOutcomeLabels {
    pub broker: String,
    pub operation: &'static str,
    /// `2xx`, `4xx`, `5xx`, `other_status`, `timeout` or `unreachable`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LastOperationLabels {
    /// `create`, `update`, `delete` or `none`.
    pub r#type: &'static str,
    /// `in_progress`, `succeeded`, `failed` or `none`.
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: &'static str,
}

/// HTTP request metrics.
#[derive(Clone, Debug)]
pub struct HttpMetrics {
    requests: Family<HttpLabels, Counter>,
    duration: Family<RouteLabels, AtomicHistogram, fn() -> AtomicHistogram>,
}

impl HttpMetrics {
    fn new() -> Self {
        HttpMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(http_histogram),
        }
    }

    /// One request that got its response.
    pub fn observe(&self, route: String, method: &'static str, status: u16, latency: Duration) {
        self.duration
            .get_or_create(&RouteLabels {
                route: route.clone(),
                method,
            })
            .observe(latency.as_secs_f64());
        self.requests
            .get_or_create(&HttpLabels {
                route,
                method,
                status,
            })
            .inc();
    }
}

/// Broker request metrics (owned by the broker client, registered here).
#[derive(Clone, Debug)]
pub struct BrokerMetrics {
    requests: Family<BrokerOutcomeLabels, Counter>,
    duration: Family<BrokerLabels, AtomicHistogram, fn() -> AtomicHistogram>,
}

impl Default for BrokerMetrics {
    fn default() -> Self {
        BrokerMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(broker_histogram),
        }
    }
}

impl BrokerMetrics {
    pub fn observe(
        &self,
        broker: &str,
        operation: &'static str,
        outcome: &'static str,
        latency: Duration,
    ) {
        self.duration
            .get_or_create(&BrokerLabels {
                broker: broker.to_string(),
                operation,
            })
            .observe(latency.as_secs_f64());
        self.requests
            .get_or_create(&BrokerOutcomeLabels {
                broker: broker.to_string(),
                operation,
                outcome,
            })
            .inc();
    }
}

/// Job runs by kind.
#[derive(Clone, Debug, Default)]
pub struct JobMetrics {
    pub started: Family<KindLabels, Counter>,
    pub succeeded: Family<KindLabels, Counter>,
    pub failed: Family<KindLabels, Counter>,
    pub retried: Family<KindLabels, Counter>,
    pub rescheduled: Family<KindLabels, Counter>,
}

impl JobMetrics {
    pub fn count(family: &Family<KindLabels, Counter>, kind: &str) {
        family
            .get_or_create(&KindLabels {
                kind: kind.to_string(),
            })
            .inc();
    }
}

/// The database's own counters (owned by `db::Db`, registered here).
#[derive(Clone, Debug)]
pub struct DbStats {
    /// Requests that found no connection free and had to wait.
    pub waits: Counter,
    /// Requests that waited the whole acquire timeout (they got a 503).
    pub acquire_timeouts: Counter,
    /// Writes per SQLite write transaction.
    pub batch_sizes: AtomicHistogram,
}

impl Default for DbStats {
    fn default() -> Self {
        DbStats {
            waits: Counter::default(),
            acquire_timeouts: Counter::default(),
            batch_sizes: AtomicHistogram::new(&BATCH_BUCKETS),
        }
    }
}

/// What the database holds, counted on scrape.
#[derive(Debug, Default)]
pub struct DatabaseFigures {
    /// (last operation type, state, bindings); `None` where a binding has none.
    pub bindings: Vec<crate::db::repo::stats::LastOperationCount>,
    /// Jobs queued (due or not) and running.
    pub jobs_queued: i64,
    pub jobs_running: i64,
    /// How long the oldest job that is due has been waiting (zero: none is).
    pub oldest_due: Duration,
}

/// The pool as it is at scrape time.
#[derive(Debug, Clone, Copy)]
pub struct PoolFigures {
    pub connections: u32,
    pub idle: u32,
    pub max: u32,
}

/// Every metric of one application state, and its registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub http: HttpMetrics,
    pub jobs: JobMetrics,
    bindings: Family<LastOperationLabels, Gauge>,
    jobs_queue: Family<StateLabels, Gauge>,
    oldest_due: Gauge<f64, std::sync::atomic::AtomicU64>,
    pool_in_use: Gauge,
    pool_idle: Gauge,
    pool_max: Gauge,
    scrape_errors: Counter,
    bindings_counted: Mutex<Option<Instant>>,
}

/// Registers metrics of one type, in the order given (the order `/metrics` lists them in).
fn register_all<M: prometheus_client::registry::Metric + Clone>(
    r: &mut Registry,
    metrics: &[(&str, &str, &M)],
) {
    for (name, help, metric) in metrics {
        r.register(*name, *help, (*metric).clone());
    }
}

impl Metrics {
    pub fn new(db: &DbStats, broker: &BrokerMetrics) -> Metrics {
        let mut m = Metrics {
            registry: Registry::default(),
            http: HttpMetrics::new(),
            jobs: JobMetrics::default(),
            bindings: Family::default(),
            jobs_queue: Family::default(),
            oldest_due: Gauge::default(),
            pool_in_use: Gauge::default(),
            pool_idle: Gauge::default(),
            pool_max: Gauge::default(),
            scrape_errors: Counter::default(),
            bindings_counted: Mutex::new(None),
        };
        m.register_requests(broker);
        m.register_state(db);
        m.registry
            .register_collector(Box::new(process::ProcessCollector::new()));
        m
    }

    fn register_requests(&mut self, broker: &BrokerMetrics) {
        let r = &mut self.registry;
        r.register(
            "tether_http_requests",
            "API requests answered, by route template, method and status",
            self.http.requests.clone(),
        );
        r.register(
            "tether_http_request_duration_seconds",
            "Time from a request's arrival to its response, by route template and method",
            self.http.duration.clone(),
        );
        r.register(
            "tether_broker_requests",
            "Requests to service brokers, by broker, operation and outcome",
            broker.requests.clone(),
        );
        r.register(
            "tether_broker_request_duration_seconds",
            "Time a broker took to answer (or to fail), by broker and operation",
            broker.duration.clone(),
        );
        let jobs = &self.jobs;
        register_all(
            r,
            &[
                (
                    "tether_jobs_started",
                    "Job runs started, by kind",
                    &jobs.started,
                ),
                (
                    "tether_jobs_succeeded",
                    "Job runs that finished their job, by kind",
                    &jobs.succeeded,
                ),
                (
                    "tether_jobs_failed",
                    "Job runs that failed for good, by kind",
                    &jobs.failed,
                ),
                (
                    "tether_jobs_retried",
                    "Job runs that failed and will be retried, by kind",
                    &jobs.retried,
                ),
                (
                    "tether_jobs_rescheduled",
                    "Job runs that will run again (a poll still in progress), by kind",
                    &jobs.rescheduled,
                ),
            ],
        );
    }

    fn register_state(&mut self, db: &DbStats) {
        let r = &mut self.registry;
        r.register(
            "tether_service_bindings",
            "Service bindings by last operation type and state (counted at most every 10 s)",
            self.bindings.clone(),
        );
        r.register(
            "tether_jobs_queue_depth",
            "Jobs not yet settled, by state (queued: waiting, due or not; running: leased)",
            self.jobs_queue.clone(),
        );
        r.register(
            "tether_jobs_oldest_due_age_seconds",
            "How long the oldest job that is due has been waiting to run (0: none is)",
            self.oldest_due.clone(),
        );
        register_all(
            r,
            &[
                (
                    "tether_db_pool_connections_in_use",
                    "Database connections lent out",
                    &self.pool_in_use,
                ),
                (
                    "tether_db_pool_connections_idle",
                    "Idle database connections",
                    &self.pool_idle,
                ),
                (
                    "tether_db_pool_connections_max",
                    "Size of the database pool",
                    &self.pool_max,
                ),
            ],
        );
        register_all(
            r,
            &[
                (
                    "tether_db_pool_waits",
                    "Database uses that found no connection free and waited",
                    &db.waits,
                ),
                (
                    "tether_db_pool_acquire_timeouts",
                    "Database uses that waited the whole acquire timeout (answered 503)",
                    &db.acquire_timeouts,
                ),
            ],
        );
        r.register(
            "tether_sqlite_write_batch_size",
            "Writes committed together in one SQLite write transaction",
            db.batch_sizes.clone(),
        );
        r.register(
            "tether_metrics_scrape_errors",
            "Scrapes whose database figures could not be read (the last ones are kept)",
            self.scrape_errors.clone(),
        );
    }

    /// Whether bindings are due to be counted again (and, if so, notes that they are now).
    pub fn bindings_due(&self) -> bool {
        let mut last = match self.bindings_counted.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if last.is_some_and(|t| t.elapsed() < BINDINGS_REFRESH) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    /// Sets the figures read from the database on this scrape.
    pub fn set_database(&self, figures: &DatabaseFigures, bindings_counted: bool) {
        if bindings_counted {
            self.set_bindings(&figures.bindings);
        }
        self.jobs_queue
            .get_or_create(&StateLabels { state: "queued" })
            .set(figures.jobs_queued);
        self.jobs_queue
            .get_or_create(&StateLabels { state: "running" })
            .set(figures.jobs_running);
        self.oldest_due.set(figures.oldest_due.as_secs_f64());
    }

    fn set_bindings(&self, rows: &[crate::db::repo::stats::LastOperationCount]) {
        use crate::operation::{OperationState, OperationType};
        let type_label = |t: &Option<String>| match t.as_deref().and_then(OperationType::parse) {
            Some(t) => t.as_str(),
            None => "none",
        };
        let state_label = |s: &Option<String>| match s.as_deref().and_then(OperationState::parse) {
            Some(OperationState::InProgress) => "in_progress",
            Some(OperationState::Succeeded) => "succeeded",
            Some(OperationState::Failed) => "failed",
            None => "none",
        };
        // Cleared first: a combination no binding has any more disappears instead of keeping
        // its last count.
        self.bindings.clear();
        for (t, s, n) in rows {
            let labels = LastOperationLabels {
                r#type: type_label(t),
                state: state_label(s),
            };
            self.bindings.get_or_create(&labels).inc_by(*n);
        }
    }

    pub fn set_pool(&self, pool: PoolFigures) {
        self.pool_in_use
            .set(i64::from(pool.connections.saturating_sub(pool.idle)));
        self.pool_idle.set(i64::from(pool.idle));
        self.pool_max.set(i64::from(pool.max));
    }

    pub fn scrape_failed(&self) {
        self.scrape_errors.inc();
    }

    /// The exposition, Prometheus text format 0.0.4.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::warn!(error = %e, "could not encode the metrics");
        }
        out
    }
}
