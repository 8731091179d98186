//! Issue 13, item 4: `cf update-service` (`PUT /v2/service_instances/:guid`): a plan change
//! (when the service allows it) and parameters go to the broker's `PATCH` with
//! `previous_values`, synchronously or asynchronously (`last_operation` type `update`, polled by
//! the job queue); while it runs, binds and other operations are refused.

mod common;

use common::{Backend, TestApp, World};
use serde_json::{json, Value};
use tether::demo_broker::{self, Reply};

/// The demo catalog, with `demo-db` allowing plan changes.
async fn updateable_world(t: &TestApp) -> World {
    let mut catalog = demo_broker::demo_catalog();
    catalog["services"][0]["plan_updateable"] = json!(true);
    t.broker.set_catalog(catalog);
    t.world().await
}

fn instance_path(w: &World) -> String {
    format!(
        "/v2/service_instances/{}?accepts_incomplete=true",
        w.instance
    )
}

fn patches(t: &TestApp) -> Vec<demo_broker::Recorded> {
    t.broker.requests_to("PATCH", "/v2/service_instances/")
}

async fn plan_and_parameters_sync(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = updateable_world(&t).await;
    let body = json!({"service_plan_guid": w.plan_async, "parameters": {"x": 1}, "tags": ["t1"]});
    let r = t.put(&instance_path(&w), body).await;
    r.assert_status(201);
    let e = &r.body["entity"];
    assert_eq!(e["service_plan_guid"], w.plan_async.as_str());
    assert_eq!(e["last_operation"]["type"], "update");
    assert_eq!(e["last_operation"]["state"], "succeeded");
    assert_eq!(e["tags"], json!(["t1"]));
    let sent = patches(&t);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].path,
        format!("/v2/service_instances/{}", w.instance)
    );
    assert_eq!(
        sent[0].query_param("accepts_incomplete").as_deref(),
        Some("true")
    );
    let b = sent[0].body.clone().unwrap();
    assert_eq!(b["service_id"], demo_broker::SERVICE_ID);
    assert_eq!(b["plan_id"], demo_broker::PLAN_ASYNC_ID);
    assert_eq!(b["parameters"], json!({"x": 1}));
    assert_eq!(
        b["previous_values"],
        json!({"service_id": demo_broker::SERVICE_ID, "plan_id": demo_broker::PLAN_SMALL_ID,
               "organization_id": w.org, "space_id": w.space})
    );
    assert_eq!(b["context"]["platform"], "cloudfoundry");
    // Parameters alone: the same plan is sent, the plan stays.
    let r = t
        .put(&instance_path(&w), json!({"parameters": {"y": 2}}))
        .await;
    r.assert_status(201);
    let b = patches(&t)[1].body.clone().unwrap();
    assert_eq!(b["plan_id"], demo_broker::PLAN_ASYNC_ID);
    assert_eq!(b["previous_values"]["plan_id"], demo_broker::PLAN_ASYNC_ID);
    // Name and tags alone never reach the broker.
    let r = t.put(&instance_path(&w), json!({"name": "renamed"})).await;
    r.assert_status(201);
    assert_eq!(r.body["entity"]["name"], "renamed");
    assert_eq!(patches(&t).len(), 2);
}

async fn refusals_as_cc(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    // demo-db says plan_updateable: false.
    let r = t
        .put(
            &instance_path(&w),
            json!({"service_plan_guid": w.plan_async}),
        )
        .await;
    r.assert_error(400, "CF-ServicePlanNotUpdateable");
    assert_eq!(r.body["code"], 110004);
    assert_eq!(
        r.body["description"],
        "The service does not support changing plans."
    );
    assert!(patches(&t).is_empty());
    // The same plan is no change: parameters still go through.
    let r = t
        .put(
            &instance_path(&w),
            json!({"service_plan_guid": w.plan_small, "parameters": {"a": 1}}),
        )
        .await;
    r.assert_status(201);
    assert_eq!(patches(&t).len(), 1);
    let ups = t
        .post(
            "/v2/user_provided_service_instances",
            json!({"name": "ups", "space_guid": w.space, "credentials": {}}),
        )
        .await;
    let ups = ups.body["metadata"]["guid"].as_str().unwrap().to_string();
    let r = t
        .put(
            &format!("/v2/service_instances/{ups}"),
            json!({"parameters": {"a": 1}}),
        )
        .await;
    r.assert_error(400, "CF-UserProvidedServiceInstanceHandlerNeeded");
    assert_eq!(r.body["code"], 340002);
    assert_eq!(
        r.body["description"],
        "Please use the User Provided Services API to manage this resource."
    );
    let r = t
        .put("/v2/service_instances/nope", json!({"name": "x"}))
        .await;
    r.assert_cc_error(
        404,
        60004,
        "CF-ServiceInstanceNotFound",
        "The service instance could not be found: nope",
    );
}

