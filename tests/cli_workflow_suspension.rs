//! Issue 13, item 5: a suspended org is suspended. Its status is stored; in it only admins
//! write (CC: `OrgSuspended` for bindings, `NotAuthorized` from the other accesses); reads go on.

mod common;

use common::{Backend, TestApp};
use reqwest::Method;
use serde_json::json;

/// CC's NotAuthorized (10003) and OrgSuspended (10017) descriptions (errors/v2.yml).
const NOT_AUTHORIZED: &str = "You are not authorized to perform the requested action";
const ORG_SUSPENDED: &str = "The organization is suspended";

async fn set_status(t: &TestApp, org: &str, status: &str) -> common::Response {
    t.put(
        &format!("/v2/organizations/{org}"),
        json!({"status": status}),
    )
    .await
}

async fn status_is_stored(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let r = set_status(&t, &w.org, "suspended").await;
    r.assert_status(201);
    assert_eq!(r.body["entity"]["status"], "suspended");
    let r = t.get(&format!("/v2/organizations/{}", w.org)).await;
    assert_eq!(r.body["entity"]["status"], "suspended");
    let r = t.get("/v2/organizations?q=status%3Asuspended").await;
    assert_eq!(r.body["total_results"], 1);
    // A rename leaves the status alone.
    let r = t
        .put(
            &format!("/v2/organizations/{}", w.org),
            json!({"name": "renamed"}),
        )
        .await;
    assert_eq!(r.body["entity"]["status"], "suspended");
    let r = set_status(&t, &w.org, "frozen").await;
    r.assert_cc_error(
        400,
        30001,
        "CF-OrganizationInvalid",
        r#"The organization info is invalid: status is not in range or set: ["active", "suspended"]"#,
    );
    // Only admins change it.
    let dev = t.space_developer(&w, "dev-s").await;
    let r = t
        .as_user(
            &dev,
            Method::PUT,
            &format!("/v2/organizations/{}", w.org),
            Some(json!({"status": "active"})),
        )
        .await;
    r.assert_cc_error(403, 10003, "CF-NotAuthorized", NOT_AUTHORIZED);
    set_status(&t, &w.org, "active").await.assert_status(201);
    let r = t.get(&format!("/v2/organizations/{}", w.org)).await;
    assert_eq!(r.body["entity"]["status"], "active");
}

async fn writes_refused_reads_allowed(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let dev = t.space_developer(&w, "dev-w").await;
    let bound = t.bind(&w.app, &w.instance, json!({})).await;
    bound.assert_status(201);
    let binding = bound.body["metadata"]["guid"].as_str().unwrap().to_string();
    set_status(&t, &w.org, "suspended").await.assert_status(201);
    t.broker.clear_requests();
    // Bindings: CC's OrgSuspended, before any broker call.
    let other = t.create_app(&w.space, "other").await;
    let bind = json!({"app_guid": other, "service_instance_guid": w.instance});
    let r = t
        .as_user(
            &dev,
            Method::POST,
            "/v2/service_bindings",
            Some(bind.clone()),
        )
        .await;
    r.assert_cc_error(403, 10017, "CF-OrgSuspended", ORG_SUSPENDED);
    let path = format!("/v2/service_bindings/{binding}");
    let r = t.as_user(&dev, Method::DELETE, &path, None).await;
    r.assert_cc_error(403, 10017, "CF-OrgSuspended", ORG_SUSPENDED);
    let r = t
        .as_user(&dev, Method::DELETE, &format!("{path}?async=true"), None)
        .await;
    r.assert_cc_error(403, 10017, "CF-OrgSuspended", ORG_SUSPENDED);
    // Instances and keys: CC's accesses say no (NotAuthorized).
    let r = t
        .as_user(
            &dev,
            Method::POST,
            "/v2/service_instances",
            Some(json!({"name": "x", "space_guid": w.space, "service_plan_guid": w.plan_small})),
        )
        .await;
    r.assert_cc_error(403, 10003, "CF-NotAuthorized", NOT_AUTHORIZED);
    let r = t
        .as_user(
            &dev,
            Method::DELETE,
            &format!("/v2/service_instances/{}", w.instance),
            None,
        )
        .await;
    r.assert_cc_error(403, 10003, "CF-NotAuthorized", NOT_AUTHORIZED);
    let r = t
        .as_user(
            &dev,
            Method::POST,
            "/v2/service_keys",
            Some(json!({"name": "k", "service_instance_guid": w.instance})),
        )
        .await;
    r.assert_cc_error(403, 10003, "CF-NotAuthorized", NOT_AUTHORIZED);
    assert!(
        t.broker.requests().is_empty(),
        "a refused write reached the broker"
    );
    // Reads go on.
    t.as_user(&dev, Method::GET, &path, None)
        .await
        .assert_status(200);
    t.as_user(
        &dev,
        Method::GET,
        &format!("/v2/spaces/{}/service_instances", w.space),
        None,
    )
    .await
    .assert_status(200);
    // Admins write in a suspended org.
    t.bind(&other, &w.instance, json!({}))
        .await
        .assert_status(201);
    // Active again: the developer writes again.
    set_status(&t, &w.org, "active").await.assert_status(201);
    t.as_user(&dev, Method::DELETE, &path, None)
        .await
        .assert_status(204);
}

/// Org managers are locked out too (CC: "Org state is never bypassed by org managers").
async fn managers_locked_out(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let manager = t.token_for("mgr", &["cloud_controller.read", "cloud_controller.write"]);
    t.put(
        &format!("/v2/organizations/{}/managers/mgr", w.org),
        json!({}),
    )
    .await
    .assert_status(201);
    let new_space = json!({"name": "second", "organization_guid": w.org});
    set_status(&t, &w.org, "suspended").await.assert_status(201);
    let r = t
        .as_user(
            &manager,
            Method::POST,
            "/v2/spaces",
            Some(new_space.clone()),
        )
        .await;
    r.assert_cc_error(403, 10003, "CF-NotAuthorized", NOT_AUTHORIZED);
    let r = t
        .as_user(
            &manager,
            Method::PUT,
            &format!("/v2/organizations/{}/auditors/someone", w.org),
            None,
        )
        .await;
    r.assert_cc_error(403, 10003, "CF-NotAuthorized", NOT_AUTHORIZED);
    let r = t
        .as_user(
            &manager,
            Method::PUT,
            &format!("/v2/spaces/{}/developers/mgr", w.space),
            None,
        )
        .await;
    r.assert_cc_error(403, 10003, "CF-NotAuthorized", NOT_AUTHORIZED);
    set_status(&t, &w.org, "active").await.assert_status(201);
    t.as_user(&manager, Method::POST, "/v2/spaces", Some(new_space))
        .await
        .assert_status(201);
}

backend_tests!(
    status_is_stored,
    writes_refused_reads_allowed,
    managers_locked_out
);
