//! The operations the load generator sends: one request (or, for an async create, a request and
//! its polls) per call, checked for the expected status.

use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::json;
use tether::demo_broker;

use crate::http::{build_request, find, json_str, HttpConn, Resp};
use crate::seed::World;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    DirectPut,
    Create,
    /// The floor's create with one write, after the broker call (`?writes=one`).
    CreateOneWrite,
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

/// The operations run by default, in order (`direct-put` and `create-1w` only when asked).
pub const DEFAULT_OPS: &[&str] = &[
    "create",
    "get",
    "list",
    "list-app",
    "list-inline",
    "create-async",
    "delete",
];

/// Operations the floor server also runs (its one-write create after `create`).
pub const FLOOR_OPS: &[&str] = &["create", "get", "list", "list-app"];

pub fn parse_op(name: &str) -> anyhow::Result<Op> {
    Ok(match name {
        "direct-put" => Op::DirectPut,
        "create" => Op::Create,
        "create-1w" => Op::CreateOneWrite,
        "create-async" => Op::CreateAsync,
        "get" => Op::Get,
        "list" => Op::List { page: 1 },
        "list-app" => Op::ListApp,
        "list-inline" => Op::ListInline,
        "delete" => Op::Delete,
        other => bail!(
            "unknown operation {other} (known: direct-put, create-1w, {})",
            DEFAULT_OPS.join(", ")
        ),
    })
}

pub enum OpError {
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

/// Sends `method path` on `conn` (the bench's token when `auth`) and checks the status.
async fn call(
    w: &World,
    conn: &mut HttpConn,
    method: &str,
    path: &str,
    body: Option<&str>,
    status: u16,
) -> Result<Resp, OpError> {
    let req = build_request(method, conn.addr, path, &w.auth, "", body);
    let resp = conn.request(&req).await.map_err(OpError::Failed)?;
    expect(&resp, status)?;
    w.last_body_bytes.set(resp.body.len());
    Ok(resp)
}

pub async fn op_once(w: &World, op: Op, conn: &mut HttpConn) -> Result<(), OpError> {
    match op {
        Op::DirectPut => direct_put(w, conn).await,
        Op::Create | Op::CreateOneWrite | Op::CreateAsync => create(w, op, conn).await,
        Op::Get => {
            let guid = random_binding(w).ok_or(OpError::Exhausted)?;
            let path = format!("/v2/service_bindings/{guid}");
            call(w, conn, "GET", &path, None, 200).await.map(drop)
        }
        Op::List { page } => {
            let path = format!("/v2/service_bindings?results-per-page=50&page={page}");
            call(w, conn, "GET", &path, None, 200).await.map(drop)
        }
        Op::ListApp => {
            let app = &w.apps[w.rand(w.apps.len())];
            let path = format!("/v2/service_bindings?q=app_guid:{app}&results-per-page=50");
            call(w, conn, "GET", &path, None, 200).await.map(drop)
        }
        Op::ListInline => {
            let path = "/v2/service_bindings?inline-relations-depth=2&results-per-page=100";
            let resp = call(w, conn, "GET", path, None, 200).await?;
            w.inline_page_bytes.set(resp.body.len());
            Ok(())
        }
        Op::Delete => {
            let popped = w.created.borrow_mut().pop();
            let guid = match popped {
                Some(g) => g,
                None => w.seeded.borrow_mut().pop().ok_or(OpError::Exhausted)?,
            };
            let path = format!("/v2/service_bindings/{guid}");
            call(w, conn, "DELETE", &path, None, 204).await.map(drop)
        }
    }
}

/// A random binding that exists: one the creates made or a seeded one.
fn random_binding(w: &World) -> Option<String> {
    let created = w.created.borrow();
    let seeded = w.seeded.borrow();
    let n = created.len() + seeded.len();
    if n == 0 {
        return None;
    }
    let i = w.rand(n);
    Some(if i < created.len() {
        created[i].clone()
    } else {
        seeded[i - created.len()].clone()
    })
}

/// The PUT tether sends to the broker for a create, straight to the sync broker.
async fn direct_put(w: &World, conn: &mut HttpConn) -> Result<(), OpError> {
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
    let path = format!("/v2/service_instances/{si}/service_bindings/{bid}");
    let req = build_request(
        "PUT",
        conn.addr,
        &path,
        &w.broker_auth,
        &headers,
        Some(&body),
    );
    let resp = conn.request(&req).await.map_err(OpError::Failed)?;
    expect(&resp, 201)
}

/// A create on a new (app, instance) pair; an async one is followed to completion.
async fn create(w: &World, op: Op, conn: &mut HttpConn) -> Result<(), OpError> {
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
    let (path, status) = match op {
        Op::CreateAsync => ("/v2/service_bindings?accepts_incomplete=true", 202),
        Op::CreateOneWrite => ("/v2/service_bindings?writes=one", 201),
        _ => ("/v2/service_bindings", 201),
    };
    let resp = call(w, conn, "POST", path, Some(&body), status).await?;
    let guid = json_str(&resp.body, "guid", 0)
        .ok_or_else(|| OpError::Failed("no guid in the answer".into()))?
        .to_string();
    if asynchronous {
        await_completion(w, conn, &guid).await?;
    }
    w.created.borrow_mut().push(guid);
    Ok(())
}

/// GETs the binding until its last operation succeeded: first after `async_poll`, then after
/// twice the previous wait, up to `async_poll_max`.
async fn await_completion(w: &World, conn: &mut HttpConn, guid: &str) -> Result<(), OpError> {
    let path = format!("/v2/service_bindings/{guid}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut wait = w.async_poll;
    loop {
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(w.async_poll_max);
        w.async_polls.set(w.async_polls.get() + 1);
        let resp = call(w, conn, "GET", &path, None, 200).await?;
        let from = find(&resp.body, b"\"last_operation\"", 0).unwrap_or(0);
        match json_str(&resp.body, "state", from) {
            Some("succeeded") => return Ok(()),
            Some("in progress") if Instant::now() < deadline => continue,
            other => {
                return Err(OpError::Failed(format!(
                    "async create ended in state {other:?}"
                )))
            }
        }
    }
}
