//! The OpenAPI 3.1 document at `GET /v2/openapi.json`, checked three ways against a real
//! server (both backends):
//!
//! 1. it is a valid OpenAPI 3.1 document, by the PyPI `openapi-spec-validator` (pinned in
//!    `tests/clients/requirements.txt`; `.ci/run` installs it into the virtualenv named by
//!    `TETHER_PYTHON`; without it that check is skipped with a notice, unless
//!    `TETHER_REQUIRE_CLIENTS=1`);
//! 2. it is what the server does: every documented operation is served (called with real guids,
//!    with a real body where it takes one), answers a documented status, and its body validates
//!    against the documented schema, with every object schema closed
//!    (`additionalProperties: false`), so a field the server sends and the document lacks fails
//!    too; without a token every operation answers 401, as the security requirement says; the
//!    list parameters' documented limits, orders and `q` keys are the ones the server accepts;
//! 3. every documented failure is CC's error body (`CfError`), and real failures validate
//!    against it; a read of something that is not there answers the 404 its operation documents.
//!
//! Schemas are checked with the `jsonschema` crate (JSON Schema 2020-12, OpenAPI 3.1's dialect,
//! formats asserted), `$ref`s resolved against the document's own components.

mod common;

use std::process::{Command, Stdio};

use common::{Backend, Response, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

backend_tests!(
    document_is_valid_openapi_3_1,
    document_matches_the_server,
    errors_are_cf_errors,
    list_parameters_are_what_the_server_accepts,
);

const DOC_PATH: &str = "/v2/openapi.json";

/// The document as served (without a token, like `/v2/info`).
async fn fetch_doc(app: &TestApp) -> Value {
    let r = app.request(Method::GET, DOC_PATH, None, None).await;
    r.assert_status(200);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "content type: {:?}",
        r.header("content-type")
    );
    assert_eq!(r.body["openapi"], "3.1.0", "{}", r.text);
    r.body
}

// --- 1. a valid OpenAPI 3.1 document -----------------------------------------------------------

