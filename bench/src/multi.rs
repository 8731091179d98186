//! Stages with more than one tether process on one database: two processes sharing the load
//! (PostgreSQL), and metrics + access log on against off (the cost of operating tether).

use std::collections::HashSet;
use std::rc::Rc;
use std::time::Duration;

use diesel::sql_types::{BigInt, Text};
use diesel::{QueryableByName, RunQueryDsl};
use tether::db::DbConnection;

use crate::args::RunArgs;
use crate::load::{run_step, Step};
use crate::ops::Op;
use crate::report::{BackendReport, MultiCheck};
use crate::seed::World;
use crate::server::{DbTarget, ServerProc};
use crate::stages::{
    create_budget, measure, prepare, spec_of, statements_keep, statements_reset, Ctx, Run,
};

/// The operations of the two-process runs.
const MULTI_OPS: &[(&str, Op)] = &[("create", Op::Create), ("list", Op::List { page: 1 })];

/// Create and list at `--multi-concurrency` against one tether process ("multi-1") and against
/// two on the same database with the virtual users split across them ("multi-2"),
/// alternating; then every binding a 201 named must be in the database once, and no (app,
/// instance) pair twice.
pub async fn two_process_stage(ctx: &Ctx<'_>, report: &mut BackendReport) -> anyhow::Result<()> {
    let args = ctx.args;
    eprintln!("== {}: two tether processes", ctx.backend.name());
    let p = prepare(ctx, "multi", create_budget(args, args.rounds * 2), &[]).await?;
    let second = ServerProc::start(args, &p.target, "multi-b", &[]).await?;
    let conc = args.multi_concurrency;
    for (name, op) in MULTI_OPS {
        for _ in 0..args.rounds.max(1) {
            let one = Run {
                stage: "multi-1",
                name,
                op: *op,
                conc,
                targets: vec![p.server.addr],
            };
            let pids = ctx.pids(&[&p.server, &second]);
            report.steps.push(measure(ctx, &p.world, one, &pids).await);
            let pg_stats = statements_reset(ctx, &p.target.url);
            let two = Run {
                stage: "multi-2",
                name,
                op: *op,
                conc,
                targets: vec![p.server.addr, second.addr],
            };
            report.steps.push(measure(ctx, &p.world, two, &pids).await);
            if pg_stats {
                let label = format!("two processes: {name} c={conc}");
                statements_keep(ctx, &p.target.url, label, report)?;
            }
        }
    }
    let mut db = p.db;
    let created: Vec<String> = p.world.created.borrow().clone();
    report.multi = Some(check_bindings(&mut db, &created, args.seed)?);
    Ok(())
}

#[derive(QueryableByName)]
struct GuidRow {
    #[diesel(sql_type = Text)]
    guid: String,
}

