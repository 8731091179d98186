//! The synchronous binding lifecycle against a real broker: create, get, list, delete, and every
//! error case.

mod common;

use common::{Backend, TestApp};
use reqwest::Method;
use serde_json::{json, Value};
use tether::demo_broker::{Reply, PLAN_SMALL_ID, SERVICE_ID};

async fn create_get_list_delete(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    t.broker.clear_requests();

    let r = t
        .bind(
            &w.app,
            &w.instance,
            json!({"name": "prod-db", "parameters": {"the_service_broker": "wants this object"}}),
        )
        .await;
    r.assert_status(201);
    let guid = r.body["metadata"]["guid"].as_str().unwrap().to_string();
    let e = &r.body["entity"];
    assert_eq!(e["app_guid"], w.app);
    assert_eq!(e["service_instance_guid"], w.instance);
    assert_eq!(e["name"], "prod-db");
    assert_eq!(e["credentials"]["username"], format!("user-{guid}"));
    assert_eq!(
        e["service_instance_url"],
        format!("/v2/service_instances/{}", w.instance)
    );
    assert_eq!(e["last_operation"]["state"], "succeeded");
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/service_bindings/{guid}").as_str())
    );
    assert!(r.header("x-vcap-request-id").is_some());

    // What the broker received.
    let puts = t.broker.requests_to("PUT", "/service_bindings/");
    assert_eq!(puts.len(), 1);
    let put = &puts[0];
    assert_eq!(
        put.path,
        format!(
            "/v2/service_instances/{}/service_bindings/{guid}",
            w.instance
        )
    );
    assert_eq!(put.header("x-broker-api-version"), Some("2.15"));
    assert!(put
        .header("x-broker-api-request-identity")
        .is_some_and(|v| !v.is_empty()));
    assert!(put.header("authorization").unwrap().starts_with("Basic "));
    assert_eq!(put.header("content-type"), Some("application/json"));
    let origin = put.header("x-broker-api-originating-identity").unwrap();
    assert!(origin.starts_with("cloudfoundry "), "{origin}");
    let body = put.body.as_ref().unwrap();
    assert_eq!(body["service_id"], SERVICE_ID);
    assert_eq!(body["plan_id"], PLAN_SMALL_ID);
    assert_eq!(body["app_guid"], w.app);
    assert_eq!(body["bind_resource"]["app_guid"], w.app);
    assert_eq!(body["bind_resource"]["space_guid"], w.space);
    assert_eq!(body["context"]["platform"], "cloudfoundry");
    assert_eq!(body["context"]["organization_guid"], w.org);
    assert_eq!(body["context"]["space_guid"], w.space);
    assert_eq!(body["context"]["space_name"], "dev");
    assert_eq!(
        body["parameters"],
        json!({"the_service_broker": "wants this object"})
    );

    let got = t.get(&format!("/v2/service_bindings/{guid}")).await;
    got.assert_status(200);
    assert_eq!(got.body["entity"], r.body["entity"]);
    assert_eq!(got.body["metadata"]["guid"], guid);

    let list = t.get("/v2/service_bindings").await;
    list.assert_status(200);
    assert_eq!(list.body["total_results"], 1);
    assert_eq!(list.body["total_pages"], 1);
    assert_eq!(list.body["prev_url"], Value::Null);
    assert_eq!(list.body["next_url"], Value::Null);
    assert_eq!(list.body["resources"][0]["metadata"]["guid"], guid);

    let d = t.delete(&format!("/v2/service_bindings/{guid}")).await;
    d.assert_status(204);
    assert!(d.text.is_empty());
    let dels = t.broker.requests_to("DELETE", "/service_bindings/");
    assert_eq!(dels.len(), 1);
    assert_eq!(
        dels[0].query_param("service_id").as_deref(),
        Some(SERVICE_ID)
    );
    assert_eq!(
        dels[0].query_param("plan_id").as_deref(),
        Some(PLAN_SMALL_ID)
    );
    assert!(dels[0].body.is_none());
    assert!(!t.broker.has_binding(&guid));

    t.get(&format!("/v2/service_bindings/{guid}"))
        .await
        .assert_error(404, "CF-ServiceBindingNotFound");
    assert_eq!(t.get("/v2/service_bindings").await.body["total_results"], 0);
}

