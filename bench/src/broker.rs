//! The broker process (`tether-bench broker`): two of tether's demo OSB brokers, one binding
//! synchronously, one answering every bind with 202 and settling on the first poll.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};

use anyhow::{anyhow, bail, Context as _};
use serde_json::Value;
use tether::demo_broker::{self, DemoBroker, Reply};

pub const BROKER_USER: &str = "bench-broker";
pub const BROKER_PASS: &str = "bench-broker-secret";

pub fn async_catalog() -> Value {
    // Same shape as the demo catalog, other ids: the async broker's plans are its own.
    let text = demo_broker::demo_catalog()
        .to_string()
        .replace("3d8f2ee1-tether-", "3d8f2ee1-bench-async-");
    serde_json::from_str(&text).unwrap_or_else(|_| demo_broker::demo_catalog())
}

pub fn async_plan_id() -> String {
    demo_broker::PLAN_SMALL_ID.replace("3d8f2ee1-tether-", "3d8f2ee1-bench-async-")
}

pub fn broker_main() -> anyhow::Result<()> {
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

pub struct BrokerProc {
    pub child: Child,
    pub _stdin: ChildStdin,
    pub sync_url: String,
    pub async_url: String,
    pub sync_addr: SocketAddr,
}

impl BrokerProc {
    pub fn start() -> anyhow::Result<BrokerProc> {
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

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for BrokerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
