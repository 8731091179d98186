//! Asynchronous binding creation, through the real HTTP API against the real demo broker, on
//! SQLite and PostgreSQL: polling, the fetch of credentials, failures, `Retry-After`, the
//! maximum polling duration, and brokers that misbehave while polled. Jobs run in virtual time
//! (`TestApp::manual`): the test runs what is due and moves the server's clock.

mod common;

use std::time::Duration;

use common::osb::{
    assert_operation_param, async_reply, binding_path, catalog_with, guid_of, has_state, state_of,
    TIMED_OUT,
};
use common::{fast_runner, Backend, Options, TestApp};
use serde_json::json;
use tether::demo_broker::{Reply, PLAN_ASYNC_ID, SERVICE_ID};

async fn async_create_polls_then_fetches_credentials(backend: Backend) {
    let t = TestApp::manual(backend).await;
    let w = t.world().await;
    let si = t.async_instance(&w).await;
    // An operation id that must be percent-encoded on the way back.
    let operation = "op/1 a+b&c=d?e#f%g ä";
    t.broker
        .script("bind", [async_reply(Some(operation), 10_000, "succeeded")]);
    let r = t
        .bind_async(&w.app, &si, json!({"name": "async-binding"}))
        .await;
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

    // Polled, once per step, and the broker's progress description is shown.
    for _ in 0..3 {
        assert!(t.step_jobs().await, "no poll queued");
    }
    assert_eq!(t.polls(&guid).len(), 3);
    let shown = t.get(&binding_path(&guid)).await;
    assert!(
        shown.body["entity"]["last_operation"]["description"]
            .as_str()
            .is_some_and(|d| d.ends_with("polls to go")),
        "{}",
        shown.text
    );
    assert_eq!(state_of(&shown), ("create".into(), "in progress".into()));
    assert_eq!(shown.body["entity"]["credentials"], json!({}));
    // Nothing fetched while in progress.
    assert!(t.fetches(&guid).is_empty());

    // Another create for the same app and instance: CC's "already bound".
    let again = t.bind_async(&w.app, &si, json!({})).await;
    again.assert_error(400, "CF-ServiceBindingAppServiceTaken");
    assert_eq!(
        again.body["description"],
        "The app is already bound to the service."
    );
    assert_eq!(again.body["code"], 90003);

    // The broker finishes: the binding succeeds with the fetched credentials.
    assert!(t.broker.set_remaining_polls(&guid, 1));
    let done = t
        .drive_until(&binding_path(&guid), has_state("create", "succeeded"))
        .await;
    assert_eq!(
        done.body["entity"]["credentials"]["username"],
        format!("user-{guid}")
    );
    assert_eq!(
        done.body["entity"]["last_operation"]["description"],
        "bind succeeded"
    );
    t.settle_jobs().await;
    assert_credentials_sealed(&t, &guid).await;
    assert_polls_and_fetch(&t, &guid, operation);
    // No orphan mitigation for a binding that worked.
    assert!(t.unbinds(&guid).is_empty());
    // The app's binding list shows it too.
    let list = t.get(&format!("/v2/apps/{}/service_bindings", w.app)).await;
    assert_eq!(list.body["total_results"], 1);
    assert_eq!(
        list.body["resources"][0]["entity"]["last_operation"]["state"],
        "succeeded"
    );
}

/// Credentials fetched by the poller are sealed at rest, like the sync path's.
async fn assert_credentials_sealed(t: &TestApp, guid: &str) {
    let g = guid.to_string();
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
}

