//! The dashboard in a real browser: Debian's Chromium headless (through `playwright-core`,
//! pinned in `tests/browser/`) against a real `tether serve` and the demo broker: it signs in,
//! walks org → space → app → binding, filters and pages (the state filter finds a failed binding
//! beyond page 1), watches async bindings settle without a reload, checks roles, escaping, token
//! refresh, CORS from a real second origin, and runs axe-core on each view; see
//! `tests/browser/dashboard.mjs`.
//!
//! The browser parts are installed by `.ci/run` (`chromium` from apt, `npm ci` in
//! `tests/browser`). Without them the test is skipped with a notice, unless
//! `TETHER_REQUIRE_BROWSER=1` (set in CI), which makes a missing browser a failure.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::process::{free_port, tether_command, ServerProcess};
use common::{Backend, TestDb, BROKER_PASS, BROKER_USER};
use reqwest::Method;
use serde_json::{json, Value};
use tether::demo_broker::{DemoBroker, Reply, PLAN_ASYNC_ID, PLAN_SMALL_ID};

/// A real `tether serve` for the browser, with its database and secrets file.
struct Server {
    // Killed when dropped.
    _process: ServerProcess,
    base: String,
    secrets: PathBuf,
    db_url: String,
    _dir: tempfile::TempDir,
}

