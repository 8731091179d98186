//! Provisioning a managed instance: check the request, load the space and plan, reserve the
//! name (the unique index decides races), provision at the broker with no connection held, then
//! keep what the broker made, start polling it, or discard the reservation (with orphan
//! mitigation where the OSB spec asks for it).

use serde_json::{Map, Value};

use super::{check_instance_name, check_tags, name_unique, InstanceView};
use crate::app::AppState;
use crate::broker::{CfContext, ProvisionOutcome, ProvisionRequest};
use crate::db::models::{Organization, ServiceInstance, Space};
use crate::db::repo;
use crate::error::{ApiError, ApiResult};
use crate::operation::{LastOperation, OperationState, OperationType};
use crate::service::catalog::Catalog;
use crate::service::operations::{self, Subject};
use crate::service::orphans::{self, Reservation};
use crate::service::{authz, new_guid, no_such_space, on_unique, Caller};

pub struct CreateInstance {
    pub name: Option<String>,
    pub space_guid: Option<String>,
    pub service_plan_guid: Option<String>,
    pub parameters: Option<Map<String, Value>>,
    pub tags: Option<Vec<String>>,
    pub accepts_incomplete: bool,
}

/// Where the instance goes: its space (with org) and plan (with service and broker).
struct Target {
    space: Space,
    org: Organization,
    catalog: Catalog,
}

pub async fn create_managed(
    state: &AppState,
    caller: &Caller,
    input: CreateInstance,
) -> ApiResult<InstanceView> {
    authz::require_write_scope(&caller.actor)?;
    let name = check_instance_name(input.name.as_deref())?;
    let space_guid = required(&input.space_guid, "space_guid")?;
    let plan_guid = required(&input.service_plan_guid, "service_plan_guid")?;
    let tags = check_tags(&name, input.tags.as_deref().unwrap_or_default())?;
    let target = load_target(state, caller, space_guid, plan_guid).await?;
    let mut row = new_row(name, &target, tags);
    reserve(state, &row).await?;
    let outcome = state
        .broker
        .provision(
            &target.catalog.target(),
            &row.guid,
            &provision_request(&target, input.parameters),
            input.accepts_incomplete,
            &caller.broker_ctx(),
        )
        .await;
    let orphan = target.catalog.orphan_instance(&row.guid);
    let reservation = Reservation::Instance(row.guid.clone());
    match outcome {
        Ok(ProvisionOutcome::Created { dashboard_url }) => {
            let saved = complete(state, &row.guid, dashboard_url.clone()).await;
            if !matches!(saved, Ok(1)) {
                // Gone meanwhile (deleted), or not saved: either way the broker's is an orphan.
                orphans::discard(state, reservation, Some(orphan)).await;
                return Err(saved
                    .err()
                    .unwrap_or(ApiError::ServiceInstanceNotFound(row.guid)));
            }
            row.dashboard_url = dashboard_url;
            row.set_last_operation(PROVISIONED);
        }
        Ok(ProvisionOutcome::Async {
            operation,
            dashboard_url,
        }) => {
            if !input.accepts_incomplete {
                orphans::discard(state, reservation, Some(orphan)).await;
                return Err(ApiError::ServiceBrokerRespondedAsyncWhenNotAllowed);
            }
            set_dashboard_url(state, &row.guid, dashboard_url.clone()).await?;
            let plan = &target.catalog.plan;
            operations::begin(
                state,
                Subject::Instance,
                &row.guid,
                OperationType::Create,
                operation.clone(),
                plan,
            )
            .await?;
            row.dashboard_url = dashboard_url;
            row.broker_operation = operation;
        }
        Err(e) => {
            let orphan = e.needs_orphan_mitigation.then_some(orphan);
            orphans::discard(state, reservation, orphan).await;
            return Err(e.into());
        }
    }
    Ok(InstanceView {
        service_guid: Some(target.catalog.service.guid.clone()),
        instance: row,
        show_credentials: true,
    })
}

const PROVISIONING: LastOperation =
    LastOperation::new(OperationType::Create, OperationState::InProgress);
const PROVISIONED: LastOperation =
    LastOperation::new(OperationType::Create, OperationState::Succeeded);

fn required<'a>(value: &'a Option<String>, field: &str) -> ApiResult<&'a str> {
    value.as_deref().ok_or_else(|| {
        ApiError::MessageParseError(format!("Field: {field}, Error: Missing field {field}"))
    })
}

