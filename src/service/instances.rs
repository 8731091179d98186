//! Service instances: managed ones are provisioned through their broker (reserve the name, call
//! the broker with no connection held, then complete or remove); user-provided ones are local.

use serde_json::{Map, Value};

use super::bindings::Catalog;
use super::{authz, new_guid, on_unique, orphans, Caller};
use crate::api::query::ListParams;
use crate::app::AppState;
use crate::broker::{CfContext, ProvisionOutcome, ProvisionRequest, UnbindOutcome};
use crate::db::models::ServiceInstance;
use crate::db::repo::instances::Kind;
use crate::db::repo::{self, Loaded};
use crate::error::{ApiError, ApiResult};

/// An instance and, for managed ones, the guid of its service (rendered as `service_guid`).
pub struct InstanceView {
    pub instance: ServiceInstance,
    pub service_guid: Option<String>,
    pub show_credentials: bool,
}

pub struct CreateInstance {
    pub name: Option<String>,
    pub space_guid: Option<String>,
    pub service_plan_guid: Option<String>,
    pub parameters: Option<Map<String, Value>>,
    pub tags: Option<Vec<String>>,
    pub accepts_incomplete: bool,
}

fn check_instance_name(name: Option<&str>) -> ApiResult<String> {
    let name = name.unwrap_or_default();
    if name.trim().is_empty() {
        return Err(ApiError::ServiceInstanceNameEmpty);
    }
    if name.chars().count() > 255 {
        return Err(ApiError::ServiceInstanceNameTooLong);
    }
    Ok(name.to_string())
}

fn check_tags(name: &str, tags: &[String]) -> ApiResult<String> {
    if tags.iter().map(|t| t.len()).sum::<usize>() > 2048 {
        return Err(ApiError::ServiceInstanceTagsTooLong(name.to_string()));
    }
    Ok(serde_json::to_string(tags).unwrap_or_else(|_| "[]".into()))
}

fn name_unique(v: &crate::db::UniqueViolation, name: &str) -> Option<ApiError> {
    if v.is(
        "service_instances_space_name_key",
        "service_instances",
        &["space_guid", "name"],
    ) {
        Some(ApiError::ServiceInstanceNameTaken(name.to_string()))
    } else {
        None
    }
}

