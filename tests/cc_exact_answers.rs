//! Issue 13, items 6–12: CC's exact answers (status, `code`, `error_code`, `description`) for
//! `accepts_incomplete` values, token scopes, request ids, broker failures, binding
//! parameters, syslog drain commas and `order-direction`.

mod common;

use std::time::Duration;

use common::{Backend, Options, Response, TestApp};
use reqwest::Method;
use serde_json::{json, Value};
use tether::demo_broker::Reply;

fn guid(r: &Response) -> String {
    r.body["metadata"]["guid"]
        .as_str()
        .expect("guid")
        .to_string()
}

const INVALID_REQUEST: (u16, u64, &str, &str) =
    (400, 10004, "CF-InvalidRequest", "The request is invalid");

async fn accepts_incomplete_must_be_true_or_false(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let (status, code, name, text) = INVALID_REQUEST;
    t.broker.clear_requests();
    for bad in ["yes", "TRUE", "", "1"] {
        let r = t
            .post(
                &format!("/v2/service_bindings?accepts_incomplete={bad}"),
                json!({"app_guid": w.app, "service_instance_guid": w.instance}),
            )
            .await;
        r.assert_cc_error(status, code, name, text);
    }
    assert!(t.broker.requests_to("PUT", "service_bindings").is_empty());
    assert_eq!(t.count("service_bindings").await, 0);

    let b = t.bind(&w.app, &w.instance, json!({})).await;
    b.assert_status(201);
    let path = format!("/v2/service_bindings/{}", guid(&b));
    let jobs = t.count("jobs").await;
    for query in ["accepts_incomplete=yes", "async=true&accepts_incomplete=x"] {
        let r = t.delete(&format!("{path}?{query}")).await;
        r.assert_cc_error(status, code, name, text);
    }
    assert!(t
        .broker
        .requests_to("DELETE", "service_bindings")
        .is_empty());
    assert_eq!(t.count("jobs").await, jobs);
    t.get(&path).await.assert_status(200);
    // CC finds the binding before it reads the flag.
    let r = t
        .delete("/v2/service_bindings/no-such-binding?accepts_incomplete=yes")
        .await;
    r.assert_cc_error(
        404,
        90004,
        "CF-ServiceBindingNotFound",
        "The service binding could not be found: no-such-binding",
    );
    // `false` is CC's other accepted value.
    t.delete(&format!("{path}?accepts_incomplete=false"))
        .await
        .assert_status(204);
}

async fn scopes_are_checked_as_cc_checks_them(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let b = t.bind(&w.app, &w.instance, json!({})).await;
    b.assert_status(201);
    let binding = guid(&b);
    for path in [
        format!("/v2/organizations/{}/users/dev", w.org),
        format!("/v2/spaces/{}/developers/dev", w.space),
    ] {
        t.put(&path, json!({})).await.assert_status(201);
    }
    // A token that may write but not read: CC's `read_with_token?`/`index_with_token?`.
    let write_only = t.token_for("dev", &["cloud_controller.write"]);
    for path in [
        "/v2/service_bindings".to_string(),
        format!("/v2/service_bindings/{binding}"),
        format!("/v2/service_bindings/{binding}/parameters"),
        format!("/v2/apps/{}/service_bindings", w.app),
    ] {
        let r = t.as_user(&write_only, Method::GET, &path, None).await;
        r.assert_cc_error(
            403,
            10007,
            "CF-InsufficientScope",
            "Your token lacks the necessary scopes to access this resource.",
        );
    }
    // A read-only token of a space developer may not bind or unbind.
    let read_only = t.token_for("dev", &["cloud_controller.read"]);
    let not_authorized = |r: &Response| {
        r.assert_cc_error(
            403,
            10003,
            "CF-NotAuthorized",
            "You are not authorized to perform the requested action",
        )
    };
    let body = json!({"app_guid": w.app, "service_instance_guid": w.instance, "name": "x"});
    let r = t
        .as_user(&read_only, Method::POST, "/v2/service_bindings", Some(body))
        .await;
    not_authorized(&r);
    let path = format!("/v2/service_bindings/{binding}");
    not_authorized(&t.as_user(&read_only, Method::DELETE, &path, None).await);
    // Reads work with the read scope; nothing was changed.
    let r = t.as_user(&read_only, Method::GET, &path, None).await;
    r.assert_status(200);
    assert_eq!(t.count("service_bindings").await, 1);
}

