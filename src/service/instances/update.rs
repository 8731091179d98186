//! Updating a managed instance (CC `ServiceInstanceUpdate`, v2): a new name or tags are CC's
//! alone; a new plan or parameters go to the broker (`PATCH` with `previous_values`), which
//! answers at once or asynchronously (then the job queue polls `last_operation`, type `update`,
//! and the instance moves to the new plan when the broker says it succeeded).

use serde_json::{Map, Value};

use super::{check_instance_name, check_tags, name_unique, InstanceView};
use crate::app::AppState;
use crate::broker::{CfContext, PreviousValues, UpdateOutcome, UpdateRequest};
use crate::db::models::{Organization, ServiceInstance, ServicePlan, Space};
use crate::db::repo;
use crate::db::DbConnection;
use crate::error::{ApiError, ApiResult};
use crate::operation::{LastOperation, OperationState, OperationType};
use crate::service::catalog::Catalog;
use crate::service::operations;
use crate::service::{authz, on_unique, Caller};

/// What `PUT /v2/service_instances/:guid` asks for.
pub struct UpdateInstance {
    pub name: Option<String>,
    pub tags: Option<Vec<String>>,
    pub service_plan_guid: Option<String>,
    pub parameters: Option<Map<String, Value>>,
    pub accepts_incomplete: bool,
}

/// The instance as it was, where it lives, and the plan it is to have.
struct Loaded {
    before: ServiceInstance,
    catalog: Catalog,
    space: Space,
    org: Organization,
    /// `Some` when the plan changes.
    new_plan: Option<ServicePlan>,
}

pub async fn update_managed(
    state: &AppState,
    caller: &Caller,
    guid: &str,
    input: UpdateInstance,
) -> ApiResult<InstanceView> {
    authz::require_write_scope(&caller.actor)?;
    let loaded = load(state, caller, guid, input.service_plan_guid.as_deref()).await?;
    let to_broker = input.parameters.is_some() || loaded.new_plan.is_some();
    save_cc_fields(state, &loaded.before, input.name, input.tags, to_broker).await?;
    let began = if to_broker {
        let accepts_incomplete = input.accepts_incomplete;
        update_at_broker(state, caller, &loaded, input.parameters, accepts_incomplete).await?
    } else {
        None
    };
    let instance = match began {
        Some(in_progress) => in_progress,
        None => find(state, guid).await?,
    };
    Ok(InstanceView {
        instance,
        service_guid: Some(loaded.catalog.service.guid.clone()),
        show_credentials: true,
    })
}

/// Reads and checks, in CC's order: the instance (user-provided ones have their own API), who
/// may update it, and whether the plan may change to the one asked for.
async fn load(
    state: &AppState,
    caller: &Caller,
    guid: &str,
    plan: Option<&str>,
) -> ApiResult<Loaded> {
    let (g, actor, plan) = (
        guid.to_string(),
        caller.actor.clone(),
        plan.map(str::to_string),
    );
    state
        .db
        .read(move |conn| {
            let (before, catalog) = repo::instances::find_with_catalog(conn, &g)?
                .ok_or_else(|| ApiError::ServiceInstanceNotFound(g.clone()))?;
            if before.is_user_provided {
                return Err(ApiError::UserProvidedServiceInstanceHandlerNeeded);
            }
            let catalog = Catalog::from_parts(catalog)
                .ok_or_else(|| ApiError::ServiceInstanceNotFound(g.clone()))?;
            if !authz::can_write_space(conn, &actor, &before.space_guid)? {
                return Err(ApiError::NotAuthorized);
            }
            let (space, org) = repo::spaces::find_with_org(conn, &before.space_guid)?
                .ok_or_else(|| ApiError::internal("instance without space"))?;
            let new_plan = match plan.filter(|p| *p != catalog.plan.guid) {
                Some(p) => Some(check_new_plan(conn, &actor, &before, &catalog, &org, &p)?),
                None => None,
            };
            Ok(Loaded {
                before,
                catalog,
                space,
                org,
                new_plan,
            })
        })
        .await
}

/// CC's `ServiceUpdateValidator#validate_changing_plan`, and the new plan's visibility.
fn check_new_plan(
    conn: &mut DbConnection,
    actor: &crate::auth::Actor,
    instance: &ServiceInstance,
    catalog: &Catalog,
    org: &Organization,
    plan_guid: &str,
) -> ApiResult<ServicePlan> {
    let updateable = catalog
        .plan
        .plan_updateable
        .unwrap_or(catalog.service.plan_updateable);
    if !updateable {
        return Err(ApiError::ServicePlanNotUpdateable);
    }
    let plan = repo::brokers::find_plan(conn, plan_guid)?
        .filter(|p| p.service_guid == catalog.service.guid)
        .ok_or_else(|| ApiError::InvalidRelation("Plan".into()))?;
    let bindable = plan.bindable.unwrap_or(catalog.service.bindable);
    if !bindable && repo::bindings::count_for_instance(conn, &instance.guid)? > 0 {
        return Err(ApiError::ServicePlanInvalid(
            "cannot switch to non-bindable plan when service bindings exist".into(),
        ));
    }
    if !actor.is_admin()
        && !repo::brokers::plan_visible_in_org(conn, &plan, &catalog.broker, &org.guid)?
    {
        return Err(ApiError::NotAuthorized);
    }
    Ok(plan)
}

