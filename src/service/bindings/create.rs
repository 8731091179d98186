//! Creating a binding (CC `ServiceBindingCreate`, v2), as a story of named steps:
//! [`load_target`] reads what the request names, [`validate`] applies CC's checks in CC's order
//! (pure, unit-tested), and one function per strategy makes the binding: with an existing
//! credential ([`bind_with_key`]), to a user-provided instance ([`bind_user_provided`]), or
//! through the broker ([`bind_through_broker`]).
//!
//! A brokered create reserves the binding row first (`create / in progress`), so the unique
//! indexes settle races between parallel requests before anyone calls a broker: of 64 identical
//! creates, one reaches the broker and 63 get `ServiceBindingAppServiceTaken`. The broker call
//! then runs with no connection held, and the row is completed, or discarded with orphan
//! mitigation where the OSB spec asks for it.

use serde_json::{Map, Value};

use super::{Shown, ALREADY_BOUND};
use crate::app::AppState;
use crate::broker::{BindOutcome, BindRequest, BindResource, BindingData, CfContext};
use crate::db::models::{App, Organization, ServiceBinding, ServiceInstance, ServiceKey, Space};
use crate::db::repo;
use crate::db::repo::bindings::BindingView;
use crate::db::DbConnection;
use crate::error::{ApiError, ApiResult};
use crate::operation::{LastOperation, OperationState, OperationType};
use crate::service::catalog::Catalog;
use crate::service::operations::{self, Subject};
use crate::service::orphans::{self, Reservation};
use crate::service::{authz, code_engine, new_guid, on_unique, Caller};

pub struct CreateBinding {
    pub app_guid: String,
    pub service_instance_guid: String,
    pub name: Option<String>,
    pub parameters: Option<Map<String, Value>>,
    pub accepts_incomplete: bool,
    /// Code Engine extensions (all optional): the credential's role, the env-var prefix, and an
    /// existing service key (guid or name) to use instead of a new credential.
    pub role: Option<String>,
    pub prefix: Option<String>,
    pub service_key: Option<String>,
}

/// What a create request names, as stored.
pub struct BindTarget {
    pub app: App,
    pub space: Space,
    pub org: Organization,
    pub instance: ServiceInstance,
    pub catalog: Option<Catalog>,
    pub key: Option<ServiceKey>,
    /// The friendly duplicate error, looked up with the other reads (outside the single
    /// writer's transaction) and raised where CC raises it; the unique indexes still decide.
    pub duplicate: Option<ApiError>,
}

/// How the binding gets its credential.
#[derive(Debug)]
pub enum Strategy {
    /// An existing service key's: no broker call.
    ExistingKey,
    /// The user-provided instance's own: no broker call.
    UserProvided,
    /// A new one from the broker.
    Broker,
}

/// The validated request: everything the insert needs besides the target.
#[derive(Debug)]
pub struct BindPlan {
    pub strategy: Strategy,
    pub name: Option<String>,
    pub role: Option<String>,
    /// Whether the client used a Code Engine extension (the entity then shows them).
    pub extended: bool,
    /// The client's env-var prefix, if it gave one.
    pub prefix: Option<String>,
    /// The service label the derived prefixes start from.
    pub label: String,
}

pub async fn create(state: &AppState, caller: &Caller, input: CreateBinding) -> ApiResult<Shown> {
    authz::require_write_scope(&caller.actor)?;
    let target = load_target(state, caller, &input).await?;
    let plan = validate(&target, &input)?;
    let row = new_row(&target, &plan);
    match plan.strategy {
        Strategy::ExistingKey => bind_with_key(state, target, row, plan).await,
        Strategy::UserProvided => bind_user_provided(state, target, row, plan, &input).await,
        Strategy::Broker => bind_through_broker(state, caller, target, row, plan, input).await,
    }
}

