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

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
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

/// A verification key with the algorithms it may verify.
#[derive(Clone)]
struct PublicKey {
    kid: Option<String>,
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
    /// Tokens verified by this key must carry this `iss` (external UAA), if set.
    issuer: Option<String>,
}

struct Jwks {
    url: String,
    client: reqwest::Client,
    issuer: Option<String>,
    keys: RwLock<Vec<PublicKey>>,
    /// Last fetch attempt, to refetch on an unknown `kid` at most every `min_refresh` (a flood
    /// of tokens with made-up key ids must not turn into a flood of fetches).
    last_fetch: RwLock<Option<Instant>>,
    min_refresh: Duration,
}

/// Verifies bearer tokens.
pub struct TokenVerifier {
    hmac: Option<DecodingKey>,
    keys: Vec<PublicKey>,
    jwks: Option<Arc<Jwks>>,
    leeway_secs: u64,
    verified: Mutex<HashMap<[u8; 32], Verified>>,
}

/// Tokens remembered at most (a few hundred bytes each).
const VERIFIED_CACHE_MAX: usize = 4096;

/// A token that verified, and the times that bound its validity.
#[derive(Clone)]
struct Verified {
    actor: Actor,
    exp: i64,
    nbf: Option<i64>,
}

impl Verified {
    fn valid_at(&self, now: i64, leeway: i64) -> bool {
        now <= self.exp.saturating_add(leeway)
            && self.nbf.is_none_or(|nbf| nbf.saturating_sub(leeway) <= now)
    }
}

fn algorithms_for(key: &DecodingKey) -> Vec<Algorithm> {
    use jsonwebtoken::AlgorithmFamily;
    match key.family() {
        AlgorithmFamily::Rsa => vec![Algorithm::RS256, Algorithm::RS384, Algorithm::RS512],
        AlgorithmFamily::Ec => vec![Algorithm::ES256, Algorithm::ES384],
        AlgorithmFamily::Ed => vec![Algorithm::EdDSA],
        AlgorithmFamily::Hmac => vec![],
    }
}

/// A PEM public key (RSA or EC, SPKI or PKCS#1).
pub fn decoding_key_from_pem(pem: &[u8]) -> anyhow::Result<DecodingKey> {
    DecodingKey::from_rsa_pem(pem)
        .or_else(|_| DecodingKey::from_ec_pem(pem))
        .map_err(|e| anyhow::anyhow!("not an RSA or EC public key in PEM: {e}"))
}

