//! The built-in UAA-compatible endpoints: `POST /oauth/token`, `GET /token_key(s)`, `GET /login`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use serde_json::json;

use crate::api::v2::State;
use crate::service::uaa::{self, OauthError, PresentedClient};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/oauth/token", web::post().to(token))
        .route("/token_key", web::get().to(token_key))
        .route("/token_keys", web::get().to(token_keys))
        .route("/login", web::get().to(login))
        .route("/Users", web::get().to(users));
}

fn oauth_error(e: &OauthError) -> HttpResponse {
    let mut resp =
        HttpResponse::build(StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST));
    if e.status == 401 {
        resp.insert_header((
            "WWW-Authenticate",
            "Bearer realm=\"UAA/oauth\", error=\"unauthorized\"",
        ));
    }
    if e.status == 429 {
        resp.insert_header(("Retry-After", "1"));
    }
    resp.insert_header(("Cache-Control", "no-store"))
        .content_type("application/json;charset=UTF-8")
        .body(serde_json::to_vec(e).unwrap_or_default())
}

fn disabled() -> HttpResponse {
    actix_web::ResponseError::error_response(&crate::error::ApiError::NotFound)
}

/// Client id/secret from `Authorization: Basic` (form-urlencoded parts, RFC 6749 §2.3.1).
fn basic_client(req: &HttpRequest) -> Result<Option<PresentedClient>, OauthError> {
    let Some(value) = req.headers().get("authorization") else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| OauthError::new(401, "invalid_client", "Bad client credentials"))?;
    let Some((scheme, encoded)) = value.trim().split_once(' ') else {
        return Err(OauthError::new(
            401,
            "invalid_client",
            "Bad client credentials",
        ));
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| OauthError::new(401, "invalid_client", "Bad client credentials"))?;
    let (id, secret) = decoded.split_once(':').unwrap_or((decoded.as_str(), ""));
    let unescape = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    Ok(Some(PresentedClient {
        id: Some(unescape(id)),
        secret: Some(unescape(secret)),
    }))
}