async fn request_id_is_echoed(backend: Backend) {
    let t = TestApp::start(backend).await;
    let r = t
        .client
        .get(format!("{}/v2/service_bindings", t.base))
        .header("Authorization", format!("bearer {}", t.admin_token))
        .header("X-Vcap-Request-Id", "my-request-42")
        .send()
        .await
        .unwrap();
    // CC's form: the client's id, `::`, and a fresh UUID (tests/cc_exact_requests.rs has more).
    let id = r.headers()["x-vcap-request-id"].to_str().unwrap();
    assert!(id.starts_with("my-request-42::"), "{id}");
    assert_eq!(id.len(), "my-request-42::".len() + 36);
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(
        r.headers()["content-type"],
        "application/json;charset=utf-8"
    );
}

async fn user_provided_binding_uses_instance_credentials(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.org_space_app().await;
    let upsi = t
        .post(
            "/v2/user_provided_service_instances",
            json!({"name": "ups", "space_guid": w.space, "credentials": {"k": "v"}, "syslog_drain_url": "syslog://x"}),
        )
        .await;
    upsi.assert_status(201);
    let upsi = upsi.body["metadata"]["guid"].as_str().unwrap().to_string();
    let r = t
        .bind(&w.app, &upsi, json!({"parameters": {"ignored": true}}))
        .await;
    r.assert_status(201);
    assert_eq!(r.body["entity"]["credentials"], json!({"k": "v"}));
    assert_eq!(r.body["entity"]["syslog_drain_url"], "syslog://x");
    assert_eq!(
        r.body["entity"]["service_instance_url"],
        format!("/v2/user_provided_service_instances/{upsi}")
    );
    assert!(r.header("x-cf-warnings").unwrap().contains("ignored"));
    assert!(t.broker.requests_to("PUT", "service_bindings").is_empty());
    let list = t
        .get(&format!(
            "/v2/user_provided_service_instances/{upsi}/service_bindings"
        ))
        .await;
    list.assert_status(200);
    assert_eq!(list.body["total_results"], 1);
    let guid = r.body["metadata"]["guid"].as_str().unwrap();
    t.delete(&format!("/v2/service_bindings/{guid}"))
        .await
        .assert_status(204);
}

