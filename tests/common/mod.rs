//! Test harness: a real tether server (same `build_app!` as `tether serve`) on 127.0.0.1 with its
//! own database (a temp SQLite file, or a fresh PostgreSQL schema), a real demo broker, and a
//! reqwest client.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tether::app::AppState;
use tether::config::Config;
use tether::demo_broker::DemoBroker;
use tether::jobs::{JobRunner, RunnerConfig};

pub mod jobs;
pub mod metrics;
pub mod osb;
pub mod pg_server;
pub mod process;
pub mod tokens;

pub const JWT_SECRET: &[u8] = b"tether-test-secret-key-0123456789";
pub const BROKER_USER: &str = "broker-user";
pub const BROKER_PASS: &str = "broker-pass";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each listed `async fn name(backend: Backend)` once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[actix_web::test]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[actix_web::test]
                async fn $name() {
                    if $crate::common::skip_postgres() {
                        eprintln!("skipping the PostgreSQL run (see common::skip_postgres)");
                        return;
                    }
                    super::$name($crate::common::Backend::Postgres).await
                }
            )*
        }
    };
}

/// True when the PostgreSQL half of the tests cannot run here and may be skipped: asked for
/// (`TETHER_TEST_SKIP_PG=1`), or no server answers and none can be started. Under CI
/// (`CI` or `TETHER_REQUIRE_PG=1` set) the skip setting is ignored and a missing PostgreSQL
/// fails the test instead.
pub fn skip_postgres() -> bool {
    let required = std::env::var_os("CI").is_some()
        || std::env::var("TETHER_REQUIRE_PG").is_ok_and(|v| v == "1");
    // A required PostgreSQL half cannot be switched off by a leftover skip setting.
    if !required && std::env::var("TETHER_TEST_SKIP_PG").is_ok_and(|v| v == "1") {
        return true;
    }
    if pg_server::shared_admin_url().is_some() {
        return false;
    }
    assert!(
        !required,
        "no PostgreSQL for the PostgreSQL half of the tests: none at 127.0.0.1:5432 \
         (or TETHER_TEST_PG_URL), and no server binaries (pg_config --bindir) to start one"
    );
    eprintln!(
        "\n*** NO POSTGRESQL: skipping the PostgreSQL half of this test (none at \
         127.0.0.1:5432 or TETHER_TEST_PG_URL, no binaries to start one) ***\n"
    );
    true
}

/// The PostgreSQL server the tests make their schemas in (see `pg_server::shared_admin_url`).
pub fn pg_admin_url() -> String {
    pg_server::shared_admin_url().expect("no PostgreSQL for the tests (see skip_postgres)")
}

/// A database for one test, removed afterwards.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg_schema: Option<String>,
}

impl TestDb {
    /// A database the test manages itself (e.g. on a private server); nothing is dropped.
    pub fn at(url: String) -> TestDb {
        TestDb {
            url,
            _dir: None,
            pg_schema: None,
        }
    }

    pub fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = dir.path().join("tether.db").to_string_lossy().into_owned();
                TestDb {
                    url,
                    _dir: Some(dir),
                    pg_schema: None,
                }
            }
            Backend::Postgres => {
                use diesel::connection::SimpleConnection;
                use diesel::Connection;
                let admin = pg_admin_url();
                let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
                let mut conn = diesel::PgConnection::establish(&admin).unwrap_or_else(|e| {
                    panic!(
                        "PostgreSQL at {admin} is needed for the PostgreSQL half of the tests ({e}); \
                         start it, point TETHER_TEST_PG_URL at one, or set TETHER_TEST_SKIP_PG=1"
                    )
                });
                conn.batch_execute(&format!("CREATE SCHEMA {schema}"))
                    .expect("create schema");
                let sep = if admin.contains('?') { '&' } else { '?' };
                let url = format!("{admin}{sep}options=-csearch_path%3D{schema}");
                TestDb {
                    url,
                    _dir: None,
                    pg_schema: Some(schema),
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(schema) = &self.pg_schema {
            use diesel::connection::SimpleConnection;
            use diesel::Connection;
            if let Ok(mut conn) = diesel::PgConnection::establish(&pg_admin_url()) {
                let _ = conn.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
            }
        }
    }
}

