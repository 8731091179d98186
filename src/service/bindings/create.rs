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

use super::reserve::{duplicate_error, insert_reserved, reserve, Prefixes};
use super::Shown;
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
use crate::service::{authz, code_engine, new_guid, Caller};

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
    /// Code Engine's "existing secret": use the credential of this other binding (guid) of
    /// the same instance.
    pub credential_binding: Option<String>,
}

/// What a create request names, as stored.
pub struct BindTarget {
    pub app: App,
    pub space: Space,
    pub org: Organization,
    pub instance: ServiceInstance,
    pub catalog: Option<Catalog>,
    pub key: Option<ServiceKey>,
    /// The binding whose credential the request reuses.
    pub source: Option<ServiceBinding>,
    /// The friendly duplicate error, looked up with the other reads (outside the single
    /// writer's transaction) and raised where CC raises it; the unique indexes still decide.
    pub duplicate: Option<ApiError>,
}

/// How the binding gets its credential.
#[derive(Debug)]
pub enum Strategy {
    /// An existing service key's, or another binding's: no broker call.
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
    let source_ref = input.credential_binding.clone();
    let name = input.name.clone().filter(|n| !n.is_empty());
    state
        .db
        .read(move |conn| {
            // Every app has its space and org (foreign keys): a missing row is a missing app.
            let (app, space, org) = repo::apps::find_with_space_and_org(conn, &app_guid)?
                .ok_or_else(|| ApiError::AppNotFound(app_guid.clone()))?;
            let (instance, catalog) = repo::instances::find_with_catalog(conn, &si_guid)?
                .ok_or_else(|| ApiError::ServiceInstanceNotFound(si_guid.clone()))?;
            authz::require_binding_writer(conn, &actor, &app.space_guid)?;
            let mut key = match &key_ref {
                Some(k) => Some(find_key(conn, &instance, k)?),
                None => None,
            };
            let mut source = match &source_ref {
                Some(b) => Some(find_source(conn, &instance, b)?),
                None => None,
            };
            // A binding that itself reuses a key passes on the key.
            if let Some(k) = source.as_ref().and_then(|s| s.service_key_guid.clone()) {
                key = repo::keys::find(conn, &k)?;
                source = None;
            }
            let duplicate = duplicate_error(conn, &app.guid, &instance.guid, name.as_deref())?;
            Ok(BindTarget {
                duplicate,
                key,
                source,
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

/// An existing credential: another binding of this instance, whose own credential it is.
fn find_source(
    conn: &mut DbConnection,
    instance: &ServiceInstance,
    guid: &str,
) -> ApiResult<ServiceBinding> {
    let source = repo::bindings::find(conn, guid)?
        .ok_or_else(|| ApiError::ServiceBindingNotFound(guid.to_string()))?;
    if source.service_instance_guid != instance.guid {
        return Err(ApiError::ServiceBindingInvalid(
            "The binding's credential belongs to another service instance; a credential can only be used with its own instance.".into(),
        ));
    }
    if instance.is_user_provided || !source.is_created() {
        return Err(ApiError::ServiceBindingInvalid(
            "Only the credential of a created binding of a managed service instance can be reused."
                .into(),
        ));
    }
    Ok(source)
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
    if target.source.is_some() && input.role.is_some() {
        return Err(ApiError::ServiceBindingInvalid(
            "A reused credential keeps its role; give a role only for new credentials.".into(),
        ));
    }
    let role = match (&target.catalog, &target.key) {
        // A service key carries its own credential; a role applies to new credentials only.
        (_, Some(_)) => None,
        (_, None) if target.source.is_some() => target.source.as_ref().and_then(|s| s.role.clone()),
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
        (None, _) if target.source.is_some() => Strategy::ExistingKey,
        (None, None) => Strategy::UserProvided,
        (None, Some(_)) => Strategy::Broker,
    };
    Ok(BindPlan {
        strategy,
        name,
        role,
        extended: input.role.is_some()
            || input.prefix.is_some()
            || input.service_key.is_some()
            || input.credential_binding.is_some(),
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
        // Code Engine lists and unbinds bindings by name: an unnamed one gets the seed's.
        name: Some(
            plan.name
                .clone()
                .unwrap_or_else(|| code_engine::default_binding_name(&target.app.name)),
        ),
        name_generated: plan.name.is_none(),
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
        credential_binding_guid: target
            .source
            .as_ref()
            .map(|s| s.broker_binding_id().to_string()),
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

/// With an existing credential (a service key's, or another binding's): no broker call. One
/// credential serves several apps, each app once.
async fn bind_with_key(
    state: &AppState,
    target: BindTarget,
    mut row: ServiceBinding,
    plan: BindPlan,
) -> ApiResult<Shown> {
    let (credentials, key_name) = match (&target.key, &target.source) {
        (Some(key), _) => (key.credentials.clone(), key.name.clone()),
        (None, Some(source)) => (source.credentials.clone(), source.guid.clone()),
        (None, None) => return Err(ApiError::internal("no existing credential")),
    };
    row.credentials = credentials;
    row.set_last_operation(CREATED);
    let prefixes = Prefixes::for_row(&row, &plan, &target.instance.name);
    let insert = row.clone();
    let name = plan.name.clone();
    state
        .db
        .write(move |conn| {
                let existing =
                    repo::bindings::find_by_app_and_instance(conn, &insert.app_guid, &insert.service_instance_guid)?;
                if existing.is_some_and(|b| b.service_key_guid.is_some() && b.service_key_guid == insert.service_key_guid) {
                    return Err(ApiError::ServiceBindingAppServiceTaken(format!(
                        "The credential {key_name} is already used by a binding of this app; a credential can serve several apps, but each app once."
                    )));
                }
                if let Some(e) = duplicate_error(conn, &insert.app_guid, &insert.service_instance_guid, name.as_deref())? {
                    return Err(e);
                }
                insert_reserved(conn, insert, &prefixes, name.as_deref())
            })
        .await?
        .apply_to(&mut row);
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
    row.syslog_drain_url = target
        .instance
        .syslog_drain_url
        .as_deref()
        .map(crate::broker::encode_syslog_drain_url_commas);
    row.set_last_operation(CREATED);
    if let Some(e) = target.duplicate.take() {
        return Err(e);
    }
    reserve(state, &row, &plan, &target.instance.name)
        .await?
        .apply_to(&mut row);
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
    reserve(state, &row, &plan, &target.instance.name)
        .await?
        .apply_to(&mut row);
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
    let saved: ApiResult<usize> = state
        .db
        .write_single(move |conn| {
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
