//! The demo broker's HTTP side: authentication and header checks, recording, routing, and one
//! handler per OSB endpoint, each answering as scripted (see [`Reply`]).

use std::collections::HashMap;
use std::time::Instant;

use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use serde_json::{json, Value};

use super::{update, AsyncOp, BrokerState, Recorded, Reply, PLAN_ASYNC_ID};

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

pub(super) fn error(status: u16, error: Option<&str>, description: &str) -> HttpResponse {
    let mut body = serde_json::Map::new();
    if let Some(e) = error {
        body.insert("error".into(), json!(e));
    }
    body.insert("description".into(), json!(description));
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap_or_default())
        .content_type("application/json")
        .body(Value::Object(body).to_string())
}

pub(super) fn ok_json(status: u16, v: Value) -> HttpResponse {
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

pub(super) async fn handle(
    state: web::Data<BrokerState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let parsed_body: Option<Value> = if body.is_empty() {
        None
    } else {
        serde_json::from_slice(&body).ok()
    };
    record(&state, &req, parsed_body.clone());
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
    let call = Call {
        state: &state,
        req: &req,
        body: parsed_body,
        query: &query,
    };
    route(call, &method, &segments).await
}

/// Keeps the request for the test's assertions (unless recording is off, as in the benchmark).
fn record(state: &BrokerState, req: &HttpRequest, body: Option<Value>) {
    let mut inner = state.lock();
    if inner.not_recording {
        return;
    }
    inner.requests.push(Recorded {
        method: req.method().to_string(),
        path: req.path().to_string(),
        query: req.query_string().to_string(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
            .collect(),
        body,
        at: Instant::now(),
    });
}

/// One authenticated request, on its way to its endpoint.
struct Call<'a> {
    state: &'a BrokerState,
    req: &'a HttpRequest,
    body: Option<Value>,
    query: &'a HashMap<String, String>,
}

impl Call<'_> {
    fn accepts_incomplete(&self) -> bool {
        self.query.get("accepts_incomplete").map(String::as_str) == Some("true")
    }
}

async fn route(call: Call<'_>, method: &str, segments: &[&str]) -> HttpResponse {
    let (state, query) = (call.state, call.query);
    let incomplete = call.accepts_incomplete();
    match (method, segments) {
        ("GET", ["v2", "catalog"]) => catalog(state),
        ("PUT", ["v2", "service_instances", id]) => {
            if !is_json(call.req) {
                return error(400, None, "Content-Type must be application/json");
            }
            let Some(body) = call.body else {
                return error(400, None, "body must be JSON");
            };
            provision(state, id, body, incomplete).await
        }
        ("DELETE", ["v2", "service_instances", id]) => {
            deprovision(state, id, query, incomplete).await
        }
        ("PATCH", ["v2", "service_instances", id]) => {
            let Some(body) = call.body else {
                return error(400, None, "body must be JSON");
            };
            update::update(state, id, body, incomplete).await
        }
        ("GET", ["v2", "service_instances", id, "last_operation"]) => poll(state, id, query).await,
        ("PUT", ["v2", "service_instances", _, "service_bindings", bid]) => {
            let Some(body) = call.body else {
                return error(400, None, "body must be JSON");
            };
            bind(state, bid, body, incomplete).await
        }
        ("DELETE", ["v2", "service_instances", _, "service_bindings", bid]) => {
            unbind(state, bid, query, incomplete).await
        }
        ("GET", ["v2", "service_instances", _, "service_bindings", bid, "last_operation"]) => {
            poll(state, bid, query).await
        }
        ("GET", ["v2", "service_instances", _, "service_bindings", bid]) => fetch(state, bid).await,
        _ => error(404, None, "no such endpoint"),
    }
}

fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"))
}

fn catalog(state: &BrokerState) -> HttpResponse {
    match state.next_reply("catalog") {
        Reply::Status(code, body) => raw(code, body),
        _ => ok_json(
            200,
            state
                .catalog
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        ),
    }
}

pub(super) fn raw(code: u16, body: String) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap_or_default())
        .content_type("application/json")
        .body(body)
}

