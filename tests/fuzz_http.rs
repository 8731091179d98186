//! A bounded fuzz test of the HTTP surface: with a fixed seed and a fixed number of requests,
//! random and mutated JSON bodies, query strings with arbitrary UTF-8 and bytes, odd paths,
//! methods and headers, against a real server (each backend). Every answer must be a complete
//! HTTP response (no dropped connection), never a 5xx, and every 4xx a CF error document (OAuth
//! errors on the UAA endpoints).

mod common;

use common::{Backend, TestApp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{json, Map, Value};

/// Requests per backend (each run is the same sequence: the seed is fixed).
const REQUESTS: usize = 6000;
const SEED: u64 = 0x7e7e_2026_1201;

/// What the fuzzer knows about the server's world, to aim requests at real resources too.
struct Targets {
    guids: Vec<String>,
    token: String,
    weak_token: String,
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.gen_range(0..items.len())]
}

/// A string to put somewhere a client controls: plausible, hostile or plain garbage.
fn fuzz_string(rng: &mut StdRng, t: &Targets) -> String {
    match rng.gen_range(0..12) {
        0 => pick(rng, &t.guids).clone(),
        1 => String::new(),
        2 => "é".repeat(rng.gen_range(1..40)),
        3 => "😀\u{0}\u{7}\u{202e}".into(),
        4 => "x".repeat(rng.gen_range(250..5000)),
        5 => "../../etc/passwd".into(),
        6 => "name:x;;y;app_guid IN a,b".into(),
        7 => "<script>alert(1)</script>".into(),
        8 => "-1".into(),
        9 => "99999999999999999999999".into(),
        10 => (0..rng.gen_range(1..30))
            .map(|_| char::from_u32(rng.gen_range(0..0x11000)).unwrap_or('?'))
            .collect(),
        _ => uuid::Uuid::new_v4().to_string(),
    }
}

/// Percent-encodes arbitrary bytes (including invalid UTF-8).
fn encode_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

fn fuzz_query(rng: &mut StdRng, t: &Targets) -> String {
    const KEYS: &[&str] = &[
        "q",
        "page",
        "results-per-page",
        "order-direction",
        "order-by",
        "inline-relations-depth",
        "accepts_incomplete",
        "async",
        "recursive",
        "purge",
        "q[0]",
        "",
    ];
    let mut parts = Vec::new();
    for _ in 0..rng.gen_range(0..5) {
        let key = *pick(rng, KEYS);
        let value = match rng.gen_range(0..6) {
            0 => {
                let k = *pick(
                    rng,
                    &["app_guid", "name", "service_instance_guid", "label", "x"],
                );
                let op = *pick(rng, &[":", ">=", "<=", "<", ">", " IN ", ""]);
                form_encode(&format!("{k}{op}{}", fuzz_string(rng, t)))
            }
            1 => encode_bytes(
                &(0..rng.gen_range(0..12))
                    .map(|_| rng.gen())
                    .collect::<Vec<u8>>(),
            ),
            2 => rng.gen_range(-5i64..200).to_string(),
            3 => pick(rng, &["asc", "desc", "sideways", "true", "false", "yes"]).to_string(),
            _ => form_encode(&fuzz_string(rng, t)),
        };
        parts.push(format!("{key}={value}"));
    }
    parts.join("&")
}

