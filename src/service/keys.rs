//! Service keys (`cf create-service-key`): a binding at the broker with no app. Like bindings,
//! the name is reserved first (unique per instance), then the broker is called with no
//! connection held.

use serde_json::{Map, Value};

use super::catalog::Catalog;
use super::{authz, new_guid, on_unique, orphans, Caller};
use crate::app::AppState;
use crate::broker::{BindOutcome, BindRequest, BindResource, CfContext, UnbindOutcome};
use crate::db::models::ServiceKey;
use crate::db::repo::ListQuery;
use crate::db::repo::{self, Loaded};
use crate::db::DbConnection;
use crate::error::{ApiError, ApiResult};

pub struct KeyView {
    pub key: ServiceKey,
    pub show_credentials: bool,
}

pub fn count_for_instance(conn: &mut DbConnection, instance: &str) -> ApiResult<i64> {
    Ok(repo::keys::count_for_instance(conn, instance)?)
}

/// A `POST /v2/service_keys` request.
pub struct CreateKey {
    pub instance_guid: String,
    pub name: String,
    pub parameters: Option<Map<String, Value>>,
    /// Code Engine: the credential's IAM role ("You must specify the IAM role for the service
    /// credential"); validated like a binding's, `Manager` (or the first offered) by default.
    pub role: Option<String>,
}

/// What a key is made for: the instance with its catalog, space and org.
struct KeyTarget {
    instance: crate::db::models::ServiceInstance,
    catalog: Catalog,
    space: crate::db::models::Space,
    org: crate::db::models::Organization,
}

pub async fn create(state: &AppState, caller: &Caller, input: CreateKey) -> ApiResult<KeyView> {
    authz::require_write_scope(&caller.actor)?;
    validate_name(&input.name)?;
    let target = load_target(state, caller, &input.instance_guid).await?;
    let (catalog, instance) = (&target.catalog, &target.instance);
    if !catalog.bindable() {
        return Err(ApiError::UnbindableService);
    }
    if instance.last_operation().in_progress() {
        return Err(ApiError::AsyncServiceInstanceOperationInProgress(
            instance.name.clone(),
        ));
    }
    let role =
        super::code_engine::resolve_role(&catalog.service, &catalog.plan, input.role.as_deref())
            .map_err(|e| match e {
                ApiError::ServiceBindingInvalid(why) => ApiError::ServiceKeyInvalid(why),
                other => other,
            })?;
    let now = crate::db::now();
    let mut key = ServiceKey {
        id: 0,
        guid: new_guid(),
        name: input.name.clone(),
        service_instance_guid: instance.guid.clone(),
        credentials: "{}".into(),
        created_at: now,
        updated_at: now,
        role: Some(role),
    };
    reserve(state, &key).await?;
    let request = bind_request(&target, &key, input.parameters);
    let outcome = state
        .broker
        .bind(
            &catalog.target(),
            &instance.guid,
            &key.guid,
            &request,
            &catalog.service.requires_list(),
            false,
            &caller.broker_ctx(),
        )
        .await;
    let orphan = catalog.orphan_binding(&instance.guid, &key.guid);
    store_credentials(state, &mut key, outcome, orphan).await?;
    Ok(KeyView {
        key,
        show_credentials: true,
    })
}

fn validate_name(name: &str) -> ApiResult<()> {
    if name.trim().is_empty() {
        return Err(ApiError::ServiceKeyInvalid("name presence".into()));
    }
    if name.chars().count() > 255 {
        return Err(ApiError::ServiceKeyInvalid(
            "name is too long (maximum is 255 characters)".into(),
        ));
    }
    Ok(())
}

/// The instance (managed: keys of user-provided instances are CC's error), with the caller's
/// right to write in its space checked.
async fn load_target(state: &AppState, caller: &Caller, instance: &str) -> ApiResult<KeyTarget> {
    let actor = caller.actor.clone();
    let si = instance.to_string();
    let (instance, catalog, space, org) = state
        .db
        .read(move |conn| {
            let (instance, catalog) =
                repo::instances::find_with_catalog(conn, &si)?.ok_or_else(|| {
                    ApiError::InvalidRelation(format!(
                        "Could not find VCAP::CloudController::ServiceInstance with guid: {si}"
                    ))
                })?;
            if !authz::can_write_space(conn, &actor, &instance.space_guid)? {
                return Err(ApiError::NotAuthorized);
            }
            let (space, org) = repo::spaces::find_with_org(conn, &instance.space_guid)?
                .ok_or_else(|| ApiError::internal("instance without space"))?;
            Ok((instance, catalog, space, org))
        })
        .await?;
    let Some((plan, service, broker)) = catalog else {
        return Err(ApiError::ServiceKeyNotSupported(
            "Service keys are not supported for user-provided service instances.".into(),
        ));
    };
    Ok(KeyTarget {
        instance,
        catalog: Catalog {
            plan,
            service,
            broker,
        },
        space,
        org,
    })
}