fn python() -> String {
    std::env::var("TETHER_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

fn required() -> bool {
    std::env::var("TETHER_REQUIRE_CLIENTS").is_ok_and(|v| v == "1")
}

/// Validates the document on stdin as OpenAPI 3.1; exit 3 when the validator is not installed.
const VALIDATE_PY: &str = r#"
import json, sys
try:
    from jsonschema_path import SchemaPath
    from openapi_spec_validator import OpenAPIV31SpecValidator
except ImportError:
    sys.exit(3)
doc = json.load(sys.stdin)
try:
    errors = list(OpenAPIV31SpecValidator(SchemaPath.from_dict(doc)).iter_errors())
except Exception as e:  # e.g. a $ref to nowhere raises instead of being yielded
    errors = [e]
for e in errors:
    where = "/".join(str(p) for p in getattr(e, "path", []))
    print("invalid:", getattr(e, "message", repr(e))[:400], "at", where or "/")
print(f"{len(errors)} errors")
sys.exit(1 if errors else 0)
"#;

/// Runs the validator: `None` when it is not installed, else its verdict and output.
fn openapi_spec_validator(doc: &Value) -> Option<(bool, String)> {
    use std::io::Write;
    let mut child = Command::new(python())
        .args(["-c", VALIDATE_PY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(doc.to_string().as_bytes())
        .expect("write the document");
    drop(stdin);
    let out = child.wait_with_output().expect("run the validator");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match out.status.code() {
        Some(0) => Some((true, text)),
        Some(1) => Some((false, text)),
        Some(3) => None,
        _ => panic!("the validator failed to run: {text}"),
    }
}

async fn document_is_valid_openapi_3_1(backend: Backend) {
    let app = TestApp::start(backend).await;
    let doc = fetch_doc(&app).await;
    let Some((valid, output)) = openapi_spec_validator(&doc) else {
        assert!(
            !required(),
            "openapi-spec-validator is not installed (TETHER_REQUIRE_CLIENTS=1)"
        );
        eprintln!(
            "NOTE: openapi-spec-validator is not installed for {}; skipping the OpenAPI 3.1 \
             validation (see .ci/run to install it)",
            python()
        );
        return;
    };
    assert!(valid, "not a valid OpenAPI 3.1 document:\n{output}");
    // The validator does reject a broken document (so a pass above means something).
    let mut broken = doc.clone();
    broken["paths"]["/v2/service_bindings"]["get"]["responses"]["200"]["content"]
        ["application/json"]["schema"] = json!({"$ref": "#/components/schemas/Nowhere"});
    broken.as_object_mut().unwrap().remove("info");
    let (valid, output) = openapi_spec_validator(&broken).expect("validator");
    assert!(!valid, "a broken document passed:\n{output}");
}

// --- schemas --------------------------------------------------------------------------------

/// The document with helpers to find operations and validate JSON against its schemas.
struct Doc(Value);

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch"];

impl Doc {
    /// Every `(method, path, operation)`.
    fn operations(&self) -> Vec<(String, String, Value)> {
        let mut ops = Vec::new();
        for (path, item) in self.0["paths"].as_object().expect("paths") {
            for m in METHODS {
                if let Some(op) = item.get(*m) {
                    ops.push((m.to_string(), path.clone(), op.clone()));
                }
            }
        }
        ops
    }

    fn resolve<'a>(&'a self, v: &'a Value) -> &'a Value {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => self
                .0
                .pointer(r.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("$ref to nowhere: {r}")),
            None => v,
        }
    }

    /// The documented response of `op` for `status`: the exact status, else its range (`4XX`).
    fn response<'a>(&'a self, op: &'a Value, status: u16) -> Option<&'a Value> {
        let responses = &op["responses"];
        responses
            .get(status.to_string())
            .or_else(|| responses.get(format!("{}XX", status / 100)))
            .or_else(|| responses.get("default"))
            .map(|r| self.resolve(r))
    }

    /// A validator for `schema` (a `$ref` into the document or an inline schema). `strict`
    /// closes every object schema, so undocumented properties fail.
    fn validator(&self, schema: &Value, strict: bool) -> jsonschema::Validator {
        let mut root = json!({"components": self.0["components"]});
        for (k, v) in schema.as_object().expect("a schema object") {
            root[k] = v.clone();
        }
        if strict {
            close_objects(&mut root);
        }
        jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| panic!("schema does not compile: {e}\n{schema}"))
    }

    #[track_caller]
    fn assert_valid(&self, schema: &Value, instance: &Value, strict: bool, what: &str) {
        let v = self.validator(schema, strict);
        let errors: Vec<String> = v
            .iter_errors(instance)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{what}: the body does not match the documented schema {schema}:\n  {}\nbody: {instance}",
            errors.join("\n  ")
        );
    }

    /// Checks a real response against what `op` documents for its status.
    #[track_caller]
    fn assert_documented(&self, op: &Value, r: &Response, strict: bool, what: &str) {
        let status = r.status.as_u16();
        let documented = self.response(op, status).unwrap_or_else(|| {
            panic!(
                "{what}: status {status} is not documented ({}): {}",
                op["responses"], r.text
            )
        });
        match documented.pointer("/content/application~1json/schema") {
            Some(schema) => self.assert_valid(schema, &r.body, strict, what),
            None => assert!(r.text.is_empty(), "{what}: undocumented body {}", r.text),
        }
    }
}

/// `additionalProperties: false` on every object schema that lists its properties.
fn close_objects(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.contains_key("properties") && !m.contains_key("additionalProperties") {
                m.insert("additionalProperties".into(), Value::Bool(false));
            }
            m.values_mut().for_each(close_objects);
        }
        Value::Array(items) => items.iter_mut().for_each(close_objects),
        _ => {}
    }
}

// --- 2. the document is what the server does ---------------------------------------------------

/// The real guids a documented path is called with.
struct World {
    org: String,
    space: String,
    app: String,
    instance: String,
    upsi: String,
    binding: String,
    job: String,
    plan: String,
}