/// Reads the app, the instance with its catalog, the space and org, the service key the
/// request names, and whether the binding would be a duplicate; checks the caller may write
/// in the app's space.
async fn load_target(
    state: &AppState,
    caller: &Caller,
    input: &CreateBinding,
) -> ApiResult<BindTarget> {
    let actor = caller.actor.clone();
    let (app_guid, si_guid) = (input.app_guid.clone(), input.service_instance_guid.clone());
    let key_ref = input.service_key.clone();
    let name = input.name.clone().filter(|n| !n.is_empty());
    state
        .db
        .read(move |conn| {
            let app = repo::apps::find(conn, &app_guid)?
                .ok_or_else(|| ApiError::AppNotFound(app_guid.clone()))?;
            let (instance, catalog) = repo::instances::find_with_catalog(conn, &si_guid)?
                .ok_or_else(|| ApiError::ServiceInstanceNotFound(si_guid.clone()))?;
            authz::require_binding_writer(conn, &actor, &app.space_guid)?;
            let (space, org) = repo::spaces::find_with_org(conn, &app.space_guid)?
                .ok_or_else(|| ApiError::internal("app without space"))?;
            let key = match &key_ref {
                Some(k) => Some(find_key(conn, &instance, k)?),
                None => None,
            };
            let duplicate = duplicate_error(conn, &app.guid, &instance.guid, name.as_deref())?;
            Ok(BindTarget {
                duplicate,
                key,
                app,
                space,
                org,
                instance,
                catalog: Catalog::from_parts(catalog),
            })
        })
        .await
}

/// An existing credential: a service key of this instance, by guid or by name.
fn find_key(conn: &mut DbConnection, instance: &ServiceInstance, k: &str) -> ApiResult<ServiceKey> {
    let found = match repo::keys::find(conn, k)? {
        Some(key) => Some(key),
        None => repo::keys::find_by_name(conn, &instance.guid, k)?,
    };
    let key = found.ok_or_else(|| ApiError::ServiceKeyNotFound(k.to_string()))?;
    if key.service_instance_guid != instance.guid {
        return Err(ApiError::ServiceBindingInvalid(format!(
            "The service key {} belongs to another service instance; a credential can only be used with its own instance.",
            key.name
        )));
    }
    Ok(key)
}

/// CC's checks, in CC's order (`ServiceBindingCreate#create`, then the model's validations),
/// and tether's Code Engine rules. Pure: no database, no broker.
pub fn validate(target: &BindTarget, input: &CreateBinding) -> ApiResult<BindPlan> {
    match &target.catalog {
        Some(c) if !c.bindable() => return Err(ApiError::UnbindableService),
        None if !target.instance.is_user_provided => {
            return Err(ApiError::internal("managed instance without a plan"))
        }
        _ => {}
    }
    if target.instance.space_guid != target.app.space_guid {
        return Err(ApiError::ServiceBindingAppServiceTaken(
            "The service instance and the app are in different spaces.".into(),
        ));
    }
    if target.instance.last_operation().in_progress() {
        return Err(ApiError::AsyncServiceInstanceOperationInProgress(
            target.instance.name.clone(),
        ));
    }
    let name = input.name.clone().filter(|n| !n.is_empty());
    if let Some(n) = &name {
        super::validate_name(n)?;
    }
    if let Some(p) = &input.prefix {
        code_engine::validate_prefix(p)?;
    }
    let role = match (&target.catalog, &target.key) {
        // A service key carries its own credential; a role applies to new credentials only.
        (_, Some(_)) => None,
        (Some(c), None) => Some(code_engine::resolve_role(
            &c.service,
            &c.plan,
            input.role.as_deref(),
        )?),
        (None, None) if input.role.is_some() => {
            return Err(ApiError::ServiceBindingInvalid(
                "Roles apply to managed service instances only.".into(),
            ))
        }
        (None, None) => None,
    };
    let strategy = match (&target.key, &target.catalog) {
        (Some(_), _) => Strategy::ExistingKey,
        (None, None) => Strategy::UserProvided,
        (None, Some(_)) => Strategy::Broker,
    };
    Ok(BindPlan {
        strategy,
        name,
        role,
        extended: input.role.is_some() || input.prefix.is_some() || input.service_key.is_some(),
        prefix: input.prefix.clone(),
        label: target
            .catalog
            .as_ref()
            .map(|c| c.service.label.clone())
            .unwrap_or_else(|| "user-provided".into()),
    })
}

/// The new row: `create / in progress` until the strategy has its credential.
fn new_row(target: &BindTarget, plan: &BindPlan) -> ServiceBinding {
    let now = crate::db::now();
    let mut row = ServiceBinding {
        id: 0,
        guid: new_guid(),
        app_guid: target.app.guid.clone(),
        service_instance_guid: target.instance.guid.clone(),
        name: plan.name.clone(),
        credentials: "{}".into(),
        syslog_drain_url: None,
        volume_mounts: "[]".into(),
        last_operation_type: None,
        last_operation_state: None,
        last_operation_description: None,
        broker_operation: None,
        last_operation_created_at: Some(now),
        last_operation_updated_at: Some(now),
        created_at: now,
        updated_at: now,
        role: plan.role.clone(),
        prefix: None,
        service_key_guid: target.key.as_ref().map(|k| k.guid.clone()),
        extended: plan.extended,
    };
    row.set_last_operation(CREATING);
    row
}