pub async fn create_managed(
    state: &AppState,
    caller: &Caller,
    input: CreateInstance,
) -> ApiResult<InstanceView> {
    authz::require_write_scope(&caller.actor)?;
    let name = check_instance_name(input.name.as_deref())?;
    let space_guid = input.space_guid.clone().ok_or_else(|| {
        ApiError::MessageParseError("Field: space_guid, Error: Missing field space_guid".into())
    })?;
    let plan_guid = input.service_plan_guid.clone().ok_or_else(|| {
        ApiError::MessageParseError(
            "Field: service_plan_guid, Error: Missing field service_plan_guid".into(),
        )
    })?;
    let tags = check_tags(&name, input.tags.as_deref().unwrap_or_default())?;
    let actor = caller.actor.clone();
    let (sg, pg) = (space_guid.clone(), plan_guid.clone());
    let (space, org, catalog) = state
        .db
        .read(move |conn| {
            let (space, org) = repo::spaces::find_with_org(conn, &sg)?.ok_or_else(|| {
                ApiError::InvalidRelation(format!(
                    "Could not find VCAP::CloudController::Space with guid: {sg}"
                ))
            })?;
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
            Ok((
                space,
                org,
                Catalog {
                    plan,
                    service,
                    broker,
                },
            ))
        })
        .await?;

    let now = crate::db::now();
    let mut row = ServiceInstance {
        id: 0,
        guid: new_guid(),
        name: name.clone(),
        space_guid: space.guid.clone(),
        is_user_provided: false,
        service_plan_guid: Some(catalog.plan.guid.clone()),
        credentials: None,
        syslog_drain_url: None,
        route_service_url: None,
        tags,
        dashboard_url: None,
        last_operation_type: Some("create".into()),
        last_operation_state: Some("in progress".into()),
        last_operation_description: None,
        broker_operation: None,
        last_operation_updated_at: Some(now),
        created_at: now,
        updated_at: now,
    };
    let reserve = row.clone();
    state
        .db
        .write(move |conn| {
            on_unique(repo::instances::insert(conn, &reserve), |v| {
                name_unique(v, &reserve.name)
            })
        })
        .await?;

    let request = ProvisionRequest {
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
        parameters: input.parameters.filter(|p| !p.is_empty()),
        maintenance_info: catalog
            .plan
            .maintenance_info
            .as_deref()
            .and_then(|m| serde_json::from_str::<Value>(m).ok())
            .and_then(|m| m.get("version").cloned())
            .map(|v| serde_json::json!({ "version": v })),
    };
    let outcome = state
        .broker
        .provision(
            &catalog.target(),
            &row.guid,
            &request,
            input.accepts_incomplete,
            &caller.broker_ctx(),
        )
        .await;
    let g = row.guid.clone();
    let orphan = catalog.orphan_instance(&row.guid);
    let reservation = orphans::Reservation::Instance(row.guid.clone());
    match outcome {
        Ok(ProvisionOutcome::Created { dashboard_url }) => {
            let d = dashboard_url.clone();
            let saved = state
                .db
                .write(move |conn| {
                    repo::instances::set_dashboard_url(conn, &g, d.as_deref())?;
                    Ok(repo::instances::set_operation(
                        conn,
                        &g,
                        "create",
                        "succeeded",
                        None,
                        None,
                    )?)
                })
                .await;
            if !matches!(saved, Ok(1)) {
                // Gone meanwhile (deleted), or not saved: either way the broker's is an orphan.
                orphans::discard(state, reservation, Some(orphan)).await;
                return Err(saved
                    .err()
                    .unwrap_or(ApiError::ServiceInstanceNotFound(row.guid)));
            }
            row.dashboard_url = dashboard_url;
            row.last_operation_state = Some("succeeded".into());
        }
        Ok(ProvisionOutcome::Async {
            operation,
            dashboard_url,
        }) => {
            if !input.accepts_incomplete {
                orphans::discard(state, reservation, Some(orphan)).await;
                return Err(ApiError::ServiceBrokerRespondedAsyncWhenNotAllowed);
            }
            let poll = crate::jobs::Job::poll_instance(&row.guid, &catalog.plan, "create");
            let (op, d) = (operation.clone(), dashboard_url.clone());
            state
                .db
                .write(move |conn| {
                    repo::instances::set_dashboard_url(conn, &g, d.as_deref())?;
                    repo::instances::set_operation(
                        conn,
                        &g,
                        "create",
                        "in progress",
                        None,
                        op.as_deref(),
                    )?;
                    crate::jobs::enqueue(conn, &poll)?;
                    Ok(())
                })
                .await?;
            state.jobs_wakeup.notify_one();
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
        service_guid: Some(catalog.service.guid.clone()),
        instance: row,
        show_credentials: true,
    })
}

/// Loads an instance the caller may see. `kind` guards the endpoint family (a UPSI through
/// `/v2/service_instances/:guid` is CC's UserProvidedServiceInstanceHandlerNeeded... for writes;
/// reads of either kind are allowed there, as in CC).
pub async fn get(
    state: &AppState,
    caller: &Caller,
    guid: &str,
    kind: Kind,
) -> ApiResult<InstanceView> {
    authz::require_read_scope(&caller.actor)?;
    let g = guid.to_string();
    let actor = caller.actor.clone();
    state
        .db
        .read(move |conn| {
            let instance = repo::instances::find(conn, &g)?;
            let instance = match (instance, kind) {
                (Some(i), Kind::UserProvided) if !i.is_user_provided => None,
                (Some(i), Kind::Managed) if i.is_user_provided => None,
                (i, _) => i,
            };
            let instance = instance.ok_or_else(|| match kind {
                Kind::UserProvided => ApiError::UserProvidedServiceInstanceNotFound(g.clone()),
                _ => ApiError::ServiceInstanceNotFound(g.clone()),
            })?;
            let roles = if actor.reads_everything() {
                None
            } else {
                Some(authz::load_roles(conn, &actor)?)
            };
            if let Some(r) = &roles {
                if !r.can_read_space(&instance.space_guid) {
                    return Err(ApiError::NotAuthorized);
                }
            }
            let show_credentials =
                authz::can_see_secrets_in(roles.as_ref(), &actor, &instance.space_guid);
            let service_guid = match &instance.service_plan_guid {
                Some(p) => repo::brokers::find_plan(conn, p)?.map(|p| p.service_guid),
                None => None,
            };
            Ok(InstanceView {
                instance,
                service_guid,
                show_credentials,
            })
        })
        .await
        .and_then(|v| open_view(state, v))
}

