//! The sections of one backend's report.

use crate::args::RunArgs;
use crate::load::Step;
use crate::ops::FLOOR_OPS;
use crate::report::{mb, ms, op_label, us, BackendReport, Out};

pub fn backend(o: &mut Out, args: &RunArgs, r: &BackendReport) {
    startup(o, r);
    per_operation(o, r);
    floor(o, args, r);
    pg_statements(o, r);
    scaling(o, r);
    memory(o, r);
    two_processes(o, args, r);
    overhead(o, args, r);
    for n in &r.notes {
        o.blank();
        o.line(n);
    }
}

fn startup(o: &mut Out, r: &BackendReport) {
    o.blank();
    o.line("### Start-up");
    o.blank();
    o.table(
        "| start | spawn → first 200 (ms) | server's startup_ms | RSS then (MB) |",
        "|---|---:|---:|---:|",
    );
    for s in &r.starts {
        o.line(format!(
            "| {} | {:.0} | {} | {} |",
            s.what,
            s.first_200_ms,
            s.reported_ms.map(|v| v.to_string()).unwrap_or("–".into()),
            mb(s.rss_kb)
        ));
    }
}

/// One table row of a run.
fn step_row(s: &Step, label: &str) -> String {
    format!(
        "| {label} | {} | {} | {:.0} | {} | {} | {} | {} | {}{} | {} | {} | {} | {:.2} |",
        s.conc,
        s.requests,
        s.rps,
        ms(s.p50),
        ms(s.p90),
        ms(s.p99),
        ms(s.max),
        s.errors,
        if s.exhausted { " (ran out)" } else { "" },
        us(s.server_cpu_us),
        us(s.broker_cpu_us),
        us(s.client_cpu_us),
        s.other_cores,
    )
}

const STEP_HEAD: &str = "| operation | c | requests | req/s | p50 ms | p90 ms | p99 ms | max ms | errors | server CPU µs/req | broker CPU µs/req | client CPU µs/req | other load (cores) |";
const STEP_ALIGN: &str = "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|";

fn per_operation(o: &mut Out, r: &BackendReport) {
    let ops: Vec<&Step> = r.stage("ops").collect();
    let Some(first) = ops.first() else { return };
    o.blank();
    o.line(format!(
        "### Per operation, tether ({} bindings seeded)",
        first.size
    ));
    o.blank();
    o.line("(The operations compared with the floor run once per round: one row each, in order.)");
    o.blank();
    o.table(STEP_HEAD, STEP_ALIGN);
    for s in &ops {
        o.line(step_row(s, op_label(&s.op)));
    }
    first_errors_and_notes(o, r);
}

fn first_errors_and_notes(o: &mut Out, r: &BackendReport) {
    let errs: Vec<String> = r
        .steps
        .iter()
        .filter_map(|s| {
            let e = s.first_error.as_ref()?;
            Some(format!("- {} {} c={}: {e}", s.stage, s.op, s.conc))
        })
        .collect();
    if !errs.is_empty() {
        o.blank();
        o.line("First error of each run with errors:");
        errs.iter().for_each(|e| o.line(e));
    }
    let notes: Vec<String> = r
        .stage("ops")
        .filter_map(|s| {
            let n = s.note.as_ref()?;
            Some(format!("- {} c={}: {n}", op_label(&s.op), s.conc))
        })
        .collect();
    if !notes.is_empty() {
        o.blank();
        notes.iter().for_each(|n| o.line(n));
    }
}