async fn token(state: State, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    if !state.config.builtin_uaa {
        return disabled();
    }
    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let field = |k: &str| {
        form.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let header_client = match basic_client(&req) {
        Ok(c) => c,
        Err(e) => return oauth_error(&e),
    };
    let body_client = PresentedClient {
        id: field("client_id").map(str::to_string),
        secret: field("client_secret").map(str::to_string),
    };
    // Both given: they must agree (the Python client sends both for client_credentials).
    let client = match header_client {
        Some(h) => {
            if body_client.id.is_some() && body_client.id != h.id {
                return oauth_error(&OauthError::new(
                    401,
                    "invalid_client",
                    "Bad client credentials",
                ));
            }
            if body_client.secret.is_some() && body_client.secret != h.secret {
                return oauth_error(&OauthError::new(
                    401,
                    "invalid_client",
                    "Bad client credentials",
                ));
            }
            h
        }
        None => body_client,
    };
    let scope = field("scope");
    let result = match field("grant_type") {
        Some("password") => {
            uaa::password_grant(&state, &client, field("username"), field("password"), scope).await
        }
        Some("refresh_token") => {
            uaa::refresh_grant(&state, &client, field("refresh_token"), scope).await
        }
        Some("client_credentials") => uaa::client_credentials_grant(&state, &client, scope).await,
        Some(other) => Err(OauthError::new(
            400,
            "unsupported_grant_type",
            format!(
                "Unsupported grant type: {}",
                other.chars().take(64).collect::<String>()
            ),
        )),
        None => Err(OauthError::new(
            400,
            "invalid_request",
            "Missing grant type",
        )),
    };
    match result {
        Ok(tokens) => HttpResponse::Ok()
            .insert_header(("Cache-Control", "no-store"))
            .insert_header(("Pragma", "no-cache"))
            .content_type("application/json;charset=UTF-8")
            .body(serde_json::to_vec(&tokens).unwrap_or_default()),
        Err(e) => oauth_error(&e),
    }
}

fn jwk(state: &State) -> serde_json::Value {
    let key = state.issuer.key();
    json!({
        "kty": "EC",
        "crv": "P-256",
        "alg": "ES256",
        "use": "sig",
        "kid": key.kid,
        "x": key.x,
        "y": key.y,
        "value": key.public_pem,
    })
}

async fn token_key(state: State) -> HttpResponse {
    if !state.config.builtin_uaa {
        return disabled();
    }
    crate::api::json(StatusCode::OK, &jwk(&state))
}

async fn token_keys(state: State) -> HttpResponse {
    if !state.config.builtin_uaa {
        return disabled();
    }
    crate::api::json(StatusCode::OK, &json!({ "keys": [jwk(&state)] }))
}

async fn login(state: State, req: HttpRequest) -> HttpResponse {
    if !state.config.builtin_uaa {
        return disabled();
    }
    let base = crate::api::base_url(&req, state.config.external_url.as_deref());
    crate::api::json(
        StatusCode::OK,
        &json!({
            "app": { "version": "4.30.0" },
            "links": { "uaa": base, "passwd": format!("{base}/forgot_password"), "login": base },
            "zone_name": "uaa",
            "entityID": "tether",
            "commit_id": env!("CARGO_PKG_VERSION"),
            "idpDefinitions": {},
            "prompts": {
                "username": ["text", "Email"],
                "password": ["password", "Password"]
            },
            "timestamp": chrono::Utc::now().to_rfc3339(),
        }),
    )
}

/// UAA's error for a request without a usable token (its resource server's answer).
fn unauthorized(e: &crate::error::ApiError) -> OauthError {
    match e {
        crate::error::ApiError::NotAuthenticated => OauthError::new(
            401,
            "unauthorized",
            "Full authentication is required to access this resource",
        ),
        _ => OauthError::new(401, "invalid_token", "Invalid access token"),
    }
}

/// `GET /Users`: SCIM user search, for the cf CLI's user lookup before it assigns a role.
async fn users(state: State, req: HttpRequest) -> HttpResponse {
    if !state.config.builtin_uaa {
        return disabled();
    }
    let token = match crate::api::extract::bearer_token(&req) {
        Ok(t) => t.to_string(),
        Err(e) => return oauth_error(&unauthorized(&e)),
    };
    let actor = match state.verifier.verify(&token).await {
        Ok(a) => a,
        Err(e) => return oauth_error(&unauthorized(&e)),
    };
    let query: Vec<(String, String)> = form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect();
    let param = |k: &str| {
        query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let filter = match crate::service::scim::parse_filter(param("filter")) {
        Ok(f) => f,
        Err(e) => return oauth_error(&e),
    };
    let found = match crate::service::scim::search(&state, &actor, filter).await {
        Ok(found) => found,
        Err(e) => return oauth_error(&e),
    };
    let attributes: Option<Vec<String>> = param("attributes").map(|a| {
        a.split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .collect()
    });
    let resources: Vec<serde_json::Value> = found
        .iter()
        .map(|u| scim_user(u, attributes.as_deref()))
        .collect();
    crate::api::json(
        StatusCode::OK,
        &json!({
            "resources": resources,
            "startIndex": 1,
            "itemsPerPage": 100,
            "totalResults": resources.len(),
            "schemas": ["urn:scim:schemas:core:1.0"],
        }),
    )
}

/// A user as UAA's SCIM shows one, cut down to `attributes` when asked (names compared
/// case-insensitively, as UAA does).
fn scim_user(u: &crate::db::models::User, attributes: Option<&[String]>) -> serde_json::Value {
    let name = u.username.clone().unwrap_or_default();
    let full = json!({
        "id": u.guid,
        "userName": name,
        "origin": u.origin,
        "active": u.active,
        "verified": true,
        "zoneId": "uaa",
        "emails": [{"value": name, "primary": false}],
        "meta": {
            "version": 0,
            "created": crate::api::render::Ts(u.created_at),
            "lastModified": crate::api::render::Ts(u.updated_at),
        },
        "schemas": ["urn:scim:schemas:core:1.0"],
    });
    let (Some(wanted), serde_json::Value::Object(map)) = (attributes, full.clone()) else {
        return full;
    };
    serde_json::Value::Object(
        map.into_iter()
            .filter(|(k, _)| wanted.contains(&k.to_ascii_lowercase()))
            .collect(),
    )
}
