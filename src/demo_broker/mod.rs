//! A small, real OSB broker (HTTP on 127.0.0.1) for trying tether out (`tether demo-broker`), for
//! the benchmark, and as the peer in tests. It checks what a platform must send (basic auth,
//! `X-Broker-API-Version`, JSON bodies), records every request, and can be told how to answer:
//! synchronously, asynchronously for N polls, with an error, slowly, or with garbage.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpServer};
use serde_json::{json, Value};

mod handlers;
mod update;

use handlers::handle;

/// One request as the broker received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
    /// When the request arrived.
    pub at: Instant,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn query_param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

/// How the broker answers one kind of request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// The normal answer (bind: 201 with credentials; unbind: 200 `{}`; poll: per state).
    Normal,
    /// Async: 202 with this operation id; polls say `in progress` this many times, then
    /// `final_state` (`succeeded`/`failed`), each poll carrying `Retry-After` if set.
    Async {
        operation: Option<String>,
        polls: u32,
        final_state: &'static str,
        retry_after: Option<u64>,
    },
    /// A fixed status and body.
    Status(u16, String),
    /// Bind (the broker keeps the binding), but answer with this status and body: a broker
    /// that did the work and then sent an answer the platform cannot use.
    Bound(u16, String),
    /// Bind (the broker keeps the binding at once), but answer normally only after this long: a
    /// broker whose answer comes after the platform gave up waiting (binds only).
    BoundLate(Duration),
    /// Sleep, then answer normally.
    Delay(Duration),
}

impl Reply {
    /// A request that never gets an answer (well, not within any sane client timeout).
    pub fn hang() -> Reply {
        Reply::Delay(Duration::from_secs(3600))
    }
}

#[derive(Debug, Clone)]
struct AsyncOp {
    remaining: u32,
    final_state: &'static str,
    retry_after: Option<u64>,
    kind: &'static str,
}

impl AsyncOp {
    /// The operation a scripted `Reply::Async` starts for `kind` (bind, unbind, provision, ...).
    fn scripted(
        kind: &'static str,
        polls: u32,
        final_state: &'static str,
        retry_after: Option<u64>,
    ) -> Self {
        AsyncOp {
            remaining: polls,
            final_state,
            retry_after,
            kind,
        }
    }
}

#[derive(Default)]
struct Inner {
    bindings: HashMap<String, Value>,
    instances: HashMap<String, Value>,
    ops: HashMap<String, AsyncOp>,
    requests: Vec<Recorded>,
    /// Scripted replies, consumed in order, per request kind (`bind`, `unbind`, `poll`, `fetch`,
    /// `provision`, `update`, `deprovision`, `catalog`); when empty, the default for the kind is used.
    script: HashMap<&'static str, VecDeque<Reply>>,
    defaults: HashMap<&'static str, Reply>,
    /// Set by [`DemoBroker::set_recording`]`(false)`: a benchmark sends millions of requests.
    not_recording: bool,
    /// Bindings whose (slow) bind is still running; an unbind meanwhile cancels the creation
    /// (OSB A.8: a DELETE during a create must stop it).
    creating: HashSet<String>,
    cancelled: HashSet<String>,
    /// Requests being answered now, per kind, and the most ever at once (all kinds).
    in_flight: HashMap<&'static str, usize>,
    in_flight_total: usize,
    max_in_flight: usize,
    /// Polls/fetches in flight per binding or instance id, and every time one arrived while
    /// another on the same id was still being answered.
    per_resource: HashMap<String, usize>,
    overlaps: Vec<String>,
}

pub struct BrokerState {
    pub username: String,
    pub password: String,
    catalog: Mutex<Value>,
    inner: Mutex<Inner>,
}

/// A running demo broker. Stops when dropped.
pub struct DemoBroker {
    pub url: String,
    pub state: Arc<BrokerState>,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub const SERVICE_ID: &str = "3d8f2ee1-tether-demo-db";
pub const PLAN_SMALL_ID: &str = "3d8f2ee1-tether-demo-db-small";
pub const PLAN_ASYNC_ID: &str = "3d8f2ee1-tether-demo-db-async";
pub const UNBINDABLE_SERVICE_ID: &str = "3d8f2ee1-tether-demo-queue";
pub const UNBINDABLE_PLAN_ID: &str = "3d8f2ee1-tether-demo-queue-basic";

/// The demo catalog: a bindable, retrievable `demo-db` with a sync and an async plan, and a
/// non-bindable `demo-queue`.
pub fn demo_catalog() -> Value {
    json!({
        "services": [
            {
                "id": SERVICE_ID,
                "name": "demo-db",
                "description": "A pretend database for trying tether out",
                "bindable": true,
                "bindings_retrievable": true,
                "instances_retrievable": true,
                "plan_updateable": false,
                "tags": ["demo", "database"],
                "metadata": {"displayName": "Demo DB"},
                "plans": [
                    {"id": PLAN_SMALL_ID, "name": "small", "description": "Binds synchronously", "free": true},
                    {"id": PLAN_ASYNC_ID, "name": "async", "description": "Binds asynchronously", "free": true,
                     "maximum_polling_duration": 3600}
                ]
            },
            {
                "id": UNBINDABLE_SERVICE_ID,
                "name": "demo-queue",
                "description": "A service that cannot be bound",
                "bindable": false,
                "plans": [
                    {"id": UNBINDABLE_PLAN_ID, "name": "basic", "description": "Basic"}
                ]
            }
        ]
    })
}

impl BrokerState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn next_reply(&self, kind: &'static str) -> Reply {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = inner.script.get_mut(kind).and_then(VecDeque::pop_front) {
            return r;
        }
        inner.defaults.get(kind).cloned().unwrap_or(Reply::Normal)
    }
}