async fn plan_of_another_service(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = updateable_world(&t).await;
    let r = t
        .put(
            &instance_path(&w),
            json!({"service_plan_guid": w.plan_unbindable}),
        )
        .await;
    r.assert_error(400, "CF-InvalidRelation");
    assert_eq!(r.body["code"], 1002);
    assert_eq!(r.body["description"], "Plan");
    assert!(patches(&t).is_empty());
}

async fn broker_failure_restores_name(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = updateable_world(&t).await;
    t.broker.script(
        "update",
        [Reply::Status(
            400,
            r#"{"description":"bad parameter y"}"#.into(),
        )],
    );
    let r = t
        .put(
            &instance_path(&w),
            json!({"name": "new-name", "parameters": {"y": 1}}),
        )
        .await;
    // CC's client.rb#update raises the broker's ServiceBrokerRequestRejected as is.
    r.assert_cc_error(
        502,
        10001,
        "CF-ServiceBrokerRequestRejected",
        "Service broker error: bad parameter y",
    );
    let got = t
        .get(&format!("/v2/service_instances/{}", w.instance))
        .await;
    assert_eq!(got.body["entity"]["name"], "my-db");
    assert_eq!(got.body["entity"]["last_operation"]["type"], "update");
    assert_eq!(got.body["entity"]["last_operation"]["state"], "failed");
}

fn async_update(polls: u32, final_state: &'static str) -> Reply {
    Reply::Async {
        operation: Some("op-update".into()),
        polls,
        final_state,
        retry_after: None,
    }
}

async fn async_update_polled(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = updateable_world(&t).await;
    t.broker
        .script("update", [async_update(10_000, "succeeded")]);
    let r = t
        .put(
            &instance_path(&w),
            json!({"service_plan_guid": w.plan_async}),
        )
        .await;
    r.assert_status(202);
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/service_instances/{}", w.instance).as_str())
    );
    assert_eq!(r.body["entity"]["last_operation"]["type"], "update");
    assert_eq!(r.body["entity"]["last_operation"]["state"], "in progress");
    // The plan moves only when the broker says the update succeeded.
    assert_eq!(r.body["entity"]["service_plan_guid"], w.plan_small.as_str());
    // Meanwhile: no bind, no second update, no delete.
    let b = t.bind(&w.app, &w.instance, json!({})).await;
    b.assert_error(409, "CF-AsyncServiceInstanceOperationInProgress");
    assert_eq!(b.body["code"], 60016);
    assert_eq!(
        b.body["description"],
        "An operation for service instance my-db is in progress."
    );
    let again = t
        .put(&instance_path(&w), json!({"parameters": {"z": 1}}))
        .await;
    let in_progress = (
        409,
        60016,
        "CF-AsyncServiceInstanceOperationInProgress",
        "An operation for service instance my-db is in progress.",
    );
    let (status, code, error_code, description) = in_progress;
    again.assert_cc_error(status, code, error_code, description);
    let path = format!("/v2/service_instances/{}", w.instance);
    t.delete(&path)
        .await
        .assert_cc_error(status, code, error_code, description);
    // The job queue polls last_operation with the broker's operation id.
    assert!(t.broker.set_remaining_polls(&w.instance, 0));
    let done = t
        .wait_for(&path, |r| {
            r.body["entity"]["last_operation"]["state"] != "in progress"
        })
        .await;
    assert_eq!(done.body["entity"]["last_operation"]["state"], "succeeded");
    assert_eq!(done.body["entity"]["last_operation"]["type"], "update");
    assert_eq!(
        done.body["entity"]["service_plan_guid"],
        w.plan_async.as_str()
    );
    let polls = t.broker.requests_to("GET", "/last_operation");
    assert!(polls
        .iter()
        .all(|p| p.query_param("operation").as_deref() == Some("op-update")));
    // Binds again (the new plan binds asynchronously).
    let b = t
        .post(
            "/v2/service_bindings?accepts_incomplete=true",
            json!({"app_guid": w.app, "service_instance_guid": w.instance}),
        )
        .await;
    b.assert_status(202);
}