/// Inserts the key's row first: the unique (instance, name) index settles parallel creates
/// before anyone calls the broker.
async fn reserve(state: &AppState, key: &ServiceKey) -> ApiResult<()> {
    let reserve = key.clone();
    state
        .db
        .write(move |conn| {
            if repo::keys::find_by_name(conn, &reserve.service_instance_guid, &reserve.name)?
                .is_some()
            {
                return Err(ApiError::ServiceKeyNameTaken(reserve.name.clone()));
            }
            on_unique(repo::keys::insert(conn, &reserve), |_| {
                Some(ApiError::ServiceKeyNameTaken(reserve.name.clone()))
            })
        })
        .await
}

/// The bind request for a key: no app, the key's role in the context.
fn bind_request(
    target: &KeyTarget,
    key: &ServiceKey,
    parameters: Option<Map<String, Value>>,
) -> BindRequest {
    BindRequest {
        service_id: target.catalog.service.unique_id.clone(),
        plan_id: target.catalog.plan.unique_id.clone(),
        app_guid: None,
        bind_resource: BindResource {
            app_guid: None,
            space_guid: None,
            credential_client_id: None,
        },
        context: CfContext {
            platform: "cloudfoundry",
            organization_guid: target.org.guid.clone(),
            space_guid: target.space.guid.clone(),
            organization_name: target.org.name.clone(),
            space_name: target.space.name.clone(),
            role: key.role.clone(),
        },
        parameters: parameters.filter(|p| !p.is_empty()),
    }
}

/// Stores the broker's credentials on the reserved key; on any failure the reservation goes,
/// with orphan mitigation where the OSB spec asks for it.
async fn store_credentials(
    state: &AppState,
    key: &mut ServiceKey,
    outcome: Result<BindOutcome, crate::broker::BrokerError>,
    orphan: orphans::Orphan,
) -> ApiResult<()> {
    let reservation = orphans::Reservation::Key(key.guid.clone());
    let g = key.guid.clone();
    match outcome {
        Ok(BindOutcome::Created(data)) => {
            let creds = state.crypto_seal(&data.credentials);
            let saved = state
                .db
                .write(move |conn| Ok(repo::keys::set_credentials(conn, &g, &creds)?))
                .await;
            if !matches!(saved, Ok(1)) {
                orphans::discard(state, reservation, Some(orphan)).await;
                return Err(saved
                    .err()
                    .unwrap_or(ApiError::ServiceKeyNotFound(key.guid.clone())));
            }
            key.credentials = data.credentials;
            Ok(())
        }
        Ok(BindOutcome::Async { .. }) => {
            // v2 service keys are synchronous.
            orphans::discard(state, reservation, Some(orphan)).await;
            Err(ApiError::ServiceBrokerRespondedAsyncWhenNotAllowed)
        }
        Err(e) => {
            let orphan = e.needs_orphan_mitigation.then_some(orphan);
            orphans::discard(state, reservation, orphan).await;
            Err(e.into())
        }
    }
}

pub async fn get(state: &AppState, caller: &Caller, guid: &str) -> ApiResult<KeyView> {
    authz::require_read_scope(&caller.actor)?;
    let g = guid.to_string();
    let actor = caller.actor.clone();
    let mut view = state
        .db
        .read(move |conn| {
            let (key, space) = repo::keys::find_with_space(conn, &g)?
                .ok_or_else(|| ApiError::ServiceKeyNotFound(g.clone()))?;
            let roles = if actor.reads_everything() {
                None
            } else {
                Some(authz::load_roles(conn, &actor)?)
            };
            if let Some(r) = &roles {
                if !r.can_read_space(&space) {
                    return Err(ApiError::NotAuthorized);
                }
            }
            let show_credentials = authz::can_see_secrets_in(roles.as_ref(), &actor, &space);
            Ok(KeyView {
                key,
                show_credentials,
            })
        })
        .await?;
    view.key.credentials = state.crypto_open(&view.key.credentials)?;
    Ok(view)
}