/// CC's `code` for each `error_code` the tests assert with `Response::assert_error`.
///
/// The `CF-` names CC raises as `CloudController::Errors::ApiError` carry their number from CC's
/// errors/v2.yml. The broker failures (CC's `lib/services/service_brokers/v2/errors/*.rb`, all
/// `StructuredError`s) and unknown errors have no v2.yml entry: CC's `V2ErrorHasher` renders them
/// with 10001 (`ServiceBrokerRequestRejected` has a v2.yml number, 270020, but CC uses it only
/// when registering a broker; a bind or unbind the broker rejects is the 10001 class).
const CC_ERROR_CODES: &[(&str, u64)] = &[
    ("CF-InvalidAuthToken", 1000),
    ("CF-MessageParseError", 1001),
    ("CF-InvalidRelation", 1002),
    ("CF-NotFound", 10000),
    ("CF-NotAuthenticated", 10002),
    ("CF-NotAuthorized", 10003),
    ("CF-InvalidRequest", 10004),
    ("CF-BadQueryParameter", 10005),
    ("CF-AssociationNotEmpty", 10006),
    ("CF-InsufficientScope", 10007),
    ("CF-UnprocessableEntity", 10008),
    ("CF-ResourceNotFound", 10010),
    ("CF-OrgSuspended", 10017),
    ("CF-UserNotFound", 20003),
    ("CF-OrganizationInvalid", 30001),
    ("CF-OrganizationNotFound", 30003),
    ("CF-SpaceNotFound", 40004),
    ("CF-ServiceInstanceNameTaken", 60002),
    ("CF-ServiceInstanceNotFound", 60004),
    ("CF-AsyncServiceInstanceOperationInProgress", 60016),
    ("CF-ServiceInstanceRecursiveDeleteFailed", 60027),
    ("CF-ServiceBindingInvalid", 90001),
    ("CF-ServiceBindingAppServiceTaken", 90003),
    ("CF-ServiceBindingNotFound", 90004),
    ("CF-UnbindableService", 90005),
    ("CF-ServiceFetchBindingParametersNotSupported", 90007),
    ("CF-AsyncServiceBindingOperationInProgress", 90008),
    ("CF-AppNotFound", 100004),
    ("CF-ServicePlanNotUpdateable", 110004),
    ("CF-ServiceBrokerRespondedAsyncWhenNotAllowed", 270017),
    ("CF-FeatureFlagNotFound", 330000),
    ("CF-UserProvidedServiceInstanceHandlerNeeded", 340002),
    ("CF-ServiceKeyNameTaken", 360001),
    ("CF-ServiceKeyNotFound", 360003),
    ("CF-ServiceKeyNotSupported", 360004),
    // CC's V2ErrorHasher: broker failures and unknown errors.
    ("CF-AppRequired", 10001),
    ("CF-AsyncRequired", 10001),
    ("CF-ConcurrencyError", 10001),
    ("CF-HttpClientTimeout", 10001),
    ("CF-ServiceBrokerApiAuthenticationFailed", 10001),
    ("CF-ServiceBrokerApiTimeout", 10001),
    ("CF-ServiceBrokerApiUnreachable", 10001),
    ("CF-ServiceBrokerBadResponse", 10001),
    ("CF-ServiceBrokerConflict", 10001),
    ("CF-ServiceBrokerInvalidSyslogDrainUrl", 10001),
    ("CF-ServiceBrokerInvalidVolumeMounts", 10001),
    ("CF-ServiceBrokerRequestRejected", 10001),
    ("CF-ServiceBrokerResponseMalformed", 10001),
    ("UnknownError", 10001),
];

/// CC's `code` for an `error_code` (see `CC_ERROR_CODES`).
#[track_caller]
pub fn cc_code(error_code: &str) -> u64 {
    match CC_ERROR_CODES.iter().find(|(name, _)| *name == error_code) {
        Some((_, code)) => *code,
        None => panic!(
            "{error_code} is not in CC_ERROR_CODES (tests/common/mod.rs): add it with CC's code \
             from errors/v2.yml"
        ),
    }
}

/// Adjusts a server's configuration before it starts.
pub type Customize = Box<dyn FnOnce(&mut Config) + Send>;

pub struct Options {
    pub broker_timeout: Duration,
    pub runner: bool,
    pub pool_size: u32,
    /// Adjusts the server's configuration before it starts.
    pub customize: Option<Customize>,
    /// The job runner's settings (default: `fast_runner(broker_timeout)`).
    pub runner_config: Option<RunnerConfig>,
    /// Run on this database instead of a fresh one of the backend's shared server.
    pub database_url: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            broker_timeout: Duration::from_secs(10),
            runner: true,
            pool_size: 4,
            customize: None,
            runner_config: None,
            database_url: None,
        }
    }
}