async fn validation_errors(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let missing = "00000000-0000-0000-0000-000000000000";

    t.bind(missing, &w.instance, json!({}))
        .await
        .assert_error(404, "CF-AppNotFound");
    t.bind(&w.app, missing, json!({}))
        .await
        .assert_error(404, "CF-ServiceInstanceNotFound");

    // Not bindable.
    let unbindable = t
        .create_instance(&w.space, &w.plan_unbindable, "queue")
        .await;
    let r = t.bind(&w.app, &unbindable, json!({})).await;
    r.assert_error(400, "CF-UnbindableService");
    assert_eq!(r.body["code"], 90005);

    // Different spaces.
    let other_space = t
        .post(
            "/v2/spaces",
            json!({"name": "other", "organization_guid": w.org}),
        )
        .await;
    let other_space = other_space.body["metadata"]["guid"]
        .as_str()
        .unwrap()
        .to_string();
    let other_app = t.create_app(&other_space, "elsewhere").await;
    let r = t.bind(&other_app, &w.instance, json!({})).await;
    r.assert_error(400, "CF-ServiceBindingAppServiceTaken");
    assert!(r.body["description"]
        .as_str()
        .unwrap()
        .contains("different spaces"));

    // Names.
    let r = t
        .bind(&w.app, &w.instance, json!({"name": "bad name!"}))
        .await;
    r.assert_error(400, "CF-ServiceBindingAppServiceTaken");
    assert!(r.body["description"]
        .as_str()
        .unwrap()
        .contains("Valid characters"));
    let long = "a".repeat(256);
    t.bind(&w.app, &w.instance, json!({"name": long}))
        .await
        .assert_error(400, "CF-ServiceBindingAppServiceTaken");

    // Parameters must be an object; fields must have the right types.
    t.bind(&w.app, &w.instance, json!({"parameters": [1, 2]}))
        .await
        .assert_error(400, "CF-MessageParseError");
    t.bind(&w.app, &w.instance, json!({"parameters": "x"}))
        .await
        .assert_error(400, "CF-MessageParseError");
    t.bind(&w.app, &w.instance, json!({"name": 7}))
        .await
        .assert_error(400, "CF-MessageParseError");
    t.post("/v2/service_bindings", json!({"app_guid": w.app}))
        .await
        .assert_error(400, "CF-MessageParseError");
    t.raw(
        Method::POST,
        "/v2/service_bindings",
        "application/json",
        b"{not json",
    )
    .await
    .assert_error(400, "CF-MessageParseError");
    t.raw(
        Method::POST,
        "/v2/service_bindings",
        "application/json",
        b"[]",
    )
    .await
    .assert_error(400, "CF-MessageParseError");

    // Nothing was stored and the broker saw no bind.
    assert_eq!(t.count("service_bindings").await, 0);
    assert!(t.broker.requests_to("PUT", "service_bindings").is_empty());

    // Duplicates.
    t.bind(&w.app, &w.instance, json!({"name": "one"}))
        .await
        .assert_status(201);
    let r = t.bind(&w.app, &w.instance, json!({})).await;
    r.assert_error(400, "CF-ServiceBindingAppServiceTaken");
    assert_eq!(
        r.body["description"],
        "The app is already bound to the service."
    );
    let second = t.create_instance(&w.space, &w.plan_small, "db2").await;
    let r = t.bind(&w.app, &second, json!({"name": "one"})).await;
    r.assert_error(400, "CF-ServiceBindingAppServiceTaken");
    assert!(r.body["description"]
        .as_str()
        .unwrap()
        .contains("must be unique"));
    assert_eq!(t.count("service_bindings").await, 1);

    // Unknown bindings.
    t.get(&format!("/v2/service_bindings/{missing}"))
        .await
        .assert_error(404, "CF-ServiceBindingNotFound");
    t.delete(&format!("/v2/service_bindings/{missing}"))
        .await
        .assert_error(404, "CF-ServiceBindingNotFound");
}

async fn body_is_json_whatever_the_content_type(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    // cf-client sends JSON text as application/x-www-form-urlencoded.
    let body = json!({"app_guid": w.app, "service_instance_guid": w.instance}).to_string();
    let r = t
        .raw(
            Method::POST,
            "/v2/service_bindings",
            "application/x-www-form-urlencoded",
            body.as_bytes(),
        )
        .await;
    r.assert_status(201);
}

async fn authentication_errors(backend: Backend) {
    let t = TestApp::start(backend).await;
    let r = t
        .request(Method::GET, "/v2/service_bindings", None, None)
        .await;
    r.assert_error(401, "CF-NotAuthenticated");
    assert_eq!(r.body["code"], 10002);
    let r = t
        .request(Method::GET, "/v2/service_bindings", Some("garbage"), None)
        .await;
    r.assert_error(401, "CF-InvalidAuthToken");
    assert_eq!(r.body["code"], 1000);
    // Signed with another key.
    let (key, _) = tether::auth::token::SigningKey::generate().unwrap();
    let other = tether::auth::TokenIssuer::new(key, "x", 3600)
        .user_token(
            "u",
            "u",
            &["cloud_controller.admin".into()],
            "cf",
            "password",
        )
        .unwrap()
        .0;
    t.request(Method::GET, "/v2/service_bindings", Some(&other), None)
        .await
        .assert_error(401, "CF-InvalidAuthToken");
    // A POST without auth changes nothing.
    t.request(
        Method::POST,
        "/v2/service_bindings",
        None,
        Some(&json!({"app_guid": "x", "service_instance_guid": "y"})),
    )
    .await
    .assert_error(401, "CF-NotAuthenticated");
}