const CREATING: LastOperation =
    LastOperation::new(OperationType::Create, OperationState::InProgress);
const CREATED: LastOperation = LastOperation::new(OperationType::Create, OperationState::Succeeded);

/// The binding as the API shows it to its creator (credentials opened).
fn shown(
    state: &AppState,
    mut row: ServiceBinding,
    user_provided: bool,
    space_guid: String,
    warnings: Vec<String>,
) -> ApiResult<Shown> {
    row.credentials = state.crypto_open(&row.credentials)?;
    Ok(Shown {
        view: BindingView {
            binding: row,
            user_provided,
            space_guid,
        },
        show_credentials: true,
        warnings,
    })
}

/// With an existing service key's credentials: no broker call. One key serves several apps,
/// each app once.
async fn bind_with_key(
    state: &AppState,
    target: BindTarget,
    mut row: ServiceBinding,
    plan: BindPlan,
) -> ApiResult<Shown> {
    let key = target
        .key
        .as_ref()
        .ok_or_else(|| ApiError::internal("no key"))?;
    row.credentials = key.credentials.clone();
    row.set_last_operation(CREATED);
    let key_name = key.name.clone();
    let prefixes = Prefixes::for_row(&row, &plan, &target.instance.name);
    let insert = row.clone();
    let name = plan.name.clone();
    row.prefix = Some(
        state
            .db
            .write(move |conn| {
                let existing =
                    repo::bindings::find_by_app_and_instance(conn, &insert.app_guid, &insert.service_instance_guid)?;
                if existing.is_some_and(|b| b.service_key_guid == insert.service_key_guid) {
                    return Err(ApiError::ServiceBindingAppServiceTaken(format!(
                        "The credential {key_name} is already used by a binding of this app; a credential can serve several apps, but each app once."
                    )));
                }
                if let Some(e) = duplicate_error(conn, &insert.app_guid, &insert.service_instance_guid, name.as_deref())? {
                    return Err(e);
                }
                insert_reserved(conn, insert, &prefixes, name.as_deref())
            })
            .await?,
    );
    shown(
        state,
        row,
        target.instance.is_user_provided,
        target.space.guid,
        Vec::new(),
    )
}

/// To a user-provided instance: no broker; the instance's credentials and drain are the
/// binding's.
async fn bind_user_provided(
    state: &AppState,
    mut target: BindTarget,
    mut row: ServiceBinding,
    plan: BindPlan,
    input: &CreateBinding,
) -> ApiResult<Shown> {
    let mut warnings = Vec::new();
    if input.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
        warnings.push(
            "Configuration parameters are ignored for bindings to user-provided service instances."
                .to_string(),
        );
    }
    row.credentials = target
        .instance
        .credentials
        .clone()
        .unwrap_or_else(|| "{}".into());
    row.syslog_drain_url = target.instance.syslog_drain_url.clone();
    row.set_last_operation(CREATED);
    if let Some(e) = target.duplicate.take() {
        return Err(e);
    }
    row.prefix = Some(reserve(state, &row, &plan, &target.instance.name).await?);
    shown(state, row, true, target.space.guid, warnings)
}