pub async fn list(
    state: &AppState,
    caller: &Caller,
    query: &ListQuery,
    instance: Option<String>,
) -> ApiResult<Loaded<KeyView>> {
    authz::require_read_scope(&caller.actor)?;
    let page = query.page;
    let filters = query.filters.clone();
    let actor = caller.actor.clone();
    let loaded = state
        .db
        .read(move |conn| {
            if let Some(i) = &instance {
                repo::instances::find(conn, i)?
                    .ok_or_else(|| ApiError::ServiceInstanceNotFound(i.clone()))?;
            }
            let roles = if actor.reads_everything() {
                None
            } else {
                Some(authz::load_roles(conn, &actor)?)
            };
            let visible = roles.as_ref().map(|r| r.readable_spaces.clone());
            let loaded = repo::keys::list(
                conn,
                &filters,
                instance.as_deref(),
                visible.as_deref(),
                &page,
            )?;
            let rows = loaded
                .rows
                .into_iter()
                .map(|(key, space)| {
                    let show_credentials =
                        authz::can_see_secrets_in(roles.as_ref(), &actor, &space);
                    KeyView {
                        key,
                        show_credentials,
                    }
                })
                .collect::<Vec<_>>();
            Ok(Loaded {
                total: loaded.total,
                rows,
            })
        })
        .await?;
    let mut rows = Vec::with_capacity(loaded.rows.len());
    for mut v in loaded.rows {
        if v.show_credentials {
            v.key.credentials = state.crypto_open(&v.key.credentials)?;
        }
        rows.push(v);
    }
    Ok(Loaded {
        total: loaded.total,
        rows,
    })
}

pub async fn delete(state: &AppState, caller: &Caller, guid: &str) -> ApiResult<()> {
    authz::require_write_scope(&caller.actor)?;
    let g = guid.to_string();
    let actor = caller.actor.clone();
    let (key, catalog) = state
        .db
        .read(move |conn| {
            let (key, space) = repo::keys::find_with_space(conn, &g)?
                .ok_or_else(|| ApiError::ServiceKeyNotFound(g.clone()))?;
            if !authz::can_write_space(conn, &actor, &space)? {
                return Err(ApiError::NotAuthorized);
            }
            if crate::service::bindings::count_using_key(conn, &g)? > 0 {
                return Err(ApiError::AssociationNotEmpty(
                    "service_bindings".into(),
                    "service_key".into(),
                ));
            }
            let catalog = repo::instances::find_with_catalog(conn, &key.service_instance_guid)?
                .and_then(|(_, c)| c)
                .map(|(plan, service, broker)| Catalog {
                    plan,
                    service,
                    broker,
                });
            Ok((key, catalog))
        })
        .await?;
    if let Some(catalog) = catalog {
        match state
            .broker
            .unbind(
                &catalog.target(),
                &key.service_instance_guid,
                &key.guid,
                &catalog.ids(),
                false,
                &caller.broker_ctx(),
            )
            .await
        {
            Ok(UnbindOutcome::Deleted) | Ok(UnbindOutcome::Async { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let g = key.guid.clone();
    state
        .db
        .write(move |conn| Ok(repo::keys::delete(conn, &g)?))
        .await?;
    Ok(())
}

/// What a credential an app could bind with is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// A service key: bind with `service_key_guid`.
    ServiceKey,
    /// Another app's binding: bind with `credential_binding_guid`.
    ServiceBinding,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::ServiceKey => "service_key",
            CredentialKind::ServiceBinding => "service_binding",
        }
    }
}

/// A credential offered to an app (never its secret values).
pub struct Offered {
    pub kind: CredentialKind,
    pub guid: String,
    pub name: String,
    pub service_instance_guid: String,
    pub role: Option<String>,
}

/// Code Engine's "existing secret" choice: the credentials an app does not use yet, of its
/// space's instances or of one instance: service keys no binding of the app uses, then the
/// credentials other apps' bindings got from the broker.
pub async fn unused_by_app(
    state: &AppState,
    caller: &Caller,
    app_guid: &str,
    instance_guid: Option<&str>,
) -> ApiResult<Vec<Offered>> {
    authz::require_read_scope(&caller.actor)?;
    let (a, si) = (app_guid.to_string(), instance_guid.map(str::to_string));
    let actor = caller.actor.clone();
    let (keys, bindings) = state
        .db
        .read(move |conn| {
            let app =
                repo::apps::find(conn, &a)?.ok_or_else(|| ApiError::AppNotFound(a.clone()))?;
            authz::require_space_reader(conn, &actor, &app.space_guid)?;
            if let Some(si) = &si {
                repo::instances::find(conn, si)?
                    .ok_or_else(|| ApiError::ServiceInstanceNotFound(si.clone()))?;
            }
            let keys = repo::keys::unused_by_app(conn, &a, &app.space_guid)?;
            let bindings = repo::bindings::credentials_offered_to(conn, &a, &app.space_guid)?;
            Ok((keys, bindings))
        })
        .await?;
    let offered = keys
        .into_iter()
        .map(|k| Offered {
            kind: CredentialKind::ServiceKey,
            guid: k.guid,
            name: k.name,
            service_instance_guid: k.service_instance_guid,
            role: k.role,
        })
        .chain(bindings.into_iter().map(|b| Offered {
            kind: CredentialKind::ServiceBinding,
            name: b.name.clone().unwrap_or_else(|| b.guid.clone()),
            guid: b.guid,
            service_instance_guid: b.service_instance_guid,
            role: b.role,
        }))
        .filter(|o| instance_guid.is_none_or(|i| o.service_instance_guid == i))
        .collect();
    Ok(offered)
}
