//! Service brokers: registration fetches the catalog (no connection held meanwhile), then stores
//! broker, services and plans in one transaction. Plus plan access (public flag, visibilities).

use super::{authz, new_guid, no_such_space, on_unique, Caller};
use crate::app::AppState;
use crate::broker::{parse_catalog, BrokerTarget, CatalogService};
use crate::db::models::{Service, ServiceBroker, ServicePlan, ServicePlanVisibility};
use crate::db::repo::ListQuery;
use crate::db::repo::{self, Loaded};
use crate::db::DbConnection;
use crate::error::{ApiError, ApiResult};

pub struct BrokerInput {
    pub name: Option<String>,
    pub broker_url: Option<String>,
    pub auth_username: Option<String>,
    pub auth_password: Option<String>,
    pub space_guid: Option<String>,
}

fn validate_url(url: &str) -> ApiResult<()> {
    let parsed =
        reqwest::Url::parse(url).map_err(|_| ApiError::ServiceBrokerUrlInvalid(url.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(ApiError::ServiceBrokerUrlInvalid(url.to_string()));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(ApiError::ServiceBrokerUrlBasicAuthNotSupported);
    }
    Ok(())
}

async fn fetch_catalog(
    state: &AppState,
    caller: &Caller,
    target: &BrokerTarget,
) -> ApiResult<Vec<CatalogService>> {
    let mut ctx = caller.broker_ctx();
    // Platform-initiated (OSB D.3): no originating identity on catalog fetches.
    ctx.user_id = None;
    let body = state.broker.fetch_catalog(target, &ctx).await?;
    parse_catalog(&body).map_err(|errors| ApiError::ServiceBrokerCatalogInvalid(errors.join("\n")))
}

fn find_broker(conn: &mut DbConnection, guid: &str) -> ApiResult<ServiceBroker> {
    repo::brokers::find_broker(conn, guid)?
        .ok_or_else(|| ApiError::ServiceBrokerNotFound(guid.to_string()))
}

fn find_service(conn: &mut DbConnection, guid: &str) -> ApiResult<Service> {
    repo::brokers::find_service(conn, guid)?
        .ok_or_else(|| ApiError::ServiceNotFound(guid.to_string()))
}

fn find_plan(conn: &mut DbConnection, guid: &str) -> ApiResult<ServicePlan> {
    repo::brokers::find_plan(conn, guid)?
        .ok_or_else(|| ApiError::ServicePlanNotFound(guid.to_string()))
}

fn name_unique(v: &crate::db::UniqueViolation) -> Option<ApiError> {
    if v.is("service_brokers_name_key", "service_brokers", &["name"]) {
        Some(ApiError::ServiceBrokerNameTaken)
    } else {
        None
    }
}

pub async fn register(
    state: &AppState,
    caller: &Caller,
    input: BrokerInput,
) -> ApiResult<ServiceBroker> {
    authz::require_admin(&caller.actor)?;
    let space_guid = input.space_guid.clone();
    let target = required_target(input)?;
    validate_url(&target.url)?;
    check_registrable(state, &target.name, space_guid.clone()).await?;
    let catalog = fetch_catalog(state, caller, &target).await?;
    let now = crate::db::now();
    let broker = ServiceBroker {
        id: 0,
        guid: new_guid(),
        broker_url: target.url.trim_end_matches('/').to_string(),
        auth_password: state.crypto_seal(&target.password),
        name: target.name,
        auth_username: target.username,
        space_guid,
        created_at: now,
        updated_at: now,
    };
    store_with_catalog(state, &broker, catalog, repo::brokers::insert_broker).await?;
    Ok(broker)
}

/// The broker to register as the input names it; CC's `presence` errors, in CC's order, for
/// what is missing or empty (a name of blanks counts as missing).
fn required_target(input: BrokerInput) -> ApiResult<BrokerTarget> {
    fn required(value: Option<String>, field: &str) -> ApiResult<String> {
        value
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError::ServiceBrokerInvalid(format!("{field} presence")))
    }
    Ok(BrokerTarget {
        name: required(input.name.filter(|n| !n.trim().is_empty()), "name")?,
        url: required(input.broker_url, "broker_url")?,
        username: required(input.auth_username, "auth_username")?,
        password: required(input.auth_password, "auth_password")?,
    })
}

/// Fails before the catalog fetch when the name is taken or the space does not exist.
async fn check_registrable(state: &AppState, name: &str, space: Option<String>) -> ApiResult<()> {
    let by_name = [repo::Filter::eq("name", name)];
    state
        .db
        .read(move |conn| {
            let first = repo::PageRequest::first(1);
            if repo::brokers::list_brokers(conn, &by_name, &first)?.total > 0 {
                return Err(ApiError::ServiceBrokerNameTaken);
            }
            if let Some(s) = &space {
                repo::spaces::find(conn, s)?.ok_or_else(|| no_such_space(s))?;
            }
            Ok(())
        })
        .await
}

