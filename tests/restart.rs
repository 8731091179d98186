//! Durability of the job queue with real `tether serve` processes: a server killed with SIGKILL
//! while polling an async bind (the next server resumes the poll), a server killed during a sync
//! bind (the next server's sweeper removes the abandoned row and unbinds at the broker), and two
//! servers sharing one PostgreSQL schema (no job polled by both at once, none lost, also when one
//! of them dies).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::process::{tether_command, ServerProcess};
use common::{Backend, TestDb, BROKER_PASS, BROKER_USER};
use reqwest::Method;
use serde_json::{json, Value};
use tether::demo_broker::{DemoBroker, Recorded, Reply, PLAN_ASYNC_ID, PLAN_SMALL_ID, SERVICE_ID};

/// A `tether serve` child process, reached through `EXTERNAL_URL` like its peers.
fn start_server(name: &str, db_url: &str, secrets: &Path, env: &[(&str, &str)]) -> ServerProcess {
    let mut all = vec![("TETHER_EXTERNAL_URL", EXTERNAL_URL)];
    all.extend_from_slice(env);
    ServerProcess::start(name, db_url, secrets, &all)
}

/// The URL every test server is reached at behind its (imagined) load balancer: the `iss` of
/// the tokens they issue and accept, so one token works on all of them, as in production.
const EXTERNAL_URL: &str = "http://tether.test";

