//! Orphan mitigation that never loses an orphan: the failed reservation's row and its cleanup
//! job commit together (a crash between them is survived), and a cleanup the broker accepts
//! asynchronously is polled to its end and sent again when the broker reports it failed.

mod common;

use std::time::{Duration, Instant};

use common::osb::{async_reply, binding_path, guid_of, has_state};
use common::process::{tether_command, ServerProcess};
use common::{Api, Backend, Options, TestApp, TestDb, BROKER_PASS, BROKER_USER};
use serde_json::json;
use tether::demo_broker::{DemoBroker, Reply};

/// The ids the broker saw bind requests for.
fn bound_ids(broker: &DemoBroker) -> Vec<String> {
    broker
        .requests_to("PUT", "/service_bindings/")
        .iter()
        .filter_map(|r| r.path.rsplit('/').next().map(str::to_string))
        .collect()
}

/// Waits (bounded) until the broker has received `n` unbinds for `binding`.
async fn wait_for_unbinds(broker: &DemoBroker, binding: &str, n: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let seen = broker.requests_to("DELETE", binding).len();
        if seen >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the broker got {seen} of {n} unbinds for {binding}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A broker that bound and then answered garbage holds an orphan. Its cleanup unbind is accepted
/// asynchronously (202), then reported failed: tether polls it, sends the unbind again, and
/// stops only when the broker has deleted the binding.
async fn an_accepted_cleanup_is_polled_and_resent_until_gone(backend: Backend) {
    let app = TestApp::manual(backend).await;
    let w = app.world().await;
    app.broker.script(
        "bind",
        [Reply::Bound(
            201,
            r#"{"credentials": "not an object"}"#.into(),
        )],
    );
    app.broker.script(
        "unbind",
        [
            Reply::Async {
                operation: Some("cleanup-1".into()),
                polls: 1,
                final_state: "failed",
                retry_after: None,
            },
            Reply::Normal,
        ],
    );
    let r = app.bind(&w.app, &w.instance, json!({})).await;
    r.assert_error(502, "CF-ServiceBrokerResponseMalformed");
    let id = bound_ids(&app.broker)
        .pop()
        .expect("a bind reached the broker");
    assert!(app.broker.has_binding(&id), "the broker holds the orphan");

    app.settle_jobs().await;
    assert_eq!(
        app.broker.requests_to("DELETE", &id).len(),
        2,
        "not sent again"
    );
    assert!(
        !app.broker.has_binding(&id),
        "the orphan is still at the broker"
    );
    // It was polled (with the broker's operation id) before it was sent again.
    let polls = app
        .broker
        .requests_to("GET", &format!("{id}/last_operation"));
    assert!(
        polls
            .iter()
            .any(|p| p.query_param("operation").as_deref() == Some("cleanup-1")),
        "no poll of the accepted cleanup"
    );
    let unbinds = app.broker.requests_to("DELETE", &id);
    assert!(unbinds
        .iter()
        .all(|u| u.query_param("accepts_incomplete").as_deref() == Some("true")));
    assert!(
        polls[0].at < unbinds[1].at,
        "resent before the failure was seen"
    );
    // Nothing of it is left on our side either.
    assert_eq!(app.count("service_bindings").await, 0);
    assert_eq!(
        app.pending_jobs().await,
        0,
        "the cleanup job never finished"
    );
}

/// The same for an instance the broker provisioned and then answered with garbage: the cleanup
/// deprovision is accepted (202) and polled until the broker is done.
async fn an_accepted_instance_cleanup_is_polled_to_its_end(backend: Backend) {
    let app = TestApp::manual(backend).await;
    let w = app.world().await;
    app.broker
        .script("provision", [Reply::Bound(201, "not json".into())]);
    app.broker.script(
        "deprovision",
        [Reply::Async {
            operation: Some("cleanup-2".into()),
            polls: 2,
            final_state: "succeeded",
            retry_after: None,
        }],
    );
    let r = app
        .post(
            "/v2/service_instances",
            json!({"name": "orphaned", "space_guid": w.space, "service_plan_guid": w.plan_small}),
        )
        .await;
    r.assert_error(502, "CF-ServiceBrokerResponseMalformed");
    let id = app
        .broker
        .requests_to("PUT", "/v2/service_instances/")
        .last()
        .and_then(|p| p.path.rsplit('/').next().map(str::to_string))
        .unwrap();
    app.settle_jobs().await;
    let polls = app
        .broker
        .requests_to("GET", &format!("{id}/last_operation"));
    assert_eq!(polls.len(), 3, "2 × in progress, then succeeded");
    assert!(polls
        .iter()
        .all(|p| p.query_param("operation").as_deref() == Some("cleanup-2")));
    assert!(
        !app.broker.has_instance(&id),
        "the orphan is still at the broker"
    );
}

/// A crash right after the failed reservation's row is removed, before the cleanup job is stored:
/// both are one transaction, so neither happened; the row stays (`create in progress`), and
/// the next server's sweep of abandoned operations removes it and sends the unbind. (With the two
/// in separate transactions, the row was gone and the orphan forgotten.)
async fn a_crash_between_discard_and_cleanup_loses_no_orphan(backend: Backend) {
    let db = TestDb::new(backend);
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.json");
    let broker = DemoBroker::start(0, BROKER_USER, BROKER_PASS).unwrap();
    let external = "http://tether.test";
    let token = tether_command()
        .args(["token", "--create-secrets", "--external-url", external])
        .arg("--secrets-file")
        .arg(&secrets)
        .output()
        .unwrap();
    assert!(token.status.success());
    let token = String::from_utf8(token.stdout).unwrap().trim().to_string();
    let sweep_fast = [
        ("TETHER_EXTERNAL_URL", external),
        ("TETHER_JOB_ABANDONED_AFTER_SECS", "1"),
        ("TETHER_JOB_SWEEP_SECS", "0.2"),
        ("TETHER_JOB_TICK_SECS", "0.1"),
    ];
    let mut crashing_env = sweep_fast.to_vec();
    crashing_env.push(("TETHER_FAULT", "discard:after-remove"));
    let mut a = ServerProcess::start("server A", &db.url, &secrets, &crashing_env);
    let api = Api::new(a.base.clone(), token.clone(), broker.url.clone());
    let w = api.world().await;
    broker.set_default(
        "bind",
        Reply::Status(500, r#"{"description":"boom"}"#.into()),
    );
    // The request dies with the server.
    let err = api
        .client
        .post(format!("{}/v2/service_bindings", api.base))
        .bearer_auth(&token)
        .json(&json!({"app_guid": w.app, "service_instance_guid": w.instance}))
        .send()
        .await;
    assert!(
        err.is_err(),
        "the server answered instead of crashing: {err:?}"
    );
    a.wait_for_exit(Duration::from_secs(10));
    let id = bound_ids(&broker)
        .pop()
        .expect("the bind reached the broker");
    assert!(broker.requests_to("DELETE", &id).is_empty());

    broker.set_default("bind", Reply::Normal);
    let b = ServerProcess::start("server B", &db.url, &secrets, &sweep_fast);
    wait_for_unbinds(&broker, &id, 1, Duration::from_secs(30)).await;
    let api = Api::new(b.base.clone(), token, broker.url.clone());
    let left = api.get("/v2/service_bindings").await;
    left.assert_status(200);
    assert_eq!(left.body["total_results"], 0, "{}", left.text);
}

/// Asserts that the broker got exactly one cleanup unbind for `binding` (platform-initiated,
/// `accepts_incomplete=true`), and that tether then polled it, always with the operation id the
/// broker gave with its 202, `polls` times, until the broker no longer held the binding; and
/// that no job is left.
async fn assert_cleanup_polled_to_its_end(
    app: &TestApp,
    binding: &str,
    operation: &str,
    polls: usize,
) {
    let unbinds = app.unbinds(binding);
    assert_eq!(unbinds.len(), 1, "one cleanup unbind, accepted");
    assert_eq!(
        unbinds[0].query_param("accepts_incomplete").as_deref(),
        Some("true")
    );
    assert!(unbinds[0]
        .header("x-broker-api-originating-identity")
        .is_none());
    let after: Vec<_> = app
        .polls(binding)
        .into_iter()
        .filter(|p| p.at > unbinds[0].at)
        .collect();
    assert_eq!(after.len(), polls, "polls of the accepted cleanup");
    assert!(
        after
            .iter()
            .all(|p| p.query_param("operation").as_deref() == Some(operation)),
        "a cleanup poll without the broker's operation id"
    );
    assert!(
        !app.broker.has_binding(binding),
        "the orphan is still at the broker"
    );
    assert_eq!(
        app.pending_jobs().await,
        0,
        "the cleanup job never finished"
    );
}

/// An asynchronous bind that the broker reports failed while it still holds the binding: the
/// cleanup unbind is queued with the failure; the broker accepts it (202) and tether polls it
/// until the broker has deleted the binding (it used to stop at the 202, and a broker whose
/// unbind then failed kept the orphan). The failed binding stays visible, as in CC, and can be
/// deleted.
async fn a_failed_async_bind_is_cleaned_up_through_an_accepted_unbind(backend: Backend) {
    let app = TestApp::manual(backend).await;
    let w = app.world().await;
    let si = app.async_instance(&w).await;
    app.broker
        .script("bind", [async_reply(Some("bind-1"), 0, "succeeded")]);
    // The broker says the bind failed, but keeps what it made.
    app.broker.script(
        "poll",
        [Reply::Status(
            200,
            r#"{"state": "failed", "description": "out of capacity"}"#.into(),
        )],
    );
    app.broker
        .script("unbind", [async_reply(Some("cleanup-3"), 2, "succeeded")]);
    let r = app.bind_async(&w.app, &si, json!({})).await;
    r.assert_status(202);
    let guid = guid_of(&r);
    let failed = app
        .drive_until(&binding_path(&guid), has_state("create", "failed"))
        .await;
    assert_eq!(
        failed.body["entity"]["last_operation"]["description"],
        "out of capacity"
    );
    assert!(app.broker.has_binding(&guid), "the broker holds the orphan");

    app.settle_jobs().await;
    // Twice in progress, then succeeded (and the broker deleted it).
    assert_cleanup_polled_to_its_end(&app, &guid, "cleanup-3", 3).await;
    let shown = app.get(&binding_path(&guid)).await;
    assert!(has_state("create", "failed")(&shown), "{}", shown.text);
    app.delete(&binding_path(&guid)).await.assert_status(204);
    assert_eq!(app.count("service_bindings").await, 0);
}

/// A bind that timed out: the broker made the binding, but its answer came after tether gave up
/// waiting. The client gets 504; the cleanup unbind is accepted (202) and polled until the
/// broker has deleted the binding.
async fn a_timed_out_bind_is_cleaned_up_through_an_accepted_unbind(backend: Backend) {
    let app = TestApp::manual_with(
        backend,
        Options {
            broker_timeout: Duration::from_millis(500),
            ..Options::default()
        },
    )
    .await;
    let w = app.world().await;
    app.broker
        .script("bind", [Reply::BoundLate(Duration::from_secs(60))]);
    app.broker
        .script("unbind", [async_reply(Some("cleanup-4"), 1, "succeeded")]);
    let r = app.bind(&w.app, &w.instance, json!({})).await;
    r.assert_error(504, "CF-HttpClientTimeout");
    let id = app.last_bound_id();
    assert!(app.broker.has_binding(&id), "the broker holds the orphan");
    assert_eq!(app.count("service_bindings").await, 0);

    app.settle_jobs().await;
    // Once in progress, then succeeded (and the broker deleted it).
    assert_cleanup_polled_to_its_end(&app, &id, "cleanup-4", 2).await;
    assert_eq!(app.count("service_bindings").await, 0);
}

backend_tests!(
    an_accepted_cleanup_is_polled_and_resent_until_gone,
    an_accepted_instance_cleanup_is_polled_to_its_end,
    a_crash_between_discard_and_cleanup_loses_no_orphan,
    a_failed_async_bind_is_cleaned_up_through_an_accepted_unbind,
    a_timed_out_bind_is_cleaned_up_through_an_accepted_unbind,
);
