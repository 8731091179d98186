//! The service-binding lifecycle (CC `ServiceBindingCreate`/`ServiceBindingDelete`, v2):
//! creating ([`create`]), deleting ([`delete`]), and reading bindings (here).

mod create;
mod delete;
mod reserve;

use std::collections::HashMap;

use serde_json::{Map, Value};

pub use create::{create, validate, BindPlan, BindTarget, CreateBinding, Strategy};
pub use delete::{delete, delete_as_job, delete_for_job, unbind_all, Deleted, UnbindResult};

use super::{authz, Caller};
use crate::app::AppState;
use crate::db::models::{App, ServicePlan, Space};
use crate::db::repo;
use crate::db::repo::bindings::BindingView;
use crate::db::repo::ListQuery;
use crate::error::{ApiError, ApiResult};
use crate::service::catalog::Catalog;

/// A binding as the API shows it, plus what the caller may see of it.
pub struct Shown {
    pub view: BindingView,
    pub show_credentials: bool,
    pub warnings: Vec<String>,
}

pub const ALREADY_BOUND: &str = "The app is already bound to the service.";

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

/// Bindings that use a service key's credentials.
pub fn count_using_key(conn: &mut crate::db::DbConnection, key: &str) -> ApiResult<i64> {
    Ok(repo::bindings::count_using_key(conn, key)?)
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

/// `GET /v2/service_bindings/:guid/parameters`: from the broker when it supports fetching
/// (CC's `ServiceBindingRead`): not while an operation on the binding is in progress, and only
/// a JSON object is passed on.
pub async fn parameters(state: &AppState, caller: &Caller, guid: &str) -> ApiResult<Value> {
    let shown = get(state, caller, guid).await?;
    let binding = &shown.view.binding;
    let (si, app) = (
        binding.service_instance_guid.clone(),
        binding.app_guid.clone(),
    );
    let (found, app) = state
        .db
        .read(move |conn| {
            let found = repo::instances::find_with_catalog(conn, &si)?;
            Ok((found, repo::apps::find(conn, &app)?))
        })
        .await?;
    let Some((instance, catalog)) = found else {
        return Err(ApiError::ServiceFetchBindingParametersNotSupported);
    };
    let catalog = catalog.map(|(plan, service, broker)| Catalog {
        plan,
        service,
        broker,
    });
    let Some(catalog) = catalog.filter(|c| c.service.bindings_retrievable) else {
        return Err(ApiError::ServiceFetchBindingParametersNotSupported);
    };
    if binding.last_operation().in_progress() {
        let app_name = app.map(|a| a.name).unwrap_or_default();
        return Err(ApiError::AsyncServiceBindingOperationInProgress(
            app_name,
            instance.name,
        ));
    }
    let data = state
        .broker
        .fetch_binding(
            &catalog.target(),
            &binding.service_instance_guid,
            guid,
            &catalog.ids(),
            &catalog.service.requires_list(),
            &caller.broker_ctx(),
        )
        .await?;
    // The broker client refused a `parameters` that is not an object.
    Ok(data.parameters.unwrap_or_else(|| Value::Object(Map::new())))
}

/// A page of bindings, each with whether the caller may see its credentials.
pub async fn list(
    state: &AppState,
    caller: &Caller,
    query: &ListQuery,
    scope: repo::bindings::Scope<'_>,
) -> ApiResult<repo::Loaded<(BindingView, bool)>> {
    authz::require_read_scope(&caller.actor)?;
    let page = query.page;
    let filters = query.filters.clone();
    let actor = caller.actor.clone();
    let scope = match scope {
        repo::bindings::Scope::All => OwnedScope::All,
        repo::bindings::Scope::App(a) => OwnedScope::App(a.to_string()),
        repo::bindings::Scope::Instance(i) => OwnedScope::Instance(i.to_string()),
    };
    // One snapshot: under concurrent creates the total must count the rows of the page (an
    // answer in one statement is one snapshot by itself).
    let one_statement = repo::bindings::lists_in_one_statement(
        state.db.backend(),
        &filters,
        scope.borrow(),
        actor.reads_everything(),
        &page,
    );
    let read = move |conn: &mut crate::db::DbConnection| {
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
    };
    let mut loaded = if one_statement {
        state.db.read(read).await?
    } else {
        state.db.read_snapshot(read).await?
    };
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
