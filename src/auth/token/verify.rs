//! Verifying bearer tokens: the keys we hold (HMAC, PEM public keys, an external UAA's JWKS)
//! and the cache of tokens that verified.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::{decode, Algorithm, DecodingKey, Header, Validation};

use super::jwks::Jwks;
use super::{actor_from_claims, Claims};
use crate::auth::Actor;
use crate::error::ApiError;

/// A verification key with the algorithms it may verify.
#[derive(Clone)]
pub(super) struct PublicKey {
    pub(super) kid: Option<String>,
    pub(super) algorithms: Vec<Algorithm>,
    pub(super) key: DecodingKey,
    /// Tokens verified by this key must carry this `iss` (external UAA), if set.
    pub(super) issuer: Option<String>,
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

pub(super) fn algorithms_for(key: &DecodingKey) -> Vec<Algorithm> {
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
        self.jwks = Some(Arc::new(Jwks::new(url, issuer, min_refresh)));
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
        let jwks_keys = self.jwks.as_ref().map(|j| j.keys()).unwrap_or_default();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::token::{Claims, SigningKey, TokenIssuer};

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
