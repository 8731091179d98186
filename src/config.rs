//! Typed configuration, built once from flags/environment and passed by value (no globals, so a
//! test can run several differently configured servers in one process).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Settings shared by every command that touches the database or signs tokens.
#[derive(clap::Args, Debug, Clone)]
pub struct CommonArgs {
    /// Database: an SQLite file path (default, created on start) or a postgres:// URL.
    #[arg(long, env = "TETHER_DATABASE_URL", default_value = "tether.db")]
    pub database_url: String,

    /// File holding generated secrets (token signing key, encryption keys); created 0600.
    #[arg(
        long,
        env = "TETHER_SECRETS_FILE",
        default_value = "tether-secrets.json"
    )]
    pub secrets_file: PathBuf,

    /// The secrets themselves, as the secrets file's JSON (from a secret store, or systemd's
    /// credentials): then no secrets file is read or written. Prefer the variable to the flag.
    #[arg(long, env = "TETHER_SECRETS", hide_env_values = true)]
    pub secrets: Option<String>,

    /// Also accept HS256 bearer tokens signed with this shared key.
    #[arg(long, env = "TETHER_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Database connections (SQLite: readers; there is always one writer).
    #[arg(long, env = "TETHER_DB_POOL_SIZE", default_value_t = 8)]
    pub db_pool_size: u32,
}

impl CommonArgs {
    /// The secrets: from `TETHER_SECRETS` when set, else from the file (made if missing when
    /// `create`, else a missing file is an error).
    pub fn load_secrets(&self, create: bool) -> anyhow::Result<Secrets> {
        match &self.secrets {
            Some(json) => Secrets::from_json(json),
            None if create => Secrets::load_or_create(&self.secrets_file),
            None => Secrets::load_existing(&self.secrets_file),
        }
    }

    /// The file keys are reread from (none when the secrets come from the environment).
    pub fn secrets_path(&self) -> Option<PathBuf> {
        self.secrets.is_none().then(|| self.secrets_file.clone())
    }
}

/// Where the server listens and is reached: also what the built-in token issuer puts in `iss`
/// (so `tether token` takes the same settings as `tether serve`).
#[derive(clap::Args, Debug, Clone)]
pub struct AddressArgs {
    /// Address to listen on.
    #[arg(long, env = "TETHER_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,

    /// The URL clients reach this server at (used in /v2/info, root links and the `iss` of the
    /// tokens it issues). Default: the scheme and Host of each request (`iss`: http://BIND).
    #[arg(long, env = "TETHER_EXTERNAL_URL")]
    pub external_url: Option<String>,
}

impl AddressArgs {
    /// The external URL as configured, without a trailing slash.
    pub fn external_url(&self) -> Option<String> {
        self.external_url
            .as_ref()
            .map(|u| u.trim_end_matches('/').to_string())
    }

    /// The `iss` of the built-in issuer's tokens (UAA's is its token endpoint URL).
    pub fn token_issuer(&self) -> String {
        token_issuer(self.external_url().as_deref(), &self.bind)
    }
}

