//! `tether serve`: the API's listener, the job runner, the optional metrics listener, and the
//! way they stop.
//!
//! Shutdown on SIGTERM or SIGINT (Ctrl-C): readiness turns 503 first and the listeners stop
//! accepting; the job runner stops taking jobs, gives its running jobs the grace period
//! (`--shutdown-grace-secs`) and then releases the leases of those still unfinished, so another
//! instance takes them at once; then the HTTP workers stop, each after its requests in flight
//! (again within the grace period); the SQLite writer drains and the pools close before the
//! process exits (0). A second signal exits at once (128 + the signal's number).

use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{web, HttpServer};

use crate::app::AppState;
use crate::config::Config;
use crate::jobs::{JobRunner, RunnerConfig};
use crate::lifecycle::Lifecycle;

/// Runs the server until SIGTERM/SIGINT and everything has stopped.
pub async fn run_server(config: Config, runner_config: RunnerConfig) -> anyhow::Result<()> {
    let started = Instant::now();
    let bind = config.bind.clone();
    let workers = config.workers;
    let grace = config.shutdown_grace;
    let metrics_bind = config.metrics_bind.clone().filter(|_| config.metrics);
    let state = web::Data::new(AppState::new(config)?);
    refuse_unknown_keys(&state)?;
    let data = state.clone();
    let mut server = HttpServer::new(move || crate::build_app!(data))
        .backlog(2048)
        .disable_signals()
        .shutdown_timeout(grace.as_secs())
        .bind(&bind)
        .map_err(|e| listen_error(&bind, "--bind (TETHER_BIND)", e))?;
    if let Some(w) = workers {
        server = server.workers(w.max(1));
    }
    let mut handles = Vec::new();
    let metrics_server = match &metrics_bind {
        Some(addr) => {
            let running = metrics_listener(&state, addr)?;
            handles.push(running.handle());
            // A server serves only while it is polled.
            Some(actix_web::rt::spawn(running))
        }
        None => None,
    };
    let addrs = server.addrs();
    let running = server.run();
    handles.push(running.handle());
    let runner = JobRunner::new(state.clone().into_inner(), runner_config).spawn();
    tracing::info!(
        addresses = ?addrs,
        metrics_address = metrics_bind.as_deref().unwrap_or("-"),
        backend = ?state.db.backend(),
        startup_ms = started.elapsed().as_millis() as u64,
        "tether is listening"
    );
    actix_web::rt::spawn(on_signals(state.lifecycle.clone(), handles.clone()));
    let mut serving = actix_web::rt::spawn(running);
    let ended_early = tokio::select! {
        result = &mut serving => Some(result),
        _ = state.lifecycle.stopping() => None,
    };
    // The runner has seen the shutdown too (or the server failed: then it is told here).
    state.lifecycle.begin_shutdown();
    // The job runner finishes (or hands over) its jobs while the HTTP workers still run: a
    // broker connection a job is using may belong to a worker's runtime, and goes with it.
    if tokio::time::timeout(grace + Duration::from_secs(10), runner)
        .await
        .is_err()
    {
        tracing::warn!("the job runner did not stop in time");
    }
    for server in handles {
        server.stop(true).await;
    }
    match ended_early {
        Some(result) => result??,
        None => serving.await??,
    }
    if let Some(metrics) = metrics_server {
        let _ = metrics.await;
    }
    state.db.close();
    tracing::info!("tether stopped");
    Ok(())
}

/// Every instance on one database must have the same secrets: one whose keys cannot open
/// what the others sealed stops here, naming the keys it lacks.
fn refuse_unknown_keys(state: &AppState) -> anyhow::Result<()> {
    let unknown =
        crate::service::rotation::unknown_key_labels(&state.db, &state.crypto).map_err(|e| {
            anyhow::anyhow!(
                "cannot check the stored credentials' keys: {}",
                e.log_text()
            )
        })?;
    if unknown.is_empty() {
        return Ok(());
    }
    state.db.close();
    let names: Vec<&str> = unknown.iter().map(String::as_str).collect();
    anyhow::bail!(
        "the database holds credentials sealed with encryption keys this server does not have: \
         {}. Every instance on one database needs the same secrets (--secrets-file / \
         TETHER_SECRETS_FILE): use the secrets file of the instance that created the database",
        names.join(", ")
    )
}

/// A listener of its own for `GET /metrics` (one worker: a scrape is rare and cheap).
fn metrics_listener(
    state: &web::Data<AppState>,
    addr: &str,
) -> anyhow::Result<actix_web::dev::Server> {
    let data = state.clone();
    let server = HttpServer::new(move || {
        actix_web::App::new()
            .app_data(data.clone())
            .route("/metrics", web::get().to(crate::api::metrics::metrics_only))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .bind(addr)
    .map_err(|e| listen_error(addr, "--metrics-bind (TETHER_METRICS_BIND)", e))?;
    Ok(server.run())
}

/// What an operator reads when an address cannot be listened on.
fn listen_error(addr: &str, option: &str, e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::AddrInUse {
        anyhow::anyhow!(
            "cannot listen on {addr}: the address is already in use (another tether or another \
             program listens there); stop it or choose another address with {option}"
        )
    } else {
        anyhow::anyhow!("cannot listen on {addr}: {e}; choose another address with {option}")
    }
}

/// First SIGTERM/SIGINT: readiness 503, listeners stop gracefully. Second: exit at once.
async fn on_signals(lifecycle: Lifecycle, servers: Vec<ServerHandle>) {
    let Some(mut signals) = Signals::new() else {
        return;
    };
    let first = signals.next().await;
    tracing::info!(
        signal = first,
        "shutting down: readiness is 503, in-flight requests and running jobs get the grace \
         period; a second signal exits at once"
    );
    lifecycle.begin_shutdown();
    // No new connections from now on; the requests in flight finish, and the listeners close
    // once the job runner has stopped (see `run_server`).
    for server in servers {
        server.pause().await;
    }
    let second = signals.next().await;
    tracing::warn!(signal = second, "second signal: exiting at once");
    let code = if second == "SIGINT" { 130 } else { 143 };
    crate::logging::write_pending_now();
    std::process::exit(code);
}

/// SIGTERM and SIGINT, listened for from start to exit (none is missed between two waits).
#[cfg(unix)]
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn new() -> Option<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Some(Signals { term, int }),
            _ => {
                tracing::error!("cannot listen for SIGTERM/SIGINT");
                None
            }
        }
    }

    /// The name of the next signal.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn new() -> Option<Signals> {
        Some(Signals)
    }

    async fn next(&mut self) -> &'static str {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}
