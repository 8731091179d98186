//! Polls of a broker's `last_operation` for an asynchronous operation (CC:
//! `ServiceBindingStateFetch` and its instance twin). The work is `service::operations::poll`;
//! a poll job only carries which resource and how long polling may go on.

use serde::{Deserialize, Serialize};

use super::{JobContext, Outcome};
use crate::error::ApiResult;
use crate::service::operations::{self, PollProgress, Polled, Subject};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollBinding {
    pub binding_guid: String,
    #[serde(flatten)]
    pub progress: PollProgress,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollInstance {
    pub instance_guid: String,
    #[serde(flatten)]
    pub progress: PollProgress,
}

impl PollBinding {
    pub(super) async fn run(&self, ctx: &JobContext<'_>) -> ApiResult<Outcome> {
        poll(ctx, Subject::Binding, &self.binding_guid, &self.progress).await
    }
}

impl PollInstance {
    pub(super) async fn run(&self, ctx: &JobContext<'_>) -> ApiResult<Outcome> {
        poll(ctx, Subject::Instance, &self.instance_guid, &self.progress).await
    }
}

async fn poll(
    ctx: &JobContext<'_>,
    subject: Subject,
    guid: &str,
    progress: &PollProgress,
) -> ApiResult<Outcome> {
    let limits = ctx.config.poll_limits();
    Ok(
        match operations::poll(ctx.state, &limits, subject, guid, progress).await? {
            Polled::Settled => Outcome::Done,
            Polled::Again(after) => Outcome::Reschedule(after, None),
        },
    )
}
