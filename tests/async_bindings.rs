//! The asynchronous half of the binding lifecycle (issue 4), through the real HTTP API against
//! the real demo broker, on SQLite and PostgreSQL: async create and delete with polling,
//! `Retry-After`, the maximum polling duration, brokers that misbehave while polled, in-progress
//! conflicts, async answers the platform must refuse, `DELETE ?async=true` jobs, orphan
//! mitigation retried with backoff, the parameters endpoint, and bounded broker concurrency.

mod common;

use std::time::{Duration, Instant};

use common::{fast_runner, Backend, Options, Response, TestApp};
use serde_json::{json, Value};
use tether::demo_broker::{demo_catalog, Recorded, Reply, PLAN_ASYNC_ID, SERVICE_ID};

const TIMED_OUT: &str = "Service Broker failed to create binding within the required time.";

/// Waits (up to 20 s) until `check` holds.
async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Jobs not settled yet (queued or running).
async fn pending_jobs(t: &TestApp) -> i64 {
    t.state
        .db
        .read(|conn| Ok(tether::jobs::pending_count(conn)?))
        .await
        .expect("pending jobs")
}

/// Waits (up to 20 s) until every job has settled.
async fn jobs_settle(t: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while pending_jobs(t).await > 0 {
        assert!(Instant::now() < deadline, "jobs still pending");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn guid_of(r: &Response) -> String {
    r.body["metadata"]["guid"]
        .as_str()
        .unwrap_or_else(|| panic!("no guid in {} {}", r.status, r.text))
        .to_string()
}

fn binding_path(guid: &str) -> String {
    format!("/v2/service_bindings/{guid}")
}

/// The broker's `last_operation` requests for a binding.
fn polls(t: &TestApp, binding: &str) -> Vec<Recorded> {
    t.broker.requests_to(
        "GET",
        &format!("/service_bindings/{binding}/last_operation"),
    )
}

/// The broker's `GET` of the binding itself (fetching credentials or parameters).
fn fetches(t: &TestApp, binding: &str) -> Vec<Recorded> {
    t.broker
        .requests_to("GET", &format!("/service_bindings/{binding}"))
        .into_iter()
        .filter(|r| r.path.ends_with(binding))
        .collect()
}

fn unbinds(t: &TestApp, binding: &str) -> Vec<Recorded> {
    t.broker
        .requests_to("DELETE", &format!("/service_bindings/{binding}"))
}

/// The binding id of the broker's (only, or latest) bind request.
fn last_bound_id(t: &TestApp) -> String {
    let puts = t.broker.requests_to("PUT", "/service_bindings/");
    let put = puts.last().expect("the broker got no bind");
    put.path.rsplit('/').next().unwrap().to_string()
}

fn state_of(r: &Response) -> (String, String) {
    let lo = &r.body["entity"]["last_operation"];
    (
        lo["type"].as_str().unwrap_or_default().to_string(),
        lo["state"].as_str().unwrap_or_default().to_string(),
    )
}

fn has_state(op: &'static str, state: &'static str) -> impl Fn(&Response) -> bool {
    move |r: &Response| {
        r.status.as_u16() == 200 && state_of(r) == (op.to_string(), state.to_string())
    }
}

/// Time between consecutive requests, as the broker received them.
fn gaps(requests: &[Recorded]) -> Vec<Duration> {
    requests
        .windows(2)
        .map(|w| w[1].at.duration_since(w[0].at))
        .collect()
}

/// Asserts the raw query value of `operation` is percent-encoded (only RFC 3986 unreserved
/// characters, `%XX` escapes, and `+` for a space) and decodes to `expected`.
#[track_caller]
fn assert_operation_param(poll: &Recorded, expected: &str) {
    let raw = poll
        .query
        .split('&')
        .find_map(|kv| kv.strip_prefix("operation="))
        .unwrap_or_else(|| panic!("no operation in {}", poll.query));
    assert!(
        raw.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%+".contains(&b)),
        "operation not percent-encoded: {raw}"
    );
    assert_eq!(poll.query_param("operation").as_deref(), Some(expected));
}

/// The demo catalog with the `async` plan's and the `demo-db` service's fields changed.
fn catalog_with(service: Value, async_plan: Value) -> Value {
    let mut c = demo_catalog();
    let s = &mut c["services"][0];
    for (k, v) in service.as_object().unwrap() {
        s[k] = v.clone();
    }
    let plans = s["plans"].as_array_mut().unwrap();
    let plan = plans.iter_mut().find(|p| p["id"] == PLAN_ASYNC_ID).unwrap();
    for (k, v) in async_plan.as_object().unwrap() {
        plan[k] = v.clone();
    }
    c
}

async fn async_instance(t: &TestApp, w: &common::World) -> String {
    t.create_instance(&w.space, &w.plan_async, "async-db").await
}

async fn bind_async(t: &TestApp, app: &str, instance: &str, extra: Value) -> Response {
    let mut body = json!({"app_guid": app, "service_instance_guid": instance});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    t.post("/v2/service_bindings?accepts_incomplete=true", body)
        .await
}

// ------------------------------------------------------------------------------------------
// Async create

async fn async_create_polls_then_fetches_credentials(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let si = async_instance(&t, &w).await;
    // An operation id that must be percent-encoded on the way back.
    let operation = "op/1 a+b&c=d?e#f%g ä";
    t.broker.script(
        "bind",
        [Reply::Async {
            operation: Some(operation.into()),
            polls: 10_000,
            final_state: "succeeded",
            retry_after: None,
        }],
    );
    let r = bind_async(&t, &w.app, &si, json!({"name": "async-binding"})).await;
    r.assert_status(202);
    let guid = guid_of(&r);
    assert_eq!(
        r.header("location"),
        Some(binding_path(&guid).as_str()),
        "Location"
    );
    let e = &r.body["entity"];
    assert_eq!(e["last_operation"]["type"], "create");
    assert_eq!(e["last_operation"]["state"], "in progress");
    assert_eq!(e["credentials"], json!({}));
    assert_eq!(e["name"], "async-binding");
    // Stored right away.
    assert_eq!(t.count("service_bindings").await, 1);
    let put = &t.broker.requests_to("PUT", "/service_bindings/")[0];
    assert_eq!(
        put.query_param("accepts_incomplete").as_deref(),
        Some("true")
    );

    // Polled, and the broker's progress description is shown.
    eventually("three polls", || polls(&t, &guid).len() >= 3).await;
    let shown = t
        .wait_for(&binding_path(&guid), |r| {
            r.body["entity"]["last_operation"]["description"]
                .as_str()
                .is_some_and(|d| d.ends_with("polls to go"))
        })
        .await;
    assert_eq!(state_of(&shown), ("create".into(), "in progress".into()));
    assert_eq!(shown.body["entity"]["credentials"], json!({}));
    // Nothing fetched while in progress.
    assert!(fetches(&t, &guid).is_empty());

    // Another create for the same app and instance: CC's "already bound".
    let again = bind_async(&t, &w.app, &si, json!({})).await;
    again.assert_error(400, "CF-ServiceBindingAppServiceTaken");
    assert_eq!(
        again.body["description"],
        "The app is already bound to the service."
    );
    assert_eq!(again.body["code"], 90003);

    // The broker finishes: the binding succeeds with the fetched credentials.
    assert!(t.broker.set_remaining_polls(&guid, 1));
    let done = t
        .wait_for(&binding_path(&guid), has_state("create", "succeeded"))
        .await;
    assert_eq!(
        done.body["entity"]["credentials"]["username"],
        format!("user-{guid}")
    );
    assert_eq!(
        done.body["entity"]["last_operation"]["description"],
        "bind succeeded"
    );
    jobs_settle(&t).await;
    // Credentials fetched by the poller are sealed at rest, like the sync path's.
    let g = guid.clone();
    let stored = t
        .state
        .db
        .read(move |conn| {
            use diesel::prelude::*;
            use tether::db::schema::service_bindings::dsl as sb;
            Ok(sb::service_bindings
                .filter(sb::guid.eq(&g))
                .select(sb::credentials)
                .first::<String>(conn)?)
        })
        .await
        .unwrap();
    assert!(
        stored.starts_with("enc:v1:") && !stored.contains("user-"),
        "{stored}"
    );

    // Every poll carried service_id, plan_id and the exact operation, percent-encoded.
    let all = polls(&t, &guid);
    assert!(all.len() >= 5, "{} polls", all.len());
    for p in &all {
        assert_eq!(p.query_param("service_id").as_deref(), Some(SERVICE_ID));
        assert_eq!(p.query_param("plan_id").as_deref(), Some(PLAN_ASYNC_ID));
        assert_operation_param(p, operation);
        assert_eq!(p.header("x-broker-api-version"), Some("2.15"));
        assert!(p.body.is_none());
    }
    // The credentials came from exactly one GET of the binding.
    let f = fetches(&t, &guid);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].query_param("service_id").as_deref(), Some(SERVICE_ID));
    assert_eq!(f[0].query_param("plan_id").as_deref(), Some(PLAN_ASYNC_ID));
    assert!(f[0].at > all.last().unwrap().at);
    // No orphan mitigation for a binding that worked.
    assert!(unbinds(&t, &guid).is_empty());
    // The app's binding list shows it too.
    let list = t.get(&format!("/v2/apps/{}/service_bindings", w.app)).await;
    assert_eq!(list.body["total_results"], 1);
    assert_eq!(
        list.body["resources"][0]["entity"]["last_operation"]["state"],
        "succeeded"
    );
}