pub fn fast_runner(broker_timeout: Duration) -> RunnerConfig {
    let mut r = RunnerConfig::for_broker_timeout(broker_timeout);
    r.poll_interval = Duration::from_millis(100);
    r.tick = Duration::from_millis(50);
    r.retry_base = Duration::from_millis(100);
    r.retry_max = Duration::from_secs(1);
    r
}

/// A client of a running tether's API (in-process or a child process), with an admin token and
/// the broker to register.
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
    pub admin_token: String,
    /// The URL of the OSB broker `register_broker` registers (basic auth BROKER_USER/PASS).
    pub broker_url: String,
}

/// A running server with its own database and a demo broker.
pub struct TestApp {
    pub api: Api,
    pub state: Arc<AppState>,
    pub broker: DemoBroker,
    pub backend: Backend,
    /// The job runner's settings (the background runner's, or the one `run_jobs` uses).
    pub runner_config: RunnerConfig,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
    // Dropped last: the server must stop before its database goes.
    db: TestDb,
}

/// The secrets file of [`TestApp::start_with_secrets_file`], in a temp dir that goes with it.
pub struct SecretsFile {
    pub path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

pub struct Response {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Response {
    /// Reads a reply whole: status, headers, the body as text, and as JSON when it is JSON
    /// (`Null` otherwise).
    pub async fn read(resp: reqwest::Response) -> Response {
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Response {
            status,
            headers,
            body,
            text,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a CF error document with this status and error code, and the `code` CC gives for
    /// that error code (`cc_code`).
    #[track_caller]
    pub fn assert_error(&self, status: u16, error_code: &str) {
        assert_eq!(
            self.status.as_u16(),
            status,
            "expected {status} {error_code}, got {} {}",
            self.status,
            self.text
        );
        assert_eq!(
            self.body["error_code"], error_code,
            "unexpected error body: {}",
            self.text
        );
        assert_eq!(
            self.body["code"],
            cc_code(error_code),
            "CC's code for {error_code}: {}",
            self.text
        );
        assert!(
            self.body["description"].is_string(),
            "description: {}",
            self.text
        );
    }

    /// Asserts the CF error document CC gives: status, `code`, `error_code` and `description`,
    /// each exactly.
    #[track_caller]
    pub fn assert_cc_error(&self, status: u16, code: u64, error_code: &str, description: &str) {
        assert_eq!(self.status.as_u16(), status, "status: {}", self.text);
        assert_eq!(self.body["code"], code, "code: {}", self.text);
        assert_eq!(
            self.body["error_code"], error_code,
            "error_code: {}",
            self.text
        );
        assert_eq!(
            self.body["description"], description,
            "description: {}",
            self.text
        );
    }

    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status, body: {}",
            self.text
        );
        self
    }
}

impl TestApp {
    pub async fn start(backend: Backend) -> TestApp {
        Self::start_with(backend, Options::default()).await
    }

    /// A server whose secrets are in a file, as `tether serve` keeps them, so that the CLI a
    /// test runs on the same database (`TETHER_SECRETS_FILE`) seals and unseals with the
    /// server's keys. Bind the file first (`let (secrets, t) = …`): it outlives the server.
    pub async fn start_with_secrets_file(backend: Backend) -> (SecretsFile, TestApp) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.json");
        let secrets = tether::config::Secrets::load_or_create(&path).unwrap();
        let (sp, enc) = (path.clone(), secrets.encryption_keys());
        let t = TestApp::start_with(
            backend,
            Options {
                customize: Some(Box::new(move |c| {
                    c.encryption = enc;
                    c.secrets_file = Some(sp);
                })),
                ..Default::default()
            },
        )
        .await;
        (SecretsFile { path, _dir: dir }, t)
    }