/// Opens a user-provided instance's credentials if the caller may see them.
pub fn open_view(state: &AppState, mut v: InstanceView) -> ApiResult<InstanceView> {
    if v.show_credentials {
        if let Some(c) = &v.instance.credentials {
            v.instance.credentials = Some(state.crypto_open(c)?);
        }
    }
    Ok(v)
}

pub async fn list(
    state: &AppState,
    caller: &Caller,
    params: &ListParams,
    kind: Kind,
    space: Option<String>,
) -> ApiResult<Loaded<InstanceView>> {
    authz::require_read_scope(&caller.actor)?;
    let page = params.page_request(true)?;
    let filters = params.filters.clone();
    let actor = caller.actor.clone();
    state
        .db
        .read(move |conn| {
            if let Some(s) = &space {
                repo::spaces::find(conn, s)?.ok_or_else(|| ApiError::SpaceNotFound(s.clone()))?;
            }
            let roles = if actor.reads_everything() {
                None
            } else {
                Some(authz::load_roles(conn, &actor)?)
            };
            let visible = roles.as_ref().map(|r| r.readable_spaces.clone());
            let loaded = repo::instances::list(
                conn,
                &filters,
                kind,
                space.as_deref(),
                visible.as_deref(),
                &page,
            )?;
            let plan_guids: Vec<String> = loaded
                .rows
                .iter()
                .filter_map(|i| i.service_plan_guid.clone())
                .collect();
            let plans = if plan_guids.is_empty() {
                Vec::new()
            } else {
                repo::instances::plans_and_services(conn, &plan_guids)?
            };
            let rows = loaded
                .rows
                .into_iter()
                .map(|instance| {
                    let service_guid = instance.service_plan_guid.as_ref().and_then(|pg| {
                        plans
                            .iter()
                            .find(|(p, _)| &p.guid == pg)
                            .map(|(_, s)| s.guid.clone())
                    });
                    let show_credentials =
                        authz::can_see_secrets_in(roles.as_ref(), &actor, &instance.space_guid);
                    InstanceView {
                        instance,
                        service_guid,
                        show_credentials,
                    }
                })
                .collect();
            Ok(Loaded {
                total: loaded.total,
                rows,
            })
        })
        .await
        .and_then(|l| {
            let rows = l
                .rows
                .into_iter()
                .map(|v| open_view(state, v))
                .collect::<ApiResult<Vec<_>>>()?;
            Ok(Loaded {
                total: l.total,
                rows,
            })
        })
}

pub enum InstanceDeleted {
    Gone,
    InProgress(Box<InstanceView>),
}

