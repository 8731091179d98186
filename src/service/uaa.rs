//! The built-in UAA-compatible issuer: `password`, `client_credentials` and `refresh_token`
//! grants, with UAA's response fields and error shapes (what the cf CLI, `cloudfoundry-client`
//! and `cf-client` expect; see shared/spec/clients.md §1.2).

use serde::Serialize;

use crate::app::AppState;
use crate::auth::password;
use crate::db::models::{OauthClient, User};
use crate::db::repo;

/// The scopes every user gets; their record can add more (e.g. `cloud_controller.admin`).
pub const USER_SCOPES: &[&str] = &[
    "openid",
    "cloud_controller.read",
    "cloud_controller.write",
    "uaa.user",
    "password.write",
];

/// The public client the cf CLI and friends use (`cf:` with an empty secret).
pub const PUBLIC_CLIENT: &str = "cf";

#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub expires_in: i64,
    pub scope: String,
    pub jti: String,
}

/// UAA's OAuth error document.
#[derive(Debug, Serialize)]
pub struct OauthError {
    #[serde(skip)]
    pub status: u16,
    pub error: &'static str,
    pub error_description: String,
}

impl OauthError {
    pub fn new(status: u16, error: &'static str, description: impl Into<String>) -> Self {
        OauthError {
            status,
            error,
            error_description: description.into(),
        }
    }

    fn bad_credentials() -> Self {
        Self::new(401, "unauthorized", "Bad credentials")
    }

    fn invalid_client() -> Self {
        Self::new(401, "invalid_client", "Bad client credentials")
    }

    fn server() -> Self {
        Self::new(500, "server_error", "Internal error")
    }

    /// UAA's answer while an account is locked, whether or not the password was right.
    fn locked() -> Self {
        Self::new(
            401,
            "unauthorized",
            "Your account has been locked because of too many failed attempts to login.",
        )
    }

    /// All password checks are busy (a login flood): come back in a moment.
    pub fn too_busy() -> Self {
        Self::new(
            429,
            "too_many_requests",
            "Too many logins at once; try again in a moment.",
        )
    }
}

/// Checks a password or client secret against its argon2 hash on the blocking pool, at most
/// `max_concurrent_password_checks` at once: each check costs tens of milliseconds of CPU, and a
/// flood of logins must slow logins down (429 after a second's wait), not the rest of the API.
async fn check_secret(
    state: &AppState,
    secret: String,
    hash: Option<String>,
) -> Result<bool, OauthError> {
    let permit = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        state.password_checks.clone().acquire_owned(),
    )
    .await
    .map_err(|_| OauthError::too_busy())?
    .map_err(|_| OauthError::server())?;
    actix_web::web::block(move || {
        let _permit = permit;
        // Unknown users are checked against a dummy hash: the same work either way.
        let h = hash.as_deref().unwrap_or_else(|| password::dummy_hash());
        password::verify(&secret, h) && hash.is_some()
    })
    .await
    .map_err(|_| OauthError::server())
}

/// Client credentials as presented: from Basic auth and/or the form body (both may be given;
/// then they must agree).
#[derive(Debug, Default, Clone)]
pub struct PresentedClient {
    pub id: Option<String>,
    pub secret: Option<String>,
}

fn json_list(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_default()
}

/// Resolves the client: the public `cf` client (empty secret), or a stored client whose secret
/// verifies. Returns the client's granted scopes (for `client_credentials`) and grant types.
async fn authenticate_client(
    state: &AppState,
    presented: &PresentedClient,
) -> Result<(String, Option<OauthClient>), OauthError> {
    let id = presented
        .id
        .clone()
        .unwrap_or_else(|| PUBLIC_CLIENT.to_string());
    let secret = presented.secret.clone().unwrap_or_default();
    let lookup = id.clone();
    let stored = state
        .db
        .read(move |conn| Ok(repo::roles::find_client(conn, &lookup)?))
        .await
        .map_err(|_| OauthError::server())?;
    match stored {
        Some(client) => {
            let ok = match client.secret_hash.clone() {
                Some(h) => check_secret(state, secret, Some(h)).await?,
                None => secret.is_empty(),
            };
            if ok {
                Ok((id, Some(client)))
            } else {
                Err(OauthError::invalid_client())
            }
        }
        None if id == PUBLIC_CLIENT && secret.is_empty() => Ok((id, None)),
        None => Err(OauthError::invalid_client()),
    }
}

/// What a user may get: the defaults plus their own extra scopes.
fn user_scopes(user: &User) -> Vec<String> {
    let mut scopes: Vec<String> = USER_SCOPES.iter().map(|s| s.to_string()).collect();
    for s in json_list(&user.scopes) {
        if !scopes.contains(&s) {
            scopes.push(s);
        }
    }
    scopes
}