async fn get_with_headers(t: &TestApp, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = t
        .client
        .get(format!("{}/v2/service_bindings", t.base))
        .header("Authorization", format!("bearer {}", t.admin_token));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

/// `<kept>::<uuid>`.
#[track_caller]
fn assert_request_id(id: &str, kept: &str) {
    let (head, tail) = id.rsplit_once("::").expect(id);
    assert_eq!(head, kept);
    assert!(uuid::Uuid::parse_str(tail).is_ok(), "{id}");
}

async fn request_ids_are_sanitised_and_unique(backend: Backend) {
    let t = TestApp::start(backend).await;
    let id = |r: &reqwest::Response| {
        r.headers()["x-vcap-request-id"]
            .to_str()
            .unwrap()
            .to_string()
    };
    let r = get_with_headers(&t, &[("X-VCAP-Request-ID", "ab c/d<e>_f-9;é")]).await;
    assert_request_id(&id(&r), "abcde_f-9");
    let r = get_with_headers(&t, &[("X-Request-ID", "from-x-request-id")]).await;
    assert_request_id(&id(&r), "from-x-request-id");
    let r = get_with_headers(
        &t,
        &[("X-Request-ID", "other"), ("X-VCAP-Request-ID", "vcap")],
    )
    .await;
    assert_request_id(&id(&r), "vcap");
    let long = "a".repeat(300);
    let r = get_with_headers(&t, &[("X-VCAP-Request-ID", &long)]).await;
    assert_request_id(&id(&r), &"a".repeat(255));
    let (a, b) = (
        id(&get_with_headers(&t, &[("X-VCAP-Request-ID", "same")]).await),
        id(&get_with_headers(&t, &[("X-VCAP-Request-ID", "same")]).await),
    );
    assert_ne!(a, b);
    let none = id(&get_with_headers(&t, &[]).await);
    assert!(uuid::Uuid::parse_str(&none).is_ok(), "{none}");

    // The broker gets the same id the client was answered with.
    let w = t.world().await;
    t.broker.clear_requests();
    let resp = t
        .client
        .post(format!("{}/v2/service_bindings", t.base))
        .header("Authorization", format!("bearer {}", t.admin_token))
        .header("X-Request-ID", "trace 42!")
        .json(&json!({"app_guid": w.app, "service_instance_guid": w.instance}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let answered = id(&resp);
    assert_request_id(&answered, "trace42");
    let put = &t.broker.requests_to("PUT", "service_bindings")[0];
    assert_eq!(put.header("x-vcap-request-id"), Some(answered.as_str()));
}

async fn order_direction_message(backend: Backend) {
    let t = TestApp::start(backend).await;
    let r = t.get("/v2/service_bindings?order-direction=sideways").await;
    r.assert_cc_error(
        400,
        10005,
        "CF-BadQueryParameter",
        "The query parameter is invalid: order_direction must be 'asc' or 'desc' but was 'sideways'",
    );
}

async fn syslog_drain_commas_are_encoded(backend: Backend) {
    let t = TestApp::start(backend).await;
    let mut catalog = tether::demo_broker::demo_catalog();
    catalog["services"][0]["requires"] = json!(["syslog_drain"]);
    t.broker.set_catalog(catalog);
    let w = t.world().await;
    t.broker.script(
        "bind",
        [Reply::Status(
            201,
            json!({"credentials": {}, "syslog_drain_url": "syslog://logs.example:514/a,b,c"})
                .to_string(),
        )],
    );
    let r = t.bind(&w.app, &w.instance, json!({})).await;
    r.assert_status(201);
    assert_eq!(
        r.body["entity"]["syslog_drain_url"],
        "syslog://logs.example:514/a%2cb%2cc"
    );
    let got = t.get(&format!("/v2/service_bindings/{}", guid(&r))).await;
    assert_eq!(
        got.body["entity"]["syslog_drain_url"],
        "syslog://logs.example:514/a%2cb%2cc"
    );
    // A user-provided instance's drain too.
    let upsi = t
        .post(
            "/v2/user_provided_service_instances",
            json!({"name": "ups", "space_guid": w.space, "syslog_drain_url": "syslog://x,y"}),
        )
        .await;
    upsi.assert_status(201);
    let r = t.bind(&w.app, &guid(&upsi), json!({})).await;
    r.assert_status(201);
    assert_eq!(r.body["entity"]["syslog_drain_url"], "syslog://x%2cy");
}

async fn parameters_follow_cc(backend: Backend) {
    let t = TestApp::start_with(
        backend,
        Options {
            runner: false,
            ..Options::default()
        },
    )
    .await;
    let w = t.world().await;
    // A malformed `parameters`: CC's schema message, not `{}`.
    let b = t.bind(&w.app, &w.instance, json!({})).await;
    b.assert_status(201);
    t.broker.script(
        "fetch",
        [Reply::Status(
            200,
            json!({"credentials": {}, "parameters": [1]}).to_string(),
        )],
    );
    let r = t
        .get(&format!("/v2/service_bindings/{}/parameters", guid(&b)))
        .await;
    r.assert_cc_error(
        502,
        10001,
        "CF-ServiceBrokerResponseMalformed",
        "The service broker returned an invalid response: \nThe property '#/parameters' of type array did not match the following type: object",
    );
    assert_eq!(r.body["http"], json!({"method": "GET", "status": 200}));
    t.get(&format!("/v2/service_bindings/{}/parameters", guid(&b)))
        .await
        .assert_status(200);

    // While the binding is being created: 409, and the broker is not asked.
    let slow = t.create_instance(&w.space, &w.plan_async, "slow-db").await;
    t.broker.script(
        "bind",
        [Reply::Async {
            operation: None,
            polls: 1000,
            final_state: "succeeded",
            retry_after: None,
        }],
    );
    let r = t
        .post(
            "/v2/service_bindings?accepts_incomplete=true",
            json!({"app_guid": w.app, "service_instance_guid": slow}),
        )
        .await;
    r.assert_status(202);
    t.broker.clear_requests();
    let p = t
        .get(&format!("/v2/service_bindings/{}/parameters", guid(&r)))
        .await;
    p.assert_cc_error(
        409,
        90008,
        "CF-AsyncServiceBindingOperationInProgress",
        "An operation for the service binding between app my-app and service instance slow-db is in progress.",
    );
    assert!(t.broker.requests().is_empty());
}

/// Every broker failure of a bind, with CC's description and no broker URL in it.
async fn broker_errors_use_cc_texts(backend: Backend) {
    let t = TestApp::start(backend).await;
    let w = t.world().await;
    let cases: Vec<(Reply, u16, &str, String)> = vec![
        (
            Reply::Status(400, "not json".into()),
            502,
            "CF-ServiceBrokerRequestRejected",
            "The service broker rejected the request. Status Code: 400 Bad Request, Body: not json".into(),
        ),
        (
            Reply::Status(403, json!({"description": "no way"}).to_string()),
            502,
            "CF-ServiceBrokerRequestRejected",
            "Service broker error: no way".into(),
        ),
        (
            Reply::Status(408, "{}".into()),
            504,
            "CF-ServiceBrokerApiTimeout",
            "The request to the service broker timed out".into(),
        ),
        (
            Reply::Status(200, "[]".into()),
            502,
            "CF-ServiceBrokerResponseMalformed",
            "The service broker returned an invalid response: expected valid JSON object in body, broker returned '[]'".into(),
        ),
        (
            Reply::Status(201, json!({"credentials": "secret"}).to_string()),
            502,
            "CF-ServiceBrokerResponseMalformed",
            "The service broker returned an invalid response: expected credentials to be a valid JSON object".into(),
        ),
        (
            Reply::Status(201, json!({"credentials": {}, "volume_mounts": [{"device_type": "shared"}]}).to_string()),
            502,
            "CF-ServiceBrokerInvalidVolumeMounts",
            "The service broker returned an invalid response: The service is attempting to supply volume mounts from your application, but is not registered as a volume mount service. Please contact the service provider.".into(),
        ),
        (
            Reply::Status(422, json!({"error": "AsyncRequired"}).to_string()),
            400,
            "CF-AsyncRequired",
            "This service plan requires client support for asynchronous service operations.".into(),
        ),
    ];
    for (reply, status, error_code, description) in cases {
        t.broker.script("bind", [reply]);
        let r = t.bind(&w.app, &w.instance, json!({})).await;
        r.assert_cc_error(status, 10001, error_code, &description);
        let http = &r.body["http"];
        assert_eq!(http["method"], "PUT", "{}", r.text);
        if error_code == "CF-ServiceBrokerApiTimeout" {
            // CC's HttpRequestError: the URI and the method, no status.
            assert!(
                http["uri"]
                    .as_str()
                    .is_some_and(|u| u.contains("/v2/service_instances/")),
                "{}",
                r.text
            );
            assert!(http.get("status").is_none(), "{}", r.text);
        } else {
            // CC's HttpResponseError: the method and the status, no URI.
            assert!(http["status"].is_u64(), "{}", r.text);
            assert!(http.get("uri").is_none(), "{}", r.text);
        }
    }
    assert_eq!(t.count("service_bindings").await, 0);

    // Unbind: AsyncRequired, wrapped with the names of what was being unbound.
    let b = t.bind(&w.app, &w.instance, json!({})).await;
    b.assert_status(201);
    t.broker.script(
        "unbind",
        [Reply::Status(
            422,
            json!({"error": "AsyncRequired"}).to_string(),
        )],
    );
    let r = t
        .delete(&format!("/v2/service_bindings/{}", guid(&b)))
        .await;
    r.assert_cc_error(
        400,
        10001,
        "CF-AsyncRequired",
        "An unbind operation for the service binding between app my-app and service instance my-db failed: This service plan requires client support for asynchronous service operations.",
    );
    assert_eq!(r.body["http"], json!({"method": "DELETE", "status": 422}));
}

/// Timeouts and an unreachable broker: CC's texts; the URL only in `http.uri`.
async fn broker_transport_errors_keep_the_url_out(backend: Backend) {
    let t = TestApp::start_with(
        backend,
        Options {
            broker_timeout: Duration::from_millis(500),
            ..Options::default()
        },
    )
    .await;
    let w = t.world().await;
    t.broker
        .script("bind", [Reply::Delay(Duration::from_secs(3))]);
    let r = t.bind(&w.app, &w.instance, json!({})).await;
    r.assert_cc_error(
        504,
        10001,
        "CF-HttpClientTimeout",
        "The request to the service broker timed out",
    );
    assert_eq!(r.body["http"]["method"], "PUT");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (broker, url) = (w.broker.clone(), format!("http://127.0.0.1:{closed}"));
    t.state
        .db
        .write(move |conn| {
            use diesel::prelude::*;
            use tether::db::schema::service_brokers::dsl as b;
            diesel::update(b::service_brokers.filter(b::guid.eq(&broker)))
                .set(b::broker_url.eq(&url))
                .execute(conn)?;
            Ok(())
        })
        .await
        .unwrap();
    let r = t.bind(&w.app, &w.instance, json!({})).await;
    r.assert_cc_error(
        502,
        10001,
        "CF-ServiceBrokerApiUnreachable",
        "The service broker could not be reached",
    );
    assert_eq!(r.body["http"]["method"], "PUT");
    // CC's `HttpRequestError` names the URI in `http`, never in the description.
    assert!(r.body["http"]["uri"]
        .as_str()
        .unwrap()
        .contains("127.0.0.1"));
    let described: Value = r.body["description"].clone();
    assert!(!described.as_str().unwrap().contains("127.0.0.1"));
}

backend_tests!(
    accepts_incomplete_must_be_true_or_false,
    scopes_are_checked_as_cc_checks_them,
    request_ids_are_sanitised_and_unique,
    order_direction_message,
    syslog_drain_commas_are_encoded,
    parameters_follow_cc,
    broker_errors_use_cc_texts,
    broker_transport_errors_keep_the_url_out,
);
