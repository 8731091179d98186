//! The stages of a backend's benchmark: per-operation runs (tether alternating with the floor),
//! and the scaling runs.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use tether::db::DbConnection;

use crate::args::{Backend, RunArgs};
use crate::broker::BrokerProc;
use crate::load::{run_step, Pids, Step, StepSpec};
use crate::ops::{parse_op, Op, DEFAULT_OPS, FLOOR_OPS};
use crate::pg;
use crate::procstat::{proc_mem, Mem};
use crate::report::{BackendReport, SizeRow, StartRow, TopStatements};
use crate::seed::{open_db, seed_bindings, setup, World};
use crate::server::{tether_token, DbTarget, ServerProc};

/// What every stage of one backend needs.
pub struct Ctx<'a> {
    pub args: &'a RunArgs,
    pub backend: Backend,
    pub broker: &'a BrokerProc,
    /// PostgreSQL admin URL (the private server's or --pg-url).
    pub pg_admin: &'a str,
    pub ticks: f64,
}

impl Ctx<'_> {
    pub fn pids(&self, servers: &[&ServerProc]) -> Pids {
        Pids {
            servers: servers.iter().map(|s| s.pid()).collect(),
            broker: self.broker.pid(),
            ticks_per_sec: self.ticks,
        }
    }
}

pub fn start_row(what: String, s: &ServerProc) -> StartRow {
    StartRow {
        what,
        first_200_ms: s.first_200.as_secs_f64() * 1000.0,
        reported_ms: s.reported_startup_ms(),
        rss_kb: proc_mem(s.pid()).rss_kb,
    }
}

/// One measured run of the per-operation sizes.
pub struct Run<'a> {
    pub stage: &'static str,
    pub name: &'a str,
    pub op: Op,
    pub conc: usize,
    pub targets: Vec<SocketAddr>,
}

/// A per-operation run's spec: `run` on the seeded table, with the warm-up and duration of
/// `--warmup` and `--duration`.
pub fn spec_of<'a>(args: &RunArgs, run: Run<'a>) -> StepSpec<'a> {
    StepSpec {
        stage: run.stage,
        name: run.name,
        op: run.op,
        conc: run.conc,
        size: args.seed,
        warmup: Duration::from_secs_f64(args.warmup),
        duration: Duration::from_secs_f64(args.duration),
        targets: run.targets,
    }
}

pub async fn measure(ctx: &Ctx<'_>, w: &Rc<World>, run: Run<'_>, pids: &Pids) -> Step {
    let args = ctx.args;
    let step = run_step(w, spec_of(args, run), pids, args, ctx.backend).await;
    // Let the servers settle (connections close, the writer drains) before the next run.
    tokio::time::sleep(Duration::from_millis(200)).await;
    step
}

/// A fresh database with tether on it: the server, a token, the bench's connection, the world
/// (enough pairs for `creates` creates) and `args.seed` bindings.
/// Fields drop in this order: the server stops before its database goes.
pub struct Prepared {
    pub server: ServerProc,
    pub db: DbConnection,
    pub world: Rc<World>,
    pub seed_secs: f64,
    pub target: DbTarget,
}

pub async fn prepare(
    ctx: &Ctx<'_>,
    label: &str,
    creates: u64,
    env: &[(&str, &str)],
) -> anyhow::Result<Prepared> {
    let args = ctx.args;
    let target = DbTarget::new(ctx.backend, ctx.pg_admin, label)?;
    let server = ServerProc::start(args, &target, label, env).await?;
    let token = tether_token(args, &target)?;
    let mut db = open_db(&target.url)?;
    let pairs = args.seed + creates;
    let w = setup(
        ctx.broker,
        server.addr,
        &mut db,
        &token,
        args,
        pairs,
        creates / 4 + 10_000,
    );
    let world = Rc::new(w.await?);
    eprintln!("  seeding {} bindings", args.seed);
    let seed_secs = seed_bindings(&mut db, &world, args.seed, 1_000_000)?.as_secs_f64();
    Ok(Prepared {
        server,
        db,
        world,
        seed_secs,
        target,
    })
}

