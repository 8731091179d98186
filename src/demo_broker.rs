//! A small, real OSB broker (HTTP on 127.0.0.1) for trying tether out (`tether demo-broker`), for
//! the benchmark, and as the peer in tests. It checks what a platform must send (basic auth,
//! `X-Broker-API-Version`, JSON bodies), records every request, and can be told how to answer:
//! synchronously, asynchronously for N polls, with an error, slowly, or with garbage.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine;
use serde_json::{json, Value};

mod update;

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

/// Counts a request as in flight until dropped (also when the client goes away mid-request).
struct InFlight {
    state: web::Data<BrokerState>,
    kind: &'static str,
    resource: Option<String>,
}

impl InFlight {
    fn enter(state: &web::Data<BrokerState>, kind: &'static str, resource: Option<String>) -> Self {
        let mut inner = state.lock();
        *inner.in_flight.entry(kind).or_default() += 1;
        inner.in_flight_total += 1;
        inner.max_in_flight = inner.max_in_flight.max(inner.in_flight_total);
        if let Some(r) = &resource {
            let n = inner.per_resource.entry(r.clone()).or_default();
            *n += 1;
            if *n > 1 {
                inner.overlaps.push(r.clone());
            }
        }
        drop(inner);
        InFlight {
            state: state.clone(),
            kind,
            resource,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut inner = self.state.lock();
        if let Some(n) = inner.in_flight.get_mut(self.kind) {
            *n = n.saturating_sub(1);
        }
        inner.in_flight_total = inner.in_flight_total.saturating_sub(1);
        if let Some(r) = &self.resource {
            if let Some(n) = inner.per_resource.get_mut(r) {
                *n = n.saturating_sub(1);
            }
        }
    }
}

/// Which kind of request this is (for scripting and in-flight counts), and the resource a
/// poll or fetch is about.
fn classify(method: &str, segments: &[&str]) -> (&'static str, Option<String>) {
    match (method, segments) {
        ("GET", ["v2", "catalog"]) => ("catalog", None),
        ("PUT", ["v2", "service_instances", _]) => ("provision", None),
        ("DELETE", ["v2", "service_instances", _]) => ("deprovision", None),
        ("PATCH", ["v2", "service_instances", _]) => ("update", None),
        ("GET", ["v2", "service_instances", id, "last_operation"]) => {
            ("poll", Some(format!("poll:{id}")))
        }
        ("PUT", ["v2", "service_instances", _, "service_bindings", _]) => ("bind", None),
        ("DELETE", ["v2", "service_instances", _, "service_bindings", _]) => ("unbind", None),
        ("GET", ["v2", "service_instances", _, "service_bindings", bid, "last_operation"]) => {
            ("poll", Some(format!("poll:{bid}")))
        }
        ("GET", ["v2", "service_instances", _, "service_bindings", bid]) => {
            ("fetch", Some(format!("fetch:{bid}")))
        }
        _ => ("other", None),
    }
}

impl Drop for DemoBroker {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        // Stopping needs a runtime, and we may be dropped inside one (an async test): stop from
        // a plain thread.
        let stopper = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(handle.stop(false));
            }
        });
        let _ = stopper.join();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn error(status: u16, error: Option<&str>, description: &str) -> HttpResponse {
    let mut body = serde_json::Map::new();
    if let Some(e) = error {
        body.insert("error".into(), json!(e));
    }
    body.insert("description".into(), json!(description));
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap_or_default())
        .content_type("application/json")
        .body(Value::Object(body).to_string())
}

fn ok_json(status: u16, v: Value) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap_or_default())
        .content_type("application/json")
        .body(v.to_string())
}

fn authorized(state: &BrokerState, req: &HttpRequest) -> bool {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", state.username, state.password))
    );
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == expected)
}

