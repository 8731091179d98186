//! The bench's private PostgreSQL server: `initdb` and `pg_ctl` from `pg_config --bindir`, run
//! as the `postgres` user (through `runuser` when the bench runs as root), in a temp directory,
//! on a free port, with the settings below (printed in the report) and `pg_stat_statements`
//! loaded. Stopped and removed when dropped. Also: reading `pg_stat_statements`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _};
use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Double, Text};
use diesel::{Connection, QueryableByName, RunQueryDsl};

use crate::server::free_port;

/// The private server's settings, besides `port`, `shared_buffers` and the socket directory.
/// Durability stays as in production (fsync, synchronous_commit, full_page_writes on).
const SETTINGS: &[(&str, &str)] = &[
    ("listen_addresses", "'127.0.0.1'"),
    ("max_connections", "200"),
    ("effective_cache_size", "1GB"),
    ("work_mem", "8MB"),
    ("maintenance_work_mem", "256MB"),
    ("wal_buffers", "16MB"),
    ("max_wal_size", "4GB"),
    ("checkpoint_timeout", "15min"),
    ("fsync", "on"),
    ("synchronous_commit", "on"),
    ("full_page_writes", "on"),
    ("shared_preload_libraries", "'pg_stat_statements'"),
    ("pg_stat_statements.track", "top"),
    ("pg_stat_statements.max", "1000"),
    ("track_io_timing", "on"),
    ("log_min_messages", "warning"),
];

pub struct PrivatePg {
    dir: PathBuf,
    pg_ctl: PathBuf,
    as_root: bool,
    pub admin_url: String,
    /// `name = value` lines as written to postgresql.conf.
    pub settings: Vec<String>,
    pub version: String,
}

