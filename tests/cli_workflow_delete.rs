//! Issue 13, item 2: `cf delete-service` and `cf purge-service-instance` delete through
//! `DELETE /v2/service_instances/:guid`, for managed and user-provided instances alike, with CC's
//! `purge=true` and `recursive=true`.

mod common;

use common::{Backend, TestApp, World};
use reqwest::Method;
use serde_json::json;
use tether::demo_broker::Reply;

fn guid(r: &common::Response) -> String {
    r.body["metadata"]["guid"]
        .as_str()
        .unwrap_or_else(|| panic!("no guid: {}", r.text))
        .to_string()
}

async fn upsi(t: &TestApp, w: &World, name: &str) -> String {
    let r = t
        .post(
            "/v2/user_provided_service_instances",
            json!({"name": name, "space_guid": w.space, "credentials": {"uri": "x://y"}}),
        )
        .await;
    r.assert_status(201);
    guid(&r)
}

async fn key(t: &TestApp, instance: &str, name: &str) -> String {
    let r = t
        .post(
            "/v2/service_keys",
            json!({"name": name, "service_instance_guid": instance}),
        )
        .await;
    r.assert_status(201);
    guid(&r)
}

async fn user_provided_instances_delete_here(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let ups = upsi(&t, &w, "logs").await;
    // A binding stays in the way, as CC says (the CLI never sends `recursive`).
    let b = t.bind(&w.app, &ups, json!({})).await;
    b.assert_status(201);
    let path = format!("/v2/service_instances/{ups}?accepts_incomplete=true&async=true");
    let r = t.delete(&path).await;
    r.assert_error(400, "CF-AssociationNotEmpty");
    assert_eq!(r.body["code"], 10006);
    assert_eq!(
        r.body["description"],
        "Please delete the service_bindings, service_keys, and routes associations for your service_instances."
    );
    t.delete(&format!("/v2/service_bindings/{}", guid(&b)))
        .await
        .assert_status(204);
    t.delete(&path).await.assert_status(204);
    let r = t.get(&format!("/v2/service_instances/{ups}")).await;
    r.assert_cc_error(
        404,
        60004,
        "CF-ServiceInstanceNotFound",
        &format!("The service instance could not be found: {ups}"),
    );
    // The same route still says CC's not-found for a guid that is not there.
    let r = t.delete("/v2/service_instances/nope").await;
    r.assert_error(404, "CF-ServiceInstanceNotFound");
    assert_eq!(r.body["code"], 60004);
    assert_eq!(
        r.body["description"],
        "The service instance could not be found: nope"
    );
}

async fn purge_forgets_without_the_broker(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    t.bind(&w.app, &w.instance, json!({}))
        .await
        .assert_status(201);
    key(&t, &w.instance, "k1").await;
    // A space developer may not purge an instance of a platform broker.
    let dev = t.space_developer(&w, "dev-p").await;
    let path = format!("/v2/service_instances/{}?async=true&purge=true", w.instance);
    let r = t.as_user(&dev, Method::DELETE, &path, None).await;
    r.assert_error(403, "CF-NotAuthorized");
    assert_eq!(r.body["code"], 10003);
    assert_eq!(
        r.body["description"],
        "You are not authorized to perform the requested action"
    );
    assert_eq!(t.count("service_instances").await, 1);
    t.broker.clear_requests();
    let r = t.delete(&path).await;
    r.assert_status(204);
    assert!(r.text.is_empty());
    assert!(t.broker.requests().is_empty(), "purge called the broker");
    assert_eq!(t.count("service_instances").await, 0);
    assert_eq!(t.count("service_bindings").await, 0);
    assert_eq!(t.count("service_keys").await, 0);
    // A user-provided instance with a binding purges the same way.
    let ups = upsi(&t, &w, "logs").await;
    t.bind(&w.app, &ups, json!({})).await.assert_status(201);
    t.delete(&format!("/v2/service_instances/{ups}?purge=true"))
        .await
        .assert_status(204);
    assert_eq!(t.count("service_bindings").await, 0);
}

