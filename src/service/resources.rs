//! Organizations, spaces and apps: the places a binding lives in. Apps are metadata only;
//! nothing is run.

use super::{authz, new_guid, no_such_space, on_unique, Caller};
use crate::app::AppState;
use crate::db::models::{App, OrgStatus, Organization, Space};
use crate::db::repo::{self, Filter, ListQuery, Loaded, PageRequest};
use crate::db::DbConnection;
use crate::error::{ApiError, ApiResult};

fn find_org(conn: &mut DbConnection, guid: &str) -> ApiResult<Organization> {
    repo::orgs::find(conn, guid)?.ok_or_else(|| ApiError::OrganizationNotFound(guid.to_string()))
}

pub(crate) fn find_space(conn: &mut DbConnection, guid: &str) -> ApiResult<Space> {
    repo::spaces::find(conn, guid)?.ok_or_else(|| ApiError::SpaceNotFound(guid.to_string()))
}

fn find_app(conn: &mut DbConnection, guid: &str) -> ApiResult<App> {
    repo::apps::find(conn, guid)?.ok_or_else(|| ApiError::AppNotFound(guid.to_string()))
}

/// A repository list of spaces or apps: `(conn, filters, parent, visible spaces, page)`.
type ListIn<T> = fn(
    &mut DbConnection,
    &[Filter],
    Option<&str>,
    Option<&[String]>,
    &PageRequest,
) -> diesel::QueryResult<Loaded<T>>;

/// A page of the spaces (or apps) the caller sees, in `parent` if one is named (after
/// `find_parent` checks it exists).
async fn list_visible<T: Send + 'static, P: 'static>(
    state: &AppState,
    caller: &Caller,
    query: &ListQuery,
    parent: Option<String>,
    find_parent: fn(&mut DbConnection, &str) -> ApiResult<P>,
    list: ListIn<T>,
) -> ApiResult<Loaded<T>> {
    authz::require_read_scope(&caller.actor)?;
    let page = query.page;
    let filters = query.filters.clone();
    let actor = caller.actor.clone();
    state
        .db
        .read(move |conn| {
            if let Some(p) = &parent {
                find_parent(conn, p)?;
            }
            let visible = authz::visible_spaces(conn, &actor)?;
            Ok(list(
                conn,
                &filters,
                parent.as_deref(),
                visible.as_deref(),
                &page,
            )?)
        })
        .await
}

/// The unique index on a resource's name, and CC's errors for a violation of it (`taken`) or
/// of any other unique index (the guid's: `invalid`).
struct UniqueName {
    index: &'static str,
    table: &'static str,
    columns: &'static [&'static str],
    taken: fn(String) -> ApiError,
    invalid: fn(String) -> ApiError,
}

impl UniqueName {
    fn error(&self, v: &crate::db::UniqueViolation, name: &str, guid: &str) -> Option<ApiError> {
        if v.is(self.index, self.table, self.columns) {
            Some((self.taken)(name.to_string()))
        } else {
            Some((self.invalid)(format!("guid {guid} is taken")))
        }
    }
}

const ORG_NAME: UniqueName = UniqueName {
    index: "organizations_name_key",
    table: "organizations",
    columns: &["name"],
    taken: ApiError::OrganizationNameTaken,
    invalid: ApiError::OrganizationInvalid,
};

const SPACE_NAME: UniqueName = UniqueName {
    index: "spaces_org_name_key",
    table: "spaces",
    columns: &["organization_guid", "name"],
    taken: ApiError::SpaceNameTaken,
    invalid: ApiError::SpaceInvalid,
};

const APP_NAME: UniqueName = UniqueName {
    index: "apps_space_name_key",
    table: "apps",
    columns: &["space_guid", "name"],
    taken: ApiError::AppNameTaken,
    invalid: ApiError::AppInvalid,
};

fn check_name(name: &str, invalid: fn(String) -> ApiError) -> ApiResult<()> {
    if name.trim().is_empty() {
        return Err(invalid("name can't be blank".into()));
    }
    if name.chars().count() > 255 {
        return Err(invalid(
            "name is too long (maximum is 255 characters)".into(),
        ));
    }
    Ok(())
}

