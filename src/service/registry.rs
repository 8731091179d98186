//! Registry access secrets (seed 002): credentials for a private container registry, per space.
//! The password is write-only: sealed at rest, never returned, never logged.

use super::{authz, new_guid, on_unique, Caller};
use crate::app::AppState;
use crate::db::models::RegistrySecret;
use crate::db::repo::ListQuery;
use crate::db::repo::{self, Loaded};
use crate::db::DbConnection;
use crate::error::{ApiError, ApiResult};

pub struct RegistryInput {
    pub name: Option<String>,
    pub server: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub email: Option<String>,
}

/// Seed 002's rules: begins and ends with a lowercase alphanumeric character; at most 253
/// characters of lowercase letters, digits, `.` and `-`.
pub fn validate_name(name: &str) -> ApiResult<()> {
    let invalid = |why: &str| {
        Err(ApiError::UnprocessableEntity(format!(
            "The registry access secret name '{}' is invalid: {why}",
            name.chars().take(64).collect::<String>()
        )))
    };
    if name.is_empty() {
        return invalid("a name is required");
    }
    if name.len() > 253 {
        return invalid("it must be 253 characters or fewer");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
    {
        return invalid(
            "it can contain only lowercase letters, numbers, periods (.) and hyphens (-)",
        );
    }
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !edge(name.chars().next()) || !edge(name.chars().last()) {
        return invalid("it must begin and end with a lowercase alphanumeric character");
    }
    Ok(())
}

fn required(field: &str, v: Option<String>) -> ApiResult<String> {
    v.filter(|s| !s.trim().is_empty()).ok_or_else(|| {
        ApiError::UnprocessableEntity(format!("The registry access secret needs a {field}."))
    })
}

fn check_len(field: &str, v: &str, max: usize) -> ApiResult<()> {
    if v.len() > max {
        return Err(ApiError::UnprocessableEntity(format!(
            "The registry access secret's {field} must be {max} characters or fewer."
        )));
    }
    Ok(())
}

pub async fn create(
    state: &AppState,
    caller: &Caller,
    space_guid: &str,
    input: RegistryInput,
) -> ApiResult<RegistrySecret> {
    authz::require_write_scope(&caller.actor)?;
    let name = input.name.clone().unwrap_or_default();
    validate_name(&name)?;
    let server = required("server", input.server)?;
    let username = required("username", input.username)?;
    let password = required("password", input.password)?;
    check_len("server", &server, 2048)?;
    check_len("username", &username, 1024)?;
    check_len("password", &password, 16384)?;
    if let Some(e) = &input.email {
        check_len("email", e, 1024)?;
    }
    let now = crate::db::now();
    let secret = RegistrySecret {
        id: 0,
        guid: new_guid(),
        name,
        space_guid: space_guid.to_string(),
        server,
        username,
        password: state.crypto_seal(&password),
        email: input.email.filter(|e| !e.is_empty()),
        created_at: now,
        updated_at: now,
    };
    let row = secret.clone();
    let missing = |g: &str| ApiError::SpaceNotFound(g.to_string());
    authz::require_existing_space_writer(&state.db, &caller.actor, &row.space_guid, missing)
        .await?;
    state
        .db
        .write(move |conn| {
            let taken = || {
                ApiError::UnprocessableEntity(format!(
                    "A registry access secret named '{}' already exists in this space.",
                    row.name
                ))
            };
            if repo::registry::find_by_name(conn, &row.space_guid, &row.name)?.is_some() {
                return Err(taken());
            }
            on_unique(repo::registry::insert(conn, &row), |_| Some(taken()))
        })
        .await?;
    Ok(secret)
}

/// Loads a secret the caller may see (space readers see it; nobody sees its password).
pub async fn get(state: &AppState, caller: &Caller, guid: &str) -> ApiResult<RegistrySecret> {
    let find = |conn: &mut DbConnection, g: &str| {
        repo::registry::find(conn, g)?.ok_or_else(|| not_found(g))
    };
    authz::load_readable(&state.db, &caller.actor, guid, find, |s| &s.space_guid).await
}

fn not_found(guid: &str) -> ApiError {
    ApiError::NotFoundResource(format!(
        "The registry access secret could not be found: {guid}"
    ))
}

pub async fn list(
    state: &AppState,
    caller: &Caller,
    space_guid: &str,
    query: &ListQuery,
) -> ApiResult<Loaded<RegistrySecret>> {
    authz::require_read_scope(&caller.actor)?;
    let page = query.page;
    let filters = query.filters.clone();
    let space = space_guid.to_string();
    let actor = caller.actor.clone();
    state
        .db
        .read(move |conn| {
            let sp = repo::spaces::find(conn, &space)?
                .ok_or_else(|| ApiError::SpaceNotFound(space.clone()))?;
            authz::require_space_reader(conn, &actor, &sp.guid)?;
            Ok(repo::registry::list(conn, &filters, &space, &page)?)
        })
        .await
}

pub async fn update(
    state: &AppState,
    caller: &Caller,
    guid: &str,
    input: RegistryInput,
) -> ApiResult<RegistrySecret> {
    authz::require_write_scope(&caller.actor)?;
    if input.name.is_some() {
        return Err(ApiError::UnprocessableEntity(
            "The name of a registry access secret cannot be changed.".into(),
        ));
    }
    for (f, v, max) in [
        ("server", &input.server, 2048),
        ("username", &input.username, 1024),
        ("password", &input.password, 16384),
    ] {
        if let Some(v) = v {
            if v.trim().is_empty() {
                return Err(ApiError::UnprocessableEntity(format!(
                    "The registry access secret needs a {f}."
                )));
            }
            check_len(f, v, max)?;
        }
    }
    let sealed = input.password.as_ref().map(|p| state.crypto_seal(p));
    let g = guid.to_string();
    let space = space_of(state, guid).await?;
    authz::require_space_writer(&state.db, &caller.actor, &space).await?;
    state
        .db
        .write(move |conn| {
            let mut s = repo::registry::find(conn, &g)?.ok_or_else(|| not_found(&g))?;
            if let Some(v) = input.server {
                s.server = v;
            }
            if let Some(v) = input.username {
                s.username = v;
            }
            if let Some(v) = sealed {
                s.password = v;
            }
            if let Some(v) = input.email {
                s.email = Some(v).filter(|e| !e.is_empty());
            }
            repo::registry::update(conn, &s)?;
            repo::registry::find(conn, &g)?.ok_or_else(|| not_found(&g))
        })
        .await
}

pub async fn delete(state: &AppState, caller: &Caller, guid: &str) -> ApiResult<()> {
    authz::require_write_scope(&caller.actor)?;
    let g = guid.to_string();
    let space = space_of(state, guid).await?;
    authz::require_space_writer(&state.db, &caller.actor, &space).await?;
    state
        .db
        .write(move |conn| match repo::registry::delete(conn, &g)? {
            0 => Err(not_found(&g)),
            _ => Ok(()),
        })
        .await
}

/// The space a secret is in (a read, before authorizing a write).
async fn space_of(state: &AppState, guid: &str) -> ApiResult<String> {
    let g = guid.to_string();
    state
        .db
        .read(move |conn| {
            let s = repo::registry::find(conn, &g)?.ok_or_else(|| not_found(&g))?;
            Ok(s.space_guid)
        })
        .await
}