async fn world(app: &TestApp, doc: &Doc) -> World {
    let w = app.world().await;
    let b = app.bind(&w.app, &w.instance, json!({"name": "db"})).await;
    b.assert_status(201);
    let upsi = app
        .post(
            "/v2/user_provided_service_instances",
            json!({"name": "ups", "space_guid": w.space, "credentials": {"uri": "x://y"}}),
        )
        .await;
    upsi.assert_status(201);
    // A job: an asynchronous unbind (its 202 is checked against the document too).
    let other = app.create_app(&w.space, "job-app").await;
    let b2 = app.bind(&other, &w.instance, json!({})).await;
    b2.assert_status(201);
    let path = format!("/v2/service_bindings/{}?async=true", guid(&b2));
    let job = app.delete(&path).await;
    job.assert_status(202);
    doc.assert_documented(
        &doc.0["paths"]["/v2/service_bindings/{guid}"]["delete"],
        &job,
        true,
        "DELETE ?async=true",
    );
    World {
        org: w.org,
        space: w.space,
        app: w.app,
        instance: w.instance,
        upsi: guid(&upsi),
        binding: guid(&b),
        job: guid(&job),
        plan: w.plan_small,
    }
}

fn guid(r: &Response) -> String {
    r.body["metadata"]["guid"]
        .as_str()
        .unwrap_or_else(|| panic!("no guid: {}", r.text))
        .to_string()
}

/// The path with its parameters replaced by real guids (by the collection each names).
fn real_path(template: &str, w: &World, binding: &str) -> String {
    let collection = template.split('/').nth(2).unwrap_or_default();
    let guid = match collection {
        "service_bindings" => &w.binding,
        "apps" => &w.app,
        "service_instances" => &w.instance,
        "user_provided_service_instances" => &w.upsi,
        "spaces" => &w.space,
        "organizations" => &w.org,
        "jobs" => &w.job,
        "config" => "set_roles_by_username",
        other => panic!("{template}: which guid does a path under /v2/{other} take? Add it here"),
    };
    let path = template
        .replace("{guid}", guid)
        .replace("{name}", guid)
        .replace("{binding}", binding);
    assert!(
        !path.contains('{'),
        "{template}: a parameter this test does not fill"
    );
    path
}

/// The operations of the binding surface that must stay documented.
const EXPECTED: &[(&str, &str)] = &[
    ("get", "/v2/service_bindings"),
    ("post", "/v2/service_bindings"),
    ("get", "/v2/service_bindings/{guid}"),
    ("delete", "/v2/service_bindings/{guid}"),
    ("get", "/v2/service_bindings/{guid}/parameters"),
    ("get", "/v2/apps/{guid}/service_bindings"),
    ("get", "/v2/apps/{guid}/unused_credentials"),
    ("get", "/v2/service_instances/{guid}/service_bindings"),
    ("get", "/v2/service_instances"),
    ("post", "/v2/service_instances"),
    ("get", "/v2/service_instances/{guid}"),
    ("delete", "/v2/service_instances/{guid}"),
    ("put", "/v2/service_instances/{guid}"),
    ("get", "/v2/user_provided_service_instances"),
    ("get", "/v2/user_provided_service_instances/{guid}"),
    ("get", "/v2/apps"),
    ("get", "/v2/apps/{guid}"),
    ("get", "/v2/spaces"),
    ("get", "/v2/spaces/{guid}"),
    ("get", "/v2/spaces/{guid}/apps"),
    ("get", "/v2/spaces/{guid}/service_instances"),
    ("get", "/v2/spaces/{guid}/services"),
    ("get", "/v2/organizations"),
    ("get", "/v2/organizations/{guid}"),
    ("get", "/v2/organizations/{guid}/spaces"),
    ("get", "/v2/jobs/{guid}"),
    ("get", "/v2/config/feature_flags/{name}"),
];

/// The route table's answer to a request it has no route for.
fn unrouted(r: &Response) -> bool {
    r.status == 405 || (r.status == 404 && r.body["description"] == "Unknown request")
}

