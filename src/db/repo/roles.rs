//! Users and their org/space roles.

use diesel::prelude::*;
use diesel::QueryResult;

use super::{optional, DbConnection, Filter, Loaded, PageRequest};
use crate::db::models::User;
use crate::db::schema::org_roles::dsl as orr;
use crate::db::schema::space_roles::dsl as srr;
use crate::db::schema::spaces;
use crate::db::schema::users::dsl as u;

pub const SPACE_ROLES: &[&str] = &["developer", "manager", "auditor"];
pub const ORG_ROLES: &[&str] = &["user", "manager", "auditor", "billing_manager"];

pub fn find_user(conn: &mut DbConnection, guid: &str) -> QueryResult<Option<User>> {
    optional(
        u::users
            .filter(u::guid.eq(guid))
            .select(User::as_select())
            .first(conn),
    )
}

pub fn find_user_by_name(conn: &mut DbConnection, name: &str) -> QueryResult<Option<User>> {
    optional(
        u::users
            .filter(u::username.eq(name))
            .select(User::as_select())
            .first(conn),
    )
}

/// A user by name, ignoring case (UAA's user names do).
pub fn find_user_by_name_ci(conn: &mut DbConnection, name: &str) -> QueryResult<Option<User>> {
    optional(
        u::users
            .filter(super::lower(u::username.assume_not_null()).eq(name.to_lowercase()))
            .order(u::id.asc())
            .select(User::as_select())
            .first(conn),
    )
}

/// Users with a name (those the built-in issuer knows), oldest first.
pub fn named_users(conn: &mut DbConnection, limit: i64) -> QueryResult<Vec<User>> {
    u::users
        .filter(u::username.is_not_null())
        .order(u::id.asc())
        .limit(limit)
        .select(User::as_select())
        .load(conn)
}

pub fn insert_user(conn: &mut DbConnection, user: &User) -> QueryResult<()> {
    diesel::insert_into(u::users)
        .values(user)
        .execute(conn)
        .map(|_| ())
}

/// Makes sure CC knows the user guid (roles reference it); external users have no login data.
pub fn ensure_user(conn: &mut DbConnection, guid: &str) -> QueryResult<()> {
    if find_user(conn, guid)?.is_none() {
        let now = crate::db::now();
        insert_user(
            conn,
            &User {
                id: 0,
                guid: guid.to_string(),
                username: None,
                password_hash: None,
                origin: "uaa".into(),
                scopes: "[]".into(),
                active: true,
                created_at: now,
                updated_at: now,
            },
        )?;
    }
    Ok(())
}

pub fn update_user_login(
    conn: &mut DbConnection,
    guid: &str,
    password_hash: Option<&str>,
    scopes: &str,
) -> QueryResult<usize> {
    diesel::update(u::users.filter(u::guid.eq(guid)))
        .set((
            u::password_hash.eq(password_hash),
            u::scopes.eq(scopes),
            u::updated_at.eq(crate::db::now()),
        ))
        .execute(conn)
}

pub const USER_FILTERS: &[&str] = &["username", "guid"];

pub fn list_users(
    conn: &mut DbConnection,
    filters: &[Filter],
    only: Option<Vec<String>>,
    page: &PageRequest,
) -> QueryResult<Loaded<User>> {
    let build = || {
        let mut q = u::users.into_boxed();
        for f in filters {
            q = match f.key.as_str() {
                "username" => crate::filter_text!(q, u::username, f),
                "guid" => crate::filter_text!(q, u::guid, f),
                _ => q,
            };
        }
        if let Some(o) = &only {
            q = q.filter(u::guid.eq_any(o.clone()));
        }
        q
    };
    let total = build().count().get_result(conn)?;
    let q = build().select(User::as_select());
    let rows = crate::order_page!(q, page, u::id, u::username).load(conn)?;
    Ok(Loaded { total, rows })
}