/// The built-in issuer's `iss`: its token endpoint, at the external URL if there is one.
pub fn token_issuer(external_url: Option<&str>, bind: &str) -> String {
    match external_url {
        Some(url) => format!("{url}/oauth/token"),
        None => format!("http://{bind}/oauth/token"),
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub common: CommonArgs,

    #[command(flatten)]
    pub address: AddressArgs,

    #[command(flatten)]
    pub jobs: JobArgs,

    #[command(flatten)]
    pub ops: OpsArgs,

    /// An external UAA advertised to clients as login/token endpoint (default: the built-in one).
    #[arg(long, env = "TETHER_UAA_URL")]
    pub uaa_url: Option<String>,

    /// Accept tokens of an external UAA signed by this public key (PEM file; repeatable).
    #[arg(
        long = "uaa-public-key",
        env = "TETHER_UAA_PUBLIC_KEY",
        value_delimiter = ','
    )]
    pub uaa_public_keys: Vec<PathBuf>,

    /// Accept tokens of an external UAA whose keys are published here (its `/token_keys`).
    #[arg(long, env = "TETHER_UAA_JWKS_URL")]
    pub uaa_jwks_url: Option<String>,

    /// The `iss` an external UAA's tokens must carry.
    #[arg(long, env = "TETHER_UAA_ISSUER")]
    pub uaa_issuer: Option<String>,

    /// Turn off the built-in token issuer (`/oauth/token`), e.g. when an external UAA is used.
    #[arg(long, env = "TETHER_DISABLE_BUILTIN_UAA")]
    pub disable_builtin_uaa: bool,

    /// Timeout for each broker request, seconds (CC: 60).
    #[arg(long, env = "TETHER_BROKER_TIMEOUT_SECS", default_value_t = 60)]
    pub broker_timeout_secs: u64,

    /// At most this many broker requests in flight (0: unlimited).
    #[arg(long, env = "TETHER_BROKER_MAX_CONCURRENT", default_value_t = 0)]
    pub broker_max_concurrent: usize,

    /// HTTP worker threads (default: number of CPUs).
    #[arg(long, env = "TETHER_WORKERS")]
    pub workers: Option<usize>,

    /// Milliseconds a request may wait for a database connection before a 503.
    #[arg(long, env = "TETHER_DB_ACQUIRE_TIMEOUT_MS", default_value_t = 5000)]
    pub db_acquire_timeout_ms: u64,

    /// PostgreSQL: group-commit writer threads, each committing the writes queued while the
    /// previous batch ran in one transaction, on a connection of its own (0: every write its
    /// own transaction on a pooled connection).
    #[arg(long, env = "TETHER_PG_WRITERS", default_value_t = crate::db::DEFAULT_PG_WRITERS)]
    pub pg_writers: usize,

    /// Seconds a client has to send a request's whole body (after its headers) before it gets
    /// a 408 and the connection is closed (nginx in front of CC: 60 s between reads).
    #[arg(long, env = "TETHER_REQUEST_BODY_TIMEOUT_SECS", default_value_t = 30)]
    pub request_body_timeout_secs: u64,

    /// Built-in issuer: failed password logins that lock an account (UAA: 5)...
    #[arg(long, env = "TETHER_LOCKOUT_AFTER_FAILURES", default_value_t = 5)]
    pub lockout_after_failures: u32,

    /// ...when they happen within this many seconds (UAA: 1200)...
    #[arg(long, env = "TETHER_LOCKOUT_COUNT_WITHIN_SECS", default_value_t = 1200)]
    pub lockout_count_within_secs: u64,

    /// ...for this many seconds after the last of them (UAA: 300).
    #[arg(long, env = "TETHER_LOCKOUT_PERIOD_SECS", default_value_t = 300)]
    pub lockout_period_secs: u64,

    /// Password and client-secret checks computed at once (each costs tens of ms of CPU);
    /// logins beyond them wait up to a second, then get 429. Default: half the CPUs, at least 1.
    #[arg(long, env = "TETHER_MAX_CONCURRENT_PASSWORD_CHECKS")]
    pub max_concurrent_password_checks: Option<usize>,

    /// Let a browser app on this origin (`https://dash.example.com`) call the API with a bearer
    /// token (CORS; repeatable, or comma-separated in the variable; `*` for any origin).
    /// Default: no cross-origin access.
    #[arg(
        long = "cors-origin",
        env = "TETHER_CORS_ORIGIN",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,
}

/// What an operator switches and tunes: the access log, metrics, shutdown.
#[derive(clap::Args, Debug, Clone)]
pub struct OpsArgs {
    /// One log line per request (target `tether::access`, info level): on or off.
    #[arg(long, env = "TETHER_ACCESS_LOG", default_value = "on", value_parser = parse_switch, action = clap::ArgAction::Set)]
    pub access_log: bool,

    /// Prometheus metrics at `GET /metrics`: on or off.
    #[arg(long, env = "TETHER_METRICS", default_value = "on", value_parser = parse_switch, action = clap::ArgAction::Set)]
    pub metrics: bool,

    /// Serve `GET /metrics` on this address only (e.g. 127.0.0.1:9464), not on the API's.
    #[arg(long, env = "TETHER_METRICS_BIND")]
    pub metrics_bind: Option<String>,

    /// After SIGTERM/SIGINT: seconds in-flight requests and running jobs get to finish before
    /// the process exits anyway (a second signal exits at once).
    #[arg(long, env = "TETHER_SHUTDOWN_GRACE_SECS", default_value = "30", value_parser = parse_secs)]
    pub shutdown_grace_secs: Duration,
}

/// `on`/`off` (also `true`/`false`, `1`/`0`).
fn parse_switch(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "1" | "yes" => Ok(true),
        "off" | "false" | "0" | "no" => Ok(false),
        _ => Err(format!("'{s}' is neither on nor off")),
    }
}

