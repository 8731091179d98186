//! Real CF clients, unmodified, against a real `tether serve` process: the PyPI
//! `cloudfoundry-client` and the npm `cf-client` (versions pinned in `tests/clients/`), plus the
//! docs' curl example replayed by `tests/clients/seed_curl.sh`.
//!
//! The clients are installed by `.ci/run` (`pip install -r tests/clients/requirements.txt` into a
//! virtualenv named by `TETHER_PYTHON`, `npm ci` in `tests/clients/node`). Without them the flows are skipped with a notice, unless
//! `TETHER_REQUIRE_CLIENTS=1` (set in CI), which turns a missing client into a failure.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Backend, TestDb, BROKER_PASS, BROKER_USER};
use serde_json::{json, Value};
use tether::demo_broker::DemoBroker;

struct Server {
    child: Child,
    base: String,
    secrets: std::path::PathBuf,
    db_url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tether(server: &Server, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(args)
        .env("TETHER_DATABASE_URL", &server.db_url)
        .env("TETHER_SECRETS_FILE", &server.secrets)
        .env("TETHER_BIND", server.base.trim_start_matches("http://"))
        .env("TETHER_LOG", "warn")
        .output()
        .expect("run tether")
}

async fn start(db: &TestDb) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.json");
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .arg("serve")
        .env("TETHER_DATABASE_URL", &db.url)
        .env("TETHER_BIND", format!("127.0.0.1:{port}"))
        .env("TETHER_SECRETS_FILE", &secrets)
        .env("TETHER_POLL_INTERVAL_SECS", "0.2")
        .env("TETHER_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn tether serve");
    // The guard owns the child from here on: a failed start still kills it.
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
        secrets,
        db_url: db.url.clone(),
        _dir: dir,
    };
    tether::install_crypto_provider();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("{}/v2/info", server.base)).send().await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "tether serve did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server
}

struct Fixture {
    app: String,
    app2: String,
    si: String,
    async_si: String,
    upsi: String,
}