impl TokenVerifier {
    pub fn new() -> Self {
        TokenVerifier {
            hmac: None,
            keys: Vec::new(),
            jwks: None,
            leeway_secs: 30,
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// Accept HS256 tokens signed with this shared key.
    pub fn with_hmac(mut self, secret: &[u8]) -> Self {
        self.hmac = Some(DecodingKey::from_secret(secret));
        self
    }

    /// Accept tokens signed by this public key (our own issuer's, or a configured one).
    pub fn with_public_key(
        mut self,
        kid: Option<String>,
        key: DecodingKey,
        issuer: Option<String>,
    ) -> Self {
        self.keys.push(PublicKey {
            kid,
            algorithms: algorithms_for(&key),
            key,
            issuer,
        });
        self
    }

    /// Accept tokens signed by the keys at a JWKS URL (an external UAA's `/token_keys`).
    pub fn with_jwks(mut self, url: String, issuer: Option<String>, min_refresh: Duration) -> Self {
        crate::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        self.jwks = Some(Arc::new(Jwks {
            url,
            client,
            issuer,
            keys: RwLock::new(Vec::new()),
            last_fetch: RwLock::new(None),
            min_refresh,
        }));
        self
    }

    pub fn with_leeway(mut self, secs: u64) -> Self {
        self.leeway_secs = secs;
        self
    }

    /// Verifies a token, fetching the external JWKS if the token's key is not known yet.
    pub async fn verify(&self, token: &str) -> Result<Actor, ApiError> {
        use sha2::Digest;
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let now = chrono::Utc::now().timestamp();
        let leeway = self.leeway_secs as i64;
        if let Some(hit) = self.remembered(&digest) {
            return if hit.valid_at(now, leeway) {
                Ok(hit.actor)
            } else {
                self.forget(&digest);
                tracing::debug!(reason = "expired", "rejected bearer token");
                Err(ApiError::InvalidAuthToken)
            };
        }
        let verified = self.verify_signature(token).await?;
        let actor = verified.actor.clone();
        self.remember(digest, verified, now, leeway);
        Ok(actor)
    }

    fn remembered(&self, digest: &[u8; 32]) -> Option<Verified> {
        let cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(digest).cloned()
    }

    fn forget(&self, digest: &[u8; 32]) {
        let mut cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        cache.remove(digest);
    }

    fn remember(&self, digest: [u8; 32], verified: Verified, now: i64, leeway: i64) {
        let mut cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= VERIFIED_CACHE_MAX {
            cache.retain(|_, v| v.valid_at(now, leeway));
            if cache.len() >= VERIFIED_CACHE_MAX {
                // Thousands of live tokens at once: start over rather than grow without bound.
                cache.clear();
            }
        }
        cache.insert(digest, verified);
    }

    /// The full check: signature, claims, audience (no cache).
    async fn verify_signature(&self, token: &str) -> Result<Verified, ApiError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            tracing::debug!(reason = "not a JWT", "rejected bearer token");
            ApiError::InvalidAuthToken
        })?;
        if let Some(result) = self.try_verify(token, &header) {
            return result;
        }
        if let Some(jwks) = &self.jwks {
            if jwks.refresh_if_due().await {
                // The external UAA's key set was reloaded: a key may have been retired, and
                // tokens it signed must stop working now, cached or not.
                self.verified
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clear();
                if let Some(result) = self.try_verify(token, &header) {
                    return result;
                }
            }
        }
        // Typically a token of another issuer, or of an instance with other secrets.
        tracing::debug!(
            reason = "unknown key id",
            kid = header.kid.as_deref().unwrap_or("-"),
            alg = ?header.alg,
            "rejected bearer token"
        );
        Err(ApiError::InvalidAuthToken)
    }

    /// `None`: no key we hold may verify this token (maybe the JWKS has it).
    fn try_verify(&self, token: &str, header: &Header) -> Option<Result<Verified, ApiError>> {
        if header.alg == Algorithm::HS256 {
            let key = self.hmac.as_ref()?;
            return Some(self.check(token, header.alg, key, None));
        }
        let jwks_keys = self
            .jwks
            .as_ref()
            .map(|j| j.keys.read().map(|k| k.clone()).unwrap_or_default())
            .unwrap_or_default();
        let candidates: Vec<&PublicKey> = self
            .keys
            .iter()
            .chain(jwks_keys.iter())
            .filter(|k| k.algorithms.contains(&header.alg))
            .filter(|k| match (&header.kid, &k.kid) {
                (Some(want), Some(have)) => want == have,
                _ => true,
            })
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let mut last = ApiError::InvalidAuthToken;
        for k in candidates {
            match self.check(token, header.alg, &k.key, k.issuer.as_deref()) {
                Ok(actor) => return Some(Ok(actor)),
                Err(e) => last = e,
            }
        }
        Some(Err(last))
    }

    fn check(
        &self,
        token: &str,
        alg: Algorithm,
        key: &DecodingKey,
        issuer: Option<&str>,
    ) -> Result<Verified, ApiError> {
        let mut validation = Validation::new(alg);
        validation.leeway = self.leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        match issuer {
            // A pinned issuer must be named: a token without `iss` is not one of its tokens.
            Some(iss) => {
                validation.set_required_spec_claims(&["exp", "iss"]);
                validation.set_issuer(&[iss]);
            }
            None => validation.set_required_spec_claims(&["exp"]),
        }
        let data = decode::<Claims>(token, key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            let reason = match e.kind() {
                ErrorKind::ExpiredSignature => "expired",
                ErrorKind::ImmatureSignature => "not valid yet",
                ErrorKind::InvalidSignature => "bad signature",
                ErrorKind::InvalidIssuer => "wrong issuer",
                ErrorKind::MissingRequiredClaim(_) => "missing claim",
                _ => "invalid",
            };
            tracing::debug!(reason, error = %e, "rejected bearer token");
            ApiError::InvalidAuthToken
        })?;
        let (exp, nbf) = (data.claims.exp, data.claims.nbf);
        Ok(Verified {
            actor: actor_from_claims(data.claims).inspect_err(|_| {
                tracing::debug!(
                    reason = "not a token for the cloud controller (audience, scopes or subject)",
                    "rejected bearer token"
                )
            })?,
            exp,
            nbf,
        })
    }
}