// ---- organizations -----------------------------------------------------------------------------

pub async fn create_org(
    state: &AppState,
    caller: &Caller,
    name: String,
    guid: Option<String>,
) -> ApiResult<Organization> {
    authz::require_admin(&caller.actor)?;
    check_name(&name, ApiError::OrganizationInvalid)?;
    let now = crate::db::now();
    let org = Organization {
        id: 0,
        guid: guid.unwrap_or_else(new_guid),
        name,
        status: "active".into(),
        created_at: now,
        updated_at: now,
    };
    let row = org.clone();
    state
        .db
        .write(move |conn| {
            on_unique(repo::orgs::insert(conn, &row), |v| {
                ORG_NAME.error(v, &row.name, &row.guid)
            })
        })
        .await?;
    Ok(org)
}

pub async fn get_org(state: &AppState, caller: &Caller, guid: &str) -> ApiResult<Organization> {
    authz::require_read_scope(&caller.actor)?;
    let g = guid.to_string();
    let actor = caller.actor.clone();
    state
        .db
        .read(move |conn| {
            let org = find_org(conn, &g)?;
            if let Some(visible) = authz::visible_orgs(conn, &actor)? {
                if !visible.contains(&org.guid) {
                    return Err(ApiError::NotAuthorized);
                }
            }
            Ok(org)
        })
        .await
}

pub async fn list_orgs(
    state: &AppState,
    caller: &Caller,
    query: &ListQuery,
) -> ApiResult<Loaded<Organization>> {
    authz::require_read_scope(&caller.actor)?;
    let page = query.page;
    let filters = query.filters.clone();
    let actor = caller.actor.clone();
    state
        .db
        .read(move |conn| {
            let visible = authz::visible_orgs(conn, &actor)?;
            Ok(repo::orgs::list(conn, &filters, visible.as_deref(), &page)?)
        })
        .await
}

/// `PUT /v2/organizations/:guid` (admins): a new name, a new status, or both.
pub async fn update_org(
    state: &AppState,
    caller: &Caller,
    guid: &str,
    name: Option<String>,
    status: Option<OrgStatus>,
) -> ApiResult<Organization> {
    authz::require_admin(&caller.actor)?;
    if let Some(n) = &name {
        check_name(n, ApiError::OrganizationInvalid)?;
    }
    let g = guid.to_string();
    state
        .db
        .write(move |conn| {
            find_org(conn, &g)?;
            if let Some(name) = &name {
                on_unique(repo::orgs::rename(conn, &g, name), |_| {
                    Some(ApiError::OrganizationNameTaken(name.clone()))
                })?;
            }
            if let Some(status) = status {
                repo::orgs::set_status(conn, &g, status.as_str())?;
            }
            find_org(conn, &g)
        })
        .await
}

pub async fn delete_org(state: &AppState, caller: &Caller, guid: &str) -> ApiResult<()> {
    authz::require_admin(&caller.actor)?;
    let g = guid.to_string();
    state
        .db
        .write(move |conn| {
            find_org(conn, &g)?;
            if repo::spaces::count_in_org(conn, &g)? > 0 {
                return Err(ApiError::AssociationNotEmpty(
                    "spaces".into(),
                    "organization".into(),
                ));
            }
            crate::service::roles::delete_org_roles(conn, &g)?;
            repo::orgs::delete(conn, &g)?;
            Ok(())
        })
        .await
}

// ---- spaces ------------------------------------------------------------------------------------