async fn parallel_duplicate_creates_leave_one(backend: Backend) {
    let t = TestApp::start_with(
        backend,
        common::Options {
            pool_size: 8,
            ..Default::default()
        },
    )
    .await;
    let w = t.world().await;
    t.broker.clear_requests();
    let futures = (0..64).map(|_| t.bind(&w.app, &w.instance, json!({})));
    let results = futures_util::future::join_all(futures).await;
    let created = results.iter().filter(|r| r.status.as_u16() == 201).count();
    assert_eq!(created, 1, "exactly one create wins");
    for r in results.iter().filter(|r| r.status.as_u16() != 201) {
        r.assert_error(400, "CF-ServiceBindingAppServiceTaken");
    }
    assert_eq!(t.count("service_bindings").await, 1);
    assert_eq!(t.broker.requests_to("PUT", "service_bindings").len(), 1);
}

async fn parallel_creates_with_one_name_leave_one(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let mut instances = Vec::new();
    for i in 0..8 {
        instances.push(
            t.create_instance(&w.space, &w.plan_small, &format!("db-{i}"))
                .await,
        );
    }
    let futures = instances
        .iter()
        .map(|si| t.bind(&w.app, si, json!({"name": "same-name"})));
    let results = futures_util::future::join_all(futures).await;
    assert_eq!(
        results.iter().filter(|r| r.status.as_u16() == 201).count(),
        1
    );
    assert_eq!(t.count("service_bindings").await, 1);
}

/// Hostile input: never a 5xx, always a CF error document, nothing stored.
async fn bad_input_never_5xx(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"null".to_vec(),
        b"\"string\"".to_vec(),
        b"12".to_vec(),
        b"{\"app_guid\": null, \"service_instance_guid\": null}".to_vec(),
        b"{\"app_guid\": [], \"service_instance_guid\": {}}".to_vec(),
        vec![0xff, 0xfe, 0x00, 0x7b],
        format!("{{\"app_guid\": \"{}\", \"service_instance_guid\": \"{}\", \"parameters\": null, \"name\": \"\\u0000\"}}", w.app, w.instance).into_bytes(),
        "{\"app_guid\": \"\u{1F600}\", \"service_instance_guid\": \"'; DROP TABLE service_bindings; --\"}".as_bytes().to_vec(),
        format!("{{\"app_guid\": \"{}\", \"service_instance_guid\": \"{}\"", w.app, w.instance).into_bytes(),
        vec![b'['; 10_000],
        format!("{{\"app_guid\": \"{}\"}}", "x".repeat(100_000)).into_bytes(),
    ];
    for body in bodies {
        let r = t
            .raw(
                Method::POST,
                "/v2/service_bindings",
                "application/json",
                &body,
            )
            .await;
        assert!(
            r.status.is_client_error(),
            "body {:?} gave {} {}",
            String::from_utf8_lossy(&body[..body.len().min(80)]),
            r.status,
            r.text
        );
        assert!(
            r.body["error_code"].as_str().unwrap().starts_with("CF-"),
            "{}",
            r.text
        );
    }
    let queries = [
        "?q=",
        "?q=app_guid",
        "?q=;;;",
        "?q=app_guid:%00",
        "?page=-1",
        "?page=99999999999999999999",
        "?results-per-page=abc",
        "?results-per-page=-5",
        "?inline-relations-depth=x",
        "?q=name%3E%3D%FF",
        "?q[0]=name:x",
        "?page=9223372036854775807&results-per-page=100",
    ];
    for q in queries {
        let r = t.get(&format!("/v2/service_bindings{q}")).await;
        assert!(
            r.status.as_u16() < 500,
            "query {q} gave {} {}",
            r.status,
            r.text
        );
    }
    for path in [
        "/v2/service_bindings/%00",
        "/v2/service_bindings/..%2F..%2Fetc",
        "/v2/service_bindings/'",
        "/v2/nothing-here",
    ] {
        let r = t.get(path).await;
        assert_eq!(r.status.as_u16(), 404, "{path}: {}", r.text);
        assert!(r.body["error_code"].is_string(), "{path}: {}", r.text);
    }
    assert_eq!(t.count("service_bindings").await, 0);
}