async fn document_matches_the_server(backend: Backend) {
    let app = TestApp::start(backend).await;
    let doc = Doc(fetch_doc(&app).await);
    let ops = doc.operations();
    for (m, p) in EXPECTED {
        assert!(
            ops.iter().any(|(om, op, _)| om == m && op == p),
            "{} {p} is not documented",
            m.to_uppercase()
        );
    }
    let w = world(&app, &doc).await;
    // Reads first, then creates, then deletes (each of its own binding).
    let mut ordered = ops.clone();
    ordered.sort_by_key(|(m, _, _)| match m.as_str() {
        "get" => 0,
        "post" => 1,
        _ => 2,
    });
    for (n, (method, template, op)) in ordered.iter().enumerate() {
        let what = format!("{} {template}", method.to_uppercase());
        let (path, body) = match method.as_str() {
            "get" => (real_path(template, &w, &w.binding), None),
            "post" => {
                let body = match template.as_str() {
                    "/v2/service_bindings" => json!({
                        "app_guid": app.create_app(&w.space, &format!("new-{n}")).await,
                        "service_instance_guid": w.instance,
                        "name": "db-2",
                        "parameters": {"the_service_broker": "wants this object"},
                    }),
                    "/v2/service_instances" => json!({
                        "name": "db-2",
                        "space_guid": w.space,
                        "service_plan_guid": w.plan,
                        "tags": ["sql"],
                    }),
                    other => panic!("{other}: give this test a body to create one with"),
                };
                let schema = op
                    .pointer("/requestBody/content/application~1json/schema")
                    .unwrap_or_else(|| panic!("{what}: no documented request body"));
                doc.assert_valid(schema, &body, true, &format!("{what} request"));
                (real_path(template, &w, &w.binding), Some(body))
            }
            "put" => {
                let body = match template.as_str() {
                    "/v2/service_instances/{guid}" => json!({"tags": ["renamed"]}),
                    other => panic!("{other}: give this test a body to update one with"),
                };
                let schema = op
                    .pointer("/requestBody/content/application~1json/schema")
                    .unwrap_or_else(|| panic!("{what}: no documented request body"));
                doc.assert_valid(schema, &body, true, &format!("{what} request"));
                (real_path(template, &w, &w.binding), Some(body))
            }
            "delete" => {
                let other = app.create_app(&w.space, &format!("doomed-{n}")).await;
                let b = app.bind(&other, &w.instance, json!({})).await;
                b.assert_status(201);
                let fresh = World {
                    binding: guid(&b),
                    app: if template.starts_with("/v2/apps/") {
                        other
                    } else {
                        w.app.clone()
                    },
                    org: w.org.clone(),
                    space: w.space.clone(),
                    // An instance's delete: one of its own (the shared one has bindings).
                    instance: if template.as_str() == "/v2/service_instances/{guid}" {
                        app.create_instance(&w.space, &w.plan, &format!("doomed-{n}"))
                            .await
                    } else {
                        w.instance.clone()
                    },
                    upsi: w.upsi.clone(),
                    job: w.job.clone(),
                    plan: w.plan.clone(),
                };
                (real_path(template, &fresh, &fresh.binding), None)
            }
            other => panic!("{what}: no plan for method {other}"),
        };
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let r = app
            .request(m.clone(), &path, Some(&app.admin_token), body.as_ref())
            .await;
        assert!(!unrouted(&r), "{what}: no route serves {path}: {}", r.text);
        assert!(
            r.status.is_success(),
            "{what} ({path}) failed: {} {}",
            r.status,
            r.text
        );
        doc.assert_documented(op, &r, true, &what);
        // Without a token: 401, as the document's security requirement says.
        let anon = app.request(m, &path, None, body.as_ref()).await;
        assert_eq!(anon.status, 401, "{what} without a token: {}", anon.text);
        doc.assert_documented(op, &anon, true, &format!("{what} without a token"));
    }

    // Embedded relations: the binding's `app` and `service_instance` are the documented
    // resources (open schemas: at depth 1 they embed relations of their own).
    let list = &doc.0["paths"]["/v2/service_bindings"]["get"];
    let r = app
        .get("/v2/service_bindings?inline-relations-depth=1")
        .await;
    r.assert_status(200);
    doc.assert_documented(list, &r, false, "bindings with inline-relations-depth=1");
    let first = &r.body["resources"][0]["entity"];
    assert!(first["app"].is_object() && first["service_instance"].is_object());
}

