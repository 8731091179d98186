//! OSB's update of a service instance: `PATCH /v2/service_instances/:instance_id` with the
//! target plan, the new parameters and the `previous_values` (CC's `Client#update`).

use reqwest::Method;
use serde::Serialize;
use serde_json::{Map, Value};

use super::{enc, incomplete_query, parse_async, BrokerClient, BrokerError, CallContext};
use crate::broker::{BrokerTarget, CfContext};

/// What the instance was before the update (OSB `previous_values`).
#[derive(Debug, Clone, Serialize)]
pub struct PreviousValues {
    pub service_id: String,
    pub plan_id: String,
    pub organization_id: String,
    pub space_id: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct UpdateRequest {
    pub service_id: String,
    /// The plan the instance is to have (the current one when only parameters change).
    pub plan_id: String,
    pub previous_values: PreviousValues,
    pub context: CfContext,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
}

/// What a successful update answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// Done (200).
    Updated { dashboard_url: Option<String> },
    /// The broker is updating (202); poll `last_operation`.
    Async { operation: Option<String> },
}

impl BrokerClient {
    /// `PATCH /v2/service_instances/:instance_id`.
    pub async fn update_instance(
        &self,
        target: &BrokerTarget,
        instance_id: &str,
        request: &UpdateRequest,
        accepts_incomplete: bool,
        ctx: &CallContext,
    ) -> Result<UpdateOutcome, BrokerError> {
        let path = format!("/v2/service_instances/{}", enc(instance_id));
        let query = incomplete_query(accepts_incomplete);
        let body = serde_json::to_vec(request).unwrap_or_default();
        let raw = self
            .send(target, Method::PATCH, &path, query, Some(body), ctx)
            .await?;
        match raw.status.as_u16() {
            200 => {
                // An update is not mitigated: nothing was created that could be orphaned.
                let obj = raw.object(false)?;
                let dashboard_url = obj
                    .get("dashboard_url")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                Ok(UpdateOutcome::Updated { dashboard_url })
            }
            202 => {
                let operation = parse_async(&raw).map_err(|mut e| {
                    e.needs_orphan_mitigation = false;
                    e
                })?;
                Ok(UpdateOutcome::Async { operation })
            }
            400..=499 => Err(raw.common_error(false)),
            _ => Err(raw.bad_response(false)),
        }
    }
}
