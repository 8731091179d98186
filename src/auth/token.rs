//! JWT verification and issuance.

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::Actor;
use crate::error::ApiError;

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

/// Verifies bearer tokens. Only the configured algorithms are accepted for each key, so a token
/// that names another algorithm (`none`, or HS256 signed with a public key) fails.
pub struct TokenVerifier {
    hmac: Option<DecodingKey>,
    issuer: Option<String>,
    leeway_secs: u64,
}

impl TokenVerifier {
    pub fn hs256(secret: &[u8]) -> Self {
        TokenVerifier {
            hmac: Some(DecodingKey::from_secret(secret)),
            issuer: None,
            leeway_secs: 30,
        }
    }

    pub fn with_issuer(mut self, issuer: Option<String>) -> Self {
        self.issuer = issuer;
        self
    }

    pub fn verify(&self, token: &str) -> Result<Actor, ApiError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| ApiError::InvalidAuthToken)?;
        let key = match header.alg {
            Algorithm::HS256 => self.hmac.as_ref(),
            _ => None,
        }
        .ok_or(ApiError::InvalidAuthToken)?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
        }
        let data = decode::<Claims>(token, key, &validation).map_err(|e| {
            tracing::debug!(error = %e, "rejected bearer token");
            ApiError::InvalidAuthToken
        })?;
        actor_from_claims(data.claims)
    }
}

/// CC accepts a token meant for it: `aud` names `cloud_controller`, or (tokens without `aud`)
/// a `cloud_controller.*` scope; and it must identify a user or a client.
pub fn actor_from_claims(claims: Claims) -> Result<Actor, ApiError> {
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

/// Signs tokens for our own issuer (`tether token`, `/oauth/token`).
pub struct TokenIssuer {
    key: EncodingKey,
    pub issuer: String,
    pub ttl_secs: i64,
}

impl TokenIssuer {
    pub fn hs256(secret: &[u8], issuer: impl Into<String>, ttl_secs: i64) -> Self {
        TokenIssuer {
            key: EncodingKey::from_secret(secret),
            issuer: issuer.into(),
            ttl_secs,
        }
    }

    /// A user access token with UAA's claim set.
    pub fn user_token(
        &self,
        user_id: &str,
        user_name: &str,
        scopes: &[String],
        client_id: &str,
        grant_type: &str,
    ) -> anyhow::Result<(String, Claims)> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            jti: Some(uuid::Uuid::new_v4().simple().to_string()),
            sub: Some(user_id.to_string()),
            scope: scopes.to_vec(),
            client_id: Some(client_id.to_string()),
            cid: Some(client_id.to_string()),
            azp: Some(client_id.to_string()),
            grant_type: Some(grant_type.to_string()),
            user_id: Some(user_id.to_string()),
            origin: Some("uaa".into()),
            user_name: Some(user_name.to_string()),
            email: Some(if user_name.contains('@') {
                user_name.to_string()
            } else {
                format!("{user_name}@tether.local")
            }),
            iat: Some(now),
            exp: now + self.ttl_secs,
            nbf: None,
            iss: Some(self.issuer.clone()),
            zid: Some("uaa".into()),
            aud: audiences(scopes, client_id),
        };
        Ok((self.sign(&claims)?, claims))
    }

    /// A client-credentials access token (no user).
    pub fn client_token(
        &self,
        client_id: &str,
        scopes: &[String],
    ) -> anyhow::Result<(String, Claims)> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            jti: Some(uuid::Uuid::new_v4().simple().to_string()),
            sub: Some(client_id.to_string()),
            scope: scopes.to_vec(),
            client_id: Some(client_id.to_string()),
            cid: Some(client_id.to_string()),
            azp: Some(client_id.to_string()),
            grant_type: Some("client_credentials".into()),
            iat: Some(now),
            exp: now + self.ttl_secs,
            iss: Some(self.issuer.clone()),
            zid: Some("uaa".into()),
            aud: audiences(scopes, client_id),
            ..Default::default()
        };
        Ok((self.sign(&claims)?, claims))
    }

    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some("JWT".into());
        Ok(encode(&header, claims, &self.key)?)
    }
}

/// UAA puts the resource of each scope (`cloud_controller.read` → `cloud_controller`) and the
/// client in `aud`.
fn audiences(scopes: &[String], client_id: &str) -> Vec<String> {
    let mut aud: Vec<String> = scopes
        .iter()
        .filter_map(|s| s.split_once('.').map(|(r, _)| r.to_string()))
        .collect();
    aud.push(client_id.to_string());
    aud.sort();
    aud.dedup();
    aud
}