pub async fn delete(
    state: &AppState,
    caller: &Caller,
    guid: &str,
    kind: Kind,
    accepts_incomplete: bool,
) -> ApiResult<InstanceDeleted> {
    authz::require_write_scope(&caller.actor)?;
    let g = guid.to_string();
    let actor = caller.actor.clone();
    let (instance, catalog) = state
        .db
        .write(move |conn| {
            let (instance, catalog) = repo::instances::find_with_catalog(conn, &g)?
                .filter(|(i, _)| match kind {
                    Kind::UserProvided => i.is_user_provided,
                    Kind::Managed => !i.is_user_provided,
                    Kind::Both => true,
                })
                .ok_or_else(|| match kind {
                    Kind::UserProvided => ApiError::UserProvidedServiceInstanceNotFound(g.clone()),
                    _ => ApiError::ServiceInstanceNotFound(g.clone()),
                })?;
            if !authz::can_write_space(conn, &actor, &instance.space_guid)? {
                return Err(ApiError::NotAuthorized);
            }
            if instance.operation_in_progress() {
                return Err(ApiError::AsyncServiceInstanceOperationInProgress(
                    instance.name.clone(),
                ));
            }
            if repo::bindings::count_for_instance(conn, &g)? > 0
                || repo::keys::count_for_instance(conn, &g)? > 0
            {
                return Err(ApiError::AssociationNotEmpty(
                    "service_bindings, service_keys, and routes".into(),
                    "service_instances".into(),
                ));
            }
            match catalog {
                None => {
                    repo::instances::delete(conn, &g)?;
                }
                Some(_) => {
                    repo::instances::set_operation(conn, &g, "delete", "in progress", None, None)?;
                }
            }
            Ok((instance, catalog))
        })
        .await?;
    let Some((plan, service, broker)) = catalog else {
        return Ok(InstanceDeleted::Gone);
    };
    let catalog = Catalog {
        plan,
        service,
        broker,
    };
    let outcome = state
        .broker
        .deprovision(
            &catalog.target(),
            &instance.guid,
            &catalog.ids(),
            accepts_incomplete,
            &caller.broker_ctx(),
        )
        .await;
    let g = guid.to_string();
    match outcome {
        Ok(UnbindOutcome::Deleted) => {
            state
                .db
                .write(move |conn| Ok(repo::instances::delete(conn, &g)?))
                .await?;
            Ok(InstanceDeleted::Gone)
        }
        Ok(UnbindOutcome::Async { operation }) if accepts_incomplete => {
            let poll = crate::jobs::Job::poll_instance(guid, &catalog.plan, "delete");
            let op = operation.clone();
            state
                .db
                .write(move |conn| {
                    repo::instances::set_operation(
                        conn,
                        &g,
                        "delete",
                        "in progress",
                        None,
                        op.as_deref(),
                    )?;
                    crate::jobs::enqueue(conn, &poll)?;
                    Ok(())
                })
                .await?;
            state.jobs_wakeup.notify_one();
            let mut instance = instance;
            instance.last_operation_type = Some("delete".into());
            instance.last_operation_state = Some("in progress".into());
            instance.broker_operation = operation;
            instance.last_operation_updated_at = Some(crate::db::now());
            Ok(InstanceDeleted::InProgress(Box::new(InstanceView {
                instance,
                service_guid: Some(catalog.service.guid.clone()),
                show_credentials: true,
            })))
        }
        Ok(UnbindOutcome::Async { .. }) => {
            state
                .db
                .write(move |conn| Ok(repo::instances::delete(conn, &g)?))
                .await?;
            Ok(InstanceDeleted::Gone)
        }
        Err(e) => {
            let d = e.description.clone();
            let _ = state
                .db
                .write(move |conn| {
                    Ok(repo::instances::set_operation(
                        conn,
                        &g,
                        "delete",
                        "failed",
                        Some(&d),
                        None,
                    )?)
                })
                .await;
            Err(ApiError::Broker(e))
        }
    }
}

/// Renames / retags a managed instance (no broker call needed for these).
pub async fn update_managed(
    state: &AppState,
    caller: &Caller,
    guid: &str,
    name: Option<String>,
    tags: Option<Vec<String>>,
    wants_broker_update: bool,
) -> ApiResult<InstanceView> {
    authz::require_write_scope(&caller.actor)?;
    if wants_broker_update {
        return Err(ApiError::UnprocessableEntity(
            "Changing the plan or parameters of a service instance is not supported by this server."
                .into(),
        ));
    }
    let g = guid.to_string();
    let actor = caller.actor.clone();
    state
        .db
        .write(move |conn| {
            let mut instance = repo::instances::find(conn, &g)?
                .filter(|i| !i.is_user_provided)
                .ok_or_else(|| ApiError::ServiceInstanceNotFound(g.clone()))?;
            if !authz::can_write_space(conn, &actor, &instance.space_guid)? {
                return Err(ApiError::NotAuthorized);
            }
            if instance.operation_in_progress() {
                return Err(ApiError::AsyncServiceInstanceOperationInProgress(
                    instance.name.clone(),
                ));
            }
            if let Some(n) = name {
                instance.name = check_instance_name(Some(&n))?;
            }
            if let Some(t) = tags {
                instance.tags = check_tags(&instance.name, &t)?;
            }
            let n = instance.name.clone();
            on_unique(repo::instances::update_fields(conn, &instance), |v| {
                name_unique(v, &n)
            })?;
            let service_guid = match &instance.service_plan_guid {
                Some(p) => repo::brokers::find_plan(conn, p)?.map(|p| p.service_guid),
                None => None,
            };
            let instance = repo::instances::find(conn, &g)?
                .ok_or_else(|| ApiError::ServiceInstanceNotFound(g.clone()))?;
            Ok(InstanceView {
                instance,
                service_guid,
                show_credentials: true,
            })
        })
        .await
}

// ---- user-provided -----------------------------------------------------------------------------

pub struct UpsiInput {
    /// Only for tools (seed-demo); the API always generates one.
    pub guid: Option<String>,
    pub name: Option<String>,
    pub space_guid: Option<String>,
    pub credentials: Option<Map<String, Value>>,
    pub syslog_drain_url: Option<String>,
    pub route_service_url: Option<String>,
    pub tags: Option<Vec<String>>,
}