/// An empty request means "everything allowed"; asking for more than allowed is an error.
fn narrow(allowed: Vec<String>, requested: Option<&str>) -> Result<Vec<String>, OauthError> {
    let requested: Vec<&str> = requested
        .map(|r| r.split_whitespace().collect())
        .unwrap_or_default();
    if requested.is_empty() {
        return Ok(allowed);
    }
    let mut out = Vec::new();
    for r in requested {
        if !allowed.iter().any(|a| a == r) {
            return Err(OauthError::new(
                400,
                "invalid_scope",
                format!("Invalid scope: {r}. Did you know that you can get default scopes by simply sending no value?"),
            ));
        }
        out.push(r.to_string());
    }
    Ok(out)
}

fn respond(
    state: &AppState,
    user: &User,
    scopes: Vec<String>,
    client_id: &str,
    grant: &str,
) -> Result<TokenResponse, OauthError> {
    let user_name = user.username.clone().unwrap_or_else(|| user.guid.clone());
    let (access, claims) = state
        .issuer
        .user_token(&user.guid, &user_name, &scopes, client_id, grant)
        .map_err(|_| OauthError::server())?;
    let refresh = state
        .issuer
        .refresh_token(&user.guid, &user_name, &scopes, client_id)
        .map_err(|_| OauthError::server())?;
    Ok(TokenResponse {
        access_token: access,
        token_type: "bearer",
        refresh_token: Some(refresh),
        expires_in: state.issuer.ttl_secs - 1,
        scope: scopes.join(" "),
        jti: claims.jti.unwrap_or_default(),
    })
}

fn allows_grant(client: &Option<OauthClient>, grant: &str) -> bool {
    match client {
        // The public client may log users in and refresh.
        None => grant == "password" || grant == "refresh_token",
        Some(c) => json_list(&c.grant_types).iter().any(|g| g == grant),
    }
}

pub async fn password_grant(
    state: &AppState,
    client: &PresentedClient,
    username: Option<&str>,
    pass: Option<&str>,
    scope: Option<&str>,
) -> Result<TokenResponse, OauthError> {
    let (client_id, stored) = authenticate_client(state, client).await?;
    if !allows_grant(&stored, "password") {
        return Err(OauthError::new(
            401,
            "invalid_client",
            "Unauthorized grant type: password",
        ));
    }
    let (Some(username), Some(pass)) = (username.filter(|u| !u.is_empty()), pass) else {
        return Err(OauthError::bad_credentials());
    };
    let name = username.to_string();
    let user = state
        .db
        .read(move |conn| Ok(repo::roles::find_user_by_name(conn, &name)?))
        .await
        .map_err(|_| OauthError::server())?
        .filter(|u| u.active);
    // UAA checks the lockout before the password: a locked account gets the same answer
    // whatever the password, and costs no hash.
    if let Some(u) = &user {
        if is_locked(state, &u.guid).await? {
            tracing::info!(user = %u.guid, "password grant: account locked");
            return Err(OauthError::locked());
        }
    }
    let hash = user.as_ref().and_then(|u| u.password_hash.clone());
    let ok = check_secret(state, pass.to_string(), hash).await?;
    let Some(user) = user else {
        tracing::info!("password grant: bad credentials");
        return Err(OauthError::bad_credentials());
    };
    record_login(state, &user.guid, ok).await?;
    if !ok {
        tracing::info!(user = %user.guid, "password grant: bad credentials");
        return Err(OauthError::bad_credentials());
    }
    let scopes = narrow(user_scopes(&user), scope)?;
    respond(state, &user, scopes, &client_id, "password")
}

/// UAA's rule: at least `after_failures` failures since the last success within `count_within`,
/// the most recent of them less than `period` ago.
async fn is_locked(state: &AppState, user: &str) -> Result<bool, OauthError> {
    let policy = state.config.lockout;
    let now = state.clock.now();
    let since = now - chrono_duration(policy.count_within);
    let u = user.to_string();
    let (failures, last) = state
        .db
        .read(move |conn| Ok(repo::roles::login_failures_since(conn, &u, since)?))
        .await
        .map_err(|_| OauthError::server())?;
    Ok(failures >= i64::from(policy.after_failures)
        && last.is_some_and(|at| at > now - chrono_duration(policy.period)))
}

/// Counts a failed login, or clears the count after a successful one.
async fn record_login(state: &AppState, user: &str, ok: bool) -> Result<(), OauthError> {
    let now = state.clock.now();
    let forget_before = now - chrono_duration(state.config.lockout.count_within);
    let u = user.to_string();
    state
        .db
        .write(move |conn| {
            if ok {
                repo::roles::clear_login_failures(conn, &u)?;
            } else {
                repo::roles::record_login_failure(conn, &u, now, forget_before)?;
            }
            Ok(())
        })
        .await
        .map_err(|_| OauthError::server())
}

fn chrono_duration(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::days(365))
}