/// On PostgreSQL with `--pg-top`: forgets `pg_stat_statements` before a run. False when there
/// is nothing to report afterwards (SQLite, turned off, or the extension missing).
pub fn statements_reset(ctx: &Ctx<'_>, db_url: &str) -> bool {
    ctx.backend == Backend::Postgres && ctx.args.pg_top > 0 && pg::reset_statements(db_url)
}

/// After a run that [`statements_reset`] prepared: keeps the top statements for the report.
pub fn statements_keep(
    ctx: &Ctx<'_>,
    db_url: &str,
    label: String,
    report: &mut BackendReport,
) -> anyhow::Result<()> {
    let statements = pg::top_statements(db_url, ctx.args.pg_top)?;
    report.pg_top.push(TopStatements { label, statements });
    Ok(())
}

/// (app, instance) pairs for `runs` create runs at each concurrency: generous (a run stops
/// early when they run out).
pub fn create_budget(args: &RunArgs, runs: usize) -> u64 {
    let secs = (args.warmup + args.duration) * (args.concurrency.len() * runs.max(1)) as f64;
    (secs * 20_000.0) as u64 + 10_000
}

fn selected_ops(args: &RunArgs) -> anyhow::Result<Vec<String>> {
    let ops: Vec<String> = if args.ops.is_empty() {
        DEFAULT_OPS.iter().map(|s| s.to_string()).collect()
    } else {
        args.ops.clone()
    };
    for o in &ops {
        if parse_op(o)? == Op::CreateOneWrite {
            anyhow::bail!("create-1w is the floor's alone: it runs after each floor create");
        }
    }
    Ok(ops)
}

pub async fn ops_stage(ctx: &Ctx<'_>, report: &mut BackendReport) -> anyhow::Result<()> {
    let args = ctx.args;
    let ops = selected_ops(args)?;
    eprintln!("== {}: per-operation runs", ctx.backend.name());
    let floor_runs = if args.no_floor { 0 } else { 2 };
    let budget = create_budget(args, args.rounds * (1 + floor_runs));
    let p = prepare(ctx, "ops", budget, &[]).await?;
    report.starts.push(start_row(
        "first start (new database: migrations, key generation)".into(),
        &p.server,
    ));
    report.sizes.push(SizeRow {
        size: args.seed,
        seed_secs: p.seed_secs,
        after_seed: proc_mem(p.server.pid()),
        after_lists: Mem::default(),
        db_note: "per-operation stage".into(),
    });
    let floor = if args.no_floor {
        None
    } else {
        Some(ServerProc::start_floor(&p.target, &ctx.broker.sync_url, "ops").await?)
    };
    for name in &ops {
        for &conc in &args.concurrency {
            run_op_pairs(ctx, &p, floor.as_ref(), name, conc, report).await?;
        }
    }
    let mem = proc_mem(p.server.pid());
    report.notes.push(format!(
        "Server memory after the per-operation runs: RSS {:.1} MB, peak (VmHWM) {:.1} MB.",
        mem.rss_kb as f64 / 1024.0,
        mem.hwm_kb as f64 / 1024.0
    ));
    let Prepared {
        target,
        server,
        db,
        world,
        ..
    } = p;
    drop((db, floor));
    server.stop();
    let server = ServerProc::start(args, &target, "restart", &[]).await?;
    let bindings = args.seed + world.created.borrow().len() as u64;
    report.starts.push(start_row(
        format!("restart (existing database, {bindings} bindings)"),
        &server,
    ));
    server.stop();
    Ok(())
}

/// The runs of one operation at one concurrency: tether, then (for the floor's operations) the
/// floor, `rounds` times; the floor's one-write create after each floor create. On PostgreSQL
/// the top statements of each tether run are kept.
async fn run_op_pairs(
    ctx: &Ctx<'_>,
    p: &Prepared,
    floor: Option<&ServerProc>,
    name: &str,
    conc: usize,
    report: &mut BackendReport,
) -> anyhow::Result<()> {
    let op = parse_op(name)?;
    let floor = floor.filter(|_| FLOOR_OPS.contains(&name));
    let rounds = if floor.is_some() {
        ctx.args.rounds.max(1)
    } else {
        1
    };
    for round in 0..rounds {
        let pg_stats = statements_reset(ctx, &p.target.url);
        let run = Run {
            stage: "ops",
            name,
            op,
            conc,
            targets: vec![p.server.addr],
        };
        report
            .steps
            .push(measure(ctx, &p.world, run, &ctx.pids(&[&p.server])).await);
        if pg_stats {
            let label = format!("{name} c={conc}, round {}", round + 1);
            statements_keep(ctx, &p.target.url, label, report)?;
        }
        let Some(floor) = floor else { continue };
        let pids = ctx.pids(&[floor]);
        let mut floor_ops = vec![(name, op)];
        if op == Op::Create {
            floor_ops.push(("create-1w", Op::CreateOneWrite));
        }
        for (name, op) in floor_ops {
            let targets = vec![floor.addr];
            let run = Run {
                stage: "floor",
                name,
                op,
                conc,
                targets,
            };
            report.steps.push(measure(ctx, &p.world, run, &pids).await);
        }
    }
    Ok(())
}

