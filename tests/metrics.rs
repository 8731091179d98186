//! `GET /metrics`: requests by route template, broker calls by operation, bindings by last
//! operation, the database and the process, in a text exposition `promtool` accepts; none
//! with `--metrics off`; only on its own address with `--metrics-bind`.

mod common;

use common::metrics::{have_tool, promtool_check, sample_sum};
use common::{Backend, Options, TestApp};
use reqwest::Method;
use serde_json::json;

async fn scrape(app: &TestApp) -> String {
    let r = app.api.request(Method::GET, "/metrics", None, None).await;
    r.assert_status(200);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        r.header("content-type")
    );
    r.text
}

async fn requests_brokers_bindings_and_the_process(backend: Backend) {
    let app = TestApp::start(backend).await;
    let w = app.world().await;
    app.bind(&w.app, &w.instance, json!({}))
        .await
        .assert_status(201);
    let guid = app.bind(&w.app, &w.instance, json!({})).await;
    guid.assert_error(400, "CF-ServiceBindingAppServiceTaken");
    let text = scrape(&app).await;

    let created = [
        "route=\"/v2/service_bindings\"",
        "method=\"POST\"",
        "status=\"201\"",
    ];
    assert_eq!(
        sample_sum(&text, "tether_http_requests_total", &created),
        Some(1.0)
    );
    let taken = ["route=\"/v2/service_bindings\"", "status=\"400\""];
    assert_eq!(
        sample_sum(&text, "tether_http_requests_total", &taken),
        Some(1.0)
    );
    // Route templates, never raw paths.
    assert!(!text.contains(&w.instance), "a guid in a label");
    let posts = ["route=\"/v2/service_bindings\"", "method=\"POST\""];
    assert_eq!(
        sample_sum(&text, "tether_http_request_duration_seconds_count", &posts),
        Some(2.0)
    );
    let bind = ["operation=\"bind\""];
    assert_eq!(
        sample_sum(&text, "tether_broker_request_duration_seconds_count", &bind),
        Some(1.0)
    );
    let bind_ok = ["operation=\"bind\"", "outcome=\"2xx\""];
    assert_eq!(
        sample_sum(&text, "tether_broker_requests_total", &bind_ok),
        Some(1.0)
    );
    let catalog = ["operation=\"catalog\""];
    assert!(sample_sum(&text, "tether_broker_requests_total", &catalog).is_some());
    let bound = ["type=\"create\"", "state=\"succeeded\""];
    assert_eq!(
        sample_sum(&text, "tether_service_bindings", &bound),
        Some(1.0)
    );
    assert!(sample_sum(&text, "tether_jobs_queue_depth", &["state=\"queued\""]).is_some());
    assert!(sample_sum(&text, "process_resident_memory_bytes", &[]).is_some_and(|v| v > 0.0));
    assert!(sample_sum(&text, "process_open_fds", &[]).is_some_and(|v| v > 0.0));
    assert!(sample_sum(&text, "tether_db_pool_connections_max", &[]) == Some(4.0));
    if backend == Backend::Sqlite {
        let batches = sample_sum(&text, "tether_sqlite_write_batch_size_count", &[]);
        assert!(batches.is_some_and(|n| n >= 1.0), "{batches:?}");
    }
    if have_tool("promtool") {
        promtool_check(&text);
    }
}

async fn switched_off_there_are_none(backend: Backend) {
    let app = TestApp::start_with(
        backend,
        Options {
            customize: Some(Box::new(|c| c.metrics = false)),
            ..Options::default()
        },
    )
    .await;
    app.get("/v2/info").await.assert_status(200);
    let r = app.api.request(Method::GET, "/metrics", None, None).await;
    r.assert_error(404, "CF-NotFound");
    let all = app.state.metrics.encode();
    assert_eq!(
        sample_sum(&all, "tether_http_requests_total", &[]),
        None,
        "{all}"
    );
}

backend_tests!(
    requests_brokers_bindings_and_the_process,
    switched_off_there_are_none
);

/// `--metrics-bind`: the exposition on that address only (the API's `/metrics` is a 404), and
/// SIGTERM stops both listeners.
#[actix_web::test]
async fn metrics_on_their_own_address() {
    tether::install_crypto_provider();
    let db = common::TestDb::new(Backend::Sqlite);
    let dir = tempfile::tempdir().unwrap();
    let port = common::process::free_port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let mut server = common::process::ServerProcess::start(
        "tether",
        &db.url,
        &dir.path().join("s.json"),
        &[("TETHER_METRICS_BIND", metrics_addr.as_str())],
    );
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap();
    let get = |url: String| client.get(url).send();
    let info = get(format!("{}/v2/info", server.base)).await.unwrap();
    assert_eq!(info.status(), 200);
    let api_side = get(format!("{}/metrics", server.base)).await.unwrap();
    assert_eq!(api_side.status(), 404);
    let text = get(format!("http://{metrics_addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let info = ["route=\"/v2/info\"", "status=\"200\""];
    assert_eq!(
        sample_sum(&text, "tether_http_requests_total", &info),
        Some(1.0),
        "{text}"
    );
    // Both listeners stop on SIGTERM.
    server.signal("TERM");
    let status = server.wait_for_exit(std::time::Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{}", server.log_text());
}
