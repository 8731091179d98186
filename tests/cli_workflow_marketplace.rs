//! Issue 13, item 1: `cf marketplace` and `cf create-service` read `GET /v2/spaces/:guid/services`
//! (CC's `Service.space_or_org_visible_for_user`), then the plans, then create the instance.

mod common;

use common::{Backend, TestApp};
use reqwest::Method;
use serde_json::{json, Value};
use tether::demo_broker::Reply;

fn labels(r: &common::Response) -> Vec<String> {
    r.body["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {}", r.text))
        .iter()
        .map(|s| {
            s["entity"]["label"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

async fn make_public(t: &TestApp, plan: &str) {
    t.put(
        &format!("/v2/service_plans/{plan}"),
        json!({"public": true}),
    )
    .await
    .assert_status(201);
}

async fn visibility_rules(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let path = format!("/v2/spaces/{}/services", w.space);
    // No plan public or visible: nothing to provision here, for the admin too (CC decides by
    // the space's org, not by the caller).
    let r = t.get(&path).await;
    r.assert_status(200);
    assert_eq!(r.body["total_results"], 0, "{}", r.text);
    // A public plan makes its service visible, with the broker's name.
    make_public(&t, &w.plan_small).await;
    let r = t.get(&path).await;
    assert_eq!(labels(&r), ["demo-db"]);
    let demo = &r.body["resources"][0]["entity"];
    assert_eq!(demo["service_broker_guid"], w.broker.as_str());
    assert!(demo["service_broker_name"]
        .as_str()
        .is_some_and(|n| n.starts_with("broker-")));
    assert!(demo["extra"].is_null() || demo["extra"].is_string());
    // A plan visible to this org only: its service shows here, not in another org's space.
    let vis = t
        .post(
            "/v2/service_plan_visibilities",
            json!({"service_plan_guid": w.plan_unbindable, "organization_guid": w.org}),
        )
        .await;
    vis.assert_status(201);
    let r = t.get(&path).await;
    assert_eq!(labels(&r), ["demo-db", "demo-queue"]);
    let other = t.org_space_app().await;
    let r = t.get(&format!("/v2/spaces/{}/services", other.space)).await;
    assert_eq!(labels(&r), ["demo-db"]);
    // A space developer sees the same; a user without a role in the space is refused.
    let dev = t.space_developer(&w, "dev-1").await;
    let r = t.as_user(&dev, Method::GET, &path, None).await;
    assert_eq!(labels(&r), ["demo-db", "demo-queue"]);
    let stranger = t.token_for("stranger", &["cloud_controller.read"]);
    let r = t.as_user(&stranger, Method::GET, &path, None).await;
    r.assert_cc_error(
        403,
        10003,
        "CF-NotAuthorized",
        "You are not authorized to perform the requested action",
    );
}

async fn filters_and_paging(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    make_public(&t, &w.plan_small).await;
    make_public(&t, &w.plan_unbindable).await;
    let path = format!("/v2/spaces/{}/services", w.space);
    // What `cf marketplace -s demo-queue` sends.
    let r = t.get(&format!("{path}?q=label%3Ademo-queue")).await;
    assert_eq!(labels(&r), ["demo-queue"]);
    let r = t.get(&format!("{path}?q=label%3Anone")).await;
    assert_eq!(r.body["total_results"], 0);
    // Pages, followed as the CLI follows `next_url`.
    let p1 = t.get(&format!("{path}?results-per-page=1")).await;
    assert_eq!(p1.body["total_results"], 2);
    assert_eq!(p1.body["total_pages"], 2);
    let next = p1.body["next_url"].as_str().unwrap().to_string();
    assert_eq!(
        next,
        format!("{path}?order-direction=asc&page=2&results-per-page=1")
    );
    let p2 = t.get(&next).await;
    assert_eq!(labels(&p2), ["demo-queue"]);
    assert!(p2.body["next_url"].is_null());
    // A filter CC does not have, and a space that is not there.
    let r = t.get(&format!("{path}?q=bogus%3Ax")).await;
    r.assert_cc_error(
        400,
        10005,
        "CF-BadQueryParameter",
        "The query parameter is invalid: bogus",
    );
    let r = t.get("/v2/spaces/no-such-space/services").await;
    r.assert_cc_error(
        404,
        40004,
        "CF-SpaceNotFound",
        "The app space could not be found: no-such-space",
    );
    let anon = t.request(Method::GET, &path, None, None).await;
    anon.assert_cc_error(401, 10002, "CF-NotAuthenticated", "Authentication error");
}

async fn space_scoped_broker(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let broker = tether::demo_broker::DemoBroker::start_with_catalog(
        0,
        common::BROKER_USER,
        common::BROKER_PASS,
        private_catalog(),
    )
    .unwrap();
    let r = t
        .post(
            "/v2/service_brokers",
            json!({"name": "private", "broker_url": broker.url, "auth_username": common::BROKER_USER,
                   "auth_password": common::BROKER_PASS, "space_guid": w.space}),
        )
        .await;
    r.assert_status(201);
    let path = format!("/v2/spaces/{}/services", w.space);
    let dev = t.space_developer(&w, "dev-2").await;
    let r = t.as_user(&dev, Method::GET, &path, None).await;
    assert_eq!(labels(&r), ["private-db"]);
    assert_eq!(
        r.body["resources"][0]["entity"]["service_broker_name"],
        "private"
    );
    // Not in another space of the same org.
    let other = t
        .post(
            "/v2/spaces",
            json!({"name": "other", "organization_guid": w.org}),
        )
        .await;
    let other = other.body["metadata"]["guid"].as_str().unwrap().to_string();
    let r = t.get(&format!("/v2/spaces/{other}/services")).await;
    assert_eq!(r.body["total_results"], 0, "{}", r.text);
}

fn private_catalog() -> Value {
    json!({"services": [{
        "id": "private-db-id", "name": "private-db", "description": "Scoped to one space",
        "bindable": true,
        "plans": [{"id": "private-db-plan", "name": "tiny", "description": "Tiny"}]
    }]})
}

/// `cf marketplace` then `cf create-service demo-db small mydb -c '{"ram_gb":4}' -t "a, b"`
/// (refactored path; §1.1 and §2 of the workflow spec), as a space developer.
async fn replay_marketplace_and_create_service(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    make_public(&t, &w.plan_small).await;
    make_public(&t, &w.plan_unbindable).await;
    let dev = t.space_developer(&w, "dev-3").await;
    let get = |path: String| {
        let dev = dev.clone();
        let t = &t;
        async move { t.as_user(&dev, Method::GET, &path, None).await }
    };
    // marketplace: the space's services, then each service's plans.
    let services = get(format!("/v2/spaces/{}/services", w.space)).await;
    services.assert_status(200);
    assert_eq!(labels(&services), ["demo-db", "demo-queue"]);
    for s in services.body["resources"].as_array().unwrap() {
        let guid = s["metadata"]["guid"].as_str().unwrap();
        let plans = get(format!("/v2/service_plans?q=service_guid%3A{guid}")).await;
        plans.assert_status(200);
        assert!(
            plans.body["total_results"].as_i64().unwrap() >= 1,
            "{}",
            plans.text
        );
    }
    // create-service: the service by label, its plans, the POST.
    let found = get(format!("/v2/spaces/{}/services?q=label%3Ademo-db", w.space)).await;
    assert_eq!(found.body["total_results"], 1);
    let svc = found.body["resources"][0]["metadata"]["guid"]
        .as_str()
        .unwrap()
        .to_string();
    let plans = get(format!("/v2/service_plans?q=service_guid%3A{svc}")).await;
    let small = plans.body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["entity"]["name"] == "small")
        .unwrap_or_else(|| panic!("no plan small: {}", plans.text));
    let body = json!({"name": "newdb", "service_plan_guid": small["metadata"]["guid"],
                      "space_guid": w.space, "parameters": {"ram_gb": 4}, "tags": ["a", "b"]});
    let path = "/v2/service_instances?accepts_incomplete=true";
    let created = t
        .as_user(&dev, Method::POST, path, Some(body.clone()))
        .await;
    created.assert_status(201);
    assert_eq!(
        created.body["entity"]["last_operation"]["state"],
        "succeeded"
    );
    assert_eq!(created.body["entity"]["tags"], json!(["a", "b"]));
    let provision = t.broker.requests_to("PUT", "/v2/service_instances/");
    assert_eq!(
        provision.last().unwrap().body.as_ref().unwrap()["parameters"],
        json!({"ram_gb": 4})
    );
    // The same again: the CLI prints "Service newdb already exists" on this error_code.
    let again = t.as_user(&dev, Method::POST, path, Some(body)).await;
    again.assert_error(400, "CF-ServiceInstanceNameTaken");
    assert_eq!(again.body["code"], 60002);
    assert_eq!(
        again.body["description"],
        "The service instance name is taken: newdb"
    );
    // A broker that provisions asynchronously: 202 with the instance "in progress", which the
    // CLI prints as "Create in progress. Use 'cf services' or 'cf service NAME' ...".
    t.broker.script(
        "provision",
        [Reply::Async {
            operation: Some("provision-newdb-async".into()),
            polls: 1000,
            final_state: "succeeded",
            retry_after: None,
        }],
    );
    let body = json!({"name": "newdb-async", "service_plan_guid": small["metadata"]["guid"],
                      "space_guid": w.space});
    let pending = t.as_user(&dev, Method::POST, path, Some(body)).await;
    pending.assert_status(202);
    assert_eq!(pending.body["entity"]["name"], "newdb-async");
    assert_eq!(
        pending.body["entity"]["last_operation"]["type"], "create",
        "{}",
        pending.text
    );
    assert_eq!(
        pending.body["entity"]["last_operation"]["state"], "in progress",
        "{}",
        pending.text
    );
    // Without -c the CLI sends no parameters, and the broker gets none.
    let provision = t.broker.requests_to("PUT", "/v2/service_instances/");
    assert!(
        provision.last().unwrap().body.as_ref().unwrap()["parameters"].is_null(),
        "{:?}",
        provision.last().unwrap().body
    );
}

backend_tests!(
    visibility_rules,
    filters_and_paging,
    space_scoped_broker,
    replay_marketplace_and_create_service
);
