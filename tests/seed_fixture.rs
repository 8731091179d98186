//! Replays the v2 docs' "Create a Service Binding" example (seed 001) from `fixtures/` and checks
//! that the response has the documented shape: status, keys, JSON types, key order, headers.

mod common;

use common::{Backend, TestApp};
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("fixture json")
}

/// Asserts `actual` has exactly the keys of `expected`, in order, with the same JSON types,
/// recursively. Values may differ (guids, timestamps).
fn assert_same_shape(expected: &Value, actual: &Value, path: &str) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            let ek: Vec<&String> = e.keys().collect();
            let ak: Vec<&String> = a.keys().collect();
            assert_eq!(ek, ak, "keys differ at {path}");
            for (k, ev) in e {
                assert_same_shape(ev, &a[k], &format!("{path}.{k}"));
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            assert_eq!(e.len(), a.len(), "array length differs at {path}");
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                assert_same_shape(ev, av, &format!("{path}[{i}]"));
            }
        }
        (Value::String(_), Value::String(_))
        | (Value::Number(_), Value::Number(_))
        | (Value::Bool(_), Value::Bool(_))
        | (Value::Null, Value::Null) => {}
        (e, a) => panic!("type differs at {path}: expected {e}, got {a}"),
    }
}

fn is_rfc3339_z(s: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(s).is_ok() && s.ends_with('Z') && s.len() == 20
}

async fn seed_example_replays_with_the_documented_shape(backend: Backend) {
    let t = TestApp::start(backend).await;
    let caller = tether::service::Caller {
        actor: tether::auth::Actor {
            user_id: Some("admin-user".into()),
            user_name: Some("admin".into()),
            client_id: Some("cf".into()),
            scopes: vec!["cloud_controller.admin".into()],
        },
        request_id: "seed".into(),
    };
    tether::service::demo::seed(&t.state, &caller, None, "", "")
        .await
        .expect("seed demo data");

    let request = load("seed001_create_binding.request.json");
    let expected = load("seed001_create_binding.response.json");
    let resp = t
        .client
        .post(format!(
            "{}/v2/service_bindings?accepts_incomplete=false",
            t.base
        ))
        .header("Authorization", format!("bearer {}", t.admin_token))
        .header("Content-Type", "application/json")
        .header("Cookie", "")
        .body(request.to_string())
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body: Value = resp.json().await.expect("json body");

    assert_eq!(
        status,
        expected["status"].as_u64().unwrap() as u16,
        "{body}"
    );
    assert_same_shape(&expected["body"], &body, "$");

    // The values that are not random match the example exactly.
    let e = &body["entity"];
    assert_eq!(e["app_guid"], request["app_guid"]);
    assert_eq!(e["service_instance_guid"], request["service_instance_guid"]);
    assert_eq!(e["credentials"], expected["body"]["entity"]["credentials"]);
    assert_eq!(e["name"], "prod-db");
    assert_eq!(e["gateway_name"], "");
    assert_eq!(e["last_operation"]["type"], "create");
    assert_eq!(e["last_operation"]["state"], "succeeded");
    assert_eq!(e["app_url"], expected["body"]["entity"]["app_url"]);
    assert_eq!(
        e["service_instance_url"],
        expected["body"]["entity"]["service_instance_url"]
    );
    let guid = body["metadata"]["guid"].as_str().unwrap();
    assert_eq!(
        body["metadata"]["url"],
        format!("/v2/service_bindings/{guid}")
    );
    assert_eq!(
        e["service_binding_parameters_url"],
        format!("/v2/service_bindings/{guid}/parameters")
    );
    for ts in [
        &body["metadata"]["created_at"],
        &body["metadata"]["updated_at"],
        &e["last_operation"]["created_at"],
        &e["last_operation"]["updated_at"],
    ] {
        assert!(is_rfc3339_z(ts.as_str().unwrap()), "timestamp format: {ts}");
    }

    // The same header set.
    for line in expected["headers"].as_array().unwrap() {
        let name = line.as_str().unwrap().split(':').next().unwrap();
        assert!(headers.contains_key(name), "missing header {name}");
    }
    assert_eq!(headers["content-type"], "application/json;charset=utf-8");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(
        headers["location"].to_str().unwrap(),
        format!("/v2/service_bindings/{guid}")
    );
    assert_eq!(
        headers["content-length"]
            .to_str()
            .unwrap()
            .parse::<usize>()
            .unwrap(),
        serde_json::to_vec(&body).unwrap().len()
    );
}

backend_tests!(seed_example_replays_with_the_documented_shape);