async fn handle(state: web::Data<BrokerState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let parsed_body: Option<Value> = if body.is_empty() {
        None
    } else {
        serde_json::from_slice(&body).ok()
    };
    {
        let mut inner = state.inner.lock().unwrap_or_else(|e| e.into_inner());
        if !inner.not_recording {
            inner.requests.push(Recorded {
                method: req.method().to_string(),
                path: req.path().to_string(),
                query: req.query_string().to_string(),
                headers: req
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
                    .collect(),
                body: parsed_body.clone(),
                at: Instant::now(),
            });
        }
    }
    if !authorized(&state, &req) {
        return error(401, None, "Unauthorized");
    }
    if req.headers().get("x-broker-api-version").is_none() {
        return error(412, None, "X-Broker-API-Version header is missing");
    }
    let segments: Vec<&str> = req.path().trim_matches('/').split('/').collect();
    let method = req.method().as_str().to_string();
    let (kind, resource) = classify(&method, &segments);
    let _in_flight = InFlight::enter(&state, kind, resource);
    let query: HashMap<String, String> = form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect();
    let accepts_incomplete = query.get("accepts_incomplete").map(String::as_str) == Some("true");
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["v2", "catalog"]) => match state.next_reply("catalog") {
            Reply::Status(code, body) => raw(code, body),
            _ => ok_json(
                200,
                state
                    .catalog
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone(),
            ),
        },
        ("PUT", ["v2", "service_instances", id]) => {
            if !req
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|c| c.starts_with("application/json"))
            {
                return error(400, None, "Content-Type must be application/json");
            }
            let Some(body) = parsed_body else {
                return error(400, None, "body must be JSON");
            };
            provision(&state, id, body, accepts_incomplete).await
        }
        ("DELETE", ["v2", "service_instances", id]) => {
            deprovision(&state, id, &query, accepts_incomplete).await
        }
        ("PATCH", ["v2", "service_instances", id]) => {
            let Some(body) = parsed_body else {
                return error(400, None, "body must be JSON");
            };
            update::update(&state, id, body, accepts_incomplete).await
        }
        ("GET", ["v2", "service_instances", id, "last_operation"]) => {
            poll(&state, id, &query).await
        }
        ("PUT", ["v2", "service_instances", _, "service_bindings", bid]) => {
            let Some(body) = parsed_body else {
                return error(400, None, "body must be JSON");
            };
            bind(&state, bid, body, accepts_incomplete).await
        }
        ("DELETE", ["v2", "service_instances", _, "service_bindings", bid]) => {
            unbind(&state, bid, &query, accepts_incomplete).await
        }
        ("GET", ["v2", "service_instances", _, "service_bindings", bid, "last_operation"]) => {
            poll(&state, bid, &query).await
        }
        ("GET", ["v2", "service_instances", _, "service_bindings", bid]) => {
            fetch(&state, bid).await
        }
        _ => error(404, None, "no such endpoint"),
    }
}

fn raw(code: u16, body: String) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap_or_default())
        .content_type("application/json")
        .body(body)
}

/// The reply for a request: a `Delay` sleeps, then the answer is the next scripted reply if that
/// is not a delay itself (a delayed error), else the default (or normal) answer. A scripted delay
/// is never swallowed by another request's delay.
async fn resolve(state: &BrokerState, kind: &'static str) -> Reply {
    let reply = state.next_reply(kind);
    let Reply::Delay(d) = reply else {
        return reply;
    };
    tokio::time::sleep(d).await;
    let mut inner = state.lock();
    if let Some(q) = inner.script.get_mut(kind) {
        if q.front().is_some_and(|r| !matches!(r, Reply::Delay(_))) {
            return q.pop_front().unwrap_or(Reply::Normal);
        }
    }
    match inner.defaults.get(kind) {
        Some(Reply::Delay(_)) | None => Reply::Normal,
        Some(r) => r.clone(),
    }
}

fn credentials_for(id: &str) -> Value {
    json!({
        "uri": format!("demo://user-{id}:secret@demo-db.local:5432/db"),
        "username": format!("user-{id}"),
        "password": "secret",
    })
}

