//! Authorization as Cloud Controller does it: global scopes first (admin, read-only admin,
//! global auditor), then the caller's org and space roles.

use diesel::QueryResult;

use crate::auth::Actor;
use crate::db::models::OrgStatus;
use crate::db::{repo, DbConnection};
use crate::error::ApiError;

/// Fails unless the token may call read endpoints: CC's `read_with_token?`/`index_with_token?`
/// (admin, read-only admin, global auditor, or `cloud_controller.read`). A token with only
/// `cloud_controller.write` gets `403 CF-InsufficientScope`, as CC answers it.
pub fn require_read_scope(actor: &Actor) -> Result<(), ApiError> {
    if actor.can_read() {
        Ok(())
    } else {
        Err(ApiError::InsufficientScope)
    }
}

/// Fails unless the token may call write endpoints.
pub fn require_write_scope(actor: &Actor) -> Result<(), ApiError> {
    if actor.can_write() {
        Ok(())
    } else {
        Err(ApiError::NotAuthorized)
    }
}

pub fn require_admin(actor: &Actor) -> Result<(), ApiError> {
    if actor.is_admin() {
        Ok(())
    } else {
        Err(ApiError::NotAuthorized)
    }
}

/// The roles of a caller, loaded once per request when needed.
#[derive(Debug, Default, Clone)]
pub struct Roles {
    pub developer_spaces: Vec<String>,
    pub manager_spaces: Vec<String>,
    pub auditor_spaces: Vec<String>,
    pub user_orgs: Vec<String>,
    pub manager_orgs: Vec<String>,
    pub auditor_orgs: Vec<String>,
    pub billing_manager_orgs: Vec<String>,
    /// Spaces whose resources the caller sees: any space role there, or org manager of its org.
    pub readable_spaces: Vec<String>,
}

impl Roles {
    pub fn can_read_space(&self, space: &str) -> bool {
        self.readable_spaces.iter().any(|s| s == space)
    }

    pub fn is_developer(&self, space: &str) -> bool {
        self.developer_spaces.iter().any(|s| s == space)
    }
}

/// Loads the caller's roles. Client tokens (no user) hold no roles.
pub fn load_roles(conn: &mut DbConnection, actor: &Actor) -> QueryResult<Roles> {
    let Some(user) = actor.user_id.as_deref() else {
        return Ok(Roles::default());
    };
    let mut roles = Roles::default();
    for (space, role) in repo::roles::space_roles_of(conn, user)? {
        match role.as_str() {
            "developer" => roles.developer_spaces.push(space),
            "manager" => roles.manager_spaces.push(space),
            "auditor" => roles.auditor_spaces.push(space),
            _ => {}
        }
    }
    for (org, role) in repo::roles::org_roles_of(conn, user)? {
        match role.as_str() {
            "user" => roles.user_orgs.push(org),
            "manager" => roles.manager_orgs.push(org),
            "auditor" => roles.auditor_orgs.push(org),
            "billing_manager" => roles.billing_manager_orgs.push(org),
            _ => {}
        }
    }
    let mut readable: Vec<String> = roles
        .developer_spaces
        .iter()
        .chain(&roles.manager_spaces)
        .chain(&roles.auditor_spaces)
        .cloned()
        .collect();
    readable.extend(repo::roles::spaces_of_orgs(conn, &roles.manager_orgs)?);
    readable.sort();
    readable.dedup();
    roles.readable_spaces = readable;
    Ok(roles)
}

pub fn is_org_manager(conn: &mut DbConnection, actor: &Actor, org: &str) -> QueryResult<bool> {
    match actor.user_id.as_deref() {
        Some(user) => repo::roles::has_org_role(conn, user, org, "manager"),
        None => Ok(false),
    }
}

pub fn is_space_manager(conn: &mut DbConnection, actor: &Actor, space: &str) -> QueryResult<bool> {
    match actor.user_id.as_deref() {
        Some(user) => repo::roles::has_space_role(conn, user, space, "manager"),
        None => Ok(false),
    }
}

/// May the caller write in a space: admins always; a space developer holding the write scope
/// unless the space's org is suspended (CC's `writable_space_state`: only admins write there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpaceWrite {
    Allowed,
    NotWriter,
    OrgSuspended,
}

pub fn space_write(conn: &mut DbConnection, actor: &Actor, space: &str) -> QueryResult<SpaceWrite> {
    if actor.is_admin() {
        return Ok(SpaceWrite::Allowed);
    }
    let developer = match actor.user_id.as_deref() {
        Some(user) if actor.can_write() => {
            repo::roles::has_space_role(conn, user, space, "developer")?
        }
        _ => false,
    };
    if !developer {
        return Ok(SpaceWrite::NotWriter);
    }
    let suspended =
        repo::orgs::status_of_space(conn, space)?.as_deref() == Some(OrgStatus::Suspended.as_str());
    Ok(if suspended {
        SpaceWrite::OrgSuspended
    } else {
        SpaceWrite::Allowed
    })
}

