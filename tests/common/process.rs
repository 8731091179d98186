//! The real `tether` binary as a child process: `tether serve` with its log captured, and the
//! other subcommands, each started without any `TETHER_*` setting of the environment the tests
//! run in.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_tether");

/// A `Command` for the tether binary, without any `TETHER_*` setting of the test's environment.
pub fn tether_command() -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("TETHER_") {
            cmd.env_remove(k);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A running `tether serve`; killed (SIGKILL) when dropped, its log printed if the test failed.
pub struct ServerProcess {
    pub name: String,
    child: Option<Child>,
    pub base: String,
    pub port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// Starts `tether serve` on a free port with these settings and waits until it listens.
    pub fn start(name: &str, db_url: &str, secrets: &Path, env: &[(&str, &str)]) -> ServerProcess {
        let port = free_port();
        let mut cmd = tether_command();
        cmd.arg("serve")
            .env("TETHER_DATABASE_URL", db_url)
            .env("TETHER_BIND", format!("127.0.0.1:{port}"))
            .env("TETHER_SECRETS_FILE", secrets)
            .env("TETHER_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn tether serve");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let lines = log.clone();
        std::thread::spawn(move || {
            // Reads until the process dies (the pipe must be drained, or logging would block).
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("tether is listening") {
                    let _ = ready_tx.send(());
                }
                lines.lock().unwrap().push(line);
            }
        });
        let server = ServerProcess {
            name: name.to_string(),
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
            port,
            log,
        };
        if ready_rx.recv_timeout(Duration::from_secs(60)).is_err() {
            server.dump_log();
            panic!("{name} did not start");
        }
        server
    }

    /// The log so far, one string.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits (bounded) for the process to end by itself (a crash); panics if it does not.
    pub fn wait_for_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + limit;
        let child = self.child.as_mut().expect("a running child");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} is still running",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal by name (`TERM`, `INT`) with kill(1).
    pub fn signal(&self, name: &str) {
        let child = self.child.as_ref().expect("a running child");
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(child.id().to_string())
            .status()
            .expect("kill(1)");
        assert!(status.success(), "kill -{name} failed");
    }

    /// SIGKILL (what `Child::kill` sends on Unix), then reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill");
            child.wait().expect("wait");
        }
    }

    pub fn dump_log(&self) {
        eprintln!("----- log of {} -----", self.name);
        for line in self.log.lock().unwrap().iter() {
            eprintln!("{line}");
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_log();
        }
        self.kill();
    }
}