pub async fn scale_stage(ctx: &Ctx<'_>, report: &mut BackendReport) -> anyhow::Result<()> {
    let args = ctx.args;
    let mut sizes = args.sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    let Some(&max) = sizes.last() else {
        return Ok(());
    };
    eprintln!("== {}: scaling runs {:?}", ctx.backend.name(), sizes);
    let target = DbTarget::new(ctx.backend, ctx.pg_admin, "scale")?;
    let server = ServerProc::start(args, &target, "scale", &[]).await?;
    let token = tether_token(args, &target)?;
    let mut db = open_db(&target.url)?;
    let w = setup(
        ctx.broker,
        server.addr,
        &mut db,
        &token,
        args,
        max + args.apps,
        1,
    )
    .await?;
    let w = Rc::new(w);
    let pids = ctx.pids(&[&server]);
    let mut have = 0;
    for &size in &sizes {
        eprintln!("  seeding to {size} bindings");
        let seed_time = seed_bindings(&mut db, &w, size - have, 10_000)?;
        have = size;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after_seed = proc_mem(server.pid());
        scale_runs(ctx, &w, (&server, &target.url), &pids, size, report).await?;
        report.sizes.push(SizeRow {
            size,
            seed_secs: seed_time.as_secs_f64(),
            after_seed,
            after_lists: proc_mem(server.pid()),
            db_note: target.size_note(),
        });
    }
    drop(db);
    server.stop();
    let server = ServerProc::start(args, &target, "restart-scale", &[]).await?;
    report.starts.push(start_row(
        format!("restart (existing database, {max} bindings)"),
        &server,
    ));
    server.stop();
    Ok(())
}

/// The list runs at one table size: page 1, the deepest page, `q=app_guid:`, inline relations;
/// on PostgreSQL the top statements of each run at the lowest concurrency are kept.
async fn scale_runs(
    ctx: &Ctx<'_>,
    w: &Rc<World>,
    (server, db_url): (&ServerProc, &str),
    pids: &Pids,
    size: u64,
    report: &mut BackendReport,
) -> anyhow::Result<()> {
    let lowest = args_lowest_concurrency(ctx.args);
    let args = ctx.args;
    let deepest = size.div_ceil(50).max(1);
    let runs = [
        ("list", Op::List { page: 1 }),
        ("list-deep", Op::List { page: deepest }),
        ("list-app", Op::ListApp),
        ("list-inline", Op::ListInline),
    ];
    for (name, op) in runs {
        for &conc in &args.scale_concurrency {
            let spec = StepSpec {
                stage: "scale",
                name,
                op,
                conc,
                size,
                warmup: Duration::from_secs_f64(args.warmup.min(0.5)),
                duration: Duration::from_secs_f64(args.scale_duration),
                targets: vec![server.addr],
            };
            let pg_stats = conc == lowest && statements_reset(ctx, db_url);
            report
                .steps
                .push(run_step(w, spec, pids, args, ctx.backend).await);
            let mem = proc_mem(server.pid());
            eprintln!(
                "    after {name} c={conc}: RSS {} kB (anon {}, file {}, shmem {})",
                mem.rss_kb, mem.anon_kb, mem.file_kb, mem.shmem_kb
            );
            if pg_stats {
                let label = format!("scale: {name} c={conc} at {size} bindings");
                statements_keep(ctx, db_url, label, report)?;
            }
        }
    }
    Ok(())
}

fn args_lowest_concurrency(args: &RunArgs) -> usize {
    args.scale_concurrency.iter().copied().min().unwrap_or(1)
}