/// Saves the broker row (insert or update) and its catalog in one transaction.
async fn store_with_catalog<T: Send + 'static>(
    state: &AppState,
    broker: &ServiceBroker,
    catalog: Vec<CatalogService>,
    save: fn(&mut crate::db::DbConnection, &ServiceBroker) -> diesel::QueryResult<T>,
) -> ApiResult<()> {
    let row = broker.clone();
    state
        .db
        .write(move |conn| {
            on_unique(save(conn, &row), name_unique)?;
            repo::brokers::sync_catalog(conn, &row, &catalog)?;
            Ok(())
        })
        .await
}

pub async fn update(
    state: &AppState,
    caller: &Caller,
    guid: &str,
    input: BrokerInput,
) -> ApiResult<ServiceBroker> {
    authz::require_admin(&caller.actor)?;
    let g = guid.to_string();
    let mut broker = state.db.read(move |conn| find_broker(conn, &g)).await?;
    if let Some(n) = input.name {
        if n.trim().is_empty() {
            return Err(ApiError::ServiceBrokerInvalid("name presence".into()));
        }
        broker.name = n;
    }
    if let Some(u) = input.broker_url {
        validate_url(&u)?;
        broker.broker_url = u.trim_end_matches('/').to_string();
    }
    if let Some(u) = input.auth_username {
        broker.auth_username = u;
    }
    if let Some(p) = input.auth_password {
        broker.auth_password = state.crypto_seal(&p);
    }
    let target = BrokerTarget {
        name: broker.name.clone(),
        url: broker.broker_url.clone(),
        username: broker.auth_username.clone(),
        password: broker.auth_password.clone(),
    };
    let catalog = fetch_catalog(state, caller, &target).await?;
    store_with_catalog(state, &broker, catalog, repo::brokers::update_broker).await?;
    Ok(broker)
}

/// CC shows brokers and plan visibilities to those who read everything only.
fn require_reads_everything(caller: &Caller) -> ApiResult<()> {
    authz::require_read_scope(&caller.actor)?;
    if !caller.actor.reads_everything() {
        return Err(ApiError::NotAuthorized);
    }
    Ok(())
}

pub async fn get(state: &AppState, caller: &Caller, guid: &str) -> ApiResult<ServiceBroker> {
    require_reads_everything(caller)?;
    let g = guid.to_string();
    state.db.read(move |conn| find_broker(conn, &g)).await
}

pub async fn list(
    state: &AppState,
    caller: &Caller,
    query: &ListQuery,
) -> ApiResult<Loaded<ServiceBroker>> {
    authz::require_read_scope(&caller.actor)?;
    let page = query.page;
    let filters = query.filters.clone();
    let all = caller.actor.reads_everything();
    state
        .db
        .read(move |conn| {
            if !all {
                // CC shows brokers to admins only (and space-scoped ones to their space).
                return Ok(Loaded {
                    total: 0,
                    rows: vec![],
                });
            }
            Ok(repo::brokers::list_brokers(conn, &filters, &page)?)
        })
        .await
}

pub async fn delete(state: &AppState, caller: &Caller, guid: &str) -> ApiResult<()> {
    authz::require_admin(&caller.actor)?;
    let g = guid.to_string();
    state
        .db
        .write(move |conn| {
            let broker = find_broker(conn, &g)?;
            if repo::brokers::count_broker_instances(conn, &g)? > 0 {
                return Err(ApiError::ServiceBrokerNotRemovable(broker.name));
            }
            repo::brokers::delete_broker(conn, &g)?;
            Ok(())
        })
        .await
}

// ---- services and plans ----------------------------------------------------------------------

/// A service with its broker's name (rendered as `service_broker_name`).
pub struct ServiceView {
    pub service: Service,
    pub broker_name: String,
}

/// `GET /v2/services`: the services that offer a plan the viewer may list (every service for
/// those who read everything). `viewer` is `None` for a caller without a token, whom CC shows
/// the services of the public active plans.
pub async fn list_services(
    state: &AppState,
    viewer: Option<&Caller>,
    query: &ListQuery,
) -> ApiResult<Loaded<ServiceView>> {
    let actor = viewer_actor(viewer)?;
    let page = query.page;
    let filters = query.filters.clone();
    state
        .db
        .read(move |conn| {
            let loaded = match listable_plans(conn, actor.as_ref())? {
                None => repo::brokers::list_services(conn, &filters, &page)?,
                Some(plans) => {
                    let services = repo::marketplace::services_of_plans(conn, &plans)?;
                    repo::marketplace::list_services_among(conn, &filters, &services, &page)?
                }
            };
            with_broker_names(conn, loaded)
        })
        .await
}