impl DemoBroker {
    /// Starts a broker on 127.0.0.1 (port 0: any free port).
    pub fn start(port: u16, username: &str, password: &str) -> std::io::Result<DemoBroker> {
        Self::start_with_catalog(port, username, password, demo_catalog())
    }

    pub fn start_with_catalog(
        port: u16,
        username: &str,
        password: &str,
        catalog: Value,
    ) -> std::io::Result<DemoBroker> {
        let state = Arc::new(BrokerState {
            username: username.to_string(),
            password: password.to_string(),
            catalog: Mutex::new(catalog),
            inner: Mutex::new(Inner::default()),
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let st = state.clone();
        let thread = std::thread::Builder::new()
            .name("demo-broker".into())
            .spawn(move || {
                let sys = actix_web::rt::System::new();
                sys.block_on(async move {
                    let data = web::Data::from(st);
                    let server = HttpServer::new(move || {
                        App::new()
                            .app_data(data.clone())
                            .app_data(web::PayloadConfig::new(1 << 20))
                            .default_service(web::to(handle))
                    })
                    .workers(2)
                    .disable_signals()
                    .shutdown_timeout(1)
                    .bind(("127.0.0.1", port));
                    let server = match server {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    };
                    let addr = server.addrs()[0];
                    let server = server.run();
                    let _ = tx.send(Ok((addr, server.handle())));
                    let _ = server.await;
                });
            })?;
        let (addr, handle) = rx
            .recv()
            .map_err(|_| std::io::Error::other("demo broker thread died"))??;
        Ok(DemoBroker {
            url: format!("http://{addr}"),
            state,
            handle,
            thread: Some(thread),
        })
    }

    /// Queues replies for a request kind (`bind`, `unbind`, `poll`, `fetch`, `provision`,
    /// `deprovision`, `catalog`).
    pub fn script(&self, kind: &'static str, replies: impl IntoIterator<Item = Reply>) {
        let mut inner = self.state.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.script.entry(kind).or_default().extend(replies);
    }

    /// Sets the reply used when nothing is scripted.
    pub fn set_default(&self, kind: &'static str, reply: Reply) {
        let mut inner = self.state.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.defaults.insert(kind, reply);
    }

    /// Turns request recording on (the default) or off (for benchmarks: `requests()` grows
    /// without bound otherwise).
    pub fn set_recording(&self, on: bool) {
        let mut inner = self.state.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.not_recording = !on;
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .requests
            .clone()
    }

    /// Requests whose method is `method` and path contains `fragment`.
    pub fn requests_to(&self, method: &str, fragment: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path.contains(fragment))
            .collect()
    }

    pub fn clear_requests(&self) {
        self.state
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .requests
            .clear();
    }

    /// Bindings the broker currently holds.
    pub fn binding_ids(&self) -> Vec<String> {
        self.state
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .bindings
            .keys()
            .cloned()
            .collect()
    }

    pub fn has_binding(&self, id: &str) -> bool {
        self.state
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .bindings
            .contains_key(id)
    }

    pub fn has_instance(&self, id: &str) -> bool {
        self.state.lock().instances.contains_key(id)
    }

    /// Replaces the catalog (takes effect at the next `GET /v2/catalog`).
    pub fn set_catalog(&self, catalog: Value) {
        *self.state.catalog.lock().unwrap_or_else(|e| e.into_inner()) = catalog;
    }

    /// Sets how many more polls of a running async operation say `in progress` (false if there
    /// is no such operation).
    pub fn set_remaining_polls(&self, id: &str, polls: u32) -> bool {
        match self.state.lock().ops.get_mut(id) {
            Some(op) => {
                op.remaining = polls;
                true
            }
            None => false,
        }
    }

    /// Requests of this kind (`bind`, `poll`, ...) being answered right now.
    pub fn in_flight(&self, kind: &str) -> usize {
        self.state.lock().in_flight.get(kind).copied().unwrap_or(0)
    }

    /// The most requests (of any kind) ever answered at once since the last reset.
    pub fn max_in_flight(&self) -> usize {
        self.state.lock().max_in_flight
    }

    pub fn reset_max_in_flight(&self) {
        let mut inner = self.state.lock();
        inner.max_in_flight = inner.in_flight_total;
    }

    /// Every poll or fetch that arrived while another one on the same binding/instance was
    /// still being answered (`"poll:<id>"`); empty when a platform never polls one resource
    /// concurrently.
    pub fn overlapping_requests(&self) -> Vec<String> {
        self.state.lock().overlaps.clone()
    }
}

impl Drop for DemoBroker {
    fn drop(&mut self) {
        stop_server_thread(&self.handle, self.thread.take());
    }
}

/// Stops an actix server that runs on a thread of its own (the demo broker, a test's server)
/// and waits for that thread. Stopping needs a runtime, and the caller may be inside one (an
/// async test dropping it): the stop runs from a plain thread.
pub fn stop_server_thread(
    handle: &actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
) {
    let handle = handle.clone();
    let stopper = std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(handle.stop(false));
        }
    });
    let _ = stopper.join();
    if let Some(t) = thread {
        let _ = t.join();
    }
}
