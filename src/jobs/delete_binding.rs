//! `DELETE /v2/service_bindings/:guid?async=true`: the unbind, run by the queue through the
//! same path as a request's delete (`service::bindings::delete_claimed`).

use serde::{Deserialize, Serialize};

use super::{JobContext, Outcome};
use crate::broker::CallContext;
use crate::error::{ApiError, ApiResult};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteBinding {
    pub binding_guid: String,
    /// Who asked and the request's id, passed on to the broker as the request would have.
    pub user_id: Option<String>,
    pub request_id: Option<String>,
}

impl DeleteBinding {
    pub(super) async fn run(&self, ctx: &JobContext<'_>) -> ApiResult<Outcome> {
        let call = CallContext {
            request_id: self.request_id.clone(),
            user_id: self.user_id.clone(),
        };
        Ok(
            match crate::service::bindings::delete_for_job(ctx.state, &self.binding_guid, &call)
                .await
            {
                Ok(_) => Outcome::Done,
                // The database's trouble: try again later.
                Err(e @ (ApiError::Busy | ApiError::Internal(_))) => return Err(e),
                Err(e) => Outcome::Fail(e.to_string()),
            },
        )
    }
}