    pub async fn start_with(backend: Backend, opts: Options) -> TestApp {
        tether::install_crypto_provider();
        let db = match opts.database_url {
            Some(url) => TestDb::at(url),
            None => TestDb::new(backend),
        };
        let mut config = Config::for_tests(db.url.clone());
        config.jwt_secret = Some(JWT_SECRET.to_vec());
        config.broker_timeout = opts.broker_timeout;
        config.db_pool_size = opts.pool_size;
        if let Some(customize) = opts.customize {
            customize(&mut config);
        }
        let state = Arc::new(AppState::new(config).expect("app state"));
        let broker = DemoBroker::start(0, BROKER_USER, BROKER_PASS).expect("demo broker");
        let (tx, rx) = std::sync::mpsc::channel();
        let st = state.clone();
        let runner = opts.runner;
        let runner_config = opts
            .runner_config
            .unwrap_or_else(|| fast_runner(opts.broker_timeout));
        let background_config = runner_config.clone();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let data = actix_web::web::Data::from(st.clone());
                if runner {
                    JobRunner::new(st.clone(), background_config).spawn();
                }
                let server = actix_web::HttpServer::new(move || tether::build_app!(data))
                    .workers(2)
                    .disable_signals()
                    .shutdown_timeout(1)
                    .bind(("127.0.0.1", 0))
                    .expect("bind");
                let addr = server.addrs()[0];
                let server = server.run();
                tx.send((addr, server.handle())).expect("send addr");
                let _ = server.await;
            });
        });
        let (addr, handle) = rx.recv().expect("server start");
        let admin_token = state
            .issuer
            .user_token(
                "admin-user",
                "admin",
                &[
                    "cloud_controller.admin".to_string(),
                    "cloud_controller.read".to_string(),
                    "cloud_controller.write".to_string(),
                ],
                "cf",
                "password",
            )
            .expect("token")
            .0;
        TestApp {
            api: Api::new(format!("http://{addr}"), admin_token, broker.url.clone()),
            state,
            broker,
            backend,
            runner_config,
            handle,
            thread: Some(thread),
            db,
        }
    }

    /// The server's database URL (for child processes on the same database).
    pub fn db_url(&self) -> String {
        self.db.url.clone()
    }

    /// A user who develops in the world's space (org user and space developer), and a token
    /// for them with read and write scopes.
    pub async fn space_developer(&self, w: &World, name: &str) -> String {
        self.put(
            &format!("/v2/organizations/{}/users/{name}", w.org),
            json!({}),
        )
        .await
        .assert_status(201);
        self.put(
            &format!("/v2/spaces/{}/developers/{name}", w.space),
            json!({}),
        )
        .await
        .assert_status(201);
        self.token_for(name, &["cloud_controller.read", "cloud_controller.write"])
    }

    pub fn token_for(&self, user_id: &str, scopes: &[&str]) -> String {
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        self.state
            .issuer
            .user_token(user_id, user_id, &scopes, "cf", "password")
            .expect("token")
            .0
    }

    /// Rows in a table (direct SQL, for asserting what was stored).
    pub async fn count(&self, table: &'static str) -> i64 {
        use diesel::prelude::*;
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        self.state
            .db
            .read(move |conn| {
                let r: N = diesel::sql_query(format!("SELECT COUNT(*) AS n FROM {table}"))
                    .get_result(conn)?;
                Ok(r.n)
            })
            .await
            .expect("count")
    }
}

impl std::ops::Deref for TestApp {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Api {
    /// `POST /oauth/token` with the password grant, as the cf CLI sends it (client `cf:`).
    pub async fn login(&self, username: &str, password: &str) -> Response {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "password")
            .append_pair("username", username)
            .append_pair("password", password)
            .finish();
        let resp = self
            .client
            .post(format!("{}/oauth/token", self.base))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Authorization", "Basic Y2Y6")
            .body(body)
            .send()
            .await
            .expect("request");
        Response::read(resp).await
    }

    pub fn new(base: String, admin_token: String, broker_url: String) -> Api {
        tether::install_crypto_provider();
        Api {
            base,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
            admin_token,
            broker_url,
        }
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Response {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.header("Authorization", format!("bearer {t}"));
        }
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.expect("request");
        Response::read(resp).await
    }