/// The job runner's pacing (durations in seconds; fractions allowed). Out-of-range values stop
/// `tether serve` at start.
#[derive(clap::Args, Debug, Clone)]
pub struct JobArgs {
    /// Wait between polls of a broker's `last_operation` (a longer `Retry-After` wins).
    #[arg(long, env = "TETHER_POLL_INTERVAL_SECS", default_value = "10", value_parser = parse_secs)]
    pub poll_interval_secs: Duration,

    /// Give up polling an operation after this long (a plan's `maximum_polling_duration` may
    /// say less).
    #[arg(long, env = "TETHER_MAX_POLL_DURATION_SECS", default_value = "604800", value_parser = parse_secs)]
    pub max_poll_duration_secs: Duration,

    /// How long a claimed job is this process's; past it (a crashed process) another takes it
    /// over. Default: three broker timeouts plus 30 s.
    #[arg(long, env = "TETHER_JOB_LEASE_SECS", value_parser = parse_secs)]
    pub job_lease_secs: Option<Duration>,

    /// First retry delay of a failing job (doubling each attempt, at most a day).
    #[arg(long, env = "TETHER_JOB_RETRY_BASE_SECS", default_value = "60", value_parser = parse_secs)]
    pub job_retry_base_secs: Duration,

    /// How often the runner looks for due jobs when nothing wakes it.
    #[arg(long, env = "TETHER_JOB_TICK_SECS", default_value = "1", value_parser = parse_secs)]
    pub job_tick_secs: Duration,

    /// How often operations abandoned by a crashed request are looked for.
    #[arg(long, env = "TETHER_JOB_SWEEP_SECS", default_value = "15", value_parser = parse_secs)]
    pub job_sweep_secs: Duration,

    /// An operation `in progress` this long with no job behind it was abandoned. Default: two
    /// broker timeouts plus 30 s (less risks taking a bind still waiting on its broker).
    #[arg(long, env = "TETHER_JOB_ABANDONED_AFTER_SECS", value_parser = parse_secs)]
    pub job_abandoned_after_secs: Option<Duration>,
}

/// A duration in seconds (`0.2`, `10`, `604800`): finite, not negative.
fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("'{s}' is not a duration in seconds"))
}

/// UAA's account lockout policy for password logins of the built-in issuer.
#[derive(Debug, Clone, Copy)]
pub struct LockoutPolicy {
    pub after_failures: u32,
    pub count_within: Duration,
    pub period: Duration,
}

impl Default for LockoutPolicy {
    /// UAA's defaults.
    fn default() -> Self {
        LockoutPolicy {
            after_failures: 5,
            count_within: Duration::from_secs(1200),
            period: Duration::from_secs(300),
        }
    }
}

/// Default number of password checks at once: half the CPUs, so a login flood leaves the
/// other half to the API.
pub fn default_password_checks() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() / 2)
        .unwrap_or(1)
        .max(1)
}

/// The running server's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub db_pool_size: u32,
    pub db_acquire_timeout: Duration,
    /// See [`crate::db::DbConfig::pg_writers`].
    pub pg_writers: usize,
    pub bind: String,
    /// How long a client may take to send a request body.
    pub request_body_timeout: Duration,
    pub external_url: Option<String>,
    /// An external UAA to advertise as the login/token endpoint (default: our own issuer).
    pub uaa_url: Option<String>,
    pub broker_timeout: Duration,
    pub broker_max_concurrent: usize,
    pub broker_api_version: String,
    pub workers: Option<usize>,
    /// HS256 key whose tokens are accepted (optional).
    pub jwt_secret: Option<Vec<u8>>,
    /// The built-in issuer's ES256 key (PKCS#8 PEM).
    pub signing_key_pem: String,
    /// External UAA: PEM public keys, JWKS URL, expected issuer.
    pub uaa_public_key_pems: Vec<String>,
    pub uaa_jwks_url: Option<String>,
    pub uaa_issuer: Option<String>,
    /// Refetch the JWKS on an unknown key id at most this often.
    pub uaa_jwks_min_refresh: Duration,
    /// Serve `/oauth/token` and friends.
    pub builtin_uaa: bool,
    /// Access-token lifetime for tokens we issue.
    pub token_ttl: Duration,
    pub lockout: LockoutPolicy,
    pub max_concurrent_password_checks: usize,
    /// Encryption keys for credentials at rest, and the file to reload them from.
    pub encryption: crate::crypto::KeyRingConfig,
    pub secrets_file: Option<PathBuf>,
    /// Origins whose browser apps may call the API (CORS); empty: none.
    pub cors_origins: Vec<String>,
    /// Write the access log.
    pub access_log: bool,
    /// Collect and serve Prometheus metrics.
    pub metrics: bool,
    /// Serve metrics on this address instead of the API's.
    pub metrics_bind: Option<String>,
    /// How long in-flight requests and running jobs get after a shutdown signal.
    pub shutdown_grace: Duration,
}