fn form_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn fuzz_path(rng: &mut StdRng, t: &Targets) -> String {
    const TEMPLATES: &[&str] = &[
        "/v2/service_bindings",
        "/v2/service_bindings/{}",
        "/v2/service_bindings/{}/parameters",
        "/v2/apps",
        "/v2/apps/{}",
        "/v2/apps/{}/env",
        "/v2/apps/{}/service_bindings",
        "/v2/apps/{}/service_bindings/{}",
        "/v2/apps/{}/service_binding_table",
        "/v2/service_instances",
        "/v2/service_instances/{}",
        "/v2/service_instances/{}/service_bindings",
        "/v2/service_instances/{}/service_keys",
        "/v2/user_provided_service_instances",
        "/v2/user_provided_service_instances/{}",
        "/v2/service_keys",
        "/v2/service_keys/{}",
        "/v2/spaces",
        "/v2/spaces/{}",
        "/v2/spaces/{}/apps",
        "/v2/spaces/{}/service_instances",
        "/v2/spaces/{}/summary",
        "/v2/spaces/{}/developers/{}",
        "/v2/spaces/{}/registry_secrets",
        "/v2/organizations",
        "/v2/organizations/{}",
        "/v2/organizations/{}/users/{}",
        "/v2/services",
        "/v2/services/{}/service_plans",
        "/v2/service_plans",
        "/v2/service_plans/{}",
        "/v2/service_plan_visibilities",
        "/v2/service_brokers/{}",
        "/v2/registry_secrets/{}",
        "/v2/jobs/{}",
        "/v2/users",
        "/v2/info",
        "/v3/organizations",
        "/v2/nothing/{}",
        "/{}",
        "//v2//service_bindings//",
    ];
    let template = *pick(rng, TEMPLATES);
    let mut path = String::new();
    for (i, part) in template.split("{}").enumerate() {
        if i > 0 {
            let segment = match rng.gen_range(0..10) {
                0 => encode_bytes(
                    &(0..rng.gen_range(1..8))
                        .map(|_| rng.gen())
                        .collect::<Vec<u8>>(),
                ),
                1 => form_encode(&fuzz_string(rng, t)).replace('+', "%20"),
                _ => pick(rng, &t.guids).clone(),
            };
            path.push_str(&segment);
        }
        path.push_str(part);
    }
    path
}

fn fuzz_json(rng: &mut StdRng, t: &Targets, depth: u32) -> Value {
    match rng.gen_range(0..if depth > 3 { 6 } else { 9 }) {
        0 => Value::Null,
        1 => json!(rng.gen::<bool>()),
        2 => json!(rng.gen::<i64>()),
        3 => json!(rng.gen::<f64>() * 1e300),
        4 | 5 => json!(fuzz_string(rng, t)),
        6 => Value::Array(
            (0..rng.gen_range(0..4))
                .map(|_| fuzz_json(rng, t, depth + 1))
                .collect(),
        ),
        _ => {
            let mut m = Map::new();
            for _ in 0..rng.gen_range(0..5) {
                m.insert(fuzz_string(rng, t), fuzz_json(rng, t, depth + 1));
            }
            Value::Object(m)
        }
    }
}

/// A plausible request body with some fields mutated, or garbage.
fn fuzz_body(rng: &mut StdRng, t: &Targets) -> Vec<u8> {
    const FIELDS: &[&str] = &[
        "app_guid",
        "service_instance_guid",
        "name",
        "parameters",
        "space_guid",
        "service_plan_guid",
        "credentials",
        "tags",
        "role",
        "prefix",
        "service_key_guid",
        "organization_guid",
        "syslog_drain_url",
        "username",
        "status",
        "server",
        "password",
    ];
    match rng.gen_range(0..8) {
        0 => (0..rng.gen_range(0..300)).map(|_| rng.gen()).collect(),
        1 => b"{\"app_guid\": ".to_vec(),
        2 => fuzz_json(rng, t, 0).to_string().into_bytes(),
        _ => {
            let mut m = Map::new();
            for _ in 0..rng.gen_range(1..6) {
                let key = *pick(rng, FIELDS);
                let value = if rng.gen_bool(0.5) {
                    json!(pick(rng, &t.guids))
                } else {
                    fuzz_json(rng, t, 1)
                };
                m.insert(key.to_string(), value);
            }
            Value::Object(m).to_string().into_bytes()
        }
    }
}

fn is_uaa_endpoint(path: &str) -> bool {
    ["/oauth/", "/token_keys", "/login", "/userinfo", "/Users"]
        .iter()
        .any(|p| path.starts_with(p))
}