async fn setup(server: &Server, broker: &DemoBroker) -> Fixture {
    let out = tether(
        server,
        &[
            "user",
            "create",
            "--username",
            "dev@example.com",
            "--password",
            "dev-password-1",
            "--admin",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tether(server, &["token"]);
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let client = reqwest::Client::new();
    let call = |method: reqwest::Method, path: String, body: Option<Value>| {
        let mut req = client
            .request(method, format!("{}{path}", server.base))
            .header("Authorization", format!("bearer {token}"));
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move {
            let r = req.send().await.unwrap();
            let status = r.status();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            assert!(status.is_success(), "{path}: {status} {v}");
            v
        }
    };
    use reqwest::Method;
    let guid = |v: &Value| v["metadata"]["guid"].as_str().unwrap().to_string();
    let org = guid(
        &call(
            Method::POST,
            "/v2/organizations".into(),
            Some(json!({"name": "client-org"})),
        )
        .await,
    );
    let space = guid(
        &call(
            Method::POST,
            "/v2/spaces".into(),
            Some(json!({"name": "dev", "organization_guid": org})),
        )
        .await,
    );
    let app = guid(
        &call(
            Method::POST,
            "/v2/apps".into(),
            Some(json!({"name": "py-app", "space_guid": space})),
        )
        .await,
    );
    let app2 = guid(
        &call(
            Method::POST,
            "/v2/apps".into(),
            Some(json!({"name": "py-app-2", "space_guid": space})),
        )
        .await,
    );
    call(
        Method::POST,
        "/v2/service_brokers".into(),
        Some(json!({"name": "demo", "broker_url": broker.url, "auth_username": BROKER_USER, "auth_password": BROKER_PASS})),
    )
    .await;
    let plan = |id: &str| format!("/v2/service_plans?q=unique_id:{id}");
    let small = call(Method::GET, plan(tether::demo_broker::PLAN_SMALL_ID), None).await;
    let small = small["resources"][0]["metadata"]["guid"]
        .as_str()
        .unwrap()
        .to_string();
    let asyncp = call(Method::GET, plan(tether::demo_broker::PLAN_ASYNC_ID), None).await;
    let asyncp = asyncp["resources"][0]["metadata"]["guid"]
        .as_str()
        .unwrap()
        .to_string();
    let si = guid(
        &call(
            Method::POST,
            "/v2/service_instances".into(),
            Some(json!({"name": "db", "space_guid": space, "service_plan_guid": small})),
        )
        .await,
    );
    let async_si = guid(
        &call(
            Method::POST,
            "/v2/service_instances".into(),
            Some(json!({"name": "db-async", "space_guid": space, "service_plan_guid": asyncp})),
        )
        .await,
    );
    let upsi = guid(
        &call(
            Method::POST,
            "/v2/user_provided_service_instances".into(),
            Some(json!({"name": "ups", "space_guid": space, "credentials": {"k": "v"}})),
        )
        .await,
    );
    Fixture {
        app,
        app2,
        si,
        async_si,
        upsi,
    }
}

/// The interpreter that has `cloudfoundry-client` (`.ci/run` installs it in a virtualenv and
/// points `TETHER_PYTHON` at it).
fn python() -> String {
    std::env::var("TETHER_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

fn required() -> bool {
    std::env::var("TETHER_REQUIRE_CLIENTS").is_ok_and(|v| v == "1")
}

fn skip(what: &str) {
    assert!(
        !required(),
        "{what} is not installed (TETHER_REQUIRE_CLIENTS=1)"
    );
    eprintln!("NOTE: {what} is not installed; skipping its flow (see .ci/run to install it)");
}

fn run_flow(mut cmd: Command, server: &Server, f: &Fixture) {
    let out = cmd
        .env("TETHER_API", &server.base)
        .env("TETHER_USER", "dev@example.com")
        .env("TETHER_PASSWORD", "dev-password-1")
        .env("APP_GUID", &f.app)
        .env("APP2_GUID", &f.app2)
        .env("SI_GUID", &f.si)
        .env("ASYNC_SI_GUID", &f.async_si)
        .env("UPSI_GUID", &f.upsi)
        .output()
        .expect("run client flow");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "client flow failed:\n{stdout}\n{stderr}"
    );
    eprintln!("{stdout}");
}

const CLIENTS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients");

async fn python_client_flow(backend: Backend) {
    let has = Command::new(python())
        .args(["-c", "import cloudfoundry_client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        return skip("the PyPI package cloudfoundry-client");
    }
    let db = TestDb::new(backend);
    let broker = DemoBroker::start(0, BROKER_USER, BROKER_PASS).unwrap();
    let server = start(&db).await;
    let f = setup(&server, &broker).await;
    let mut cmd = Command::new(python());
    cmd.arg(format!("{CLIENTS_DIR}/pyclient_flow.py"));
    run_flow(cmd, &server, &f);
}

async fn node_client_flow(backend: Backend) {
    let module = format!("{CLIENTS_DIR}/node/node_modules/cf-client/package.json");
    if !std::path::Path::new(&module).exists()
        || Command::new("node").arg("--version").output().is_err()
    {
        return skip("the npm package cf-client (npm ci in tests/clients/node)");
    }
    let db = TestDb::new(backend);
    let broker = DemoBroker::start(0, BROKER_USER, BROKER_PASS).unwrap();
    let server = start(&db).await;
    let f = setup(&server, &broker).await;
    let mut cmd = Command::new("node");
    cmd.arg(format!("{CLIENTS_DIR}/node/nodeclient_flow.js"));
    run_flow(cmd, &server, &f);
}

/// The README's walk-through: `seed-demo`, then the docs' curl verbatim (host and token aside).
async fn seed_curl_example(backend: Backend) {
    if Command::new("curl").arg("--version").output().is_err() {
        return skip("curl");
    }
    let db = TestDb::new(backend);
    let broker = DemoBroker::start(0, BROKER_USER, BROKER_PASS).unwrap();
    let server = start(&db).await;
    let out = tether(
        &server,
        &[
            "seed-demo",
            "--broker-url",
            &broker.url,
            "--broker-username",
            BROKER_USER,
            "--broker-password",
            BROKER_PASS,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(tether(&server, &["token"]).stdout).unwrap();
    let out = Command::new("sh")
        .arg(format!("{CLIENTS_DIR}/seed_curl.sh"))
        .env("TETHER_API", &server.base)
        .env("TOKEN", token.trim())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (head, body) = stdout.split_once("\r\n\r\n").expect("headers and body");
    assert!(head.starts_with("HTTP/1.1 201"), "{head}");
    let lower = head.to_ascii_lowercase();
    for h in [
        "content-type: application/json;charset=utf-8",
        "location: /v2/service_bindings/",
        "x-vcap-request-id:",
        "x-content-type-options: nosniff",
    ] {
        assert!(lower.contains(h), "missing {h} in {head}");
    }
    let v: Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        v["entity"]["credentials"],
        json!({"creds-key-63": "creds-val-63"})
    );
    assert_eq!(v["entity"]["name"], "prod-db");
}

backend_tests!(python_client_flow, node_client_flow, seed_curl_example);