// --- 3. errors are CC's error body -------------------------------------------------------------

async fn errors_are_cf_errors(backend: Backend) {
    let app = TestApp::start(backend).await;
    let doc = Doc(fetch_doc(&app).await);
    let cf_error = json!({"$ref": "#/components/schemas/CfError"});
    // Every documented failure of every operation is CC's error body.
    for (method, path, op) in doc.operations() {
        let statuses = op["responses"].as_object().expect("responses");
        for range in ["401", "403", "4XX", "5XX"] {
            assert!(
                statuses.contains_key(range),
                "{method} {path}: no {range} response"
            );
        }
        for (status, response) in statuses {
            if !status.starts_with('4') && !status.starts_with('5') {
                continue;
            }
            let schema = &doc.resolve(response)["content"]["application/json"]["schema"];
            assert_eq!(
                schema, &cf_error,
                "{method} {path}: {status} is not a CfError"
            );
        }
    }
    // Real failures validate against it (closed: no field beyond the documented ones).
    let get = &doc.0["paths"]["/v2/service_bindings/{guid}"]["get"];
    let r = app.get("/v2/service_bindings/nope").await;
    r.assert_error(404, "CF-ServiceBindingNotFound");
    doc.assert_documented(get, &r, true, "GET a binding that is not there");
    let list = &doc.0["paths"]["/v2/service_bindings"]["get"];
    let r = app.get("/v2/service_bindings?results-per-page=101").await;
    r.assert_error(400, "CF-BadQueryParameter");
    doc.assert_documented(list, &r, true, "a bad list parameter");
    let r = app
        .request(
            Method::GET,
            "/v2/service_bindings",
            Some("not-a-token"),
            None,
        )
        .await;
    r.assert_error(401, "CF-InvalidAuthToken");
    doc.assert_documented(list, &r, true, "a bad token");
    let create = &doc.0["paths"]["/v2/service_bindings"]["post"];
    let r = app.post("/v2/service_bindings", json!({})).await;
    r.assert_error(400, "CF-MessageParseError");
    doc.assert_documented(create, &r, true, "a create without its fields");
    // Every read of something that is not there answers the 404 its operation documents.
    for (method, path, op) in doc.operations() {
        if method != "get" || !path.contains("{guid}") {
            continue;
        }
        let r = app.get(&path.replace("{guid}", "no-such-guid")).await;
        assert_eq!(r.status, 404, "GET {path} of nothing: {}", r.text);
        assert!(
            op["responses"].get("404").is_some(),
            "GET {path}: its 404 ({}) is not documented",
            r.body["error_code"]
        );
        doc.assert_documented(&op, &r, true, &format!("GET {path} of nothing"));
    }
    // The unknown-route 404 too, and a broker's failure with its `http` object.
    let r = app.get("/v2/no_such_collection").await;
    r.assert_error(404, "CF-NotFound");
    doc.assert_valid(&cf_error, &r.body, true, "an unknown route");
    let broker_error = json!({
        "description": "The service broker returned an invalid response",
        "error_code": "CF-ServiceBrokerBadResponse",
        "code": 10001,
        "http": {"method": "PUT", "status": 500},
    });
    doc.assert_valid(&cf_error, &broker_error, true, "a broker error");
}

// --- the list parameters are what the server accepts --------------------------------------------

fn param<'a>(op: &'a Value, name: &str) -> Option<&'a Value> {
    op["parameters"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name && p["in"] == "query")
}

