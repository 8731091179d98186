//! The command line of a benchmark run.

use std::path::PathBuf;

use anyhow::anyhow;
use clap::{Args, ValueEnum};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    Sqlite,
    Postgres,
    Both,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    /// The release `tether` binary (default: next to this binary, else target/release/tether).
    #[arg(long)]
    pub tether: Option<PathBuf>,
    /// Database backend(s) to benchmark.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub backend: BackendArg,
    /// A PostgreSQL server of your own (admin URL); the bench creates (and drops) its own
    /// databases there. Default: the bench starts a private PostgreSQL (initdb + pg_ctl from
    /// `pg_config --bindir`, as the `postgres` user, in a temp directory, on a free port).
    #[arg(long)]
    pub pg_url: Option<String>,
    /// The private PostgreSQL's `shared_buffers` (its other settings are fixed, see the report).
    #[arg(long, default_value = "256MB")]
    pub pg_shared_buffers: String,
    /// Statements of `pg_stat_statements` shown after each tether run (0: none).
    #[arg(long, default_value_t = 5)]
    pub pg_top: usize,
    /// Bindings seeded before the per-operation runs.
    #[arg(long, default_value_t = 10_000)]
    pub seed: u64,
    /// Concurrencies (requests in flight) of the per-operation runs.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 16, 64])]
    pub concurrency: Vec<usize>,
    /// Measured seconds per operation and concurrency.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Unmeasured seconds before each run.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Binding counts of the scaling runs (RSS, list page 1 and deepest page).
    #[arg(long, value_delimiter = ',', default_values_t = [1_000u64, 10_000, 100_000, 1_000_000])]
    pub sizes: Vec<u64>,
    /// Concurrencies of the scaling runs.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 16])]
    pub scale_concurrency: Vec<usize>,
    /// Measured seconds per scaling run.
    #[arg(long, default_value_t = 3.0)]
    pub scale_duration: f64,
    /// Operations to run (default: all but direct-put): direct-put, create, get, list,
    /// list-app, list-inline, create-async, delete.
    #[arg(long, value_delimiter = ',')]
    pub ops: Vec<String>,
    /// Skip the floor server (by default each tether run of create, get, list and list-app is
    /// followed by the same run against the floor, and the floor's one-write create runs too).
    #[arg(long)]
    pub no_floor: bool,
    /// Rounds of alternating tether and floor runs per operation and concurrency.
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    /// Skip the two-tether-processes run (PostgreSQL only).
    #[arg(long)]
    pub skip_multi: bool,
    /// Concurrency of the two-process run (split across the processes).
    #[arg(long, default_value_t = 64)]
    pub multi_concurrency: usize,
    /// Also measure the cost of metrics and the access log: create, get and list against a
    /// server with both on (TETHER_METRICS=on, TETHER_ACCESS_LOG=on) and one with both off,
    /// alternating.
    #[arg(long)]
    pub ops_overhead: bool,
    /// Concurrency of the ops-overhead runs.
    #[arg(long, default_value_t = 16)]
    pub overhead_concurrency: usize,
    /// Operations of the ops-overhead runs (create, get, list; all three when not given).
    #[arg(long, value_delimiter = ',')]
    pub overhead_ops: Vec<String>,
    /// Skip the per-operation runs.
    #[arg(long)]
    pub skip_ops: bool,
    /// Skip the scaling runs.
    #[arg(long)]
    pub skip_scale: bool,
    /// Tiny sizes and durations (CI: proves the bench works, measures nothing meaningful).
    #[arg(long)]
    pub quick: bool,
    /// Apps bindings are spread over (bindings per app = bindings / apps).
    #[arg(long, default_value_t = 1000)]
    pub apps: u64,
    /// First wait before the client GETs an async create's binding; doubles after each
    /// `in progress` answer, up to --async-poll-max-ms.
    #[arg(long, default_value_t = 1)]
    pub async_poll_ms: u64,
    /// Longest wait between the client's GETs of an async create's binding.
    #[arg(long, default_value_t = 50)]
    pub async_poll_max_ms: u64,
    /// Extra environment for `tether serve` (repeatable), e.g. `TETHER_DB_POOL_SIZE=4`.
    #[arg(long = "server-env", value_name = "KEY=VALUE")]
    pub server_env: Vec<String>,
    /// A command to run `tether` under (e.g. `valgrind --tool=callgrind`); split on spaces.
    #[arg(long)]
    pub server_wrapper: Option<String>,
    /// Record `perf` on the server during a run (repeatable): `OP:CONC` for tether's
    /// per-operation runs, `STAGE/OP:CONC` for another stage (floor, multi-1, multi-2,
    /// overhead-on, overhead-off), `scale/OP:CONC@SIZE` for the scaling runs (e.g. `create:64`,
    /// `floor/create:64`, `scale/list-deep:1@1000000`).
    #[arg(long = "perf", value_name = "SPEC")]
    pub perf: Vec<String>,
    /// Arguments for `perf record` (release builds have no frame pointers: DWARF call graphs).
    #[arg(
        long,
        default_value = "-F 499 --call-graph dwarf,16384",
        allow_hyphen_values = true
    )]
    pub perf_args: String,
    /// Where perf data files go.
    #[arg(long, default_value = "bench/out")]
    pub perf_dir: PathBuf,
}

impl RunArgs {
    pub fn apply_quick(&mut self) {
        if self.quick {
            self.seed = self.seed.min(1_000);
            self.duration = self.duration.min(0.5);
            self.warmup = self.warmup.min(0.2);
            self.sizes = vec![1_000, 5_000];
            self.scale_duration = self.scale_duration.min(0.5);
            self.rounds = self.rounds.min(1);
        }
    }

    pub fn backends(&self) -> Vec<Backend> {
        match self.backend {
            BackendArg::Sqlite => vec![Backend::Sqlite],
            BackendArg::Postgres => vec![Backend::Postgres],
            BackendArg::Both => vec![Backend::Sqlite, Backend::Postgres],
        }
    }

    pub fn tether_bin(&self) -> anyhow::Result<PathBuf> {
        if let Some(p) = &self.tether {
            return Ok(p.clone());
        }
        let mut candidates = Vec::new();
        if let Ok(exe) = std::env::current_exe() {
            if let Some(dir) = exe.parent() {
                candidates.push(dir.join("tether"));
            }
        }
        candidates.push(PathBuf::from("target/release/tether"));
        candidates
            .into_iter()
            .find(|p| p.is_file())
            .ok_or_else(|| anyhow!("no tether binary found: build it (cargo build --release --bin tether) or pass --tether"))
    }
}