/// Every poll carried service_id, plan_id and the exact operation, percent-encoded; the
/// credentials came from exactly one GET of the binding, after the last poll.
fn assert_polls_and_fetch(t: &TestApp, guid: &str, operation: &str) {
    let all = t.polls(guid);
    assert_eq!(all.len(), 5, "3 polls, then 1 to go, then succeeded");
    for p in &all {
        assert_eq!(p.query_param("service_id").as_deref(), Some(SERVICE_ID));
        assert_eq!(p.query_param("plan_id").as_deref(), Some(PLAN_ASYNC_ID));
        assert_operation_param(p, operation);
        assert_eq!(p.header("x-broker-api-version"), Some("2.15"));
        assert!(p.body.is_none());
    }
    let f = t.fetches(guid);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].query_param("service_id").as_deref(), Some(SERVICE_ID));
    assert_eq!(f[0].query_param("plan_id").as_deref(), Some(PLAN_ASYNC_ID));
    assert!(f[0].at > all.last().unwrap().at);
}

async fn async_create_without_operation(backend: Backend) {
    // A 202 without an `operation` is polled without one.
    let t = TestApp::manual(backend).await;
    let w = t.world().await;
    let si = t.async_instance(&w).await;
    t.broker.script("bind", [async_reply(None, 2, "succeeded")]);
    let r = t.bind_async(&w.app, &si, json!({})).await;
    r.assert_status(202);
    let guid = guid_of(&r);
    t.drive_until(&binding_path(&guid), has_state("create", "succeeded"))
        .await;
    let all = t.polls(&guid);
    assert_eq!(all.len(), 3, "2 × in progress, then succeeded");
    for p in &all {
        assert_eq!(p.query_param("operation"), None, "{}", p.query);
    }
}

async fn async_create_failed_records_description(backend: Backend) {
    let t = TestApp::manual(backend).await;
    let w = t.world().await;
    let si = t.async_instance(&w).await;
    t.broker
        .script("bind", [async_reply(Some("will-fail"), 1, "failed")]);
    let r = t.bind_async(&w.app, &si, json!({})).await;
    r.assert_status(202);
    let guid = guid_of(&r);
    let failed = t
        .drive_until(&binding_path(&guid), has_state("create", "failed"))
        .await;
    assert_eq!(
        failed.body["entity"]["last_operation"]["description"],
        "bind failed"
    );
    assert_eq!(failed.body["entity"]["credentials"], json!({}));
    // No fetch after a failure; the broker is told to clean up (OSB A.10), platform-initiated.
    assert!(t.fetches(&guid).is_empty());
    t.settle_jobs().await;
    let del = &t.unbinds(&guid)[0];
    assert_eq!(del.query_param("service_id").as_deref(), Some(SERVICE_ID));
    assert_eq!(del.query_param("plan_id").as_deref(), Some(PLAN_ASYNC_ID));
    assert!(del.header("x-broker-api-originating-identity").is_none());
    // The failed binding stays visible (as in CC) until deleted, and can be deleted.
    t.get(&binding_path(&guid)).await.assert_status(200);
    t.delete(&binding_path(&guid)).await.assert_status(204);
    t.get(&binding_path(&guid))
        .await
        .assert_error(404, "CF-ServiceBindingNotFound");
    // And the app can be bound again.
    t.broker.script("bind", [async_reply(None, 0, "succeeded")]);
    let again = t.bind_async(&w.app, &si, json!({})).await;
    again.assert_status(202);
    t.drive_until(
        &binding_path(&guid_of(&again)),
        has_state("create", "succeeded"),
    )
    .await;
}

