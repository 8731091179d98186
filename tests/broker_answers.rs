//! What the platform does with a broker's answer to a bind, on SQLite and PostgreSQL: async
//! answers it must refuse, orphan mitigation (OSB A.10) retried with backoff, timeouts, a
//! binding deleted while its broker binds, the parameters endpoint, and bounded broker
//! concurrency. Jobs run in virtual time (`TestApp::manual`).

mod common;

use std::time::{Duration, Instant};

use common::osb::{binding_path, catalog_with, guid_of, state_of};
use common::{Backend, Options, TestApp};
use serde_json::json;
use tether::demo_broker::{Reply, SERVICE_ID};

async fn broker_202_without_accepts_incomplete(backend: Backend) {
    let t = TestApp::manual(backend).await;
    let w = t.world().await;
    t.broker.script(
        "bind",
        [Reply::Status(202, r#"{"operation":"sneaky"}"#.into())],
    );
    let r = t.bind(&w.app, &w.instance, json!({})).await;
    r.assert_error(502, "CF-ServiceBrokerRespondedAsyncWhenNotAllowed");
    assert_eq!(r.body["code"], 270017);
    assert_eq!(t.count("service_bindings").await, 0);
    let id = t.last_bound_id();
    let put = &t.broker.requests_to("PUT", "/service_bindings/")[0];
    assert_eq!(put.query_param("accepts_incomplete"), None);
    t.settle_jobs().await;
    assert!(!t.unbinds(&id).is_empty(), "no orphan unbind");
    assert!(t.polls(&id).is_empty(), "polled a refused binding");

    // An async-only plan without accepts_incomplete: the broker's 422 AsyncRequired, nothing
    // stored, nothing to clean up.
    let si = t.async_instance(&w).await;
    t.broker.clear_requests();
    let r = t.bind(&w.app, &si, json!({})).await;
    r.assert_error(400, "CF-AsyncRequired");
    assert_eq!(t.count("service_bindings").await, 0);
    assert_eq!(t.pending_jobs().await, 0, "orphan mitigation after a 422");
    assert!(t
        .broker
        .requests_to("DELETE", "/service_bindings/")
        .is_empty());
}

async fn broker_202_when_bindings_not_retrievable(backend: Backend) {
    let t = TestApp::manual(backend).await;
    t.broker.set_catalog(catalog_with(
        json!({"bindings_retrievable": false}),
        json!({}),
    ));
    let w = t.world().await;
    let si = t.async_instance(&w).await;
    let r = t.bind_async(&w.app, &si, json!({})).await;
    r.assert_error(400, "CF-ServiceBindingInvalid");
    assert_eq!(r.body["code"], 90001);
    assert_eq!(
        r.body["description"],
        "The service binding is invalid: Could not create asynchronous binding when bindings_retrievable is false."
    );
    assert_eq!(t.count("service_bindings").await, 0);
    let id = t.last_bound_id();
    t.settle_jobs().await;
    assert!(!t.unbinds(&id).is_empty(), "no orphan unbind");
    assert!(!t.broker.has_binding(&id), "the broker kept the binding");

    // Parameters cannot be fetched from such a service either.
    let b = t.bind(&w.app, &w.instance, json!({})).await;
    b.assert_status(201);
    t.get(&format!("{}/parameters", binding_path(&guid_of(&b))))
        .await
        .assert_error(400, "CF-ServiceFetchBindingParametersNotSupported");
}

async fn parameters_come_from_the_broker(backend: Backend) {
    let t = TestApp::manual(backend).await;
    let w = t.world().await;
    let guid = guid_of(&t.bind(&w.app, &w.instance, json!({})).await);
    t.broker.clear_requests();
    let p = t.get(&format!("{}/parameters", binding_path(&guid))).await;
    p.assert_status(200);
    assert_eq!(p.body, json!({"fetched": true}));
    let f = t.fetches(&guid);
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

async fn orphan_unbind_retried_with_backoff(backend: Backend) {
    let t = TestApp::manual(backend).await;
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
    let id = t.last_bound_id();
    t.run_jobs().await;
    assert_eq!(t.unbinds(&id).len(), 1, "the cleanup is due at once");
    // Backoff: 100 ms, then 200 ms, then 400 ms (the test runner's base is 100 ms): not sent
    // again before half of it has passed, sent again when all of it has.
    for (retry, backoff_ms) in [(2, 100), (3, 200), (4, 400)] {
        t.advance(Duration::from_millis(backoff_ms / 2)).await;
        assert_eq!(t.unbinds(&id).len(), retry - 1, "retried too early");
        t.advance(Duration::from_millis(backoff_ms / 2)).await;
        assert_eq!(
            t.unbinds(&id).len(),
            retry,
            "not retried after {backoff_ms} ms"
        );
    }
    t.settle_jobs().await;
    let dels = t.unbinds(&id);
    assert_eq!(dels.len(), 4, "retried after success");
    for d in &dels {
        assert_eq!(d.query_param("service_id").as_deref(), Some(SERVICE_ID));
        assert_eq!(d.query_param("accepts_incomplete").as_deref(), Some("true"));
        assert!(d.header("x-broker-api-originating-identity").is_none());
    }
    // Nothing visible was stored, and the broker keeps nothing.
    assert_eq!(t.get("/v2/service_bindings").await.body["total_results"], 0);
    assert!(t.broker.binding_ids().is_empty(), "the broker kept it");
}

async fn sync_bind_to_async_capable_broker(t: &TestApp, w: &common::World) {
    // A synchronous broker answers 201 even when async is accepted: our 201.
    let r = t.bind_async(&w.app, &w.instance, json!({})).await;
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
    assert!(t.polls(&guid).is_empty());
    t.delete(&binding_path(&guid)).await.assert_status(204);
}

/// Bind answers that fail the bind: the reply, the status and error code the client gets, and
/// whether the broker is told to clean up (never a malformed 200; always a malformed 201/202,
/// another 2xx, or a drain the service may not supply).
fn failing_bind_answers() -> Vec<(Reply, u16, &'static str, bool)> {
    const MALFORMED: &str = "CF-ServiceBrokerResponseMalformed";
    let long_op = format!(r#"{{"operation":"{}"}}"#, "x".repeat(10_001));
    let drain = r#"{"credentials":{},"syslog_drain_url":"syslog://x"}"#;
    let volumes = r#"{"credentials":{},"volume_mounts":[{"driver":"d","container_dir":"/x","mode":"r","device_type":"shared","device":{"volume_id":"v"}}]}"#;
    vec![
        (Reply::Status(202, "not json".into()), 502, MALFORMED, true),
        (
            Reply::Status(202, r#"{"operation":42}"#.into()),
            502,
            MALFORMED,
            true,
        ),
        (Reply::Status(202, long_op), 502, MALFORMED, true),
        (Reply::Status(200, "not json".into()), 502, MALFORMED, false),
        (
            Reply::Status(200, drain.into()),
            502,
            "CF-ServiceBrokerInvalidSyslogDrainUrl",
            true,
        ),
        (
            Reply::Status(200, volumes.into()),
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
    ]
}

async fn bind_answers_and_orphan_mitigation(backend: Backend) {
    // What a bind answer means with accepts_incomplete=true, and which failures are cleaned up
    // at the broker (OSB A.10, CC client.rb).
    let t = TestApp::manual(backend).await;
    let w = t.world().await;
    sync_bind_to_async_capable_broker(&t, &w).await;
    for (reply, status, code, mitigated) in failing_bind_answers() {
        t.broker.clear_requests();
        t.broker.script("bind", [reply.clone()]);
        let r = t.bind_async(&w.app, &w.instance, json!({})).await;
        r.assert_error(status, code);
        assert_eq!(
            t.count("service_bindings").await,
            0,
            "{reply:?} stored a binding"
        );
        let id = t.last_bound_id();
        // Mitigation is queued before the answer: nothing queued means none will come.
        assert_eq!(t.pending_jobs().await > 0, mitigated, "{reply:?}");
        t.settle_jobs().await;
        assert_eq!(!t.unbinds(&id).is_empty(), mitigated, "{reply:?}");
        assert!(t.polls(&id).is_empty(), "polled after {reply:?}");
    }
}

async fn bind_timeout_is_mitigated_and_broker_keeps_nothing(backend: Backend) {
    let opts = Options {
        broker_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    let t = TestApp::manual_with(backend, opts).await;
    let w = t.world().await;
    // The broker would finish the bind after 1.5 s; the platform gave up at 0.5 s.
    t.broker
        .script("bind", [Reply::Delay(Duration::from_millis(1500))]);
    let r = t.bind(&w.app, &w.instance, json!({})).await;
    r.assert_error(504, "CF-HttpClientTimeout");
    assert_eq!(t.count("service_bindings").await, 0);
    let id = t.last_bound_id();
    t.settle_jobs().await;
    assert!(!t.unbinds(&id).is_empty(), "no orphan unbind");
    // The broker's late bind ends, and leaves nothing behind.
    common::wait_until("the broker's bind to end", || {
        t.broker.in_flight("bind") == 0
    })
    .await;
    assert!(!t.broker.has_binding(&id), "the broker kept an orphan");
}

async fn binding_deleted_while_broker_binds_is_mitigated(backend: Backend) {
    // The broker answers 201, but the row is gone by then (deleted meanwhile): we cannot store
    // the binding, so the broker is told to unbind it.
    let t = TestApp::manual(backend).await;
    let w = t.world().await;
    t.broker
        .script("bind", [Reply::Delay(Duration::from_millis(1000))]);
    // The delete's unbind reaches the broker before its bind finished: 410, already gone.
    t.broker.script("unbind", [Reply::Status(410, "{}".into())]);
    let create = t.bind(&w.app, &w.instance, json!({}));
    let delete = async {
        common::wait_until("the bind in flight", || t.broker.in_flight("bind") > 0).await;
        let id = t.last_bound_id();
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
    t.settle_jobs().await;
    assert!(t.unbinds(&id).len() >= 2, "no orphan unbind");
    assert!(!t.broker.has_binding(&id), "the broker kept the binding");
}

async fn broker_calls_are_bounded(backend: Backend) {
    let opts = Options {
        customize: Some(Box::new(|c| c.broker_max_concurrent = 2)),
        pool_size: 8,
        ..Default::default()
    };
    let t = TestApp::manual_with(backend, opts).await;
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
    broker_202_without_accepts_incomplete,
    broker_202_when_bindings_not_retrievable,
    parameters_come_from_the_broker,
    orphan_unbind_retried_with_backoff,
    bind_answers_and_orphan_mitigation,
    bind_timeout_is_mitigated_and_broker_keeps_nothing,
    binding_deleted_while_broker_binds_is_mitigated,
    broker_calls_are_bounded,
);
