//! The service-binding lifecycle (CC `ServiceBindingCreate`/`ServiceBindingDelete`, v2).
//!
//! Create reserves the binding row first (state `create / in progress`), so the unique indexes
//! settle races between parallel requests before anyone calls a broker: of 64 identical creates,
//! one reaches the broker and 63 get `ServiceBindingAppServiceTaken`. The broker call then runs
//! with no connection held, and the row is completed, or removed (with orphan mitigation where
//! the OSB spec asks for it).

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::{authz, code_engine, new_guid, on_unique, orphans, Caller};
use crate::app::AppState;
use crate::broker::{
    BindOutcome, BindRequest, BindResource, BrokerTarget, CatalogIds, CfContext, UnbindOutcome,
};
use crate::db::models::{
    App, Organization, Service, ServiceBinding, ServiceBroker, ServiceInstance, ServicePlan, Space,
};
use crate::db::repo;
use crate::db::repo::bindings::BindingView;
use crate::error::{ApiError, ApiResult};

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

/// A binding as the API shows it, plus what the caller may see of it.
pub struct Shown {
    pub view: BindingView,
    pub show_credentials: bool,
    pub warnings: Vec<String>,
}

/// The managed side of an instance: plan, service, broker.
#[derive(Clone)]
pub struct Catalog {
    pub plan: ServicePlan,
    pub service: Service,
    pub broker: ServiceBroker,
}

impl Catalog {
    pub fn target(&self) -> BrokerTarget {
        BrokerTarget {
            url: self.broker.broker_url.clone(),
            username: self.broker.auth_username.clone(),
            password: self.broker.auth_password.clone(),
        }
    }

    pub fn ids(&self) -> CatalogIds {
        CatalogIds {
            service_id: self.service.unique_id.clone(),
            plan_id: self.plan.unique_id.clone(),
        }
    }

    /// A binding (or service key) this broker may hold that we will not keep.
    pub fn orphan_binding(&self, instance_guid: &str, binding_guid: &str) -> orphans::Orphan {
        orphans::Orphan::Binding {
            target: self.target(),
            broker_guid: self.broker.guid.clone(),
            instance_guid: instance_guid.to_string(),
            binding_guid: binding_guid.to_string(),
            ids: self.ids(),
        }
    }

    /// An instance this broker may hold that we will not keep.
    pub fn orphan_instance(&self, instance_guid: &str) -> orphans::Orphan {
        orphans::Orphan::Instance {
            target: self.target(),
            broker_guid: self.broker.guid.clone(),
            instance_guid: instance_guid.to_string(),
            ids: self.ids(),
        }
    }

    pub fn bindable(&self) -> bool {
        self.plan.bindable.unwrap_or(self.service.bindable)
    }
}

struct BindTarget {
    app: App,
    space: Space,
    org: Organization,
    instance: ServiceInstance,
    catalog: Option<Catalog>,
    key: Option<crate::db::models::ServiceKey>,
    /// The friendly duplicate error, looked up with the other reads (outside the single
    /// writer's transaction) and raised where CC raises it; the unique indexes still decide.
    duplicate: Option<ApiError>,
}

pub const ALREADY_BOUND: &str = "The app is already bound to the service.";

fn name_taken(name: &str) -> String {
    format!(
        "The binding name is invalid. App binding names must be unique. The app already has a binding with name '{name}'."
    )
}