/// Name and tags, in one write with the claim of the update when the broker is to be asked
/// (no other operation may be running).
async fn save_cc_fields(
    state: &AppState,
    before: &ServiceInstance,
    name: Option<String>,
    tags: Option<Vec<String>>,
    to_broker: bool,
) -> ApiResult<()> {
    let mut instance = before.clone();
    if let Some(n) = name {
        instance.name = check_instance_name(Some(&n))?;
    }
    if let Some(t) = tags {
        instance.tags = check_tags(&instance.name, &t)?;
    }
    state
        .db
        .write(move |conn| {
            let busy = || ApiError::AsyncServiceInstanceOperationInProgress(instance.name.clone());
            if instance.last_operation().in_progress() {
                return Err(busy());
            }
            if to_broker
                && repo::instances::claim_for(conn, &instance.guid, OperationType::Update)? == 0
            {
                return Err(busy());
            }
            let n = instance.name.clone();
            on_unique(repo::instances::update_fields(conn, &instance), |v| {
                name_unique(v, &n)
            })?;
            Ok(())
        })
        .await
}

/// The broker's part, with no connection held; then the outcome recorded: done, polled, or
/// failed (CC puts the name and tags back and keeps the broker's error). When the broker goes
/// asynchronous, the instance as the operation began (what the 202 shows).
async fn update_at_broker(
    state: &AppState,
    caller: &Caller,
    loaded: &Loaded,
    parameters: Option<Map<String, Value>>,
    accepts_incomplete: bool,
) -> ApiResult<Option<ServiceInstance>> {
    let request = update_request(loaded, parameters);
    let outcome = state
        .broker
        .update_instance(
            &loaded.catalog.target(),
            &loaded.before.guid,
            &request,
            accepts_incomplete,
            &caller.broker_ctx(),
        )
        .await;
    let new_plan = loaded.new_plan.as_ref().map(|p| p.guid.clone());
    let guid = loaded.before.guid.as_str();
    match outcome {
        Ok(UpdateOutcome::Updated { dashboard_url }) => {
            settle_sync(state, guid, new_plan, dashboard_url).await?;
            Ok(None)
        }
        Ok(UpdateOutcome::Async { operation }) if accepts_incomplete => {
            let plan = &loaded.catalog.plan;
            let shown = operations::begin_update(state, guid, operation, plan, new_plan).await?;
            Ok(Some(shown))
        }
        Ok(UpdateOutcome::Async { .. }) => {
            let e = ApiError::ServiceBrokerRespondedAsyncWhenNotAllowed;
            fail(state, &loaded.before, e.to_string()).await?;
            Err(e)
        }
        Err(e) => {
            fail(state, &loaded.before, e.description.clone()).await?;
            Err(ApiError::Broker(e))
        }
    }
}

fn update_request(loaded: &Loaded, parameters: Option<Map<String, Value>>) -> UpdateRequest {
    let (catalog, space, org) = (&loaded.catalog, &loaded.space, &loaded.org);
    let plan = loaded.new_plan.as_ref().unwrap_or(&catalog.plan);
    UpdateRequest {
        service_id: catalog.service.unique_id.clone(),
        plan_id: plan.unique_id.clone(),
        previous_values: PreviousValues {
            service_id: catalog.service.unique_id.clone(),
            plan_id: catalog.plan.unique_id.clone(),
            organization_id: org.guid.clone(),
            space_id: space.guid.clone(),
        },
        context: CfContext {
            platform: "cloudfoundry",
            organization_guid: org.guid.clone(),
            space_guid: space.guid.clone(),
            organization_name: org.name.clone(),
            space_name: space.name.clone(),
            role: None,
        },
        parameters,
    }
}

const UPDATED: LastOperation = LastOperation::new(OperationType::Update, OperationState::Succeeded);

async fn settle_sync(
    state: &AppState,
    guid: &str,
    new_plan: Option<String>,
    dashboard_url: Option<String>,
) -> ApiResult<()> {
    let g = guid.to_string();
    state
        .db
        .write(move |conn| {
            if let Some(p) = &new_plan {
                repo::instances::set_plan(conn, &g, p)?;
            }
            if dashboard_url.is_some() {
                repo::instances::set_dashboard_url(conn, &g, dashboard_url.as_deref())?;
            }
            repo::instances::set_operation(conn, &g, UPDATED, None, None)?;
            Ok(())
        })
        .await
}

/// The update failed: name and tags as they were, the operation failed with the reason.
async fn fail(state: &AppState, before: &ServiceInstance, why: String) -> ApiResult<()> {
    let before = before.clone();
    let failed = LastOperation::new(OperationType::Update, OperationState::Failed);
    state
        .db
        .write(move |conn| {
            repo::instances::update_fields(conn, &before)?;
            repo::instances::set_operation(conn, &before.guid, failed, Some(&why), None)?;
            Ok(())
        })
        .await
}

async fn find(state: &AppState, guid: &str) -> ApiResult<ServiceInstance> {
    let g = guid.to_string();
    state
        .db
        .read(move |conn| {
            repo::instances::find(conn, &g)?.ok_or_else(|| ApiError::ServiceInstanceNotFound(g))
        })
        .await
}
