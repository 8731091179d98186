//! The synchronous binding lifecycle against a real broker: create, get, list, delete, and every
//! error case of issue 2.

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

async fn broker_errors_store_nothing(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let cases: Vec<(Reply, u16, &str, Option<&str>, bool)> = vec![
        (
            Reply::Status(500, r#"{"description":"disk full"}"#.into()),
            502,
            "CF-ServiceBrokerBadResponse",
            Some("Service broker error: disk full"),
            true,
        ),
        (
            Reply::Status(503, "oops".into()),
            502,
            "CF-ServiceBrokerBadResponse",
            Some("The service broker returned an invalid response. Status Code: 503 Service Unavailable, Body: oops"),
            true,
        ),
        (
            Reply::Status(400, r#"{"description":"bad param"}"#.into()),
            502,
            "CF-ServiceBrokerRequestRejected",
            Some("Service broker error: bad param"),
            false,
        ),
        (
            Reply::Status(409, r#"{"description":"exists with other params"}"#.into()),
            409,
            "CF-ServiceBrokerConflict",
            Some("Service broker error: exists with other params"),
            false,
        ),
        (
            Reply::Status(422, r#"{"error":"RequiresApp","description":"x"}"#.into()),
            400,
            "CF-AppRequired",
            None,
            false,
        ),
        (
            Reply::Status(422, r#"{"error":"ConcurrencyError"}"#.into()),
            422,
            "CF-ConcurrencyError",
            None,
            false,
        ),
        (
            Reply::Status(401, "".into()),
            502,
            "CF-ServiceBrokerApiAuthenticationFailed",
            None,
            false,
        ),
        (
            Reply::Status(201, "not json".into()),
            502,
            "CF-ServiceBrokerResponseMalformed",
            None,
            true,
        ),
        (
            Reply::Status(201, r#"{"credentials":"a string"}"#.into()),
            502,
            "CF-ServiceBrokerResponseMalformed",
            None,
            true,
        ),
        (
            Reply::Status(201, r#"{"credentials":{},"syslog_drain_url":"syslog://x"}"#.into()),
            502,
            "CF-ServiceBrokerInvalidSyslogDrainUrl",
            None,
            true,
        ),
        (
            Reply::Status(408, "".into()),
            504,
            "CF-ServiceBrokerApiTimeout",
            None,
            false,
        ),
    ];
    for (reply, status, code, description, mitigated) in cases {
        t.broker.clear_requests();
        t.broker.script("bind", [reply.clone()]);
        let r = t.bind(&w.app, &w.instance, json!({})).await;
        r.assert_error(status, code);
        assert_eq!(r.body["code"], 10001, "{}", r.text);
        if let Some(d) = description {
            assert_eq!(r.body["description"], d);
        }
        assert_eq!(r.body["http"]["method"], "PUT", "{}", r.text);
        assert_eq!(
            t.count("service_bindings").await,
            0,
            "{reply:?} stored a binding"
        );
        // Orphan mitigation: a DELETE for the same binding id, only where the spec asks.
        let put = t.broker.requests_to("PUT", "service_bindings");
        let binding_path = put[0].path.clone();
        if mitigated {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                let dels = t.broker.requests_to("DELETE", &binding_path);
                if !dels.is_empty() {
                    assert_eq!(
                        dels[0].query_param("accepts_incomplete").as_deref(),
                        Some("true")
                    );
                    assert!(dels[0]
                        .header("x-broker-api-originating-identity")
                        .is_none());
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "no orphan mitigation for {reply:?}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        } else {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            assert!(
                t.broker.requests_to("DELETE", &binding_path).is_empty(),
                "unexpected orphan mitigation for {reply:?}"
            );
        }
    }
    // A 422 AsyncRequired without accepts_incomplete.
    t.broker.script(
        "bind",
        [Reply::Status(
            422,
            r#"{"error":"AsyncRequired","description":"async only"}"#.into(),
        )],
    );
    let r = t.bind(&w.app, &w.instance, json!({})).await;
    r.assert_error(400, "CF-AsyncRequired");
    // And the next, normal bind works.
    t.bind(&w.app, &w.instance, json!({}))
        .await
        .assert_status(201);
}

async fn broker_timeout_is_504_and_mitigated(backend: Backend) {
    let t = TestApp::start_with(
        backend,
        common::Options {
            broker_timeout: std::time::Duration::from_millis(500),
            ..Default::default()
        },
    )
    .await;
    let w = t.world().await;
    t.broker
        .script("bind", [Reply::Delay(std::time::Duration::from_secs(2))]);
    let started = std::time::Instant::now();
    let r = t.bind(&w.app, &w.instance, json!({})).await;
    r.assert_error(504, "CF-HttpClientTimeout");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    assert_eq!(t.count("service_bindings").await, 0);
    let put_path = t.broker.requests_to("PUT", "service_bindings")[0]
        .path
        .clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while t.broker.requests_to("DELETE", &put_path).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no orphan mitigation after timeout"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn unreachable_broker_is_502(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    // Point the broker at a closed port.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let broker_guid = w.broker.clone();
    let url = format!("http://127.0.0.1:{closed}");
    t.state
        .db
        .write(move |conn| {
            use diesel::prelude::*;
            use tether::db::schema::service_brokers::dsl as b;
            diesel::update(b::service_brokers.filter(b::guid.eq(&broker_guid)))
                .set(b::broker_url.eq(&url))
                .execute(conn)?;
            Ok(())
        })
        .await
        .unwrap();
    let r = t.bind(&w.app, &w.instance, json!({})).await;
    r.assert_error(502, "CF-ServiceBrokerApiUnreachable");
    assert_eq!(t.count("service_bindings").await, 0);
}

/// The broker bound, but storing the result failed: the binding is unbound at the broker and
/// nothing is kept.
async fn save_failure_triggers_orphan_mitigation(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let backend_kind = t.state.db.backend();
    t.state
        .db
        .write(move |conn| {
            use diesel::connection::SimpleConnection;
            match backend_kind {
                tether::db::Backend::Sqlite => conn.batch_execute(
                    "CREATE TRIGGER fail_save BEFORE UPDATE ON service_bindings \
                     WHEN NEW.last_operation_state = 'succeeded' \
                     BEGIN SELECT RAISE(ABORT, 'simulated storage failure'); END;",
                )?,
                tether::db::Backend::Postgres => conn.batch_execute(
                    "CREATE FUNCTION fail_save() RETURNS trigger AS $$ BEGIN \
                       RAISE EXCEPTION 'simulated storage failure'; END; $$ LANGUAGE plpgsql; \
                     CREATE TRIGGER fail_save BEFORE UPDATE ON service_bindings FOR EACH ROW \
                       WHEN (NEW.last_operation_state = 'succeeded') EXECUTE FUNCTION fail_save();",
                )?,
            }
            Ok(())
        })
        .await
        .unwrap();
    let r = t.bind(&w.app, &w.instance, json!({})).await;
    r.assert_error(500, "UnknownError");
    assert_eq!(r.body["description"], "An unknown error occurred.");
    assert!(
        !r.text.contains("simulated"),
        "internal cause leaked: {}",
        r.text
    );
    assert_eq!(t.count("service_bindings").await, 0);
    let put_path = t.broker.requests_to("PUT", "service_bindings")[0]
        .path
        .clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while t.broker.requests_to("DELETE", &put_path).is_empty() {
        assert!(std::time::Instant::now() < deadline, "no orphan mitigation");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The broker records a request before it handles it: wait for the unbind to take effect.
    while !t.broker.binding_ids().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "broker still holds the binding"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
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

async fn list_pagination_and_filters(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let mut apps = vec![w.app.clone()];
    for i in 0..4 {
        apps.push(t.create_app(&w.space, &format!("app-{i}")).await);
    }
    let mut guids = Vec::new();
    for (i, app) in apps.iter().enumerate() {
        let r = t
            .bind(app, &w.instance, json!({"name": format!("b{i}")}))
            .await;
        r.assert_status(201);
        guids.push(r.body["metadata"]["guid"].as_str().unwrap().to_string());
    }
    let p1 = t.get("/v2/service_bindings?results-per-page=2").await;
    p1.assert_status(200);
    assert_eq!(p1.body["total_results"], 5);
    assert_eq!(p1.body["total_pages"], 3);
    assert_eq!(p1.body["prev_url"], Value::Null);
    assert_eq!(
        p1.body["next_url"],
        "/v2/service_bindings?order-direction=asc&page=2&results-per-page=2"
    );
    let names: Vec<_> = p1.body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["entity"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["b0", "b1"]);
    let p2 = t.get(p1.body["next_url"].as_str().unwrap()).await;
    assert_eq!(p2.body["resources"][0]["entity"]["name"], "b2");
    assert_eq!(
        p2.body["prev_url"],
        "/v2/service_bindings?order-direction=asc&page=1&results-per-page=2"
    );
    let p3 = t
        .get("/v2/service_bindings?results-per-page=2&page=3")
        .await;
    assert_eq!(p3.body["resources"].as_array().unwrap().len(), 1);
    assert_eq!(p3.body["next_url"], Value::Null);
    let beyond = t
        .get("/v2/service_bindings?results-per-page=2&page=9")
        .await;
    beyond.assert_status(200);
    assert_eq!(beyond.body["resources"].as_array().unwrap().len(), 0);

    let desc = t
        .get("/v2/service_bindings?order-direction=desc&results-per-page=1")
        .await;
    assert_eq!(desc.body["resources"][0]["entity"]["name"], "b4");

    let by_app = t
        .get(&format!("/v2/service_bindings?q=app_guid:{}", apps[2]))
        .await;
    assert_eq!(by_app.body["total_results"], 1);
    assert_eq!(by_app.body["resources"][0]["metadata"]["guid"], guids[2]);
    let by_name = t.get("/v2/service_bindings?q=name:b3").await;
    assert_eq!(by_name.body["total_results"], 1);
    let two = t
        .get(&format!(
            "/v2/service_bindings?q=app_guid:{}&q=service_instance_guid:{}",
            apps[1], w.instance
        ))
        .await;
    assert_eq!(two.body["total_results"], 1);
    let joined = t
        .get(&format!(
            "/v2/service_bindings?q=app_guid:{};name:b1",
            apps[1]
        ))
        .await;
    assert_eq!(joined.body["total_results"], 1);
    let in_filter = t
        .get(&format!(
            "/v2/service_bindings?q=app_guid%20IN%20{},{}&results-per-page=1",
            apps[0], apps[4]
        ))
        .await;
    assert_eq!(in_filter.body["total_results"], 2);
    assert_eq!(
        in_filter.body["next_url"],
        format!(
            "/v2/service_bindings?order-direction=asc&page=2&q=app_guid%20IN%20{},{}&results-per-page=1",
            apps[0], apps[4]
        )
    );
    let none = t.get("/v2/service_bindings?q=name:nope").await;
    assert_eq!(none.body["total_results"], 0);
    assert_eq!(none.body["total_pages"], 1);

    // Nested lists.
    let nested = t
        .get(&format!("/v2/apps/{}/service_bindings", apps[3]))
        .await;
    assert_eq!(nested.body["total_results"], 1);
    let nested = t
        .get(&format!(
            "/v2/service_instances/{}/service_bindings?results-per-page=50",
            w.instance
        ))
        .await;
    assert_eq!(nested.body["total_results"], 5);
    t.get("/v2/apps/00000000-0000-0000-0000-000000000000/service_bindings")
        .await
        .assert_error(404, "CF-AppNotFound");

    // Bad parameters.
    let r = t.get("/v2/service_bindings?results-per-page=101").await;
    r.assert_error(400, "CF-BadQueryParameter");
    assert_eq!(
        r.body["description"],
        "The query parameter is invalid: results_per_page must be <= 100"
    );
    t.get("/v2/service_bindings?q=space_guid:x")
        .await
        .assert_error(400, "CF-BadQueryParameter");
    t.get("/v2/service_bindings?page=0")
        .await
        .assert_error(400, "CF-BadQueryParameter");
    t.get("/v2/service_bindings?order-direction=sideways")
        .await
        .assert_error(400, "CF-BadQueryParameter");
    t.get("/v2/service_bindings?inline-relations-depth=3")
        .await
        .assert_error(400, "CF-BadQueryParameter");
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

/// Unfiltered lists find their total and page start from per-block counts kept by triggers
/// (4096 ids per block); pages across block boundaries, after deletes, in both directions, must
/// be exactly those of a plain ORDER BY id with OFFSET.
async fn unfiltered_pages_across_id_blocks(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let first = t.bind(&w.app, &w.instance, json!({"name": "b0"})).await;
    first.assert_status(201);
    let first_guid = first.body["metadata"]["guid"].as_str().unwrap().to_string();
    // Rows at chosen ids, straight into the table (as if many bindings had come and gone), each
    // for its own app: both sides of block boundaries, and blocks far apart.
    let ids: [i64; 8] = [4094, 4095, 4096, 4097, 8191, 8192, 20000, 123457];
    let mut apps = Vec::new();
    for i in 0..ids.len() {
        apps.push(t.create_app(&w.space, &format!("block-app-{i}")).await);
    }
    let rows: Vec<(i64, String)> = ids.iter().copied().zip(apps.iter().cloned()).collect();
    let fg = first_guid.clone();
    t.state
        .db
        .write(move |conn| {
            use diesel::RunQueryDsl;
            for (id, app) in &rows {
                diesel::sql_query(format!(
                    "INSERT INTO service_bindings (id, guid, app_guid, service_instance_guid, name, \
                     credentials, syslog_drain_url, volume_mounts, last_operation_type, \
                     last_operation_state, last_operation_description, broker_operation, \
                     last_operation_created_at, last_operation_updated_at, created_at, updated_at, \
                     role, prefix, service_key_guid, extended) \
                     SELECT {id}, 'guid-{id}', '{app}', service_instance_guid, 'b{id}', credentials, \
                     syslog_drain_url, volume_mounts, last_operation_type, last_operation_state, \
                     last_operation_description, broker_operation, last_operation_created_at, \
                     last_operation_updated_at, created_at, updated_at, role, NULL, \
                     service_key_guid, extended FROM service_bindings WHERE guid = '{fg}'"
                ))
                .execute(conn)?;
            }
            Ok(())
        })
        .await
        .unwrap();
    // Deleting rows (through the API and the broker) keeps the counts exact.
    t.delete("/v2/service_bindings/guid-4096")
        .await
        .assert_status(204);
    t.delete("/v2/service_bindings/guid-8191")
        .await
        .assert_status(204);
    let expected: Vec<String> = std::iter::once(first_guid)
        .chain(
            [4094, 4095, 4097, 8192, 20000, 123457]
                .iter()
                .map(|id| format!("guid-{id}")),
        )
        .collect();

    for per_page in [1usize, 2, 3, 4, 7, 50] {
        for desc in [false, true] {
            let mut want = expected.clone();
            if desc {
                want.reverse();
            }
            let direction = if desc { "desc" } else { "asc" };
            let pages = want.len().div_ceil(per_page);
            let mut seen = Vec::new();
            for page in 1..=pages + 1 {
                let r = t
                    .get(&format!(
                        "/v2/service_bindings?order-direction={direction}&results-per-page={per_page}&page={page}"
                    ))
                    .await;
                r.assert_status(200);
                assert_eq!(r.body["total_results"], want.len(), "per_page {per_page}");
                assert_eq!(r.body["total_pages"], pages, "per_page {per_page}");
                let got: Vec<String> = r.body["resources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|b| b["metadata"]["guid"].as_str().unwrap().to_string())
                    .collect();
                if page > pages {
                    assert!(got.is_empty(), "page {page} past the end: {got:?}");
                }
                seen.extend(got);
            }
            assert_eq!(seen, want, "per_page {per_page}, {direction}");
        }
    }
}

backend_tests!(
    create_get_list_delete,
    unfiltered_pages_across_id_blocks,
    request_id_is_echoed,
    user_provided_binding_uses_instance_credentials,
    validation_errors,
    body_is_json_whatever_the_content_type,
    authentication_errors,
    broker_errors_store_nothing,
    broker_timeout_is_504_and_mitigated,
    unreachable_broker_is_502,
    save_failure_triggers_orphan_mitigation,
    parallel_duplicate_creates_leave_one,
    parallel_creates_with_one_name_leave_one,
    list_pagination_and_filters,
    bad_input_never_5xx,
    parameters_endpoint,
    delete_failures_keep_the_binding,
    instance_with_bindings_cannot_be_deleted,
);
