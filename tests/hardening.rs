//! Hostile input and unlucky operations: every answer is a CF error document, never a panic, a
//! dropped connection or a socket held forever.

mod common;

use std::time::Duration;

use common::{Backend, Options, TestApp};
use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every list endpoint that takes `q=`, with a multi-byte character before or inside the
/// operator: a 400 `CF-BadQueryParameter`, as for any other bad filter (this used to panic in
/// the query parser, and the client got no answer at all).
async fn multibyte_filters_are_bad_query_parameters(backend: Backend) {
    let app = TestApp::start(backend).await;
    let w = app.world().await;
    let lists = [
        "/v2/service_bindings".to_string(),
        format!("/v2/apps/{}/service_bindings", w.app),
        format!("/v2/service_instances/{}/service_bindings", w.instance),
        "/v2/apps".to_string(),
        "/v2/spaces".to_string(),
        "/v2/organizations".to_string(),
        "/v2/service_instances".to_string(),
        "/v2/service_plans".to_string(),
        "/v2/services".to_string(),
        "/v2/service_keys".to_string(),
    ];
    for list in &lists {
        for q in [
            "name%C3%A9",
            "%C3%A9",
            "app_guid%C3%A9:x",
            "name%C3%A9%3E=x",
            "%F0%9F%98%80%20IN%20a",
        ] {
            let r = app.get(&format!("{list}?q={q}")).await;
            r.assert_error(400, "CF-BadQueryParameter");
            assert_eq!(r.body["code"], 10005, "{list}?q={q}: {}", r.text);
        }
    }
    // The server is still there, and a good filter with a multi-byte value works.
    let r = app
        .get(&format!(
            "/v2/service_bindings?q=name:%C3%A9t%C3%A9&q=app_guid:{}",
            w.app
        ))
        .await;
    r.assert_status(200);
    assert_eq!(r.body["total_results"], 0);
}

/// A body announced and then not sent: after the body deadline the client gets a 408 CF error
/// and the connection is closed (it used to be held open for as long as the client liked).
async fn a_stalled_body_gets_408_and_the_connection_closes(backend: Backend) {
    let app = TestApp::start_with(
        backend,
        Options {
            customize: Some(Box::new(|c| {
                c.request_body_timeout = Duration::from_secs(1)
            })),
            ..Options::default()
        },
    )
    .await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut sockets = Vec::new();
    for _ in 0..20 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST /v2/service_bindings HTTP/1.1\r\nHost: {addr}\r\nAuthorization: bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{",
            app.admin_token
        );
        s.write_all(head.as_bytes()).await.unwrap();
        sockets.push(s);
    }
    for mut s in sockets {
        let mut answer = Vec::new();
        // The server answers and closes: read_to_end returns (a held socket would time out).
        tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut answer))
            .await
            .expect("the server still holds a stalled request after 15 s")
            .unwrap();
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
        let doc: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(doc["error_code"], "CF-InvalidRequest", "{text}");
        assert!(doc["description"]
            .as_str()
            .unwrap()
            .contains("not received in time"));
    }
    // Nothing was created, and the server serves others as before.
    assert_eq!(app.count("service_bindings").await, 0);
    app.get("/v2/service_bindings").await.assert_status(200);
}

