//! A PostgreSQL server of a test's own: `initdb` and `pg_ctl` from the machine's PostgreSQL
//! binaries (`pg_config --bindir`), in a temp directory, on a free port, run as the `postgres`
//! user when the tests run as root. For tests that stop, restart or reconfigure the database,
//! which they must never do to the shared server other tests use.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The server the PostgreSQL half of the tests uses, decided once per test binary:
/// `TETHER_TEST_PG_URL` if set; else the local server at 127.0.0.1:5432 if it answers; else a
/// private server started from the installed binaries (a newcomer's machine with PostgreSQL
/// installed but not running), stopped when the test process exits. None if there is none.
pub fn shared_admin_url() -> Option<String> {
    static URL: OnceLock<Option<String>> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("TETHER_TEST_PG_URL") {
            return Some(url);
        }
        let local = std::net::SocketAddr::from(([127, 0, 0, 1], 5432));
        if std::net::TcpStream::connect_timeout(&local, Duration::from_secs(1)).is_ok() {
            return Some("postgres://postgres@127.0.0.1:5432/postgres".to_string());
        }
        PrivatePostgres::binaries()?;
        eprintln!("no PostgreSQL at 127.0.0.1:5432: starting a private one for these tests");
        let pg = PrivatePostgres::start();
        let url = pg.url();
        *PRIVATE.lock().unwrap_or_else(|e| e.into_inner()) = Some(pg);
        // SAFETY: registers a plain extern "C" function without arguments.
        unsafe { libc::atexit(stop_private_server) };
        Some(url)
    })
    .clone()
}

/// The private server `shared_admin_url` started, stopped at exit.
static PRIVATE: Mutex<Option<PrivatePostgres>> = Mutex::new(None);

extern "C" fn stop_private_server() {
    if let Ok(mut pg) = PRIVATE.lock() {
        pg.take();
    }
}

pub struct PrivatePostgres {
    pub port: u16,
    bindir: PathBuf,
    root: PathBuf,
    /// Run the server's commands through `runuser -u postgres` (the tests run as root, and
    /// PostgreSQL refuses to run as root).
    as_postgres: bool,
}

impl PrivatePostgres {
    /// The directory of `initdb`/`pg_ctl`, if this machine has PostgreSQL's server binaries.
    pub fn binaries() -> Option<PathBuf> {
        let out = Command::new("pg_config").arg("--bindir").output().ok()?;
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        (dir.join("initdb").exists() && dir.join("pg_ctl").exists()).then_some(dir)
    }

    /// Creates and starts a new server; panics with the reason if it cannot.
    pub fn start() -> PrivatePostgres {
        let bindir = Self::binaries().expect(
            "PostgreSQL's server binaries (pg_config --bindir: initdb, pg_ctl) are needed for this test",
        );
        // SAFETY: geteuid has no preconditions.
        let as_postgres = unsafe { libc_geteuid() } == 0;
        let root =
            std::env::temp_dir().join(format!("tether-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&root).expect("temp dir");
        let pg = PrivatePostgres {
            port: super::process::free_port(),
            bindir,
            root,
            as_postgres,
        };
        if as_postgres {
            pg.run(
                "chown",
                &["-R", "postgres:postgres", &pg.root.to_string_lossy()],
                false,
            );
        }
        let data = pg.data_dir();
        pg.run(
            &pg.bin("initdb"),
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            true,
        );
        // Test settings: small, and no fsync (no test here survives a machine crash anyway).
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
             fsync = off\nfull_page_writes = off\nshared_buffers = 32MB\nmax_connections = 60\n",
            pg.port,
            pg.root.display()
        );
        let conf_path = Path::new(&data).join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path).expect("postgresql.conf");
        text.push_str(&conf);
        std::fs::write(&conf_path, text).expect("write postgresql.conf");
        pg.start_again();
        pg
    }

    /// A URL for database `postgres` of this server.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn data_dir(&self) -> String {
        self.root.join("data").to_string_lossy().into_owned()
    }

    fn bin(&self, name: &str) -> String {
        self.bindir.join(name).to_string_lossy().into_owned()
    }

    fn log_file(&self) -> String {
        self.root.join("server.log").to_string_lossy().into_owned()
    }

    fn run(&self, program: &str, args: &[&str], as_server_user: bool) -> Output {
        let mut cmd = if as_server_user && self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", program]);
            c
        } else {
            Command::new(program)
        };
        let out = cmd
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn pg_ctl(&self, args: &[&str]) {
        let data = self.data_dir();
        let log = self.log_file();
        let mut all = vec!["-D", data.as_str(), "-l", log.as_str(), "-w", "-t", "60"];
        all.extend_from_slice(args);
        self.run(&self.bin("pg_ctl"), &all, true);
    }

    /// Starts the (stopped) server and waits until it accepts connections.
    pub fn start_again(&self) {
        self.pg_ctl(&["start"]);
        self.wait_ready(Duration::from_secs(30));
    }

    /// Stops the server, disconnecting every client (`-m fast`, what an operator's restart
    /// does).
    pub fn stop(&self) {
        self.pg_ctl(&["stop", "-m", "fast"]);
    }

    /// Stop and start in one step.
    pub fn restart(&self) {
        self.pg_ctl(&["restart", "-m", "fast"]);
        self.wait_ready(Duration::from_secs(30));
    }

    fn wait_ready(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "the private PostgreSQL on port {} did not come up",
            self.port
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data_dir();
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", &self.bin("pg_ctl")]);
            c
        } else {
            Command::new(self.bin("pg_ctl"))
        };
        let _ = cmd
            .args(["-D", &data, "stop", "-m", "immediate", "-w"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}
