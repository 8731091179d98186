//! Application state, shared by `tether serve`, the job runner and the tests: configuration,
//! the database, the token verifier and issuer, the broker client, the keys for credentials at
//! rest, the clock.

use std::ops::Deref;
use std::sync::Arc;

use crate::auth::token::{decoding_key_from_pem, SigningKey};
use crate::auth::{TokenIssuer, TokenVerifier};
use crate::broker::{BrokerClient, BrokerClientConfig};
use crate::config::Config;
use crate::db::{Db, DbConfig, DbConnection};
use crate::error::ApiResult;

/// Everything a request handler or background job needs.
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Store,
    pub verifier: TokenVerifier,
    pub issuer: TokenIssuer,
    pub broker: BrokerClient,
    /// Wakes the job runner when a job is enqueued (so polls start without waiting a tick).
    pub jobs_wakeup: Arc<tokio::sync::Notify>,
    /// The time (a test moves it forward).
    pub clock: crate::clock::Clock,
    /// Password and client-secret checks running now (see `service::uaa`).
    pub password_checks: Arc<tokio::sync::Semaphore>,
    /// Keys for credentials at rest (shared with the broker client, which opens sealed broker
    /// passwords when it authenticates).
    pub crypto: Arc<crate::crypto::KeyRing>,
    /// Serving or shutting down (readiness, the job runner).
    pub lifecycle: crate::lifecycle::Lifecycle,
    /// Prometheus metrics (`GET /metrics`).
    pub metrics: crate::metrics::Metrics,
}

impl AppState {
    /// Connects to the database (running migrations) and builds the shared clients.
    pub fn new(config: Config) -> anyhow::Result<AppState> {
        let db = Db::connect(&DbConfig {
            url: config.database_url.clone(),
            pool_size: config.db_pool_size,
            acquire_timeout: config.db_acquire_timeout,
            pg_writers: config.pg_writers,
        })?;
        // Keys rotated by `tether rotate-key` are picked up by rereading the secrets file.
        let reload = config
            .secrets_file
            .clone()
            .map(|path| -> crate::crypto::KeySource {
                Box::new(move || {
                    Ok(crate::config::Secrets::load_or_create(&path)?.encryption_keys())
                })
            });
        let crypto = Arc::new(crate::crypto::KeyRing::new(&config.encryption, reload)?);
        let broker = BrokerClient::new(BrokerClientConfig {
            timeout: config.broker_timeout,
            api_version: config.broker_api_version.clone(),
            api_info_location: config.external_url.as_ref().map(|u| format!("{u}/v2/info")),
            max_concurrent_requests: config.broker_max_concurrent,
        })?
        .with_keyring(crypto.clone());
        let issuer = config.token_issuer();
        let signing_key = SigningKey::from_pem(&config.signing_key_pem)?;
        // Our own tokens are held to the same rules as an external UAA's: our key, and our
        // issuer in `iss`.
        let mut verifier = TokenVerifier::new().with_public_key(
            Some(signing_key.kid.clone()),
            signing_key.decoding.clone(),
            Some(issuer.clone()),
        );
        if let Some(secret) = &config.jwt_secret {
            verifier = verifier.with_hmac(secret);
        }
        for pem in &config.uaa_public_key_pems {
            verifier = verifier.with_public_key(
                None,
                decoding_key_from_pem(pem.as_bytes())?,
                config.uaa_issuer.clone(),
            );
        }
        if let Some(url) = &config.uaa_jwks_url {
            verifier = verifier.with_jwks(
                url.clone(),
                config.uaa_issuer.clone(),
                config.uaa_jwks_min_refresh,
            );
        }
        let password_checks = Arc::new(tokio::sync::Semaphore::new(
            config.max_concurrent_password_checks.max(1),
        ));
        let metrics = crate::metrics::Metrics::new(db.stats(), broker.metrics());
        Ok(AppState {
            metrics,
            verifier,
            issuer: TokenIssuer::new(signing_key, issuer, config.token_ttl.as_secs() as i64),
            broker,
            db: Store(db),
            crypto,
            config: Arc::new(config),
            jobs_wakeup: Arc::new(tokio::sync::Notify::new()),
            clock: crate::clock::Clock::system(),
            password_checks,
            lifecycle: crate::lifecycle::Lifecycle::default(),
        })
    }

    /// Seals a credential for storage.
    pub fn crypto_seal(&self, plaintext: &str) -> String {
        self.crypto.seal(plaintext)
    }

    /// Opens a stored credential (plaintext from before encryption passes through).
    pub fn crypto_open(&self, stored: &str) -> crate::error::ApiResult<String> {
        self.crypto
            .open(stored)
            .map_err(|e| crate::error::ApiError::internal(format!("credentials: {e}")))
    }
}

/// The database as the use cases use it: [`Db`]'s calls with `ApiError` as the error type, so
/// that a closure's `?` needs no annotation.
#[derive(Clone)]
pub struct Store(pub Db);

impl Store {
    pub async fn read<F, T>(&self, f: F) -> ApiResult<T>
    where
        F: FnOnce(&mut DbConnection) -> ApiResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.0.read(f).await
    }

    pub async fn read_snapshot<F, T>(&self, f: F) -> ApiResult<T>
    where
        F: FnOnce(&mut DbConnection) -> ApiResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.0.read_snapshot(f).await
    }

    pub async fn write<F, T>(&self, f: F) -> ApiResult<T>
    where
        F: FnOnce(&mut DbConnection) -> ApiResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.0.write(f).await
    }

    pub fn write_blocking<F, T>(&self, f: F) -> ApiResult<T>
    where
        F: FnOnce(&mut DbConnection) -> ApiResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.0.write_blocking(f)
    }

    pub fn read_blocking<F, T>(&self, f: F) -> ApiResult<T>
    where
        F: FnOnce(&mut DbConnection) -> ApiResult<T>,
    {
        self.0.read_blocking(f)
    }
}

impl Deref for Store {
    type Target = Db;

    fn deref(&self) -> &Db {
        &self.0
    }
}