pub async fn refresh_grant(
    state: &AppState,
    client: &PresentedClient,
    refresh_token: Option<&str>,
    scope: Option<&str>,
) -> Result<TokenResponse, OauthError> {
    let (client_id, stored) = authenticate_client(state, client).await?;
    if !allows_grant(&stored, "refresh_token") {
        return Err(OauthError::new(
            401,
            "invalid_client",
            "Unauthorized grant type: refresh_token",
        ));
    }
    let invalid = || OauthError::new(401, "invalid_token", "Invalid refresh token");
    let claims = refresh_token
        .and_then(|t| state.issuer.verify_refresh(t))
        .ok_or_else(invalid)?;
    if claims.client_id.as_deref() != Some(client_id.as_str()) {
        return Err(invalid());
    }
    let guid = claims.user_id.clone().ok_or_else(invalid)?;
    let user = state
        .db
        .read(move |conn| Ok(repo::roles::find_user(conn, &guid)?))
        .await
        .map_err(|_| OauthError::server())?
        .filter(|u| u.active)
        .ok_or_else(invalid)?;
    // Scopes come from the user's record now (a revoked admin loses it at the next refresh),
    // narrowed to what the refresh token was granted.
    let current = user_scopes(&user);
    let granted: Vec<String> = current
        .into_iter()
        .filter(|s| claims.scope.contains(s))
        .collect();
    let scopes = narrow(granted, scope)?;
    respond(state, &user, scopes, &client_id, "refresh_token")
}

pub async fn client_credentials_grant(
    state: &AppState,
    client: &PresentedClient,
    scope: Option<&str>,
) -> Result<TokenResponse, OauthError> {
    if client.id.is_none() {
        return Err(OauthError::invalid_client());
    }
    let (client_id, stored) = authenticate_client(state, client).await?;
    let Some(stored) = stored.filter(|c| allows_grant(&Some(c.clone()), "client_credentials"))
    else {
        return Err(OauthError::new(
            401,
            "invalid_client",
            "Unauthorized grant type: client_credentials",
        ));
    };
    let scopes = narrow(json_list(&stored.scopes), scope)?;
    let (access, claims) = state
        .issuer
        .client_token(&client_id, &scopes)
        .map_err(|_| OauthError::server())?;
    Ok(TokenResponse {
        access_token: access,
        token_type: "bearer",
        refresh_token: None,
        expires_in: state.issuer.ttl_secs - 1,
        scope: scopes.join(" "),
        jti: claims.jti.unwrap_or_default(),
    })
}

/// `tether user create`: creates or updates a user of the built-in issuer.
pub fn create_user(
    conn: &mut crate::db::DbConnection,
    username: &str,
    pass: &str,
    extra_scopes: &[String],
) -> crate::error::ApiResult<User> {
    if username.trim().is_empty() {
        return Err(crate::error::ApiError::UserInvalid(
            "username is required".into(),
        ));
    }
    if pass.len() < 8 {
        return Err(crate::error::ApiError::UserInvalid(
            "password must be at least 8 characters".into(),
        ));
    }
    let hash = password::hash(pass).map_err(crate::error::ApiError::internal)?;
    let scopes = serde_json::to_string(extra_scopes).unwrap_or_else(|_| "[]".into());
    if let Some(existing) = repo::roles::find_user_by_name(conn, username)? {
        repo::roles::update_user_login(conn, &existing.guid, Some(&hash), &scopes)?;
        return Ok(repo::roles::find_user(conn, &existing.guid)?.unwrap_or(existing));
    }
    let now = crate::db::now();
    let user = User {
        id: 0,
        guid: uuid::Uuid::new_v4().to_string(),
        username: Some(username.to_string()),
        password_hash: Some(hash),
        origin: "uaa".into(),
        scopes,
        active: true,
        created_at: now,
        updated_at: now,
    };
    repo::roles::insert_user(conn, &user)?;
    Ok(user)
}

/// `tether client create`: a client for the `client_credentials` grant.
pub fn create_client(
    conn: &mut crate::db::DbConnection,
    client_id: &str,
    secret: &str,
    scopes: &[String],
) -> crate::error::ApiResult<()> {
    if client_id.trim().is_empty() || client_id == PUBLIC_CLIENT {
        return Err(crate::error::ApiError::UserInvalid(format!(
            "client id '{client_id}' is not allowed"
        )));
    }
    if secret.len() < 8 {
        return Err(crate::error::ApiError::UserInvalid(
            "client secret must be at least 8 characters".into(),
        ));
    }
    let now = crate::db::now();
    repo::roles::upsert_client(
        conn,
        &OauthClient {
            id: 0,
            client_id: client_id.to_string(),
            secret_hash: Some(password::hash(secret).map_err(crate::error::ApiError::internal)?),
            scopes: serde_json::to_string(scopes).unwrap_or_else(|_| "[]".into()),
            grant_types: r#"["client_credentials"]"#.into(),
            created_at: now,
            updated_at: now,
        },
    )?;
    Ok(())
}
