//! Asynchronous binding deletion, through the real HTTP API against the real demo broker, on
//! SQLite and PostgreSQL: polled unbinds, in-progress conflicts, `410 Gone`, failures, a delete
//! during an async create, and `DELETE ?async=true` jobs. Jobs run in virtual time
//! (`TestApp::manual`).

mod common;

use std::time::Duration;

use common::osb::{
    assert_operation_param, async_reply, binding_path, guid_of, has_state, is_gone, state_of,
};
use common::{Backend, TestApp};
use serde_json::json;
use tether::demo_broker::{Reply, SERVICE_ID};

async fn async_delete_until_broker_succeeds(backend: Backend) {
    let t = TestApp::manual(backend).await;
    let w = t.world().await;
    let r = t.bind(&w.app, &w.instance, json!({})).await;
    r.assert_status(201);
    let guid = guid_of(&r);
    t.broker.script(
        "unbind",
        [async_reply(Some("unbind/1"), 1_000_000, "succeeded")],
    );
    let d = t
        .delete(&format!("{}?accepts_incomplete=true", binding_path(&guid)))
        .await;
    d.assert_status(202);
    assert_eq!(d.header("location"), Some(binding_path(&guid).as_str()));
    assert_eq!(state_of(&d), ("delete".into(), "in progress".into()));
    assert_eq!(d.body["metadata"]["guid"], guid);
    let del = &t.unbinds(&guid)[0];
    assert_eq!(
        del.query_param("accepts_incomplete").as_deref(),
        Some("true")
    );
    assert!(del.header("x-broker-api-originating-identity").is_some());

    // Still there while the broker works on it.
    t.step_jobs().await;
    t.step_jobs().await;
    assert_eq!(t.polls(&guid).len(), 2);
    let shown = t.get(&binding_path(&guid)).await;
    shown.assert_status(200);
    assert_eq!(state_of(&shown), ("delete".into(), "in progress".into()));
    assert_eq!(t.count("service_bindings").await, 1);

    refuses_what_conflicts_with_the_delete(&t, &w, &guid).await;

    // The broker finishes: gone.
    assert!(t.broker.set_remaining_polls(&guid, 0));
    t.drive_until(&binding_path(&guid), is_gone)
        .await
        .assert_error(404, "CF-ServiceBindingNotFound");
    assert!(!t.broker.has_binding(&guid));
    for p in t.polls(&guid) {
        assert_operation_param(&p, "unbind/1");
        assert_eq!(p.query_param("service_id").as_deref(), Some(SERVICE_ID));
        assert!(p.query_param("plan_id").is_some());
    }
    t.settle_jobs().await;
    assert_eq!(t.count("service_bindings").await, 0);
}

/// In-progress conflicts: another delete (sync, async, or as a job) is refused with CC's
/// AsyncServiceBindingOperationInProgress; a create for the same app and instance is "already
/// bound".
async fn refuses_what_conflicts_with_the_delete(t: &TestApp, w: &common::World, guid: &str) {
    for path in [
        binding_path(guid),
        format!("{}?accepts_incomplete=true", binding_path(guid)),
        format!("{}?async=true", binding_path(guid)),
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
        t.unbinds(guid).len(),
        1,
        "a refused delete reached the broker"
    );
    t.bind(&w.app, &w.instance, json!({}))
        .await
        .assert_error(400, "CF-ServiceBindingAppServiceTaken");
}

async fn async_delete_410_means_gone(backend: Backend) {
    let t = TestApp::manual(backend).await;
    let w = t.world().await;
    let guid = guid_of(&t.bind(&w.app, &w.instance, json!({})).await);
    t.broker
        .script("unbind", [async_reply(None, 1_000_000, "succeeded")]);
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
    t.drive_until(&binding_path(&guid), is_gone).await;
    assert_eq!(t.polls(&guid).len(), 2);
    t.settle_jobs().await;
}

async fn async_delete_failed_keeps_the_binding(backend: Backend) {
    let t = TestApp::manual(backend).await;
    let w = t.world().await;
    let guid = guid_of(&t.bind(&w.app, &w.instance, json!({})).await);
    t.broker.script("unbind", [async_reply(None, 1, "failed")]);
    t.delete(&format!("{}?accepts_incomplete=true", binding_path(&guid)))
        .await
        .assert_status(202);
    let failed = t
        .drive_until(&binding_path(&guid), has_state("delete", "failed"))
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
    t.settle_jobs().await;
    // A later delete works.
    t.delete(&binding_path(&guid)).await.assert_status(204);
    assert!(!t.broker.has_binding(&guid));
}

async fn async_delete_202_without_accepts_incomplete_deletes_with_warning(backend: Backend) {
    let t = TestApp::manual(backend).await;
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
    assert_eq!(t.pending_jobs().await, 0, "nothing to poll");
}

