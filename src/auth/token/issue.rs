//! The built-in issuer: its ES256 signing key and the tokens it signs.

use base64::Engine;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};

use super::Claims;

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
        let claims = Claims {
            user_id: Some(user_id.to_string()),
            origin: Some("uaa".into()),
            user_name: Some(user_name.to_string()),
            email: Some(if user_name.contains('@') {
                user_name.to_string()
            } else {
                format!("{user_name}@tether.local")
            }),
            ..self.access_claims(user_id, scopes, client_id, grant_type)
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
        let claims = self.access_claims(client_id, scopes, client_id, "client_credentials");
        Ok((self.sign(&claims)?, claims))
    }

    /// What every access token of ours carries, issued now; `sub` is the user or the client.
    fn access_claims(
        &self,
        sub: &str,
        scopes: &[String],
        client_id: &str,
        grant_type: &str,
    ) -> Claims {
        let now = chrono::Utc::now().timestamp();
        Claims {
            jti: Some(uuid::Uuid::new_v4().simple().to_string()),
            sub: Some(sub.to_string()),
            scope: scopes.to_vec(),
            client_id: Some(client_id.to_string()),
            cid: Some(client_id.to_string()),
            azp: Some(client_id.to_string()),
            grant_type: Some(grant_type.to_string()),
            iat: Some(now),
            exp: now + self.ttl_secs,
            iss: Some(self.issuer.clone()),
            zid: Some("uaa".into()),
            aud: audiences(scopes, client_id),
            ..Default::default()
        }
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