impl Default for TokenVerifier {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
    /// UAA also publishes the PEM.
    #[serde(default)]
    value: Option<String>,
}

impl Jwks {
    /// Refetches unless fetched very recently; true if keys were (re)loaded.
    async fn refresh_if_due(&self) -> bool {
        {
            let last = self.last_fetch.read().map(|l| *l).unwrap_or(None);
            if last.is_some_and(|t| t.elapsed() < self.min_refresh) {
                return false;
            }
        }
        if let Ok(mut l) = self.last_fetch.write() {
            *l = Some(Instant::now());
        }
        match self.fetch().await {
            Ok(keys) => {
                tracing::info!(url = %self.url, keys = keys.len(), "loaded token keys");
                if let Ok(mut k) = self.keys.write() {
                    *k = keys;
                }
                true
            }
            Err(e) => {
                tracing::warn!(url = %self.url, error = %e, "could not fetch token keys");
                false
            }
        }
    }

    async fn fetch(&self) -> anyhow::Result<Vec<PublicKey>> {
        let set: JwkSet = self
            .client
            .get(&self.url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let mut out = Vec::new();
        for jwk in set.keys {
            let key = match jwk.kty.as_str() {
                "RSA" => match (&jwk.n, &jwk.e, &jwk.value) {
                    (Some(n), Some(e), _) => DecodingKey::from_rsa_components(n, e).ok(),
                    (_, _, Some(pem)) => DecodingKey::from_rsa_pem(pem.as_bytes()).ok(),
                    _ => None,
                },
                "EC" => match (&jwk.x, &jwk.y) {
                    (Some(x), Some(y)) => DecodingKey::from_ec_components(x, y).ok(),
                    _ => None,
                },
                // Symmetric keys are never accepted from a URL.
                _ => None,
            };
            let Some(key) = key else { continue };
            let mut algorithms = algorithms_for(&key);
            if let Some(alg) = jwk.alg.as_deref().and_then(|a| a.parse::<Algorithm>().ok()) {
                algorithms.retain(|a| *a == alg);
            }
            out.push(PublicKey {
                kid: jwk.kid,
                algorithms,
                key,
                issuer: self.issuer.clone(),
            });
        }
        Ok(out)
    }
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

/// The built-in issuer's signing key: ECDSA P-256 (ES256), so its public half can be published
/// at `/token_keys` without giving anyone the power to sign.
pub struct SigningKey {
    pub kid: String,
    encoding: EncodingKey,
    pub decoding: DecodingKey,
    /// Base64url affine coordinates, for the JWK.
    pub x: String,
    pub y: String,
    pub public_pem: String,
}

impl SigningKey {
    /// Generates a fresh key; returns it and its PKCS#8 PEM (to store).
    pub fn generate() -> anyhow::Result<(SigningKey, String)> {
        use p256::pkcs8::EncodePrivateKey;
        let secret = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let pem = secret
            .to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
            .map_err(|e| anyhow::anyhow!("encoding key: {e}"))?
            .to_string();
        Ok((Self::from_pem(&pem)?, pem))
    }

    pub fn from_pem(pem: &str) -> anyhow::Result<SigningKey> {
        use p256::pkcs8::{DecodePrivateKey, EncodePublicKey};
        let secret = p256::ecdsa::SigningKey::from_pkcs8_pem(pem)
            .map_err(|e| anyhow::anyhow!("signing key is not a P-256 PKCS#8 PEM: {e}"))?;
        let public = secret.verifying_key();
        let point = public.to_encoded_point(false);
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let x = b64(point.x().ok_or_else(|| anyhow::anyhow!("bad point"))?);
        let y = b64(point.y().ok_or_else(|| anyhow::anyhow!("bad point"))?);
        let public_pem = public
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .map_err(|e| anyhow::anyhow!("encoding public key: {e}"))?;
        // The key id names the key (a digest of its public half), so a rotated key gets a new one.
        let kid = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            x.hash(&mut h);
            y.hash(&mut h);
            format!("tether-{:016x}", h.finish())
        };
        Ok(SigningKey {
            kid,
            encoding: EncodingKey::from_ec_pem(pem.as_bytes())?,
            decoding: DecodingKey::from_ec_components(&x, &y)?,
            x,
            y,
            public_pem,
        })
    }
}

/// Signs tokens for the built-in issuer (`tether token`, `/oauth/token`).
pub struct TokenIssuer {
    key: SigningKey,
    pub issuer: String,
    pub ttl_secs: i64,
    pub refresh_ttl_secs: i64,
}

impl TokenIssuer {
    pub fn new(key: SigningKey, issuer: impl Into<String>, ttl_secs: i64) -> Self {
        TokenIssuer {
            key,
            issuer: issuer.into(),
            ttl_secs,
            refresh_ttl_secs: 30 * 24 * 3600,
        }
    }