pub async fn create_space(
    state: &AppState,
    caller: &Caller,
    name: String,
    org_guid: String,
    guid: Option<String>,
) -> ApiResult<Space> {
    authz::require_write_scope(&caller.actor)?;
    check_name(&name, ApiError::SpaceInvalid)?;
    let now = crate::db::now();
    let space = Space {
        id: 0,
        guid: guid.unwrap_or_else(new_guid),
        name,
        organization_guid: org_guid,
        created_at: now,
        updated_at: now,
    };
    let row = space.clone();
    let actor = caller.actor.clone();
    state
        .db
        .write(move |conn| {
            repo::orgs::find(conn, &row.organization_guid)?.ok_or_else(|| {
                ApiError::InvalidRelation(format!(
                    "Could not find VCAP::CloudController::Organization with guid: {}",
                    row.organization_guid
                ))
            })?;
            if !actor.is_admin()
                && (!authz::is_org_manager(conn, &actor, &row.organization_guid)?
                    || authz::org_suspended(conn, &row.organization_guid)?)
            {
                return Err(ApiError::NotAuthorized);
            }
            on_unique(repo::spaces::insert(conn, &row), |v| {
                SPACE_NAME.error(v, &row.name, &row.guid)
            })
        })
        .await?;
    Ok(space)
}

pub async fn get_space(state: &AppState, caller: &Caller, guid: &str) -> ApiResult<Space> {
    authz::load_readable(&state.db, &caller.actor, guid, find_space, |s| &s.guid).await
}

pub async fn list_spaces(
    state: &AppState,
    caller: &Caller,
    query: &ListQuery,
    org: Option<String>,
) -> ApiResult<Loaded<Space>> {
    list_visible(state, caller, query, org, find_org, repo::spaces::list).await
}

pub async fn rename_space(
    state: &AppState,
    caller: &Caller,
    guid: &str,
    name: String,
) -> ApiResult<Space> {
    authz::require_write_scope(&caller.actor)?;
    check_name(&name, ApiError::SpaceInvalid)?;
    let g = guid.to_string();
    let actor = caller.actor.clone();
    state
        .db
        .write(move |conn| {
            let space = find_space(conn, &g)?;
            if !actor.is_admin()
                && ((!authz::is_org_manager(conn, &actor, &space.organization_guid)?
                    && !authz::is_space_manager(conn, &actor, &space.guid)?)
                    || authz::org_suspended(conn, &space.organization_guid)?)
            {
                return Err(ApiError::NotAuthorized);
            }
            on_unique(repo::spaces::rename(conn, &g, &name), |_| {
                Some(ApiError::SpaceNameTaken(name.clone()))
            })?;
            find_space(conn, &g)
        })
        .await
}

pub async fn delete_space(state: &AppState, caller: &Caller, guid: &str) -> ApiResult<()> {
    authz::require_write_scope(&caller.actor)?;
    let g = guid.to_string();
    let actor = caller.actor.clone();
    state
        .db
        .write(move |conn| {
            let space = find_space(conn, &g)?;
            if !actor.is_admin() && !authz::is_org_manager(conn, &actor, &space.organization_guid)?
            {
                return Err(ApiError::NotAuthorized);
            }
            if repo::apps::count_in_space(conn, &g)? > 0
                || repo::instances::count_in_space(conn, &g)? > 0
                || repo::registry::count_in_space(conn, &g)? > 0
            {
                return Err(ApiError::AssociationNotEmpty(
                    "apps, service_instances, registry_secrets".into(),
                    "space".into(),
                ));
            }
            crate::service::roles::delete_space_roles(conn, &g)?;
            repo::spaces::delete(conn, &g)?;
            Ok(())
        })
        .await
}

// ---- apps --------------------------------------------------------------------------------------

pub struct AppInput {
    pub guid: Option<String>,
    pub name: Option<String>,
    pub space_guid: Option<String>,
    pub state: Option<String>,
    pub memory: Option<i64>,
    pub instances: Option<i64>,
    pub disk_quota: Option<i64>,
    pub environment_json: Option<String>,
}

fn apply_app_input(app: &mut App, input: &AppInput) -> ApiResult<()> {
    if let Some(n) = &input.name {
        check_name(n, ApiError::AppInvalid)?;
        app.name = n.clone();
    }
    if let Some(s) = &input.state {
        if s != "STARTED" && s != "STOPPED" {
            return Err(ApiError::AppInvalid(
                "state must be STARTED or STOPPED".into(),
            ));
        }
        app.state = s.clone();
    }
    if let Some(m) = input.memory {
        if m < 1 {
            return Err(ApiError::AppInvalid(
                "memory must be greater than 0MB".into(),
            ));
        }
        app.memory = m;
    }
    if let Some(i) = input.instances {
        if !(0..=i32::MAX as i64).contains(&i) {
            return Err(ApiError::AppInvalid(
                "instances must be greater than or equal to 0".into(),
            ));
        }
        app.instances = i as i32;
    }
    if let Some(d) = input.disk_quota {
        if d < 1 {
            return Err(ApiError::AppInvalid(
                "disk_quota must be greater than 0MB".into(),
            ));
        }
        app.disk_quota = d;
    }
    if let Some(e) = &input.environment_json {
        app.environment_json = e.clone();
    }
    Ok(())
}

