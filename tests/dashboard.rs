//! Issue 17: the dashboard at `/dashboard` and CORS for dashboards elsewhere.
//!
//! Plain HTTP tests check what the server promises (the dashboard's files and security headers,
//! CORS answers). The browser test drives Debian's Chromium headless (through `playwright-core`,
//! pinned in `tests/browser/`) against a real `tether serve` and the demo broker: it signs in,
//! walks org → space → app → binding, watches an async binding settle without a reload, checks
//! roles, escaping, token refresh, CORS from a real second origin, and runs axe-core on each
//! view; see `tests/browser/dashboard.mjs`.
//!
//! The browser parts are installed by `.ci/run` (`chromium` from apt, `npm ci` in
//! `tests/browser`). Without them the browser test is skipped with a notice, unless
//! `TETHER_REQUIRE_BROWSER=1` (set in CI), which makes a missing browser a failure.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Backend, Options, TestApp, TestDb, BROKER_PASS, BROKER_USER};
use reqwest::Method;
use serde_json::{json, Value};
use tether::demo_broker::{DemoBroker, Reply, PLAN_ASYNC_ID, PLAN_SMALL_ID};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'";

const ALLOWED: &str = "https://dash.example.com";

fn with_origins(origins: &[&str]) -> Options {
    let origins: Vec<String> = origins.iter().map(|s| s.to_string()).collect();
    Options {
        customize: Some(Box::new(move |c| c.cors_origins = origins)),
        ..Options::default()
    }
}

/// A raw request (reqwest, no token unless given) returning status, headers and body text.
async fn send(
    t: &TestApp,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = t.client.request(method, format!("{}{path}", t.base));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.expect("body"))
}

fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn vary(h: &reqwest::header::HeaderMap) -> Vec<String> {
    h.get_all("vary")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_ascii_lowercase())
        .collect()
}

/// Whether markup has an `on…=` attribute (an inline event handler).
fn has_event_attribute(html: &str) -> bool {
    html.match_indices(" on").any(|(i, _)| {
        let rest = &html[i + 3..];
        let name_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        name_len > 0 && rest[name_len..].trim_start().starts_with('=')
    })
}

#[track_caller]
fn assert_no_cors(h: &reqwest::header::HeaderMap) {
    for name in [
        "access-control-allow-origin",
        "access-control-allow-credentials",
        "access-control-allow-methods",
        "access-control-allow-headers",
        "access-control-expose-headers",
    ] {
        assert!(h.get(name).is_none(), "unexpected {name}: {h:?}");
    }
}

// ------------------------------------------------------------------------------------------
// The dashboard's files