impl Config {
    /// The `iss` of the tokens the built-in issuer signs, and the only one it accepts.
    pub fn token_issuer(&self) -> String {
        token_issuer(self.external_url.as_deref(), &self.bind)
    }

    /// A configuration for tests and tools: given database and signing key, defaults elsewhere.
    pub fn for_database(database_url: impl Into<String>, signing_key_pem: String) -> Self {
        Config {
            database_url: database_url.into(),
            db_pool_size: 4,
            db_acquire_timeout: Duration::from_secs(5),
            pg_writers: crate::db::DbConfig::new("").pg_writers,
            bind: "127.0.0.1:0".into(),
            request_body_timeout: Duration::from_secs(30),
            external_url: None,
            uaa_url: None,
            broker_timeout: Duration::from_secs(60),
            broker_max_concurrent: 0,
            broker_api_version: "2.15".into(),
            workers: None,
            jwt_secret: None,
            signing_key_pem,
            uaa_public_key_pems: Vec::new(),
            uaa_jwks_url: None,
            uaa_issuer: None,
            uaa_jwks_min_refresh: Duration::from_secs(5),
            builtin_uaa: true,
            token_ttl: Duration::from_secs(12 * 3600),
            lockout: LockoutPolicy::default(),
            max_concurrent_password_checks: default_password_checks(),
            encryption: crate::crypto::KeyRingConfig::generate(),
            secrets_file: None,
            cors_origins: Vec::new(),
            access_log: true,
            metrics: true,
            metrics_bind: None,
            shutdown_grace: Duration::from_secs(30),
        }
    }

    /// A test configuration with a freshly generated signing key.
    pub fn for_tests(database_url: impl Into<String>) -> Self {
        let (_, pem) = crate::auth::token::SigningKey::generate().expect("key generation");
        Self::for_database(database_url, pem)
    }

    pub fn from_serve_args(args: &ServeArgs) -> anyhow::Result<Self> {
        let secrets = args.common.load_secrets(true)?;
        let mut uaa_public_key_pems = Vec::new();
        for path in &args.uaa_public_keys {
            uaa_public_key_pems.push(
                std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?,
            );
        }
        Ok(Config {
            database_url: args.common.database_url.clone(),
            db_pool_size: args.common.db_pool_size,
            db_acquire_timeout: Duration::from_millis(args.db_acquire_timeout_ms),
            pg_writers: args.pg_writers,
            bind: args.address.bind.clone(),
            request_body_timeout: Duration::from_secs(args.request_body_timeout_secs.max(1)),
            external_url: args.address.external_url(),
            uaa_url: args
                .uaa_url
                .clone()
                .map(|u| u.trim_end_matches('/').to_string()),
            broker_timeout: Duration::from_secs(args.broker_timeout_secs.max(1)),
            broker_max_concurrent: args.broker_max_concurrent,
            broker_api_version: "2.15".into(),
            workers: args.workers,
            jwt_secret: args.common.jwt_secret.clone().map(String::into_bytes),
            signing_key_pem: secrets.signing_key.clone(),
            uaa_public_key_pems,
            uaa_jwks_url: args.uaa_jwks_url.clone(),
            uaa_issuer: args.uaa_issuer.clone(),
            uaa_jwks_min_refresh: Duration::from_secs(5),
            builtin_uaa: !args.disable_builtin_uaa,
            token_ttl: Duration::from_secs(12 * 3600),
            lockout: LockoutPolicy {
                after_failures: args.lockout_after_failures.max(1),
                count_within: Duration::from_secs(args.lockout_count_within_secs),
                period: Duration::from_secs(args.lockout_period_secs),
            },
            max_concurrent_password_checks: args
                .max_concurrent_password_checks
                .unwrap_or_else(default_password_checks)
                .max(1),
            encryption: secrets.encryption_keys(),
            secrets_file: args.common.secrets_path(),
            cors_origins: parse_origins(&args.cors_origins)?,
            access_log: args.ops.access_log,
            metrics: args.ops.metrics,
            metrics_bind: args.ops.metrics_bind.clone(),
            shutdown_grace: args.ops.shutdown_grace_secs,
        })
    }
}

