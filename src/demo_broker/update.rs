//! The demo broker's `PATCH /v2/service_instances/:id` (OSB update): checks what a platform
//! must send (`service_id`, `previous_values`), then answers as scripted (`update`): 200 `{}`,
//! asynchronously (202 and polls), or a fixed status.

use serde_json::{json, Value};

use super::handlers::{async_required, begin_async, error, ok_json, raw, resolve};
use super::{AsyncOp, BrokerState, Reply};

pub(super) async fn update(
    state: &BrokerState,
    id: &str,
    body: Value,
    accepts_incomplete: bool,
) -> actix_web::HttpResponse {
    if body.get("service_id").and_then(Value::as_str).is_none() {
        return error(400, None, "service_id is required");
    }
    if !body.get("previous_values").is_some_and(Value::is_object) {
        return error(400, None, "previous_values is required");
    }
    match resolve(state, "update").await {
        Reply::Status(code, reply) => raw(code, reply),
        Reply::Async {
            operation,
            polls,
            final_state,
            retry_after,
        } => {
            if !accepts_incomplete {
                return async_required();
            }
            let op = AsyncOp::scripted("update", polls, final_state, retry_after);
            begin_async(state, id, op, operation)
        }
        _ => {
            state.lock().instances.insert(id.to_string(), body);
            ok_json(200, json!({}))
        }
    }
}