async fn dashboard_files_have_strict_headers(backend: Backend) {
    let t = TestApp::start(backend).await;
    for (path, content_type) in [
        ("/dashboard", "text/html; charset=utf-8"),
        ("/dashboard/", "text/html; charset=utf-8"),
        ("/dashboard/app.js", "text/javascript; charset=utf-8"),
        ("/dashboard/app.css", "text/css; charset=utf-8"),
    ] {
        // No token: the page itself is public (it holds no data; the API decides what is seen).
        let (status, h, body) = send(&t, Method::GET, path, &[]).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(header(&h, "content-type"), Some(content_type), "{path}");
        assert_eq!(header(&h, "content-security-policy"), Some(CSP), "{path}");
        assert_eq!(header(&h, "x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(header(&h, "referrer-policy"), Some("no-referrer"), "{path}");
        assert_eq!(header(&h, "cache-control"), Some("no-cache"), "{path}");
        assert_eq!(header(&h, "x-content-type-options"), Some("nosniff"));
        assert!(header(&h, "x-vcap-request-id").is_some(), "{path}");
        assert!(!body.is_empty());

        // Revalidation: the same tag gives a body-less 304 with the same security headers.
        let tag = header(&h, "etag").expect("etag").to_string();
        assert!(tag.starts_with('"') && tag.ends_with('"'), "{tag}");
        let (status, h2, body) = send(&t, Method::GET, path, &[("If-None-Match", &tag)]).await;
        assert_eq!(status, 304, "{path}");
        assert!(body.is_empty());
        assert_eq!(header(&h2, "content-security-policy"), Some(CSP));
        assert_eq!(header(&h2, "etag"), Some(tag.as_str()));
        let (status, _, _) = send(&t, Method::GET, path, &[("If-None-Match", "\"other\"")]).await;
        assert_eq!(status, 200);
    }

    // The page has no inline script or style for the CSP to refuse, and loads nothing from
    // elsewhere.
    let (_, _, html) = send(&t, Method::GET, "/dashboard", &[]).await;
    let lower = html.to_ascii_lowercase();
    assert_eq!(lower.matches("<script").count(), 1, "{html}");
    assert!(lower.contains(r#"<script src="/dashboard/app.js" defer></script>"#));
    assert!(!lower.contains("<style"), "inline <style>");
    assert!(!lower.contains(" style="), "inline style attribute");
    assert!(
        !has_event_attribute(&lower),
        "inline event handler attribute"
    );
    assert!(!lower.contains("http://") && !lower.contains("https://"));

    // The script never turns data into markup.
    let (_, _, js) = send(&t, Method::GET, "/dashboard/app.js", &[]).await;
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
    ] {
        assert!(!js.contains(sink), "app.js uses {sink}");
    }

    // Other paths under /dashboard are CC's JSON 404, and the API keeps its own headers.
    let (status, h, body) = send(&t, Method::GET, "/dashboard/nope.js", &[]).await;
    assert_eq!(status, 404);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error_code"],
        "CF-NotFound"
    );
    assert!(header(&h, "content-security-policy").is_none());
    let r = t.get("/v2/info").await;
    r.assert_status(200);
    assert!(r.header("content-security-policy").is_none());
}

// ------------------------------------------------------------------------------------------
// CORS

async fn cors_is_off_by_default(backend: Backend) {
    let t = TestApp::start(backend).await;
    let auth = format!("bearer {}", t.admin_token);
    let (status, h, _) = send(
        &t,
        Method::GET,
        "/v2/organizations",
        &[("Origin", ALLOWED), ("Authorization", &auth)],
    )
    .await;
    assert_eq!(status, 200);
    assert_no_cors(&h);
    // A preflight is answered by the CORS layer (not the API's handlers: those would give the
    // default 404) and refuses.
    let (status, h, body) = send(
        &t,
        Method::OPTIONS,
        "/v2/organizations",
        &[
            ("Origin", ALLOWED),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "authorization"),
        ],
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error_code"],
        "CF-NotAuthorized"
    );
    assert_no_cors(&h);
}

async fn cors_allows_configured_origins_only(backend: Backend) {
    let t = TestApp::start_with(backend, with_origins(&[ALLOWED])).await;
    let auth = format!("bearer {}", t.admin_token);

    // Preflight from the allowed origin.
    let (status, h, body) = send(
        &t,
        Method::OPTIONS,
        "/v2/service_bindings",
        &[
            ("Origin", ALLOWED),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "authorization,content-type",
            ),
        ],
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert!(body.is_empty());
    assert_eq!(header(&h, "access-control-allow-origin"), Some(ALLOWED));
    let methods = header(&h, "access-control-allow-methods").unwrap();
    for m in ["GET", "POST", "PUT", "DELETE"] {
        assert!(methods.contains(m), "{methods}");
    }
    let allow_headers = header(&h, "access-control-allow-headers")
        .unwrap()
        .to_ascii_lowercase();
    for name in ["authorization", "content-type", "x-vcap-request-id"] {
        assert!(allow_headers.contains(name), "{allow_headers}");
    }
    assert_eq!(header(&h, "access-control-max-age"), Some("600"));
    assert!(vary(&h).contains(&"origin".to_string()), "{h:?}");
    assert!(h.get("access-control-allow-credentials").is_none());

    // The real request, and the headers it may read.
    let (status, h, body) = send(
        &t,
        Method::GET,
        "/v2/organizations",
        &[("Origin", ALLOWED), ("Authorization", &auth)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&h, "access-control-allow-origin"), Some(ALLOWED));
    assert!(vary(&h).contains(&"origin".to_string()));
    let exposed = header(&h, "access-control-expose-headers")
        .unwrap()
        .to_ascii_lowercase();
    assert!(exposed.contains("x-vcap-request-id") && exposed.contains("x-cf-warnings"));
    assert!(h.get("access-control-allow-credentials").is_none());
    assert!(header(&h, "x-vcap-request-id").is_some());

    // Errors carry CORS headers too, so the dashboard can read why: a 401 without a token, a
    // 404 from a handler, the default 404, and the NUL guard's 404 from the inner middleware.
    for (path, with_token, code) in [
        ("/v2/organizations", false, 401),
        ("/v2/service_bindings/no-such-binding", true, 404),
        ("/v2/no_such_collection", true, 404),
        ("/v2/apps/a%00b", true, 404),
    ] {
        let mut headers = vec![("Origin", ALLOWED)];
        if with_token {
            headers.push(("Authorization", &auth));
        }
        let (status, h, body) = send(&t, Method::GET, path, &headers).await;
        assert_eq!(status, code, "{path}: {body}");
        assert!(
            serde_json::from_str::<Value>(&body).unwrap()["error_code"].is_string(),
            "{body}"
        );
        assert_eq!(
            header(&h, "access-control-allow-origin"),
            Some(ALLOWED),
            "{path}"
        );
    }

    // The built-in token endpoint, for a dashboard elsewhere that signs users in.
    let (status, h, _) = send(
        &t,
        Method::OPTIONS,
        "/oauth/token",
        &[
            ("Origin", ALLOWED),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "authorization,content-type",
            ),
        ],
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(header(&h, "access-control-allow-origin"), Some(ALLOWED));

    // Any other origin, including look-alikes and `null`: no CORS headers, preflight refused
    // before any handler.
    for other in [
        "https://evil.example",
        "https://dash.example.com.evil.example",
        "http://dash.example.com",
        "https://dash.example.com:8443",
        "null",
    ] {
        let (status, h, _) = send(
            &t,
            Method::GET,
            "/v2/organizations",
            &[("Origin", other), ("Authorization", &auth)],
        )
        .await;
        assert_eq!(status, 200);
        assert_no_cors(&h);
        assert!(vary(&h).contains(&"origin".to_string()));
        let (status, h, _) = send(
            &t,
            Method::OPTIONS,
            "/v2/organizations",
            &[("Origin", other), ("Access-Control-Request-Method", "GET")],
        )
        .await;
        assert_eq!(status, 403, "{other}");
        assert_no_cors(&h);
    }

    // Same-origin and non-browser requests (no Origin) are untouched but for Vary.
    let r = t.get("/v2/organizations").await;
    r.assert_status(200);
    assert!(r.header("access-control-allow-origin").is_none());

    // An OPTIONS without Access-Control-Request-Method is not a preflight: the API answers it
    // (no such route), with the CORS headers of an actual request.
    let (status, h, _) = send(
        &t,
        Method::OPTIONS,
        "/v2/organizations",
        &[("Origin", ALLOWED)],
    )
    .await;
    assert!(status >= 400, "{status}");
    assert_eq!(header(&h, "access-control-allow-origin"), Some(ALLOWED));
}

async fn a_handler_bug() -> actix_web::HttpResponse {
    panic!("a bug in a handler")
}

/// What still reaches actix as an error (a handler's panic, caught by the inner middleware) is
/// rendered by actix after every middleware has run: it takes its CORS headers along.
async fn cors_headers_on_errors_actix_renders(backend: Backend) {
    let t = TestApp::start_with(backend, with_origins(&[ALLOWED])).await;
    // The middleware of `build_app!`, in its order, around a route that panics.
    let app = actix_web::test::init_service(
        actix_web::App::new()
            .app_data(actix_web::web::Data::from(t.state.clone()))
            .wrap(actix_web::middleware::from_fn(
                tether::api::middleware::standard_headers,
            ))
            .wrap(actix_web::middleware::from_fn(tether::api::cors::cors))
            .route("/bug", actix_web::web::get().to(a_handler_bug)),
    )
    .await;
    for (origin, allowed) in [(ALLOWED, true), ("https://evil.example", false)] {
        let req = actix_web::test::TestRequest::get()
            .uri("/bug")
            .insert_header(("Origin", origin))
            .to_request();
        let resp = match actix_web::test::try_call_service(&app, req).await {
            Ok(res) => res.into_parts().1.map_into_boxed_body(),
            // What actix's dispatcher does with an error.
            Err(e) => e.error_response(),
        };
        assert_eq!(resp.status().as_u16(), 500);
        let h = resp.headers();
        assert_eq!(
            h.get("access-control-allow-origin")
                .and_then(|v| v.to_str().ok()),
            allowed.then_some(ALLOWED),
            "{origin}"
        );
        assert!(h.get("access-control-allow-credentials").is_none());
        assert!(h.get_all("vary").any(|v| v == "Origin"), "{h:?}");
        assert!(h.get("x-vcap-request-id").is_some());
    }
}

async fn cors_wildcard_never_allows_credentials(backend: Backend) {
    let t = TestApp::start_with(backend, with_origins(&["*"])).await;
    let auth = format!("bearer {}", t.admin_token);
    let (status, h, _) = send(
        &t,
        Method::OPTIONS,
        "/v2/organizations",
        &[
            ("Origin", "https://anywhere.example"),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "authorization"),
        ],
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(header(&h, "access-control-allow-origin"), Some("*"));
    assert!(h.get("access-control-allow-credentials").is_none());
    let (status, h, _) = send(
        &t,
        Method::GET,
        "/v2/organizations",
        &[
            ("Origin", "https://anywhere.example"),
            ("Authorization", &auth),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "access-control-allow-origin"), Some("*"));
    assert!(h.get("access-control-allow-credentials").is_none());
}

/// `--cors-origin` is checked when `tether serve` starts: a path or a bare host name is a
/// mistake to report, not an origin to match nothing against.
async fn serve_refuses_a_bad_cors_origin(backend: Backend) {
    let db = TestDb::new(backend);
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["serve", "--cors-origin", "https://dash.example.com/app"])
        .env("TETHER_DATABASE_URL", &db.url)
        .env("TETHER_BIND", "127.0.0.1:0")
        .env("TETHER_SECRETS_FILE", dir.path().join("secrets.json"))
        .env("TETHER_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tether serve");
    // Had it accepted the origin, it would serve forever: give it a bounded time to exit.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tether serve started with a bad --cors-origin");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("--cors-origin"), "{stderr}");
}