/// Errors actix raises itself (oversized body, unknown route, wrong method, unreadable JSON,
/// bad path segments) are CF JSON documents like ours.
async fn framework_errors_are_cf_documents(backend: Backend) {
    let app = TestApp::start(backend).await;
    let big = vec![b' '; tether::api::MAX_BODY_BYTES + 10];
    let r = app
        .raw(
            Method::POST,
            "/v2/service_bindings",
            "application/json",
            &big,
        )
        .await;
    r.assert_error(413, "CF-InvalidRequest");
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    assert!(r.body["description"]
        .as_str()
        .unwrap()
        .contains("too large"));

    app.get("/v2/no_such_thing")
        .await
        .assert_error(404, "CF-NotFound");
    // A known path with a method it does not take: CC's "Unknown request".
    let r = app
        .request(
            Method::PATCH,
            "/v2/service_bindings",
            Some(&app.admin_token),
            None,
        )
        .await;
    r.assert_error(404, "CF-NotFound");
    let r = app
        .request(
            Method::PUT,
            "/v2/info",
            Some(&app.admin_token),
            Some(&json!({})),
        )
        .await;
    r.assert_error(404, "CF-NotFound");
    let r = app
        .raw(
            Method::POST,
            "/v2/service_bindings",
            "application/json",
            b"{\"app_guid\": ",
        )
        .await;
    r.assert_error(400, "CF-MessageParseError");
    let r = app
        .raw(
            Method::POST,
            "/v2/service_bindings",
            "text/x-nonsense",
            b"\xff\xfe",
        )
        .await;
    r.assert_error(400, "CF-MessageParseError");
    for path in [
        "/v2/service_bindings/%FF%FE",
        "/v2/apps/%C3%28/env",
        "/v2/service_bindings/a%2Fb",
    ] {
        let r = app.get(path).await;
        assert!(r.status.is_client_error(), "{path}: {}", r.status);
        assert!(
            r.body["error_code"]
                .as_str()
                .is_some_and(|c| c.starts_with("CF-")),
            "{path}: {}",
            r.text
        );
    }
}

/// A token signed with the server's own key is still refused when its `iss` is not the built-in
/// issuer's, or when it is missing: the built-in issuer is pinned like an external UAA.
async fn builtin_tokens_must_name_their_issuer(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (good, claims) = app
        .state
        .issuer
        .user_token(
            "u1",
            "u1",
            &["cloud_controller.admin".to_string()],
            "cf",
            "password",
        )
        .unwrap();
    let r = app
        .as_user(&good, Method::GET, "/v2/service_bindings", None)
        .await;
    r.assert_status(200);
    for iss in [Some("https://evil.example/oauth/token"), Some(""), None] {
        let mut forged = claims.clone();
        forged.iss = iss.map(str::to_string);
        forged.jti = Some(format!("forged-{iss:?}"));
        let token = app.state.issuer.sign(&forged).unwrap();
        let r = app
            .as_user(&token, Method::GET, "/v2/service_bindings", None)
            .await;
        r.assert_error(401, "CF-InvalidAuthToken");
    }
}

/// A server started by an operator: its log (a pipe here, as when written to a file or a
/// collector) carries no colour codes; on SQLite, the database and its `-wal`/`-shm` are the
/// owner's alone (they hold password hashes and role data), also when the file existed with
/// looser permissions.
async fn log_files_are_plain_and_the_database_private(backend: Backend) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.json");
    let db = common::TestDb::new(backend);
    let sqlite_path = dir.path().join("tether.db");
    let db_url = match backend {
        Backend::Sqlite => {
            // An existing database file with the usual umask's permissions gets tightened.
            std::fs::write(&sqlite_path, b"").unwrap();
            std::fs::set_permissions(&sqlite_path, std::fs::Permissions::from_mode(0o644)).unwrap();
            sqlite_path.to_string_lossy().into_owned()
        }
        Backend::Postgres => db.url.clone(),
    };
    tether::install_crypto_provider();
    let server = common::process::ServerProcess::start("server", &db_url, &secrets, &[]);
    let r = reqwest::get(format!("{}/v2/info", server.base))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let log = server.log_text();
    assert!(log.contains("tether is listening"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log that is not a terminal: {log:?}"
    );
    if backend == Backend::Sqlite {
        for name in ["tether.db", "tether.db-wal", "tether.db-shm"] {
            let mode = std::fs::metadata(dir.path().join(name))
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name} has mode {:o}", mode & 0o777);
        }
    }
}

/// A database URL with a mistyped scheme is refused at start, naming the problem; it does not
/// become an SQLite file named after the typo.
#[test]
fn a_mistyped_database_url_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for url in [
        "postgress://postgres@127.0.0.1/x",
        "mysql://root@localhost/db",
        "http://x/y",
    ] {
        let out = common::process::tether_command()
            .current_dir(dir.path())
            .args(["migrate", "--database-url", url])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{url} was accepted");
        assert!(
            stderr.contains("unsupported database URL scheme"),
            "{stderr}"
        );
    }
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(files.is_empty(), "files were created: {files:?}");
}