fn floor(o: &mut Out, args: &RunArgs, r: &BackendReport) {
    let runs: Vec<&Step> = r.stage("floor").collect();
    if runs.is_empty() {
        return;
    }
    o.blank();
    o.line("### tether ÷ floor (same run, alternating; means over the rounds)");
    o.blank();
    o.line("The floor (`tether-bench floor`, see bench/README.md) does only what each operation must do, on the same HTTP stack, database settings and schema. Ratio = tether req/s ÷ floor req/s (1.0: tether costs what the work costs).");
    o.blank();
    o.table(
        "| operation | c | tether req/s | floor req/s | tether ÷ floor | tether p99 ms | floor p99 ms | tether server CPU µs/req | floor server CPU µs/req | floor one-write create req/s | answer bytes (tether / floor) | errors (tether / floor) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    );
    for op in FLOOR_OPS {
        for &c in &args.concurrency {
            let (Some(t), Some(f)) = (r.agg("ops", op, c), r.agg("floor", op, c)) else {
                continue;
            };
            let one_write = r
                .agg("floor", "create-1w", c)
                .filter(|_| *op == "create")
                .map_or("".into(), |a| format!("{:.0}", a.rps));
            o.line(format!(
                "| {} | {c} | {:.0} | {:.0} | {:.2} | {} | {} | {} | {} | {one_write} | {} / {} | {} / {} |",
                op_label(op),
                t.rps,
                f.rps,
                t.rps / f.rps,
                ms(t.p99),
                ms(f.p99),
                us(t.server_cpu_us),
                us(f.server_cpu_us),
                t.body_bytes,
                f.body_bytes,
                t.errors,
                f.errors
            ));
        }
    }
    o.blank();
    o.line("Floor runs, each:");
    o.blank();
    o.table(STEP_HEAD, STEP_ALIGN);
    for s in &runs {
        o.line(step_row(s, op_label(&s.op)));
    }
}

fn pg_statements(o: &mut Out, r: &BackendReport) {
    if r.pg_top.is_empty() {
        return;
    }
    o.blank();
    o.line("### PostgreSQL: top statements by total time after each tether run (pg_stat_statements; warm-up included)");
    for t in &r.pg_top {
        o.blank();
        o.line(format!("{}:", t.label));
        o.blank();
        o.table(
            "| calls | total ms | mean ms | rows | statement |",
            "|---:|---:|---:|---:|---|",
        );
        for s in &t.statements {
            o.line(format!(
                "| {} | {:.0} | {:.3} | {} | `{}` |",
                s.calls,
                s.total_ms,
                s.mean_ms,
                s.rows,
                s.query.replace('|', "\\|").replace('`', "'")
            ));
        }
    }
}

fn scaling(o: &mut Out, r: &BackendReport) {
    let scale: Vec<&Step> = r.stage("scale").collect();
    if scale.is_empty() {
        return;
    }
    o.blank();
    o.line("### Scaling: list latency by table size");
    o.blank();
    o.table("| bindings | query | c | req/s | p50 ms | p99 ms | max ms | errors | server CPU µs/req | other load (cores) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for s in &scale {
        let query = if s.op == "list-deep" {
            format!("{} (page {})", op_label(&s.op), s.size.div_ceil(50).max(1))
        } else {
            op_label(&s.op).to_string()
        };
        o.line(format!(
            "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {:.2} |",
            s.size,
            query,
            s.conc,
            s.rps,
            ms(s.p50),
            ms(s.p99),
            ms(s.max),
            s.errors,
            us(s.server_cpu_us),
            s.other_cores
        ));
    }
}

fn memory(o: &mut Out, r: &BackendReport) {
    if r.sizes.is_empty() {
        return;
    }
    o.blank();
    o.line("### Server memory by table size");
    o.blank();
    o.table("| bindings | seeding took (s) | RSS after seeding (MB) | RSS after list traffic (MB) | of which anon / file / shmem (MB) | peak RSS, VmHWM (MB) | note |",
        "|---:|---:|---:|---:|---:|---:|---|");
    for s in &r.sizes {
        o.line(format!(
            "| {} | {:.1} | {} | {} | {} / {} / {} | {} | {} |",
            s.size,
            s.seed_secs,
            mb(s.after_seed.rss_kb),
            mb(s.after_lists.rss_kb),
            mb(s.after_lists.anon_kb),
            mb(s.after_lists.file_kb),
            mb(s.after_lists.shmem_kb),
            mb(s.after_lists.hwm_kb.max(s.after_seed.hwm_kb)),
            s.db_note
        ));
    }
}

fn two_processes(o: &mut Out, args: &RunArgs, r: &BackendReport) {
    let Some(check) = &r.multi else { return };
    let c = args.multi_concurrency;
    o.blank();
    o.line(format!("### Two tether processes on one database (c={c} split across them, alternating with one process; means over the rounds)"));
    o.blank();
    o.table(
        "| operation | one process req/s | two processes req/s | two ÷ one | p99 ms one / two | errors one / two |",
        "|---|---:|---:|---:|---:|---:|",
    );
    for op in ["create", "list"] {
        if let (Some(a), Some(b)) = (r.agg("multi-1", op, c), r.agg("multi-2", op, c)) {
            o.line(format!(
                "| {} | {:.0} | {:.0} | {:.2} | {} / {} | {} / {} |",
                op_label(op),
                a.rps,
                b.rps,
                b.rps / a.rps,
                ms(a.p99),
                ms(b.p99),
                a.errors,
                b.errors
            ));
        }
    }
    o.blank();
    o.line(format!(
        "Bindings afterwards: {} rows (expected {} = seeded + created), {} creates answered 201 ({} distinct guids); missing {}, duplicate guids {}, (app, instance) pairs with more than one row {}, rows not `succeeded` {}: {}.",
        check.rows, check.expected_rows, check.created, check.created_distinct, check.missing,
        check.duplicate_guids, check.duplicate_pairs, check.not_succeeded,
        if check.ok() { "none lost or duplicated" } else { "**bindings lost or duplicated**" }
    ));
}

fn overhead(o: &mut Out, args: &RunArgs, r: &BackendReport) {
    if r.stage("overhead-on").next().is_none() {
        return;
    }
    let c = args.overhead_concurrency;
    o.blank();
    o.line(format!("### Metrics and access log: on vs off (c={c}, same database, a new pair of servers each round, alternating; means over the rounds)"));
    o.blank();
    o.table(
        "| operation | both on req/s | both off req/s | throughput cost of on | server CPU µs/req on / off | CPU cost of on | median of the rounds' costs: throughput / CPU |",
        "|---|---:|---:|---:|---:|---:|---:|",
    );
    for op in ["create", "get", "list"] {
        let (Some(on), Some(off)) = (r.agg("overhead-on", op, c), r.agg("overhead-off", op, c))
        else {
            continue;
        };
        let (rps_median, cpu_median) = paired_costs(r, op, c);
        o.line(format!(
            "| {} | {:.0} | {:.0} | {:+.1}% | {} / {} | {:+.1}% | {:+.1}% / {:+.1}% |",
            op_label(op),
            on.rps,
            off.rps,
            (off.rps / on.rps - 1.0) * 100.0,
            us(on.server_cpu_us),
            us(off.server_cpu_us),
            (on.server_cpu_us / off.server_cpu_us - 1.0) * 100.0,
            rps_median * 100.0,
            cpu_median * 100.0
        ));
    }
    side_by_side(o, args, r);
    o.blank();
    o.line("Throughput cost of on = off req/s ÷ on req/s − 1; CPU cost = on µs ÷ off µs − 1. The switches reach the servers as TETHER_METRICS and TETHER_ACCESS_LOG: a server without them runs the same code both times (a cost near 0 ± noise). The median column takes each round's on and off runs as a pair (they ran back to back) and reports the median of the pairs' costs: the machine's drift between rounds, which the means keep, cancels within a pair.");
}

/// The median over the rounds of each round's cost of "on" (throughput, CPU), taking the k-th
/// on run and the k-th off run as the round's pair.
fn paired_costs(r: &BackendReport, op: &str, conc: usize) -> (f64, f64) {
    paired("overhead-on", "overhead-off", r, op, conc)
}

fn paired(on: &str, off: &str, r: &BackendReport, op: &str, conc: usize) -> (f64, f64) {
    let runs = |stage| {
        r.stage(stage)
            .filter(|s| s.op == op && s.conc == conc)
            .collect::<Vec<_>>()
    };
    let (on, off) = (runs(on), runs(off));
    let mut rps: Vec<f64> = on
        .iter()
        .zip(&off)
        .map(|(a, b)| b.rps / a.rps - 1.0)
        .collect();
    let mut cpu: Vec<f64> = on
        .iter()
        .zip(&off)
        .map(|(a, b)| a.server_cpu_us / b.server_cpu_us - 1.0)
        .collect();
    (median(&mut rps), median(&mut cpu))
}

fn median(v: &mut Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    }
}