async fn recursive_deletes_through_the_broker(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let b = t.bind(&w.app, &w.instance, json!({})).await;
    b.assert_status(201);
    let k = key(&t, &w.instance, "k1").await;
    t.broker.clear_requests();
    let r = t
        .delete(&format!(
            "/v2/service_instances/{}?recursive=true",
            w.instance
        ))
        .await;
    r.assert_status(204);
    let unbinds = t.broker.requests_to("DELETE", "/service_bindings/");
    let unbound: Vec<&str> = unbinds
        .iter()
        .map(|r| r.path.rsplit('/').next().unwrap())
        .collect();
    assert_eq!(unbound, [guid(&b).as_str(), k.as_str()]);
    assert_eq!(
        t.broker
            .requests_to("DELETE", &format!("/v2/service_instances/{}", w.instance))
            .iter()
            .filter(|r| !r.path.contains("service_bindings"))
            .count(),
        1
    );
    assert_eq!(t.count("service_instances").await, 0);
    assert_eq!(t.count("service_bindings").await, 0);
    assert_eq!(t.count("service_keys").await, 0);
}

async fn recursive_stops_when_an_association_stays(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    t.bind(&w.app, &w.instance, json!({}))
        .await
        .assert_status(201);
    t.broker.script(
        "unbind",
        [Reply::Status(500, r#"{"description":"no"}"#.into())],
    );
    let r = t
        .delete(&format!(
            "/v2/service_instances/{}?recursive=true",
            w.instance
        ))
        .await;
    // CC's ServiceInstanceDelete#recursive_delete_error: each error tab-indented, wrapped by
    // ServiceBindingDelete#raise_wrapped_error around the broker's 500 (ServiceBrokerBadResponse).
    r.assert_cc_error(
        502,
        60027,
        "CF-ServiceInstanceRecursiveDeleteFailed",
        "Deletion of service instance my-db failed because one or more associated resources \
         could not be deleted.\n\n\tAn unbind operation for the service binding between app \
         my-app and service instance my-db failed: Service broker error: no",
    );
    // Nothing was deprovisioned: the instance and its binding stay.
    assert_eq!(t.count("service_instances").await, 1);
    assert_eq!(t.count("service_bindings").await, 1);
}

/// `cf delete-service NAME -f` on a managed and on a user-provided instance, then
/// `cf purge-service-instance NAME -f` (legacy path; §3–§5 of the workflow spec).
async fn replay_delete_and_purge(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let ups = upsi(&t, &w, "logs").await;
    let lookup = |name: &str| {
        format!(
            "/v2/spaces/{}/service_instances?return_user_provided_service_instances=true&q=name%3A{name}&inline-relations-depth=1",
            w.space
        )
    };
    for (name, managed) in [("my-db", true), ("logs", false)] {
        let found = t.get(&lookup(name)).await;
        found.assert_status(200);
        let first = &found.body["resources"][0];
        let si = first["metadata"]["guid"].as_str().unwrap().to_string();
        assert_eq!(
            first["entity"]["service_bindings"],
            json!([]),
            "{}",
            found.text
        );
        if managed {
            let svc = first["entity"]["service_plan"]["entity"]["service_guid"]
                .as_str()
                .unwrap_or_else(|| panic!("no inlined plan: {}", found.text));
            let s = t.get(&format!("/v2/services/{svc}")).await;
            s.assert_status(200);
            assert!(s.body["entity"]["extra"].is_null() || s.body["entity"]["extra"].is_string());
        } else {
            assert_eq!(si, ups);
        }
        let r = t
            .delete(&format!(
                "/v2/service_instances/{si}?accepts_incomplete=true&async=true"
            ))
            .await;
        r.assert_status(204);
        let again = t.get(&lookup(name)).await;
        assert_eq!(again.body["resources"], json!([]));
    }
    // purge-service-instance on a fresh user-provided instance.
    upsi(&t, &w, "logs2").await;
    let found = t.get(&lookup("logs2")).await;
    let si = found.body["resources"][0]["metadata"]["guid"]
        .as_str()
        .unwrap()
        .to_string();
    t.delete(&format!("/v2/service_instances/{si}?async=true&purge=true"))
        .await
        .assert_status(204);
    assert_eq!(t.get(&lookup("logs2")).await.body["total_results"], 0);
}

backend_tests!(
    user_provided_instances_delete_here,
    purge_forgets_without_the_broker,
    recursive_deletes_through_the_broker,
    recursive_stops_when_an_association_stays,
    replay_delete_and_purge
);
