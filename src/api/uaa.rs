//! The built-in UAA-compatible endpoints: `POST /oauth/token`, `GET /token_key(s)`, `GET /login`.

use actix_web::http::header::{self, HeaderValue};
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
fn basic_client(
    authorization: Option<&HeaderValue>,
) -> Result<Option<PresentedClient>, OauthError> {
    let Some(value) = authorization else {
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

/// What a token request asks for.
#[derive(Debug)]
struct TokenRequest {
    client: PresentedClient,
    grant: Grant,
    scope: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
enum Grant {
    Password {
        username: Option<String>,
        password: Option<String>,
    },
    RefreshToken(Option<String>),
    ClientCredentials,
}

/// Decodes `POST /oauth/token`: its form body and its `Authorization` header (client
/// credentials may come in either, or both if they agree). Errors are UAA's OAuth documents.
fn token_request(
    authorization: Option<&HeaderValue>,
    body: &[u8],
) -> Result<TokenRequest, OauthError> {
    let form: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let field = |k: &str| {
        form.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let header_client = basic_client(authorization)?;
    let body_client = PresentedClient {
        id: field("client_id"),
        secret: field("client_secret"),
    };
    let bad_client = || OauthError::new(401, "invalid_client", "Bad client credentials");
    // Both given: they must agree (the Python client sends both for client_credentials).
    let client = match header_client {
        Some(h) => {
            if body_client.id.is_some() && body_client.id != h.id {
                return Err(bad_client());
            }
            if body_client.secret.is_some() && body_client.secret != h.secret {
                return Err(bad_client());
            }
            h
        }
        None => body_client,
    };
    let grant = match field("grant_type").as_deref() {
        Some("password") => Grant::Password {
            username: field("username"),
            password: field("password"),
        },
        Some("refresh_token") => Grant::RefreshToken(field("refresh_token")),
        Some("client_credentials") => Grant::ClientCredentials,
        Some(other) => {
            return Err(OauthError::new(
                400,
                "unsupported_grant_type",
                format!(
                    "Unsupported grant type: {}",
                    other.chars().take(64).collect::<String>()
                ),
            ))
        }
        None => {
            return Err(OauthError::new(
                400,
                "invalid_request",
                "Missing grant type",
            ))
        }
    };
    Ok(TokenRequest {
        client,
        grant,
        scope: field("scope"),
    })
}

async fn token(state: State, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    if !state.config.builtin_uaa {
        return disabled();
    }
    let TokenRequest {
        client,
        grant,
        scope,
    } = match token_request(req.headers().get(header::AUTHORIZATION), &body) {
        Ok(request) => request,
        Err(e) => return oauth_error(&e),
    };
    let scope = scope.as_deref();
    let result = match grant {
        Grant::Password { username, password } => {
            uaa::password_grant(
                &state,
                &client,
                username.as_deref(),
                password.as_deref(),
                scope,
            )
            .await
        }
        Grant::RefreshToken(token) => {
            uaa::refresh_grant(&state, &client, token.as_deref(), scope).await
        }
        Grant::ClientCredentials => uaa::client_credentials_grant(&state, &client, scope).await,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::body_properties::{self as props, text};
    use proptest::prelude::*;

    const GRANTS: [&str; 3] = ["password", "refresh_token", "client_credentials"];

    fn form_of(pairs: &[(&str, &str)]) -> Vec<u8> {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish()
            .into_bytes()
    }

    /// `Authorization: Basic` as RFC 6749 §2.3.1 writes it: both parts form-urlencoded.
    fn basic(id: &str, secret: &str) -> HeaderValue {
        let part = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let joined = format!("{}:{}", part(id), part(secret));
        let encoded = base64::engine::general_purpose::STANDARD.encode(joined);
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
    }

    /// A refusal is one of the token endpoint's OAuth errors, as a JSON document.
    fn check_oauth_error(e: &OauthError) -> Result<(), TestCaseError> {
        let expected = match e.error {
            "invalid_client" => 401,
            "invalid_request" | "unsupported_grant_type" => 400,
            other => return Err(TestCaseError::fail(format!("refused with {other}"))),
        };
        prop_assert_eq!(e.status, expected);
        let doc: serde_json::Value =
            serde_json::from_slice(&serde_json::to_vec(e).unwrap()).unwrap();
        prop_assert_eq!(doc["error"].as_str(), Some(e.error));
        prop_assert!(doc["error_description"].is_string());
        Ok(())
    }

    proptest! {
        #![proptest_config(props::config())]

        /// Any body and any `Authorization` header: decoded, or refused with an OAuth error,
        /// never a panic; an unsupported grant type is quoted at most 64 characters long.
        #[test]
        fn any_token_request_is_decoded_or_refused(
            body in props::any_bytes(),
            authorization in prop::option::of(prop_oneof![
                prop::collection::vec(any::<u8>(), 0..48),
                ("(basic|Basic|BASIC|bearer|x) ", "[A-Za-z0-9+/=\\-_.:% ]{0,40}")
                    .prop_map(|(scheme, rest)| format!("{scheme}{rest}").into_bytes()),
            ]),
            grant in prop::option::of("\\PC{0,100}"),
        ) {
            let header = authorization.and_then(|a| HeaderValue::from_bytes(&a).ok());
            let mut bodies = vec![body];
            if let Some(g) = &grant {
                bodies.push(form_of(&[("grant_type", g)]));
            }
            for body in bodies {
                match token_request(header.as_ref(), &body) {
                    Ok(_) => {
                        let named = form_urlencoded::parse(&body)
                            .find(|(k, _)| k == "grant_type")
                            .map(|(_, v)| v.into_owned());
                        prop_assert!(named.is_some_and(|g| GRANTS.contains(&g.as_str())));
                    }
                    Err(e) => {
                        check_oauth_error(&e)?;
                        if e.error == "unsupported_grant_type" {
                            let quoted = e.error_description.trim_start_matches("Unsupported grant type: ");
                            prop_assert!(quoted.chars().count() <= 64);
                        }
                    }
                }
            }
        }

        /// A form as clients write it (any values, in any order, with other fields besides)
        /// decodes to what was written.
        #[test]
        fn a_written_token_form_decodes_as_written(
            grant in prop::sample::select(GRANTS.to_vec()),
            username in text(),
            password in text(),
            refresh in text(),
            scope in prop::option::of(text()),
            client in prop::option::of((text(), text())),
            extra in prop::collection::vec(("[a-z]{1,8}", text()), 0..3),
        ) {
            let mut pairs: Vec<(&str, &str)> = extra
                .iter()
                .filter(|(k, _)| !["username", "password", "scope", "grant_type", "refresh_token"].contains(&k.as_str()) && !k.starts_with("client"))
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            pairs.extend([("grant_type", grant), ("username", &username), ("password", &password), ("refresh_token", &refresh)]);
            if let Some(s) = &scope {
                pairs.push(("scope", s));
            }
            if let Some((id, secret)) = &client {
                pairs.extend([("client_id", id.as_str()), ("client_secret", secret.as_str())]);
            }
            let request = token_request(None, &form_of(&pairs));
            let request = match request {
                Ok(r) => r,
                Err(e) => return Err(TestCaseError::fail(format!("refused: {e:?}"))),
            };
            let expected = match grant {
                "password" => Grant::Password { username: Some(username), password: Some(password) },
                "refresh_token" => Grant::RefreshToken(Some(refresh)),
                _ => Grant::ClientCredentials,
            };
            prop_assert_eq!(request.grant, expected);
            prop_assert_eq!(request.scope, scope);
            prop_assert_eq!(request.client.id, client.as_ref().map(|c| c.0.clone()));
            prop_assert_eq!(request.client.secret, client.map(|c| c.1));
        }

        /// Client credentials in `Authorization: Basic` decode to what was encoded; the same
        /// credentials in the body too are fine, other ones are `invalid_client`.
        #[test]
        fn basic_client_credentials_decode_as_encoded(
            id in text(),
            secret in text(),
            other in text(),
        ) {
            let header = basic(&id, &secret);
            let form = form_of(&[("grant_type", "client_credentials")]);
            let request = token_request(Some(&header), &form).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            prop_assert_eq!(request.client.id.as_deref(), Some(id.as_str()));
            prop_assert_eq!(request.client.secret.as_deref(), Some(secret.as_str()));
            let agreeing = form_of(&[("grant_type", "client_credentials"), ("client_id", &id), ("client_secret", &secret)]);
            prop_assert!(token_request(Some(&header), &agreeing).is_ok());
            prop_assume!(other != id);
            let disagreeing = form_of(&[("grant_type", "client_credentials"), ("client_id", &other)]);
            let e = token_request(Some(&header), &disagreeing).err();
            prop_assert!(e.as_ref().is_some_and(|e| e.error == "invalid_client"), "{:?}", e);
        }
    }
}