fn check_route_service_url(url: &Option<String>) -> ApiResult<()> {
    if let Some(u) = url.as_deref().filter(|u| !u.is_empty()) {
        if !u.starts_with("https://") {
            return Err(ApiError::ServiceInstanceInvalid(format!(
                "The route service URL is invalid: Scheme must be https: {u}"
            )));
        }
    }
    Ok(())
}

pub async fn create_upsi(
    state: &AppState,
    caller: &Caller,
    input: UpsiInput,
) -> ApiResult<InstanceView> {
    authz::require_write_scope(&caller.actor)?;
    let name = check_instance_name(input.name.as_deref())?;
    let space_guid = input.space_guid.clone().ok_or_else(|| {
        ApiError::MessageParseError("Field: space_guid, Error: Missing field space_guid".into())
    })?;
    check_route_service_url(&input.route_service_url)?;
    let tags = check_tags(&name, input.tags.as_deref().unwrap_or_default())?;
    let now = crate::db::now();
    let row = ServiceInstance {
        id: 0,
        guid: input.guid.clone().unwrap_or_else(new_guid),
        name,
        space_guid,
        is_user_provided: true,
        service_plan_guid: None,
        credentials: Some(
            state.crypto_seal(&Value::Object(input.credentials.unwrap_or_default()).to_string()),
        ),
        syslog_drain_url: input.syslog_drain_url.filter(|s| !s.is_empty()),
        route_service_url: input.route_service_url.filter(|s| !s.is_empty()),
        tags,
        dashboard_url: None,
        last_operation_type: None,
        last_operation_state: None,
        last_operation_description: None,
        broker_operation: None,
        last_operation_updated_at: None,
        created_at: now,
        updated_at: now,
    };
    let insert = row.clone();
    let actor = caller.actor.clone();
    state
        .db
        .write(move |conn| {
            repo::spaces::find(conn, &insert.space_guid)?.ok_or_else(|| {
                ApiError::InvalidRelation(format!(
                    "Could not find VCAP::CloudController::Space with guid: {}",
                    insert.space_guid
                ))
            })?;
            if !authz::can_write_space(conn, &actor, &insert.space_guid)? {
                return Err(ApiError::NotAuthorized);
            }
            on_unique(repo::instances::insert(conn, &insert), |v| {
                name_unique(v, &insert.name)
            })
        })
        .await?;
    open_view(
        state,
        InstanceView {
            instance: row,
            service_guid: None,
            show_credentials: true,
        },
    )
}

pub async fn update_upsi(
    state: &AppState,
    caller: &Caller,
    guid: &str,
    input: UpsiInput,
) -> ApiResult<InstanceView> {
    authz::require_write_scope(&caller.actor)?;
    check_route_service_url(&input.route_service_url)?;
    let g = guid.to_string();
    let actor = caller.actor.clone();
    let sealed = input
        .credentials
        .as_ref()
        .map(|c| state.crypto_seal(&Value::Object(c.clone()).to_string()));
    state
        .db
        .write(move |conn| {
            let mut instance = repo::instances::find(conn, &g)?
                .filter(|i| i.is_user_provided)
                .ok_or_else(|| ApiError::UserProvidedServiceInstanceNotFound(g.clone()))?;
            if !authz::can_write_space(conn, &actor, &instance.space_guid)? {
                return Err(ApiError::NotAuthorized);
            }
            if let Some(n) = input.name {
                instance.name = check_instance_name(Some(&n))?;
            }
            if sealed.is_some() {
                instance.credentials = sealed;
            }
            if let Some(s) = input.syslog_drain_url {
                instance.syslog_drain_url = Some(s).filter(|s| !s.is_empty());
            }
            if let Some(r) = input.route_service_url {
                instance.route_service_url = Some(r).filter(|s| !s.is_empty());
            }
            if let Some(t) = input.tags {
                instance.tags = check_tags(&instance.name, &t)?;
            }
            let n = instance.name.clone();
            on_unique(repo::instances::update_fields(conn, &instance), |v| {
                name_unique(v, &n)
            })?;
            let instance = repo::instances::find(conn, &g)?
                .ok_or_else(|| ApiError::UserProvidedServiceInstanceNotFound(g.clone()))?;
            Ok(InstanceView {
                instance,
                service_guid: None,
                show_credentials: true,
            })
        })
        .await
        .and_then(|v| open_view(state, v))
}