/// The actor behind a marketplace viewer, once it may read (`None`: no token).
fn viewer_actor(viewer: Option<&Caller>) -> ApiResult<Option<crate::auth::Actor>> {
    match viewer {
        Some(caller) => {
            authz::require_read_scope(&caller.actor)?;
            Ok(Some(caller.actor.clone()))
        }
        None => Ok(None),
    }
}

/// The plans a viewer may list (CC's `ServicePlan.user_visibility_list_filter`): `None` means
/// all of them (admins, read-only admins, global auditors); a caller without a token
/// (`actor` `None`) and one without roles see the public active plans; members of orgs and
/// spaces also the plans made visible to their orgs and those of brokers scoped to their
/// spaces. Inactive plans (gone from their broker's catalog) are never listed.
fn listable_plans(
    conn: &mut DbConnection,
    actor: Option<&crate::auth::Actor>,
) -> ApiResult<Option<Vec<String>>> {
    let (orgs, spaces) = match actor {
        Some(actor) if actor.reads_everything() => return Ok(None),
        Some(actor) => {
            let roles = authz::load_roles(conn, actor)?;
            let orgs: Vec<String> = [
                roles.user_orgs,
                roles.manager_orgs,
                roles.auditor_orgs,
                roles.billing_manager_orgs,
            ]
            .concat();
            let spaces: Vec<String> = [
                roles.developer_spaces,
                roles.manager_spaces,
                roles.auditor_spaces,
            ]
            .concat();
            (orgs, spaces)
        }
        None => (Vec::new(), Vec::new()),
    };
    Ok(Some(repo::marketplace::listable_plan_guids(
        conn, &orgs, &spaces,
    )?))
}

/// Services with their brokers' names, for rendering.
pub(crate) fn with_broker_names(
    conn: &mut crate::db::DbConnection,
    loaded: Loaded<Service>,
) -> ApiResult<Loaded<ServiceView>> {
    let broker_guids: Vec<String> = loaded
        .rows
        .iter()
        .map(|s| s.service_broker_guid.clone())
        .collect();
    let names = repo::brokers::broker_names(conn, &broker_guids)?;
    let rows = loaded
        .rows
        .into_iter()
        .map(|service| {
            let broker_name = names
                .iter()
                .find(|(g, _)| *g == service.service_broker_guid)
                .map(|(_, n)| n.clone())
                .unwrap_or_default();
            ServiceView {
                service,
                broker_name,
            }
        })
        .collect();
    Ok(Loaded {
        total: loaded.total,
        rows,
    })
}

pub async fn get_service(state: &AppState, caller: &Caller, guid: &str) -> ApiResult<ServiceView> {
    authz::require_read_scope(&caller.actor)?;
    let g = guid.to_string();
    state
        .db
        .read(move |conn| {
            let service = find_service(conn, &g)?;
            let broker_name = repo::brokers::broker_names(
                conn,
                std::slice::from_ref(&service.service_broker_guid),
            )?
            .pop()
            .map(|(_, n)| n)
            .unwrap_or_default();
            Ok(ServiceView {
                service,
                broker_name,
            })
        })
        .await
}

/// `GET /v2/service_plans` (and `/v2/services/:guid/service_plans`, `service` given): the plans
/// the viewer may list (see `listable_plans`; `viewer` `None`: a caller without a token).
pub async fn list_plans(
    state: &AppState,
    viewer: Option<&Caller>,
    query: &ListQuery,
    service: Option<String>,
) -> ApiResult<Loaded<ServicePlan>> {
    let actor = viewer_actor(viewer)?;
    let page = query.page;
    let filters = query.filters.clone();
    state
        .db
        .read(move |conn| {
            if let Some(s) = &service {
                find_service(conn, s)?;
            }
            let service = service.as_deref();
            Ok(match listable_plans(conn, actor.as_ref())? {
                None => repo::brokers::list_plans(conn, &filters, service, &page)?,
                Some(plans) => {
                    repo::marketplace::list_plans_among(conn, &filters, service, &plans, &page)?
                }
            })
        })
        .await
}

pub async fn get_plan(state: &AppState, caller: &Caller, guid: &str) -> ApiResult<ServicePlan> {
    authz::require_read_scope(&caller.actor)?;
    let g = guid.to_string();
    state.db.read(move |conn| find_plan(conn, &g)).await
}