/// `(space_guid, role)` pairs of a user.
pub fn space_roles_of(conn: &mut DbConnection, user: &str) -> QueryResult<Vec<(String, String)>> {
    srr::space_roles
        .filter(srr::user_guid.eq(user))
        .select((srr::space_guid, srr::role))
        .load(conn)
}

/// `(org_guid, role)` pairs of a user.
pub fn org_roles_of(conn: &mut DbConnection, user: &str) -> QueryResult<Vec<(String, String)>> {
    orr::org_roles
        .filter(orr::user_guid.eq(user))
        .select((orr::organization_guid, orr::role))
        .load(conn)
}

pub fn spaces_of_orgs(conn: &mut DbConnection, orgs: &[String]) -> QueryResult<Vec<String>> {
    if orgs.is_empty() {
        return Ok(Vec::new());
    }
    spaces::table
        .filter(spaces::organization_guid.eq_any(orgs))
        .select(spaces::guid)
        .load(conn)
}

pub fn has_space_role(
    conn: &mut DbConnection,
    user: &str,
    space: &str,
    role: &str,
) -> QueryResult<bool> {
    let n: i64 = srr::space_roles
        .filter(srr::user_guid.eq(user))
        .filter(srr::space_guid.eq(space))
        .filter(srr::role.eq(role))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

pub fn has_org_role(
    conn: &mut DbConnection,
    user: &str,
    org: &str,
    role: &str,
) -> QueryResult<bool> {
    let n: i64 = orr::org_roles
        .filter(orr::user_guid.eq(user))
        .filter(orr::organization_guid.eq(org))
        .filter(orr::role.eq(role))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// Adds a role; adding one that exists is not an error (CC's PUT is idempotent).
pub fn add_space_role(
    conn: &mut DbConnection,
    space: &str,
    user: &str,
    role: &str,
) -> QueryResult<()> {
    if has_space_role(conn, user, space, role)? {
        return Ok(());
    }
    diesel::insert_into(srr::space_roles)
        .values((
            srr::space_guid.eq(space),
            srr::user_guid.eq(user),
            srr::role.eq(role),
            srr::created_at.eq(crate::db::now()),
        ))
        .execute(conn)
        .map(|_| ())
}

pub fn remove_space_role(
    conn: &mut DbConnection,
    space: &str,
    user: &str,
    role: &str,
) -> QueryResult<usize> {
    diesel::delete(
        srr::space_roles
            .filter(srr::space_guid.eq(space))
            .filter(srr::user_guid.eq(user))
            .filter(srr::role.eq(role)),
    )
    .execute(conn)
}

pub fn add_org_role(conn: &mut DbConnection, org: &str, user: &str, role: &str) -> QueryResult<()> {
    if has_org_role(conn, user, org, role)? {
        return Ok(());
    }
    diesel::insert_into(orr::org_roles)
        .values((
            orr::organization_guid.eq(org),
            orr::user_guid.eq(user),
            orr::role.eq(role),
            orr::created_at.eq(crate::db::now()),
        ))
        .execute(conn)
        .map(|_| ())
}

pub fn remove_org_role(
    conn: &mut DbConnection,
    org: &str,
    user: &str,
    role: &str,
) -> QueryResult<usize> {
    diesel::delete(
        orr::org_roles
            .filter(orr::organization_guid.eq(org))
            .filter(orr::user_guid.eq(user))
            .filter(orr::role.eq(role)),
    )
    .execute(conn)
}

/// Users holding `role` in a space.
pub fn space_role_holders(
    conn: &mut DbConnection,
    space: &str,
    role: &str,
) -> QueryResult<Vec<String>> {
    srr::space_roles
        .filter(srr::space_guid.eq(space))
        .filter(srr::role.eq(role))
        .select(srr::user_guid)
        .load(conn)
}

/// Users holding `role` in an org.
pub fn org_role_holders(
    conn: &mut DbConnection,
    org: &str,
    role: &str,
) -> QueryResult<Vec<String>> {
    orr::org_roles
        .filter(orr::organization_guid.eq(org))
        .filter(orr::role.eq(role))
        .select(orr::user_guid)
        .load(conn)
}

pub fn delete_for_space(conn: &mut DbConnection, space: &str) -> QueryResult<usize> {
    diesel::delete(srr::space_roles.filter(srr::space_guid.eq(space))).execute(conn)
}

pub fn delete_for_org(conn: &mut DbConnection, org: &str) -> QueryResult<usize> {
    diesel::delete(orr::org_roles.filter(orr::organization_guid.eq(org))).execute(conn)
}

/// Removes every space role of the user in the org's spaces (leaving an org drops them).
pub fn delete_space_roles_in_org(
    conn: &mut DbConnection,
    org: &str,
    user: &str,
) -> QueryResult<usize> {
    let org_spaces = spaces::table
        .filter(spaces::organization_guid.eq(org))
        .select(spaces::guid);
    diesel::delete(
        srr::space_roles
            .filter(srr::user_guid.eq(user))
            .filter(srr::space_guid.eq_any(org_spaces)),
    )
    .execute(conn)
}

// ---- OAuth clients of the built-in issuer ------------------------------------------------------

use crate::db::models::OauthClient;
use crate::db::schema::oauth_clients::dsl as oc;

pub fn find_client(conn: &mut DbConnection, client_id: &str) -> QueryResult<Option<OauthClient>> {
    optional(
        oc::oauth_clients
            .filter(oc::client_id.eq(client_id))
            .select(OauthClient::as_select())
            .first(conn),
    )
}

pub fn upsert_client(conn: &mut DbConnection, client: &OauthClient) -> QueryResult<()> {
    if find_client(conn, &client.client_id)?.is_some() {
        diesel::update(oc::oauth_clients.filter(oc::client_id.eq(&client.client_id)))
            .set((
                oc::secret_hash.eq(&client.secret_hash),
                oc::scopes.eq(&client.scopes),
                oc::grant_types.eq(&client.grant_types),
                oc::updated_at.eq(crate::db::now()),
            ))
            .execute(conn)?;
    } else {
        diesel::insert_into(oc::oauth_clients)
            .values(client)
            .execute(conn)?;
    }
    Ok(())
}

/// Failed password logins of `user` since `since`: how many, and when the last was.
pub fn login_failures_since(
    conn: &mut DbConnection,
    user: &str,
    since: chrono::NaiveDateTime,
) -> QueryResult<(i64, Option<chrono::NaiveDateTime>)> {
    use crate::db::schema::login_failures::dsl as lf;
    lf::login_failures
        .filter(lf::user_guid.eq(user))
        .filter(lf::at.gt(since))
        .select((diesel::dsl::count_star(), diesel::dsl::max(lf::at)))
        .first(conn)
}

/// Records a failed password login; forgets the user's failures older than `forget_before`.
pub fn record_login_failure(
    conn: &mut DbConnection,
    user: &str,
    at: chrono::NaiveDateTime,
    forget_before: chrono::NaiveDateTime,
) -> QueryResult<()> {
    use crate::db::schema::login_failures::dsl as lf;
    diesel::delete(
        lf::login_failures
            .filter(lf::user_guid.eq(user))
            .filter(lf::at.lt(forget_before)),
    )
    .execute(conn)?;
    diesel::insert_into(lf::login_failures)
        .values((lf::user_guid.eq(user), lf::at.eq(at)))
        .execute(conn)?;
    Ok(())
}

/// A successful login: the failures before it no longer count (UAA counts failures since the
/// last success).
pub fn clear_login_failures(conn: &mut DbConnection, user: &str) -> QueryResult<usize> {
    use crate::db::schema::login_failures::dsl as lf;
    diesel::delete(lf::login_failures.filter(lf::user_guid.eq(user))).execute(conn)
}
