//! What the demo broker was asked, and small builders for the async scenarios, shared by the
//! test files that script an OSB broker.

use serde_json::{json, Value};
use tether::demo_broker::{demo_catalog, Recorded, Reply, PLAN_ASYNC_ID};

use super::{Response, TestApp, World};

pub const TIMED_OUT: &str = "Service Broker failed to create binding within the required time.";

pub fn guid_of(r: &Response) -> String {
    r.body["metadata"]["guid"]
        .as_str()
        .unwrap_or_else(|| panic!("no guid in {} {}", r.status, r.text))
        .to_string()
}

pub fn binding_path(guid: &str) -> String {
    format!("/v2/service_bindings/{guid}")
}

/// `(type, state)` of a binding document's last operation.
pub fn state_of(r: &Response) -> (String, String) {
    let lo = &r.body["entity"]["last_operation"];
    (
        lo["type"].as_str().unwrap_or_default().to_string(),
        lo["state"].as_str().unwrap_or_default().to_string(),
    )
}

pub fn has_state(op: &'static str, state: &'static str) -> impl Fn(&Response) -> bool {
    move |r: &Response| {
        r.status.as_u16() == 200 && state_of(r) == (op.to_string(), state.to_string())
    }
}

pub fn is_gone(r: &Response) -> bool {
    r.status.as_u16() == 404
}

/// A broker answer: 202 with `operation`, in progress for `polls` polls, then `final_state`.
pub fn async_reply(operation: Option<&str>, polls: u32, final_state: &'static str) -> Reply {
    Reply::Async {
        operation: operation.map(str::to_string),
        polls,
        final_state,
        retry_after: None,
    }
}

impl TestApp {
    /// The broker's `last_operation` requests for a binding.
    pub fn polls(&self, binding: &str) -> Vec<Recorded> {
        self.broker.requests_to(
            "GET",
            &format!("/service_bindings/{binding}/last_operation"),
        )
    }

    /// The broker's `GET` of the binding itself (fetching credentials or parameters).
    pub fn fetches(&self, binding: &str) -> Vec<Recorded> {
        self.broker
            .requests_to("GET", &format!("/service_bindings/{binding}"))
            .into_iter()
            .filter(|r| r.path.ends_with(binding))
            .collect()
    }

    pub fn unbinds(&self, binding: &str) -> Vec<Recorded> {
        self.broker
            .requests_to("DELETE", &format!("/service_bindings/{binding}"))
    }

    /// The binding id of the broker's latest bind request.
    pub fn last_bound_id(&self) -> String {
        let puts = self.broker.requests_to("PUT", "/service_bindings/");
        let put = puts.last().expect("the broker got no bind");
        put.path.rsplit('/').next().unwrap().to_string()
    }

    /// An instance of the demo broker's async-only plan.
    pub async fn async_instance(&self, w: &World) -> String {
        self.create_instance(&w.space, &w.plan_async, "async-db")
            .await
    }

    /// `POST /v2/service_bindings?accepts_incomplete=true` with `extra` fields in the body.
    pub async fn bind_async(&self, app: &str, instance: &str, extra: Value) -> Response {
        let mut body = json!({"app_guid": app, "service_instance_guid": instance});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        self.post("/v2/service_bindings?accepts_incomplete=true", body)
            .await
    }
}

/// Asserts the raw query value of `operation` is percent-encoded (only RFC 3986 unreserved
/// characters, `%XX` escapes, and `+` for a space) and decodes to `expected`.
#[track_caller]
pub fn assert_operation_param(poll: &Recorded, expected: &str) {
    let raw = poll
        .query
        .split('&')
        .find_map(|kv| kv.strip_prefix("operation="))
        .unwrap_or_else(|| panic!("no operation in {}", poll.query));
    assert!(
        raw.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%+".contains(&b)),
        "operation not percent-encoded: {raw}"
    );
    assert_eq!(poll.query_param("operation").as_deref(), Some(expected));
}

/// The demo catalog with the `async` plan's and the `demo-db` service's fields changed.
pub fn catalog_with(service: Value, async_plan: Value) -> Value {
    let mut c = demo_catalog();
    let s = &mut c["services"][0];
    for (k, v) in service.as_object().unwrap() {
        s[k] = v.clone();
    }
    let plans = s["plans"].as_array_mut().unwrap();
    let plan = plans.iter_mut().find(|p| p["id"] == PLAN_ASYNC_ID).unwrap();
    for (k, v) in async_plan.as_object().unwrap() {
        plan[k] = v.clone();
    }
    c
}
