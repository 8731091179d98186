//! `tether-bench`: the load benchmark (see `bench/README.md`).
//!
//! Three processes take part: this one (seeding, the load generator, the report), `tether serve`
//! (the release binary under test, on a fresh SQLite file or PostgreSQL database) and the OSB
//! brokers (this binary re-executed as `tether-bench broker`: one demo broker that binds
//! synchronously, one that answers every bind with 202 and settles on the first poll).
//!
//! The load generator is a minimal HTTP/1.1 keep-alive client on one tokio thread: each of the
//! `c` virtual users owns one connection and sends its next request when the previous answer is
//! in (closed loop), so req/s and latency are those of `c` requests in flight.

use std::cell::{Cell, RefCell};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use base64::Engine;
use clap::{Args, Parser, Subcommand, ValueEnum};
use diesel::connection::SimpleConnection;
use diesel::{Connection, ExpressionMethods, RunQueryDsl};
use serde_json::{json, Value};
use tokio::net::TcpStream;

use tether::db::{DbConnection, DbUrl};
use tether::demo_broker::{self, DemoBroker, Reply};

const BROKER_USER: &str = "bench-broker";
const BROKER_PASS: &str = "bench-broker-secret";
/// Rows per INSERT statement while seeding (15 columns: under SQLite's 32,766 variables).
const SEED_ROWS_PER_STATEMENT: usize = 1000;
/// Statements per seeding transaction.
const SEED_STATEMENTS_PER_TXN: usize = 20;

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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    Sqlite,
    Postgres,
    Both,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

#[derive(Args, Clone, Debug)]
struct RunArgs {
    /// The release `tether` binary (default: next to this binary, else target/release/tether).
    #[arg(long)]
    tether: Option<PathBuf>,
    /// Database backend(s) to benchmark.
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: BackendArg,
    /// PostgreSQL admin URL; the bench creates (and drops) its own databases there.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pg_url: String,
    /// Bindings seeded before the per-operation runs.
    #[arg(long, default_value_t = 10_000)]
    seed: u64,
    /// Concurrencies (requests in flight) of the per-operation runs.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 16, 64])]
    concurrency: Vec<usize>,
    /// Measured seconds per operation and concurrency.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Unmeasured seconds before each run.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Binding counts of the scaling runs (RSS, list page 1 and deepest page).
    #[arg(long, value_delimiter = ',', default_values_t = [1_000u64, 10_000, 100_000, 1_000_000])]
    sizes: Vec<u64>,
    /// Concurrencies of the scaling runs.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 16])]
    scale_concurrency: Vec<usize>,
    /// Measured seconds per scaling run.
    #[arg(long, default_value_t = 3.0)]
    scale_duration: f64,
    /// Operations to run (default: all): direct-put, create, get, list, list-app, create-async,
    /// delete.
    #[arg(long, value_delimiter = ',')]
    ops: Vec<String>,
    /// Skip the per-operation runs.
    #[arg(long)]
    skip_ops: bool,
    /// Skip the scaling runs.
    #[arg(long)]
    skip_scale: bool,
    /// Tiny sizes and durations (CI: proves the bench works, measures nothing meaningful).
    #[arg(long)]
    quick: bool,
    /// Apps bindings are spread over (bindings per app = bindings / apps).
    #[arg(long, default_value_t = 1000)]
    apps: u64,
    /// First wait before the client GETs an async create's binding; doubles after each
    /// `in progress` answer, up to --async-poll-max-ms.
    #[arg(long, default_value_t = 1)]
    async_poll_ms: u64,
    /// Longest wait between the client's GETs of an async create's binding.
    #[arg(long, default_value_t = 50)]
    async_poll_max_ms: u64,
    /// Extra environment for `tether serve` (repeatable), e.g. `TETHER_DB_POOL_SIZE=4`.
    #[arg(long = "server-env", value_name = "KEY=VALUE")]
    server_env: Vec<String>,
    /// A command to run `tether` under (e.g. `valgrind --tool=callgrind`); split on spaces.
    #[arg(long)]
    server_wrapper: Option<String>,
    /// Record `perf` on the server during a run (repeatable): `OP:CONC`, or
    /// `scale/OP:CONC@SIZE` for the scaling runs (e.g. `create:64`, `scale/list-deep:1@1000000`).
    #[arg(long = "perf", value_name = "SPEC")]
    perf: Vec<String>,
    /// Arguments for `perf record` (release builds have no frame pointers: DWARF call graphs).
    #[arg(
        long,
        default_value = "-F 499 --call-graph dwarf,16384",
        allow_hyphen_values = true
    )]
    perf_args: String,
    /// Where perf data files go.
    #[arg(long, default_value = "bench/out")]
    perf_dir: PathBuf,
}

impl RunArgs {
    fn apply_quick(&mut self) {
        if self.quick {
            self.seed = self.seed.min(1_000);
            self.duration = self.duration.min(0.5);
            self.warmup = self.warmup.min(0.2);
            self.sizes = vec![1_000, 5_000];
            self.scale_duration = self.scale_duration.min(0.5);
        }
    }

    fn backends(&self) -> Vec<Backend> {
        match self.backend {
            BackendArg::Sqlite => vec![Backend::Sqlite],
            BackendArg::Postgres => vec![Backend::Postgres],
            BackendArg::Both => vec![Backend::Sqlite, Backend::Postgres],
        }
    }

    fn tether_bin(&self) -> anyhow::Result<PathBuf> {
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

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Sub::Broker) => broker_main(),
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

// ---------------------------------------------------------------------------------------------
// The broker process.

fn async_catalog() -> Value {
    // Same shape as the demo catalog, other ids: the async broker's plans are its own.
    let text = demo_broker::demo_catalog()
        .to_string()
        .replace("3d8f2ee1-tether-", "3d8f2ee1-bench-async-");
    serde_json::from_str(&text).unwrap_or_else(|_| demo_broker::demo_catalog())
}

fn async_plan_id() -> String {
    demo_broker::PLAN_SMALL_ID.replace("3d8f2ee1-tether-", "3d8f2ee1-bench-async-")
}

fn broker_main() -> anyhow::Result<()> {
    let sync = DemoBroker::start(0, BROKER_USER, BROKER_PASS)?;
    sync.set_recording(false);
    let asynchronous =
        DemoBroker::start_with_catalog(0, BROKER_USER, BROKER_PASS, async_catalog())?;
    asynchronous.set_recording(false);
    asynchronous.set_default(
        "bind",
        Reply::Async {
            operation: Some("bench-bind".into()),
            polls: 0,
            final_state: "succeeded",
            retry_after: None,
        },
    );
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "READY {} {}", sync.url, asynchronous.url)?;
        out.flush()?;
    }
    // Run until the parent closes our stdin (or dies).
    let mut line = String::new();
    let stdin = std::io::stdin();
    while stdin.lock().read_line(&mut line)? > 0 {
        line.clear();
    }
    drop(asynchronous);
    drop(sync);
    Ok(())
}

struct BrokerProc {
    child: Child,
    _stdin: ChildStdin,
    sync_url: String,
    async_url: String,
    sync_addr: SocketAddr,
}