async fn delete_during_async_create(backend: Backend) {
    // CC lets a binding whose create is in progress be deleted (OSB: the broker must stop the
    // creation); polling stops.
    let t = TestApp::manual(backend).await;
    let w = t.world().await;
    let si = t.async_instance(&w).await;
    t.broker.script(
        "bind",
        [async_reply(Some("creating"), 1_000_000, "succeeded")],
    );
    let guid = guid_of(&t.bind_async(&w.app, &si, json!({})).await);
    t.step_jobs().await;
    assert_eq!(t.polls(&guid).len(), 1);
    t.delete(&binding_path(&guid)).await.assert_status(204);
    assert!(!t.broker.has_binding(&guid));
    t.settle_jobs().await;
    t.advance(Duration::from_secs(60)).await;
    assert_eq!(t.polls(&guid).len(), 1, "still polling a deleted binding");
    assert_eq!(t.count("service_bindings").await, 0);
}

// ------------------------------------------------------------------------------------------
// DELETE ?async=true: a job

/// `DELETE /v2/service_bindings/:guid?async=true`: the job's guid.
async fn delete_as_job(t: &TestApp, guid: &str) -> String {
    let d = t
        .delete(&format!("{}?async=true", binding_path(guid)))
        .await;
    d.assert_status(202);
    let job = d.body["metadata"]["guid"].as_str().unwrap().to_string();
    assert_eq!(d.body["metadata"]["url"], format!("/v2/jobs/{job}"));
    assert_eq!(d.body["entity"]["guid"], job);
    assert_eq!(d.body["entity"]["status"], "queued");
    job
}

fn job_status(r: &common::Response) -> &str {
    r.body["entity"]["status"].as_str().unwrap_or_default()
}

async fn delete_as_job_finishes(backend: Backend) {
    let t = TestApp::manual(backend).await;
    let w = t.world().await;
    let guid = guid_of(&t.bind(&w.app, &w.instance, json!({})).await);
    t.broker
        .script("unbind", [Reply::Delay(Duration::from_millis(500))]);
    let job_path = format!("/v2/jobs/{}", delete_as_job(&t, &guid).await);
    assert_eq!(job_status(&t.get(&job_path).await), "queued");
    // Seen running while the broker takes its time, then finished.
    let watch = async {
        common::wait_until("the unbind in flight", || t.broker.in_flight("unbind") > 0).await;
        let running = t.get(&job_path).await;
        let binding = t.get(&binding_path(&guid)).await;
        (running, binding)
    };
    let (ran, (running, binding)) = tokio::join!(t.run_jobs(), watch);
    assert_eq!(ran, 1);
    assert_eq!(job_status(&running), "running");
    binding.assert_status(200);
    let done = t.get(&job_path).await;
    assert_eq!(job_status(&done), "finished");
    assert!(done.body["entity"].get("error_details").is_none());
    t.get(&binding_path(&guid))
        .await
        .assert_error(404, "CF-ServiceBindingNotFound");
    assert!(!t.broker.has_binding(&guid));
    t.get("/v2/jobs/no-such-job").await.assert_status(404);
}

async fn delete_as_job_fails_with_details(backend: Backend) {
    let t = TestApp::manual(backend).await;
    let w = t.world().await;
    let guid = guid_of(&t.bind(&w.app, &w.instance, json!({})).await);
    t.broker.script(
        "unbind",
        [Reply::Status(
            500,
            r#"{"description":"broker on fire"}"#.into(),
        )],
    );
    let job = delete_as_job(&t, &guid).await;
    t.run_jobs().await;
    let failed = t.get(&format!("/v2/jobs/{job}")).await;
    assert_eq!(job_status(&failed), "failed");
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
    let t = TestApp::manual(backend).await;
    let w = t.world().await;
    let guid = guid_of(&t.bind(&w.app, &w.instance, json!({})).await);
    t.broker
        .script("unbind", [async_reply(Some("job-unbind"), 3, "succeeded")]);
    let job = delete_as_job(&t, &guid).await;
    t.run_jobs().await;
    assert_eq!(
        job_status(&t.get(&format!("/v2/jobs/{job}")).await),
        "finished"
    );
    let shown = t.get(&binding_path(&guid)).await;
    assert_eq!(state_of(&shown), ("delete".into(), "in progress".into()));
    t.drive_until(&binding_path(&guid), is_gone).await;
    let p = t.polls(&guid);
    assert_eq!(p.len(), 4);
    assert_operation_param(&p[0], "job-unbind");
}

backend_tests!(
    async_delete_until_broker_succeeds,
    async_delete_410_means_gone,
    async_delete_failed_keeps_the_binding,
    async_delete_202_without_accepts_incomplete_deletes_with_warning,
    delete_during_async_create,
    delete_as_job_finishes,
    delete_as_job_fails_with_details,
    delete_as_job_with_async_broker,
);