fn tether(server: &Server, args: &[&str]) -> String {
    let out = tether_command()
        .args(args)
        .env("TETHER_DATABASE_URL", &server.db_url)
        .env("TETHER_SECRETS_FILE", &server.secrets)
        // `tether token` signs for the issuer at the server's address.
        .env("TETHER_BIND", server.base.trim_start_matches("http://"))
        .env("TETHER_LOG", "warn")
        .output()
        .expect("run tether");
    assert!(
        out.status.success(),
        "tether {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

async fn start_server(db: &TestDb, cors_origin: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.json");
    let env = [
        ("TETHER_POLL_INTERVAL_SECS", "0.2"),
        ("TETHER_CORS_ORIGIN", cors_origin),
    ];
    let process = ServerProcess::start("dashboard server", &db.url, &secrets, &env);
    tether::install_crypto_provider();
    Server {
        base: process.base.clone(),
        _process: process,
        secrets,
        db_url: db.url.clone(),
        _dir: dir,
    }
}

/// The admin's calls while setting up (reqwest with a token from `tether token`).
struct Admin {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Admin {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("Authorization", format!("bearer {}", self.token));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn ok(&self, method: Method, path: &str, body: Value) -> Value {
        let (status, v) = self.call(method, path, Some(body)).await;
        assert!((200..300).contains(&status), "{path}: {status} {v}");
        v
    }

    async fn create(&self, path: &str, body: Value) -> String {
        let v = self.ok(Method::POST, path, body).await;
        v["metadata"]["guid"].as_str().unwrap().to_string()
    }

    async fn plan(&self, unique_id: &str) -> String {
        let (_, v) = self
            .call(
                Method::GET,
                &format!("/v2/service_plans?q=unique_id:{unique_id}"),
                None,
            )
            .await;
        v["resources"][0]["metadata"]["guid"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Waits until the binding's last operation has this state.
    async fn wait_state(&self, guid: &str, state: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, v) = self
                .call(Method::GET, &format!("/v2/service_bindings/{guid}"), None)
                .await;
            if status == 200 && v["entity"]["last_operation"]["state"] == state {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "binding {guid} never reached {state}: {v}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

const BROWSER_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");

fn browser_required() -> bool {
    std::env::var("TETHER_REQUIRE_BROWSER").is_ok_and(|v| v == "1")
}

fn chromium() -> String {
    std::env::var("TETHER_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_string())
}

/// Why the browser test cannot run here, if it cannot.
fn browser_missing() -> Option<String> {
    if !Path::new(&chromium()).exists() {
        return Some(format!(
            "Chromium ({}; apt-get install chromium, or set TETHER_CHROMIUM)",
            chromium()
        ));
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Some("node".into());
    }
    for module in ["playwright-core", "axe-core"] {
        if !Path::new(&format!("{BROWSER_DIR}/node_modules/{module}/package.json")).exists() {
            return Some(format!(
                "the npm package {module} (npm ci in tests/browser)"
            ));
        }
    }
    None
}

/// The demo broker's failure description: markup that must reach the page as text.
const EVIL_DESCRIPTION: &str =
    "Quota exceeded <script>window.__xss = 1; alert('xss')</script> — ask <b>ops</b>";
const EVIL_INSTANCE: &str = "<img src=x onerror=alert(1)>";

async fn browser_walkthrough(backend: Backend) {
    if let Some(what) = browser_missing() {
        assert!(
            !browser_required(),
            "{what} is not installed (TETHER_REQUIRE_BROWSER=1)"
        );
        eprintln!("NOTE: {what} is not installed; skipping the dashboard's browser test");
        return;
    }
    let db = TestDb::new(backend);
    let broker = DemoBroker::start(0, BROKER_USER, BROKER_PASS).unwrap();
    let (allowed_port, other_port) = (free_port(), free_port());
    let allowed_origin = format!("http://127.0.0.1:{allowed_port}");
    let server = start_server(&db, &allowed_origin).await;

    for (user, password) in [
        ("dev@example.com", "dev-password-1"),
        ("auditor@example.com", "auditor-password-1"),
    ] {
        tether(
            &server,
            &["user", "create", "--username", user, "--password", password],
        );
    }
    let admin = Admin {
        client: reqwest::Client::new(),
        base: server.base.clone(),
        token: tether(&server, &["token"]),
    };

    // Two orgs; the developer and the auditor belong to one of them only.
    let org = admin
        .create("/v2/organizations", json!({"name": "acme"}))
        .await;
    admin
        .create("/v2/organizations", json!({"name": "hidden-org"}))
        .await;
    let space = admin
        .create(
            "/v2/spaces",
            json!({"name": "dev", "organization_guid": org}),
        )
        .await;
    for (user, role) in [
        ("dev@example.com", "developers"),
        ("auditor@example.com", "auditors"),
    ] {
        admin
            .ok(
                Method::PUT,
                &format!("/v2/organizations/{org}/users"),
                json!({"username": user}),
            )
            .await;
        admin
            .ok(
                Method::PUT,
                &format!("/v2/spaces/{space}/{role}"),
                json!({"username": user}),
            )
            .await;
    }
    let web = admin
        .create("/v2/apps", json!({"name": "web", "space_guid": space}))
        .await;
    let worker = admin
        .create("/v2/apps", json!({"name": "worker", "space_guid": space}))
        .await;
    admin
        .create(
            "/v2/service_brokers",
            json!({"name": "demo", "broker_url": broker.url,
                   "auth_username": BROKER_USER, "auth_password": BROKER_PASS}),
        )
        .await;
    let small = admin.plan(PLAN_SMALL_ID).await;
    let async_plan = admin.plan(PLAN_ASYNC_ID).await;
    let instance = |name: &str, plan: &str| json!({"name": name, "space_guid": space, "service_plan_guid": plan});
    let orders = admin
        .create("/v2/service_instances", instance("orders-db", &small))
        .await;
    let jobs = admin
        .create("/v2/service_instances", instance("jobs-db", &async_plan))
        .await;
    let evil = admin
        .create("/v2/service_instances", instance(EVIL_INSTANCE, &small))
        .await;
    let config = admin
        .create(
            "/v2/user_provided_service_instances",
            json!({"name": "app-config", "space_guid": space, "credentials": {"api-key": "k-123"}}),
        )
        .await;

    let bind = |app: &str, si: &str, extra: Value| {
        let mut b = json!({"app_guid": app, "service_instance_guid": si});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let web_orders = admin
        .create(
            "/v2/service_bindings",
            bind(
                &web,
                &orders,
                json!({"name": "web-orders", "role": "Writer", "prefix": "ORDERS",
                       "parameters": {"pool": 5}}),
            ),
        )
        .await;
    admin
        .create(
            "/v2/service_bindings",
            bind(&worker, &orders, json!({"name": "worker-orders"})),
        )
        .await;
    admin
        .create(
            "/v2/service_bindings",
            bind(&web, &evil, json!({"name": "web-evil"})),
        )
        .await;
    // More, for two pages of five in the space.
    let cron = admin
        .create("/v2/apps", json!({"name": "cron", "space_guid": space}))
        .await;
    for (app, si, name) in [
        (&web, &config, "web-config"),
        (&cron, &orders, "cron-orders"),
        (&cron, &config, "cron-config"),
        (&cron, &evil, "cron-evil"),
        (&worker, &config, "worker-config"),
        (&worker, &evil, "worker-evil"),
    ] {
        admin
            .create("/v2/service_bindings", bind(app, si, json!({"name": name})))
            .await;
    }
    // Last, when nothing else talks to the broker any more: an async bind the broker fails with
    // markup in its description. The space's last binding: with five a page, on page 2, where
    // only a state filter of the API finds it from page 1.
    broker.script(
        "bind",
        [Reply::Async {
            operation: Some("bind-fails".into()),
            polls: 0,
            final_state: "failed",
            retry_after: None,
        }],
    );
    broker.script(
        "poll",
        [Reply::Status(
            200,
            json!({"state": "failed", "description": EVIL_DESCRIPTION}).to_string(),
        )],
    );
    let failed = admin
        .create(
            "/v2/service_bindings?accepts_incomplete=true",
            json!({"app_guid": worker, "service_instance_guid": jobs, "name": "worker-jobs"}),
        )
        .await;
    let v = admin.wait_state(&failed, "failed").await;
    assert_eq!(
        v["entity"]["last_operation"]["description"],
        EVIL_DESCRIPTION
    );

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(|p| p.join("dashboard-screenshots"))
        .unwrap_or_else(|| PathBuf::from("target/dashboard-screenshots"))
        .join(format!("{backend:?}").to_lowercase());
    std::fs::create_dir_all(&shots).unwrap();
    // Straight to stderr, past the test harness's capture: where to look, also when it passes.
    let _ = writeln!(
        std::io::stderr(),
        "dashboard screenshots: {}",
        shots.display()
    );

    let mut child = Command::new("node")
        .arg(format!("{BROWSER_DIR}/dashboard.mjs"))
        .env("TETHER_API", &server.base)
        .env("TETHER_CHROMIUM", chromium())
        .env("SCREENSHOT_DIR", &shots)
        .env("ALLOWED_PORT", allowed_port.to_string())
        .env("OTHER_PORT", other_port.to_string())
        .env("ADMIN_TOKEN", &admin.token)
        .env("DEV_USER", "dev@example.com")
        .env("DEV_PASSWORD", "dev-password-1")
        .env("AUDITOR_USER", "auditor@example.com")
        .env("AUDITOR_PASSWORD", "auditor-password-1")
        .env("ORG_GUID", &org)
        .env("SPACE_GUID", &space)
        .env("WEB_ORDERS_GUID", &web_orders)
        .env("FAILED_GUID", &failed)
        .env("EVIL_GUID", &evil)
        .env("EVIL_INSTANCE", EVIL_INSTANCE)
        .env("EVIL_DESCRIPTION", EVIL_DESCRIPTION)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node");
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();

    // The script asks for what only this side can do (lines `@@ <request>` on its stdout; the
    // answer is one line on its stdin): create a binding through the API, and let the broker
    // finish an async bind at the moment the page has shown it in progress.
    // Its log (stderr) is printed here through the harness, so shown when the test fails or
    // with --nocapture.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(bool, String)>();
    let forward = |stream: Box<dyn std::io::Read + Send>, is_log: bool| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if tx.send((is_log, line)).is_err() {
                    break;
                }
            }
        })
    };
    let readers = [
        forward(Box::new(stdout), false),
        forward(Box::new(stderr), true),
    ];
    drop(tx);
    // The async bindings the script had created (by app name), until they settle.
    let mut async_bindings: Vec<String> = Vec::new();
    loop {
        let line = match tokio::time::timeout(Duration::from_secs(300), rx.recv()).await {
            Ok(Some((false, line))) => line,
            Ok(Some((true, log))) => {
                eprintln!("{log}");
                continue;
            }
            Ok(None) => break,
            Err(_) => {
                let _ = child.kill();
                panic!("the browser script went quiet for 5 minutes");
            }
        };
        let Some(request) = line.strip_prefix("@@ ") else {
            eprintln!("{line}");
            continue;
        };
        let answer = match request.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["create-async-binding", app_name] => {
                let app = match *app_name {
                    "web" => &web,
                    "cron" => &cron,
                    other => panic!("no app {other} to bind asynchronously"),
                };
                broker.script(
                    "bind",
                    [Reply::Async {
                        operation: Some("bind-slow".into()),
                        polls: 1_000_000,
                        final_state: "succeeded",
                        retry_after: None,
                    }],
                );
                let (status, v) = admin
                    .call(
                        Method::POST,
                        "/v2/service_bindings?accepts_incomplete=true",
                        Some(bind(
                            app,
                            &jobs,
                            json!({"name": format!("{app_name}-jobs")}),
                        )),
                    )
                    .await;
                assert_eq!(status, 202, "{v}");
                let guid = v["metadata"]["guid"].as_str().unwrap().to_string();
                async_bindings.push(guid.clone());
                guid
            }
            ["finish-async-binding", guid] => {
                assert!(
                    async_bindings.iter().any(|g| g == guid),
                    "{guid} is no async binding the script created"
                );
                assert!(
                    broker.set_remaining_polls(guid, 0),
                    "no async bind running for {guid}"
                );
                "ok".to_string()
            }
            other => panic!("unknown request from the browser script: {other:?}"),
        };
        writeln!(stdin, "{answer}").expect("answer the browser script");
    }
    drop(stdin);
    let status = child.wait().expect("node");
    for r in readers {
        let _ = r.join();
    }
    assert!(status.success(), "the browser test failed (see above)");
    assert_eq!(
        async_bindings.len(),
        2,
        "the script did not create its two async bindings"
    );
    for guid in &async_bindings {
        admin.wait_state(guid, "succeeded").await;
    }
}

backend_tests!(browser_walkthrough);