impl PrivatePg {
    pub fn start(shared_buffers: &str) -> anyhow::Result<PrivatePg> {
        let bindir = pg_bindir()?;
        let as_root = is_root();
        let dir = std::env::temp_dir().join(format!("tether-bench-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        if as_root {
            run(Command::new("chown").arg("postgres:").arg(&dir), "chown")?;
        }
        let data = dir.join("data");
        let mut initdb = postgres_command(as_root, &bindir.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync");
        run(&mut initdb, "initdb")?;
        let port = free_port()?;
        let settings = settings(port, shared_buffers, &dir);
        append_settings(&data.join("postgresql.conf"), &settings)?;
        let mut pg = PrivatePg {
            pg_ctl: bindir.join("pg_ctl"),
            as_root,
            admin_url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            settings,
            version: String::new(),
            dir,
        };
        let mut start = postgres_command(as_root, &pg.pg_ctl);
        start
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(pg.dir.join("postgres.log"))
            .args(["-w", "-t", "60", "start"]);
        run(&mut start, "pg_ctl start")?;
        pg.version = server_version(&pg.admin_url)?;
        Ok(pg)
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let mut stop = postgres_command(self.as_root, &self.pg_ctl);
        stop.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "fast", "-w", "stop"]);
        if let Err(e) = run(&mut stop, "pg_ctl stop") {
            eprintln!("tether-bench: {e:#}");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn settings(port: u16, shared_buffers: &str, dir: &Path) -> Vec<String> {
    let mut out = vec![
        format!("port = {port}"),
        format!("shared_buffers = {shared_buffers}"),
        format!("unix_socket_directories = '{}'", dir.display()),
    ];
    out.extend(SETTINGS.iter().map(|(k, v)| format!("{k} = {v}")));
    out
}

fn append_settings(conf: &Path, settings: &[String]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(conf)?;
    writeln!(f, "\n# tether-bench")?;
    for line in settings {
        writeln!(f, "{line}")?;
    }
    Ok(())
}

fn pg_bindir() -> anyhow::Result<PathBuf> {
    let out = Command::new("pg_config").arg("--bindir").output().context(
        "running pg_config --bindir (install PostgreSQL's server package, or pass --pg-url)",
    )?;
    if !out.status.success() {
        bail!("pg_config --bindir failed");
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .is_some_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `bin` as the `postgres` user: PostgreSQL refuses to run as root.
fn postgres_command(as_root: bool, bin: &Path) -> Command {
    if as_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

fn run(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn server_version(url: &str) -> anyhow::Result<String> {
    #[derive(QueryableByName)]
    struct V {
        #[diesel(sql_type = Text)]
        v: String,
    }
    let mut conn = diesel::PgConnection::establish(url)?;
    let v: V = diesel::sql_query("SELECT version() AS v").get_result(&mut conn)?;
    Ok(v.v)
}

/// One line of `pg_stat_statements`.
#[derive(QueryableByName, Debug, Clone)]
pub struct Statement {
    #[diesel(sql_type = BigInt)]
    pub calls: i64,
    #[diesel(sql_type = Double)]
    pub total_ms: f64,
    #[diesel(sql_type = Double)]
    pub mean_ms: f64,
    #[diesel(sql_type = BigInt)]
    pub rows: i64,
    #[diesel(sql_type = Text)]
    pub query: String,
}

/// Forgets the statistics (before a run). False where the extension is not there.
pub fn reset_statements(db_url: &str) -> bool {
    diesel::PgConnection::establish(db_url)
        .ok()
        .is_some_and(|mut c| c.batch_execute("SELECT pg_stat_statements_reset()").is_ok())
}

/// The `n` statements of database `db_url` with the most total execution time.
pub fn top_statements(db_url: &str, n: usize) -> anyhow::Result<Vec<Statement>> {
    let mut conn = diesel::PgConnection::establish(db_url)?;
    let sql = format!(
        "SELECT calls::bigint AS calls, total_exec_time::float8 AS total_ms, \
         mean_exec_time::float8 AS mean_ms, rows::bigint AS rows, \
         regexp_replace(query, '\\s+', ' ', 'g') AS query \
         FROM pg_stat_statements \
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND query NOT LIKE '%pg_stat_statements%' \
         ORDER BY total_exec_time DESC LIMIT {n}"
    );
    let mut rows: Vec<Statement> = diesel::sql_query(sql).load(&mut conn)?;
    for r in &mut rows {
        r.query = shorten_sql(&r.query);
    }
    Ok(rows)
}

/// A statement made readable in a table: column lists (of a SELECT, an INSERT, an UPDATE's
/// SET) become `…N columns…`, and the text is cut at 300 characters.
pub fn shorten_sql(sql: &str) -> String {
    let mut out = collapse_between(sql, "SELECT ", " FROM ");
    out = collapse_between(&out, "\" (", ") VALUES");
    out = collapse_between(&out, " SET ", " WHERE ");
    if out.chars().count() > 300 {
        out = out.chars().take(300).collect::<String>() + "…";
    }
    out
}

/// Replaces each list of 4 or more comma-separated items between `open` and the next `close`
/// (with no nested `open` in it) by a count.
fn collapse_between(sql: &str, open: &str, close: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(i) = rest.find(open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(close) else { break };
        let list = &after[..j];
        out.push_str(&rest[..i + open.len()]);
        if list.contains(open.trim()) {
            // A nested one (`SELECT EXISTS (SELECT …`): go on from inside.
            rest = after;
            continue;
        }
        let items = list.matches(", ").count() + 1;
        if items >= 4 {
            out.push_str(&format!("…{items} columns…"));
        } else {
            out.push_str(list);
        }
        rest = &after[j..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::shorten_sql;

    #[test]
    fn column_lists_become_counts() {
        let sql = r#"SELECT "b"."id", "b"."guid", "b"."app_guid", "b"."name" FROM "b" WHERE "b"."guid" = $1"#;
        assert_eq!(
            shorten_sql(sql),
            r#"SELECT …4 columns… FROM "b" WHERE "b"."guid" = $1"#
        );
        let ins = r#"INSERT INTO "b" ("a", "b", "c", "d", "e") VALUES ($1, $2, $3, $4, $5)"#;
        assert_eq!(
            shorten_sql(ins),
            r#"INSERT INTO "b" (…5 columns…) VALUES ($1, $2, $3, $4, $5)"#
        );
        let upd = r#"UPDATE "b" SET "a" = $1, "b" = $2, "c" = $3, "d" = $4 WHERE "id" = $5"#;
        assert_eq!(
            shorten_sql(upd),
            r#"UPDATE "b" SET …4 columns… WHERE "id" = $5"#
        );
        assert_eq!(shorten_sql("SELECT 1 FROM t"), "SELECT 1 FROM t");
        let nested = r#"SELECT EXISTS (SELECT "a", "b", "c", "d" FROM "t" WHERE "a" = $1)"#;
        assert_eq!(
            shorten_sql(nested),
            r#"SELECT EXISTS (SELECT …4 columns… FROM "t" WHERE "a" = $1)"#
        );
    }
}