/// CC's binding-name rules: at most 255 characters of `[A-Za-z0-9_-]`.
pub fn validate_name(name: &str) -> ApiResult<()> {
    if name.chars().count() > 255 {
        return Err(ApiError::ServiceBindingAppServiceTaken(
            "The binding name is invalid. App binding names must be less than 256 characters."
                .into(),
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(ApiError::ServiceBindingAppServiceTaken(
            "The binding name is invalid. Valid characters are alphanumeric, underscore, and dash."
                .into(),
        ));
    }
    Ok(())
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

pub async fn create(state: &AppState, caller: &Caller, input: CreateBinding) -> ApiResult<Shown> {
    authz::require_write_scope(&caller.actor)?;
    let name = input.name.filter(|n| !n.is_empty());
    let actor = caller.actor.clone();
    let (app_guid, si_guid) = (input.app_guid.clone(), input.service_instance_guid.clone());
    let key_ref = input.service_key.clone();
    let name_ref = name.clone();
    let mut target = state
        .db
        .read(move |conn| {
            let app = repo::apps::find(conn, &app_guid)?
                .ok_or_else(|| ApiError::AppNotFound(app_guid.clone()))?;
            let (instance, catalog) = repo::instances::find_with_catalog(conn, &si_guid)?
                .ok_or_else(|| ApiError::ServiceInstanceNotFound(si_guid.clone()))?;
            if !authz::can_write_space(conn, &actor, &app.space_guid)? {
                return Err(ApiError::NotAuthorized);
            }
            let (space, org) = repo::spaces::find_with_org(conn, &app.space_guid)?
                .ok_or_else(|| ApiError::internal("app without space"))?;
            // An existing credential: a service key of this instance, by guid or by name.
            let key = match &key_ref {
                None => None,
                Some(k) => {
                    let found = match repo::keys::find(conn, k)? {
                        Some(key) => Some(key),
                        None => repo::keys::find_by_name(conn, &instance.guid, k)?,
                    };
                    let key = found.ok_or_else(|| ApiError::ServiceKeyNotFound(k.clone()))?;
                    if key.service_instance_guid != instance.guid {
                        return Err(ApiError::ServiceBindingInvalid(format!(
                            "The service key {} belongs to another service instance; a credential can only be used with its own instance.",
                            key.name
                        )));
                    }
                    Some(key)
                }
            };
            let duplicate = duplicate_error(conn, &app.guid, &instance.guid, name_ref.as_deref())?;
            Ok(BindTarget {
                duplicate,
                key,
                app,
                space,
                org,
                instance,
                catalog: catalog.map(|(plan, service, broker)| Catalog {
                    plan,
                    service,
                    broker,
                }),
            })
        })
        .await?;

    // CC's order of checks (ServiceBindingCreate#create, then the model's validations).
    if let Some(c) = &target.catalog {
        if !c.bindable() {
            return Err(ApiError::UnbindableService);
        }
    } else if !target.instance.is_user_provided {
        return Err(ApiError::internal("managed instance without a plan"));
    }
    if target.instance.space_guid != target.app.space_guid {
        return Err(ApiError::ServiceBindingAppServiceTaken(
            "The service instance and the app are in different spaces.".into(),
        ));
    }
    if target.instance.operation_in_progress() {
        return Err(ApiError::AsyncServiceInstanceOperationInProgress(
            target.instance.name.clone(),
        ));
    }
    if let Some(n) = &name {
        validate_name(n)?;
    }
    let extended = input.role.is_some() || input.prefix.is_some() || input.service_key.is_some();
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
        (None, None) => {
            if input.role.is_some() {
                return Err(ApiError::ServiceBindingInvalid(
                    "Roles apply to managed service instances only.".into(),
                ));
            }
            None
        }
    };
    let label = target
        .catalog
        .as_ref()
        .map(|c| c.service.label.clone())
        .unwrap_or_else(|| "user-provided".into());

    let mut warnings = Vec::new();
    let now = crate::db::now();
    let guid = new_guid();
    let mut row = ServiceBinding {
        id: 0,
        guid: guid.clone(),
        app_guid: target.app.guid.clone(),
        service_instance_guid: target.instance.guid.clone(),
        name: name.clone(),
        credentials: "{}".into(),
        syslog_drain_url: None,
        volume_mounts: "[]".into(),
        last_operation_type: Some("create".into()),
        last_operation_state: Some("in progress".into()),
        last_operation_description: None,
        broker_operation: None,
        last_operation_created_at: Some(now),
        last_operation_updated_at: Some(now),
        created_at: now,
        updated_at: now,
        role: role.clone(),
        prefix: None,
        service_key_guid: target.key.as_ref().map(|k| k.guid.clone()),
        extended,
    };
    let prefix_plan = PrefixPlan {
        explicit: input.prefix.clone(),
        candidates: code_engine::derived_prefixes(&label, &target.instance.name, &guid),
    };

    // An existing credential: no broker call, the key's credentials are the binding's.
    if let Some(key) = &target.key {
        row.credentials = key.credentials.clone();
        row.last_operation_state = Some("succeeded".into());
        let insert_row = row.clone();
        let n = name.clone();
        let key_name = key.name.clone();
        let plan = prefix_plan.clone();
        row.prefix = Some(
            state
                .db
                .write(move |conn| {
                    if repo::bindings::find_by_app_and_instance(conn, &insert_row.app_guid, &insert_row.service_instance_guid)?
                        .is_some_and(|b| b.service_key_guid == insert_row.service_key_guid)
                    {
                        return Err(ApiError::ServiceBindingAppServiceTaken(format!(
                            "The credential {key_name} is already used by a binding of this app; a credential can serve several apps, but each app once."
                        )));
                    }
                    precheck_duplicates(conn, &insert_row)?;
                    insert_reserved(conn, insert_row, &plan, n.as_deref())
                })
                .await?,
        );
        row.credentials = state.crypto_open(&row.credentials)?;
        return Ok(Shown {
            view: BindingView {
                binding: row,
                user_provided: target.instance.is_user_provided,
                space_guid: target.space.guid,
            },
            show_credentials: true,
            warnings,
        });
    }

    let Some(catalog) = target.catalog.clone() else {
        // User-provided: no broker; the instance's credentials and drain are the binding's.
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
        row.last_operation_state = Some("succeeded".into());
        if let Some(e) = target.duplicate.take() {
            return Err(e);
        }
        let insert_row = row.clone();
        let n = name.clone();
        let plan = prefix_plan.clone();
        row.prefix = Some(
            state
                .db
                .write(move |conn| insert_reserved(conn, insert_row, &plan, n.as_deref()))
                .await?,
        );
        row.credentials = state.crypto_open(&row.credentials)?;
        return Ok(Shown {
            view: BindingView {
                binding: row,
                user_provided: true,
                space_guid: target.space.guid,
            },
            show_credentials: true,
            warnings,
        });
    };

    // Reserve: the unique indexes decide races here, before any broker call.
    if let Some(e) = target.duplicate.take() {
        return Err(e);
    }
    let reserve = row.clone();
    let n = name.clone();
    let plan = prefix_plan.clone();
    row.prefix = Some(
        state
            .db
            .write(move |conn| insert_reserved(conn, reserve, &plan, n.as_deref()))
            .await?,
    );

    let request = BindRequest {
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
            role: role.clone(),
        },
        parameters: input.parameters.filter(|p| !p.is_empty()),
    };
    let requires = catalog.service.requires_list();
    let outcome = state
        .broker
        .bind(
            &catalog.target(),
            &target.instance.guid,
            &guid,
            &request,
            &requires,
            input.accepts_incomplete,
            &caller.broker_ctx(),
        )
        .await;

    let orphan = catalog.orphan_binding(&target.instance.guid, &guid);
    let reservation = orphans::Reservation::Binding(guid.clone());

    match outcome {
        Ok(BindOutcome::Created(data)) => {
            let (g, creds, drain, mounts) = (
                guid.clone(),
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
                    // Deleted while the broker was binding: the broker's binding is an orphan.
                    orphans::discard(state, orphans::Reservation::Gone, Some(orphan)).await;
                    return Err(ApiError::ServiceBindingNotFound(guid));
                }
                Err(e) => {
                    tracing::error!(binding = %guid, error = %e.log_text(), "saving a bound binding failed; unbinding at the broker");
                    orphans::discard(state, reservation, Some(orphan)).await;
                    return Err(e);
                }
            }
            row.credentials = data.credentials;
            row.syslog_drain_url = data.syslog_drain_url;
            row.volume_mounts = data.volume_mounts;
            row.last_operation_state = Some("succeeded".into());
            row.last_operation_updated_at = Some(crate::db::now());
        }
        Ok(BindOutcome::Async { operation }) => {
            // CC: async bindings need `bindings_retrievable` (credentials come from a later GET)
            // and a client that accepts them; otherwise fail and clean up at the broker.
            let refusal = if !catalog.service.bindings_retrievable {
                Some(ApiError::ServiceBindingInvalid(
                    "Could not create asynchronous binding when bindings_retrievable is false."
                        .into(),
                ))
            } else if !input.accepts_incomplete {
                Some(ApiError::ServiceBrokerRespondedAsyncWhenNotAllowed)
            } else {
                None
            };
            if let Some(err) = refusal {
                orphans::discard(state, reservation, Some(orphan)).await;
                return Err(err);
            }
            let g = guid.clone();
            let op = operation.clone();
            let poll = crate::jobs::Job::poll_binding(&guid, &catalog.plan, "create");
            state
                .db
                .write(move |conn| {
                    repo::bindings::set_operation(
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
            row.broker_operation = operation;
        }
        Err(e) => {
            let orphan = e.needs_orphan_mitigation.then_some(orphan);
            orphans::discard(state, reservation, orphan).await;
            return Err(e.into());
        }
    }
    Ok(Shown {
        view: BindingView {
            binding: row,
            user_provided: false,
            space_guid: target.space.guid,
        },
        show_credentials: true,
        warnings,
    })
}

/// How to choose a binding's env-var prefix at insert time.
#[derive(Clone)]
struct PrefixPlan {
    explicit: Option<String>,
    candidates: Vec<String>,
}

/// Inserts a new binding row, choosing its prefix among the app's free ones. Returns the prefix.
///
/// A prefix the client chose can be "taken". A derived one never fails a create: a parallel
/// create of the same app may take the candidate between the probe and the insert, and then the
/// next candidate is tried (each insert in a savepoint, so that a refused one leaves the
/// transaction usable on PostgreSQL).
fn insert_reserved(
    conn: &mut crate::db::DbConnection,
    mut row: ServiceBinding,
    plan: &PrefixPlan,
    name: Option<&str>,
) -> ApiResult<String> {
    if let Some(p) = &plan.explicit {
        row.prefix = Some(p.clone());
        insert_row(conn, &row, name)?;
        return Ok(p.clone());
    }
    let fallback = format!("B_{}", row.guid.replace('-', "").to_ascii_uppercase());
    for candidate in plan.candidates.iter().chain(std::iter::once(&fallback)) {
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
fn insert_row(
    conn: &mut crate::db::DbConnection,
    row: &ServiceBinding,
    name: Option<&str>,
) -> ApiResult<()> {
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

/// Bindings that use a service key's credentials.
pub fn count_using_key(conn: &mut crate::db::DbConnection, key: &str) -> ApiResult<i64> {
    Ok(repo::bindings::count_using_key(conn, key)?)
}

/// Friendly duplicate errors before the insert (the unique indexes remain the real guard).
fn precheck_duplicates(conn: &mut crate::db::DbConnection, row: &ServiceBinding) -> ApiResult<()> {
    match duplicate_error(
        conn,
        &row.app_guid,
        &row.service_instance_guid,
        row.name.as_deref(),
    )? {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The error a binding of `app` to `instance` (named `name`) would meet on a unique index.
fn duplicate_error(
    conn: &mut crate::db::DbConnection,
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

/// Loads a binding the caller may see, with what they may see of it.
pub async fn get(state: &AppState, caller: &Caller, guid: &str) -> ApiResult<Shown> {
    authz::require_read_scope(&caller.actor)?;
    let actor = caller.actor.clone();
    let g = guid.to_string();
    state
        .db
        .read(move |conn| {
            let view = repo::bindings::find_view(conn, &g)?
                .ok_or_else(|| ApiError::ServiceBindingNotFound(g.clone()))?;
            let roles = if actor.reads_everything() {
                None
            } else {
                Some(authz::load_roles(conn, &actor)?)
            };
            // CC finds the binding unscoped, then refuses access with 403.
            if let Some(r) = &roles {
                if !r.can_read_space(&view.space_guid) {
                    return Err(ApiError::NotAuthorized);
                }
            }
            let show_credentials =
                authz::can_see_secrets_in(roles.as_ref(), &actor, &view.space_guid);
            Ok(Shown {
                view,
                show_credentials,
                warnings: Vec::new(),
            })
        })
        .await
        .and_then(|mut shown| {
            if shown.show_credentials {
                shown.view.binding.credentials =
                    state.crypto_open(&shown.view.binding.credentials)?;
            }
            Ok(shown)
        })
}

/// What a delete did.
pub enum Deleted {
    /// Gone (204).
    Gone { warnings: Vec<String> },
    /// The broker is unbinding asynchronously (202 with the binding).
    InProgress(Box<Shown>),
}

pub async fn delete(
    state: &AppState,
    caller: &Caller,
    guid: &str,
    accepts_incomplete: bool,
) -> ApiResult<Deleted> {
    authz::require_write_scope(&caller.actor)?;
    let actor = caller.actor.clone();
    let g = guid.to_string();
    let (view, instance, catalog, app) = state
        .db
        .write(move |conn| {
            let view = repo::bindings::find_view(conn, &g)?
                .ok_or_else(|| ApiError::ServiceBindingNotFound(g.clone()))?;
            if !authz::can_write_space(conn, &actor, &view.space_guid)? {
                return Err(ApiError::NotAuthorized);
            }
            let (instance, catalog) =
                repo::instances::find_with_catalog(conn, &view.binding.service_instance_guid)?
                    .ok_or_else(|| ApiError::internal("binding without instance"))?;
            let app = repo::apps::find(conn, &view.binding.app_guid)?
                .ok_or_else(|| ApiError::internal("binding without app"))?;
            // A delete already running: CC's in-progress error. (A create in progress may be
            // deleted: OSB says the broker must stop the creation.)
            if view.binding.operation_in_progress()
                && view.binding.last_operation_type.as_deref() != Some("create")
            {
                return Err(ApiError::AsyncServiceBindingOperationInProgress(
                    app.name.clone(),
                    instance.name.clone(),
                ));
            }
            // User-provided instances and bindings that reuse a service key hold no broker
            // credential of their own: nothing to unbind at the broker.
            let local_only = catalog.is_none() || view.binding.service_key_guid.is_some();
            let catalog = if local_only { None } else { catalog };
            if local_only {
                repo::bindings::delete(conn, &g)?;
            } else if repo::bindings::claim_for_delete(conn, &g)? == 0 {
                return Err(ApiError::AsyncServiceBindingOperationInProgress(
                    app.name.clone(),
                    instance.name.clone(),
                ));
            }
            Ok((view, instance, catalog, app))
        })
        .await?;

    let Some((plan, service, broker)) = catalog else {
        return Ok(Deleted::Gone { warnings: vec![] });
    };
    let catalog = Catalog {
        plan,
        service,
        broker,
    };
    let outcome = state
        .broker
        .unbind(
            &catalog.target(),
            &instance.guid,
            guid,
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
                .write(move |conn| Ok(repo::bindings::delete(conn, &g)?))
                .await?;
            Ok(Deleted::Gone { warnings: vec![] })
        }
        Ok(UnbindOutcome::Async { operation }) if accepts_incomplete => {
            let poll = crate::jobs::Job::poll_binding(guid, &catalog.plan, "delete");
            let op = operation.clone();
            state
                .db
                .write(move |conn| {
                    repo::bindings::set_operation(
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
            let mut view = view;
            let now = crate::db::now();
            view.binding.last_operation_type = Some("delete".into());
            view.binding.last_operation_state = Some("in progress".into());
            view.binding.last_operation_description = None;
            view.binding.broker_operation = operation;
            view.binding.last_operation_created_at = Some(now);
            view.binding.last_operation_updated_at = Some(now);
            let show_credentials = true;
            view.binding.credentials = state.crypto_open(&view.binding.credentials)?;
            Ok(Deleted::InProgress(Box::new(Shown {
                view,
                show_credentials,
                warnings: vec![],
            })))
        }
        Ok(UnbindOutcome::Async { .. }) => {
            // The client did not accept async; CC deletes the row and warns.
            state
                .db
                .write(move |conn| Ok(repo::bindings::delete(conn, &g)?))
                .await?;
            Ok(Deleted::Gone {
                warnings: vec![format!(
                    "The service broker responded asynchronously to the unbind request, but the accepts_incomplete query parameter was false or not given. The service binding may not have been successfully deleted on the service broker."
                )],
            })
        }
        Err(e) => {
            let description = e.description.clone();
            let _ = state
                .db
                .write(move |conn| {
                    Ok(repo::bindings::set_operation(
                        conn,
                        &g,
                        "delete",
                        "failed",
                        Some(&description),
                        None,
                    )?)
                })
                .await;
            let prefix = format!(
                "An unbind operation for the service binding between app {} and service instance {} failed: ",
                app.name, instance.name
            );
            if e.kind == crate::broker::BrokerErrorKind::ConcurrencyError {
                return Err(ApiError::AsyncServiceBindingOperationInProgress(
                    app.name,
                    instance.name,
                ));
            }
            Err(ApiError::Broker(e.wrap_description(&prefix)))
        }
    }
}

/// `GET /v2/service_bindings/:guid/parameters`: from the broker when it supports fetching.
pub async fn parameters(state: &AppState, caller: &Caller, guid: &str) -> ApiResult<Value> {
    let shown = get(state, caller, guid).await?;
    let si = shown.view.binding.service_instance_guid.clone();
    let catalog = state
        .db
        .read(move |conn| Ok(repo::instances::find_with_catalog(conn, &si)?))
        .await?
        .and_then(|(_, c)| c)
        .map(|(plan, service, broker)| Catalog {
            plan,
            service,
            broker,
        });
    let Some(catalog) = catalog.filter(|c| c.service.bindings_retrievable) else {
        return Err(ApiError::ServiceFetchBindingParametersNotSupported);
    };
    let data = state
        .broker
        .fetch_binding(
            &catalog.target(),
            &shown.view.binding.service_instance_guid,
            guid,
            &catalog.ids(),
            &catalog.service.requires_list(),
            &caller.broker_ctx(),
        )
        .await?;
    Ok(match data.parameters {
        Some(v @ Value::Object(_)) => v,
        _ => Value::Object(Map::new()),
    })
}

/// A page of bindings, each with whether the caller may see its credentials.
pub async fn list(
    state: &AppState,
    caller: &Caller,
    params: &crate::api::query::ListParams,
    scope: repo::bindings::Scope<'_>,
) -> ApiResult<repo::Loaded<(BindingView, bool)>> {
    authz::require_read_scope(&caller.actor)?;
    let page = params.page_request(false)?;
    let filters = params.filters.clone();
    let actor = caller.actor.clone();
    let scope = match scope {
        repo::bindings::Scope::All => OwnedScope::All,
        repo::bindings::Scope::App(a) => OwnedScope::App(a.to_string()),
        repo::bindings::Scope::Instance(i) => OwnedScope::Instance(i.to_string()),
    };
    // One snapshot: under concurrent creates the total must count the rows of the page.
    let mut loaded = state
        .db
        .read_snapshot(move |conn| {
            let roles = if actor.reads_everything() {
                None
            } else {
                Some(authz::load_roles(conn, &actor)?)
            };
            let visible = roles.as_ref().map(|r| r.readable_spaces.as_slice());
            let loaded = repo::bindings::list(conn, &filters, scope.borrow(), visible, &page)?;
            let rows = loaded
                .rows
                .into_iter()
                .map(|v| {
                    let show = authz::can_see_secrets_in(roles.as_ref(), &actor, &v.space_guid);
                    (v, show)
                })
                .collect();
            Ok(repo::Loaded {
                total: loaded.total,
                rows,
            })
        })
        .await?;
    for (view, show) in loaded.rows.iter_mut() {
        if *show {
            view.binding.credentials = state.crypto_open(&view.binding.credentials)?;
        }
    }
    Ok(loaded)
}

enum OwnedScope {
    All,
    App(String),
    Instance(String),
}

impl OwnedScope {
    fn borrow(&self) -> repo::bindings::Scope<'_> {
        match self {
            OwnedScope::All => repo::bindings::Scope::All,
            OwnedScope::App(a) => repo::bindings::Scope::App(a),
            OwnedScope::Instance(i) => repo::bindings::Scope::Instance(i),
        }
    }
}

/// For nested lists: the app must exist and be visible.
pub async fn require_app(state: &AppState, caller: &Caller, guid: &str) -> ApiResult<()> {
    crate::service::resources::get_app(state, caller, guid)
        .await
        .map(|_| ())
}

/// For nested lists: the instance must exist (of the right kind) and be visible.
pub async fn require_instance(
    state: &AppState,
    caller: &Caller,
    guid: &str,
    user_provided: bool,
) -> ApiResult<()> {
    let kind = if user_provided {
        repo::instances::Kind::UserProvided
    } else {
        repo::instances::Kind::Both
    };
    crate::service::instances::get(state, caller, guid, kind)
        .await
        .map(|_| ())
}

/// `DELETE /v2/service_bindings/:guid?async=true`: the unbind runs as a job.
pub async fn delete_as_job(
    state: &AppState,
    caller: &Caller,
    guid: &str,
) -> ApiResult<crate::jobs::JobRow> {
    authz::require_write_scope(&caller.actor)?;
    let actor = caller.actor.clone();
    let g = guid.to_string();
    let job = crate::jobs::Job::DeleteBinding {
        binding_guid: guid.to_string(),
        user_id: caller.actor.user_id.clone(),
        request_id: Some(caller.request_id.clone()),
    };
    let row = state
        .db
        .write(move |conn| {
            let view = repo::bindings::find_view(conn, &g)?
                .ok_or_else(|| ApiError::ServiceBindingNotFound(g.clone()))?;
            if !authz::can_write_space(conn, &actor, &view.space_guid)? {
                return Err(ApiError::NotAuthorized);
            }
            if view.binding.operation_in_progress() {
                let app = repo::apps::find(conn, &view.binding.app_guid)?;
                let si = repo::instances::find(conn, &view.binding.service_instance_guid)?;
                return Err(ApiError::AsyncServiceBindingOperationInProgress(
                    app.map(|a| a.name).unwrap_or_default(),
                    si.map(|s| s.name).unwrap_or_default(),
                ));
            }
            let job_guid = crate::jobs::enqueue(conn, &job)?;
            crate::jobs::find(conn, &job_guid)?.ok_or_else(|| ApiError::internal("job vanished"))
        })
        .await?;
    state.jobs_wakeup.notify_one();
    Ok(row)
}

/// One binding's outcome in an unbind-all.
#[derive(Debug, serde::Serialize)]
pub struct UnbindResult {
    pub guid: String,
    pub name: Option<String>,
    pub service_instance_guid: String,
    /// `deleted`, `in progress` (the broker unbinds asynchronously) or `failed`.
    pub state: &'static str,
    pub error: Option<serde_json::Value>,
}

/// Code Engine's `unbind --all`: removes every binding of the app, each through its broker.
/// A failure is reported per binding and stops nothing; a binding whose broker refused stays,
/// with its last operation failed.
pub async fn unbind_all(
    state: &AppState,
    caller: &Caller,
    app_guid: &str,
    accepts_incomplete: bool,
) -> ApiResult<Vec<UnbindResult>> {
    authz::require_write_scope(&caller.actor)?;
    let g = app_guid.to_string();
    let actor = caller.actor.clone();
    let bindings = state
        .db
        .read(move |conn| {
            let app =
                repo::apps::find(conn, &g)?.ok_or_else(|| ApiError::AppNotFound(g.clone()))?;
            if !authz::can_write_space(conn, &actor, &app.space_guid)? {
                return Err(ApiError::NotAuthorized);
            }
            Ok(repo::bindings::for_app(conn, &g)?)
        })
        .await?;
    let mut results = Vec::with_capacity(bindings.len());
    for b in bindings {
        let outcome = delete(state, caller, &b.guid, accepts_incomplete).await;
        let (state_name, error) = match outcome {
            Ok(Deleted::Gone { .. }) => ("deleted", None),
            Ok(Deleted::InProgress(_)) => ("in progress", None),
            Err(ApiError::ServiceBindingNotFound(_)) => ("deleted", None),
            Err(e) => {
                let body: serde_json::Value =
                    serde_json::from_slice(&e.body()).unwrap_or(serde_json::Value::Null);
                ("failed", Some(body))
            }
        };
        results.push(UnbindResult {
            guid: b.guid,
            name: b.name,
            service_instance_guid: b.service_instance_guid,
            state: state_name,
            error,
        });
    }
    Ok(results)
}

/// What a page of bindings embeds at `inline-relations-depth` (CC's relations presenter, with
/// a binding at the root): each binding's app and service instance, and at depth 2 their
/// spaces and the instance's plan. The instance's and the app's own binding lists are not
/// embedded: CC leaves a relation back to the root's kind as a link.
#[derive(Default)]
pub struct Related {
    pub apps: HashMap<String, App>,
    pub instances: HashMap<String, crate::service::instances::InstanceView>,
    pub spaces: HashMap<String, Space>,
    pub plans: HashMap<String, ServicePlan>,
}

/// Loads [`Related`] for a page in one read (a handful of queries, whatever the page size). The
/// bindings were shown to the caller, so their apps and instances (same space) may be too; an
/// instance's credentials are shown where its binding's are.
pub async fn related(
    state: &AppState,
    rows: &[(BindingView, bool)],
    depth: u8,
) -> ApiResult<Related> {
    let app_guids = distinct(rows.iter().map(|(v, _)| v.binding.app_guid.as_str()));
    let instance_guids = distinct(
        rows.iter()
            .map(|(v, _)| v.binding.service_instance_guid.as_str()),
    );
    let shown: HashMap<String, bool> = rows
        .iter()
        .map(|(v, show)| (v.binding.service_instance_guid.clone(), *show))
        .collect();
    let (apps, instances, plans, spaces) = state
        .db
        .read_snapshot(move |conn| {
            let apps = repo::apps::find_many(conn, &app_guids)?;
            let instances = repo::instances::find_many(conn, &instance_guids)?;
            let plan_guids = distinct(
                instances
                    .iter()
                    .filter_map(|i| i.service_plan_guid.as_deref()),
            );
            let plans = repo::brokers::find_plans(conn, &plan_guids)?;
            let spaces = if depth > 1 {
                let space_guids = distinct(
                    apps.iter()
                        .map(|a| a.space_guid.as_str())
                        .chain(instances.iter().map(|i| i.space_guid.as_str())),
                );
                repo::spaces::find_many(conn, &space_guids)?
            } else {
                Vec::new()
            };
            Ok((apps, instances, plans, spaces))
        })
        .await?;
    let plans: HashMap<String, ServicePlan> =
        plans.into_iter().map(|p| (p.guid.clone(), p)).collect();
    let mut related = Related {
        apps: apps.into_iter().map(|a| (a.guid.clone(), a)).collect(),
        spaces: spaces.into_iter().map(|s| (s.guid.clone(), s)).collect(),
        ..Related::default()
    };
    for instance in instances {
        let show_credentials = shown.get(&instance.guid).copied().unwrap_or(false);
        let service_guid = instance
            .service_plan_guid
            .as_ref()
            .and_then(|p| plans.get(p))
            .map(|p| p.service_guid.clone());
        let view = crate::service::instances::open_view(
            state,
            crate::service::instances::InstanceView {
                instance,
                service_guid,
                show_credentials,
            },
        )?;
        related.instances.insert(view.instance.guid.clone(), view);
    }
    if depth > 1 {
        related.plans = plans;
    }
    Ok(related)
}

fn distinct<'a>(guids: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = guids.map(str::to_string).collect();
    out.sort_unstable();
    out.dedup();
    out
}
