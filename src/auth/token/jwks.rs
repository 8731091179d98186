//! An external UAA's token keys, fetched from its JWKS URL (`/token_keys`) and refetched, at
//! most every `min_refresh`, when a token names a key we do not hold.

use std::sync::RwLock;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use super::verify::{algorithms_for, PublicKey};

pub(super) struct Jwks {
    url: String,
    client: reqwest::Client,
    issuer: Option<String>,
    keys: RwLock<Vec<PublicKey>>,
    /// Last fetch attempt, to refetch on an unknown `kid` at most every `min_refresh` (a flood
    /// of tokens with made-up key ids must not turn into a flood of fetches).
    last_fetch: RwLock<Option<Instant>>,
    min_refresh: Duration,
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
    pub(super) fn new(url: String, issuer: Option<String>, min_refresh: Duration) -> Self {
        crate::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Jwks {
            url,
            client,
            issuer,
            keys: RwLock::new(Vec::new()),
            last_fetch: RwLock::new(None),
            min_refresh,
        }
    }

    /// The keys of the last successful fetch.
    pub(super) fn keys(&self) -> Vec<PublicKey> {
        self.keys.read().map(|k| k.clone()).unwrap_or_default()
    }

    /// Refetches unless fetched very recently; true if keys were (re)loaded.
    pub(super) async fn refresh_if_due(&self) -> bool {
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
