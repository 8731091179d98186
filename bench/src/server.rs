//! The servers under test: a database for a stage (SQLite file or PostgreSQL database), `tether
//! serve` and the floor server (`tether-bench floor`) as child processes, started the way an
//! operator starts them and timed from spawn to their first 200.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use diesel::connection::SimpleConnection;
use diesel::Connection;

use crate::args::{Backend, RunArgs};
use crate::http::{build_request, HttpConn};

/// The URL every server of the bench is reached at as far as tokens go (their `iss`), whatever
/// port it listens on, so that one token works across restarts.
pub const EXTERNAL_URL: &str = "http://tether.bench";

/// A database for one stage: a temp directory (SQLite file and secrets), or a fresh PostgreSQL
/// database (secrets still in a temp directory). Removed when dropped.
pub struct DbTarget {
    pub dir: PathBuf,
    pub url: String,
    pg: Option<(String, String)>,
}

impl DbTarget {
    pub fn new(backend: Backend, pg_admin: &str, label: &str) -> anyhow::Result<DbTarget> {
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
                let url = create_pg_database(pg_admin, &name)?;
                Ok(DbTarget {
                    url,
                    dir,
                    pg: Some((pg_admin.to_string(), name)),
                })
            }
        }
    }

    pub fn secrets(&self) -> PathBuf {
        self.dir.join("secrets.json")
    }

    pub fn size_note(&self) -> String {
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

/// Creates database `name` (dropping an old one of that name) and returns its URL. Where
/// `pg_stat_statements` is loaded, its view is created in the new database so the report can
/// read it; elsewhere that step fails quietly.
fn create_pg_database(pg_admin: &str, name: &str) -> anyhow::Result<String> {
    let mut conn = diesel::PgConnection::establish(pg_admin)
        .with_context(|| format!("connecting to PostgreSQL at {pg_admin}"))?;
    conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))?;
    conn.batch_execute(&format!("CREATE DATABASE {name}"))?;
    let mut url = reqwest::Url::parse(pg_admin)?;
    url.set_path(&format!("/{name}"));
    let url = url.to_string();
    if let Ok(mut db) = diesel::PgConnection::establish(&url) {
        let _ = db.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
    }
    Ok(url)
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
pub fn strip_ansi(s: &str) -> String {
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

pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// A server process under test (tether or the floor); stopped (SIGTERM) when dropped.
pub struct ServerProc {
    child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
    pub first_200: Duration,
}

impl ServerProc {
    /// `tether serve` on `db`, with the bench's settings, `--server-env` and `extra_env`.
    pub async fn start(
        args: &RunArgs,
        db: &DbTarget,
        tag: &str,
        extra_env: &[(&str, &str)],
    ) -> anyhow::Result<ServerProc> {
        let bin = args.tether_bin()?;
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
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
            .env("TETHER_LOG", "info");
        for kv in &args.server_env {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| anyhow!("--server-env wants KEY=VALUE, got {kv}"))?;
            cmd.env(k, v);
        }
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        Self::spawn(cmd, addr, db.dir.join(format!("server-{tag}.log"))).await
    }

    /// The floor server (this binary, `floor` subcommand) on `db`, calling `broker_url`.
    pub async fn start_floor(
        db: &DbTarget,
        broker_url: &str,
        tag: &str,
    ) -> anyhow::Result<ServerProc> {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("floor")
            .arg("--db")
            .arg(&db.url)
            .arg("--broker")
            .arg(broker_url)
            .arg("--bind")
            .arg(addr.to_string());
        Self::spawn(cmd, addr, db.dir.join(format!("floor-{tag}.log"))).await
    }

    /// Spawns `cmd` (output to `log`) and waits for its first `200` to `GET /v2/info`, probed
    /// every millisecond.
    async fn spawn(mut cmd: Command, addr: SocketAddr, log: PathBuf) -> anyhow::Result<Self> {
        let log_file = std::fs::File::create(&log)?;
        cmd.stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        let started = Instant::now();
        let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
        let probe = build_request("GET", addr, "/v2/info", "", "", None);
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "{cmd:?} exited ({status}) before answering; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if started.elapsed() > Duration::from_secs(120) {
                let _ = child.kill();
                bail!("{cmd:?} did not answer within 120 s");
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
        Ok(ServerProc {
            child,
            addr,
            log,
            first_200: started.elapsed(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `startup_ms` from the server's "tether is listening" log line.
    pub fn reported_startup_ms(&self) -> Option<u64> {
        let raw = std::fs::read_to_string(&self.log).ok()?;
        let text = strip_ansi(&raw);
        let line = text.lines().find(|l| l.contains("tether is listening"))?;
        let rest = &line[line.find("startup_ms=")? + "startup_ms=".len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    }

    pub fn stop(mut self) {
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

pub fn tether_token(args: &RunArgs, db: &DbTarget) -> anyhow::Result<String> {
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
