//! The dashboard at `/dashboard` and CORS for dashboards elsewhere, over plain HTTP: what the
//! server promises (the dashboard's files and security headers, CORS answers). The browser
//! itself is driven in `dashboard_browser.rs`.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Backend, Options, TestApp, TestDb};
use reqwest::Method;
use serde_json::Value;

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

backend_tests!(
    dashboard_files_have_strict_headers,
    cors_is_off_by_default,
    cors_allows_configured_origins_only,
    cors_headers_on_errors_actix_renders,
    cors_wildcard_never_allows_credentials,
    serve_refuses_a_bad_cors_origin,
);