#[derive(QueryableByName)]
struct CountRow {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Whether every created binding is stored exactly once, and nothing else is there.
fn check_bindings(
    db: &mut DbConnection,
    created: &[String],
    seeded: u64,
) -> anyhow::Result<MultiCheck> {
    let rows: Vec<GuidRow> = native!(db, |c| diesel::sql_query(
        "SELECT guid FROM service_bindings"
    )
    .load(c))?;
    let stored: HashSet<&str> = rows.iter().map(|r| r.guid.as_str()).collect();
    let count = |db: &mut DbConnection, sql: &str| -> diesel::QueryResult<i64> {
        native!(db, |c| diesel::sql_query(sql).get_result::<CountRow>(c)).map(|r| r.n)
    };
    let dup_pairs = count(
        db,
        "SELECT COUNT(*) AS n FROM (SELECT 1 FROM service_bindings \
         GROUP BY app_guid, service_instance_guid HAVING COUNT(*) > 1) AS d",
    )?;
    let in_progress = count(
        db,
        "SELECT COUNT(*) AS n FROM service_bindings WHERE last_operation_state <> 'succeeded'",
    )?;
    let created_set: HashSet<&str> = created.iter().map(String::as_str).collect();
    Ok(MultiCheck {
        created: created.len() as u64,
        created_distinct: created_set.len() as u64,
        rows: rows.len() as u64,
        expected_rows: seeded + created_set.len() as u64,
        missing: created_set.iter().filter(|g| !stored.contains(*g)).count() as u64,
        duplicate_guids: (rows.len() - stored.len()) as u64,
        duplicate_pairs: dup_pairs as u64,
        not_succeeded: in_progress as u64,
    })
}

/// The environment of the two servers of the ops-overhead runs (older servers ignore it).
const OPS_ON: &[(&str, &str)] = &[("TETHER_METRICS", "on"), ("TETHER_ACCESS_LOG", "on")];
const OPS_OFF: &[(&str, &str)] = &[("TETHER_METRICS", "off"), ("TETHER_ACCESS_LOG", "off")];

/// Create, get and list at `--overhead-concurrency` against a server with metrics and the
/// access log on ("overhead-on") and one with both off ("overhead-off"), on the same database,
/// alternating (on, off, then off, on in the next round), then both side by side.
///
/// Every round starts a new pair of servers (the one started first alternates too) and stops
/// it after the round. Two servers with the same settings, started once and measured for a
/// whole stage, differed by up to 22% on this machine (the A/A controls in bench/RESULTS.md,
/// 2026-12-01): a difference that belongs to the process (where its threads and heap landed),
/// not to its settings. A fresh pair per round turns that into noise that the rounds average
/// out, instead of a bias that every round repeats.
pub async fn overhead_stage(ctx: &Ctx<'_>, report: &mut BackendReport) -> anyhow::Result<()> {
    let args = ctx.args;
    eprintln!(
        "== {}: metrics and access log, on vs off",
        ctx.backend.name()
    );
    let p = prepare(
        ctx,
        "overhead",
        create_budget(args, args.rounds * 3),
        OPS_ON,
    )
    .await?;
    let conc = args.overhead_concurrency;
    let ops = [
        ("create", Op::Create),
        ("get", Op::Get),
        ("list", Op::List { page: 1 }),
    ];
    let wanted =
        |name: &str| args.overhead_ops.is_empty() || args.overhead_ops.iter().any(|o| o == name);
    for (name, op) in ops.into_iter().filter(|(name, _)| wanted(name)) {
        for round in 0..args.rounds.max(1) {
            // On, off, off, on, …: an order effect (the first run after a change of server
            // warms caches the second finds warm) cancels out over two rounds.
            let on_first = round % 2 == 0;
            let (on, off) = start_pair(args, &p.target, on_first).await?;
            let mut sides = [("overhead-on", &on), ("overhead-off", &off)];
            if !on_first {
                sides.reverse();
            }
            for (stage, server) in sides {
                let run = Run {
                    stage,
                    name,
                    op,
                    conc,
                    targets: vec![server.addr],
                };
                let pids = ctx.pids(&[server]);
                report.steps.push(measure(ctx, &p.world, run, &pids).await);
            }
            let (on_step, off_step) = side_by_side(ctx, &p.world, (name, op), (&on, &off)).await;
            report.steps.push(on_step);
            report.steps.push(off_step);
        }
    }
    Ok(())
}

/// A new "on" and "off" server on the prepared database, `on_first` deciding which starts
/// first. Both start after the seeding, alike: the one that prepared the database (started on
/// an empty one) measured lists ~50% slower than a twin started later with the same settings.
async fn start_pair(
    args: &RunArgs,
    db: &DbTarget,
    on_first: bool,
) -> anyhow::Result<(ServerProc, ServerProc)> {
    let start_on = || ServerProc::start(args, db, "overhead-on", OPS_ON);
    let start_off = || ServerProc::start(args, db, "overhead-off", OPS_OFF);
    if on_first {
        let on = start_on().await?;
        Ok((on, start_off().await?))
    } else {
        let off = start_off().await?;
        Ok((start_on().await?, off))
    }
}

/// Both servers under load at the same time, half the connections each, each one's requests
/// and CPU counted apart ("overhead-on-sbs", "overhead-off-sbs"). Runs one after the other
/// meet the machine in different states (on these shared cores, identical runs a few seconds
/// apart differ by up to ±30%); side by side, both servers meet the same state, so the
/// difference in CPU per request is the switches' own.
async fn side_by_side(
    ctx: &Ctx<'_>,
    w: &Rc<World>,
    (name, op): (&str, Op),
    (on, off): (&ServerProc, &ServerProc),
) -> (Step, Step) {
    let args = ctx.args;
    let spec = |stage, server: &ServerProc| {
        let run = Run {
            stage,
            name,
            op,
            conc: args.overhead_concurrency.div_ceil(2),
            targets: vec![server.addr],
        };
        spec_of(args, run)
    };
    let (on_pids, off_pids) = (ctx.pids(&[on]), ctx.pids(&[off]));
    let steps = tokio::join!(
        run_step(w, spec("overhead-on-sbs", on), &on_pids, args, ctx.backend),
        run_step(
            w,
            spec("overhead-off-sbs", off),
            &off_pids,
            args,
            ctx.backend
        ),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    steps
}