async fn fuzzed_requests_get_cf_answers(backend: Backend) {
    let app = TestApp::start(backend).await;
    let w = app.world().await;
    let b = app
        .bind(&w.app, &w.instance, json!({"name": "fuzzed"}))
        .await;
    b.assert_status(201);
    let mut guids = vec![
        w.org,
        w.space,
        w.app.clone(),
        w.instance,
        w.plan_small,
        w.broker,
        b.body["metadata"]["guid"].as_str().unwrap().to_string(),
    ];
    guids.push("admin-user".into());
    let targets = Targets {
        guids,
        token: app.admin_token.clone(),
        weak_token: app.token_for("nobody", &["cloud_controller.read"]),
    };
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut seen = std::collections::BTreeMap::<u16, usize>::new();
    for n in 0..REQUESTS {
        let method = match rng.gen_range(0..20) {
            0..=8 => Method::GET,
            9..=12 => Method::POST,
            13 | 14 => Method::PUT,
            15..=17 => Method::DELETE,
            18 => pick(&mut rng, &[Method::PATCH, Method::OPTIONS, Method::HEAD]).clone(),
            _ => Method::from_bytes(b"BREW").unwrap(),
        };
        let path = if rng.gen_ratio(1, 30) {
            "/oauth/token".to_string()
        } else {
            fuzz_path(&mut rng, &targets)
        };
        let query = fuzz_query(&mut rng, &targets);
        let url = if query.is_empty() {
            format!("{}{path}", app.base)
        } else {
            format!("{}{path}?{query}", app.base)
        };
        let mut req = app.client.request(method.clone(), &url);
        match rng.gen_range(0..10) {
            0 => {}
            1 => req = req.header("Authorization", format!("bearer {}", targets.weak_token)),
            2 => req = req.header("Authorization", format!("bearer {}x", targets.token)),
            3 => req = req.header("Authorization", "Basic Y2Y6"),
            _ => req = req.header("Authorization", format!("bearer {}", targets.token)),
        }
        if rng.gen_bool(0.3) {
            let id = fuzz_string(&mut rng, &targets);
            if let Ok(v) = reqwest::header::HeaderValue::from_str(&id) {
                req = req.header("X-VCAP-Request-ID", v);
            }
        }
        if matches!(method, Method::POST | Method::PUT | Method::PATCH) || rng.gen_bool(0.1) {
            let ct = *pick(
                &mut rng,
                &[
                    "application/json",
                    "application/x-www-form-urlencoded",
                    "text/plain",
                    "multipart/form-data; boundary=x",
                    "application/json; charset=latin1",
                ],
            );
            req = req
                .header("Content-Type", ct)
                .body(fuzz_body(&mut rng, &targets));
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("request {n} ({method} {url}): no answer: {e}"));
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .unwrap_or_else(|e| panic!("request {n} ({method} {url}): body cut off: {e}"));
        *seen.entry(status).or_default() += 1;
        assert!(
            status < 500,
            "request {n} ({method} {url}): {status} {text}"
        );
        if status >= 400 && method != Method::HEAD {
            let doc: Value = serde_json::from_str(&text).unwrap_or_else(|_| {
                panic!("request {n} ({method} {url}): {status} with a non-JSON body: {text:?}")
            });
            let cf_error = doc["code"].is_u64()
                && doc["description"].is_string()
                && doc["error_code"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("CF-"));
            // The UAA endpoints answer their own requests with OAuth errors.
            let oauth_error = is_uaa_endpoint(&path) && doc["error"].is_string();
            assert!(
                cf_error || oauth_error,
                "request {n} ({method} {url}): {status} is not a CF error: {text}"
            );
        }
    }
    eprintln!("{REQUESTS} fuzzed requests on {backend:?}, answers by status: {seen:?}");
    // Still serving.
    app.get("/v2/info").await.assert_status(200);
    app.get("/v2/service_bindings").await.assert_status(200);
}

backend_tests!(fuzzed_requests_get_cf_answers);