/// The side-by-side runs: both servers loaded at once, half the connections each.
fn side_by_side(o: &mut Out, args: &RunArgs, r: &BackendReport) {
    let half = args.overhead_concurrency.div_ceil(2);
    if r.stage("overhead-on-sbs").next().is_none() {
        return;
    }
    o.blank();
    o.line(format!("Side by side: both servers under load at the same time, c={half} each (means over the rounds; medians of the rounds in brackets):"));
    o.blank();
    o.table(
        "| operation | on req/s | off req/s | throughput cost of on | server CPU µs/req on / off | CPU cost of on |",
        "|---|---:|---:|---:|---:|---:|",
    );
    for op in ["create", "get", "list"] {
        let (Some(on), Some(off)) = (
            r.agg("overhead-on-sbs", op, half),
            r.agg("overhead-off-sbs", op, half),
        ) else {
            continue;
        };
        let (rps_median, cpu_median) = paired("overhead-on-sbs", "overhead-off-sbs", r, op, half);
        o.line(format!(
            "| {} | {:.0} | {:.0} | {:+.1}% ({:+.1}%) | {} / {} | {:+.1}% ({:+.1}%) |",
            op_label(op),
            on.rps,
            off.rps,
            (off.rps / on.rps - 1.0) * 100.0,
            rps_median * 100.0,
            us(on.server_cpu_us),
            us(off.server_cpu_us),
            (on.server_cpu_us / off.server_cpu_us - 1.0) * 100.0,
            cpu_median * 100.0,
        ));
    }
}
