//! Assigning org and space roles (`PUT /v2/spaces/:guid/developers/:user_guid`, ...) and users.

use super::{authz, Caller};
use crate::app::AppState;
use crate::db::models::{OrgStatus, User};
use crate::db::repo;
use crate::db::DbConnection;
use crate::error::{ApiError, ApiResult};

pub fn delete_org_roles(conn: &mut DbConnection, org: &str) -> ApiResult<()> {
    repo::roles::delete_for_org(conn, org)?;
    Ok(())
}

pub fn delete_space_roles(conn: &mut DbConnection, space: &str) -> ApiResult<()> {
    repo::roles::delete_for_space(conn, space)?;
    Ok(())
}

/// Space role path names to stored role names.
pub fn space_role(path: &str) -> Option<&'static str> {
    match path {
        "developers" => Some("developer"),
        "managers" => Some("manager"),
        "auditors" => Some("auditor"),
        _ => None,
    }
}

pub fn org_role(path: &str) -> Option<&'static str> {
    match path {
        "users" => Some("user"),
        "managers" => Some("manager"),
        "auditors" => Some("auditor"),
        "billing_managers" => Some("billing_manager"),
        _ => None,
    }
}

/// Adds (`add = true`) or removes a space role. Admins and the space's org managers and space
/// managers may; the user must belong to the space's org (CC: `InvalidRelation` naming the
/// user, which the cf CLI shows as "user is not part of the org").
pub async fn set_space_role(
    state: &AppState,
    caller: &Caller,
    space: &str,
    role: &'static str,
    user: &str,
    add: bool,
) -> ApiResult<crate::db::models::Space> {
    authz::require_write_scope(&caller.actor)?;
    let (space, user, actor) = (space.to_string(), user.to_string(), caller.actor.clone());
    state
        .db
        .write(move |conn| {
            let sp = repo::spaces::find(conn, &space)?
                .ok_or_else(|| ApiError::SpaceNotFound(space.clone()))?;
            if !actor.is_admin()
                && ((!authz::is_org_manager(conn, &actor, &sp.organization_guid)?
                    && !authz::is_space_manager(conn, &actor, &sp.guid)?)
                    || authz::org_suspended(conn, &sp.organization_guid)?)
            {
                return Err(ApiError::NotAuthorized);
            }
            if add {
                repo::roles::ensure_user(conn, &user)?;
                if !repo::roles::has_org_role(conn, &user, &sp.organization_guid, "user")? {
                    return Err(ApiError::InvalidRelation(user.clone()));
                }
                repo::roles::add_space_role(conn, &sp.guid, &user, role)?;
            } else {
                repo::roles::remove_space_role(conn, &sp.guid, &user, role)?;
            }
            Ok(sp)
        })
        .await
}

/// Adds or removes an org role. Admins and the org's managers may. Removing `user` also removes
/// the user's roles in the org's spaces.
pub async fn set_org_role(
    state: &AppState,
    caller: &Caller,
    org: &str,
    role: &'static str,
    user: &str,
    add: bool,
) -> ApiResult<crate::db::models::Organization> {
    authz::require_write_scope(&caller.actor)?;
    let (org, user, actor) = (org.to_string(), user.to_string(), caller.actor.clone());
    state
        .db
        .write(move |conn| {
            let o = repo::orgs::find(conn, &org)?
                .ok_or_else(|| ApiError::OrganizationNotFound(org.clone()))?;
            // CC: only admins change a suspended org.
            let suspended = o.status == OrgStatus::Suspended.as_str();
            if !actor.is_admin() && (suspended || !authz::is_org_manager(conn, &actor, &o.guid)?) {
                return Err(ApiError::NotAuthorized);
            }
            if add {
                repo::roles::ensure_user(conn, &user)?;
                repo::roles::add_org_role(conn, &o.guid, &user, role)?;
                if role != "user" {
                    // CC makes every org role holder an org user too.
                    repo::roles::add_org_role(conn, &o.guid, &user, "user")?;
                }
            } else {
                repo::roles::remove_org_role(conn, &o.guid, &user, role)?;
                if role == "user" {
                    repo::roles::delete_space_roles_in_org(conn, &o.guid, &user)?;
                }
            }
            Ok(o)
        })
        .await
}

/// `POST /v2/users` (admin): registers a UAA user id with CC.
pub async fn create_user(state: &AppState, caller: &Caller, guid: String) -> ApiResult<User> {
    authz::require_admin(&caller.actor)?;
    if guid.trim().is_empty() {
        return Err(ApiError::UserInvalid("guid is required".into()));
    }
    state
        .db
        .write(move |conn| {
            if repo::roles::find_user(conn, &guid)?.is_some() {
                return Err(ApiError::UaaIdTaken(guid.clone()));
            }
            repo::roles::ensure_user(conn, &guid)?;
            repo::roles::find_user(conn, &guid)?.ok_or_else(|| ApiError::internal("user vanished"))
        })
        .await
}