    /// Sends raw bytes with the given content type.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Response {
        let resp = self
            .client
            .request(method, format!("{}{}", self.base, path))
            .header("Authorization", format!("bearer {}", self.admin_token))
            .header("Content-Type", content_type)
            .body(body.to_vec())
            .send()
            .await
            .expect("request");
        Response::read(resp).await
    }

    /// Runs a request as someone else.
    pub async fn as_user(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Response {
        self.request(method, path, Some(token), body.as_ref()).await
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path, Some(&self.admin_token), None)
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.request(Method::POST, path, Some(&self.admin_token), Some(&body))
            .await
    }

    pub async fn put(&self, path: &str, body: Value) -> Response {
        self.request(Method::PUT, path, Some(&self.admin_token), Some(&body))
            .await
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.request(Method::DELETE, path, Some(&self.admin_token), None)
            .await
    }

    /// Creates an org, a space and an app; returns their guids.
    pub async fn org_space_app(&self) -> World {
        let org = self
            .post(
                "/v2/organizations",
                json!({"name": format!("org-{}", short())}),
            )
            .await;
        org.assert_status(201);
        let org = org.body["metadata"]["guid"].as_str().unwrap().to_string();
        let space = self
            .post(
                "/v2/spaces",
                json!({"name": "dev", "organization_guid": org}),
            )
            .await;
        space.assert_status(201);
        let space = space.body["metadata"]["guid"].as_str().unwrap().to_string();
        let app = self.create_app(&space, "my-app").await;
        World {
            org,
            space,
            app,
            broker: String::new(),
            plan_small: String::new(),
            plan_async: String::new(),
            plan_unbindable: String::new(),
            instance: String::new(),
        }
    }

    pub async fn create_app(&self, space: &str, name: &str) -> String {
        let app = self
            .post("/v2/apps", json!({"name": name, "space_guid": space}))
            .await;
        app.assert_status(201);
        app.body["metadata"]["guid"].as_str().unwrap().to_string()
    }

    /// Registers the demo broker; returns its guid.
    pub async fn register_broker(&self, name: &str) -> String {
        let r = self
            .post(
                "/v2/service_brokers",
                json!({
                    "name": name,
                    "broker_url": self.broker_url,
                    "auth_username": BROKER_USER,
                    "auth_password": BROKER_PASS,
                }),
            )
            .await;
        r.assert_status(201);
        r.body["metadata"]["guid"].as_str().unwrap().to_string()
    }

    pub async fn plan_guid(&self, unique_id: &str) -> String {
        let r = self
            .get(&format!("/v2/service_plans?q=unique_id:{unique_id}"))
            .await;
        r.assert_status(200);
        r.body["resources"][0]["metadata"]["guid"]
            .as_str()
            .unwrap_or_else(|| panic!("no plan {unique_id}: {}", r.text))
            .to_string()
    }

    pub async fn create_instance(&self, space: &str, plan: &str, name: &str) -> String {
        let r = self
            .post(
                "/v2/service_instances",
                json!({"name": name, "space_guid": space, "service_plan_guid": plan}),
            )
            .await;
        r.assert_status(201);
        r.body["metadata"]["guid"].as_str().unwrap().to_string()
    }

    /// Org, space, app, registered broker, and a managed instance of the sync plan.
    pub async fn world(&self) -> World {
        let mut w = self.org_space_app().await;
        w.broker = self.register_broker(&format!("broker-{}", short())).await;
        w.plan_small = self.plan_guid(tether::demo_broker::PLAN_SMALL_ID).await;
        w.plan_async = self.plan_guid(tether::demo_broker::PLAN_ASYNC_ID).await;
        w.plan_unbindable = self
            .plan_guid(tether::demo_broker::UNBINDABLE_PLAN_ID)
            .await;
        w.instance = self.create_instance(&w.space, &w.plan_small, "my-db").await;
        w
    }

    pub async fn bind(&self, app: &str, instance: &str, extra: Value) -> Response {
        let mut body = json!({"app_guid": app, "service_instance_guid": instance});
        if let Value::Object(m) = extra {
            for (k, v) in m {
                body[k] = v;
            }
        }
        self.post("/v2/service_bindings", body).await
    }

    /// Waits until `check` holds for the binding document (or its absence), up to 20 s.
    pub async fn wait_for<F: Fn(&Response) -> bool>(&self, path: &str, check: F) -> Response {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let r = self.get(path).await;
            if check(&r) {
                return r;
            }
            if std::time::Instant::now() > deadline {
                panic!("timed out waiting on {path}; last: {} {}", r.status, r.text);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        tether::demo_broker::stop_server_thread(&self.handle, self.thread.take());
    }
}

pub struct World {
    pub org: String,
    pub space: String,
    pub app: String,
    pub broker: String,
    pub plan_small: String,
    pub plan_async: String,
    pub plan_unbindable: String,
    pub instance: String,
}

pub fn short() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_string()
}

/// Waits (up to 20 s of wall time) for something another thread does, e.g. a broker request
/// in flight. Not for time-based logic: jobs run in virtual time (see `jobs.rs`).
pub async fn wait_until(what: &str, check: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