/// The space and plan, if the caller may create instances of the plan there.
async fn load_target(
    state: &AppState,
    caller: &Caller,
    space_guid: &str,
    plan_guid: &str,
) -> ApiResult<Target> {
    let actor = caller.actor.clone();
    let (sg, pg) = (space_guid.to_string(), plan_guid.to_string());
    state
        .db
        .read(move |conn| {
            let (space, org) =
                repo::spaces::find_with_org(conn, &sg)?.ok_or_else(|| no_such_space(&sg))?;
            let (plan, service, broker) =
                repo::brokers::find_plan_full(conn, &pg)?.ok_or_else(|| {
                    ApiError::InvalidRelation(format!(
                        "Could not find VCAP::CloudController::ServicePlan with guid: {pg}"
                    ))
                })?;
            if !authz::can_write_space(conn, &actor, &space.guid)? {
                return Err(ApiError::NotAuthorized);
            }
            if !actor.is_admin()
                && !repo::brokers::plan_visible_in_org(conn, &plan, &broker, &org.guid)?
            {
                return Err(ApiError::NotAuthorized);
            }
            if !plan.active {
                return Err(ApiError::ServiceInstanceInvalid(
                    "The service plan is not active".into(),
                ));
            }
            Ok(Target {
                space,
                org,
                catalog: Catalog {
                    plan,
                    service,
                    broker,
                },
            })
        })
        .await
}

fn new_row(name: String, target: &Target, tags: String) -> ServiceInstance {
    let now = crate::db::now();
    let mut row = ServiceInstance {
        id: 0,
        guid: new_guid(),
        name,
        space_guid: target.space.guid.clone(),
        is_user_provided: false,
        service_plan_guid: Some(target.catalog.plan.guid.clone()),
        credentials: None,
        syslog_drain_url: None,
        route_service_url: None,
        tags,
        dashboard_url: None,
        last_operation_type: None,
        last_operation_state: None,
        last_operation_description: None,
        broker_operation: None,
        last_operation_updated_at: Some(now),
        created_at: now,
        updated_at: now,
    };
    row.set_last_operation(PROVISIONING);
    row
}

async fn reserve(state: &AppState, row: &ServiceInstance) -> ApiResult<()> {
    let insert = row.clone();
    state
        .db
        .write(move |conn| {
            on_unique(repo::instances::insert(conn, &insert), |v| {
                name_unique(v, &insert.name)
            })
        })
        .await?;
    Ok(())
}

fn provision_request(target: &Target, parameters: Option<Map<String, Value>>) -> ProvisionRequest {
    let (space, org, catalog) = (&target.space, &target.org, &target.catalog);
    ProvisionRequest {
        service_id: catalog.service.unique_id.clone(),
        plan_id: catalog.plan.unique_id.clone(),
        organization_guid: org.guid.clone(),
        space_guid: space.guid.clone(),
        context: CfContext {
            platform: "cloudfoundry",
            organization_guid: org.guid.clone(),
            space_guid: space.guid.clone(),
            organization_name: org.name.clone(),
            space_name: space.name.clone(),
            role: None,
        },
        parameters: parameters.filter(|p| !p.is_empty()),
        maintenance_info: catalog
            .plan
            .maintenance_info
            .as_deref()
            .and_then(|m| serde_json::from_str::<Value>(m).ok())
            .and_then(|m| m.get("version").cloned())
            .map(|v| serde_json::json!({ "version": v })),
    }
}

/// The broker provisioned synchronously: the instance is there. Returns the rows changed (0:
/// the reservation was deleted meanwhile).
async fn complete(state: &AppState, guid: &str, dashboard_url: Option<String>) -> ApiResult<usize> {
    let g = guid.to_string();
    state
        .db
        .write(move |conn| {
            repo::instances::set_dashboard_url(conn, &g, dashboard_url.as_deref())?;
            Ok(repo::instances::set_operation(
                conn,
                &g,
                PROVISIONED,
                None,
                None,
            )?)
        })
        .await
}

async fn set_dashboard_url(state: &AppState, guid: &str, url: Option<String>) -> ApiResult<()> {
    if url.is_none() {
        return Ok(());
    }
    let g = guid.to_string();
    state
        .db
        .write(move |conn| {
            Ok(repo::instances::set_dashboard_url(
                conn,
                &g,
                url.as_deref(),
            )?)
        })
        .await?;
    Ok(())
}