/// Two creates at once for one app and two instances of the same service, neither naming a
/// prefix (as every CF client does): both get 201 with different derived prefixes. Many rounds:
/// the race is between one create's probe and the other's insert.
async fn concurrent_creates_never_collide_on_derived_prefixes(backend: Backend) {
    let app = TestApp::start(backend).await;
    let w = app.world().await;
    for round in 0..30 {
        let a = app.create_app(&w.space, &format!("app-{round}")).await;
        let i1 = app
            .create_instance(&w.space, &w.plan_small, &format!("db-a-{round}"))
            .await;
        let i2 = app
            .create_instance(&w.space, &w.plan_small, &format!("db-b-{round}"))
            .await;
        let (r1, r2) = tokio::join!(app.bind(&a, &i1, json!({})), app.bind(&a, &i2, json!({})),);
        r1.assert_status(201);
        r2.assert_status(201);
        let env = app
            .get(&format!("/v2/apps/{a}/service_binding_table"))
            .await;
        env.assert_status(200);
        let prefixes: Vec<String> = env.body["resources"]
            .as_array()
            .or_else(|| env.body.as_array())
            .map(|rows| {
                rows.iter()
                    .filter_map(|r| r["prefix"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(prefixes.len(), 2, "round {round}: {}", env.text);
        assert_ne!(prefixes[0], prefixes[1], "round {round}");
    }
}

/// A filtered list read while the app's bindings are being created: its total always counts
/// exactly the rows it shows (page and count come from one snapshot).
async fn a_list_total_agrees_with_its_rows_under_concurrent_creates(backend: Backend) {
    let app = TestApp::start(backend).await;
    let w = app.world().await;
    let mut instances = Vec::new();
    for i in 0..24 {
        instances.push(
            app.create_instance(&w.space, &w.plan_small, &format!("db-{i}"))
                .await,
        );
    }
    let done = std::sync::atomic::AtomicBool::new(false);
    let writer = async {
        for chunk in instances.chunks(4) {
            let binds = chunk.iter().map(|si| app.bind(&w.app, si, json!({})));
            for r in futures_util::future::join_all(binds).await {
                r.assert_status(201);
            }
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    let reader = async {
        let mut reads = 0;
        while !done.load(std::sync::atomic::Ordering::SeqCst) || reads < 5 {
            let r = app
                .get(&format!(
                    "/v2/service_bindings?q=app_guid:{}&results-per-page=100",
                    w.app
                ))
                .await;
            r.assert_status(200);
            let rows = r.body["resources"].as_array().unwrap().len() as u64;
            assert_eq!(
                r.body["total_results"].as_u64().unwrap(),
                rows,
                "{}",
                r.text
            );
            reads += 1;
        }
        reads
    };
    let ((), reads) = tokio::join!(writer, reader);
    assert!(reads >= 5);
}

async fn create_user(app: &TestApp, name: &'static str, password: &'static str) {
    app.state
        .db
        .write(move |conn| {
            tether::service::uaa::create_user(conn, name, password, &[])?;
            Ok(())
        })
        .await
        .unwrap();
}

const LOCKED: &str = "Your account has been locked because of too many failed attempts to login.";

/// UAA's lockout: five wrong passwords lock the account; while locked, even the right password
/// gets the locked answer (it tells nothing about the password); after the lockout period it
/// works again, and a success resets the count. Unknown users are never locked.
async fn password_guessing_locks_the_account(backend: Backend) {
    let app = TestApp::start(backend).await;
    create_user(&app, "alice", "alice-password").await;
    for _ in 0..5 {
        let r = app.login("alice", "wrong-guess").await;
        r.assert_status(401);
        assert_eq!(r.body["error_description"], "Bad credentials");
    }
    for password in ["alice-password", "wrong-guess"] {
        let r = app.login("alice", password).await;
        r.assert_status(401);
        assert_eq!(r.body["error"], "unauthorized");
        assert_eq!(r.body["error_description"], LOCKED);
    }
    // Still locked just before the period ends (counted from the last counted failure).
    app.state.clock.advance(Duration::from_secs(290));
    assert_eq!(
        app.login("alice", "alice-password").await.body["error_description"],
        LOCKED
    );
    app.state.clock.advance(Duration::from_secs(11));
    app.login("alice", "alice-password")
        .await
        .assert_status(200);
    // The success reset the count: four more failures do not lock.
    for _ in 0..4 {
        app.login("alice", "wrong-guess").await.assert_status(401);
    }
    app.login("alice", "alice-password")
        .await
        .assert_status(200);
    // Failures older than the counting window (20 minutes) do not count.
    for _ in 0..4 {
        app.login("alice", "wrong-guess").await.assert_status(401);
    }
    app.state.clock.advance(Duration::from_secs(1201));
    app.login("alice", "wrong-guess").await.assert_status(401);
    app.login("alice", "alice-password")
        .await
        .assert_status(200);
    // Unknown users: always "Bad credentials".
    for _ in 0..7 {
        let r = app.login("nobody", "guess").await;
        assert_eq!(r.body["error_description"], "Bad credentials");
    }
}

/// A flood of logins (each a deliberately slow password hash) is bounded: logins beyond the
/// allowed concurrent checks get 429 with Retry-After, and the binding API keeps answering.
async fn a_login_flood_degrades_logins_not_the_api(backend: Backend) {
    let app = TestApp::start_with(
        backend,
        Options {
            customize: Some(Box::new(|c| c.max_concurrent_password_checks = 1)),
            ..Options::default()
        },
    )
    .await;
    let names: Vec<String> = (0..40).map(|i| format!("user-{i}")).collect();
    let logins = names.iter().map(|n| app.login(n, "guess"));
    let reads = (0..40).map(|_| app.get("/v2/service_bindings"));
    let (logins, reads) = tokio::join!(
        futures_util::future::join_all(logins),
        futures_util::future::join_all(reads)
    );
    for r in &reads {
        r.assert_status(200);
    }
    let refused: Vec<_> = logins.iter().filter(|r| r.status == 429).collect();
    assert!(!refused.is_empty(), "no login was refused");
    for r in refused {
        assert_eq!(r.header("retry-after"), Some("1"));
        assert_eq!(r.body["error"], "too_many_requests");
    }
    for r in logins.iter().filter(|r| r.status != 429) {
        assert_eq!(r.status, 401);
    }
}

/// `inline-relations-depth=2` on a page of bindings embeds what CC embeds and no more: each
/// binding's app (with its space) and instance (with its space and plan), but not the
/// instance's own bindings (a relation back to the root's kind stays a link in CC), which made
/// one page of 100 bindings inline up to 5,000; and an app with more than 50 bindings gets only
/// its `service_bindings_url`.
async fn inlined_relations_stay_bounded(backend: Backend) {
    let app = TestApp::start(backend).await;
    let w = app.world().await;
    let mut apps = vec![w.app.clone()];
    for i in 0..60 {
        apps.push(app.create_app(&w.space, &format!("app-{i}")).await);
    }
    for a in &apps {
        app.bind(a, &w.instance, json!({})).await.assert_status(201);
    }
    // One app with 51 bindings (more than CC inlines).
    let busy = &apps[1];
    for i in 0..50 {
        let si = app
            .create_instance(&w.space, &w.plan_small, &format!("si-{i}"))
            .await;
        app.bind(busy, &si, json!({})).await.assert_status(201);
    }
    let page = app
        .get("/v2/service_bindings?inline-relations-depth=2&results-per-page=100")
        .await;
    page.assert_status(200);
    let resources = page.body["resources"].as_array().unwrap();
    assert_eq!(resources.len(), 100);
    for r in resources {
        let e = &r["entity"];
        assert_eq!(e["app"]["metadata"]["guid"], e["app_guid"]);
        assert_eq!(e["app"]["entity"]["space"]["metadata"]["guid"], w.space);
        assert!(e["app"]["entity"].get("service_bindings").is_none());
        let si = &e["service_instance"];
        assert_eq!(si["metadata"]["guid"], e["service_instance_guid"]);
        assert_eq!(si["entity"]["space"]["metadata"]["guid"], w.space);
        assert!(si["entity"]["service_plan"]["metadata"]["guid"].is_string());
        assert!(si["entity"]["service_bindings_url"].is_string());
        assert!(si["entity"].get("service_bindings").is_none(), "{si}");
        // Depth 2 stops at the space: its organization is a link.
        assert!(e["app"]["entity"]["space"]["entity"]
            .get("organization")
            .is_none());
    }
    assert!(page.text.len() < 1_500_000, "{} bytes", page.text.len());
    // The single-binding form embeds the same.
    let one = app
        .get(&format!(
            "/v2/service_bindings/{}?inline-relations-depth=2",
            resources[0]["metadata"]["guid"].as_str().unwrap()
        ))
        .await;
    assert_eq!(one.body["entity"]["app"], resources[0]["entity"]["app"]);
    // More than 50 members: only the link.
    let busy_doc = app
        .get(&format!("/v2/apps/{busy}?inline-relations-depth=1"))
        .await;
    busy_doc.assert_status(200);
    assert!(busy_doc.body["entity"].get("service_bindings").is_none());
    assert!(busy_doc.body["entity"]["service_bindings_url"].is_string());
    let quiet = app
        .get(&format!("/v2/apps/{}?inline-relations-depth=1", apps[2]))
        .await;
    assert_eq!(
        quiet.body["entity"]["service_bindings"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// Sends `request` on a fresh connection and reads until the server closes it (bounded):
/// the raw answer, as text.
async fn raw_exchange(addr: &str, request: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut answer))
        .await
        .expect("the server kept the connection open")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// Requests the HTTP parser refuses before there is any request for tether to answer: a
/// malformed request line or header line (400), a head over the parser's 128 KiB or with more
/// than 96 headers (431), a head not finished within the client request timeout (408). Each is
/// answered with its status, without a body (actix-http writes these itself and offers no way to
/// set their body; in a CF deployment nginx or the gorouter answers them, not CC), and the
/// connection is closed; the server goes on serving. A 20 KiB header is within the parser's
/// limits: an ordinary request, answered by tether.
async fn requests_the_http_parser_refuses_are_answered_and_closed(backend: Backend) {
    let app = TestApp::start(backend).await;
    let addr = app.base.trim_start_matches("http://").to_string();
    // The header timeout takes its 5 s: started first, checked last.
    let stalled = {
        let addr = addr.clone();
        tokio::spawn(async move {
            raw_exchange(&addr, b"GET /v2/info HTTP/1.1\r\nHost: x\r\nX-Slow: ").await
        })
    };
    let refused: [(&str, Vec<u8>, &str); 5] = [
        (
            "a malformed request line",
            b"NOT A REQUEST LINE\r\n\r\n".to_vec(),
            "400",
        ),
        (
            "a request line with control characters",
            b"GET /v2/\x01info HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            "400",
        ),
        (
            "a header line without a colon",
            b"GET /v2/info HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n".to_vec(),
            "400",
        ),
        (
            "97 headers",
            {
                let mut head = b"GET /v2/info HTTP/1.1\r\nHost: x\r\n".to_vec();
                for i in 0..96 {
                    head.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
                }
                head.extend_from_slice(b"\r\n");
                head
            },
            "431",
        ),
        (
            "an unfinished head of 128 KiB",
            {
                // Exactly the parser's buffer, never finished: all of it is read before the answer.
                let mut head = b"GET /v2/info HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
                head.resize(128 * 1024, b'a');
                head
            },
            "431",
        ),
    ];
    for (what, request, status) in &refused {
        let answer = raw_exchange(&addr, request).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{what}: {answer}"
        );
    }

    // A 20 KiB header: tether's answer, a CF error document for a request without a token.
    let big = "a".repeat(20 * 1024);
    let answer = raw_exchange(
        &addr,
        format!(
            "GET /v2/service_bindings HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\
             Connection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
    let doc: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(doc["error_code"], "CF-NotAuthenticated", "{answer}");

    let answer = stalled.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // Still serving.
    app.get("/v2/service_bindings").await.assert_status(200);
    app.get("/v2/info").await.assert_status(200);
}

backend_tests!(
    inlined_relations_stay_bounded,
    password_guessing_locks_the_account,
    a_login_flood_degrades_logins_not_the_api,
    concurrent_creates_never_collide_on_derived_prefixes,
    a_list_total_agrees_with_its_rows_under_concurrent_creates,
    log_files_are_plain_and_the_database_private,
    builtin_tokens_must_name_their_issuer,
    multibyte_filters_are_bad_query_parameters,
    a_stalled_body_gets_408_and_the_connection_closes,
    framework_errors_are_cf_documents,
    requests_the_http_parser_refuses_are_answered_and_closed,
);