// ------------------------------------------------------------------------------------------
// The browser test

struct Server {
    child: Child,
    base: String,
    secrets: PathBuf,
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

fn tether(server: &Server, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
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
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .arg("serve")
        .env("TETHER_DATABASE_URL", &db.url)
        .env("TETHER_BIND", format!("127.0.0.1:{port}"))
        .env("TETHER_SECRETS_FILE", &secrets)
        .env("TETHER_POLL_INTERVAL_SECS", "0.2")
        .env("TETHER_CORS_ORIGIN", cors_origin)
        .env("TETHER_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn tether serve");
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

    // First, while nothing else talks to the broker: an async bind the broker fails with
    // markup in its description.
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
    let mut async_binding = None;
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
            ["create-async-binding"] => {
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
                        Some(bind(&web, &jobs, json!({"name": "web-jobs"}))),
                    )
                    .await;
                assert_eq!(status, 202, "{v}");
                let guid = v["metadata"]["guid"].as_str().unwrap().to_string();
                async_binding = Some(guid.clone());
                guid
            }
            ["finish-async-binding", guid] => {
                assert_eq!(Some(guid.to_string()), async_binding);
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
    let guid = async_binding.expect("the script never created the async binding");
    admin.wait_state(&guid, "succeeded").await;
}

backend_tests!(
    dashboard_files_have_strict_headers,
    cors_is_off_by_default,
    cors_allows_configured_origins_only,
    cors_headers_on_errors_actix_renders,
    cors_wildcard_never_allows_credentials,
    serve_refuses_a_bad_cors_origin,
    browser_walkthrough,
);
