//! JWT verification and issuance.
//!
//! Accepted tokens: those of the built-in issuer (ES256, our key), HS256 tokens signed with a
//! configured shared key, and tokens of an external UAA (RS256/ES256 public keys given as PEM or
//! fetched from its JWKS URL, cached, refetched when a token names an unknown `kid`). Each key
//! accepts only its own algorithms, so `alg: none`, or HS256 signed with a public key as the
//! secret (algorithm confusion), never verifies.
//!
//! Verifying an ES256 signature costs more CPU than the rest of a typical request, and clients
//! send the same token for its whole life: tokens that verified are remembered (by SHA-256 of
//! their exact bytes) until they expire. Only `exp`/`nbf` are re-checked on a hit; the cache is
//! emptied whenever an external UAA's key set is reloaded, so a retired key's tokens stop
//! working at once.
//!
//! Here: the claims and which of them CC accepts; `verify`: the verifier, its keys and cache;
//! `jwks`: an external UAA's key set; `issue`: the built-in issuer.

mod issue;
mod jwks;
mod verify;

use serde::{Deserialize, Serialize};

use super::Actor;
use crate::error::ApiError;

pub use issue::{SigningKey, TokenIssuer};
pub use verify::{decoding_key_from_pem, TokenVerifier};

/// The claims of a UAA access token (the ones clients and we read).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Claims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(default, deserialize_with = "scope_list")]
    pub scope: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zid: Option<String>,
    #[serde(default, deserialize_with = "scope_list")]
    pub aud: Vec<String>,
    /// Our refresh tokens say `refresh`; they are never accepted as access tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_use: Option<String>,
}

/// `scope`/`aud` may be a list or a space-separated string.
fn scope_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
        Null(()),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s.split_whitespace().map(str::to_string).collect(),
        OneOrMany::Many(v) => v,
        OneOrMany::Null(()) => Vec::new(),
    })
}

/// CC accepts a token meant for it: `aud` names `cloud_controller`, or (tokens without `aud`)
/// a `cloud_controller.*` scope; and it must identify a user or a client.
pub fn actor_from_claims(claims: Claims) -> Result<Actor, ApiError> {
    if claims.token_use.as_deref() == Some("refresh") {
        return Err(ApiError::InvalidAuthToken);
    }
    let for_cc = if claims.aud.is_empty() {
        claims
            .scope
            .iter()
            .any(|s| s.starts_with("cloud_controller."))
    } else {
        claims.aud.iter().any(|a| a == "cloud_controller")
    };
    if !for_cc {
        return Err(ApiError::InvalidAuthToken);
    }
    let client_id = claims.client_id.or(claims.cid);
    let user_id = claims.user_id.or_else(|| {
        // A user token carries user_name; a client token's sub is the client id.
        claims.user_name.as_ref().and(claims.sub.clone())
    });
    if user_id.is_none() && client_id.is_none() {
        return Err(ApiError::InvalidAuthToken);
    }
    Ok(Actor {
        user_id,
        user_name: claims.user_name,
        client_id,
        scopes: claims.scope,
    })
}
