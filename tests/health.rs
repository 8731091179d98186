//! `GET /healthz` and `GET /readyz`: unauthenticated, JSON; readiness follows the database
//! (503 while PostgreSQL is away, 200 again once it is back) and turns 503 when shutdown begins.

mod common;

use std::time::{Duration, Instant};

use common::pg_server::PrivatePostgres;
use common::{Backend, Options, TestApp};
use reqwest::Method;

async fn probe(app: &TestApp, path: &str) -> common::Response {
    // No token: load balancers and kubelets have none.
    app.api.request(Method::GET, path, None, None).await
}

/// Polls readiness until it answers `status` (bounded), returning that answer.
async fn wait_ready_status(app: &TestApp, status: u16, limit: Duration) -> common::Response {
    let deadline = Instant::now() + limit;
    loop {
        let r = probe(app, "/readyz").await;
        if r.status.as_u16() == status {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "readiness never answered {status}; last: {} {}",
            r.status,
            r.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn health_and_readiness_without_a_token(backend: Backend) {
    let app = TestApp::start(backend).await;
    let live = probe(&app, "/healthz").await;
    live.assert_status(200);
    assert_eq!(live.body["status"], "ok");
    let ready = probe(&app, "/readyz").await;
    ready.assert_status(200);
    assert_eq!(ready.body["status"], "ready");
    assert_eq!(ready.header("cache-control"), Some("no-store"));
}

async fn readiness_turns_503_when_shutdown_begins(backend: Backend) {
    let app = TestApp::start(backend).await;
    probe(&app, "/readyz").await.assert_status(200);
    app.state.lifecycle.begin_shutdown();
    let r = probe(&app, "/readyz").await;
    r.assert_status(503);
    assert_eq!(r.body["reason"], "shutting down");
    // Liveness is not readiness: the process still answers.
    probe(&app, "/healthz").await.assert_status(200);
}

backend_tests!(
    health_and_readiness_without_a_token,
    readiness_turns_503_when_shutdown_begins
);

#[actix_web::test]
async fn readiness_follows_postgres_away_and_back() {
    if common::skip_postgres() {
        eprintln!("TETHER_TEST_SKIP_PG is set: skipping");
        return;
    }
    let pg = PrivatePostgres::start();
    let app = TestApp::start_with(
        Backend::Postgres,
        Options {
            database_url: Some(pg.url()),
            customize: Some(Box::new(|c| c.db_acquire_timeout = Duration::from_secs(1))),
            ..Options::default()
        },
    )
    .await;
    probe(&app, "/readyz").await.assert_status(200);

    pg.stop();
    let away = wait_ready_status(&app, 503, Duration::from_secs(15)).await;
    assert_eq!(
        away.body["reason"], "the database does not answer",
        "{}",
        away.text
    );
    // The cause is for the log, not for an unauthenticated caller.
    assert!(!away.text.contains(&pg.port.to_string()), "{}", away.text);
    probe(&app, "/healthz").await.assert_status(200);

    pg.start_again();
    wait_ready_status(&app, 200, Duration::from_secs(20)).await;
}