async fn poll_400_or_failed_fetch_fails_the_binding(backend: Backend) {
    let t = TestApp::manual(backend).await;
    let w = t.world().await;
    let si = t.async_instance(&w).await;
    // CC: a 400 on last_operation means the operation failed.
    t.broker.script("bind", [async_reply(None, 5, "succeeded")]);
    t.broker.script(
        "poll",
        [Reply::Status(400, r#"{"description":"no such op"}"#.into())],
    );
    let r = t.bind_async(&w.app, &si, json!({})).await;
    let guid = guid_of(&r);
    let failed = t
        .drive_until(&binding_path(&guid), has_state("create", "failed"))
        .await;
    assert_eq!(
        failed.body["entity"]["last_operation"]["description"],
        "no such op"
    );
    assert_eq!(t.polls(&guid).len(), 1);
    t.delete(&binding_path(&guid)).await.assert_status(204);
    t.settle_jobs().await;

    // `succeeded`, but the binding cannot be fetched: failed, and unbound at the broker.
    t.broker.script("bind", [async_reply(None, 0, "succeeded")]);
    t.broker.script(
        "fetch",
        [Reply::Status(500, r#"{"description":"x"}"#.into())],
    );
    let r = t.bind_async(&w.app, &si, json!({})).await;
    let guid = guid_of(&r);
    let failed = t
        .drive_until(&binding_path(&guid), has_state("create", "failed"))
        .await;
    assert_eq!(
        failed.body["entity"]["last_operation"]["description"],
        "A valid binding could not be fetched from the service broker."
    );
    assert_eq!(failed.body["entity"]["credentials"], json!({}));
    t.settle_jobs().await;
    assert!(!t.unbinds(&guid).is_empty(), "no orphan unbind");
    assert!(!t.broker.has_binding(&guid), "the broker kept the binding");
}

async fn retry_after_is_honored(backend: Backend) {
    // The runner polls every 100 ms; a broker's `Retry-After: 1` stretches that to a second.
    let t = TestApp::manual(backend).await;
    let w = t.world().await;
    let si = t.async_instance(&w).await;
    t.broker.script(
        "bind",
        [Reply::Async {
            operation: Some("slow".into()),
            polls: 3,
            final_state: "succeeded",
            retry_after: Some(1),
        }],
    );
    let slow = guid_of(&t.bind_async(&w.app, &si, json!({})).await);
    t.run_jobs().await;
    assert_eq!(t.polls(&slow).len(), 1, "the first poll is due at once");
    for n in 2..=4 {
        t.advance(Duration::from_millis(500)).await;
        assert_eq!(t.polls(&slow).len(), n - 1, "polled before its Retry-After");
        t.advance(Duration::from_millis(500)).await;
        assert_eq!(t.polls(&slow).len(), n, "not polled after its Retry-After");
    }
    t.drive_until(&binding_path(&slow), has_state("create", "succeeded"))
        .await;
    assert_eq!(t.polls(&slow).len(), 4);

    // Without Retry-After, the runner's own interval (100 ms) applies.
    let app2 = t.create_app(&w.space, "app-2").await;
    t.broker
        .script("bind", [async_reply(Some("fast"), 3, "succeeded")]);
    let fast = guid_of(&t.bind_async(&app2, &si, json!({})).await);
    t.run_jobs().await;
    for n in 2..=4 {
        assert_eq!(t.polls(&fast).len(), n - 1);
        t.advance(Duration::from_millis(100)).await;
        assert_eq!(t.polls(&fast).len(), n, "the 100 ms interval was not used");
    }
    t.drive_until(&binding_path(&fast), has_state("create", "succeeded"))
        .await;
}

/// Polls until the binding fails for lack of time; returns the virtual time it took.
async fn fails_for_lack_of_time(t: &TestApp, guid: &str) -> Duration {
    let started = t.state.clock.now();
    let failed = t
        .drive_until(&binding_path(guid), has_state("create", "failed"))
        .await;
    assert_eq!(
        failed.body["entity"]["last_operation"]["description"],
        TIMED_OUT
    );
    (t.state.clock.now() - started).to_std().unwrap()
}

async fn plan_maximum_polling_duration_fails_the_binding(backend: Backend) {
    let t = TestApp::manual(backend).await;
    // The plan allows one second of polling (the runner would allow 7 days).
    t.broker.set_catalog(catalog_with(
        json!({}),
        json!({"maximum_polling_duration": 1}),
    ));
    let w = t.world().await;
    let si = t.async_instance(&w).await;
    t.broker.script(
        "bind",
        [async_reply(Some("forever"), 1_000_000, "succeeded")],
    );
    let guid = guid_of(&t.bind_async(&w.app, &si, json!({})).await);
    let took = fails_for_lack_of_time(&t, &guid).await;
    assert!(took >= Duration::from_millis(950), "gave up after {took:?}");
    assert!(took < Duration::from_secs(6), "gave up only after {took:?}");
    // It was polled every 100 ms until then (the clock also moves on its own while the
    // polls run, so the count varies), and is unbound at the broker after.
    assert!(t.polls(&guid).len() >= 3, "{} polls", t.polls(&guid).len());
    t.settle_jobs().await;
    assert!(!t.unbinds(&guid).is_empty(), "no orphan unbind");
    let n = t.polls(&guid).len();
    t.advance(Duration::from_secs(60)).await;
    assert_eq!(t.polls(&guid).len(), n, "polled after giving up");
}

async fn runner_maximum_polling_duration_fails_the_binding(backend: Backend) {
    // The plan allows an hour; the runner only one second.
    let mut runner = fast_runner(Duration::from_secs(10));
    runner.max_poll_duration = Duration::from_secs(1);
    let opts = Options {
        runner_config: Some(runner),
        ..Default::default()
    };
    let t = TestApp::manual_with(backend, opts).await;
    let w = t.world().await;
    let si = t.async_instance(&w).await;
    // A broker that asks for a long wait: the binding fails when the time is up, not after
    // the hour it asked for.
    t.broker.script(
        "bind",
        [Reply::Async {
            operation: None,
            polls: 1_000_000,
            final_state: "succeeded",
            retry_after: Some(3600),
        }],
    );
    let guid = guid_of(&t.bind_async(&w.app, &si, json!({})).await);
    let took = fails_for_lack_of_time(&t, &guid).await;
    assert!(took >= Duration::from_millis(950), "gave up after {took:?}");
    assert!(took < Duration::from_secs(6), "gave up only after {took:?}");
    assert_eq!(
        t.polls(&guid).len(),
        1,
        "polled during the hour it asked for"
    );
    t.settle_jobs().await;
    assert!(!t.unbinds(&guid).is_empty(), "no orphan unbind");
}

async fn misbehaving_polls_keep_polling(backend: Backend) {
    // 5xx, garbage, an unknown state, a 410 during a create, a 404, and a poll that hangs past
    // the broker timeout: all mean "poll again" (OSB A.7, D.8).
    let opts = Options {
        broker_timeout: Duration::from_millis(700),
        ..Default::default()
    };
    let t = TestApp::manual_with(backend, opts).await;
    let w = t.world().await;
    let si = t.async_instance(&w).await;
    t.broker
        .script("bind", [async_reply(Some("flaky"), 1, "succeeded")]);
    let bad_polls = [
        Reply::Status(500, r#"{"description":"oops"}"#.into()),
        Reply::Status(503, "<html>busy</html>".into()),
        Reply::Status(200, "this is not json".into()),
        Reply::Status(200, r#"{"state":"bogus"}"#.into()),
        Reply::Status(200, r#"["succeeded"]"#.into()),
        Reply::Status(410, "{}".into()),
        Reply::Status(404, "{}".into()),
        Reply::Status(202, r#"{"state":"succeeded"}"#.into()),
        Reply::hang(),
    ];
    let bad = bad_polls.len();
    t.broker.script("poll", bad_polls);
    let guid = guid_of(&t.bind_async(&w.app, &si, json!({})).await);
    // While the broker misbehaves the binding stays in progress.
    for n in 1..=bad {
        assert!(t.step_jobs().await);
        assert_eq!(t.polls(&guid).len(), n);
        let shown = t.get(&binding_path(&guid)).await;
        assert_eq!(state_of(&shown), ("create".into(), "in progress".into()));
    }
    let done = t
        .drive_until(&binding_path(&guid), has_state("create", "succeeded"))
        .await;
    assert_eq!(
        done.body["entity"]["credentials"]["username"],
        format!("user-{guid}")
    );
    // 9 bad polls, then "in progress", then "succeeded".
    let all = t.polls(&guid);
    assert_eq!(all.len(), 11);
    for p in &all {
        assert_operation_param(p, "flaky");
    }
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
);
