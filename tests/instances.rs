//! Several instances on one database: one started with other secrets than the instance that
//! sealed the stored credentials refuses to start and names the keys it lacks; one with the
//! same secrets starts; a token another instance signed is refused with its reason in the
//! debug log, never the token itself.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::process::{tether_command, ServerProcess};
use common::{Backend, TestApp, TestDb};

/// Runs `tether serve` on `db_url` with `secrets`, expecting it to stop by itself; its exit
/// status and stderr.
fn serve_expecting_exit(db_url: &str, secrets: &std::path::Path) -> (Option<i32>, String) {
    let mut child = tether_command()
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--database-url",
            db_url,
            "--secrets-file",
        ])
        .arg(secrets)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("tether serve started on a database sealed with keys it lacks");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn other_secrets_refuse_to_start_same_secrets_start(backend: Backend) {
    let a = TestApp::start(backend).await;
    a.world().await; // registers a broker: its password is sealed
    let label = a.state.crypto.current_label();
    let dir = tempfile::tempdir().unwrap();

    let (code, stderr) = serve_expecting_exit(&a.db_url(), &dir.path().join("other.json"));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&label),
        "the missing key is not named: {stderr}"
    );
    assert!(stderr.contains("same secrets"), "{stderr}");

    let same = dir.path().join("same.json");
    let secrets = serde_json::json!({
        "signing_key": a.state.config.signing_key_pem,
        "encryption": a.state.config.encryption,
    });
    std::fs::write(&same, secrets.to_string()).unwrap();
    let b = ServerProcess::start("tether-b", &a.db_url(), &same, &[]);
    let r = reqwest::get(format!("{}/v2/info", b.base)).await.unwrap();
    assert_eq!(r.status(), 200);
}

async fn a_foreign_token_is_refused_with_its_reason_at_debug(backend: Backend) {
    let a = TestApp::start(backend).await;
    let db = TestDb::new(backend);
    let dir = tempfile::tempdir().unwrap();
    let b = ServerProcess::start(
        "tether-b",
        &db.url,
        &dir.path().join("b.json"),
        &[("TETHER_LOG", "info,tether::auth=debug")],
    );
    let resp = reqwest::Client::new()
        .get(format!("{}/v2/organizations", b.base))
        .bearer_auth(&a.api.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !b.log_text().contains("rejected bearer token") {
        assert!(
            Instant::now() < deadline,
            "no rejection logged:\n{}",
            b.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = b.log_text();
    assert!(log.contains("reason=\"unknown key id\""), "{log}");
    assert!(!log.contains(&a.api.admin_token), "the token was logged");
}

backend_tests!(
    other_secrets_refuse_to_start_same_secrets_start,
    a_foreign_token_is_refused_with_its_reason_at_debug
);

/// `tether token` and `seed-demo` where no server has run: they say what is missing and stop,
/// creating nothing (a key of their own would be one no server has).
#[test]
fn token_and_seed_demo_create_no_secrets_or_database() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.json");
    let db = dir.path().join("tether.db");
    let token = tether_command()
        .arg("token")
        .arg("--secrets-file")
        .arg(&secrets)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&token.stderr);
    assert!(!token.status.success());
    assert!(
        stderr.contains("no secrets file") && stderr.contains("--secrets-file"),
        "{stderr}"
    );
    let seed = tether_command()
        .arg("seed-demo")
        .arg("--secrets-file")
        .arg(&secrets)
        .arg("--database-url")
        .arg(&db)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&seed.stderr);
    assert!(!seed.status.success());
    assert!(
        stderr.contains("no database") && stderr.contains("--database-url"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "something was created"
    );
    let created = tether_command()
        .args(["token", "--create-secrets", "--secrets-file"])
        .arg(&secrets)
        .output()
        .unwrap();
    assert!(created.status.success());
    assert!(secrets.exists());
}

/// Secrets from the environment (`TETHER_SECRETS`, the file's JSON), as a secret store hands
/// them over: the server uses them, writes no file, and accepts the tokens they sign.
#[actix_web::test]
async fn secrets_from_the_environment() {
    tether::install_crypto_provider();
    let db = TestDb::new(Backend::Sqlite);
    let dir = tempfile::tempdir().unwrap();
    let made = dir.path().join("made.json");
    let token = tether_command()
        .args([
            "token",
            "--create-secrets",
            "--external-url",
            "http://t.test",
        ])
        .arg("--secrets-file")
        .arg(&made)
        .output()
        .unwrap();
    assert!(token.status.success());
    let token = String::from_utf8(token.stdout).unwrap().trim().to_string();
    let json = std::fs::read_to_string(&made).unwrap();
    let unused = dir.path().join("never-written.json");
    let server = ServerProcess::start(
        "tether",
        &db.url,
        &unused,
        &[
            ("TETHER_SECRETS", json.as_str()),
            ("TETHER_EXTERNAL_URL", "http://t.test"),
        ],
    );
    let resp = reqwest::Client::new()
        .get(format!("{}/v2/organizations", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(!unused.exists(), "a secrets file was written");
}

/// An address already in use: the error names it and the option to change it.
#[test]
fn a_taken_address_is_named_with_the_option_to_change_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let db = TestDb::new(Backend::Sqlite);
    let dir = tempfile::tempdir().unwrap();
    let out = tether_command()
        .args([
            "serve",
            "--bind",
            &addr,
            "--database-url",
            &db.url,
            "--secrets-file",
        ])
        .arg(dir.path().join("s.json"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&addr) && stderr.contains("already in use"),
        "{stderr}"
    );
    assert!(stderr.contains("--bind"), "{stderr}");
}