/// The reply for a request: a `Delay` sleeps, then the answer is the next scripted reply if that
/// is not a delay itself (a delayed error), else the default (or normal) answer. A scripted delay
/// is never swallowed by another request's delay.
pub(super) async fn resolve(state: &BrokerState, kind: &'static str) -> Reply {
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
    let reply = match bind_reply(state, id, plan).await {
        Ok(reply) => reply,
        Err(cancelled) => return cancelled,
    };
    match reply {
        Reply::Status(code, body) => raw(code, body),
        Reply::Bound(code, body) => {
            state
                .lock()
                .bindings
                .insert(id.to_string(), credentials_for(id));
            raw(code, body)
        }
        Reply::BoundLate(after) => {
            let creds = credentials_for(id);
            state.lock().bindings.insert(id.to_string(), creds.clone());
            tokio::time::sleep(after).await;
            ok_json(201, json!({ "credentials": creds }))
        }
        Reply::Async {
            operation,
            polls,
            final_state,
            retry_after,
        } => {
            if !accepts_incomplete {
                return async_required();
            }
            state
                .lock()
                .bindings
                .insert(id.to_string(), credentials_for(id));
            let op = AsyncOp::scripted("bind", polls, final_state, retry_after);
            begin_async(state, id, op, operation)
        }
        _ => {
            let creds = credentials_for(id);
            let existed = state
                .lock()
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

/// The scripted answer to a bind (the async plan answers 202 unless told otherwise), or 410
/// when the platform deleted the binding while the (delayed) bind ran.
async fn bind_reply(state: &BrokerState, id: &str, plan: &str) -> Result<Reply, HttpResponse> {
    state.lock().creating.insert(id.to_string());
    let reply = resolve(state, "bind").await;
    let cancelled = {
        let mut inner = state.lock();
        inner.creating.remove(id);
        inner.cancelled.remove(id)
    };
    if cancelled {
        return Err(error(
            410,
            None,
            "The binding was deleted while it was being created.",
        ));
    }
    if matches!(reply, Reply::Normal) && plan == PLAN_ASYNC_ID {
        return Ok(Reply::Async {
            operation: Some(format!("bind-{id}")),
            polls: 2,
            final_state: "succeeded",
            retry_after: Some(1),
        });
    }
    Ok(reply)
}

/// OSB's answer to a platform that does not accept an asynchronous operation.
pub(super) fn async_required() -> HttpResponse {
    error(
        422,
        Some("AsyncRequired"),
        "This service plan requires client support for asynchronous service operations.",
    )
}

/// A 202: the operation is kept for `last_operation` polls.
pub(super) fn begin_async(
    state: &BrokerState,
    id: &str,
    op: AsyncOp,
    operation: Option<String>,
) -> HttpResponse {
    state.lock().ops.insert(id.to_string(), op);
    let mut out = serde_json::Map::new();
    if let Some(op) = operation {
        out.insert("operation".into(), json!(op));
    }
    ok_json(202, Value::Object(out))
}

/// OSB: unbind, deprovision and polls name the service and plan in their query.
fn missing_catalog_ids(query: &HashMap<String, String>) -> Option<HttpResponse> {
    (!query.contains_key("service_id") || !query.contains_key("plan_id")).then(|| {
        error(
            400,
            None,
            "service_id and plan_id are required query parameters",
        )
    })
}

async fn unbind(
    state: &BrokerState,
    id: &str,
    query: &HashMap<String, String>,
    accepts_incomplete: bool,
) -> HttpResponse {
    if let Some(refused) = missing_catalog_ids(query) {
        return refused;
    }
    match resolve(state, "unbind").await {
        Reply::Status(code, body) => raw(code, body),
        Reply::Async {
            operation,
            polls,
            final_state,
            retry_after,
        } if accepts_incomplete => {
            if !state.lock().bindings.contains_key(id) {
                return ok_json(410, json!({}));
            }
            let op = AsyncOp::scripted("unbind", polls, final_state, retry_after);
            begin_async(state, id, op, operation)
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
    if let Some(refused) = missing_catalog_ids(query) {
        return refused;
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
                return async_required();
            }
            state.lock().instances.insert(id.to_string(), body);
            let op = AsyncOp::scripted("provision", polls, final_state, retry_after);
            begin_async(state, id, op, operation)
        }
        _ => {
            let existed = state
                .lock()
                .instances
                .insert(id.to_string(), body)
                .is_some();
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
    if let Some(refused) = missing_catalog_ids(query) {
        return refused;
    }
    match resolve(state, "deprovision").await {
        Reply::Status(code, body) => raw(code, body),
        Reply::Async {
            operation,
            polls,
            final_state,
            retry_after,
        } if accepts_incomplete => {
            let op = AsyncOp::scripted("deprovision", polls, final_state, retry_after);
            begin_async(state, id, op, operation)
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