/// Through the broker: reserve the row, bind at the broker (no connection held), then keep
/// what the broker made, start polling it, or discard the reservation.
async fn bind_through_broker(
    state: &AppState,
    caller: &Caller,
    mut target: BindTarget,
    mut row: ServiceBinding,
    plan: BindPlan,
    input: CreateBinding,
) -> ApiResult<Shown> {
    let catalog = target
        .catalog
        .clone()
        .ok_or_else(|| ApiError::internal("no catalog"))?;
    if let Some(e) = target.duplicate.take() {
        return Err(e);
    }
    row.prefix = Some(reserve(state, &row, &plan, &target.instance.name).await?);
    let request = bind_request(&target, &catalog, &row, input.parameters);
    let outcome = state
        .broker
        .bind(
            &catalog.target(),
            &target.instance.guid,
            &row.guid,
            &request,
            &catalog.service.requires_list(),
            input.accepts_incomplete,
            &caller.broker_ctx(),
        )
        .await;
    let orphan = catalog.orphan_binding(&target.instance.guid, &row.guid);
    let reservation = Reservation::Binding(row.guid.clone());
    match outcome {
        Ok(BindOutcome::Created(data)) => {
            keep_created(state, &mut row, data, orphan, reservation).await?;
        }
        Ok(BindOutcome::Async { operation }) => {
            if let Some(refusal) = async_refusal(&catalog, input.accepts_incomplete) {
                orphans::discard(state, reservation, Some(orphan)).await;
                return Err(refusal);
            }
            operations::begin(
                state,
                Subject::Binding,
                &row.guid,
                OperationType::Create,
                operation.clone(),
                &catalog.plan,
            )
            .await?;
            row.broker_operation = operation;
        }
        Err(e) => {
            let orphan = e.needs_orphan_mitigation.then_some(orphan);
            orphans::discard(state, reservation, orphan).await;
            return Err(e.into());
        }
    }
    shown(state, row, false, target.space.guid, Vec::new())
}

fn bind_request(
    target: &BindTarget,
    catalog: &Catalog,
    row: &ServiceBinding,
    parameters: Option<Map<String, Value>>,
) -> BindRequest {
    BindRequest {
        service_id: catalog.service.unique_id.clone(),
        plan_id: catalog.plan.unique_id.clone(),
        app_guid: Some(target.app.guid.clone()),
        bind_resource: BindResource {
            app_guid: Some(target.app.guid.clone()),
            space_guid: Some(target.space.guid.clone()),
            credential_client_id: None,
        },
        context: CfContext {
            platform: "cloudfoundry",
            organization_guid: target.org.guid.clone(),
            space_guid: target.space.guid.clone(),
            organization_name: target.org.name.clone(),
            space_name: target.space.name.clone(),
            role: row.role.clone(),
        },
        parameters: parameters.filter(|p| !p.is_empty()),
    }
}

/// CC: async bindings need `bindings_retrievable` (credentials come from a later GET) and a
/// client that accepts them; otherwise the create fails and the broker's binding is cleaned up.
fn async_refusal(catalog: &Catalog, accepts_incomplete: bool) -> Option<ApiError> {
    if !catalog.service.bindings_retrievable {
        Some(ApiError::ServiceBindingInvalid(
            "Could not create asynchronous binding when bindings_retrievable is false.".into(),
        ))
    } else if !accepts_incomplete {
        Some(ApiError::ServiceBrokerRespondedAsyncWhenNotAllowed)
    } else {
        None
    }
}

/// Stores what the broker bound (credentials sealed). If the row is gone (deleted while the
/// broker was binding) or cannot be saved, the broker's binding is an orphan.
async fn keep_created(
    state: &AppState,
    row: &mut ServiceBinding,
    data: BindingData,
    orphan: orphans::Orphan,
    reservation: Reservation,
) -> ApiResult<()> {
    let (g, creds, drain, mounts) = (
        row.guid.clone(),
        state.crypto_seal(&data.credentials),
        data.syslog_drain_url.clone(),
        data.volume_mounts.clone(),
    );
    let saved = state
        .db
        .write(move |conn| {
            Ok(repo::bindings::complete_create(
                conn,
                &g,
                &creds,
                drain.as_deref(),
                &mounts,
                None,
            )?)
        })
        .await;
    match saved {
        Ok(1) => {}
        Ok(_) => {
            orphans::discard(state, Reservation::Gone, Some(orphan)).await;
            return Err(ApiError::ServiceBindingNotFound(row.guid.clone()));
        }
        Err(e) => {
            tracing::error!(binding = %row.guid, error = %e.log_text(), "saving a bound binding failed; unbinding at the broker");
            orphans::discard(state, reservation, Some(orphan)).await;
            return Err(e);
        }
    }
    // Kept in the clear for the answer (`shown` passes unsealed JSON through).
    row.credentials = data.credentials;
    row.syslog_drain_url = data.syslog_drain_url;
    row.volume_mounts = data.volume_mounts;
    row.set_last_operation(CREATED);
    row.last_operation_updated_at = Some(crate::db::now());
    Ok(())
}

/// Inserts the reserved row (the unique indexes decide races); returns its env-var prefix.
async fn reserve(
    state: &AppState,
    row: &ServiceBinding,
    plan: &BindPlan,
    instance_name: &str,
) -> ApiResult<String> {
    let prefixes = Prefixes::for_row(row, plan, instance_name);
    let insert = row.clone();
    let name = plan.name.clone();
    state
        .db
        .write(move |conn| insert_reserved(conn, insert, &prefixes, name.as_deref()))
        .await
}

