//! The load generator: `c` virtual users on one thread, each with its own keep-alive
//! connection, each sending its next request as soon as the previous answer is in (closed
//! loop); a warm-up that is not counted, then a measured window with latencies and CPU per
//! request of each process.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::args::{Backend, RunArgs};
use crate::http::HttpConn;
use crate::ops::{op_once, Op, OpError};
use crate::procstat::{machine_busy_ticks, proc_cpu_ticks};
use crate::seed::World;

#[derive(Default)]
struct Tally {
    lat_us: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
    exhausted: bool,
    last_finish: Option<Instant>,
}

#[derive(Debug, Clone)]
pub struct Step {
    /// "ops" (tether), "floor", "scale", "multi-1"/"multi-2" (one or two tether processes),
    /// "overhead-on"/"overhead-off".
    pub stage: &'static str,
    pub op: String,
    pub conc: usize,
    pub size: u64,
    pub requests: u64,
    pub errors: u64,
    pub exhausted: bool,
    pub rps: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub server_cpu_us: f64,
    pub broker_cpu_us: f64,
    pub client_cpu_us: f64,
    /// CPU used by other processes on the machine during the run, in cores (noise; on
    /// PostgreSQL this includes the database server).
    pub other_cores: f64,
    pub first_error: Option<String>,
    pub note: Option<String>,
    /// Body size of the run's last answer (bytes; 0 if none).
    pub body_bytes: usize,
}

/// The processes whose CPU a run reports.
pub struct Pids {
    pub servers: Vec<u32>,
    pub broker: u32,
    pub ticks_per_sec: f64,
}

/// CPU ticks at one instant: servers, broker, this process, the whole machine (busy).
#[derive(Clone, Copy, Default)]
struct CpuSnap {
    server: u64,
    broker: u64,
    client: u64,
    machine: u64,
}

impl CpuSnap {
    fn take(pids: &Pids) -> CpuSnap {
        CpuSnap {
            server: pids.servers.iter().map(|&p| proc_cpu_ticks(p)).sum(),
            broker: proc_cpu_ticks(pids.broker),
            client: proc_cpu_ticks(std::process::id()),
            machine: machine_busy_ticks(),
        }
    }
}

fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i] as f64 / 1000.0
}

pub struct StepSpec<'a> {
    pub stage: &'static str,
    pub name: &'a str,
    pub op: Op,
    pub conc: usize,
    pub size: u64,
    pub warmup: Duration,
    pub duration: Duration,
    /// Where the requests go: virtual user `i` talks to `targets[i % len]`.
    pub targets: Vec<SocketAddr>,
}

/// What the sampler saw at the end of the warm-up.
#[derive(Default)]
struct AtWarmEnd {
    cpu: Cell<Option<CpuSnap>>,
    async_polls: Cell<u64>,
    perf: RefCell<Option<Child>>,
}

pub async fn run_step(
    w: &Rc<World>,
    spec: StepSpec<'_>,
    pids: &Pids,
    args: &RunArgs,
    backend: Backend,
) -> Step {
    let warm_end = Instant::now() + spec.warmup;
    let end = warm_end + spec.duration;
    let perf_file = perf_wanted(args, &spec).then(|| perf_file(args, &spec, backend));
    let at_warm_end = Rc::new(AtWarmEnd::default());
    let sampler = tokio::task::spawn_local(sample_at_warm_end(
        warm_end,
        at_warm_end.clone(),
        w.clone(),
        pids.servers.first().copied().unwrap_or(0),
        CpuSnapArgs {
            pids: Pids {
                servers: pids.servers.clone(),
                broker: pids.broker,
                ticks_per_sec: pids.ticks_per_sec,
            },
            perf: perf_file
                .clone()
                .map(|f| (f, args.perf_args.clone(), spec.duration)),
        },
    ));
    let tally = Rc::new(RefCell::new(Tally::default()));
    let mut users = Vec::new();
    for i in 0..spec.conc {
        let addr = if spec.op == Op::DirectPut {
            w.broker
        } else {
            spec.targets[i % spec.targets.len().max(1)]
        };
        let user = virtual_user(w.clone(), spec.op, addr, tally.clone(), warm_end, end);
        users.push(tokio::task::spawn_local(user));
    }
    for h in users {
        let _ = h.await;
    }
    let finished = Instant::now();
    sampler.abort();
    let cpu_end = CpuSnap::take(pids);
    if let Some(mut c) = at_warm_end.perf.borrow_mut().take() {
        let _ = c.wait();
        if let Some(f) = &perf_file {
            eprintln!("  perf data: {}", f.display());
        }
    }
    let t = std::mem::take(&mut *tally.borrow_mut());
    let window = Window {
        warm_end,
        finished,
        cpu0: at_warm_end.cpu.get(),
        cpu1: cpu_end,
        ticks_per_sec: pids.ticks_per_sec,
    };
    let note = note(w, &spec, &at_warm_end, t.lat_us.len());
    let mut step = summarize(&spec, t, &window, note);
    step.body_bytes = w.last_body_bytes.replace(0);
    print_step(&step);
    step
}