async fn async_create_without_operation(backend: Backend) {
    // A 202 without an `operation` is polled without one.
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let si = async_instance(&t, &w).await;
    t.broker.script(
        "bind",
        [Reply::Async {
            operation: None,
            polls: 2,
            final_state: "succeeded",
            retry_after: None,
        }],
    );
    let r = bind_async(&t, &w.app, &si, json!({})).await;
    r.assert_status(202);
    let guid = guid_of(&r);
    t.wait_for(&binding_path(&guid), has_state("create", "succeeded"))
        .await;
    let all = polls(&t, &guid);
    assert_eq!(all.len(), 3, "2 × in progress, then succeeded");
    for p in &all {
        assert_eq!(p.query_param("operation"), None, "{}", p.query);
    }
}

async fn async_create_failed_records_description(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let si = async_instance(&t, &w).await;
    t.broker.script(
        "bind",
        [Reply::Async {
            operation: Some("will-fail".into()),
            polls: 1,
            final_state: "failed",
            retry_after: None,
        }],
    );
    let r = bind_async(&t, &w.app, &si, json!({})).await;
    r.assert_status(202);
    let guid = guid_of(&r);
    let failed = t
        .wait_for(&binding_path(&guid), has_state("create", "failed"))
        .await;
    assert_eq!(
        failed.body["entity"]["last_operation"]["description"],
        "bind failed"
    );
    assert_eq!(failed.body["entity"]["credentials"], json!({}));
    // No fetch after a failure; the broker is told to clean up (OSB A.10), platform-initiated.
    assert!(fetches(&t, &guid).is_empty());
    eventually("orphan unbind", || !unbinds(&t, &guid).is_empty()).await;
    let del = &unbinds(&t, &guid)[0];
    assert_eq!(del.query_param("service_id").as_deref(), Some(SERVICE_ID));
    assert_eq!(del.query_param("plan_id").as_deref(), Some(PLAN_ASYNC_ID));
    assert!(del.header("x-broker-api-originating-identity").is_none());
    jobs_settle(&t).await;
    // The failed binding stays visible (as in CC) until deleted, and can be deleted.
    t.get(&binding_path(&guid)).await.assert_status(200);
    t.delete(&binding_path(&guid)).await.assert_status(204);
    t.get(&binding_path(&guid))
        .await
        .assert_error(404, "CF-ServiceBindingNotFound");
    // And the app can be bound again.
    t.broker.script(
        "bind",
        [Reply::Async {
            operation: None,
            polls: 0,
            final_state: "succeeded",
            retry_after: None,
        }],
    );
    let again = bind_async(&t, &w.app, &si, json!({})).await;
    again.assert_status(202);
    t.wait_for(
        &binding_path(&guid_of(&again)),
        has_state("create", "succeeded"),
    )
    .await;
}