impl BrokerProc {
    fn start() -> anyhow::Result<BrokerProc> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .arg("broker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the broker process")?;
        let stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [ready, sync_url, async_url] = parts.as_slice() else {
            let _ = child.kill();
            bail!("broker process said {line:?}");
        };
        if *ready != "READY" {
            let _ = child.kill();
            bail!("broker process said {line:?}");
        }
        let sync_addr = sync_url.trim_start_matches("http://").parse()?;
        Ok(BrokerProc {
            child,
            _stdin: stdin,
            sync_url: sync_url.to_string(),
            async_url: async_url.to_string(),
            sync_addr,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for BrokerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Minimal HTTP/1.1 client.

struct Resp {
    status: u16,
    body: Vec<u8>,
}

struct HttpConn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if hay.len() < needle.len() {
        return None;
    }
    (from..=hay.len() - needle.len()).find(|&i| &hay[i..i + needle.len()] == needle)
}

async fn write_all(s: &TcpStream, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        s.writable().await?;
        match s.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn read_more(s: &TcpStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut tmp = [0u8; 16 * 1024];
    loop {
        s.readable().await?;
        match s.try_read(&mut tmp) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf.extend_from_slice(&tmp[..n]);
                return Ok(());
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Decodes a complete chunked body; None while incomplete.
fn decode_chunked(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        let eol = find(data, b"\r\n", pos)?;
        let size_text = std::str::from_utf8(&data[pos..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        pos = eol + 2;
        if size == 0 {
            return find(data, b"\r\n", pos).map(|_| out);
        }
        if data.len() < pos + size + 2 {
            return None;
        }
        out.extend_from_slice(&data[pos..pos + size]);
        pos += size + 2;
    }
}

fn invalid(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_string())
}

impl HttpConn {
    fn new(addr: SocketAddr) -> HttpConn {
        HttpConn {
            addr,
            stream: None,
            buf: Vec::with_capacity(64 * 1024),
        }
    }

    async fn request(&mut self, req: &[u8]) -> Result<Resp, String> {
        let reused = self.stream.is_some();
        match self.exchange(req).await {
            Ok(r) => Ok(r),
            Err(_) if reused => {
                // The server may close an idle keep-alive connection: one retry on a new one.
                self.stream = None;
                self.exchange(req).await.map_err(|e| {
                    self.stream = None;
                    e.to_string()
                })
            }
            Err(e) => {
                self.stream = None;
                Err(e.to_string())
            }
        }
    }

    async fn exchange(&mut self, req: &[u8]) -> std::io::Result<Resp> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr).await?;
            s.set_nodelay(true)?;
            self.stream = Some(s);
        }
        let HttpConn { stream, buf, .. } = self;
        let s = stream.as_ref().ok_or_else(|| invalid("no stream"))?;
        write_all(s, req).await?;
        buf.clear();
        let mut scanned: usize = 0;
        let head_end = loop {
            read_more(s, buf).await?;
            if let Some(p) = find(buf, b"\r\n\r\n", scanned.saturating_sub(3)) {
                break p;
            }
            scanned = buf.len();
        };
        let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| invalid("head"))?;
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid("status line"))?;
        let mut length = None;
        let mut chunked = false;
        let mut close = false;
        for line in lines {
            if let Some((k, v)) = line.split_once(':') {
                let (k, v) = (k.trim(), v.trim());
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.parse::<usize>().ok();
                } else if k.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = v.eq_ignore_ascii_case("chunked");
                } else if k.eq_ignore_ascii_case("connection") {
                    close = v.eq_ignore_ascii_case("close");
                }
            }
        }
        let body_start = head_end + 4;
        let body = if chunked {
            loop {
                if let Some(b) = decode_chunked(&buf[body_start..]) {
                    break b;
                }
                read_more(s, buf).await?;
            }
        } else {
            let len = length.unwrap_or(0);
            while buf.len() < body_start + len {
                read_more(s, buf).await?;
            }
            buf[body_start..body_start + len].to_vec()
        };
        if close {
            *stream = None;
        }
        Ok(Resp { status, body })
    }
}

fn build_request(
    method: &str,
    host: SocketAddr,
    path: &str,
    auth: &str,
    extra_headers: &str,
    body: Option<&str>,
) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n{extra_headers}");
    if !auth.is_empty() {
        r.push_str(&format!("Authorization: {auth}\r\n"));
    }
    if let Some(b) = body {
        r.push_str("Content-Type: application/json\r\n");
        r.push_str(&format!("Content-Length: {}\r\n\r\n", b.len()));
        r.push_str(b);
    } else {
        r.push_str("\r\n");
    }
    r.into_bytes()
}

/// The string value of the first `"key": "…"` in a compact JSON document, from `from` on.
fn json_str<'a>(body: &'a [u8], key: &str, from: usize) -> Option<&'a str> {
    let pat = format!("\"{key}\":");
    let mut p = find(body, pat.as_bytes(), from)? + pat.len();
    while body.get(p).is_some_and(|c| c.is_ascii_whitespace()) {
        p += 1;
    }
    if body.get(p) != Some(&b'"') {
        return None;
    }
    let start = p + 1;
    let end = start + body[start..].iter().position(|&c| c == b'"')?;
    std::str::from_utf8(&body[start..end]).ok()
}

// ---------------------------------------------------------------------------------------------
// Processes under test.

fn proc_cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return 0;
    };
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) are the 12th and 13th after the command name.
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(11) + get(12)
}

/// Busy clock ticks of the whole machine (all CPUs), from /proc/stat.
fn machine_busy_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().next() else {
        return 0;
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is included in user)
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    total.saturating_sub(idle)
}

fn clock_ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0)
}

#[derive(Debug, Clone, Copy, Default)]
struct Mem {
    rss_kb: u64,
    hwm_kb: u64,
}

fn proc_mem(pid: u32) -> Mem {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Mem {
        rss_kb: field("VmRSS:"),
        hwm_kb: field("VmHWM:"),
    }
}

/// A database for one stage: a temp directory (SQLite file and secrets), or a fresh PostgreSQL
/// database (secrets still in a temp directory). Removed when dropped.
struct DbTarget {
    dir: PathBuf,
    url: String,
    pg: Option<(String, String)>,
}

impl DbTarget {
    fn new(backend: Backend, pg_admin: &str, label: &str) -> anyhow::Result<DbTarget> {
        let dir = std::env::temp_dir().join(format!(
            "tether-bench-{}-{label}-{}",
            std::process::id(),
            backend.name().to_lowercase()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        match backend {
            Backend::Sqlite => Ok(DbTarget {
                url: dir.join("tether.db").to_string_lossy().into_owned(),
                dir,
                pg: None,
            }),
            Backend::Postgres => {
                let name = format!("tether_bench_{}_{label}", std::process::id());
                let mut conn = diesel::PgConnection::establish(pg_admin)
                    .with_context(|| format!("connecting to PostgreSQL at {pg_admin}"))?;
                conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))?;
                conn.batch_execute(&format!("CREATE DATABASE {name}"))?;
                let mut url = reqwest::Url::parse(pg_admin)?;
                url.set_path(&format!("/{name}"));
                Ok(DbTarget {
                    url: url.to_string(),
                    dir,
                    pg: Some((pg_admin.to_string(), name)),
                })
            }
        }
    }

    fn secrets(&self) -> PathBuf {
        self.dir.join("secrets.json")
    }

    fn size_note(&self) -> String {
        if self.pg.is_some() {
            return String::new();
        }
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let db = PathBuf::from(&self.url);
        let wal = PathBuf::from(format!("{}-wal", self.url));
        format!(
            "db file {:.0} MB, WAL {:.0} MB",
            size(&db) as f64 / 1e6,
            size(&wal) as f64 / 1e6
        )
    }
}