/// Whether an org is suspended (then only admins change anything in it).
pub fn org_suspended(conn: &mut DbConnection, org: &str) -> QueryResult<bool> {
    Ok(repo::orgs::find(conn, org)?.is_some_and(|o| o.status == OrgStatus::Suspended.as_str()))
}

/// Admin, or a space developer there (holding the write scope, in an org not suspended: CC's
/// instance, key and app accesses say no, which is `NotAuthorized`).
pub fn can_write_space(conn: &mut DbConnection, actor: &Actor, space: &str) -> QueryResult<bool> {
    Ok(space_write(conn, actor, space)? == SpaceWrite::Allowed)
}

/// A binding's create or delete: CC says `NotAuthorized` to a non-writer, then `OrgSuspended`
/// to a writer in a suspended org (service_bindings_controller.rb).
pub fn require_binding_writer(
    conn: &mut DbConnection,
    actor: &Actor,
    space: &str,
) -> Result<(), ApiError> {
    match space_write(conn, actor, space)? {
        SpaceWrite::Allowed => Ok(()),
        SpaceWrite::NotWriter => Err(ApiError::NotAuthorized),
        SpaceWrite::OrgSuspended => Err(ApiError::OrgSuspended),
    }
}

/// Fails with `NotAuthorized` unless the caller may write in `space`: a read on the read pool,
/// so that a write closure that follows does not hold the single writer while roles load.
pub async fn require_space_writer(
    store: &crate::app::Store,
    actor: &Actor,
    space: &str,
) -> Result<(), ApiError> {
    let (actor, space) = (actor.clone(), space.to_string());
    let may = store
        .read(move |conn| Ok(can_write_space(conn, &actor, &space)?))
        .await?;
    if may {
        Ok(())
    } else {
        Err(ApiError::NotAuthorized)
    }
}

/// Before creating something in a space: the space exists (else `missing(space)`), then the
/// caller may write there; both reads on the read pool.
pub async fn require_existing_space_writer(
    store: &crate::app::Store,
    actor: &Actor,
    space: &str,
    missing: fn(&str) -> ApiError,
) -> Result<(), ApiError> {
    let guid = space.to_string();
    store
        .read(
            move |conn| match crate::db::repo::spaces::find(conn, &guid)? {
                Some(_) => Ok(()),
                None => Err(missing(&guid)),
            },
        )
        .await?;
    require_space_writer(store, actor, space).await
}

/// Loads one resource of a space, if the caller reads that space: the read scope, then `find`
/// (whose error says not found), then a reader's role in the space `space_of` names.
pub async fn load_readable<T: Send + 'static>(
    store: &crate::app::Store,
    actor: &Actor,
    guid: &str,
    find: fn(&mut DbConnection, &str) -> Result<T, ApiError>,
    space_of: fn(&T) -> &str,
) -> Result<T, ApiError> {
    require_read_scope(actor)?;
    let (actor, guid) = (actor.clone(), guid.to_string());
    store
        .read(move |conn| {
            let found = find(conn, &guid)?;
            require_space_reader(conn, &actor, space_of(&found))?;
            Ok(found)
        })
        .await
}

/// Fails with `NotAuthorized` unless the caller sees the space's resources.
pub fn require_space_reader(
    conn: &mut DbConnection,
    actor: &Actor,
    space: &str,
) -> Result<(), ApiError> {
    if actor.reads_everything() || load_roles(conn, actor)?.can_read_space(space) {
        Ok(())
    } else {
        Err(ApiError::NotAuthorized)
    }
}

/// Sees credentials in the space (CC: who may read the app's environment).
pub fn can_see_secrets_in(roles: Option<&Roles>, actor: &Actor, space: &str) -> bool {
    if actor.reads_all_secrets() {
        return true;
    }
    roles.is_some_and(|r| r.is_developer(space))
}

/// Space guids a caller may list resources of; `None` means all.
pub fn visible_spaces(conn: &mut DbConnection, actor: &Actor) -> QueryResult<Option<Vec<String>>> {
    if actor.reads_everything() {
        return Ok(None);
    }
    Ok(Some(load_roles(conn, actor)?.readable_spaces))
}

/// Organization guids a caller may list; `None` means all.
pub fn visible_orgs(conn: &mut DbConnection, actor: &Actor) -> QueryResult<Option<Vec<String>>> {
    if actor.reads_everything() {
        return Ok(None);
    }
    let roles = load_roles(conn, actor)?;
    let mut orgs: Vec<String> = roles
        .user_orgs
        .iter()
        .chain(&roles.manager_orgs)
        .chain(&roles.auditor_orgs)
        .chain(&roles.billing_manager_orgs)
        .cloned()
        .collect();
    orgs.sort();
    orgs.dedup();
    Ok(Some(orgs))
}