pub async fn create_app(state: &AppState, caller: &Caller, input: AppInput) -> ApiResult<App> {
    authz::require_write_scope(&caller.actor)?;
    let name = input
        .name
        .clone()
        .ok_or_else(|| ApiError::AppInvalid("name is required".into()))?;
    let space_guid = input
        .space_guid
        .clone()
        .ok_or_else(|| ApiError::AppInvalid("space_guid is required".into()))?;
    let now = crate::db::now();
    let mut app = App {
        id: 0,
        guid: input.guid.clone().unwrap_or_else(new_guid),
        name,
        space_guid,
        state: "STOPPED".into(),
        memory: 1024,
        instances: 1,
        disk_quota: 1024,
        environment_json: "{}".into(),
        created_at: now,
        updated_at: now,
    };
    apply_app_input(&mut app, &input)?;
    let row = app.clone();
    let (actor, space) = (&caller.actor, &row.space_guid);
    authz::require_existing_space_writer(&state.db, actor, space, no_such_space).await?;
    state
        .db
        .write(move |conn| {
            on_unique(repo::apps::insert(conn, &row), |v| {
                APP_NAME.error(v, &row.name, &row.guid)
            })
        })
        .await?;
    Ok(app)
}

/// The space an app is in (a read, before authorizing a write).
async fn app_space(state: &AppState, guid: &str) -> ApiResult<String> {
    let g = guid.to_string();
    state
        .db
        .read(move |conn| Ok(find_app(conn, &g)?.space_guid))
        .await
}

pub async fn get_app(state: &AppState, caller: &Caller, guid: &str) -> ApiResult<App> {
    authz::load_readable(&state.db, &caller.actor, guid, find_app, |a| &a.space_guid).await
}

pub async fn list_apps(
    state: &AppState,
    caller: &Caller,
    query: &ListQuery,
    space: Option<String>,
) -> ApiResult<Loaded<App>> {
    list_visible(state, caller, query, space, find_space, repo::apps::list).await
}

pub async fn update_app(
    state: &AppState,
    caller: &Caller,
    guid: &str,
    input: AppInput,
) -> ApiResult<App> {
    authz::require_write_scope(&caller.actor)?;
    let g = guid.to_string();
    let space = app_space(state, guid).await?;
    authz::require_space_writer(&state.db, &caller.actor, &space).await?;
    state
        .db
        .write(move |conn| {
            let mut app = find_app(conn, &g)?;
            if input
                .space_guid
                .as_ref()
                .is_some_and(|s| s != &app.space_guid)
            {
                return Err(ApiError::AppInvalid(
                    "cannot change the space of an app".into(),
                ));
            }
            apply_app_input(&mut app, &input)?;
            on_unique(repo::apps::update(conn, &app), |v| {
                APP_NAME.error(v, &app.name, &app.guid)
            })?;
            find_app(conn, &g)
        })
        .await
}

pub async fn delete_app(state: &AppState, caller: &Caller, guid: &str) -> ApiResult<()> {
    authz::require_write_scope(&caller.actor)?;
    let g = guid.to_string();
    let space = app_space(state, guid).await?;
    authz::require_space_writer(&state.db, &caller.actor, &space).await?;
    state
        .db
        .write(move |conn| {
            if repo::bindings::count_for_app(conn, &g)? > 0 {
                return Err(ApiError::AssociationNotEmpty(
                    "service_bindings".into(),
                    "app".into(),
                ));
            }
            repo::apps::delete(conn, &g)?;
            Ok(())
        })
        .await
}