impl Drop for DbTarget {
    fn drop(&mut self) {
        if let Some((admin, name)) = &self.pg {
            if let Ok(mut conn) = diesel::PgConnection::establish(admin) {
                if let Err(e) =
                    conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                {
                    eprintln!("tether-bench: could not drop database {name}: {e}");
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The log without terminal colour codes (`ESC [ … m`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

struct ServerProc {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    first_200: Duration,
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

impl ServerProc {
    async fn start(args: &RunArgs, db: &DbTarget, tag: &str) -> anyhow::Result<ServerProc> {
        let bin = args.tether_bin()?;
        let port = free_port()?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let log = db.dir.join(format!("server-{tag}.log"));
        let log_file = std::fs::File::create(&log)?;
        let mut cmd = match &args.server_wrapper {
            Some(w) => {
                let mut parts = w.split_whitespace();
                let mut c = Command::new(parts.next().ok_or_else(|| anyhow!("empty wrapper"))?);
                c.args(parts).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        cmd.arg("serve")
            .env("TETHER_DATABASE_URL", &db.url)
            .env("TETHER_BIND", addr.to_string())
            .env("TETHER_EXTERNAL_URL", EXTERNAL_URL)
            .env("TETHER_SECRETS_FILE", db.secrets())
            .env("TETHER_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        for kv in &args.server_env {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| anyhow!("--server-env wants KEY=VALUE, got {kv}"))?;
            cmd.env(k, v);
        }
        let started = Instant::now();
        let mut child = cmd.spawn().with_context(|| format!("starting {bin:?}"))?;
        let probe = build_request("GET", addr, "/v2/info", "", "", None);
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "tether serve exited ({status}) before answering; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if started.elapsed() > Duration::from_secs(120) {
                let _ = child.kill();
                bail!("tether serve did not answer within 120 s");
            }
            let mut conn = HttpConn::new(addr);
            if let Ok(Ok(r)) =
                tokio::time::timeout(Duration::from_secs(2), conn.request(&probe)).await
            {
                if r.status == 200 {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let first_200 = started.elapsed();
        Ok(ServerProc {
            child,
            addr,
            log,
            first_200,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `startup_ms` from the server's "tether is listening" log line.
    fn reported_startup_ms(&self) -> Option<u64> {
        let raw = std::fs::read_to_string(&self.log).ok()?;
        let text = strip_ansi(&raw);
        let line = text.lines().find(|l| l.contains("tether is listening"))?;
        let rest = &line[line.find("startup_ms=")? + "startup_ms=".len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    }

    fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// The URL every server of the bench is reached at as far as tokens go (their `iss`), whatever
/// port it listens on, so that one token works across restarts.
const EXTERNAL_URL: &str = "http://tether.bench";

fn tether_token(args: &RunArgs, db: &DbTarget) -> anyhow::Result<String> {
    let out = Command::new(args.tether_bin()?)
        .arg("token")
        .arg("--external-url")
        .arg(EXTERNAL_URL)
        .arg("--secrets-file")
        .arg(db.secrets())
        .arg("--database-url")
        .arg(&db.url)
        .env("TETHER_LOG", "warn")
        .output()?;
    if !out.status.success() {
        bail!(
            "tether token failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

// ---------------------------------------------------------------------------------------------
// Set-up and seeding.

/// What the load needs to know about the seeded world.
struct World {
    server: SocketAddr,
    broker: SocketAddr,
    auth: String,
    broker_auth: String,
    org_guid: String,
    space_guid: String,
    apps: Vec<String>,
    sync_instances: Vec<String>,
    async_instances: Vec<String>,
    /// Next unused (app, sync instance) pair: pair k is (apps[k % A], sync_instances[k / A]).
    next_pair: Cell<u64>,
    next_async_pair: Cell<u64>,
    /// Bindings created through the API (deleted first by the delete runs).
    created: RefCell<Vec<String>>,
    /// Seeded bindings (a sample of them for the large sizes).
    seeded: RefCell<Vec<String>>,
    rng: Cell<u64>,
    async_poll: Duration,
    async_poll_max: Duration,
    /// GETs the async creates made while waiting for completion.
    async_polls: Cell<u64>,
    /// Size of the last `list-inline` page, bytes.
    inline_page_bytes: Cell<usize>,
}

impl World {
    fn rand(&self, n: usize) -> usize {
        // xorshift64*
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as usize % n.max(1)
    }

    fn pair(&self, k: u64, instances: &[String]) -> Option<(String, String)> {
        let a = self.apps.len() as u64;
        let app = &self.apps[(k % a) as usize];
        let si = instances.get((k / a) as usize)?;
        Some((app.clone(), si.clone()))
    }
}

async fn api(
    conn: &mut HttpConn,
    auth: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let text = body.map(|b| b.to_string());
    let req = build_request(method, conn.addr, path, auth, "", text.as_deref());
    let resp = conn.request(&req).await.map_err(|e| anyhow!(e))?;
    if !(200..300).contains(&resp.status) {
        bail!(
            "{method} {path}: {} {}",
            resp.status,
            String::from_utf8_lossy(&resp.body)
        );
    }
    if resp.body.is_empty() {
        return Ok(Value::Null);
    }
    Ok(serde_json::from_slice(&resp.body)?)
}

async fn plan_guid(c: &mut HttpConn, auth: &str, unique_id: &str) -> anyhow::Result<String> {
    let v = api(
        c,
        auth,
        "GET",
        &format!("/v2/service_plans?q=unique_id:{unique_id}"),
        None,
    )
    .await?;
    guid_of(&v["resources"][0])
}

fn guid_of(v: &Value) -> anyhow::Result<String> {
    v["metadata"]["guid"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("no metadata.guid in {v}"))
}

/// The bench's own connection for seeding (the server has migrated the database).
fn open_db(url: &str) -> anyhow::Result<DbConnection> {
    Ok(match DbUrl::parse(url)? {
        DbUrl::Postgres(u) => DbConnection::Pg(diesel::PgConnection::establish(&u)?),
        DbUrl::Sqlite(path) => {
            let mut c = diesel::SqliteConnection::establish(&path)?;
            c.batch_execute(
                "PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
                 PRAGMA cache_size = -262144;",
            )?;
            DbConnection::Sqlite(c)
        }
    })
}

/// Runs `f` in one transaction (diesel's: its batch inserts may open savepoints).
fn write_txn<T>(
    conn: &mut DbConnection,
    f: impl FnOnce(&mut DbConnection) -> diesel::QueryResult<T>,
) -> anyhow::Result<T> {
    Ok(conn.transaction(f)?)
}

macro_rules! insert_rows {
    ($conn:expr, $table:expr, $rows:expr) => {
        match $conn {
            DbConnection::Sqlite(c) => diesel::insert_into($table).values($rows).execute(c),
            DbConnection::Pg(c) => diesel::insert_into($table).values($rows).execute(c),
        }
    };
}

fn credentials_for(guid: &str) -> String {
    json!({
        "uri": format!("demo://user-{guid}:secret@demo-db.local:5432/db"),
        "username": format!("user-{guid}"),
        "password": "secret",
    })
    .to_string()
}

/// Creates the org, space and brokers through the API, and apps and instances in the database.
async fn setup(
    broker: &BrokerProc,
    server: &ServerProc,
    db: &mut DbConnection,
    token: &str,
    args: &RunArgs,
    sync_pairs: u64,
    async_pairs: u64,
) -> anyhow::Result<World> {
    let apps = args.apps.max(1);
    let auth = format!("bearer {token}");
    let mut c = HttpConn::new(server.addr);
    let org = guid_of(
        &api(
            &mut c,
            &auth,
            "POST",
            "/v2/organizations",
            Some(json!({"name": "bench-org"})),
        )
        .await?,
    )?;
    let space = guid_of(
        &api(
            &mut c,
            &auth,
            "POST",
            "/v2/spaces",
            Some(json!({"name": "bench-space", "organization_guid": org})),
        )
        .await?,
    )?;
    for (name, url) in [
        ("bench-sync", &broker.sync_url),
        ("bench-async", &broker.async_url),
    ] {
        api(
            &mut c,
            &auth,
            "POST",
            "/v2/service_brokers",
            Some(json!({"name": name, "broker_url": url, "auth_username": BROKER_USER, "auth_password": BROKER_PASS})),
        )
        .await?;
    }
    let sync_plan = plan_guid(&mut c, &auth, demo_broker::PLAN_SMALL_ID).await?;
    let async_plan = plan_guid(&mut c, &auth, &async_plan_id()).await?;
    // One instance through the API (provisioned by the broker), the rest in the database.
    let first_si = guid_of(
        &api(
            &mut c,
            &auth,
            "POST",
            "/v2/service_instances",
            Some(json!({"name": "bench-si-api", "space_guid": space, "service_plan_guid": sync_plan})),
        )
        .await?,
    )?;

    // Only the columns a create sets: columns added later get their defaults, so the bench
    // keeps compiling while the schema grows.
    let now = tether::db::now();
    let app_guids: Vec<String> = (0..apps)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    let n_sync = sync_pairs.div_ceil(apps).max(1);
    let n_async = async_pairs.div_ceil(apps).max(1);
    // (guid, name, plan) of the database-made instances.
    let mut instances: Vec<(String, String, String)> = (1..n_sync)
        .map(|i| (format!("bench-si-{i}"), sync_plan.clone()))
        .chain((0..n_async).map(|i| (format!("bench-si-async-{i}"), async_plan.clone())))
        .map(|(name, plan)| (uuid::Uuid::new_v4().to_string(), name, plan))
        .collect();
    {
        use tether::db::schema::apps::dsl as a;
        use tether::db::schema::service_instances::dsl as si;
        let app_rows: Vec<_> = app_guids
            .iter()
            .enumerate()
            .map(|(i, guid)| {
                (
                    a::guid.eq(guid.clone()),
                    a::name.eq(format!("bench-app-{i}")),
                    a::space_guid.eq(space.clone()),
                    a::state.eq("STARTED"),
                    a::memory.eq(1024i64),
                    a::instances.eq(1i32),
                    a::disk_quota.eq(1024i64),
                    a::environment_json.eq("{}"),
                    a::created_at.eq(now),
                    a::updated_at.eq(now),
                )
            })
            .collect();
        let si_rows: Vec<_> = instances
            .iter()
            .map(|(guid, name, plan)| {
                (
                    si::guid.eq(guid.clone()),
                    si::name.eq(name.clone()),
                    si::space_guid.eq(space.clone()),
                    si::is_user_provided.eq(false),
                    si::service_plan_guid.eq(plan.clone()),
                    si::tags.eq("[]"),
                    si::dashboard_url.eq(format!("https://demo-db.local/dashboard/{guid}")),
                    si::last_operation_type.eq("create"),
                    si::last_operation_state.eq("succeeded"),
                    si::last_operation_updated_at.eq(now),
                    si::created_at.eq(now),
                    si::updated_at.eq(now),
                )
            })
            .collect();
        let (app_rows, si_rows) = (&app_rows, &si_rows);
        write_txn(db, move |conn| {
            for chunk in app_rows.chunks(SEED_ROWS_PER_STATEMENT) {
                insert_rows!(conn, a::apps, chunk)?;
            }
            for chunk in si_rows.chunks(SEED_ROWS_PER_STATEMENT) {
                insert_rows!(conn, si::service_instances, chunk)?;
            }
            Ok(())
        })?;
    }
    let async_instances = instances
        .split_off((n_sync - 1) as usize)
        .into_iter()
        .map(|r| r.0)
        .collect();
    let mut sync_instances = vec![first_si];
    sync_instances.extend(instances.into_iter().map(|r| r.0));
    let broker_auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{BROKER_USER}:{BROKER_PASS}"))
    );
    Ok(World {
        server: server.addr,
        broker: broker.sync_addr,
        auth,
        broker_auth,
        org_guid: org,
        space_guid: space,
        apps: app_guids,
        sync_instances,
        async_instances,
        next_pair: Cell::new(0),
        next_async_pair: Cell::new(0),
        created: RefCell::new(Vec::new()),
        seeded: RefCell::new(Vec::new()),
        rng: Cell::new(0x9E37_79B9_7F4A_7C15),
        async_poll: Duration::from_millis(args.async_poll_ms),
        async_poll_max: Duration::from_millis(args.async_poll_max_ms.max(args.async_poll_ms)),
        async_polls: Cell::new(0),
        inline_page_bytes: Cell::new(0),
    })
}

/// Inserts `count` bindings straight into the database (as a broker-backed create leaves them).
/// Keeps at most `keep` of their guids in `world.seeded`.
fn seed_bindings(
    db: &mut DbConnection,
    world: &World,
    count: u64,
    keep: usize,
) -> anyhow::Result<Duration> {
    use tether::db::schema::service_bindings::dsl as sb;
    let started = Instant::now();
    let per_txn = (SEED_ROWS_PER_STATEMENT * SEED_STATEMENTS_PER_TXN) as u64;
    let mut done = 0;
    while done < count {
        let n = per_txn.min(count - done);
        let now = tether::db::now();
        let mut rows = Vec::with_capacity(n as usize);
        let mut guids = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let k = world.next_pair.get();
            world.next_pair.set(k + 1);
            let (app, si) = world
                .pair(k, &world.sync_instances)
                .ok_or_else(|| anyhow!("out of (app, instance) pairs while seeding"))?;
            let guid = uuid::Uuid::new_v4().to_string();
            rows.push((
                sb::guid.eq(guid.clone()),
                sb::app_guid.eq(app),
                sb::service_instance_guid.eq(si),
                sb::credentials.eq(credentials_for(&guid)),
                sb::volume_mounts.eq("[]"),
                sb::last_operation_type.eq("create"),
                sb::last_operation_state.eq("succeeded"),
                sb::last_operation_created_at.eq(now),
                sb::last_operation_updated_at.eq(now),
                sb::created_at.eq(now),
                sb::updated_at.eq(now),
            ));
            guids.push(guid);
        }
        {
            let mut seeded = world.seeded.borrow_mut();
            let room = keep.saturating_sub(seeded.len());
            seeded.extend(guids.into_iter().take(room));
        }
        let rows_ref = &rows;
        write_txn(db, move |conn| {
            for chunk in rows_ref.chunks(SEED_ROWS_PER_STATEMENT) {
                insert_rows!(conn, sb::service_bindings, chunk)?;
            }
            Ok(())
        })?;
        done += n;
        if count >= 100_000 && done % 100_000 == 0 {
            eprintln!(
                "  seeded {done}/{count} in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    if let DbConnection::Pg(_) = db {
        // What autovacuum does a minute later: fresh statistics, and the dead row versions a
        // bulk load leaves (each seeded binding updates its block's count row) cleared away and
        // the visibility map set. Without it the first minute after seeding measures the
        // seeding's garbage, not the table size (list at 1M rows: 4.7 ms, 3× slower).
        db.batch_execute("VACUUM ANALYZE")?;
    }
    Ok(started.elapsed())
}

// ---------------------------------------------------------------------------------------------
// Load.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    DirectPut,
    Create,
    CreateAsync,
    Get,
    List {
        page: u64,
    },
    ListApp,
    /// A page of 100 with `inline-relations-depth=2` (each binding's app and instance embedded).
    ListInline,
    Delete,
}

const ALL_OPS: &[&str] = &[
    "direct-put",
    "create",
    "get",
    "list",
    "list-app",
    "list-inline",
    "create-async",
    "delete",
];

fn parse_op(name: &str) -> anyhow::Result<Op> {
    Ok(match name {
        "direct-put" => Op::DirectPut,
        "create" => Op::Create,
        "create-async" => Op::CreateAsync,
        "get" => Op::Get,
        "list" => Op::List { page: 1 },
        "list-app" => Op::ListApp,
        "list-inline" => Op::ListInline,
        "delete" => Op::Delete,
        other => bail!("unknown operation {other} (known: {})", ALL_OPS.join(", ")),
    })
}

enum OpError {
    /// Nothing left to do (no free pairs, no bindings to delete).
    Exhausted,
    Failed(String),
}

fn expect(resp: &Resp, status: u16) -> Result<(), OpError> {
    if resp.status == status {
        Ok(())
    } else {
        let body = String::from_utf8_lossy(&resp.body);
        Err(OpError::Failed(format!(
            "status {} (wanted {status}): {}",
            resp.status,
            body.chars().take(300).collect::<String>()
        )))
    }
}

async fn op_once(w: &World, op: Op, conn: &mut HttpConn) -> Result<(), OpError> {
    let fail = OpError::Failed;
    match op {
        Op::DirectPut => {
            let si = &w.sync_instances[w.rand(w.sync_instances.len())];
            let app = &w.apps[w.rand(w.apps.len())];
            let bid = uuid::Uuid::new_v4();
            let body = json!({
                "service_id": demo_broker::SERVICE_ID,
                "plan_id": demo_broker::PLAN_SMALL_ID,
                "app_guid": app,
                "bind_resource": {"app_guid": app, "space_guid": w.space_guid},
                "context": {"platform": "cloudfoundry", "organization_guid": w.org_guid,
                            "space_guid": w.space_guid, "organization_name": "bench-org",
                            "space_name": "bench-space"},
            })
            .to_string();
            let headers = format!(
                "X-Broker-API-Version: 2.15\r\nX-Broker-API-Request-Identity: {}\r\n",
                uuid::Uuid::new_v4()
            );
            let req = build_request(
                "PUT",
                w.broker,
                &format!("/v2/service_instances/{si}/service_bindings/{bid}"),
                &w.broker_auth,
                &headers,
                Some(&body),
            );
            let resp = conn.request(&req).await.map_err(fail)?;
            expect(&resp, 201)
        }
        Op::Create | Op::CreateAsync => {
            let asynchronous = op == Op::CreateAsync;
            let (counter, instances) = if asynchronous {
                (&w.next_async_pair, &w.async_instances)
            } else {
                (&w.next_pair, &w.sync_instances)
            };
            let k = counter.get();
            counter.set(k + 1);
            let (app, si) = w.pair(k, instances).ok_or(OpError::Exhausted)?;
            let body = format!(r#"{{"app_guid":"{app}","service_instance_guid":"{si}"}}"#);
            let path = if asynchronous {
                "/v2/service_bindings?accepts_incomplete=true"
            } else {
                "/v2/service_bindings"
            };
            let req = build_request("POST", w.server, path, &w.auth, "", Some(&body));
            let resp = conn.request(&req).await.map_err(fail)?;
            expect(&resp, if asynchronous { 202 } else { 201 })?;
            let guid = json_str(&resp.body, "guid", 0)
                .ok_or_else(|| OpError::Failed("no guid in the answer".into()))?
                .to_string();
            if asynchronous {
                let get = build_request(
                    "GET",
                    w.server,
                    &format!("/v2/service_bindings/{guid}"),
                    &w.auth,
                    "",
                    None,
                );
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut wait = w.async_poll;
                loop {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(w.async_poll_max);
                    w.async_polls.set(w.async_polls.get() + 1);
                    let resp = conn.request(&get).await.map_err(fail)?;
                    expect(&resp, 200)?;
                    let from = find(&resp.body, b"\"last_operation\"", 0).unwrap_or(0);
                    match json_str(&resp.body, "state", from) {
                        Some("succeeded") => break,
                        Some("in progress") if Instant::now() < deadline => continue,
                        other => {
                            return Err(OpError::Failed(format!(
                                "async create ended in state {other:?}"
                            )))
                        }
                    }
                }
            }
            w.created.borrow_mut().push(guid);
            Ok(())
        }
        Op::Get => {
            let guid = {
                let created = w.created.borrow();
                let seeded = w.seeded.borrow();
                let n = created.len() + seeded.len();
                if n == 0 {
                    return Err(OpError::Exhausted);
                }
                let i = w.rand(n);
                if i < created.len() {
                    created[i].clone()
                } else {
                    seeded[i - created.len()].clone()
                }
            };
            let req = build_request(
                "GET",
                w.server,
                &format!("/v2/service_bindings/{guid}"),
                &w.auth,
                "",
                None,
            );
            let resp = conn.request(&req).await.map_err(fail)?;
            expect(&resp, 200)
        }
        Op::List { page } => {
            let req = build_request(
                "GET",
                w.server,
                &format!("/v2/service_bindings?results-per-page=50&page={page}"),
                &w.auth,
                "",
                None,
            );
            let resp = conn.request(&req).await.map_err(fail)?;
            expect(&resp, 200)
        }
        Op::ListApp => {
            let app = &w.apps[w.rand(w.apps.len())];
            let req = build_request(
                "GET",
                w.server,
                &format!("/v2/service_bindings?q=app_guid:{app}&results-per-page=50"),
                &w.auth,
                "",
                None,
            );
            let resp = conn.request(&req).await.map_err(fail)?;
            expect(&resp, 200)
        }
        Op::ListInline => {
            let req = build_request(
                "GET",
                w.server,
                "/v2/service_bindings?inline-relations-depth=2&results-per-page=100",
                &w.auth,
                "",
                None,
            );
            let resp = conn.request(&req).await.map_err(fail)?;
            w.inline_page_bytes.set(resp.body.len());
            expect(&resp, 200)
        }
        Op::Delete => {
            let guid = {
                let popped = w.created.borrow_mut().pop();
                match popped {
                    Some(g) => g,
                    None => w.seeded.borrow_mut().pop().ok_or(OpError::Exhausted)?,
                }
            };
            let req = build_request(
                "DELETE",
                w.server,
                &format!("/v2/service_bindings/{guid}"),
                &w.auth,
                "",
                None,
            );
            let resp = conn.request(&req).await.map_err(fail)?;
            expect(&resp, 204)
        }
    }
}

#[derive(Default)]
struct Tally {
    lat_us: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
    exhausted: bool,
    last_finish: Option<Instant>,
}

#[derive(Debug, Clone)]
struct Step {
    stage: &'static str,
    op: String,
    conc: usize,
    size: u64,
    requests: u64,
    errors: u64,
    exhausted: bool,
    rps: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    server_cpu_us: f64,
    broker_cpu_us: f64,
    client_cpu_us: f64,
    /// CPU used by other processes on the machine during the run, in cores (noise).
    other_cores: f64,
    first_error: Option<String>,
    note: Option<String>,
}

struct Pids {
    server: u32,
    broker: u32,
    ticks_per_sec: f64,
}

fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i] as f64 / 1000.0
}

struct StepSpec<'a> {
    stage: &'static str,
    name: &'a str,
    op: Op,
    conc: usize,
    size: u64,
    warmup: Duration,
    duration: Duration,
}

async fn run_step(
    w: &Rc<World>,
    spec: StepSpec<'_>,
    pids: &Pids,
    args: &RunArgs,
    backend: Backend,
) -> Step {
    let addr = if spec.op == Op::DirectPut {
        w.broker
    } else {
        w.server
    };
    let start = Instant::now();
    let warm_end = start + spec.warmup;
    let end = warm_end + spec.duration;
    let tally = Rc::new(RefCell::new(Tally::default()));
    let polls_at_start = Rc::new(Cell::new(0u64));
    let perf = perf_wanted(args, &spec).then(|| {
        args.perf_dir.join(format!(
            "perf-{}-{}{}-c{}{}.data",
            backend.name().to_lowercase(),
            if spec.stage == "scale" { "scale-" } else { "" },
            spec.name,
            spec.conc,
            if spec.stage == "scale" {
                format!("-n{}", spec.size)
            } else {
                String::new()
            }
        ))
    });
    let cpu_at_warm_end = Rc::new(Cell::new((0u64, 0u64, 0u64, 0u64)));
    let perf_child = Rc::new(RefCell::new(None::<Child>));
    let snap = {
        let (cpu, perf_child, perf) = (cpu_at_warm_end.clone(), perf_child.clone(), perf.clone());
        let (polls0, world) = (polls_at_start.clone(), w.clone());
        let (server, broker) = (pids.server, pids.broker);
        let secs = spec.duration.as_secs_f64();
        let perf_args = args.perf_args.clone();
        tokio::task::spawn_local(async move {
            tokio::time::sleep_until(warm_end.into()).await;
            polls0.set(world.async_polls.get());
            cpu.set((
                proc_cpu_ticks(server),
                proc_cpu_ticks(broker),
                proc_cpu_ticks(std::process::id()),
                machine_busy_ticks(),
            ));
            if let Some(file) = perf {
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
                    .arg(format!("{secs:.2}"))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn();
                match child {
                    Ok(c) => *perf_child.borrow_mut() = Some(c),
                    Err(e) => eprintln!("  perf record failed to start: {e}"),
                }
            }
        })
    };
    let mut workers = Vec::new();
    for _ in 0..spec.conc {
        let (w, tally) = (w.clone(), tally.clone());
        let op = spec.op;
        workers.push(tokio::task::spawn_local(async move {
            let mut conn = HttpConn::new(addr);
            // A virtual user stops at the end of the window, but not before it has one measured
            // request (slow requests, e.g. deep pages of a big table, outlast the warm-up), and
            // never after the hard stop.
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
        }));
    }
    for h in workers {
        let _ = h.await;
    }
    let finished = Instant::now();
    snap.abort();
    let cpu_end = (
        proc_cpu_ticks(pids.server),
        proc_cpu_ticks(pids.broker),
        proc_cpu_ticks(std::process::id()),
        machine_busy_ticks(),
    );
    if let Some(mut c) = perf_child.borrow_mut().take() {
        let _ = c.wait();
        if let Some(f) = &perf {
            eprintln!("  perf data: {}", f.display());
        }
    }
    let mut t = std::mem::take(&mut *tally.borrow_mut());
    t.lat_us.sort_unstable();
    let requests = t.lat_us.len() as u64;
    let secs = t
        .last_finish
        .unwrap_or(finished)
        .saturating_duration_since(warm_end)
        .as_secs_f64()
        .max(1e-6);
    let cpu0 = cpu_at_warm_end.get();
    let sampled = cpu0.3 != 0;
    let per_req = |a: u64, b: u64| {
        if requests == 0 || !sampled {
            f64::NAN
        } else {
            b.saturating_sub(a) as f64 / pids.ticks_per_sec * 1e6 / requests as f64
        }
    };
    let step = Step {
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
        server_cpu_us: per_req(cpu0.0, cpu_end.0),
        broker_cpu_us: per_req(cpu0.1, cpu_end.1),
        client_cpu_us: per_req(cpu0.2, cpu_end.2),
        other_cores: {
            let ours = cpu_end.0.saturating_sub(cpu0.0)
                + cpu_end.1.saturating_sub(cpu0.1)
                + cpu_end.2.saturating_sub(cpu0.2);
            let window = finished.saturating_duration_since(warm_end).as_secs_f64();
            if cpu0.3 == 0 || window <= 0.0 {
                f64::NAN
            } else {
                cpu_end.3.saturating_sub(cpu0.3).saturating_sub(ours) as f64
                    / pids.ticks_per_sec
                    / window
            }
        },
        first_error: t.first_error,
        note: match spec.op {
            Op::CreateAsync if requests > 0 => Some(format!(
                "{:.1} GETs per create while waiting",
                w.async_polls.get().saturating_sub(polls_at_start.get()) as f64 / requests as f64
            )),
            Op::ListInline => Some(format!(
                "{:.0} KB per page",
                w.inline_page_bytes.get() as f64 / 1024.0
            )),
            _ => None,
        },
    };
    eprintln!(
        "  {:<12} n={:<8} c={:<3} {:>8.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {}  other load {:.2}{}{}",
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
    step
}

fn perf_wanted(args: &RunArgs, spec: &StepSpec<'_>) -> bool {
    args.perf.iter().any(|p| {
        let (stage_ok, rest) = match p.strip_prefix("scale/") {
            Some(r) => (spec.stage == "scale", r),
            None => (spec.stage == "ops", p.as_str()),
        };
        let (op_conc, size) = match rest.split_once('@') {
            Some((a, s)) => (a, s.parse::<u64>().ok()),
            None => (rest, None),
        };
        let Some((op, conc)) = op_conc.split_once(':') else {
            return false;
        };
        stage_ok
            && op == spec.name
            && conc.parse::<usize>().ok() == Some(spec.conc)
            && size.is_none_or(|s| s == spec.size)
    })
}

// ---------------------------------------------------------------------------------------------
// Stages.

#[derive(Debug, Clone)]
struct StartRow {
    what: String,
    first_200_ms: f64,
    reported_ms: Option<u64>,
    rss_kb: u64,
}

#[derive(Debug, Clone)]
struct SizeRow {
    size: u64,
    seed_secs: f64,
    after_seed: Mem,
    after_lists: Mem,
    db_note: String,
}

struct BackendReport {
    backend: Backend,
    starts: Vec<StartRow>,
    steps: Vec<Step>,
    sizes: Vec<SizeRow>,
    notes: Vec<String>,
}

fn start_row(what: String, s: &ServerProc) -> StartRow {
    StartRow {
        what,
        first_200_ms: s.first_200.as_secs_f64() * 1000.0,
        reported_ms: s.reported_startup_ms(),
        rss_kb: proc_mem(s.pid()).rss_kb,
    }
}

async fn ops_stage(
    args: &RunArgs,
    backend: Backend,
    broker: &BrokerProc,
    report: &mut BackendReport,
    ticks: f64,
) -> anyhow::Result<()> {
    let ops: Vec<String> = if args.ops.is_empty() {
        ALL_OPS.iter().map(|s| s.to_string()).collect()
    } else {
        args.ops.clone()
    };
    for o in &ops {
        parse_op(o)?;
    }
    eprintln!("== {}: per-operation runs", backend.name());
    let target = DbTarget::new(backend, &args.pg_url, "ops")?;
    let server = ServerProc::start(args, &target, "fresh").await?;
    report.starts.push(start_row(
        "first start (new database: migrations, key generation)".into(),
        &server,
    ));
    let token = tether_token(args, &target)?;
    let mut db = open_db(&target.url)?;
    // Pairs for the creates: generous (a run stops early when they run out).
    let total_secs = (args.warmup + args.duration) * args.concurrency.len() as f64;
    let create_budget = (total_secs * 20_000.0) as u64 + 10_000;
    let w = Rc::new(
        setup(
            broker,
            &server,
            &mut db,
            &token,
            args,
            args.seed + create_budget,
            create_budget / 4 + 10_000,
        )
        .await?,
    );
    eprintln!("  seeding {} bindings", args.seed);
    let seed_time = seed_bindings(&mut db, &w, args.seed, 1_000_000)?;
    let pids = Pids {
        server: server.pid(),
        broker: broker.pid(),
        ticks_per_sec: ticks,
    };
    report.sizes.push(SizeRow {
        size: args.seed,
        seed_secs: seed_time.as_secs_f64(),
        after_seed: proc_mem(server.pid()),
        after_lists: Mem::default(),
        db_note: "per-operation stage".into(),
    });
    for name in &ops {
        let op = parse_op(name)?;
        for &conc in &args.concurrency {
            let step = run_step(
                &w,
                StepSpec {
                    stage: "ops",
                    name,
                    op,
                    conc,
                    size: args.seed,
                    warmup: Duration::from_secs_f64(args.warmup),
                    duration: Duration::from_secs_f64(args.duration),
                },
                &pids,
                args,
                backend,
            )
            .await;
            report.steps.push(step);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let mem = proc_mem(server.pid());
    report.notes.push(format!(
        "Server memory after the per-operation runs: RSS {:.1} MB, peak (VmHWM) {:.1} MB.",
        mem.rss_kb as f64 / 1024.0,
        mem.hwm_kb as f64 / 1024.0
    ));
    drop(db);
    server.stop();
    let server = ServerProc::start(args, &target, "restart").await?;
    report.starts.push(start_row(
        format!(
            "restart (existing database, {} bindings)",
            args.seed + w.created.borrow().len() as u64
        ),
        &server,
    ));
    server.stop();
    Ok(())
}

async fn scale_stage(
    args: &RunArgs,
    backend: Backend,
    broker: &BrokerProc,
    report: &mut BackendReport,
    ticks: f64,
) -> anyhow::Result<()> {
    let mut sizes = args.sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    let Some(&max) = sizes.last() else {
        return Ok(());
    };
    eprintln!("== {}: scaling runs {:?}", backend.name(), sizes);
    let target = DbTarget::new(backend, &args.pg_url, "scale")?;
    let server = ServerProc::start(args, &target, "scale").await?;
    let token = tether_token(args, &target)?;
    let mut db = open_db(&target.url)?;
    let w = Rc::new(setup(broker, &server, &mut db, &token, args, max + args.apps, 1).await?);
    let pids = Pids {
        server: server.pid(),
        broker: broker.pid(),
        ticks_per_sec: ticks,
    };
    let mut have = 0;
    for &size in &sizes {
        eprintln!("  seeding to {size} bindings");
        let seed_time = seed_bindings(&mut db, &w, size - have, 10_000)?;
        have = size;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after_seed = proc_mem(server.pid());
        let deepest = size.div_ceil(50).max(1);
        let runs = [
            ("list", Op::List { page: 1 }),
            ("list-deep", Op::List { page: deepest }),
            ("list-app", Op::ListApp),
            ("list-inline", Op::ListInline),
        ];
        for (name, op) in runs {
            for &conc in &args.scale_concurrency {
                let step = run_step(
                    &w,
                    StepSpec {
                        stage: "scale",
                        name,
                        op,
                        conc,
                        size,
                        warmup: Duration::from_secs_f64(args.warmup.min(0.5)),
                        duration: Duration::from_secs_f64(args.scale_duration),
                    },
                    &pids,
                    args,
                    backend,
                )
                .await;
                report.steps.push(step);
            }
        }
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
    let server = ServerProc::start(args, &target, "restart-scale").await?;
    report.starts.push(start_row(
        format!("restart (existing database, {max} bindings)"),
        &server,
    ));
    server.stop();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Report.

fn ms(v: f64) -> String {
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

fn us(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else {
        format!("{v:.0}")
    }
}

fn mb(kb: u64) -> String {
    if kb == 0 {
        "–".into()
    } else {
        format!("{:.1}", kb as f64 / 1024.0)
    }
}

fn op_label(op: &str) -> &str {
    match op {
        "direct-put" => "direct PUT to the broker",
        "create" => "sync create",
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

fn find_step<'a>(r: &'a BackendReport, stage: &str, op: &str, conc: usize) -> Option<&'a Step> {
    r.steps
        .iter()
        .find(|s| s.stage == stage && s.op == op && s.conc == conc)
}

fn find_scale<'a>(r: &'a BackendReport, op: &str, conc: usize, size: u64) -> Option<&'a Step> {
    r.steps
        .iter()
        .find(|s| s.stage == "scale" && s.op == op && s.conc == conc && s.size == size)
}

fn render(args: &RunArgs, reports: &[BackendReport], header: &[(String, String)]) -> String {
    let mut o = String::new();
    let mut p = |s: String| {
        o.push_str(&s);
        o.push('\n');
    };
    p("# tether-bench results".into());
    p(String::new());
    for (k, v) in header {
        p(format!("- {k}: {v}"));
    }
    p(format!(
        "- settings: seed {} bindings over {} apps; per-operation runs {} s after {} s warm-up at c = {:?}; scaling runs {} s at c = {:?}, sizes {:?}{}",
        args.seed,
        args.apps,
        args.duration,
        args.warmup,
        args.concurrency,
        args.scale_duration,
        args.scale_concurrency,
        args.sizes,
        if args.quick { " (--quick: numbers are not meaningful)" } else { "" }
    ));
    for r in reports {
        p(String::new());
        p(format!("## {}", r.backend.name()));
        p(String::new());
        p("### Start-up".into());
        p(String::new());
        p("| start | spawn → first 200 (ms) | server's startup_ms | RSS then (MB) |".into());
        p("|---|---:|---:|---:|".into());
        for s in &r.starts {
            p(format!(
                "| {} | {:.0} | {} | {} |",
                s.what,
                s.first_200_ms,
                s.reported_ms.map(|v| v.to_string()).unwrap_or("–".into()),
                mb(s.rss_kb)
            ));
        }
        let ops: Vec<&Step> = r.steps.iter().filter(|s| s.stage == "ops").collect();
        if !ops.is_empty() {
            p(String::new());
            p(format!(
                "### Per operation ({} bindings seeded)",
                ops[0].size
            ));
            p(String::new());
            p("| operation | c | requests | req/s | p50 ms | p90 ms | p99 ms | max ms | errors | server CPU µs/req | broker CPU µs/req | client CPU µs/req | other load (cores) |".into());
            p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|".into());
            for s in &ops {
                p(format!(
                    "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {}{} | {} | {} | {} | {:.2} |",
                    op_label(&s.op),
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
                ));
            }
            let errs: Vec<String> = ops
                .iter()
                .filter_map(|s| {
                    s.first_error
                        .as_ref()
                        .map(|e| format!("- {} c={}: {e}", s.op, s.conc))
                })
                .collect();
            if !errs.is_empty() {
                p(String::new());
                p("First error of each run with errors:".into());
                for e in errs {
                    p(e);
                }
            }
            let notes: Vec<String> = ops
                .iter()
                .filter_map(|s| {
                    s.note
                        .as_ref()
                        .map(|n| format!("- {} c={}: {n}", op_label(&s.op), s.conc))
                })
                .collect();
            if !notes.is_empty() {
                p(String::new());
                for n in notes {
                    p(n);
                }
            }
            p(String::new());
            p("Sync create against a direct PUT to the same broker (same run, same concurrency); ratio = direct req/s ÷ create req/s (= mean create latency ÷ mean direct latency):".into());
            p(String::new());
            p("| c | direct PUT req/s | sync create req/s | ratio | direct p50 ms | create p50 ms | p50 ratio |".into());
            p("|---:|---:|---:|---:|---:|---:|---:|".into());
            for &c in &args.concurrency {
                if let (Some(d), Some(cr)) = (
                    find_step(r, "ops", "direct-put", c),
                    find_step(r, "ops", "create", c),
                ) {
                    p(format!(
                        "| {c} | {:.0} | {:.0} | {:.2} | {} | {} | {:.2} |",
                        d.rps,
                        cr.rps,
                        d.rps / cr.rps,
                        ms(d.p50),
                        ms(cr.p50),
                        cr.p50 / d.p50
                    ));
                }
            }
        }
        let scale: Vec<&Step> = r.steps.iter().filter(|s| s.stage == "scale").collect();
        if !scale.is_empty() {
            p(String::new());
            p("### Scaling: list latency by table size".into());
            p(String::new());
            p("| bindings | query | c | req/s | p50 ms | p99 ms | max ms | errors | server CPU µs/req | other load (cores) |".into());
            p("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|".into());
            for s in &scale {
                let query = if s.op == "list-deep" {
                    format!("{} (page {})", op_label(&s.op), s.size.div_ceil(50).max(1))
                } else {
                    op_label(&s.op).to_string()
                };
                p(format!(
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
        if !r.sizes.is_empty() {
            p(String::new());
            p("### Server memory by table size".into());
            p(String::new());
            p("| bindings | seeding took (s) | RSS after seeding (MB) | RSS after list traffic (MB) | peak RSS, VmHWM (MB) | note |".into());
            p("|---:|---:|---:|---:|---:|---|".into());
            for s in &r.sizes {
                p(format!(
                    "| {} | {:.1} | {} | {} | {} | {} |",
                    s.size,
                    s.seed_secs,
                    mb(s.after_seed.rss_kb),
                    mb(s.after_lists.rss_kb),
                    mb(s.after_lists.hwm_kb.max(s.after_seed.hwm_kb)),
                    s.db_note
                ));
            }
        }
        for n in &r.notes {
            p(String::new());
            p(n.clone());
        }
        p(String::new());
        p("### Targets".into());
        p(String::new());
        for line in targets(args, r) {
            p(line);
        }
    }
    o
}

fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "**met**",
        Some(false) => "**NOT met**",
        None => "not measured",
    }
}

fn targets(args: &RunArgs, r: &BackendReport) -> Vec<String> {
    let mut out = Vec::new();
    let create64 = find_step(r, "ops", "create", 64);
    out.push(format!(
        "- sync create ≥ 5,000 req/s at c=64 with p99 < 20 ms: {} ({})",
        verdict(create64.map(|s| s.rps >= 5000.0 && s.p99 < 20.0 && s.errors == 0)),
        create64
            .map(|s| format!(
                "{:.0} req/s, p99 {} ms, {} errors",
                s.rps,
                ms(s.p99),
                s.errors
            ))
            .unwrap_or_default()
    ));
    let ratios: Vec<(usize, f64)> = args
        .concurrency
        .iter()
        .filter_map(|&c| {
            let d = find_step(r, "ops", "direct-put", c)?;
            let cr = find_step(r, "ops", "create", c)?;
            Some((c, d.rps / cr.rps))
        })
        .collect();
    out.push(format!(
        "- create / direct-broker ratio ≤ 1.3: {} ({})",
        verdict(if ratios.is_empty() {
            None
        } else {
            Some(ratios.iter().all(|(_, x)| *x <= 1.3))
        }),
        ratios
            .iter()
            .map(|(c, x)| format!("c={c}: {x:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let list_best = ["list", "list-app"]
        .iter()
        .filter_map(|op| {
            args.concurrency
                .iter()
                .filter_map(|&c| find_step(r, "ops", op, c))
                .max_by(|a, b| a.rps.total_cmp(&b.rps))
        })
        .collect::<Vec<_>>();
    out.push(format!(
        "- list page of 50 ≥ 5,000 req/s: {} ({})",
        verdict(if list_best.is_empty() {
            None
        } else {
            Some(list_best.iter().all(|s| s.rps >= 5000.0))
        }),
        list_best
            .iter()
            .map(|s| format!("{}: best {:.0} req/s at c={}", s.op, s.rps, s.conc))
            .collect::<Vec<_>>()
            .join("; ")
    ));
    let mut sizes: Vec<u64> = r
        .steps
        .iter()
        .filter(|s| s.stage == "scale")
        .map(|s| s.size)
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    if let (Some(&small), Some(&big)) = (sizes.first(), sizes.last()) {
        let mut parts = Vec::new();
        let mut all = true;
        for op in ["list", "list-deep", "list-app"] {
            if let (Some(a), Some(b)) = (find_scale(r, op, 1, small), find_scale(r, op, 1, big)) {
                let x = b.p50 / a.p50;
                all &= x <= 2.0;
                parts.push(format!(
                    "{}: p50 {} → {} ms (×{x:.1})",
                    op,
                    ms(a.p50),
                    ms(b.p50)
                ));
            }
        }
        out.push(format!(
            "- list no more than 2× slower at {big} than at {small} bindings (c=1 p50), deep pages included: {} ({})",
            verdict((!parts.is_empty()).then_some(all)),
            parts.join("; ")
        ));
    }
    if let Some(s) = r
        .sizes
        .iter()
        .filter(|s| s.after_lists.rss_kb > 0)
        .max_by_key(|s| s.size)
    {
        let rss = s.after_lists.rss_kb.max(s.after_seed.rss_kb);
        out.push(format!(
            "- RSS < 60 MB at 1M bindings: {} (at {} bindings: {} MB after list traffic, peak {} MB)",
            verdict(if s.size >= 1_000_000 {
                Some(rss < 60 * 1024)
            } else {
                None
            }),
            s.size,
            mb(rss),
            mb(s.after_lists.hwm_kb)
        ));
    }
    let worst_start = r
        .starts
        .iter()
        .max_by(|a, b| a.first_200_ms.total_cmp(&b.first_200_ms));
    out.push(format!(
        "- server start to first 200 < 150 ms: {} ({})",
        verdict(worst_start.map(|s| s.first_200_ms < 150.0)),
        r.starts
            .iter()
            .map(|s| format!("{}: {:.0} ms", s.what, s.first_200_ms))
            .collect::<Vec<_>>()
            .join("; ")
    ));
    out
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
            "load generator (this process, 1 thread), tether serve (release, default settings), broker process (2 demo brokers × 2 actix workers), all on the same CPUs".into(),
        ),
    ]
}

fn run_main(args: RunArgs) -> anyhow::Result<()> {
    tether::install_crypto_provider();
    let bin = args.tether_bin()?;
    eprintln!("tether-bench: server binary {}", bin.display());
    let header = machine_header(&args);
    let ticks = clock_ticks_per_sec();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let broker = BrokerProc::start()?;
    let mut reports = Vec::new();
    for backend in args.backends() {
        let mut report = BackendReport {
            backend,
            starts: Vec::new(),
            steps: Vec::new(),
            sizes: Vec::new(),
            notes: Vec::new(),
        };
        local.block_on(&rt, async {
            if !args.skip_ops {
                ops_stage(&args, backend, &broker, &mut report, ticks).await?;
            }
            if !args.skip_scale {
                scale_stage(&args, backend, &broker, &mut report, ticks).await?;
            }
            anyhow::Ok(())
        })?;
        reports.push(report);
    }
    drop(broker);
    print!("{}", render(&args, &reports, &header));
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
