//! `GET /v2/jobs/:guid`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::openapi::CfError;
use super::State;
use crate::api::json;
use crate::api::render::Ts;
use crate::error::{ApiError, ApiResult};
use crate::jobs::JobRow;
use crate::service::Caller;

#[derive(Serialize, utoipa::ToSchema)]
pub struct JobMetadata {
    pub guid: String,
    pub created_at: Ts,
    pub url: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct JobError {
    pub description: String,
    pub error_code: &'static str,
    pub code: u32,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct JobEntity {
    pub guid: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_details: Option<JobError>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct JobDoc {
    pub metadata: JobMetadata,
    pub entity: JobEntity,
}

/// CC's JobPresenter: `queued`, `running`, `finished`, `failed` (with error details).
pub fn render_job(job: &JobRow) -> JobDoc {
    let failed = job.job_state() == crate::jobs::JobState::Failed;
    JobDoc {
        metadata: JobMetadata {
            guid: job.guid.clone(),
            created_at: Ts(job.created_at),
            url: format!("/v2/jobs/{}", job.guid),
        },
        entity: JobEntity {
            guid: job.guid.clone(),
            status: job.state.clone(),
            error: failed.then(|| {
                "Use of entity>error is deprecated in favor of entity>error_details.".to_string()
            }),
            error_details: failed.then(|| JobError {
                description: job.last_error.clone().unwrap_or_default(),
                error_code: "CF-JobFailed",
                code: 10001,
            }),
        },
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v2/jobs/{guid}", web::get().to(get));
}

#[utoipa::path(
    get,
    path = "/v2/jobs/{guid}",
    tag = "jobs",
    operation_id = "getJob",
    summary = "Get a job",
    params(
        ("guid" = String, Path, description = "The job's guid"),
    ),
    responses(
        (status = 200, description = "The job: `queued`, `running`, `finished`, or `failed` with `error_details`", body = JobDoc),
        (status = 404, description = "No such job (`CF-NotFound`)", body = CfError),
    )
)]
async fn get(state: State, caller: Caller, path: web::Path<String>) -> ApiResult<HttpResponse> {
    crate::service::authz::require_read_scope(&caller.actor)?;
    let g = path.into_inner();
    let job = state
        .db
        .read(move |conn| crate::jobs::find(conn, &g)?.ok_or(ApiError::JobNotFound(g)))
        .await?;
    Ok(json(StatusCode::OK, &render_job(&job)))
}
