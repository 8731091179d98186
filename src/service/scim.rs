//! The built-in issuer's SCIM user search (`GET /Users`), as much of UAA's as the cf CLI uses
//! to turn a user name into a user id (`filter=userName Eq "name"`).

use crate::app::AppState;
use crate::auth::Actor;
use crate::db::models::User;
use crate::db::repo;
use crate::service::uaa::OauthError;

/// Scopes that may search users: UAA's, and tether's admin scope (the built-in issuer's admins
/// carry no `scim.read`).
const READERS: &[&str] = &["scim.read", "uaa.admin", crate::auth::SCOPE_ADMIN];

/// What a filter selects.
#[derive(Debug, PartialEq, Eq)]
pub enum UserFilter {
    All,
    UserName(String),
    Id(String),
}

/// Parses `attr eq "value"` (`userName` or `id`; attribute and operator case-insensitive, as
/// UAA's parser); anything else is UAA's `invalid_filter`.
pub fn parse_filter(filter: Option<&str>) -> Result<UserFilter, OauthError> {
    let Some(filter) = filter.map(str::trim).filter(|f| !f.is_empty()) else {
        return Ok(UserFilter::All);
    };
    let invalid = || {
        OauthError::new(
            400,
            "invalid_filter",
            format!(
                "Invalid filter expression: [{}]",
                filter.chars().take(200).collect::<String>()
            ),
        )
    };
    let mut parts = filter.splitn(3, char::is_whitespace);
    let (attr, op, value) = match (parts.next(), parts.next(), parts.next()) {
        (Some(a), Some(o), Some(v)) => (a, o, v.trim()),
        _ => return Err(invalid()),
    };
    if !op.eq_ignore_ascii_case("eq") {
        return Err(invalid());
    }
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .filter(|v| !v.contains('"'))
        .ok_or_else(invalid)?
        .to_string();
    match attr.to_ascii_lowercase().as_str() {
        "username" => Ok(UserFilter::UserName(value)),
        "id" => Ok(UserFilter::Id(value)),
        _ => Err(invalid()),
    }
}

/// The users a filter selects (at most 100: one page, as the CLI reads).
pub async fn search(
    state: &AppState,
    actor: &Actor,
    filter: UserFilter,
) -> Result<Vec<User>, OauthError> {
    if !READERS.iter().any(|s| actor.has_scope(s)) {
        return Err(OauthError::new(
            403,
            "insufficient_scope",
            "Insufficient scope for this resource",
        ));
    }
    let found = state
        .db
        .read(move |conn| {
            let users = match &filter {
                UserFilter::UserName(name) => repo::roles::find_user_by_name_ci(conn, name)?
                    .into_iter()
                    .collect(),
                UserFilter::Id(id) => repo::roles::find_user(conn, id)?.into_iter().collect(),
                UserFilter::All => repo::roles::named_users(conn, 100)?,
            };
            Ok::<Vec<User>, crate::error::ApiError>(users)
        })
        .await;
    found.map_err(|e| {
        tracing::error!(error = %e, "user search failed");
        OauthError::new(500, "server_error", "Internal Server Error")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_as_the_cf_cli_sends_them() {
        assert_eq!(
            parse_filter(Some(r#"userName Eq "dev@example.com""#)).unwrap(),
            UserFilter::UserName("dev@example.com".into())
        );
        assert_eq!(
            parse_filter(Some(r#"id eq "u-1""#)).unwrap(),
            UserFilter::Id("u-1".into())
        );
        assert_eq!(parse_filter(None).unwrap(), UserFilter::All);
        for bad in [
            r#"userName co "x""#,
            "userName eq x",
            r#"email eq "x""#,
            "junk",
        ] {
            assert_eq!(parse_filter(Some(bad)).unwrap_err().status, 400, "{bad}");
        }
    }
}