async fn async_update_fails(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = updateable_world(&t).await;
    t.broker.script("update", [async_update(0, "failed")]);
    let r = t
        .put(
            &instance_path(&w),
            json!({"service_plan_guid": w.plan_async}),
        )
        .await;
    r.assert_status(202);
    // The 202 shows the operation as it began, even when the first poll (woken at once) has
    // already settled it by the time the answer is written.
    assert_eq!(r.body["entity"]["last_operation"]["state"], "in progress");
    let path = format!("/v2/service_instances/{}", w.instance);
    let done = t
        .wait_for(&path, |r| {
            r.body["entity"]["last_operation"]["state"] != "in progress"
        })
        .await;
    let e: &Value = &done.body["entity"];
    assert_eq!(e["last_operation"]["state"], "failed");
    assert_eq!(e["last_operation"]["description"], "update failed");
    assert_eq!(e["service_plan_guid"], w.plan_small.as_str());
}

/// `cf update-service my-db -p async -c '{"x":1}' -t t1` (§6 of the workflow spec).
async fn replay_update_service(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = updateable_world(&t).await;
    t.broker
        .script("update", [async_update(10_000, "succeeded")]);
    for path in ["/v2/info", "/", "/login"] {
        t.get(path).await.assert_status(200);
    }
    let lookup = format!(
        "/v2/spaces/{}/service_instances?return_user_provided_service_instances=true&q=name%3Amy-db&inline-relations-depth=1",
        w.space
    );
    let found = t.get(&lookup).await;
    let first = &found.body["resources"][0];
    let si = first["metadata"]["guid"].as_str().unwrap().to_string();
    let svc = first["entity"]["service_plan"]["entity"]["service_guid"]
        .as_str()
        .unwrap()
        .to_string();
    t.get(&format!("/v2/services/{svc}"))
        .await
        .assert_status(200);
    let plans = t
        .get(&format!("/v2/service_plans?q=service_guid%3A{svc}"))
        .await;
    let target = plans.body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["entity"]["name"] == "async")
        .unwrap()["metadata"]["guid"]
        .as_str()
        .unwrap()
        .to_string();
    let org = t.get(&format!("/v2/organizations/{}", w.org)).await;
    let org_name = org.body["entity"]["name"].as_str().unwrap().to_lowercase();
    let orgs = t
        .get(&format!(
            "/v2/organizations?q=name%3A{org_name}&inline-relations-depth=1"
        ))
        .await;
    assert_eq!(orgs.body["total_results"], 1);
    let vis = t
        .get(&format!(
            "/v2/service_plan_visibilities?q=organization_guid%3A{}",
            w.org
        ))
        .await;
    vis.assert_status(200);
    let body = json!({"service_plan_guid": target, "parameters": {"x": 1}, "tags": ["t1"]});
    let r = t
        .put(
            &format!("/v2/service_instances/{si}?accepts_incomplete=true"),
            body,
        )
        .await;
    assert!(r.status.is_success(), "{}", r.text);
    // The CLI's second lookup: "Update in progress" comes from type and state.
    let again = t.get(&lookup).await;
    let op = &again.body["resources"][0]["entity"]["last_operation"];
    assert_eq!(
        (op["type"].as_str(), op["state"].as_str()),
        (Some("update"), Some("in progress"))
    );
    assert!(t.broker.set_remaining_polls(&si, 0));
    t.wait_for(&format!("/v2/service_instances/{si}"), |r| {
        r.body["entity"]["last_operation"]["state"] == "succeeded"
    })
    .await;
}

backend_tests!(
    plan_and_parameters_sync,
    refusals_as_cc,
    plan_of_another_service,
    broker_failure_restores_name,
    async_update_polled,
    async_update_fails,
    replay_update_service
);
