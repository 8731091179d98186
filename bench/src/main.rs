//! `tether-bench`: the load benchmark (see `bench/README.md`).
//!
//! Processes taking part: this one (seeding, the load generator, the report), `tether serve`
//! (the release binary under test, on a fresh SQLite file or PostgreSQL database), the floor
//! server (this binary re-executed as `tether-bench floor`: the least work each operation needs,
//! on the same HTTP stack and database), the OSB brokers (this binary re-executed as
//! `tether-bench broker`) and, for PostgreSQL, a private PostgreSQL server the bench starts.
//!
//! The load generator is a minimal HTTP/1.1 keep-alive client on one tokio thread: each of the
//! `c` virtual users owns one connection and sends its next request when the previous answer is
//! in (closed loop), so req/s and latency are those of `c` requests in flight.

/// Runs `$body` with `$c` bound to the concrete SQLite or PostgreSQL connection inside a
/// `DbConnection` (one compiled copy per backend, as tether's hot paths do).
macro_rules! native {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            tether::db::DbConnection::Sqlite($c) => $body,
            tether::db::DbConnection::Pg($c) => $body,
        }
    };
}

/// jemalloc, as tether: the floor server runs in this binary and must not pay glibc malloc's
/// arena contention that tether does not.
#[cfg(all(target_os = "linux", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod args;
mod broker;
mod floor;
mod http;
mod load;
mod multi;
mod ops;
mod pg;
mod procstat;
mod report;
mod report_sections;
mod seed;
mod server;
mod stages;
mod targets;

use std::process::Command;

use anyhow::bail;
use clap::{Parser, Subcommand};

use args::{Backend, RunArgs};
use broker::BrokerProc;
use report::{BackendReport, Header};
use stages::Ctx;

#[derive(Parser)]
#[command(
    name = "tether-bench",
    about = "Load benchmark for tether serve (see bench/README.md)",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Sub {
    /// (internal) Run the benchmark's two demo brokers; prints their URLs and exits when stdin
    /// closes.
    #[command(hide = true)]
    Broker,
    /// The floor server: binding create, get and list doing only what each must do, on
    /// tether's HTTP stack, database settings and schema (see bench/README.md).
    Floor(floor::FloorArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Sub::Broker) => broker::broker_main(),
        Some(Sub::Floor(args)) => floor::floor_main(args),
        None => {
            let mut args = cli.run;
            args.apply_quick();
            run_main(args)
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tether-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn machine_header(args: &RunArgs) -> Vec<(String, String)> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0))
        .unwrap_or_default();
    let git = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .is_some_and(|o| !o.stdout.is_empty());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
    vec![
        ("date".into(), date),
        (
            "machine".into(),
            format!("{cpus} CPUs ({cpu}), {mem} RAM, {}", std::env::consts::OS),
        ),
        (
            "code".into(),
            format!(
                "git {git}{}; tether binary {}",
                if dirty { " + uncommitted changes" } else { "" },
                args.tether_bin()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ),
        ),
        (
            "load average at start".into(),
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
        ),
        (
            "processes".into(),
            "load generator (this process, 1 thread), tether serve (release, default settings), the floor server (tether-bench floor), broker process (2 demo brokers × 2 actix workers), and for PostgreSQL its server, all on the same CPUs".into(),
        ),
    ]
}

/// The PostgreSQL the PostgreSQL stages use: `--pg-url`, or a private server started now
/// (after the SQLite stages, so that an idle PostgreSQL does not share their CPUs). Its line
/// and settings go into the report's header.
fn postgres_for(
    args: &RunArgs,
    header: &mut Header,
) -> anyhow::Result<(Option<pg::PrivatePg>, String)> {
    if let Some(url) = &args.pg_url {
        header
            .lines
            .push(("PostgreSQL".into(), format!("--pg-url {url}")));
        return Ok((None, url.clone()));
    }
    eprintln!("tether-bench: starting a private PostgreSQL");
    let server = pg::PrivatePg::start(&args.pg_shared_buffers)?;
    eprintln!("  {} at {}", server.version, server.admin_url);
    header.lines.push((
        "PostgreSQL".into(),
        format!("private server: {}", server.version),
    ));
    header.pg_settings = server.settings.clone();
    let url = server.admin_url.clone();
    Ok((Some(server), url))
}

/// Every stage of one backend, in order.
async fn run_backend(ctx: &Ctx<'_>, report: &mut BackendReport) -> anyhow::Result<()> {
    let args = ctx.args;
    if !args.skip_ops {
        stages::ops_stage(ctx, report).await?;
    }
    if ctx.backend == Backend::Postgres && !args.skip_multi {
        multi::two_process_stage(ctx, report).await?;
    }
    if args.ops_overhead {
        multi::overhead_stage(ctx, report).await?;
    }
    if !args.skip_scale {
        stages::scale_stage(ctx, report).await?;
    }
    Ok(())
}

fn run_main(args: RunArgs) -> anyhow::Result<()> {
    tether::install_crypto_provider();
    let bin = args.tether_bin()?;
    eprintln!("tether-bench: server binary {}", bin.display());
    let mut header = Header {
        lines: machine_header(&args),
        pg_settings: Vec::new(),
    };
    let ticks = procstat::clock_ticks_per_sec();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let broker = BrokerProc::start()?;
    let mut reports = Vec::new();
    let (mut private_pg, mut pg_admin) = (None, String::new());
    for backend in args.backends() {
        if backend == Backend::Postgres {
            (private_pg, pg_admin) = postgres_for(&args, &mut header)?;
        }
        let mut report = BackendReport::new(backend);
        let ctx = Ctx {
            args: &args,
            backend,
            broker: &broker,
            pg_admin: &pg_admin,
            ticks,
        };
        // Ctrl-C ends the run through the normal drops: servers stopped, databases and the
        // private PostgreSQL removed.
        local.block_on(&rt, async {
            tokio::select! {
                done = run_backend(&ctx, &mut report) => done,
                _ = tokio::signal::ctrl_c() => bail!("interrupted"),
            }
        })?;
        reports.push(report);
    }
    drop(broker);
    drop(private_pg);
    print!("{}", report::render(&args, &reports, &header));
    let failed = reports
        .iter()
        .flat_map(|r| r.steps.iter())
        .filter(|s| s.errors > 0 || s.requests == 0)
        .count();
    if failed > 0 {
        bail!("{failed} run(s) had errors or completed no request");
    }
    Ok(())
}