struct CpuSnapArgs {
    pids: Pids,
    /// perf data file, `perf record` options, how long to record.
    perf: Option<(std::path::PathBuf, String, Duration)>,
}

/// At the end of the warm-up: the CPU counters, the async poll count, and `perf record` on the
/// (first) server when asked.
async fn sample_at_warm_end(
    warm_end: Instant,
    at: Rc<AtWarmEnd>,
    w: Rc<World>,
    server: u32,
    a: CpuSnapArgs,
) {
    tokio::time::sleep_until(warm_end.into()).await;
    at.async_polls.set(w.async_polls.get());
    at.cpu.set(Some(CpuSnap::take(&a.pids)));
    let Some((file, perf_args, secs)) = a.perf else {
        return;
    };
    let _ = std::fs::create_dir_all(file.parent().unwrap_or(Path::new(".")));
    let child = Command::new("perf")
        .arg("record")
        .args(perf_args.split_whitespace())
        .arg("-p")
        .arg(server.to_string())
        .arg("-o")
        .arg(&file)
        .arg("--")
        .arg("sleep")
        .arg(format!("{:.2}", secs.as_secs_f64()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match child {
        Ok(c) => *at.perf.borrow_mut() = Some(c),
        Err(e) => eprintln!("  perf record failed to start: {e}"),
    }
}

/// One virtual user: requests until the end of the window, but not before it has one measured
/// request (slow requests, e.g. deep pages of a big table, outlast the warm-up), and never
/// after the hard stop.
async fn virtual_user(
    w: Rc<World>,
    op: Op,
    addr: SocketAddr,
    tally: Rc<RefCell<Tally>>,
    warm_end: Instant,
    end: Instant,
) {
    let mut conn = HttpConn::new(addr);
    let hard_stop = end + Duration::from_secs(300);
    let mut measured = false;
    loop {
        let t0 = Instant::now();
        if (t0 >= end && measured) || t0 >= hard_stop {
            break;
        }
        let r = op_once(&w, op, &mut conn).await;
        let t1 = Instant::now();
        // The tally borrow lives only in this block: never across an await.
        let back_off = {
            let mut t = tally.borrow_mut();
            match r {
                Err(OpError::Exhausted) => {
                    t.exhausted = true;
                    break;
                }
                _ if t0 < warm_end => false,
                Ok(()) => {
                    measured = true;
                    t.lat_us
                        .push((t1 - t0).as_micros().min(u32::MAX as u128) as u32);
                    t.last_finish = Some(t.last_finish.map_or(t1, |l| l.max(t1)));
                    false
                }
                Err(OpError::Failed(m)) => {
                    measured = true;
                    t.errors += 1;
                    t.first_error.get_or_insert(m);
                    t.last_finish = Some(t.last_finish.map_or(t1, |l| l.max(t1)));
                    true
                }
            }
        };
        if back_off {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

struct Window {
    warm_end: Instant,
    finished: Instant,
    cpu0: Option<CpuSnap>,
    cpu1: CpuSnap,
    ticks_per_sec: f64,
}

fn summarize(spec: &StepSpec<'_>, mut t: Tally, win: &Window, note: Option<String>) -> Step {
    t.lat_us.sort_unstable();
    let requests = t.lat_us.len() as u64;
    let secs = t
        .last_finish
        .unwrap_or(win.finished)
        .saturating_duration_since(win.warm_end)
        .as_secs_f64()
        .max(1e-6);
    let cpu0 = win.cpu0.unwrap_or_default();
    let sampled = win.cpu0.is_some();
    let per_req = |a: u64, b: u64| {
        if requests == 0 || !sampled {
            f64::NAN
        } else {
            b.saturating_sub(a) as f64 / win.ticks_per_sec * 1e6 / requests as f64
        }
    };
    let (c0, c1) = (cpu0, win.cpu1);
    let ours = c1.server.saturating_sub(c0.server)
        + c1.broker.saturating_sub(c0.broker)
        + c1.client.saturating_sub(c0.client);
    let wall = win
        .finished
        .saturating_duration_since(win.warm_end)
        .as_secs_f64();
    Step {
        stage: spec.stage,
        op: spec.name.to_string(),
        conc: spec.conc,
        size: spec.size,
        requests,
        errors: t.errors,
        exhausted: t.exhausted,
        rps: requests as f64 / secs,
        p50: percentile(&t.lat_us, 0.50),
        p90: percentile(&t.lat_us, 0.90),
        p99: percentile(&t.lat_us, 0.99),
        max: percentile(&t.lat_us, 1.0),
        server_cpu_us: per_req(c0.server, c1.server),
        broker_cpu_us: per_req(c0.broker, c1.broker),
        client_cpu_us: per_req(c0.client, c1.client),
        other_cores: if !sampled || wall <= 0.0 {
            f64::NAN
        } else {
            c1.machine.saturating_sub(c0.machine).saturating_sub(ours) as f64
                / win.ticks_per_sec
                / wall
        },
        first_error: t.first_error,
        note,
        body_bytes: 0,
    }
}

fn note(w: &World, spec: &StepSpec<'_>, at: &AtWarmEnd, requests: usize) -> Option<String> {
    match spec.op {
        Op::CreateAsync if requests > 0 => Some(format!(
            "{:.1} GETs per create while waiting",
            w.async_polls.get().saturating_sub(at.async_polls.get()) as f64 / requests as f64
        )),
        Op::ListInline => Some(format!(
            "{:.0} KB per page",
            w.inline_page_bytes.get() as f64 / 1024.0
        )),
        _ => None,
    }
}

fn print_step(step: &Step) {
    eprintln!(
        "  {:<12} {:<12} n={:<8} c={:<3} {:>8.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {}  other load {:.2}{}{}",
        step.stage,
        step.op,
        step.size,
        step.conc,
        step.rps,
        step.p50,
        step.p99,
        step.errors,
        step.other_cores,
        if step.exhausted { " (exhausted)" } else { "" },
        step.first_error
            .as_deref()
            .map(|e| format!("  first error: {e}"))
            .unwrap_or_default()
    );
}

fn perf_file(args: &RunArgs, spec: &StepSpec<'_>, backend: Backend) -> std::path::PathBuf {
    let stage = if spec.stage == "ops" {
        String::new()
    } else {
        format!("{}-", spec.stage)
    };
    let size = if spec.stage == "scale" {
        format!("-n{}", spec.size)
    } else {
        String::new()
    };
    args.perf_dir.join(format!(
        "perf-{}-{stage}{}-c{}{size}.data",
        backend.name().to_lowercase(),
        spec.name,
        spec.conc,
    ))
}

/// `--perf` specs: `[STAGE/]OP:CONC[@SIZE]`, the stage `ops` (tether's per-operation runs) when
/// none is named.
fn perf_wanted(args: &RunArgs, spec: &StepSpec<'_>) -> bool {
    args.perf.iter().any(|p| {
        let (stage, rest) = p.split_once('/').unwrap_or(("ops", p.as_str()));
        let (op_conc, size) = match rest.split_once('@') {
            Some((a, s)) => (a, s.parse::<u64>().ok()),
            None => (rest, None),
        };
        let Some((op, conc)) = op_conc.split_once(':') else {
            return false;
        };
        stage == spec.stage
            && op == spec.name
            && conc.parse::<usize>().ok() == Some(spec.conc)
            && size.is_none_or(|s| s == spec.size)
    })
}