async fn bind(
    state: &BrokerState,
    id: &str,
    body: Value,
    accepts_incomplete: bool,
) -> HttpResponse {
    if body.get("service_id").and_then(Value::as_str).is_none()
        || body.get("plan_id").and_then(Value::as_str).is_none()
    {
        return error(400, None, "service_id and plan_id are required");
    }
    let plan = body
        .get("plan_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    state.lock().creating.insert(id.to_string());
    let mut reply = resolve(state, "bind").await;
    let cancelled = {
        let mut inner = state.lock();
        inner.creating.remove(id);
        inner.cancelled.remove(id)
    };
    if cancelled {
        return error(
            410,
            None,
            "The binding was deleted while it was being created.",
        );
    }
    if matches!(reply, Reply::Normal) && plan == PLAN_ASYNC_ID {
        reply = Reply::Async {
            operation: Some(format!("bind-{id}")),
            polls: 2,
            final_state: "succeeded",
            retry_after: Some(1),
        };
    }
    match reply {
        Reply::Status(code, body) => raw(code, body),
        Reply::Bound(code, body) => {
            state
                .lock()
                .bindings
                .insert(id.to_string(), credentials_for(id));
            raw(code, body)
        }
        Reply::Async {
            operation,
            polls,
            final_state,
            retry_after,
        } => {
            if !accepts_incomplete {
                return error(422, Some("AsyncRequired"), "This service plan requires client support for asynchronous service operations.");
            }
            let mut inner = state.inner.lock().unwrap_or_else(|e| e.into_inner());
            inner.ops.insert(
                id.to_string(),
                AsyncOp {
                    remaining: polls,
                    final_state,
                    retry_after,
                    kind: "bind",
                },
            );
            inner.bindings.insert(id.to_string(), credentials_for(id));
            let mut out = serde_json::Map::new();
            if let Some(op) = operation {
                out.insert("operation".into(), json!(op));
            }
            ok_json(202, Value::Object(out))
        }
        _ => {
            let creds = credentials_for(id);
            let mut inner = state.inner.lock().unwrap_or_else(|e| e.into_inner());
            let existed = inner
                .bindings
                .insert(id.to_string(), creds.clone())
                .is_some();
            ok_json(
                if existed { 200 } else { 201 },
                json!({ "credentials": creds }),
            )
        }
    }
}

async fn unbind(
    state: &BrokerState,
    id: &str,
    query: &HashMap<String, String>,
    accepts_incomplete: bool,
) -> HttpResponse {
    if !query.contains_key("service_id") || !query.contains_key("plan_id") {
        return error(
            400,
            None,
            "service_id and plan_id are required query parameters",
        );
    }
    match resolve(state, "unbind").await {
        Reply::Status(code, body) => raw(code, body),
        Reply::Async {
            operation,
            polls,
            final_state,
            retry_after,
        } if accepts_incomplete => {
            let mut inner = state.inner.lock().unwrap_or_else(|e| e.into_inner());
            if !inner.bindings.contains_key(id) {
                return ok_json(410, json!({}));
            }
            inner.ops.insert(
                id.to_string(),
                AsyncOp {
                    remaining: polls,
                    final_state,
                    retry_after,
                    kind: "unbind",
                },
            );
            let mut out = serde_json::Map::new();
            if let Some(op) = operation {
                out.insert("operation".into(), json!(op));
            }
            ok_json(202, Value::Object(out))
        }
        _ => {
            let mut inner = state.inner.lock().unwrap_or_else(|e| e.into_inner());
            if inner.creating.contains(id) {
                // Being created (a slow bind): stop the creation (OSB A.8).
                inner.cancelled.insert(id.to_string());
                inner.bindings.remove(id);
                return ok_json(200, json!({}));
            }
            if inner.bindings.remove(id).is_some() {
                inner.ops.remove(id);
                ok_json(200, json!({}))
            } else {
                ok_json(410, json!({}))
            }
        }
    }
}

async fn poll(state: &BrokerState, id: &str, query: &HashMap<String, String>) -> HttpResponse {
    if !query.contains_key("service_id") || !query.contains_key("plan_id") {
        return error(
            400,
            None,
            "service_id and plan_id are required query parameters",
        );
    }
    if let Reply::Status(code, body) = resolve(state, "poll").await {
        return raw(code, body);
    }
    let mut inner = state.inner.lock().unwrap_or_else(|e| e.into_inner());
    let Some(op) = inner.ops.get_mut(id) else {
        return if inner.bindings.contains_key(id) || inner.instances.contains_key(id) {
            ok_json(200, json!({"state": "succeeded"}))
        } else {
            ok_json(410, json!({}))
        };
    };
    if op.remaining > 0 {
        op.remaining -= 1;
        let left = op.remaining;
        let retry = op.retry_after;
        let mut resp = HttpResponse::Ok();
        if let Some(r) = retry {
            resp.insert_header(("Retry-After", r.to_string()));
        }
        return resp.content_type("application/json").body(
            json!({"state": "in progress", "description": format!("{left} polls to go")})
                .to_string(),
        );
    }
    let op = op.clone();
    inner.ops.remove(id);
    match (op.kind, op.final_state) {
        ("unbind", "succeeded") => {
            inner.bindings.remove(id);
        }
        ("deprovision", "succeeded") => {
            inner.instances.remove(id);
        }
        ("bind", "failed") => {
            inner.bindings.remove(id);
        }
        _ => {}
    }
    ok_json(
        200,
        json!({"state": op.final_state, "description": format!("{} {}", op.kind, op.final_state)}),
    )
}

async fn fetch(state: &BrokerState, id: &str) -> HttpResponse {
    match resolve(state, "fetch").await {
        Reply::Status(code, body) => raw(code, body),
        _ => {
            let inner = state.inner.lock().unwrap_or_else(|e| e.into_inner());
            if inner.ops.get(id).is_some_and(|o| o.kind == "bind") {
                return error(404, None, "binding is being created");
            }
            match inner.bindings.get(id) {
                Some(creds) => ok_json(
                    200,
                    json!({"credentials": creds, "parameters": {"fetched": true}}),
                ),
                None => error(404, None, "no such binding"),
            }
        }
    }
}

async fn provision(
    state: &BrokerState,
    id: &str,
    body: Value,
    accepts_incomplete: bool,
) -> HttpResponse {
    for key in ["service_id", "plan_id", "organization_guid", "space_guid"] {
        if body.get(key).and_then(Value::as_str).is_none() {
            return error(400, None, &format!("{key} is required"));
        }
    }
    match resolve(state, "provision").await {
        Reply::Status(code, body) => raw(code, body),
        Reply::Bound(code, reply) => {
            state.lock().instances.insert(id.to_string(), body);
            raw(code, reply)
        }
        Reply::Async {
            operation,
            polls,
            final_state,
            retry_after,
        } => {
            if !accepts_incomplete {
                return error(422, Some("AsyncRequired"), "This service plan requires client support for asynchronous service operations.");
            }
            let mut inner = state.inner.lock().unwrap_or_else(|e| e.into_inner());
            inner.instances.insert(id.to_string(), body);
            inner.ops.insert(
                id.to_string(),
                AsyncOp {
                    remaining: polls,
                    final_state,
                    retry_after,
                    kind: "provision",
                },
            );
            ok_json(202, json!({"operation": operation}))
        }
        _ => {
            let mut inner = state.inner.lock().unwrap_or_else(|e| e.into_inner());
            let existed = inner.instances.insert(id.to_string(), body).is_some();
            ok_json(
                if existed { 200 } else { 201 },
                json!({"dashboard_url": format!("https://demo-db.local/dashboard/{id}")}),
            )
        }
    }
}

async fn deprovision(
    state: &BrokerState,
    id: &str,
    query: &HashMap<String, String>,
    accepts_incomplete: bool,
) -> HttpResponse {
    if !query.contains_key("service_id") || !query.contains_key("plan_id") {
        return error(
            400,
            None,
            "service_id and plan_id are required query parameters",
        );
    }
    match resolve(state, "deprovision").await {
        Reply::Status(code, body) => raw(code, body),
        Reply::Async {
            operation,
            polls,
            final_state,
            retry_after,
        } if accepts_incomplete => {
            let mut inner = state.inner.lock().unwrap_or_else(|e| e.into_inner());
            inner.ops.insert(
                id.to_string(),
                AsyncOp {
                    remaining: polls,
                    final_state,
                    retry_after,
                    kind: "deprovision",
                },
            );
            ok_json(202, json!({"operation": operation}))
        }
        _ => {
            let mut inner = state.inner.lock().unwrap_or_else(|e| e.into_inner());
            if inner.instances.remove(id).is_some() {
                ok_json(200, json!({}))
            } else {
                ok_json(410, json!({}))
            }
        }
    }
}