/// Secrets generated on first start and kept in a 0600 file next to the database.
#[derive(Debug, Serialize, Deserialize)]
pub struct Secrets {
    /// The built-in token issuer's ES256 key (PKCS#8 PEM).
    pub signing_key: String,
    /// Encryption keys for credentials at rest.
    #[serde(default)]
    pub encryption: Option<crate::crypto::KeyRingConfig>,
}

impl Secrets {
    pub fn encryption_keys(&self) -> crate::crypto::KeyRingConfig {
        self.encryption
            .clone()
            .unwrap_or_else(crate::crypto::KeyRingConfig::generate)
    }

    /// Secrets given as JSON (`TETHER_SECRETS`): complete, since nothing can be added to them.
    pub fn from_json(json: &str) -> anyhow::Result<Secrets> {
        let secrets: Secrets = serde_json::from_str(json)
            .map_err(|e| anyhow::anyhow!("TETHER_SECRETS is not a valid secrets document: {e}"))?;
        if secrets.encryption.is_none() {
            anyhow::bail!("TETHER_SECRETS has no encryption keys (\"encryption\")");
        }
        Ok(secrets)
    }

    /// The secrets of a server that has run before: a command that signs or seals for a
    /// server (`token`, `seed-demo`, …) must not make up keys of its own, which the server would
    /// not have.
    pub fn load_existing(path: &Path) -> anyhow::Result<Secrets> {
        if !path.exists() {
            anyhow::bail!(
                "no secrets file at {}: `tether serve` creates it when it first starts; run this \
                 where the server runs, or name the server's file with --secrets-file \
                 (TETHER_SECRETS_FILE)",
                path.display()
            );
        }
        Self::load_or_create(path)
    }

    pub fn load_or_create(path: &Path) -> anyhow::Result<Secrets> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let mut secrets: Secrets = serde_json::from_slice(&bytes).map_err(|e| {
                    anyhow::anyhow!("{} is not a valid secrets file: {e}", path.display())
                })?;
                if secrets.encryption.is_none() {
                    // A file from before encryption at rest: add a key once.
                    secrets.encryption = Some(crate::crypto::KeyRingConfig::generate());
                    secrets.save(path)?;
                }
                Ok(secrets)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (_, signing_key) = crate::auth::token::SigningKey::generate()?;
                let secrets = Secrets {
                    signing_key,
                    encryption: Some(crate::crypto::KeyRingConfig::generate()),
                };
                secrets.save(path)?;
                tracing::info!(path = %path.display(), "generated a new secrets file");
                Ok(secrets)
            }
            Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
        }
    }

    /// Writes the file atomically (temp file, mode 0600, then rename).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let tmp = path.with_extension("tmp");
        write_private(&tmp, &serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

/// Writes a file readable by its owner only (created with mode 0600, never world-readable even
/// for an instant).
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)?;
        }
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

/// Checks and normalizes the configured origins: `*`, or `http(s)://host[:port]` with nothing
/// after it (a trailing `/` is dropped). Written the way browsers send `Origin` (lowercase host,
/// no default port, punycode), so that an exact comparison suffices at request time.
pub fn parse_origins(values: &[String]) -> anyhow::Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for raw in values.iter().map(|v| v.trim()).filter(|v| !v.is_empty()) {
        let origin = if raw == "*" {
            "*".to_string()
        } else {
            let url = reqwest::Url::parse(raw)
                .map_err(|e| anyhow::anyhow!("--cors-origin {raw:?}: not a URL ({e})"))?;
            let bare = url.path() == "/"
                && url.query().is_none()
                && url.fragment().is_none()
                && url.username().is_empty()
                && url.password().is_none();
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() || !bare {
                anyhow::bail!(
                    "--cors-origin {raw:?}: an origin is http(s)://host[:port], without a path"
                );
            }
            url.origin().ascii_serialization()
        };
        if !out.contains(&origin) {
            out.push(origin);
        }
    }
    Ok(out)
}