/// How to choose a binding's env-var prefix at insert time.
#[derive(Clone)]
struct Prefixes {
    explicit: Option<String>,
    candidates: Vec<String>,
}

impl Prefixes {
    fn for_row(row: &ServiceBinding, plan: &BindPlan, instance_name: &str) -> Self {
        Prefixes {
            explicit: plan.prefix.clone(),
            candidates: code_engine::derived_prefixes(&plan.label, instance_name, &row.guid),
        }
    }
}

/// Inserts a new binding row, choosing its prefix among the app's free ones. Returns the prefix.
///
/// A prefix the client chose can be "taken". A derived one never fails a create: a parallel
/// create of the same app may take the candidate between the probe and the insert, and then the
/// next candidate is tried (each insert in a savepoint, so that a refused one leaves the
/// transaction usable on PostgreSQL).
fn insert_reserved(
    conn: &mut DbConnection,
    mut row: ServiceBinding,
    prefixes: &Prefixes,
    name: Option<&str>,
) -> ApiResult<String> {
    if let Some(p) = &prefixes.explicit {
        row.prefix = Some(p.clone());
        insert_row(conn, &row, name)?;
        return Ok(p.clone());
    }
    let fallback = format!("B_{}", row.guid.replace('-', "").to_ascii_uppercase());
    for candidate in prefixes.candidates.iter().chain(std::iter::once(&fallback)) {
        if repo::bindings::prefix_taken(conn, &row.app_guid, candidate)? {
            continue;
        }
        row.prefix = Some(candidate.clone());
        match crate::db::savepoint(conn, |c| insert_row(c, &row, name)) {
            Err(ApiError::ServiceBindingInvalid(_)) => continue, // taken meanwhile
            other => return other.map(|()| candidate.clone()),
        }
    }
    // The fallback holds this binding's own guid: no other binding can have taken it.
    Err(ApiError::internal(
        "no free env-var prefix, not even the binding's own",
    ))
}

/// Inserts the row, mapping unique-index violations to the client's errors.
fn insert_row(conn: &mut DbConnection, row: &ServiceBinding, name: Option<&str>) -> ApiResult<()> {
    let prefix = row.prefix.as_deref().unwrap_or_default();
    on_unique(repo::bindings::insert(conn, row), |v| {
        if v.is(
            "service_bindings_app_prefix_key",
            "service_bindings",
            &["app_guid", "prefix"],
        ) {
            return Some(prefix_taken(prefix));
        }
        unique_error(v, name)
    })
}

fn prefix_taken(prefix: &str) -> ApiError {
    ApiError::ServiceBindingInvalid(format!(
        "The prefix '{prefix}' is already used by another binding of this app; choose another prefix."
    ))
}

fn name_taken(name: &str) -> String {
    format!(
        "The binding name is invalid. App binding names must be unique. The app already has a binding with name '{name}'."
    )
}

fn unique_error(v: &crate::db::UniqueViolation, name: Option<&str>) -> Option<ApiError> {
    if v.is(
        "service_bindings_app_instance_key",
        "service_bindings",
        &["app_guid", "service_instance_guid"],
    ) {
        return Some(ApiError::ServiceBindingAppServiceTaken(
            ALREADY_BOUND.into(),
        ));
    }
    if v.is(
        "service_bindings_app_name_key",
        "service_bindings",
        &["app_guid", "name"],
    ) {
        return Some(ApiError::ServiceBindingAppServiceTaken(name_taken(
            name.unwrap_or_default(),
        )));
    }
    None
}

/// The error a binding of `app` to `instance` (named `name`) would meet on a unique index.
fn duplicate_error(
    conn: &mut DbConnection,
    app: &str,
    instance: &str,
    name: Option<&str>,
) -> ApiResult<Option<ApiError>> {
    if repo::bindings::find_by_app_and_instance(conn, app, instance)?.is_some() {
        return Ok(Some(ApiError::ServiceBindingAppServiceTaken(
            ALREADY_BOUND.into(),
        )));
    }
    if let Some(name) = name {
        if repo::bindings::find_by_app_and_name(conn, app, name)?.is_some() {
            return Ok(Some(ApiError::ServiceBindingAppServiceTaken(name_taken(
                name,
            ))));
        }
    }
    Ok(None)
}
