//! The README walk-through's set-up: `eval "$(tether seed-demo …)"` in a shell sets the
//! variables the next blocks use, and they work with curl against the running server.

mod common;

use std::process::Command;

use common::process::{ServerProcess, BIN};
use common::{Backend, TestDb, BROKER_PASS, BROKER_USER};
use tether::demo_broker::DemoBroker;

async fn seed_demo_exports_the_walkthrough_variables(backend: Backend) {
    if Command::new("curl").arg("--version").output().is_err() {
        assert!(
            std::env::var("TETHER_REQUIRE_CLIENTS").is_err(),
            "curl is required"
        );
        eprintln!("curl is not installed: skipping");
        return;
    }
    let db = TestDb::new(backend);
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.json");
    let broker = DemoBroker::start(0, BROKER_USER, BROKER_PASS).unwrap();
    let server = ServerProcess::start("tether", &db.url, &secrets, &[]);
    let script = format!(
        r#"set -e
eval "$("$TETHER" seed-demo --broker-url "$BROKER" --broker-username {BROKER_USER} --broker-password {BROKER_PASS})"
for v in TOKEN API ORG SPACE APP UPSI SI ASYNC_SI; do eval "test -n \"\$$v\"" || {{ echo "$v unset"; exit 1; }}; done
curl -s -o /dev/null -w "%{{http_code}} " "$API/v2/apps/$APP" -H "$H"
curl -s -o /dev/null -w "%{{http_code}} " "$API/v2/service_instances/$ASYNC_SI" -H "$H"
curl -s -o /dev/null -w "%{{http_code}}" "$API/v2/service_bindings?accepts_incomplete=true" -H "$H" \
  -d "{{\"app_guid\":\"$APP\",\"service_instance_guid\":\"$ASYNC_SI\"}}"
"#
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("TETHER", BIN)
        .env("BROKER", &broker.url)
        .env("TETHER_DATABASE_URL", &db.url)
        .env("TETHER_SECRETS_FILE", &secrets)
        .env("TETHER_BIND", format!("127.0.0.1:{}", server.port))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The app and the async instance are there; binding the async instance is accepted (202).
    assert_eq!(stdout.trim(), "200 200 202", "{}", server.log_text());
}

backend_tests!(seed_demo_exports_the_walkthrough_variables);