/// The `q` keys a list documents, with the values a key takes when the document names them.
/// CC's keys share one pattern, `^(a|b)( IN |:|…)`: any value. Each of tether's extension keys
/// has its own, `^(key)(:| IN )(v1|v2)…`, naming its values (the items are then `anyOf` them).
fn q_keys(op: &Value) -> Vec<(String, Option<Vec<String>>)> {
    let items = &param(op, "q").expect("q")["schema"]["items"];
    let patterns: Vec<&str> = match items["anyOf"].as_array() {
        Some(any) => any.iter().map(|s| s["pattern"].as_str()).collect(),
        None => vec![items["pattern"].as_str()],
    }
    .into_iter()
    .map(|p| p.expect("a pattern of q keys"))
    .collect();
    let mut keys = Vec::new();
    for pattern in patterns {
        let groups = groups(pattern.strip_prefix('^').expect("^(key|key)…"));
        let values = (groups.len() > 2 && groups[1] == ":| IN ")
            .then(|| groups[2].split('|').map(str::to_string).collect());
        for key in groups[0].split('|') {
            keys.push((key.to_string(), values.clone()));
        }
    }
    keys
}

/// The top-level parenthesized groups at the start of a pattern: `(a|b)(c)` is `["a|b", "c"]`.
fn groups(pattern: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in pattern.char_indices() {
        match c {
            '(' => {
                if depth == 0 {
                    start = i + 1;
                }
                depth += 1;
            }
            ')' => {
                depth -= 1;
                if depth == 0 {
                    out.push(&pattern[start..i]);
                }
            }
            _ if depth == 0 => break,
            _ => {}
        }
    }
    out
}

fn encoded(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

async fn list_parameters_are_what_the_server_accepts(backend: Backend) {
    let app = TestApp::start(backend).await;
    let doc = Doc(fetch_doc(&app).await);
    let w = world(&app, &doc).await;
    let mut lists = 0;
    for (method, template, op) in doc.operations() {
        if method != "get" {
            continue;
        }
        let path = real_path(&template, &w, &w.binding);
        let get = |query: String| {
            let url = format!("{path}?{query}");
            let app = &app;
            async move { (app.get(&url).await, url) }
        };
        let ok = |(r, url): (Response, String)| {
            assert!(r.status.is_success(), "{url}: {} {}", r.status, r.text);
        };
        let bad = |(r, url): (Response, String)| {
            assert_eq!(r.status, 400, "{url} was accepted: {}", r.text);
            assert_eq!(r.body["error_code"], "CF-BadQueryParameter", "{url}");
        };
        if let Some(p) = param(&op, "inline-relations-depth") {
            let max = p["schema"]["maximum"].as_u64().expect("a maximum");
            ok(get(format!("inline-relations-depth={max}")).await);
            bad(get(format!("inline-relations-depth={}", max + 1)).await);
        }
        let Some(per_page) = param(&op, "results-per-page") else {
            continue;
        };
        lists += 1;
        let max = per_page["schema"]["maximum"].as_u64().expect("a maximum");
        ok(get(format!("results-per-page={max}")).await);
        bad(get(format!("results-per-page={}", max + 1)).await);
        bad(get("results-per-page=0".into()).await);
        ok(get("page=1".into()).await);
        bad(get("page=0".into()).await);
        for name in ["order-by", "order-direction"] {
            let values = param(&op, name).expect(name)["schema"]["enum"]
                .as_array()
                .expect("an enum")
                .clone();
            for v in values {
                ok(get(format!("{name}={}", v.as_str().unwrap())).await);
            }
            bad(get(format!("{name}=no_such_order")).await);
        }
        // `q`: each documented key filters (with each value it documents, if it names them:
        // then any other value is refused); any other key is refused.
        for (key, values) in q_keys(&op) {
            let Some(values) = values else {
                ok(get(format!("q={key}:x")).await);
                continue;
            };
            for value in &values {
                ok(get(format!("q={}", encoded(&format!("{key}:{value}")))).await);
            }
            ok(get(format!(
                "q={}",
                encoded(&format!("{key} IN {}", values.join(",")))
            ))
            .await);
            bad(get(format!("q={key}:no_such_value")).await);
        }
        bad(get("q=no_such_key:x".into()).await);
    }
    assert!(lists >= 10, "only {lists} lists documented");
}