/// An admin token signed with the key in the secrets file (created if missing), from the CLI.
fn admin_token(secrets: &Path) -> String {
    let out = tether_command()
        .arg("token")
        .arg("--create-secrets")
        .arg("--secrets-file")
        .arg(secrets)
        .arg("--external-url")
        .arg(EXTERNAL_URL)
        .output()
        .expect("tether token");
    assert!(
        out.status.success(),
        "tether token failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A CF API client for one server.
struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    fn new(server: &ServerProcess, token: &str) -> Api {
        tether::install_crypto_provider();
        Api {
            base: server.base.clone(),
            token: token.to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    async fn try_call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Result<(u16, Value)> {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .header("Authorization", format!("bearer {}", self.token));
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.try_call(method.clone(), path, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, None).await
    }

    /// POST expecting `status`; returns the new resource's guid.
    async fn create(&self, path: &str, body: Value, status: u16) -> String {
        let (s, v) = self.call(Method::POST, path, Some(body)).await;
        assert_eq!(s, status, "POST {path}: {v}");
        v["metadata"]["guid"].as_str().unwrap().to_string()
    }

    async fn create_app(&self, space: &str, name: &str) -> String {
        self.create("/v2/apps", json!({"name": name, "space_guid": space}), 201)
            .await
    }

    async fn plan(&self, unique_id: &str) -> String {
        let (s, v) = self
            .get(&format!("/v2/service_plans?q=unique_id:{unique_id}"))
            .await;
        assert_eq!(s, 200, "{v}");
        v["resources"][0]["metadata"]["guid"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Waits (up to `within`) until the binding document satisfies `check`.
    async fn wait_binding(
        &self,
        guid: &str,
        within: Duration,
        check: impl Fn(u16, &Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let (s, v) = self.get(&format!("/v2/service_bindings/{guid}")).await;
            if check(s, &v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting on binding {guid}: {s} {v}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Job runs a server has started, from its `/metrics`.
async fn jobs_started(api: &Api) -> f64 {
    let text = api
        .http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics body");
    text.lines()
        .filter(|l| l.starts_with("tether_jobs_started_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Org, space, app, the demo broker registered, and an instance of `plan_unique_id`.
struct World {
    space: String,
    app: String,
    instance: String,
}

async fn world(api: &Api, broker: &DemoBroker, plan_unique_id: &str) -> World {
    let org = api
        .create("/v2/organizations", json!({"name": "restart-org"}), 201)
        .await;
    let space = api
        .create(
            "/v2/spaces",
            json!({"name": "dev", "organization_guid": org}),
            201,
        )
        .await;
    let app = api.create_app(&space, "my-app").await;
    api.create(
        "/v2/service_brokers",
        json!({"name": "demo", "broker_url": broker.url,
               "auth_username": BROKER_USER, "auth_password": BROKER_PASS}),
        201,
    )
    .await;
    let plan = api.plan(plan_unique_id).await;
    let instance = api
        .create(
            "/v2/service_instances",
            json!({"name": "db", "space_guid": space, "service_plan_guid": plan}),
            201,
        )
        .await;
    World {
        space,
        app,
        instance,
    }
}

fn state_of(v: &Value) -> (&str, &str) {
    let lo = &v["entity"]["last_operation"];
    (
        lo["type"].as_str().unwrap_or_default(),
        lo["state"].as_str().unwrap_or_default(),
    )
}

fn polls(broker: &DemoBroker, binding: &str) -> Vec<Recorded> {
    broker.requests_to(
        "GET",
        &format!("/service_bindings/{binding}/last_operation"),
    )
}

fn fetches(broker: &DemoBroker, binding: &str) -> Vec<Recorded> {
    broker
        .requests_to("GET", &format!("/service_bindings/{binding}"))
        .into_iter()
        .filter(|r| r.path.ends_with(binding))
        .collect()
}

async fn eventually(what: &str, within: Duration, check: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A database and a secrets file for one test's servers.
struct Setup {
    db: TestDb,
    _dir: tempfile::TempDir,
    secrets: PathBuf,
    token: String,
}

fn setup(backend: Backend) -> Setup {
    let db = TestDb::new(backend);
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("tether-secrets.json");
    let token = admin_token(&secrets);
    Setup {
        db,
        _dir: dir,
        secrets,
        token,
    }
}

/// Fast polling, and a short job lease so that a dead server's claim expires quickly.
const FAST_JOBS: &[(&str, &str)] = &[
    ("TETHER_POLL_INTERVAL_SECS", "0.1"),
    ("TETHER_JOB_TICK_SECS", "0.05"),
    ("TETHER_JOB_LEASE_SECS", "2"),
    ("TETHER_JOB_RETRY_BASE_SECS", "0.1"),
    ("TETHER_BROKER_TIMEOUT_SECS", "10"),
];

async fn killed_while_polling_resumes_after_restart(backend: Backend) {
    let s = setup(backend);
    let broker = DemoBroker::start(0, BROKER_USER, BROKER_PASS).unwrap();
    // Slow polls, so the kill lands while one is in flight (the job claimed, its lease held).
    broker.set_default("poll", Reply::Delay(Duration::from_millis(400)));
    let operation = "resume me/1";
    broker.script(
        "bind",
        [Reply::Async {
            operation: Some(operation.into()),
            polls: 1_000_000,
            final_state: "succeeded",
            retry_after: None,
        }],
    );

    let mut a = start_server("server A", &s.db.url, &s.secrets, FAST_JOBS);
    let api = Api::new(&a, &s.token);
    let w = world(&api, &broker, PLAN_ASYNC_ID).await;
    let guid = api
        .create(
            "/v2/service_bindings?accepts_incomplete=true",
            json!({"app_guid": w.app, "service_instance_guid": w.instance}),
            202,
        )
        .await;

    eventually("three polls", Duration::from_secs(20), || {
        polls(&broker, &guid).len() >= 3
    })
    .await;
    eventually("a poll in flight", Duration::from_secs(20), || {
        broker.in_flight("poll") > 0
    })
    .await;
    a.kill();
    let polls_before = polls(&broker, &guid).len();
    // Let the dead server's last poll drain at the broker, then let the operation finish
    // after two more polls.
    eventually("the last poll to end", Duration::from_secs(5), || {
        broker.in_flight("poll") == 0
    })
    .await;
    assert!(broker.set_remaining_polls(&guid, 2));

    let b = start_server("server B", &s.db.url, &s.secrets, FAST_JOBS);
    let api = Api::new(&b, &s.token);
    let (status, v) = api.get(&format!("/v2/service_bindings/{guid}")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(state_of(&v).0, "create");
    let done = api
        .wait_binding(&guid, Duration::from_secs(20), |_, v| {
            state_of(v) == ("create", "succeeded")
        })
        .await;
    assert_eq!(
        done["entity"]["credentials"]["username"],
        format!("user-{guid}")
    );

    // Polling resumed with the stored operation, and never overlapped.
    let all = polls(&broker, &guid);
    assert!(all.len() >= polls_before + 3, "{} polls", all.len());
    for p in &all {
        assert_eq!(p.query_param("operation").as_deref(), Some(operation));
        assert_eq!(p.query_param("service_id").as_deref(), Some(SERVICE_ID));
        assert_eq!(p.query_param("plan_id").as_deref(), Some(PLAN_ASYNC_ID));
    }
    assert_eq!(fetches(&broker, &guid).len(), 1);
    assert!(
        broker.overlapping_requests().is_empty(),
        "polled concurrently: {:?}",
        broker.overlapping_requests()
    );
    let (_, list) = api.get("/v2/service_bindings").await;
    assert_eq!(list["total_results"], 1);
}

async fn killed_during_sync_bind_is_swept_after_restart(backend: Backend) {
    let s = setup(backend);
    let broker = DemoBroker::start(0, BROKER_USER, BROKER_PASS).unwrap();
    let mut a = start_server(
        "server A",
        &s.db.url,
        &s.secrets,
        &[
            ("TETHER_BROKER_TIMEOUT_SECS", "30"),
            ("TETHER_JOB_TICK_SECS", "0.05"),
        ],
    );
    let api = Api::new(&a, &s.token);
    let w = world(&api, &broker, PLAN_SMALL_ID).await;
    // The broker takes 3 s to bind; the server dies meanwhile.
    broker.script("bind", [Reply::Delay(Duration::from_secs(3))]);
    let bind = api.try_call(
        Method::POST,
        "/v2/service_bindings",
        Some(json!({"app_guid": w.app, "service_instance_guid": w.instance})),
    );
    let kill = async {
        eventually("the bind in flight", Duration::from_secs(20), || {
            broker.in_flight("bind") > 0
        })
        .await;
        a.kill();
    };
    let (answer, ()) = tokio::join!(bind, kill);
    assert!(answer.is_err(), "the killed server answered: {answer:?}");
    let puts = broker.requests_to("PUT", "/service_bindings/");
    let id = puts[0].path.rsplit('/').next().unwrap().to_string();

    // The next server finds the row its predecessor left `create in progress`, with no job
    // behind it, and (once it is older than any broker call could take) removes it and unbinds.
    let b = start_server(
        "server B",
        &s.db.url,
        &s.secrets,
        &[
            ("TETHER_BROKER_TIMEOUT_SECS", "5"),
            ("TETHER_JOB_TICK_SECS", "0.05"),
            ("TETHER_JOB_SWEEP_SECS", "0.2"),
            ("TETHER_JOB_ABANDONED_AFTER_SECS", "1"),
        ],
    );
    let api = Api::new(&b, &s.token);
    api.wait_binding(&id, Duration::from_secs(20), |status, _| status == 404)
        .await;
    let dels = || broker.requests_to("DELETE", &format!("/service_bindings/{id}"));
    eventually("the orphan unbind", Duration::from_secs(20), || {
        !dels().is_empty()
    })
    .await;
    let del = &dels()[0];
    assert_eq!(del.query_param("service_id").as_deref(), Some(SERVICE_ID));
    assert_eq!(del.query_param("plan_id").as_deref(), Some(PLAN_SMALL_ID));
    assert!(del.header("x-broker-api-originating-identity").is_none());
    // Whether the broker's bind finished or was stopped by the unbind, it keeps nothing.
    eventually("the broker's bind to end", Duration::from_secs(10), || {
        broker.in_flight("bind") == 0
    })
    .await;
    assert!(!broker.has_binding(&id), "the broker kept an orphan");
    let (_, list) = api.get("/v2/service_bindings").await;
    assert_eq!(list["total_results"], 0);
    // And the app can be bound again.
    let (status, v) = api
        .call(
            Method::POST,
            "/v2/service_bindings",
            Some(json!({"app_guid": w.app, "service_instance_guid": w.instance})),
        )
        .await;
    assert_eq!(status, 201, "{v}");
}

backend_tests!(
    killed_while_polling_resumes_after_restart,
    killed_during_sync_bind_is_swept_after_restart,
);

// ------------------------------------------------------------------------------------------
// Two servers, one PostgreSQL

#[derive(diesel::QueryableByName, Debug)]
struct WorkerCount {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    locked_by: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Text)]
    state: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

fn poll_jobs_by_worker(url: &str) -> Vec<WorkerCount> {
    use diesel::{Connection, RunQueryDsl};
    let mut conn = diesel::PgConnection::establish(url).expect("connect");
    diesel::sql_query(
        "SELECT locked_by, state, COUNT(*) AS n FROM jobs WHERE kind = 'poll_binding' \
         GROUP BY locked_by, state",
    )
    .load(&mut conn)
    .expect("query jobs")
}

/// Binds `apps` to `instance` with accepts_incomplete, alternating between the servers; returns
/// the binding guids.
async fn bind_all(apis: &[&Api], apps: &[String], instance: &str) -> Vec<String> {
    let futures = apps.iter().enumerate().map(|(i, app)| {
        let api = apis[i % apis.len()];
        async move {
            api.create(
                "/v2/service_bindings?accepts_incomplete=true",
                json!({"app_guid": app, "service_instance_guid": instance}),
                202,
            )
            .await
        }
    });
    futures_util::future::join_all(futures).await
}

async fn wait_all_succeeded(api: &Api, guids: &[String], within: Duration) {
    let deadline = Instant::now() + within;
    for g in guids {
        let left = deadline.saturating_duration_since(Instant::now());
        let v = api
            .wait_binding(g, left.max(Duration::from_millis(1)), |_, v| {
                state_of(v).1 != "in progress"
            })
            .await;
        assert_eq!(state_of(&v), ("create", "succeeded"), "{v}");
        assert_eq!(v["entity"]["credentials"]["username"], format!("user-{g}"));
    }
}

#[actix_web::test]
async fn two_servers_share_the_queue_on_postgres() {
    if common::skip_postgres() {
        eprintln!("TETHER_TEST_SKIP_PG is set: skipping");
        return;
    }
    let s = setup(Backend::Postgres);
    let broker = DemoBroker::start(0, BROKER_USER, BROKER_PASS).unwrap();
    broker.set_default(
        "bind",
        Reply::Async {
            operation: Some("op 1/2".into()),
            polls: 4,
            final_state: "succeeded",
            retry_after: None,
        },
    );
    // Polls take a while, so that a job polled twice at once would be seen by the broker.
    broker.set_default("poll", Reply::Delay(Duration::from_millis(60)));

    // Both start (and migrate) at once.
    let (a, mut b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| start_server("server A", &s.db.url, &s.secrets, FAST_JOBS));
        let b = scope.spawn(|| start_server("server B", &s.db.url, &s.secrets, FAST_JOBS));
        (a.join().unwrap(), b.join().unwrap())
    });
    let api_a = Api::new(&a, &s.token);
    let api_b = Api::new(&b, &s.token);
    let w = world(&api_a, &broker, PLAN_ASYNC_ID).await;
    let mut apps = vec![w.app.clone()];
    for i in 1..40 {
        let api = if i % 2 == 0 { &api_a } else { &api_b };
        apps.push(api.create_app(&w.space, &format!("app-{i}")).await);
    }

    // 40 async bindings, half created through each server.
    let guids = bind_all(&[&api_a, &api_b], &apps, &w.instance).await;
    wait_all_succeeded(&api_b, &guids, Duration::from_secs(30)).await;
    assert!(
        broker.overlapping_requests().is_empty(),
        "a binding was polled by two workers at once: {:?}",
        broker.overlapping_requests()
    );
    for g in &guids {
        // 4 × in progress, then succeeded: each poll ran exactly once, and one fetch.
        let p = polls(&broker, g);
        assert_eq!(p.len(), 5, "binding {g} polled {} times", p.len());
        assert!(p
            .iter()
            .all(|r| r.query_param("operation").as_deref() == Some("op 1/2")));
        assert_eq!(fetches(&broker, g).len(), 1, "binding {g}");
    }
    let url = s.db.url.clone();
    let by_worker = tokio::task::spawn_blocking(move || poll_jobs_by_worker(&url))
        .await
        .unwrap();
    assert!(
        by_worker.iter().all(|w| w.state == "finished"),
        "{by_worker:?}"
    );
    assert_eq!(by_worker.iter().map(|w| w.n).sum::<i64>(), 40);
    // A settled job keeps who ran it last (for diagnostics).
    assert!(
        by_worker.iter().all(|w| w.locked_by.is_some()),
        "{by_worker:?}"
    );
    // Both servers ran polls (of the 200 runs; which one ran a job's last poll, the holder the
    // job row keeps, depends on timing and says nothing).
    for api in [&api_a, &api_b] {
        let runs = jobs_started(api).await;
        assert!(runs > 0.0, "{} ran no job", api.base);
    }

    // Again, and server B dies in the middle: server A takes over its jobs (once their leases
    // expire), still never polling one binding twice at once, and loses none.
    let plan = api_a.plan(PLAN_ASYNC_ID).await;
    let second = api_a
        .create(
            "/v2/service_instances",
            json!({"name": "db-2", "space_guid": w.space, "service_plan_guid": plan}),
            201,
        )
        .await;
    broker.set_default(
        "bind",
        Reply::Async {
            operation: Some("op 2".into()),
            polls: 12,
            final_state: "succeeded",
            retry_after: None,
        },
    );
    broker.clear_requests();
    let guids = bind_all(&[&api_a, &api_b], &apps[..20], &second).await;
    eventually("polling under way", Duration::from_secs(20), || {
        broker.in_flight("poll") >= 2 && broker.requests_to("GET", "last_operation").len() >= 40
    })
    .await;
    b.kill();
    wait_all_succeeded(&api_a, &guids, Duration::from_secs(30)).await;
    assert!(
        broker.overlapping_requests().is_empty(),
        "a binding was polled by two workers at once: {:?}",
        broker.overlapping_requests()
    );
    for g in &guids {
        assert!(polls(&broker, g).len() >= 13, "binding {g}");
    }
}

#[actix_web::test]
async fn slow_polls_are_not_taken_over_on_postgres() {
    // Each poll takes longer than the job lease (2.5 s against 1 s): the server running a job
    // must keep renewing its lease, or the other server (or itself) would take the job over and
    // poll the same binding a second time while the first poll is still running.
    if common::skip_postgres() {
        eprintln!("TETHER_TEST_SKIP_PG is set: skipping");
        return;
    }
    let s = setup(Backend::Postgres);
    let broker = DemoBroker::start(0, BROKER_USER, BROKER_PASS).unwrap();
    broker.set_default(
        "bind",
        Reply::Async {
            operation: Some("slow".into()),
            polls: 2,
            final_state: "succeeded",
            retry_after: None,
        },
    );
    broker.set_default("poll", Reply::Delay(Duration::from_millis(2500)));
    let env = [
        ("TETHER_POLL_INTERVAL_SECS", "0.1"),
        ("TETHER_JOB_TICK_SECS", "0.05"),
        ("TETHER_JOB_LEASE_SECS", "1"),
        ("TETHER_BROKER_TIMEOUT_SECS", "10"),
    ];
    let a = start_server("server A", &s.db.url, &s.secrets, &env);
    let b = start_server("server B", &s.db.url, &s.secrets, &env);
    let api_a = Api::new(&a, &s.token);
    let api_b = Api::new(&b, &s.token);
    let w = world(&api_a, &broker, PLAN_ASYNC_ID).await;
    let mut apps = vec![w.app.clone()];
    for i in 1..4 {
        apps.push(api_a.create_app(&w.space, &format!("app-{i}")).await);
    }
    let guids = bind_all(&[&api_a, &api_b], &apps, &w.instance).await;
    wait_all_succeeded(&api_a, &guids, Duration::from_secs(30)).await;
    assert!(
        broker.overlapping_requests().is_empty(),
        "a binding was polled twice at once: {:?}",
        broker.overlapping_requests()
    );
    for g in &guids {
        assert_eq!(polls(&broker, g).len(), 3, "binding {g}");
    }
}