async fn parameters_endpoint(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let r = t.bind(&w.app, &w.instance, json!({})).await;
    let guid = r.body["metadata"]["guid"].as_str().unwrap();
    let p = t
        .get(&format!("/v2/service_bindings/{guid}/parameters"))
        .await;
    p.assert_status(200);
    assert_eq!(p.body, json!({"fetched": true}));

    let upsi = t
        .post(
            "/v2/user_provided_service_instances",
            json!({"name": "ups", "space_guid": w.space}),
        )
        .await;
    let upsi = upsi.body["metadata"]["guid"].as_str().unwrap().to_string();
    let other = t.create_app(&w.space, "other").await;
    let r = t.bind(&other, &upsi, json!({})).await;
    let guid = r.body["metadata"]["guid"].as_str().unwrap();
    t.get(&format!("/v2/service_bindings/{guid}/parameters"))
        .await
        .assert_error(400, "CF-ServiceFetchBindingParametersNotSupported");
}

async fn delete_failures_keep_the_binding(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let r = t.bind(&w.app, &w.instance, json!({})).await;
    let guid = r.body["metadata"]["guid"].as_str().unwrap().to_string();
    t.broker.script(
        "unbind",
        [Reply::Status(500, r#"{"description":"nope"}"#.into())],
    );
    let d = t.delete(&format!("/v2/service_bindings/{guid}")).await;
    d.assert_error(502, "CF-ServiceBrokerBadResponse");
    let desc = d.body["description"].as_str().unwrap();
    assert!(
        desc.starts_with("An unbind operation for the service binding between app my-app and service instance my-db failed: Service broker error: nope"),
        "{desc}"
    );
    let got = t.get(&format!("/v2/service_bindings/{guid}")).await;
    got.assert_status(200);
    assert_eq!(got.body["entity"]["last_operation"]["type"], "delete");
    assert_eq!(got.body["entity"]["last_operation"]["state"], "failed");
    // A retry works; a 410 from the broker counts as deleted.
    t.broker.script("unbind", [Reply::Status(410, "{}".into())]);
    t.delete(&format!("/v2/service_bindings/{guid}"))
        .await
        .assert_status(204);
    assert_eq!(t.count("service_bindings").await, 0);
}

async fn instance_with_bindings_cannot_be_deleted(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let r = t.bind(&w.app, &w.instance, json!({})).await;
    let guid = r.body["metadata"]["guid"].as_str().unwrap().to_string();
    t.delete(&format!("/v2/service_instances/{}", w.instance))
        .await
        .assert_error(400, "CF-AssociationNotEmpty");
    t.delete(&format!("/v2/apps/{}", w.app))
        .await
        .assert_error(400, "CF-AssociationNotEmpty");
    t.delete(&format!("/v2/service_bindings/{guid}"))
        .await
        .assert_status(204);
    t.delete(&format!("/v2/service_instances/{}", w.instance))
        .await
        .assert_status(204);
    assert!(!t
        .broker
        .requests_to("DELETE", &format!("/v2/service_instances/{}", w.instance))
        .is_empty());
}

backend_tests!(
    create_get_list_delete,
    request_id_is_echoed,
    user_provided_binding_uses_instance_credentials,
    validation_errors,
    body_is_json_whatever_the_content_type,
    authentication_errors,
    parallel_duplicate_creates_leave_one,
    parallel_creates_with_one_name_leave_one,
    bad_input_never_5xx,
    parameters_endpoint,
    delete_failures_keep_the_binding,
    instance_with_bindings_cannot_be_deleted,
);
