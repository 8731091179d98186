//! The access log of a real `tether serve`: one line per request with the request id as sent
//! back, the token's user id and never the token, no query values but filters and paging, no
//! colour codes in a log that is not a terminal, JSON lines with `--log-format json`, health
//! probes not at info level, and nothing with `--access-log off`.

mod common;

use common::process::{tether_command, ServerProcess};
use common::{Backend, TestDb};
use serde_json::Value;

const EXTERNAL: &str = "http://tether.example.test";

struct Logged {
    server: ServerProcess,
    token: String,
    _db: TestDb,
    _dir: tempfile::TempDir,
}

fn start(backend: Backend, env: &[(&str, &str)]) -> Logged {
    tether::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.json");
    let db = TestDb::new(backend);
    let out = tether_command()
        .args(["token", "--create-secrets", "--user-id", "user-7"])
        .args(["--external-url", EXTERNAL])
        .arg("--secrets-file")
        .arg(&secrets)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let mut all = vec![("TETHER_EXTERNAL_URL", EXTERNAL)];
    all.extend_from_slice(env);
    let server = ServerProcess::start("tether", &db.url, &secrets, &all);
    Logged {
        server,
        token,
        _db: db,
        _dir: dir,
    }
}

async fn get(logged: &Logged, path: &str, request_id: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{}{path}", logged.server.base))
        .bearer_auth(&logged.token)
        .header("X-Vcap-Request-Id", request_id)
        .send()
        .await
        .unwrap()
}

/// Waits (bounded) for a log line containing `needle`.
async fn line_with(server: &ServerProcess, needle: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(line) = server.log_text().lines().find(|l| l.contains(needle)) {
            return line.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no log line with {needle}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn one_text_line_per_request_without_the_token(backend: Backend) {
    let logged = start(backend, &[]);
    let path = "/v2/service_bindings?q=name:x&results-per-page=5&access_token=hunter2";
    let resp = get(&logged, path, "req-abc-123").await;
    assert_eq!(resp.status(), 200);
    // The id as answered (CC's: the client's, sanitised, `::` and a fresh UUID) is the one
    // logged.
    let answered = resp.headers()["x-vcap-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(answered.starts_with("req-abc-123::"), "{answered}");
    let line = line_with(&logged.server, &answered).await;
    for part in [
        "tether::access",
        "method=GET",
        "status=200",
        "user_id=\"user-7\"",
        "q=name:x&results-per-page=5&access_token=…",
        "latency_ms=",
        "size=",
    ] {
        assert!(line.contains(part), "{part} missing from: {line}");
    }
    let missing = get(&logged, "/v2/service_instances/no-such", "req-missing").await;
    assert_eq!(missing.status(), 404);
    let line = line_with(&logged.server, "req-missing").await;
    assert!(
        line.contains("status=404") && line.contains("instance_guid=\"no-such\""),
        "{line}"
    );

    // Health probes are not access-logged at info level.
    let probe = get(&logged, "/readyz", "req-probe").await;
    assert_eq!(probe.status(), 200);
    let log = logged.server.log_text();
    assert_eq!(log.lines().filter(|l| l.contains("req-abc-123")).count(), 1);
    assert!(!log.contains("req-probe"), "{log}");
    assert!(!log.contains(&logged.token), "the token was logged");
    assert!(!log.contains("hunter2"), "a query value was logged");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log that is no terminal"
    );
}

async fn json_lines_and_the_switch(backend: Backend) {
    let logged = start(backend, &[("TETHER_LOG_FORMAT", "json")]);
    let resp = get(&logged, "/v2/info", "req-json-1").await;
    assert_eq!(resp.status(), 200);
    let answered = resp.headers()["x-vcap-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let line = line_with(&logged.server, "req-json-1").await;
    let event: Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(event["target"], "tether::access");
    assert_eq!(event["request_id"], answered.as_str());
    assert_eq!(event["status"], 200);
    assert_eq!(event["path"], "/v2/info");
    assert!(event["latency_ms"].is_number(), "{line}");
    // The start-up line is JSON too.
    assert!(logged
        .server
        .log_text()
        .lines()
        .all(|l| serde_json::from_str::<Value>(l).is_ok()));

    let quiet = start(backend, &[("TETHER_ACCESS_LOG", "off")]);
    assert_eq!(get(&quiet, "/v2/info", "req-quiet").await.status(), 200);
    // A later request that is logged by the other server proves that logging had time to happen.
    assert_eq!(get(&logged, "/v2/info", "req-json-2").await.status(), 200);
    line_with(&logged.server, "req-json-2").await;
    assert!(!quiet.server.log_text().contains("req-quiet"));
}

backend_tests!(
    one_text_line_per_request_without_the_token,
    json_lines_and_the_switch
);
