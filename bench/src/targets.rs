//! Issue 16's targets, each checked against this run's figures: met, not met, or not measured.

use crate::args::{Backend, RunArgs};
use crate::report::{mb, ms, us, BackendReport, Out};

const ONE_MILLION: u64 = 1_000_000;

struct Row {
    target: String,
    backend: &'static str,
    measured: String,
    met: Option<bool>,
}

fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "**met**",
        Some(false) => "**NOT met**",
        None => "not measured",
    }
}

pub fn render(o: &mut Out, args: &RunArgs, reports: &[BackendReport]) {
    o.table(
        "| target | backend | measured | met? |",
        "|---|---|---|---|",
    );
    for r in reports {
        for row in rows(args, r) {
            o.line(format!(
                "| {} | {} | {} | {} |",
                row.target,
                row.backend,
                row.measured,
                verdict(row.met)
            ));
        }
    }
    o.blank();
    o.line("Every target also needs its runs free of errors (counted in each figure). Targets at 1M bindings are \"not measured\" when the largest size was smaller.");
}

fn rows(args: &RunArgs, r: &BackendReport) -> Vec<Row> {
    let mut out = Vec::new();
    floor_ratio(
        &mut out,
        args,
        r,
        "create",
        0.85,
        "create ≥ 0.85 of the two-write floor",
    );
    floor_ratio(&mut out, args, r, "get", 0.9, "get ≥ 0.9 of the floor");
    floor_ratio(
        &mut out,
        args,
        r,
        "list",
        0.9,
        "list (page of 50) ≥ 0.9 of the floor",
    );
    match r.backend {
        Backend::Postgres => {
            create_target(&mut out, r, 2500.0, 50.0);
            best_rps(
                &mut out,
                args,
                r,
                "list",
                4000.0,
                "list page of 50 ≥ 4,000 req/s",
            );
            best_rps(&mut out, args, r, "get", 15000.0, "get ≥ 15,000 req/s");
        }
        Backend::Sqlite => {
            create_target(&mut out, r, 6000.0, 20.0);
            app_list_cost(&mut out, r);
        }
    }
    scaling(&mut out, r);
    two_processes(&mut out, args, r);
    rss(&mut out, r);
    startup(&mut out, r);
    out
}

fn row(r: &BackendReport, target: String, measured: String, met: Option<bool>) -> Row {
    Row {
        target,
        backend: r.backend.name(),
        measured,
        met,
    }
}

/// tether ÷ floor at every measured concurrency.
fn floor_ratio(
    out: &mut Vec<Row>,
    args: &RunArgs,
    r: &BackendReport,
    op: &str,
    min: f64,
    target: &str,
) {
    let ratios: Vec<(usize, f64, u64)> = args
        .concurrency
        .iter()
        .filter_map(|&c| {
            let (t, f) = (r.agg("ops", op, c)?, r.agg("floor", op, c)?);
            Some((c, t.rps / f.rps, t.errors + f.errors))
        })
        .collect();
    let met =
        (!ratios.is_empty()).then(|| ratios.iter().all(|&(_, x, errors)| x >= min && errors == 0));
    let measured = ratios
        .iter()
        .map(|(c, x, e)| format!("c={c}: {x:.2}{}", errors_note(*e)))
        .collect::<Vec<_>>()
        .join(", ");
    out.push(row(r, format!("floor ratio: {target}"), measured, met));
}

fn errors_note(errors: u64) -> String {
    if errors == 0 {
        String::new()
    } else {
        format!(" ({errors} errors)")
    }
}

fn create_target(out: &mut Vec<Row>, r: &BackendReport, min_rps: f64, max_p99: f64) {
    let a = r.agg("ops", "create", 64);
    out.push(row(
        r,
        format!("sync create ≥ {min_rps:.0} req/s at c=64 with p99 < {max_p99:.0} ms"),
        a.map(|a| {
            format!(
                "{:.0} req/s, p99 {} ms{}",
                a.rps,
                ms(a.p99),
                errors_note(a.errors)
            )
        })
        .unwrap_or_default(),
        a.map(|a| a.rps >= min_rps && a.p99 < max_p99 && a.errors == 0),
    ));
}

/// The best concurrency's throughput of `op`.
fn best_rps(out: &mut Vec<Row>, args: &RunArgs, r: &BackendReport, op: &str, min: f64, t: &str) {
    let best = args
        .concurrency
        .iter()
        .filter_map(|&c| r.agg("ops", op, c).map(|a| (c, a)))
        .max_by(|a, b| a.1.rps.total_cmp(&b.1.rps));
    out.push(row(
        r,
        t.to_string(),
        best.map(|(c, a)| format!("{:.0} req/s at c={c}{}", a.rps, errors_note(a.errors)))
            .unwrap_or_default(),
        best.map(|(_, a)| a.rps >= min && a.errors == 0),
    ));
}