pub async fn set_plan_public(
    state: &AppState,
    caller: &Caller,
    guid: &str,
    public: bool,
) -> ApiResult<ServicePlan> {
    authz::require_admin(&caller.actor)?;
    let g = guid.to_string();
    state
        .db
        .write(move |conn| {
            find_plan(conn, &g)?;
            repo::brokers::set_plan_public(conn, &g, public)?;
            find_plan(conn, &g)
        })
        .await
}

pub async fn create_visibility(
    state: &AppState,
    caller: &Caller,
    plan: String,
    org: String,
) -> ApiResult<ServicePlanVisibility> {
    authz::require_admin(&caller.actor)?;
    let now = crate::db::now();
    let vis = ServicePlanVisibility {
        id: 0,
        guid: new_guid(),
        service_plan_guid: plan,
        organization_guid: org,
        created_at: now,
        updated_at: now,
    };
    let row = vis.clone();
    state
        .db
        .write(move |conn| {
            repo::brokers::find_plan(conn, &row.service_plan_guid)?.ok_or_else(|| {
                ApiError::ServicePlanVisibilityInvalid(format!(
                    "service_plan {} not found",
                    row.service_plan_guid
                ))
            })?;
            repo::orgs::find(conn, &row.organization_guid)?.ok_or_else(|| {
                ApiError::ServicePlanVisibilityInvalid(format!(
                    "organization {} not found",
                    row.organization_guid
                ))
            })?;
            on_unique(repo::brokers::insert_visibility(conn, &row), |_| {
                Some(ApiError::ServicePlanVisibilityAlreadyExists(format!(
                    "{}, {}",
                    row.service_plan_guid, row.organization_guid
                )))
            })
        })
        .await?;
    Ok(vis)
}

pub async fn list_visibilities(
    state: &AppState,
    caller: &Caller,
    query: &ListQuery,
) -> ApiResult<Loaded<ServicePlanVisibility>> {
    authz::require_read_scope(&caller.actor)?;
    if !caller.actor.reads_everything() {
        return Ok(Loaded {
            total: 0,
            rows: vec![],
        });
    }
    let page = query.page;
    let filters = query.filters.clone();
    state
        .db
        .read(move |conn| Ok(repo::brokers::list_visibilities(conn, &filters, &page)?))
        .await
}

pub async fn get_visibility(
    state: &AppState,
    caller: &Caller,
    guid: &str,
) -> ApiResult<ServicePlanVisibility> {
    require_reads_everything(caller)?;
    let g = guid.to_string();
    state
        .db
        .read(move |conn| {
            repo::brokers::find_visibility(conn, &g)?
                .ok_or_else(|| ApiError::ServicePlanVisibilityNotFound(g.clone()))
        })
        .await
}

pub async fn delete_visibility(state: &AppState, caller: &Caller, guid: &str) -> ApiResult<()> {
    authz::require_admin(&caller.actor)?;
    let g = guid.to_string();
    state
        .db
        .write(move |conn| {
            if repo::brokers::delete_visibility(conn, &g)? == 0 {
                return Err(ApiError::ServicePlanVisibilityNotFound(g.clone()));
            }
            Ok(())
        })
        .await
}

/// `GET /v2/spaces/:guid/services`: the services that may be provisioned in a space the caller
/// reads (CC: public or org-visible active plans, and, for the space's members, the services of
/// brokers scoped to the space).
pub async fn list_services_in_space(
    state: &AppState,
    caller: &Caller,
    space: &str,
    query: &ListQuery,
) -> ApiResult<Loaded<ServiceView>> {
    authz::require_read_scope(&caller.actor)?;
    let (page, filters) = (query.page, query.filters.clone());
    let (space, actor) = (space.to_string(), caller.actor.clone());
    state
        .db
        .read(move |conn| {
            let sp = repo::spaces::find(conn, &space)?
                .ok_or_else(|| ApiError::SpaceNotFound(space.clone()))?;
            let member = if actor.reads_everything() {
                true
            } else {
                let roles = authz::load_roles(conn, &actor)?;
                if !roles.can_read_space(&sp.guid) {
                    return Err(ApiError::NotAuthorized);
                }
                [
                    &roles.developer_spaces,
                    &roles.manager_spaces,
                    &roles.auditor_spaces,
                ]
                .iter()
                .any(|spaces| spaces.contains(&sp.guid))
            };
            let guids = repo::marketplace::visible_service_guids(
                conn,
                &sp.guid,
                &sp.organization_guid,
                member,
            )?;
            let loaded = repo::marketplace::list_services_among(conn, &filters, &guids, &page)?;
            with_broker_names(conn, loaded)
        })
        .await
}