async fn poll_400_or_failed_fetch_fails_the_binding(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let si = async_instance(&t, &w).await;
    // CC: a 400 on last_operation means the operation failed.
    t.broker.script(
        "bind",
        [Reply::Async {
            operation: None,
            polls: 5,
            final_state: "succeeded",
            retry_after: None,
        }],
    );
    t.broker.script(
        "poll",
        [Reply::Status(400, r#"{"description":"no such op"}"#.into())],
    );
    let r = bind_async(&t, &w.app, &si, json!({})).await;
    let guid = guid_of(&r);
    let failed = t
        .wait_for(&binding_path(&guid), has_state("create", "failed"))
        .await;
    assert_eq!(
        failed.body["entity"]["last_operation"]["description"],
        "no such op"
    );
    assert_eq!(polls(&t, &guid).len(), 1);
    t.delete(&binding_path(&guid)).await.assert_status(204);
    jobs_settle(&t).await;

    // `succeeded`, but the binding cannot be fetched: failed, and unbound at the broker.
    t.broker.script(
        "bind",
        [Reply::Async {
            operation: None,
            polls: 0,
            final_state: "succeeded",
            retry_after: None,
        }],
    );
    t.broker.script(
        "fetch",
        [Reply::Status(500, r#"{"description":"x"}"#.into())],
    );
    let r = bind_async(&t, &w.app, &si, json!({})).await;
    let guid = guid_of(&r);
    let failed = t
        .wait_for(&binding_path(&guid), has_state("create", "failed"))
        .await;
    assert_eq!(
        failed.body["entity"]["last_operation"]["description"],
        "A valid binding could not be fetched from the service broker."
    );
    assert_eq!(failed.body["entity"]["credentials"], json!({}));
    eventually("orphan unbind", || !unbinds(&t, &guid).is_empty()).await;
    eventually("broker forgot the binding", || !t.broker.has_binding(&guid)).await;
}

async fn retry_after_is_honored(backend: Backend) {
    // The runner polls every 100 ms; a broker's `Retry-After: 1` stretches that to a second.
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let si = async_instance(&t, &w).await;
    t.broker.script(
        "bind",
        [Reply::Async {
            operation: Some("slow".into()),
            polls: 3,
            final_state: "succeeded",
            retry_after: Some(1),
        }],
    );
    let r = bind_async(&t, &w.app, &si, json!({})).await;
    let slow = guid_of(&r);
    t.wait_for(&binding_path(&slow), has_state("create", "succeeded"))
        .await;
    let p = polls(&t, &slow);
    assert_eq!(p.len(), 4);
    for g in gaps(&p) {
        assert!(
            g >= Duration::from_millis(990),
            "polled {g:?} after a Retry-After: 1"
        );
    }

    // Without Retry-After, the runner's own interval (100 ms) applies.
    let app2 = t.create_app(&w.space, "app-2").await;
    t.broker.script(
        "bind",
        [Reply::Async {
            operation: Some("fast".into()),
            polls: 3,
            final_state: "succeeded",
            retry_after: None,
        }],
    );
    let r = bind_async(&t, &app2, &si, json!({})).await;
    let fast = guid_of(&r);
    t.wait_for(&binding_path(&fast), has_state("create", "succeeded"))
        .await;
    let g = gaps(&polls(&t, &fast));
    assert_eq!(g.len(), 3);
    assert!(
        g.iter().all(|g| *g >= Duration::from_millis(95)),
        "polled faster than the interval: {g:?}"
    );
    assert!(
        g.iter().any(|g| *g < Duration::from_millis(800)),
        "the 100 ms poll interval was not used: {g:?}"
    );
}

async fn plan_maximum_polling_duration_fails_the_binding(backend: Backend) {
    let t = TestApp::start(backend).await;
    // The plan allows one second of polling (the runner would allow 7 days).
    t.broker.set_catalog(catalog_with(
        json!({}),
        json!({"maximum_polling_duration": 1}),
    ));
    let w = t.world().await;
    let si = async_instance(&t, &w).await;
    t.broker.script(
        "bind",
        [Reply::Async {
            operation: Some("forever".into()),
            polls: 1_000_000,
            final_state: "succeeded",
            retry_after: None,
        }],
    );
    let started = Instant::now();
    let r = bind_async(&t, &w.app, &si, json!({})).await;
    let guid = guid_of(&r);
    let failed = t
        .wait_for(&binding_path(&guid), has_state("create", "failed"))
        .await;
    let took = started.elapsed();
    assert_eq!(
        failed.body["entity"]["last_operation"]["description"],
        TIMED_OUT
    );
    assert!(took >= Duration::from_millis(950), "gave up after {took:?}");
    assert!(took < Duration::from_secs(6), "gave up only after {took:?}");
    // It was polled until then, and is unbound at the broker after.
    assert!(polls(&t, &guid).len() >= 3);
    eventually("orphan unbind", || !unbinds(&t, &guid).is_empty()).await;
    jobs_settle(&t).await;
    let n = polls(&t, &guid).len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(polls(&t, &guid).len(), n, "polled after giving up");
}

async fn runner_maximum_polling_duration_fails_the_binding(backend: Backend) {
    // The plan allows an hour; the runner only one second.
    let mut runner = fast_runner(Duration::from_secs(10));
    runner.max_poll_duration = Duration::from_secs(1);
    let t = TestApp::start_with(
        backend,
        Options {
            runner_config: Some(runner),
            ..Default::default()
        },
    )
    .await;
    let w = t.world().await;
    let si = async_instance(&t, &w).await;
    // A broker that asks for a long wait is polled again when the time is up, not after it.
    t.broker.script(
        "bind",
        [Reply::Async {
            operation: None,
            polls: 1_000_000,
            final_state: "succeeded",
            retry_after: Some(3600),
        }],
    );
    let started = Instant::now();
    let r = bind_async(&t, &w.app, &si, json!({})).await;
    let guid = guid_of(&r);
    let failed = t
        .wait_for(&binding_path(&guid), has_state("create", "failed"))
        .await;
    let took = started.elapsed();
    assert_eq!(
        failed.body["entity"]["last_operation"]["description"],
        TIMED_OUT
    );
    assert!(took >= Duration::from_millis(950), "gave up after {took:?}");
    assert!(took < Duration::from_secs(6), "gave up only after {took:?}");
    eventually("orphan unbind", || !unbinds(&t, &guid).is_empty()).await;
}

async fn misbehaving_polls_keep_polling(backend: Backend) {
    // 5xx, garbage, an unknown state, a 410 during a create, a 404, and a poll that hangs past
    // the broker timeout: all mean "poll again" (OSB A.7, D.8).
    let t = TestApp::start_with(
        backend,
        Options {
            broker_timeout: Duration::from_millis(700),
            ..Default::default()
        },
    )
    .await;
    let w = t.world().await;
    let si = async_instance(&t, &w).await;
    t.broker.script(
        "bind",
        [Reply::Async {
            operation: Some("flaky".into()),
            polls: 1,
            final_state: "succeeded",
            retry_after: None,
        }],
    );
    t.broker.script(
        "poll",
        [
            Reply::Status(500, r#"{"description":"oops"}"#.into()),
            Reply::Status(503, "<html>busy</html>".into()),
            Reply::Status(200, "this is not json".into()),
            Reply::Status(200, r#"{"state":"bogus"}"#.into()),
            Reply::Status(200, r#"["succeeded"]"#.into()),
            Reply::Status(410, "{}".into()),
            Reply::Status(404, "{}".into()),
            Reply::Status(202, r#"{"state":"succeeded"}"#.into()),
            Reply::hang(),
        ],
    );
    let r = bind_async(&t, &w.app, &si, json!({})).await;
    let guid = guid_of(&r);
    // While the broker misbehaves the binding stays in progress.
    eventually("the hanging poll", || t.broker.in_flight("poll") > 0).await;
    let (op, state) = state_of(&t.get(&binding_path(&guid)).await);
    assert_eq!((op.as_str(), state.as_str()), ("create", "in progress"));
    let done = t
        .wait_for(&binding_path(&guid), has_state("create", "succeeded"))
        .await;
    assert_eq!(
        done.body["entity"]["credentials"]["username"],
        format!("user-{guid}")
    );
    // 9 bad polls, then "in progress", then "succeeded".
    let all = polls(&t, &guid);
    assert_eq!(all.len(), 11);
    for p in &all {
        assert_operation_param(p, "flaky");
    }
}

// ------------------------------------------------------------------------------------------
// Async delete

async fn async_delete_until_broker_succeeds(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let r = t.bind(&w.app, &w.instance, json!({})).await;
    r.assert_status(201);
    let guid = guid_of(&r);
    t.broker.script(
        "unbind",
        [Reply::Async {
            operation: Some("unbind/1".into()),
            polls: 1_000_000,
            final_state: "succeeded",
            retry_after: None,
        }],
    );
    let d = t
        .delete(&format!("{}?accepts_incomplete=true", binding_path(&guid)))
        .await;
    d.assert_status(202);
    assert_eq!(d.header("location"), Some(binding_path(&guid).as_str()));
    assert_eq!(state_of(&d), ("delete".into(), "in progress".into()));
    assert_eq!(d.body["metadata"]["guid"], guid);
    let del = &unbinds(&t, &guid)[0];
    assert_eq!(
        del.query_param("accepts_incomplete").as_deref(),
        Some("true")
    );
    assert!(del.header("x-broker-api-originating-identity").is_some());

    // Still there while the broker works on it.
    eventually("two polls", || polls(&t, &guid).len() >= 2).await;
    let shown = t.get(&binding_path(&guid)).await;
    shown.assert_status(200);
    assert_eq!(state_of(&shown), ("delete".into(), "in progress".into()));
    assert_eq!(t.count("service_bindings").await, 1);

    // In-progress conflicts: another delete (sync, async, or as a job) is refused with CC's
    // AsyncServiceBindingOperationInProgress; a create for the same app and instance is
    // "already bound".
    for path in [
        binding_path(&guid),
        format!("{}?accepts_incomplete=true", binding_path(&guid)),
        format!("{}?async=true", binding_path(&guid)),
    ] {
        let again = t.delete(&path).await;
        again.assert_error(409, "CF-AsyncServiceBindingOperationInProgress");
        assert_eq!(again.body["code"], 90008);
        assert_eq!(
            again.body["description"],
            "An operation for the service binding between app my-app and service instance my-db is in progress."
        );
    }
    assert_eq!(
        unbinds(&t, &guid).len(),
        1,
        "a refused delete reached the broker"
    );
    t.bind(&w.app, &w.instance, json!({}))
        .await
        .assert_error(400, "CF-ServiceBindingAppServiceTaken");

    // The broker finishes: gone.
    assert!(t.broker.set_remaining_polls(&guid, 0));
    t.wait_for(&binding_path(&guid), |r| r.status.as_u16() == 404)
        .await
        .assert_error(404, "CF-ServiceBindingNotFound");
    assert!(!t.broker.has_binding(&guid));
    for p in polls(&t, &guid) {
        assert_operation_param(&p, "unbind/1");
        assert_eq!(p.query_param("service_id").as_deref(), Some(SERVICE_ID));
        assert!(p.query_param("plan_id").is_some());
    }
    jobs_settle(&t).await;
    assert_eq!(t.count("service_bindings").await, 0);
}

async fn async_delete_410_means_gone(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let guid = guid_of(&t.bind(&w.app, &w.instance, json!({})).await);
    t.broker.script(
        "unbind",
        [Reply::Async {
            operation: None,
            polls: 1_000_000,
            final_state: "succeeded",
            retry_after: None,
        }],
    );
    t.broker.script(
        "poll",
        [
            Reply::Status(500, "{}".into()),
            Reply::Status(410, "{}".into()),
        ],
    );
    let d = t
        .delete(&format!("{}?accepts_incomplete=true", binding_path(&guid)))
        .await;
    d.assert_status(202);
    t.wait_for(&binding_path(&guid), |r| r.status.as_u16() == 404)
        .await;
    assert_eq!(polls(&t, &guid).len(), 2);
    jobs_settle(&t).await;
}

async fn async_delete_failed_keeps_the_binding(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let guid = guid_of(&t.bind(&w.app, &w.instance, json!({})).await);
    t.broker.script(
        "unbind",
        [Reply::Async {
            operation: None,
            polls: 1,
            final_state: "failed",
            retry_after: None,
        }],
    );
    t.delete(&format!("{}?accepts_incomplete=true", binding_path(&guid)))
        .await
        .assert_status(202);
    let failed = t
        .wait_for(&binding_path(&guid), has_state("delete", "failed"))
        .await;
    assert_eq!(
        failed.body["entity"]["last_operation"]["description"],
        "unbind failed"
    );
    // Credentials are kept: the binding still exists at the broker.
    assert_eq!(
        failed.body["entity"]["credentials"]["username"],
        format!("user-{guid}")
    );
    assert!(t.broker.has_binding(&guid));
    jobs_settle(&t).await;
    // A later delete works.
    t.delete(&binding_path(&guid)).await.assert_status(204);
    assert!(!t.broker.has_binding(&guid));
}

async fn async_delete_202_without_accepts_incomplete_deletes_with_warning(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let guid = guid_of(&t.bind(&w.app, &w.instance, json!({})).await);
    t.broker.script(
        "unbind",
        [Reply::Status(202, r#"{"operation":"x"}"#.into())],
    );
    let d = t.delete(&binding_path(&guid)).await;
    d.assert_status(204);
    assert!(
        d.header("x-cf-warnings")
            .is_some_and(|w| w.contains("accepts_incomplete")),
        "{:?}",
        d.headers
    );
    t.get(&binding_path(&guid))
        .await
        .assert_error(404, "CF-ServiceBindingNotFound");
}

async fn delete_during_async_create(backend: Backend) {
    // CC lets a binding whose create is in progress be deleted (OSB: the broker must stop the
    // creation); polling stops.
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let si = async_instance(&t, &w).await;
    t.broker.script(
        "bind",
        [Reply::Async {
            operation: Some("creating".into()),
            polls: 1_000_000,
            final_state: "succeeded",
            retry_after: None,
        }],
    );
    let guid = guid_of(&bind_async(&t, &w.app, &si, json!({})).await);
    eventually("a poll", || !polls(&t, &guid).is_empty()).await;
    t.delete(&binding_path(&guid)).await.assert_status(204);
    assert!(!t.broker.has_binding(&guid));
    jobs_settle(&t).await;
    let n = polls(&t, &guid).len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(polls(&t, &guid).len(), n, "still polling a deleted binding");
    assert_eq!(t.count("service_bindings").await, 0);
}

// ------------------------------------------------------------------------------------------
// Async answers the platform refuses

async fn broker_202_without_accepts_incomplete(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    t.broker.script(
        "bind",
        [Reply::Status(202, r#"{"operation":"sneaky"}"#.into())],
    );
    let r = t.bind(&w.app, &w.instance, json!({})).await;
    r.assert_error(502, "CF-ServiceBrokerRespondedAsyncWhenNotAllowed");
    assert_eq!(r.body["code"], 270017);
    assert_eq!(t.count("service_bindings").await, 0);
    let id = last_bound_id(&t);
    let put = &t.broker.requests_to("PUT", "/service_bindings/")[0];
    assert_eq!(put.query_param("accepts_incomplete"), None);
    eventually("orphan unbind", || !unbinds(&t, &id).is_empty()).await;
    jobs_settle(&t).await;
    assert!(polls(&t, &id).is_empty(), "polled a refused binding");

    // An async-only plan without accepts_incomplete: the broker's 422 AsyncRequired, nothing
    // stored, nothing to clean up.
    let si = async_instance(&t, &w).await;
    t.broker.clear_requests();
    let r = t.bind(&w.app, &si, json!({})).await;
    r.assert_error(400, "CF-AsyncRequired");
    assert_eq!(t.count("service_bindings").await, 0);
    assert_eq!(pending_jobs(&t).await, 0, "orphan mitigation after a 422");
    assert!(t
        .broker
        .requests_to("DELETE", "/service_bindings/")
        .is_empty());
}

async fn broker_202_when_bindings_not_retrievable(backend: Backend) {
    let t = TestApp::start(backend).await;
    t.broker.set_catalog(catalog_with(
        json!({"bindings_retrievable": false}),
        json!({}),
    ));
    let w = t.world().await;
    let si = async_instance(&t, &w).await;
    let r = bind_async(&t, &w.app, &si, json!({})).await;
    r.assert_error(400, "CF-ServiceBindingInvalid");
    assert_eq!(r.body["code"], 90001);
    assert_eq!(
        r.body["description"],
        "The service binding is invalid: Could not create asynchronous binding when bindings_retrievable is false."
    );
    assert_eq!(t.count("service_bindings").await, 0);
    let id = last_bound_id(&t);
    eventually("orphan unbind", || !unbinds(&t, &id).is_empty()).await;
    eventually("broker forgot the binding", || !t.broker.has_binding(&id)).await;

    // Parameters cannot be fetched from such a service either.
    let b = t.bind(&w.app, &w.instance, json!({})).await;
    b.assert_status(201);
    t.get(&format!("{}/parameters", binding_path(&guid_of(&b))))
        .await
        .assert_error(400, "CF-ServiceFetchBindingParametersNotSupported");
}

async fn parameters_come_from_the_broker(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let guid = guid_of(&t.bind(&w.app, &w.instance, json!({})).await);
    t.broker.clear_requests();
    let p = t.get(&format!("{}/parameters", binding_path(&guid))).await;
    p.assert_status(200);
    assert_eq!(p.body, json!({"fetched": true}));
    let f = fetches(&t, &guid);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].query_param("service_id").as_deref(), Some(SERVICE_ID));
    // A broker failure is a broker error, not ours.
    t.broker.script(
        "fetch",
        [Reply::Status(500, r#"{"description":"down"}"#.into())],
    );
    let p = t.get(&format!("{}/parameters", binding_path(&guid))).await;
    p.assert_error(502, "CF-ServiceBrokerBadResponse");
    t.get("/v2/service_bindings/no-such-binding/parameters")
        .await
        .assert_error(404, "CF-ServiceBindingNotFound");
}

// ------------------------------------------------------------------------------------------
// DELETE ?async=true: a job

async fn delete_as_job_finishes(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let guid = guid_of(&t.bind(&w.app, &w.instance, json!({})).await);
    t.broker
        .script("unbind", [Reply::Delay(Duration::from_millis(800))]);
    let d = t
        .delete(&format!("{}?async=true", binding_path(&guid)))
        .await;
    d.assert_status(202);
    let job = d.body["metadata"]["guid"].as_str().unwrap().to_string();
    assert_eq!(d.body["metadata"]["url"], format!("/v2/jobs/{job}"));
    assert_eq!(d.body["entity"]["guid"], job);
    assert_eq!(d.body["entity"]["status"], "queued");
    let job_path = format!("/v2/jobs/{job}");
    // Seen running while the broker takes its time, then finished.
    t.wait_for(&job_path, |r| r.body["entity"]["status"] == "running")
        .await;
    let shown = t.get(&binding_path(&guid)).await;
    shown.assert_status(200);
    let done = t
        .wait_for(&job_path, |r| r.body["entity"]["status"] == "finished")
        .await;
    assert!(done.body["entity"].get("error_details").is_none());
    t.get(&binding_path(&guid))
        .await
        .assert_error(404, "CF-ServiceBindingNotFound");
    assert!(!t.broker.has_binding(&guid));
    t.get("/v2/jobs/no-such-job").await.assert_status(404);
}

async fn delete_as_job_fails_with_details(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let guid = guid_of(&t.bind(&w.app, &w.instance, json!({})).await);
    t.broker.script(
        "unbind",
        [Reply::Status(
            500,
            r#"{"description":"broker on fire"}"#.into(),
        )],
    );
    let d = t
        .delete(&format!("{}?async=true", binding_path(&guid)))
        .await;
    d.assert_status(202);
    let job = d.body["metadata"]["guid"].as_str().unwrap().to_string();
    let failed = t
        .wait_for(&format!("/v2/jobs/{job}"), |r| {
            r.body["entity"]["status"] == "failed"
        })
        .await;
    let details = &failed.body["entity"]["error_details"];
    assert!(
        details["description"]
            .as_str()
            .is_some_and(|d| d.contains("broker on fire")),
        "{}",
        failed.text
    );
    assert!(details["error_code"].as_str().is_some());
    // The binding stays, its delete marked failed.
    let shown = t.get(&binding_path(&guid)).await;
    assert_eq!(state_of(&shown), ("delete".into(), "failed".into()));
    assert!(t.broker.has_binding(&guid));
}

async fn delete_as_job_with_async_broker(backend: Backend) {
    // The job's unbind is answered 202: the binding shows delete/in progress and is polled away.
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let guid = guid_of(&t.bind(&w.app, &w.instance, json!({})).await);
    t.broker.script(
        "unbind",
        [Reply::Async {
            operation: Some("job-unbind".into()),
            polls: 3,
            final_state: "succeeded",
            retry_after: None,
        }],
    );
    let d = t
        .delete(&format!("{}?async=true", binding_path(&guid)))
        .await;
    d.assert_status(202);
    let job = d.body["metadata"]["guid"].as_str().unwrap().to_string();
    t.wait_for(&format!("/v2/jobs/{job}"), |r| {
        r.body["entity"]["status"] == "finished"
    })
    .await;
    t.wait_for(&binding_path(&guid), |r| r.status.as_u16() == 404)
        .await;
    let p = polls(&t, &guid);
    assert_eq!(p.len(), 4);
    assert_operation_param(&p[0], "job-unbind");
}

// ------------------------------------------------------------------------------------------
// Orphan mitigation and the sync path

async fn orphan_unbind_retried_with_backoff(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    // A 201 we cannot parse: the broker may hold a binding; it keeps failing the unbind three
    // times, then succeeds.
    t.broker
        .script("bind", [Reply::Status(201, "{not json".into())]);
    t.broker.script(
        "unbind",
        [
            Reply::Status(500, "{}".into()),
            Reply::Status(503, "busy".into()),
            Reply::Status(422, r#"{"error":"ConcurrencyError"}"#.into()),
        ],
    );
    let r = t.bind(&w.app, &w.instance, json!({})).await;
    r.assert_error(502, "CF-ServiceBrokerResponseMalformed");
    assert_eq!(t.count("service_bindings").await, 0);
    let id = last_bound_id(&t);
    eventually("four unbinds", || unbinds(&t, &id).len() >= 4).await;
    jobs_settle(&t).await;
    let dels = unbinds(&t, &id);
    assert_eq!(dels.len(), 4, "retried after success");
    for d in &dels {
        assert_eq!(d.query_param("service_id").as_deref(), Some(SERVICE_ID));
        assert_eq!(d.query_param("accepts_incomplete").as_deref(), Some("true"));
        assert!(d.header("x-broker-api-originating-identity").is_none());
    }
    // Backoff: 100 ms, then 200 ms, then 400 ms (the test runner's base is 100 ms).
    let g = gaps(&dels);
    for (i, gap) in g.iter().enumerate() {
        let min = Duration::from_millis(95 << i);
        assert!(
            *gap >= min,
            "retry {} after {gap:?} (< {min:?}): {g:?}",
            i + 1
        );
    }
    // Nothing visible was stored, and the broker keeps nothing.
    assert_eq!(t.get("/v2/service_bindings").await.body["total_results"], 0);
    // (The broker records a request before it handles it.)
    eventually("the broker to drop the binding", || {
        t.broker.binding_ids().is_empty()
    })
    .await;
}

async fn bind_answers_and_orphan_mitigation(backend: Backend) {
    // What a bind answer means with accepts_incomplete=true, and which failures are cleaned up
    // at the broker (OSB A.10, CC client.rb): never a malformed 200, always a malformed
    // 201/202, another 2xx, or a drain the service may not supply.
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    // A synchronous broker answers 201 even when async is accepted: our 201.
    let r = bind_async(&t, &w.app, &w.instance, json!({})).await;
    r.assert_status(201);
    assert_eq!(state_of(&r), ("create".into(), "succeeded".into()));
    let guid = guid_of(&r);
    assert_eq!(
        r.body["entity"]["credentials"]["username"],
        format!("user-{guid}")
    );
    let put = &t.broker.requests_to("PUT", "/service_bindings/")[0];
    assert_eq!(
        put.query_param("accepts_incomplete").as_deref(),
        Some("true")
    );
    assert!(polls(&t, &guid).is_empty());
    t.delete(&binding_path(&guid)).await.assert_status(204);

    let long_op = format!(r#"{{"operation":"{}"}}"#, "x".repeat(10_001));
    let cases: Vec<(Reply, u16, &str, bool)> = vec![
        (
            Reply::Status(202, "not json".into()),
            502,
            "CF-ServiceBrokerResponseMalformed",
            true,
        ),
        (
            Reply::Status(202, r#"{"operation":42}"#.into()),
            502,
            "CF-ServiceBrokerResponseMalformed",
            true,
        ),
        (
            Reply::Status(202, long_op),
            502,
            "CF-ServiceBrokerResponseMalformed",
            true,
        ),
        (
            Reply::Status(200, "not json".into()),
            502,
            "CF-ServiceBrokerResponseMalformed",
            false,
        ),
        (
            Reply::Status(200, r#"{"credentials":{},"syslog_drain_url":"syslog://x"}"#.into()),
            502,
            "CF-ServiceBrokerInvalidSyslogDrainUrl",
            true,
        ),
        (
            Reply::Status(
                200,
                r#"{"credentials":{},"volume_mounts":[{"driver":"d","container_dir":"/x","mode":"r","device_type":"shared","device":{"volume_id":"v"}}]}"#.into(),
            ),
            502,
            "CF-ServiceBrokerInvalidVolumeMounts",
            true,
        ),
        (
            Reply::Status(204, "".into()),
            502,
            "CF-ServiceBrokerBadResponse",
            true,
        ),
    ];
    for (reply, status, code, mitigated) in cases {
        t.broker.clear_requests();
        t.broker.script("bind", [reply.clone()]);
        let r = bind_async(&t, &w.app, &w.instance, json!({})).await;
        r.assert_error(status, code);
        assert_eq!(
            t.count("service_bindings").await,
            0,
            "{reply:?} stored a binding"
        );
        let id = last_bound_id(&t);
        if mitigated {
            eventually("orphan unbind", || !unbinds(&t, &id).is_empty()).await;
            jobs_settle(&t).await;
        } else {
            // Mitigation is queued before the answer: nothing queued means none will come.
            assert_eq!(pending_jobs(&t).await, 0, "mitigated {reply:?}");
            assert!(unbinds(&t, &id).is_empty(), "mitigated {reply:?}");
        }
        assert!(polls(&t, &id).is_empty(), "polled after {reply:?}");
    }
}

async fn bind_timeout_is_mitigated_and_broker_keeps_nothing(backend: Backend) {
    let t = TestApp::start_with(
        backend,
        Options {
            broker_timeout: Duration::from_millis(500),
            ..Default::default()
        },
    )
    .await;
    let w = t.world().await;
    // The broker would finish the bind after 1.5 s; the platform gave up at 0.5 s.
    t.broker
        .script("bind", [Reply::Delay(Duration::from_millis(1500))]);
    let r = t.bind(&w.app, &w.instance, json!({})).await;
    r.assert_error(504, "CF-HttpClientTimeout");
    assert_eq!(t.count("service_bindings").await, 0);
    let id = last_bound_id(&t);
    eventually("orphan unbind", || !unbinds(&t, &id).is_empty()).await;
    jobs_settle(&t).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(!t.broker.has_binding(&id), "the broker kept an orphan");
}

async fn binding_deleted_while_broker_binds_is_mitigated(backend: Backend) {
    // The broker answers 201, but the row is gone by then (deleted meanwhile): we cannot store
    // the binding, so the broker is told to unbind it.
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    t.broker
        .script("bind", [Reply::Delay(Duration::from_millis(1000))]);
    // The delete's unbind reaches the broker before its bind finished: 410, already gone.
    t.broker.script("unbind", [Reply::Status(410, "{}".into())]);
    let create = t.bind(&w.app, &w.instance, json!({}));
    let delete = async {
        eventually("the bind in flight", || t.broker.in_flight("bind") > 0).await;
        let id = last_bound_id(&t);
        let shown = t.get(&binding_path(&id)).await;
        assert_eq!(state_of(&shown), ("create".into(), "in progress".into()));
        let d = t.delete(&binding_path(&id)).await;
        (id, d)
    };
    let (r, (id, d)) = tokio::join!(create, delete);
    d.assert_status(204);
    r.assert_error(404, "CF-ServiceBindingNotFound");
    assert_eq!(t.count("service_bindings").await, 0);
    // The broker did bind (after the delete); the orphan unbind removes it.
    eventually("orphan unbind", || unbinds(&t, &id).len() >= 2).await;
    eventually("broker forgot the binding", || !t.broker.has_binding(&id)).await;
}

async fn broker_calls_are_bounded(backend: Backend) {
    let t = TestApp::start_with(
        backend,
        Options {
            customize: Some(Box::new(|c| c.broker_max_concurrent = 2)),
            pool_size: 8,
            ..Default::default()
        },
    )
    .await;
    let w = t.world().await;
    let mut apps = Vec::new();
    for i in 0..6 {
        apps.push(t.create_app(&w.space, &format!("app-{i}")).await);
    }
    t.broker.script(
        "bind",
        (0..6).map(|_| Reply::Delay(Duration::from_millis(300))),
    );
    t.broker.reset_max_in_flight();
    let started = Instant::now();
    let results =
        futures_util::future::join_all(apps.iter().map(|a| t.bind(a, &w.instance, json!({}))))
            .await;
    for r in &results {
        r.assert_status(201);
    }
    assert_eq!(
        t.broker.max_in_flight(),
        2,
        "more than 2 broker calls at once"
    );
    // Three rounds of two.
    assert!(started.elapsed() >= Duration::from_millis(850));
}

backend_tests!(
    async_create_polls_then_fetches_credentials,
    async_create_without_operation,
    async_create_failed_records_description,
    poll_400_or_failed_fetch_fails_the_binding,
    retry_after_is_honored,
    plan_maximum_polling_duration_fails_the_binding,
    runner_maximum_polling_duration_fails_the_binding,
    misbehaving_polls_keep_polling,
    async_delete_until_broker_succeeds,
    async_delete_410_means_gone,
    async_delete_failed_keeps_the_binding,
    async_delete_202_without_accepts_incomplete_deletes_with_warning,
    delete_during_async_create,
    broker_202_without_accepts_incomplete,
    broker_202_when_bindings_not_retrievable,
    parameters_come_from_the_broker,
    delete_as_job_finishes,
    delete_as_job_fails_with_details,
    delete_as_job_with_async_broker,
    orphan_unbind_retried_with_backoff,
    bind_answers_and_orphan_mitigation,
    bind_timeout_is_mitigated_and_broker_keeps_nothing,
    binding_deleted_while_broker_binds_is_mitigated,
    broker_calls_are_bounded,
);