    pub fn key(&self) -> &SigningKey {
        &self.key
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
            iss: Some(self.issuer.clone()),
            zid: Some("uaa".into()),
            aud: audiences(scopes, client_id),
            ..Default::default()
        };
        Ok((self.sign(&claims)?, claims))
    }

    /// A refresh token: reusable until it expires (clients replay the first one they got).
    pub fn refresh_token(
        &self,
        user_id: &str,
        user_name: &str,
        scopes: &[String],
        client_id: &str,
    ) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            jti: Some(format!("{}-r", uuid::Uuid::new_v4().simple())),
            sub: Some(user_id.to_string()),
            scope: scopes.to_vec(),
            client_id: Some(client_id.to_string()),
            cid: Some(client_id.to_string()),
            grant_type: Some("password".into()),
            user_id: Some(user_id.to_string()),
            user_name: Some(user_name.to_string()),
            origin: Some("uaa".into()),
            iat: Some(now),
            exp: now + self.refresh_ttl_secs,
            iss: Some(self.issuer.clone()),
            zid: Some("uaa".into()),
            aud: vec![client_id.to_string()],
            token_use: Some("refresh".into()),
            ..Default::default()
        };
        self.sign(&claims)
    }

    /// Verifies one of our refresh tokens.
    pub fn verify_refresh(&self, token: &str) -> Option<Claims> {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);
        validation.set_issuer(&[&self.issuer]);
        let data = decode::<Claims>(token, &self.key.decoding, &validation).ok()?;
        (data.claims.token_use.as_deref() == Some("refresh")).then_some(data.claims)
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
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("JWT".into());
        header.kid = Some(self.key.kid.clone());
        Ok(encode(&header, claims, &self.key.encoding)?)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims {
            sub: Some("user-1".into()),
            user_id: Some("user-1".into()),
            user_name: Some("dev".into()),
            scope: vec!["cloud_controller.read".into()],
            exp,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn remembered_tokens_still_expire_and_altered_ones_never_match() {
        let (key, _) = SigningKey::generate().unwrap();
        let decoding = key.decoding.clone();
        let issuer = TokenIssuer::new(key, "http://tether", 600);
        let verifier = TokenVerifier::new()
            .with_public_key(None, decoding, None)
            .with_leeway(0);
        let now = chrono::Utc::now().timestamp();

        let token = issuer.sign(&claims(now + 1)).unwrap();
        assert_eq!(
            verifier.verify(&token).await.unwrap().user_id.as_deref(),
            Some("user-1")
        );
        // Second use: from the cache.
        assert!(verifier.verify(&token).await.is_ok());
        assert_eq!(verifier.verified.lock().unwrap().len(), 1);

        // A token differing in one signature byte is verified afresh (and fails).
        let mut altered = token.clone().into_bytes();
        let last = altered.len() - 2;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        assert!(verifier.verify(&altered).await.is_err());
        assert_eq!(
            verifier.verified.lock().unwrap().len(),
            1,
            "failures are not remembered"
        );

        // Once past `exp`, the remembered token is refused and forgotten.
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert!(matches!(
            verifier.verify(&token).await,
            Err(ApiError::InvalidAuthToken)
        ));
        assert!(verifier.verified.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_cache_stays_bounded() {
        let (key, _) = SigningKey::generate().unwrap();
        let decoding = key.decoding.clone();
        let issuer = TokenIssuer::new(key, "http://tether", 600);
        let verifier = TokenVerifier::new().with_public_key(None, decoding, None);
        let now = chrono::Utc::now().timestamp();
        for i in 0..(VERIFIED_CACHE_MAX + 10) {
            let mut c = claims(now + 600);
            c.jti = Some(format!("t{i}"));
            let token = issuer.sign(&c).unwrap();
            assert!(verifier.verify(&token).await.is_ok());
        }
        assert!(verifier.verified.lock().unwrap().len() <= VERIFIED_CACHE_MAX);
    }
}