fn sizes(r: &BackendReport) -> Option<(u64, u64)> {
    let mut sizes: Vec<u64> = r.stage("scale").map(|s| s.size).collect();
    sizes.sort_unstable();
    Some((*sizes.first()?, *sizes.last()?))
}

/// SQLite: a `q=app_guid:` page at 1M costs no more than 1.5× a plain page (server CPU, c=1).
fn app_list_cost(out: &mut Vec<Row>, r: &BackendReport) {
    let Some((_, big)) = sizes(r) else {
        return;
    };
    let pair = r.scale("list", 1, big).zip(r.scale("list-app", 1, big));
    let measured = pair.map_or(String::new(), |(plain, app)| {
        format!(
            "at {big}: {} vs {} µs server CPU per page (×{:.2})",
            us(app.server_cpu_us),
            us(plain.server_cpu_us),
            app.server_cpu_us / plain.server_cpu_us
        )
    });
    let met = pair
        .filter(|_| big >= ONE_MILLION)
        .map(|(plain, app)| app.server_cpu_us <= 1.5 * plain.server_cpu_us && app.errors == 0);
    out.push(row(
        r,
        "q=app_guid: page of 50 at 1M ≤ 1.5× a plain page's cost".into(),
        measured,
        met,
    ));
}

/// List at 1M within 1.5× of 1k: page 1, deepest page, `q=app_guid:` (p50 at c=1).
fn scaling(out: &mut Vec<Row>, r: &BackendReport) {
    let Some((small, big)) = sizes(r) else {
        return;
    };
    let mut parts = Vec::new();
    let mut all = true;
    for op in ["list", "list-deep", "list-app"] {
        if let (Some(a), Some(b)) = (r.scale(op, 1, small), r.scale(op, 1, big)) {
            let x = b.p50 / a.p50;
            all &= x <= 1.5 && a.errors + b.errors == 0;
            parts.push(format!("{op}: {} → {} ms (×{x:.2})", ms(a.p50), ms(b.p50)));
        }
    }
    let met = (!parts.is_empty() && big >= ONE_MILLION && small <= 1_000).then_some(all);
    out.push(row(
        r,
        format!("list at 1M within 1.5× of 1k (c=1 p50; measured {small} → {big})"),
        parts.join("; "),
        met,
    ));
}

fn two_processes(out: &mut Vec<Row>, args: &RunArgs, r: &BackendReport) {
    let Some(check) = &r.multi else { return };
    let c = args.multi_concurrency;
    let mut parts = Vec::new();
    let mut all = check.ok();
    for op in ["create", "list"] {
        if let (Some(a), Some(b)) = (r.agg("multi-1", op, c), r.agg("multi-2", op, c)) {
            all &= b.rps >= 0.9 * a.rps && a.errors + b.errors == 0;
            parts.push(format!(
                "{op}: {:.0} → {:.0} req/s (×{:.2}){}",
                a.rps,
                b.rps,
                b.rps / a.rps,
                errors_note(a.errors + b.errors)
            ));
        }
    }
    parts.push(if check.ok() {
        "no binding lost or duplicated".into()
    } else {
        format!(
            "missing {}, duplicates {}",
            check.missing,
            check.duplicate_guids + check.duplicate_pairs
        )
    });
    out.push(row(
        r,
        "two processes ≥ 0.9× one, no errors, no binding lost or duplicated".into(),
        parts.join("; "),
        Some(all),
    ));
}

fn rss(out: &mut Vec<Row>, r: &BackendReport) {
    let Some(s) = r
        .sizes
        .iter()
        .filter(|s| s.after_lists.rss_kb > 0)
        .max_by_key(|s| s.size)
    else {
        return;
    };
    let rss = s.after_lists.rss_kb.max(s.after_seed.rss_kb);
    out.push(row(
        r,
        "RSS < 60 MB at 1M bindings".into(),
        format!(
            "at {} bindings: {} MB after list traffic, peak {} MB",
            s.size,
            mb(rss),
            mb(s.after_lists.hwm_kb)
        ),
        (s.size >= ONE_MILLION).then_some(rss < 60 * 1024),
    ));
}

fn startup(out: &mut Vec<Row>, r: &BackendReport) {
    let worst = r
        .starts
        .iter()
        .max_by(|a, b| a.first_200_ms.total_cmp(&b.first_200_ms));
    out.push(row(
        r,
        "start to first 200 < 150 ms (every start)".into(),
        r.starts
            .iter()
            .map(|s| format!("{}: {:.0} ms", s.what, s.first_200_ms))
            .collect::<Vec<_>>()
            .join("; "),
        worst.map(|s| s.first_200_ms < 150.0),
    ));
}
