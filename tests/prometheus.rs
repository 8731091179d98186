//! A real Prometheus (Debian's `prometheus` package) scrapes a tether under traffic: through
//! Prometheus's HTTP API, its target is up, the request counter and the broker-latency
//! histogram move. Skipped (loudly) where Prometheus is not installed, unless
//! TETHER_REQUIRE_PROMETHEUS=1 (CI), which makes a missing Prometheus a failure.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::metrics::have_tool;
use common::process::free_port;
use common::{Backend, TestApp};
use serde_json::{json, Value};

/// A Prometheus server of the test's own, killed when dropped.
struct Prometheus {
    child: Child,
    api: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  \
                 - job_name: tether\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            api: format!("http://127.0.0.1:{port}/api/v1"),
            _dir: dir,
        }
    }

    /// The value of an instant query that returns one number, if it returns one.
    async fn value(&self, query: &str) -> Option<f64> {
        let encoded: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
        let resp = reqwest::Client::new()
            .get(format!("{}/query?query={encoded}", self.api))
            .send()
            .await
            .ok()?;
        let body: Value = resp.json().await.ok()?;
        body["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    /// Waits (bounded) until the query's value is above `floor`; returns it.
    async fn wait_above(&self, query: &str, floor: f64) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(v) = self.value(query).await.filter(|v| *v > floor) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus never saw {query} above {floor} (last: {:?})",
                self.value(query).await
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn prometheus_scrapes_tether_under_traffic(backend: Backend) {
    if !have_tool("prometheus") {
        return;
    }
    let app = TestApp::start(backend).await;
    let target = app.api.base.trim_start_matches("http://").to_string();
    let prometheus = Prometheus::start(&target);
    let w = app.world().await;
    let mut apps = Vec::new();
    for i in 0..3 {
        apps.push(app.create_app(&w.space, &format!("p{i}")).await);
    }
    app.bind(&apps[0], &w.instance, json!({}))
        .await
        .assert_status(201);

    prometheus.wait_above("up{job=\"tether\"}", 0.0).await;
    let requests = "sum(tether_http_requests_total)";
    let binds = "sum(tether_broker_request_duration_seconds_count{operation=\"bind\"})";
    let bind_buckets =
        "sum(tether_broker_request_duration_seconds_bucket{operation=\"bind\",le=\"+Inf\"})";
    let first_requests = prometheus.wait_above(requests, 0.0).await;
    let first_binds = prometheus.wait_above(binds, 0.0).await;
    prometheus.wait_above(bind_buckets, 0.0).await;

    // More traffic: both move.
    for a in &apps[1..] {
        app.bind(a, &w.instance, json!({})).await.assert_status(201);
    }
    prometheus.wait_above(requests, first_requests).await;
    let later_binds = prometheus.wait_above(binds, first_binds).await;
    assert_eq!(later_binds, 3.0);
}

backend_tests!(prometheus_scrapes_tether_under_traffic);
