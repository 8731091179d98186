//! The Markdown report: what was measured, per backend, then the targets.

use crate::args::{Backend, RunArgs};
use crate::load::Step;
use crate::pg::Statement;
use crate::procstat::Mem;
use crate::targets;

#[derive(Debug, Clone)]
pub struct StartRow {
    pub what: String,
    pub first_200_ms: f64,
    pub reported_ms: Option<u64>,
    pub rss_kb: u64,
}

#[derive(Debug, Clone)]
pub struct SizeRow {
    pub size: u64,
    pub seed_secs: f64,
    pub after_seed: Mem,
    pub after_lists: Mem,
    pub db_note: String,
}

/// `pg_stat_statements` after one tether run.
pub struct TopStatements {
    pub label: String,
    pub statements: Vec<Statement>,
}

/// The database after the two-process runs.
#[derive(Debug, Clone)]
pub struct MultiCheck {
    /// 201s (and of them distinct guids).
    pub created: u64,
    pub created_distinct: u64,
    pub rows: u64,
    /// Seeded + created.
    pub expected_rows: u64,
    /// Created (201) but not in the database.
    pub missing: u64,
    pub duplicate_guids: u64,
    /// (app, instance) pairs with more than one row.
    pub duplicate_pairs: u64,
    /// Rows whose last operation is not `succeeded`.
    pub not_succeeded: u64,
}

impl MultiCheck {
    pub fn ok(&self) -> bool {
        self.missing == 0
            && self.duplicate_guids == 0
            && self.duplicate_pairs == 0
            && self.created == self.created_distinct
            && self.rows == self.expected_rows
    }
}

pub struct BackendReport {
    pub backend: Backend,
    pub starts: Vec<StartRow>,
    pub steps: Vec<Step>,
    pub sizes: Vec<SizeRow>,
    pub notes: Vec<String>,
    pub pg_top: Vec<TopStatements>,
    pub multi: Option<MultiCheck>,
}

impl BackendReport {
    pub fn new(backend: Backend) -> BackendReport {
        BackendReport {
            backend,
            starts: Vec::new(),
            steps: Vec::new(),
            sizes: Vec::new(),
            notes: Vec::new(),
            pg_top: Vec::new(),
            multi: None,
        }
    }

    pub fn stage<'a>(&'a self, stage: &'a str) -> impl Iterator<Item = &'a Step> + 'a {
        self.steps.iter().filter(move |s| s.stage == stage)
    }

    /// The runs of `op` at `conc` in `stage`, averaged over the rounds.
    pub fn agg(&self, stage: &str, op: &str, conc: usize) -> Option<Agg> {
        let runs: Vec<&Step> = self
            .stage(stage)
            .filter(|s| s.op == op && s.conc == conc)
            .collect();
        Agg::of(&runs)
    }

    pub fn scale(&self, op: &str, conc: usize, size: u64) -> Option<&Step> {
        self.stage("scale")
            .find(|s| s.op == op && s.conc == conc && s.size == size)
    }
}

/// Means over the rounds of one run (errors summed).
#[derive(Debug, Clone, Copy)]
pub struct Agg {
    pub rps: f64,
    pub p99: f64,
    pub server_cpu_us: f64,
    pub errors: u64,
    /// Of the last round.
    pub body_bytes: usize,
}

impl Agg {
    fn of(runs: &[&Step]) -> Option<Agg> {
        if runs.is_empty() {
            return None;
        }
        let n = runs.len() as f64;
        let mean = |f: fn(&Step) -> f64| runs.iter().map(|s| f(s)).sum::<f64>() / n;
        Some(Agg {
            rps: mean(|s| s.rps),
            p99: mean(|s| s.p99),
            server_cpu_us: mean(|s| s.server_cpu_us),
            errors: runs.iter().map(|s| s.errors).sum(),
            body_bytes: runs.last().map_or(0, |s| s.body_bytes),
        })
    }
}

/// The report being written.
pub struct Out(pub String);

impl Out {
    pub fn line(&mut self, s: impl AsRef<str>) {
        self.0.push_str(s.as_ref());
        self.0.push('\n');
    }

    pub fn blank(&mut self) {
        self.0.push('\n');
    }

    pub fn table(&mut self, head: &str, align: &str) {
        self.line(head);
        self.line(align);
    }
}

pub fn ms(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

pub fn us(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else {
        format!("{v:.0}")
    }
}

pub fn mb(kb: u64) -> String {
    if kb == 0 {
        "–".into()
    } else {
        format!("{:.1}", kb as f64 / 1024.0)
    }
}

pub fn op_label(op: &str) -> &str {
    match op {
        "direct-put" => "direct PUT to the broker",
        "create" => "sync create",
        "create-1w" => "sync create, one write (floor only)",
        "create-async" => "async create, to completion",
        "get" => "get",
        "list" => "list, page 1 of 50",
        "list-app" => "list, page 1 of 50, q=app_guid:",
        "list-inline" => "list, page 1 of 100, inline-relations-depth=2",
        "list-deep" => "list, deepest page of 50",
        "delete" => "delete",
        other => other,
    }
}

/// Everything the report says besides the measurements: where, what, with which settings.
pub struct Header {
    pub lines: Vec<(String, String)>,
    /// The private PostgreSQL's settings (none with --pg-url or without PostgreSQL).
    pub pg_settings: Vec<String>,
}

pub fn render(args: &RunArgs, reports: &[BackendReport], header: &Header) -> String {
    let mut o = Out(String::new());
    o.line("# tether-bench results");
    o.blank();
    for (k, v) in &header.lines {
        o.line(format!("- {k}: {v}"));
    }
    o.line(settings_line(args));
    if !header.pg_settings.is_empty() {
        o.line(format!(
            "- private PostgreSQL settings: `{}`",
            header.pg_settings.join("`, `")
        ));
    }
    for r in reports {
        o.blank();
        o.line(format!("## {}", r.backend.name()));
        crate::report_sections::backend(&mut o, args, r);
    }
    o.blank();
    o.line("## Issue 16 targets");
    o.blank();
    targets::render(&mut o, args, reports);
    o.0
}

fn settings_line(args: &RunArgs) -> String {
    format!(
        "- settings: seed {} bindings over {} apps; per-operation runs {} s after {} s warm-up at c = {:?}, {} round(s) alternating tether and floor; scaling runs {} s at c = {:?}, sizes {:?}{}",
        args.seed,
        args.apps,
        args.duration,
        args.warmup,
        args.concurrency,
        args.rounds.max(1),
        args.scale_duration,
        args.scale_concurrency,
        args.sizes,
        if args.quick { " (--quick: numbers are not meaningful)" } else { "" }
    )
}
